/*
 * The proxy object and its one thread: a poll() loop over a wake-up pipe, the listening socket
 * and every connection pair (conn.c). Other threads never touch sockets: they change rules and
 * read counters under mu, and ask the thread for the rest (reset, partition, release of hung
 * requests) through flags under mu plus a byte on the pipe, then wait until applied_seq says
 * the thread has done it.
 */
#include "faultproxy-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_CONNS 256
#define DEFAULT_DROP_REPLY_WAIT_MS 30000
#define POLL_MAX_MS 1000       /* the thread looks at the clock at least this often */
#define APPLY_TIMEOUT_MS 10000 /* how long a caller waits for the thread */
#define ACCEPTS_PER_TURN 64
#define LISTEN_BACKLOG 128

int64_t
fp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
fail(bson_error_t *error, mongoq_faultproxy_error_code_t code, const char *what)
{
    bson_set_error(error, MONGOQ_FAULTPROXY_ERROR_DOMAIN, code, "%s", what);
    return false;
}

static bool
fail_errno(bson_error_t *error, const char *call)
{
    bson_set_error(error, MONGOQ_FAULTPROXY_ERROR_DOMAIN, MONGOQ_FAULTPROXY_ERROR_SOCKET, "%s: %s",
                   call, strerror(errno));
    return false;
}

void
fp_count(mongoq_faultproxy_t *proxy, int64_t *counter, int64_t delta)
{
    pthread_mutex_lock(&proxy->mu);
    *counter += delta;
    pthread_mutex_unlock(&proxy->mu);
}

/* Under mu. Names past FP_MAX_COUNTED_COMMANDS distinct ones are not counted. */
static void
count_command(mongoq_faultproxy_t *proxy, const char *command)
{
    for (size_t i = 0; i < proxy->n_counted; i++) {
        if (strcasecmp(proxy->counted[i].name, command) == 0) {
            proxy->counted[i].count++;
            return;
        }
    }
    if (proxy->n_counted < FP_MAX_COUNTED_COMMANDS) {
        fp_command_count_t *c = &proxy->counted[proxy->n_counted++];
        bson_strncpy(c->name, command, sizeof c->name);
        c->count = 1;
    }
}

bool
fp_match_request(mongoq_faultproxy_t *proxy, const fp_msg_t *msg, const char *app_name,
                 fp_hit_t *hit)
{
    pthread_mutex_lock(&proxy->mu);
    if (*msg->command) {
        count_command(proxy, msg->command);
    }
    bool matched = fp_rules_match(proxy->rules, proxy->n_rules, msg->command, app_name, hit);
    if (matched) {
        proxy->stats.rule_hits++;
    }
    pthread_mutex_unlock(&proxy->mu);
    return matched;
}

/* "HOST:PORT" (or a mongodb:// URI) on a loopback address. */
static bool
parse_upstream(const char *upstream, struct sockaddr_in *addr, bson_error_t *error)
{
    bool ok = false;
    char *host_port = strncmp(upstream, "mongodb://", 10) == 0
                          ? mongoq_faultproxy_upstream_of(upstream, error)
                          : bson_strdup(upstream);
    char *colon = host_port ? strrchr(host_port, ':') : NULL;
    char *end = NULL;
    if (!colon) {
        fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG, "upstream must be HOST:PORT");
        goto done;
    }
    *colon = '\0';
    long port = strtol(colon + 1, &end, 10);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (!*(colon + 1) || *end || port < 1 || port > 65535 ||
        inet_pton(AF_INET, strcmp(host_port, "localhost") == 0 ? "127.0.0.1" : host_port,
                  &addr->sin_addr) != 1 ||
        (ntohl(addr->sin_addr.s_addr) >> 24) != 127) {
        fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
             "upstream must be 127.x.x.x:PORT or localhost:PORT");
        goto done;
    }
    ok = true;
done:
    bson_free(host_port);
    return ok;
}

static int
new_socket(void)
{
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0) {
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    return fd;
}

static bool
bind_loopback(int fd, uint16_t port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
}

/*
 * A port chosen by the kernel is given back when the socket stops listening, so a partition
 * that refuses connections (shutdown, then listen again) would lose it. Binding the port by
 * number keeps it: a scratch socket takes a free port and holds it (both sockets have
 * SO_REUSEADDR and neither listens yet) until the real one has bound it explicitly.
 */
static int
scratch_port(uint16_t *port, bson_error_t *error)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int fd = new_socket();
    if (fd < 0 || !bind_loopback(fd, 0) || getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        fail_errno(error, "bind 127.0.0.1:0");
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

static bool
open_listener(mongoq_faultproxy_t *proxy, uint16_t port, bson_error_t *error)
{
    bool ok = false;
    int scratch = -1;
    if (port == 0 && (scratch = scratch_port(&port, error)) < 0) {
        return false;
    }
    proxy->listen_fd = new_socket();
    if (proxy->listen_fd < 0 || !bind_loopback(proxy->listen_fd, port) ||
        listen(proxy->listen_fd, LISTEN_BACKLOG) != 0) {
        fail_errno(error, "listen on 127.0.0.1");
        goto done;
    }
    fcntl(proxy->listen_fd, F_SETFL, fcntl(proxy->listen_fd, F_GETFL) | O_NONBLOCK);
    proxy->port = port;
    proxy->listening = true;
    ok = true;
done:
    if (scratch >= 0) {
        close(scratch);
    }
    return ok;
}

static bool
open_wake_pipe(mongoq_faultproxy_t *proxy, bson_error_t *error)
{
    int fds[2];
    if (pipe(fds) != 0) {
        return fail_errno(error, "pipe");
    }
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    proxy->wake_read_fd = fds[0];
    proxy->wake_write_fd = fds[1];
    return true;
}

static void
wake(mongoq_faultproxy_t *proxy)
{
    /* A full pipe already holds a pending wake-up: EAGAIN is fine. */
    ssize_t n = write(proxy->wake_write_fd, "w", 1);
    (void)n;
}

static void
drain_wake_pipe(mongoq_faultproxy_t *proxy)
{
    char bytes[64];
    for (int i = 0; i < 16 && read(proxy->wake_read_fd, bytes, sizeof bytes) > 0; i++) {
    }
}

/* Fills pfds for this turn; returns the poll timeout (the nearest connection deadline). */
static int
prepare_poll(mongoq_faultproxy_t *proxy, int64_t now_ms)
{
    int64_t deadline = now_ms + POLL_MAX_MS;
    proxy->pfds[0] = (struct pollfd){.fd = proxy->wake_read_fd, .events = POLLIN};
    proxy->pfds[1] =
        (struct pollfd){.fd = proxy->listening ? proxy->listen_fd : -1, .events = POLLIN};
    for (size_t i = 0; i < proxy->max_conns; i++) {
        fp_conn_t *conn = &proxy->conns[i];
        struct pollfd *pfd = &proxy->pfds[2 + 2 * i];
        pfd[0] = (struct pollfd){.fd = conn->in_use ? conn->client_fd : -1};
        pfd[1] = (struct pollfd){.fd = conn->in_use ? conn->server_fd : -1};
        if (conn->in_use) {
            pfd[0].events = fp_conn_client_events(conn);
            pfd[1].events = fp_conn_server_events(conn);
            int64_t d = fp_conn_deadline(conn);
            deadline = d < deadline ? d : deadline;
        }
    }
    return deadline <= now_ms ? 0 : (int)(deadline - now_ms);
}

static void
serve_connections(mongoq_faultproxy_t *proxy)
{
    int64_t now_ms = fp_now_ms();
    for (size_t i = 0; i < proxy->max_conns; i++) {
        fp_conn_t *conn = &proxy->conns[i];
        short client_revents = proxy->pfds[2 + 2 * i].revents;
        short server_revents = proxy->pfds[3 + 2 * i].revents;
        if (conn->in_use && client_revents) {
            fp_conn_on_client(proxy, conn, client_revents);
        }
        if (conn->in_use && server_revents) {
            fp_conn_on_server(proxy, conn, server_revents);
        }
        if (conn->in_use && fp_conn_deadline(conn) <= now_ms) {
            fp_conn_on_time(proxy, conn, now_ms);
        }
    }
}

static fp_conn_t *
free_slot(mongoq_faultproxy_t *proxy)
{
    for (size_t i = 0; i < proxy->max_conns; i++) {
        if (!proxy->conns[i].in_use) {
            return &proxy->conns[i];
        }
    }
    return NULL;
}

static void
reset_client(mongoq_faultproxy_t *proxy, int fd)
{
    struct linger lin = {.l_onoff = 1, .l_linger = 0};
    fp_count(proxy, &proxy->stats.connections_refused, 1); /* before the client can see it */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
    close(fd);
}

static void
accept_clients(mongoq_faultproxy_t *proxy)
{
    for (int i = 0; i < ACCEPTS_PER_TURN && proxy->listening; i++) {
        int fd = accept(proxy->listen_fd, NULL, NULL);
        if (fd < 0) {
            return; /* EAGAIN, or a client that left before we took it */
        }
        fp_conn_t *conn = proxy->partition == MONGOQ_PARTITION_OFF ? free_slot(proxy) : NULL;
        if (conn) {
            fp_conn_open(proxy, conn, fd);
        } else {
            reset_client(proxy, fd);
        }
    }
}

static void
close_all(mongoq_faultproxy_t *proxy)
{
    for (size_t i = 0; i < proxy->max_conns; i++) {
        fp_conn_close(proxy, &proxy->conns[i], FP_CLOSE_BY_PROXY);
    }
}

static void
release_all(mongoq_faultproxy_t *proxy)
{
    for (size_t i = 0; i < proxy->max_conns; i++) {
        if (proxy->conns[i].in_use) {
            fp_conn_release(proxy, &proxy->conns[i]);
        }
    }
}

/*
 * Refusing connections: shutdown() stops a listening socket (pending ones are reset, new ones
 * refused) and keeps its port, since it was bound by number; listen() resumes. Linux semantics.
 */
static void
set_partition(mongoq_faultproxy_t *proxy, mongoq_partition_t mode, char *err, size_t err_len)
{
    if (mode != MONGOQ_PARTITION_OFF) {
        close_all(proxy);
    }
    if (mode == MONGOQ_PARTITION_REFUSE && proxy->listening) {
        shutdown(proxy->listen_fd, SHUT_RD);
        proxy->listening = false;
    } else if (mode != MONGOQ_PARTITION_REFUSE && !proxy->listening) {
        if (listen(proxy->listen_fd, LISTEN_BACKLOG) != 0) {
            snprintf(err, err_len, "cannot listen on port %u again: %s", (unsigned)proxy->port,
                     strerror(errno));
            return; /* still refusing */
        }
        proxy->listening = true;
    }
    proxy->partition = mode;
}

/* Applies what other threads asked for; false once asked to stop. */
static bool
apply_requests(mongoq_faultproxy_t *proxy)
{
    char err[sizeof proxy->partition_error] = "";
    pthread_mutex_lock(&proxy->mu);
    uint64_t seq = proxy->requested_seq;
    if (seq == proxy->applied_seq) {
        pthread_mutex_unlock(&proxy->mu);
        return true;
    }
    bool reset = proxy->want_reset, release = proxy->want_release, stop = proxy->want_stop;
    mongoq_partition_t mode = proxy->want_partition;
    proxy->want_reset = proxy->want_release = false;
    pthread_mutex_unlock(&proxy->mu);
    if (reset) {
        close_all(proxy);
    }
    if (release) {
        release_all(proxy);
    }
    if (mode != proxy->partition) {
        set_partition(proxy, mode, err, sizeof err);
    }
    pthread_mutex_lock(&proxy->mu);
    proxy->partition_now = proxy->partition;
    bson_strncpy(proxy->partition_error, err, sizeof proxy->partition_error);
    proxy->applied_seq = seq;
    pthread_cond_broadcast(&proxy->applied_cond);
    pthread_mutex_unlock(&proxy->mu);
    return !stop;
}

static void *
proxy_main(void *arg)
{
    mongoq_faultproxy_t *proxy = arg;
    bool running = true;
    while (running) {
        int timeout_ms = prepare_poll(proxy, fp_now_ms());
        if (poll(proxy->pfds, 2 + 2 * proxy->max_conns, timeout_ms) < 0 && errno != EINTR) {
            perror("mongoq faultproxy: poll");
            abort(); /* EFAULT/EINVAL/ENOMEM: nothing sensible to go on with */
        }
        serve_connections(proxy);
        if (proxy->pfds[1].revents) {
            accept_clients(proxy);
        }
        if (proxy->pfds[0].revents) {
            drain_wake_pipe(proxy);
        }
        running = apply_requests(proxy);
    }
    close_all(proxy);
    return NULL;
}

/* Under mu, and returns with it held: wakes the thread and waits until it applied the flags
 * set so far. */
static bool
ask_thread(mongoq_faultproxy_t *proxy, bson_error_t *error)
{
    struct timespec deadline;
    uint64_t seq = ++proxy->requested_seq;
    pthread_mutex_unlock(&proxy->mu);
    wake(proxy);
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += APPLY_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&proxy->mu);
    while (proxy->applied_seq < seq) {
        if (pthread_cond_timedwait(&proxy->applied_cond, &proxy->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    return proxy->applied_seq >= seq ||
           fail(error, MONGOQ_FAULTPROXY_ERROR_TIMEOUT, "the proxy thread did not answer");
}

static bool
init_sync(mongoq_faultproxy_t *proxy)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    bool ok = false;
    if (pthread_mutex_init(&proxy->mu, NULL) == 0) {
        ok = pthread_cond_init(&proxy->applied_cond, &attr) == 0;
        if (!ok) {
            pthread_mutex_destroy(&proxy->mu);
        }
    }
    pthread_condattr_destroy(&attr);
    return ok;
}

static bool
check_opts(const mongoq_faultproxy_opts_t *opts, bson_error_t *error)
{
    if (opts->version == 0 || opts->version > MONGOQ_FAULTPROXY_OPTS_VERSION) {
        return fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
                    "unknown options version (use MONGOQ_FAULTPROXY_OPTS_INIT)");
    }
    if (opts->max_connections < 0 || opts->max_connections > 4096 || opts->drop_reply_wait_ms < 0) {
        return fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
                    "max_connections must be 0..4096, drop_reply_wait_ms >= 0");
    }
    return true;
}

/* Everything but the thread; safe on a half-built proxy. */
static void
free_proxy(mongoq_faultproxy_t *proxy)
{
    for (size_t i = 0; i < proxy->n_rules; i++) {
        fp_rule_cleanup(&proxy->rules[i]);
    }
    bson_free(proxy->rules);
    bson_free(proxy->conns);
    bson_free(proxy->pfds);
    int fds[] = {proxy->listen_fd, proxy->wake_read_fd, proxy->wake_write_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    pthread_cond_destroy(&proxy->applied_cond);
    pthread_mutex_destroy(&proxy->mu);
    bson_free(proxy);
}

static mongoq_faultproxy_t *
new_proxy(const mongoq_faultproxy_opts_t *opts)
{
    mongoq_faultproxy_t *proxy = bson_malloc0(sizeof *proxy);
    if (!init_sync(proxy)) {
        bson_free(proxy);
        return NULL;
    }
    proxy->listen_fd = proxy->wake_read_fd = proxy->wake_write_fd = -1;
    proxy->max_conns = opts->max_connections ? (size_t)opts->max_connections : DEFAULT_MAX_CONNS;
    proxy->drop_reply_wait_ms =
        opts->drop_reply_wait_ms ? opts->drop_reply_wait_ms : DEFAULT_DROP_REPLY_WAIT_MS;
    proxy->conns = bson_malloc0(proxy->max_conns * sizeof *proxy->conns);
    proxy->pfds = bson_malloc0((2 + 2 * proxy->max_conns) * sizeof *proxy->pfds);
    for (size_t i = 0; i < proxy->max_conns; i++) {
        proxy->conns[i].client_fd = proxy->conns[i].server_fd = -1;
    }
    proxy->stats.version = MONGOQ_FAULTPROXY_STATS_VERSION;
    return proxy;
}

mongoq_faultproxy_t *
mongoq_faultproxy_start(const char *upstream, const mongoq_faultproxy_opts_t *opts,
                        bson_error_t *error)
{
    const mongoq_faultproxy_opts_t defaults = MONGOQ_FAULTPROXY_OPTS_INIT;
    BSON_ASSERT_PARAM(upstream);
    opts = opts ? opts : &defaults;
    if (!check_opts(opts, error)) {
        return NULL;
    }
    mongoq_faultproxy_t *proxy = new_proxy(opts);
    if (!proxy) {
        fail(error, MONGOQ_FAULTPROXY_ERROR_SOCKET, "cannot create a mutex");
        return NULL;
    }
    if (!parse_upstream(upstream, &proxy->upstream, error) || !open_wake_pipe(proxy, error) ||
        !open_listener(proxy, opts->listen_port, error)) {
        goto fail;
    }
    if (pthread_create(&proxy->thread, NULL, proxy_main, proxy) != 0) {
        fail(error, MONGOQ_FAULTPROXY_ERROR_SOCKET, "cannot start the proxy thread");
        goto fail;
    }
    return proxy;
fail:
    free_proxy(proxy);
    return NULL;
}

void
mongoq_faultproxy_stop(mongoq_faultproxy_t *proxy)
{
    if (!proxy) {
        return;
    }
    pthread_mutex_lock(&proxy->mu);
    proxy->want_stop = true;
    proxy->requested_seq++;
    pthread_mutex_unlock(&proxy->mu);
    wake(proxy);
    pthread_join(proxy->thread, NULL);
    free_proxy(proxy);
}

uint16_t
mongoq_faultproxy_port(const mongoq_faultproxy_t *proxy)
{
    BSON_ASSERT_PARAM(proxy);
    return proxy->port;
}

int32_t
mongoq_faultproxy_add_rule(mongoq_faultproxy_t *proxy, const mongoq_fault_rule_t *rule,
                           bson_error_t *error)
{
    int32_t id = 0;
    BSON_ASSERT_PARAM(proxy);
    BSON_ASSERT_PARAM(rule);
    pthread_mutex_lock(&proxy->mu);
    if (proxy->n_rules == FP_MAX_RULES) {
        fail(error, MONGOQ_FAULTPROXY_ERROR_LIMIT, "too many rules");
        goto done;
    }
    proxy->rules = bson_realloc(proxy->rules, (proxy->n_rules + 1) * sizeof *proxy->rules);
    if (fp_rule_init(&proxy->rules[proxy->n_rules], (int32_t)proxy->n_rules + 1, rule, error)) {
        id = (int32_t)++proxy->n_rules;
    }
done:
    pthread_mutex_unlock(&proxy->mu);
    return id;
}

int64_t
mongoq_faultproxy_rule_hits(mongoq_faultproxy_t *proxy, int32_t rule_id)
{
    BSON_ASSERT_PARAM(proxy);
    pthread_mutex_lock(&proxy->mu);
    int64_t hits =
        rule_id >= 1 && (size_t)rule_id <= proxy->n_rules ? proxy->rules[rule_id - 1].hits : -1;
    pthread_mutex_unlock(&proxy->mu);
    return hits;
}

/* Under mu: asks the thread for a partition mode and reports whether it got there. */
static bool
ask_partition(mongoq_faultproxy_t *proxy, mongoq_partition_t mode, bson_error_t *error)
{
    proxy->want_partition = mode;
    if (!ask_thread(proxy, error)) {
        return false;
    }
    if (proxy->partition_now != mode) {
        return fail(error, MONGOQ_FAULTPROXY_ERROR_SOCKET, proxy->partition_error);
    }
    return true;
}

bool
mongoq_faultproxy_partition(mongoq_faultproxy_t *proxy, mongoq_partition_t mode,
                            bson_error_t *error)
{
    BSON_ASSERT_PARAM(proxy);
    if (mode != MONGOQ_PARTITION_OFF && mode != MONGOQ_PARTITION_CLOSE &&
        mode != MONGOQ_PARTITION_REFUSE) {
        return fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG, "unknown partition mode");
    }
    pthread_mutex_lock(&proxy->mu);
    bool ok = ask_partition(proxy, mode, error);
    pthread_mutex_unlock(&proxy->mu);
    return ok;
}

bool
mongoq_faultproxy_reset(mongoq_faultproxy_t *proxy, bson_error_t *error)
{
    BSON_ASSERT_PARAM(proxy);
    pthread_mutex_lock(&proxy->mu);
    proxy->want_reset = true;
    bool ok = ask_thread(proxy, error);
    pthread_mutex_unlock(&proxy->mu);
    return ok;
}

/* Under mu. */
static void
spend_rules(mongoq_faultproxy_t *proxy)
{
    for (size_t i = 0; i < proxy->n_rules; i++) {
        proxy->rules[i].remaining = 0;
    }
    proxy->want_release = true;
}

bool
mongoq_faultproxy_clear(mongoq_faultproxy_t *proxy, bson_error_t *error)
{
    BSON_ASSERT_PARAM(proxy);
    pthread_mutex_lock(&proxy->mu);
    spend_rules(proxy);
    bool ok = ask_thread(proxy, error);
    pthread_mutex_unlock(&proxy->mu);
    return ok;
}

bool
mongoq_faultproxy_heal(mongoq_faultproxy_t *proxy, bson_error_t *error)
{
    BSON_ASSERT_PARAM(proxy);
    pthread_mutex_lock(&proxy->mu);
    spend_rules(proxy);
    bool ok = ask_partition(proxy, MONGOQ_PARTITION_OFF, error);
    pthread_mutex_unlock(&proxy->mu);
    return ok;
}

bool
mongoq_faultproxy_stats(mongoq_faultproxy_t *proxy, mongoq_faultproxy_stats_t *stats,
                        bson_error_t *error)
{
    BSON_ASSERT_PARAM(proxy);
    BSON_ASSERT_PARAM(stats);
    if (stats->version == 0 || stats->version > MONGOQ_FAULTPROXY_STATS_VERSION) {
        return fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
                    "unknown stats version (use MONGOQ_FAULTPROXY_STATS_INIT)");
    }
    pthread_mutex_lock(&proxy->mu);
    *stats = proxy->stats; /* one version so far: every field */
    pthread_mutex_unlock(&proxy->mu);
    return true;
}

int64_t
mongoq_faultproxy_command_count(mongoq_faultproxy_t *proxy, const char *command)
{
    int64_t count = 0;
    BSON_ASSERT_PARAM(proxy);
    BSON_ASSERT_PARAM(command);
    pthread_mutex_lock(&proxy->mu);
    for (size_t i = 0; i < proxy->n_counted; i++) {
        if (strcasecmp(proxy->counted[i].name, command) == 0) {
            count = proxy->counted[i].count;
        }
    }
    pthread_mutex_unlock(&proxy->mu);
    return count;
}

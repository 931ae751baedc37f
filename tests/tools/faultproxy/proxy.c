/*
 * The proxy object: start and stop, rules, partitions, resets and counters. Other threads never
 * touch sockets: they change rules and read counters under mu, and ask the proxy's thread
 * (loop.c) for the rest (reset, partition, release of hung requests) through flags under mu
 * plus a byte on the wake-up pipe (sockets.c), then wait until applied_seq says the thread has
 * done it.
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
#define APPLY_TIMEOUT_MS 10000 /* how long a caller waits for the thread */

int64_t
fp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
fp_fail(bson_error_t *error, mongoq_faultproxy_error_code_t code, const char *what)
{
    bson_set_error(error, MONGOQ_FAULTPROXY_ERROR_DOMAIN, code, "%s", what);
    return false;
}

bool
fp_fail_errno(bson_error_t *error, const char *call)
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
/* Under mu, and returns with it held: wakes the thread and waits until it applied the flags
 * set so far. */
static bool
ask_thread(mongoq_faultproxy_t *proxy, bson_error_t *error)
{
    struct timespec deadline;
    uint64_t seq = ++proxy->requested_seq;
    pthread_mutex_unlock(&proxy->mu);
    fp_wake(proxy);
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += APPLY_TIMEOUT_MS / 1000;
    pthread_mutex_lock(&proxy->mu);
    while (proxy->applied_seq < seq) {
        if (pthread_cond_timedwait(&proxy->applied_cond, &proxy->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    return proxy->applied_seq >= seq ||
           fp_fail(error, MONGOQ_FAULTPROXY_ERROR_TIMEOUT, "the proxy thread did not answer");
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
        return fp_fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
                    "unknown options version (use MONGOQ_FAULTPROXY_OPTS_INIT)");
    }
    if (opts->max_connections < 0 || opts->max_connections > 4096 || opts->drop_reply_wait_ms < 0) {
        return fp_fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
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
        fp_fail(error, MONGOQ_FAULTPROXY_ERROR_SOCKET, "cannot create a mutex");
        return NULL;
    }
    if (!fp_parse_upstream(upstream, &proxy->upstream, error) || !fp_open_wake_pipe(proxy, error) ||
        !fp_open_listener(proxy, opts->listen_port, error)) {
        goto fail;
    }
    if (pthread_create(&proxy->thread, NULL, fp_proxy_main, proxy) != 0) {
        fp_fail(error, MONGOQ_FAULTPROXY_ERROR_SOCKET, "cannot start the proxy thread");
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
    fp_wake(proxy);
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
        fp_fail(error, MONGOQ_FAULTPROXY_ERROR_LIMIT, "too many rules");
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
        return fp_fail(error, MONGOQ_FAULTPROXY_ERROR_SOCKET, proxy->partition_error);
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
        return fp_fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG, "unknown partition mode");
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
        return fp_fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
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

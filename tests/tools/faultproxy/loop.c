/*
 * The fault proxy's one thread: a poll() loop over the wake-up pipe, the listening socket and
 * every connection pair (conn.c); accepts clients, and applies what other threads asked for
 * (reset, partition, release of hung requests, stop).
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

#define POLL_MAX_MS 1000       /* the thread looks at the clock at least this often */
#define ACCEPTS_PER_TURN 64

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
        if (listen(proxy->listen_fd, FP_LISTEN_BACKLOG) != 0) {
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

void *
fp_proxy_main(void *arg)
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
            fp_drain_wake_pipe(proxy);
        }
        running = apply_requests(proxy);
    }
    close_all(proxy);
    return NULL;
}

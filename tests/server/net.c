/*
 * Listening socket and one thread per connection. A connection that sends anything malformed
 * is closed and logged; the others are not disturbed.
 */
#include "server-private.h"
#include "wire_frame.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_fd = -1;
static int wake_pipe[2] = {-1, -1};
static atomic_bool stopping;
static atomic_llong next_conn_id;
static atomic_int live_connections;

bool
ms_net_listen(bson_error_t *error)
{
    char reason[128];
    if (pipe(wake_pipe) != 0) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "pipe: %s", strerror(errno));
    }
    if (!mtw_listen(ms_config.bind, ms_config.port, &listen_fd, &ms_config.port, reason,
                    sizeof reason)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "cannot listen on %s:%d: %s", ms_config.bind,
                            ms_config.port, reason);
    }
    return true;
}

void
ms_net_stop(void)
{
    atomic_store(&stopping, true);
    if (wake_pipe[1] >= 0) {
        char c = 1;
        ssize_t n = write(wake_pipe[1], &c, 1);
        (void)n;
    }
}

bool
ms_net_stopping(void)
{
    return atomic_load(&stopping);
}

static void
serve_connection(ms_conn_t *conn)
{
    for (;;) {
        ms_request_t req;
        const char *reason = NULL;
        if (!ms_wire_read(conn->fd, &req, &reason)) {
            if (strcmp(reason, "connection closed by the client") != 0) {
                ms_log("conn%lld (%s): closing: %s", (long long)conn->id, conn->peer, reason);
            }
            return;
        }
        bool close_conn = false;
        bson_t reply;
        ms_dispatch(conn, &req, &reply, &close_conn);
        bool sent = true;
        if (!close_conn && !req.more_to_come) {
            sent = ms_wire_reply(conn->fd, &req, &reply);
        }
        bson_destroy(&reply);
        bson_destroy(&req.cmd);
        if (close_conn || !sent) {
            return;
        }
    }
}

static void *
connection_thread(void *arg)
{
    ms_conn_t *conn = arg;
    serve_connection(conn);
    close(conn->fd);
    bson_free(conn);
    atomic_fetch_sub(&live_connections, 1);
    return NULL;
}

static void
start_connection(int fd, const struct sockaddr_in *peer)
{
    ms_conn_t *conn = bson_malloc0(sizeof *conn);
    conn->fd = fd;
    conn->id = atomic_fetch_add(&next_conn_id, 1) + 1;
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &peer->sin_addr, ip, sizeof ip);
    snprintf(conn->peer, sizeof conn->peer, "%s:%d", ip, ntohs(peer->sin_port));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    pthread_t th;
    atomic_fetch_add(&live_connections, 1);
    if (pthread_create(&th, &attr, connection_thread, conn) != 0) {
        ms_log("cannot start a connection thread: closing %s", conn->peer);
        atomic_fetch_sub(&live_connections, 1);
        close(fd);
        bson_free(conn);
    }
    pthread_attr_destroy(&attr);
}

void
ms_net_serve(void)
{
    struct pollfd fds[2] = {{listen_fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
    while (!atomic_load(&stopping)) {
        int n = poll(fds, 2, 1000);
        if (n < 0 && errno != EINTR) {
            ms_log("poll: %s", strerror(errno));
            break;
        }
        if (n <= 0 || !(fds[0].revents & POLLIN)) {
            continue;
        }
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept(listen_fd, (struct sockaddr *)&peer, &plen);
        if (fd < 0) {
            continue;
        }
        start_connection(fd, &peer);
    }
    close(listen_fd);
    listen_fd = -1;
}

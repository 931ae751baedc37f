/*
 * The fault proxy's sockets: the upstream address, the loopback listener (on a port of its own
 * or a scratch one) and the wake-up pipe other threads use to get the proxy thread's attention.
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

/* "HOST:PORT" (or a mongodb:// URI) on a loopback address. */
bool
fp_parse_upstream(const char *upstream, struct sockaddr_in *addr, bson_error_t *error)
{
    bool ok = false;
    char *host_port = strncmp(upstream, "mongodb://", 10) == 0
                          ? mongoq_faultproxy_upstream_of(upstream, error)
                          : bson_strdup(upstream);
    char *colon = host_port ? strrchr(host_port, ':') : NULL;
    char *end = NULL;
    if (!colon) {
        fp_fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG, "upstream must be HOST:PORT");
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
        fp_fail(error, MONGOQ_FAULTPROXY_ERROR_INVALID_ARG,
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
        fp_fail_errno(error, "bind 127.0.0.1:0");
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(addr.sin_port);
    return fd;
}

bool
fp_open_listener(mongoq_faultproxy_t *proxy, uint16_t port, bson_error_t *error)
{
    bool ok = false;
    int scratch = -1;
    if (port == 0 && (scratch = scratch_port(&port, error)) < 0) {
        return false;
    }
    proxy->listen_fd = new_socket();
    if (proxy->listen_fd < 0 || !bind_loopback(proxy->listen_fd, port) ||
        listen(proxy->listen_fd, FP_LISTEN_BACKLOG) != 0) {
        fp_fail_errno(error, "listen on 127.0.0.1");
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

bool
fp_open_wake_pipe(mongoq_faultproxy_t *proxy, bson_error_t *error)
{
    int fds[2];
    if (pipe(fds) != 0) {
        return fp_fail_errno(error, "pipe");
    }
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    proxy->wake_read_fd = fds[0];
    proxy->wake_write_fd = fds[1];
    return true;
}

void
fp_wake(mongoq_faultproxy_t *proxy)
{
    /* A full pipe already holds a pending wake-up: EAGAIN is fine. */
    ssize_t n = write(proxy->wake_write_fd, "w", 1);
    (void)n;
}

void
fp_drain_wake_pipe(mongoq_faultproxy_t *proxy)
{
    char bytes[64];
    for (int i = 0; i < 16 && read(proxy->wake_read_fd, bytes, sizeof bytes) > 0; i++) {
    }
}

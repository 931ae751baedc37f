/*
 * A tiny HTTP/1.0 responder for `mongoq metrics --listen`: one connection at a time on one
 * thread, GET /metrics answered with a fresh rendering, anything else 404/405, every
 * connection closed after its answer. A client that sends nothing is dropped after 2 s, so
 * none can hold the loop. Plain sockets rather than a library: this is all Prometheus needs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli.h"

#define REQUEST_MAX 8192
#define CLIENT_TIMEOUT_S 2

bool
cli_parse_listen(cli_t *cli, const char *text, struct sockaddr_in *addr)
{
    const char *colon = strrchr(text, ':');
    char host[64];
    char *end;
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || (size_t)(colon - text) >= sizeof host || *end != '\0' || colon[1] == '\0' ||
        port < 0 || port > 65535) {
        cli_fail(cli, CLI_USAGE, "--listen wants HOST:PORT (e.g. 127.0.0.1:9187), not \"%s\"",
                 text);
        return false;
    }
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    if (inet_pton(AF_INET, host, &addr->sin_addr) != 1) {
        cli_fail(cli, CLI_USAGE, "--listen: \"%s\" is not an IPv4 address", host);
        return false;
    }
    addr->sin_port = htons((uint16_t)port);
    return true;
}

static void
send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void
respond(int fd, const char *status, const char *type, const char *body)
{
    char head[256];
    size_t len = strlen(body);
    int n = bson_snprintf(head, sizeof head,
                          "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                          "Connection: close\r\n\r\n",
                          status, type, len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* Reads the request head (up to a blank line, REQUEST_MAX bytes or the timeout). */
static size_t
read_request(int fd, char *buf, size_t size)
{
    size_t len = 0;
    while (len + 1 < size) {
        ssize_t n = recv(fd, buf + len, size - 1 - len, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n")) {
            break;
        }
    }
    buf[len] = '\0';
    return len;
}

static void
serve_one(cli_t *cli, int fd)
{
    char request[REQUEST_MAX];
    struct timeval tv = {CLIENT_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (read_request(fd, request, sizeof request) == 0) {
        return;
    }
    bool get = strncmp(request, "GET ", 4) == 0;
    const char *path = get ? request + 4 : "";
    if (!get) {
        respond(fd, "405 Method Not Allowed", "text/plain", "only GET\n");
    } else if (strncmp(path, "/metrics ", 9) != 0 && strncmp(path, "/metrics?", 9) != 0) {
        respond(fd, "404 Not Found", "text/plain", "try /metrics\n");
    } else {
        mongoq_metrics_opts_t opts = MONGOQ_METRICS_OPTS_INIT;
        opts.stats_only = true;
        char *text = NULL;
        bson_error_t error;
        if (mongoq_queue_metrics(cli->queue, &opts, &text, &error)) {
            respond(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text);
        } else {
            char body[sizeof error.message + 2];
            bson_snprintf(body, sizeof body, "%s\n", error.message);
            respond(fd, "503 Service Unavailable", "text/plain", body);
        }
        bson_free(text);
    }
}

/* A bound, listening socket; -1 after printing an error. */
static int
listen_on(cli_t *cli, const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) {
        cli_fail(cli, CLI_FAILED, "socket: %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)addr, sizeof *addr) != 0 || listen(fd, 16) != 0) {
        cli_fail(cli, CLI_FAILED, "cannot listen on that address: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int
cli_serve_metrics(cli_t *cli, const char *text, int64_t max_requests)
{
    struct sockaddr_in addr;
    if (!cli_parse_listen(cli, text, &addr)) {
        return CLI_USAGE;
    }
    int fd = listen_on(cli, &addr);
    if (fd < 0) {
        return CLI_FAILED;
    }
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
    fprintf(cli->out, "listening on http://%s:%u/metrics\n", host, (unsigned)ntohs(addr.sin_port));
    fflush(cli->out);
    /* Bounded by a signal (checked every 500 ms) or by max_requests answers. */
    for (int64_t served = 0; !cli_stopping() && (max_requests == 0 || served < max_requests);) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 500) <= 0) {
            continue;
        }
        int client = accept(fd, NULL, NULL);
        if (client < 0) {
            continue;
        }
        serve_one(cli, client);
        close(client);
        served++;
    }
    close(fd);
    return CLI_OK;
}

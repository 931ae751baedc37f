/*
 * mongoq-fault-proxy: the fault proxy as a process of its own, for runs with several processes.
 *
 *   mongoq-fault-proxy --upstream HOST:PORT|mongodb://... [--listen 127.0.0.1:PORT]
 *                      [--control 127.0.0.1:PORT] [--max-connections N] [--exit-on-stdin-eof]
 *
 * Once listening it prints one line on stdout:
 *   port=PROXY_PORT control_port=CONTROL_PORT [uri=PROXIED_URI]
 * (uri= when --upstream was a URI), then serves the text control protocol (README.md) on the
 * control port: one command per line, one reply line. "quit" ends a control connection,
 * "shutdown" the process; so do SIGTERM and SIGINT, and the end of stdin with
 * --exit-on-stdin-eof (so a proxy never outlives the program that started it).
 */
#include "faultproxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define MAX_LINE 1024

typedef struct {
    int fd;
    char line[MAX_LINE + 1];
    size_t len;
} control_client_t;

typedef struct {
    const char *upstream;
    uint16_t listen_port;
    uint16_t control_port;
    int32_t max_connections;
    bool exit_on_stdin_eof;
} args_t;

typedef struct {
    mongoq_faultproxy_t *proxy;
    int listen_fd;
    bool exit_on_stdin_eof;
    bool shutting_down;
    control_client_t clients[MAX_CLIENTS];
} control_server_t;

static int signal_pipe[2] = {-1, -1};

static void
on_signal(int sig)
{
    int saved = errno;
    ssize_t n = write(signal_pipe[1], "s", 1);
    (void)n;
    (void)sig;
    errno = saved;
}

static void
usage(void)
{
    fprintf(stderr, "usage: mongoq-fault-proxy --upstream HOST:PORT|mongodb://... "
                    "[--listen 127.0.0.1:PORT] [--control 127.0.0.1:PORT] "
                    "[--max-connections N] [--exit-on-stdin-eof]\n");
}

/* "127.0.0.1:PORT" or "localhost:PORT": only loopback is served. */
static bool
parse_loopback(const char *s, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    char *end = NULL;
    if (!colon || (strncmp(s, "127.0.0.1:", 10) != 0 && strncmp(s, "localhost:", 10) != 0) ||
        colon != s + 9) {
        return false;
    }
    long v = strtol(colon + 1, &end, 10);
    *port = (uint16_t)v;
    return colon[1] && !*end && v >= 0 && v <= 65535;
}

static bool
parse_args(int argc, char **argv, args_t *args)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--exit-on-stdin-eof") == 0) {
            args->exit_on_stdin_eof = true;
            continue;
        }
        if (!v) {
            return false;
        }
        i++;
        if (strcmp(a, "--upstream") == 0) {
            args->upstream = v;
        } else if (strcmp(a, "--listen") == 0 && parse_loopback(v, &args->listen_port)) {
        } else if (strcmp(a, "--control") == 0 && parse_loopback(v, &args->control_port)) {
        } else if (strcmp(a, "--max-connections") == 0 &&
                   (args->max_connections = (int32_t)strtol(v, &end, 10)) > 0 && !*end) {
        } else {
            return false;
        }
    }
    return args->upstream != NULL;
}

static int
open_control_port(uint16_t port, uint16_t *bound)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    socklen_t len = sizeof addr;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        perror("mongoq-fault-proxy: control port");
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    *bound = ntohs(addr.sin_port);
    return fd;
}

static void
send_line(int fd, const char *text)
{
    char *line = bson_strdup_printf("%s\n", text);
    size_t off = 0, len = strlen(line);
    for (int tries = 0; tries < 64 && off < len; tries++) {
        ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
        if (n <= 0 && errno != EINTR) {
            break;
        }
        off += n > 0 ? (size_t)n : 0;
    }
    bson_free(line);
}

static void
drop_client(control_client_t *client)
{
    close(client->fd);
    client->fd = -1;
    client->len = 0;
}

/* One complete line: the protocol's reply, or this program's own quit and shutdown. */
static void
run_line(control_server_t *server, control_client_t *client, const char *line)
{
    char *reply = NULL;
    if (strcmp(line, "quit") == 0) {
        send_line(client->fd, "ok");
        drop_client(client);
    } else if (strcmp(line, "shutdown") == 0) {
        send_line(client->fd, "ok");
        server->shutting_down = true;
    } else {
        mongoq_faultproxy_control(server->proxy, line, &reply);
        send_line(client->fd, reply);
        bson_free(reply);
    }
}

static void
take_lines(control_server_t *server, control_client_t *client)
{
    char *nl;
    while (client->fd >= 0 && (nl = memchr(client->line, '\n', client->len)) != NULL) {
        size_t used = (size_t)(nl - client->line) + 1;
        *nl = '\0';
        if (nl > client->line && nl[-1] == '\r') {
            nl[-1] = '\0';
        }
        run_line(server, client, client->line);
        if (client->fd < 0) {
            return; /* quit: the rest of the buffer went with the connection */
        }
        memmove(client->line, client->line + used, client->len - used);
        client->len -= used;
    }
    if (client->fd >= 0 && client->len == MAX_LINE) {
        send_line(client->fd, "error line too long");
        drop_client(client);
    }
}

static void
read_client(control_server_t *server, control_client_t *client)
{
    ssize_t n = recv(client->fd, client->line + client->len, MAX_LINE - client->len, 0);
    if (n <= 0) {
        if (n == 0 || errno != EINTR) {
            drop_client(client);
        }
        return;
    }
    client->len += (size_t)n;
    take_lines(server, client);
}

static void
accept_client(control_server_t *server)
{
    int fd = accept(server->listen_fd, NULL, NULL);
    if (fd < 0) {
        return;
    }
    for (size_t i = 0; i < MAX_CLIENTS; i++) {
        if (server->clients[i].fd < 0) {
            server->clients[i].fd = fd;
            server->clients[i].len = 0;
            return;
        }
    }
    send_line(fd, "error too many control connections");
    close(fd);
}

/* pfds: [0] signals, [1] control port, [2] stdin, [3..] clients. */
static void
serve_control(control_server_t *server)
{
    struct pollfd pfds[3 + MAX_CLIENTS];
    while (!server->shutting_down) {
        pfds[0] = (struct pollfd){.fd = signal_pipe[0], .events = POLLIN};
        pfds[1] = (struct pollfd){.fd = server->listen_fd, .events = POLLIN};
        pfds[2] = (struct pollfd){.fd = server->exit_on_stdin_eof ? 0 : -1, .events = POLLIN};
        for (size_t i = 0; i < MAX_CLIENTS; i++) {
            pfds[3 + i] = (struct pollfd){.fd = server->clients[i].fd, .events = POLLIN};
        }
        if (poll(pfds, 3 + MAX_CLIENTS, -1) < 0 && errno != EINTR) {
            perror("mongoq-fault-proxy: poll");
            return;
        }
        char byte[256];
        if (pfds[0].revents || (pfds[2].revents && read(0, byte, sizeof byte) <= 0)) {
            return; /* a signal, or the end of stdin */
        }
        for (size_t i = 0; i < MAX_CLIENTS && !server->shutting_down; i++) {
            if (pfds[3 + i].revents && server->clients[i].fd >= 0) {
                read_client(server, &server->clients[i]);
            }
        }
        if (pfds[1].revents) {
            accept_client(server);
        }
    }
}

static bool
install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (pipe(signal_pipe) != 0) {
        return false;
    }
    fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    return true;
}

static void
print_ready_line(const args_t *args, mongoq_faultproxy_t *proxy, uint16_t control_port)
{
    uint16_t port = mongoq_faultproxy_port(proxy);
    char *uri = strncmp(args->upstream, "mongodb://", 10) == 0
                    ? mongoq_faultproxy_uri(args->upstream, port, NULL)
                    : NULL;
    printf("port=%u control_port=%u%s%s\n", (unsigned)port, (unsigned)control_port,
           uri ? " uri=" : "", uri ? uri : "");
    fflush(stdout);
    bson_free(uri);
}

static void
close_control(control_server_t *server)
{
    for (size_t i = 0; i < MAX_CLIENTS; i++) {
        if (server->clients[i].fd >= 0) {
            close(server->clients[i].fd);
        }
    }
    if (server->listen_fd >= 0) {
        close(server->listen_fd);
    }
    mongoq_faultproxy_stop(server->proxy);
}

/* Starts the proxy and its control port, prints the ready line, serves until told to stop. */
static int
run(const args_t *args, control_server_t *server)
{
    mongoq_faultproxy_opts_t opts = MONGOQ_FAULTPROXY_OPTS_INIT;
    bson_error_t error;
    uint16_t control_port = 0;
    opts.listen_port = args->listen_port;
    opts.max_connections = args->max_connections;
    server->proxy = mongoq_faultproxy_start(args->upstream, &opts, &error);
    if (!server->proxy) {
        fprintf(stderr, "mongoq-fault-proxy: %s\n", error.message);
        return 1;
    }
    server->listen_fd = open_control_port(args->control_port, &control_port);
    if (server->listen_fd < 0) {
        return 1;
    }
    print_ready_line(args, server->proxy, control_port);
    serve_control(server);
    return 0;
}

int
main(int argc, char **argv)
{
    args_t args = {0};
    control_server_t server = {.listen_fd = -1};
    for (size_t i = 0; i < MAX_CLIENTS; i++) {
        server.clients[i].fd = -1;
    }
    if (!parse_args(argc, argv, &args)) {
        usage();
        return 2;
    }
    server.exit_on_stdin_eof = args.exit_on_stdin_eof;
    if (!install_signals()) {
        perror("mongoq-fault-proxy: pipe");
        return 1;
    }
    int rc = run(&args, &server);
    close_control(&server);
    close(signal_pipe[0]);
    close(signal_pipe[1]);
    return rc;
}

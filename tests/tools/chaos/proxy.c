/*
 * Proxy faults: the loopback fault proxy (tests/tools/faultproxy/, binary mongoq-fault-proxy)
 * between some children and the server, driven through its control port's line protocol
 * ("drop-reply insert,update 2", "hang getMore 1 2000", "partition on", "heal", ...; one reply
 * line "ok ..." or "error ...").
 * Everything about the proxy lives here; without the binary the module says so once and
 * d->proxy.available stays false, so faults.c skips proxy faults and every child connects
 * straight to the server.
 */
#include "driver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONTROL_TIMEOUT_MS 5000

/* Its one start line: "port=PROXY_PORT control_port=CONTROL_PORT [uri=...]". */
static bool
read_ports(driver_t *d, int child)
{
    char line[512];
    if (!procs_await_line(d, child, 10000, line, sizeof line) ||
        sscanf(line, "port=%d control_port=%d", &d->proxy.port, &d->proxy.control_port) != 2) {
        return false;
    }
    return d->proxy.port > 0 && d->proxy.control_port > 0;
}

void
proxy_start(driver_t *d)
{
    char upstream[64];
    if (!d->proxy_bin || access(d->proxy_bin, X_OK) != 0) {
        printf("chaos: NOTICE: proxy faults skipped: no fault proxy at %s\n",
               d->proxy_bin ? d->proxy_bin : "(none given)");
        return;
    }
    snprintf(upstream, sizeof upstream, "127.0.0.1:%d", d->server_port);
    char *argv[] = {(char *)d->proxy_bin, "--listen", "127.0.0.1:0", "--upstream", upstream, NULL};
    int child = procs_spawn(d, CHILD_PROXY, -1, "proxy", argv, NULL);
    if (child < 0 || !read_ports(d, child)) {
        printf("chaos: NOTICE: proxy faults skipped: the fault proxy did not start (see %s/proxy.err)\n",
               d->workdir);
        procs_signal(d, child, SIGKILL);
        return;
    }
    d->children[child].ready = true;
    d->proxy.child = child;
    d->proxy.available = true;
    snprintf(d->proxy_uri, sizeof d->proxy_uri,
             "mongodb://127.0.0.1:%d/?directConnection=true&" CHAOS_URI_TIMEOUTS, d->proxy.port);
    printf("chaos: fault proxy on port %d (control %d) in front of %s\n", d->proxy.port,
           d->proxy.control_port, upstream);
}

static int
connect_control(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Reads one line (bounded in time) into reply. */
static bool
read_reply(int fd, char *reply, size_t reply_len)
{
    size_t len = 0;
    int64_t deadline = chaos_mono_ms() + CONTROL_TIMEOUT_MS;
    for (int i = 0; i < 1000 && len + 1 < reply_len; i++) {
        int64_t left = deadline - chaos_mono_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            break;
        }
        ssize_t n = read(fd, reply + len, reply_len - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        reply[len] = '\0';
        char *nl = strchr(reply, '\n');
        if (nl) {
            *nl = '\0';
            return true;
        }
    }
    reply[len] = '\0';
    return false;
}

/* One control line, one answer line; true when it starts with "ok". */
bool
proxy_command(driver_t *d, const char *line, char *reply, size_t reply_len)
{
    bool ok = false;
    char out[256];
    snprintf(reply, reply_len, "error: no answer");
    if (!d->proxy.available) {
        return false;
    }
    int fd = connect_control(d->proxy.control_port);
    int len = snprintf(out, sizeof out, "%s\n", line);
    if (fd >= 0 && write(fd, out, (size_t)len) == len && read_reply(fd, reply, reply_len)) {
        ok = strncmp(reply, "ok", 2) == 0;
    }
    if (fd >= 0) {
        close(fd);
    }
    if (!ok) {
        printf("chaos: proxy command \"%s\" answered \"%s\"\n", line, reply);
    }
    return ok;
}

/* Ends a partition; with all, also spends every rule still armed and releases held requests. */
void
proxy_heal(driver_t *d, bool all)
{
    char reply[256];
    if (d->proxy.available && procs_alive(d, d->proxy.child)) {
        proxy_command(d, all ? "heal" : "partition off", reply, sizeof reply);
    }
}

/* A rule the driver armed: its hits are polled so its event says when it struck. */
void
proxy_track_rule(driver_t *d, const char *reply)
{
    int id = 0;
    if (sscanf(reply, "ok rule=%d", &id) == 1 && d->proxy.n_rules < MAX_PROXY_RULES) {
        d->proxy.rules[d->proxy.n_rules++] = (proxy_rule_t){id, 0, chaos_real_ms()};
    }
}

/* Asks each armed rule how often it struck; a new hit becomes an event since the last poll. */
void
proxy_poll_hits(driver_t *d)
{
    char line[64], reply[256];
    long long hits = 0;
    int64_t now = chaos_real_ms();
    for (int i = 0; i < d->proxy.n_rules && d->proxy.available; i++) {
        proxy_rule_t *r = &d->proxy.rules[i];
        snprintf(line, sizeof line, "hits %d", r->id);
        if (r->id > 0 && proxy_command(d, line, reply, sizeof reply) &&
            sscanf(reply, "ok hits=%lld", &hits) == 1 && hits > r->hits) {
            driver_event(d, EV_PROXY, -1, now + 2000); /* a hang holds 2 s after it strikes */
            d->events[d->n_events - 1].from_real = r->polled_real;
            driver_count(d, "proxy rule hits", hits - r->hits);
            r->hits = hits;
        }
        r->polled_real = now;
    }
}

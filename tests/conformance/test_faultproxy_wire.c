/*
 * The fault proxy's wire framing, against a scripted fake upstream (no MongoDB server needed):
 * exhaust streams (one request, several replies with moreToCome), moreToCome requests (no
 * reply), the legacy OP_QUERY handshake's appName, the wildcard's exemptions, impossible
 * lengths, requests queued behind a hang or a lost reply, an unreachable upstream and the
 * connection limit. Raw sockets on both sides, so every byte is under the test's control.
 */
#include "cf_util.h"
#include "faultproxy.h"
#include "fp_util.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define OP_REPLY 1
#define OP_QUERY 2004
#define OP_MSG 2013
#define MORE_TO_COME (1u << 1)
#define EXHAUST_ALLOWED (1u << 16)
#define WAIT_MS 5000

/* --- messages ---------------------------------------------------------------------------- */

typedef struct {
    int32_t request_id;
    int32_t response_to;
    int32_t opcode;
    uint32_t flags;   /* OP_MSG only */
    char command[64]; /* first key of the body */
} wire_msg_t;

/* An OP_MSG (flags, body) or an OP_QUERY on admin.$cmd (query) or an OP_REPLY (one doc). */
static uint8_t *
build(int32_t opcode, int32_t request_id, int32_t response_to, uint32_t flags, const bson_t *doc,
      size_t *len)
{
    static const char ns[] = "admin.$cmd";
    size_t prefix = opcode == OP_MSG ? 5 : opcode == OP_QUERY ? 4 + sizeof ns + 8 : 20;
    *len = 16 + prefix + doc->len;
    uint8_t *m = bson_malloc0(*len);
    cf_put_i32(m, (int32_t)*len);
    cf_put_i32(m + 4, request_id);
    cf_put_i32(m + 8, response_to);
    cf_put_i32(m + 12, opcode);
    cf_put_i32(m + 16, (int32_t)flags);
    if (opcode == OP_QUERY) {
        memcpy(m + 20, ns, sizeof ns);
        cf_put_i32(m + 20 + sizeof ns + 4, -1);
    } else if (opcode == OP_REPLY) {
        cf_put_i32(m + 32, 1); /* numberReturned */
    }
    memcpy(m + 16 + prefix, bson_get_data(doc), doc->len);
    return m;
}

static void
send_all(int fd, const uint8_t *data, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < 1000 && off < len; i++) {
        ssize_t n = send(fd, data + off, len - off, MSG_NOSIGNAL);
        cr_assert(n > 0, "send: %s", strerror(errno));
        off += (size_t)n;
    }
    cr_assert_eq(off, len);
}

static void
send_msg(int fd, int32_t opcode, int32_t request_id, int32_t response_to, uint32_t flags,
         const char *json)
{
    size_t len = 0;
    bson_error_t error;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &error);
    cr_assert(doc, "%s: %s", json, error.message);
    uint8_t *m = build(opcode, request_id, response_to, flags, doc, &len);
    send_all(fd, m, len);
    bson_free(m);
    bson_destroy(doc);
}

/* Reads exactly len bytes within timeout_ms; false on end of file, reset or timeout. */
static bool
recv_exact(int fd, uint8_t *buf, size_t len, int timeout_ms)
{
    size_t off = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 10000 && off < len; i++) {
        if (poll(&pfd, 1, timeout_ms) != 1) {
            return false;
        }
        ssize_t n = recv(fd, buf + off, len - off, 0);
        if (n <= 0) {
            return false;
        }
        off += (size_t)n;
    }
    return off == len;
}

/* The first key of the message's document (OP_MSG body, OP_QUERY query, OP_REPLY doc). */
static void
read_command(const uint8_t *m, size_t len, wire_msg_t *msg)
{
    size_t at = msg->opcode == OP_MSG ? 21 : msg->opcode == OP_REPLY ? 36 : 0;
    if (msg->opcode == OP_QUERY) {
        at = 20 + strlen((const char *)m + 20) + 1 + 8;
    }
    bson_t doc;
    bson_iter_t it;
    if (at + 5 <= len && bson_init_static(&doc, m + at, len - at) && bson_iter_init(&it, &doc) &&
        bson_iter_next(&it)) {
        bson_strncpy(msg->command, bson_iter_key(&it), sizeof msg->command);
    }
}

static bool
recv_msg(int fd, wire_msg_t *msg, int timeout_ms)
{
    uint8_t header[16];
    memset(msg, 0, sizeof *msg);
    if (!recv_exact(fd, header, sizeof header, timeout_ms)) {
        return false;
    }
    int32_t len = cf_get_i32(header);
    cr_assert(len >= 21 && len < 1000000, "bad length %d", len);
    uint8_t *m = bson_malloc((size_t)len);
    memcpy(m, header, sizeof header);
    bool ok = recv_exact(fd, m + 16, (size_t)len - 16, timeout_ms);
    msg->request_id = cf_get_i32(m + 4);
    msg->response_to = cf_get_i32(m + 8);
    msg->opcode = cf_get_i32(m + 12);
    msg->flags = msg->opcode == OP_MSG ? (uint32_t)cf_get_i32(m + 16) : 0;
    if (ok) {
        read_command(m, (size_t)len, msg);
    }
    bson_free(m);
    return ok;
}

/* Whether the peer closed (end of file or reset) within timeout_ms, reading nothing else. */
static bool
closed_by_peer(int fd, int timeout_ms)
{
    uint8_t byte;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) != 1) {
        return false;
    }
    return recv(fd, &byte, 1, 0) <= 0;
}

static int
connect_to(uint16_t port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0, "connect: %s",
                 strerror(errno));
    return fd;
}

/* --- the fake upstream: one thread, one connection at a time ----------------------------- */

#define MAX_SEEN 64

typedef struct {
    int listen_fd;
    int stop_pipe[2];
    uint16_t port;
    pthread_t thread;
    pthread_mutex_t mu;
    wire_msg_t seen[MAX_SEEN]; /* requests received, in order */
    int n_seen;
} fake_server_t;

static fake_server_t fake;
static mongoq_faultproxy_t *proxy;

static void
record(const wire_msg_t *msg)
{
    pthread_mutex_lock(&fake.mu);
    if (fake.n_seen < MAX_SEEN) {
        fake.seen[fake.n_seen++] = *msg;
    }
    pthread_mutex_unlock(&fake.mu);
}

static int
seen_count(void)
{
    pthread_mutex_lock(&fake.mu);
    int n = fake.n_seen;
    pthread_mutex_unlock(&fake.mu);
    return n;
}

static wire_msg_t
seen_at(int i)
{
    pthread_mutex_lock(&fake.mu);
    wire_msg_t msg = fake.seen[i];
    pthread_mutex_unlock(&fake.mu);
    return msg;
}

/* The script: moreToCome gets nothing, exhaustAllowed three replies chained by responseTo
 * (moreToCome on the first two), OP_QUERY an OP_REPLY, anything else one OP_MSG reply. */
static void
answer(int fd, const wire_msg_t *req, int32_t *next_id)
{
    if (req->opcode == OP_MSG && (req->flags & MORE_TO_COME)) {
        return;
    }
    if (req->opcode == OP_QUERY) {
        send_msg(fd, OP_REPLY, (*next_id)++, req->request_id, 0, "{\"ok\": 1}");
        return;
    }
    int replies = (req->flags & EXHAUST_ALLOWED) ? 3 : 1;
    int32_t to = req->request_id;
    for (int i = 0; i < replies; i++) {
        char *json = bson_strdup_printf("{\"ok\": 1, \"n\": %d, \"cmd\": \"%s\"}", i, req->command);
        int32_t id = (*next_id)++;
        send_msg(fd, OP_MSG, id, to, i + 1 < replies ? MORE_TO_COME : 0, json);
        bson_free(json);
        to = id;
    }
}

/* Serves every connection at once: poll over the stop pipe, the port and the connections. */
#define FAKE_CONNS 8

typedef struct {
    int fds[FAKE_CONNS];
    int32_t next_id;
} fake_conns_t;

static void
fake_accept(fake_conns_t *conns)
{
    int fd = accept(fake.listen_fd, NULL, NULL);
    for (int i = 0; fd >= 0 && i < FAKE_CONNS; i++) {
        if (conns->fds[i] < 0) {
            conns->fds[i] = fd;
            return;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
}

static void
fake_serve(fake_conns_t *conns, int i)
{
    wire_msg_t req;
    if (!recv_msg(conns->fds[i], &req, WAIT_MS)) {
        close(conns->fds[i]);
        conns->fds[i] = -1;
        return;
    }
    record(&req);
    answer(conns->fds[i], &req, &conns->next_id);
}

static void *
fake_main(void *arg)
{
    fake_conns_t conns = {.next_id = 1000};
    struct pollfd pfds[2 + FAKE_CONNS];
    (void)arg;
    for (int i = 0; i < FAKE_CONNS; i++) {
        conns.fds[i] = -1;
    }
    for (int turn = 0; turn < 100000; turn++) {
        pfds[0] = (struct pollfd){.fd = fake.stop_pipe[0], .events = POLLIN};
        pfds[1] = (struct pollfd){.fd = fake.listen_fd, .events = POLLIN};
        for (int i = 0; i < FAKE_CONNS; i++) {
            pfds[2 + i] = (struct pollfd){.fd = conns.fds[i], .events = POLLIN};
        }
        if (poll(pfds, 2 + FAKE_CONNS, -1) < 0 || pfds[0].revents) {
            break;
        }
        for (int i = 0; i < FAKE_CONNS; i++) {
            if (pfds[2 + i].revents && conns.fds[i] >= 0) {
                fake_serve(&conns, i);
            }
        }
        if (pfds[1].revents) {
            fake_accept(&conns);
        }
    }
    for (int i = 0; i < FAKE_CONNS; i++) {
        if (conns.fds[i] >= 0) {
            close(conns.fds[i]);
        }
    }
    return NULL;
}

static void
fake_start(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof addr;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memset(&fake, 0, sizeof fake);
    pthread_mutex_init(&fake.mu, NULL);
    cr_assert_eq(pipe(fake.stop_pipe), 0);
    fake.listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(bind(fake.listen_fd, (struct sockaddr *)&addr, sizeof addr) == 0 &&
              listen(fake.listen_fd, 8) == 0 &&
              getsockname(fake.listen_fd, (struct sockaddr *)&addr, &len) == 0);
    fake.port = ntohs(addr.sin_port);
    cr_assert_eq(pthread_create(&fake.thread, NULL, fake_main, NULL), 0);
}

static void
fake_stop(void)
{
    cr_assert_eq(write(fake.stop_pipe[1], "s", 1), 1);
    pthread_join(fake.thread, NULL);
    close(fake.listen_fd);
    close(fake.stop_pipe[0]);
    close(fake.stop_pipe[1]);
    pthread_mutex_destroy(&fake.mu);
}

static void
start_proxy(const mongoq_faultproxy_opts_t *opts)
{
    bson_error_t error;
    char *upstream = bson_strdup_printf("127.0.0.1:%u", (unsigned)fake.port);
    proxy = mongoq_faultproxy_start(upstream, opts, &error);
    cr_assert(proxy, "start: %s", error.message);
    bson_free(upstream);
}

static void
setup(void)
{
    fake_start();
    start_proxy(NULL);
}

static void
teardown(void)
{
    mongoq_faultproxy_stop(proxy);
    fake_stop();
}

TestSuite(faultproxy_wire, .init = setup, .fini = teardown, .timeout = 30);

/* Sends {command: 1} as OP_MSG and asserts the one reply answers it. */
static void
round_trip(int fd, int32_t request_id, const char *command)
{
    wire_msg_t reply;
    char *json = bson_strdup_printf("{\"%s\": 1, \"$db\": \"admin\"}", command);
    send_msg(fd, OP_MSG, request_id, 0, 0, json);
    bson_free(json);
    cr_assert(recv_msg(fd, &reply, WAIT_MS), "no reply to %s", command);
    cr_assert_eq(reply.response_to, request_id);
}

/* --- tests -------------------------------------------------------------------------------- */

Test(faultproxy_wire, exhaust_stream_is_forwarded_whole)
{
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    wire_msg_t reply;
    int32_t to = 7;
    send_msg(fd, OP_MSG, 7, 0, EXHAUST_ALLOWED,
             "{\"hello\": 1, \"topologyVersion\": {}, \"maxAwaitTimeMS\": 1, \"$db\": \"admin\"}");
    for (int i = 0; i < 3; i++) {
        cr_assert(recv_msg(fd, &reply, WAIT_MS), "reply %d of the stream", i);
        cr_assert_eq(reply.response_to, to, "each reply answers the one before");
        cr_assert_eq((reply.flags & MORE_TO_COME) != 0, i < 2);
        to = reply.request_id;
    }
    mongoq_faultproxy_stats_t stats = fp_stats(proxy);
    cr_assert_eq(stats.requests_forwarded, 1);
    cr_assert_eq(stats.replies_forwarded, 3);
    cr_assert_eq(stats.exhaust_replies, 2);
    close(fd);
}

Test(faultproxy_wire, more_to_come_request_gets_no_reply_and_the_flow_goes_on)
{
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    send_msg(fd, OP_MSG, 1, 0, MORE_TO_COME, "{\"insert\": \"c\", \"$db\": \"d\"}");
    round_trip(fd, 2, "find");
    cr_assert_eq(seen_count(), 2);
    cr_assert_str_eq(seen_at(0).command, "insert");
    cr_assert_eq(fp_stats(proxy).requests_forwarded, 2);
    cr_assert_eq(fp_stats(proxy).replies_forwarded, 1);
    close(fd);
}

Test(faultproxy_wire, legacy_handshake_app_name_is_matched)
{
    int plain = connect_to(mongoq_faultproxy_port(proxy));
    int tagged = connect_to(mongoq_faultproxy_port(proxy));
    wire_msg_t reply;
    int32_t rule = fp_add_rule(proxy, MONGOQ_FAULT_DROP_REQUEST, "find", "wire-app", 1, 0);
    send_msg(tagged, OP_QUERY, 1, 0, 0,
             "{\"isMaster\": 1, \"client\": {\"application\": {\"name\": \"wire-app\"}}}");
    cr_assert(recv_msg(tagged, &reply, WAIT_MS) && reply.opcode == OP_REPLY);
    cr_assert_eq(reply.response_to, 1);
    round_trip(plain, 1, "find");
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 0, "no appName: not targeted");
    send_msg(tagged, OP_MSG, 2, 0, 0, "{\"find\": \"c\", \"$db\": \"d\"}");
    cr_assert(closed_by_peer(tagged, WAIT_MS), "the find of wire-app is dropped");
    mongoq_faultproxy_stats_t stats = fp_stats(proxy);
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 1);
    cr_assert_eq(stats.requests_dropped, 1);
    cr_assert_eq(stats.legacy_requests, 1);
    cr_assert_eq(mongoq_faultproxy_command_count(proxy, "find"), 2);
    close(plain);
    close(tagged);
}

Test(faultproxy_wire, wildcard_skips_handshake_and_monitoring_commands)
{
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    int32_t any = fp_add_rule(proxy, MONGOQ_FAULT_DROP_REQUEST, "*", NULL, 5, 0);
    const char *exempt[] = {"hello", "isMaster", "ismaster", "ping", "endSessions"};
    for (int i = 0; i < 5; i++) {
        round_trip(fd, i + 1, exempt[i]);
    }
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, any), 0);
    send_msg(fd, OP_MSG, 9, 0, 0, "{\"getMore\": 1, \"collection\": \"c\", \"$db\": \"d\"}");
    cr_assert(closed_by_peer(fd, WAIT_MS));
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, any), 1);
    close(fd);
    fd = connect_to(mongoq_faultproxy_port(proxy));
    int32_t named = fp_add_rule(proxy, MONGOQ_FAULT_DROP_REQUEST, "ping", NULL, 1, 0);
    send_msg(fd, OP_MSG, 1, 0, 0, "{\"ping\": 1, \"$db\": \"admin\"}");
    cr_assert(closed_by_peer(fd, WAIT_MS), "named, ping is targeted");
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, named), 1);
    close(fd);
}

Test(faultproxy_wire, impossible_length_closes_the_connection)
{
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    uint8_t header[16] = {0};
    cf_put_i32(header, 5);
    cf_put_i32(header + 12, OP_MSG);
    send_all(fd, header, sizeof header);
    cr_assert(closed_by_peer(fd, WAIT_MS));
    cr_assert_eq(fp_stats(proxy).connections_closed, 1);
    cr_assert_eq(seen_count(), 0, "nothing reached the server");
    close(fd);
}

Test(faultproxy_wire, lost_reply_closes_and_later_requests_never_go)
{
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    int32_t rule = fp_add_rule(proxy, MONGOQ_FAULT_DROP_REPLY, "find", NULL, 1, 0);
    size_t len_a = 0, len_b = 0;
    bson_t *find = BCON_NEW("find", "c", "$db", "d");
    bson_t *ping = BCON_NEW("ping", BCON_INT32(1), "$db", "admin");
    uint8_t *a = build(OP_MSG, 1, 0, 0, find, &len_a);
    uint8_t *b = build(OP_MSG, 2, 0, 0, ping, &len_b);
    uint8_t *both = bson_malloc(len_a + len_b);
    memcpy(both, a, len_a);
    memcpy(both + len_a, b, len_b);
    send_all(fd, both, len_a + len_b); /* in one segment: the ping is behind the lost reply */
    cr_assert(closed_by_peer(fd, WAIT_MS), "no reply, then the connection closes");
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 1);
    cr_assert_eq(fp_stats(proxy).replies_dropped, 1, "the server's reply was read and dropped");
    cr_assert_eq(seen_count(), 1, "the find reached the server, the ping did not");
    cr_assert_str_eq(seen_at(0).command, "find");
    bson_free(both);
    bson_free(a);
    bson_free(b);
    bson_destroy(find);
    bson_destroy(ping);
    close(fd);
}

Test(faultproxy_wire, lost_reply_of_a_more_to_come_request_closes_once_sent)
{
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    fp_add_rule(proxy, MONGOQ_FAULT_DROP_REPLY, "insert", NULL, 1, 0);
    send_msg(fd, OP_MSG, 1, 0, MORE_TO_COME, "{\"insert\": \"c\", \"$db\": \"d\"}");
    cr_assert(closed_by_peer(fd, WAIT_MS));
    mongoq_faultproxy_stats_t stats = fp_stats(proxy);
    cr_assert_eq(stats.connections_closed, 1);
    cr_assert_eq(stats.replies_dropped, 0, "there was no reply to drop");
    cr_assert_eq(stats.requests_forwarded, 1);
    close(fd);
}

Test(faultproxy_wire, hang_holds_later_requests_in_order)
{
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    wire_msg_t reply;
    fp_add_rule(proxy, MONGOQ_FAULT_HANG, "find", NULL, 1, 300);
    send_msg(fd, OP_MSG, 1, 0, 0, "{\"find\": \"c\", \"$db\": \"d\"}");
    send_msg(fd, OP_MSG, 2, 0, 0, "{\"ping\": 1, \"$db\": \"admin\"}");
    cr_assert_not(recv_msg(fd, &reply, 150), "nothing is answered during the hang");
    cr_assert_eq(seen_count(), 0, "nothing is forwarded during the hang");
    cr_assert(recv_msg(fd, &reply, WAIT_MS) && reply.response_to == 1, "the find, first");
    cr_assert(recv_msg(fd, &reply, WAIT_MS) && reply.response_to == 2, "then the ping");
    cr_assert_eq(fp_stats(proxy).requests_held, 1);
    close(fd);
}

Test(faultproxy_wire, clear_releases_a_hang_until_cleared)
{
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    wire_msg_t reply;
    bson_error_t error;
    fp_add_rule(proxy, MONGOQ_FAULT_HANG, "find", NULL, 1, 0);
    send_msg(fd, OP_MSG, 1, 0, 0, "{\"find\": \"c\", \"$db\": \"d\"}");
    cr_assert_not(recv_msg(fd, &reply, 300), "held until cleared");
    cr_assert_eq(fp_stats(proxy).requests_held, 1);
    cr_assert(mongoq_faultproxy_clear(proxy, &error), "%s", error.message);
    cr_assert(recv_msg(fd, &reply, WAIT_MS) && reply.response_to == 1);
    close(fd);
}

Test(faultproxy_wire, unreachable_upstream_closes_the_client)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof addr;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int dead = socket(AF_INET, SOCK_STREAM, 0); /* bound, never listening: connect is refused */
    cr_assert(bind(dead, (struct sockaddr *)&addr, sizeof addr) == 0 &&
              getsockname(dead, (struct sockaddr *)&addr, &len) == 0);
    char *upstream = bson_strdup_printf("localhost:%u", (unsigned)ntohs(addr.sin_port));
    mongoq_faultproxy_stop(proxy);
    proxy = mongoq_faultproxy_start(upstream, NULL, NULL);
    cr_assert(proxy);
    int fd = connect_to(mongoq_faultproxy_port(proxy));
    cr_assert(closed_by_peer(fd, WAIT_MS));
    cr_assert_eq(fp_stats(proxy).connections_closed, 1);
    close(fd);
    close(dead);
    bson_free(upstream);
}

Test(faultproxy_wire, connections_beyond_the_limit_are_reset)
{
    mongoq_faultproxy_opts_t opts = MONGOQ_FAULTPROXY_OPTS_INIT;
    opts.max_connections = 1;
    mongoq_faultproxy_stop(proxy);
    start_proxy(&opts);
    int first = connect_to(mongoq_faultproxy_port(proxy));
    round_trip(first, 1, "ping");
    int second = connect_to(mongoq_faultproxy_port(proxy));
    cr_assert(closed_by_peer(second, WAIT_MS));
    cr_assert_eq(fp_stats(proxy).connections_refused, 1);
    round_trip(first, 2, "ping");
    close(second);
    close(first);
}

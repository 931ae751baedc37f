/*
 * MongoDB's wire protocol, both ways: requests from drivers (OP_MSG with kind-0 and kind-1
 * sections, OP_QUERY for the first handshake) and replies to them (OP_MSG, OP_REPLY); commands to
 * the shards (OP_MSG, one kind-0 section) and their replies. A length that does not add up ends
 * the connection.
 */
#include "router.h"
#include "wire_frame.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_MESSAGE (48 * 1000 * 1000)

/* Reads a whole message: *msg (bson_malloc) holds it from the header on. */
static bool
read_message(int fd, uint8_t **msg, int32_t *len)
{
    uint8_t header[MTW_HEADER_LEN];
    if (!mtw_read_full(fd, header, sizeof header)) {
        return false;
    }
    *len = mtw_get_i32(header);
    if (*len < MTW_HEADER_LEN + 5 || *len > MAX_MESSAGE) {
        return false;
    }
    *msg = bson_malloc((size_t)*len);
    memcpy(*msg, header, sizeof header);
    if (!mtw_read_full(fd, *msg + MTW_HEADER_LEN, (size_t)*len - MTW_HEADER_LEN)) {
        bson_free(*msg);
        *msg = NULL;
        return false;
    }
    return true;
}

/* A BSON document at p within end: its length, or 0 when it does not fit. */
static uint32_t
doc_at(const uint8_t *p, const uint8_t *end)
{
    if (end - p < 5) {
        return 0;
    }
    int32_t n = mtw_get_i32(p);
    return n >= 5 && n <= end - p ? (uint32_t)n : 0;
}

/* A kind-1 section: {size, identifier, documents...} folded into body as an array. */
static bool
fold_sequence(const uint8_t *p, const uint8_t *end, bson_t *seqs)
{
    const char *ident = (const char *)p + 4;
    const uint8_t *q = memchr(ident, 0, (size_t)(end - (const uint8_t *)ident));
    if (!q) {
        return false;
    }
    bson_t arr;
    char key[24];
    uint32_t k = 0;
    BSON_APPEND_ARRAY_BEGIN(seqs, ident, &arr);
    for (q++; q < end; k++) {
        uint32_t n = doc_at(q, end);
        bson_t doc;
        if (!n || !bson_init_static(&doc, q, n)) {
            return false;
        }
        snprintf(key, sizeof key, "%u", k);
        BSON_APPEND_DOCUMENT(&arr, key, &doc);
        q += n;
    }
    bson_append_array_end(seqs, &arr);
    return true;
}

static bool
parse_op_msg(const uint8_t *msg, int32_t len, mr_request_t *req)
{
    uint32_t flags = (uint32_t)mtw_get_i32(msg + MTW_HEADER_LEN);
    const uint8_t *p = msg + MTW_HEADER_LEN + 4;
    const uint8_t *end = msg + len - ((flags & MTW_FLAG_CHECKSUM) ? 4 : 0);
    bson_t seqs = BSON_INITIALIZER;
    bool have_body = false;
    bool ok = true;
    req->more_to_come = (flags & MTW_FLAG_MORE_TO_COME) != 0;
    while (ok && p < end) {
        uint8_t kind = *p++;
        uint32_t n = doc_at(p, end);
        if (kind == 0 && n && !have_body) {
            bson_t body;
            ok = bson_init_static(&body, p, n);
            if (ok) {
                bson_copy_to(&body, &req->cmd);
                have_body = true;
            }
        } else if (kind == 1 && n) {
            ok = fold_sequence(p, p + n, &seqs);
        } else {
            ok = false;
        }
        p += n;
    }
    if (ok && have_body) {
        bson_concat(&req->cmd, &seqs);
    }
    if (!have_body) {
        bson_init(&req->cmd);
    }
    bson_destroy(&seqs);
    return ok && have_body;
}

/* OP_QUERY on <db>.$cmd: flags, name, skip, return, query. The query is the command. */
static bool
parse_op_query(const uint8_t *msg, int32_t len, mr_request_t *req)
{
    const uint8_t *end = msg + len;
    const char *name = (const char *)msg + MTW_HEADER_LEN + 4;
    const uint8_t *q = memchr(name, 0, (size_t)(end - (const uint8_t *)name));
    if (!q || end - q < 9) {
        return false;
    }
    q += 9;
    uint32_t n = doc_at(q, end);
    bson_t query;
    if (!n || !bson_init_static(&query, q, n)) {
        return false;
    }
    bson_iter_t it;
    bson_init(&req->cmd);
    if (bson_iter_init_find(&it, &query, "$query") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t dl;
        const uint8_t *d;
        bson_t inner;
        bson_iter_document(&it, &dl, &d);
        if (bson_init_static(&inner, d, dl)) {
            bson_concat(&req->cmd, &inner);
        }
    } else {
        bson_concat(&req->cmd, &query);
    }
    const char *dot = strchr(name, '.');
    if (dot && !bson_has_field(&req->cmd, "$db")) {
        bson_append_utf8(&req->cmd, "$db", 3, name, (int)(dot - name));
    }
    req->legacy = true;
    return true;
}

bool
mr_wire_read_request(int fd, mr_request_t *req)
{
    uint8_t *msg = NULL;
    int32_t len = 0;
    memset(req, 0, sizeof *req);
    bson_init(&req->cmd);
    if (!read_message(fd, &msg, &len)) {
        return false;
    }
    bson_destroy(&req->cmd);
    req->request_id = mtw_get_i32(msg + 4);
    int32_t opcode = mtw_get_i32(msg + 12);
    bool ok = opcode == MTW_OP_MSG    ? parse_op_msg(msg, len, req)
              : opcode == MTW_OP_QUERY ? parse_op_query(msg, len, req)
                                   : (bson_init(&req->cmd), false);
    bson_free(msg);
    return ok;
}

void
mr_request_destroy(mr_request_t *req)
{
    bson_destroy(&req->cmd);
}

bool
mr_wire_send_reply(int fd, const mr_request_t *req, const bson_t *reply)
{
    static int32_t next_id = 1;
    int32_t id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
    return mtw_send_doc(fd, id, req->request_id, req->legacy, reply);
}

/* ---- to the shards ------------------------------------------------------------------------ */

static bool
conn_open(mr_conn_t *conn, const char *host_port, bson_error_t *error)
{
    char host[96];
    snprintf(host, sizeof host, "%s", host_port);
    char *colon = strrchr(host, ':');
    if (!colon) {
        return ms_set_error(error, 6, "bad shard address %s", host_port);
    }
    *colon = '\0';
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        return ms_set_error(error, 6, "cannot connect to shard at %s", host_port);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    conn->fd = fd;
    return true;
}

bool
mr_conn_run(mr_conn_t *conn, const char *host_port, const bson_t *cmd, bson_t *reply,
            bson_error_t *error)
{
    uint8_t *msg = NULL;
    int32_t len = 0;
    mr_request_t parsed;
    bson_init(reply);
    if (conn->fd < 0 && !conn_open(conn, host_port, error)) {
        return false;
    }
    int32_t id = ++conn->next_id;
    if (!mtw_send_doc(conn->fd, id, 0, false, cmd) || !read_message(conn->fd, &msg, &len) ||
        mtw_get_i32(msg + 12) != MTW_OP_MSG || mtw_get_i32(msg + 8) != id) {
        bson_free(msg);
        mr_conn_close(conn);
        return ms_set_error(error, 6, "lost the connection to the shard at %s", host_port);
    }
    memset(&parsed, 0, sizeof parsed);
    bool ok = parse_op_msg(msg, len, &parsed);
    bson_free(msg);
    if (!ok) {
        mr_request_destroy(&parsed);
        mr_conn_close(conn);
        return ms_set_error(error, 6, "malformed reply from the shard at %s", host_port);
    }
    bson_destroy(reply);
    bson_steal(reply, &parsed.cmd);
    return true;
}

void
mr_conn_close(mr_conn_t *conn)
{
    if (conn->fd >= 0) {
        close(conn->fd);
    }
    conn->fd = -1;
}

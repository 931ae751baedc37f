/*
 * One proxied connection: the client's socket, the upstream socket, and a buffer each way.
 * Bytes read are framed into messages; a complete request is matched against the rules and
 * either forwarded (marked ready) or handed to its fault (faults.c). Replies are forwarded as
 * they come, exhaust streams included (one request, several replies with moreToCome), unless a
 * lost reply is being staged. Only the proxy thread calls these functions.
 */
#include "faultproxy-private.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_CHUNK 65536
/* Decided bytes waiting for a slow peer: stop reading this side beyond this. */
#define PENDING_LIMIT (4 * 1024 * 1024)
/* Undecided bytes (a partial message, or requests behind a hang): one message at most. */
#define UNDECIDED_LIMIT ((size_t)FP_MAX_MESSAGE + READ_CHUNK)

typedef enum { IO_OK, IO_AGAIN, IO_CLOSED } io_result_t;

static bool
may_read(const fp_buf_t *buf)
{
    return buf->ready < PENDING_LIMIT && buf->len - buf->ready < UNDECIDED_LIMIT;
}

static io_result_t
read_into(int fd, fp_buf_t *buf)
{
    if (buf->cap - buf->len < READ_CHUNK) {
        buf->cap = buf->cap ? buf->cap * 2 : 2 * READ_CHUNK;
        buf->data = bson_realloc(buf->data, buf->cap);
    }
    ssize_t n = recv(fd, buf->data + buf->len, buf->cap - buf->len, 0);
    if (n > 0) {
        buf->len += (size_t)n;
        return IO_OK;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? IO_AGAIN
                                                                                : IO_CLOSED;
}

/* Removes n bytes at the head of the buffer (written) or at buf->ready (discarded). */
static void
buf_remove(fp_buf_t *buf, size_t at, size_t n)
{
    memmove(buf->data + at, buf->data + at + n, buf->len - at - n);
    buf->len -= n;
    if (at < buf->ready) {
        buf->ready -= n;
    }
}

static io_result_t
write_from(int fd, fp_buf_t *buf)
{
    if (buf->ready == 0) {
        return IO_OK;
    }
    ssize_t n = send(fd, buf->data, buf->ready, MSG_NOSIGNAL);
    if (n > 0) {
        buf_remove(buf, 0, (size_t)n);
        return IO_OK;
    }
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? IO_AGAIN
                                                                                : IO_CLOSED;
}

/* The complete message at buf->ready, if there is one; *bad when its length is impossible. */
static bool
next_message(const fp_buf_t *buf, fp_header_t *header, bool *bad)
{
    size_t undecided = buf->len - buf->ready;
    *bad = false;
    if (undecided < FP_HEADER_LEN) {
        return false;
    }
    if (!fp_wire_header(buf->data + buf->ready, header)) {
        *bad = true;
        return false;
    }
    return undecided >= (size_t)header->length;
}

static void
set_socket_options(int fd)
{
    int one = 1;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void
fp_conn_open(mongoq_faultproxy_t *proxy, fp_conn_t *conn, int client_fd)
{
    memset(conn, 0, sizeof *conn);
    conn->in_use = true;
    conn->client_fd = client_fd;
    conn->server_fd = socket(AF_INET, SOCK_STREAM, 0);
    fp_count(proxy, &proxy->stats.connections_accepted, 1);
    fp_count(proxy, &proxy->stats.connections_open, 1);
    set_socket_options(client_fd);
    if (conn->server_fd < 0) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY);
        return;
    }
    set_socket_options(conn->server_fd);
    if (connect(conn->server_fd, (const struct sockaddr *)&proxy->upstream,
                sizeof proxy->upstream) == 0) {
        return;
    }
    if (errno != EINPROGRESS) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY); /* the upstream is unreachable */
        return;
    }
    conn->connecting = true;
}

/* A reset rather than a FIN, so the client fails at once instead of reading an end of file. */
static void
close_with_reset(int fd)
{
    struct linger lin = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lin, sizeof lin);
    close(fd);
}

void
fp_conn_close(mongoq_faultproxy_t *proxy, fp_conn_t *conn, fp_close_why_t why)
{
    if (!conn->in_use) {
        return;
    }
    /* Counted first: a test that sees the connection close finds the counter already up. */
    fp_count(proxy, &proxy->stats.connections_open, -1);
    if (why == FP_CLOSE_BY_PROXY) {
        fp_count(proxy, &proxy->stats.connections_closed, 1);
    }
    if (conn->client_fd >= 0 && why == FP_CLOSE_BY_PROXY) {
        close_with_reset(conn->client_fd);
    } else if (conn->client_fd >= 0) {
        close(conn->client_fd);
    }
    if (conn->server_fd >= 0) {
        close(conn->server_fd);
    }
    bson_free(conn->up.data);
    bson_free(conn->down.data);
    memset(conn, 0, sizeof *conn);
    conn->client_fd = -1;
    conn->server_fd = -1;
}

short
fp_conn_client_events(const fp_conn_t *conn)
{
    short events = 0;
    if (!conn->dropping && may_read(&conn->up)) {
        events |= POLLIN;
    }
    if (conn->down.ready > 0) {
        events |= POLLOUT;
    }
    return events;
}

short
fp_conn_server_events(const fp_conn_t *conn)
{
    short events = 0;
    if (conn->connecting) {
        return POLLOUT;
    }
    if (may_read(&conn->down)) {
        events |= POLLIN;
    }
    if (conn->up.ready > 0) {
        events |= POLLOUT;
    }
    return events;
}

void
fp_conn_forward_request(mongoq_faultproxy_t *proxy, fp_conn_t *conn, const fp_msg_t *msg)
{
    conn->up.ready += (size_t)msg->header.length;
    fp_count(proxy, &proxy->stats.requests_forwarded, 1);
    if (msg->header.opcode == FP_OP_QUERY) {
        fp_count(proxy, &proxy->stats.legacy_requests, 1);
    }
}

/* Decides the fate of the complete request at up.ready. */
static void
decide_request(mongoq_faultproxy_t *proxy, fp_conn_t *conn, const fp_msg_t *msg)
{
    fp_hit_t hit;
    if (msg->has_app_name) {
        bson_strncpy(conn->app_name, msg->app_name, sizeof conn->app_name);
    }
    if (conn->forward_next) { /* a held request, already matched and counted */
        conn->forward_next = false;
        fp_conn_forward_request(proxy, conn, msg);
    } else if (fp_match_request(proxy, msg, conn->app_name, &hit)) {
        fp_fault_by_kind(hit.kind)->apply(proxy, conn, msg, &hit);
    } else {
        fp_conn_forward_request(proxy, conn, msg);
    }
}

/* Every complete request, in order, until a fault stops the flow (at most len / 16 turns). */
static void
process_requests(mongoq_faultproxy_t *proxy, fp_conn_t *conn)
{
    fp_header_t header;
    fp_msg_t msg;
    bool bad = false;
    while (conn->in_use && !conn->held && !conn->dropping &&
           next_message(&conn->up, &header, &bad)) {
        fp_wire_inspect(conn->up.data + conn->up.ready, &header, &msg);
        decide_request(proxy, conn, &msg);
    }
    if (bad) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY);
    }
}

/* While a lost reply is staged, server messages are discarded up to the awaited reply. */
static void
drop_reply(mongoq_faultproxy_t *proxy, fp_conn_t *conn, const fp_header_t *header)
{
    if (header->response_to == conn->drop_reply_to) {
        fp_count(proxy, &proxy->stats.replies_dropped, 1);
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY);
        return;
    }
    buf_remove(&conn->down, conn->down.ready, (size_t)header->length);
}

static void
forward_reply(mongoq_faultproxy_t *proxy, fp_conn_t *conn, const fp_header_t *header)
{
    const uint8_t *msg = conn->down.data + conn->down.ready;
    conn->down.ready += (size_t)header->length;
    fp_count(proxy, &proxy->stats.replies_forwarded, 1);
    if (header->opcode == FP_OP_MSG && header->length >= FP_HEADER_LEN + 4 &&
        (msg[FP_HEADER_LEN] & FP_MSG_MORE_TO_COME)) {
        fp_count(proxy, &proxy->stats.exhaust_replies, 1);
    }
}

static void
process_replies(mongoq_faultproxy_t *proxy, fp_conn_t *conn)
{
    fp_header_t header;
    bool bad = false;
    while (conn->in_use && next_message(&conn->down, &header, &bad)) {
        if (conn->dropping) {
            drop_reply(proxy, conn, &header);
        } else {
            forward_reply(proxy, conn, &header);
        }
    }
    if (bad) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY);
    }
}

/* The client left. A staged lost reply still waits for the server (the request may be on its
 * way); anything else closes the pair. */
static void
client_gone(mongoq_faultproxy_t *proxy, fp_conn_t *conn)
{
    if (!conn->dropping) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PEER);
        return;
    }
    close(conn->client_fd);
    conn->client_fd = -1;
}

void
fp_conn_on_client(mongoq_faultproxy_t *proxy, fp_conn_t *conn, short revents)
{
    if ((revents & POLLOUT) && write_from(conn->client_fd, &conn->down) == IO_CLOSED) {
        client_gone(proxy, conn);
        return;
    }
    if (conn->dropping) { /* nothing more is read from this client */
        if (revents & (POLLHUP | POLLERR)) {
            client_gone(proxy, conn);
        }
        return;
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR))) {
        return;
    }
    if (read_into(conn->client_fd, &conn->up) == IO_CLOSED) {
        client_gone(proxy, conn);
        return;
    }
    process_requests(proxy, conn);
}

static void
finish_connect(mongoq_faultproxy_t *proxy, fp_conn_t *conn)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(conn->server_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY); /* the upstream is unreachable */
        return;
    }
    conn->connecting = false;
}

static void
write_requests(mongoq_faultproxy_t *proxy, fp_conn_t *conn)
{
    if (write_from(conn->server_fd, &conn->up) == IO_CLOSED) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PEER);
    } else if (conn->dropping && conn->drop_expects_no_reply && conn->up.ready == 0) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY); /* sent; no reply will come to drop */
    }
}

void
fp_conn_on_server(mongoq_faultproxy_t *proxy, fp_conn_t *conn, short revents)
{
    if (conn->connecting) {
        if (revents) {
            finish_connect(proxy, conn);
        }
        return;
    }
    if (revents & POLLOUT) {
        write_requests(proxy, conn);
    }
    if (!conn->in_use || !(revents & (POLLIN | POLLHUP | POLLERR))) {
        return;
    }
    if (read_into(conn->server_fd, &conn->down) == IO_CLOSED) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PEER);
        return;
    }
    process_replies(proxy, conn);
}

int64_t
fp_conn_deadline(const fp_conn_t *conn)
{
    int64_t deadline = INT64_MAX;
    if (conn->held) {
        deadline = conn->held_until_ms;
    }
    if (conn->dropping && conn->drop_deadline_ms < deadline) {
        deadline = conn->drop_deadline_ms;
    }
    return deadline;
}

void
fp_conn_release(mongoq_faultproxy_t *proxy, fp_conn_t *conn)
{
    if (!conn->held) {
        return;
    }
    conn->held = false;
    conn->forward_next = true;
    process_requests(proxy, conn);
}

void
fp_conn_on_time(mongoq_faultproxy_t *proxy, fp_conn_t *conn, int64_t now_ms)
{
    if (conn->held && now_ms >= conn->held_until_ms) {
        fp_conn_release(proxy, conn);
    }
    if (conn->in_use && conn->dropping && now_ms >= conn->drop_deadline_ms) {
        fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY); /* the reply never came */
    }
}

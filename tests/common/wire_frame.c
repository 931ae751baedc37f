/* MongoDB's wire framing for the test server and the test router (wire_frame.h). */
#include "wire_frame.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int32_t
mtw_get_i32(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t out;
    memcpy(&out, &v, sizeof out);
    return out;
}

void
mtw_put_i32(uint8_t *p, int32_t v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int k = 0; k < 4; k++) {
        p[k] = (uint8_t)(u >> (8 * k));
    }
}

bool
mtw_read_full(int fd, uint8_t *buf, size_t len)
{
    size_t got = 0;
    /* Bounded by len: each pass reads at least one byte or ends. */
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        got += (size_t)n;
    }
    return true;
}

bool
mtw_write_full(int fd, const uint8_t *buf, size_t len)
{
    size_t sent = 0;
    while (sent < len) {
        ssize_t n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        sent += (size_t)n;
    }
    return true;
}

bool
mtw_send_doc(int fd, int32_t request_id, int32_t response_to, bool op_reply, const bson_t *doc)
{
    size_t head = op_reply ? MTW_HEADER_LEN + 20 : MTW_HEADER_LEN + 4 + 1;
    size_t len = head + doc->len;
    uint8_t *buf = bson_malloc0(len);
    mtw_put_i32(buf, (int32_t)len);
    mtw_put_i32(buf + 4, request_id);
    mtw_put_i32(buf + 8, response_to);
    mtw_put_i32(buf + 12, op_reply ? MTW_OP_REPLY : MTW_OP_MSG);
    if (op_reply) {
        mtw_put_i32(buf + 32, 1); /* responseFlags, cursorID, startingFrom 0; numberReturned */
    } /* else flagBits 0, section kind 0 (bson_malloc0) */
    memcpy(buf + head, bson_get_data(doc), doc->len);
    bool ok = mtw_write_full(fd, buf, len);
    bson_free(buf);
    return ok;
}

bool
mtw_listen(const char *addr, int port, int *fd, int *port_out, char *reason, size_t reason_len)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    socklen_t sl = sizeof sa;
    int one = 1;
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        snprintf(reason, reason_len, "invalid address '%s' (IPv4 only)", addr);
        return false;
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s >= 0) {
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(s, 128) != 0 ||
        getsockname(s, (struct sockaddr *)&sa, &sl) != 0) {
        snprintf(reason, reason_len, "%s", strerror(errno));
        if (s >= 0) {
            close(s);
        }
        return false;
    }
    *fd = s;
    *port_out = ntohs(sa.sin_port);
    return true;
}

void
mtw_announce_uri(const char *hosts, const char *set)
{
    if (set) {
        printf("mongodb://%s/?replicaSet=%s\n", hosts, set);
    } else {
        printf("mongodb://%s/\n", hosts);
    }
    fflush(stdout);
}

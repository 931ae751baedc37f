/*
 * MongoDB's wire framing, shared by the test server (tests/server/wire.c) and the test router
 * (tests/router/wire.c): the 16-byte header, little-endian integers, whole reads and writes on a
 * socket, one-document reply frames (OP_MSG kind 0, or OP_REPLY for the OP_QUERY handshake), and
 * the start-up both programs share: a TCP listener on a loopback port (0: a free one) and the URI
 * printed as the first line on stdout. Parsing requests stays with each program (the server checks
 * more than the router needs). Test infrastructure only; nothing under src/ uses it.
 */
#ifndef MONGOQ_TESTS_WIRE_FRAME_H
#define MONGOQ_TESTS_WIRE_FRAME_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTW_OP_REPLY 1
#define MTW_OP_QUERY 2004
#define MTW_OP_MSG 2013
#define MTW_HEADER_LEN 16
#define MTW_FLAG_CHECKSUM 1u
#define MTW_FLAG_MORE_TO_COME 2u

int32_t mtw_get_i32(const uint8_t *p);
void mtw_put_i32(uint8_t *p, int32_t v);

/* Exactly len bytes (EINTR retried); false on EOF or an error. */
bool mtw_read_full(int fd, uint8_t *buf, size_t len);
bool mtw_write_full(int fd, const uint8_t *buf, size_t len);

/* One frame carrying doc: OP_MSG (flags 0, one kind-0 section) or, with op_reply, OP_REPLY
 * (flags 0, cursor 0, from 0, one document). */
bool mtw_send_doc(int fd, int32_t request_id, int32_t response_to, bool op_reply,
                  const bson_t *doc);

/* Listens on addr (IPv4) and port (0: a free one): *fd and *port_out on success; false with
 * reason (errno's text, or "invalid address") otherwise. */
bool mtw_listen(const char *addr, int port, int *fd, int *port_out, char *reason,
                size_t reason_len);

/* Prints "mongodb://<hosts>/" (with "?replicaSet=<set>" when set is not NULL) as a line on
 * stdout and flushes it: a launcher reads the first line to learn where to connect. */
void mtw_announce_uri(const char *hosts, const char *set);

#endif

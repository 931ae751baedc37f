/*
 * MongoDB wire framing, read only as far as rules need: the 16-byte header, the OP_MSG flag
 * bits, the command name (first key of the OP_MSG body section, kind 0, or of an OP_QUERY on
 * "<db>.$cmd") and a handshake's client.application.name. Everything is little-endian.
 * Malformed content is never an error here: the message is forwarded unmatched and the server
 * judges it; only an impossible messageLength stops the connection (fp_wire_header).
 */
#include "faultproxy-private.h"

#include <string.h>
#include <strings.h>

static int32_t
read_i32(const uint8_t *p)
{
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (int32_t)v;
}

bool
fp_wire_header(const uint8_t *data, fp_header_t *header)
{
    header->length = read_i32(data);
    header->request_id = read_i32(data + 4);
    header->response_to = read_i32(data + 8);
    header->opcode = read_i32(data + 12);
    return header->length >= FP_HEADER_LEN && header->length <= FP_MAX_MESSAGE;
}

/* A BSON document at p with at most avail bytes; false if its length does not fit. */
static bool
doc_at(const uint8_t *p, size_t avail, bson_t *doc)
{
    if (avail < 5) {
        return false;
    }
    int32_t len = read_i32(p);
    return len >= 5 && (size_t)len <= avail && bson_init_static(doc, p, (size_t)len);
}

/* The OP_MSG body section (kind 0), wherever it is among the sections. */
static bool
op_msg_body(const uint8_t *data, const fp_header_t *header, uint32_t flags, bson_t *body)
{
    size_t end = (size_t)header->length - ((flags & FP_MSG_CHECKSUM_PRESENT) ? 4 : 0);
    size_t pos = FP_HEADER_LEN + 4;
    for (int section = 0; section < 1024 && pos < end; section++) {
        uint8_t kind = data[pos++];
        if (kind == 0) {
            return doc_at(data + pos, end - pos, body);
        }
        if (kind != 1 || end - pos < 4) {
            return false;
        }
        int32_t size = read_i32(data + pos);
        if (size < 4 || (size_t)size > end - pos) {
            return false;
        }
        pos += (size_t)size;
    }
    return false;
}

/* The command of an OP_QUERY on "<db>.$cmd", unwrapped from {$query: ...} if need be. */
static bool
op_query_command(const uint8_t *data, const fp_header_t *header, bson_t *cmd)
{
    size_t end = (size_t)header->length;
    size_t pos = FP_HEADER_LEN + 4;
    const uint8_t *nul = pos < end ? memchr(data + pos, 0, end - pos) : NULL;
    if (!nul) {
        return false;
    }
    size_t name_len = (size_t)(nul - (data + pos));
    if (name_len < 5 || memcmp(nul - 5, ".$cmd", 5) != 0) {
        return false;
    }
    pos += name_len + 1 + 8; /* the name, numberToSkip, numberToReturn */
    if (pos >= end || !doc_at(data + pos, end - pos, cmd)) {
        return false;
    }
    bson_iter_t it;
    uint32_t len = 0;
    const uint8_t *inner = NULL;
    if (bson_iter_init(&it, cmd) && bson_iter_next(&it) && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        (strcmp(bson_iter_key(&it), "$query") == 0 || strcmp(bson_iter_key(&it), "query") == 0)) {
        bson_iter_document(&it, &len, &inner);
        return bson_init_static(cmd, inner, len);
    }
    return true;
}

static bool
is_handshake(const char *command)
{
    return strcasecmp(command, "hello") == 0 || strcasecmp(command, "isMaster") == 0;
}

static void
read_command(const bson_t *cmd, fp_msg_t *msg)
{
    bson_iter_t it, name;
    if (!bson_iter_init(&it, cmd) || !bson_iter_next(&it)) {
        return;
    }
    bson_strncpy(msg->command, bson_iter_key(&it), sizeof msg->command);
    if (is_handshake(msg->command) && bson_iter_init(&it, cmd) &&
        bson_iter_find_descendant(&it, "client.application.name", &name) &&
        BSON_ITER_HOLDS_UTF8(&name)) {
        bson_strncpy(msg->app_name, bson_iter_utf8(&name, NULL), sizeof msg->app_name);
        msg->has_app_name = true;
    }
}

void
fp_wire_inspect(const uint8_t *data, const fp_header_t *header, fp_msg_t *msg)
{
    bson_t cmd;
    memset(msg, 0, sizeof *msg);
    msg->header = *header;
    if (header->length < FP_HEADER_LEN + 4) {
        return;
    }
    if (header->opcode == FP_OP_MSG) {
        msg->flags = (uint32_t)read_i32(data + FP_HEADER_LEN);
        if (op_msg_body(data, header, msg->flags, &cmd)) {
            read_command(&cmd, msg);
        }
    } else if (header->opcode == FP_OP_QUERY && op_query_command(data, header, &cmd)) {
        read_command(&cmd, msg);
    }
}

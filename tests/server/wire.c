/*
 * MongoDB's wire protocol: OP_MSG (2013) with kind-0/kind-1 sections and the optional CRC-32C,
 * and OP_QUERY (2004) / OP_REPLY (1) for the first handshake. Anything malformed closes the
 * connection (the caller logs the reason); nothing here trusts a length it has not checked.
 */
#include "server-private.h"
#include "wire_frame.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#define FLAG_EXHAUST 0x10000u

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        crc_table[i] = c;
    }
}

uint32_t
ms_crc32c(const uint8_t *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < len; i++) {
        c = crc_table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

/* A BSON document at p with at most avail bytes: its checked length, or 0 when invalid. */
static uint32_t
doc_at(const uint8_t *p, size_t avail, bson_t *out)
{
    if (avail < 5) {
        return 0;
    }
    int32_t len = mtw_get_i32(p);
    if (len < 5 || (size_t)len > avail || len > MS_MAX_BSON_BYTES + 16 * 1024) {
        return 0;
    }
    if (!bson_init_static(out, p, (size_t)len)) {
        return 0;
    }
    size_t offset;
    if (!bson_validate(out, BSON_VALIDATE_NONE, &offset)) {
        return 0;
    }
    return (uint32_t)len;
}

/* Parses a kind-1 section body [p, p+size) into an array field of cmd. */
static bool
parse_sequence(const uint8_t *p, size_t size, bson_t *seqs, const char **reason)
{
    const uint8_t *end = p + size;
    const uint8_t *nul = memchr(p, 0, size);
    if (!nul) {
        *reason = "document sequence identifier is not terminated";
        return false;
    }
    const char *ident = (const char *)p;
    p = nul + 1;
    bson_t arr;
    bson_append_array_begin(seqs, ident, -1, &arr);
    uint32_t i = 0;
    bool ok = true;
    while (p < end) {
        bson_t doc;
        uint32_t len = doc_at(p, (size_t)(end - p), &doc);
        if (!len) {
            *reason = "invalid BSON in a document sequence";
            ok = false;
            break;
        }
        char key[16];
        const char *k;
        size_t klen = bson_uint32_to_string(i++, &k, key, sizeof key);
        bson_append_document(&arr, k, (int)klen, &doc);
        p += len;
    }
    bson_append_array_end(seqs, &arr);
    return ok;
}

/* Merges the body and the sequences; a sequence repeating a body field is an error. */
static bool
merge_sections(const bson_t *body, const bson_t *seqs, bson_t *cmd, const char **reason)
{
    bson_iter_t it;
    bson_init(cmd);
    bson_concat(cmd, body);
    if (bson_iter_init(&it, seqs)) {
        while (bson_iter_next(&it)) {
            if (bson_has_field(body, bson_iter_key(&it))) {
                *reason = "a document sequence repeats a field of the command body";
                bson_destroy(cmd);
                return false;
            }
            bson_append_iter(cmd, NULL, 0, &it);
        }
    }
    return true;
}

static bool
parse_msg(const uint8_t *msg, size_t len, ms_request_t *req, const char **reason)
{
    uint32_t flags = (uint32_t)mtw_get_i32(msg + MTW_HEADER_LEN);
    size_t end = len;
    bool ok = false;
    bool have_body = false;
    bson_t body;
    bson_t seqs = BSON_INITIALIZER;
    /* Bits 0-15 are required flags: an unknown one must be refused. */
    if (flags & 0xFFFCu) {
        *reason = "OP_MSG has an unknown required flag bit";
        goto done;
    }
    if (flags & MTW_FLAG_CHECKSUM) {
        if (len < MTW_HEADER_LEN + 4 + 4) {
            *reason = "OP_MSG too short for its checksum";
            goto done;
        }
        end = len - 4;
        if ((uint32_t)mtw_get_i32(msg + end) != ms_crc32c(msg, end)) {
            *reason = "OP_MSG checksum mismatch";
            goto done;
        }
    }
    req->more_to_come = (flags & MTW_FLAG_MORE_TO_COME) != 0;
    for (size_t pos = MTW_HEADER_LEN + 4; pos < end;) {
        uint8_t kind = msg[pos++];
        if (kind == 0) {
            uint32_t dlen = have_body ? 0 : doc_at(msg + pos, end - pos, &body);
            if (!dlen) {
                *reason = have_body ? "OP_MSG has two body sections" : "invalid BSON body";
                goto done;
            }
            have_body = true;
            pos += dlen;
        } else if (kind == 1) {
            int32_t size = end - pos >= 4 ? mtw_get_i32(msg + pos) : -1;
            if (size < 5 || (size_t)size > end - pos) {
                *reason = "bad document sequence size";
                goto done;
            }
            if (!parse_sequence(msg + pos + 4, (size_t)size - 4, &seqs, reason)) {
                goto done;
            }
            pos += (size_t)size;
        } else {
            *reason = "unknown OP_MSG section kind";
            goto done;
        }
    }
    if (!have_body) {
        *reason = "OP_MSG without a body section";
        goto done;
    }
    ok = merge_sections(&body, &seqs, &req->cmd, reason);
done:
    bson_destroy(&seqs);
    return ok;
}

static bool
parse_query(const uint8_t *msg, size_t len, ms_request_t *req, const char **reason)
{
    size_t pos = MTW_HEADER_LEN + 4; /* flags */
    const uint8_t *nul = pos < len ? memchr(msg + pos, 0, len - pos) : NULL;
    if (!nul) {
        *reason = "OP_QUERY collection name is not terminated";
        return false;
    }
    const char *ns = (const char *)msg + pos;
    pos = (size_t)(nul - msg) + 1 + 8; /* numberToSkip, numberToReturn */
    bson_t query;
    uint32_t qlen = pos <= len ? doc_at(msg + pos, len - pos, &query) : 0;
    if (!qlen) {
        *reason = "invalid BSON in OP_QUERY";
        return false;
    }
    const char *dot = strchr(ns, '.');
    if (!dot || strcmp(dot, ".$cmd") != 0 || (size_t)(dot - ns) >= sizeof req->query_db ||
        dot == ns) {
        *reason = "OP_QUERY is only supported for commands";
        return false;
    }
    memcpy(req->query_db, ns, (size_t)(dot - ns));
    req->query_db[dot - ns] = '\0';
    /* Drivers may wrap the command as {$query: {...}, $readPreference: ...}. */
    bson_iter_t it;
    if (bson_iter_init_find(&it, &query, "$query") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t dl;
        const uint8_t *d;
        bson_iter_document(&it, &dl, &d);
        bson_t inner;
        if (!bson_init_static(&inner, d, dl)) {
            *reason = "invalid $query in OP_QUERY";
            return false;
        }
        bson_copy_to(&inner, &req->cmd);
    } else {
        bson_copy_to(&query, &req->cmd);
    }
    return true;
}

bool
ms_wire_read(int fd, ms_request_t *req, const char **reason)
{
    uint8_t header[MTW_HEADER_LEN];
    uint8_t *msg = NULL;
    bool ok = false;
    memset(req, 0, sizeof *req);
    *reason = "connection closed by the client";
    if (!mtw_read_full(fd, header, sizeof header)) {
        goto done;
    }
    int32_t len = mtw_get_i32(header);
    req->request_id = mtw_get_i32(header + 4);
    req->opcode = mtw_get_i32(header + 12);
    if (len < MTW_HEADER_LEN + 5 || len > MS_MAX_MESSAGE_BYTES) {
        *reason = "message length out of range";
        goto done;
    }
    if (req->opcode != MTW_OP_MSG && req->opcode != MTW_OP_QUERY) {
        *reason = "unsupported opcode";
        goto done;
    }
    msg = bson_malloc((size_t)len);
    memcpy(msg, header, sizeof header);
    if (!mtw_read_full(fd, msg + MTW_HEADER_LEN, (size_t)len - MTW_HEADER_LEN)) {
        *reason = "truncated message";
        goto done;
    }
    if (req->opcode == MTW_OP_MSG) {
        ok = parse_msg(msg, (size_t)len, req, reason);
    } else {
        ok = parse_query(msg, (size_t)len, req, reason);
    }
done:
    bson_free(msg);
    return ok;
}

static int32_t
next_request_id(void)
{
    static int32_t counter;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    int32_t id = ++counter;
    pthread_mutex_unlock(&mu);
    return id;
}

bool
ms_wire_reply(int fd, const ms_request_t *req, const bson_t *reply)
{
    return mtw_send_doc(fd, next_request_id(), req->request_id, req->opcode != MTW_OP_MSG, reply);
}

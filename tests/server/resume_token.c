/*
 * Change streams' resume tokens: {_data: "82" + 16 hex digits of the position (cluster time
 * t << 32 | i) + 2 hex digits of the kind}. Kinds order as mongod's: a high-water mark at P
 * (00: "resume at P") sorts before the event at P (80: "resume after P"), which sorts before
 * the invalidate that the same drop caused (81). Equal-length uppercase hex, so tokens also
 * order as strings. Decoding fails as mongod's does (src/mongo/db/pipeline/resume_token.cpp).
 */
#include "changestream-private.h"

#include <inttypes.h>
#include <stdio.h>

void
ms__token_build(bson_t *out, ms_pos_t pos, ms_token_kind_t kind)
{
    char hex[24];
    snprintf(hex, sizeof hex, "82%016" PRIX64 "%02X", pos, (unsigned)kind);
    BSON_APPEND_UTF8(out, "_data", hex);
}

void
ms__token_append(bson_t *parent, const char *key, ms_pos_t pos, ms_token_kind_t kind)
{
    bson_t child;
    BSON_APPEND_DOCUMENT_BEGIN(parent, key, &child);
    ms__token_build(&child, pos, kind);
    bson_append_document_end(parent, &child);
}

static int
hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decodes _data (mongod's checks and codes: 9 not hex, 40649 empty, 50811 not a token). */
static bool
token_decode(const char *data, size_t len, ms_pos_t *pos, ms_token_kind_t *kind,
             bson_error_t *error)
{
    uint64_t value = 0;
    if (len % 2 != 0) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "resume token string was not a valid hex string");
    }
    for (size_t k = 0; k < len; k++) {
        if (hex_digit(data[k]) < 0) {
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                "resume token string was not a valid hex string");
        }
    }
    if (len == 0) {
        return ms_set_error(error, MS_ERR_LOCATION40649, "invalid empty resume token");
    }
    if (len != 20 || data[0] != '8' || data[1] != '2') {
        return ms_set_error(error, MS_ERR_LOCATION50811, "KeyString format error: Unknown type: %d",
                            hex_digit(data[0]) * 16 + hex_digit(data[1]));
    }
    for (size_t k = 2; k < 18; k++) {
        value = value * 16 + (uint64_t)hex_digit(data[k]);
    }
    int k = hex_digit(data[18]) * 16 + hex_digit(data[19]);
    if (k != TOKEN_HWM && k != TOKEN_EVENT && k != TOKEN_INVALIDATE) {
        return ms_set_error(error, MS_ERR_LOCATION51057, "Token type %d not recognized", k);
    }
    *pos = value;
    *kind = (ms_token_kind_t)k;
    return true;
}

bool
ms__token_parse(bson_iter_t *it, const char *field, ms_pos_t *pos, ms_token_kind_t *kind,
            bson_error_t *error)
{
    bson_t doc;
    bson_iter_t data;
    uint32_t len;
    const uint8_t *raw;
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '$changeStream.%s' is the wrong type '%s', expected type "
                            "'object'",
                            field, "non-object");
    }
    bson_iter_document(it, &len, &raw);
    if (!bson_init_static(&doc, raw, len)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "malformed resume token");
    }
    if (!bson_iter_init_find(&data, &doc, "_data") || !BSON_ITER_HOLDS_UTF8(&data)) {
        char *json = bson_as_relaxed_extended_json(&doc, NULL);
        ms_set_error(error, MS_ERR_LOCATION40647,
                     "Bad resume token: _data of missing or of wrong type. Expected string, got %s",
                     json ? json : "{}");
        bson_free(json);
        return false;
    }
    const char *hex = bson_iter_utf8(&data, &len);
    return token_decode(hex, len, pos, kind, error);
}

/*
 * Values and documents as mongod prints them in error messages: BSONElement::toString and
 * BSONObj::toString (src/mongo/bson/bsonelement.cpp, bsonobj.cpp), e.g.
 * { key: { a: 1 }, name: "a_1", v: 2 }, [ 1, 2 ], 1.0, new Date(0), ObjectId('...'); and
 * BSONElement::trueValue, how mongod reads a value as a flag ({$exists: 0}).
 */
#include "server-private.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t len;
    size_t cap;
} strbuf_t;

static void
put(strbuf_t *s, const char *text, size_t n)
{
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        s->buf = bson_realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    s->buf[s->len] = '\0';
}

static void
puts_(strbuf_t *s, const char *text)
{
    put(s, text, strlen(text));
}

static void render(strbuf_t *s, const bson_value_t *v);

static void
render_container(strbuf_t *s, const bson_value_t *v, bool is_array)
{
    bson_iter_t it;
    bool first = true;
    if (!bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
        puts_(s, "?");
        return;
    }
    puts_(s, is_array ? "[" : "{");
    while (bson_iter_next(&it)) {
        puts_(s, first ? " " : ", ");
        first = false;
        if (!is_array) {
            puts_(s, bson_iter_key(&it));
            puts_(s, ": ");
        }
        render(s, bson_iter_value(&it));
    }
    puts_(s, first ? (is_array ? "]" : "}") : (is_array ? " ]" : " }"));
}

static void
render_scalar(strbuf_t *s, const bson_value_t *v)
{
    char tmp[128];
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        snprintf(tmp, sizeof tmp, "%d", v->value.v_int32);
        break;
    case BSON_TYPE_INT64:
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->value.v_int64);
        break;
    case BSON_TYPE_DOUBLE:
        /* StringBuilder::appendDoubleNice: %.16g, then ".0" unless the text has a '.', 'E' or
         * 'N' (so 1000.0, inf.0, -inf.0, nan.0, 1e+20.0) */
        snprintf(tmp, sizeof tmp, "%.16g", v->value.v_double);
        if (!strchr(tmp, '.') && !strchr(tmp, 'E') && !strchr(tmp, 'N')) {
            strcat(tmp, ".0");
        }
        break;
    case BSON_TYPE_BOOL:
        snprintf(tmp, sizeof tmp, "%s", v->value.v_bool ? "true" : "false");
        break;
    case BSON_TYPE_NULL:
        snprintf(tmp, sizeof tmp, "null");
        break;
    case BSON_TYPE_UNDEFINED:
        snprintf(tmp, sizeof tmp, "undefined");
        break;
    case BSON_TYPE_MINKEY:
        snprintf(tmp, sizeof tmp, "MinKey");
        break;
    case BSON_TYPE_MAXKEY:
        snprintf(tmp, sizeof tmp, "MaxKey");
        break;
    case BSON_TYPE_DATE_TIME:
        snprintf(tmp, sizeof tmp, "new Date(%lld)", (long long)v->value.v_datetime);
        break;
    case BSON_TYPE_TIMESTAMP:
        snprintf(tmp, sizeof tmp, "Timestamp(%u, %u)", v->value.v_timestamp.timestamp,
                 v->value.v_timestamp.increment);
        break;
    case BSON_TYPE_OID: {
        char hex[25];
        bson_oid_to_string(&v->value.v_oid, hex);
        snprintf(tmp, sizeof tmp, "ObjectId('%s')", hex);
        break;
    }
    case BSON_TYPE_DECIMAL128: {
        char dec[BSON_DECIMAL128_STRING];
        bson_decimal128_to_string(&v->value.v_decimal128, dec);
        snprintf(tmp, sizeof tmp, "NumberDecimal(\"%s\")", dec);
        break;
    }
    default:
        snprintf(tmp, sizeof tmp, "<%s>", "value");
        break;
    }
    puts_(s, tmp);
}

static void
render(strbuf_t *s, const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        /* past 160 bytes (with the NUL) mongod writes the first 150 and ..." */
        puts_(s, "\"");
        put(s, v->value.v_utf8.str, v->value.v_utf8.len + 1 > 160 ? 150 : v->value.v_utf8.len);
        puts_(s, v->value.v_utf8.len + 1 > 160 ? "...\"" : "\"");
        return;
    case BSON_TYPE_REGEX:
        puts_(s, "/");
        puts_(s, v->value.v_regex.regex);
        puts_(s, "/");
        puts_(s, v->value.v_regex.options ? v->value.v_regex.options : "");
        return;
    case BSON_TYPE_DOCUMENT:
        render_container(s, v, false);
        return;
    case BSON_TYPE_ARRAY:
        render_container(s, v, true);
        return;
    default:
        render_scalar(s, v);
    }
}

char *
ms_render_value(const bson_value_t *v)
{
    strbuf_t s = {0};
    puts_(&s, "");
    render(&s, v);
    return s.buf;
}

char *
ms_render_doc(const bson_t *doc)
{
    bson_value_t v;
    memset(&v, 0, sizeof v);
    v.value_type = BSON_TYPE_DOCUMENT;
    v.value.v_doc.data = (uint8_t *)bson_get_data(doc);
    v.value.v_doc.data_len = doc->len;
    return ms_render_value(&v);
}

bool
ms_true_value(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_BOOL:
        return v->value.v_bool;
    case BSON_TYPE_INT32:
        return v->value.v_int32 != 0;
    case BSON_TYPE_INT64:
        return v->value.v_int64 != 0;
    case BSON_TYPE_DOUBLE:
        return v->value.v_double != 0;
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_EOD:
        return false;
    default:
        return true;
    }
}

/* typeName (src/mongo/bson/bsontypes.cpp). */
const char *
ms_type_name(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_DOUBLE: return "double";
    case BSON_TYPE_UTF8: return "string";
    case BSON_TYPE_DOCUMENT: return "object";
    case BSON_TYPE_ARRAY: return "array";
    case BSON_TYPE_BINARY: return "binData";
    case BSON_TYPE_UNDEFINED: return "undefined";
    case BSON_TYPE_OID: return "objectId";
    case BSON_TYPE_BOOL: return "bool";
    case BSON_TYPE_DATE_TIME: return "date";
    case BSON_TYPE_NULL: return "null";
    case BSON_TYPE_REGEX: return "regex";
    case BSON_TYPE_CODE: return "javascript";
    case BSON_TYPE_SYMBOL: return "symbol";
    case BSON_TYPE_INT32: return "int";
    case BSON_TYPE_TIMESTAMP: return "timestamp";
    case BSON_TYPE_INT64: return "long";
    case BSON_TYPE_DECIMAL128: return "decimal";
    case BSON_TYPE_MINKEY: return "minKey";
    case BSON_TYPE_MAXKEY: return "maxKey";
    default: return "unknown";
    }
}

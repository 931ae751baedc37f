/*
 * mongoq-test-server: BSON values in MongoDB's order, type names, dotted paths and a stable
 * sort. The mutable document tree is in node.c.
 */
#include "lang-private.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- type order ------------------------------------------------------------------------ */

int
ms_type_rank(bson_type_t type)
{
    /* mongod's canonicalizeBSONType; a missing value (EOD) ranks as null. */
    switch (type) {
    case BSON_TYPE_MINKEY:
        return -1;
    case BSON_TYPE_UNDEFINED:
        return 0;
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
        return 5;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return 10;
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL:
        return 15;
    case BSON_TYPE_DOCUMENT:
        return 20;
    case BSON_TYPE_ARRAY:
        return 25;
    case BSON_TYPE_BINARY:
        return 30;
    case BSON_TYPE_OID:
        return 35;
    case BSON_TYPE_BOOL:
        return 40;
    case BSON_TYPE_DATE_TIME:
        return 45;
    case BSON_TYPE_TIMESTAMP:
        return 47;
    case BSON_TYPE_REGEX:
        return 50;
    case BSON_TYPE_DBPOINTER:
        return 55;
    case BSON_TYPE_CODE:
        return 60;
    case BSON_TYPE_CODEWSCOPE:
        return 65;
    case BSON_TYPE_MAXKEY:
    default:
        return 100;
    }
}

bool
ms__is_number(bson_type_t type)
{
    return type == BSON_TYPE_INT32 || type == BSON_TYPE_INT64 || type == BSON_TYPE_DOUBLE ||
           type == BSON_TYPE_DECIMAL128;
}

int64_t
ms__clamp_i64(double d)
{
    if (isnan(d)) {
        return 0;
    }
    if (d >= 9223372036854775807.0) {
        return INT64_MAX;
    }
    if (d <= -9223372036854775808.0) {
        return INT64_MIN;
    }
    return (int64_t)d;
}

static double
decimal_as_double(const bson_decimal128_t *dec)
{
    char str[BSON_DECIMAL128_STRING];
    bson_decimal128_to_string(dec, str);
    return strtod(str, NULL);
}

double
ms__num_as_double(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_INT32:
        return v->value.v_int32;
    case BSON_TYPE_INT64:
        return (double)v->value.v_int64;
    case BSON_TYPE_DOUBLE:
        return v->value.v_double;
    case BSON_TYPE_DECIMAL128:
        return decimal_as_double(&v->value.v_decimal128);
    default:
        return 0;
    }
}

static int
sign(long long x)
{
    return (x > 0) - (x < 0);
}

static int
cmp_numbers(const bson_value_t *a, const bson_value_t *b)
{
    bool a_int = a->value_type == BSON_TYPE_INT32 || a->value_type == BSON_TYPE_INT64;
    bool b_int = b->value_type == BSON_TYPE_INT32 || b->value_type == BSON_TYPE_INT64;
    if (a_int && b_int) {
        int64_t x = a->value_type == BSON_TYPE_INT32 ? a->value.v_int32 : a->value.v_int64;
        int64_t y = b->value_type == BSON_TYPE_INT32 ? b->value.v_int32 : b->value.v_int64;
        return (x > y) - (x < y);
    }
    /* long double holds every int64 exactly on the platforms we run on; NaN sorts first. */
    long double x = a->value_type == BSON_TYPE_INT64 ? (long double)a->value.v_int64
                                                      : (long double)ms__num_as_double(a);
    long double y = b->value_type == BSON_TYPE_INT64 ? (long double)b->value.v_int64
                                                      : (long double)ms__num_as_double(b);
    if (isnan(x) || isnan(y)) {
        return (int)!isnan(x) - (int)!isnan(y);
    }
    return (x > y) - (x < y);
}

static int
cmp_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r != 0) {
        return sign(r);
    }
    return (alen > blen) - (alen < blen);
}

/* Field by field: canonical type, then name, then value (BSONObj::woCompare). */
static int
cmp_docs(const uint8_t *ad, uint32_t al, const uint8_t *bd, uint32_t bl)
{
    bson_iter_t ia, ib;
    if (!bson_iter_init_from_data(&ia, ad, al) || !bson_iter_init_from_data(&ib, bd, bl)) {
        return cmp_bytes(ad, al, bd, bl);
    }
    for (;;) {
        bool ha = bson_iter_next(&ia);
        bool hb = bson_iter_next(&ib);
        if (!ha || !hb) {
            return (int)ha - (int)hb;
        }
        int r = ms_type_rank(bson_iter_type(&ia)) - ms_type_rank(bson_iter_type(&ib));
        if (r != 0) {
            return sign(r);
        }
        r = strcmp(bson_iter_key(&ia), bson_iter_key(&ib));
        if (r != 0) {
            return sign(r);
        }
        r = ms_value_cmp(bson_iter_value(&ia), bson_iter_value(&ib));
        if (r != 0) {
            return r;
        }
    }
}

static int
cmp_same_rank(const bson_value_t *a, const bson_value_t *b)
{
    switch (a->value_type) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        return cmp_numbers(a, b);
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL: {
        /* utf8 and symbol share the same layout in bson_value_t */
        return cmp_bytes(a->value.v_utf8.str, a->value.v_utf8.len, b->value.v_utf8.str,
                         b->value.v_utf8.len);
    }
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY:
        return cmp_docs(a->value.v_doc.data, a->value.v_doc.data_len, b->value.v_doc.data,
                        b->value.v_doc.data_len);
    case BSON_TYPE_BINARY:
        if (a->value.v_binary.data_len != b->value.v_binary.data_len) {
            return a->value.v_binary.data_len < b->value.v_binary.data_len ? -1 : 1;
        }
        if (a->value.v_binary.subtype != b->value.v_binary.subtype) {
            return a->value.v_binary.subtype < b->value.v_binary.subtype ? -1 : 1;
        }
        return cmp_bytes(a->value.v_binary.data, a->value.v_binary.data_len,
                         b->value.v_binary.data, b->value.v_binary.data_len);
    case BSON_TYPE_OID:
        return sign(bson_oid_compare(&a->value.v_oid, &b->value.v_oid));
    case BSON_TYPE_BOOL:
        return (int)a->value.v_bool - (int)b->value.v_bool;
    case BSON_TYPE_DATE_TIME:
        return (a->value.v_datetime > b->value.v_datetime) -
               (a->value.v_datetime < b->value.v_datetime);
    case BSON_TYPE_TIMESTAMP:
        if (a->value.v_timestamp.timestamp != b->value.v_timestamp.timestamp) {
            return a->value.v_timestamp.timestamp < b->value.v_timestamp.timestamp ? -1 : 1;
        }
        return (a->value.v_timestamp.increment > b->value.v_timestamp.increment) -
               (a->value.v_timestamp.increment < b->value.v_timestamp.increment);
    case BSON_TYPE_REGEX: {
        int r = strcmp(a->value.v_regex.regex, b->value.v_regex.regex);
        return r != 0 ? sign(r) : sign(strcmp(a->value.v_regex.options, b->value.v_regex.options));
    }
    case BSON_TYPE_CODE:
        return cmp_bytes(a->value.v_code.code, a->value.v_code.code_len, b->value.v_code.code,
                         b->value.v_code.code_len);
    case BSON_TYPE_CODEWSCOPE:
        return cmp_bytes(a->value.v_codewscope.code, a->value.v_codewscope.code_len,
                         b->value.v_codewscope.code, b->value.v_codewscope.code_len);
    case BSON_TYPE_DBPOINTER: {
        int r = cmp_bytes(a->value.v_dbpointer.collection, a->value.v_dbpointer.collection_len,
                          b->value.v_dbpointer.collection, b->value.v_dbpointer.collection_len);
        return r != 0 ? r
                      : sign(bson_oid_compare(&a->value.v_dbpointer.oid,
                                              &b->value.v_dbpointer.oid));
    }
    default:
        return 0; /* null, undefined, minKey, maxKey: one value each */
    }
}

int
ms_value_cmp(const bson_value_t *a, const bson_value_t *b)
{
    static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
    if (!a || a->value_type == BSON_TYPE_EOD) {
        a = &null_value;
    }
    if (!b || b->value_type == BSON_TYPE_EOD) {
        b = &null_value;
    }
    int r = ms_type_rank(a->value_type) - ms_type_rank(b->value_type);
    if (r != 0) {
        return sign(r);
    }
    return cmp_same_rank(a, b);
}

bool
ms__value_truthy(const bson_value_t *v)
{
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        return false;
    case BSON_TYPE_BOOL:
        return v->value.v_bool;
    case BSON_TYPE_INT32:
        return v->value.v_int32 != 0;
    case BSON_TYPE_INT64:
        return v->value.v_int64 != 0;
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_DECIMAL128:
        return ms__num_as_double(v) != 0;
    default:
        return true;
    }
}

/* ---- type names ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    int type;
} type_names[] = {
    {"double", BSON_TYPE_DOUBLE},      {"string", BSON_TYPE_UTF8},
    {"object", BSON_TYPE_DOCUMENT},    {"array", BSON_TYPE_ARRAY},
    {"binData", BSON_TYPE_BINARY},     {"undefined", BSON_TYPE_UNDEFINED},
    {"objectId", BSON_TYPE_OID},       {"bool", BSON_TYPE_BOOL},
    {"date", BSON_TYPE_DATE_TIME},     {"null", BSON_TYPE_NULL},
    {"regex", BSON_TYPE_REGEX},        {"dbPointer", BSON_TYPE_DBPOINTER},
    {"javascript", BSON_TYPE_CODE},    {"symbol", BSON_TYPE_SYMBOL},
    {"javascriptWithScope", BSON_TYPE_CODEWSCOPE},
    {"int", BSON_TYPE_INT32},          {"timestamp", BSON_TYPE_TIMESTAMP},
    {"long", BSON_TYPE_INT64},         {"decimal", BSON_TYPE_DECIMAL128},
    {"minKey", BSON_TYPE_MINKEY},      {"maxKey", BSON_TYPE_MAXKEY},
    {"number", MS_TYPE_NUMBER},
};

const char *
ms__type_name(bson_type_t type)
{
    if (type == BSON_TYPE_EOD) {
        return "missing";
    }
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (type_names[i].type == (int)type) {
            return type_names[i].name;
        }
    }
    return "unknown";
}

static bool
type_code_valid(int code)
{
    return (code >= 1 && code <= 19) || code == -1 || code == 127;
}

bool
ms__type_parse(const bson_value_t *v, int *type, bson_error_t *error)
{
    if (v->value_type == BSON_TYPE_UTF8) {
        for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
            if (strcmp(type_names[i].name, v->value.v_utf8.str) == 0) {
                *type = type_names[i].type;
                return true;
            }
        }
        return ms_set_error(error, MS_ERR_BAD_VALUE, "Unknown type name alias: %s",
                            v->value.v_utf8.str);
    }
    if (!ms__is_number(v->value_type)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "type must be represented as a number or a string");
    }
    double d = ms__num_as_double(v);
    int code = (int)d;
    if ((double)code != d) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "Invalid numerical type code: %g", d);
    }
    if (!type_code_valid(code)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "Invalid numerical type code: %d", code);
    }
    *type = code == -1 ? BSON_TYPE_MINKEY : code == 127 ? BSON_TYPE_MAXKEY : code;
    return true;
}

bool
ms__type_matches(int type, bson_type_t actual)
{
    if (type == MS_TYPE_NUMBER) {
        return ms__is_number(actual);
    }
    return type == (int)actual;
}

char *
ms__value_json(const bson_value_t *v)
{
    bson_t tmp = BSON_INITIALIZER;
    char *json;
    char *out;
    if (v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) {
        bson_t inner;
        if (bson_init_static(&inner, v->value.v_doc.data, v->value.v_doc.data_len)) {
            json = bson_as_relaxed_extended_json(&inner, NULL);
            bson_destroy(&tmp);
            return json ? json : bson_strdup("?");
        }
    }
    if (v->value_type == BSON_TYPE_EOD) {
        bson_destroy(&tmp);
        return bson_strdup("missing");
    }
    bson_append_value(&tmp, "v", 1, v);
    json = bson_as_relaxed_extended_json(&tmp, NULL);
    /* {"v" : X } -> X */
    if (json && strlen(json) > 9) {
        size_t len = strlen(json);
        out = bson_strndup(json + 8, len - 10);
    } else {
        out = bson_strdup("?");
    }
    bson_free(json);
    bson_destroy(&tmp);
    return out;
}

void
ms__value_from_bson(const bson_t *b, bool is_array, bson_value_t *out)
{
    out->value_type = is_array ? BSON_TYPE_ARRAY : BSON_TYPE_DOCUMENT;
    out->value.v_doc.data_len = b->len;
    out->value.v_doc.data = bson_malloc(b->len);
    memcpy(out->value.v_doc.data, bson_get_data(b), b->len);
}

size_t
ms__array_len(const bson_value_t *v)
{
    bson_iter_t it;
    size_t n = 0;
    if (bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
        while (bson_iter_next(&it)) {
            n++;
        }
    }
    return n;
}

/* ---- paths ----------------------------------------------------------------------------- */

bool
ms__is_index(const char *s, size_t len, uint32_t *idx)
{
    uint64_t v = 0;
    if (len == 0 || len > 9 || (len > 1 && s[0] == '0')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *idx = (uint32_t)v;
    return true;
}

bool
ms__find_field(const uint8_t *data, uint32_t len, const char *key, size_t keylen,
               bson_value_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, data, len)) {
        return false;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strncmp(k, key, keylen) == 0 && k[keylen] == '\0') {
            *out = *bson_iter_value(&it);
            return true;
        }
    }
    return false;
}

bool
ms_path_get(const bson_t *doc, const char *path, bson_value_t *out)
{
    const uint8_t *data = bson_get_data(doc);
    uint32_t len = doc->len;
    bson_value_t v;
    for (;;) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (!ms__find_field(data, len, path, n, &v)) {
            return false;
        }
        if (!dot) {
            *out = v;
            return true;
        }
        if (v.value_type != BSON_TYPE_DOCUMENT && v.value_type != BSON_TYPE_ARRAY) {
            return false;
        }
        data = v.value.v_doc.data;
        len = v.value.v_doc.data_len;
        path = dot + 1;
    }
}

bool
ms__path_init(ms_path_t *p, const char *path)
{
    size_t n = 1;
    p->buf = bson_strdup(path);
    for (const char *c = path; *c; c++) {
        n += *c == '.';
    }
    p->parts = bson_malloc(n * sizeof *p->parts);
    p->n = 0;
    char *start = p->buf;
    for (char *c = p->buf;; c++) {
        if (*c == '.' || *c == '\0') {
            bool end = *c == '\0';
            *c = '\0';
            p->parts[p->n++] = start;
            if (*start == '\0') {
                return false;
            }
            if (end) {
                break;
            }
            start = c + 1;
        }
    }
    return true;
}

void
ms__path_destroy(ms_path_t *p)
{
    bson_free(p->buf);
    bson_free(p->parts);
    p->buf = NULL;
    p->parts = NULL;
    p->n = 0;
}

/* ---- stable sort ----------------------------------------------------------------------- */

static void
merge_sort(void **items, void **tmp, size_t n, ms_cmp_fn cmp, void *ctx)
{
    if (n < 2) {
        return;
    }
    size_t mid = n / 2;
    merge_sort(items, tmp, mid, cmp, ctx);
    merge_sort(items + mid, tmp, n - mid, cmp, ctx);
    size_t i = 0, j = mid, k = 0;
    while (i < mid && j < n) {
        tmp[k++] = cmp(items[j], items[i], ctx) < 0 ? items[j++] : items[i++];
    }
    while (i < mid) {
        tmp[k++] = items[i++];
    }
    while (j < n) {
        tmp[k++] = items[j++];
    }
    memcpy(items, tmp, n * sizeof *items);
}

void
ms__stable_sort(void **items, size_t n, ms_cmp_fn cmp, void *ctx)
{
    void **tmp = bson_malloc((n ? n : 1) * sizeof *tmp);
    merge_sort(items, tmp, n, cmp, ctx);
    bson_free(tmp);
}

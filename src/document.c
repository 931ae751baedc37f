/* The message document on the client side (see document-private.h). */
#include "document-private.h"

#include <inttypes.h>
#include <string.h>

#include "fields.h"
#include "mongoq/error.h"
#include "clock-private.h"
#include "mongoq/limits.h"

static bool
invalid(bson_error_t *error, const char *what)
{
    bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG, "%s", what);
    return false;
}

static bool
check_times(const mongoq_enqueue_opts_t *opts, bson_error_t *error)
{
    if (opts->delay_ms < 0 || opts->delay_ms > MONGOQ_MAX_DURATION_MS) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "enqueue opts: delay_ms must be 0 to MONGOQ_MAX_DURATION_MS (%" PRId64
                       "), not %" PRId64,
                       MONGOQ_MAX_DURATION_MS, opts->delay_ms);
        return false;
    }
    if (opts->run_at_ms < 0 || opts->run_at_ms > MONGOQ_MAX_RUN_AT_MS) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "enqueue opts: run_at_ms must be 0 to MONGOQ_MAX_RUN_AT_MS (%" PRId64
                       ", year 9999), not %" PRId64,
                       MONGOQ_MAX_RUN_AT_MS, opts->run_at_ms);
        return false;
    }
    if (opts->delay_ms > 0 && opts->run_at_ms > 0) {
        return invalid(error, "enqueue opts: delay_ms and run_at_ms are exclusive");
    }
    return true;
}

bool
mongoq__enqueue_opts_check(const mongoq_enqueue_opts_t *opts, bool many, bson_error_t *error)
{
    if (!opts) {
        return true;
    }
    if (opts->version == 0 || opts->version > MONGOQ_ENQUEUE_OPTS_VERSION) {
        return invalid(error, "enqueue opts: unknown version (use MONGOQ_ENQUEUE_OPTS_INIT)");
    }
    if (!check_times(opts, error)) {
        return false;
    }
    if (opts->max_attempts < 0 || opts->max_attempts > MONGOQ_MAX_ATTEMPTS) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "enqueue opts: max_attempts must be 0 (the queue's) to MONGOQ_MAX_ATTEMPTS "
                       "(%d), not %" PRId32,
                       MONGOQ_MAX_ATTEMPTS, opts->max_attempts);
        return false;
    }
    if (opts->dedup_key && many) {
        return invalid(error, "enqueue_many: a dedup_key cannot name several messages");
    }
    if (opts->dedup_key &&
        (!*opts->dedup_key || strlen(opts->dedup_key) > MONGOQ_MAX_DEDUP_KEY_BYTES ||
         !bson_utf8_validate(opts->dedup_key, strlen(opts->dedup_key), false))) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "enqueue opts: dedup_key must be valid UTF-8 of 1 to "
                       "MONGOQ_MAX_DEDUP_KEY_BYTES (%d) bytes",
                       MONGOQ_MAX_DEDUP_KEY_BYTES);
        return false;
    }
    /* The caller's struct has a group only from version 3 on. */
    const char *group = opts->version >= 3 ? opts->group : NULL;
    if (group && (!*group || strlen(group) > MONGOQ_MAX_GROUP_BYTES ||
                  !bson_utf8_validate(group, strlen(group), false))) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "enqueue opts: group must be valid UTF-8 of 1 to MONGOQ_MAX_GROUP_BYTES "
                       "(%d) bytes",
                       MONGOQ_MAX_GROUP_BYTES);
        return false;
    }
    return true;
}

int64_t
mongoq__document_run_at(const mongoq_enqueue_opts_t *opts, int64_t now_ms)
{
    if (opts && opts->run_at_ms > 0) {
        return opts->run_at_ms;
    }
    if (opts && opts->delay_ms > 0) {
        return opts->delay_ms > INT64_MAX - now_ms ? INT64_MAX : now_ms + opts->delay_ms;
    }
    return now_ms;
}

bool
mongoq__document_build(const bson_t *payload, const mongoq_enqueue_opts_t *opts,
                       int32_t default_max_attempts, int64_t now_ms, const bson_oid_t *id,
                       bson_t *out, bson_error_t *error)
{
    bson_init(out);
    if (!payload) {
        return invalid(error, "enqueue: payload is NULL");
    }
    if (payload->len > MONGOQ_MAX_PAYLOAD_BYTES) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "enqueue: the payload is %" PRIu32 " bytes, more than "
                       "MONGOQ_MAX_PAYLOAD_BYTES (%d)",
                       payload->len, MONGOQ_MAX_PAYLOAD_BYTES);
        return false;
    }
    int32_t max_attempts =
        opts && opts->max_attempts > 0 ? opts->max_attempts : default_max_attempts;
    bool ok =
        BSON_APPEND_OID(out, MONGOQ__F_ID, id) &&
        BSON_APPEND_DOCUMENT(out, MONGOQ__F_PAYLOAD, payload) &&
        BSON_APPEND_UTF8(out, MONGOQ__F_STATUS, MONGOQ__S_READY) &&
        BSON_APPEND_INT32(out, MONGOQ__F_PRIORITY, opts ? opts->priority : 0) &&
        BSON_APPEND_DATE_TIME(out, MONGOQ__F_RUN_AT, mongoq__document_run_at(opts, now_ms)) &&
        BSON_APPEND_INT32(out, MONGOQ__F_ATTEMPTS, 0) &&
        BSON_APPEND_INT32(out, MONGOQ__F_MAX_ATTEMPTS, max_attempts) &&
        BSON_APPEND_DATE_TIME(out, MONGOQ__F_ENQUEUED_AT, now_ms) &&
        BSON_APPEND_DATE_TIME(out, MONGOQ__F_UPDATED_AT, now_ms) &&
        (!opts || !opts->dedup_key || BSON_APPEND_UTF8(out, MONGOQ__F_DEDUP_KEY, opts->dedup_key));
    /* bson_append_* fails only when the document would pass INT32_MAX bytes. */
    if (!ok || out->len > MONGOQ_MAX_DOCUMENT_BYTES) {
        bson_reinit(out);
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "enqueue: the message would exceed the %d-byte document limit "
                       "(MONGOQ_MAX_DOCUMENT_BYTES)",
                       MONGOQ_MAX_DOCUMENT_BYTES);
        return false;
    }
    return true;
}

/* ---- parsing ------------------------------------------------------------------------------ */

static bool
damaged(char *reason, size_t reason_len, const char *field, const char *what)
{
    bson_snprintf(reason, reason_len, "damaged message: %s %s", field, what);
    return false;
}

/* An int32 count stored as any integral number type (the server may widen it). */
static bool
get_int32(const bson_t *doc, const char *field, int32_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field)) {
        return false;
    }
    double d;
    switch (bson_iter_type(&it)) {
    case BSON_TYPE_INT32:
        *out = bson_iter_int32(&it);
        return true;
    case BSON_TYPE_INT64:
        d = (double)bson_iter_int64(&it);
        break;
    case BSON_TYPE_DOUBLE:
        d = bson_iter_double(&it);
        break;
    default:
        return false;
    }
    if (!(d >= INT32_MIN && d <= INT32_MAX) || (double)(int32_t)d != d) {
        return false;
    }
    *out = (int32_t)d;
    return true;
}

static bool
get_date(const bson_t *doc, const char *field, int64_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_DATE_TIME(&it)) {
        return false;
    }
    *out = bson_iter_date_time(&it);
    return true;
}

static bool
get_oid(const bson_t *doc, const char *field, bson_oid_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_OID(&it)) {
        return false;
    }
    bson_oid_copy(bson_iter_oid(&it), out);
    return true;
}

/* Optional string: absent is fine (NULL), anything but a string is damage. */
static bool
get_opt_utf8(const bson_t *doc, const char *field, const char **out)
{
    bson_iter_t it;
    *out = NULL;
    if (!bson_iter_init_find(&it, doc, field) || BSON_ITER_HOLDS_NULL(&it)) {
        return true;
    }
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        return false;
    }
    *out = bson_iter_utf8(&it, NULL);
    return true;
}

bool
mongoq__document_subdoc(const bson_t *doc, const char *field, bool array, bson_t *out)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, doc, field)) {
        return false;
    }
    if (array ? !BSON_ITER_HOLDS_ARRAY(&it) : !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return false;
    }
    if (array) {
        bson_iter_array(&it, &len, &data);
    } else {
        bson_iter_document(&it, &len, &data);
    }
    return bson_init_static(out, data, len);
}

static bool
parse_fields(const bson_t *doc, mongoq__parsed_t *out, char *reason, size_t reason_len)
{
    if (!get_oid(doc, MONGOQ__F_ID, &out->id)) {
        return damaged(reason, reason_len, MONGOQ__F_ID, "is not an ObjectId");
    }
    if (!mongoq__document_subdoc(doc, MONGOQ__F_PAYLOAD, false, &out->payload)) {
        return damaged(reason, reason_len, MONGOQ__F_PAYLOAD, "is missing or not a document");
    }
    if (!get_int32(doc, MONGOQ__F_ATTEMPTS, &out->attempts) || out->attempts < 1) {
        return damaged(reason, reason_len, MONGOQ__F_ATTEMPTS, "is missing or not a count");
    }
    if (!get_int32(doc, MONGOQ__F_MAX_ATTEMPTS, &out->max_attempts) || out->max_attempts < 1) {
        return damaged(reason, reason_len, MONGOQ__F_MAX_ATTEMPTS, "is missing or not a count");
    }
    if (!get_int32(doc, MONGOQ__F_PRIORITY, &out->priority)) {
        return damaged(reason, reason_len, MONGOQ__F_PRIORITY, "is missing or not an int32");
    }
    if (!get_date(doc, MONGOQ__F_ENQUEUED_AT, &out->enqueued_at)) {
        return damaged(reason, reason_len, MONGOQ__F_ENQUEUED_AT, "is missing or not a date");
    }
    if (!get_date(doc, MONGOQ__F_RUN_AT, &out->run_at)) {
        return damaged(reason, reason_len, MONGOQ__F_RUN_AT, "is missing or not a date");
    }
    return true;
}

static bool
parse_lease(const bson_t *doc, mongoq__parsed_t *out, char *reason, size_t reason_len)
{
    if (!get_date(doc, MONGOQ__F_LEASE_EXPIRES_AT, &out->lease_expires_at)) {
        return damaged(reason, reason_len, MONGOQ__F_LEASE_EXPIRES_AT, "is missing or not a date");
    }
    if (!get_oid(doc, MONGOQ__F_LEASE_TOKEN, &out->lease_token)) {
        return damaged(reason, reason_len, MONGOQ__F_LEASE_TOKEN, "is not an ObjectId");
    }
    if (!get_opt_utf8(doc, MONGOQ__F_DEDUP_KEY, &out->dedup_key)) {
        return damaged(reason, reason_len, MONGOQ__F_DEDUP_KEY, "is not a string");
    }
    if (!get_opt_utf8(doc, MONGOQ__F_GROUP, &out->group)) {
        return damaged(reason, reason_len, MONGOQ__F_GROUP, "is not a string");
    }
    if (!get_opt_utf8(doc, MONGOQ__F_CLAIMED_BY, &out->claimed_by)) {
        out->claimed_by = NULL; /* history only: not worth burying a message for */
    }
    /* A damaged history is dropped rather than held against the message. */
    out->has_errors = mongoq__document_subdoc(doc, MONGOQ__F_ERRORS, true, &out->errors);
    return true;
}

bool
mongoq__document_parse(const bson_t *doc, mongoq__parsed_t *out, char *reason, size_t reason_len)
{
    BSON_ASSERT_PARAM(doc);
    BSON_ASSERT_PARAM(out);
    memset(out, 0, sizeof *out);
    if (reason_len > 0) {
        reason[0] = '\0';
    }
    if (!bson_validate(doc, BSON_VALIDATE_NONE, NULL)) {
        bson_snprintf(reason, reason_len, "damaged message: invalid BSON");
        return false;
    }
    return parse_fields(doc, out, reason, reason_len) && parse_lease(doc, out, reason, reason_len);
}

/* ---- failure history ---------------------------------------------------------------------- */

/* The length of the UTF-8 character at s (1 to 4), or 0 when it is not a whole valid one. */
static size_t
utf8_char_length(const char *s)
{
    unsigned char c = (unsigned char)s[0];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    for (size_t k = 1; k < n; k++) {
        if (((unsigned char)s[k] >> 6) != 0x2) {
            return 0; /* also stops at the terminating NUL */
        }
    }
    return n > 0 && bson_utf8_validate(s, n, false) ? n : 0;
}

size_t
mongoq__reason_length(const char *reason)
{
    size_t len = 0;
    while (reason[len] && len < MONGOQ_MAX_REASON_BYTES) {
        size_t n = utf8_char_length(reason + len);
        if (n == 0 || len + n > MONGOQ_MAX_REASON_BYTES) {
            break;
        }
        len += n;
    }
    return len;
}

void
mongoq__document_append_reason(bson_t *doc, const char *key, const char *reason)
{
    if (!reason) {
        BSON_APPEND_NULL(doc, key);
        return;
    }
    bson_t lit;
    BSON_APPEND_DOCUMENT_BEGIN(doc, key, &lit);
    bson_append_utf8(&lit, "$literal", -1, reason, (int)mongoq__reason_length(reason));
    bson_append_document_end(doc, &lit);
}

/* key: {op: ["$$NOW", ms]} */
static void
append_now_op(bson_t *doc, const char *key, const char *op, int64_t ms)
{
    bson_t expr, args;
    BSON_APPEND_DOCUMENT_BEGIN(doc, key, &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, op, &args);
    BSON_APPEND_UTF8(&args, "0", "$$NOW");
    BSON_APPEND_INT64(&args, "1", ms);
    bson_append_array_end(&expr, &args);
    bson_append_document_end(doc, &expr);
}

void
mongoq__document_append_now_plus(bson_t *doc, const char *key, int64_t ms)
{
    append_now_op(doc, key, "$add", ms);
}

void
mongoq__document_append_now_less(bson_t *doc, const char *key, int64_t ms)
{
    if (ms <= 0) {
        BSON_APPEND_UTF8(doc, key, "$$NOW");
        return;
    }
    append_now_op(doc, key, "$subtract", ms);
}

static uint32_t
count_entries(const bson_t *array)
{
    bson_iter_t it;
    uint32_t n = 0;
    if (array && bson_iter_init(&it, array)) {
        while (bson_iter_next(&it)) {
            n++;
        }
    }
    return n;
}

void
mongoq__document_append_errors(bson_t *set, const bson_t *old, const char *reason)
{
    bson_t arr, entry, lit;
    bson_iter_t it;
    uint32_t n = count_entries(old);
    uint32_t skip = n > MONGOQ__MAX_ERRORS - 1 ? n - (MONGOQ__MAX_ERRORS - 1) : 0;
    uint32_t i = 0, out_i = 0;
    char key[16];
    const char *k;
    BSON_APPEND_ARRAY_BEGIN(set, MONGOQ__F_ERRORS, &arr);
    if (old && bson_iter_init(&it, old)) {
        while (bson_iter_next(&it)) {
            if (i++ < skip) {
                continue;
            }
            bson_uint32_to_string(out_i++, &k, key, sizeof key);
            bson_append_document_begin(&arr, k, -1, &lit);
            bson_append_value(&lit, "$literal", -1, bson_iter_value(&it));
            bson_append_document_end(&arr, &lit);
        }
    }
    bson_uint32_to_string(out_i, &k, key, sizeof key);
    bson_append_document_begin(&arr, k, -1, &entry);
    BSON_APPEND_UTF8(&entry, MONGOQ__F_ERROR_AT, "$$NOW");
    mongoq__document_append_reason(&entry, MONGOQ__F_ERROR_TEXT, reason);
    bson_append_document_end(&arr, &entry);
    bson_append_array_end(set, &arr);
}

/* Appends {$unset: [fields...]} as pipeline stage `index`. */
void
mongoq__document_append_unset(bson_t *pipeline, const char *index, const char *const *fields, size_t n)
{
    bson_t stage, list;
    char key[16];
    const char *k;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, index, &stage);
    BSON_APPEND_ARRAY_BEGIN(&stage, "$unset", &list);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_UTF8(&list, k, fields[i]);
    }
    bson_append_array_end(&stage, &list);
    bson_append_document_end(pipeline, &stage);
}

void
mongoq__document_append_due(bson_t *filter, int64_t server_now)
{
    bson_t range, expr, args;
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, MONGOQ__S_READY);
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_RUN_AT, &range);
    BSON_APPEND_DATE_TIME(&range, "$lte", server_now + MONGOQ__CLOCK_SLACK_MS);
    bson_append_document_end(filter, &range);
    BSON_APPEND_DOCUMENT_BEGIN(filter, "$expr", &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, "$lte", &args);
    BSON_APPEND_UTF8(&args, "0", MONGOQ__P_RUN_AT);
    BSON_APPEND_UTF8(&args, "1", "$$NOW");
    bson_append_array_end(&expr, &args);
    bson_append_document_end(filter, &expr);
}

void
mongoq__document_append_projection(bson_t *opts, const char *const *fields, size_t n)
{
    bson_t proj;
    BSON_APPEND_DOCUMENT_BEGIN(opts, "projection", &proj);
    for (size_t i = 0; i < n; i++) {
        BSON_APPEND_INT32(&proj, fields[i], 1);
    }
    bson_append_document_end(opts, &proj);
}

void
mongoq__document_append_earliest_opts(bson_t *opts, bool with_partition)
{
    bson_t doc;
    BSON_APPEND_DOCUMENT_BEGIN(opts, "projection", &doc);
    BSON_APPEND_INT32(&doc, MONGOQ__F_ID, 0);
    BSON_APPEND_INT32(&doc, MONGOQ__F_RUN_AT, 1);
    if (with_partition) {
        BSON_APPEND_INT32(&doc, MONGOQ__F_PARTITION, 1);
    }
    bson_append_document_end(opts, &doc);
    BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &doc);
    BSON_APPEND_INT32(&doc, MONGOQ__F_RUN_AT, 1);
    bson_append_document_end(opts, &doc);
    BSON_APPEND_INT64(opts, "limit", 1);
}

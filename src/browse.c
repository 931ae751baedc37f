/*
 * Reading messages without claiming them: mongoq_queue_get by _id, and listings paged by a
 * resume point (keyset paging), never by skip.
 *
 * A listing's order is a list of sort fields (status first when the listing spans every
 * status), ending in _id so that every message has a distinct sort key. A page continues from
 * the last key K = (k0, ..., kn) read: the messages after K are those with
 *   (k0 .. kn-1 equal, _id after kn), then (k0 .. kn-2 equal, field n-1 after kn-1), ... ,
 *   then (field 0 after k0),
 * read in that order, one query each, each an equality prefix plus one range over an index
 * whose keys begin with those fields, sorted as the index is. So each page is at most n + 1
 * index range scans that start where the last page ended, whatever the page's depth. That holds
 * for the CLAIM order, whose index ends in _id; the RUN_AT and LEASE orders' indexes do not, and
 * their pages are read as browse_range.c explains.
 */
#include <inttypes.h>
#include <string.h>

#include "browse-private.h"
#include "clock-private.h"
#include "error-private.h"
#include "fields.h"
#include "message-private.h"
#include "partition-private.h"
#include "queue-private.h"

/* ---- get ---------------------------------------------------------------------------------- */

bool
mongoq_queue_get(mongoq_queue_t *queue, const bson_oid_t *id, mongoq_message_t **msg_out,
                 bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(id);
    BSON_ASSERT_PARAM(msg_out);
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *found;
    mongoc_client_t *client;
    bool ok = false;
    *msg_out = NULL;
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (!coll) {
        goto done;
    }
    BSON_APPEND_OID(&filter, MONGOQ__F_ID, id);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    if (mongoc_cursor_next(cursor, &found)) {
        bson_t *copy = bson_copy(found);
        *msg_out = mongoq__message_new_browsed(queue, copy, error);
        if (!*msg_out) {
            bson_destroy(copy);
        }
        ok = *msg_out != NULL;
    } else if (!mongoc_cursor_error(cursor, error)) {
        char hex[25];
        bson_oid_to_string(id, hex);
        mongoq__error_set(error, MONGOQ_ERROR_NOT_FOUND, "no message with _id %s in %s.%s", hex,
                          queue->db, queue->name);
    }
    mongoc_cursor_destroy(cursor);
done:
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* ---- options ------------------------------------------------------------------------------ */

static bool
known_status(const char *status)
{
    return strcmp(status, MONGOQ__S_READY) == 0 || strcmp(status, MONGOQ__S_PROCESSING) == 0 ||
           strcmp(status, MONGOQ__S_DONE) == 0 || strcmp(status, MONGOQ__S_DEAD) == 0;
}

static bool
check_text(const char *what, const char *text, size_t max, bson_error_t *error)
{
    if (text && (strlen(text) > max || !bson_utf8_validate(text, strlen(text), false))) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "browse: %s must be valid UTF-8 of at most %zu bytes", what, max);
        return false;
    }
    return true;
}

static bool
check_opts(const mongoq_browse_opts_t *o, bson_error_t *error)
{
    const char *bad = NULL;
    if (o->version == 0 || o->version > MONGOQ_BROWSE_OPTS_VERSION) {
        bad = "unknown opts version (use MONGOQ_BROWSE_OPTS_INIT)";
    } else if (o->status && !known_status(o->status)) {
        bad = "unknown status (ready, processing, done, dead, or NULL for all)";
    } else if (o->due < MONGOQ_BROWSE_DUE_ANY || o->due > MONGOQ_BROWSE_NOT_DUE) {
        bad = "unknown due filter";
    } else if (o->order < MONGOQ_BROWSE_ORDER_CLAIM || o->order > MONGOQ_BROWSE_ORDER_LEASE) {
        bad = "unknown order";
    } else if (o->order == MONGOQ_BROWSE_ORDER_LEASE &&
               (!o->status || strcmp(o->status, MONGOQ__S_PROCESSING) != 0)) {
        bad = "the lease order needs status \"processing\" (only those hold a lease)";
    } else if (o->page_size < 0 || o->page_size > MONGOQ_MAX_BATCH) {
        bad = "page_size must be 0 (the default) to MONGOQ_MAX_BATCH (" MONGOQ__STR(
            MONGOQ_MAX_BATCH) ")";
    }
    if (bad) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG, "browse: %s", bad);
        return false;
    }
    return check_text("dedup_key", o->dedup_key, MONGOQ_MAX_DEDUP_KEY_BYTES, error) &&
           check_text("claimed_by", o->claimed_by, MONGOQ_MAX_NAME_BYTES, error) &&
           check_text("error_contains", o->error_contains, MONGOQ_BROWSE_MAX_TEXT_BYTES, error);
}

/* The sort fields of a listing (see the comment at the top). */
static void
set_keys(mongoq_browse_t *b)
{
    static const mongoq__sort_key_t status = {MONGOQ__F_STATUS, 1, BSON_TYPE_UTF8};
    static const mongoq__sort_key_t orders[][3] = {
        {{MONGOQ__F_PRIORITY, -1, BSON_TYPE_INT32},
         {MONGOQ__F_RUN_AT, 1, BSON_TYPE_DATE_TIME},
         {MONGOQ__F_ID, 1, BSON_TYPE_OID}},
        {{MONGOQ__F_RUN_AT, 1, BSON_TYPE_DATE_TIME}, {MONGOQ__F_ID, 1, BSON_TYPE_OID}, {NULL, 0, 0}},
        {{MONGOQ__F_LEASE_EXPIRES_AT, 1, BSON_TYPE_DATE_TIME},
         {MONGOQ__F_ID, 1, BSON_TYPE_OID},
         {NULL, 0, 0}},
    };
    b->nkeys = 0;
    if (!b->status) {
        b->keys[b->nkeys++] = status;
    }
    for (size_t i = 0; i < 3 && orders[b->opts.order][i].field; i++) {
        b->keys[b->nkeys++] = orders[b->opts.order][i];
    }
}

/* ---- page tokens: hex of {o: order, s: status | null, k: [the last sort key]} --------------- */

static char *
token_encode(const mongoq_browse_t *b, const bson_t *key)
{
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_INT32(&doc, "o", (int32_t)b->opts.order);
    if (b->status) {
        BSON_APPEND_UTF8(&doc, "s", b->status);
    } else {
        BSON_APPEND_NULL(&doc, "s");
    }
    BSON_APPEND_ARRAY(&doc, "k", key);
    char *hex = bson_malloc(doc.len * 2 + 1);
    const uint8_t *data = bson_get_data(&doc);
    for (uint32_t i = 0; i < doc.len; i++) {
        bson_snprintf(hex + 2 * i, 3, "%02x", data[i]);
    }
    bson_destroy(&doc);
    return hex;
}

static int
hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Whether key (an array) holds one value of the expected type per sort field. */
static bool
key_matches(const mongoq_browse_t *b, const bson_t *key)
{
    bson_iter_t it;
    size_t i = 0;
    if (!bson_iter_init(&it, key)) {
        return false;
    }
    while (bson_iter_next(&it)) {
        bson_type_t t = bson_iter_type(&it);
        if (i >= b->nkeys || (t != b->keys[i].type && t != BSON_TYPE_NULL)) {
            return false;
        }
        i++;
    }
    return i == b->nkeys;
}

/* Decodes a token into b->last; checks it belongs to this listing. */
static bool
token_decode(mongoq_browse_t *b, const char *token, bson_error_t *error)
{
    size_t len = strlen(token);
    bool ok = false;
    uint8_t *data = bson_malloc(len / 2 + 1);
    bson_t *doc = NULL;
    bson_iter_t it, sub;
    bool digits = len % 2 == 0 && len >= 10 && len <= 4096;
    for (size_t i = 0; digits && i < len / 2; i++) {
        int hi = hex_digit(token[2 * i]), lo = hex_digit(token[2 * i + 1]);
        digits = hi >= 0 && lo >= 0;
        data[i] = (uint8_t)(hi * 16 + lo);
    }
    doc = digits ? bson_new_from_data(data, len / 2) : NULL;
    if (doc && bson_validate(doc, BSON_VALIDATE_UTF8, NULL) &&
        bson_iter_init_find(&it, doc, "o") && BSON_ITER_HOLDS_INT32(&it) &&
        bson_iter_int32(&it) == (int32_t)b->opts.order && bson_iter_init_find(&it, doc, "s") &&
        (b->status ? BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), b->status) == 0
                   : BSON_ITER_HOLDS_NULL(&it)) &&
        bson_iter_init_find(&it, doc, "k") && BSON_ITER_HOLDS_ARRAY(&it)) {
        uint32_t n;
        const uint8_t *arr;
        bson_iter_array(&it, &n, &arr);
        bson_t key;
        if (bson_init_static(&key, arr, n) && bson_iter_init(&sub, &key) && key_matches(b, &key)) {
            bson_destroy(&b->last);
            bson_copy_to(&key, &b->last);
            b->has_last = true;
            ok = true;
        }
    }
    if (!ok) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "browse: the page token is damaged or belongs to a listing of another "
                          "status or order");
    }
    bson_destroy(doc);
    bson_free(data);
    return ok;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

mongoq_browse_t *
mongoq_browse_new(mongoq_queue_t *queue, const mongoq_browse_opts_t *opts, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    mongoq_browse_opts_t defaults = MONGOQ_BROWSE_OPTS_INIT;
    const mongoq_browse_opts_t *o = opts ? opts : &defaults;
    if (!check_opts(o, error)) {
        return NULL;
    }
    mongoq_browse_t *b = bson_malloc0(sizeof *b);
    b->queue = queue;
    b->opts = *o;
    b->status = o->status ? bson_strdup(o->status) : NULL;
    b->dedup_key = o->dedup_key ? bson_strdup(o->dedup_key) : NULL;
    b->claimed_by = o->claimed_by ? bson_strdup(o->claimed_by) : NULL;
    b->error_contains = o->error_contains ? bson_strdup(o->error_contains) : NULL;
    b->opts.page_token = NULL;
    if (b->opts.page_size == 0) {
        b->opts.page_size = MONGOQ_BROWSE_DEFAULT_PAGE;
    }
    bson_init(&b->last);
    bson_init(&b->returned_last);
    set_keys(b);
    if (o->page_token) {
        if (!token_decode(b, o->page_token, error)) {
            mongoq_browse_destroy(b);
            return NULL;
        }
        b->token = bson_strdup(o->page_token);
    }
    return b;
}

void
mongoq_browse_destroy(mongoq_browse_t *b)
{
    if (!b) {
        return;
    }
    for (size_t i = b->page_pos; i < b->page_len; i++) {
        bson_destroy(b->page[i]);
    }
    bson_destroy(&b->last);
    bson_destroy(&b->returned_last);
    bson_free(b->status);
    bson_free(b->dedup_key);
    bson_free(b->claimed_by);
    bson_free(b->error_contains);
    bson_free(b->token);
    bson_free(b);
}

const char *
mongoq_browse_token(const mongoq_browse_t *b)
{
    BSON_ASSERT_PARAM(b);
    return b->token;
}

/* ---- reading pages ------------------------------------------------------------------------ */

/* Appends text as a regular expression matching it literally: every metacharacter escaped. */
static void
append_literal_regex(bson_t *filter, const char *field, const char *text)
{
    bson_string_t *re = bson_string_new(NULL);
    for (const char *c = text; *c; c++) {
        if (strchr(".^$*+?()[]{}|\\", *c)) {
            bson_string_append_c(re, '\\');
        }
        bson_string_append_c(re, *c);
    }
    bson_append_regex(filter, field, -1, re->str, "");
    bson_string_free(re, true);
}

void
mongoq__browse_base_filter(const mongoq_browse_t *b, bson_t *filter)
{
    /* A partitioned queue's indexes begin with partition: name every one, and the server merges
     * one index scan per partition in the listing's order. */
    mongoq__partition_append_all(filter, b->queue->opts.partitions);
    if (b->status) {
        BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, b->status);
    }
    if (b->dedup_key) {
        BSON_APPEND_UTF8(filter, MONGOQ__F_DEDUP_KEY, b->dedup_key);
    }
    if (b->claimed_by) {
        BSON_APPEND_UTF8(filter, MONGOQ__F_CLAIMED_BY, b->claimed_by);
    }
    if (b->error_contains) {
        append_literal_regex(filter, MONGOQ__F_LAST_ERROR, b->error_contains);
    }
}

bool
mongoq__browse_last_value(const mongoq_browse_t *b, size_t i, bson_iter_t *it)
{
    char key[16];
    const char *k;
    bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
    return bson_iter_init_find(it, &b->last, k);
}

/*
 * The filter of one query of a page: the base, the last key's fields 0 .. level-1 as
 * equalities, field `level` past the last key (none without a last key: level == nkeys), and
 * the due range on run_at unless run_at is already an equality.
 */
static void
build_filter(const mongoq_browse_t *b, size_t level, int64_t now, bson_t *filter)
{
    bson_iter_t it;
    bool run_at_eq = false, run_at_range = false;
    bson_t range;
    mongoq__browse_base_filter(b, filter);
    for (size_t i = 0; i < level && mongoq__browse_last_value(b, i, &it); i++) {
        bson_append_value(filter, b->keys[i].field, -1, bson_iter_value(&it));
        run_at_eq = run_at_eq || strcmp(b->keys[i].field, MONGOQ__F_RUN_AT) == 0;
    }
    bool due = b->opts.due != MONGOQ_BROWSE_DUE_ANY && !run_at_eq;
    if (level < b->nkeys && mongoq__browse_last_value(b, level, &it)) {
        const mongoq__sort_key_t *key = &b->keys[level];
        run_at_range = strcmp(key->field, MONGOQ__F_RUN_AT) == 0;
        BSON_APPEND_DOCUMENT_BEGIN(filter, key->field, &range);
        bson_append_value(&range, key->direction > 0 ? "$gt" : "$lt", -1, bson_iter_value(&it));
        if (due && run_at_range) {
            BSON_APPEND_DATE_TIME(&range, b->opts.due == MONGOQ_BROWSE_DUE_ONLY ? "$lte" : "$gt",
                                  now);
        }
        bson_append_document_end(filter, &range);
    }
    if (due && !run_at_range) {
        BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_RUN_AT, &range);
        BSON_APPEND_DATE_TIME(&range, b->opts.due == MONGOQ_BROWSE_DUE_ONLY ? "$lte" : "$gt", now);
        bson_append_document_end(filter, &range);
    }
}

/* {sort: {fields from .. }, limit}. */
static void
build_find_opts(const mongoq_browse_t *b, size_t from, int64_t limit, bson_t *opts)
{
    bson_t sort;
    BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sort);
    for (size_t i = from; i < b->nkeys; i++) {
        BSON_APPEND_INT32(&sort, b->keys[i].field, b->keys[i].direction);
    }
    bson_append_document_end(opts, &sort);
    BSON_APPEND_INT64(opts, "limit", limit);
}

/* The sort key of doc into key (an array; a missing field is null). */
static void
key_of(const mongoq_browse_t *b, const bson_t *doc, bson_t *key)
{
    char buf[16];
    const char *k;
    bson_iter_t it;
    for (size_t i = 0; i < b->nkeys; i++) {
        bson_uint32_to_string((uint32_t)i, &k, buf, sizeof buf);
        if (bson_iter_init_find(&it, doc, b->keys[i].field)) {
            bson_append_value(key, k, -1, bson_iter_value(&it));
        } else {
            BSON_APPEND_NULL(key, k);
        }
    }
}

bool
mongoq__browse_find(mongoq_browse_t *b, mongoc_collection_t *coll, const bson_t *filter,
                    const bson_t *opts, bson_error_t *error)
{
    const bson_t *doc;
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    while (b->page_len < (size_t)b->opts.page_size && mongoc_cursor_next(cursor, &doc)) {
        b->page[b->page_len++] = bson_copy(doc);
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    return ok;
}

/*
 * Sorted from field `level` (level == nkeys: every field). The ties of the last value in the
 * orders whose index has no _id (level nkeys - 1, _id after the last _id) sort by {value, _id}:
 * by _id alone, the _id index would give that sort and the server might walk it from the last
 * _id to the end; {value, _id} no index gives, so the server reads the tied entries and sorts.
 */
bool
mongoq__browse_read_level(mongoq_browse_t *b, mongoc_collection_t *coll, size_t level,
                          int64_t now, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    size_t from = level < b->nkeys ? level : 0;
    if (b->opts.order != MONGOQ_BROWSE_ORDER_CLAIM && level == b->nkeys - 1) {
        from = level - 1;
    }
    build_filter(b, level, now, &filter);
    build_find_opts(b, from, b->opts.page_size - (int64_t)b->page_len, &opts);
    bool ok = mongoq__browse_find(b, coll, &filter, &opts, error);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* A page of the CLAIM order: the queries of the top comment, deepest level first. */
static bool
read_levels(mongoq_browse_t *b, mongoc_collection_t *coll, int64_t now, bson_error_t *error)
{
    if (!b->has_last) {
        return mongoq__browse_read_level(b, coll, b->nkeys, now, error);
    }
    bool ok = true;
    for (size_t level = b->nkeys; ok && level-- > 0 && b->page_len < (size_t)b->opts.page_size;) {
        ok = mongoq__browse_read_level(b, coll, level, now, error);
    }
    return ok;
}

/* Reads the next page from the last key; an empty page ends the listing. */
static bool
read_page(mongoq_browse_t *b, bson_error_t *error)
{
    mongoc_client_t *client;
    b->page_len = b->page_pos = 0;
    mongoc_collection_t *coll = mongoq__queue_checkout(b->queue, &client, error);
    bool ok = coll != NULL;
    int64_t now = mongoq__clock_server_now_ms(b->queue->clock);
    if (ok) {
        ok = b->opts.order == MONGOQ_BROWSE_ORDER_CLAIM
                 ? read_levels(b, coll, now, error)
                 : mongoq__browse_read_by_value(b, coll, now, error);
    }
    mongoq__queue_release(b->queue, client, coll);
    if (!ok) {
        for (size_t i = 0; i < b->page_len; i++) {
            bson_destroy(b->page[i]);
        }
        b->page_len = 0;
        return false;
    }
    if (b->page_len == 0) {
        b->ended = true;
    } else {
        bson_reinit(&b->last);
        key_of(b, b->page[b->page_len - 1], &b->last);
        b->has_last = true;
    }
    return true;
}

bool
mongoq_browse_next(mongoq_browse_t *b, mongoq_message_t **msg_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(b);
    BSON_ASSERT_PARAM(msg_out);
    *msg_out = NULL;
    /* Bounded: each round either returns, ends, or consumes one document of the page. */
    while (!b->ended) {
        if (b->page_pos == b->page_len && !read_page(b, error)) {
            return false;
        }
        if (b->ended) {
            break;
        }
        bson_t *doc = b->page[b->page_pos++];
        bson_reinit(&b->returned_last);
        key_of(b, doc, &b->returned_last);
        bson_free(b->token);
        b->token = token_encode(b, &b->returned_last);
        *msg_out = mongoq__message_new_browsed(b->queue, doc, NULL);
        if (*msg_out) {
            return true;
        }
        bson_destroy(doc); /* not a message: skipped */
    }
    return true;
}

/*
 * Pages of the listings whose index does not end in _id: RUN_AT, sorted {[status,] run_at, _id}
 * over the due index {[partition,] status, run_at}, and LEASE, sorted {lease_expires_at, _id}
 * over the lease index {[partition,] status, lease_expires_at}. Call run_at or lease_expires_at
 * the order's value.
 *
 * The server cannot take the _id tiebreak from those indexes. Asked for {value, _id} over the
 * rest of a range with a limit, it reads every index entry of the range, fetches every document
 * and sorts them all to return the first few (a blocking top-k SORT): a page deep in a long
 * listing then costs the whole rest of it. So a page reads each stretch of a range in two steps:
 *  1. the boundary: the values of the next `want` entries, sorted {value} as the index is and
 *     projected on value alone (covered: keys only, no document), the last of them B;
 *  2. the messages with value in (last value, B], sorted {value, _id}, limit want.
 * At least `want` messages have a value <= B, so the first `want` of step 2 are the first `want`
 * after the last value, in the documented order; and step 2's SORT holds at most the want - 1
 * messages before B plus those tied on B. The messages tied on the last value itself come first
 * ({value: last, _id > last _id}, sorted {value, _id}: the tied messages at most; sorting by _id
 * alone would let the server walk the _id index from the last _id to the end).
 *
 * A message that leaves the range between the two steps leaves the page short; the next round
 * goes on after B, which step 2 has read whole. Rounds are bounded (MAX_ROUNDS); past them, one
 * plain read of the rest of the range finishes the page, exact but sorted in the server.
 *
 * A listing over every status reads one status at a time: the rest of the last key's status,
 * then each next status from its start, found by a covered read of the next status value.
 * Values that are not dates (no message mongoq wrote has one) are left out of these orders.
 */
#include <string.h>

#include "browse-private.h"
#include "fields.h"

#define MAX_ROUNDS 8        /* boundary and document rounds of one range before a plain read */
#define MAX_STATUS_STEPS 16 /* statuses one page moves through: "dead" .. "ready" and spare */

/* A stretch of one status (NULL: the listing's own) after lo (has_lo false: from the start). */
typedef struct {
    const char *status;
    bool has_lo;
    int64_t lo;
} range_t;

static const char *
value_field(const mongoq_browse_t *b)
{
    return b->keys[b->nkeys - 2].field;
}

static bool
value_is_run_at(const mongoq_browse_t *b)
{
    return strcmp(value_field(b), MONGOQ__F_RUN_AT) == 0;
}

static int64_t
room(const mongoq_browse_t *b)
{
    return b->opts.page_size - (int64_t)b->page_len;
}

/* run_at against now as the listing's due filter asks, when run_at is not the order's value. */
static void
append_due(const mongoq_browse_t *b, bson_t *filter, int64_t now)
{
    bson_t range;
    if (b->opts.due == MONGOQ_BROWSE_DUE_ANY) {
        return;
    }
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_RUN_AT, &range);
    BSON_APPEND_DATE_TIME(&range, b->opts.due == MONGOQ_BROWSE_DUE_ONLY ? "$lte" : "$gt", now);
    bson_append_document_end(filter, &range);
}

/* The base filter, r's status, and value in (lo, *hi] (hi NULL: no end), the due filter folded
 * into those bounds when the value is run_at. */
static void
range_filter(const mongoq_browse_t *b, const range_t *r, const int64_t *hi, int64_t now,
             bson_t *filter)
{
    bson_t range;
    bool has_lo = r->has_lo, has_hi = hi != NULL;
    int64_t lo_ms = r->lo, hi_ms = hi ? *hi : 0;
    bool due = b->opts.due != MONGOQ_BROWSE_DUE_ANY && value_is_run_at(b);
    if (due && b->opts.due == MONGOQ_BROWSE_NOT_DUE && (!has_lo || lo_ms < now)) {
        has_lo = true;
        lo_ms = now;
    } else if (due && b->opts.due == MONGOQ_BROWSE_DUE_ONLY && (!has_hi || hi_ms > now)) {
        has_hi = true;
        hi_ms = now;
    }
    mongoq__browse_base_filter(b, filter);
    if (r->status) {
        BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, r->status);
    }
    BSON_APPEND_DOCUMENT_BEGIN(filter, value_field(b), &range);
    if (has_lo) {
        BSON_APPEND_DATE_TIME(&range, "$gt", lo_ms);
    } else {
        BSON_APPEND_DATE_TIME(&range, "$gte", INT64_MIN); /* every date, nothing else */
    }
    if (has_hi) {
        BSON_APPEND_DATE_TIME(&range, "$lte", hi_ms);
    }
    bson_append_document_end(filter, &range);
    if (!value_is_run_at(b)) {
        append_due(b, filter, now);
    }
}

/* {sort: {value: 1[, _id: 1]}, limit[, projection: {value: 1, _id: 0}]}. */
static void
range_opts(const mongoq_browse_t *b, bool with_id, bool covered, int64_t limit, bson_t *opts)
{
    bson_t doc;
    BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &doc);
    BSON_APPEND_INT32(&doc, value_field(b), 1);
    if (with_id) {
        BSON_APPEND_INT32(&doc, MONGOQ__F_ID, 1);
    }
    bson_append_document_end(opts, &doc);
    BSON_APPEND_INT64(opts, "limit", limit);
    if (covered) {
        BSON_APPEND_DOCUMENT_BEGIN(opts, "projection", &doc);
        BSON_APPEND_INT32(&doc, value_field(b), 1);
        BSON_APPEND_INT32(&doc, MONGOQ__F_ID, 0);
        bson_append_document_end(opts, &doc);
    }
}

/* Step 1: the value of the want-th entry after r's start (the last one when fewer) into *hi,
 * the number of entries read into *n. */
static bool
read_boundary(const mongoq_browse_t *b, mongoc_collection_t *coll, const range_t *r, int64_t now,
              int64_t want, int64_t *hi, int64_t *n, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *doc;
    bson_iter_t it;
    range_filter(b, r, NULL, now, &filter);
    range_opts(b, false, true, want, &opts);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    *n = 0;
    while (*n < want && mongoc_cursor_next(cursor, &doc)) {
        if (bson_iter_init_find(&it, doc, value_field(b)) && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            *hi = bson_iter_date_time(&it);
            (*n)++;
        }
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* Step 2 (hi NULL: the plain read of the whole rest): the messages of r up to *hi, in order. */
static bool
read_messages(mongoq_browse_t *b, mongoc_collection_t *coll, const range_t *r, const int64_t *hi,
              int64_t now, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    range_filter(b, r, hi, now, &filter);
    range_opts(b, true, false, room(b), &opts);
    bool ok = mongoq__browse_find(b, coll, &filter, &opts, error);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* Fills the page from the stretch r, boundary by boundary. */
static bool
read_range(mongoq_browse_t *b, mongoc_collection_t *coll, range_t *r, int64_t now,
           bson_error_t *error)
{
    for (int round = 0; round < MAX_ROUNDS; round++) {
        int64_t want = room(b), hi = 0, n = 0;
        if (want == 0) {
            return true;
        }
        if (!read_boundary(b, coll, r, now, want, &hi, &n, error)) {
            return false;
        }
        if (n == 0) {
            return true;
        }
        if (!read_messages(b, coll, r, &hi, now, error)) {
            return false;
        }
        if (n < want) {
            return true; /* the stretch ended at hi */
        }
        /* Full, or short because messages left (lo, hi] meanwhile: it was read whole. */
        r->has_lo = true;
        r->lo = hi;
    }
    return room(b) == 0 || read_messages(b, coll, r, NULL, now, error);
}

/* The smallest status after `after` (NULL: the first) with a message in the listing, or NULL. */
static bool
next_status(const mongoq_browse_t *b, mongoc_collection_t *coll, const char *after, int64_t now,
            char **status, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, doc;
    const bson_t *found;
    bson_iter_t it;
    *status = NULL;
    mongoq__browse_base_filter(b, &filter);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_STATUS, &doc);
    BSON_APPEND_UTF8(&doc, after ? "$gt" : "$gte", after ? after : ""); /* strings only */
    bson_append_document_end(&filter, &doc);
    append_due(b, &filter, now);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &doc);
    BSON_APPEND_INT32(&doc, MONGOQ__F_STATUS, 1);
    bson_append_document_end(&opts, &doc);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &doc);
    BSON_APPEND_INT32(&doc, MONGOQ__F_STATUS, 1);
    BSON_APPEND_INT32(&doc, MONGOQ__F_ID, 0);
    bson_append_document_end(&opts, &doc);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    if (mongoc_cursor_next(cursor, &found) && bson_iter_init_find(&it, found, MONGOQ__F_STATUS) &&
        BSON_ITER_HOLDS_UTF8(&it)) {
        *status = bson_strdup(bson_iter_utf8(&it, NULL));
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* The rest of the last key's stretch: its ties, then after its value. *status gets the last
 * key's status in a listing over every status (owned). */
static bool
read_after_last(mongoq_browse_t *b, mongoc_collection_t *coll, int64_t now, char **status,
                bson_error_t *error)
{
    bson_iter_t it;
    range_t r = {NULL, false, 0};
    if (!mongoq__browse_read_level(b, coll, b->nkeys - 1, now, error)) {
        return false;
    }
    if (!b->status) {
        if (!mongoq__browse_last_value(b, 0, &it) || !BSON_ITER_HOLDS_UTF8(&it)) {
            return true; /* no status: every status follows */
        }
        *status = bson_strdup(bson_iter_utf8(&it, NULL));
        r.status = *status;
    }
    if (mongoq__browse_last_value(b, b->nkeys - 2, &it) && BSON_ITER_HOLDS_DATE_TIME(&it)) {
        r.has_lo = true; /* after a value that is no date: every date */
        r.lo = bson_iter_date_time(&it);
    }
    return read_range(b, coll, &r, now, error);
}

bool
mongoq__browse_read_by_value(mongoq_browse_t *b, mongoc_collection_t *coll, int64_t now,
                             bson_error_t *error)
{
    char *status = NULL;
    bool ok = true;
    if (b->has_last) {
        ok = read_after_last(b, coll, now, &status, error);
    } else if (b->status) {
        range_t r = {NULL, false, 0};
        ok = read_range(b, coll, &r, now, error);
    }
    /* Every status: the next ones in turn, each from its start. Bounded: each step moves to a
     * greater status, and there are four. */
    for (int step = 0; ok && !b->status && room(b) > 0 && step < MAX_STATUS_STEPS; step++) {
        char *next = NULL;
        ok = next_status(b, coll, status, now, &next, error);
        bson_free(status);
        status = next;
        if (!ok || !next) {
            break;
        }
        range_t r = {next, false, 0};
        ok = read_range(b, coll, &r, now, error);
    }
    bson_free(status);
    return ok;
}

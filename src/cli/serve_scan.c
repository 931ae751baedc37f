/*
 * `mongoq serve`: the API's answers that read many documents, each with a bound so that a queue
 * of millions never makes one request read them all.
 *
 *  - messages: a page of a browse listing (index order, resumable by token). With ?q=TEXT it
 *    is a search: the listing is read on, at most SEARCH_SCAN messages per request, and the
 *    messages whose payload (as JSON), last error, error history or id hold TEXT (ASCII case
 *    ignored) are kept; "scanned" says how many were read, "next" resumes the search after the
 *    last one read. The library's error_contains is not used: it filters on the server, which
 *    reads a long range to the end when matches are rare.
 *  - consumers: the names in claimed_by, from two sources. The database: the latest
 *    CONSUMER_SCAN messages of each of processing, done and dead (by the lease or due index),
 *    grouped by claimed_by. The change stream: the claims the sampler saw since the dashboard
 *    started (a consumer whose messages were acked and deleted is seen only there).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "serve.h"

#define PAGE_DEFAULT 50
#define PAGE_MAX 200
#define SEARCH_SCAN 5000 /* messages one search request reads, at most */
#define SEARCH_PAGE 200  /* messages per round trip of a search */
#define SEARCH_TEXT_MAX 200
#define CONSUMER_SCAN 5000 /* messages read per status for the consumers view, at most */
#define CONSUMERS_MAX 500

/* Whether hay holds needle (nlen bytes, nlen > 0), ignoring ASCII case. */
static bool
contains_text(const char *hay, const char *needle, size_t nlen)
{
    for (const char *p = hay; p && *p; p++) {
        size_t i = 0;
        while (i < nlen && p[i] &&
               tolower((unsigned char)p[i]) == tolower((unsigned char)needle[i])) {
            i++;
        }
        if (i == nlen) {
            return true;
        }
    }
    return false;
}

static bool
message_matches(const mongoq_message_t *msg, const char *text)
{
    size_t n = strlen(text);
    char hex[25];
    bson_iter_t it, entry;
    bson_oid_to_string(mongoq_message_id(msg), hex);
    if (contains_text(hex, text, n) || contains_text(mongoq_message_last_error(msg), text, n)) {
        return true;
    }
    const bson_t *errors = mongoq_message_errors(msg);
    for (bool more = errors && bson_iter_init(&it, errors); more && bson_iter_next(&it);) {
        if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &entry) &&
            bson_iter_find(&entry, MONGOQ__F_ERROR_TEXT) && BSON_ITER_HOLDS_UTF8(&entry) &&
            contains_text(bson_iter_utf8(&entry, NULL), text, n)) {
            return true;
        }
    }
    char *json = bson_as_relaxed_extended_json(mongoq_message_payload(msg), NULL);
    bool found = contains_text(json, text, n);
    bson_free(json);
    return found;
}

/* The listing's options from ?status=&sort=&page=; false (reply filled) when they are bad. */
static bool
listing_opts(serve_arg_fn arg, void *ctx, mongoq_browse_opts_t *opts, serve_reply_t *reply)
{
    const char *status = arg(ctx, "status"), *sort = arg(ctx, "sort"), *page = arg(ctx, "page");
    const char *text = arg(ctx, "q");
    if (text && strlen(text) > SEARCH_TEXT_MAX) {
        serve__error(reply, 400, "q: at most 200 bytes");
        return false;
    }
    opts->status = status && *status && strcmp(status, "all") != 0 ? status : NULL;
    opts->order = !sort || !*sort || strcmp(sort, "claim") == 0 ? MONGOQ_BROWSE_ORDER_CLAIM
                  : strcmp(sort, "run_at") == 0                 ? MONGOQ_BROWSE_ORDER_RUN_AT
                  : strcmp(sort, "lease") == 0                  ? MONGOQ_BROWSE_ORDER_LEASE
                                                                : (mongoq_browse_order_t)99;
    opts->page_token = page && *page ? page : NULL;
    return true;
}

/* ?status=&q=&sort=claim|run_at|lease&page=TOKEN&limit=N: one page, or one bounded search. */
void
serve__get_messages(mongoq_queue_t *q, serve_arg_fn arg, void *ctx, serve_reply_t *reply)
{
    const char *limit_text = arg(ctx, "limit"), *text = arg(ctx, "q");
    long limit = limit_text ? strtol(limit_text, NULL, 10) : PAGE_DEFAULT;
    mongoq_browse_opts_t opts = MONGOQ_BROWSE_OPTS_INIT;
    bson_error_t error;
    text = text && *text ? text : NULL;
    if (limit < 1 || limit > PAGE_MAX) {
        serve__error(reply, 400, "limit: 1 to 200");
        return;
    }
    if (!listing_opts(arg, ctx, &opts, reply)) {
        return;
    }
    opts.page_size = text ? SEARCH_PAGE : (int32_t)limit;
    mongoq_browse_t *b = mongoq_browse_new(q, &opts, &error);
    if (!b) {
        serve__fail(reply, &error);
        return;
    }
    bson_t doc = BSON_INITIALIZER, arr, item;
    BSON_APPEND_ARRAY_BEGIN(&doc, "messages", &arr);
    long n = 0, scanned = 0;
    bool ok = true, ended = false;
    while (ok && !ended && n < limit && (!text || scanned < SEARCH_SCAN)) {
        mongoq_message_t *msg = NULL;
        ok = mongoq_browse_next(b, &msg, &error);
        ended = ok && !msg;
        if (msg && (scanned++, !text || message_matches(msg, text))) {
            char key[16];
            const char *kp;
            bson_uint32_to_string((uint32_t)n++, &kp, key, sizeof key);
            BSON_APPEND_DOCUMENT_BEGIN(&arr, kp, &item);
            cli_message_doc(msg, false, &item);
            bson_append_document_end(&arr, &item);
        }
        mongoq_message_destroy(msg);
    }
    bson_append_array_end(&doc, &arr);
    const char *next = ok && !ended ? mongoq_browse_token(b) : NULL;
    if (next) {
        BSON_APPEND_UTF8(&doc, "next", next);
    } else {
        BSON_APPEND_NULL(&doc, "next");
    }
    BSON_APPEND_INT64(&doc, "scanned", scanned);
    BSON_APPEND_INT32(&doc, "scan_limit", SEARCH_SCAN);
    BSON_APPEND_BOOL(&doc, "scan_stopped", text && next && scanned >= SEARCH_SCAN);
    if (ok) {
        serve__ok_json(reply, &doc);
    } else {
        serve__fail(reply, &error);
    }
    bson_destroy(&doc);
    mongoq_browse_destroy(b);
}

/* ---- consumers --------------------------------------------------------------------------------
 */

typedef struct {
    char name[MONGOQ_MAX_NAME_BYTES + 1];
    int64_t in_flight, done, dead, claims;      /* claims: seen in the change stream */
    int64_t last_seen, lease_until, last_claim; /* ms; 0: none */
} consumer_row_t;

typedef struct {
    consumer_row_t *rows;
    size_t n;
    int64_t scanned[3]; /* processing, done, dead */
} consumers_t;

static consumer_row_t *
row_of(consumers_t *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->rows[i].name, name) == 0) {
            return &c->rows[i];
        }
    }
    if (c->n == CONSUMERS_MAX) {
        return NULL;
    }
    consumer_row_t *r = &c->rows[c->n++];
    bson_strncpy(r->name, name, sizeof r->name);
    return r;
}

static int64_t
max_date(const bson_t *row, const char *key, int64_t before)
{
    bson_iter_t it;
    int64_t v = bson_iter_init_find(&it, row, key) && BSON_ITER_HOLDS_DATE_TIME(&it)
                    ? bson_iter_date_time(&it)
                    : 0;
    return v > before ? v : before;
}

/*
 * Groups the latest CONSUMER_SCAN messages of one status (index order on by_field, newest
 * first; the $limit comes before the $group, so the read is bounded) by claimed_by into c.
 */
static bool
scan_status(mongoc_collection_t *coll, int which, const char *status, const char *by_field,
            consumers_t *c, bson_error_t *error)
{
    /* [{$match: {status}}, {$sort: {by_field: -1}}, {$limit: CONSUMER_SCAN}, {$group: {_id:
     *  "$claimed_by", n: {$sum: 1}, last_seen: {$max: "$updated_at"}, lease_until: {$max:
     *  "$lease_expires_at"}}}] */
    bson_t *pipeline = bson_new(), stages, stage, body, op;
    BSON_APPEND_ARRAY_BEGIN(pipeline, "pipeline", &stages);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &body);
    BSON_APPEND_UTF8(&body, MONGOQ__F_STATUS, status);
    bson_append_document_end(&stage, &body);
    bson_append_document_end(&stages, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "1", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$sort", &body);
    BSON_APPEND_INT32(&body, by_field, -1);
    bson_append_document_end(&stage, &body);
    bson_append_document_end(&stages, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "2", &stage);
    BSON_APPEND_INT32(&stage, "$limit", CONSUMER_SCAN);
    bson_append_document_end(&stages, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "3", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &body);
    BSON_APPEND_UTF8(&body, "_id", "$" MONGOQ__F_CLAIMED_BY);
    BSON_APPEND_DOCUMENT_BEGIN(&body, "n", &op);
    BSON_APPEND_INT32(&op, "$sum", 1);
    bson_append_document_end(&body, &op);
    BSON_APPEND_DOCUMENT_BEGIN(&body, "last_seen", &op);
    BSON_APPEND_UTF8(&op, "$max", "$" MONGOQ__F_UPDATED_AT);
    bson_append_document_end(&body, &op);
    BSON_APPEND_DOCUMENT_BEGIN(&body, "lease_until", &op);
    BSON_APPEND_UTF8(&op, "$max", "$" MONGOQ__F_LEASE_EXPIRES_AT);
    bson_append_document_end(&body, &op);
    bson_append_document_end(&stage, &body);
    bson_append_document_end(&stages, &stage);
    bson_append_array_end(pipeline, &stages);
    mongoc_cursor_t *cursor =
        mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    const bson_t *doc;
    bson_iter_t it;
    while (mongoc_cursor_next(cursor, &doc)) {
        int64_t n = bson_iter_init_find(&it, doc, "n") ? bson_iter_as_int64(&it) : 0;
        c->scanned[which] += n;
        consumer_row_t *r = bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it)
                                ? row_of(c, bson_iter_utf8(&it, NULL))
                                : NULL;
        if (r) {
            *(which == 0 ? &r->in_flight : which == 1 ? &r->done : &r->dead) += n;
            r->last_seen = max_date(doc, "last_seen", r->last_seen);
            r->lease_until =
                which == 0 ? max_date(doc, "lease_until", r->lease_until) : r->lease_until;
        }
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(pipeline);
    return ok;
}

/* Adds the claims the sampler saw in this queue (copied under its lock). */
static void
add_claimers(serve_t *srv, const char *queue, consumers_t *c)
{
    pthread_mutex_lock(&srv->mu);
    for (size_t i = 0; i < srv->nclaimers; i++) {
        const serve_claimer_t *s = &srv->claimers[i];
        consumer_row_t *r = strcmp(s->queue, queue) == 0 ? row_of(c, s->name) : NULL;
        if (r) {
            r->claims = s->claims;
            r->last_claim = s->last_claim_ms;
        }
    }
    pthread_mutex_unlock(&srv->mu);
}

static int64_t
last_activity(const consumer_row_t *r)
{
    return r->last_seen > r->last_claim ? r->last_seen : r->last_claim;
}

static int
by_activity(const void *a, const void *b)
{
    int64_t x = last_activity(a), y = last_activity(b);
    return x < y   ? 1
           : x > y ? -1
                   : strcmp(((const consumer_row_t *)a)->name, ((const consumer_row_t *)b)->name);
}

static void
append_date_or_null(bson_t *doc, const char *key, int64_t ms)
{
    if (ms > 0) {
        BSON_APPEND_DATE_TIME(doc, key, ms);
    } else {
        BSON_APPEND_NULL(doc, key);
    }
}

static void
consumers_doc(serve_t *srv, const consumers_t *c, bson_t *doc)
{
    bson_t arr, item, scanned;
    BSON_APPEND_ARRAY_BEGIN(doc, "consumers", &arr);
    for (size_t i = 0; i < c->n; i++) {
        const consumer_row_t *r = &c->rows[i];
        char key[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, kp, &item);
        BSON_APPEND_UTF8(&item, "name", r->name);
        BSON_APPEND_INT64(&item, "in_flight", r->in_flight);
        BSON_APPEND_INT64(&item, "done", r->done);
        BSON_APPEND_INT64(&item, "dead", r->dead);
        BSON_APPEND_INT64(&item, "claims_seen", r->claims);
        append_date_or_null(&item, "last_seen", last_activity(r));
        append_date_or_null(&item, "lease_until", r->lease_until);
        bson_append_document_end(&arr, &item);
    }
    bson_append_array_end(doc, &arr);
    BSON_APPEND_DOCUMENT_BEGIN(doc, "scanned", &scanned);
    BSON_APPEND_INT64(&scanned, MONGOQ__S_PROCESSING, c->scanned[0]);
    BSON_APPEND_INT64(&scanned, MONGOQ__S_DONE, c->scanned[1]);
    BSON_APPEND_INT64(&scanned, MONGOQ__S_DEAD, c->scanned[2]);
    bson_append_document_end(doc, &scanned);
    BSON_APPEND_INT32(doc, "scan_limit", CONSUMER_SCAN);
    pthread_mutex_lock(&srv->mu);
    BSON_APPEND_BOOL(doc, "watching", srv->watching);
    pthread_mutex_unlock(&srv->mu);
    BSON_APPEND_DATE_TIME(doc, "since", srv->started_ms);
}

void
serve__get_consumers(serve_t *srv, mongoq_queue_t *q, serve_reply_t *reply)
{
    consumers_t c = {.rows = bson_malloc0(CONSUMERS_MAX * sizeof *c.rows)};
    bson_error_t error;
    bson_t doc = BSON_INITIALIZER;
    mongoc_client_t *client = cli_pop(srv->cli, &error);
    bool ok = false;
    if (client) {
        mongoc_collection_t *coll =
            mongoc_client_get_collection(client, srv->db, mongoq_queue_name(q));
        ok = scan_status(coll, 0, MONGOQ__S_PROCESSING, MONGOQ__F_LEASE_EXPIRES_AT, &c, &error) &&
             scan_status(coll, 1, MONGOQ__S_DONE, MONGOQ__F_RUN_AT, &c, &error) &&
             scan_status(coll, 2, MONGOQ__S_DEAD, MONGOQ__F_RUN_AT, &c, &error);
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(srv->cli->pool, client);
    }
    if (ok) {
        add_claimers(srv, mongoq_queue_name(q), &c);
        qsort(c.rows, c.n, sizeof *c.rows, by_activity);
        consumers_doc(srv, &c, &doc);
        serve__ok_json(reply, &doc);
    } else {
        serve__fail(reply, &error);
    }
    bson_destroy(&doc);
    bson_free(c.rows);
}

/*
 * mongoq-bench's second baseline: the commands mongoq sends, written with plain libmongoc calls.
 * The naive loop (bench_raw.c) claims with a plain $set on the client's clock and deletes by _id;
 * this one sends what src/claim.c and src/ack.c send, so that mongoq against it measures the
 * library's own overhead (pool checkouts, parsing, bookkeeping) apart from the cost of its
 * command shapes ($$NOW pipelines, fencing, the read-back of claim_many):
 *  - claim: findAndModify {query: {status: ready, run_at: {$lte: now + 2 s}, $expr: {$lte:
 *    ["$run_at", "$$NOW"]}}, sort: {priority: -1, run_at: 1, _id: 1}, update: [{$set: {status,
 *    attempts: guarded + 1, lease_token: fresh ObjectId, claimed_by: {$literal}, lease_expires_at:
 *    $$NOW + lease, updated_at: $$NOW}}], new: true};
 *  - ack: deleteOne {_id, lease_token, status: processing};
 *  - claim_many(B): find the due _ids (sorted, projected to _id, limit B), updateMany {_id: {$in},
 *    due} with the claim pipeline and one token, find {_id: {$in}, lease_token, status} sorted;
 *    when another claimer took every candidate first, one claim as above instead;
 *  - ack_many: deleteMany {$or: [{_id, lease_token, status}, ...]} (deleteOne for one message).
 * Every write carries the same write concern as mongoq's default, {w: "majority", j: true}.
 * bench_same_shapes_match() checks, through command monitoring, that both still send the same
 * command shapes, so a change in src/ that this file misses shows up in the results.
 */
#include "bench.h"

#define SAME_LEASE_MS 30000 /* mongoq's default lease */
#define SAME_SLACK_MS 2000  /* MONGOQ__CLOCK_SLACK_MS: the index range's margin over "now" */
#define SAME_NAME "bench-same"

/* {status: ready, run_at: {$lte: now + slack}, $expr: {$lte: ["$run_at", "$$NOW"]}} */
static void
append_due(bson_t *filter)
{
    bson_t range, expr, args;
    BSON_APPEND_UTF8(filter, "status", "ready");
    BSON_APPEND_DOCUMENT_BEGIN(filter, "run_at", &range);
    BSON_APPEND_DATE_TIME(&range, "$lte", bench_wall_ms() + SAME_SLACK_MS);
    bson_append_document_end(filter, &range);
    BSON_APPEND_DOCUMENT_BEGIN(filter, "$expr", &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, "$lte", &args);
    BSON_APPEND_UTF8(&args, "0", "$run_at");
    BSON_APPEND_UTF8(&args, "1", "$$NOW");
    bson_append_array_end(&expr, &args);
    bson_append_document_end(filter, &expr);
}

static void
append_sort(bson_t *sort)
{
    BSON_APPEND_INT32(sort, "priority", -1);
    BSON_APPEND_INT32(sort, "run_at", 1);
    BSON_APPEND_INT32(sort, "_id", 1);
}

/* [{$set: {status, attempts, lease_token, claimed_by, lease_expires_at, updated_at}}] */
static void
build_claim_update(const bson_oid_t *token, bson_t *pipeline)
{
    bson_t *attempts = BCON_NEW(
        "$cond", "[", "{", "$and", "[", "{", "$gt", "[", BCON_UTF8("$attempts"), BCON_NULL, "]",
        "}", "{", "$lt", "[", BCON_UTF8("$attempts"), BCON_UTF8(""), "]", "}", "]", "}", "{",
        "$add", "[", BCON_UTF8("$attempts"), BCON_INT32(1), "]", "}", BCON_UTF8("$attempts"), "]");
    bson_t *stage = BCON_NEW("$set", "{", "status", BCON_UTF8("processing"), "attempts",
                             BCON_DOCUMENT(attempts), "lease_token", BCON_OID(token), "claimed_by",
                             "{", "$literal", BCON_UTF8(SAME_NAME), "}", "lease_expires_at", "{",
                             "$add", "[", BCON_UTF8("$$NOW"), BCON_INT64(SAME_LEASE_MS), "]", "}",
                             "updated_at", BCON_UTF8("$$NOW"), "}");
    BSON_APPEND_DOCUMENT(pipeline, "0", stage);
    bson_destroy(stage);
    bson_destroy(attempts);
}

/* {_id, lease_token, status: processing}: every write on a claimed message is fenced so. */
static void
append_held(bson_t *filter, const bson_value_t *id, const bson_oid_t *token)
{
    BSON_APPEND_VALUE(filter, "_id", id);
    BSON_APPEND_OID(filter, "lease_token", token);
    BSON_APPEND_UTF8(filter, "status", "processing");
}

bool
bench_same_claim_ack(mongoc_collection_t *coll, const bson_t *wc_opts)
{
    bson_error_t error;
    bson_t reply, filter = BSON_INITIALIZER, sort = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bson_oid_t token;
    bson_iter_t it, id;
    bool got = false;
    bson_oid_init(&token, NULL);
    append_due(&filter);
    append_sort(&sort);
    build_claim_update(&token, &update);
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_sort(fam, &sort);
    mongoc_find_and_modify_opts_set_update(fam, &update);
    mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    mongoc_find_and_modify_opts_append(fam, wc_opts);
    if (!mongoc_collection_find_and_modify_with_opts(coll, &filter, fam, &reply, &error)) {
        bench_die("same-commands findAndModify", &error);
    }
    if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &id) && bson_iter_find(&id, "_id")) {
        bson_t held = BSON_INITIALIZER;
        append_held(&held, bson_iter_value(&id), &token);
        if (!mongoc_collection_delete_one(coll, &held, wc_opts, NULL, &error)) {
            bench_die("same-commands deleteOne", &error);
        }
        bson_destroy(&held);
        got = true;
    }
    mongoc_find_and_modify_opts_destroy(fam);
    bson_destroy(&reply);
    bson_destroy(&update);
    bson_destroy(&sort);
    bson_destroy(&filter);
    return got;
}

/* claim_many's first round trip: the _ids of up to max due messages, as an array. */
static int
find_candidates(mongoc_collection_t *coll, int max, bson_t *ids)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, doc;
    const bson_t *found;
    bson_iter_t it;
    bson_error_t error;
    char key[16];
    const char *k;
    int n = 0;
    append_due(&filter);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &doc);
    append_sort(&doc);
    bson_append_document_end(&opts, &doc);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &doc);
    BSON_APPEND_INT32(&doc, "_id", 1);
    bson_append_document_end(&opts, &doc);
    BSON_APPEND_INT64(&opts, "limit", max);
    BSON_APPEND_INT64(&opts, "batchSize", max);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    while (n < max && mongoc_cursor_next(cursor, &found)) {
        if (bson_iter_init_find(&it, found, "_id")) {
            bson_uint32_to_string((uint32_t)n++, &k, key, sizeof key);
            bson_append_value(ids, k, -1, bson_iter_value(&it));
        }
    }
    if (mongoc_cursor_error(cursor, &error)) {
        bench_die("same-commands find", &error);
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return n;
}

static void
append_in(bson_t *filter, const bson_t *ids)
{
    bson_t in;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "_id", &in);
    BSON_APPEND_ARRAY(&in, "$in", ids);
    bson_append_document_end(filter, &in);
}

/* Rounds two and three: updateMany with one token, then read back what the token holds; the
 * acks' {$or: [held, ...]} is built from what was read. Returns how many were claimed, or -1
 * when another claimer had taken every candidate first. */
static int
claim_and_read(mongoc_collection_t *coll, const bson_t *ids, const bson_t *wc_opts, bson_t *or_list)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, reply, opts = BSON_INITIALIZER, sort;
    bson_error_t error;
    bson_oid_t token;
    bson_iter_t it;
    const bson_t *doc;
    char key[16];
    const char *k;
    int n = 0;
    bson_oid_init(&token, NULL);
    append_in(&filter, ids);
    append_due(&filter);
    build_claim_update(&token, &update);
    if (!mongoc_collection_update_many(coll, &filter, &update, wc_opts, &reply, &error)) {
        bench_die("same-commands updateMany", &error);
    }
    bool claimed = bson_iter_init_find(&it, &reply, "modifiedCount") && bson_iter_as_int64(&it) > 0;
    bson_destroy(&reply);
    if (!claimed) {
        bson_destroy(&update);
        bson_destroy(&filter);
        bson_destroy(&opts);
        return -1;
    }
    bson_reinit(&filter);
    append_in(&filter, ids);
    BSON_APPEND_OID(&filter, "lease_token", &token);
    BSON_APPEND_UTF8(&filter, "status", "processing");
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    append_sort(&sort);
    bson_append_document_end(&opts, &sort);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        bson_t held;
        if (bson_iter_init_find(&it, doc, "_id")) {
            bson_uint32_to_string((uint32_t)n++, &k, key, sizeof key);
            bson_append_document_begin(or_list, k, -1, &held);
            append_held(&held, bson_iter_value(&it), &token);
            bson_append_document_end(or_list, &held);
        }
    }
    if (mongoc_cursor_error(cursor, &error)) {
        bench_die("same-commands find claimed", &error);
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    return n;
}

/* ack_many: deleteMany {$or: [...]}, or deleteOne of the one message as ack_many sends it. */
static bool
ack_read(mongoc_collection_t *coll, const bson_t *or_filter, int n, const bson_t *wc_opts,
         bson_error_t *error)
{
    bson_iter_t it, first;
    uint32_t len;
    const uint8_t *data;
    bson_t held;
    if (n > 1) {
        return mongoc_collection_delete_many(coll, or_filter, wc_opts, NULL, error);
    }
    BSON_ASSERT(bson_iter_init_find(&it, or_filter, "$or") && bson_iter_recurse(&it, &first) &&
                bson_iter_next(&first) && BSON_ITER_HOLDS_DOCUMENT(&first));
    bson_iter_document(&first, &len, &data);
    BSON_ASSERT(bson_init_static(&held, data, len));
    return mongoc_collection_delete_one(coll, &held, wc_opts, NULL, error);
}

int
bench_same_claim_ack_many(mongoc_collection_t *coll, const bson_t *wc_opts, int max)
{
    bson_t ids = BSON_INITIALIZER, filter = BSON_INITIALIZER, or_list;
    bson_error_t error;
    int n = 0;
    if (find_candidates(coll, max, &ids) > 0) {
        BSON_APPEND_ARRAY_BEGIN(&filter, "$or", &or_list);
        n = claim_and_read(coll, &ids, wc_opts, &or_list);
        bson_append_array_end(&filter, &or_list);
    }
    if (n < 0) {
        /* As claim_many: candidates all taken by another claimer, so claim one the single way
         * rather than answer none while messages are due (its ack is the single one too). */
        n = bench_same_claim_ack(coll, wc_opts) ? 1 : 0;
    } else if (n > 0 && !ack_read(coll, &filter, n, wc_opts, &error)) {
        bench_die("same-commands ack", &error);
    }
    bson_destroy(&filter);
    bson_destroy(&ids);
    return n;
}

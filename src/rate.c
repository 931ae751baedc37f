/*
 * The rate limit (mongoq_queue_opts_t.rate_limit): a token bucket in one document of the
 * queue's collection, {_id: "mongoq.rate", tokens, at}, refilled and taken from in one
 * findAndModify on the server's clock:
 *
 *   t       = min(burst, ifNull(tokens, burst) + rate_per_ms * max(0, $$NOW - ifNull(at, $$NOW)))
 *   granted = max(0, min(want, floor(t)))
 *   tokens  = t - granted,  at = max(at, $$NOW)
 *
 * One document update is atomic, so claims granted by all processes together over any
 * interval [a, b] of the server's clock are at most burst + rate * (b - a): the bucket holds at
 * most burst, and refills at rate for the time `at` moved on, which never goes back (concurrent
 * commands take $$NOW when they start and may write in another order: with at = $$NOW a late
 * writer would move it back and the same milliseconds would be credited twice). A claim that takes
 * tokens and claims fewer messages gives the rest back ($inc, capped at burst), so idle consumers
 * do not burn the budget. Consumers that get none wait for (1 - tokens) / rate, the next token's
 * time, on the waker.
 */
#include "rate-private.h"

#include <inttypes.h>

#include "error-private.h"
#include "fields.h"
#include "partition-private.h"
#include "queue-private.h"

#define F_TOKENS "tokens"
#define F_AT "at"
#define F_GRANTED "granted"
#define F_T "t"

/* The bucket's filter: partition 0 in a partitioned queue (the shard key of its upsert). */
static void
bucket_filter(const mongoq_queue_t *queue, bson_t *filter)
{
    mongoq__partition_append(filter, queue->opts.partitions, 0);
    BSON_APPEND_UTF8(filter, MONGOQ__F_ID, MONGOQ__RATE_ID);
}

/* {$ifNull: [path, value]} */
static void
append_if_null(bson_t *parent, const char *key, const char *path, const bson_value_t *value)
{
    bson_t doc, args;
    BSON_APPEND_DOCUMENT_BEGIN(parent, key, &doc);
    BSON_APPEND_ARRAY_BEGIN(&doc, "$ifNull", &args);
    BSON_APPEND_UTF8(&args, "0", path);
    BSON_APPEND_VALUE(&args, "1", value);
    bson_append_array_end(&doc, &args);
    bson_append_document_end(parent, &doc);
}

/* stage 0: t = min(burst, tokens + rate/ms * max(0, now - at)) */
static void
append_refill(const mongoq_queue_t *queue, bson_t *pipeline)
{
    bson_t stage, set, min, min_args, add, add_args, mul, mul_args, max, max_args, sub, sub_args;
    bson_value_t burst = {.value_type = BSON_TYPE_DOUBLE};
    bson_value_t now = {.value_type = BSON_TYPE_UTF8};
    burst.value.v_double = (double)queue->opts.rate_burst;
    now.value.v_utf8.str = (char *)"$$NOW";
    now.value.v_utf8.len = 5;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, F_T, &min);
    BSON_APPEND_ARRAY_BEGIN(&min, "$min", &min_args);
    BSON_APPEND_DOUBLE(&min_args, "0", burst.value.v_double);
    BSON_APPEND_DOCUMENT_BEGIN(&min_args, "1", &add);
    BSON_APPEND_ARRAY_BEGIN(&add, "$add", &add_args);
    append_if_null(&add_args, "0", "$" F_TOKENS, &burst);
    BSON_APPEND_DOCUMENT_BEGIN(&add_args, "1", &mul);
    BSON_APPEND_ARRAY_BEGIN(&mul, "$multiply", &mul_args);
    BSON_APPEND_DOUBLE(&mul_args, "0", queue->opts.rate_limit / 1000.0);
    BSON_APPEND_DOCUMENT_BEGIN(&mul_args, "1", &max);
    BSON_APPEND_ARRAY_BEGIN(&max, "$max", &max_args);
    BSON_APPEND_INT64(&max_args, "0", 0);
    BSON_APPEND_DOCUMENT_BEGIN(&max_args, "1", &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "$subtract", &sub_args);
    BSON_APPEND_UTF8(&sub_args, "0", "$$NOW");
    append_if_null(&sub_args, "1", "$" F_AT, &now);
    bson_append_array_end(&sub, &sub_args);
    bson_append_document_end(&max_args, &sub);
    bson_append_array_end(&max, &max_args);
    bson_append_document_end(&mul_args, &max);
    bson_append_array_end(&mul, &mul_args);
    bson_append_document_end(&add_args, &mul);
    bson_append_array_end(&add, &add_args);
    bson_append_document_end(&min_args, &add);
    bson_append_array_end(&min, &min_args);
    bson_append_document_end(&set, &min);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
}

/* stage 1: granted = max(0, min(want, floor(t))); stage 2: tokens = t - granted, at = $$NOW */
static void
append_take(int64_t want, bson_t *pipeline)
{
    bson_t stage, set, max, max_args, min, min_args, floor, sub, sub_args;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "1", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, F_GRANTED, &max);
    BSON_APPEND_ARRAY_BEGIN(&max, "$max", &max_args);
    BSON_APPEND_INT64(&max_args, "0", 0);
    BSON_APPEND_DOCUMENT_BEGIN(&max_args, "1", &min);
    BSON_APPEND_ARRAY_BEGIN(&min, "$min", &min_args);
    BSON_APPEND_INT64(&min_args, "0", want);
    BSON_APPEND_DOCUMENT_BEGIN(&min_args, "1", &floor);
    BSON_APPEND_UTF8(&floor, "$floor", "$" F_T);
    bson_append_document_end(&min_args, &floor);
    bson_append_array_end(&min, &min_args);
    bson_append_document_end(&max_args, &min);
    bson_append_array_end(&max, &max_args);
    bson_append_document_end(&set, &max);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "2", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, F_TOKENS, &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "$subtract", &sub_args);
    BSON_APPEND_UTF8(&sub_args, "0", "$" F_T);
    BSON_APPEND_UTF8(&sub_args, "1", "$" F_GRANTED);
    bson_append_array_end(&sub, &sub_args);
    bson_append_document_end(&set, &sub);
    /* at never moves back: concurrent commands take $$NOW when they start, not in the order
     * they write, so "at = $$NOW" could go back and credit the same time twice. */
    bson_t at, at_args, if_null, if_args;
    BSON_APPEND_DOCUMENT_BEGIN(&set, F_AT, &at);
    BSON_APPEND_ARRAY_BEGIN(&at, "$max", &at_args);
    BSON_APPEND_DOCUMENT_BEGIN(&at_args, "0", &if_null);
    BSON_APPEND_ARRAY_BEGIN(&if_null, "$ifNull", &if_args);
    BSON_APPEND_UTF8(&if_args, "0", "$" F_AT);
    BSON_APPEND_UTF8(&if_args, "1", "$$NOW");
    bson_append_array_end(&if_null, &if_args);
    bson_append_document_end(&at_args, &if_null);
    BSON_APPEND_UTF8(&at_args, "1", "$$NOW");
    bson_append_array_end(&at, &at_args);
    bson_append_document_end(&set, &at);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "3", &stage);
    BSON_APPEND_UTF8(&stage, "$unset", F_T);
    bson_append_document_end(pipeline, &stage);
}

static double
double_field(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_double(&it)
               : 0;
}

bool
mongoq__rate_take(mongoq_queue_t *queue, int64_t want, int64_t *granted, int64_t *wait_ms,
                  bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, extra = BSON_INITIALIZER, reply;
    bson_iter_t it;
    mongoc_client_t *client;
    bool ok = false;
    *granted = 0;
    *wait_ms = 0;
    bucket_filter(queue, &filter);
    append_refill(queue, &update);
    append_take(want, &update);
    mongoq__queue_append_write_concern(queue, &extra);
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(fam, &update);
    mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_UPSERT |
                                                   MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    mongoc_find_and_modify_opts_append(fam, &extra);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (coll) {
        ok = mongoc_collection_find_and_modify_with_opts(coll, &filter, fam, &reply, error);
        if (ok && bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_t doc;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&doc, data, len);
            *granted = (int64_t)double_field(&doc, F_GRANTED);
            double tokens = double_field(&doc, F_TOKENS);
            /* The next token's time, rounded up, at least 1 ms. */
            double ms = (1.0 - tokens) * 1000.0 / queue->opts.rate_limit;
            *wait_ms = *granted > 0 ? 0 : (int64_t)ms + 1;
        }
        if (!ok) {
            mongoq__error_classify_write("rate limit", &reply, error);
        }
        bson_destroy(&reply);
    }
    mongoq__queue_release(queue, client, coll);
    mongoc_find_and_modify_opts_destroy(fam);
    bson_destroy(&extra);
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

void
mongoq__rate_give_back(mongoq_queue_t *queue, int64_t n)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, stage, set, min, args, add, a;
    bson_error_t error;
    int64_t matched = 0;
    bucket_filter(queue, &filter);
    /* [{$set: {tokens: {$min: [burst, {$add: ["$tokens", n]}]}}}] */
    BSON_APPEND_DOCUMENT_BEGIN(&update, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, F_TOKENS, &min);
    BSON_APPEND_ARRAY_BEGIN(&min, "$min", &args);
    BSON_APPEND_DOUBLE(&args, "0", (double)queue->opts.rate_burst);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "1", &add);
    BSON_APPEND_ARRAY_BEGIN(&add, "$add", &a);
    BSON_APPEND_UTF8(&a, "0", "$" F_TOKENS);
    BSON_APPEND_INT64(&a, "1", n);
    bson_append_array_end(&add, &a);
    bson_append_document_end(&args, &add);
    bson_append_array_end(&min, &args);
    bson_append_document_end(&set, &min);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(&update, &stage);
    /* Best effort: a token not given back is a claim not made, never one too many. */
    if (!mongoq__queue_write_many(queue, "rate limit give-back", &filter, &update, &matched,
                                  &error)) {
        mongoq__queue_log(queue, MONGOQ_LOG_DEBUG,
                          "mongoq: %s.%s: giving back %" PRId64 " rate tokens failed: %s",
                          queue->db, queue->name, n, error.message);
    }
    bson_destroy(&update);
    bson_destroy(&filter);
}

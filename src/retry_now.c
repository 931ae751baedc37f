/*
 * An operator's "run it now" on one message: a dead message back to ready, a delayed one due
 * at once. One pipeline updateOne matching {_id, status: ready | dead}, so a message a consumer
 * holds (processing) or that is done is never touched: a claimer's lease is its own.
 */
#include <string.h>

#include "document-private.h"
#include "error-private.h"
#include "fields.h"
#include "group-private.h"
#include "mongoq/admin.h"
#include "partition-private.h"
#include "queue-private.h"

/* {[partition,] _id, status: {$in: [ready, dead]}} */
static void
build_filter(const mongoq_queue_t *queue, const bson_oid_t *id, int32_t partition, bson_t *filter)
{
    bson_t cond, in;
    mongoq__partition_append(filter, queue->opts.partitions, partition);
    BSON_APPEND_OID(filter, MONGOQ__F_ID, id);
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_STATUS, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$in", &in);
    BSON_APPEND_UTF8(&in, "0", MONGOQ__S_READY);
    BSON_APPEND_UTF8(&in, "1", MONGOQ__S_DEAD);
    bson_append_array_end(&cond, &in);
    bson_append_document_end(filter, &cond);
}

/* {$cond: [{$eq: ["$status", "dead"]}, then, else]} with then and else already appended by fn. */
static void
append_if_dead(bson_t *set, const char *field, void (*then_else)(bson_t *args))
{
    bson_t doc, args, eq, eq_args;
    BSON_APPEND_DOCUMENT_BEGIN(set, field, &doc);
    BSON_APPEND_ARRAY_BEGIN(&doc, "$cond", &args);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "0", &eq);
    BSON_APPEND_ARRAY_BEGIN(&eq, "$eq", &eq_args);
    BSON_APPEND_UTF8(&eq_args, "0", MONGOQ__P_STATUS);
    BSON_APPEND_UTF8(&eq_args, "1", MONGOQ__S_DEAD);
    bson_append_array_end(&eq, &eq_args);
    bson_append_document_end(&args, &eq);
    then_else(&args);
    bson_append_array_end(&doc, &args);
    bson_append_document_end(set, &doc);
}

/* attempts: dead ? 0 : $attempts */
static void
attempts_then_else(bson_t *args)
{
    BSON_APPEND_INT32(args, "1", 0);
    BSON_APPEND_UTF8(args, "2", MONGOQ__P_ATTEMPTS);
}

/* run_at: dead ? $$NOW : min($run_at, $$NOW), so a due message keeps its place. */
static void
run_at_then_else(bson_t *args)
{
    bson_t min, min_args;
    BSON_APPEND_UTF8(args, "1", "$$NOW");
    BSON_APPEND_DOCUMENT_BEGIN(args, "2", &min);
    BSON_APPEND_ARRAY_BEGIN(&min, "$min", &min_args);
    BSON_APPEND_UTF8(&min_args, "0", MONGOQ__P_RUN_AT);
    BSON_APPEND_UTF8(&min_args, "1", "$$NOW");
    bson_append_array_end(&min, &min_args);
    bson_append_document_end(args, &min);
}

static void
build_update(bson_t *pipeline)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT};
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    /* Every expression of one $set reads the document as it was before the stage, so the
     * conditions see the old status. */
    append_if_dead(&set, MONGOQ__F_ATTEMPTS, attempts_then_else);
    append_if_dead(&set, MONGOQ__F_RUN_AT, run_at_then_else);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_READY);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    mongoq__document_append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
}

/* Nothing matched: says why (absent, or held by a claimer, or done). */
static bool
not_found(mongoq_queue_t *queue, const bson_oid_t *id, bson_error_t *error)
{
    char hex[25];
    bson_oid_to_string(id, hex);
    mongoc_client_t *client;
    bson_t filter = BSON_INITIALIZER;
    const bson_t *doc;
    bson_iter_t it;
    const char *status = NULL;
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, NULL);
    BSON_APPEND_OID(&filter, MONGOQ__F_ID, id);
    mongoc_cursor_t *cursor =
        coll ? mongoc_collection_find_with_opts(coll, &filter, NULL, NULL) : NULL;
    if (cursor && mongoc_cursor_next(cursor, &doc) &&
        bson_iter_init_find(&it, doc, MONGOQ__F_STATUS) && BSON_ITER_HOLDS_UTF8(&it)) {
        status = bson_iter_utf8(&it, NULL);
    }
    if (status) {
        mongoq__error_set(error, MONGOQ_ERROR_NOT_FOUND,
                          "retry_now: message %s is %s, not ready or dead: %s", hex, status,
                          strcmp(status, MONGOQ__S_PROCESSING) == 0
                              ? "its claimer holds it until it settles it or its lease expires"
                              : "it is finished");
    } else {
        mongoq__error_set(error, MONGOQ_ERROR_NOT_FOUND, "retry_now: no message with _id %s",
                          hex);
    }
    mongoc_cursor_destroy(cursor);
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&filter);
    return false;
}

/*
 * A partitioned queue's updateOne names the partition (the shard key of a sharded queue), which
 * an id alone does not tell (a deduplicated message's partition comes from its key): one read by
 * _id first (sent to every shard). *found false: no such message.
 */
static bool
read_partition(mongoq_queue_t *queue, mongoc_collection_t *coll, const bson_oid_t *id,
               int32_t *partition, bool *found, bson_error_t *error)
{
    static const char *const fields[] = {MONGOQ__F_PARTITION};
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *doc;
    *partition = MONGOQ__ALL_PARTITIONS;
    *found = queue->opts.partitions <= 1; /* nothing to read: the update itself tells */
    if (*found) {
        return true;
    }
    BSON_APPEND_OID(&filter, MONGOQ__F_ID, id);
    mongoq__document_append_projection(&opts, fields, 1);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    if (mongoc_cursor_next(cursor, &doc)) {
        *partition = mongoq__partition_read(doc);
        *found = true;
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

bool
mongoq_queue_retry_now(mongoq_queue_t *queue, const bson_oid_t *id, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(id);
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    mongoc_client_t *client;
    int64_t matched = 0;
    bool ok = false, found = false;
    int32_t partition = MONGOQ__ALL_PARTITIONS;
    if (queue->opts.group_concurrency > 0) {
        /* A dead message goes back through its group, as mongoq_queue_redrive sends it. */
        if (!mongoq__group_redrive_one(queue, id, &matched, error)) {
            return false;
        }
        if (matched > 0) {
            mongoq__waker_notify(queue->waker);
            return true;
        }
    }
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    bool read = coll && read_partition(queue, coll, id, &partition, &found, error);
    if (read && found) {
        build_filter(queue, id, partition, &filter);
        build_update(&update);
        mongoq__queue_append_write_concern(queue, &opts);
        bson_destroy(&reply);
        ok = mongoc_collection_update_one(coll, &filter, &update, &opts, &reply, error);
        matched = ok ? mongoq__reply_count(&reply, "matchedCount") : 0;
        if (!ok) {
            mongoq__error_classify_write("retry_now", &reply, error);
        }
    } else {
        ok = read; /* not found: matched stays 0 and not_found says why */
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (ok && matched == 0) {
        return not_found(queue, id, error);
    }
    if (ok) {
        mongoq__waker_notify_partition(queue->waker, partition);
    }
    return ok;
}

/* Reading the queue's state (one aggregate), redriving dead messages, purging by status. */
#include <string.h>

#include "fields.h"
#include "mongoq/error.h"
#include "queue-private.h"

/*
 * [{$group: {_id: "$status", n: {$sum: 1},
 *            delayed: {$sum: {$cond: [{$gt: ["$run_at", "$$NOW"]}, 1, 0]}},
 *            oldest_due: {$min: {$cond: [{$lte: ["$run_at", "$$NOW"]}, "$enqueued_at", null]}},
 *            next_run_at: {$min: "$run_at"}}}]
 * "Due" is decided on the server's clock; $min ignores the nulls of messages not yet due.
 */
static void
build_stats_pipeline(bson_t *pipeline)
{
    static const char *json =
        "[{\"$group\": {\"_id\": \"" MONGOQ__P_STATUS "\", \"n\": {\"$sum\": 1}, "
        "\"delayed\": {\"$sum\": {\"$cond\": "
        "[{\"$gt\": [\"" MONGOQ__P_RUN_AT "\", \"$$NOW\"]}, 1, 0]}}, "
        "\"oldest_due\": {\"$min\": {\"$cond\": "
        "[{\"$lte\": [\"" MONGOQ__P_RUN_AT "\", \"$$NOW\"]}, \"" MONGOQ__P_ENQUEUED_AT
        "\", null]}}, "
        "\"next_run_at\": {\"$min\": \"" MONGOQ__P_RUN_AT "\"}}}]";
    BSON_ASSERT(bson_init_from_json(pipeline, json, -1, NULL));
}

static int64_t
get_int(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : 0;
}

static int64_t
get_date_or(const bson_t *doc, const char *field, int64_t fallback)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME(&it)
               ? bson_iter_date_time(&it)
               : fallback;
}

static void
add_group(const bson_t *group, int64_t server_now, mongoq_stats_t *stats)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, group, "_id") || !BSON_ITER_HOLDS_UTF8(&it)) {
        return; /* documents without a usable status belong to no count */
    }
    const char *status = bson_iter_utf8(&it, NULL);
    int64_t n = get_int(group, "n");
    if (strcmp(status, MONGOQ__S_READY) == 0) {
        stats->ready = n;
        stats->delayed = get_int(group, "delayed");
        int64_t oldest = get_date_or(group, "oldest_due", -1);
        stats->oldest_ready_age_ms =
            oldest < 0 ? -1 : (server_now > oldest ? server_now - oldest : 0);
        stats->next_run_at_ms = get_date_or(group, "next_run_at", -1);
    } else if (strcmp(status, MONGOQ__S_PROCESSING) == 0) {
        stats->processing = n;
    } else if (strcmp(status, MONGOQ__S_DONE) == 0) {
        stats->done = n;
    } else if (strcmp(status, MONGOQ__S_DEAD) == 0) {
        stats->dead = n;
    }
}

bool
mongoq_queue_stats(mongoq_queue_t *queue, mongoq_stats_t *stats, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(stats);
    bson_t pipeline;
    const bson_t *doc;
    memset(stats, 0, sizeof *stats);
    stats->oldest_ready_age_ms = -1;
    stats->next_run_at_ms = -1;
    int64_t server_now = mongoq__clock_server_now_ms(queue->clock);
    build_stats_pipeline(&pipeline);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    mongoc_cursor_t *cursor =
        mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, &pipeline, NULL, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        add_group(doc, server_now, stats);
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&pipeline);
    return ok;
}

/* ---- redrive ------------------------------------------------------------------------------ */

/* Dead -> ready, attempts 0, due now on the server's clock (at the back of its priority). */
static void
build_redrive_update(bson_t *pipeline)
{
    static const char *json =
        "[{\"$set\": {\"" MONGOQ__F_STATUS "\": \"" MONGOQ__S_READY "\", \"" MONGOQ__F_ATTEMPTS
        "\": 0, \"" MONGOQ__F_RUN_AT "\": \"$$NOW\", \"" MONGOQ__F_UPDATED_AT "\": \"$$NOW\"}}, "
        "{\"$unset\": [\"" MONGOQ__F_LEASE_TOKEN "\", \"" MONGOQ__F_LEASE_EXPIRES_AT "\"]}]";
    BSON_ASSERT(bson_init_from_json(pipeline, json, -1, NULL));
}

bool
mongoq_queue_redrive(mongoq_queue_t *queue, const bson_oid_t *id, int64_t *moved_out,
                     bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    bson_t filter = BSON_INITIALIZER, update, opts = BSON_INITIALIZER, reply;
    if (moved_out) {
        *moved_out = 0;
    }
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    if (id) {
        BSON_APPEND_OID(&filter, MONGOQ__F_ID, id);
    }
    build_redrive_update(&update);
    mongoq__queue_append_write_concern(queue, &opts);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    bool ok = mongoc_collection_update_many(coll, &filter, &update, &opts, &reply, error);
    mongoq__queue_release(queue, client, coll);
    int64_t moved = ok ? mongoq__reply_count(&reply, "modifiedCount") : 0;
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (ok && id && moved == 0) {
        char hex[25];
        bson_oid_to_string(id, hex);
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_NOT_FOUND,
                       "redrive: no dead message with _id %s", hex);
        return false;
    }
    if (moved > 0) {
        mongoq__waker_notify(queue->waker);
    }
    if (moved_out) {
        *moved_out = moved;
    }
    return ok;
}

/* ---- purge -------------------------------------------------------------------------------- */

static bool
known_status(const char *status)
{
    return strcmp(status, MONGOQ__S_READY) == 0 || strcmp(status, MONGOQ__S_PROCESSING) == 0 ||
           strcmp(status, MONGOQ__S_DONE) == 0 || strcmp(status, MONGOQ__S_DEAD) == 0;
}

bool
mongoq_queue_purge(mongoq_queue_t *queue, const char *status, int64_t *deleted_out,
                   bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, reply;
    if (deleted_out) {
        *deleted_out = 0;
    }
    if (status && !known_status(status)) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "purge: unknown status \"%s\" (ready, processing, done, dead or NULL)",
                       status);
        return false;
    }
    if (status) {
        BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, status);
    }
    mongoq__queue_append_write_concern(queue, &opts);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    bool ok = mongoc_collection_delete_many(coll, &filter, &opts, &reply, error);
    mongoq__queue_release(queue, client, coll);
    if (ok && deleted_out) {
        *deleted_out = mongoq__reply_count(&reply, "deletedCount");
    }
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

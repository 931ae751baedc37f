/* Reading the queue's state: counts per status and the ages of due and delayed messages. */
#include <inttypes.h>
#include <string.h>

#include "error-private.h"
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
/* {$cond: [{<cmp>: ["$run_at", "$$NOW"]}, then, else]}: then is a number, or a field path */
static void
append_due_cond(bson_t *doc, const char *key, const char *cmp, const bson_value_t *then,
                const bson_value_t *otherwise)
{
    bson_t cond, args, test, operands;
    BSON_APPEND_DOCUMENT_BEGIN(doc, key, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$cond", &args);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "0", &test);
    BSON_APPEND_ARRAY_BEGIN(&test, cmp, &operands);
    BSON_APPEND_UTF8(&operands, "0", MONGOQ__P_RUN_AT);
    BSON_APPEND_UTF8(&operands, "1", "$$NOW");
    bson_append_array_end(&test, &operands);
    bson_append_document_end(&args, &test);
    BSON_APPEND_VALUE(&args, "1", then);
    BSON_APPEND_VALUE(&args, "2", otherwise);
    bson_append_array_end(&cond, &args);
    bson_append_document_end(doc, &cond);
}

static void
build_stats_pipeline(bson_t *pipeline)
{
    bson_value_t one = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 1};
    bson_value_t zero = {.value_type = BSON_TYPE_INT32, .value.v_int32 = 0};
    bson_value_t null = {.value_type = BSON_TYPE_NULL};
    bson_value_t enqueued = {.value_type = BSON_TYPE_UTF8,
                             .value.v_utf8 = {.str = (char *)MONGOQ__P_ENQUEUED_AT,
                                              .len = (uint32_t)strlen(MONGOQ__P_ENQUEUED_AT)}};
    bson_t stage, group, acc;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &group);
    BSON_APPEND_UTF8(&group, "_id", MONGOQ__P_STATUS);
    BSON_APPEND_DOCUMENT_BEGIN(&group, "n", &acc);
    BSON_APPEND_INT32(&acc, "$sum", 1);
    bson_append_document_end(&group, &acc);
    BSON_APPEND_DOCUMENT_BEGIN(&group, "delayed", &acc);
    append_due_cond(&acc, "$sum", "$gt", &one, &zero);
    bson_append_document_end(&group, &acc);
    BSON_APPEND_DOCUMENT_BEGIN(&group, "oldest_due", &acc);
    append_due_cond(&acc, "$min", "$lte", &enqueued, &null);
    bson_append_document_end(&group, &acc);
    BSON_APPEND_DOCUMENT_BEGIN(&group, "next_run_at", &acc);
    BSON_APPEND_UTF8(&acc, "$min", MONGOQ__P_RUN_AT);
    bson_append_document_end(&group, &acc);
    bson_append_document_end(&stage, &group);
    bson_append_document_end(pipeline, &stage);
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
mongoq_queue_stats(mongoq_queue_t *queue, mongoq_stats_t *out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(out);
    size_t size = mongoq__stats_size(out->version);
    if (size == 0) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "stats: unknown version %" PRIu32 " (use MONGOQ_STATS_INIT)", out->version);
        return false;
    }
    mongoq_stats_t full = MONGOQ_STATS_INIT, *stats = &full;
    bson_t pipeline = BSON_INITIALIZER;
    const bson_t *doc;
    stats->oldest_ready_age_ms = -1;
    stats->next_run_at_ms = -1;
    int64_t server_now = mongoq__clock_server_now_ms(queue->clock);
    build_stats_pipeline(&pipeline);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    bool ok = false;
    if (coll) {
        mongoc_cursor_t *cursor =
            mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, &pipeline, NULL, NULL);
        while (mongoc_cursor_next(cursor, &doc)) {
            add_group(doc, server_now, stats);
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&pipeline);
    if (ok) {
        uint32_t version = out->version;
        memcpy(out, &full, size);
        out->version = version;
    }
    return ok;
}


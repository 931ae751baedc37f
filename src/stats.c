/*
 * Reading the queue's state from its indexes: a count per status, the count of delayed ready
 * messages, and the earliest run_at among ready ones. Each count is one `count` command whose
 * filter is an equality on status (and a range on run_at) that an index answers by counting keys
 * (mongod's COUNT_SCAN: no document is read); the earliest run_at is one covered seek on the due
 * index {status, run_at}. So stats cost the same with a thousand or a million messages.
 */
#include <inttypes.h>
#include <string.h>

#include "clock-private.h"
#include "document-private.h"
#include "error-private.h"
#include "fields.h"
#include "mongoq/error.h"
#include "partition-private.h"
#include "pause-private.h"
#include "queue-private.h"

/* {[partition: {$in: all},] status: status[, run_at: {$gt: after}]}: the count's filter. */
static void
build_count(const mongoq_queue_t *queue, const char *status, int64_t delayed_after, bson_t *cmd)
{
    bson_t query, range;
    BSON_APPEND_UTF8(cmd, "count", queue->name);
    BSON_APPEND_DOCUMENT_BEGIN(cmd, "query", &query);
    /* Every partition by name: summed over the collection, still counted from the index. */
    mongoq__partition_append_all(&query, queue->opts.partitions);
    BSON_APPEND_UTF8(&query, MONGOQ__F_STATUS, status);
    if (delayed_after >= 0) {
        BSON_APPEND_DOCUMENT_BEGIN(&query, MONGOQ__F_RUN_AT, &range);
        BSON_APPEND_DATE_TIME(&range, "$gt", delayed_after);
        bson_append_document_end(&query, &range);
    }
    bson_append_document_end(cmd, &query);
}

/* One count command; *n its result. */
static bool
count(mongoc_collection_t *coll, const mongoq_queue_t *queue, const char *status,
      int64_t delayed_after, int64_t *n, bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_iter_t it;
    build_count(queue, status, delayed_after, &cmd);
    bool ok = mongoc_collection_read_command_with_opts(coll, &cmd, NULL, NULL, &reply, error);
    if (ok && bson_iter_init_find(&it, &reply, "n") && BSON_ITER_HOLDS_NUMBER(&it)) {
        *n = bson_iter_as_int64(&it);
    } else if (ok) {
        ok = false;
        mongoq__error_set(error, MONGOQ_ERROR_SERVER, "stats: the count reply has no number n");
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

/* The earliest run_at among ready messages, or -1: find {status: ready} sort {run_at: 1}. */
static bool
earliest_run_at(const mongoq_queue_t *queue, mongoc_collection_t *coll, int64_t *run_at,
                bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *found;
    bson_iter_t it;
    mongoq__partition_append_all(&filter, queue->opts.partitions);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_READY);
    mongoq__document_append_earliest_opts(&opts, queue->opts.partitions > 1);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    *run_at = -1;
    if (mongoc_cursor_next(cursor, &found) && bson_iter_init_find(&it, found, MONGOQ__F_RUN_AT) &&
        BSON_ITER_HOLDS_DATE_TIME(&it)) {
        *run_at = bson_iter_date_time(&it);
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

static bool
read_stats(mongoq_queue_t *queue, mongoc_collection_t *coll, mongoq_stats_t *stats,
           bson_error_t *error)
{
    int64_t now = mongoq__clock_server_now_ms(queue->clock), earliest;
    if (!count(coll, queue, MONGOQ__S_READY, -1, &stats->ready, error) ||
        !count(coll, queue, MONGOQ__S_READY, now, &stats->delayed, error) ||
        !count(coll, queue, MONGOQ__S_PROCESSING, -1, &stats->processing, error) ||
        !count(coll, queue, MONGOQ__S_DONE, -1, &stats->done, error) ||
        !count(coll, queue, MONGOQ__S_DEAD, -1, &stats->dead, error) ||
        (queue->opts.group_concurrency > 0 &&
         !count(coll, queue, MONGOQ__S_WAITING, -1, &stats->waiting, error)) ||
        !earliest_run_at(queue, coll, &earliest, error) ||
        !mongoq__pause_read(coll, &stats->paused, error)) {
        return false;
    }
    mongoq__pause_seen(queue, stats->paused);
    stats->next_run_at_ms = earliest;
    stats->oldest_ready_age_ms = earliest < 0 || earliest > now ? -1 : now - earliest;
    return true;
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
    mongoq_stats_t full = MONGOQ_STATS_INIT;
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    bool ok = coll && read_stats(queue, coll, &full, error);
    mongoq__queue_release(queue, client, coll);
    if (ok) {
        uint32_t version = out->version;
        memcpy(out, &full, size);
        out->version = version;
    }
    return ok;
}

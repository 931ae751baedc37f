/*
 * Reaping expired leases: two updateMany commands per pass, whatever the number of messages.
 * Each decides expiry with $expr against $$NOW (the server's clock) and carries a plain range
 * on lease_expires_at so the lease index can serve it. Concurrent reapers are safe, and a pass
 * is safe to repeat: each document is re-checked atomically by whichever update reaches it
 * first, and a message already handed back no longer matches.
 *
 * The background reaper is a thread the queue owns, started on the first claim. It talks to the
 * server over its own service connection (service-private.h), so a pass ends within a few
 * seconds even when the server is down or a socket hangs, and stopping it is bounded too.
 */
#include <time.h>

#include "document-private.h"
#include "error-private.h"
#include "fields.h"
#include "group-private.h"
#include "hooks-private.h"
#include "partition-private.h"
#include "queue-private.h"
#include "service-private.h"

/* A pass of two updateMany commands over expired leases: a second is long for it. */
#define REAPER_SOCKET_TIMEOUT_MS 1500

/*
 * {[partition: {$in: all},] status: processing, lease_expires_at: {$lt: estimate + slack},
 *  $expr: {$and: [{$lt: ["$lease_expires_at", NOW]}, {<cmp>: ["$attempts", "$max_attempts"]}]}}
 * where NOW is $$NOW less hold_ms, the spread between the clocks of the mongos routers the queue
 * talks to (0 on a replica set): a lease stamped by the slowest router's clock is then reaped only
 * once that clock, too, is past it, whichever router runs the reap (docs/scaling.md).
 */
static void
build_expired_filter(int32_t partitions, int64_t server_now, int64_t hold_ms, const char *cmp,
                     bool ungrouped, bson_t *filter)
{
    bson_t range, expr, and, clause, args;
    mongoq__partition_append_all(filter, partitions); /* a seek per partition on the lease index */
    if (ungrouped) {
        /* Grouped messages with no attempt left die one by one, each with its group's
         * document in a transaction (group_admin.c). */
        BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_GROUP, &range);
        BSON_APPEND_BOOL(&range, "$exists", false);
        bson_append_document_end(filter, &range);
    }
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_LEASE_EXPIRES_AT, &range);
    BSON_APPEND_DATE_TIME(&range, "$lt", server_now + MONGOQ__CLOCK_SLACK_MS);
    bson_append_document_end(filter, &range);
    BSON_APPEND_DOCUMENT_BEGIN(filter, "$expr", &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, "$and", &and);
    BSON_APPEND_DOCUMENT_BEGIN(&and, "0", &clause);
    BSON_APPEND_ARRAY_BEGIN(&clause, "$lt", &args);
    BSON_APPEND_UTF8(&args, "0", MONGOQ__P_LEASE_EXPIRES_AT);
    mongoq__document_append_now_less(&args, "1", hold_ms);
    bson_append_array_end(&clause, &args);
    bson_append_document_end(&and, &clause);
    BSON_APPEND_DOCUMENT_BEGIN(&and, "1", &clause);
    BSON_APPEND_ARRAY_BEGIN(&clause, cmp, &args);
    BSON_APPEND_UTF8(&args, "0", MONGOQ__P_ATTEMPTS);
    BSON_APPEND_UTF8(&args, "1", MONGOQ__P_MAX_ATTEMPTS);
    bson_append_array_end(&clause, &args);
    bson_append_document_end(&and, &clause);
    bson_append_array_end(&expr, &and);
    bson_append_document_end(filter, &expr);
}

/* Back to ready (keeping run_at, so it keeps its place in line) or to dead. */
static void
build_reaped_update(bool dead, bson_t *pipeline)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT,
                                        MONGOQ__F_DEDUP_KEY};
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, dead ? MONGOQ__S_DEAD : MONGOQ__S_READY);
    mongoq__document_append_reason(&set, MONGOQ__F_LAST_ERROR, MONGOQ__REASON_LEASE_EXPIRED);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    /* The dead keep no dedup_key (fields.h): a new message may take it. */
    mongoq__document_append_unset(pipeline, "1", unset, dead ? 3 : 2);
}

static bool
reap_one_kind(mongoq_queue_t *queue, mongoc_collection_t *coll, int64_t server_now,
              int64_t hold_ms, bool dead, int64_t *n, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, opts = BSON_INITIALIZER, reply;
    build_expired_filter(queue->opts.partitions, server_now, hold_ms, dead ? "$gte" : "$lt",
                         dead && queue->opts.group_concurrency > 0, &filter);
    build_reaped_update(dead, &update);
    mongoq__queue_append_write_concern(queue, &opts);
    bool ok = mongoc_collection_update_many(coll, &filter, &update, &opts, &reply, error);
    *n = ok ? mongoq__reply_count(&reply, "modifiedCount") : 0;
    if (!ok) {
        mongoq__error_classify_write("reap", &reply, error);
    }
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

/* One pass on client; counts and wakes as mongoq_queue_reap documents. */
static bool
reap_on(mongoq_queue_t *queue, mongoc_client_t *client, bool background, int64_t *reclaimed_out,
        bson_error_t *error)
{
    int64_t returned = 0, buried = 0, grouped = 0;
    int64_t now = mongoq__clock_server_latest_ms(queue->clock);
    int64_t hold = mongoq__clock_spread_ms(queue->clock);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, queue->db, queue->name);
    bool ok = reap_one_kind(queue, coll, now, hold, false, &returned, error) &&
              reap_one_kind(queue, coll, now, hold, true, &buried, error) &&
              (queue->opts.group_concurrency == 0 ||
               mongoq__group_reap_exhausted(queue, client, now, &grouped, error));
    mongoc_collection_destroy(coll);
    buried += grouped;
    mongoq__counter_add(&queue->counters.reaped, returned + buried);
    mongoq__counter_add(&queue->counters.failed, buried);
    mongoq__hook_reaped(queue, returned + buried, background);
    if (returned > 0) {
        mongoq__waker_notify(queue->waker);
    }
    if (reclaimed_out) {
        *reclaimed_out = returned + buried;
    }
    return ok;
}

bool
mongoq_queue_reap(mongoq_queue_t *queue, int64_t *reclaimed_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    if (reclaimed_out) {
        *reclaimed_out = 0;
    }
    /* Estimate the clock before taking a client: a refresh may need one of its own. */
    (void)mongoq__clock_server_now_ms(queue->clock);
    mongoc_client_t *client = mongoq__pool_pop(queue->pool, error);
    if (!client) {
        return false;
    }
    bool ok = reap_on(queue, client, false, reclaimed_out, error);
    mongoc_client_pool_push(queue->pool, client);
    return ok;
}

/* ---- the background reaper ---------------------------------------------------------------- */

void
mongoq__reaper_init(mongoq_queue_t *queue)
{
    mongoq__cond_init_monotonic(&queue->reaper_cond);
    pthread_mutex_init(&queue->reaper_mu, NULL);
}

void
mongoq__reaper_destroy(mongoq_queue_t *queue)
{
    pthread_cond_destroy(&queue->reaper_cond);
    pthread_mutex_destroy(&queue->reaper_mu);
}

/* Waits up to ms unless stopping (reaper_mu held); true when the reaper should go on. */
static bool
pause_locked(mongoq_queue_t *queue, int64_t ms)
{
    struct timespec ts;
    mongoq__mono_timespec(mongoq__now_mono_ms() + ms, &ts);
    while (!queue->reaper_stopping &&
           pthread_cond_timedwait(&queue->reaper_cond, &queue->reaper_mu, &ts) == 0) {
    }
    return !queue->reaper_stopping;
}

/* One pass over the reaper's own connection (made on first use, again after a failure). */
static void
reap_in_background(mongoq_queue_t *queue, mongoc_client_t **client)
{
    bson_error_t error;
    bool ok = false;
    if (!*client) {
        *client = mongoq__service_client_new(queue->pool, "mongoq-reaper", REAPER_SOCKET_TIMEOUT_MS,
                                             &error);
    }
    if (*client) {
        ok = reap_on(queue, *client, true, NULL, &error);
    }
    if (!ok) {
        mongoq__queue_log(queue, MONGOQ_LOG_WARNING, "mongoq: reaping %s.%s failed: %s", queue->db,
                          queue->name, error.message);
        /* A single-threaded client keeps a server it failed to reach out of selection for five
         * seconds; the next pass starts on a new connection instead (service-private.h). */
        mongoc_client_destroy(*client);
        *client = NULL;
    }
}

static void *
reaper_main(void *arg)
{
    mongoq_queue_t *queue = arg;
    mongoc_client_t *client = NULL;
    pthread_mutex_lock(&queue->reaper_mu);
    while (pause_locked(queue, queue->opts.reap_interval_ms)) {
        pthread_mutex_unlock(&queue->reaper_mu);
        reap_in_background(queue, &client);
        pthread_mutex_lock(&queue->reaper_mu);
    }
    pthread_mutex_unlock(&queue->reaper_mu);
    mongoc_client_destroy(client);
    return NULL;
}

void
mongoq__queue_start_reaper(mongoq_queue_t *queue)
{
    if (queue->opts.no_reaper) {
        return;
    }
    pthread_mutex_lock(&queue->reaper_mu);
    bool failed = false;
    if (!queue->reaper_started && !queue->reaper_stopping && !queue->reaper_failed) {
        int rc = pthread_create(&queue->reaper_thread, NULL, reaper_main, queue);
        queue->reaper_started = rc == 0;
        /* Left off then; leases are still reaped by whoever calls mongoq_queue_reap. */
        queue->reaper_failed = failed = rc != 0;
    }
    pthread_mutex_unlock(&queue->reaper_mu);
    if (failed) {
        mongoq__queue_log(queue, MONGOQ_LOG_ERROR, "mongoq: %s.%s: cannot start the reaper thread",
                          queue->db, queue->name);
    }
}

void
mongoq__reaper_signal_stop(mongoq_queue_t *queue)
{
    pthread_mutex_lock(&queue->reaper_mu);
    queue->reaper_stopping = true;
    pthread_cond_broadcast(&queue->reaper_cond);
    pthread_mutex_unlock(&queue->reaper_mu);
}

void
mongoq__reaper_stop(mongoq_queue_t *queue)
{
    mongoq__reaper_signal_stop(queue);
    pthread_mutex_lock(&queue->reaper_mu);
    bool started = queue->reaper_started;
    pthread_mutex_unlock(&queue->reaper_mu);
    if (started) {
        pthread_join(queue->reaper_thread, NULL);
    }
}

/*
 * Reaping expired leases: two updateMany commands per pass, whatever the number of messages.
 * Each decides expiry with $expr against $$NOW (the server's clock) and carries a plain range
 * on lease_expires_at so the lease index can serve it. Concurrent reapers are safe: each
 * document is re-checked atomically by whichever update reaches it first.
 */
#include "fields.h"
#include "mongoq/error.h"
#include "queue-private.h"

/*
 * {status: processing, lease_expires_at: {$lt: estimate + slack},
 *  $expr: {$and: [{$lt: ["$lease_expires_at", "$$NOW"]}, {<cmp>: ["$attempts", "$max_attempts"]}]}}
 */
static void
build_expired_filter(int64_t server_now, const char *cmp, bson_t *filter)
{
    char json[512];
    bson_snprintf(json, sizeof json,
                  "{\"" MONGOQ__F_STATUS "\": \"" MONGOQ__S_PROCESSING "\", "
                  "\"" MONGOQ__F_LEASE_EXPIRES_AT "\": "
                  "{\"$lt\": {\"$date\": {\"$numberLong\": \"%" PRId64 "\"}}}, "
                  "\"$expr\": {\"$and\": ["
                  "{\"$lt\": [\"" MONGOQ__P_LEASE_EXPIRES_AT "\", \"$$NOW\"]}, "
                  "{\"%s\": [\"" MONGOQ__P_ATTEMPTS "\", \"" MONGOQ__P_MAX_ATTEMPTS "\"]}]}}",
                  server_now + MONGOQ__CLOCK_SLACK_MS, cmp);
    BSON_ASSERT(bson_init_from_json(filter, json, -1, NULL));
}

/* Back to ready (keeping run_at, so it keeps its place in line) or to dead. */
static void
build_reaped_update(bool dead, bson_t *pipeline)
{
    const char *json =
        dead ? "[{\"$set\": {\"" MONGOQ__F_STATUS "\": \"" MONGOQ__S_DEAD
               "\", \"" MONGOQ__F_LAST_ERROR "\": \"" MONGOQ__REASON_LEASE_EXPIRED
               "\", \"" MONGOQ__F_UPDATED_AT "\": \"$$NOW\"}}, "
               "{\"$unset\": [\"" MONGOQ__F_LEASE_TOKEN "\", \"" MONGOQ__F_LEASE_EXPIRES_AT
               "\", \"" MONGOQ__F_DEDUP_KEY "\"]}]"
             : "[{\"$set\": {\"" MONGOQ__F_STATUS "\": \"" MONGOQ__S_READY
               "\", \"" MONGOQ__F_LAST_ERROR "\": \"" MONGOQ__REASON_LEASE_EXPIRED
               "\", \"" MONGOQ__F_UPDATED_AT "\": \"$$NOW\"}}, "
               "{\"$unset\": [\"" MONGOQ__F_LEASE_TOKEN "\", \"" MONGOQ__F_LEASE_EXPIRES_AT "\"]}]";
    /* bson_init_from_json reads a top-level array as a document keyed "0", "1": a pipeline. */
    BSON_ASSERT(bson_init_from_json(pipeline, json, -1, NULL));
}

static bool
reap_one_kind(mongoq_queue_t *queue, mongoc_collection_t *coll, int64_t server_now, bool dead,
              int64_t *n, bson_error_t *error)
{
    bson_t filter, update, opts = BSON_INITIALIZER, reply;
    build_expired_filter(server_now, dead ? "$gte" : "$lt", &filter);
    build_reaped_update(dead, &update);
    mongoq__queue_append_write_concern(queue, &opts);
    bool ok = mongoc_collection_update_many(coll, &filter, &update, &opts, &reply, error);
    *n = ok ? mongoq__reply_count(&reply, "modifiedCount") : 0;
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

bool
mongoq_queue_reap(mongoq_queue_t *queue, int64_t *reclaimed_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    int64_t returned = 0, buried = 0;
    if (reclaimed_out) {
        *reclaimed_out = 0;
    }
    /* Estimate the clock before taking a client: a refresh may need one of its own. */
    int64_t now = mongoq__clock_server_now_ms(queue->clock);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    bool ok = reap_one_kind(queue, coll, now, false, &returned, error) &&
              reap_one_kind(queue, coll, now, true, &buried, error);
    mongoq__queue_release(queue, client, coll);
    mongoq__counter_add(&queue->counters.reaped, returned + buried);
    mongoq__counter_add(&queue->counters.failed, buried);
    if (returned > 0) {
        mongoq__waker_notify(queue->waker);
    }
    if (reclaimed_out) {
        *reclaimed_out = returned + buried;
    }
    return ok;
}

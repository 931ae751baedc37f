/*
 * Change streams through a mongos over a collection sharded on {p: "hashed"}:
 *  - events from every shard come in cluster-time order: writes made one after another (each
 *    acknowledged before the next) come out in that order whatever shard they hit
 *    (s/query/async_results_merger.cpp: the merge by sort key, held until every shard has shown
 *    progress past it);
 *  - with one shard idle, an event is held until the idle shard shows progress, which it does
 *    through its periodic no-op (periodicNoopIntervalSecs; SERVER-80427): the event does come,
 *    and with the run's no-op interval known, not before most of it has passed;
 *  - the resume token the mongos hands out resumes the merged stream after that event.
 */
#include "router_util.h"

static int32_t
event_id(const bson_t *ev)
{
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, ev) && bson_iter_find_descendant(&it, "documentKey._id", &it));
    return bson_iter_int32(&it);
}

static bool
next_event(mongoc_change_stream_t *cs, int64_t timeout_ms, int32_t *id)
{
    const bson_t *ev;
    bson_error_t error;
    int64_t until = mtest_now_ms() + timeout_ms;
    /* Bounded by the timeout. */
    while (mtest_now_ms() < until) {
        if (mongoc_change_stream_next(cs, &ev)) {
            *id = event_id(ev);
            return true;
        }
        cr_assert(!mongoc_change_stream_error_document(cs, &error, NULL), "%s", error.message);
    }
    return false;
}

static void
insert(mongoc_collection_t *coll, int32_t k)
{
    bson_error_t error;
    bson_t *doc = BCON_NEW("_id", BCON_INT32(k), "p", BCON_INT32(k));
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "%s", error.message);
    bson_destroy(doc);
}

Test(router_changestream, merged_in_cluster_time_order_and_resumed, .timeout = 60)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rcs");
    rtest_shard(client, db, "q", "{\"p\": \"hashed\"}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "q");
    bson_t *opts = BCON_NEW("maxAwaitTimeMS", BCON_INT64(300));
    bson_t pipeline = BSON_INITIALIZER;
    mongoc_change_stream_t *cs = mongoc_collection_watch(coll, &pipeline, opts);
    for (int32_t k = 0; k < 12; k++) {
        insert(coll, k);
    }
    for (int32_t k = 0; k < 12; k++) {
        int32_t id = -1;
        cr_assert(next_event(cs, 30000, &id), "event %d arrived", k);
        cr_assert_eq(id, k, "event %d is the insert of %d", k, id);
    }
    bson_t *token = bson_copy(mongoc_change_stream_get_resume_token(cs));
    mongoc_change_stream_destroy(cs);
    for (int32_t k = 12; k < 16; k++) {
        insert(coll, k);
    }
    bson_t *resume = BCON_NEW("resumeAfter", BCON_DOCUMENT(token), "maxAwaitTimeMS", BCON_INT64(300));
    cs = mongoc_collection_watch(coll, &pipeline, resume);
    for (int32_t k = 12; k < 16; k++) {
        int32_t id = -1;
        cr_assert(next_event(cs, 30000, &id), "resumed event %d arrived", k);
        cr_assert_eq(id, k, "resumed after the token: event %d is the insert of %d", k, id);
    }
    mongoc_change_stream_destroy(cs);
    bson_destroy(resume);
    bson_destroy(token);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    mtest_db_drop(client, db);
    bson_free(db);
    mongoc_client_destroy(client);
}

Test(router_changestream, idle_shard_holds_back_until_its_noop, .timeout = 90)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rcs");
    rtest_shard(client, db, "q", "{\"p\": \"hashed\"}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "q");
    bson_t *opts = BCON_NEW("maxAwaitTimeMS", BCON_INT64(200));
    bson_t pipeline = BSON_INITIALIZER;
    mongoc_change_stream_t *cs = mongoc_collection_watch(coll, &pipeline, opts);
    int64_t interval = rtest_noop_interval_ms();
    int64_t slowest = 0;
    for (int32_t k = 0; k < 3; k++) {
        int32_t id = -1;
        int64_t t0 = mtest_now_ms();
        insert(coll, 100 + k); /* one document: one shard written, the others idle */
        cr_assert(next_event(cs, interval ? 3 * interval + 5000 : 25000, &id),
                  "the event is released once the idle shards show progress");
        cr_assert_eq(id, 100 + k);
        int64_t lag = mtest_now_ms() - t0;
        slowest = lag > slowest ? lag : slowest;
    }
    if (interval > 0) {
        /* The premise: the event was held back for the idle shard's no-op. */
        cr_assert_geq(slowest, interval / 2, "slowest wake-up %lld ms with a %lld ms no-op interval",
                      (long long)slowest, (long long)interval);
    }
    mongoc_change_stream_destroy(cs);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    mtest_db_drop(client, db);
    bson_free(db);
    mongoc_client_destroy(client);
}

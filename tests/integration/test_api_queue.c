/* mongoq_queue_*: opening, names, indexes, counters, destroy. */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

/* name -> the index document from listIndexes, copied into *out. */
static bool
find_index(world_t *t, const char *name, bson_t *out)
{
    const bson_t *doc;
    bool found = false;
    mongoc_cursor_t *cursor = mongoc_collection_find_indexes_with_opts(t->coll, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        const char *n = mtest_doc_str(doc, "name");
        if (n && strcmp(n, name) == 0 && !found) {
            bson_copy_to(doc, out);
            found = true;
        }
    }
    bson_error_t error;
    cr_assert_not(mongoc_cursor_error(cursor, &error), "listIndexes: %s", error.message);
    mongoc_cursor_destroy(cursor);
    if (!found) {
        bson_init(out);
    }
    return found;
}

static char *
key_json(const bson_t *index)
{
    bson_iter_t it, sub;
    cr_assert(bson_iter_init_find(&it, index, "key") && BSON_ITER_HOLDS_DOCUMENT(&it));
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t key;
    bson_init_static(&key, data, len);
    (void)sub;
    return bson_as_relaxed_extended_json(&key, NULL);
}

Test(api_queue, new_creates_the_indexes)
{
    world_skip_sharded("inspects the unpartitioned index layout or opens the collection with other options");
    world_t t;
    world_open(&t, NULL, 0);
    bson_t index;
    cr_assert(find_index(&t, "mongoq_claim", &index));
    char *key = key_json(&index);
    cr_assert_str_eq(key, "{ \"status\" : 1, \"priority\" : -1, \"run_at\" : 1, \"_id\" : 1 }");
    bson_free(key);
    bson_destroy(&index);
    cr_assert(find_index(&t, "mongoq_lease", &index));
    key = key_json(&index);
    cr_assert_str_eq(key, "{ \"status\" : 1, \"lease_expires_at\" : 1 }");
    bson_free(key);
    bson_destroy(&index);
    cr_assert(find_index(&t, "mongoq_dedup", &index));
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &index, "unique") && bson_iter_as_bool(&it));
    cr_assert(bson_iter_init_find(&it, &index, "partialFilterExpression"));
    bson_destroy(&index);
    cr_assert_not(find_index(&t, "mongoq_done_ttl", &index), "no TTL index in DELETE mode");
    bson_destroy(&index);
    world_close(&t);
}

Test(api_queue, keep_mode_adds_a_ttl_index_and_follows_retention)
{
    world_skip_sharded("inspects the unpartitioned index layout or opens the collection with other options");
    world_t t;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.ack_mode = MONGOQ_ACK_KEEP;
    opts.retention_s = 60;
    world_open(&t, &opts, 0);
    bson_t index;
    cr_assert(find_index(&t, "mongoq_done_ttl", &index));
    cr_assert_eq(mtest_doc_int(&index, "expireAfterSeconds"), 60);
    bson_destroy(&index);

    /* Reopening with another retention changes the TTL in place (collMod, as mongod has). */
    bson_error_t error;
    bson_t reply;
    bool has_collmod = mtest_command(t.client, t.db, "{\"collMod\": \"jobs\"}", &reply, &error) ||
                       error.code != 59;
    bson_destroy(&reply);
    if (!has_collmod) {
        world_close(&t);
        cr_skip_test("the server has no collMod (CommandNotFound)");
    }
    opts.retention_s = 120;
    mongoq_queue_t *again = mongoq_queue_new(t.pool, t.db, "jobs", &opts, &error);
    cr_assert(again, "%s", error.message);
    cr_assert(find_index(&t, "mongoq_done_ttl", &index));
    cr_assert_eq(mtest_doc_int(&index, "expireAfterSeconds"), 120);
    bson_destroy(&index);
    mongoq_queue_destroy(again);
    world_close(&t);
}

Test(api_queue, ensure_indexes_is_idempotent)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_error_t error;
    cr_assert(mongoq_queue_ensure_indexes(t.queue, &error), "%s", error.message);
    cr_assert(mongoq_queue_ensure_indexes(t.queue, &error), "%s", error.message);
    world_close(&t);
}

Test(api_queue, skip_ensure_indexes_creates_none)
{
    world_skip_sharded("inspects the unpartitioned index layout or opens the collection with other options");
    world_t t;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.skip_ensure_indexes = true;
    world_open(&t, &opts, 0);
    bson_t index;
    cr_assert_not(find_index(&t, "mongoq_claim", &index));
    bson_destroy(&index);
    bson_error_t error;
    cr_assert(mongoq_queue_ensure_indexes(t.queue, &error), "%s", error.message);
    cr_assert(find_index(&t, "mongoq_claim", &index));
    bson_destroy(&index);
    world_close(&t);
}

Test(api_queue, names_and_counters)
{
    world_t t;
    world_open(&t, NULL, 0);
    cr_assert_str_eq(mongoq_queue_name(t.queue), "jobs");
    cr_assert_str_eq(mongoq_queue_db(t.queue), t.db);
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &c);
    cr_assert_eq(c.enqueued + c.claimed + c.acked + c.retried + c.failed + c.lease_lost + c.reaped,
                 0);
    world_enqueue_n(&t, 2, NULL, NULL);
    mongoq_queue_counters(t.queue, &c);
    cr_assert_eq(c.enqueued, 2);
    world_close(&t);
}

Test(api_queue, invalid_names_and_options_fail_before_any_command)
{
    world_t t;
    world_open(&t, NULL, WORLD_NO_QUEUE | WORLD_COUNTER);
    bson_error_t error;
    cr_assert_null(mongoq_queue_new(t.pool, t.db, "system.jobs", NULL, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = -5;
    cr_assert_null(mongoq_queue_new(t.pool, t.db, "jobs", &opts, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_eq(mtest_counter_get(t.counter, NULL), 0);
    mongoq_queue_destroy(NULL);
    world_close(&t);
}

/*
 * A write concern the one-member test set cannot meet (w: 2) proves the option reaches the
 * server: the insert is applied on the primary but the write concern fails (mongod:
 * UnsatisfiableWriteConcern 100, or WriteConcernFailed 64 after wtimeout), which mongoq reports
 * as UNKNOWN_OUTCOME: applied, not confirmed. With the default write concern the same enqueue
 * succeeds.
 */
Test(api_queue, a_write_concern_option_is_used)
{
    world_t t;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, 2);
    mongoc_write_concern_set_wtimeout_int64(wc, 300);
    opts.write_concern = wc;
    opts.skip_ensure_indexes = true; /* createIndexes would meet the same write concern */
    world_open(&t, &opts, 0);
    mongoc_write_concern_destroy(wc); /* copied by _new */
    bson_t *payload = BCON_NEW("seq", BCON_INT64(1));
    bson_error_t error;
    cr_assert_not(mongoq_enqueue(t.queue, payload, NULL, NULL, &error));
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN, "%s", error.message);
    cr_assert_eq(error.code, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", error.message);
    cr_assert_eq(world_count(&t, "{}"), 1, "applied on the primary");
    mongoq_queue_opts_t plain_opts = MONGOQ_QUEUE_OPTS_INIT;
    plain_opts.partitions = world_partitions(); /* the same queue, the default write concern */
    mongoq_queue_t *plain = mongoq_queue_new(t.pool, t.db, "jobs", &plain_opts, &error);
    cr_assert(plain, "%s", error.message);
    cr_assert(mongoq_enqueue(plain, payload, NULL, NULL, &error), "%s", error.message);
    mongoq_queue_destroy(plain);
    bson_destroy(payload);
    world_close(&t);
}

static void
log_to_counter(mongoq_log_level_t level, const char *message, void *user_data)
{
    (void)level;
    (void)message;
    (*(int *)user_data)++;
}

static bool
reaped_one(void *queue)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    return mongoq_queue_counters(queue, &c) && c.reaped >= 1;
}

Test(api_queue, background_reaper_returns_expired_leases)
{
    world_t t;
    int logs = 0;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = 200;
    opts.reap_interval_ms = 50;
    opts.log_fn = log_to_counter;
    opts.log_user_data = &logs;
    world_open(&t, &opts, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    bson_error_t error;
    mongoq_consumer_t *consumer = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *msg = world_claim(consumer, 0);
    cr_assert(msg);
    mongoq_message_destroy(msg); /* abandoned: only the lease brings it back */
    /* The redelivery's lease is long: the reaper, every 50 ms, must not take it back again in
     * the round trips before the ack. Only the abandoned claim needs the queue's short lease. */
    mongoq_consumer_t *second = world_consumer(&t, NULL, 30000);
    msg = world_claim(second, 5000);
    cr_assert(msg, "the background reaper gave the message back");
    cr_assert_eq(mongoq_message_attempts(msg), 2);
    /* The reaper counts after its update's reply; the claim may have come first. */
    cr_assert(mtest_wait_until(reaped_one, t.queue, 5000), "the reaper counted it");
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(second);
    mongoq_consumer_destroy(consumer);
    world_close(&t);
}

Test(api_queue, destroy_stops_the_reaper_at_once)
{
    world_t t;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.reap_interval_ms = 600000;
    world_open(&t, &opts, 0);
    bson_error_t error;
    mongoq_consumer_t *consumer = mongoq_consumer_new(t.queue, NULL, &error);
    cr_assert_null(world_claim(consumer, 0)); /* starts the reaper */
    mongoq_consumer_destroy(consumer);
    int64_t start = mtest_now_ms();
    mongoq_queue_destroy(t.queue);
    t.queue = NULL;
    /* Far below the 10-minute interval: destroy wakes the reaper instead of waiting it out. */
    cr_assert_leq(mtest_now_ms() - start, MONGOQ_QUEUE_DESTROY_BOUND_MS);
    world_close(&t);
}

/*
 * Structs mongoq writes into are versioned (queue.h): the _INIT macros and _init functions set
 * the version; an unknown version (0: never set; newer than this library) is refused and the
 * struct is left as it was.
 */
Test(api_queue, output_structs_check_their_version)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_error_t error;
    mongoq_stats_t stats;
    memset(&stats, 0xAB, sizeof stats);
    stats.version = 0;
    cr_assert_not(mongoq_queue_stats(t.queue, &stats, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "%s", error.message);
    cr_assert_eq(stats.ready, (int64_t)0xABABABABABABABABull, "nothing written");
    cr_assert_not(mongoq_stats_init(&stats, MONGOQ_STATS_VERSION + 1));
    cr_assert(mongoq_stats_init(&stats, MONGOQ_STATS_VERSION));
    cr_assert(mongoq_queue_stats(t.queue, &stats, &error), "%s", error.message);
    cr_assert_eq(stats.version, MONGOQ_STATS_VERSION);

    mongoq_counters_t counters;
    memset(&counters, 0xAB, sizeof counters);
    counters.version = MONGOQ_COUNTERS_VERSION + 1;
    cr_assert_not(mongoq_queue_counters(t.queue, &counters));
    cr_assert_eq(counters.enqueued, (int64_t)0xABABABABABABABABull, "nothing written");
    cr_assert(mongoq_counters_init(&counters, MONGOQ_COUNTERS_VERSION));
    world_enqueue_n(&t, 1, NULL, NULL);
    cr_assert(mongoq_queue_counters(t.queue, &counters));
    cr_assert_eq(counters.enqueued, 1);

    /* A program built against version 1 knows no stream_rescans: it is never written. */
    memset(&counters, 0xAB, sizeof counters);
    cr_assert(mongoq_counters_init(&counters, 1));
    cr_assert_eq(counters.stream_rescans, (int64_t)0xABABABABABABABABull, "init stops at v1");
    cr_assert(mongoq_queue_counters(t.queue, &counters));
    cr_assert_eq(counters.version, 1);
    cr_assert_eq(counters.enqueued, 1);
    cr_assert_eq(counters.stream_rescans, (int64_t)0xABABABABABABABABull, "past v1: untouched");
    world_close(&t);
}

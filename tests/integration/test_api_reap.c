/* mongoq_queue_reap, mongoq_queue_stats, mongoq_queue_redrive, mongoq_queue_purge. */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

static mongoq_queue_opts_t
manual_reaping(void)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true;
    return opts;
}

Test(api_reap, expired_leases_go_back_or_die)
{
    world_t t;
    mongoq_queue_opts_t opts = manual_reaping();
    world_open(&t, &opts, WORLD_COUNTER);
    mongoq_enqueue_opts_t once = MONGOQ_ENQUEUE_OPTS_INIT;
    once.max_attempts = 1;
    bson_oid_t again_id, dead_id;
    world_enqueue_n(&t, 1, NULL, &again_id);
    world_enqueue_n(&t, 1, &once, &dead_id);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 1000);
    mongoq_message_t *a = world_claim(c, 0), *b = world_claim(c, 0);
    cr_assert(a && b);
    bson_error_t error;
    int64_t reaped = -1;
    int64_t first = mongoq_message_lease_expires_at(a) < mongoq_message_lease_expires_at(b)
                        ? mongoq_message_lease_expires_at(a)
                        : mongoq_message_lease_expires_at(b);
    int64_t last = mongoq_message_lease_expires_at(a) > mongoq_message_lease_expires_at(b)
                       ? mongoq_message_lease_expires_at(a)
                       : mongoq_message_lease_expires_at(b);
    cr_assert(mongoq_queue_reap(t.queue, &reaped, &error), "%s", error.message);
    /* The premise (no lease expired yet) is checked on the server's clock after the pass, so a
     * slow machine skips this check instead of failing it. */
    int64_t early = reaped;
    if (world_server_now(&t) < first) {
        cr_assert_eq(early, 0, "leases still hold");
    }
    cr_assert(world_wait_server_past(&t, last, 5000));
    mtest_counter_reset(t.counter);
    cr_assert(mongoq_queue_reap(t.queue, &reaped, &error), "%s", error.message);
    cr_assert_eq(early + reaped, 2);
    cr_assert_leq(mtest_counter_get(t.counter, "update"), 2, "bounded round trips");

    bson_t doc;
    cr_assert(world_find(&t, &again_id, &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "ready");
    cr_assert_eq(mtest_doc_int(&doc, "attempts"), 1);
    cr_assert_not(bson_has_field(&doc, "lease_token"));
    bson_destroy(&doc);
    cr_assert(world_find(&t, &dead_id, &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "dead");
    cr_assert_str_eq(mtest_doc_str(&doc, "last_error"), "lease expired");
    bson_destroy(&doc);

    cr_assert(mongoq_queue_reap(t.queue, &reaped, &error), "%s", error.message);
    cr_assert_eq(reaped, 0, "a second pass finds nothing");
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &counters);
    cr_assert_eq(counters.reaped, 2);
    cr_assert(mongoq_queue_reap(t.queue, NULL, &error));
    mongoq_message_destroy(a);
    mongoq_message_destroy(b);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_reap, stats_counts_every_status)
{
    world_t t;
    mongoq_queue_opts_t opts = manual_reaping();
    opts.ack_mode = MONGOQ_ACK_KEEP;
    world_open(&t, &opts, 0);
    bson_error_t error;
    mongoq_stats_t s = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(t.queue, &s, &error), "%s", error.message);
    cr_assert_eq(s.ready + s.processing + s.done + s.dead + s.delayed, 0);
    cr_assert_eq(s.oldest_ready_age_ms, -1);
    cr_assert_eq(s.next_run_at_ms, -1);

    int64_t t0 = world_server_now(&t);
    world_enqueue_n(&t, 5, NULL, NULL); /* 4 stay ready, 1 done, ... */
    mongoq_enqueue_opts_t later = MONGOQ_ENQUEUE_OPTS_INIT;
    later.delay_ms = 3600000;
    world_enqueue_n(&t, 2, &later, NULL);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 60000);
    mongoq_message_t *m1 = world_claim(c, 0), *m2 = world_claim(c, 0), *m3 = world_claim(c, 0);
    cr_assert(mongoq_message_ack(m1, &error), "%s", error.message);
    cr_assert(mongoq_message_fail(m2, "x", &error), "%s", error.message);
    cr_assert(world_wait_server_past(&t, t0 + 20, 5000));
    cr_assert(mongoq_queue_stats(t.queue, &s, &error), "%s", error.message);
    cr_assert_eq(s.ready, 4);
    cr_assert_eq(s.delayed, 2);
    cr_assert_eq(s.processing, 1);
    cr_assert_eq(s.done, 1);
    cr_assert_eq(s.dead, 1);
    cr_assert_geq(s.oldest_ready_age_ms, 0);
    cr_assert_lt(s.oldest_ready_age_ms, 60000);
    cr_assert_geq(s.next_run_at_ms, t0 - 1000);
    cr_assert_lt(s.next_run_at_ms, t0 + 60000, "the due ones come first");
    mongoq_message_destroy(m1);
    mongoq_message_destroy(m2);
    mongoq_message_destroy(m3);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/* Buries `n` messages through fail; returns their ids in ids. */
static void
bury(world_t *t, int n, bson_oid_t *ids)
{
    bson_error_t error;
    world_enqueue_n(t, n, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(t, NULL, 60000);
    for (int i = 0; i < n; i++) {
        mongoq_message_t *m = world_claim(c, 0);
        cr_assert(m);
        bson_oid_copy(mongoq_message_id(m), &ids[i]);
        cr_assert(mongoq_message_fail(m, "x", &error), "%s", error.message);
        mongoq_message_destroy(m);
    }
    mongoq_consumer_destroy(c);
}

Test(api_reap, redrive_one_or_all)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_oid_t ids[3];
    bury(&t, 3, ids);
    bson_error_t error;
    int64_t moved = -1;
    cr_assert(mongoq_queue_redrive(t.queue, &ids[1], &moved, &error), "%s", error.message);
    cr_assert_eq(moved, 1);
    bson_t doc;
    cr_assert(world_find(&t, &ids[1], &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "ready");
    cr_assert_eq(mtest_doc_int(&doc, "attempts"), 0);
    cr_assert_str_eq(mtest_doc_str(&doc, "last_error"), "x", "history stays");
    bson_destroy(&doc);

    cr_assert_not(mongoq_queue_redrive(t.queue, &ids[1], &moved, &error), "not dead any more");
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, MONGOQ_ERROR_NOT_FOUND);
    bson_oid_t unknown;
    bson_oid_init(&unknown, NULL);
    cr_assert_not(mongoq_queue_redrive(t.queue, &unknown, NULL, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_NOT_FOUND);

    cr_assert(mongoq_queue_redrive(t.queue, NULL, &moved, &error), "%s", error.message);
    cr_assert_eq(moved, 2);
    cr_assert_eq(world_count(&t, "{\"status\": \"ready\", \"attempts\": 0}"), 3);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *m = world_claim(c, 0);
    cr_assert(m, "redriven messages are claimable at once");
    cr_assert_eq(mongoq_message_attempts(m), 1);
    mongoq_message_destroy(m);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_reap, purge_by_status)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_oid_t ids[2];
    bury(&t, 2, ids);
    world_enqueue_n(&t, 3, NULL, NULL);
    bson_error_t error;
    int64_t deleted = -1;
    cr_assert_not(mongoq_queue_purge(t.queue, "bogus", &deleted, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_eq(world_count(&t, "{}"), 5);
    cr_assert(mongoq_queue_purge(t.queue, "dead", &deleted, &error), "%s", error.message);
    cr_assert_eq(deleted, 2);
    cr_assert(mongoq_queue_purge(t.queue, "processing", &deleted, &error), "%s", error.message);
    cr_assert_eq(deleted, 0);
    cr_assert(mongoq_queue_purge(t.queue, NULL, &deleted, &error), "%s", error.message);
    cr_assert_eq(deleted, 3);
    cr_assert_eq(world_count(&t, "{}"), 0);
    world_close(&t);
}

Test(api_reap, concurrent_reapers_reclaim_each_message_once)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t t;
    mongoq_queue_opts_t opts = manual_reaping();
    world_open(&t, &opts, 0);
    world_enqueue_n(&t, 20, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 100);
    mongoq_message_t *msgs[20];
    size_t n = 0;
    bson_error_t error;
    cr_assert(mongoq_consumer_claim_many(c, 20, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 20);
    cr_assert(world_wait_server_past(&t, mongoq_message_lease_expires_at(msgs[19]), 5000));
    mongoq_queue_t *other = mongoq_queue_new(t.pool, t.db, "jobs", &opts, &error);
    cr_assert(other, "%s", error.message);
    int64_t r1 = 0, r2 = 0;
    cr_assert(mongoq_queue_reap(t.queue, &r1, &error), "%s", error.message);
    cr_assert(mongoq_queue_reap(other, &r2, &error), "%s", error.message);
    cr_assert_eq(r1 + r2, 20);
    cr_assert_eq(world_count(&t, "{\"status\": \"ready\"}"), 20);
    for (size_t i = 0; i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_queue_destroy(other);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/* mongoq_message_*: ack, ack_many, retry, fail, extend, and lease fencing. */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

static mongoq_message_t *
claim_one(world_t *t, mongoq_consumer_t **consumer_out, int64_t lease_ms)
{
    *consumer_out = world_consumer(t, NULL, lease_ms);
    mongoq_message_t *msg = world_claim(*consumer_out, 0);
    cr_assert(msg);
    return msg;
}

/* Makes msg's lease expire and lets another consumer take the message over. */
static mongoq_message_t *
steal(world_t *t, mongoq_message_t *msg, mongoq_consumer_t *thief)
{
    bson_error_t error;
    int64_t reaped = 0;
    cr_assert(world_wait_server_past(t, mongoq_message_lease_expires_at(msg), 10000));
    cr_assert(mongoq_queue_reap(t->queue, &reaped, &error), "%s", error.message);
    cr_assert_eq(reaped, 1);
    mongoq_message_t *other = world_claim(thief, 0);
    cr_assert(other);
    cr_assert(bson_oid_equal(mongoq_message_id(other), mongoq_message_id(msg)));
    return other;
}

static void
assert_lease_lost(const bson_error_t *error)
{
    cr_assert_eq(error->domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error->code, MONGOQ_ERROR_LEASE_LOST, "%s", error->message);
}

Test(api_message, ack_deletes)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    mongoq_consumer_t *c;
    mongoq_message_t *msg = claim_one(&t, &c, 0);
    bson_error_t error;
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    cr_assert_eq(world_count(&t, "{}"), 0);
    cr_assert_not(mongoq_message_lease_lost(msg));
    cr_assert_not(mongoq_message_ack(msg, &error), "a second ack finds nothing");
    assert_lease_lost(&error);
    cr_assert(mongoq_message_lease_lost(msg));
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &counters);
    cr_assert_eq(counters.acked, 1);
    cr_assert_eq(counters.lease_lost, 1);
    mongoq_message_destroy(msg);
    mongoq_message_destroy(NULL);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_message, ack_keep_marks_done)
{
    world_t t;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.ack_mode = MONGOQ_ACK_KEEP;
    world_open(&t, &opts, 0);
    mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
    eopts.dedup_key = "k";
    world_enqueue_n(&t, 1, &eopts, NULL);
    mongoq_consumer_t *c;
    mongoq_message_t *msg = claim_one(&t, &c, 0);
    bson_error_t error;
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    bson_t doc;
    cr_assert(world_find(&t, mongoq_message_id(msg), &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "done");
    cr_assert_neq(mtest_doc_date(&doc, "done_at"), INT64_MIN);
    cr_assert_not(bson_has_field(&doc, "dedup_key"));
    cr_assert_not(bson_has_field(&doc, "lease_expires_at"));
    bson_destroy(&doc);
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(t.queue, &stats, &error), "%s", error.message);
    cr_assert_eq(stats.done, 1);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_message, stale_consumer_cannot_touch_a_reclaimed_message)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    mongoq_consumer_t *c, *thief;
    mongoq_message_t *msg = claim_one(&t, &c, 100);
    bson_error_t error;
    thief = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *other = steal(&t, msg, thief);
    cr_assert_eq(mongoq_message_attempts(other), 2);

    cr_assert_not(mongoq_message_ack(msg, &error));
    assert_lease_lost(&error);
    cr_assert_not(mongoq_message_retry(msg, 0, "x", &error));
    assert_lease_lost(&error);
    cr_assert_not(mongoq_message_fail(msg, "x", &error));
    assert_lease_lost(&error);
    cr_assert_not(mongoq_message_extend(msg, 1000, &error));
    assert_lease_lost(&error);
    cr_assert(mongoq_message_lease_lost(msg));

    bson_t doc;
    cr_assert(world_find(&t, mongoq_message_id(msg), &doc), "nothing changed");
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "processing");
    bson_destroy(&doc);
    cr_assert(mongoq_message_ack(other, &error), "%s", error.message);
    mongoq_message_destroy(other);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(thief);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_message, retry_gives_the_message_back_later)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    mongoq_consumer_t *c;
    mongoq_message_t *msg = claim_one(&t, &c, 0);
    bson_error_t error;
    int64_t before = world_server_now(&t);
    cr_assert(mongoq_message_retry(msg, 300, "$flaky", &error), "%s", error.message);
    bson_t doc;
    cr_assert(world_find(&t, mongoq_message_id(msg), &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "ready");
    cr_assert_geq(mtest_doc_date(&doc, "run_at"), before + 300);
    cr_assert_str_eq(mtest_doc_str(&doc, "last_error"), "$flaky", "stored as written");
    cr_assert_not(bson_has_field(&doc, "lease_token"));
    cr_assert_not(bson_has_field(&doc, "lease_expires_at"));
    bson_destroy(&doc);
    cr_assert_eq(world_count(&t, "{\"errors.error\": \"$flaky\", \"errors.at\": {\"$gt\": "
                                 "{\"$date\": 0}}}"),
                 1);
    mongoq_message_destroy(msg);
    cr_assert_null(world_claim(c, 0), "not before the delay");
    msg = world_claim(c, 5000);
    cr_assert(msg);
    cr_assert_eq(mongoq_message_attempts(msg), 2);
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &counters);
    cr_assert_eq(counters.retried, 1);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_message, retry_with_backoff)
{
    world_t t;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.backoff_base_ms = 10000;
    opts.backoff_jitter = -1;
    world_open(&t, &opts, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    mongoq_consumer_t *c;
    mongoq_message_t *msg = claim_one(&t, &c, 0);
    bson_error_t error;
    int64_t before = world_server_now(&t);
    cr_assert(mongoq_message_retry(msg, -1, NULL, &error), "%s", error.message);
    int64_t after = world_server_now(&t);
    bson_t doc;
    cr_assert(world_find(&t, mongoq_message_id(msg), &doc));
    cr_assert_geq(mtest_doc_date(&doc, "run_at"), before + 10000);
    cr_assert_leq(mtest_doc_date(&doc, "run_at"), after + 10000);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &doc, "last_error") && BSON_ITER_HOLDS_NULL(&it));
    bson_destroy(&doc);
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(t.queue, &stats, &error), "%s", error.message);
    cr_assert_eq(stats.ready, 1);
    cr_assert_eq(stats.delayed, 1);
    cr_assert_geq(stats.next_run_at_ms, before + 10000);
    cr_assert_eq(stats.oldest_ready_age_ms, -1, "nothing due");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_message, retries_run_out_into_dead_keeping_five_errors)
{
    world_t t;
    world_open(&t, NULL, 0);
    mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
    eopts.max_attempts = 7;
    bson_oid_t id;
    world_enqueue_n(&t, 1, &eopts, &id);
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(t.queue, NULL, &error);
    for (int i = 1; i <= 7; i++) {
        mongoq_message_t *msg = world_claim(c, 0);
        cr_assert(msg, "attempt %d", i);
        cr_assert_eq(mongoq_message_attempts(msg), i);
        char reason[16];
        snprintf(reason, sizeof reason, "e%d", i);
        cr_assert(mongoq_message_retry(msg, 0, reason, &error), "%s", error.message);
        mongoq_message_destroy(msg);
    }
    cr_assert_null(world_claim(c, 0));
    bson_t doc;
    cr_assert(world_find(&t, &id, &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "dead");
    cr_assert_str_eq(mtest_doc_str(&doc, "last_error"), "e7");
    bson_iter_t it, arr;
    cr_assert(bson_iter_init_find(&it, &doc, "errors") && bson_iter_recurse(&it, &arr));
    int n = 0;
    while (bson_iter_next(&arr)) {
        bson_iter_t entry;
        char want[16];
        snprintf(want, sizeof want, "e%d", n + 3);
        cr_assert(bson_iter_recurse(&arr, &entry) && bson_iter_find(&entry, "error"));
        cr_assert_str_eq(bson_iter_utf8(&entry, NULL), want);
        n++;
    }
    cr_assert_eq(n, 5);
    bson_destroy(&doc);
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &counters);
    cr_assert_eq(counters.retried, 6);
    cr_assert_eq(counters.failed, 1);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_message, fail_buries_at_once)
{
    world_t t;
    world_open(&t, NULL, 0);
    mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
    eopts.dedup_key = "k";
    world_enqueue_n(&t, 1, &eopts, NULL);
    mongoq_consumer_t *c;
    mongoq_message_t *msg = claim_one(&t, &c, 0);
    bson_error_t error;
    cr_assert(mongoq_message_fail(msg, "poison", &error), "%s", error.message);
    bson_t doc;
    cr_assert(world_find(&t, mongoq_message_id(msg), &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "dead");
    cr_assert_str_eq(mtest_doc_str(&doc, "last_error"), "poison");
    cr_assert_not(bson_has_field(&doc, "dedup_key"));
    cr_assert_not(bson_has_field(&doc, "lease_token"));
    bson_destroy(&doc);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_message, extend_moves_the_lease_on_the_server_clock)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    mongoq_consumer_t *c;
    mongoq_message_t *msg = claim_one(&t, &c, 1000);
    bson_error_t error;
    int64_t before = world_server_now(&t);
    cr_assert(mongoq_message_extend(msg, 60000, &error), "%s", error.message);
    int64_t after = world_server_now(&t);
    cr_assert_geq(mongoq_message_lease_expires_at(msg), before + 60000);
    cr_assert_leq(mongoq_message_lease_expires_at(msg), after + 60000);
    bson_t doc;
    cr_assert(world_find(&t, mongoq_message_id(msg), &doc));
    cr_assert_eq(mtest_doc_date(&doc, "lease_expires_at"), mongoq_message_lease_expires_at(msg));
    bson_destroy(&doc);
    int64_t reaped = -1;
    cr_assert(world_wait_server_past(&t, before + 1000, 5000));
    cr_assert(mongoq_queue_reap(t.queue, &reaped, &error), "%s", error.message);
    cr_assert_eq(reaped, 0, "the extended lease holds");
    cr_assert_not(mongoq_message_extend(msg, 0, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/*
 * The reason a worker records is the last one set: the handler sets, clears and sets again, then
 * answers FAIL; last_error holds exactly the last. (Without set_reason the worker records null.)
 */
static mongoq_result_t
reason_handler(mongoq_message_t *msg, void *user_data)
{
    const char *last = user_data;
    mongoq_message_set_reason(msg, "first");
    mongoq_message_set_reason(msg, "second");
    mongoq_message_set_reason(msg, NULL);
    if (last) {
        mongoq_message_set_reason(msg, last);
    }
    return MONGOQ_FAIL;
}

static bool
dead_one(void *ctx)
{
    return world_count(ctx, "{\"status\": \"dead\"}") == 1;
}

static void
fail_with_reasons(const char *last)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_oid_t id;
    world_enqueue_n(&t, 1, NULL, &id);
    bson_error_t error;
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = reason_handler;
    opts.user_data = (void *)last;
    mongoq_worker_t *w = mongoq_worker_new(t.queue, &opts, &error);
    cr_assert(w && mongoq_worker_start(w, &error), "%s", error.message);
    cr_assert(mtest_wait_until(dead_one, &t, 10000), "the handler failed the message");
    cr_assert(mongoq_worker_stop(w, 5000, &error), "%s", error.message);
    mongoq_worker_destroy(w);
    bson_t doc;
    cr_assert(world_find(&t, &id, &doc));
    const char *stored = mtest_doc_str(&doc, "last_error");
    if (last) {
        cr_assert(stored && strcmp(stored, last) == 0, "last_error %s", stored ? stored : "null");
    } else {
        cr_assert_null(stored, "a cleared reason is recorded as null");
    }
    bson_destroy(&doc);
    world_close(&t);
}

Test(api_message, set_reason_keeps_the_last)
{
    fail_with_reasons("third");
}

Test(api_message, set_reason_null_clears)
{
    fail_with_reasons(NULL);
}

Test(api_message, ack_many_reports_lost_leases)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 3, NULL, NULL);
    bson_error_t error;
    mongoq_consumer_opts_t copts = MONGOQ_CONSUMER_OPTS_INIT;
    copts.lease_ms = 100;
    mongoq_consumer_t *c = mongoq_consumer_new(t.queue, &copts, &error);
    mongoq_consumer_t *thief = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *msgs[3];
    size_t n = 0;
    cr_assert(mongoq_consumer_claim_many(c, 3, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 3);
    /* Keep two alive, let the last one go to the thief. */
    cr_assert(mongoq_message_extend(msgs[0], 60000, &error), "%s", error.message);
    cr_assert(mongoq_message_extend(msgs[1], 60000, &error), "%s", error.message);
    mongoq_message_t *other = steal(&t, msgs[2], thief);
    cr_assert_not(mongoq_message_ack_many(msgs, 3, &error));
    assert_lease_lost(&error);
    cr_assert(strstr(error.message, "1 of 3"), "%s", error.message);
    cr_assert_not(mongoq_message_lease_lost(msgs[0]));
    cr_assert_not(mongoq_message_lease_lost(msgs[1]));
    cr_assert(mongoq_message_lease_lost(msgs[2]));
    cr_assert_eq(world_count(&t, "{}"), 1, "only the stolen one is left");
    cr_assert(mongoq_message_ack_many(&other, 1, &error), "%s", error.message);
    cr_assert(mongoq_message_ack_many(msgs, 0, &error));
    for (int i = 0; i < 3; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_message_destroy(other);
    mongoq_consumer_destroy(thief);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_message, ack_many_keep_mode_is_exact)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t t;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.ack_mode = MONGOQ_ACK_KEEP;
    world_open(&t, &opts, 0);
    world_enqueue_n(&t, 2, NULL, NULL);
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *msgs[2];
    size_t n = 0;
    cr_assert(mongoq_consumer_claim_many(c, 2, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 2);
    cr_assert(mongoq_message_ack(msgs[1], &error), "%s", error.message);
    /* msgs[1] is done with this claim's token: ack_many recognises its own earlier ack (what a
     * caller repeating ack_many after UNKNOWN_OUTCOME relies on). */
    cr_assert(mongoq_message_ack_many(msgs, 2, &error), "%s", error.message);
    cr_assert_not(mongoq_message_lease_lost(msgs[0]));
    cr_assert_not(mongoq_message_lease_lost(msgs[1]));
    cr_assert_eq(world_count(&t, "{\"status\": \"done\"}"), 2);
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &counters);
    cr_assert_eq(counters.acked, 2, "the repeated ack is not counted twice");
    mongoq_message_destroy(msgs[0]);
    mongoq_message_destroy(msgs[1]);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

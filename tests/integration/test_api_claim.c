/* mongoq_consumer_*: claiming one or many, order, delays, waiting, damaged documents. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "world.h"

Test(api_claim, nothing_ready_returns_null_at_once)
{
    world_t t;
    world_open(&t, NULL, 0);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    int64_t start = mtest_now_ms();
    cr_assert_null(world_claim(c, 0));
    cr_assert_null(world_claim(c, 150));
    cr_assert_geq(mtest_now_ms() - start, 150);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_claim, writes_the_lease_on_the_server_clock)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_oid_t id;
    world_enqueue_n(&t, 1, NULL, &id);
    mongoq_consumer_t *c = world_consumer(&t, "worker-a", 10000);
    cr_assert_str_eq(mongoq_consumer_name(c), "worker-a");
    int64_t before = world_server_now(&t);
    mongoq_message_t *msg = world_claim(c, 0);
    int64_t after = world_server_now(&t);
    cr_assert(msg);
    cr_assert(bson_oid_equal(mongoq_message_id(msg), &id));
    cr_assert_eq(mongoq_message_attempts(msg), 1);
    cr_assert_eq(mongoq_message_max_attempts(msg), 5);
    cr_assert_eq(world_seq(msg), 0);
    cr_assert_geq(mongoq_message_lease_expires_at(msg), before + 10000);
    cr_assert_leq(mongoq_message_lease_expires_at(msg), after + 10000);
    bson_t doc;
    cr_assert(world_find(&t, &id, &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "processing");
    cr_assert_str_eq(mtest_doc_str(&doc, "claimed_by"), "worker-a");
    cr_assert_str_eq(mongoq_message_claimed_by(msg), "worker-a");
    bson_iter_t token;
    cr_assert(bson_iter_init_find(&token, &doc, "lease_token") && BSON_ITER_HOLDS_OID(&token));
    cr_assert(bson_oid_equal(mongoq_message_lease_token(msg), bson_iter_oid(&token)),
              "the accessor gives the fencing token the claim wrote");
    cr_assert_eq(mtest_doc_date(&doc, "lease_expires_at"), mongoq_message_lease_expires_at(msg));
    bson_destroy(&doc);
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &counters);
    cr_assert_eq(counters.claimed, 1);
    cr_assert_null(world_claim(c, 0), "a claimed message is not handed out twice");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_claim, default_name_and_bad_options)
{
    world_t t;
    world_open(&t, NULL, 0);
    mongoq_consumer_t *a = world_consumer(&t, NULL, 0);
    mongoq_consumer_t *b = world_consumer(&t, NULL, 0);
    cr_assert(strchr(mongoq_consumer_name(a), ':'));
    cr_assert_str_neq(mongoq_consumer_name(a), mongoq_consumer_name(b));
    bson_error_t error;
    mongoq_consumer_opts_t opts = MONGOQ_CONSUMER_OPTS_INIT;
    opts.lease_ms = -1;
    cr_assert_null(mongoq_consumer_new(t.queue, &opts, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    mongoq_message_t *msg = NULL;
    cr_assert_not(mongoq_consumer_claim(a, -1, &msg, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    mongoq_message_t *many[2];
    size_t n = 0;
    cr_assert_not(mongoq_consumer_claim_many(a, 0, 0, many, &n, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_not(mongoq_consumer_claim_many(a, 1001, 0, many, &n, &error));
    mongoq_consumer_destroy(a);
    mongoq_consumer_destroy(b);
    mongoq_consumer_destroy(NULL);
    world_close(&t);
}

Test(api_claim, priority_first_then_fifo)
{
    world_skip_sharded("priority and FIFO order hold within one partition only; the test expects them across the queue");
    world_t t;
    world_open(&t, NULL, 0);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    int priorities[] = {0, 5, 0, 5, -1};
    for (int i = 0; i < 5; i++) {
        opts.priority = priorities[i];
        world_enqueue(t.queue, i, &opts, NULL);
    }
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    int expected[] = {1, 3, 0, 2, 4};
    for (int i = 0; i < 5; i++) {
        mongoq_message_t *msg = world_claim(c, 0);
        cr_assert(msg);
        cr_assert_eq(world_seq(msg), expected[i], "claim %d got seq %" PRId64, i, world_seq(msg));
        cr_assert_eq(mongoq_message_priority(msg), priorities[expected[i]]);
        mongoq_message_destroy(msg);
    }
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_claim, delayed_message_waits_for_its_time)
{
    world_t t;
    world_open(&t, NULL, 0);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.delay_ms = 400;
    bson_oid_t id;
    world_enqueue_n(&t, 1, &opts, &id);
    bson_t doc;
    cr_assert(world_find(&t, &id, &doc));
    int64_t run_at = mtest_doc_date(&doc, "run_at");
    bson_destroy(&doc);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 30000);
    mongoq_message_t *msg = world_claim(c, 0);
    /* "Not due" holds only if the server's clock, read after the claim, is still before run_at:
     * the round trips since the enqueue may take the 400 ms on a loaded machine. */
    if (world_server_now(&t) < run_at) {
        cr_assert_null(msg, "not due yet");
    }
    if (!msg) {
        msg = world_claim(c, 5000);
    }
    cr_assert(msg, "claimable once due");
    /* The claim's $$NOW, whichever claim it was. */
    cr_assert_geq(mongoq_message_lease_expires_at(msg) - 30000, run_at,
                  "never before run_at on the server clock");
    cr_assert_geq(world_server_now(&t), run_at, "never before run_at on the server clock");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

typedef struct {
    world_t *t;
    int64_t delay_ms;
} producer_arg_t;

static void *
enqueue_later(void *arg)
{
    producer_arg_t *p = arg;
    struct timespec pause = {0, (long)p->delay_ms * 1000000L};
    nanosleep(&pause, NULL); /* the test is about the consumer waking; the delay is its input */
    bson_t payload = BSON_INITIALIZER;
    bson_error_t error;
    bool ok = mongoq_enqueue(p->t->queue, &payload, NULL, NULL, &error);
    bson_destroy(&payload);
    return ok ? arg : NULL;
}

Test(api_claim, a_waiting_claim_wakes_on_enqueue)
{
    world_t t;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.poll_interval_ms = 60000; /* only the local notification can wake it in time */
    qopts.no_change_stream = true;
    world_open(&t, &qopts, 0);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    producer_arg_t arg = {&t, 200};
    pthread_t producer;
    pthread_create(&producer, NULL, enqueue_later, &arg);
    int64_t start = mtest_now_ms();
    mongoq_message_t *msg = world_claim(c, 10000);
    int64_t took = mtest_now_ms() - start;
    void *result;
    pthread_join(producer, &result);
    cr_assert(result);
    cr_assert(msg);
    cr_assert_lt(took, 5000, "woken by the enqueue, not by a poll (%" PRId64 " ms)", took);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_claim, claim_many_takes_a_batch_in_three_round_trips)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t t;
    world_open(&t, NULL, WORLD_COUNTER);
    world_enqueue_n(&t, 30, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *msgs[25];
    size_t n = 0;
    bson_error_t error;
    mtest_counter_reset(t.counter);
    cr_assert(mongoq_consumer_claim_many(c, 25, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 25);
    cr_assert_leq(mtest_counter_get(t.counter, NULL), 3, "commands: %" PRId64,
                  mtest_counter_get(t.counter, NULL));
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(world_seq(msgs[i]), (int64_t)i, "claim order");
        cr_assert_eq(mongoq_message_attempts(msgs[i]), 1);
    }
    cr_assert_eq(world_count(&t, "{\"status\": \"processing\"}"), 25);
    cr_assert(mongoq_message_ack_many(msgs, n, &error), "%s", error.message);
    cr_assert_eq(world_count(&t, "{}"), 5);
    for (size_t i = 0; i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    cr_assert(mongoq_consumer_claim_many(c, 25, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    cr_assert(mongoq_consumer_claim_many(c, 25, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 0);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

typedef struct {
    world_t *t;
    int64_t got;
    bool ok;
    bson_oid_t ids[200];
} claimer_t;

static void *
claim_all(void *arg)
{
    claimer_t *cl = arg;
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(cl->t->queue, NULL, &error);
    mongoq_message_t *msgs[7];
    size_t n;
    cl->ok = true;
    for (int round = 0; round < 400; round++) {
        if (!mongoq_consumer_claim_many(c, 7, 0, msgs, &n, &error)) {
            cl->ok = false;
            break;
        }
        if (n == 0) {
            break;
        }
        for (size_t i = 0; i < n; i++) {
            if (cl->got < 200) {
                bson_oid_copy(mongoq_message_id(msgs[i]), &cl->ids[cl->got]);
            }
            cl->got++;
            mongoq_message_destroy(msgs[i]);
        }
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

Test(api_claim, concurrent_claim_many_never_shares_a_message)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 120, NULL, NULL);
    claimer_t a = {.t = &t}, b = {.t = &t};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, claim_all, &a);
    pthread_create(&tb, NULL, claim_all, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert(a.ok && b.ok);
    cr_assert_eq(a.got + b.got, 120);
    for (int64_t i = 0; i < a.got && i < 200; i++) {
        for (int64_t j = 0; j < b.got && j < 200; j++) {
            cr_assert_not(bson_oid_equal(&a.ids[i], &b.ids[j]));
        }
    }
    cr_assert_eq(world_count(&t, "{\"status\": \"processing\", \"attempts\": 1}"), 120);
    world_close(&t);
}

static void
insert_raw(world_t *t, const char *json)
{
    bson_error_t error;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &error);
    cr_assert(doc, "%s", error.message);
    cr_assert(mongoc_collection_insert_one(t->coll, doc, NULL, NULL, &error), "%s", error.message);
    bson_destroy(doc);
}

Test(api_claim, damaged_documents_are_buried_not_handed_out)
{
    world_skip_sharded("expects claims to meet messages in one partition's order (a partitioned consumer moves to the next partition after each claim)");
    world_t t;
    world_open(&t, NULL, 0);
    /* High priority so they come first; each is damaged differently. */
    insert_raw(&t, "{\"_id\": 1, \"status\": \"ready\", \"priority\": 9, \"run_at\": "
                   "{\"$date\": 0}, \"attempts\": \"zero\", \"max_attempts\": 5, "
                   "\"payload\": {}, \"enqueued_at\": {\"$date\": 0}}");
    insert_raw(&t, "{\"_id\": {\"$oid\": \"65a000000000000000000002\"}, \"status\": \"ready\", "
                   "\"priority\": 8, \"run_at\": {\"$date\": 0}, \"attempts\": 0, "
                   "\"max_attempts\": 5, \"payload\": \"not a document\", "
                   "\"enqueued_at\": {\"$date\": 0}}");
    insert_raw(&t, "{\"_id\": {\"$oid\": \"65a000000000000000000003\"}, \"status\": \"ready\", "
                   "\"priority\": 7, \"run_at\": {\"$date\": 0}, \"payload\": {}}");
    world_enqueue_n(&t, 1, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(msg, "the good message comes through");
    cr_assert_eq(world_seq(msg), 0);
    cr_assert_eq(world_count(&t, "{\"status\": \"dead\"}"), 3);
    cr_assert_eq(world_count(&t, "{\"status\": \"dead\", \"last_error\": {\"$regex\": "
                                 "\"^damaged message\"}}"),
                 3);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/* ---- concurrent claim_many calls of one process search disjoint stretches ------------------- */

/*
 * A's claim_many found messages 0 and 1 and its updateMany is held on the server; B's, under
 * way at the same time in the same process, starts one batch further down (2 and 3) instead of
 * finding A's candidates and losing them to A.
 */
Test(api_claim, concurrent_claim_many_calls_search_disjoint_stretches, .timeout = 120)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t w;
    world_open(&w, NULL, WORLD_COUNTER);
    world_enqueue_n(&w, 6, NULL, NULL);
    mtest_counter_reset(w.counter);
    int64_t fired = world_fail_point(&w, "{\"times\": 1}",
                                     "\"failCommands\": [\"update\"], \"blockConnection\": true, "
                                     "\"blockTimeMS\": 2000");
    world_claimer_t a = {.consumer = world_consumer(&w, "a", 0)};
    world_claimer_t b = {.consumer = world_consumer(&w, "b", 0)};
    world_claimer_start(&a);
    cr_assert(mtest_wait_until(world_update_sent, w.counter, 10000), "A's updateMany left");
    world_claim_two(&b);
    world_claimer_join(&a);
    cr_assert_eq(world_fail_point_off(&w, fired), 1, "A's updateMany was held");
    cr_assert(a.ok && b.ok, "%s / %s", a.error.message, b.error.message);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(b.n, 2);
    cr_assert_eq(world_seq(a.msgs[0]), 0);
    cr_assert_eq(world_seq(a.msgs[1]), 1);
    cr_assert_eq(world_seq(b.msgs[0]), 2, "B searched from the second batch");
    cr_assert_eq(world_seq(b.msgs[1]), 3);
    cr_assert_eq(mtest_counter_get(w.counter, "findAndModify"), 0, "no race lost, no fallback");
    for (int i = 0; i < 2; i++) {
        mongoq_message_destroy(a.msgs[i]);
        mongoq_message_destroy(b.msgs[i]);
    }
    /* Both lanes are free again: a claim on its own starts at the head (4, 5). */
    mongoq_message_t *msgs[2];
    size_t n = 0;
    bson_error_t error;
    cr_assert(mongoq_consumer_claim_many(a.consumer, 2, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 2);
    cr_assert_eq(world_seq(msgs[0]), 4);
    mongoq_message_destroy(msgs[0]);
    mongoq_message_destroy(msgs[1]);
    mongoq_consumer_destroy(a.consumer);
    mongoq_consumer_destroy(b.consumer);
    world_close(&w);
}

/*
 * Worker hardening, what a handler and its outcomes see: a handler never starts on a message
 * whose lease is known lost (run out while the batch waited, or found lost by the heartbeat);
 * the handler sees lease_expires_at move with the heartbeat; worker and queue counters agree;
 * every claimed message gets exactly one outcome; a batch of one claims with findAndModify.
 * Stopping is in test_worker_stop.c; the helpers in world_hardening.c.
 */
#include "world_hardening.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>

/* The suite for this file and test_worker_stop.c. */
TestSuite(worker_hardening, .timeout = 120);

/* ---- 1. never start a handler on a message known lost ---------------------------------------- */

/* The server's clock (hello.localTime), or INT64_MIN; no assertion (called on worker threads). */
static int64_t
wh_server_now(mongoc_client_t *client)
{
    bson_t reply;
    int64_t now = INT64_MIN;
    if (mtest_command(client, "admin", "{\"hello\": 1}", &reply, NULL)) {
        now = mtest_doc_date(&reply, "localTime");
    }
    bson_destroy(&reply);
    return now;
}

typedef struct {
    mongoc_client_t *client;
    int64_t past;
} wh_server_past_t;

static bool
wh_server_is_past(void *arg)
{
    wh_server_past_t *p = arg;
    return wh_server_now(p->client) > p->past;
}

/* The first call outlives its lease by the server's clock (no heartbeat extends it). */
static mongoq_result_t
wh_outlive_lease(mongoq_message_t *msg, void *user_data)
{
    wh_ctx_t *c = user_data;
    bool first;
    wh_enter(c, msg, &first);
    if (first) {
        wh_server_past_t p = {c->handler_client, mongoq_message_lease_expires_at(msg) + 100};
        mtest_wait_until(wh_server_is_past, &p, 10000);
    }
    return MONGOQ_ACK;
}

/* Three messages skipped as lost, one acked; the counters of worker and queue say so. */
static void
wh_assert_three_skipped(world_t *e, wh_ctx_t *c, mongoq_worker_t *w)
{
    int ran = wh_only_run(c, 4);
    cr_assert_eq(c->runs[ran], 1);
    for (int i = 0; i < 4; i++) {
        if (i == ran) {
            wh_assert_outcome(c, i, 1, MONGOQ_OUTCOME_ACKED, true);
            cr_assert(c->last[i][1].handled);
        } else {
            wh_assert_outcome(c, i, 1, MONGOQ_OUTCOME_SKIPPED_LOST, false);
            cr_assert_not(c->last[i][1].handled);
            cr_assert_eq(c->last[i][1].error.code, MONGOQ_ERROR_LEASE_LOST);
        }
    }
    mongoq_counters_t wc = MONGOQ_COUNTERS_INIT, qc = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &wc);
    mongoq_queue_counters(e->queue, &qc);
    cr_assert_eq(wc.claimed, 4);
    cr_assert_eq(wc.acked, 1);
    cr_assert_eq(wc.lease_lost, 3, "worker lease_lost %" PRId64, wc.lease_lost);
    cr_assert_eq(qc.lease_lost, 3, "queue lease_lost %" PRId64, qc.lease_lost);
    cr_assert_eq(c->malformed, 0);
}

Test(worker_hardening, a_lease_that_ran_out_while_the_batch_waited_is_not_started)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t e;
    wh_ctx_t c;
    wh_open_quiet(&e); /* no reaper: nothing redelivers the three, so they never run */
    wh_ctx_init(&c, &e);
    world_enqueue_n(&e, 4, NULL, NULL);
    /* 1.5 s: the first message's own check before its handler has that long (the batch's
     * read-back and a round trip or two under load); the handler then outlives it anyway. */
    mongoq_worker_t *w = wh_worker(&c, wh_outlive_lease, 4, 1500, -1);
    wh_outcomes_t all = {&c, 4};
    cr_assert(mtest_wait_until(wh_outcomes_reached, &all, 15000), "4 outcomes");
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    wh_assert_three_skipped(&e, &c, w);
    cr_assert_eq(world_count(&e, "{\"status\": \"processing\"}"), 3,
                 "the skipped three keep their (run-out) leases for the reaper");
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

typedef struct {
    mongoq_queue_t *queue;
    int64_t lease_lost;
} wh_lost_t;

static bool
wh_queue_lost_reached(void *arg)
{
    wh_lost_t *l = arg;
    mongoq_counters_t qc = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(l->queue, &qc);
    return qc.lease_lost >= l->lease_lost;
}

/*
 * The first call takes the leases of every other message of its batch away (as another
 * consumer's reclaim would), then waits until the heartbeat has marked all three lost.
 */
static mongoq_result_t
wh_steal_the_others(mongoq_message_t *msg, void *user_data)
{
    wh_ctx_t *c = user_data;
    bool first;
    wh_enter(c, msg, &first);
    if (!first) {
        return MONGOQ_ACK;
    }
    mongoc_collection_t *coll = mongoc_client_get_collection(c->handler_client, c->env->db, "jobs");
    bson_oid_t other;
    bson_oid_init(&other, NULL);
    bson_t *filter = BCON_NEW("_id", "{", "$ne", BCON_OID(mongoq_message_id(msg)), "}",
                              "status", "processing");
    bson_t *update = BCON_NEW("$set", "{", "lease_token", BCON_OID(&other), "}");
    if (mongoc_collection_update_many(coll, filter, update, NULL, NULL, NULL)) {
        wh_lost_t l = {c->env->queue, 3};
        mtest_wait_until(wh_queue_lost_reached, &l, 10000);
    }
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return MONGOQ_ACK;
}

Test(worker_hardening, messages_the_heartbeat_found_lost_are_not_started)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t e;
    wh_ctx_t c;
    wh_open_quiet(&e);
    wh_ctx_init(&c, &e);
    world_enqueue_n(&e, 4, NULL, NULL);
    /* Long leases: only the heartbeat's finding can make the three lost. */
    mongoq_worker_t *w = wh_worker(&c, wh_steal_the_others, 4, 20000, 100);
    wh_outcomes_t all = {&c, 4};
    cr_assert(mtest_wait_until(wh_outcomes_reached, &all, 15000), "4 outcomes");
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    wh_assert_three_skipped(&e, &c, w);
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

/* ---- 2. heartbeats move the deadline the handler sees ------------------------------------------ */

typedef struct {
    const mongoq_message_t *msg;
    int64_t at_least;
} wh_expiry_t;

static bool
wh_expiry_reached(void *arg)
{
    wh_expiry_t *x = arg;
    return mongoq_message_lease_expires_at(x->msg) >= x->at_least;
}

static mongoq_result_t
wh_watch_expiry(mongoq_message_t *msg, void *user_data)
{
    wh_ctx_t *c = user_data;
    bool first;
    bson_t doc;
    wh_enter(c, msg, &first);
    int64_t before = mongoq_message_lease_expires_at(msg);
    wh_expiry_t x = {msg, before + 400};
    mtest_wait_until(wh_expiry_reached, &x, 5000);
    int64_t later = mongoq_message_lease_expires_at(msg);
    mongoc_collection_t *coll = mongoc_client_get_collection(c->handler_client, c->env->db, "jobs");
    bool found = mtest_find_by_id(coll, mongoq_message_id(msg), &doc);
    pthread_mutex_lock(&c->mu);
    c->expiry_first = before;
    c->expiry_later = later;
    c->expiry_on_server = found ? mtest_doc_date(&doc, "lease_expires_at") : INT64_MIN;
    c->lost_seen = mongoq_message_lease_lost(msg);
    pthread_mutex_unlock(&c->mu);
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    return MONGOQ_ACK;
}

Test(worker_hardening, the_handler_sees_lease_expires_at_advance_with_heartbeats)
{
    world_t e;
    wh_ctx_t c;
    wh_open_quiet(&e);
    wh_ctx_init(&c, &e);
    mongoq_worker_t *w = wh_worker(&c, wh_watch_expiry, 1, 900, 100);
    world_enqueue(e.queue, 0, NULL, NULL);
    wh_outcomes_t one = {&c, 1};
    cr_assert(mtest_wait_until(wh_outcomes_reached, &one, 15000), "handled");
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    cr_assert_geq(c.expiry_later, c.expiry_first + 400,
                  "lease_expires_at moved from %" PRId64 " only to %" PRId64, c.expiry_first,
                  c.expiry_later);
    cr_assert_neq(c.expiry_on_server, INT64_MIN, "the message is still held on the server");
    cr_assert_leq(c.expiry_later, c.expiry_on_server,
                  "a lower bound of the server's expiry (%" PRId64 " > %" PRId64 ")",
                  c.expiry_later, c.expiry_on_server);
    cr_assert_not(c.lost_seen);
    wh_assert_outcome(&c, 0, 1, MONGOQ_OUTCOME_ACKED, true);
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

/* ---- 5 and 6. counters agree, one outcome per message ------------------------------------------ */

/* i % 3: 0 acks, 1 fails, 2 retries (buried at its second attempt with max_attempts 2). */
static mongoq_result_t
wh_by_i(mongoq_message_t *msg, void *user_data)
{
    bool first;
    int i = wh_enter(user_data, msg, &first);
    static const mongoq_result_t answers[] = {MONGOQ_ACK, MONGOQ_FAIL, MONGOQ_RETRY};
    return i >= 0 ? answers[i % 3] : MONGOQ_FAIL;
}

static void
wh_assert_counters_agree(world_t *e, mongoq_worker_t *w, int64_t acked, int64_t retried,
                         int64_t failed)
{
    mongoq_counters_t wc = MONGOQ_COUNTERS_INIT, qc = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &wc);
    mongoq_queue_counters(e->queue, &qc);
    cr_assert_eq(wc.acked, acked, "worker acked %" PRId64, wc.acked);
    cr_assert_eq(wc.retried, retried, "worker retried %" PRId64, wc.retried);
    cr_assert_eq(wc.failed, failed, "worker failed %" PRId64, wc.failed);
    cr_assert_eq(qc.acked, wc.acked, "queue acked %" PRId64, qc.acked);
    cr_assert_eq(qc.retried, wc.retried, "queue retried %" PRId64, qc.retried);
    cr_assert_eq(qc.failed, wc.failed, "queue failed %" PRId64, qc.failed);
    cr_assert_eq(qc.lease_lost, wc.lease_lost);
}

Test(worker_hardening, a_retry_at_max_attempts_is_counted_as_buried_by_worker_and_queue)
{
    world_t e;
    wh_ctx_t c;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.max_attempts = 1;
    qopts.no_reaper = true;
    wh_open(&e, &qopts);
    wh_ctx_init(&c, &e);
    mongoq_worker_t *w = wh_worker(&c, wh_by_i, 1, 0, 0);
    world_enqueue(e.queue, 2, NULL, NULL); /* i = 2: the handler answers RETRY */
    wh_outcomes_t one = {&c, 1};
    cr_assert(mtest_wait_until(wh_outcomes_reached, &one, 15000), "handled");
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    wh_assert_outcome(&c, 2, 1, MONGOQ_OUTCOME_BURIED, true);
    cr_assert_eq(c.last[2][1].result, MONGOQ_RETRY);
    cr_assert_eq(world_count(&e, "{\"status\": \"dead\"}"), 1);
    wh_assert_counters_agree(&e, w, 0, 0, 1);
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

static void
wh_assert_by_i_outcomes(wh_ctx_t *c, int n)
{
    for (int i = 0; i < n; i++) {
        if (i % 3 == 0) {
            wh_assert_outcome(c, i, 1, MONGOQ_OUTCOME_ACKED, true);
        } else if (i % 3 == 1) {
            wh_assert_outcome(c, i, 1, MONGOQ_OUTCOME_FAILED, true);
        } else {
            wh_assert_outcome(c, i, 1, MONGOQ_OUTCOME_RETRIED, true);
            wh_assert_outcome(c, i, 2, MONGOQ_OUTCOME_BURIED, true);
        }
        cr_assert(c->last[i][1].handled);
        cr_assert_eq(c->runs[i], i % 3 == 2 ? 2 : 1, "message %d ran %d times", i, c->runs[i]);
        for (int a = i % 3 == 2 ? 3 : 2; a <= WH_ATTEMPTS; a++) {
            cr_assert_eq(c->count[i][a], 0, "message %d: an outcome for attempt %d", i, a);
        }
    }
}

Test(worker_hardening, every_claimed_message_gets_exactly_one_outcome)
{
    enum { N = 30 };
    world_t e;
    wh_ctx_t c;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.max_attempts = 2;
    qopts.backoff_base_ms = 10;
    wh_open(&e, &qopts);
    wh_ctx_init(&c, &e);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = wh_by_i;
    opts.on_outcome = wh_on_outcome;
    opts.user_data = &c;
    opts.threads = 3;
    opts.batch = 4;
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    world_enqueue_n(&e, N, NULL, NULL);
    wh_outcomes_t all = {&c, N + N / 3}; /* the RETRY third comes twice */
    cr_assert(mtest_wait_until(wh_outcomes_reached, &all, 20000), "%d outcomes", c.outcomes);
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    cr_assert_eq(c.outcomes, N + N / 3, "no outcome more than expected");
    wh_assert_by_i_outcomes(&c, N);
    cr_assert_eq(c.wrong_thread, 0, "outcomes come on the thread that ran the handler");
    cr_assert_eq(c.malformed, 0);
    wh_assert_counters_agree(&e, w, N / 3, N / 3, 2 * N / 3);
    cr_assert_eq(world_count(&e, "{\"status\": \"dead\"}"), 2 * N / 3);
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

Test(worker_hardening, options_version_1_is_accepted_and_its_struct_never_read_past)
{
    world_t e;
    wh_ctx_t c;
    bson_error_t error;
    wh_open_quiet(&e);
    wh_ctx_init(&c, &e);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    cr_assert_eq(opts.version, 3);
    opts.handler = wh_by_i;
    opts.user_data = &c;
    opts.version = 0;
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error), "version 0");
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    opts.version = MONGOQ_WORKER_OPTS_VERSION + 1;
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error), "a version from the future");
    /* A version 1 caller's struct ends before on_outcome: what lies there is not used. */
    opts.version = 1;
    opts.on_outcome = wh_on_outcome;
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    world_enqueue(e.queue, 0, NULL, NULL);
    world_acked_t a = {w, 1};
    cr_assert(mtest_wait_until(world_acked_reached, &a, 10000), "a version 1 worker works");
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    cr_assert_eq(c.runs[0], 1);
    cr_assert_eq(c.outcomes, 0, "on_outcome is not read from a version 1 struct");
    cr_assert_str_eq(mongoq_outcome_action_name(MONGOQ_OUTCOME_HANDED_BACK), "HANDED_BACK");
    cr_assert_str_eq(mongoq_outcome_action_name(99), "UNKNOWN");
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

/* ---- 7. a batch of one claims with findAndModify -------------------------------------------- */

static void
wh_run_until_acked(world_t *e, wh_ctx_t *c, int32_t batch, int n)
{
    mongoq_worker_t *w = wh_worker(c, wh_gated, batch, 0, -1);
    wh_gate_open(c);
    world_enqueue_n(e, n, NULL, NULL);
    world_acked_t a = {w, n};
    cr_assert(mtest_wait_until(world_acked_reached, &a, 10000), "%d acked", n);
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    mongoq_worker_destroy(w);
}

Test(worker_hardening, a_batch_of_one_claims_with_find_and_modify_not_update)
{
    world_t e;
    wh_ctx_t c;
    wh_open_quiet(&e); /* no reaper: its updates would be counted too */
    wh_ctx_init(&c, &e);
    mtest_counter_reset(e.counter);
    wh_run_until_acked(&e, &c, 1, 3);
    cr_assert_geq(mtest_counter_get(e.counter, "findAndModify"), 3);
    cr_assert_eq(mtest_counter_get(e.counter, "update"), 0, "no updateMany claim");

    /* The counter sees updates: a batch of two claims with claim_many's updateMany. */
    mtest_counter_reset(e.counter);
    wh_run_until_acked(&e, &c, 2, 2);
    cr_assert_geq(mtest_counter_get(e.counter, "update"), 1);
    wh_ctx_destroy(&c);
    world_close(&e);
}

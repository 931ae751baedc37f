/*
 * Worker hardening, stopping: a hand-back is one updateMany; a slow heartbeat stalls no handler
 * thread; stop returns in time while a handler runs and the keeper hangs in a network call.
 * The suite worker_hardening (120 s timeout) is declared in test_worker_outcomes.c; the helpers
 * are in world_hardening.c.
 */
#include "world_hardening.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>

/* ---- 8 and 3. stopping: one updateMany, no stalls, bounded ------------------------------------- */

static bool
wh_ready_nine(void *arg)
{
    world_t *e = arg;
    return world_count(e, "{\"status\": \"ready\", \"attempts\": 0}") == 9;
}

Test(worker_hardening, stop_hands_a_batch_back_in_one_update_and_reports_it)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t e;
    wh_ctx_t c;
    bson_error_t error;
    wh_open_quiet(&e);
    wh_ctx_init(&c, &e);
    world_enqueue_n(&e, 10, NULL, NULL);
    mongoq_worker_t *w = wh_worker(&c, wh_gated, 10, 0, -1);
    cr_assert(mtest_wait_until(wh_entered, &c, 10000), "the first handler runs");
    int64_t updates = mtest_counter_get(e.counter, "update");
    cr_assert_not(mongoq_worker_stop(w, 200, &error), "a handler is still running");
    cr_assert(mtest_wait_until(wh_ready_nine, &e, 5000), "9 handed back at once");
    cr_assert_eq(mtest_counter_get(e.counter, "update") - updates, 1, "one updateMany");

    wh_gate_open(&c);
    cr_assert(mongoq_worker_stop(w, 10000, &error), "%s", error.message);
    int ran = wh_only_run(&c, 10);
    for (int i = 0; i < 10; i++) {
        wh_assert_outcome(&c, i, 1, i == ran ? MONGOQ_OUTCOME_ACKED : MONGOQ_OUTCOME_HANDED_BACK,
                          true);
    }
    cr_assert_eq(c.outcomes, 10);
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

/*
 * The worker's next update (a heartbeat) blocks on the server for block_ms. Returns the fail
 * point's count before (see wh_unblock).
 */
static int64_t
wh_block_heartbeat(world_t *e, int block_ms)
{
    char data[256];
    bson_snprintf(data, sizeof data,
                  "\"failCommands\": [\"update\"], \"blockConnection\": true, "
                  "\"blockTimeMS\": %d",
                  block_ms);
    return world_fail_point(e, "{\"times\": 1}", data);
}

/* Turns the fail point off and asserts that it fired once since wh_block_heartbeat. */
static void
wh_unblock(world_t *e, int64_t count_before)
{
    int64_t fired = world_fail_point_off(e, count_before);
    cr_assert_eq(fired, 1, "the heartbeat was blocked (fired %" PRId64 " times)", fired);
}

typedef struct {
    mtest_counter_t *counter;
    int64_t updates;
} wh_sent_t;

static bool
wh_updates_sent(void *arg)
{
    wh_sent_t *s = arg;
    return mtest_counter_get(s->counter, "update") >= s->updates;
}

Test(worker_hardening, a_heartbeat_stuck_on_the_server_stalls_no_handler_thread)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t e;
    wh_ctx_t c;
    bson_error_t error;
    wh_open_quiet(&e);
    wh_ctx_init(&c, &e);
    world_enqueue_n(&e, 3, NULL, NULL);
    /* First heartbeat 1 s after the claim: time to arm the fail point after claim_many's update. */
    mongoq_worker_t *w = wh_worker(&c, wh_gated, 3, 20000, 1000);
    cr_assert(mtest_wait_until(wh_entered, &c, 10000), "the first handler runs");
    cr_assert_eq(mtest_counter_get(e.counter, "update"), 1, "only the claim so far");
    int64_t fired = wh_block_heartbeat(&e, 3000);
    /* Counted from here: the fail point may have waited for its turn while heartbeats went. */
    wh_sent_t beat = {e.counter, mtest_counter_get(e.counter, "update") + 1};
    cr_assert(mtest_wait_until(wh_updates_sent, &beat, 5000), "the heartbeat was sent");
    wh_gate_open(&c);
    world_acked_t a = {w, 3};
    cr_assert(mtest_wait_until(world_acked_reached, &a, 10000), "the batch finishes");

    /* The fault held: the keeper is still inside that heartbeat, so the batch went on while it
     * hung. */
    cr_assert_not(mongoq_worker_stop(w, 100, &error), "the keeper was not blocked");
    cr_assert_eq(error.code, MONGOQ_ERROR_STOPPED);
    cr_assert(mongoq_worker_stop(w, 10000, &error), "%s", error.message);
    wh_unblock(&e, fired);
    for (int i = 0; i < 3; i++) {
        wh_assert_outcome(&c, i, 1, MONGOQ_OUTCOME_ACKED, true);
    }
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

/* stop(timeout) returns false (STOPPED) within timeout + 1 s. */
static void
wh_assert_stop_in_time(mongoq_worker_t *w, int64_t timeout_ms)
{
    bson_error_t error;
    int64_t t0 = mtest_now_ms();
    bool stopped = mongoq_worker_stop(w, timeout_ms, &error);
    int64_t took = mtest_now_ms() - t0;
    cr_assert_not(stopped, "something was still running");
    cr_assert_eq(error.code, MONGOQ_ERROR_STOPPED);
    cr_assert_leq(took, timeout_ms + 1000, "stop took %" PRId64 " ms", took);
}

Test(worker_hardening, stop_returns_in_time_while_a_handler_runs_and_the_keeper_hangs)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t e;
    wh_ctx_t c;
    bson_error_t error;
    wh_open_quiet(&e);
    wh_ctx_init(&c, &e);
    /* A batch of one claims with findAndModify: the first update is the first heartbeat. */
    int64_t fired = wh_block_heartbeat(&e, 4000);
    mongoq_worker_t *w = wh_worker(&c, wh_gated, 1, 20000, 100);
    world_enqueue(e.queue, 0, NULL, NULL);
    cr_assert(mtest_wait_until(wh_entered, &c, 10000), "the handler runs");
    wh_sent_t beat = {e.counter, 1};
    cr_assert(mtest_wait_until(wh_updates_sent, &beat, 5000), "the heartbeat was sent");

    wh_assert_stop_in_time(w, 300); /* a handler runs, the keeper hangs */
    wh_gate_open(&c);
    world_acked_t a = {w, 1};
    cr_assert(mtest_wait_until(world_acked_reached, &a, 10000), "the handler finishes");
    wh_assert_stop_in_time(w, 300); /* the keeper still hangs */
    cr_assert(mongoq_worker_stop(w, 10000, &error), "%s", error.message);
    wh_unblock(&e, fired);
    wh_assert_outcome(&c, 0, 1, MONGOQ_OUTCOME_ACKED, true);
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

/*
 * The worker's hand-back on stop is a retryable write: a connection closed on the hand-back's
 * command, or a NotWritablePrimary (10107) answer as in a failover, is retried, and the
 * messages are ready again at once, not when their leases (60 s here, no reaper) expire.
 * One message goes back with an updateOne, which libmongoc retries; several with an updateMany
 * fenced by the batch's lease token, which the worker sends once more itself.
 *
 * Each case asserts the fault fired once and that the hand-back's command went twice (the first
 * send and its retry), so a hand-back that sent nothing, or another command, fails the test.
 */
#include "world_hardening.h"

#include <criterion/criterion.h>
#include <inttypes.h>

static const char *const FAULTS[] = {"\"closeConnection\": true", "\"errorCode\": 10107"};

typedef struct {
    world_t *env;
    int64_t n;
} hb_ready_t;

/* For mtest_wait_until: n messages are ready with their attempt given back. */
static bool
hb_ready(void *arg)
{
    hb_ready_t *r = arg;
    return world_count(r->env, "{\"status\": \"ready\", \"attempts\": 0}") == r->n;
}

/*
 * A worker of one thread claims a batch of `batch`; its handler holds the first message while
 * stop hands the other batch - 1 back through `fault` on the update command.
 */
static void
hand_back_through_fault(int batch, int fault)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t e;
    wh_ctx_t c;
    bson_error_t error;
    wh_open_quiet(&e);
    wh_ctx_init(&c, &e);
    world_enqueue_n(&e, batch, NULL, NULL);
    /* No heartbeat: the only update after the claim is the hand-back. */
    mongoq_worker_t *w = wh_worker(&c, wh_gated, batch, 60000, -1);
    cr_assert(mtest_wait_until(wh_entered, &c, 10000), "the first handler runs");
    char *data = bson_strdup_printf("\"failCommands\": [\"update\"], %s", FAULTS[fault]);
    int64_t before = world_fail_point(&e, "{\"times\": 1}", data);
    bson_free(data);
    int64_t updates = mtest_counter_get(e.counter, "update");

    cr_assert_not(mongoq_worker_stop(w, 200, &error), "a handler is still running");
    hb_ready_t r = {&e, batch - 1};
    cr_assert(mtest_wait_until(hb_ready, &r, 10000), "%d handed back at once (lease 60 s)",
              batch - 1);
    cr_assert_eq(world_fail_point_off(&e, before), 1, "the fault fired once");
    cr_assert_eq(mtest_counter_get(e.counter, "update") - updates, 2,
                 "the hand-back went twice: the first send and its retry");
    cr_assert_eq(world_count(&e, "{\"lease_token\": {\"$exists\": true}}"), 1,
                 "only the running message is leased");

    wh_gate_open(&c);
    cr_assert(mongoq_worker_stop(w, 10000, &error), "%s", error.message);
    int ran = wh_only_run(&c, batch);
    for (int i = 0; i < batch; i++) {
        wh_assert_outcome(&c, i, 1, i == ran ? MONGOQ_OUTCOME_ACKED : MONGOQ_OUTCOME_HANDED_BACK,
                          true);
    }
    mongoq_worker_destroy(w);
    wh_ctx_destroy(&c);
    world_close(&e);
}

/* One message handed back: updateOne, retried by libmongoc. */
Test(hardening_handback, one_message_connection_closed, .timeout = 60)
{
    hand_back_through_fault(2, 0);
}

Test(hardening_handback, one_message_not_writable_primary, .timeout = 60)
{
    hand_back_through_fault(2, 1);
}

/* Three messages handed back: updateMany by the batch's token, resent by the worker. */
Test(hardening_handback, several_messages_connection_closed, .timeout = 60)
{
    hand_back_through_fault(4, 0);
}

Test(hardening_handback, several_messages_not_writable_primary, .timeout = 60)
{
    hand_back_through_fault(4, 1);
}

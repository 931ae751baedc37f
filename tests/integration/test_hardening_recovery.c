/*
 * Recovery after ambiguous multi-document writes, where two faults meet or a call is repeated:
 *  - claim_many whose updateMany applied but whose reply was lost (the fault proxy's
 *    drop-reply), and whose read-back by token then fails too (failCommand on find, after the
 *    candidates' find): the messages its token leased are handed back by token at once (ready,
 *    attempt given back), not left to their ten-minute lease;
 *  - reap and redrive repeated after MONGOQ_ERROR_UNKNOWN_OUTCOME (a lost reply on their
 *    updateMany): the repeat does what the first left undone and nothing twice (attempts as
 *    they were, redriven history kept, the counts add up).
 * Every test asserts that its faults fired (the proxy's hits, failCommand's count).
 */
#include <criterion/criterion.h>
#include <inttypes.h>

#include "world.h"

#define LONG_LEASE_MS 600000

static mongoq_consumer_t *
consumer_with_lease(world_t *w, int64_t lease_ms)
{
    bson_error_t error;
    mongoq_consumer_opts_t copts = MONGOQ_CONSUMER_OPTS_INIT;
    copts.lease_ms = lease_ms;
    mongoq_consumer_t *c = mongoq_consumer_new(w->queue, &copts, &error);
    cr_assert(c, "%s", error.message);
    return c;
}

/*
 * claim_many of 3 through `lost` lost update replies (1: the resend goes through; 2: the resend
 * is lost too) and a read-back that fails: nothing is returned and the three are ready again.
 */
static void
claim_many_read_back_fails(int32_t lost)
{
    world_skip_sharded("a fault proxy cuts the router's connection, and claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t p;
    bson_error_t error;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.no_reaper = true;
    world_open(&p, &qopts, WORLD_PROXY);
    world_enqueue_n(&p, 3, NULL, NULL);
    mongoq_consumer_t *c = consumer_with_lease(&p, LONG_LEASE_MS);
    int32_t rule = world_proxy_rule(&p, MONGOQ_FAULT_DROP_REPLY, "update", lost);
    /* The candidates' find goes through; the read-back (and libmongoc's retry of it) fails. */
    int64_t before = world_fail_point(&p, "{\"skip\": 1}",
                                      "\"failCommands\": [\"find\"], \"errorCode\": 2");
    mongoq_message_t *msgs[3] = {NULL, NULL, NULL};
    size_t n = 99;
    bool ok = mongoq_consumer_claim_many(c, 3, 0, msgs, &n, &error);
    int64_t fired = world_fail_point_off(&p, before);
    cr_assert_eq(mongoq_faultproxy_rule_hits(p.proxy, rule), lost, "the update's replies were lost");
    cr_assert_geq(fired, 1, "the read-back failed");
    cr_assert_not(ok, "nothing was read back");
    cr_assert_eq(n, 0);
    if (lost == 2) {
        cr_assert_eq(error.code, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", error.message);
    }
    /* At once, with a ten-minute lease and no reaper: handed back by the token. */
    cr_assert_eq(world_count(&p, "{\"status\": \"ready\", \"attempts\": 0, "
                                 "\"lease_token\": {\"$exists\": false}}"), 3,
                 "all three handed back, their attempt given back");
    /* And claimable again, each once. */
    cr_assert(mongoq_consumer_claim_many(c, 3, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 3);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(mongoq_message_attempts(msgs[i]), 1, "first attempt");
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_consumer_destroy(c);
    world_close(&p);
}

Test(hardening_recovery, claim_many_hands_back_by_token_when_the_read_back_fails, .timeout = 60)
{
    claim_many_read_back_fails(1);
}

Test(hardening_recovery, claim_many_hands_back_by_token_after_two_lost_replies_and_a_failed_read,
     .timeout = 60)
{
    claim_many_read_back_fails(2);
}

/* Three messages leased for 1 s, the one of seq 2 on its last attempt; waits until all expired. */
static void
lease_three_to_expiry(world_t *p)
{
    bson_error_t error;
    mongoq_enqueue_opts_t last = MONGOQ_ENQUEUE_OPTS_INIT;
    last.max_attempts = 1;
    world_enqueue(p->queue, 0, NULL, NULL);
    world_enqueue(p->queue, 1, NULL, NULL);
    world_enqueue(p->queue, 2, &last, NULL);
    mongoq_consumer_t *c = consumer_with_lease(p, 1000);
    mongoq_message_t *msgs[3];
    size_t n = 0;
    cr_assert(mongoq_consumer_claim_many(c, 3, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 3);
    int64_t latest = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t at = mongoq_message_lease_expires_at(msgs[i]);
        latest = at > latest ? at : latest;
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_consumer_destroy(c);
    cr_assert(world_wait_server_past(p, latest, 10000), "the leases expired");
}

Test(hardening_recovery, reap_repeated_after_a_lost_reply_reclaims_each_once, .timeout = 60)
{
    world_skip_sharded("a fault proxy cuts the router's connection");
    world_t p;
    bson_error_t error;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.no_reaper = true;
    world_open(&p, &qopts, WORLD_PROXY);
    lease_three_to_expiry(&p);
    int32_t rule = world_proxy_rule(&p, MONGOQ_FAULT_DROP_REPLY, "update", 1);
    int64_t reclaimed = 99;
    cr_assert_not(mongoq_queue_reap(p.queue, &reclaimed, &error), "the reply was lost");
    cr_assert_eq(error.code, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", error.message);
    cr_assert_eq(mongoq_faultproxy_rule_hits(p.proxy, rule), 1);
    /* The first updateMany (expired with attempts left -> ready) was applied; the pass
     * stopped there. */
    int64_t applied = world_count(&p, "{\"status\": \"ready\"}");
    cr_assert_eq(applied, 2, "the lost write was applied");

    cr_assert(mongoq_queue_reap(p.queue, &reclaimed, &error), "%s", error.message);
    cr_assert_eq(reclaimed, 3 - applied, "the repeat reclaims only what the first left");
    cr_assert(mongoq_queue_reap(p.queue, &reclaimed, &error), "%s", error.message);
    cr_assert_eq(reclaimed, 0, "and a third pass nothing");
    cr_assert_eq(world_count(&p, "{\"status\": \"ready\", \"attempts\": 1, "
                                 "\"last_error\": \"lease expired\"}"), 2,
                 "each returned once, the attempt kept");
    cr_assert_eq(world_count(&p, "{\"status\": \"dead\", \"last_error\": \"lease expired\"}"),
                 1, "the one out of attempts buried");
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    cr_assert(mongoq_queue_counters(p.queue, &counters));
    cr_assert_eq(counters.reaped, 3 - applied, "counted: what the passes know they reclaimed");
    world_close(&p);
}

Test(hardening_recovery, redrive_repeated_after_a_lost_reply_moves_each_once, .timeout = 60)
{
    world_skip_sharded("a fault proxy cuts the router's connection");
    world_t p;
    bson_error_t error;
    bson_oid_t ids[3];
    world_open(&p, NULL, WORLD_PROXY);
    world_enqueue_n(&p, 3, NULL, ids);
    mongoq_consumer_t *c = consumer_with_lease(&p, 0);
    for (int i = 0; i < 3; i++) {
        mongoq_message_t *msg = world_claim(c, 0);
        cr_assert(msg);
        cr_assert(mongoq_message_fail(msg, "bad", &error), "%s", error.message);
        mongoq_message_destroy(msg);
    }
    mongoq_consumer_destroy(c);
    cr_assert_eq(world_count(&p, "{\"status\": \"dead\"}"), 3);

    int32_t rule = world_proxy_rule(&p, MONGOQ_FAULT_DROP_REPLY, "update", 1);
    int64_t moved = 99;
    cr_assert_not(mongoq_queue_redrive(p.queue, NULL, &moved, &error), "the reply was lost");
    cr_assert_eq(error.code, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", error.message);
    cr_assert_eq(mongoq_faultproxy_rule_hits(p.proxy, rule), 1);
    cr_assert_eq(world_count(&p, "{\"status\": \"ready\"}"), 3, "the lost write was applied");

    cr_assert(mongoq_queue_redrive(p.queue, NULL, &moved, &error), "%s", error.message);
    cr_assert_eq(moved, 0, "the repeat moves nothing twice");
    cr_assert_eq(world_count(&p, "{\"status\": \"ready\", \"attempts\": 0, "
                                 "\"errors\": {\"$size\": 1}}"), 3,
                 "each redriven once: attempts reset, its history kept");
    /* By id: a repeat after the first moved it says NOT_FOUND, as documented. */
    c = consumer_with_lease(&p, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(msg);
    bson_oid_t id;
    bson_oid_copy(mongoq_message_id(msg), &id);
    cr_assert(mongoq_message_fail(msg, "bad", &error), "%s", error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    rule = world_proxy_rule(&p, MONGOQ_FAULT_DROP_REPLY, "update", 1);
    cr_assert_not(mongoq_queue_redrive(p.queue, &id, &moved, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", error.message);
    cr_assert_eq(mongoq_faultproxy_rule_hits(p.proxy, rule), 1);
    cr_assert_not(mongoq_queue_redrive(p.queue, &id, &moved, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_NOT_FOUND, "%s", error.message);
    cr_assert_eq(world_count(&p, "{\"status\": \"ready\"}"), 3);
    world_close(&p);
}

/*
 * Scenario: faults injected with the failCommand fail point (the same on a real mongod started
 * with enableTestCommands). Fail points are limited to this test's connections by appName.
 *
 * - A connection closed during a claim never strands a message: either the driver's retryable
 *   write returns it, or it is claimable again (at once, or after its lease and a reap).
 * - An ack survives faults it can settle: libmongoc retries a single ack once, and an ack whose
 *   outcome is unknown reads the message back and sends the ack once more if it still holds.
 *   The message is then done, never delivered again.
 * - An ack that fails beyond that leaves the message to be delivered again after its lease
 *   expires and a reap, and it is then completed.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

#define FAULT_LEASE_MS 1000
#define MAX_MSGS 16
/* Commands a claim or an ack might send, whichever way the library builds them. */
#define CLAIM_COMMANDS "[\"findAndModify\", \"update\", \"aggregate\", \"find\"]"
#define ACK_COMMANDS "[\"delete\", \"findAndModify\", \"update\", \"bulkWrite\"]"

static void
setup(world_t *s)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = FAULT_LEASE_MS;
    opts.no_reaper = true; /* reaped by hand; and no background command eats a fail point */
    opts.no_change_stream = true;
    opts.poll_interval_ms = 100;
    world_open(s, &opts, 0);
}

/* ---- claims --------------------------------------------------------------------------------- */

static void
claim_with_closed_connection(int times, bool many)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t s;
    setup(&s);
    int n = many ? 10 : 1;
    world_enqueue_n(&s, n, NULL, NULL);
    mongoq_consumer_t *consumer = world_consumer(&s, NULL, 0);

    char mode[32];
    snprintf(mode, sizeof mode, "{\"times\": %d}", times);
    int64_t before = world_fail_point(
        &s, mode, "\"failCommands\": " CLAIM_COMMANDS ", \"closeConnection\": true");
    bson_error_t error;
    mongoq_message_t *msgs[MAX_MSGS] = {0};
    size_t got = 0;
    bool ok = many ? mongoq_consumer_claim_many(consumer, (size_t)n, 0, msgs, &got, &error)
                   : mongoq_consumer_claim(consumer, 0, &msgs[0], &error);
    if (!many) {
        got = ok && msgs[0] ? 1 : 0;
    }
    cr_assert_eq(world_fail_point_off(&s, before), times, "the fault fired %d times", times);
    /*
     * Once: libmongoc retries the first command (claim_many's find, or the findAndModify) and the
     * call gets everything. Twice: the retry meets the fault too and the call fails; failCommand
     * closes the connection before the command runs, so nothing was claimed and everything is
     * claimable at once (a claim reports UNKNOWN_OUTCOME: from where it stands it cannot know).
     */
    if (times == 1) {
        cr_assert(ok, "%s", error.message);
        cr_assert_eq(got, (size_t)n, "every message claimed through one fault");
    } else {
        cr_assert_not(ok, "two faults in a row fail the call");
        cr_assert_eq(got, 0);
        if (!many) {
            cr_assert_eq(error.code, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", error.message);
        }
    }

    /* What the claim returned is acked now; the rest must come back by themselves. */
    world_drained_t drained = {0};
    for (size_t i = 0; i < got; i++) {
        int64_t seq = world_seq(msgs[i]);
        cr_assert(seq >= 0 && seq < n);
        cr_assert(mongoq_message_ack(msgs[i], &error), "ack: %s", error.message);
        drained.acks[seq]++;
        mongoq_message_destroy(msgs[i]);
    }
    world_drained_t rest = {0};
    world_drain(&s, consumer, n - (int)got, &rest, FAULT_LEASE_MS + 15000);
    mongoq_consumer_destroy(consumer);
    world_assert_empty(&s);
    world_close(&s);
}

Test(scenario_faults, claim_connection_closed_once, .timeout = 60)
{
    claim_with_closed_connection(1, false);
}

Test(scenario_faults, claim_connection_closed_twice, .timeout = 60)
{
    /* The retry fails too: the claim errors out, and the message must still not be lost. */
    claim_with_closed_connection(2, false);
}

Test(scenario_faults, claim_many_connection_closed_once, .timeout = 60)
{
    claim_with_closed_connection(1, true);
}

Test(scenario_faults, claim_many_connection_closed_twice, .timeout = 60)
{
    claim_with_closed_connection(2, true);
}

/* ---- acks ----------------------------------------------------------------------------------- */

/* Claims n messages (all of them, in as many claim_many calls as it takes). */
static size_t
claim_all(mongoq_consumer_t *consumer, int n, mongoq_message_t **msgs)
{
    bson_error_t error;
    size_t got = 0;
    for (int tries = 0; got < (size_t)n && tries < 20; tries++) {
        size_t more = 0;
        cr_assert(
            mongoq_consumer_claim_many(consumer, (size_t)n - got, 5000, msgs + got, &more, &error),
            "claim_many: %s", error.message);
        got += more;
    }
    cr_assert(got == (size_t)n, "claimed %zu of %d", got, n);
    return got;
}

/*
 * Claims n messages, makes the ack (or ack_many) meet `fault` on its first `times` writes, and
 * checks the outcome: with expect_ok the ack succeeds and every message is gone for good (the
 * fault fired: the fail point counts its hits); otherwise the ack fails with UNKNOWN_OUTCOME and
 * every message is delivered again (attempts 2) and completed.
 */
static void
ack_through(const char *fault, bool many, int times, bool expect_ok)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t s;
    setup(&s);
    int n = many ? 5 : 1;
    world_enqueue_n(&s, n, NULL, NULL);
    mongoq_consumer_t *consumer = world_consumer(&s, NULL, 0);
    bson_error_t error;
    mongoq_message_t *msgs[MAX_MSGS] = {0};
    size_t got = claim_all(consumer, n, msgs);

    char *mode = bson_strdup_printf("{\"times\": %d}", times);
    char *data = bson_strdup_printf("\"failCommands\": %s, %s", ACK_COMMANDS, fault);
    int64_t before = world_fail_point(&s, mode, data);
    bson_free(data);
    bson_free(mode);
    bool ok =
        many ? mongoq_message_ack_many(msgs, got, &error) : mongoq_message_ack(msgs[0], &error);
    int64_t fired = world_fail_point_off(&s, before);
    cr_assert_eq(fired, times, "the fault fired %" PRId64 " times, not %d", fired, times);
    for (size_t i = 0; i < got; i++) {
        cr_assert_not(mongoq_message_lease_lost(msgs[i]));
        mongoq_message_destroy(msgs[i]);
    }
    if (expect_ok) {
        cr_assert(ok, "the ack settled the fault: %s", error.message);
    } else {
        cr_assert(!ok, "the ack succeeded through the fault");
        cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
        cr_assert_eq(error.code, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", error.message);
        world_drained_t drained = {0};
        world_drain(&s, consumer, n, &drained, FAULT_LEASE_MS + 15000);
        for (int i = 0; i < n; i++) {
            cr_expect(drained.attempts[i] == 2, "seq %d redelivered with attempts %d", i,
                      drained.attempts[i]);
        }
    }
    mongoq_consumer_destroy(consumer);
    world_assert_empty(&s);
    world_close(&s);
}

/* The driver's retry of the deleteOne. */
Test(scenario_faults, ack_connection_closed_once_is_retried, .timeout = 60)
{
    ack_through("\"closeConnection\": true", false, 1, true);
}

Test(scenario_faults, ack_not_writable_primary_once_is_retried, .timeout = 60)
{
    ack_through("\"errorCode\": 10107", false, 1, true);
}

/* Both the first attempt and the driver's retry fail: the ack reads back and sends again. */
Test(scenario_faults, ack_connection_closed_twice_is_settled, .timeout = 60)
{
    ack_through("\"closeConnection\": true", false, 2, true);
}

Test(scenario_faults, ack_error_91_twice_is_settled, .timeout = 60)
{
    ack_through("\"errorCode\": 91", false, 2, true);
}

/* Four failures (two writes, each retried once): unknown outcome, then redelivery. */
Test(scenario_faults, ack_connection_closed_four_times_redelivers, .timeout = 60)
{
    ack_through("\"closeConnection\": true", false, 4, false);
}

/* ack_many's deleteMany is not retried by the driver; the library settles and resends. */
Test(scenario_faults, ack_many_connection_closed_once_is_settled, .timeout = 60)
{
    ack_through("\"closeConnection\": true", true, 1, true);
}

Test(scenario_faults, ack_many_error_91_once_is_settled, .timeout = 60)
{
    ack_through("\"errorCode\": 91", true, 1, true);
}

Test(scenario_faults, ack_many_connection_closed_twice_redelivers, .timeout = 60)
{
    ack_through("\"closeConnection\": true", true, 2, false);
}

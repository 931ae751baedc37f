/*
 * Every single-message write is a retryable write: a connection closed on the first attempt, or
 * a NotWritablePrimary (10107) answer as in a failover, is retried once by libmongoc (the server
 * answers a retry of an applied write with its first result), and the call succeeds with its
 * effect applied exactly once. The multi-document writes (claim_many, ack_many) recover on their
 * own: claim_many reads back what its token holds, ack_many settles and sends again.
 *
 * Each case asserts the fault fired (failCommand's count moved by one), so a call that sent a
 * different command would fail the test instead of passing it by missing the fault. Retryable
 * writes: https://github.com/mongodb/specifications/blob/master/source/retryable-writes/retryable-writes.md
 * (10107 is a retryable error; mongod 4.4+ labels it RetryableWriteError on a retryable write).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

typedef enum { CALL_ENQUEUE, CALL_CLAIM, CALL_CLAIM_MANY, CALL_RETRY, CALL_FAIL, CALL_EXTEND,
               CALL_ACK, CALL_ACK_KEEP, CALL_ACK_MANY } call_t;

static const char *const FAULTS[] = {"\"closeConnection\": true", "\"errorCode\": 10107"};

/* The command each call sends first. */
static const char *
command_of(call_t call)
{
    switch (call) {
    case CALL_ENQUEUE: return "insert";
    case CALL_CLAIM: case CALL_EXTEND: return "findAndModify";
    case CALL_CLAIM_MANY: case CALL_RETRY: case CALL_FAIL: case CALL_ACK_KEEP: return "update";
    default: return "delete";
    }
}

static void
open_world(world_t *s, call_t call)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true;
    opts.ack_mode = call == CALL_ACK_KEEP ? MONGOQ_ACK_KEEP : MONGOQ_ACK_DELETE;
    world_open(s, &opts, 0);
}

/* Arms the fault on the call's command for one hit; returns the count to compare with. */
static int64_t
arm(world_t *s, call_t call, int fault)
{
    char *data = bson_strdup_printf("\"failCommands\": [\"%s\"], %s", command_of(call),
                                    FAULTS[fault]);
    int64_t before = world_fail_point(s, "{\"times\": 1}", data);
    bson_free(data);
    return before;
}

/* Runs `call` through the fault and checks its effect was applied exactly once. */
static void
through_fault(call_t call, int fault)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t s;
    bson_error_t error;
    open_world(&s, call);
    if (call != CALL_ENQUEUE) {
        world_enqueue_n(&s, 2, NULL, NULL);
    }
    mongoq_consumer_t *c = world_consumer(&s, NULL, 0);
    mongoq_message_t *msgs[2] = {NULL, NULL};
    size_t n = 0;
    if (call >= CALL_RETRY) {
        cr_assert(mongoq_consumer_claim_many(c, 2, 0, msgs, &n, &error), "%s", error.message);
        cr_assert_eq(n, 2);
    }
    int64_t before = arm(&s, call, fault);
    bool ok = false;
    bson_t *payload = NULL;
    switch (call) {
    case CALL_ENQUEUE:
        payload = BCON_NEW("seq", BCON_INT64(7));
        ok = mongoq_enqueue(s.queue, payload, NULL, NULL, &error);
        break;
    case CALL_CLAIM:
        ok = mongoq_consumer_claim(c, 0, &msgs[0], &error);
        n = msgs[0] ? 1 : 0;
        break;
    case CALL_CLAIM_MANY:
        ok = mongoq_consumer_claim_many(c, 2, 0, msgs, &n, &error);
        break;
    case CALL_RETRY: ok = mongoq_message_retry(msgs[0], 0, "again", &error); break;
    case CALL_FAIL: ok = mongoq_message_fail(msgs[0], "no", &error); break;
    case CALL_EXTEND: ok = mongoq_message_extend(msgs[0], 60000, &error); break;
    case CALL_ACK: case CALL_ACK_KEEP: ok = mongoq_message_ack(msgs[0], &error); break;
    case CALL_ACK_MANY: ok = mongoq_message_ack_many(msgs, 2, &error); break;
    }
    cr_assert_eq(world_fail_point_off(&s, before), 1, "the fault fired once");
    cr_assert(ok, "call %d through fault %s: %s", (int)call, FAULTS[fault], error.message);
    switch (call) {
    case CALL_ENQUEUE:
        cr_assert_eq(world_count(&s, "{}"), 1, "stored once");
        break;
    case CALL_CLAIM:
        cr_assert_eq(n, 1);
        cr_assert_eq(mongoq_message_attempts(msgs[0]), 1, "claimed once: no attempt burned");
        cr_assert_eq(world_count(&s, "{\"status\": \"processing\"}"), 1);
        break;
    case CALL_CLAIM_MANY:
        cr_assert_eq(n, 2, "what the lost reply claimed is read back");
        cr_assert_eq(world_count(&s, "{\"status\": \"processing\", \"attempts\": 1}"), 2);
        break;
    case CALL_RETRY:
        cr_assert_eq(world_count(&s, "{\"status\": \"ready\", \"last_error\": \"again\"}"), 1);
        cr_assert_eq(world_count(&s, "{\"errors\": {\"$size\": 1}}"), 1, "one history entry");
        break;
    case CALL_FAIL:
        cr_assert_eq(world_count(&s, "{\"status\": \"dead\"}"), 1);
        break;
    case CALL_EXTEND: cr_assert_not(mongoq_message_lease_lost(msgs[0])); break;
    case CALL_ACK:
        cr_assert_eq(world_count(&s, "{}"), 1);
        break;
    case CALL_ACK_KEEP:
        cr_assert_eq(world_count(&s, "{\"status\": \"done\"}"), 1);
        break;
    case CALL_ACK_MANY:
        cr_assert_eq(world_count(&s, "{}"), 0);
        break;
    }
    bson_destroy(payload);
    for (size_t i = 0; i < 2; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_consumer_destroy(c);
    world_close(&s);
}

#define WRITE_TESTS(name, call)                                                                    \
    Test(hardening_writes, name##_connection_closed, .timeout = 60)                                \
    {                                                                                              \
        through_fault(call, 0);                                                                    \
    }                                                                                              \
    Test(hardening_writes, name##_not_writable_primary, .timeout = 60)                             \
    {                                                                                              \
        through_fault(call, 1);                                                                    \
    }

WRITE_TESTS(enqueue, CALL_ENQUEUE)
WRITE_TESTS(claim, CALL_CLAIM)
WRITE_TESTS(claim_many, CALL_CLAIM_MANY)
WRITE_TESTS(retry, CALL_RETRY)
WRITE_TESTS(fail, CALL_FAIL)
WRITE_TESTS(extend, CALL_EXTEND)
WRITE_TESTS(ack, CALL_ACK)
WRITE_TESTS(ack_keep, CALL_ACK_KEEP)
WRITE_TESTS(ack_many, CALL_ACK_MANY)

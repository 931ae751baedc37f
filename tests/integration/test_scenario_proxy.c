/*
 * Faults failCommand cannot express, injected by the loopback fault proxy
 * (tests/tools/faultproxy) between the library and the server:
 *  - a reply lost after the server applied the write (the driver's one retry lost too): the
 *    producer's call reports MONGOQ_ERROR_UNKNOWN_OUTCOME, and a retry with the same caller ids
 *    stores each message once; an ack settles by reading back; claim_many returns what its
 *    interrupted updateMany leased instead of leaving it to lease expiry;
 *  - a server that hangs or refuses connections: mongoq_queue_destroy returns within its bound.
 * Every test asserts that its rule fired (the proxy counts hits).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

static void
assert_unknown(const bson_error_t *error)
{
    cr_assert_eq(error->domain, MONGOQ_ERROR_DOMAIN, "%s", error->message);
    cr_assert_eq(error->code, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", error->message);
}

/* Both the insert and libmongoc's retry of it lose their replies: the outcome is unknown. */
Test(scenario_proxy, enqueue_retried_with_its_id_after_a_lost_reply_is_stored_once, .timeout = 60)
{
    world_t p;
    world_open(&p, NULL, WORLD_PROXY);
    bson_t *payload = BCON_NEW("seq", BCON_INT64(1));
    bson_error_t error;
    bson_oid_t id;
    bson_oid_init(&id, NULL);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.caller_ids = true;
    int32_t rule = world_proxy_rule(&p, MONGOQ_FAULT_DROP_REPLY, "insert", 2);
    cr_assert_not(mongoq_enqueue(p.queue, payload, &opts, &id, &error));
    assert_unknown(&error);
    cr_assert_eq(mongoq_faultproxy_rule_hits(p.proxy, rule), 2, "both replies were lost");
    cr_assert_eq(world_count(&p, "{}"), 1, "the server applied the insert");
    /* The producer's retry with the same id: recognised as already queued. */
    cr_assert(mongoq_enqueue(p.queue, payload, &opts, &id, &error), "%s", error.message);
    cr_assert_eq(world_count(&p, "{}"), 1, "stored once");
    /* The same id with another payload is not the same message. */
    bson_t *other = BCON_NEW("seq", BCON_INT64(2));
    cr_assert_not(mongoq_enqueue(p.queue, other, &opts, &id, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_DUPLICATE, "%s", error.message);
    bson_destroy(other);
    bson_destroy(payload);
    world_close(&p);
}

Test(scenario_proxy, enqueue_many_retried_with_its_ids_after_a_lost_reply_stores_each_once,
     .timeout = 60)
{
    world_t p;
    world_open(&p, NULL, WORLD_PROXY);
    bson_t *payloads[4];
    bson_oid_t ids[4];
    for (int i = 0; i < 4; i++) {
        payloads[i] = BCON_NEW("seq", BCON_INT64(i));
        bson_oid_init(&ids[i], NULL);
    }
    bson_error_t error;
    size_t stored = 99;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.caller_ids = true;
    int32_t rule = world_proxy_rule(&p, MONGOQ_FAULT_DROP_REPLY, "insert", 2);
    cr_assert_not(mongoq_enqueue_many(p.queue, (const bson_t *const *)payloads, 4, &opts, ids,
                                      &stored, &error));
    assert_unknown(&error);
    cr_assert_eq(stored, 0, "unknown: no count is claimed");
    cr_assert_geq(mongoq_faultproxy_rule_hits(p.proxy, rule), 1);
    cr_assert(mongoq_enqueue_many(p.queue, (const bson_t *const *)payloads, 4, &opts, ids, &stored,
                                  &error),
              "%s", error.message);
    cr_assert_eq(stored, 4);
    cr_assert_eq(world_count(&p, "{}"), 4, "each stored once");
    /* The same ids with one payload changed: that id holds another message, not this one. */
    bson_destroy(payloads[2]);
    payloads[2] = BCON_NEW("seq", BCON_INT64(99));
    cr_assert_not(mongoq_enqueue_many(p.queue, (const bson_t *const *)payloads, 4, &opts, ids,
                                      &stored, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_DUPLICATE, "%s", error.message);
    cr_assert_eq(world_count(&p, "{}"), 4);
    for (int i = 0; i < 4; i++) {
        bson_destroy(payloads[i]);
    }
    world_close(&p);
}

/* claim_many's updateMany applied, its reply lost: the messages come back to the caller. */
Test(scenario_proxy, claim_many_returns_what_its_interrupted_update_leased, .timeout = 60)
{
    world_skip_sharded("a fault proxy cuts the router's connection, and claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t p;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.no_reaper = true;
    world_open(&p, &qopts, WORLD_PROXY);
    bson_error_t error;
    world_enqueue_n(&p, 3, NULL, NULL);
    mongoq_consumer_opts_t copts = MONGOQ_CONSUMER_OPTS_INIT;
    copts.lease_ms = 600000; /* a lease that would strand them for ten minutes */
    mongoq_consumer_t *c = mongoq_consumer_new(p.queue, &copts, &error);
    int32_t rule = world_proxy_rule(&p, MONGOQ_FAULT_DROP_REPLY, "update", 1);
    mongoq_message_t *msgs[3];
    size_t n = 0;
    cr_assert(mongoq_consumer_claim_many(c, 3, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(mongoq_faultproxy_rule_hits(p.proxy, rule), 1);
    cr_assert_eq(n, 3, "all three leased by the lost update are returned");
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(mongoq_message_attempts(msgs[i]), 1, "claimed once");
        cr_assert(mongoq_message_ack(msgs[i], &error), "%s", error.message);
        mongoq_message_destroy(msgs[i]);
    }
    cr_assert_eq(world_count(&p, "{}"), 0);
    mongoq_consumer_destroy(c);
    world_close(&p);
}

/* The ack applied, both replies lost: the ack reads back, finds it gone, and says so. */
Test(scenario_proxy, an_ack_whose_replies_are_lost_is_settled, .timeout = 60)
{
    world_t p;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.ack_mode = MONGOQ_ACK_KEEP;
    world_open(&p, &qopts, WORLD_PROXY);
    bson_error_t error;
    world_enqueue(p.queue, 1, NULL, NULL);
    mongoq_consumer_t *c = mongoq_consumer_new(p.queue, NULL, &error);
    mongoq_message_t *msg = NULL;
    cr_assert(mongoq_consumer_claim(c, 0, &msg, &error) && msg, "%s", error.message);
    int32_t rule = world_proxy_rule(&p, MONGOQ_FAULT_DROP_REPLY, "update", 2);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    cr_assert_eq(mongoq_faultproxy_rule_hits(p.proxy, rule), 2);
    cr_assert_not(mongoq_message_lease_lost(msg));
    cr_assert_eq(world_count(&p, "{\"status\": \"done\"}"), 1);
    /* A repeat (a caller unsure of the first) is recognised too. */
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&p);
}

/* Starts the queue's background threads (waker, reaper) with one claim that waits briefly. */
static void
start_background(world_t *p)
{
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(p->queue, NULL, &error);
    mongoq_message_t *msg = NULL;
    cr_assert(mongoq_consumer_claim(c, 300, &msg, &error), "%s", error.message);
    cr_assert_null(msg);
    mongoq_consumer_destroy(c);
}

static void
destroy_within_bound(world_t *p)
{
    int64_t start = mtest_now_ms();
    mongoq_queue_destroy(p->queue);
    int64_t took = mtest_now_ms() - start;
    p->queue = NULL;
    cr_log_info("mongoq_queue_destroy took %" PRId64 " ms", took);
    cr_assert_lt(took, MONGOQ_QUEUE_DESTROY_BOUND_MS, "destroy took %" PRId64 " ms", took);
}

/* Adds a rule that holds every request for commands until cleared; returns its id. */
static int32_t
hang_rule(world_t *p, const char *commands)
{
    mongoq_fault_rule_t rule = MONGOQ_FAULT_RULE_INIT;
    rule.kind = MONGOQ_FAULT_HANG;
    rule.commands = commands;
    rule.times = 1000;
    bson_error_t error;
    int32_t id = mongoq_faultproxy_add_rule(p->proxy, &rule, &error);
    cr_assert(id > 0, "%s", error.message);
    return id;
}

typedef struct {
    world_t *p;
    int32_t rule;
} proxy_hang_t;

static bool
proxy_hang_hit(void *arg)
{
    proxy_hang_t *h = arg;
    return mongoq_faultproxy_rule_hits(h->p->proxy, h->rule) > 0;
}

Test(scenario_proxy, destroy_is_bounded_while_every_socket_hangs, .timeout = 60)
{
    world_t p;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.lease_ms = 400; /* the reaper runs every 200 ms */
    world_open(&p, &qopts, WORLD_PROXY);
    start_background(&p);
    /* The waker's getMore is held first, then every other command: caught while renewing its
     * connection instead, the waker's chain of timeouts is another (longer) one, and which one a
     * single "*" rule met would depend on timing. */
    proxy_hang_t getmore = {&p, hang_rule(&p, "getMore")};
    cr_assert(mtest_wait_until(proxy_hang_hit, &getmore, 10000), "the waker's getMore hangs");
    proxy_hang_t every = {&p, hang_rule(&p, "*")};
    cr_assert(mtest_wait_until(proxy_hang_hit, &every, 10000), "a background call hangs");
    destroy_within_bound(&p);
    world_close(&p);
}

Test(scenario_proxy, destroy_is_bounded_while_the_server_is_unreachable, .timeout = 60)
{
    world_t p;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.lease_ms = 400;
    world_open(&p, &qopts, WORLD_PROXY);
    start_background(&p);
    bson_error_t error;
    cr_assert(mongoq_faultproxy_partition(p.proxy, MONGOQ_PARTITION_REFUSE, &error), "%s",
              error.message);
    destroy_within_bound(&p);
    world_close(&p);
}

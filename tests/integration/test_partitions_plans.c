/*
 * Plans of a partitioned queue (P = 4), as test_plans.c does for one partition: every command
 * an operation sends is explained with executionStats while the queue holds a crowd of other
 * messages in every partition, and the keys and documents examined stay within bounds that do
 * not grow with the crowd. A claim aims at one partition and seeks as it does unpartitioned; a
 * command over every partition names them with $in and costs at most a seek or two per
 * partition; counts read no document.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

#define P 4
#define CROWD 5000 /* messages of each other kind in each partition */
#define DUE 40

TestSuite(partition_plans, .timeout = 300);

/* The documents of one kind crowd_insert writes. */
typedef struct {
    const char *status;
    int32_t priority;
    int64_t run_at, now;
} kind_t;

/* Message i of kind *ctx, in partition i % P. */
static void
crowd_doc(bson_t *doc, int64_t i, void *ctx)
{
    const kind_t *k = ctx;
    bson_oid_t id, token;
    bson_oid_init(&id, NULL);
    bson_oid_init(&token, NULL);
    BCON_APPEND(doc, "_id", BCON_OID(&id), "partition", BCON_INT32((int32_t)(i % P)), "payload",
                "{", "seq", BCON_INT64(i), "}", "status", BCON_UTF8(k->status), "priority",
                BCON_INT32(k->priority), "run_at", BCON_DATE_TIME(k->run_at), "attempts",
                BCON_INT32(1), "max_attempts", BCON_INT32(5), "enqueued_at",
                BCON_DATE_TIME(k->now), "updated_at", BCON_DATE_TIME(k->now));
    if (strcmp(k->status, "processing") == 0) {
        BSON_APPEND_OID(doc, "lease_token", &token);
        BSON_APPEND_DATE_TIME(doc, "lease_expires_at", k->now + 86400000);
    }
}

/* CROWD documents of one kind in each partition, inserted straight to the server. */
static void
crowd_insert(world_t *w, const char *status, int32_t priority, int64_t run_at)
{
    kind_t k = {status, priority, run_at, world_server_now(w)};
    world_insert_many(w, P * CROWD, crowd_doc, &k);
}

static void
plans_open(world_t *w)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.partitions = P;
    opts.no_reaper = true;
    world_open(w, &opts, WORLD_COUNTER);
    int64_t now = world_server_now(w);
    crowd_insert(w, "ready", 5, now + 86400000); /* delayed, ahead in priority */
    crowd_insert(w, "dead", 0, now - 60000);
    crowd_insert(w, "processing", 0, now - 60000);
    world_enqueue_n(w, DUE, NULL, NULL);
    mtest_counter_keep_commands(w->counter);
}

#define CLAIM_KEYS(batch) (2 * 2 + (batch) + 2)

Test(partition_plans, claims_and_message_writes_stay_bounded)
{
    world_t w;
    bson_error_t error;
    plans_open(&w);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mtest_counter_reset(w.counter);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(msg, "a due message past %d delayed ones in its partition", CROWD);
    cr_assert_geq(world_assert_sent_within(&w, "claim", CLAIM_KEYS(1), 2), 1);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    cr_assert_eq(world_assert_sent_within(&w, "ack", 1, 1), 1);
    mongoq_message_destroy(msg);

    mongoq_message_t *batch[5];
    size_t got = 0;
    cr_assert(mongoq_consumer_claim_many(c, 5, 0, batch, &got, &error), "%s", error.message);
    cr_assert_gt(got, 0);
    cr_assert_geq(world_assert_sent_within(&w, "claim_many(5)", CLAIM_KEYS(5), 5 + 1), 3);
    cr_assert(mongoq_message_ack_many(batch, got, &error), "%s", error.message);
    cr_assert_geq(world_assert_sent_within(&w, "ack_many(5)", 2 * 5, 2 * 5), 1);
    for (size_t i = 0; i < got; i++) {
        mongoq_message_destroy(batch[i]);
    }
    msg = world_claim(c, 0);
    mtest_counter_reset(w.counter);
    cr_assert(mongoq_message_retry(msg, 0, "again", &error), "%s", error.message);
    cr_assert_geq(world_assert_sent_within(&w, "retry", 1, 1), 1);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

Test(partition_plans, commands_over_every_partition_seek_each)
{
    world_t w;
    bson_error_t error;
    plans_open(&w);
    mtest_counter_reset(w.counter);
    int64_t reaped = -1;
    cr_assert(mongoq_queue_reap(w.queue, &reaped, &error), "%s", error.message);
    cr_assert_eq(reaped, 0);
    cr_assert_eq(world_assert_sent_within(&w, "reap", 2 * P + 2, 1), 2);

    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(w.queue, &stats, &error), "%s", error.message);
    cr_assert_eq(stats.ready, P * CROWD + DUE);
    cr_assert_eq(stats.dead, P * CROWD);
    cr_assert_eq(stats.processing, P * CROWD);
    cr_assert_leq(stats.next_run_at_ms, world_server_now(&w), "the earliest run_at is a due one");
    /* Counts read index keys only; the earliest run_at is a seek per partition, merged. */
    cr_assert_eq(world_assert_sent_within(&w, "stats", P * CROWD + DUE + 2 * P, 0), 6);

    int64_t moved = 0;
    cr_assert(mongoq_queue_redrive(w.queue, NULL, &moved, &error), "%s", error.message);
    cr_assert_eq(moved, P * CROWD);
    cr_assert_eq(world_assert_sent_within(&w, "redrive all (none left)", 2 * P + 2, 0), 1);
    int64_t deleted = 0;
    cr_assert(mongoq_queue_purge(w.queue, "dead", &deleted, &error), "%s", error.message);
    cr_assert_eq(deleted, 0);
    cr_assert_eq(world_assert_sent_within(&w, "purge dead (none left)", 2 * P + 2, 0), 1);
    world_close(&w);
}

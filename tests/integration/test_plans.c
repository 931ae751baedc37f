/*
 * Plans, not times: every command an operation sends is run again through explain with
 * executionStats, and the keys and documents it examined must stay within a small bound while
 * the queue also holds PLAN_N messages of each other kind (delayed ahead of the due ones at a
 * higher priority, dead, done, processing under live leases). The commands are the library's
 * own, captured with libmongoc's command monitoring; explain's figures are mongod's
 * (https://www.mongodb.com/docs/manual/reference/explain-results/: executionStats.
 * totalKeysExamined, totalDocsExamined), so these tests are deterministic and run unchanged
 * against mongod.
 *
 * Bounds: with P distinct priorities among ready messages, a claim's index scan looks at the
 * due keys it returns plus at most two keys per priority (the one past the run_at bound that
 * makes the scan seek, and the one it lands on): 2P + batch + 2 keys. A write by _id looks at
 * one key per message. Counts read keys only (COUNT_SCAN): no document.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

#define PLAN_N 100000   /* messages of each other kind */
#define PLAN_DUE 40     /* due messages at priority 0 */
#define PLAN_PRIORITIES 2 /* 0 (the due ones) and 5 (the delayed ones) */
#define PLAN_MAX_CMDS 16 /* the commands of one stats call, and room to spare */

TestSuite(plans, .timeout = 300);

/* ---- the crowd ------------------------------------------------------------------------------ */

/* The documents of one kind crowd_insert writes. */
typedef struct {
    const char *status;
    int32_t priority;
    int64_t run_at, now;
} kind_t;

/* Message seq of kind *ctx in the shape mongoq writes (src/fields.h, src/document.c). */
static void
crowd_doc(bson_t *doc, int64_t seq, void *ctx)
{
    const kind_t *k = ctx;
    const char *status = k->status;
    int64_t now = k->now;
    bson_t payload;
    bson_oid_t id;
    bson_oid_init(&id, NULL);
    BSON_APPEND_OID(doc, "_id", &id);
    BSON_APPEND_DOCUMENT_BEGIN(doc, "payload", &payload);
    BSON_APPEND_INT64(&payload, "seq", seq);
    bson_append_document_end(doc, &payload);
    BSON_APPEND_UTF8(doc, "status", status);
    BSON_APPEND_INT32(doc, "priority", k->priority);
    BSON_APPEND_DATE_TIME(doc, "run_at", k->run_at);
    BSON_APPEND_INT32(doc, "attempts", strcmp(status, "ready") == 0 ? 0 : 1);
    BSON_APPEND_INT32(doc, "max_attempts", strcmp(status, "dead") == 0 ? 1 : 5);
    BSON_APPEND_DATE_TIME(doc, "enqueued_at", now);
    BSON_APPEND_DATE_TIME(doc, "updated_at", now);
    if (strcmp(status, "processing") == 0 || strcmp(status, "done") == 0) {
        bson_oid_t token;
        bson_oid_init(&token, NULL);
        BSON_APPEND_OID(doc, "lease_token", &token);
        BSON_APPEND_UTF8(doc, "claimed_by", "crowd");
    }
    if (strcmp(status, "processing") == 0) {
        BSON_APPEND_DATE_TIME(doc, "lease_expires_at", now + 86400000);
    } else if (strcmp(status, "done") == 0) {
        BSON_APPEND_DATE_TIME(doc, "done_at", now);
    } else if (strcmp(status, "dead") == 0) {
        BSON_APPEND_UTF8(doc, "last_error", "crowd");
    }
}

/* n documents of one kind, inserted straight to the server. */
static void
crowd_insert(world_t *w, int64_t n, const char *status, int32_t priority, int64_t run_at)
{
    kind_t k = {status, priority, run_at, world_server_now(w)};
    world_insert_many(w, n, crowd_doc, &k);
}

/* The world with a KEEP queue (done messages stay), its indexes, and the crowd around
 * PLAN_DUE due messages enqueued through the library. */
static void
plans_open(world_t *w)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.ack_mode = MONGOQ_ACK_KEEP;
    opts.no_reaper = true;
    world_open(w, &opts, WORLD_COUNTER);
    int64_t now = world_server_now(w);
    crowd_insert(w, PLAN_N, "ready", 5, now + 86400000); /* delayed, ahead in priority */
    crowd_insert(w, PLAN_N, "dead", 0, now - 60000);
    crowd_insert(w, PLAN_N, "done", 0, now - 60000);
    crowd_insert(w, PLAN_N, "processing", 0, now - 60000);
    world_enqueue_n(w, PLAN_DUE, NULL, NULL);
    mtest_counter_keep_commands(w->counter);
}

#define CLAIM_KEYS(batch) (2 * PLAN_PRIORITIES + (batch) + 2)

/* ---- the operations ------------------------------------------------------------------------- */

Test(plans, claims_acks_and_message_writes_stay_bounded)
{
    world_t w;
    bson_error_t error;
    plans_open(&w);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mtest_counter_reset(w.counter);

    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(msg, "a due message is claimed past %d delayed ones", PLAN_N);
    cr_assert_eq(mongoq_message_priority(msg), 0);
    cr_assert_geq(world_assert_sent_within(&w, "claim", CLAIM_KEYS(1), 2), 1);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    cr_assert_eq(world_assert_sent_within(&w, "ack", 1, 1), 1);
    mongoq_message_destroy(msg);

    mongoq_message_t *batch[10];
    size_t got = 0;
    cr_assert(mongoq_consumer_claim_many(c, 10, 0, batch, &got, &error), "%s", error.message);
    cr_assert_eq(got, 10);
    /* find the candidates, claim them (update by _id), read them back by _id */
    cr_assert_geq(world_assert_sent_within(&w, "claim_many(10)", CLAIM_KEYS(10), 10 + 1), 3);
    cr_assert(mongoq_message_ack_many(batch, got, &error), "%s", error.message);
    cr_assert_geq(world_assert_sent_within(&w, "ack_many(10)", 2 * 10, 2 * 10), 1);
    for (size_t i = 0; i < got; i++) {
        mongoq_message_destroy(batch[i]);
    }

    msg = world_claim(c, 0);
    mtest_counter_reset(w.counter);
    cr_assert(mongoq_message_extend(msg, 60000, &error), "%s", error.message);
    cr_assert_geq(world_assert_sent_within(&w, "extend", 1, 1), 1);
    cr_assert(mongoq_message_retry(msg, 0, "again", &error), "%s", error.message);
    cr_assert_geq(world_assert_sent_within(&w, "retry", 1, 1), 1);
    mongoq_message_destroy(msg);
    msg = world_claim(c, 0);
    mtest_counter_reset(w.counter);
    cr_assert(mongoq_message_fail(msg, "broken", &error), "%s", error.message);
    cr_assert_geq(world_assert_sent_within(&w, "fail", 1, 1), 1);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

Test(plans, reap_redrive_purge_and_stats_stay_bounded)
{
    world_t w;
    bson_error_t error;
    plans_open(&w);
    mtest_counter_reset(w.counter);

    /* PLAN_N live leases, none expired: the lease index bounds both updates to nothing. */
    int64_t reaped = -1;
    cr_assert(mongoq_queue_reap(w.queue, &reaped, &error), "%s", error.message);
    cr_assert_eq(reaped, 0);
    cr_assert_eq(world_assert_sent_within(&w, "reap", 2, 1), 2);

    /* One dead message among PLAN_N, by _id. */
    bson_t doc;
    bson_t *dead = BCON_NEW("status", BCON_UTF8("dead")), *one = BCON_NEW("limit", BCON_INT64(1));
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(w.coll, dead, one, NULL);
    const bson_t *found;
    cr_assert(mongoc_cursor_next(cursor, &found));
    bson_copy_to(found, &doc);
    mongoc_cursor_destroy(cursor);
    bson_destroy(dead);
    bson_destroy(one);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &doc, "_id"));
    int64_t moved = 0;
    cr_assert(mongoq_queue_redrive(w.queue, bson_iter_oid(&it), &moved, &error), "%s",
              error.message);
    cr_assert_eq(moved, 1);
    cr_assert_eq(world_assert_sent_within(&w, "redrive one", 1, 1), 1);
    bson_destroy(&doc);

    /* Counts from the index alone; the earliest run_at from one covered seek. */
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(w.queue, &stats, &error), "%s", error.message);
    cr_assert_eq(stats.ready, PLAN_N + PLAN_DUE + 1);
    /* "Delayed" is decided on this process's estimate of the server's clock, which lags it by
     * up to a round trip: the message redriven just now (run_at = $$NOW) or a due one may still
     * look delayed; the crowd is always delayed. */
    cr_assert_geq(stats.delayed, PLAN_N);
    cr_assert_leq(stats.delayed, PLAN_N + PLAN_DUE + 1);
    cr_assert_eq(stats.dead, PLAN_N - 1);
    cr_assert_eq(stats.done, PLAN_N);
    cr_assert_eq(stats.processing, PLAN_N);
    cr_assert_geq(stats.oldest_ready_age_ms, 0, "due messages wait");
    cr_assert_leq(stats.next_run_at_ms, world_server_now(&w), "the earliest run_at is a due one");
    bson_t *cmds[PLAN_MAX_CMDS];
    size_t n = mtest_counter_commands(w.counter, NULL, cmds, PLAN_MAX_CMDS);
    int counts = 0, seeks = 0, controls = 0;
    for (size_t i = 0; i < n; i++) {
        world_cost_t cost = world_explain(&w, cmds[i]);
        if (world_is_control_read(cmds[i])) {
            /* the pause state: the control document by _id */
            cr_assert_leq(cost.keys, 1);
            cr_assert_leq(cost.docs, 1);
            controls++;
            bson_destroy(cmds[i]);
            continue;
        }
        cr_assert_eq(cost.docs, 0, "stats: %s read %lld documents", cost.name, (long long)cost.docs);
        if (strcmp(cost.name, "count") == 0) {
            counts++;
        } else {
            cr_assert_str_eq(cost.name, "find");
            cr_assert_leq(cost.keys, 2, "the earliest run_at is one seek: %lld keys",
                          (long long)cost.keys);
            seeks++;
        }
        bson_destroy(cmds[i]);
    }
    cr_assert_eq(counts, 5);
    cr_assert_eq(seeks, 1);
    cr_assert_eq(controls, 1);
    mtest_counter_reset(w.counter);

    /* Purging the dead looks at nothing else (explained after the purge: no dead key left). */
    int64_t deleted = 0;
    cr_assert(mongoq_queue_purge(w.queue, "dead", &deleted, &error), "%s", error.message);
    cr_assert_eq(deleted, PLAN_N - 1);
    cr_assert_eq(world_assert_sent_within(&w, "purge dead", 1, 0), 1);
    world_close(&w);
}

/* ---- migration ------------------------------------------------------------------------------ */

/* Whether the index `name` exists with keys `want` (destroyed here). */
static bool
has_index(world_t *w, const char *name, bson_t *want)
{
    mongoc_cursor_t *cursor = mongoc_collection_find_indexes_with_opts(w->coll, NULL);
    const bson_t *ix;
    bool found = false;
    while (mongoc_cursor_next(cursor, &ix)) {
        bson_iter_t it, k;
        if (bson_iter_init_find(&it, ix, "name") && strcmp(bson_iter_utf8(&it, NULL), name) == 0 &&
            bson_iter_init_find(&k, ix, "key") && BSON_ITER_HOLDS_DOCUMENT(&k)) {
            uint32_t len;
            const uint8_t *data;
            bson_t key;
            bson_iter_document(&k, &len, &data);
            bson_init_static(&key, data, len);
            found = bson_equal(&key, want);
        }
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(want);
    return found;
}

static bson_t *
due_keys(void)
{
    return BCON_NEW("status", BCON_INT32(1), "run_at", BCON_INT32(1));
}

/* A queue written before the due index existed gets it from ensure_indexes, messages intact. */
Test(plans, ensure_indexes_migrates_an_older_queue)
{
    world_t w;
    bson_error_t error;
    world_open(&w, NULL, 0);
    world_enqueue_n(&w, 50, NULL, NULL);
    cr_assert(mongoc_collection_drop_index(w.coll, "mongoq_due", &error), "%s", error.message);
    cr_assert_not(has_index(&w, "mongoq_due", due_keys()));
    cr_assert(mongoq_queue_ensure_indexes(w.queue, &error), "%s", error.message);
    cr_assert(has_index(&w, "mongoq_due", due_keys()));
    cr_assert(has_index(&w, "mongoq_claim",
                        BCON_NEW("status", BCON_INT32(1), "priority", BCON_INT32(-1), "run_at",
                                 BCON_INT32(1), "_id", BCON_INT32(1))));
    cr_assert(mongoq_queue_ensure_indexes(w.queue, &error), "idempotent: %s", error.message);
    /* Every message is still there, once, and claimable. */
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    bool seen[50] = {false};
    int claimed = 0;
    mongoq_message_t *batch[64];
    size_t got = 0;
    cr_assert(mongoq_consumer_claim_many(c, 64, 0, batch, &got, &error), "%s", error.message);
    for (size_t i = 0; i < got; i++) {
        int64_t seq = world_seq(batch[i]);
        cr_assert(seq >= 0 && seq < 50 && !seen[seq], "seq %lld", (long long)seq);
        seen[seq] = true;
        claimed++;
        mongoq_message_destroy(batch[i]);
    }
    cr_assert_eq(claimed, 50);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/*
 * Plans of a queue with groups, not times (as test_plans.c): 10,000 busy FIFO groups, each with
 * a message in flight under a live lease and one waiting behind it, must not slow anyone else.
 * Every command an operation sends is run again through explain with executionStats
 * (https://www.mongodb.com/docs/manual/reference/explain-results/: totalKeysExamined,
 * totalDocsExamined) and must stay within a small bound whatever the number of groups: a claim
 * sees only admitted (ready) messages, never the waiting ones; a grouped ack's transaction
 * writes by _id and admits the next message with one seek on the group index; a grouped
 * enqueue updates its group's document by _id; the reaper and a page of the group list stay
 * bounded too.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

#define BUSY_GROUPS 10000

TestSuite(groups_plans, .timeout = 300);

static void
append_message(mongoc_bulk_operation_t *bulk, const char *group, int64_t seq, const char *status,
               int64_t now)
{
    bson_oid_t id, token;
    bson_oid_init(&id, NULL);
    bson_oid_init(&token, NULL);
    bson_t *doc =
        BCON_NEW("_id", BCON_OID(&id), "payload", "{", "seq", BCON_INT64(seq), "}", "status",
                 BCON_UTF8(status), "priority", BCON_INT32(0), "run_at",
                 BCON_DATE_TIME(now - 60000), "attempts", BCON_INT32(1), "max_attempts",
                 BCON_INT32(5), "enqueued_at", BCON_DATE_TIME(now), "updated_at",
                 BCON_DATE_TIME(now), "group", BCON_UTF8(group), "group_seq", BCON_INT64(seq));
    if (strcmp(status, "processing") == 0) {
        BSON_APPEND_OID(doc, "lease_token", &token);
        BSON_APPEND_DATE_TIME(doc, "lease_expires_at", now + 86400000);
        BSON_APPEND_UTF8(doc, "claimed_by", "crowd");
    }
    mongoc_bulk_operation_insert(bulk, doc);
    bson_destroy(doc);
}

/* BUSY_GROUPS groups, each: its document, message 1 in flight, message 2 waiting. */
static void
crowd_groups(world_t *w)
{
    int64_t now = world_server_now(w);
    bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
    mongoc_bulk_operation_t *bulk =
        mongoc_collection_create_bulk_operation_with_opts(w->coll, opts);
    for (int g = 0; g < BUSY_GROUPS; g++) {
        char name[32], id[64];
        bson_snprintf(name, sizeof name, "busy-%05d", g);
        bson_snprintf(id, sizeof id, "mongoq.group:%s", name);
        bson_t *gdoc =
            BCON_NEW("_id", BCON_UTF8(id), "name", BCON_UTF8(name), "active", BCON_INT64(1),
                     "waiting", BCON_INT64(1), "seq", BCON_INT64(2), "limit", BCON_INT64(1));
        mongoc_bulk_operation_insert(bulk, gdoc);
        bson_destroy(gdoc);
        append_message(bulk, name, 1, "processing", now);
        append_message(bulk, name, 2, "waiting", now);
    }
    bson_t reply;
    bson_error_t error;
    cr_assert(mongoc_bulk_operation_execute(bulk, &reply, &error), "%s", error.message);
    bson_destroy(&reply);
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(opts);
}

Test(groups_plans, ten_thousand_busy_groups_slow_no_other_group)
{
    world_skip_sharded("the plan bounds are one partition's (as plans); partition_plans "
                       "covers the partitioned layout");
    world_t w;
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = 1;
    opts.no_reaper = true;
    world_open(&w, &opts, WORLD_COUNTER);
    crowd_groups(&w);
    mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
    eopts.group = "free";
    mtest_counter_keep_commands(w.counter);
    mtest_counter_reset(w.counter);
    world_enqueue(w.queue, 1, &eopts, NULL);
    cr_assert_geq(world_assert_sent_within(&w, "grouped enqueue", 2, 1), 1);
    world_enqueue(w.queue, 2, &eopts, NULL);
    world_enqueue(w.queue, 3, NULL, NULL);
    mtest_counter_reset(w.counter);

    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mongoq_message_t *msgs[8];
    size_t got = 0;
    cr_assert(mongoq_consumer_claim_many(c, 8, 0, msgs, &got, &error), "%s", error.message);
    cr_assert_eq(got, 2, "the free group's head and the ungrouped message");
    /* the claim index holds only admitted messages: 2 ready keys, no waiting one */
    cr_assert_geq(world_assert_sent_within(&w, "claim_many", 6, 3), 3);
    cr_assert(mongoq_message_ack_many(msgs, got, &error), "%s", error.message);
    /* the grouped ack: delete by _id, admit the head (one seek), the group document by _id */
    cr_assert_geq(world_assert_sent_within(&w, "ack with groups", 2, 2), 3);
    for (size_t i = 0; i < got; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert_eq(world_seq(msg), 2, "the free group's next message was admitted");
    cr_assert_geq(world_assert_sent_within(&w, "claim", 4, 2), 1);
    cr_assert(mongoq_message_fail(msg, "broken", &error), "%s", error.message);
    cr_assert_geq(world_assert_sent_within(&w, "fail with groups", 2, 2), 3);
    mongoq_message_destroy(msg);

    int64_t reaped = -1;
    cr_assert(mongoq_queue_reap(w.queue, &reaped, &error), "%s", error.message);
    cr_assert_eq(reaped, 0);
    cr_assert_eq(world_assert_sent_within(&w, "reap", 2, 1), 3, "two updates and the grouped find");

    mongoq_group_info_t info[20];
    for (int i = 0; i < 20; i++) {
        info[i] = (mongoq_group_info_t)MONGOQ_GROUP_INFO_INIT;
    }
    size_t n = 0;
    cr_assert(mongoq_queue_groups(w.queue, NULL, info, 20, &n, &error), "%s", error.message);
    cr_assert_eq(n, 20);
    cr_assert_str_eq(info[0].name, "busy-00000");
    cr_assert_eq(info[0].in_flight, 1);
    cr_assert_eq(info[0].waiting, 1);
    cr_assert_eq(world_assert_sent_within(&w, "groups page", 21, 20), 21);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* Edge and error paths across the API: races on dedup keys, bad batches, failing inserts. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "world.h"

typedef struct {
    world_t *t;
    bool ok;
    int code;
    bson_oid_t id;
} dedup_arg_t;

static void *
enqueue_key(void *arg)
{
    dedup_arg_t *a = arg;
    bson_t payload = BSON_INITIALIZER;
    bson_error_t error;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = "same";
    a->ok = mongoq_enqueue(a->t->queue, &payload, &opts, &a->id, &error);
    a->code = a->ok ? 0 : (int)error.code;
    bson_destroy(&payload);
    return NULL;
}

Test(api_edges, racing_enqueues_of_one_key_make_one_message)
{
    world_t t;
    world_open(&t, NULL, 0);
    enum { N = 6 };
    dedup_arg_t args[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        args[i] = (dedup_arg_t){.t = &t};
        pthread_create(&threads[i], NULL, enqueue_key, &args[i]);
    }
    int winners = 0;
    bson_oid_t winner;
    for (int i = 0; i < N; i++) {
        pthread_join(threads[i], NULL);
        if (args[i].ok) {
            winners++;
            bson_oid_copy(&args[i].id, &winner);
        } else {
            cr_assert_eq(args[i].code, MONGOQ_ERROR_DUPLICATE);
        }
    }
    cr_assert_eq(winners, 1);
    for (int i = 0; i < N; i++) {
        cr_assert(bson_oid_equal(&args[i].id, &winner), "every loser is told the holder");
    }
    cr_assert_eq(world_count(&t, "{}"), 1);
    world_close(&t);
}

Test(api_edges, ack_many_refuses_a_mixed_batch)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *msgs[2] = {world_claim(c, 0), NULL};
    cr_assert(msgs[0]);
    cr_assert_not(mongoq_message_ack_many(msgs, 2, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_eq(world_count(&t, "{\"status\": \"processing\"}"), 1, "nothing acknowledged");
    cr_assert(mongoq_message_ack_many(msgs, 1, &error), "%s", error.message);
    mongoq_message_destroy(msgs[0]);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_edges, enqueue_many_says_how_many_went_in)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t t;
    world_open(&t, NULL, 0);
    world_fail_point(&t, "{\"times\": 1}", "\"failCommands\": [\"insert\"], \"errorCode\": 2");
    bson_t a = BSON_INITIALIZER;
    const bson_t *ptrs[2] = {&a, &a};
    bson_error_t error;
    size_t stored = 99;
    bson_oid_t ids[2];
    memset(ids, 0, sizeof ids);
    cr_assert_not(mongoq_enqueue_many(t.queue, ptrs, 2, NULL, ids, &stored, &error));
    cr_assert_eq(error.code, 2, "the server's code passes through: %s", error.message);
    cr_assert(strstr(error.message, "0 of 2 enqueued"), "%s", error.message);
    cr_assert_eq(stored, 0, "the count is a value, not only text");
    bson_oid_t zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_not(bson_oid_equal(&ids[0], &zero), "ids are written even on failure (one rule)");

    world_fail_point_off(&t, 0);

    /* A validator refuses the second of three (ordered): the first is stored, and counted. */
    cr_assert(mtest_command(t.client, t.db,
                            "{\"collMod\": \"jobs\", \"validator\": "
                            "{\"payload.bad\": {\"$exists\": false}}}",
                            NULL, &error),
              "collMod: %s", error.message);
    bson_t *bad = BCON_NEW("bad", BCON_INT32(1));
    const bson_t *three[3] = {&a, bad, &a};
    cr_assert_not(mongoq_enqueue_many(t.queue, three, 3, NULL, NULL, &stored, &error));
    cr_assert_eq(error.code, 121, "%s", error.message);
    cr_assert_eq(stored, 1, "the first one went in before the refused one");
    cr_assert_eq(world_count(&t, "{}"), 1);
    bson_destroy(bad);
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &c);
    cr_assert_eq(c.enqueued, 1);
    world_close(&t);
}

Test(api_edges, claim_many_buries_damaged_documents)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t t;
    world_open(&t, NULL, 0);
    bson_error_t error;
    bson_t *bad = bson_new_from_json(
        (const uint8_t *)"{\"status\": \"ready\", \"priority\": 5, \"run_at\": {\"$date\": 0}, "
                         "\"attempts\": 0, \"max_attempts\": 5, \"enqueued_at\": {\"$date\": 0}}",
        -1, &error);
    cr_assert(bad, "%s", error.message);
    cr_assert(mongoc_collection_insert_one(t.coll, bad, NULL, NULL, &error), "%s", error.message);
    bson_destroy(bad);
    world_enqueue_n(&t, 2, NULL, NULL);
    mongoq_consumer_t *c = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *msgs[5];
    size_t n = 0;
    cr_assert(mongoq_consumer_claim_many(c, 5, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 2);
    cr_assert_eq(world_count(&t, "{\"status\": \"dead\", \"last_error\": \"damaged message: "
                                 "payload is missing or not a document\"}"),
                 1);
    for (size_t i = 0; i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &counters);
    cr_assert_eq(counters.claimed, 2);
    cr_assert_eq(counters.failed, 1);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_edges, claim_errors_pass_through)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    /* Three: BadValue might be the document's (mongoq__error_maybe_document), so the claim
     * tries the head pinned, then without it, before it gives the server's error back. */
    world_fail_point(&t, "{\"times\": 3}",
                     "\"failCommands\": [\"findAndModify\"], \"errorCode\": 2");
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *msg = (mongoq_message_t *)&error; /* must be reset to NULL */
    cr_assert_not(mongoq_consumer_claim(c, 0, &msg, &error));
    cr_assert_null(msg);
    cr_assert_eq(error.code, 2, "%s", error.message);
    world_fail_point_off(&t, 0);
    msg = world_claim(c, 0);
    cr_assert(msg, "the message is still there");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(api_edges, purge_and_stats_on_a_missing_collection)
{
    world_t t;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.skip_ensure_indexes = true;
    world_open(&t, &opts, 0);
    bson_error_t error;
    mongoq_stats_t s = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(t.queue, &s, &error), "%s", error.message);
    cr_assert_eq(s.ready, 0);
    int64_t n = -1;
    cr_assert(mongoq_queue_purge(t.queue, NULL, &n, &error), "%s", error.message);
    cr_assert_eq(n, 0);
    cr_assert(mongoq_queue_reap(t.queue, &n, &error), "%s", error.message);
    cr_assert_eq(n, 0);
    cr_assert(mongoq_queue_redrive(t.queue, NULL, &n, &error), "%s", error.message);
    cr_assert_eq(n, 0);
    world_close(&t);
}

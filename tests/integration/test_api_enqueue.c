/* mongoq_enqueue / mongoq_enqueue_many: documents written, validation, dedup, sessions. */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

Test(api_enqueue, writes_a_ready_message)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_t payload = BSON_INITIALIZER, doc;
    bson_oid_t id;
    bson_error_t error;
    BSON_APPEND_UTF8(&payload, "job", "resize");
    int64_t before = world_server_now(&t);
    cr_assert(mongoq_enqueue(t.queue, &payload, NULL, &id, &error), "%s", error.message);
    int64_t after = world_server_now(&t);
    cr_assert(world_find(&t, &id, &doc));
    cr_assert_str_eq(mtest_doc_str(&doc, "status"), "ready");
    cr_assert_eq(mtest_doc_int(&doc, "priority"), 0);
    cr_assert_eq(mtest_doc_int(&doc, "attempts"), 0);
    cr_assert_eq(mtest_doc_int(&doc, "max_attempts"), 5);
    /* Times come from the server clock estimate: within the round trips around the call. The
     * estimate may lag the server by a stall between hello's reply and the clock read when the
     * queue was opened (as test_api_hooks.c allows); it is never ahead of it. */
    cr_assert_geq(mtest_doc_date(&doc, "enqueued_at"), before - 1000);
    cr_assert_leq(mtest_doc_date(&doc, "enqueued_at"), after + 50);
    cr_assert_eq(mtest_doc_date(&doc, "run_at"), mtest_doc_date(&doc, "enqueued_at"));
    cr_assert_not(bson_has_field(&doc, "dedup_key"));
    cr_assert_not(bson_has_field(&doc, "lease_token"));
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &doc, "payload") && BSON_ITER_HOLDS_DOCUMENT(&it));
    bson_destroy(&doc);
    bson_destroy(&payload);
    world_close(&t);
}

Test(api_enqueue, options_are_written)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_t payload = BSON_INITIALIZER, doc;
    bson_oid_t id;
    bson_error_t error;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.priority = 9;
    opts.delay_ms = 60000;
    opts.max_attempts = 2;
    opts.dedup_key = "order-17";
    cr_assert(mongoq_enqueue(t.queue, &payload, &opts, &id, &error), "%s", error.message);
    cr_assert(world_find(&t, &id, &doc));
    cr_assert_eq(mtest_doc_int(&doc, "priority"), 9);
    cr_assert_eq(mtest_doc_int(&doc, "max_attempts"), 2);
    cr_assert_str_eq(mtest_doc_str(&doc, "dedup_key"), "order-17");
    cr_assert_eq(mtest_doc_date(&doc, "run_at") - mtest_doc_date(&doc, "enqueued_at"), 60000);
    bson_destroy(&doc);

    opts = (mongoq_enqueue_opts_t)MONGOQ_ENQUEUE_OPTS_INIT;
    opts.run_at_ms = 4102444800000; /* 2100-01-01 */
    cr_assert(mongoq_enqueue(t.queue, &payload, &opts, &id, &error), "%s", error.message);
    cr_assert(world_find(&t, &id, &doc));
    cr_assert_eq(mtest_doc_date(&doc, "run_at"), 4102444800000);
    bson_destroy(&doc);
    bson_destroy(&payload);
    world_close(&t);
}

static void
assert_invalid(world_t *t, const bson_t *payload, const mongoq_enqueue_opts_t *opts)
{
    bson_error_t error;
    bson_oid_t id;
    cr_assert_not(mongoq_enqueue(t->queue, payload, opts, &id, &error));
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "%s", error.message);
    cr_assert_gt(strlen(error.message), 10);
}

Test(api_enqueue, invalid_arguments_write_nothing)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_t payload = BSON_INITIALIZER;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    assert_invalid(&t, NULL, NULL);
    opts.delay_ms = -1;
    assert_invalid(&t, &payload, &opts);
    opts.delay_ms = 10;
    opts.run_at_ms = 10;
    assert_invalid(&t, &payload, &opts);
    opts = (mongoq_enqueue_opts_t)MONGOQ_ENQUEUE_OPTS_INIT;
    opts.max_attempts = -1;
    assert_invalid(&t, &payload, &opts);

    size_t big = 16 * 1024 * 1024 - 10;
    char *text = bson_malloc(big);
    memset(text, 'x', big - 1);
    text[big - 1] = '\0';
    bson_t huge = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&huge, "blob", text);
    bson_free(text);
    assert_invalid(&t, &huge, NULL);
    bson_destroy(&huge);

    cr_assert_eq(world_count(&t, "{}"), 0);
    bson_destroy(&payload);
    world_close(&t);
}

Test(api_enqueue, dedup_key_refuses_a_second_unfinished_message)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_t payload = BSON_INITIALIZER;
    bson_oid_t first, second;
    bson_error_t error;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = "k";
    cr_assert(mongoq_enqueue(t.queue, &payload, &opts, &first, &error), "%s", error.message);
    cr_assert_not(mongoq_enqueue(t.queue, &payload, &opts, &second, &error));
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, MONGOQ_ERROR_DUPLICATE, "%s", error.message);
    cr_assert(bson_oid_equal(&first, &second), "id_out names the holder");
    cr_assert_eq(world_count(&t, "{}"), 1);

    /* Once the holder is finished the key is free again. */
    mongoq_consumer_t *consumer = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *msg = world_claim(consumer, 0);
    cr_assert(msg);
    cr_assert_str_eq(mongoq_message_dedup_key(msg), "k");
    cr_assert_not(mongoq_enqueue(t.queue, &payload, &opts, NULL, &error), "still processing");
    cr_assert_eq(error.code, MONGOQ_ERROR_DUPLICATE);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    cr_assert(mongoq_enqueue(t.queue, &payload, &opts, &second, &error), "%s", error.message);
    cr_assert_not(bson_oid_equal(&first, &second));
    mongoq_consumer_destroy(consumer);
    bson_destroy(&payload);
    world_close(&t);
}

Test(api_enqueue, dead_messages_release_their_key)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_t payload = BSON_INITIALIZER;
    bson_error_t error;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = "k";
    world_enqueue_n(&t, 1, &opts, NULL);
    mongoq_consumer_t *consumer = mongoq_consumer_new(t.queue, NULL, &error);
    mongoq_message_t *msg = world_claim(consumer, 0);
    cr_assert(mongoq_message_fail(msg, "bad", &error), "%s", error.message);
    mongoq_message_destroy(msg);
    cr_assert(mongoq_enqueue(t.queue, &payload, &opts, NULL, &error), "%s", error.message);
    cr_assert_eq(world_count(&t, "{\"dedup_key\": \"k\"}"), 1);
    mongoq_consumer_destroy(consumer);
    bson_destroy(&payload);
    world_close(&t);
}

Test(api_enqueue, many_in_one_insert)
{
    world_t t;
    world_open(&t, NULL, WORLD_COUNTER);
    enum { N = 50 };
    bson_t payloads[N];
    const bson_t *ptrs[N];
    bson_oid_t ids[N];
    bson_error_t error;
    for (int i = 0; i < N; i++) {
        world_payload(&payloads[i], i);
        ptrs[i] = &payloads[i];
    }
    mtest_counter_reset(t.counter);
    cr_assert(mongoq_enqueue_many(t.queue, ptrs, N, NULL, ids, NULL, &error), "%s", error.message);
    cr_assert_eq(mtest_counter_get(t.counter, "insert"), 1);
    cr_assert_eq(world_count(&t, "{\"status\": \"ready\"}"), N);
    bson_t doc;
    cr_assert(world_find(&t, &ids[N - 1], &doc));
    bson_destroy(&doc);
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &c);
    cr_assert_eq(c.enqueued, N);
    for (int i = 0; i < N; i++) {
        bson_destroy(&payloads[i]);
    }
    world_close(&t);
}

Test(api_enqueue, many_validates_everything_first)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_t a = BSON_INITIALIZER;
    const bson_t *ptrs[3] = {&a, &a, NULL};
    bson_error_t error;
    cr_assert_not(mongoq_enqueue_many(t.queue, ptrs, 3, NULL, NULL, NULL, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert(strstr(error.message, "message 2"), "%s", error.message);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = "k";
    cr_assert_not(mongoq_enqueue_many(t.queue, ptrs, 2, &opts, NULL, NULL, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_eq(world_count(&t, "{}"), 0);
    cr_assert(mongoq_enqueue_many(t.queue, ptrs, 0, NULL, NULL, NULL, &error));
    world_close(&t);
}

static void
enqueue_in_transaction(world_t *t, bool commit)
{
    bson_error_t error;
    mongoc_client_t *client = mongoc_client_pool_pop(t->pool);
    mongoc_client_session_t *session = mongoc_client_start_session(client, NULL, &error);
    cr_assert(session, "%s", error.message);
    cr_assert(mongoc_client_session_start_transaction(session, NULL, &error), "%s", error.message);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.session = session;
    bson_t payload = BSON_INITIALIZER;
    cr_assert(mongoq_enqueue(t->queue, &payload, &opts, NULL, &error), "%s", error.message);
    cr_assert_eq(world_count(t, "{}"), 0, "invisible before the commit");
    if (commit) {
        cr_assert(mongoc_client_session_commit_transaction(session, NULL, &error), "%s",
                  error.message);
    } else {
        cr_assert(mongoc_client_session_abort_transaction(session, &error), "%s", error.message);
    }
    mongoc_client_session_destroy(session);
    mongoc_client_pool_push(t->pool, client);
    bson_destroy(&payload);
}

Test(api_enqueue, in_a_transaction_only_a_commit_enqueues)
{
    world_t t;
    world_open(&t, NULL, 0);
    enqueue_in_transaction(&t, false);
    cr_assert_eq(world_count(&t, "{}"), 0);
    enqueue_in_transaction(&t, true);
    cr_assert_eq(world_count(&t, "{}"), 1);
    world_close(&t);
}

Test(api_enqueue, server_errors_pass_through)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t t;
    world_open(&t, NULL, 0);
    world_fail_point(&t, "{\"times\": 1}", "\"failCommands\": [\"insert\"], \"errorCode\": 2");
    bson_t payload = BSON_INITIALIZER;
    bson_error_t error;
    cr_assert_not(mongoq_enqueue(t.queue, &payload, NULL, NULL, &error));
    cr_assert_neq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, 2, "%s", error.message);
    world_fail_point_off(&t, 0);
    cr_assert_eq(world_count(&t, "{}"), 0);
    bson_destroy(&payload);
    world_close(&t);
}

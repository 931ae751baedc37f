/*
 * Any pool size works. The queue takes one client per call and gives it back; its background
 * threads use connections of their own, never the pool's. A pool whose wait queue times out
 * (waitQueueTimeoutMS) gives MONGOQ_ERROR_NO_CLIENT instead of aborting the process, and a pool
 * of one serves claims, enqueues and a worker while the waker watches the change stream.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

/* The test URI with extra options appended. */
static mongoc_client_pool_t *
pool_with(const char *db, const char *options)
{
    const char *base = mtest_uri();
    size_t len = strlen(base);
    const char *sep = strchr(base, '?') ? "&" : len && base[len - 1] == '/' ? "?" : "/?";
    char *uri = bson_strdup_printf("%s%s%s", base, sep, options);
    mongoc_client_pool_t *pool = mtest_pool_for(uri, db);
    bson_free(uri);
    return pool;
}

Test(hardening_pool, an_exhausted_pool_gives_no_client_not_an_abort, .timeout = 60)
{
    world_t t;
    world_open(&t, NULL, WORLD_NO_QUEUE);
    mongoc_client_pool_t *pool = pool_with(t.db, "maxPoolSize=1&waitQueueTimeoutMS=200");
    bson_error_t error;
    mongoq_queue_t *queue = mongoq_queue_new(pool, t.db, "jobs", NULL, &error);
    cr_assert(queue, "%s", error.message);
    mongoq_consumer_t *c = mongoq_consumer_new(queue, NULL, &error);
    bson_t *payload = BCON_NEW("seq", BCON_INT64(1));
    mongoc_client_t *held = mongoc_client_pool_pop(pool); /* the pool's only client */
    mongoq_message_t *msg = NULL;
    cr_assert_not(mongoq_consumer_claim(c, 0, &msg, &error));
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, MONGOQ_ERROR_NO_CLIENT, "%s", error.message);
    cr_assert_null(msg);
    cr_assert_not(mongoq_enqueue(queue, payload, NULL, NULL, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_NO_CLIENT, "%s", error.message);
    cr_assert_eq(world_count(&t, "{}"), 0, "nothing was sent");
    mongoc_client_pool_push(pool, held);
    cr_assert(mongoq_enqueue(queue, payload, NULL, NULL, &error), "%s", error.message);
    cr_assert(mongoq_consumer_claim(c, 1000, &msg, &error) && msg, "%s", error.message);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    bson_destroy(payload);
    mongoq_consumer_destroy(c);
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    world_close(&t);
}

static int handled;

static mongoq_result_t
count_handler(mongoq_message_t *msg, void *user_data)
{
    (void)msg;
    (void)user_data;
    __atomic_add_fetch(&handled, 1, __ATOMIC_SEQ_CST);
    return MONGOQ_ACK;
}

static bool
all_handled(void *ctx)
{
    return __atomic_load_n(&handled, __ATOMIC_SEQ_CST) >= *(int *)ctx;
}

/* A pool of one (no wait-queue timeout): a waiting claim returns, and a worker drains. */
Test(hardening_pool, a_pool_of_one_serves_claims_and_a_worker, .timeout = 60)
{
    world_t t;
    world_open(&t, NULL, WORLD_NO_QUEUE);
    mongoc_client_pool_t *pool = pool_with(t.db, "maxPoolSize=1");
    bson_error_t error;
    mongoq_queue_t *queue = mongoq_queue_new(pool, t.db, "jobs", NULL, &error);
    cr_assert(queue, "%s", error.message);
    mongoq_consumer_t *c = mongoq_consumer_new(queue, NULL, &error);
    mongoq_message_t *msg = NULL;
    int64_t start = mtest_now_ms();
    cr_assert(mongoq_consumer_claim(c, 300, &msg, &error), "%s", error.message);
    cr_assert_null(msg);
    cr_assert_lt(mtest_now_ms() - start, 5000, "the wait ends instead of hanging");
    /* The waker (its own connection) wakes the claim for a message enqueued meanwhile. */
    bson_t *payload = BCON_NEW("seq", BCON_INT64(1));
    cr_assert(mongoq_enqueue(queue, payload, NULL, NULL, &error), "%s", error.message);
    cr_assert(mongoq_consumer_claim(c, 5000, &msg, &error) && msg, "%s", error.message);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);

    int want = 20;
    for (int i = 0; i < want; i++) {
        cr_assert(mongoq_enqueue(queue, payload, NULL, NULL, &error), "%s", error.message);
    }
    mongoq_worker_opts_t wopts = MONGOQ_WORKER_OPTS_INIT;
    wopts.handler = count_handler;
    wopts.threads = 3;
    mongoq_worker_t *w = mongoq_worker_new(queue, &wopts, &error);
    cr_assert(w && mongoq_worker_start(w, &error), "%s", error.message);
    cr_assert(mtest_wait_until(all_handled, &want, 20000), "a worker of 3 threads on a pool of 1");
    cr_assert(mongoq_worker_stop(w, 5000, &error), "%s", error.message);
    mongoq_worker_destroy(w);
    cr_assert_eq(world_count(&t, "{}"), 0);
    bson_destroy(payload);
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    world_close(&t);
}

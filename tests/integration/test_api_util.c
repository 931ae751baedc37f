#include "api_util.h"

#include <criterion/criterion.h>
#include <string.h>

void
api_setup(api_t *t, const mongoq_queue_opts_t *opts, bool open_queue)
{
    bson_error_t error;
    mongoc_init();
    memset(t, 0, sizeof *t);
    t->db = mtest_db_name("api");
    t->pool = mtest_pool_new(t->db);
    t->counter = mtest_counter_new();
    mtest_counter_attach_pool(t->counter, t->pool);
    t->client = mtest_client_new(t->db);
    t->coll = mongoc_client_get_collection(t->client, t->db, "jobs");
    if (open_queue) {
        t->queue = mongoq_queue_new(t->pool, t->db, "jobs", opts, &error);
        cr_assert(t->queue, "mongoq_queue_new: %s", error.message);
    }
}

void
api_teardown(api_t *t)
{
    mongoq_queue_destroy(t->queue);
    mongoc_collection_destroy(t->coll);
    mtest_db_drop(t->client, t->db);
    mongoc_client_destroy(t->client);
    mongoc_client_pool_destroy(t->pool);
    mtest_counter_destroy(t->counter);
    bson_free(t->db);
    mongoc_cleanup();
}

int64_t
api_count(api_t *t, const char *filter_json)
{
    return mtest_count(t->coll, filter_json);
}

bool
api_get(api_t *t, const bson_oid_t *id, bson_t *doc)
{
    return mtest_find_by_id(t->coll, id, doc);
}

void
api_enqueue_n(api_t *t, int n, const mongoq_enqueue_opts_t *opts, bson_oid_t *ids)
{
    for (int i = 0; i < n; i++) {
        bson_t payload = BSON_INITIALIZER;
        bson_error_t error;
        BSON_APPEND_INT64(&payload, "n", i);
        bool ok = mongoq_enqueue(t->queue, &payload, opts, ids ? &ids[i] : NULL, &error);
        cr_assert(ok, "enqueue: %s", error.message);
        bson_destroy(&payload);
    }
}

mongoq_consumer_t *
api_consumer(api_t *t, const char *name, int64_t lease_ms)
{
    bson_error_t error;
    mongoq_consumer_opts_t opts = MONGOQ_CONSUMER_OPTS_INIT;
    opts.name = name;
    opts.lease_ms = lease_ms;
    mongoq_consumer_t *consumer = mongoq_consumer_new(t->queue, &opts, &error);
    cr_assert(consumer, "mongoq_consumer_new: %s", error.message);
    return consumer;
}

mongoq_message_t *
api_claim(mongoq_consumer_t *consumer, int64_t wait_ms)
{
    mongoq_message_t *msg = NULL;
    bson_error_t error;
    cr_assert(mongoq_consumer_claim(consumer, wait_ms, &msg, &error), "claim: %s", error.message);
    return msg;
}

int64_t
api_server_now(api_t *t)
{
    return mtest_server_now_ms(t->client);
}

typedef struct {
    api_t *t;
    int64_t server_ms;
} server_past_t;

static bool
server_past(void *ctx)
{
    server_past_t *p = ctx;
    return api_server_now(p->t) > p->server_ms;
}

bool
api_wait_server_past(api_t *t, int64_t server_ms, int64_t timeout_ms)
{
    server_past_t past = {t, server_ms};
    return mtest_wait_until(server_past, &past, timeout_ms);
}

int64_t
api_payload_n(const mongoq_message_t *msg)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, mongoq_message_payload(msg), "n") ? bson_iter_as_int64(&it)
                                                                      : -1;
}

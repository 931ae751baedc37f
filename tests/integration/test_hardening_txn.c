/*
 * Enqueueing inside a caller's transaction (mongoc_client_session_with_transaction) never
 * aborts it for a duplicate dedup_key the transaction can see: the key is looked up in the
 * transaction first. Two transactions racing for one key store one message: the second meets a
 * WriteConflict labelled TransientTransactionError (mongod's answer to a write that conflicts
 * with another open transaction: https://www.mongodb.com/docs/manual/core/transactions-production-consideration/#in-progress-transactions-and-write-conflicts),
 * which with_transaction retries, and its retry finds the key held: MONGOQ_ERROR_DUPLICATE.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "world.h"

typedef struct {
    mongoq_queue_t *queue;
    const char *key;
    int seq;
    bool second_was_duplicate;
    bson_error_t second_error;
} twice_t;

static bool
enqueue_in(mongoc_client_session_t *session, mongoq_queue_t *queue, const char *key, int seq,
           bson_t **reply, bson_error_t *error)
{
    bson_t payload;
    bson_t r;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = key;
    opts.session = session;
    opts.reply = &r;
    world_payload(&payload, seq);
    bool ok = mongoq_enqueue(queue, &payload, &opts, NULL, error);
    if (reply) {
        *reply = bson_copy(&r);
    }
    bson_destroy(&r);
    bson_destroy(&payload);
    return ok;
}

/* Enqueues the key twice in one transaction: the second is a DUPLICATE, the first commits. */
static bool
enqueue_twice(mongoc_client_session_t *session, void *ctx, bson_t **reply, bson_error_t *error)
{
    twice_t *t = ctx;
    if (!enqueue_in(session, t->queue, t->key, 1, NULL, error)) {
        return false;
    }
    t->second_was_duplicate = !enqueue_in(session, t->queue, t->key, 2, reply, &t->second_error) &&
                              t->second_error.domain == MONGOQ_ERROR_DOMAIN &&
                              t->second_error.code == MONGOQ_ERROR_DUPLICATE;
    return true; /* the caller goes on: its transaction is intact */
}

Test(hardening_txn, a_duplicate_the_transaction_can_see_does_not_abort_it, .timeout = 60)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_error_t error;
    mongoc_client_t *client = mongoc_client_pool_pop(t.pool);
    mongoc_client_session_t *session = mongoc_client_start_session(client, NULL, &error);
    cr_assert(session, "%s", error.message);
    twice_t ctx = {.queue = t.queue, .key = "order-42"};
    bson_t reply;
    bool ok = mongoc_client_session_with_transaction(session, enqueue_twice, NULL, &ctx, &reply,
                                                     &error);
    cr_assert(ok, "the transaction commits: %s", error.message);
    cr_assert(ctx.second_was_duplicate, "second enqueue: %s", ctx.second_error.message);
    cr_assert_eq(world_count(&t, "{\"dedup_key\": \"order-42\"}"), 1);
    cr_assert_eq(world_count(&t, "{\"payload.seq\": 1}"), 1, "the first one is the one stored");
    bson_destroy(&reply);
    mongoc_client_session_destroy(session);
    mongoc_client_pool_push(t.pool, client);
    world_close(&t);
}

/* Two transactions, one key: the first holds its insert open until the second has tried. */
typedef struct {
    mongoq_queue_t *queue;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool first_inserted;
    bool second_tried;
    int second_runs;
    bool result[2];
    bson_error_t error[2];
} race_t;

static void
race_set(race_t *r, bool *flag)
{
    pthread_mutex_lock(&r->mu);
    *flag = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->mu);
}

/* Waits (bounded) for *flag. */
static void
race_wait(race_t *r, const bool *flag)
{
    struct timespec ts;
    mtest_deadline(10000, &ts);
    pthread_mutex_lock(&r->mu);
    while (!*flag && pthread_cond_timedwait(&r->cond, &r->mu, &ts) == 0) {
    }
    pthread_mutex_unlock(&r->mu);
}

static bool
first_cb(mongoc_client_session_t *session, void *ctx, bson_t **reply, bson_error_t *error)
{
    race_t *r = ctx;
    bool ok = enqueue_in(session, r->queue, "race", 1, reply, error);
    race_set(r, &r->first_inserted);
    race_wait(r, &r->second_tried);
    return ok;
}

static bool
second_cb(mongoc_client_session_t *session, void *ctx, bson_t **reply, bson_error_t *error)
{
    race_t *r = ctx;
    race_wait(r, &r->first_inserted);
    r->second_runs++;
    bool ok = enqueue_in(session, r->queue, "race", 2, reply, error);
    race_set(r, &r->second_tried);
    return ok;
}

typedef struct {
    race_t *race;
    int which;
    mongoc_client_pool_t *pool;
} racer_t;

static void *
racer_main(void *arg)
{
    racer_t *racer = arg;
    race_t *r = racer->race;
    mongoc_client_t *client = mongoc_client_pool_pop(racer->pool);
    mongoc_client_session_t *session =
        mongoc_client_start_session(client, NULL, &r->error[racer->which]);
    if (session) {
        r->result[racer->which] = mongoc_client_session_with_transaction(
            session, racer->which == 0 ? first_cb : second_cb, NULL, r, NULL,
            &r->error[racer->which]);
        mongoc_client_session_destroy(session);
    }
    mongoc_client_pool_push(racer->pool, client);
    return NULL;
}

Test(hardening_txn, two_transactions_racing_for_one_key_store_one_message, .timeout = 120)
{
    world_t t;
    world_open(&t, NULL, 0);
    race_t race = {.queue = t.queue};
    pthread_mutex_init(&race.mu, NULL);
    mtest_cond_init(&race.cond);
    racer_t racers[2] = {{&race, 0, t.pool}, {&race, 1, t.pool}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(pthread_create(&threads[i], NULL, racer_main, &racers[i]), 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(threads[i], NULL);
    }
    cr_assert(race.result[0], "the first commits: %s", race.error[0].message);
    cr_assert_not(race.result[1], "the second cannot take the key");
    cr_assert_eq(race.error[1].domain, MONGOQ_ERROR_DOMAIN, "%s", race.error[1].message);
    cr_assert_eq(race.error[1].code, MONGOQ_ERROR_DUPLICATE, "%s", race.error[1].message);
    cr_assert_geq(race.second_runs, 2, "with_transaction retried the conflicting one");
    cr_assert_eq(world_count(&t, "{\"dedup_key\": \"race\"}"), 1);
    cr_assert_eq(world_count(&t, "{\"payload.seq\": 1}"), 1);
    pthread_cond_destroy(&race.cond);
    pthread_mutex_destroy(&race.mu);
    world_close(&t);
}

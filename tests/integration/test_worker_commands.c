/*
 * The worker's commands per message, counted with libmongoc's command monitoring on the
 * queue's pool (counts, not timings, so they are asserted):
 *
 *   batch 1     one findAndModify and one ack per message       2 per message
 *   batch 100   claim_many's 3 and one ack_many per batch        4 per 100 = 0.04
 *
 * plus, per thread, the one claim that finds the queue empty before it sleeps. Around a retry
 * the acks waiting before it are sent first; a slow handler's ack is sent as it returns. And a
 * claim_many that loses every candidate to another claimer claims the next message due rather
 * than answering "none" (which would send a worker thread to sleep while messages are due).
 *
 * The queue has no reaper, no change stream, a 60 s poll interval and 10-minute leases, so
 * nothing but the worker's claims and acks is sent while the test runs: no heartbeat falls due
 * and an idle thread stays asleep. The waker polls on a connection of its own (not counted).
 * The clock-estimate hellos are left out of the counts.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "world.h"

#define WC_MAX 512
#define WC_EVENTS (2 * WC_MAX + 16)

/* What the handler and on_outcome saw, in order. */
typedef struct {
    pthread_mutex_t mu;
    int64_t retry_seq; /* answered MONGOQ_RETRY on its first run; -1: none */
    int64_t sleep_ms;  /* each handler run sleeps this long */
    int runs[WC_MAX];
    int outcomes;
    int not_ok;
    int acked[WC_MAX];
    int retried[WC_MAX];
    int events[WC_EVENTS]; /* seq + 1: a handler started; -(seq + 1): an outcome came */
    int n_events;
} wc_ctx_t;

static void
wc_init(wc_ctx_t *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->retry_seq = -1;
}

static void
wc_event(wc_ctx_t *c, int event)
{
    if (c->n_events < WC_EVENTS) {
        c->events[c->n_events++] = event;
    }
}

static mongoq_result_t
wc_handler(mongoq_message_t *msg, void *user_data)
{
    wc_ctx_t *c = user_data;
    int64_t seq = world_seq(msg);
    bool retry;
    cr_assert(seq >= 0 && seq < WC_MAX);
    pthread_mutex_lock(&c->mu);
    retry = seq == c->retry_seq && c->runs[seq] == 0;
    c->runs[seq]++;
    wc_event(c, (int)seq + 1);
    pthread_mutex_unlock(&c->mu);
    if (c->sleep_ms > 0) {
        struct timespec ts = {c->sleep_ms / 1000, (long)(c->sleep_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    return retry ? MONGOQ_RETRY : MONGOQ_ACK;
}

static void
wc_on_outcome(const mongoq_message_t *msg, const mongoq_outcome_t *o, void *user_data)
{
    wc_ctx_t *c = user_data;
    int64_t seq = world_seq(msg);
    pthread_mutex_lock(&c->mu);
    c->outcomes++;
    c->not_ok += !o->ok;
    if (seq >= 0 && seq < WC_MAX) {
        c->acked[seq] += o->action == MONGOQ_OUTCOME_ACKED;
        c->retried[seq] += o->action == MONGOQ_OUTCOME_RETRIED;
        wc_event(c, -(int)seq - 1);
    }
    pthread_mutex_unlock(&c->mu);
}

typedef struct {
    wc_ctx_t *ctx;
    int outcomes;
} wc_count_t;

static bool
wc_outcomes_reached(void *arg)
{
    wc_count_t *n = arg;
    pthread_mutex_lock(&n->ctx->mu);
    bool reached = n->ctx->outcomes >= n->outcomes;
    pthread_mutex_unlock(&n->ctx->mu);
    return reached;
}

/* Where event first appears in c->events, or -1. */
static int
wc_index_of(const wc_ctx_t *c, int event)
{
    for (int i = 0; i < c->n_events; i++) {
        if (c->events[i] == event) {
            return i;
        }
    }
    return -1;
}

static void
wc_open(world_t *w, int64_t backoff_base_ms)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true;
    opts.no_change_stream = true;
    opts.poll_interval_ms = 60000;
    opts.lease_ms = 600000;
    opts.backoff_base_ms = backoff_base_ms;
    world_open(w, &opts, WORLD_COUNTER);
}

/* Commands the pool started, without the clock-estimate hellos. */
static int64_t
wc_work(world_t *w)
{
    return mtest_counter_get(w->counter, NULL) - mtest_counter_get(w->counter, "hello") -
           mtest_counter_get(w->counter, "isMaster");
}

/*
 * Enqueues n messages, then runs a worker of `threads` threads and `batch` over them until
 * `outcomes` outcomes came, and stops it; only the worker's commands are counted.
 */
static void
wc_run(world_t *w, wc_ctx_t *c, int threads, int32_t batch, int n, int outcomes)
{
    world_enqueue_n(w, n, NULL, NULL);
    mtest_counter_reset(w->counter);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = wc_handler;
    opts.on_outcome = wc_on_outcome;
    opts.user_data = c;
    opts.threads = threads;
    opts.batch = batch;
    mongoq_worker_t *worker = world_worker_run(w->queue, &opts);
    wc_count_t all = {c, outcomes};
    cr_assert(mtest_wait_until(wc_outcomes_reached, &all, 60000), "%d of %d outcomes",
              c->outcomes, outcomes);
    bson_error_t error;
    cr_assert(mongoq_worker_stop(worker, 10000, &error), "stop: %s", error.message);
    mongoq_worker_destroy(worker);
    cr_assert_eq(c->outcomes, outcomes);
    cr_assert_eq(c->not_ok, 0);
}

static void
wc_print(world_t *w, const char *what, int n)
{
    mtest_counter_t *k = w->counter;
    printf("worker commands, %s: %" PRId64 " for %d messages (findAndModify %" PRId64
           ", find %" PRId64 ", update %" PRId64 ", delete %" PRId64 ")\n",
           what, wc_work(w), n, mtest_counter_get(k, "findAndModify"), mtest_counter_get(k, "find"),
           mtest_counter_get(k, "update"), mtest_counter_get(k, "delete"));
}

/* ---- batch 1: a findAndModify and an ack per message ------------------------------------------- */

static void
wc_batch_of_one(int threads)
{
    enum { N = 40 };
    world_t w;
    wc_ctx_t c;
    wc_open(&w, 0);
    wc_init(&c);
    wc_run(&w, &c, threads, 1, N, N);
    wc_print(&w, threads == 1 ? "batch 1, 1 thread" : "batch 1, 4 threads", N);
    int64_t fam = mtest_counter_get(w.counter, "findAndModify");
    cr_assert_eq(mtest_counter_get(w.counter, "delete"), N, "one ack per message");
    cr_assert(fam >= N && fam <= N + threads,
              "%" PRId64 " findAndModify: one per message and at most one empty per thread", fam);
    cr_assert_eq(wc_work(&w), mtest_counter_get(w.counter, "delete") + fam, "nothing else");
    for (int i = 0; i < N; i++) {
        cr_assert_eq(c.acked[i], 1, "message %d acked %d times", i, c.acked[i]);
    }
    world_assert_empty(&w);
    world_close(&w);
}

Test(worker_commands, a_batch_of_one_costs_a_find_and_modify_and_an_ack_per_message,
     .timeout = 120)
{
    world_skip_sharded("counts the commands of one partition (a partitioned consumer probes every partition)");
    wc_batch_of_one(1);
}

Test(worker_commands, four_threads_at_batch_one_cost_the_same_per_message, .timeout = 120)
{
    world_skip_sharded("counts the commands of one partition (a partitioned consumer probes every partition)");
    wc_batch_of_one(4);
}

/* ---- batch 100: claim_many's three and one ack_many per batch ---------------------------------- */

Test(worker_commands, a_batch_of_100_is_acked_in_one_ack_many, .timeout = 120)
{
    world_skip_sharded("counts the commands of one partition (a partitioned consumer probes every partition)");
    enum { N = 300, BATCHES = 3 };
    world_t w;
    wc_ctx_t c;
    wc_open(&w, 0);
    wc_init(&c);
    wc_run(&w, &c, 1, 100, N, N);
    wc_print(&w, "batch 100, 1 thread", N);
    int64_t finds = mtest_counter_get(w.counter, "find");
    int64_t deletes = mtest_counter_get(w.counter, "delete");
    cr_assert_eq(mtest_counter_get(w.counter, "update"), BATCHES, "one claiming updateMany each");
    cr_assert(finds == 2 * BATCHES || finds == 2 * BATCHES + 1,
              "%" PRId64 " finds: two per claim_many, one for the claim that found none", finds);
    cr_assert_eq(mtest_counter_get(w.counter, "findAndModify"), 0);
    /* One ack_many per batch; one more only if the thread stalled 50 ms inside a batch. */
    cr_assert(deletes >= BATCHES && deletes <= BATCHES + 2, "%" PRId64 " acks", deletes);
    cr_assert_leq(wc_work(&w), N / 20, "%" PRId64 " commands for %d messages (> 0.05 each)",
                  wc_work(&w), N);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(c.acked[i], 1, "message %d acked %d times", i, c.acked[i]);
    }
    world_assert_empty(&w);
    world_close(&w);
}

/* ---- when the acks waiting in a batch are sent ------------------------------------------------- */

Test(worker_commands, the_acks_before_a_retry_are_sent_before_it, .timeout = 120)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    enum { N = 10, RETRIED = 4 };
    world_t w;
    wc_ctx_t c;
    wc_open(&w, 10);
    wc_init(&c);
    c.retry_seq = RETRIED;
    wc_run(&w, &c, 1, N, N, N + 1);
    int retry_outcome = wc_index_of(&c, -RETRIED - 1);
    int next_start = wc_index_of(&c, RETRIED + 2);
    cr_assert(retry_outcome >= 0 && next_start > retry_outcome,
              "the retry is written before the next handler starts");
    for (int i = 0; i < RETRIED; i++) {
        int acked = wc_index_of(&c, -i - 1);
        cr_assert(acked >= 0 && acked < retry_outcome, "message %d acked before the retry", i);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(c.acked[i], 1, "message %d acked %d times", i, c.acked[i]);
        cr_assert_eq(c.runs[i], i == RETRIED ? 2 : 1);
    }
    cr_assert_eq(c.retried[RETRIED], 1);
    /* Acks: those before the retry, those after it, and the retried one's second claim. */
    cr_assert_geq(mtest_counter_get(w.counter, "delete"), 3);
    cr_assert_leq(mtest_counter_get(w.counter, "delete"), N);
    world_assert_empty(&w);
    world_close(&w);
}

Test(worker_commands, a_slow_handler_is_acked_as_it_returns, .timeout = 120)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    enum { N = 4 };
    world_t w;
    wc_ctx_t c;
    wc_open(&w, 0);
    wc_init(&c);
    c.sleep_ms = 60; /* at least the 50 ms an ack may wait for others */
    wc_run(&w, &c, 1, N, N, N);
    for (int i = 0; i + 1 < N; i++) {
        int acked = wc_index_of(&c, -i - 1), next = wc_index_of(&c, i + 2);
        cr_assert(acked >= 0 && acked < next, "message %d acked before %d started", i, i + 1);
    }
    cr_assert_eq(mtest_counter_get(w.counter, "delete"), N, "one ack each, as each returned");
    world_assert_empty(&w);
    world_close(&w);
}

/* ---- a claim_many that lost its candidates takes the next message due ------------------------- */

/*
 * A claimer finds messages 0 and 1; another takes both before its updateMany runs (held on the
 * server by a fail point). Message 2 is due: the claim answers it, not "none".
 */
Test(worker_commands, a_claim_many_that_lost_its_candidates_claims_the_next_due, .timeout = 120)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    world_t w;
    bson_oid_t ids[3];
    wc_open(&w, 0);
    world_enqueue_n(&w, 3, NULL, ids);
    mtest_counter_reset(w.counter);
    int64_t fired = world_fail_point(&w, "{\"times\": 1}",
                                     "\"failCommands\": [\"update\"], \"blockConnection\": true, "
                                     "\"blockTimeMS\": 3000");
    world_claimer_t b = {.consumer = world_consumer(&w, NULL, 0)};
    world_claimer_start(&b);
    cr_assert(mtest_wait_until(world_update_sent, w.counter, 10000), "the claim's updateMany left");
    /* The other claimer (straight to the server, not held): both candidates become its. */
    bson_oid_t other;
    bson_oid_init(&other, NULL);
    bson_t *filter = BCON_NEW("_id", "{", "$in", "[", BCON_OID(&ids[0]), BCON_OID(&ids[1]), "]",
                              "}");
    bson_t *update = BCON_NEW("$set", "{", "status", "processing", "lease_token",
                              BCON_OID(&other), "}");
    bson_t reply;
    cr_assert(mongoc_collection_update_many(w.coll, filter, update, NULL, &reply, NULL));
    cr_assert_eq(mtest_doc_int(&reply, "modifiedCount"), 2);
    bson_destroy(&reply);
    bson_destroy(update);
    bson_destroy(filter);
    world_claimer_join(&b);
    cr_assert_eq(world_fail_point_off(&w, fired), 1, "the claiming updateMany was held");
    cr_assert(b.ok, "claim_many: %s", b.error.message);
    cr_assert_eq(b.n, 1, "the message still due, not none");
    cr_assert_eq(world_seq(b.msgs[0]), 2);
    cr_assert_eq(mtest_counter_get(w.counter, "findAndModify"), 1, "one findAndModify for it");
    mongoq_message_destroy(b.msgs[0]);
    mongoq_consumer_destroy(b.consumer);
    world_close(&w);
}

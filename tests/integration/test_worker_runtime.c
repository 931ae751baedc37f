/*
 * The worker runtime: handler results, heartbeat, lease loss seen by the handler, stop (hand
 * back at once, running handlers finish, the rest return after their leases), request_stop
 * from a signal handler, option checks; and the queue's background reaper that workers rely on.
 */
#include "world.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

TestSuite(worker, .timeout = 120);

Test(worker, processes_every_message_with_threads_and_batches)
{
    world_t e;
    world_open(&e, NULL, 0);
    world_rec_t rec;
    world_rec_init(&rec);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = world_record;
    opts.user_data = &rec;
    opts.threads = 3;
    opts.batch = 5;
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    for (int i = 0; i < 100; i++) {
        world_enqueue(e.queue, i, NULL, NULL);
    }
    cr_assert_eq(world_await_all(&rec, 100, 20000), 100);
    world_acked_t a = {w, 100};
    cr_assert(mtest_wait_until(world_acked_reached, &a, 10000), "100 acks");
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    cr_assert_eq(c.claimed, 100);
    cr_assert_eq(c.acked, 100);
    cr_assert_eq(c.lease_lost, 0);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(rec.runs[i], 1, "message %d ran once", i);
    }
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    cr_assert_eq(world_count(&e, "{}"), 0, "acked messages are deleted");
    mongoq_worker_destroy(w);
    world_rec_destroy(&rec);
    world_close(&e);
}

static mongoq_result_t
wr_fail_or_retry(mongoq_message_t *msg, void *user_data)
{
    (void)user_data;
    if (world_seq(msg) == 0) {
        mongoq_message_set_reason(msg, "boom");
        return MONGOQ_FAIL;
    }
    mongoq_message_set_reason(msg, "again");
    return MONGOQ_RETRY;
}

static bool
wr_two_dead(void *ctx)
{
    world_t *e = ctx;
    return world_count(e, "{\"status\": \"dead\"}") == 2;
}

Test(worker, fail_and_retry_record_the_reason)
{
    world_t e;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.max_attempts = 2;
    qopts.backoff_base_ms = 50;
    world_open(&e, &qopts, 0);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = wr_fail_or_retry;
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    world_enqueue(e.queue, 0, NULL, NULL);
    world_enqueue(e.queue, 1, NULL, NULL);
    cr_assert(mtest_wait_until(wr_two_dead, &e, 10000), "both end dead");
    cr_assert_eq(world_count(&e, "{\"last_error\": \"boom\", \"attempts\": 1}"), 1);
    cr_assert_eq(world_count(&e, "{\"last_error\": \"again\", \"attempts\": 2}"), 1);
    /* The worker counts after its write returns: stop first so both writes are counted. */
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT, q = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    mongoq_queue_counters(e.queue, &q);
    cr_assert_eq(c.failed, 2, "the FAIL and the RETRY that used the last attempt");
    cr_assert_eq(c.retried, 1, "only the first RETRY went back to ready");
    cr_assert_eq(q.failed, c.failed, "the queue counts the same");
    cr_assert_eq(q.retried, c.retried);
    mongoq_worker_destroy(w);
    world_close(&e);
}

/* A gate a handler waits at until the test opens it. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool open;
    int entered;
    bool lease_lost_seen;
    mongoc_client_t *thief; /* lease thief for the lease-loss test, or NULL */
    const char *db;
} wr_gate_t;

static void
wr_gate_init(wr_gate_t *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    mtest_cond_init(&g->cond);
}

static void
wr_gate_destroy(wr_gate_t *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->mu);
}

static void
wr_gate_open(wr_gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->mu);
}

/* The first message waits at the gate (at most 30 s); later ones pass. */
static mongoq_result_t
wr_gated(mongoq_message_t *msg, void *user_data)
{
    wr_gate_t *g = user_data;
    struct timespec ts;
    (void)msg;
    mtest_deadline(30000, &ts);
    pthread_mutex_lock(&g->mu);
    bool first = g->entered++ == 0;
    pthread_cond_broadcast(&g->cond);
    while (first && !g->open && pthread_cond_timedwait(&g->cond, &g->mu, &ts) == 0) {
    }
    pthread_mutex_unlock(&g->mu);
    return MONGOQ_ACK;
}

static bool
wr_gate_entered(void *ctx)
{
    wr_gate_t *g = ctx;
    pthread_mutex_lock(&g->mu);
    bool in = g->entered > 0;
    pthread_mutex_unlock(&g->mu);
    return in;
}

typedef struct {
    world_t *env;
    const char *filter;
    int64_t expected;
} wr_count_t;

static bool
wr_count_is(void *ctx)
{
    wr_count_t *c = ctx;
    return world_count(c->env, c->filter) == c->expected;
}

Test(worker, stop_hands_unstarted_messages_back_at_once)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t e;
    bson_error_t error;
    world_open(&e, NULL, 0); /* 30 s leases: only a hand-back makes them ready soon */
    for (int i = 0; i < 10; i++) {
        world_enqueue(e.queue, i, NULL, NULL);
    }
    wr_gate_t gate;
    wr_gate_init(&gate);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = wr_gated;
    opts.user_data = &gate;
    opts.batch = 10;
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    cr_assert(mtest_wait_until(wr_gate_entered, &gate, 10000), "the first handler runs");

    cr_assert_not(mongoq_worker_stop(w, 200, &error), "a handler is still running");
    cr_assert_eq(error.code, MONGOQ_ERROR_STOPPED);
    wr_count_t back = {&e, "{\"status\": \"ready\", \"attempts\": 0}", 9};
    cr_assert(mtest_wait_until(wr_count_is, &back, 2000), "9 messages ready again at once");

    /* Claimable right away by someone else, as first attempts. */
    mongoq_consumer_t *other = mongoq_consumer_new(e.queue, NULL, &error);
    cr_assert(other != NULL, "consumer: %s", error.message);
    mongoq_message_t *msgs[10];
    size_t n = 0;
    cr_assert(mongoq_consumer_claim_many(other, 10, 0, msgs, &n, &error), "%s", error.message);
    cr_assert_eq(n, 9);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(mongoq_message_attempts(msgs[i]), 1);
    }
    cr_assert(mongoq_message_ack_many(msgs, n, &error), "%s", error.message);
    for (size_t i = 0; i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_consumer_destroy(other);

    wr_gate_open(&gate);
    cr_assert(mongoq_worker_stop(w, 10000, &error), "the running handler finishes: %s",
              error.message);
    cr_assert_eq(gate.entered, 1, "no new message started after stop");
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    cr_assert_eq(c.acked, 1, "the running handler's message is acked");
    cr_assert_eq(world_count(&e, "{}"), 0);
    mongoq_worker_destroy(w);
    wr_gate_destroy(&gate);
    world_close(&e);
}

Test(worker, stop_timeout_leaves_running_messages_to_their_leases)
{
    world_t e;
    bson_error_t error;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.lease_ms = 800;
    qopts.reap_interval_ms = 100;
    world_open(&e, &qopts, 0);
    world_enqueue(e.queue, 0, NULL, NULL);
    wr_gate_t gate;
    wr_gate_init(&gate);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = wr_gated;
    opts.user_data = &gate;
    opts.heartbeat_ms = -1; /* as if the process hung: nothing extends the lease */
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    cr_assert(mtest_wait_until(wr_gate_entered, &gate, 10000), "the handler runs");
    cr_assert_not(mongoq_worker_stop(w, 100, &error));

    /* Only the worker's lease is short; the redelivery's must outlast the round trips to the
     * ack below while the reaper runs every 100 ms. */
    mongoq_consumer_t *other = world_consumer(&e, NULL, 30000);
    mongoq_message_t *msg = NULL;
    cr_assert(mongoq_consumer_claim(other, 10000, &msg, &error), "%s", error.message);
    cr_assert(msg != NULL, "redelivered after the lease");
    cr_assert_eq(mongoq_message_attempts(msg), 2);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(other);

    wr_gate_open(&gate);
    cr_assert(mongoq_worker_stop(w, 10000, &error), "%s", error.message);
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    cr_assert_eq(c.acked, 0);
    cr_assert_eq(c.lease_lost, 1, "the late ack finds the lease gone");
    mongoq_worker_destroy(w);
    wr_gate_destroy(&gate);
    world_close(&e);
}

/* A handler's "work": ms long, cut short when the lease is reported lost. */
static void
wr_work(mongoq_message_t *msg, int64_t ms)
{
    int64_t until = mtest_now_ms() + ms;
    while (mtest_now_ms() < until && !mongoq_message_lease_lost(msg)) {
        usleep(10 * 1000);
    }
}

/* Counts a finished handler and records whether its lease was reported lost. */
static mongoq_result_t
wr_leave(wr_gate_t *g, mongoq_message_t *msg)
{
    pthread_mutex_lock(&g->mu);
    g->entered++;
    g->lease_lost_seen = mongoq_message_lease_lost(msg);
    pthread_mutex_unlock(&g->mu);
    return MONGOQ_ACK;
}

#define WR_SLOW_LEASE_MS 2000
#define WR_SLOW_WORK_MS 6500 /* past three leases */

/* Runs longer than the lease; records whether its lease was reported lost. */
static mongoq_result_t
wr_slow(mongoq_message_t *msg, void *user_data)
{
    wr_work(msg, WR_SLOW_WORK_MS);
    return wr_leave(user_data, msg);
}

Test(worker, heartbeat_keeps_the_lease_of_a_long_handler)
{
    world_t e;
    bson_error_t error;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.lease_ms = WR_SLOW_LEASE_MS;
    qopts.reap_interval_ms = 100;
    world_open(&e, &qopts, 0);
    wr_gate_t gate;
    wr_gate_init(&gate);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = wr_slow;
    opts.user_data = &gate;
    /* Twenty heartbeats per lease: only a stall of most of a lease (1.9 s), not a slow round
     * trip, may let it run out; with no heartbeat it runs out three times over. */
    opts.heartbeat_ms = 100;
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    world_enqueue(e.queue, 0, NULL, NULL);
    wr_count_t running = {&e, "{\"status\": \"processing\"}", 1};
    cr_assert(mtest_wait_until(wr_count_is, &running, 5000));

    /* Another consumer finds nothing while the handler runs past three leases. */
    mongoq_consumer_t *other = mongoq_consumer_new(e.queue, NULL, &error);
    mongoq_message_t *msg = NULL;
    cr_assert(mongoq_consumer_claim(other, WR_SLOW_WORK_MS - 500, &msg, &error), "%s",
              error.message);
    cr_assert_null(msg, "the lease held");
    mongoq_consumer_destroy(other);

    world_acked_t a = {w, 1};
    cr_assert(mtest_wait_until(world_acked_reached, &a, 10000), "acked after the work");
    cr_assert_not(gate.lease_lost_seen);
    mongoq_worker_destroy(w);
    wr_gate_destroy(&gate);
    world_close(&e);
}

/* Steals its own message's lease (as a reclaim would), then waits to be told. */
static mongoq_result_t
wr_robbed(mongoq_message_t *msg, void *user_data)
{
    wr_gate_t *g = user_data;
    bson_error_t error;
    mongoc_collection_t *coll = mongoc_client_get_collection(g->thief, g->db, "jobs");
    bson_t *filter = BCON_NEW("_id", BCON_OID(mongoq_message_id(msg)));
    bson_oid_t other;
    bson_oid_init(&other, NULL);
    bson_t *update = BCON_NEW("$set", "{", "lease_token", BCON_OID(&other), "}");
    bool ok = mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error);
    bson_destroy(filter);
    bson_destroy(update);
    mongoc_collection_destroy(coll);
    if (ok) {
        wr_work(msg, 3000);
    }
    return wr_leave(g, msg);
}

Test(worker, handler_sees_a_lease_lost_by_the_heartbeat)
{
    world_t e;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.lease_ms = 900;
    world_open(&e, &qopts, 0);
    wr_gate_t gate;
    wr_gate_init(&gate);
    gate.thief = mtest_client_new("wkr-thief");
    gate.db = e.db;
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = wr_robbed;
    opts.user_data = &gate;
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    world_enqueue(e.queue, 0, NULL, NULL);
    cr_assert(mtest_wait_until(wr_gate_entered, &gate, 10000), "the handler finished");
    cr_assert(gate.lease_lost_seen, "the heartbeat told the handler");
    /* The worker counts an outcome after its write: stop first so the failed ack is counted. */
    cr_assert(mongoq_worker_stop(w, 5000, NULL));
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    cr_assert_eq(c.lease_lost, 1, "once per message: the heartbeat's finding and the ack's");
    cr_assert_eq(c.acked, 0);
    mongoq_worker_destroy(w);
    mongoc_client_destroy(gate.thief);
    wr_gate_destroy(&gate);
    world_close(&e);
}

static mongoq_worker_t *wr_signalled;

static void
wr_on_signal(int sig)
{
    (void)sig;
    mongoq_worker_request_stop(wr_signalled);
}

Test(worker, request_stop_from_a_signal_handler)
{
    world_t e;
    bson_error_t error;
    world_open(&e, NULL, 0);
    world_rec_t rec;
    world_rec_init(&rec);
    wr_signalled = world_worker_start(e.queue, &rec, 2);
    world_enqueue(e.queue, 0, NULL, NULL);
    cr_assert(world_await_started(&rec, 0, 5000));

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = wr_on_signal;
    sigemptyset(&sa.sa_mask);
    cr_assert(sigaction(SIGUSR1, &sa, &old) == 0);
    cr_assert(raise(SIGUSR1) == 0);
    int64_t t0 = mtest_now_ms();
    cr_assert(mongoq_worker_stop(wr_signalled, 5000, &error), "%s", error.message);
    cr_assert_leq(mtest_now_ms() - t0, 1000, "idle threads stop promptly");
    sigaction(SIGUSR1, &old, NULL);

    world_enqueue(e.queue, 1, NULL, NULL);
    cr_assert_eq(world_count(&e, "{\"status\": \"ready\"}"), 1, "nothing claimed");
    cr_assert_eq(rec.runs[1], 0);
    mongoq_worker_destroy(wr_signalled);
    world_rec_destroy(&rec);
    world_close(&e);
}

Test(worker, invalid_options_are_refused)
{
    world_t e;
    bson_error_t error;
    world_open(&e, NULL, 0);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error), "no handler");
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    opts.handler = world_record;
    opts.threads = 257;
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error));
    opts.threads = 1;
    opts.batch = 1001;
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error));
    opts.batch = 1;
    opts.lease_ms = -1;
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error));
    opts.lease_ms = MONGOQ_MAX_DURATION_MS + 1;
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error));
    opts.lease_ms = 0;
    opts.heartbeat_ms = MONGOQ_MAX_DURATION_MS + 1;
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    opts.heartbeat_ms = 0;
    char name[MONGOQ_MAX_NAME_BYTES];
    memset(name, 'w', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    opts.name = name; /* no room left for ":<thread>" */
    cr_assert_null(mongoq_worker_new(e.queue, &opts, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    opts.name = NULL;
    cr_assert_null(mongoq_worker_new(e.queue, NULL, &error));

    world_rec_t rec;
    world_rec_init(&rec);
    opts.lease_ms = 0;
    opts.user_data = &rec;
    mongoq_worker_t *w = world_worker_run(e.queue, &opts);
    cr_assert_not(mongoq_worker_start(w, &error), "started twice");
    mongoq_worker_destroy(w);
    mongoq_worker_destroy(NULL);
    /* A worker never started is destroyed cleanly too. */
    w = mongoq_worker_new(e.queue, &opts, &error);
    cr_assert(w != NULL);
    cr_assert(mongoq_worker_stop(w, 0, &error));
    mongoq_worker_destroy(w);
    world_rec_destroy(&rec);
    world_close(&e);
}

static bool
wr_reaped(void *ctx)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(ctx, &c);
    return c.reaped >= 1;
}

Test(worker, background_reaper_returns_an_abandoned_message)
{
    world_t e;
    bson_error_t error;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.lease_ms = 300;
    qopts.reap_interval_ms = 100;
    world_open(&e, &qopts, 0);
    world_enqueue(e.queue, 0, NULL, NULL);
    mongoq_consumer_t *c1 = mongoq_consumer_new(e.queue, NULL, &error);
    mongoq_message_t *msg = NULL;
    cr_assert(mongoq_consumer_claim(c1, 1000, &msg, &error) && msg, "claim");
    mongoq_message_destroy(msg); /* abandoned: no ack, no retry */
    cr_assert(mtest_wait_until(wr_reaped, e.queue, 5000), "the background reaper ran");
    cr_assert_eq(world_count(&e, "{\"status\": \"ready\", \"attempts\": 1}"), 1);
    mongoq_consumer_destroy(c1);
    world_close(&e);
}

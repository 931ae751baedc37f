/* mongoq-stress, part 2: a worker stopped mid-flight, a second one drains the rest. */

#include "stress.h"

/* ---- part 2: a worker stopped mid-flight, a second one drains the rest ----------------------- */

#define P2_N 400
#define P2_PRODUCERS 2
#define P2_LEASE_MS 1500
#define P2_HEARTBEAT_MS 150
#define P2_SLOW_MS 1800 /* longer than the lease: only the heartbeat keeps it */
#define P2_DEADLINE_MS 60000

static bool
p2_is_slow(int seq)
{
    return seq % 100 == 5;
}

typedef struct {
    part_t *part;
    atomic_int *runs;  /* per seq, over both workers */
    atomic_int calls;  /* this worker's handler calls */
} p2_ctx_t;

static mongoq_result_t
p2_handler(mongoq_message_t *msg, void *user_data)
{
    p2_ctx_t *ctx = user_data;
    int seq = stress_seq_of(ctx->part, msg, P2_N);
    atomic_fetch_add(&ctx->calls, 1);
    if (seq < 0) {
        return MONGOQ_FAIL;
    }
    int runs = atomic_fetch_add(&ctx->runs[seq], 1) + 1;
    CHECK(ctx->part, runs == 1, "message %d handled %d times", seq, runs);
    stress_sleep_ms(p2_is_slow(seq) ? P2_SLOW_MS : 1);
    CHECK(ctx->part, !mongoq_message_lease_lost(msg),
          "message %d lost its lease while its handler ran (heartbeat)", seq);
    return MONGOQ_ACK;
}

typedef struct {
    part_t *part;
    mongoq_queue_t *queue;
    int index;
    pthread_t thread;
} p2_producer_t;

/* Batches of 5 and single messages, paced so the first worker is stopped mid-flight. */
static void *
p2_producer(void *arg)
{
    p2_producer_t *t = arg;
    int per = P2_N / P2_PRODUCERS, seq = t->index * per, end = seq + per;
    for (int round = 0; seq < end && round < per; round++) {
        int n = round % 2 == 0 ? 5 : 1;
        n = n > end - seq ? end - seq : n;
        if (!stress_enqueue_seqs(t->part, t->queue, seq, n)) {
            return NULL;
        }
        seq += n;
        stress_sleep_ms(5);
    }
    return NULL;
}

static mongoq_worker_t *
p2_worker_start(part_t *part, mongoq_queue_t *q, p2_ctx_t *ctx, const char *name)
{
    bson_error_t error;
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = p2_handler;
    opts.user_data = ctx;
    opts.threads = 4;
    opts.batch = 10;
    opts.heartbeat_ms = P2_HEARTBEAT_MS;
    opts.name = name;
    mongoq_worker_t *w = mongoq_worker_new(q, &opts, &error);
    if (!CHECK(part, w != NULL, "worker_new: %s", error.message)) {
        return NULL;
    }
    if (!CHECK(part, mongoq_worker_start(w, &error), "worker_start: %s", error.message)) {
        mongoq_worker_destroy(w);
        return NULL;
    }
    return w;
}

typedef struct {
    mongoq_worker_t *a, *b;
    int64_t acked;
} p2_progress_t;

static bool
p2_acked_reached(void *arg)
{
    p2_progress_t *pr = arg;
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    int64_t acked = 0;
    if (pr->a) {
        mongoq_worker_counters(pr->a, &c);
        acked += c.acked;
    }
    if (pr->b) {
        mongoq_worker_counters(pr->b, &c);
        acked += c.acked;
    }
    return acked >= pr->acked;
}

/* Stops with a short timeout (a slow handler may outlast it: STOPPED), then for good. */
static void
p2_stop_mid_flight(part_t *part, mongoq_worker_t *w)
{
    bson_error_t error;
    int64_t t0 = stress_now_ms();
    bool stopped = mongoq_worker_stop(w, 50, &error);
    bool timed_out = !stopped;
    if (!stopped) {
        CHECK(part, error.domain == MONGOQ_ERROR_DOMAIN && error.code == MONGOQ_ERROR_STOPPED,
              "a timed-out stop: domain %u code %u: %s", error.domain, error.code, error.message);
        stopped = mongoq_worker_stop(w, 10000, &error);
    }
    CHECK(part, stopped, "worker_stop: %s", error.message);
    printf("stress: %s: first worker stopped in %" PRId64 " ms (the 50 ms stop %s)\n",
           part->name, stress_now_ms() - t0, timed_out ? "timed out" : "was enough");
}

/* The first worker is stopped: what it did adds up, and it holds nothing any more. */
static void
p2_check_first(part_t *part, env_t *e, mongoq_worker_t *w, p2_ctx_t *ctx)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    CHECK(part, c.acked == atomic_load(&ctx->calls), "first worker: acked %" PRId64
          " of %d handled", c.acked, atomic_load(&ctx->calls));
    CHECK(part, c.claimed >= c.acked && c.lease_lost == 0 && c.retried == 0 && c.failed == 0,
          "first worker: claimed %" PRId64 " acked %" PRId64 " lease_lost %" PRId64
          " retried %" PRId64 " failed %" PRId64,
          c.claimed, c.acked, c.lease_lost, c.retried, c.failed);
    CHECK(part, c.acked < P2_N, "first worker handled everything: not stopped mid-flight");
    int64_t processing = stress_count_docs(e, "{\"status\": \"processing\"}");
    CHECK(part, processing == 0, "%" PRId64 " messages still processing after the first stop",
          processing);
}

static void
p2_check_end(part_t *part, env_t *e, mongoq_queue_t *q, mongoq_worker_t *a, mongoq_worker_t *b,
             atomic_int *runs)
{
    mongoq_counters_t ca = MONGOQ_COUNTERS_INIT, cb = MONGOQ_COUNTERS_INIT, cq = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(a, &ca);
    mongoq_worker_counters(b, &cb);
    mongoq_queue_counters(q, &cq);
    for (int seq = 0; seq < P2_N; seq++) {
        CHECK(part, atomic_load(&runs[seq]) == 1, "message %d handled %d times", seq,
              atomic_load(&runs[seq]));
    }
    CHECK(part, ca.acked + cb.acked == P2_N && cq.acked == P2_N,
          "acked %" PRId64 " + %" PRId64 " (queue %" PRId64 "), want %d", ca.acked, cb.acked,
          cq.acked, P2_N);
    CHECK(part, cq.claimed == ca.claimed + cb.claimed && cq.enqueued == P2_N,
          "queue claimed %" PRId64 " vs workers %" PRId64 " + %" PRId64 ", enqueued %" PRId64,
          cq.claimed, ca.claimed, cb.claimed, cq.enqueued);
    CHECK(part, cb.lease_lost == 0 && cq.lease_lost == 0, "lease_lost %" PRId64 " / %" PRId64,
          cb.lease_lost, cq.lease_lost);
    int64_t left = stress_count_docs(e, "{}");
    CHECK(part, left == 0, "%" PRId64 " documents left", left);
    printf("stress: %s: first worker acked %" PRId64 " (claimed %" PRId64 "), second %" PRId64
           " (claimed %" PRId64 ")\n",
           part->name, ca.acked, ca.claimed, cb.acked, cb.claimed);
}

static void
p2_run(part_t *part, env_t *e, mongoq_queue_t *q, atomic_int *runs)
{
    p2_ctx_t ca = {.part = part, .runs = runs}, cb = {.part = part, .runs = runs};
    p2_producer_t producers[P2_PRODUCERS];
    mongoq_worker_t *a = p2_worker_start(part, q, &ca, "stress-a"), *b = NULL;
    if (!a) {
        return;
    }
    for (int i = 0; i < P2_PRODUCERS; i++) {
        producers[i] = (p2_producer_t){.part = part, .queue = q, .index = i};
        BSON_ASSERT(pthread_create(&producers[i].thread, NULL, p2_producer, &producers[i]) == 0);
    }
    p2_progress_t pr = {.a = a, .acked = P2_N / 3};
    CHECK(part, stress_wait_until(p2_acked_reached, &pr, 20000), "first worker acked < %d in 20 s",
          P2_N / 3);
    p2_stop_mid_flight(part, a);
    p2_check_first(part, e, a, &ca);
    b = p2_worker_start(part, q, &cb, "stress-b");
    for (int i = 0; i < P2_PRODUCERS; i++) {
        pthread_join(producers[i].thread, NULL);
    }
    if (b) {
        pr = (p2_progress_t){.a = a, .b = b, .acked = P2_N};
        CHECK(part, stress_wait_until(p2_acked_reached, &pr, P2_DEADLINE_MS), "not all acked in time");
        bson_error_t error;
        CHECK(part, mongoq_worker_stop(b, 10000, &error), "second stop: %s", error.message);
        p2_check_end(part, e, q, a, b, runs);
    }
    mongoq_worker_destroy(b);
    mongoq_worker_destroy(a);
}

void
stress_part_worker(part_t *part)
{
    env_t e;
    stress_env_open(&e, part);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = P2_LEASE_MS;
    mongoq_queue_t *q = stress_queue_open(&e, e.pool, &opts);
    if (q) {
        atomic_int *runs = stress_counts_new(P2_N);
        p2_run(part, &e, q, runs);
        bson_free(runs);
    }
    mongoq_queue_destroy(q);
    stress_env_close(&e);
}

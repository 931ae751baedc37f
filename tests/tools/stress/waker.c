/* mongoq-stress, part 3: idle consumers woken by the change stream while the reaper runs. */

#include "stress.h"

/* ---- part 3: idle consumers woken by the change stream, the reaper running -------------------- */

#define P3_N 24
#define P3_CONSUMERS 4 /* the last one abandons what it claims first */
/* Every consumer also acks (the abandoner a message's later attempts): a lease long enough for
 * claim -> ack on a starved ThreadSanitizer run; an abandoned message is back 3 s later. */
#define P3_LEASE_MS 3000
#define P3_REAP_MS 100
#define P3_POLL_MS 10000     /* so only the change stream can wake idle consumers quickly */
#define P3_CLAIM_WAIT_MS 4000
#define P3_READY_WAIT_MS 10000 /* for every consumer to wait on the open stream */
#define P3_MAX_LATENCY_MS 2000
#define P3_DEADLINE_MS 40000

typedef struct {
    part_t *part;
    mongoq_queue_t *queue;    /* the consumers' handle */
    mongoq_queue_t *producer; /* another handle on another pool: wakes nobody in-process */
    atomic_int *claims, *acked, *abandoned;
    atomic_int_least64_t enqueued_at[P3_N];
    atomic_int_least64_t max_latency_ms; /* enqueue -> first claim */
    atomic_int acked_total, abandoned_total;
    atomic_bool done;
    int64_t deadline;
} p3_t;

typedef struct {
    p3_t *p;
    int index;
    pthread_t thread;
} p3_thread_t;

static void
p3_note_latency(p3_t *p, int seq)
{
    int64_t latency = stress_now_ms() - atomic_load(&p->enqueued_at[seq]);
    int64_t max = atomic_load(&p->max_latency_ms);
    for (int i = 0; i < 1000 && latency > max; i++) {
        if (atomic_compare_exchange_weak(&p->max_latency_ms, &max, latency)) {
            break;
        }
    }
}

/*
 * Acks msg, or abandons it (no ack: the lease is left to expire) on its first attempt when the
 * abandoner claimed it or its seq is a multiple of 4.
 */
static void
p3_handle(p3_t *p, mongoq_message_t *msg, bool abandoner)
{
    bson_error_t error;
    int seq = stress_seq_of(p->part, msg, P3_N);
    if (seq >= 0) {
        int claims = atomic_fetch_add(&p->claims[seq], 1) + 1;
        if (claims == 1) {
            p3_note_latency(p, seq);
        }
        if ((abandoner || seq % 4 == 0) && mongoq_message_attempts(msg) == 1) {
            atomic_fetch_add(&p->abandoned[seq], 1);
            atomic_fetch_add(&p->abandoned_total, 1);
            mongoq_message_destroy(msg);
            return;
        }
    }
    if (CHECK(p->part, mongoq_message_ack(msg, &error), "ack of %d: %s", seq, error.message) &&
        seq >= 0) {
        atomic_fetch_add(&p->acked[seq], 1);
        atomic_fetch_add(&p->acked_total, 1);
    }
    mongoq_message_destroy(msg);
}

static void *
p3_consumer(void *arg)
{
    p3_thread_t *t = arg;
    p3_t *p = t->p;
    bool abandoner = t->index == P3_CONSUMERS - 1;
    mongoq_consumer_t *c = stress_consumer_new(p->part, p->queue, "p3", t->index);
    for (int round = 0; c && round < 10000 && !atomic_load(&p->done) && stress_now_ms() < p->deadline;
         round++) {
        mongoq_message_t *msgs[3];
        size_t n = 0;
        bson_error_t error;
        bool ok = abandoner
                      ? mongoq_consumer_claim_many(c, 3, P3_CLAIM_WAIT_MS, msgs, &n, &error)
                      : mongoq_consumer_claim(c, P3_CLAIM_WAIT_MS, &msgs[0], &error);
        if (!CHECK(p->part, ok, "claim: %s", error.message)) {
            break;
        }
        n = abandoner ? n : (msgs[0] != NULL);
        for (size_t i = 0; i < n; i++) {
            p3_handle(p, msgs[i], abandoner);
        }
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

typedef struct {
    p3_t *p;
    int seq;
} p3_next_t;

/*
 * Message seq may go: the one before it was claimed, the change stream is open, and every
 * consumer waits for work (idle_consumers: the waker's own count of its waiters), so only the
 * stream's event can wake them in time.
 */
static bool
p3_ready_for(void *arg)
{
    p3_next_t *next = arg;
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    if (next->seq > 0 && atomic_load(&next->p->claims[next->seq - 1]) == 0) {
        return false;
    }
    mongoq_queue_counters(next->p->queue, &c);
    return c.change_stream_active && c.idle_consumers == P3_CONSUMERS;
}

/* One message at a time, each once every consumer waits on the open change stream. */
static void *
p3_producer(void *arg)
{
    p3_t *p = arg;
    for (int seq = 0; seq < P3_N && stress_now_ms() < p->deadline; seq++) {
        p3_next_t next = {.p = p, .seq = seq};
        if (!CHECK(p->part, stress_wait_until(p3_ready_for, &next, P3_READY_WAIT_MS),
                   "message %d: consumers not all waiting on the open stream in %d ms", seq,
                   P3_READY_WAIT_MS)) {
            break;
        }
        atomic_store(&p->enqueued_at[seq], stress_now_ms());
        if (!stress_enqueue_seqs(p->part, p->producer, seq, 1)) {
            break;
        }
    }
    return NULL;
}

/* Reads stats and counters while everything runs; true once the change stream was open. */
static bool
p3_monitor(p3_t *p)
{
    bool stream_seen = false;
    for (int i = 0; i < 2000 && atomic_load(&p->acked_total) < P3_N && stress_now_ms() < p->deadline;
         i++) {
        mongoq_stats_t stats = MONGOQ_STATS_INIT;
        mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
        bson_error_t error;
        CHECK(p->part, mongoq_queue_stats(p->queue, &stats, &error), "stats: %s", error.message);
        mongoq_queue_counters(p->queue, &c);
        stream_seen = stream_seen || c.change_stream_active;
        stress_sleep_ms(20);
    }
    return stream_seen;
}

static void
p3_check(p3_t *p, env_t *e, bool stream_seen)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(p->queue, &c);
    for (int seq = 0; seq < P3_N; seq++) {
        int claims = atomic_load(&p->claims[seq]), abandoned = atomic_load(&p->abandoned[seq]);
        CHECK(p->part, atomic_load(&p->acked[seq]) == 1 && claims == 1 + abandoned,
              "message %d: acked %d, claimed %d, abandoned %d", seq, atomic_load(&p->acked[seq]),
              claims, abandoned);
    }
    int abandoned = atomic_load(&p->abandoned_total);
    CHECK(p->part, abandoned >= P3_N / 4, "only %d abandoned", abandoned);
    CHECK(p->part, stream_seen && !c.polling_fallback, "the change stream never opened");
    CHECK(p->part, c.wakeups_change_stream > 0, "no consumer was woken by the change stream");
    CHECK(p->part, c.reaped >= abandoned, "reaped %" PRId64 " of %d abandoned", c.reaped,
          abandoned);
    CHECK(p->part, c.lease_lost == 0, "lease_lost %" PRId64, c.lease_lost);
    int64_t max = atomic_load(&p->max_latency_ms);
    CHECK(p->part, max < P3_MAX_LATENCY_MS, "an idle consumer took %" PRId64 " ms to wake", max);
    int64_t left = stress_count_docs(e, "{\"payload.seq\": {\"$gte\": 0}}");
    CHECK(p->part, left == 0, "%" PRId64 " messages left", left);
    printf("stress: %s: %d abandoned, %" PRId64 " reaped, %" PRId64 " change-stream wake-ups, "
           "slowest wake %" PRId64 " ms\n",
           p->part->name, abandoned, c.reaped, c.wakeups_change_stream, max);
}

static void
p3_run(p3_t *p, env_t *e)
{
    p3_thread_t consumers[P3_CONSUMERS];
    pthread_t producer;
    for (int i = 0; i < P3_CONSUMERS; i++) {
        consumers[i] = (p3_thread_t){.p = p, .index = i};
        BSON_ASSERT(pthread_create(&consumers[i].thread, NULL, p3_consumer, &consumers[i]) == 0);
    }
    BSON_ASSERT(pthread_create(&producer, NULL, p3_producer, p) == 0);
    bool stream_seen = p3_monitor(p);
    pthread_join(producer, NULL);
    /* Poison messages (seq -1) end the consumers' waits; each then sees done and returns. */
    atomic_store(&p->done, true);
    for (int i = 0; i < 2 * P3_CONSUMERS; i++) {
        stress_enqueue_seqs(p->part, p->producer, -1, 1);
    }
    for (int i = 0; i < P3_CONSUMERS; i++) {
        pthread_join(consumers[i].thread, NULL);
    }
    p3_check(p, e, stream_seen);
}

void
stress_part_waker(part_t *part)
{
    env_t e;
    stress_env_open(&e, part);
    mongoc_client_pool_t *producer_pool = stress_pool_new("stress-producer");
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT, popts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = P3_LEASE_MS;
    opts.reap_interval_ms = P3_REAP_MS;
    opts.poll_interval_ms = P3_POLL_MS;
    popts.no_reaper = true;
    popts.skip_ensure_indexes = true;
    p3_t *p = bson_malloc0(sizeof *p);
    p->part = part;
    p->deadline = stress_now_ms() + P3_DEADLINE_MS;
    p->queue = stress_queue_open(&e, e.pool, &opts);
    p->producer = p->queue ? stress_queue_open(&e, producer_pool, &popts) : NULL;
    if (p->producer) {
        p->claims = stress_counts_new(P3_N);
        p->acked = stress_counts_new(P3_N);
        p->abandoned = stress_counts_new(P3_N);
        p3_run(p, &e);
        bson_free(p->claims);
        bson_free(p->acked);
        bson_free(p->abandoned);
    }
    mongoq_queue_destroy(p->producer);
    mongoq_queue_destroy(p->queue);
    bson_free(p);
    mongoc_client_pool_destroy(producer_pool);
    stress_env_close(&e);
}

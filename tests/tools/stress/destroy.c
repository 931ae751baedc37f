/* mongoq-stress, part 5: destroying a queue while its waker waits. */

#include "stress.h"

/* ---- part 5: destroying a queue while its waker waits ------------------------------------------- */

#define P5_ROUNDS 6
/*
 * The waker's thread notices a stop between server round trips (a change stream's getMore
 * waits up to 300 ms). With a producer keeping the server busy one getMore can take a second or
 * so on the test server, so the busy variant gets more room.
 */
#define P5_MAX_DESTROY_MS 2000
#define P5_MAX_BUSY_DESTROY_MS 5000

typedef struct {
    part_t *part;
    mongoq_queue_t *queue; /* a second handle on its own pool */
    atomic_bool stop;
    atomic_int batches;
} p5_busy_t;

/* Keeps the change stream busy: batches of 16 until told to stop (at most 5000 batches). */
static void *
p5_busy_producer(void *arg)
{
    p5_busy_t *b = arg;
    for (int i = 0; i < 5000 && !atomic_load(&b->stop); i++) {
        if (!stress_enqueue_seqs(b->part, b->queue, 0, 16)) {
            break;
        }
        atomic_fetch_add(&b->batches, 1);
    }
    return NULL;
}

static bool
p5_stream_open(void *arg)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(arg, &c);
    return c.change_stream_active;
}

static bool
p5_busy_started(void *arg)
{
    return atomic_load(&((p5_busy_t *)arg)->batches) >= 3;
}

/*
 * Claims with a wait, which starts the waker's thread and the reaper; with await_stream, again
 * until the change stream is open (a claim whose first attempt outlasts its wait never waits,
 * so it does not start the waker: likely under ThreadSanitizer).
 */
static void
p5_start_threads(part_t *part, mongoq_queue_t *q, bool await_stream)
{
    bson_error_t error;
    mongoq_consumer_t *c = stress_consumer_new(part, q, "p5", 0);
    int64_t deadline = stress_now_ms() + 10000;
    for (int i = 0; c && i < 1000; i++) {
        mongoq_message_t *msg = NULL;
        if (!CHECK(part, mongoq_consumer_claim(c, 100, &msg, &error), "claim: %s",
                   error.message)) {
            break;
        }
        mongoq_message_destroy(msg); /* abandoned: a busy round may find one */
        if (!await_stream || p5_stream_open(q)) {
            break;
        }
        if (!CHECK(part, stress_now_ms() < deadline, "the change stream did not open in 10 s")) {
            break;
        }
    }
    mongoq_consumer_destroy(c);
}

/*
 * variant 0: destroy at once (the thread may still be popping a client or opening the stream);
 * 1: once it waits (change stream open / polling for a while); 2: while a producer keeps it busy.
 */
static void
p5_round(part_t *part, env_t *e, bool stream, int variant)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_change_stream = !stream;
    opts.poll_interval_ms = 10000; /* a destroy that waited out a pause would show */
    opts.lease_ms = 1000;
    mongoq_queue_t *q = stress_queue_open(e, e->pool, &opts);
    if (!q) {
        return;
    }
    mongoc_client_pool_t *busy_pool = stress_pool_new("stress-busy");
    mongoq_queue_opts_t bopts = MONGOQ_QUEUE_OPTS_INIT;
    bopts.no_reaper = bopts.skip_ensure_indexes = true;
    p5_busy_t busy = {.part = part};
    pthread_t busy_thread;
    bool busy_on = false;
    p5_start_threads(part, q, variant >= 1 && stream);
    if (variant >= 1 && !stream) {
        stress_sleep_ms(300); /* several polls: nothing to await in polling mode */
    }
    if (variant == 2) {
        busy.queue = stress_queue_open(e, busy_pool, &bopts);
        busy_on = busy.queue && pthread_create(&busy_thread, NULL, p5_busy_producer, &busy) == 0;
        CHECK(part, busy_on && stress_wait_until(p5_busy_started, &busy, 10000), "no busy producer");
    }
    int64_t t0 = stress_now_ms();
    mongoq_queue_destroy(q);
    int64_t took = stress_now_ms() - t0;
    CHECK(part, took < (variant == 2 ? P5_MAX_BUSY_DESTROY_MS : P5_MAX_DESTROY_MS), "destroy (%s, variant %d) took %" PRId64 " ms",
          stream ? "stream" : "poll", variant, took);
    atomic_store(&busy.stop, true);
    if (busy_on) {
        pthread_join(busy_thread, NULL);
    }
    mongoq_queue_destroy(busy.queue);
    mongoc_client_pool_destroy(busy_pool);
    printf("stress: %s: destroy (%s, variant %d) took %" PRId64 " ms\n", part->name,
           stream ? "stream" : "poll", variant, took);
}

void
stress_part_destroy(part_t *part)
{
    env_t e;
    stress_env_open(&e, part);
    for (int round = 0; round < P5_ROUNDS; round++) {
        p5_round(part, &e, round % 2 == 0, round / 2);
    }
    stress_env_close(&e);
}

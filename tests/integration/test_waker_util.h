/*
 * Helpers shared by the waker and worker tests (header-only: every integration .c file links
 * into one program, so these are static).
 *
 * A test runs a worker on a "watching" queue handle W (its own pool, so its consumers learn of
 * new messages only through W's waker: change stream, timer or poll) and enqueues through a
 * separate producing handle P on another pool (P's in-process notifications never reach W).
 * The handler records when each message (payload {i: n}) started.
 */
#ifndef MONGOQ_TEST_WAKER_UTIL_H
#define MONGOQ_TEST_WAKER_UTIL_H

#include "testutil.h"

#include <criterion/criterion.h>
#include <mongoq/mongoq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define WK_MAX 2048

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int64_t started_at[WK_MAX]; /* mtest_now_ms() when the handler first saw message i */
    int runs[WK_MAX];           /* how often the handler ran message i */
    int total;                  /* handler runs */
    mongoq_result_t result;     /* what the handler answers */
} wk_rec_t;

static inline void
wk_rec_init(wk_rec_t *rec)
{
    memset(rec, 0, sizeof *rec);
    pthread_mutex_init(&rec->mu, NULL);
    pthread_cond_init(&rec->cond, NULL);
    rec->result = MONGOQ_ACK;
}

static inline void
wk_rec_destroy(wk_rec_t *rec)
{
    pthread_cond_destroy(&rec->cond);
    pthread_mutex_destroy(&rec->mu);
}

static inline int
wk_payload_i(const mongoq_message_t *msg)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, mongoq_message_payload(msg), "i") && BSON_ITER_HOLDS_INT32(&it)) {
        int i = bson_iter_int32(&it);
        return i >= 0 && i < WK_MAX ? i : -1;
    }
    return -1;
}

static inline mongoq_result_t
wk_record(mongoq_message_t *msg, void *user_data)
{
    wk_rec_t *rec = user_data;
    int i = wk_payload_i(msg);
    int64_t now = mtest_now_ms();
    pthread_mutex_lock(&rec->mu);
    if (i >= 0) {
        if (rec->runs[i]++ == 0) {
            rec->started_at[i] = now;
        }
    }
    rec->total++;
    mongoq_result_t result = rec->result;
    pthread_cond_broadcast(&rec->cond);
    pthread_mutex_unlock(&rec->mu);
    return result;
}

static inline void
wk_deadline(int64_t timeout_ms, struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
    int64_t ns = ts->tv_nsec + (timeout_ms % 1000) * 1000000;
    ts->tv_sec += (time_t)(timeout_ms / 1000 + ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

/* Waits until message i started; false on timeout. */
static inline bool
wk_await_started(wk_rec_t *rec, int i, int64_t timeout_ms)
{
    struct timespec ts;
    wk_deadline(timeout_ms, &ts);
    pthread_mutex_lock(&rec->mu);
    while (rec->runs[i] == 0 && pthread_cond_timedwait(&rec->cond, &rec->mu, &ts) == 0) {
    }
    bool ok = rec->runs[i] > 0;
    pthread_mutex_unlock(&rec->mu);
    return ok;
}

/* Waits until messages 0 .. n-1 all started; returns how many did. */
static inline int
wk_await_all(wk_rec_t *rec, int n, int64_t timeout_ms)
{
    struct timespec ts;
    int seen = 0;
    wk_deadline(timeout_ms, &ts);
    pthread_mutex_lock(&rec->mu);
    for (;;) {
        seen = 0;
        for (int i = 0; i < n; i++) {
            seen += rec->runs[i] > 0;
        }
        if (seen == n || pthread_cond_timedwait(&rec->cond, &rec->mu, &ts) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&rec->mu);
    return seen;
}

static inline void
wk_enqueue(mongoq_queue_t *queue, int i, int64_t delay_ms)
{
    bson_error_t error;
    bson_t *payload = BCON_NEW("i", BCON_INT32(i));
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.delay_ms = delay_ms;
    cr_assert(mongoq_enqueue(queue, payload, &opts, NULL, &error), "enqueue %d: %s", i,
              error.message);
    bson_destroy(payload);
}

/* Counts log lines containing a substring (thread-safe). */
typedef struct {
    atomic_int matches;
    const char *needle;
} wk_log_t;

static inline void
wk_log_fn(mongoq_log_level_t level, const char *message, void *user_data)
{
    wk_log_t *log = user_data;
    (void)level;
    if (log && log->needle && strstr(message, log->needle)) {
        atomic_fetch_add(&log->matches, 1);
    }
}

static inline bool
wk_stream_active(void *ctx)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(ctx, &c);
    return c.change_stream_active;
}

/* A started worker on queue; asserts both steps. */
static inline mongoq_worker_t *
wk_worker_run(mongoq_queue_t *queue, const mongoq_worker_opts_t *opts)
{
    bson_error_t error;
    mongoq_worker_t *worker = mongoq_worker_new(queue, opts, &error);
    cr_assert(worker != NULL, "worker_new: %s", error.message);
    cr_assert(mongoq_worker_start(worker, &error), "worker_start: %s", error.message);
    return worker;
}

/* A worker on queue running wk_record. */
static inline mongoq_worker_t *
wk_worker_start(mongoq_queue_t *queue, wk_rec_t *rec, int threads)
{
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = wk_record;
    opts.user_data = rec;
    opts.threads = threads;
    return wk_worker_run(queue, &opts);
}

/* For mtest_wait_until: the worker has acknowledged at least `acked` messages. */
typedef struct {
    mongoq_worker_t *worker;
    int64_t acked;
} wk_acked_t;

static inline bool
wk_acked_reached(void *ctx)
{
    wk_acked_t *a = ctx;
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(a->worker, &c);
    return c.acked >= a->acked;
}

static inline int64_t
wk_count(mongoc_client_t *client, const char *db, const char *json)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "q");
    int64_t n = mtest_count(coll, json);
    mongoc_collection_destroy(coll);
    return n;
}

#endif

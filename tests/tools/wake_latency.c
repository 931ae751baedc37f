/*
 * mongoq-wake-latency: how long an idle worker takes to start a message after it is enqueued.
 *
 *   mongoq-wake-latency [--uri URI] [--n 1000] [--mode stream|poll] [--poll-ms 100] [--gap-ms 0]
 *
 * A worker (1 thread) runs on one queue handle; messages are enqueued one at a time through a
 * second handle on another pool, so the worker learns of them only through its waker: the change
 * stream (--mode stream, poll interval 10 s so polling cannot help) or polling alone (--mode
 * poll, no change stream, --poll-ms). Each message is enqueued once the worker acked the previous
 * one and has been idle for --gap-ms. Prints min / median / p99 / max of enqueue -> handler start.
 * URI defaults to $MONGOQ_TEST_URI. Uses database wake_latency_<pid>, dropped at the end.
 */
#include <mongoq/mongoq.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_N 100000

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int64_t *started_us; /* 0 until message i started */
    int n;
} latency_t;

static int64_t
now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static mongoq_result_t
on_message(mongoq_message_t *msg, void *user_data)
{
    latency_t *lat = user_data;
    int64_t t = now_us();
    bson_iter_t it;
    if (bson_iter_init_find(&it, mongoq_message_payload(msg), "i") && BSON_ITER_HOLDS_INT32(&it)) {
        int i = bson_iter_int32(&it);
        pthread_mutex_lock(&lat->mu);
        if (i >= 0 && i < lat->n && lat->started_us[i] == 0) {
            lat->started_us[i] = t;
        }
        pthread_cond_broadcast(&lat->cond);
        pthread_mutex_unlock(&lat->mu);
    }
    return MONGOQ_ACK;
}

/* Waits up to 10 s for message i; its start time or 0. */
static int64_t
await_start(latency_t *lat, int i)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    pthread_mutex_lock(&lat->mu);
    while (lat->started_us[i] == 0 && pthread_cond_timedwait(&lat->cond, &lat->mu, &ts) == 0) {
    }
    int64_t t = lat->started_us[i];
    pthread_mutex_unlock(&lat->mu);
    return t;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const char *uri;
    int n;
    bool poll;
    int64_t poll_ms;
    int64_t gap_ms;
} args_t;

static bool
parse_args(int argc, char **argv, args_t *a)
{
    a->uri = getenv("MONGOQ_TEST_URI");
    a->n = 1000;
    a->poll = false;
    a->poll_ms = 100;
    a->gap_ms = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--uri")) {
            a->uri = argv[i + 1];
        } else if (!strcmp(argv[i], "--n")) {
            a->n = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--mode")) {
            a->poll = !strcmp(argv[i + 1], "poll");
        } else if (!strcmp(argv[i], "--poll-ms")) {
            a->poll_ms = atoll(argv[i + 1]);
        } else if (!strcmp(argv[i], "--gap-ms")) {
            a->gap_ms = atoll(argv[i + 1]);
        } else {
            return false;
        }
    }
    return a->uri && a->n > 0 && a->n <= MAX_N && a->poll_ms > 0 && a->gap_ms >= 0 &&
           argc % 2 == 1;
}

static mongoq_queue_t *
open_queue(mongoc_client_pool_t *pool, const char *db, const args_t *a, bool watching)
{
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.poll_interval_ms = a->poll ? a->poll_ms : 10000;
    opts.no_change_stream = watching && a->poll;
    mongoq_queue_t *q = mongoq_queue_new(pool, db, "q", &opts, &error);
    if (!q) {
        fprintf(stderr, "queue: %s\n", error.message);
    }
    return q;
}

static void
report(const args_t *a, int64_t *lat_us, int n)
{
    qsort(lat_us, (size_t)n, sizeof lat_us[0], cmp_i64);
    int p99 = (int)((n * 99 + 99) / 100) - 1;
    printf("mode=%s n=%d gap_ms=%" PRId64 " latency_ms min=%.2f median=%.2f p99=%.2f max=%.2f\n",
           a->poll ? "poll" : "stream", n, a->gap_ms, lat_us[0] / 1000.0,
           lat_us[n / 2] / 1000.0, lat_us[p99 < 0 ? 0 : p99] / 1000.0, lat_us[n - 1] / 1000.0);
    if (a->poll) {
        printf("poll_ms=%" PRId64 "\n", a->poll_ms);
    }
}

/* The waker opens its stream on the worker's first wait: measure from when it is open. */
static void
await_waker(mongoq_queue_t *w, const args_t *a)
{
    for (int i = 0; i < 500 && !a->poll; i++) {
        mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
        mongoq_queue_counters(w, &c);
        if (c.change_stream_active || c.polling_fallback) {
            return;
        }
        usleep(10 * 1000);
    }
}

/* Waits (up to 10 s) until the worker acked `acked` messages: it is idle again. */
static void
await_idle(mongoq_worker_t *worker, int64_t acked)
{
    for (int i = 0; i < 50000; i++) {
        mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
        mongoq_worker_counters(worker, &c);
        if (c.acked >= acked) {
            return;
        }
        usleep(200);
    }
}

/* Enqueues one message at a time and records enqueue -> start; returns how many started. */
static int
measure(const args_t *a, mongoq_queue_t *producer, mongoq_worker_t *worker, latency_t *lat,
        int64_t *out)
{
    int done = 0;
    for (int i = 0; i < a->n; i++) {
        bson_error_t error;
        bson_t *payload = BCON_NEW("i", BCON_INT32(i));
        if (a->gap_ms > 0) {
            usleep((useconds_t)(a->gap_ms * 1000)); /* let the worker go idle */
        }
        int64_t t0 = now_us();
        bool ok = mongoq_enqueue(producer, payload, NULL, NULL, &error);
        bson_destroy(payload);
        if (!ok) {
            fprintf(stderr, "enqueue %d: %s\n", i, error.message);
            break;
        }
        int64_t started = await_start(lat, i);
        if (started == 0) {
            fprintf(stderr, "message %d did not start within 10 s\n", i);
            break;
        }
        out[done++] = started - t0;
        await_idle(worker, i + 1);
    }
    return done;
}

static int
run(const args_t *a)
{
    int rc = 1;
    char db[64];
    bson_error_t error;
    snprintf(db, sizeof db, "wake_latency_%d", (int)getpid());
    mongoc_uri_t *uri = mongoc_uri_new_with_error(a->uri, &error);
    if (!uri) {
        fprintf(stderr, "bad URI: %s\n", error.message);
        return 2;
    }
    mongoc_client_pool_t *wpool = mongoc_client_pool_new(uri);
    mongoc_client_pool_t *ppool = mongoc_client_pool_new(uri);
    latency_t lat = {.n = a->n};
    pthread_mutex_init(&lat.mu, NULL);
    pthread_cond_init(&lat.cond, NULL);
    lat.started_us = calloc((size_t)a->n, sizeof *lat.started_us);
    int64_t *lat_us = calloc((size_t)a->n, sizeof *lat_us);
    mongoq_queue_t *w = open_queue(wpool, db, a, true);
    mongoq_queue_t *p = w ? open_queue(ppool, db, a, false) : NULL;
    mongoq_worker_t *worker = NULL;
    if (p) {
        mongoq_worker_opts_t wopts = MONGOQ_WORKER_OPTS_INIT;
        wopts.handler = on_message;
        wopts.user_data = &lat;
        worker = mongoq_worker_new(w, &wopts, &error);
        if (!worker || !mongoq_worker_start(worker, &error)) {
            fprintf(stderr, "worker: %s\n", error.message);
            goto done;
        }
        await_waker(w, a);
        int n = measure(a, p, worker, &lat, lat_us);
        if (n > 0) {
            report(a, lat_us, n);
            rc = n == a->n ? 0 : 1;
        }
    }
done:
    mongoq_worker_destroy(worker);
    if (w) {
        mongoc_client_t *client = mongoc_client_pool_pop(ppool);
        mongoc_database_t *d = mongoc_client_get_database(client, db);
        mongoc_database_drop(d, NULL);
        mongoc_database_destroy(d);
        mongoc_client_pool_push(ppool, client);
    }
    mongoq_queue_destroy(p);
    mongoq_queue_destroy(w);
    mongoc_client_pool_destroy(wpool);
    mongoc_client_pool_destroy(ppool);
    mongoc_uri_destroy(uri);
    free(lat.started_us);
    free(lat_us);
    pthread_cond_destroy(&lat.cond);
    pthread_mutex_destroy(&lat.mu);
    return rc;
}

int
main(int argc, char **argv)
{
    args_t a;
    if (!parse_args(argc, argv, &a)) {
        fprintf(stderr, "usage: %s [--uri URI] [--n 1000] [--mode stream|poll] [--poll-ms 100] "
                        "[--gap-ms 0]\n(URI defaults to $MONGOQ_TEST_URI)\n",
                argv[0]);
        return 2;
    }
    mongoc_init();
    int rc = run(&a);
    mongoc_cleanup();
    return rc;
}

/* mongoq-bench's wake latency workload: enqueue to handler start, change stream versus polling. */

#include "bench.h"

/* ---- wake latency ------------------------------------------------------------------------- */

typedef struct {
    double *started; /* by seq */
    int n;
    int handled;
    pthread_mutex_t mu;
    pthread_cond_t cond;
} wake_ctx_t;

/* Waits until the handler has run `count` times or timeout_s passes. */
static void
wake_await(wake_ctx_t *ctx, int count, double timeout_s)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)timeout_s;
    pthread_mutex_lock(&ctx->mu);
    while (ctx->handled < count) {
        if (pthread_cond_timedwait(&ctx->cond, &ctx->mu, &deadline) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&ctx->mu);
}

static mongoq_result_t
wake_handler(mongoq_message_t *msg, void *user_data)
{
    wake_ctx_t *ctx = user_data;
    bson_iter_t it;
    if (bson_iter_init_find(&it, mongoq_message_payload(msg), "seq")) {
        int64_t seq = bson_iter_as_int64(&it);
        if (seq >= 0 && seq < ctx->n) {
            ctx->started[seq] = bench_now_s();
        }
    }
    pthread_mutex_lock(&ctx->mu);
    ctx->handled++;
    pthread_cond_broadcast(&ctx->cond);
    pthread_mutex_unlock(&ctx->mu);
    return MONGOQ_ACK;
}

/* Waits until a consumer of q waits for work (mongoq_counters_t.idle_consumers). */
static void
await_idle(mongoq_queue_t *q, double timeout_s)
{
    double deadline = bench_now_s() + timeout_s;
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    for (mongoq_queue_counters(q, &c); c.idle_consumers < 1 && bench_now_s() < deadline;
         mongoq_queue_counters(q, &c)) {
        struct timespec pause = {0, 100 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* Enqueues n messages one at a time to an idle worker; fills latencies (ms) by seq. */
static void
wake_run(bool change_stream, int n, double *latency_ms)
{
    bench_drop_db();
    mongoq_queue_t *q = bench_open_queue(!change_stream, change_stream ? 0 : 100);
    /* The producer is another process in real life: its own pool and queue handle, so its
     * enqueue cannot wake the worker in-process (mongoq notifies local waiters directly). */
    mongoc_client_pool_t *producer_pool = mongoc_client_pool_new(bench_uri_parsed);
    mongoc_client_pool_set_error_api(producer_pool, MONGOC_ERROR_API_VERSION_2);
    bson_error_t error;
    mongoq_queue_opts_t popts = MONGOQ_QUEUE_OPTS_INIT;
    popts.no_reaper = true;
    mongoq_queue_t *producer = mongoq_queue_new(producer_pool, bench_db_name, QUEUE_NAME, &popts, &error);
    if (!producer) {
        bench_die("producer queue", &error);
    }
    wake_ctx_t ctx = {.started = calloc((size_t)n, sizeof(double)), .n = n};
    pthread_mutex_init(&ctx.mu, NULL);
    pthread_cond_init(&ctx.cond, NULL);
    double *enqueued = calloc((size_t)n, sizeof(double));
    mongoq_worker_opts_t wopts = MONGOQ_WORKER_OPTS_INIT;
    wopts.handler = wake_handler;
    wopts.user_data = &ctx;
    wopts.threads = 1;
    mongoq_worker_t *w = mongoq_worker_new(q, &wopts, &error);
    if (!w || !mongoq_worker_start(w, &error)) {
        bench_die("worker", &error);
    }
    /* Let the worker go idle (its first claim finds nothing and it starts waiting). */
    struct timespec settle = {0, 300 * 1000 * 1000};
    nanosleep(&settle, NULL);
    /* Each message meets an idle worker: the previous one was handled and the worker waits on
     * the queue's waker again. Then a random pause of 0-20 ms (the workload: messages arrive
     * one by one, at times unrelated to the worker's polling). */
    unsigned seed = 12345;
    for (int i = 0; i < n; i++) {
        wake_await(&ctx, i, 5.0);
        await_idle(q, 5.0);
        struct timespec gap = {0, (long)(rand_r(&seed) % 21) * 1000 * 1000};
        nanosleep(&gap, NULL);
        bson_t payload;
        bench_make_payload(&payload, i, 100);
        enqueued[i] = bench_now_s();
        if (!mongoq_enqueue(producer, &payload, NULL, NULL, &error)) {
            bench_die("enqueue", &error);
        }
        bson_destroy(&payload);
    }
    wake_await(&ctx, n, 30.0);
    if (!mongoq_worker_stop(w, 5000, &error)) {
        bench_die("worker stop", &error);
    }
    mongoq_worker_destroy(w);
    for (int i = 0; i < n; i++) {
        latency_ms[i] = ctx.started[i] > 0 ? (ctx.started[i] - enqueued[i]) * 1000.0 : NAN;
    }
    free(ctx.started);
    free(enqueued);
    pthread_cond_destroy(&ctx.cond);
    pthread_mutex_destroy(&ctx.mu);
    mongoq_queue_destroy(producer);
    mongoc_client_pool_destroy(producer_pool);
    mongoq_queue_destroy(q);
}

void
bench_wake(void)
{
    int n = bench_cfg.wake_messages;
    char path[512];
    snprintf(path, sizeof path, "%s/wake.dat", bench_cfg.out_dir);
    FILE *dat = fopen(path, "w");
    fprintf(bench_md, "\n## Wake latency\n\n%d messages enqueued one at a time to an idle worker (one "
                "thread); time from the enqueue call to the start of the handler. Median of %d "
                "runs for each statistic (min-max).\n\n",
            n, bench_cfg.reps);
    fprintf(bench_md, "| wake-up by | min ms | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
    double *lat = calloc((size_t)n, sizeof(double));
    for (int cs = 1; cs >= 0; cs--) {
        double stats[4][MAX_REPS];
        for (int r = 0; r < bench_cfg.reps; r++) {
            wake_run(cs, n, lat);
            int missing = 0;
            for (int i = 0; i < n; i++) {
                if (isnan(lat[i])) {
                    missing++;
                    lat[i] = 1e9;
                }
            }
            if (missing) {
                fprintf(stderr, "wake latency: %d messages never reached the handler\n", missing);
                exit(1);
            }
            qsort(lat, (size_t)n, sizeof *lat, bench_cmp_double);
            stats[0][r] = lat[0];
            stats[1][r] = bench_percentile(lat, n, 50);
            stats[2][r] = bench_percentile(lat, n, 99);
            stats[3][r] = lat[n - 1];
            if (r == 0) {
                for (int i = 0; i < n; i++) {
                    fprintf(dat, "%d %.3f %.4f\n", cs, lat[i], (double)(i + 1) / n);
                }
                fprintf(dat, "\n\n");
            }
        }
        summary_t s[4];
        for (int k = 0; k < 4; k++) {
            s[k] = bench_summarize(stats[k], bench_cfg.reps);
        }
        fprintf(bench_md, "| %s | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2f "
                    "(%.2f-%.2f) |\n",
                cs ? "change stream" : "polling only (100 ms)", s[0].median, s[0].min, s[0].max,
                s[1].median, s[1].min, s[1].max, s[2].median, s[2].min, s[2].max, s[3].median,
                s[3].min, s[3].max);
        if (cs) {
            bench_key.wake_p50_cs = s[1].median;
        }
        fprintf(stderr, "wake %s: p50 %.2f ms p99 %.2f ms\n", cs ? "change stream" : "poll",
                s[1].median, s[2].median);
        fflush(bench_md);
    }
    free(lat);
    fclose(dat);
}

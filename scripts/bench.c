/*
 * mongoq-bench: mongoq against the same work done with plain libmongoc calls, in one run, on one
 * server. Every comparison is a ratio taken in this run; every figure is the median of --reps
 * repetitions (at least 3) with its spread. Driven by scripts/bench, which turns the output into
 * docs/benchmarks.md and plots.
 *
 *   mongoq-bench --uri URI --out DIR [--large] [--reps N] [--quick]
 *
 * Writes DIR/results.md (tables) and DIR/burndown.dat, wake.dat, depth.dat (gnuplot data). Loopback servers only.
 */
#include <mongoq/mongoq.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPS 9
#define MAX_THREADS 16
#define QUEUE_NAME "bench"

typedef struct {
    const char *uri;
    const char *out_dir;
    bool large;
    bool quick;
    int reps;
    int64_t burn_depth;
    int64_t depths[3];
    int wake_messages;
    const char *only; /* run just these workloads: comma-separated names (cost,enqueue,...) */
} config_t;

static config_t cfg = {.reps = 3};
static mongoc_client_pool_t *pool;
static mongoc_uri_t *uri_parsed;
static atomic_int_least64_t commands_started;
static FILE *md;
static char db_name[64];

/* Key figures for the targets table, filled as the workloads run. */
static struct {
    double single_vs_raw;   /* burn-down, 1 thread, 100 B */
    double batch_vs_single; /* same */
    double rt_single;
    double rt_batch;
    double wake_p50_cs;
    double depth_ratio;
    int64_t depth_max;
} key;

/* ---- small utilities ---------------------------------------------------------------------- */

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
die(const char *what, const bson_error_t *error)
{
    fprintf(stderr, "mongoq-bench: %s: %s (domain %u, code %u)\n", what,
            error ? error->message : "", error ? error->domain : 0, error ? error->code : 0);
    exit(1);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double median, min, max;
} summary_t;

static summary_t
summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    summary_t s = {v[n / 2], v[0], v[n - 1]};
    if (n % 2 == 0) {
        s.median = (v[n / 2 - 1] + v[n / 2]) / 2;
    }
    return s;
}

static double
percentile(double *sorted, int n, double p)
{
    int i = (int)ceil(p / 100.0 * n) - 1;
    return sorted[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

static void
on_command_started(const mongoc_apm_command_started_t *event)
{
    (void)event;
    atomic_fetch_add(&commands_started, 1);
}

static void
make_payload(bson_t *payload, int64_t seq, size_t size)
{
    static char filler[2048];
    if (!filler[0]) {
        memset(filler, 'x', sizeof filler - 1);
    }
    bson_init(payload);
    BSON_APPEND_INT64(payload, "seq", seq);
    BSON_APPEND_UTF8(payload, "email", "someone@example.com");
    size_t base = payload->len + 12;
    size_t n = size > base ? size - base : 1;
    bson_append_utf8(payload, "body", 4, filler, (int)(n < sizeof filler ? n : sizeof filler - 1));
}

static mongoc_collection_t *
get_collection(mongoc_client_t *client)
{
    return mongoc_client_get_collection(client, db_name, QUEUE_NAME);
}

static void
drop_db(void)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_database_t *db = mongoc_client_get_database(client, db_name);
    mongoc_database_drop(db, NULL);
    mongoc_database_destroy(db);
    mongoc_client_pool_push(pool, client);
}

static mongoq_queue_t *
open_queue(bool no_change_stream, int64_t poll_ms)
{
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_change_stream = no_change_stream;
    opts.poll_interval_ms = poll_ms;
    opts.no_reaper = true;
    mongoq_queue_t *q = mongoq_queue_new(pool, db_name, QUEUE_NAME, &opts, &error);
    if (!q) {
        die("mongoq_queue_new", &error);
    }
    return q;
}

/* A fresh, empty queue collection with mongoq's indexes. */
static mongoq_queue_t *
fresh_queue(void)
{
    drop_db();
    return open_queue(false, 0);
}

static void
fill(mongoq_queue_t *q, int64_t n, size_t payload_size)
{
    bson_t payloads[100];
    const bson_t *ptrs[100];
    bson_error_t error;
    for (int64_t done = 0; done < n;) {
        size_t k = (size_t)(n - done < 100 ? n - done : 100);
        for (size_t i = 0; i < k; i++) {
            make_payload(&payloads[i], done + (int64_t)i, payload_size);
            ptrs[i] = &payloads[i];
        }
        if (!mongoq_enqueue_many(q, ptrs, k, NULL, NULL, NULL, &error)) {
            die("fill", &error);
        }
        for (size_t i = 0; i < k; i++) {
            bson_destroy(&payloads[i]);
        }
        done += (int64_t)k;
    }
}

/* ---- raw libmongoc baselines -------------------------------------------------------------- */

/* The document mongoq writes, built by hand: the fair baseline for an insert. */
static void
raw_message(bson_t *doc, const bson_t *payload)
{
    int64_t now = (int64_t)time(NULL) * 1000;
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    bson_init(doc);
    BSON_APPEND_OID(doc, "_id", &oid);
    BSON_APPEND_DOCUMENT(doc, "payload", payload);
    BSON_APPEND_UTF8(doc, "status", "ready");
    BSON_APPEND_INT32(doc, "priority", 0);
    BSON_APPEND_DATE_TIME(doc, "run_at", now);
    BSON_APPEND_INT32(doc, "attempts", 0);
    BSON_APPEND_INT32(doc, "max_attempts", 5);
    BSON_APPEND_DATE_TIME(doc, "enqueued_at", now);
    BSON_APPEND_DATE_TIME(doc, "updated_at", now);
}

static mongoc_write_concern_t *
majority_journaled(void)
{
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_wmajority(wc, 0);
    mongoc_write_concern_set_journal(wc, true);
    return wc;
}

static void
raw_insert(mongoc_collection_t *coll, int64_t n, size_t size, int batch)
{
    bson_t opts = BSON_INITIALIZER;
    mongoc_write_concern_t *wc = majority_journaled();
    mongoc_write_concern_append(wc, &opts);
    bson_t docs[100];
    const bson_t *ptrs[100];
    bson_error_t error;
    for (int64_t done = 0; done < n; done += batch) {
        for (int i = 0; i < batch; i++) {
            bson_t payload;
            make_payload(&payload, done + i, size);
            raw_message(&docs[i], &payload);
            bson_destroy(&payload);
            ptrs[i] = &docs[i];
        }
        bool ok = batch == 1
                      ? mongoc_collection_insert_one(coll, &docs[0], &opts, NULL, &error)
                      : mongoc_collection_insert_many(coll, ptrs, (size_t)batch, &opts, NULL,
                                                      &error);
        if (!ok) {
            die("raw insert", &error);
        }
        for (int i = 0; i < batch; i++) {
            bson_destroy(&docs[i]);
        }
    }
    mongoc_write_concern_destroy(wc);
    bson_destroy(&opts);
}

/* Raw claim: findAndModify on the same filter, sort and index as mongoq, then delete_one. */
static bool
raw_claim_ack(mongoc_collection_t *coll, const mongoc_write_concern_t *wc)
{
    bson_error_t error;
    bson_t reply;
    bson_t *query = BCON_NEW("status", "ready", "run_at", "{", "$lte",
                             BCON_DATE_TIME((int64_t)time(NULL) * 1000 + 1000), "}");
    bson_t *sort = BCON_NEW("priority", BCON_INT32(-1), "run_at", BCON_INT32(1), "_id",
                            BCON_INT32(1));
    bson_t *update = BCON_NEW("$set", "{", "status", "processing", "lease_expires_at",
                              BCON_DATE_TIME((int64_t)time(NULL) * 1000 + 30000), "}", "$inc",
                              "{", "attempts", BCON_INT32(1), "}");
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_sort(opts, sort);
    mongoc_find_and_modify_opts_set_update(opts, update);
    mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    bson_t extra = BSON_INITIALIZER;
    mongoc_write_concern_append((mongoc_write_concern_t *)wc, &extra);
    mongoc_find_and_modify_opts_append(opts, &extra);
    bool got = false;
    if (!mongoc_collection_find_and_modify_with_opts(coll, query, opts, &reply, &error)) {
        die("raw findAndModify", &error);
    }
    bson_iter_t it, id;
    if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &id) && bson_iter_find(&id, "_id")) {
        bson_t filter = BSON_INITIALIZER;
        BSON_APPEND_VALUE(&filter, "_id", bson_iter_value(&id));
        if (!mongoc_collection_delete_one(coll, &filter, &extra, NULL, &error)) {
            die("raw delete", &error);
        }
        bson_destroy(&filter);
        got = true;
    }
    bson_destroy(&extra);
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(opts);
    bson_destroy(query);
    bson_destroy(sort);
    bson_destroy(update);
    return got;
}

/* ---- burn-down ---------------------------------------------------------------------------- */

typedef enum { MODE_RAW, MODE_SINGLE, MODE_BATCH } burn_mode_t;
static const char *mode_names[] = {"raw findAndModify + delete_one", "mongoq claim + ack",
                                   "mongoq claim_many(100) + ack_many"};

typedef struct {
    mongoq_queue_t *queue;
    burn_mode_t mode;
    int64_t done;
    int64_t limit; /* stop after this many (per thread); 0: until empty */
} burn_arg_t;

static void
burn_mongoq(burn_arg_t *a)
{
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(a->queue, NULL, &error);
    if (!c) {
        die("consumer", &error);
    }
    mongoq_message_t *msgs[100];
    for (;;) {
        size_t n = 0;
        if (a->mode == MODE_SINGLE) {
            if (!mongoq_consumer_claim(c, 0, &msgs[0], &error)) {
                die("claim", &error);
            }
            n = msgs[0] ? 1 : 0;
        } else if (!mongoq_consumer_claim_many(c, 100, 0, msgs, &n, &error)) {
            die("claim_many", &error);
        }
        if (n == 0) {
            break;
        }
        bool ok = n == 1 ? mongoq_message_ack(msgs[0], &error)
                         : mongoq_message_ack_many(msgs, n, &error);
        if (!ok) {
            die("ack", &error);
        }
        for (size_t i = 0; i < n; i++) {
            mongoq_message_destroy(msgs[i]);
        }
        a->done += (int64_t)n;
        if (a->limit && a->done >= a->limit) {
            break;
        }
    }
    mongoq_consumer_destroy(c);
}

static void *
burn_thread(void *p)
{
    burn_arg_t *a = p;
    if (a->mode != MODE_RAW) {
        burn_mongoq(a);
        return NULL;
    }
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *coll = get_collection(client);
    mongoc_write_concern_t *wc = majority_journaled();
    while ((!a->limit || a->done < a->limit) && raw_claim_ack(coll, wc)) {
        a->done++;
    }
    mongoc_write_concern_destroy(wc);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(pool, client);
    return NULL;
}

/* Runs threads consumers in `mode` until the queue is empty (or each did limit); msgs/s. */
static double
burn(mongoq_queue_t *q, burn_mode_t mode, int threads, int64_t limit, int64_t *total_out)
{
    pthread_t tids[MAX_THREADS];
    burn_arg_t args[MAX_THREADS];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        args[i] = (burn_arg_t){.queue = q, .mode = mode, .limit = limit};
        pthread_create(&tids[i], NULL, burn_thread, &args[i]);
    }
    int64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += args[i].done;
    }
    double elapsed = now_s() - t0;
    if (total_out) {
        *total_out = total;
    }
    return (double)total / elapsed;
}

static void
bench_burndown(void)
{
    static const size_t sizes[] = {100, 1024};
    static const int thread_counts[] = {1, 4, 16};
    FILE *dat = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/burndown.dat", cfg.out_dir);
    dat = fopen(path, "w");
    fprintf(md, "\n## Burn-down: claim + ack until empty\n\n");
    fprintf(md, "A queue of %lld ready messages is emptied by N consumer threads. Messages per "
                "second, median of %d runs (min-max). Ratios are to the raw libmongoc loop with "
                "the same threads and payload in the same run.\n\n",
            (long long)cfg.burn_depth, cfg.reps);
    fprintf(md, "| payload | threads | raw findAndModify + delete | mongoq claim + ack | ratio | "
                "claim_many(100) + ack_many | batched / single |\n|---|---|---|---|---|---|---|\n");
    fprintf(dat, "# threads payload raw raw_min raw_max single single_min single_max batch "
                 "batch_min batch_max\n");
    for (size_t s = 0; s < (cfg.large ? 2 : 1); s++) {
        for (size_t t = 0; t < 3; t++) {
            summary_t sum[3];
            for (int mode = 0; mode < 3; mode++) {
                double v[MAX_REPS];
                for (int r = 0; r < cfg.reps; r++) {
                    mongoq_queue_t *q = fresh_queue();
                    fill(q, cfg.burn_depth, sizes[s]);
                    int64_t total = 0;
                    v[r] = burn(q, (burn_mode_t)mode, thread_counts[t], 0, &total);
                    if (total != cfg.burn_depth) {
                        fprintf(stderr, "burn-down moved %lld of %lld\n", (long long)total,
                                (long long)cfg.burn_depth);
                        exit(1);
                    }
                    mongoq_queue_destroy(q);
                }
                sum[mode] = summarize(v, cfg.reps);
                fprintf(stderr, "burn-down %zuB %d threads %s: %.0f msg/s\n", sizes[s],
                        thread_counts[t], mode_names[mode], sum[mode].median);
            }
            fprintf(md, "| %zu B | %d | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx | "
                        "%.0f (%.0f-%.0f) | %.1fx |\n",
                    sizes[s], thread_counts[t], sum[0].median, sum[0].min, sum[0].max,
                    sum[1].median, sum[1].min, sum[1].max, sum[1].median / sum[0].median,
                    sum[2].median, sum[2].min, sum[2].max, sum[2].median / sum[1].median);
            if (s == 0 && t == 0) {
                key.single_vs_raw = sum[1].median / sum[0].median;
                key.batch_vs_single = sum[2].median / sum[1].median;
            }
            fprintf(dat, "%d %zu %.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f %.1f\n",
                    thread_counts[t], sizes[s], sum[0].median, sum[0].min, sum[0].max,
                    sum[1].median, sum[1].min, sum[1].max, sum[2].median, sum[2].min,
                    sum[2].max);
            fflush(md);
        }
    }
    fclose(dat);
}

/* ---- enqueue ------------------------------------------------------------------------------ */

static double
time_enqueue(bool raw, int batch, int64_t n, size_t size)
{
    mongoq_queue_t *q = fresh_queue();
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *coll = get_collection(client);
    bson_error_t error;
    double t0 = now_s();
    if (raw) {
        raw_insert(coll, n, size, batch);
    } else if (batch == 1) {
        for (int64_t i = 0; i < n; i++) {
            bson_t payload;
            make_payload(&payload, i, size);
            if (!mongoq_enqueue(q, &payload, NULL, NULL, &error)) {
                die("enqueue", &error);
            }
            bson_destroy(&payload);
        }
    } else {
        fill(q, n, size);
    }
    double rate = (double)n / (now_s() - t0);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(pool, client);
    mongoq_queue_destroy(q);
    return rate;
}

static void
bench_enqueue(void)
{
    static const size_t sizes[] = {100, 1024};
    int64_t n_single = cfg.quick ? 1000 : 5000, n_batch = cfg.quick ? 10000 : 50000;
    fprintf(md, "\n## Enqueue\n\nOne producer thread. Messages per second, median of %d runs "
                "(min-max); %lld messages one at a time, %lld in batches of 100. The raw baseline "
                "inserts the same document with the same write concern.\n\n",
            cfg.reps, (long long)n_single, (long long)n_batch);
    fprintf(md, "| payload | raw insert_one | mongoq_enqueue | ratio | raw insert_many(100) | "
                "mongoq_enqueue_many(100) | ratio |\n|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < 2; s++) {
        summary_t sum[4];
        for (int k = 0; k < 4; k++) {
            double v[MAX_REPS];
            bool raw = k % 2 == 0;
            int batch = k < 2 ? 1 : 100;
            for (int r = 0; r < cfg.reps; r++) {
                v[r] = time_enqueue(raw, batch, batch == 1 ? n_single : n_batch, sizes[s]);
            }
            sum[k] = summarize(v, cfg.reps);
        }
        fprintf(md, "| %zu B | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx | %.0f (%.0f-%.0f) | "
                    "%.0f (%.0f-%.0f) | %.2fx |\n",
                sizes[s], sum[0].median, sum[0].min, sum[0].max, sum[1].median, sum[1].min,
                sum[1].max, sum[1].median / sum[0].median, sum[2].median, sum[2].min, sum[2].max,
                sum[3].median, sum[3].min, sum[3].max, sum[3].median / sum[2].median);
        fprintf(stderr, "enqueue %zuB: raw %.0f mongoq %.0f raw-batch %.0f mongoq-batch %.0f\n",
                sizes[s], sum[0].median, sum[1].median, sum[2].median, sum[3].median);
        fflush(md);
    }
}

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
            ctx->started[seq] = now_s();
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
    double deadline = now_s() + timeout_s;
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    for (mongoq_queue_counters(q, &c); c.idle_consumers < 1 && now_s() < deadline;
         mongoq_queue_counters(q, &c)) {
        struct timespec pause = {0, 100 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* Enqueues n messages one at a time to an idle worker; fills latencies (ms) by seq. */
static void
wake_run(bool change_stream, int n, double *latency_ms)
{
    drop_db();
    mongoq_queue_t *q = open_queue(!change_stream, change_stream ? 0 : 100);
    /* The producer is another process in real life: its own pool and queue handle, so its
     * enqueue cannot wake the worker in-process (mongoq notifies local waiters directly). */
    mongoc_client_pool_t *producer_pool = mongoc_client_pool_new(uri_parsed);
    mongoc_client_pool_set_error_api(producer_pool, MONGOC_ERROR_API_VERSION_2);
    bson_error_t error;
    mongoq_queue_opts_t popts = MONGOQ_QUEUE_OPTS_INIT;
    popts.no_reaper = true;
    mongoq_queue_t *producer = mongoq_queue_new(producer_pool, db_name, QUEUE_NAME, &popts, &error);
    if (!producer) {
        die("producer queue", &error);
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
        die("worker", &error);
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
        make_payload(&payload, i, 100);
        enqueued[i] = now_s();
        if (!mongoq_enqueue(producer, &payload, NULL, NULL, &error)) {
            die("enqueue", &error);
        }
        bson_destroy(&payload);
    }
    wake_await(&ctx, n, 30.0);
    if (!mongoq_worker_stop(w, 5000, &error)) {
        die("worker stop", &error);
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

static void
bench_wake(void)
{
    int n = cfg.wake_messages;
    char path[512];
    snprintf(path, sizeof path, "%s/wake.dat", cfg.out_dir);
    FILE *dat = fopen(path, "w");
    fprintf(md, "\n## Wake latency\n\n%d messages enqueued one at a time to an idle worker (one "
                "thread); time from the enqueue call to the start of the handler. Median of %d "
                "runs for each statistic (min-max).\n\n",
            n, cfg.reps);
    fprintf(md, "| wake-up by | min ms | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|\n");
    double *lat = calloc((size_t)n, sizeof(double));
    for (int cs = 1; cs >= 0; cs--) {
        double stats[4][MAX_REPS];
        for (int r = 0; r < cfg.reps; r++) {
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
            qsort(lat, (size_t)n, sizeof *lat, cmp_double);
            stats[0][r] = lat[0];
            stats[1][r] = percentile(lat, n, 50);
            stats[2][r] = percentile(lat, n, 99);
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
            s[k] = summarize(stats[k], cfg.reps);
        }
        fprintf(md, "| %s | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2f "
                    "(%.2f-%.2f) |\n",
                cs ? "change stream" : "polling only (100 ms)", s[0].median, s[0].min, s[0].max,
                s[1].median, s[1].min, s[1].max, s[2].median, s[2].min, s[2].max, s[3].median,
                s[3].min, s[3].max);
        if (cs) {
            key.wake_p50_cs = s[1].median;
        }
        fprintf(stderr, "wake %s: p50 %.2f ms p99 %.2f ms\n", cs ? "change stream" : "poll",
                s[1].median, s[2].median);
        fflush(md);
    }
    free(lat);
    fclose(dat);
}

/* ---- depth -------------------------------------------------------------------------------- */

static void
bench_depth(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/depth.dat", cfg.out_dir);
    FILE *dat = fopen(path, "w");
    const int64_t sample = 500;
    fprintf(md, "\n## Depth: claim + ack cost against queue depth\n\nOne consumer; %lld claims + "
                "acks timed at each depth (the queue is topped up between runs, untimed). "
                "Microseconds per message, median of %d runs (min-max).\n\n",
            (long long)sample, cfg.reps);
    fprintf(md, "| ready messages | mongoq claim + ack, us | vs smallest depth |\n|---|---|---|\n");
    mongoq_queue_t *q = fresh_queue();
    int64_t depth = 0;
    double base = 0;
    for (int d = 0; d < 3 && cfg.depths[d]; d++) {
        fill(q, cfg.depths[d] - depth, 100);
        depth = cfg.depths[d];
        double v[MAX_REPS];
        for (int r = 0; r < cfg.reps; r++) {
            int64_t total = 0;
            double rate = burn(q, MODE_SINGLE, 1, sample, &total);
            v[r] = 1e6 / rate;
            fill(q, total, 100);
        }
        summary_t s = summarize(v, cfg.reps);
        if (d == 0) {
            base = s.median;
        }
        fprintf(md, "| %lld | %.0f (%.0f-%.0f) | %.2fx |\n", (long long)depth, s.median, s.min,
                s.max, s.median / base);
        key.depth_ratio = s.median / base;
        key.depth_max = depth;
        fprintf(dat, "%lld %.2f %.2f %.2f\n", (long long)depth, s.median, s.min, s.max);
        fprintf(stderr, "depth %lld: %.0f us per claim+ack\n", (long long)depth, s.median);
        fflush(md);
    }
    mongoq_queue_destroy(q);
    fclose(dat);
}

/* ---- cost per message --------------------------------------------------------------------- */

typedef struct {
    double round_trips;
    double cpu_us;
} cost_t;

static cost_t
measure_cost(int variant, int64_t n)
{
    mongoq_queue_t *q = fresh_queue();
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *coll = get_collection(client);
    bson_error_t error;
    int64_t cmd0 = atomic_load(&commands_started);
    double cpu0 = cpu_s();
    if (variant == 0) { /* raw */
        raw_insert(coll, n, 100, 1);
        mongoc_write_concern_t *wc = majority_journaled();
        while (raw_claim_ack(coll, wc)) {
        }
        mongoc_write_concern_destroy(wc);
    } else if (variant == 1) { /* mongoq single */
        for (int64_t i = 0; i < n; i++) {
            bson_t payload;
            make_payload(&payload, i, 100);
            if (!mongoq_enqueue(q, &payload, NULL, NULL, &error)) {
                die("enqueue", &error);
            }
            bson_destroy(&payload);
        }
        burn(q, MODE_SINGLE, 1, 0, NULL);
    } else { /* mongoq batched */
        fill(q, n, 100);
        burn(q, MODE_BATCH, 1, 0, NULL);
    }
    /* Every variant ends with one claim that finds the queue empty: no message's round trip. */
    cost_t c = {(double)(atomic_load(&commands_started) - cmd0 - 1) / (double)n,
                (cpu_s() - cpu0) * 1e6 / (double)n};
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(pool, client);
    mongoq_queue_destroy(q);
    return c;
}

static void
bench_cost(void)
{
    const int64_t n = cfg.quick ? 1000 : 3000;
    static const char *names[] = {"raw insert_one + findAndModify + delete_one",
                                  "mongoq enqueue + claim + ack",
                                  "mongoq enqueue_many(100) + claim_many(100) + ack_many"};
    fprintf(md, "\n## Cost per message (enqueue + claim + ack)\n\nOne thread, %lld messages of "
                "100 B. Round trips counted with libmongoc's command monitoring (every command "
                "sent, less the one final claim that finds the queue empty); client CPU time from getrusage "
                "(user + system, this process only; the server's CPU is not included). Median "
                "of %d runs (min-max).\n\n",
            (long long)n, cfg.reps);
    fprintf(md, "| variant | round trips / message | client CPU us / message |\n|---|---|---|\n");
    for (int variant = 0; variant < 3; variant++) {
        double rt[MAX_REPS], cpu[MAX_REPS];
        for (int r = 0; r < cfg.reps; r++) {
            cost_t c = measure_cost(variant, n);
            rt[r] = c.round_trips;
            cpu[r] = c.cpu_us;
        }
        summary_t a = summarize(rt, cfg.reps), b = summarize(cpu, cfg.reps);
        if (variant == 1) {
            key.rt_single = a.median;
        } else if (variant == 2) {
            key.rt_batch = a.median;
        }
        fprintf(md, "| %s | %.3f (%.3f-%.3f) | %.1f (%.1f-%.1f) |\n", names[variant], a.median,
                a.min, a.max, b.median, b.min, b.max);
        fprintf(stderr, "cost %s: %.3f round trips, %.1f us CPU\n", names[variant], a.median,
                b.median);
        fflush(md);
    }
}

static void
target_row(const char *what, const char *target, double value, const char *unit, bool met)
{
    fprintf(md, "| %s | %s | %.4g%s | %s |\n", what, target, value, unit,
            met ? "met" : "**missed**");
}

static void
write_targets(void)
{
    fprintf(md, "\n## Targets\n\n| what | target | this run | |\n|---|---|---|---|\n");
    target_row("single claim + ack vs raw loop (1 thread, 100 B)", ">= 0.9x", key.single_vs_raw,
               "x", key.single_vs_raw >= 0.9);
    target_row("batched claim + ack vs single (1 thread, 100 B)", ">= 5x", key.batch_vs_single,
               "x", key.batch_vs_single >= 5);
    target_row("round trips per message, single", "<= 3", key.rt_single, "",
               key.rt_single <= 3);
    target_row("round trips per message, batches of 100", "<= 0.1", key.rt_batch, "",
               key.rt_batch <= 0.1);
    target_row("wake latency p50, change stream", "<= 5 ms", key.wake_p50_cs, " ms",
               key.wake_p50_cs <= 5);
    char what[96];
    snprintf(what, sizeof what, "claim + ack at %lld deep vs 1,000", (long long)key.depth_max);
    target_row(what, "<= 1.5x", key.depth_ratio, "x", key.depth_ratio <= 1.5);
}

/* ---- main --------------------------------------------------------------------------------- */

/* Whether name is one of the comma-separated words of list. */
static bool
listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == '\0')) {
            return true;
        }
    }
    return false;
}

static void
parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--uri") && i + 1 < argc) {
            cfg.uri = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            cfg.out_dir = argv[++i];
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            cfg.reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--large")) {
            cfg.large = true;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            cfg.only = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            cfg.quick = true;
        } else {
            fprintf(stderr, "usage: %s --uri URI --out DIR [--large] [--quick] [--reps N] [--only WORKLOAD]\n",
                    argv[0]);
            exit(2);
        }
    }
    if (!cfg.uri || !cfg.out_dir) {
        fprintf(stderr, "mongoq-bench: --uri and --out are required\n");
        exit(2);
    }
    if (cfg.reps < 3 || cfg.reps > MAX_REPS) {
        fprintf(stderr, "mongoq-bench: --reps must be 3..%d\n", MAX_REPS);
        exit(2);
    }
    /* The default set must finish in about 5 minutes on 2 cores: 100,000-message burn-downs at
     * every thread count, mode and repetition take about 6 minutes against the test server on
     * their own, so the default burns 50,000 and --large 100,000 with both payload sizes. */
    cfg.burn_depth = cfg.large ? 100000 : (cfg.quick ? 5000 : 50000);
    cfg.depths[0] = 1000;
    cfg.depths[1] = cfg.quick ? 10000 : 100000;
    cfg.depths[2] = cfg.large ? 1000000 : 0;
    cfg.wake_messages = cfg.quick ? 100 : 1000;
}

int
main(int argc, char **argv)
{
    parse_args(argc, argv);
    mongoc_init();
    bson_error_t error;
    uri_parsed = mongoc_uri_new_with_error(cfg.uri, &error);
    if (!uri_parsed) {
        die("uri", &error);
    }
    pool = mongoc_client_pool_new(uri_parsed);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(pool, 64);
    mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
    mongoc_apm_set_command_started_cb(cbs, on_command_started);
    mongoc_client_pool_set_apm_callbacks(pool, cbs, NULL);
    mongoc_apm_callbacks_destroy(cbs);
    snprintf(db_name, sizeof db_name, "mongoq_bench_%d", (int)getpid());

    char path[512];
    snprintf(path, sizeof path, "%s/results.md", cfg.out_dir);
    md = fopen(path, "w");
    if (!md) {
        perror(path);
        return 1;
    }
    double t0 = now_s();
    static const struct {
        const char *name;
        void (*run)(void);
    } workloads[] = {{"cost", bench_cost},
                     {"enqueue", bench_enqueue},
                     {"wake", bench_wake},
                     {"depth", bench_depth},
                     {"burndown", bench_burndown}};
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++) {
        if (!cfg.only || listed(cfg.only, workloads[i].name)) {
            workloads[i].run();
        }
    }
    if (!cfg.only) {
        write_targets();
    }
    fprintf(md, "\nThe run took %.0f s.\n", now_s() - t0);
    fclose(md);
    drop_db();
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri_parsed);
    mongoc_cleanup();
    fprintf(stderr, "mongoq-bench: wrote %s/results.md\n", cfg.out_dir);
    return 0;
}

/* mongoq-bench's throughput workloads: burn-downs (claim + ack until the queue is empty, raw and
 * mongoq, by thread count) and enqueue rates. */

#include "bench.h"

/* ---- burn-down ---------------------------------------------------------------------------- */

static const char *mode_names[MODE_COUNT] = {
    [MODE_RAW] = "naive loop: findAndModify $set + delete_one",
    [MODE_SINGLE] = "mongoq claim + ack",
    [MODE_BATCH] = "mongoq claim_many(100) + ack_many",
    [MODE_SAME] = "same commands as mongoq, single",
    [MODE_SAME_BATCH] = "same commands as mongoq, batches of 100"};

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
        bench_die("consumer", &error);
    }
    mongoq_message_t *msgs[BENCH_BATCH];
    for (;;) {
        size_t n = 0;
        if (a->mode == MODE_SINGLE) {
            if (!mongoq_consumer_claim(c, 0, &msgs[0], &error)) {
                bench_die("claim", &error);
            }
            n = msgs[0] ? 1 : 0;
        } else if (!mongoq_consumer_claim_many(c, BENCH_BATCH, 0, msgs, &n, &error)) {
            bench_die("claim_many", &error);
        }
        if (n == 0) {
            break;
        }
        bool ok = n == 1 ? mongoq_message_ack(msgs[0], &error)
                         : mongoq_message_ack_many(msgs, n, &error);
        if (!ok) {
            bench_die("ack", &error);
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

/* The raw loops, on a client of the pool the queue uses. */
static void
burn_raw(burn_arg_t *a)
{
    mongoc_client_t *client = mongoc_client_pool_pop(bench_pool);
    mongoc_collection_t *coll = bench_get_collection(client);
    mongoc_write_concern_t *wc = bench_majority_journaled();
    bson_t wc_opts = BSON_INITIALIZER;
    mongoc_write_concern_append(wc, &wc_opts);
    while (!a->limit || a->done < a->limit) {
        int64_t n = a->mode == MODE_RAW    ? bench_raw_claim_ack(coll, wc)
                    : a->mode == MODE_SAME ? bench_same_claim_ack(coll, &wc_opts)
                                           : bench_same_claim_ack_many(coll, &wc_opts, BENCH_BATCH);
        if (n == 0) {
            break;
        }
        a->done += n;
    }
    bson_destroy(&wc_opts);
    mongoc_write_concern_destroy(wc);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(bench_pool, client);
}

static void *
burn_thread(void *p)
{
    burn_arg_t *a = p;
    if (a->mode == MODE_SINGLE || a->mode == MODE_BATCH) {
        burn_mongoq(a);
    } else {
        burn_raw(a);
    }
    return NULL;
}

/* Runs threads consumers in `mode` until the queue is empty (or each did limit); msgs/s. */
double
bench_burn(mongoq_queue_t *q, burn_mode_t mode, int threads, int64_t limit, int64_t *total_out)
{
    pthread_t tids[MAX_THREADS];
    burn_arg_t args[MAX_THREADS];
    double t0 = bench_now_s();
    for (int i = 0; i < threads; i++) {
        args[i] = (burn_arg_t){.queue = q, .mode = mode, .limit = limit};
        pthread_create(&tids[i], NULL, burn_thread, &args[i]);
    }
    int64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += args[i].done;
    }
    double elapsed = bench_now_s() - t0;
    if (total_out) {
        *total_out = total;
    }
    return (double)total / elapsed;
}

/* Msgs/s of one burn-down of `depth` fresh messages of `size` bytes. */
static double
burn_once(burn_mode_t mode, int threads, int64_t depth, size_t size)
{
    mongoq_queue_t *q = bench_fresh_queue();
    bench_fill(q, depth, size);
    int64_t total = 0;
    double rate = bench_burn(q, mode, threads, 0, &total);
    if (total != depth) {
        fprintf(stderr, "burn-down (%s) moved %lld of %lld\n", mode_names[mode], (long long)total,
                (long long)depth);
        exit(1);
    }
    mongoq_queue_destroy(q);
    return rate;
}

/* Every loop once per repetition, the repetitions one after another, so that a machine growing
 * busier or quieter during the run weighs on every loop alike. */
static void
burn_all_modes(int threads, size_t size, summary_t *sum)
{
    double v[MODE_COUNT][MAX_REPS];
    for (int r = 0; r < bench_cfg.reps; r++) {
        for (int mode = 0; mode < MODE_COUNT; mode++) {
            v[mode][r] = burn_once((burn_mode_t)mode, threads, bench_cfg.burn_depth, size);
        }
    }
    for (int mode = 0; mode < MODE_COUNT; mode++) {
        sum[mode] = bench_summarize(v[mode], bench_cfg.reps);
        fprintf(stderr, "burn-down %zuB %d threads %s: %.0f msg/s\n", size, threads,
                mode_names[mode], sum[mode].median);
    }
}

#define CELL "%.0f (%.0f-%.0f)"
#define CELL_OF(s) (s).median, (s).min, (s).max

static void
burndown_header(void)
{
    fprintf(bench_md, "\n## Burn-down: claim + ack until empty\n\n");
    fprintf(bench_md,
            "A queue of %lld ready messages is emptied by N consumer threads. Messages per "
            "second, median of %d runs (min-max); ratios between loops with the same threads and "
            "payload in the same run. Two raw libmongoc baselines: the *naive loop* (findAndModify "
            "with a plain $set on the client's clock, then delete_one by _id) and the "
            "*same-commands loop* (scripts/bench_same.c: the very commands mongoq sends, $$NOW "
            "pipeline, fencing token, claim_many's find + updateMany + read-back, fenced acks, "
            "written with plain libmongoc). mongoq against the same-commands loop is the cost of "
            "the library itself; the same-commands loop against the naive one is the cost of "
            "the command shapes that buy server-clock leases and fencing.\n\n",
            (long long)bench_cfg.burn_depth, bench_cfg.reps);
}

void
bench_burndown(void)
{
    static const size_t sizes[] = {100, 1024};
    static const int thread_counts[] = {1, 4, 16};
    summary_t sum[2][3][MODE_COUNT];
    size_t n_sizes = bench_cfg.large ? 2 : 1;
    char path[512];
    snprintf(path, sizeof path, "%s/burndown.dat", bench_cfg.out_dir);
    FILE *dat = fopen(path, "w");
    fprintf(dat, "# threads payload raw(3) single(3) batch(3) same(3) same_batch(3): median min max\n");
    for (size_t s = 0; s < n_sizes; s++) {
        for (size_t t = 0; t < 3; t++) {
            fprintf(dat, "%d %zu", thread_counts[t], sizes[s]);
            burn_all_modes(thread_counts[t], sizes[s], sum[s][t]);
            for (int mode = 0; mode < MODE_COUNT; mode++) {
                fprintf(dat, " %.1f %.1f %.1f", CELL_OF(sum[s][t][mode]));
            }
            fprintf(dat, "\n");
        }
    }
    fclose(dat);
    burndown_header();
    fprintf(bench_md, "**One at a time** (claim + ack):\n\n| payload | threads | naive loop | "
                      "same-commands loop | mongoq | mongoq / same-commands | mongoq / naive |\n"
                      "|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < n_sizes; s++) {
        for (size_t t = 0; t < 3; t++) {
            summary_t *m = sum[s][t];
            fprintf(bench_md, "| %zu B | %d | " CELL " | " CELL " | " CELL " | %.2fx | %.2fx |\n",
                    sizes[s], thread_counts[t], CELL_OF(m[MODE_RAW]), CELL_OF(m[MODE_SAME]),
                    CELL_OF(m[MODE_SINGLE]), m[MODE_SINGLE].median / m[MODE_SAME].median,
                    m[MODE_SINGLE].median / m[MODE_RAW].median);
        }
    }
    fprintf(bench_md, "\n**Batched** (claim_many(100) + ack_many):\n\n| payload | threads | "
                      "same-commands loop | mongoq | mongoq / same-commands | mongoq batched / "
                      "mongoq single |\n|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < n_sizes; s++) {
        for (size_t t = 0; t < 3; t++) {
            summary_t *m = sum[s][t];
            fprintf(bench_md, "| %zu B | %d | " CELL " | " CELL " | %.2fx | %.1fx |\n", sizes[s],
                    thread_counts[t], CELL_OF(m[MODE_SAME_BATCH]), CELL_OF(m[MODE_BATCH]),
                    m[MODE_BATCH].median / m[MODE_SAME_BATCH].median,
                    m[MODE_BATCH].median / m[MODE_SINGLE].median);
        }
    }
    summary_t *first = sum[0][0];
    bench_key.single_vs_same = first[MODE_SINGLE].median / first[MODE_SAME].median;
    bench_key.batch_vs_same = first[MODE_BATCH].median / first[MODE_SAME_BATCH].median;
    bench_key.single_vs_raw = first[MODE_SINGLE].median / first[MODE_RAW].median;
    bench_key.batch_vs_single = first[MODE_BATCH].median / first[MODE_SINGLE].median;
    bench_shapes();
    fflush(bench_md);
}

/* ---- enqueue ------------------------------------------------------------------------------ */

static double
time_enqueue(bool raw, int batch, int64_t n, size_t size)
{
    mongoq_queue_t *q = bench_fresh_queue();
    mongoc_client_t *client = mongoc_client_pool_pop(bench_pool);
    mongoc_collection_t *coll = bench_get_collection(client);
    bson_error_t error;
    double t0 = bench_now_s();
    if (raw) {
        bench_raw_insert(coll, n, size, batch);
    } else if (batch == 1) {
        for (int64_t i = 0; i < n; i++) {
            bson_t payload;
            bench_make_payload(&payload, i, size);
            if (!mongoq_enqueue(q, &payload, NULL, NULL, &error)) {
                bench_die("enqueue", &error);
            }
            bson_destroy(&payload);
        }
    } else {
        bench_fill(q, n, size);
    }
    double rate = (double)n / (bench_now_s() - t0);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(bench_pool, client);
    mongoq_queue_destroy(q);
    return rate;
}

void
bench_enqueue(void)
{
    static const size_t sizes[] = {100, 1024};
    int64_t n_single = bench_cfg.quick ? 1000 : 5000, n_batch = bench_cfg.quick ? 10000 : 50000;
    fprintf(bench_md, "\n## Enqueue\n\nOne producer thread. Messages per second, median of %d runs "
                "(min-max); %lld messages one at a time, %lld in batches of 100. The raw baseline "
                "inserts the same document with the same write concern.\n\n",
            bench_cfg.reps, (long long)n_single, (long long)n_batch);
    fprintf(bench_md, "| payload | raw insert_one | mongoq_enqueue | ratio | raw insert_many(100) | "
                "mongoq_enqueue_many(100) | ratio |\n|---|---|---|---|---|---|---|\n");
    for (size_t s = 0; s < 2; s++) {
        summary_t sum[4];
        for (int k = 0; k < 4; k++) {
            double v[MAX_REPS];
            bool raw = k % 2 == 0;
            int batch = k < 2 ? 1 : 100;
            for (int r = 0; r < bench_cfg.reps; r++) {
                v[r] = time_enqueue(raw, batch, batch == 1 ? n_single : n_batch, sizes[s]);
            }
            sum[k] = bench_summarize(v, bench_cfg.reps);
        }
        fprintf(bench_md, "| %zu B | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx | %.0f (%.0f-%.0f) | "
                    "%.0f (%.0f-%.0f) | %.2fx |\n",
                sizes[s], sum[0].median, sum[0].min, sum[0].max, sum[1].median, sum[1].min,
                sum[1].max, sum[1].median / sum[0].median, sum[2].median, sum[2].min, sum[2].max,
                sum[3].median, sum[3].min, sum[3].max, sum[3].median / sum[2].median);
        fprintf(stderr, "enqueue %zuB: raw %.0f mongoq %.0f raw-batch %.0f mongoq-batch %.0f\n",
                sizes[s], sum[0].median, sum[1].median, sum[2].median, sum[3].median);
        fflush(bench_md);
    }
}

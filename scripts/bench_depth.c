/*
 * mongoq-bench's depth workload: what each operation costs as the collection fills up with
 * messages of one kind. For every kind of backlog (ready and due; delayed ahead of the due ones:
 * run_at tomorrow at a higher priority; dead; done, kept by ack mode KEEP; processing under live
 * leases) at every depth (1,000, then 100,000 and with --large 1,000,000; --quick: 1,000 and
 * 10,000), the cost per call of:
 *  - claim + ack: mongoq_consumer_claim + mongoq_message_ack of `depth_sample` messages (for the
 *    ready kind, from the backlog itself; for the others, ready "probe" messages planted behind
 *    the backlog in the claim order, removed afterwards);
 *  - reap: one mongoq_queue_reap pass with nothing expired (the common case: the reaper runs
 *    every lease / 2), timed over depth_calls passes;
 *  - stats: one mongoq_queue_stats, timed over depth_stats_calls calls;
 *  - redrive one: mongoq_queue_redrive by _id of a planted dead probe, timed over depth_calls.
 * The backlog is written fast and untimed with insert_many of raw documents in mongoq's shape
 * (src/document.c's fields), w: 1, one collection per depth, all depths of a kind at once; each
 * run visits every depth in turn, and a ratio is the median of the runs' ratios. Each cost is
 * the median of at least 5 runs.
 */
#include "bench.h"

typedef enum { KIND_READY, KIND_DELAYED, KIND_DEAD, KIND_DONE, KIND_LEASED, KIND_COUNT } kind_t;
typedef enum { OP_CLAIM, OP_REAP, OP_STATS, OP_REDRIVE, OP_COUNT } op_t;

static const char *const kind_names[KIND_COUNT] = {
    "ready, due", "delayed ahead (run_at tomorrow, priority 10)", "dead", "done (ack KEEP)",
    "processing, live leases"};
static const char *const kind_short[KIND_COUNT] = {"ready", "delayed", "dead", "done", "leased"};
static const char *const op_names[OP_COUNT] = {"claim + ack", "reap pass", "stats",
                                               "redrive one"};

#define DAY_MS (24 * 3600 * 1000LL)
#define FILL_BATCH 1000

/* One document of mongoq's shape in state kind; probes carry payload.probe: true. */
static void
kind_doc(bson_t *doc, kind_t kind, int64_t seq, int64_t now, bool probe, bson_oid_t *id)
{
    bson_t payload, errors, entry;
    bson_oid_t token;
    bson_oid_init(id, NULL);
    bson_oid_init(&token, NULL);
    bench_make_payload(&payload, seq, 100);
    if (probe) {
        BSON_APPEND_BOOL(&payload, "probe", true);
    }
    bool leased = kind == KIND_LEASED || kind == KIND_DONE;
    bson_init(doc);
    BSON_APPEND_OID(doc, "_id", id);
    BSON_APPEND_DOCUMENT(doc, "payload", &payload);
    BSON_APPEND_UTF8(doc, "status", kind == KIND_DEAD     ? "dead"
                                    : kind == KIND_DONE   ? "done"
                                    : kind == KIND_LEASED ? "processing"
                                                          : "ready");
    BSON_APPEND_INT32(doc, "priority", kind == KIND_DELAYED ? 10 : 0);
    BSON_APPEND_DATE_TIME(doc, "run_at", kind == KIND_DELAYED ? now + DAY_MS : now - 1000);
    BSON_APPEND_INT32(doc, "attempts", kind == KIND_DEAD ? 5 : leased ? 1 : 0);
    BSON_APPEND_INT32(doc, "max_attempts", 5);
    BSON_APPEND_DATE_TIME(doc, "enqueued_at", now - 1000);
    BSON_APPEND_DATE_TIME(doc, "updated_at", now);
    if (leased) {
        BSON_APPEND_OID(doc, "lease_token", &token);
        BSON_APPEND_UTF8(doc, "claimed_by", "bench-depth");
    }
    if (kind == KIND_LEASED) {
        BSON_APPEND_DATE_TIME(doc, "lease_expires_at", now + DAY_MS);
    } else if (kind == KIND_DONE) {
        BSON_APPEND_DATE_TIME(doc, "done_at", now);
    } else if (kind == KIND_DEAD) {
        BSON_APPEND_UTF8(doc, "last_error", "bench: failed");
        BSON_APPEND_ARRAY_BEGIN(doc, "errors", &errors);
        BSON_APPEND_DOCUMENT_BEGIN(&errors, "0", &entry);
        BSON_APPEND_DATE_TIME(&entry, "at", now);
        BSON_APPEND_UTF8(&entry, "error", "bench: failed");
        bson_append_document_end(&errors, &entry);
        bson_append_array_end(doc, &errors);
    }
    bson_destroy(&payload);
}

/* Inserts n documents of kind into collection `coll_name` (ids into ids when not NULL),
 * untimed, w: 1. */
static void
insert_kind(const char *coll_name, kind_t kind, int64_t n, bool probe, bson_oid_t *ids)
{
    static bson_t docs[FILL_BATCH];
    const bson_t *ptrs[FILL_BATCH];
    bson_error_t error;
    bson_t *opts = BCON_NEW("writeConcern", "{", "w", BCON_INT32(1), "}");
    mongoc_client_t *client = mongoc_client_pool_pop(bench_pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, bench_db_name, coll_name);
    int64_t now = bench_wall_ms();
    for (int64_t done = 0; done < n;) {
        size_t k = (size_t)(n - done < FILL_BATCH ? n - done : FILL_BATCH);
        for (size_t i = 0; i < k; i++) {
            bson_oid_t id;
            kind_doc(&docs[i], kind, done + (int64_t)i, now, probe, ids ? &ids[done + i] : &id);
            ptrs[i] = &docs[i];
        }
        if (!mongoc_collection_insert_many(coll, ptrs, k, opts, NULL, &error)) {
            bench_die("depth fill", &error);
        }
        for (size_t i = 0; i < k; i++) {
            bson_destroy(&docs[i]);
        }
        done += (int64_t)k;
    }
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(bench_pool, client);
    bson_destroy(opts);
}

static void
delete_probes(const char *coll_name)
{
    bson_error_t error;
    bson_t *filter = BCON_NEW("payload.probe", BCON_BOOL(true));
    mongoc_client_t *client = mongoc_client_pool_pop(bench_pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, bench_db_name, coll_name);
    if (!mongoc_collection_delete_many(coll, filter, NULL, NULL, &error)) {
        bench_die("delete probes", &error);
    }
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(bench_pool, client);
    bson_destroy(filter);
}

/* One queue per depth, side by side in the benchmark database ("depth_<n>"). */
typedef struct {
    mongoq_queue_t *q;
    char name[32];
} depth_queue_t;

/* Microseconds per claim + ack of depth_sample messages. */
static double
time_claims(const depth_queue_t *dq, kind_t kind)
{
    int64_t sample = bench_cfg.depth_sample, total = 0;
    if (kind != KIND_READY) {
        insert_kind(dq->name, KIND_READY, sample, true, NULL);
    }
    double rate = bench_burn(dq->q, MODE_SINGLE, 1, sample, &total);
    if (kind == KIND_READY) {
        insert_kind(dq->name, KIND_READY, total, false, NULL); /* back to the same depth */
    } else {
        delete_probes(dq->name); /* KEEP mode keeps them as done */
    }
    return 1e6 / rate;
}

/* Microseconds per call of op (not claim). */
static double
time_op(const depth_queue_t *dq, op_t op)
{
    bson_error_t error;
    /* Enough calls that a sample outlasts the machine's hiccups (reap and redrive take ~0.1 ms). */
    int calls = op == OP_STATS ? bench_cfg.depth_stats_calls : bench_cfg.depth_calls;
    bson_oid_t *ids = bson_malloc(sizeof *ids * (size_t)calls);
    if (op == OP_REDRIVE) {
        insert_kind(dq->name, KIND_DEAD, calls, true, ids);
    }
    double t0 = bench_now_s();
    for (int i = 0; i < calls; i++) {
        mongoq_stats_t stats = MONGOQ_STATS_INIT;
        int64_t n = 0;
        bool ok = op == OP_REAP    ? mongoq_queue_reap(dq->q, &n, &error)
                  : op == OP_STATS ? mongoq_queue_stats(dq->q, &stats, &error)
                                   : mongoq_queue_redrive(dq->q, &ids[i], &n, &error);
        if (!ok) {
            bench_die(op_names[op], &error);
        }
    }
    double us = (bench_now_s() - t0) * 1e6 / calls;
    if (op == OP_REDRIVE) {
        delete_probes(dq->name);
    }
    bson_free(ids);
    return us;
}

static void
depth_queue_open(depth_queue_t *dq, kind_t kind, int64_t depth)
{
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_change_stream = true;
    opts.no_reaper = true;
    opts.ack_mode = kind == KIND_DONE ? MONGOQ_ACK_KEEP : MONGOQ_ACK_DELETE;
    snprintf(dq->name, sizeof dq->name, "depth_%lld", (long long)depth);
    dq->q = mongoq_queue_new(bench_pool, bench_db_name, dq->name, &opts, &error);
    if (!dq->q) {
        bench_die("depth queue", &error);
    }
    insert_kind(dq->name, kind, depth, false, NULL);
    (void)time_claims(dq, kind); /* warm-up, untimed: the first pass pays for cold caches */
}

/* At least 5 runs per cell: cells are cheap. */
static int
depth_reps(void)
{
    return bench_cfg.reps > 5 ? bench_cfg.reps : 5;
}

/* A cell: the cost per call, and its ratio to the smallest depth's (the median of the ratios
 * of runs taken side by side). */
typedef struct {
    summary_t cost;
    double ratio;
} cell_t;

typedef cell_t cells_t[KIND_COUNT][OP_COUNT][3];

/*
 * Every depth of one kind is filled at once, each in a collection of its own; then each run of
 * an operation is taken at every depth in turn. A ratio between depths is so taken from
 * measurements seconds apart, not minutes: on a shared machine whose load comes and goes, that
 * is what keeps it about the depth.
 */
static void
measure_kind(kind_t kind, int n_depths, cells_t cells, FILE *dat)
{
    depth_queue_t dqs[3];
    bench_drop_db();
    for (int d = 0; d < n_depths; d++) {
        depth_queue_open(&dqs[d], kind, bench_cfg.depths[d]);
    }
    for (op_t op = 0; op < OP_COUNT; op++) {
        double v[3][MAX_REPS], ratios[MAX_REPS];
        for (int r = 0; r < depth_reps(); r++) {
            for (int d = 0; d < n_depths; d++) {
                v[d][r] = op == OP_CLAIM ? time_claims(&dqs[d], kind) : time_op(&dqs[d], op);
            }
        }
        for (int d = 0; d < n_depths; d++) {
            for (int r = 0; r < depth_reps(); r++) {
                ratios[r] = v[d][r] / v[0][r];
            }
            cells[kind][op][d].ratio = bench_summarize(ratios, depth_reps()).median;
            cells[kind][op][d].cost = bench_summarize(v[d], depth_reps());
            fprintf(stderr, "depth %s %lld: %s %.0f us (%.2fx)\n", kind_short[kind],
                    (long long)bench_cfg.depths[d], op_names[op], cells[kind][op][d].cost.median,
                    cells[kind][op][d].ratio);
        }
    }
    for (int d = 0; d < n_depths; d++) {
        summary_t *c = &cells[kind][OP_CLAIM][d].cost;
        fprintf(dat, "%lld %.2f %.2f %.2f\n", (long long)bench_cfg.depths[d], c->median, c->min,
                c->max);
        mongoq_queue_destroy(dqs[d].q);
    }
    fprintf(dat, "\n\n");
}

static void
write_table(cells_t cells, int n_depths)
{
    fprintf(bench_md, "| backlog kind | operation |");
    for (int d = 0; d < n_depths; d++) {
        fprintf(bench_md, " %lld deep |", (long long)bench_cfg.depths[d]);
    }
    fprintf(bench_md, "\n|---|---|");
    for (int d = 0; d < n_depths; d++) {
        fprintf(bench_md, "---|");
    }
    for (kind_t k = 0; k < KIND_COUNT; k++) {
        for (op_t op = 0; op < OP_COUNT; op++) {
            fprintf(bench_md, "\n| %s | %s |", kind_names[k], op_names[op]);
            for (int d = 0; d < n_depths; d++) {
                double ratio = cells[k][op][d].ratio;
                if (d == 0) {
                    fprintf(bench_md, " %.0f us |", cells[k][op][d].cost.median);
                } else {
                    fprintf(bench_md, " %.0f us (%.2fx) |", cells[k][op][d].cost.median, ratio);
                }
                if (d == n_depths - 1 && d > 0) {
                    double *worst = op == OP_STATS ? &bench_key.depth_stats_ratio
                                                   : &bench_key.depth_ratio;
                    if (ratio > *worst) {
                        *worst = ratio;
                        if (op != OP_STATS) {
                            snprintf(bench_key.depth_worst, sizeof bench_key.depth_worst,
                                     "%s, %s", op_names[op], kind_short[k]);
                        }
                    }
                }
            }
        }
    }
    fprintf(bench_md, "\n");
}

void
bench_depth(void)
{
    static cells_t cells;
    char path[512];
    int n_depths = 0;
    while (n_depths < 3 && bench_cfg.depths[n_depths]) {
        n_depths++;
    }
    snprintf(path, sizeof path, "%s/depth.dat", bench_cfg.out_dir);
    FILE *dat = fopen(path, "w");
    for (kind_t k = 0; k < KIND_COUNT; k++) {
        measure_kind(k, n_depths, cells, dat);
    }
    fclose(dat);
    fprintf(bench_md, "\n## Depth: cost per operation against what the collection holds\n\n");
    fprintf(bench_md,
            "One kind of backlog at a time, at each depth: claim + ack (%lld messages; ready "
            "probes planted behind a backlog that is not itself claimable), one reap pass with "
            "nothing expired (%d passes), one mongoq_queue_stats (%d calls), one redrive by _id "
            "(%d). Microseconds per call, median of %d runs, and in brackets the ratio to the cost "
            "at %lld deep (the median of the ratios of runs taken side by side: every depth is "
            "filled at once, each in a collection of its own, and each run visits every depth in "
            "turn, so that the machine's changing load does not pass for depth).%s\n\n",
            (long long)bench_cfg.depth_sample, bench_cfg.depth_calls, bench_cfg.depth_stats_calls,
            bench_cfg.depth_calls, depth_reps(), (long long)bench_cfg.depths[0],
            bench_cfg.large ? "" : " The default set stops at 100,000 deep; `--large` adds 1,000,000.");
    bench_key.depth_ratio = 0;
    bench_key.depth_stats_ratio = 0;
    bench_key.depth_max = bench_cfg.depths[n_depths - 1];
    write_table(cells, n_depths);
    fflush(bench_md);
}

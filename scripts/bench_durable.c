/*
 * mongoq-bench against a server that waits for its journal: the test server started by
 * scripts/bench with --dbpath in a temporary directory, where every write with {w: "majority",
 * j: true} (mongoq's default, and the baselines') is answered only after fdatasync covered it,
 * concurrent writers sharing one sync (group commit). This is where batching shows its real
 * gain: a single claim + ack pays two syncs per message, a batch of 100 pays about four in all.
 *
 * The same loops as the burn-down (bench_throughput.c), with fewer messages; the pool and the
 * database are swapped for the durable server's for the duration.
 */
#include "bench.h"

#define SYNCS "wiredTiger.log.log sync operations"

typedef struct {
    summary_t rate;
    double syncs_per_msg; /* negative: the server does not report its syncs */
} durable_t;

static const burn_mode_t modes[] = {MODE_RAW, MODE_SAME, MODE_SINGLE, MODE_SAME_BATCH, MODE_BATCH};
static const char *const names[] = {"naive loop", "same-commands loop, single", "mongoq claim + ack",
                                    "same-commands loop, batches of 100",
                                    "mongoq claim_many(100) + ack_many"};
#define N_MODES (sizeof modes / sizeof modes[0])

/* One burn-down of durable_messages in mode with threads: msgs/s; the journal syncs around the
 * burn-down (not the fill) added to *syncs, or *syncs set negative when not reported. */
static double
durable_once(burn_mode_t mode, int threads, double *syncs, int64_t *moved)
{
    mongoq_queue_t *q = bench_fresh_queue();
    bench_fill(q, bench_cfg.durable_messages, 100);
    bson_t before, after;
    double a, b;
    int64_t n = 0;
    bench_server_status(bench_pool, &before);
    double rate = bench_burn(q, mode, threads, 0, &n);
    bench_server_status(bench_pool, &after);
    if (*syncs >= 0 && bench_status_number(&before, SYNCS, &a) &&
        bench_status_number(&after, SYNCS, &b)) {
        *syncs += b - a;
    } else {
        *syncs = -1;
    }
    *moved += n;
    bson_destroy(&before);
    bson_destroy(&after);
    mongoq_queue_destroy(q);
    return rate;
}

/* Every loop once per repetition (a drifting machine weighs on all alike). */
static void
durable_modes(int threads, durable_t *res)
{
    double v[N_MODES][MAX_REPS];
    int64_t moved[N_MODES] = {0};
    for (size_t m = 0; m < N_MODES; m++) {
        res[m].syncs_per_msg = 0;
    }
    for (int r = 0; r < bench_cfg.reps; r++) {
        for (size_t m = 0; m < N_MODES; m++) {
            v[m][r] = durable_once(modes[m], threads, &res[m].syncs_per_msg, &moved[m]);
        }
    }
    for (size_t m = 0; m < N_MODES; m++) {
        if (res[m].syncs_per_msg >= 0 && moved[m] > 0) {
            res[m].syncs_per_msg /= (double)moved[m];
        }
        res[m].rate = bench_summarize(v[m], bench_cfg.reps);
        fprintf(stderr, "durable %s, %d threads: %.0f msg/s, %.2f syncs per message\n", names[m],
                threads, res[m].rate.median, res[m].syncs_per_msg);
    }
}

static void
durable_table(void)
{
    static const int thread_counts[] = {1, 4};
    durable_t res[2][N_MODES];
    for (size_t t = 0; t < 2; t++) {
        durable_modes(thread_counts[t], res[t]);
    }
    fprintf(bench_md, "| loop | threads | messages / s | journal syncs / message | mongoq / "
                      "same-commands |\n|---|---|---|---|---|\n");
    for (size_t t = 0; t < 2; t++) {
        for (size_t m = 0; m < N_MODES; m++) {
            durable_t *d = &res[t][m];
            char syncs[32], ratio[32] = "";
            if (d->syncs_per_msg < 0) {
                snprintf(syncs, sizeof syncs, "n/a");
            } else {
                snprintf(syncs, sizeof syncs, "%.2f", d->syncs_per_msg);
            }
            if (modes[m] == MODE_SINGLE || modes[m] == MODE_BATCH) {
                snprintf(ratio, sizeof ratio, "%.2fx", d->rate.median / res[t][m - 1].rate.median);
            }
            fprintf(bench_md, "| %s | %d | %.0f (%.0f-%.0f) | %s | %s |\n", names[m],
                    thread_counts[t], d->rate.median, d->rate.min, d->rate.max, syncs, ratio);
        }
    }
    fprintf(bench_md, "\nBatching on the durable server: mongoq claim_many(100) + ack_many moves "
                      "%.1fx the messages per second of claim + ack with one thread (%.1fx with "
                      "four).\n",
            res[0][4].rate.median / res[0][2].rate.median,
            res[1][4].rate.median / res[1][2].rate.median);
}

void
bench_durable(void)
{
    fprintf(bench_md, "\n## Durable server: every acknowledged write on disk\n\n");
    if (!bench_cfg.durable_uri) {
        fprintf(bench_md, "Not run: no durable server was given (scripts/bench starts one unless "
                          "MONGOQ_TEST_URI names a server, whose own journaling then applies to "
                          "every table above).\n");
        return;
    }
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(bench_cfg.durable_uri, &error);
    if (!uri) {
        bench_die("durable uri", &error);
    }
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(pool, 64);
    mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
    mongoc_apm_set_command_started_cb(cbs, bench_on_command_started);
    mongoc_client_pool_set_apm_callbacks(pool, cbs, NULL);
    mongoc_apm_callbacks_destroy(cbs);
    fprintf(bench_md, "A second test server, started with `--dbpath` in a temporary directory: "
                      "a write with {w: \"majority\", j: true} (mongoq's default write concern "
                      "and the baselines') is answered only after fdatasync of its journal "
                      "covered it, concurrent writers sharing one sync. %lld messages of 100 B per "
                      "burn-down, median of %d runs (min-max); journal syncs from serverStatus "
                      "wiredTiger.log.\"log sync operations\" around the burn-downs.\n\n",
            (long long)bench_cfg.durable_messages, bench_cfg.reps);
    mongoc_client_pool_t *saved = bench_pool;
    bench_pool = pool;
    durable_table();
    bench_drop_db();
    bench_pool = saved;
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    fflush(bench_md);
}

/*
 * mongoq-bench: mongoq against the same work done with plain libmongoc calls, in one run, on one
 * server. Every comparison is a ratio taken in this run; every figure is the median of --reps
 * repetitions (at least 3) with its spread. Driven by scripts/bench, which turns the output into
 * docs/benchmarks.md and plots.
 *
 *   mongoq-bench --uri URI --out DIR [--durable-uri URI] [--mongos-uri URI] [--large]
 *                [--reps N] [--quick]
 *                [--only cost,enqueue,wake,depth,burndown,work,durable,groups,partitions]
 *
 * --durable-uri names a server that waits for its journal (scripts/bench starts a test server
 * with --dbpath) for the durable burn-downs; --mongos-uri a mongos in front of shards (scripts/bench
 * starts the test router with two) for the sharded partitions comparison. Writes DIR/results.md (tables) and DIR/burndown.dat,
 * wake.dat, depth.dat (gnuplot data). Loopback servers only.
 *
 * This file: the shared state, the targets table and main. The workloads are in
 * bench_throughput.c (burn-downs, enqueue), bench_wake.c, bench_depth.c, bench_cost.c,
 * bench_server.c (server work per message, the command-shape check), bench_durable.c,
 * bench_groups.c and bench_partitions.c; the baselines in bench_raw.c (the naive loop) and
 * bench_same.c (mongoq's own commands); helpers in bench_util.c; the declarations in bench.h.
 */
#include "bench.h"

config_t bench_cfg = {.reps = 3};
mongoc_client_pool_t *bench_pool;
mongoc_uri_t *bench_uri_parsed;
atomic_int_least64_t bench_commands_started;
FILE *bench_md;
char bench_db_name[64];
bench_key_t bench_key;

static void
target_row(const char *what, const char *target, double value, const char *unit, bool met)
{
    fprintf(bench_md, "| %s | %s | %.4g%s | %s |\n", what, target, value, unit,
            met ? "met" : "**missed**");
}

/* The targets first (issue 11), then the earlier ones. */
static void
write_targets(void)
{
    char what[256];
    fprintf(bench_md, "\n## Targets\n\n| what | target | this run | |\n|---|---|---|---|\n");
    target_row("mongoq claim + ack vs the same-commands loop (1 thread, 100 B)", ">= 0.95x",
               bench_key.single_vs_same, "x", bench_key.single_vs_same >= 0.95);
    target_row("mongoq claim_many + ack_many vs the same-commands loop (1 thread, 100 B)",
               ">= 0.95x", bench_key.batch_vs_same, "x", bench_key.batch_vs_same >= 0.95);
    snprintf(what, sizeof what, "every operation but stats, any backlog kind, at %lld deep vs "
             "1,000 (worst: %s)%s", (long long)bench_key.depth_max, bench_key.depth_worst,
             bench_key.depth_max < 1000000 ? "; the target is at 1,000,000: `--large`" : "");
    target_row(what, "<= 1.5x", bench_key.depth_ratio, "x", bench_key.depth_ratio <= 1.5);
    snprintf(what, sizeof what, "stats, any backlog kind, at %lld deep vs 1,000%s",
             (long long)bench_key.depth_max,
             bench_key.depth_max < 1000000 ? " (target at 1,000,000: `--large`)" : "");
    target_row(what, "<= 10x", bench_key.depth_stats_ratio, "x", bench_key.depth_stats_ratio <= 10);
    if (bench_key.keys_single_vs_raw < 0) {
        fprintf(bench_md, "| server keys examined per message vs the naive loop | <= 2x | n/a (not "
                          "in this server's serverStatus) | not measured |\n");
    } else {
        target_row("server keys examined per message, mongoq claim + ack vs the naive loop",
                   "<= 2x", bench_key.keys_single_vs_raw, "x", bench_key.keys_single_vs_raw <= 2);
        target_row("server keys examined per message, mongoq claim_many + ack_many vs the naive "
                   "loop", "<= 2x", bench_key.keys_batch_vs_raw, "x",
                   bench_key.keys_batch_vs_raw <= 2);
    }
    target_row("mongoq claim + ack vs the naive loop (1 thread, 100 B)", ">= 0.9x",
               bench_key.single_vs_raw, "x", bench_key.single_vs_raw >= 0.9);
    target_row("batched claim + ack vs single (1 thread, 100 B)", ">= 5x", bench_key.batch_vs_single,
               "x", bench_key.batch_vs_single >= 5);
    target_row("round trips per message, single", "<= 3", bench_key.rt_single, "",
               bench_key.rt_single <= 3);
    target_row("round trips per message, batches of 100", "<= 0.1", bench_key.rt_batch, "",
               bench_key.rt_batch <= 0.1);
    target_row("wake latency p50, change stream", "<= 5 ms", bench_key.wake_p50_cs, " ms",
               bench_key.wake_p50_cs <= 5);
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
            bench_cfg.uri = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            bench_cfg.out_dir = argv[++i];
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            bench_cfg.reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--large")) {
            bench_cfg.large = true;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            bench_cfg.only = argv[++i];
        } else if (!strcmp(argv[i], "--quick")) {
            bench_cfg.quick = true;
        } else if (!strcmp(argv[i], "--durable-uri") && i + 1 < argc) {
            bench_cfg.durable_uri = argv[++i];
        } else if (!strcmp(argv[i], "--mongos-uri") && i + 1 < argc) {
            bench_cfg.mongos_uri = argv[++i];
        } else {
            fprintf(stderr,
                    "usage: %s --uri URI --out DIR [--durable-uri URI] [--mongos-uri URI] [--large] [--quick] "
                    "[--reps N] [--only WORKLOAD,...]\n",
                    argv[0]);
            exit(2);
        }
    }
    if (!bench_cfg.uri || !bench_cfg.out_dir) {
        fprintf(stderr, "mongoq-bench: --uri and --out are required\n");
        exit(2);
    }
    if (bench_cfg.reps < 3 || bench_cfg.reps > MAX_REPS) {
        fprintf(stderr, "mongoq-bench: --reps must be 3..%d\n", MAX_REPS);
        exit(2);
    }
    /* The default set must finish within about 10 minutes on 2 cores: 100,000-message
     * burn-downs at every thread count, each of the five loops and every repetition would take
     * about 10 minutes against the test server on their own, so the default burns 30,000 and
     * --large 100,000 with both payload sizes. */
    bench_cfg.burn_depth = bench_cfg.large ? 100000 : (bench_cfg.quick ? 5000 : 30000);
    bench_cfg.depths[0] = 1000;
    bench_cfg.depths[1] = bench_cfg.quick ? 10000 : 100000;
    bench_cfg.depths[2] = bench_cfg.large ? 1000000 : 0;
    bench_cfg.wake_messages = bench_cfg.quick ? 100 : 1000;
    bench_cfg.depth_sample = bench_cfg.quick ? 50 : 500;
    bench_cfg.depth_calls = bench_cfg.quick ? 50 : 200;
    bench_cfg.depth_stats_calls = bench_cfg.quick ? 3 : 10;
    bench_cfg.durable_messages = bench_cfg.quick ? 300 : 2000;
}

int
main(int argc, char **argv)
{
    parse_args(argc, argv);
    mongoc_init();
    bson_error_t error;
    bench_uri_parsed = mongoc_uri_new_with_error(bench_cfg.uri, &error);
    if (!bench_uri_parsed) {
        bench_die("uri", &error);
    }
    bench_pool = mongoc_client_pool_new(bench_uri_parsed);
    mongoc_client_pool_set_error_api(bench_pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(bench_pool, 64);
    mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
    mongoc_apm_set_command_started_cb(cbs, bench_on_command_started);
    mongoc_client_pool_set_apm_callbacks(bench_pool, cbs, NULL);
    mongoc_apm_callbacks_destroy(cbs);
    snprintf(bench_db_name, sizeof bench_db_name, "mongoq_bench_%d", (int)getpid());

    char path[512];
    snprintf(path, sizeof path, "%s/results.md", bench_cfg.out_dir);
    bench_md = fopen(path, "w");
    if (!bench_md) {
        perror(path);
        return 1;
    }
    double t0 = bench_now_s();
    static const struct {
        const char *name;
        void (*run)(void);
    } workloads[] = {{"cost", bench_cost},
                     {"enqueue", bench_enqueue},
                     {"wake", bench_wake},
                     {"depth", bench_depth},
                     {"burndown", bench_burndown},
                     {"work", bench_server_work},
                     {"durable", bench_durable},
                     {"groups", bench_groups},
                     {"partitions", bench_partitions}};
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++) {
        if (!bench_cfg.only || listed(bench_cfg.only, workloads[i].name)) {
            workloads[i].run();
        }
    }
    if (!bench_cfg.only) {
        write_targets();
    }
    fprintf(bench_md, "\nThe run took %.0f s.\n", bench_now_s() - t0);
    fclose(bench_md);
    bench_drop_db();
    mongoc_client_pool_destroy(bench_pool);
    mongoc_uri_destroy(bench_uri_parsed);
    mongoc_cleanup();
    fprintf(stderr, "mongoq-bench: wrote %s/results.md\n", bench_cfg.out_dir);
    return 0;
}

/*
 * mongoq-bench --only groups: message groups (docs/design.md, Groups).
 *
 *  1. Claim + ack one at a time, with groups against without: a FIFO queue of 1,000 groups of
 *     100 messages (group_concurrency 1) and a plain queue of as many messages, the same
 *     consumers (1 and 8 threads) taking the same number of messages from each. A grouped ack
 *     is a transaction (the delete, the admission of the group's next message, the group
 *     document), so the ratio is the price of the guarantee.
 *  2. The throughput of a FIFO queue with 10,000 groups and 8 consumers.
 *
 * Each figure is the median of --reps runs, each on a fresh queue. --quick divides the number
 * of groups by 10 (100 groups of 100; 1,000 groups of 5): on the project's test server a
 * transaction's snapshot clones the collection it touches (tests/server/txn.c: the document
 * pointers and every index rebuilt), so each grouped enqueue or ack there costs time in
 * proportion to the collection, which mongod's transactions do not; the full sizes are for
 * mongod.
 */
#include "bench.h"

#define GROUPS_A 1000
#define PER_GROUP_A 100
#define GROUPS_B 10000
#define PER_GROUP_B 5
#define QUICK_DIVISOR 10

/* msgs/s of `threads` consumers taking `limit` messages from q. */
static double
run_loop(mongoq_queue_t *q, int threads, int64_t limit)
{
    return bench_claim_ack(q, threads, limit, NULL, NULL);
}

/* A fresh queue: groups of per_group messages each (groups = 0: as many ungrouped). */
static mongoq_queue_t *
fill_queue(int groups, int per_group, bool grouped)
{
    bson_error_t error;
    bench_drop_db();
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true;
    opts.group_concurrency = grouped ? 1 : 0;
    mongoq_queue_t *q = mongoq_queue_new(bench_pool, bench_db_name, QUEUE_NAME, &opts, &error);
    if (!q) {
        bench_die("mongoq_queue_new", &error);
    }
    if (!grouped) {
        bench_fill(q, (int64_t)groups * per_group, 100);
        return q;
    }
    bson_t payloads[PER_GROUP_A];
    const bson_t *ptrs[PER_GROUP_A];
    for (int i = 0; i < per_group; i++) {
        bench_make_payload(&payloads[i], i, 100);
        ptrs[i] = &payloads[i];
    }
    for (int g = 0; g < groups; g++) {
        char name[32];
        mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
        snprintf(name, sizeof name, "account-%05d", g);
        eopts.group = name;
        if (!mongoq_enqueue_many(q, ptrs, (size_t)per_group, &eopts, NULL, NULL, &error)) {
            bench_die("grouped fill", &error);
        }
    }
    for (int i = 0; i < per_group; i++) {
        bson_destroy(&payloads[i]);
    }
    return q;
}

static summary_t
measure(int groups, int per_group, bool grouped, int threads, int64_t limit)
{
    double v[MAX_REPS];
    for (int r = 0; r < bench_cfg.reps; r++) {
        mongoq_queue_t *q = fill_queue(groups, per_group, grouped);
        v[r] = run_loop(q, threads, limit);
        mongoq_queue_destroy(q);
    }
    summary_t s = bench_summarize(v, bench_cfg.reps);
    fprintf(stderr, "groups: %d x %d %s, %d threads: %.0f msg/s\n", groups, per_group,
            grouped ? "grouped" : "plain", threads, s.median);
    return s;
}

void
bench_groups(void)
{
    static const int threads[] = {1, 8};
    int64_t sample = bench_cfg.quick ? 2000 : 10000;
    int groups_a = bench_cfg.quick ? GROUPS_A / QUICK_DIVISOR : GROUPS_A;
    int groups_b = bench_cfg.quick ? GROUPS_B / QUICK_DIVISOR : GROUPS_B;
    fprintf(bench_md,
            "\n## Message groups\n\n"
            "Claim + ack one at a time from a FIFO queue of %d groups of %d messages "
            "(group_concurrency 1) and from a plain queue of as many messages; %lld "
            "messages taken per run, median (min-max) of %d runs, msg/s.\n\n"
            "| threads | plain | groups | groups / plain |\n|---|---|---|---|\n",
            groups_a, PER_GROUP_A, (long long)sample, bench_cfg.reps);
    for (size_t t = 0; t < 2; t++) {
        summary_t plain = measure(groups_a, PER_GROUP_A, false, threads[t], sample);
        summary_t grouped = measure(groups_a, PER_GROUP_A, true, threads[t], sample);
        fprintf(bench_md, "| %d | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2f |\n", threads[t],
                plain.median, plain.min, plain.max, grouped.median, grouped.min, grouped.max,
                grouped.median / plain.median);
    }
    int64_t wide_sample =
        (int64_t)groups_b * PER_GROUP_B < sample ? groups_b * PER_GROUP_B : sample;
    summary_t wide = measure(groups_b, PER_GROUP_B, true, 8, wide_sample);
    fprintf(bench_md,
            "\nA FIFO queue of %d groups of %d messages, 8 consumer threads: %.0f "
            "(%.0f-%.0f) msg/s.\n",
            groups_b, PER_GROUP_B, wide.median, wide.min, wide.max);
}

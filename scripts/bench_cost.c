/* mongoq-bench's cost workload: round trips and client CPU per message. */

#include "bench.h"

/* ---- cost per message --------------------------------------------------------------------- */

typedef struct {
    double round_trips;
    double cpu_us;
} cost_t;

static cost_t
measure_cost(int variant, int64_t n)
{
    mongoq_queue_t *q = bench_fresh_queue();
    mongoc_client_t *client = mongoc_client_pool_pop(bench_pool);
    mongoc_collection_t *coll = bench_get_collection(client);
    bson_error_t error;
    int64_t cmd0 = atomic_load(&bench_commands_started);
    double cpu0 = bench_cpu_s();
    if (variant == 0) { /* raw */
        bench_raw_insert(coll, n, 100, 1);
        mongoc_write_concern_t *wc = bench_majority_journaled();
        while (bench_raw_claim_ack(coll, wc)) {
        }
        mongoc_write_concern_destroy(wc);
    } else if (variant == 1) { /* mongoq single */
        for (int64_t i = 0; i < n; i++) {
            bson_t payload;
            bench_make_payload(&payload, i, 100);
            if (!mongoq_enqueue(q, &payload, NULL, NULL, &error)) {
                bench_die("enqueue", &error);
            }
            bson_destroy(&payload);
        }
        bench_burn(q, MODE_SINGLE, 1, 0, NULL);
    } else { /* mongoq batched */
        bench_fill(q, n, 100);
        bench_burn(q, MODE_BATCH, 1, 0, NULL);
    }
    /* Every variant ends with one claim that finds the queue empty: no message's round trip. */
    cost_t c = {(double)(atomic_load(&bench_commands_started) - cmd0 - 1) / (double)n,
                (bench_cpu_s() - cpu0) * 1e6 / (double)n};
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(bench_pool, client);
    mongoq_queue_destroy(q);
    return c;
}

void
bench_cost(void)
{
    const int64_t n = bench_cfg.quick ? 1000 : 3000;
    static const char *names[] = {"raw insert_one + findAndModify + delete_one",
                                  "mongoq enqueue + claim + ack",
                                  "mongoq enqueue_many(100) + claim_many(100) + ack_many"};
    fprintf(bench_md, "\n## Cost per message (enqueue + claim + ack)\n\nOne thread, %lld messages of "
                "100 B. Round trips counted with libmongoc's command monitoring (every command "
                "sent, less the one final claim that finds the queue empty); client CPU time from getrusage "
                "(user + system, this process only; the server's CPU is not included). Median "
                "of %d runs (min-max).\n\n",
            (long long)n, bench_cfg.reps);
    fprintf(bench_md, "| variant | round trips / message | client CPU us / message |\n|---|---|---|\n");
    for (int variant = 0; variant < 3; variant++) {
        double rt[MAX_REPS], cpu[MAX_REPS];
        for (int r = 0; r < bench_cfg.reps; r++) {
            cost_t c = measure_cost(variant, n);
            rt[r] = c.round_trips;
            cpu[r] = c.cpu_us;
        }
        summary_t a = bench_summarize(rt, bench_cfg.reps), b = bench_summarize(cpu, bench_cfg.reps);
        if (variant == 1) {
            bench_key.rt_single = a.median;
        } else if (variant == 2) {
            bench_key.rt_batch = a.median;
        }
        fprintf(bench_md, "| %s | %.3f (%.3f-%.3f) | %.1f (%.1f-%.1f) |\n", names[variant], a.median,
                a.min, a.max, b.median, b.min, b.max);
        fprintf(stderr, "cost %s: %.3f round trips, %.1f us CPU\n", names[variant], a.median,
                b.median);
        fflush(bench_md);
    }
}

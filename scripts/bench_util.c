/* mongoq-bench's small utilities: clocks, statistics, command counting, payloads, the benchmark
 * database and its queue. */

#include "bench.h"

/* ---- small utilities ---------------------------------------------------------------------- */

double
bench_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double
bench_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

void
bench_die(const char *what, const bson_error_t *error)
{
    fprintf(stderr, "mongoq-bench: %s: %s (domain %u, code %u)\n", what,
            error ? error->message : "", error ? error->domain : 0, error ? error->code : 0);
    exit(1);
}

int
bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}


summary_t
bench_summarize(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    summary_t s = {v[n / 2], v[0], v[n - 1]};
    if (n % 2 == 0) {
        s.median = (v[n / 2 - 1] + v[n / 2]) / 2;
    }
    return s;
}

double
bench_percentile(double *sorted, int n, double p)
{
    int i = (int)ceil(p / 100.0 * n) - 1;
    return sorted[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

void
bench_on_command_started(const mongoc_apm_command_started_t *event)
{
    (void)event;
    atomic_fetch_add(&bench_commands_started, 1);
}

void
bench_make_payload(bson_t *payload, int64_t seq, size_t size)
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

mongoc_collection_t *
bench_get_collection(mongoc_client_t *client)
{
    return mongoc_client_get_collection(client, bench_db_name, QUEUE_NAME);
}

void
bench_drop_db(void)
{
    mongoc_client_t *client = mongoc_client_pool_pop(bench_pool);
    mongoc_database_t *db = mongoc_client_get_database(client, bench_db_name);
    mongoc_database_drop(db, NULL);
    mongoc_database_destroy(db);
    mongoc_client_pool_push(bench_pool, client);
}

mongoq_queue_t *
bench_open_queue(bool no_change_stream, int64_t poll_ms)
{
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_change_stream = no_change_stream;
    opts.poll_interval_ms = poll_ms;
    opts.no_reaper = true;
    mongoq_queue_t *q = mongoq_queue_new(bench_pool, bench_db_name, QUEUE_NAME, &opts, &error);
    if (!q) {
        bench_die("mongoq_queue_new", &error);
    }
    return q;
}

/* A fresh, empty queue collection with mongoq's indexes. */
mongoq_queue_t *
bench_fresh_queue(void)
{
    bench_drop_db();
    return bench_open_queue(false, 0);
}

void
bench_fill(mongoq_queue_t *q, int64_t n, size_t payload_size)
{
    bson_t payloads[100];
    const bson_t *ptrs[100];
    bson_error_t error;
    for (int64_t done = 0; done < n;) {
        size_t k = (size_t)(n - done < 100 ? n - done : 100);
        for (size_t i = 0; i < k; i++) {
            bench_make_payload(&payloads[i], done + (int64_t)i, payload_size);
            ptrs[i] = &payloads[i];
        }
        if (!mongoq_enqueue_many(q, ptrs, k, NULL, NULL, NULL, &error)) {
            bench_die("fill", &error);
        }
        for (size_t i = 0; i < k; i++) {
            bson_destroy(&payloads[i]);
        }
        done += (int64_t)k;
    }
}

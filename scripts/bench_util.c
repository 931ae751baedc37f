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

int64_t
bench_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* ---- command shapes: what was sent, values replaced by their types ------------------------- */

static pthread_mutex_t shape_mu = PTHREAD_MUTEX_INITIALIZER;
static bson_string_t *shape_log; /* non-NULL while capturing */

/* Fields the driver adds to every command, or that are not part of its shape. */
static bool
shape_skipped(const char *key)
{
    static const char *const skipped[] = {"lsid", "$clusterTime", "txnNumber", "$db",
                                          "$readPreference", NULL};
    for (int i = 0; skipped[i]; i++) {
        if (!strcmp(key, skipped[i])) {
            return true;
        }
    }
    return false;
}

/* {key: shape, ...} of a document; an array is its first element's shape (lengths vary). */
static void
shape_of(bson_iter_t *it, bool array, bool top, bson_string_t *out)
{
    bson_string_append(out, array ? "[" : "{");
    while (bson_iter_next(it)) {
        bson_iter_t child;
        if (top && shape_skipped(bson_iter_key(it))) {
            continue;
        }
        if (!array) {
            bson_string_append_printf(out, "%s:", bson_iter_key(it));
        }
        if ((BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) &&
            bson_iter_recurse(it, &child)) {
            shape_of(&child, BSON_ITER_HOLDS_ARRAY(it), false, out);
        } else if (BSON_ITER_HOLDS_UTF8(it) && bson_iter_utf8(it, NULL)[0] == '$') {
            bson_string_append(out, bson_iter_utf8(it, NULL)); /* "$$NOW", "$run_at" */
        } else {
            bson_string_append_printf(out, "t%d", (int)bson_iter_type(it));
        }
        bson_string_append(out, ",");
        if (array) {
            break;
        }
    }
    bson_string_append(out, array ? "]" : "}");
}

void
bench_shape_start(void)
{
    pthread_mutex_lock(&shape_mu);
    shape_log = bson_string_new("");
    pthread_mutex_unlock(&shape_mu);
}

char *
bench_shape_stop(void)
{
    pthread_mutex_lock(&shape_mu);
    char *s = bson_string_free(shape_log, false);
    shape_log = NULL;
    pthread_mutex_unlock(&shape_mu);
    return s;
}

void
bench_on_command_started(const mongoc_apm_command_started_t *event)
{
    atomic_fetch_add(&bench_commands_started, 1);
    const char *name = mongoc_apm_command_started_get_command_name(event);
    pthread_mutex_lock(&shape_mu);
    if (shape_log && strcmp(name, "hello") && strcmp(name, "isMaster") && strcmp(name, "ping")) {
        bson_iter_t it;
        if (bson_iter_init(&it, mongoc_apm_command_started_get_command(event))) {
            shape_of(&it, false, true, shape_log);
            bson_string_append(shape_log, "\n");
        }
    }
    pthread_mutex_unlock(&shape_mu);
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

/* ---- claim + ack under a shared count (groups, partitions) ------------------------------- */

typedef struct {
    mongoq_queue_t *queue;
    int64_t limit; /* stop after this many in all threads */
    atomic_int_least64_t *taken;
    int64_t done;
    int64_t per_partition[MONGOQ_MAX_PARTITIONS];
} claim_ack_arg_t;

static void *
claim_ack_thread(void *p)
{
    claim_ack_arg_t *a = p;
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(a->queue, NULL, &error);
    if (!c) {
        bench_die("consumer", &error);
    }
    for (int idle = 0; idle < 20;) {
        if (atomic_fetch_add(a->taken, 1) >= a->limit) {
            break;
        }
        mongoq_message_t *msg = NULL;
        if (!mongoq_consumer_claim(c, 50, &msg, &error)) {
            bench_die("claim", &error);
        }
        if (!msg) {
            atomic_fetch_sub(a->taken, 1);
            /* the last messages are in other threads' hands, or a FIFO queue's last heads are
             * all held by others: a short wait */
            idle++;
            continue;
        }
        a->per_partition[mongoq_message_partition(msg)]++;
        if (!mongoq_message_ack(msg, &error)) {
            bench_die("ack", &error);
        }
        mongoq_message_destroy(msg);
        a->done++;
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

double
bench_claim_ack(mongoq_queue_t *q, int threads, int64_t limit, int64_t *per_partition,
                int64_t *total_out)
{
    pthread_t tids[MAX_THREADS];
    claim_ack_arg_t *args = bson_malloc0(sizeof *args * MAX_THREADS);
    atomic_int_least64_t taken = 0;
    double t0 = bench_now_s();
    for (int i = 0; i < threads; i++) {
        args[i].queue = q;
        args[i].limit = limit;
        args[i].taken = &taken;
        pthread_create(&tids[i], NULL, claim_ack_thread, &args[i]);
    }
    int64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += args[i].done;
    }
    double rate = (double)total / (bench_now_s() - t0);
    for (int i = 0; i < threads && per_partition; i++) {
        for (int k = 0; k < MONGOQ_MAX_PARTITIONS; k++) {
            per_partition[k] += args[i].per_partition[k];
        }
    }
    bson_free(args);
    if (total_out) {
        *total_out = total;
    }
    return rate;
}

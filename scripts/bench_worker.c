/*
 * mongoq-bench-worker: mongoq_worker against the loop it replaces, in one run, on one server.
 *
 *   mongoq-bench-worker --uri URI [--messages N] [--reps N] [--threads 1,4,16] [--batch 1,100]
 *
 * For every batch size and thread count, each repetition fills a fresh queue with N messages
 * (100 B payloads) and empties it twice, alternating which goes first:
 *  - the loop: T threads, each with its own consumer, claim + ack until a claim finds nothing
 *    (batch 1: mongoq_consumer_claim + mongoq_message_ack; batch B: claim_many(B) + ack_many);
 *  - the worker: mongoq_worker with T handler threads and that batch, a handler that does
 *    nothing and answers MONGOQ_ACK, timed from mongoq_worker_start to the Nth on_outcome.
 * Commands per message are every command the pool's clients started while the N messages moved
 * (libmongoc APM command-started events: claims, acks, heartbeats, change-stream getMores, clock
 * hellos), divided by N; the worker's are also listed by command name. Figures are the median
 * of --reps repetitions (min-max); the ratio is worker / loop in the same run. The queue has no
 * background reaper (neither side would use it in so short a run).
 *
 * Prints a markdown table on stdout, progress on stderr. Loopback servers only. Built with the
 * benchmark (MONGOQ_BUILD_BENCH) as mongoq-bench-worker; a Release build measures best:
 *
 *   build/hC-rel/tests/server/mongoq-test-server --port 0   # prints its URI
 *   build/hC-rel/mongoq-bench-worker --uri 'mongodb://127.0.0.1:PORT/?replicaSet=rs0'
 */
#include <mongoq/mongoq.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPS 15
#define MAX_THREADS 64
#define MAX_CONFIGS 8
#define MAX_BATCH_CLAIM 1000
#define RUN_LIMIT_S 300 /* a run that has not moved every message by then is a failure */
#define QUEUE_NAME "bench_worker"

/* ---- command counting (APM) ------------------------------------------------------------------ */

static const char *const counted_names[] = {"findAndModify", "find",      "update", "delete",
                                            "aggregate",     "getMore",   "hello",  "isMaster",
                                            "insert",        "killCursors"};
#define N_NAMES (sizeof counted_names / sizeof counted_names[0])
static atomic_int_least64_t by_name[N_NAMES + 1]; /* the last: any other command */

static void
on_command_started(const mongoc_apm_command_started_t *event)
{
    const char *name = mongoc_apm_command_started_get_command_name(event);
    size_t i = 0;
    while (i < N_NAMES && strcmp(name, counted_names[i]) != 0) {
        i++;
    }
    atomic_fetch_add(&by_name[i], 1);
}

typedef struct {
    int64_t n[N_NAMES + 1];
} commands_t;

static void
commands_read(commands_t *c)
{
    for (size_t i = 0; i <= N_NAMES; i++) {
        c->n[i] = atomic_load(&by_name[i]);
    }
}

static int64_t
commands_total(const commands_t *c)
{
    int64_t t = 0;
    for (size_t i = 0; i <= N_NAMES; i++) {
        t += c->n[i];
    }
    return t;
}

static void
commands_diff(const commands_t *after, const commands_t *before, commands_t *out)
{
    for (size_t i = 0; i <= N_NAMES; i++) {
        out->n[i] = after->n[i] - before->n[i];
    }
}

/* ---- configuration and small helpers --------------------------------------------------------- */

static struct {
    const char *uri;
    int64_t messages;
    int reps;
    int threads[MAX_CONFIGS];
    int n_threads;
    int batches[MAX_CONFIGS];
    int n_batches;
} cfg = {.messages = 2000, .reps = 5, .threads = {1, 4, 16}, .n_threads = 3,
         .batches = {1, 100}, .n_batches = 2};

static mongoc_client_pool_t *pool;
static char db_name[64];

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
die(const char *what, const bson_error_t *error)
{
    fprintf(stderr, "mongoq-bench-worker: %s: %s\n", what, error ? error->message : "");
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

/* "1,4,16" into list; false on anything else. */
static bool
parse_list(const char *text, int *list, int *n, int max_value)
{
    char *end;
    *n = 0;
    for (const char *p = text; *p && *n < MAX_CONFIGS; p = *end ? end + 1 : end) {
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > max_value || (*end && *end != ',')) {
            return false;
        }
        list[(*n)++] = (int)v;
    }
    return *n > 0;
}

static void
usage(const char *argv0)
{
    fprintf(stderr, "usage: %s --uri URI [--messages N] [--reps N (1-%d)] [--threads 1,4,16] "
                    "[--batch 1,100]\n", argv0, MAX_REPS);
    exit(2);
}

static void
parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        bool more = i + 1 < argc;
        if (!strcmp(argv[i], "--uri") && more) {
            cfg.uri = argv[++i];
        } else if (!strcmp(argv[i], "--messages") && more) {
            cfg.messages = atoll(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && more) {
            cfg.reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--threads") && more) {
            if (!parse_list(argv[++i], cfg.threads, &cfg.n_threads, MAX_THREADS)) {
                usage(argv[0]);
            }
        } else if (!strcmp(argv[i], "--batch") && more) {
            if (!parse_list(argv[++i], cfg.batches, &cfg.n_batches, MAX_BATCH_CLAIM)) {
                usage(argv[0]);
            }
        } else {
            usage(argv[0]);
        }
    }
    if (!cfg.uri || cfg.messages < 1 || cfg.reps < 1 || cfg.reps > MAX_REPS) {
        usage(argv[0]);
    }
}

/* ---- the queue ------------------------------------------------------------------------------- */

static void
drop_db(void)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_database_t *db = mongoc_client_get_database(client, db_name);
    mongoc_database_drop(db, NULL);
    mongoc_database_destroy(db);
    mongoc_client_pool_push(pool, client);
}

/* A fresh queue holding cfg.messages ready messages of about 100 bytes. */
static mongoq_queue_t *
fresh_filled_queue(void)
{
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true;
    drop_db();
    mongoq_queue_t *q = mongoq_queue_new(pool, db_name, QUEUE_NAME, &opts, &error);
    if (!q) {
        die("mongoq_queue_new", &error);
    }
    bson_t payloads[100];
    const bson_t *ptrs[100];
    for (int64_t done = 0; done < cfg.messages;) {
        size_t k = (size_t)(cfg.messages - done < 100 ? cfg.messages - done : 100);
        for (size_t i = 0; i < k; i++) {
            bson_init(&payloads[i]);
            BSON_APPEND_INT64(&payloads[i], "seq", done + (int64_t)i);
            BSON_APPEND_UTF8(&payloads[i], "body", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
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
    return q;
}

/* What one run measured. */
typedef struct {
    double rate;           /* messages per second */
    double commands;       /* commands per message */
    commands_t by_command; /* during the run */
} run_t;

/* ---- the hand-written loop ------------------------------------------------------------------- */

typedef struct {
    mongoq_queue_t *queue;
    int batch;
    int64_t done;
} loop_arg_t;

static void *
loop_thread(void *p)
{
    loop_arg_t *a = p;
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(a->queue, NULL, &error);
    mongoq_message_t *msgs[MAX_BATCH_CLAIM];
    if (!c) {
        die("consumer", &error);
    }
    for (int64_t round = 0; round <= cfg.messages; round++) {
        size_t n = 0;
        if (a->batch == 1) {
            if (!mongoq_consumer_claim(c, 0, &msgs[0], &error)) {
                die("claim", &error);
            }
            n = msgs[0] ? 1 : 0;
        } else if (!mongoq_consumer_claim_many(c, (size_t)a->batch, 0, msgs, &n, &error)) {
            die("claim_many", &error);
        }
        if (n == 0) {
            break;
        }
        bool ok = a->batch == 1 ? mongoq_message_ack(msgs[0], &error)
                                : mongoq_message_ack_many(msgs, n, &error);
        if (!ok) {
            die("ack", &error);
        }
        for (size_t i = 0; i < n; i++) {
            mongoq_message_destroy(msgs[i]);
        }
        a->done += (int64_t)n;
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

static run_t
run_loop(int threads, int batch)
{
    mongoq_queue_t *q = fresh_filled_queue();
    pthread_t tids[MAX_THREADS];
    loop_arg_t args[MAX_THREADS];
    commands_t before, after;
    run_t r;
    commands_read(&before);
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        args[i] = (loop_arg_t){.queue = q, .batch = batch};
        if (pthread_create(&tids[i], NULL, loop_thread, &args[i]) != 0) {
            die("pthread_create", NULL);
        }
    }
    int64_t total = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        total += args[i].done;
    }
    double elapsed = now_s() - t0;
    commands_read(&after);
    if (total != cfg.messages) {
        fprintf(stderr, "mongoq-bench-worker: the loop moved %lld of %lld\n", (long long)total,
                (long long)cfg.messages);
        exit(1);
    }
    commands_diff(&after, &before, &r.by_command);
    r.rate = (double)total / elapsed;
    r.commands = (double)commands_total(&r.by_command) / (double)total;
    mongoq_queue_destroy(q);
    return r;
}

/* ---- the worker ------------------------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int64_t outcomes;
    int64_t not_acked;
    double finished_at;
    commands_t at_finish;
} worker_run_t;

static mongoq_result_t
no_work(mongoq_message_t *msg, void *user_data)
{
    (void)msg;
    (void)user_data;
    return MONGOQ_ACK;
}

static void
on_outcome(const mongoq_message_t *msg, const mongoq_outcome_t *outcome, void *user_data)
{
    worker_run_t *wr = user_data;
    (void)msg;
    pthread_mutex_lock(&wr->mu);
    if (outcome->action != MONGOQ_OUTCOME_ACKED || !outcome->ok) {
        wr->not_acked++;
    }
    if (++wr->outcomes == cfg.messages) {
        wr->finished_at = now_s();
        commands_read(&wr->at_finish);
        pthread_cond_broadcast(&wr->cond);
    }
    pthread_mutex_unlock(&wr->mu);
}

/* Waits (at most RUN_LIMIT_S) for the Nth outcome; false on time-out. */
static bool
await_outcomes(worker_run_t *wr)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += RUN_LIMIT_S;
    bool done;
    pthread_mutex_lock(&wr->mu);
    while (wr->outcomes < cfg.messages) {
        if (pthread_cond_timedwait(&wr->cond, &wr->mu, &deadline) == ETIMEDOUT) {
            break;
        }
    }
    done = wr->outcomes >= cfg.messages;
    pthread_mutex_unlock(&wr->mu);
    return done;
}

static run_t
run_worker(int threads, int batch)
{
    mongoq_queue_t *q = fresh_filled_queue();
    worker_run_t wr = {.outcomes = 0};
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    bson_error_t error;
    commands_t before;
    run_t r;
    pthread_mutex_init(&wr.mu, NULL);
    pthread_cond_init(&wr.cond, NULL);
    opts.handler = no_work;
    opts.on_outcome = on_outcome;
    opts.user_data = &wr;
    opts.threads = threads;
    opts.batch = batch;
    mongoq_worker_t *w = mongoq_worker_new(q, &opts, &error);
    if (!w) {
        die("mongoq_worker_new", &error);
    }
    commands_read(&before);
    double t0 = now_s();
    if (!mongoq_worker_start(w, &error)) {
        die("mongoq_worker_start", &error);
    }
    if (!await_outcomes(&wr)) {
        fprintf(stderr, "mongoq-bench-worker: the worker moved %lld of %lld in %d s\n",
                (long long)wr.outcomes, (long long)cfg.messages, RUN_LIMIT_S);
        exit(1);
    }
    if (!mongoq_worker_stop(w, 10000, &error)) {
        die("mongoq_worker_stop", &error);
    }
    mongoq_worker_destroy(w);
    if (wr.not_acked > 0) {
        fprintf(stderr, "mongoq-bench-worker: %lld outcomes were not ACKED\n",
                (long long)wr.not_acked);
        exit(1);
    }
    commands_diff(&wr.at_finish, &before, &r.by_command);
    r.rate = (double)cfg.messages / (wr.finished_at - t0);
    r.commands = (double)commands_total(&r.by_command) / (double)cfg.messages;
    pthread_cond_destroy(&wr.cond);
    pthread_mutex_destroy(&wr.mu);
    mongoq_queue_destroy(q);
    return r;
}

/* ---- the table ------------------------------------------------------------------------------- */

/* The worker's commands per message by name, of its median-rate run. */
static void
print_breakdown(char *buf, size_t size, const commands_t *c)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i <= N_NAMES && used < size; i++) {
        if (c->n[i] == 0) {
            continue;
        }
        int k = snprintf(buf + used, size - used, "%s%s %.2f", used ? ", " : "",
                         i < N_NAMES ? counted_names[i] : "other",
                         (double)c->n[i] / (double)cfg.messages);
        used += k > 0 ? (size_t)k : 0;
    }
}

static void
measure(int threads, int batch)
{
    double loop_rate[MAX_REPS], worker_rate[MAX_REPS], loop_cmd[MAX_REPS], worker_cmd[MAX_REPS];
    run_t worker_runs[MAX_REPS];
    for (int rep = 0; rep < cfg.reps; rep++) {
        run_t l, w;
        if (rep % 2 == 0) {
            l = run_loop(threads, batch);
            w = run_worker(threads, batch);
        } else {
            w = run_worker(threads, batch);
            l = run_loop(threads, batch);
        }
        loop_rate[rep] = l.rate;
        loop_cmd[rep] = l.commands;
        worker_rate[rep] = w.rate;
        worker_cmd[rep] = w.commands;
        worker_runs[rep] = w;
        fprintf(stderr, "  batch %d, %d threads, rep %d: loop %.0f/s (%.2f cmd/msg), worker "
                        "%.0f/s (%.2f cmd/msg)\n", batch, threads, rep + 1, l.rate, l.commands,
                w.rate, w.commands);
    }
    /* The breakdown of the run with the median rate (before the rates are sorted). */
    double sorted[MAX_REPS];
    memcpy(sorted, worker_rate, sizeof sorted);
    summary_t tmp = summarize(sorted, cfg.reps);
    int median_run = 0;
    for (int rep = 0; rep < cfg.reps; rep++) {
        double d = worker_rate[rep] - tmp.median, best = worker_rate[median_run] - tmp.median;
        median_run = d * d < best * best ? rep : median_run;
    }
    char breakdown[512];
    print_breakdown(breakdown, sizeof breakdown, &worker_runs[median_run].by_command);
    summary_t lr = summarize(loop_rate, cfg.reps), wr = summarize(worker_rate, cfg.reps);
    summary_t lc = summarize(loop_cmd, cfg.reps), wc = summarize(worker_cmd, cfg.reps);
    printf("| %d | %d | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx | %.2f | %.2f | %s |\n", batch,
           threads, lr.median, lr.min, lr.max, wr.median, wr.min, wr.max, wr.median / lr.median,
           lc.median, wc.median, breakdown);
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    parse_args(argc, argv);
    mongoc_init();
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(cfg.uri, &error);
    if (!uri) {
        die("uri", &error);
    }
    pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(pool, MAX_THREADS + 16);
    mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
    mongoc_apm_set_command_started_cb(cbs, on_command_started);
    mongoc_client_pool_set_apm_callbacks(pool, cbs, NULL);
    mongoc_apm_callbacks_destroy(cbs);
    snprintf(db_name, sizeof db_name, "mongoq_bench_worker_%d", (int)getpid());

    printf("%lld messages of 100 B per run, no handler work; messages/s median of %d runs "
           "(min-max); commands per message (median) from APM command-started events.\n\n",
           (long long)cfg.messages, cfg.reps);
    printf("| batch | threads | loop msg/s | worker msg/s | worker / loop | loop cmd/msg | "
           "worker cmd/msg | worker commands by name (per msg) |\n"
           "|---|---|---|---|---|---|---|---|\n");
    double t0 = now_s();
    for (int b = 0; b < cfg.n_batches; b++) {
        for (int t = 0; t < cfg.n_threads; t++) {
            measure(cfg.threads[t], cfg.batches[b]);
        }
    }
    printf("\nThe run took %.0f s.\n", now_s() - t0);
    drop_db();
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return 0;
}

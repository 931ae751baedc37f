/*
 * mongoq-consumer: the mailer. It "sends" each weekly summary email the producer queued (here:
 * prints it), and tells how long the message waited between enqueue and the start of its
 * handler.
 *
 *   mongoq-consumer URI [--expect N] [--idle-ms MS] [--threads N] [--db NAME] [--queue NAME]
 *                       [--partitions P [--shard]]
 *
 * A worker (mongoq_worker_*) runs the handler on --threads threads; the handler's answer
 * decides what happens to the message (ack, retry with backoff, or dead). SIGINT and SIGTERM
 * stop it cleanly: nothing new is claimed, running handlers finish, claimed but unstarted
 * messages go straight back to the queue. --expect N stops after N emails; --idle-ms stops after
 * that long without one.
 *
 * --partitions P opens a partitioned queue (docs/scaling.md; the producer must use the same P);
 * --shard then shards its collection through mongos (mongoq_queue_shard) before the worker
 * starts, so the worker's change stream covers every shard from its first event.
 *
 * The wait is measured on the server's clock: enqueued_at is stamped by the server's time, and
 * this program estimates the offset between its own clock and the server's once, with hello.
 *
 * Exit status: 0 on a clean stop (signal, --expect reached, or idle without --expect), 1 on an
 * error or when it went idle before --expect, 2 on a usage error.
 */
#include <mongoq/mongoq.h>

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long a stop waits for running handlers before the process exits anyway. */
#define STOP_TIMEOUT_MS 8000

typedef struct {
    const char *uri;
    const char *db;
    const char *queue;
    long expect;  /* 0: run until a signal or idle */
    long idle_ms; /* 0: never idle out */
    int threads;
    int partitions; /* 0: one partition, the default layout */
    bool shard;     /* shard the queue through mongos before starting */
} options_t;

/* Shared by the handler threads and the controlling thread. */
typedef struct {
    const options_t *opts;
    int64_t clock_offset_ms; /* server clock - our clock */
    atomic_long sent;
    atomic_llong last_sent_mono_ms;
    mongoq_worker_t *worker;
} mailer_t;

static volatile sig_atomic_t stop_signal;
static mongoq_worker_t *signal_worker; /* set before the handlers are installed */

static int64_t
clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
on_signal(int sig)
{
    stop_signal = sig;
    mongoq_worker_request_stop(signal_worker); /* async-signal-safe */
}

static const char *
payload_string(const bson_t *payload, const char *key)
{
    bson_iter_t it;
    if (payload && bson_iter_init_find(&it, payload, key) && BSON_ITER_HOLDS_UTF8(&it)) {
        return bson_iter_utf8(&it, NULL);
    }
    return NULL;
}

/* The handler: one email per message. Runs on the worker's threads. */
static mongoq_result_t
send_weekly_summary(mongoq_message_t *msg, void *user_data)
{
    mailer_t *mailer = user_data;
    int64_t waited =
        clock_ms(CLOCK_REALTIME) + mailer->clock_offset_ms - mongoq_message_enqueued_at(msg);
    const bson_t *payload = mongoq_message_payload(msg);
    const char *account = payload_string(payload, "account_id");
    const char *email = payload_string(payload, "email");
    const char *week = payload_string(payload, "week");
    if (!account || !email || !week) {
        /* Retrying cannot fix a malformed message: dead-letter it with the reason. */
        mongoq_message_set_reason(msg, "payload lacks account_id, email or week");
        fprintf(stderr, "consumer: a malformed message goes to the dead letters\n");
        return MONGOQ_FAIL;
    }
    /* A real mailer would call its mail service here and return MONGOQ_RETRY on a 5xx. */
    printf("sent     weekly summary %s to %s (account %s): waited %" PRId64 " ms, attempt %d\n",
           week, email, account, waited, (int)mongoq_message_attempts(msg));
    fflush(stdout);
    long sent = atomic_fetch_add(&mailer->sent, 1) + 1;
    atomic_store(&mailer->last_sent_mono_ms, clock_ms(CLOCK_MONOTONIC));
    if (mailer->opts->expect > 0 && sent >= mailer->opts->expect) {
        mongoq_worker_request_stop(mailer->worker);
    }
    return MONGOQ_ACK;
}

static void
log_to_stderr(mongoq_log_level_t level, const char *message, void *user_data)
{
    (void)user_data;
    if (level <= MONGOQ_LOG_WARNING) {
        fprintf(stderr, "mongoq %s: %s\n", level == MONGOQ_LOG_ERROR ? "error" : "warning",
                message);
    }
}

/*
 * Offset between the server's clock (hello.localTime) and ours, taken at the middle of the round
 * trip. Three samples, keeping the one with the shortest round trip: the first also pays for
 * opening the connection, which would skew the middle.
 */
static bool
measure_clock_offset(mongoc_client_pool_t *pool, int64_t *offset_ms, bson_error_t *error)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    int64_t best_rtt = INT64_MAX;
    bool ok = true;
    *offset_ms = 0; /* no localTime: assume our clock is right */
    for (int i = 0; i < 3 && ok; i++) {
        bson_t reply;
        bson_iter_t it;
        int64_t before = clock_ms(CLOCK_REALTIME);
        ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, error);
        int64_t after = clock_ms(CLOCK_REALTIME);
        if (ok && after - before < best_rtt && bson_iter_init_find(&it, &reply, "localTime") &&
            BSON_ITER_HOLDS_DATE_TIME(&it)) {
            best_rtt = after - before;
            *offset_ms = bson_iter_date_time(&it) - (before + after) / 2;
        }
        bson_destroy(&reply);
    }
    bson_destroy(&cmd);
    mongoc_client_pool_push(pool, client);
    return ok;
}

/* Blocks until a signal, --expect, or --idle-ms; returns true if the stop is a success. */
static bool
wait_for_stop(mailer_t *mailer)
{
    const options_t *opts = mailer->opts;
    for (;;) {
        if (stop_signal) {
            fprintf(stderr, "consumer: signal %d, stopping\n", (int)stop_signal);
            return true;
        }
        if (opts->expect > 0 && atomic_load(&mailer->sent) >= opts->expect) {
            return true;
        }
        int64_t idle = clock_ms(CLOCK_MONOTONIC) - atomic_load(&mailer->last_sent_mono_ms);
        if (opts->idle_ms > 0 && idle >= opts->idle_ms) {
            fprintf(stderr, "consumer: nothing for %ld ms, stopping\n", opts->idle_ms);
            return opts->expect == 0;
        }
        struct timespec tick = {0, 50 * 1000 * 1000}; /* the controlling thread only watches */
        nanosleep(&tick, NULL);
    }
}

static bool
start_worker(mongoq_queue_t *queue, mailer_t *mailer, bson_error_t *error)
{
    mongoq_worker_opts_t wopts = MONGOQ_WORKER_OPTS_INIT;
    wopts.handler = send_weekly_summary;
    wopts.user_data = mailer;
    wopts.threads = mailer->opts->threads;
    wopts.name = "mailer";
    mailer->worker = mongoq_worker_new(queue, &wopts, error);
    if (!mailer->worker) {
        return false;
    }
    signal_worker = mailer->worker;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    return mongoq_worker_start(mailer->worker, error);
}

static int
run(const options_t *opts)
{
    int rc = 1;
    bson_error_t error;
    mongoc_client_pool_t *pool = NULL;
    mongoq_queue_t *queue = NULL;
    mailer_t mailer = {.opts = opts};
    atomic_store(&mailer.last_sent_mono_ms, clock_ms(CLOCK_MONOTONIC));
    mongoc_uri_t *uri = mongoc_uri_new_with_error(opts->uri, &error);
    if (!uri) {
        fprintf(stderr, "bad URI %s: %s\n", opts->uri, error.message);
        goto done;
    }
    mongoc_uri_set_appname(uri, "mongoq-consumer");
    pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    if (!measure_clock_offset(pool, &mailer.clock_offset_ms, &error)) {
        fprintf(stderr, "cannot reach %s: %s\n", opts->uri, error.message);
        goto done;
    }
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.log_fn = log_to_stderr;
    qopts.partitions = opts->partitions;
    queue = mongoq_queue_new(pool, opts->db, opts->queue, &qopts, &error);
    if (!queue) {
        fprintf(stderr, "cannot open queue %s.%s: %s\n", opts->db, opts->queue, error.message);
        goto done;
    }
    if (opts->shard && !mongoq_queue_shard(queue, NULL, &error)) {
        fprintf(stderr, "cannot shard queue %s.%s: %s\n", opts->db, opts->queue, error.message);
        goto done;
    }
    if (!start_worker(queue, &mailer, &error)) {
        fprintf(stderr, "cannot start the worker: %s\n", error.message);
        goto done;
    }
    fprintf(stderr,
            "consumer: waiting for weekly summaries on %s.%s (server clock %+" PRId64
            " ms from ours)\n",
            opts->db, opts->queue, mailer.clock_offset_ms);
    bool success = wait_for_stop(&mailer);
    if (!mongoq_worker_stop(mailer.worker, STOP_TIMEOUT_MS, &error)) {
        /*
         * Something is still running (a slow handler, or a call stuck on an unreachable server).
         * Exiting without destroying loses nothing: the messages this process still holds keep
         * their leases, and any reaper hands them back when those expire. Destroying would wait
         * for the stuck calls instead (up to the driver's timeouts).
         */
        fprintf(stderr, "consumer: not stopped within %d ms (%s); exiting, the leases return "
                        "the messages\n",
                STOP_TIMEOUT_MS, error.message);
        fflush(NULL);
        _exit(1);
    }
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(mailer.worker, &counters);
    printf("consumer: sent %ld emails (claimed %" PRId64 ", acked %" PRId64 ", retried %" PRId64
           ", dead %" PRId64 ")\n",
           atomic_load(&mailer.sent), counters.claimed, counters.acked, counters.retried,
           counters.failed);
    rc = success ? 0 : 1;
done:
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal_worker = NULL;
    mongoq_worker_destroy(mailer.worker);
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    return rc;
}

static bool
parse_options(int argc, char **argv, options_t *opts)
{
    *opts = (options_t){.db = "mongoq_demo", .queue = "weekly_summaries", .threads = 2};
    if (argc < 2 || argv[1][0] == '-') {
        return false;
    }
    opts->uri = argv[1];
    for (int i = 2; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--expect") == 0 && has_value) {
            opts->expect = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--idle-ms") == 0 && has_value) {
            opts->idle_ms = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--threads") == 0 && has_value) {
            opts->threads = (int)strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--db") == 0 && has_value) {
            opts->db = argv[++i];
        } else if (strcmp(argv[i], "--queue") == 0 && has_value) {
            opts->queue = argv[++i];
        } else if (strcmp(argv[i], "--partitions") == 0 && has_value) {
            opts->partitions = (int)strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--shard") == 0) {
            opts->shard = true;
        } else {
            return false;
        }
    }
    return opts->expect >= 0 && opts->idle_ms >= 0 && opts->threads >= 1 && opts->threads <= 64 &&
           opts->partitions >= 0 && opts->partitions <= MONGOQ_MAX_PARTITIONS;
}

int
main(int argc, char **argv)
{
    options_t opts;
    if (!parse_options(argc, argv, &opts)) {
        fprintf(stderr,
                "usage: %s URI [--expect N] [--idle-ms MS] [--threads N] [--db NAME] "
                "[--queue NAME] [--partitions P [--shard]]\n",
                argv[0]);
        return 2;
    }
    mongoc_init();
    int rc = run(&opts);
    mongoc_cleanup();
    return rc;
}

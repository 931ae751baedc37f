/*
 * mongoq-scheduler: the demo's weekly summary email as a real schedule. Every Monday at 08:00
 * Berlin time one "weekly-summary" message is enqueued; the mailer's handler (or a fan-out job)
 * turns it into one email per account, as mongoq-producer does by hand.
 *
 *   mongoq-scheduler URI [--db NAME] [--queue NAME] [--run-ms MS]
 *
 * It stores (or updates) the schedule, prints its next runs, then runs a scheduler until SIGINT
 * or SIGTERM (or for --run-ms). Run it in as many processes as you like: each Monday's slot is
 * enqueued exactly once. A week the scheduler was down is caught up once (the latest slot, the
 * default policy); the dedup_key keeps two weeks' runs from overlapping.
 *
 * Exit status: 0 on a clean stop, 1 on an error, 2 on a usage error.
 */
#include <mongoq/mongoq.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop_signal;
static mongoq_scheduler_t *signal_scheduler;

static void
on_signal(int sig)
{
    stop_signal = sig;
    mongoq_scheduler_request_stop(signal_scheduler); /* async-signal-safe */
}

static void
print_time(const char *label, int64_t ms)
{
    char text[32] = "never";
    if (ms >= 0) {
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&secs, &tm));
    }
    printf("%s %s\n", label, text);
}

/* The weekly summary schedule: Monday 08:00 in Berlin, one run at a time. */
static bool
define_schedule(mongoq_queue_t *queue, bson_error_t *error)
{
    bson_t *payload = BCON_NEW("kind", BCON_UTF8("weekly-summary"), "template",
                               BCON_UTF8("weekly-summary-v2"));
    mongoq_schedule_opts_t opts = MONGOQ_SCHEDULE_OPTS_INIT;
    opts.cron = "0 8 * * MON";
    opts.tz = "Europe/Berlin";
    opts.payload = payload;
    opts.priority = 5;
    opts.dedup_key = "weekly-summary";
    opts.catch_up = MONGOQ_CATCH_UP_LATEST;
    bool ok = mongoq_schedule_set(queue, "weekly-summary", &opts, error);
    bson_destroy(payload);
    if (ok) {
        mongoq_schedule_info_t *info = NULL;
        ok = mongoq_schedule_get(queue, "weekly-summary", &info, error);
        if (ok) {
            printf("schedule weekly-summary: \"%s\" in %s\n", info->cron, info->tz);
            print_time("next run", info->next_slot_ms);
            int64_t after = info->next_slot_ms;
            for (int i = 0; i < 3 && after >= 0; i++) {
                ok = ok && mongoq_cron_next(info->cron, info->tz, after, &after, error);
                print_time("then    ", after);
            }
        }
        mongoq_schedule_info_destroy(info);
    }
    return ok;
}

static int
run(const char *uri_string, const char *db, const char *name, long run_ms)
{
    int rc = 1;
    bson_error_t error;
    mongoc_client_pool_t *pool = NULL;
    mongoq_queue_t *queue = NULL;
    mongoq_scheduler_t *scheduler = NULL;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_string, &error);
    if (!uri) {
        fprintf(stderr, "bad URI: %s\n", error.message);
        return 1;
    }
    pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    queue = mongoq_queue_new(pool, db, name, NULL, &error);
    if (!queue || !define_schedule(queue, &error) ||
        !(scheduler = mongoq_scheduler_new(queue, NULL, &error))) {
        goto done;
    }
    signal_scheduler = scheduler;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (!mongoq_scheduler_start(scheduler, &error)) {
        goto done;
    }
    fprintf(stderr, "scheduler: running on %s.%s (Ctrl-C stops)\n", db, name);
    for (long waited = 0; !stop_signal && (run_ms <= 0 || waited < run_ms); waited += 100) {
        struct timespec tick = {0, 100 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    if (!mongoq_scheduler_stop(scheduler, 5000, &error)) {
        goto done;
    }
    mongoq_scheduler_pass_t totals = MONGOQ_SCHEDULER_PASS_INIT;
    mongoq_scheduler_counters(scheduler, &totals);
    printf("scheduler: enqueued %" PRId64 ", skipped %" PRId64 "\n", totals.enqueued,
           totals.skipped);
    rc = 0;
done:
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", error.message);
    }
    mongoq_scheduler_destroy(scheduler);
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    return rc;
}

int
main(int argc, char **argv)
{
    const char *db = "mongoq_demo", *queue = "weekly_summaries";
    long run_ms = 0;
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: %s URI [--db NAME] [--queue NAME] [--run-ms MS]\n", argv[0]);
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0) {
            db = argv[i + 1];
        } else if (strcmp(argv[i], "--queue") == 0) {
            queue = argv[i + 1];
        } else if (strcmp(argv[i], "--run-ms") == 0) {
            run_ms = strtol(argv[i + 1], NULL, 10);
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    mongoc_init();
    int rc = run(argv[1], db, queue, run_ms);
    mongoc_cleanup();
    return rc;
}

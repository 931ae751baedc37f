/*
 * mongoq-producer: a SaaS application queues this week's summary email for each account.
 *
 *   mongoq-producer URI [--count N] [--db NAME] [--queue NAME] [--partitions P]
 *
 * Each message carries the account, the address and the ISO week. The dedup key
 * "weekly-summary:<account>:<week>" makes the job idempotent: running it twice in a week queues
 * nothing new while the first run's emails are still waiting (MONGOQ_ERROR_DUPLICATE).
 *
 * Exit status: 0 when every account's email is queued (or already was), 1 on an error, 2 on a
 * usage error.
 */
#include <mongoq/mongoq.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    const char *uri;
    const char *db;
    const char *queue;
    long count;
    int partitions; /* 0: one partition; else the consumers' P (docs/scaling.md) */
} options_t;

static int
usage(const char *prog)
{
    fprintf(stderr, "usage: %s URI [--count N] [--db NAME] [--queue NAME] [--partitions P]\n", prog);
    return 2;
}

static bool
parse_options(int argc, char **argv, options_t *opts)
{
    *opts = (options_t){.db = "mongoq_demo", .queue = "weekly_summaries", .count = 20};
    if (argc < 2 || argv[1][0] == '-') {
        return false;
    }
    opts->uri = argv[1];
    for (int i = 2; i < argc; i++) {
        bool has_value = i + 1 < argc;
        if (strcmp(argv[i], "--count") == 0 && has_value) {
            opts->count = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--db") == 0 && has_value) {
            opts->db = argv[++i];
        } else if (strcmp(argv[i], "--queue") == 0 && has_value) {
            opts->queue = argv[++i];
        } else if (strcmp(argv[i], "--partitions") == 0 && has_value) {
            opts->partitions = (int)strtol(argv[++i], NULL, 10);
        } else {
            return false;
        }
    }
    return opts->count > 0 && opts->count <= 1000000 && opts->partitions >= 0 &&
           opts->partitions <= MONGOQ_MAX_PARTITIONS;
}

/* Wall-clock milliseconds: only a label in the payload; mongoq itself uses the server's clock. */
static int64_t
wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Queues one account's email; *queued tells whether it was new. False on an error only. */
static bool
queue_summary(mongoq_queue_t *queue, long account, const char *week, bool *queued)
{
    char account_id[32], email[64], dedup[96];
    snprintf(account_id, sizeof account_id, "acct-%04ld", account);
    snprintf(email, sizeof email, "owner%ld@example.com", account);
    snprintf(dedup, sizeof dedup, "weekly-summary:%s:%s", account_id, week);

    bson_t payload = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&payload, "account_id", account_id);
    BSON_APPEND_UTF8(&payload, "email", email);
    BSON_APPEND_UTF8(&payload, "week", week);
    BSON_APPEND_DATE_TIME(&payload, "requested_at", wall_ms());

    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = dedup;
    bson_oid_t id;
    bson_error_t error;
    char hex[25];
    bool ok = mongoq_enqueue(queue, &payload, &opts, &id, &error);
    *queued = ok;
    if (ok) {
        bson_oid_to_string(&id, hex);
        printf("queued   weekly summary %s for %s <%s> as %s\n", week, account_id, email, hex);
    } else if (error.domain == MONGOQ_ERROR_DOMAIN && error.code == MONGOQ_ERROR_DUPLICATE) {
        bson_oid_to_string(&id, hex); /* the message already holding the key */
        printf("skipped  weekly summary %s for %s: already queued as %s\n", week, account_id, hex);
        ok = true;
    } else {
        fprintf(stderr, "cannot queue the summary for %s: %s (domain %u, code %u)\n", account_id,
                error.message, error.domain, error.code);
    }
    bson_destroy(&payload);
    return ok;
}

static int
run(const options_t *opts)
{
    int rc = 1;
    bson_error_t error;
    mongoc_client_pool_t *pool = NULL;
    mongoq_queue_t *queue = NULL;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(opts->uri, &error);
    if (!uri) {
        fprintf(stderr, "bad URI %s: %s\n", opts->uri, error.message);
        goto done;
    }
    mongoc_uri_set_appname(uri, "mongoq-producer");
    pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.partitions = opts->partitions;
    queue = mongoq_queue_new(pool, opts->db, opts->queue, &qopts, &error);
    if (!queue) {
        fprintf(stderr, "cannot open queue %s.%s: %s\n", opts->db, opts->queue, error.message);
        goto done;
    }
    char week[16];
    time_t now = time(NULL);
    struct tm tm;
    strftime(week, sizeof week, "%G-W%V", gmtime_r(&now, &tm)); /* ISO week: 2026-W05 */
    long queued = 0;
    for (long account = 1; account <= opts->count; account++) {
        bool is_new = false;
        if (!queue_summary(queue, account, week, &is_new)) {
            goto done;
        }
        queued += is_new;
    }
    printf("producer: %ld weekly summaries queued, %ld already were, on %s.%s\n", queued,
           opts->count - queued, opts->db, opts->queue);
    rc = 0;
done:
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    return rc;
}

int
main(int argc, char **argv)
{
    options_t opts;
    if (!parse_options(argc, argv, &opts)) {
        return usage(argv[0]);
    }
    mongoc_init();
    int rc = run(&opts);
    mongoc_cleanup();
    return rc;
}

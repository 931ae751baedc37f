/*
 * mongoq-child-consumer URI DB COLL [--lease-ms N] [--no-reaper] [--group-concurrency N]
 *                       [--rate-limit R] [--partitions N]
 *
 * The queue's partitions: --partitions, else MONGOQ_TEST_PARTITIONS (the integration tests'
 * partitioned mode, inherited from the test), else 1.
 *
 * A consumer in a process of its own, driven line by line by a scenario test
 * (tests/integration/test_scenario_*.c) or the tool's tests (tests/cli/test_cli.sh): killed with SIGKILL while it holds leases, or run
 * under libfaketime with its clock ten minutes off. Prints "ready <pid>" once its queue and
 * consumer exist, then answers one command per line on stdin:
 *
 *   clock                 -> clock <this process's CLOCK_REALTIME in ms>
 *   claim WAIT_MS         -> msg <oid> <attempts> <lease_expires_at_ms> <seq> | none
 *   claim_many MAX WAIT   -> a msg line per message, then: end <n>
 *   ack OID               -> ok
 *   fail OID              -> ok (the message goes to dead, reason "failed by the child")
 *   extend OID MS         -> ok
 *   reap                  -> reaped <n>
 *   enqueue SEQ [GROUP]   -> ok (payload {seq: SEQ}, in GROUP when given: needs
 *                            --group-concurrency)
 *   quit                  -> (exits 0)
 *
 * Any failure answers: err <domain> <code> <message>. Claimed messages are kept until acked,
 * so a SIGKILL leaves their leases held.
 */
#include <mongoq/mongoq.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_HELD 4096

typedef struct {
    mongoq_queue_t *queue;
    mongoq_consumer_t *consumer;
    mongoq_message_t *held[MAX_HELD];
    size_t n_held;
} child_t;

static void
reply_error(const bson_error_t *error)
{
    printf("err %u %u %s\n", error->domain, error->code, error->message);
}

static int64_t
payload_seq(const mongoq_message_t *msg)
{
    bson_iter_t it;
    const bson_t *payload = mongoq_message_payload(msg);
    if (payload && bson_iter_init_find(&it, payload, "seq") && BSON_ITER_HOLDS_NUMBER(&it)) {
        return bson_iter_as_int64(&it);
    }
    return -1;
}

/* Prints the message and keeps it (or, when the table is full, lets its lease run out). */
static void
hold(child_t *c, mongoq_message_t *msg)
{
    char hex[25];
    bson_oid_to_string(mongoq_message_id(msg), hex);
    printf("msg %s %d %" PRId64 " %" PRId64 "\n", hex, (int)mongoq_message_attempts(msg),
           mongoq_message_lease_expires_at(msg), payload_seq(msg));
    if (c->n_held < MAX_HELD) {
        c->held[c->n_held++] = msg;
    } else {
        mongoq_message_destroy(msg);
    }
}

/* The held message with that id, removed from the table when `take`. */
static mongoq_message_t *
find_held(child_t *c, const char *hex, bool take)
{
    if (!bson_oid_is_valid(hex, strlen(hex))) {
        return NULL;
    }
    bson_oid_t id;
    bson_oid_init_from_string(&id, hex);
    for (size_t i = 0; i < c->n_held; i++) {
        if (bson_oid_equal(mongoq_message_id(c->held[i]), &id)) {
            mongoq_message_t *msg = c->held[i];
            if (take) {
                c->held[i] = c->held[--c->n_held];
            }
            return msg;
        }
    }
    return NULL;
}

static void
cmd_claim(child_t *c, long long wait_ms)
{
    bson_error_t error;
    mongoq_message_t *msg = NULL;
    if (!mongoq_consumer_claim(c->consumer, wait_ms, &msg, &error)) {
        reply_error(&error);
    } else if (!msg) {
        printf("none\n");
    } else {
        hold(c, msg);
    }
}

static void
cmd_claim_many(child_t *c, long long max, long long wait_ms)
{
    bson_error_t error;
    mongoq_message_t *msgs[1000];
    size_t n = 0;
    if (max < 1 || max > 1000) {
        printf("err 0 0 max out of range\n");
        return;
    }
    if (!mongoq_consumer_claim_many(c->consumer, (size_t)max, wait_ms, msgs, &n, &error)) {
        reply_error(&error);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        hold(c, msgs[i]);
    }
    printf("end %zu\n", n);
}

static void
cmd_on_message(child_t *c, const char *hex, bool ack, long long extend_ms)
{
    bson_error_t error;
    mongoq_message_t *msg = find_held(c, hex, false);
    if (!msg) {
        printf("err 0 0 no held message %s\n", hex);
        return;
    }
    bool ok = ack ? mongoq_message_ack(msg, &error) : mongoq_message_extend(msg, extend_ms, &error);
    if (ok && ack) {
        mongoq_message_destroy(find_held(c, hex, true));
    }
    if (ok) {
        printf("ok\n");
    } else {
        reply_error(&error);
    }
}

static void
cmd_fail(child_t *c, const char *hex)
{
    bson_error_t error;
    mongoq_message_t *msg = find_held(c, hex, true);
    if (!msg) {
        printf("err 0 0 no held message %s\n", hex);
        return;
    }
    if (mongoq_message_fail(msg, "failed by the child", &error)) {
        printf("ok\n");
    } else {
        reply_error(&error);
    }
    mongoq_message_destroy(msg);
}

static void
cmd_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    printf("clock %" PRId64 "\n", (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static void
cmd_reap(child_t *c)
{
    bson_error_t error;
    int64_t n = 0;
    if (mongoq_queue_reap(c->queue, &n, &error)) {
        printf("reaped %" PRId64 "\n", n);
    } else {
        reply_error(&error);
    }
}

static void
cmd_enqueue(child_t *c, long long seq, const char *group)
{
    bson_error_t error;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    bson_t *payload = BCON_NEW("seq", BCON_INT64(seq));
    opts.group = group;
    if (mongoq_enqueue(c->queue, payload, &opts, NULL, &error)) {
        printf("ok\n");
    } else {
        reply_error(&error);
    }
    bson_destroy(payload);
}

/* Runs one command line; false on "quit". */
static bool
run_line(child_t *c, const char *line)
{
    char word[32], hex[64];
    long long a = 0, b = 0;
    if (sscanf(line, "%31s", word) != 1) {
        printf("err 0 0 empty command\n");
    } else if (strcmp(word, "quit") == 0) {
        return false;
    } else if (strcmp(word, "clock") == 0) {
        cmd_clock();
    } else if (strcmp(word, "claim") == 0 && sscanf(line, "%*s %lld", &a) == 1) {
        cmd_claim(c, a);
    } else if (strcmp(word, "claim_many") == 0 && sscanf(line, "%*s %lld %lld", &a, &b) == 2) {
        cmd_claim_many(c, a, b);
    } else if (strcmp(word, "ack") == 0 && sscanf(line, "%*s %63s", hex) == 1) {
        cmd_on_message(c, hex, true, 0);
    } else if (strcmp(word, "fail") == 0 && sscanf(line, "%*s %63s", hex) == 1) {
        cmd_fail(c, hex);
    } else if (strcmp(word, "extend") == 0 && sscanf(line, "%*s %63s %lld", hex, &a) == 2) {
        cmd_on_message(c, hex, false, a);
    } else if (strcmp(word, "reap") == 0) {
        cmd_reap(c);
    } else if (strcmp(word, "enqueue") == 0 && sscanf(line, "%*s %lld %63s", &a, hex) == 2) {
        cmd_enqueue(c, a, hex);
    } else if (strcmp(word, "enqueue") == 0 && sscanf(line, "%*s %lld", &a) == 1) {
        cmd_enqueue(c, a, NULL);
    } else {
        printf("err 0 0 unknown command: %s\n", line);
    }
    fflush(stdout);
    return true;
}

static int
run(const char *uri_str, const char *db, const char *coll, const mongoq_queue_opts_t *opts)
{
    int rc = 1;
    bson_error_t error = {0};
    child_t c = {0};
    mongoc_client_pool_t *pool = NULL;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &error);
    if (!uri) {
        goto done;
    }
    char appname[128];
    snprintf(appname, sizeof appname, "%s-child", db); /* clear of the parent's fail points */
    mongoc_uri_set_appname(uri, appname);
    pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    c.queue = mongoq_queue_new(pool, db, coll, opts, &error);
    if (!c.queue || !(c.consumer = mongoq_consumer_new(c.queue, NULL, &error))) {
        goto done;
    }
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[512];
    while (fgets(line, sizeof line, stdin) && run_line(&c, line)) {
    }
    rc = 0;
done:
    if (rc != 0) {
        fprintf(stderr, "child consumer: %s\n", error.message);
        printf("err %u %u %s\n", error.domain, error.code, error.message);
    }
    for (size_t i = 0; i < c.n_held; i++) {
        mongoq_message_destroy(c.held[i]);
    }
    mongoq_consumer_destroy(c.consumer);
    mongoq_queue_destroy(c.queue);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    return rc;
}

int
main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr,
                "usage: %s URI DB COLL [--lease-ms N] [--no-reaper] [--group-concurrency N] "
                "[--rate-limit R] [--partitions N]\n",
                argv[0]);
        return 2;
    }
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    const char *partitions = getenv("MONGOQ_TEST_PARTITIONS");
    opts.partitions = partitions ? atoi(partitions) : 0;
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--lease-ms") == 0 && i + 1 < argc) {
            opts.lease_ms = atoll(argv[++i]);
        } else if (strcmp(argv[i], "--partitions") == 0 && i + 1 < argc) {
            opts.partitions = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--no-reaper") == 0) {
            opts.no_reaper = true;
        } else if (strcmp(argv[i], "--group-concurrency") == 0 && i + 1 < argc) {
            opts.group_concurrency = atoi(argv[++i]); /* a queue with groups (test_groups.c) */
        } else if (strcmp(argv[i], "--rate-limit") == 0 && i + 1 < argc) {
            opts.rate_limit = atof(argv[++i]);
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    mongoc_init();
    int rc = run(argv[1], argv[2], argv[3], &opts);
    mongoc_cleanup();
    return rc;
}

/*
 * `mongoq watch`: depth per status, enqueue/ack/fail rates, the oldest due age and the consumers
 * holding messages, refreshed every interval. Rates come from the queue's change stream (an
 * insert is an enqueue; a delete or an update to done an ack; an update to dead a failure; to
 * ready a retry; to processing a claim); on a server without change streams they are shown as
 * "-". A delete by a purge counts as an ack; changes of the queue's control document (pause,
 * resume) count as nothing. Consumers: the distinct claimed_by of the processing messages (one
 * `distinct` over the in-flight messages only, from the lease index). Consumers seen in the
 * last minute: those and the claimed_by of messages of any status whose updated_at is within
 * 60 s of the server's $$NOW. updated_at has no index (the library keeps no index only for the
 * tool), so that is a collection scan: it is bounded by a $limit on the matching messages and
 * maxTimeMS, and read at most every RECENT_EVERY_MS rather than every refresh.
 */
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "fields.h"

#define DEFAULT_INTERVAL_MS 1000
#define MAX_EVENTS_PER_TICK 100000
#define RECENT_WINDOW_MS 60000
#define RECENT_MAX_MESSAGES 10000
#define RECENT_MAX_TIME_MS 500
#define RECENT_EVERY_MS 5000

typedef struct {
    int64_t enqueued, acked, failed, retried, claimed;
} events_t;

/* Counts one change event into ev. */
static void
classify(const bson_t *event, events_t *ev)
{
    bson_iter_t it, sub;
    const char *op = bson_iter_init_find(&it, event, "operationType") && BSON_ITER_HOLDS_UTF8(&it)
                         ? bson_iter_utf8(&it, NULL)
                         : "";
    const char *status = NULL;
    /* Messages have ObjectIds; the control document (pause state) has a string _id. */
    if (bson_iter_init(&it, event) && bson_iter_find_descendant(&it, "documentKey._id", &sub) &&
        !BSON_ITER_HOLDS_OID(&sub)) {
        return;
    }
    if (strcmp(op, "insert") == 0) {
        ev->enqueued++;
        return;
    }
    if (strcmp(op, "delete") == 0) {
        ev->acked++;
        return;
    }
    if (bson_iter_init(&it, event) &&
        (bson_iter_find_descendant(&it, "updateDescription.updatedFields." MONGOQ__F_STATUS, &sub) ||
         (bson_iter_init(&it, event) &&
          bson_iter_find_descendant(&it, "fullDocument." MONGOQ__F_STATUS, &sub))) &&
        BSON_ITER_HOLDS_UTF8(&sub)) {
        status = bson_iter_utf8(&sub, NULL);
    }
    if (!status) {
        return;
    }
    if (strcmp(status, MONGOQ__S_DONE) == 0) {
        ev->acked++;
    } else if (strcmp(status, MONGOQ__S_DEAD) == 0) {
        ev->failed++;
    } else if (strcmp(status, MONGOQ__S_READY) == 0) {
        ev->retried++;
    } else if (strcmp(status, MONGOQ__S_PROCESSING) == 0) {
        ev->claimed++;
    }
}

static void
sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits until deadline (monotonic ms) counting change events; stream may be NULL. */
static void
wait_counting(mongoc_change_stream_t *stream, int64_t deadline, events_t *ev)
{
    const bson_t *event;
    int64_t n = 0;
    while (!cli_stopping() && bson_get_monotonic_time() / 1000 < deadline) {
        if (!stream) {
            int64_t left = deadline - bson_get_monotonic_time() / 1000;
            sleep_ms(left < 100 ? left : 100);
            continue;
        }
        if (mongoc_change_stream_next(stream, &event) && n++ < MAX_EVENTS_PER_TICK) {
            classify(event, ev);
        }
    }
}

/* How many distinct consumers hold processing messages; -1 when the server refused. */
static int64_t
consumers(cli_t *cli, mongoq_queue_t *queue)
{
    bson_t cmd = BSON_INITIALIZER, query, reply;
    bson_iter_t it, sub;
    int64_t n = -1;
    mongoc_client_t *client = cli_pop(cli, NULL);
    if (!client) {
        return -1; /* shown as unknown; the pool is busy */
    }
    BSON_APPEND_UTF8(&cmd, "distinct", mongoq_queue_name(queue));
    BSON_APPEND_UTF8(&cmd, "key", MONGOQ__F_CLAIMED_BY);
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "query", &query);
    BSON_APPEND_UTF8(&query, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    bson_append_document_end(&cmd, &query);
    if (mongoc_client_read_command_with_opts(client, mongoq_queue_db(queue), &cmd, NULL, NULL,
                                             &reply, NULL) &&
        bson_iter_init_find(&it, &reply, "values") && bson_iter_recurse(&it, &sub)) {
        for (n = 0; bson_iter_next(&sub);) {
            n++;
        }
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_client_pool_push(cli->pool, client);
    return n;
}

/* {$or: [{status: processing}, {$expr: {$gte: ["$updated_at", $$NOW - 60 s]}}], claimed_by}. */
static void
append_recent_match(bson_t *pipeline)
{
    bson_t stage, match, any, clause, expr, gte, sub, args, type;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &match);
    BSON_APPEND_DOCUMENT_BEGIN(&match, MONGOQ__F_CLAIMED_BY, &type);
    BSON_APPEND_UTF8(&type, "$type", "string");
    bson_append_document_end(&match, &type);
    BSON_APPEND_ARRAY_BEGIN(&match, "$or", &any);
    BSON_APPEND_DOCUMENT_BEGIN(&any, "0", &clause);
    BSON_APPEND_UTF8(&clause, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    bson_append_document_end(&any, &clause);
    BSON_APPEND_DOCUMENT_BEGIN(&any, "1", &clause);
    BSON_APPEND_DOCUMENT_BEGIN(&clause, "$expr", &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, "$gte", &gte);
    BSON_APPEND_UTF8(&gte, "0", "$" MONGOQ__F_UPDATED_AT);
    BSON_APPEND_DOCUMENT_BEGIN(&gte, "1", &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "$subtract", &args);
    BSON_APPEND_UTF8(&args, "0", "$$NOW");
    BSON_APPEND_INT64(&args, "1", RECENT_WINDOW_MS);
    bson_append_array_end(&sub, &args);
    bson_append_document_end(&gte, &sub);
    bson_append_array_end(&expr, &gte);
    bson_append_document_end(&clause, &expr);
    bson_append_document_end(&any, &clause);
    bson_append_array_end(&match, &any);
    bson_append_document_end(&stage, &match);
    bson_append_document_end(pipeline, &stage);
}

/*
 * How many distinct consumers hold messages or touched one in the last minute; -1 when the
 * server refused or the scan was cut off by maxTimeMS. A collection scan (see the top).
 */
static int64_t
recent_consumers(cli_t *cli, mongoq_queue_t *queue)
{
    bson_t pipeline = BSON_INITIALIZER, opts = BSON_INITIALIZER, stage, group;
    const bson_t *doc;
    int64_t n = 0;
    append_recent_match(&pipeline);
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "1", &stage);
    BSON_APPEND_INT32(&stage, "$limit", RECENT_MAX_MESSAGES);
    bson_append_document_end(&pipeline, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "2", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &group);
    BSON_APPEND_UTF8(&group, MONGOQ__F_ID, "$" MONGOQ__F_CLAIMED_BY);
    bson_append_document_end(&stage, &group);
    bson_append_document_end(&pipeline, &stage);
    BSON_APPEND_INT32(&opts, "maxTimeMS", RECENT_MAX_TIME_MS);
    mongoc_client_t *client = cli_pop(cli, NULL);
    if (!client) {
        bson_destroy(&opts);
        bson_destroy(&pipeline);
        return -1; /* shown as unknown; the pool is busy */
    }
    mongoc_collection_t *coll =
        mongoc_client_get_collection(client, mongoq_queue_db(queue), mongoq_queue_name(queue));
    mongoc_cursor_t *cursor =
        mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, &pipeline, &opts, NULL);
    while (n <= RECENT_MAX_MESSAGES && mongoc_cursor_next(cursor, &doc)) {
        n++;
    }
    if (mongoc_cursor_error(cursor, NULL)) {
        n = -1;
    }
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(cli->pool, client);
    bson_destroy(&opts);
    bson_destroy(&pipeline);
    return n;
}

/* A rate per second as text ("-" without a change stream). */
static const char *
rate(bool have, int64_t n, int64_t ms, char *buf, size_t size)
{
    if (!have || ms <= 0) {
        return "-";
    }
    bson_snprintf(buf, size, "%.1f", (double)n * 1000.0 / (double)ms);
    return buf;
}

typedef struct {
    mongoq_stats_t stats;
    events_t ev;
    int64_t elapsed_ms, consumers;
    int64_t seen; /* consumers seen in the last minute; -1 unknown */
    bool rates;
} tick_t;

/* A count as text, "-" when unknown (negative). */
static const char *
count_text(int64_t n, char *buf, size_t size)
{
    if (n < 0) {
        return "-";
    }
    bson_snprintf(buf, size, "%" PRId64, n);
    return buf;
}

static void
print_json(cli_t *cli, const tick_t *t)
{
    bson_t doc = BSON_INITIALIZER;
    double secs = t->elapsed_ms > 0 ? (double)t->elapsed_ms / 1000.0 : 1.0;
    BSON_APPEND_DATE_TIME(&doc, "at", cli_wall_ms());
    cli_stats_doc(&t->stats, &doc);
    BSON_APPEND_INT64(&doc, "consumers", t->consumers);
    if (t->seen >= 0) {
        BSON_APPEND_INT64(&doc, "consumers_seen_1m", t->seen);
    } else {
        BSON_APPEND_NULL(&doc, "consumers_seen_1m");
    }
    if (t->rates) {
        BSON_APPEND_DOUBLE(&doc, "enqueued_per_s", (double)t->ev.enqueued / secs);
        BSON_APPEND_DOUBLE(&doc, "acked_per_s", (double)t->ev.acked / secs);
        BSON_APPEND_DOUBLE(&doc, "failed_per_s", (double)t->ev.failed / secs);
    } else {
        BSON_APPEND_NULL(&doc, "enqueued_per_s");
        BSON_APPEND_NULL(&doc, "acked_per_s");
        BSON_APPEND_NULL(&doc, "failed_per_s");
    }
    cli_print_json(cli->out, &doc);
    bson_destroy(&doc);
}

static void
print_tick(cli_t *cli, mongoq_queue_t *queue, const tick_t *t, bool tty)
{
    char at[40], age[32], r1[32], r2[32], r3[32], seen_buf[32];
    const mongoq_stats_t *s = &t->stats;
    cli_time(cli_wall_ms(), at, sizeof at);
    cli_duration(s->oldest_ready_age_ms, age, sizeof age);
    const char *enq = rate(t->rates, t->ev.enqueued, t->elapsed_ms, r1, sizeof r1);
    const char *ack = rate(t->rates, t->ev.acked, t->elapsed_ms, r2, sizeof r2);
    const char *fail = rate(t->rates, t->ev.failed, t->elapsed_ms, r3, sizeof r3);
    const char *seen = count_text(t->seen, seen_buf, sizeof seen_buf);
    if (!tty) {
        fprintf(cli->out,
                "%s ready=%" PRId64 " delayed=%" PRId64 " processing=%" PRId64 " done=%" PRId64
                " dead=%" PRId64 " oldest_due=%s enqueued/s=%s acked/s=%s failed/s=%s "
                "consumers=%" PRId64 " seen_1m=%s paused=%s\n",
                at, s->ready, s->delayed, s->processing, s->done, s->dead, age, enq, ack, fail,
                t->consumers, seen, s->paused ? "yes" : "no");
        fflush(cli->out);
        return;
    }
    fprintf(cli->out, "\033[H\033[2J");
    fprintf(cli->out, "mongoq watch  %s.%s  %s  (Ctrl-C to stop)\n\n", mongoq_queue_db(queue),
            mongoq_queue_name(queue), at);
    if (s->paused) {
        fprintf(cli->out, "  PAUSED: nothing is claimed until `mongoq resume`\n\n");
    }
    fprintf(cli->out, "  ready       %10" PRId64 "   (%" PRId64 " delayed)\n", s->ready,
            s->delayed);
    fprintf(cli->out,
            "  processing  %10" PRId64 "   by %" PRId64 " consumers (%s seen in the last minute)\n",
            s->processing, t->consumers, seen);
    fprintf(cli->out, "  done        %10" PRId64 "\n", s->done);
    fprintf(cli->out, "  dead        %10" PRId64 "\n\n", s->dead);
    fprintf(cli->out, "  oldest due  %10s\n", age);
    fprintf(cli->out, "  enqueued/s  %10s\n  acked/s     %10s\n  failed/s    %10s\n", enq, ack,
            fail);
    fflush(cli->out);
}

/* Opens the queue's change stream for rates; NULL when the server refuses (rates "-"). */
static mongoc_change_stream_t *
open_stream(cli_t *cli, mongoq_queue_t *queue, mongoc_client_t **client,
            mongoc_collection_t **coll, int64_t await_ms)
{
    bson_t pipeline = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    bson_error_t error;
    /* A client of its own: the stream is held for the whole run, and a pool of one connection
     * must stay free for the queue's own calls. */
    *client = cli_own_client(cli, &error);
    if (!*client) {
        *coll = NULL;
        bson_destroy(&opts);
        bson_destroy(&pipeline);
        return NULL;
    }
    *coll = mongoc_client_get_collection(*client, mongoq_queue_db(queue), mongoq_queue_name(queue));
    BSON_APPEND_INT64(&opts, "maxAwaitTimeMS", await_ms);
    mongoc_change_stream_t *stream = mongoc_collection_watch(*coll, &pipeline, &opts);
    if (mongoc_change_stream_error_document(stream, &error, NULL)) {
        mongoc_change_stream_destroy(stream);
        stream = NULL;
    }
    bson_destroy(&opts);
    bson_destroy(&pipeline);
    return stream;
}

int
cli_cmd_watch(cli_t *cli)
{
    const cli_args_t *a = &cli->args;
    if (a->npositional > 1 || (a->has_count && a->count < 1) ||
        (a->has_interval && (a->interval_ms < 10 || a->interval_ms > 3600000))) {
        return cli_fail(cli, CLI_USAGE, "--count N (N >= 1), --interval MS (10 to 3600000)");
    }
    int64_t interval = a->has_interval ? a->interval_ms : DEFAULT_INTERVAL_MS;
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    bool tty = !a->json && cli_stdout_tty();
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    mongoc_change_stream_t *stream =
        open_stream(cli, queue, &client, &coll, interval < 200 ? interval : 200);
    int rc = CLI_OK;
    int64_t last = bson_get_monotonic_time() / 1000, seen = -1, seen_at = 0;
    for (int64_t n = 0; !cli_stopping() && (!a->has_count || n < a->count); n++) {
        tick_t t = {.stats = MONGOQ_STATS_INIT, .rates = stream != NULL};
        if (n > 0) {
            wait_counting(stream, last + interval, &t.ev);
        }
        int64_t now = bson_get_monotonic_time() / 1000;
        t.elapsed_ms = now - last;
        last = now;
        bson_error_t error;
        if (!mongoq_queue_stats(queue, &t.stats, &error)) {
            rc = cli_fail_error(cli, "stats", &error);
            break;
        }
        t.consumers = consumers(cli, queue);
        if (n == 0 || now - seen_at >= RECENT_EVERY_MS) {
            seen = recent_consumers(cli, queue);
            seen_at = now;
        }
        t.seen = seen;
        t.rates = t.rates && n > 0;
        if (a->json) {
            print_json(cli, &t);
        } else {
            print_tick(cli, queue, &t, tty);
        }
    }
    mongoc_change_stream_destroy(stream);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client); /* NULL when it could not be made */
    return rc;
}

/*
 * The doctor (mongoq/check.h): the table of checks, the runner, and the checks of the server
 * itself (version, topology, change streams, pipeline updates, $$NOW, clock skew). The checks of
 * the queue's collection are in check_queue.c.
 *
 * Nothing here writes a document: the pipeline-update probe is an updateOne whose filter is an
 * _id made for the probe, which no message has (a fresh ObjectId), without upsert.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check-private.h"
#include "error-private.h"
#include "fields.h"
#include "queue-private.h"
#include "service-private.h"

#define DEFAULT_OLDEST_DUE_WARN_MS 300000
#define DEFAULT_SKEW_WARN_MS 1000
#define DEFAULT_KEYS_WARN 1000

/* ---- server ------------------------------------------------------------------------------- */

/* Major and minor of a version string ("6.0.3"); 0.0 when unreadable. */
static void
parse_version(const char *version, int *major, int *minor)
{
    *major = *minor = 0;
    if (version) {
        char *end;
        *major = (int)strtol(version, &end, 10);
        if (*end == '.') {
            *minor = (int)strtol(end + 1, NULL, 10);
        }
    }
}

static void
check_server(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t error;
    bson_iter_t it;
    int major, minor;
    BSON_APPEND_INT32(&cmd, "buildInfo", 1);
    bool ok = mongoc_client_command_simple(ctx->client, "admin", &cmd, NULL, &reply, &error);
    const char *version = ok && bson_iter_init_find(&it, &reply, "version") &&
                                  BSON_ITER_HOLDS_UTF8(&it)
                              ? bson_iter_utf8(&it, NULL)
                              : NULL;
    parse_version(version, &major, &minor);
    BSON_APPEND_UTF8(&item->details, "version", version ? version : "");
    if (!ok) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING, "grant the buildInfo action",
                               "buildInfo failed: %s", error.message);
    } else if (major < 4 || (major == 4 && minor < 2)) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR, "upgrade to MongoDB 6.0 or newer",
                               "MongoDB %s has no pipeline updates or $$NOW (4.2+)",
                               version ? version : "(unknown)");
    } else if (major < 6) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING, "upgrade to MongoDB 6.0 or newer",
                               "MongoDB %s works but mongoq is tested on 6.0+", version);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL, "MongoDB %s", version);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
}

static void
check_topology(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, &ctx->hello, "setName") && BSON_ITER_HOLDS_UTF8(&it)) {
        const char *set = bson_iter_utf8(&it, NULL);
        BSON_APPEND_UTF8(&item->details, "topology", "replica set");
        BSON_APPEND_UTF8(&item->details, "setName", set);
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL, "replica set \"%s\"", set);
    } else if (bson_iter_init_find(&it, &ctx->hello, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
               strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0) {
        BSON_APPEND_UTF8(&item->details, "topology", "sharded");
        if (ctx->queue->opts.partitions > 1) {
            mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                                   "mongos: a sharded cluster, a partitioned queue");
        } else {
            mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                                   "keep the queue's collection unsharded, or open it with "
                                   "partitions > 1 and shard it (docs/scaling.md)",
                                   "mongos: a sharded cluster, a queue of one partition");
        }
    } else {
        BSON_APPEND_UTF8(&item->details, "topology", "standalone");
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "run a replica set (one member is enough) for change streams and "
                               "transactions",
                               "standalone server: no change streams, consumers poll");
    }
}

static void
check_change_streams(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    bson_t pipeline = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *doc, *err_doc;
    bson_error_t error;
    BSON_APPEND_INT64(&opts, "maxAwaitTimeMS", 1);
    mongoc_change_stream_t *stream = mongoc_collection_watch(ctx->coll, &pipeline, &opts);
    /* The aggregate is sent when the stream is made; one getMore proves it can be read. */
    bool failed = mongoc_change_stream_error_document(stream, &error, &err_doc);
    if (!failed) {
        (void)mongoc_change_stream_next(stream, &doc);
        failed = mongoc_change_stream_error_document(stream, &error, &err_doc);
    }
    BSON_APPEND_BOOL(&item->details, "available", !failed);
    if (failed) {
        BSON_APPEND_INT32(&item->details, "code", (int32_t)error.code);
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "consumers poll every poll_interval_ms instead: run a replica set "
                               "for wake-ups within milliseconds",
                               "change streams refused: %s", error.message);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL, "a change stream opens on the queue");
    }
    mongoc_change_stream_destroy(stream);
    bson_destroy(&opts);
    bson_destroy(&pipeline);
}

/* updateOne({_id: fresh, status: ready}, [{$set: {updated_at: "$$NOW"}}]): matches nothing. */
static void
check_pipeline_update(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, stage, set, reply;
    bson_error_t error;
    bson_oid_t probe;
    bson_oid_init(&probe, NULL);
    BSON_APPEND_OID(&filter, MONGOQ__F_ID, &probe);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_READY);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(&update, &stage);
    bool ok = mongoc_collection_update_one(ctx->coll, &filter, &update, NULL, &reply, &error);
    int64_t matched = ok ? mongoq__reply_count(&reply, "matchedCount") : -1;
    BSON_APPEND_INT64(&item->details, "matched", matched);
    if (!ok) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR,
                               "mongoq needs pipeline updates (MongoDB 4.2+)",
                               "a pipeline update with $$NOW was refused: %s", error.message);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                               "pipeline updates with $$NOW are accepted (probe matched %" PRId64
                               " documents)",
                               matched);
    }
    bson_destroy(&reply);
    bson_destroy(&update);
    bson_destroy(&filter);
}

/* The first document's "now" of an aggregate reply's cursor.firstBatch; 0 when none. */
static int64_t
first_now(const bson_t *reply)
{
    bson_iter_t it, sub;
    if (bson_iter_init(&it, reply) && bson_iter_find_descendant(&it, "cursor.firstBatch.0.now",
                                                                  &sub) &&
        BSON_ITER_HOLDS_DATE_TIME(&sub)) {
        return bson_iter_date_time(&sub);
    }
    return 0;
}

/* $$NOW on the server: {$documents} (5.1+), else over the queue's first document. */
static bool
evaluate_now(mongoq__check_ctx_t *ctx, int64_t *now, bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply, pipeline, stage, docs, doc, proj;
    const char *db = ctx->queue->db;
    BSON_APPEND_INT32(&cmd, "aggregate", 1);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "pipeline", &pipeline);
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
    BSON_APPEND_ARRAY_BEGIN(&stage, "$documents", &docs);
    BSON_APPEND_DOCUMENT_BEGIN(&docs, "0", &doc);
    BSON_APPEND_UTF8(&doc, "now", "$$NOW");
    bson_append_document_end(&docs, &doc);
    bson_append_array_end(&stage, &docs);
    bson_append_document_end(&pipeline, &stage);
    bson_append_array_end(&cmd, &pipeline);
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "cursor", &doc);
    bson_append_document_end(&cmd, &doc);
    bool ok = mongoc_client_read_command_with_opts(ctx->client, db, &cmd, NULL, NULL, &reply,
                                                   error);
    if (!ok) {
        bson_destroy(&reply);
        bson_reinit(&cmd);
        BSON_APPEND_UTF8(&cmd, "aggregate", ctx->queue->name);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "pipeline", &pipeline);
        BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
        BSON_APPEND_INT32(&stage, "$limit", 1);
        bson_append_document_end(&pipeline, &stage);
        BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "1", &stage);
        BSON_APPEND_DOCUMENT_BEGIN(&stage, "$project", &proj);
        BSON_APPEND_INT32(&proj, "_id", 0);
        BSON_APPEND_UTF8(&proj, "now", "$$NOW");
        bson_append_document_end(&stage, &proj);
        bson_append_document_end(&pipeline, &stage);
        bson_append_array_end(&cmd, &pipeline);
        BSON_APPEND_DOCUMENT_BEGIN(&cmd, "cursor", &doc);
        bson_append_document_end(&cmd, &doc);
        ok = mongoc_client_read_command_with_opts(ctx->client, db, &cmd, NULL, NULL, &reply,
                                                  error);
    }
    *now = ok ? first_now(&reply) : 0;
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

static void
check_now(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    bson_error_t error;
    int64_t now = 0;
    if (!evaluate_now(ctx, &now, &error)) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR,
                               "mongoq needs $$NOW (MongoDB 4.2+) for leases on the server clock",
                               "$$NOW was refused: %s", error.message);
    } else if (now == 0) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "enqueue a message and run the check again",
                               "$$NOW could not be evaluated: no $documents (5.1+) and the queue "
                               "is empty");
    } else {
        BSON_APPEND_DATE_TIME(&item->details, "now", now);
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL, "$$NOW evaluates on the server");
    }
}

static void
check_clock_skew(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, &ctx->hello, "localTime") || !BSON_ITER_HOLDS_DATE_TIME(&it)) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR, "mongoq reads the server's clock there",
                               "hello has no localTime");
        return;
    }
    int64_t rtt = ctx->hello_received_ms - ctx->hello_sent_ms;
    int64_t skew = bson_iter_date_time(&it) - (ctx->hello_sent_ms + rtt / 2);
    int64_t size = skew < 0 ? -skew : skew;
    BSON_APPEND_INT64(&item->details, "skew_ms", skew);
    BSON_APPEND_INT64(&item->details, "round_trip_ms", rtt);
    if (size > ctx->opts.skew_warn_ms) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "synchronise both clocks (NTP): leases and run_at follow the "
                               "server's clock, times this client passes follow its own",
                               "the server's clock is %" PRId64 " ms %s this machine's", size,
                               skew > 0 ? "ahead of" : "behind");
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                               "server clock within %" PRId64 " ms of this machine's (round "
                               "trip %" PRId64 " ms)",
                               size, rtt);
    }
}

/* ---- the runner --------------------------------------------------------------------------- */

typedef void (*check_fn)(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item);

/* One row per check, in the order of the report (mongoq/check.h lists them). */
static const struct {
    const char *name;
    check_fn run;
    bool own_client; /* runs after ctx's client went back (it takes one of its own) */
} CHECKS[] = {
    {"server", check_server, false},
    {"topology", check_topology, false},
    {"change_streams", check_change_streams, false},
    {"pipeline_update", check_pipeline_update, false},
    {"now", check_now, false},
    {"clock_skew", check_clock_skew, false},
    {"indexes", mongoq__check_indexes, false},
    {"claim_plan", mongoq__check_claim_plan, false},
    {"partitions", mongoq__check_partitions, false},
    {"write_concern", mongoq__check_write_concern, false},
    {"paused", mongoq__check_paused, true},
    {"backlog", mongoq__check_backlog, true},
    {"dead_letters", mongoq__check_dead_letters, true},
};

static bool
resolve_opts(const mongoq_check_opts_t *opts, mongoq_check_opts_t *out, bson_error_t *error)
{
    mongoq_check_opts_t defaults = MONGOQ_CHECK_OPTS_INIT;
    *out = opts ? *opts : defaults;
    if (out->version == 0 || out->version > MONGOQ_CHECK_OPTS_VERSION ||
        out->oldest_due_warn_ms < 0 || out->skew_warn_ms < 0 || out->keys_warn < 0) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "check: unknown opts version or a negative threshold");
        return false;
    }
    out->oldest_due_warn_ms = out->oldest_due_warn_ms ? out->oldest_due_warn_ms
                                                      : DEFAULT_OLDEST_DUE_WARN_MS;
    out->skew_warn_ms = out->skew_warn_ms ? out->skew_warn_ms : DEFAULT_SKEW_WARN_MS;
    out->keys_warn = out->keys_warn ? out->keys_warn : DEFAULT_KEYS_WARN;
    return true;
}

/* hello on ctx's client; false (the server item filled) when the server cannot be reached. */
static bool
hello(mongoq__check_ctx_t *ctx, mongoq_report_t *report)
{
    bson_t cmd = BSON_INITIALIZER;
    bson_error_t error;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    ctx->hello_sent_ms = mongoq__now_real_ms();
    bool ok = false;
    if (ctx->client) {
        ok = mongoc_client_command_simple(ctx->client, "admin", &cmd, NULL, &ctx->hello, &error);
    } else {
        bson_init(&ctx->hello);
    }
    ctx->hello_received_ms = mongoq__now_real_ms();
    bson_destroy(&cmd);
    if (!ok) {
        mongoq__check_item_t *item = mongoq__report_add(report, "server");
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR,
                               "check the URI, the network and that the server runs",
                               "cannot reach the server: %s",
                               ctx->client ? error.message : "the pool gave no client");
    }
    return ok;
}

bool
mongoq_queue_check(mongoq_queue_t *queue, const mongoq_check_opts_t *opts,
                   mongoq_report_t **report_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(report_out);
    mongoq__check_ctx_t ctx = {.queue = queue, .stats = MONGOQ_STATS_INIT};
    *report_out = NULL;
    if (!resolve_opts(opts, &ctx.opts, error)) {
        return false;
    }
    mongoq_report_t *report = mongoq__report_new();
    size_t n = sizeof CHECKS / sizeof CHECKS[0];
    ctx.coll = mongoq__queue_checkout(queue, &ctx.client, NULL);
    bool reached = hello(&ctx, report); /* initialises ctx.hello on every path */
    for (size_t i = 0; reached && i < n; i++) {
        if (!CHECKS[i].own_client) {
            CHECKS[i].run(&ctx, mongoq__report_add(report, CHECKS[i].name));
        }
    }
    bson_destroy(&ctx.hello);
    mongoq__queue_release(queue, ctx.client, ctx.coll);
    for (size_t i = 0; reached && i < n; i++) {
        if (CHECKS[i].own_client) {
            CHECKS[i].run(&ctx, mongoq__report_add(report, CHECKS[i].name));
        }
    }
    *report_out = report;
    return true;
}

/*
 * `mongoq serve`: the JSON API (README.md in this folder lists it) and the sampler. Every
 * answer is read fresh from the database through the library, so when the server is down the
 * API says so (503 and {"error": ...}) rather than showing stale numbers; only the rates and
 * the plot's history come from the sampler, which reads every queue's stats once a second and
 * counts the database's change events per queue into a ring of the last 10 minutes.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fields.h"
#include "serve.h"

#define PAGE_DEFAULT 50
#define PAGE_MAX 200
#define DEAD_SAMPLE 10000 /* dead letters grouped per request, at most */
#define DEAD_REASONS 50
#define RATE_WINDOW 10 /* seconds the rates are averaged over */

void
serve__error(serve_reply_t *reply, unsigned status, const char *message)
{
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "error", message);
    reply->status = status;
    reply->body = bson_as_relaxed_extended_json(&doc, NULL);
    bson_destroy(&doc);
}

/* A library or driver error as an answer: 404, 400, else 503 (the database is the cause). */
static void
fail(serve_reply_t *reply, const bson_error_t *error)
{
    char text[600];
    unsigned status = 503;
    if (error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_NOT_FOUND) {
        status = 404;
    } else if (error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_INVALID_ARG) {
        status = 400;
    }
    bson_snprintf(text, sizeof text, "%s%s", status == 503 ? "database: " : "", error->message);
    serve__error(reply, status, text);
}

static void
ok_json(serve_reply_t *reply, const bson_t *doc)
{
    reply->status = 200;
    reply->body = bson_as_relaxed_extended_json(doc, NULL);
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A queue name as the API takes it: a collection name without '$' or a dot at its start. */
static bool
good_name(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < SERVE_NAME_MAX && !strchr(name, '$') && name[0] != '.' &&
           strncmp(name, "system.", 7) != 0;
}

static mongoq_queue_t *
open_queue(serve_t *srv, const char *name, bson_error_t *error)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.skip_ensure_indexes = opts.no_reaper = opts.no_change_stream = true;
    return mongoq_queue_new(srv->cli->pool, srv->db, name, &opts, error);
}

/* The db's queues (collections with mongoq's claim index) into a NULL-ended array. */
static char **
queue_names(serve_t *srv, mongoc_client_t *client, bson_error_t *error)
{
    mongoc_database_t *database = mongoc_client_get_database(client, srv->db);
    char **all = mongoc_database_get_collection_names_with_opts(database, NULL, error);
    size_t total = 0, n = 0;
    while (all && all[total]) {
        total++;
    }
    char **names = all ? bson_malloc0((total + 1) * sizeof *names) : NULL;
    for (size_t i = 0; i < total; i++) {
        mongoc_collection_t *coll = mongoc_database_get_collection(database, all[i]);
        bool has = false;
        bson_error_t ignored;
        if (good_name(all[i]) && cli_has_claim_index(coll, &has, &ignored) && has) {
            names[n++] = bson_strdup(all[i]);
        }
        mongoc_collection_destroy(coll);
    }
    bson_strfreev(all);
    mongoc_database_destroy(database);
    return names;
}

static void
stats_doc(const mongoq_stats_t *s, bson_t *doc)
{
    BSON_APPEND_INT64(doc, "ready", s->ready);
    BSON_APPEND_INT64(doc, "delayed", s->delayed);
    BSON_APPEND_INT64(doc, "processing", s->processing);
    BSON_APPEND_INT64(doc, "done", s->done);
    BSON_APPEND_INT64(doc, "dead", s->dead);
    BSON_APPEND_INT64(doc, "waiting", s->waiting);
    BSON_APPEND_INT64(doc, "oldest_due_age_ms", s->oldest_ready_age_ms);
    BSON_APPEND_BOOL(doc, "paused", s->paused);
}

/* ---- the sampler ---------------------------------------------------------------------------- */

static serve_series_t *
series_of(serve_t *srv, const char *name, bool add)
{
    for (size_t i = 0; i < srv->nseries; i++) {
        if (strcmp(srv->series[i].name, name) == 0) {
            return &srv->series[i];
        }
    }
    if (!add || srv->nseries == SERVE_MAX_QUEUES) {
        return NULL;
    }
    serve_series_t *s = &srv->series[srv->nseries++];
    memset(s, 0, sizeof *s);
    bson_strncpy(s->name, name, sizeof s->name);
    return s;
}

typedef struct {
    char name[SERVE_NAME_MAX];
    int64_t enqueued, acked, failed;
} tally_t;

/* Counts one change event of the database into the tally of its collection. */
static void
count_event(const bson_t *event, tally_t *tally, size_t n)
{
    bson_iter_t it, sub;
    const char *coll = bson_iter_init(&it, event) && bson_iter_find_descendant(&it, "ns.coll", &sub) &&
                               BSON_ITER_HOLDS_UTF8(&sub)
                           ? bson_iter_utf8(&sub, NULL)
                           : "";
    const char *op = bson_iter_init_find(&it, event, "operationType") && BSON_ITER_HOLDS_UTF8(&it)
                         ? bson_iter_utf8(&it, NULL)
                         : "";
    tally_t *t = NULL;
    for (size_t i = 0; i < n && !t; i++) {
        t = strcmp(tally[i].name, coll) == 0 ? &tally[i] : NULL;
    }
    if (!t || (bson_iter_init(&it, event) &&
               bson_iter_find_descendant(&it, "documentKey._id", &sub) && !BSON_ITER_HOLDS_OID(&sub))) {
        return; /* not a queue we show, or the control document */
    }
    if (strcmp(op, "insert") == 0) {
        t->enqueued++;
    } else if (strcmp(op, "delete") == 0) {
        t->acked++;
    } else if (bson_iter_init(&it, event) &&
               bson_iter_find_descendant(&it, "updateDescription.updatedFields." MONGOQ__F_STATUS,
                                         &sub) &&
               BSON_ITER_HOLDS_UTF8(&sub)) {
        const char *status = bson_iter_utf8(&sub, NULL);
        t->acked += strcmp(status, MONGOQ__S_DONE) == 0;
        t->failed += strcmp(status, MONGOQ__S_DEAD) == 0;
    }
}

static mongoc_change_stream_t *
open_stream(serve_t *srv, mongoc_client_t *client)
{
    bson_t pipeline = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    bson_error_t error;
    mongoc_database_t *database = mongoc_client_get_database(client, srv->db);
    BSON_APPEND_INT64(&opts, "maxAwaitTimeMS", 200);
    mongoc_change_stream_t *stream = mongoc_database_watch(database, &pipeline, &opts);
    if (mongoc_change_stream_error_document(stream, &error, NULL)) {
        mongoc_change_stream_destroy(stream);
        stream = NULL;
    }
    mongoc_database_destroy(database);
    bson_destroy(&opts);
    bson_destroy(&pipeline);
    return stream;
}

/* Reads every queue's stats and appends one sample per queue with the events counted. */
static void
take_samples(serve_t *srv, mongoc_client_t *client, const tally_t *tally, size_t ntally,
             bool rates)
{
    bson_error_t error;
    char **names = queue_names(srv, client, &error);
    for (size_t i = 0; names && names[i]; i++) {
        mongoq_stats_t st = MONGOQ_STATS_INIT;
        mongoq_queue_t *q = open_queue(srv, names[i], &error);
        bool read = q && mongoq_queue_stats(q, &st, &error);
        mongoq_queue_destroy(q);
        if (!read) {
            continue;
        }
        serve_sample_t s = {.at_ms = now_ms(), .ready = st.ready, .delayed = st.delayed,
                            .processing = st.processing, .done = st.done, .dead = st.dead,
                            .enqueued = -1, .acked = -1, .failed = -1};
        for (size_t k = 0; rates && k < ntally; k++) {
            if (strcmp(tally[k].name, names[i]) == 0) {
                s.enqueued = tally[k].enqueued, s.acked = tally[k].acked, s.failed = tally[k].failed;
            }
        }
        if (rates && s.enqueued < 0) {
            s.enqueued = s.acked = s.failed = 0;
        }
        pthread_mutex_lock(&srv->mu);
        serve_series_t *series = series_of(srv, names[i], true);
        if (series) {
            series->ring[series->next] = s;
            series->next = (series->next + 1) % SERVE_RING;
            series->count += series->count < SERVE_RING;
        }
        pthread_mutex_unlock(&srv->mu);
    }
    bson_strfreev(names);
}

static void *
sampler_main(void *arg)
{
    serve_t *srv = arg;
    mongoc_client_t *client = mongoc_client_pool_pop(srv->cli->pool);
    mongoc_change_stream_t *stream = NULL;
    tally_t tally[SERVE_MAX_QUEUES];
    while (!srv->stop) {
        size_t n = 0;
        pthread_mutex_lock(&srv->mu);
        for (; n < srv->nseries; n++) {
            memset(&tally[n], 0, sizeof tally[n]);
            bson_strncpy(tally[n].name, srv->series[n].name, sizeof tally[n].name);
        }
        pthread_mutex_unlock(&srv->mu);
        stream = stream ? stream : open_stream(srv, client);
        bool rates = stream != NULL;
        int64_t deadline = bson_get_monotonic_time() / 1000 + 1000;
        while (!srv->stop && bson_get_monotonic_time() / 1000 < deadline) {
            const bson_t *event;
            bson_error_t error;
            if (!stream) {
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
            } else if (mongoc_change_stream_next(stream, &event)) {
                count_event(event, tally, n);
            } else if (mongoc_change_stream_error_document(stream, &error, NULL)) {
                mongoc_change_stream_destroy(stream); /* reopened next second */
                stream = NULL;
                rates = false;
            }
        }
        take_samples(srv, client, tally, n, rates);
    }
    mongoc_change_stream_destroy(stream);
    mongoc_client_pool_push(srv->cli->pool, client);
    return NULL;
}

bool
serve__sampler_start(serve_t *srv)
{
    return pthread_create(&srv->sampler, NULL, sampler_main, srv) == 0;
}

void
serve__sampler_stop(serve_t *srv)
{
    srv->stop = true;
    pthread_join(srv->sampler, NULL);
}

/* Appends {enqueued, acked, failed} per second over the last RATE_WINDOW samples, or null. */
static void
append_rates(serve_t *srv, const char *name, bson_t *doc)
{
    int64_t sums[3] = {0, 0, 0}, n = 0;
    bool have = true;
    pthread_mutex_lock(&srv->mu);
    serve_series_t *s = series_of(srv, name, false);
    for (size_t i = 0; s && i < s->count && i < RATE_WINDOW; i++) {
        const serve_sample_t *x = &s->ring[(s->next + SERVE_RING - 1 - i) % SERVE_RING];
        have = have && x->enqueued >= 0;
        sums[0] += x->enqueued, sums[1] += x->acked, sums[2] += x->failed;
        n++;
    }
    pthread_mutex_unlock(&srv->mu);
    if (!have || n == 0) {
        BSON_APPEND_NULL(doc, "rates");
        return;
    }
    bson_t r;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "rates", &r);
    BSON_APPEND_DOUBLE(&r, "enqueued", (double)sums[0] / (double)n);
    BSON_APPEND_DOUBLE(&r, "acked", (double)sums[1] / (double)n);
    BSON_APPEND_DOUBLE(&r, "failed", (double)sums[2] / (double)n);
    bson_append_document_end(doc, &r);
}

/* Appends the samples of the last `seconds` as parallel arrays (compact for the plot). */
static void
append_samples(serve_t *srv, const char *name, size_t seconds, bson_t *doc)
{
    static const char *keys[] = {"t", "ready", "processing", "dead", "enqueued", "acked", "failed"};
    bson_t arrays[7], samples;
    for (size_t k = 0; k < 7; k++) {
        bson_init(&arrays[k]);
    }
    pthread_mutex_lock(&srv->mu);
    serve_series_t *s = series_of(srv, name, false);
    size_t count = s ? (s->count < seconds ? s->count : seconds) : 0;
    for (size_t i = 0; i < count; i++) {
        const serve_sample_t *x = &s->ring[(s->next + SERVE_RING - count + i) % SERVE_RING];
        int64_t v[7] = {x->at_ms, x->ready, x->processing, x->dead, x->enqueued, x->acked, x->failed};
        char key[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, key, sizeof key);
        for (size_t k = 0; k < 7; k++) {
            BSON_APPEND_INT64(&arrays[k], kp, v[k]);
        }
    }
    pthread_mutex_unlock(&srv->mu);
    /* Seven arrays side by side: each built apart (a bson_t has one open child at a time). */
    BSON_APPEND_DOCUMENT_BEGIN(doc, "samples", &samples);
    for (size_t k = 0; k < 7; k++) {
        BSON_APPEND_ARRAY(&samples, keys[k], &arrays[k]);
        bson_destroy(&arrays[k]);
    }
    bson_append_document_end(doc, &samples);
}

/* ---- GET -------------------------------------------------------------------------------------- */

typedef const char *(*arg_fn)(void *, const char *);

static void
get_queues(serve_t *srv, serve_reply_t *reply)
{
    bson_error_t error;
    mongoc_client_t *client = mongoc_client_pool_pop(srv->cli->pool);
    char **names = queue_names(srv, client, &error);
    mongoc_client_pool_push(srv->cli->pool, client);
    if (!names) {
        fail(reply, &error);
        return;
    }
    bson_t doc = BSON_INITIALIZER, arr, item;
    BSON_APPEND_UTF8(&doc, "db", srv->db);
    BSON_APPEND_ARRAY_BEGIN(&doc, "queues", &arr);
    bool ok = true;
    for (size_t i = 0; ok && names[i]; i++) {
        mongoq_stats_t st = MONGOQ_STATS_INIT;
        mongoq_queue_t *q = open_queue(srv, names[i], &error);
        ok = q && mongoq_queue_stats(q, &st, &error);
        mongoq_queue_destroy(q);
        char key[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, kp, &item);
        BSON_APPEND_UTF8(&item, "name", names[i]);
        stats_doc(&st, &item);
        append_rates(srv, names[i], &item);
        append_samples(srv, names[i], 120, &item);
        bson_append_document_end(&arr, &item);
    }
    bson_append_array_end(&doc, &arr);
    if (ok) {
        ok_json(reply, &doc);
    } else {
        fail(reply, &error);
    }
    bson_destroy(&doc);
    bson_strfreev(names);
}

static void
get_queue(serve_t *srv, mongoq_queue_t *q, serve_reply_t *reply)
{
    bson_error_t error;
    mongoq_stats_t st = MONGOQ_STATS_INIT;
    bson_t doc = BSON_INITIALIZER;
    bool has = false;
    mongoc_client_t *client = mongoc_client_pool_pop(srv->cli->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, srv->db, mongoq_queue_name(q));
    bool ok = cli_has_claim_index(coll, &has, &error) && (!has || mongoq_queue_stats(q, &st, &error));
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(srv->cli->pool, client);
    if (ok && !has) {
        serve__error(reply, 404, "no such queue");
    } else if (!ok) {
        fail(reply, &error);
    } else {
        BSON_APPEND_UTF8(&doc, "name", mongoq_queue_name(q));
        stats_doc(&st, &doc);
        append_rates(srv, mongoq_queue_name(q), &doc);
        append_samples(srv, mongoq_queue_name(q), SERVE_RING, &doc);
        ok_json(reply, &doc);
    }
    bson_destroy(&doc);
}

/* One page of a browse listing: ?status=&q=&sort=claim|run_at|lease&page=TOKEN&limit=N. */
static void
get_messages(mongoq_queue_t *q, arg_fn arg, void *ctx, serve_reply_t *reply)
{
    const char *status = arg(ctx, "status"), *sort = arg(ctx, "sort"), *text = arg(ctx, "q");
    const char *limit_text = arg(ctx, "limit");
    long limit = limit_text ? strtol(limit_text, NULL, 10) : PAGE_DEFAULT;
    mongoq_browse_opts_t opts = MONGOQ_BROWSE_OPTS_INIT;
    bson_error_t error;
    if (limit < 1 || limit > PAGE_MAX) {
        serve__error(reply, 400, "limit: 1 to 200");
        return;
    }
    opts.status = status && *status && strcmp(status, "all") != 0 ? status : NULL;
    opts.order = !sort || !*sort || strcmp(sort, "claim") == 0 ? MONGOQ_BROWSE_ORDER_CLAIM
                 : strcmp(sort, "run_at") == 0                 ? MONGOQ_BROWSE_ORDER_RUN_AT
                 : strcmp(sort, "lease") == 0                  ? MONGOQ_BROWSE_ORDER_LEASE
                                                               : (mongoq_browse_order_t)99;
    opts.error_contains = text && *text ? text : NULL;
    opts.page_token = arg(ctx, "page") && *arg(ctx, "page") ? arg(ctx, "page") : NULL;
    opts.page_size = (int32_t)limit;
    mongoq_browse_t *b = mongoq_browse_new(q, &opts, &error);
    if (!b) {
        fail(reply, &error);
        return;
    }
    bson_t doc = BSON_INITIALIZER, arr, item;
    BSON_APPEND_ARRAY_BEGIN(&doc, "messages", &arr);
    long n = 0;
    bool ok = true;
    mongoq_message_t *msg = NULL;
    while (n < limit && (ok = mongoq_browse_next(b, &msg, &error)) && msg) {
        char key[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)n++, &kp, key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, kp, &item);
        cli_message_doc(msg, false, &item);
        bson_append_document_end(&arr, &item);
        mongoq_message_destroy(msg);
    }
    bson_append_array_end(&doc, &arr);
    const char *next = n == limit ? mongoq_browse_token(b) : NULL;
    if (next) {
        BSON_APPEND_UTF8(&doc, "next", next);
    } else {
        BSON_APPEND_NULL(&doc, "next");
    }
    if (ok) {
        ok_json(reply, &doc);
    } else {
        fail(reply, &error);
    }
    bson_destroy(&doc);
    mongoq_browse_destroy(b);
}

static void
get_message(mongoq_queue_t *q, const char *hex, serve_reply_t *reply)
{
    bson_oid_t id;
    bson_error_t error;
    mongoq_message_t *msg = NULL;
    if (!bson_oid_is_valid(hex, strlen(hex)) || strlen(hex) != 24) {
        serve__error(reply, 400, "a message id is 24 hex digits");
        return;
    }
    bson_oid_init_from_string(&id, hex);
    if (!mongoq_queue_get(q, &id, &msg, &error)) {
        fail(reply, &error);
        return;
    }
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t it;
    cli_message_doc(msg, true, &doc);
    const bson_t *stored = mongoq_message_document(msg);
    if (bson_iter_init_find(&it, stored, MONGOQ__F_GROUP) && BSON_ITER_HOLDS_UTF8(&it)) {
        BSON_APPEND_UTF8(&doc, "group", bson_iter_utf8(&it, NULL));
    }
    if (bson_iter_init_find(&it, stored, MONGOQ__F_UPDATED_AT) && BSON_ITER_HOLDS_DATE_TIME(&it)) {
        BSON_APPEND_DATE_TIME(&doc, "updated_at", bson_iter_date_time(&it));
    }
    ok_json(reply, &doc);
    bson_destroy(&doc);
    mongoq_message_destroy(msg);
}

/*
 * Dead letters grouped by last_error: one aggregate over at most DEAD_SAMPLE dead messages (the
 * first in the status index's order), so a huge dead-letter pile costs a bounded read; "sampled"
 * says how many were grouped.
 */
static void
get_dead(serve_t *srv, mongoq_queue_t *q, serve_reply_t *reply)
{
    bson_t *pipeline = BCON_NEW(
        "pipeline", "[", "{", "$match", "{", MONGOQ__F_STATUS, BCON_UTF8(MONGOQ__S_DEAD), "}", "}",
        "{", "$limit", BCON_INT32(DEAD_SAMPLE), "}",
        "{", "$group", "{", "_id", BCON_UTF8("$" MONGOQ__F_LAST_ERROR), "count", "{", "$sum",
        BCON_INT32(1), "}", "last_at", "{", "$max", BCON_UTF8("$" MONGOQ__F_UPDATED_AT), "}", "}",
        "}", "{", "$sort", "{", "count", BCON_INT32(-1), "_id", BCON_INT32(1), "}", "}",
        "{", "$limit", BCON_INT32(DEAD_REASONS), "}", "]");
    mongoc_client_t *client = mongoc_client_pool_pop(srv->cli->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, srv->db, mongoq_queue_name(q));
    mongoc_cursor_t *cursor = mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    bson_t doc = BSON_INITIALIZER, arr, item;
    const bson_t *row;
    bson_iter_t it;
    bson_error_t error;
    int64_t sampled = 0;
    uint32_t i = 0;
    BSON_APPEND_ARRAY_BEGIN(&doc, "reasons", &arr);
    while (mongoc_cursor_next(cursor, &row)) {
        char key[16];
        const char *kp;
        bson_uint32_to_string(i++, &kp, key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, kp, &item);
        if (bson_iter_init_find(&it, row, "_id") && BSON_ITER_HOLDS_UTF8(&it)) {
            BSON_APPEND_UTF8(&item, "last_error", bson_iter_utf8(&it, NULL));
        } else {
            BSON_APPEND_NULL(&item, "last_error");
        }
        int64_t count = bson_iter_init_find(&it, row, "count") ? bson_iter_as_int64(&it) : 0;
        sampled += count;
        BSON_APPEND_INT64(&item, "count", count);
        if (bson_iter_init_find(&it, row, "last_at") && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            BSON_APPEND_DATE_TIME(&item, "last_at", bson_iter_date_time(&it));
        }
        bson_append_document_end(&arr, &item);
    }
    bson_append_array_end(&doc, &arr);
    BSON_APPEND_INT64(&doc, "grouped", sampled);
    BSON_APPEND_INT32(&doc, "sample_limit", DEAD_SAMPLE);
    if (mongoc_cursor_error(cursor, &error)) {
        fail(reply, &error);
    } else {
        ok_json(reply, &doc);
    }
    bson_destroy(&doc);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(srv->cli->pool, client);
    bson_destroy(pipeline);
}

/* schedules and groups: the tool's own commands with --json, their output captured. */
static void
get_by_command(serve_t *srv, mongoq_queue_t *q, int (*cmd)(cli_t *), const char *name,
               serve_reply_t *reply)
{
    char *text = NULL;
    size_t len = 0;
    cli_t sub = *srv->cli;
    memset(&sub.args, 0, sizeof sub.args);
    sub.args.json = true;
    sub.args.npositional = 1;
    sub.command = name;
    sub.queue = q;
    sub.out = open_memstream(&text, &len);
    if (!sub.out) {
        serve__error(reply, 500, "out of memory");
        return;
    }
    int rc = cmd(&sub);
    fclose(sub.out);
    if (rc == CLI_OK) {
        reply->status = 200;
        reply->body = bson_strdup(text);
    } else {
        serve__error(reply, rc == CLI_NOT_FOUND ? 404 : 503,
                     "the database refused or did not answer (the server's log has the error)");
    }
    free(text);
}

void
serve__api_get(serve_t *srv, const char *path, arg_fn arg, void *ctx, serve_reply_t *reply)
{
    char name[SERVE_NAME_MAX];
    const char *rest;
    bson_error_t error;
    if (strcmp(path, "/config") == 0) {
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "db", srv->db);
        BSON_APPEND_BOOL(&doc, "actions", srv->allow_actions);
        ok_json(reply, &doc);
        bson_destroy(&doc);
        return;
    }
    if (strcmp(path, "/queues") == 0) {
        get_queues(srv, reply);
        return;
    }
    if (strncmp(path, "/queues/", 8) != 0) {
        serve__error(reply, 404, "not found");
        return;
    }
    path += 8;
    rest = path + strcspn(path, "/");
    if ((size_t)(rest - path) >= sizeof name) {
        serve__error(reply, 400, "bad queue name");
        return;
    }
    memcpy(name, path, (size_t)(rest - path));
    name[rest - path] = '\0';
    if (!good_name(name)) {
        serve__error(reply, 400, "bad queue name");
        return;
    }
    mongoq_queue_t *q = open_queue(srv, name, &error);
    if (!q) {
        fail(reply, &error);
    } else if (*rest == '\0') {
        get_queue(srv, q, reply);
    } else if (strcmp(rest, "/messages") == 0) {
        get_messages(q, arg, ctx, reply);
    } else if (strncmp(rest, "/messages/", 10) == 0) {
        get_message(q, rest + 10, reply);
    } else if (strcmp(rest, "/dead") == 0) {
        get_dead(srv, q, reply);
    } else if (strcmp(rest, "/schedules") == 0) {
        get_by_command(srv, q, cli_cmd_schedules, "schedules", reply);
    } else if (strcmp(rest, "/groups") == 0) {
        get_by_command(srv, q, cli_cmd_groups, "groups", reply);
    } else {
        serve__error(reply, 404, "not found");
    }
    mongoq_queue_destroy(q);
}

/*
 * `mongoq serve`: the JSON API's GET side (README.md in this folder lists it). Every answer is
 * read fresh from the database through the library, so when the server is down the API says so
 * (503 and {"error": ...}) rather than showing stale numbers; only the rates, the plot's history
 * and the claims counted per consumer come from the sampler (serve_sampler.c). The listings that
 * scan (messages by text, consumers) are in serve_scan.c.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fields.h"
#include "serve.h"

#define DEAD_SAMPLE 10000 /* dead letters grouped per request, at most */
#define DEAD_REASONS 50

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
void
serve__fail(serve_reply_t *reply, const bson_error_t *error)
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

void
serve__ok_json(serve_reply_t *reply, const bson_t *doc)
{
    reply->status = 200;
    reply->body = bson_as_relaxed_extended_json(doc, NULL);
}

/* A queue name as the API takes it: a collection name without '$' or a dot at its start. */
static bool
good_name(const char *name)
{
    size_t n = strlen(name);
    return n > 0 && n < SERVE_NAME_MAX && !strchr(name, '$') && name[0] != '.' &&
           strncmp(name, "system.", 7) != 0;
}

mongoq_queue_t *
serve__open_queue(serve_t *srv, const char *name, bson_error_t *error)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.skip_ensure_indexes = opts.no_reaper = opts.no_change_stream = true;
    return mongoq_queue_new(srv->cli->pool, srv->db, name, &opts, error);
}

/* The db's queues (collections with mongoq's claim index) into a NULL-ended array. */
char **
serve__queue_names(serve_t *srv, mongoc_client_t *client, bson_error_t *error)
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

/* ---- GET --------------------------------------------------------------------------------------
 */

static void
get_queues(serve_t *srv, serve_reply_t *reply)
{
    bson_error_t error;
    mongoc_client_t *client = cli_pop(srv->cli, &error);
    char **names = client ? serve__queue_names(srv, client, &error) : NULL;
    if (client) {
        mongoc_client_pool_push(srv->cli->pool, client);
    }
    if (!names) {
        serve__fail(reply, &error);
        return;
    }
    bson_t doc = BSON_INITIALIZER, arr, item;
    BSON_APPEND_UTF8(&doc, "db", srv->db);
    BSON_APPEND_ARRAY_BEGIN(&doc, "queues", &arr);
    bool ok = true;
    for (size_t i = 0; ok && names[i]; i++) {
        mongoq_stats_t st = MONGOQ_STATS_INIT;
        mongoq_queue_t *q = serve__open_queue(srv, names[i], &error);
        ok = q && mongoq_queue_stats(q, &st, &error);
        mongoq_queue_destroy(q);
        char key[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, kp, &item);
        BSON_APPEND_UTF8(&item, "name", names[i]);
        cli_stats_doc(&st, &item);
        serve__append_rates(srv, names[i], &item);
        serve__append_samples(srv, names[i], 120, &item);
        bson_append_document_end(&arr, &item);
    }
    bson_append_array_end(&doc, &arr);
    if (ok) {
        serve__ok_json(reply, &doc);
    } else {
        serve__fail(reply, &error);
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
    mongoc_client_t *client = cli_pop(srv->cli, &error);
    bool ok = false;
    if (client) {
        mongoc_collection_t *coll =
            mongoc_client_get_collection(client, srv->db, mongoq_queue_name(q));
        ok = cli_has_claim_index(coll, &has, &error);
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(srv->cli->pool, client); /* before stats, which pops its own */
        ok = ok && (!has || mongoq_queue_stats(q, &st, &error));
    }
    if (ok && !has) {
        serve__error(reply, 404, "no such queue");
    } else if (!ok) {
        serve__fail(reply, &error);
    } else {
        BSON_APPEND_UTF8(&doc, "name", mongoq_queue_name(q));
        cli_stats_doc(&st, &doc);
        serve__append_rates(srv, mongoq_queue_name(q), &doc);
        serve__append_samples(srv, mongoq_queue_name(q), SERVE_RING, &doc);
        serve__ok_json(reply, &doc);
    }
    bson_destroy(&doc);
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
        serve__fail(reply, &error);
        return;
    }
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t it;
    cli_message_doc(msg, true, &doc);
    const bson_t *stored = mongoq_message_document(msg);
    if (bson_iter_init_find(&it, stored, MONGOQ__F_GROUP) && BSON_ITER_HOLDS_UTF8(&it)) {
        BSON_APPEND_UTF8(&doc, "group", bson_iter_utf8(&it, NULL));
    }
    /* A schedule's message carries {name, slot} in its payload (mongoq/schedule.h). */
    if (bson_iter_init_find(&it, mongoq_message_payload(msg), "mongoq_schedule") &&
        BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t schedule;
        bson_iter_document(&it, &len, &data);
        if (bson_init_static(&schedule, data, len)) {
            BSON_APPEND_DOCUMENT(&doc, "schedule", &schedule);
        }
    }
    if (bson_iter_init_find(&it, stored, MONGOQ__F_UPDATED_AT) && BSON_ITER_HOLDS_DATE_TIME(&it)) {
        BSON_APPEND_DATE_TIME(&doc, "updated_at", bson_iter_date_time(&it));
    }
    serve__ok_json(reply, &doc);
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
    /* [{$match: {status: dead}}, {$limit: DEAD_SAMPLE}, {$group: {_id: "$last_error", count:
     *  {$sum: 1}, last_at: {$max: "$updated_at"}}}, {$sort: {count: -1, _id: 1}},
     *  {$limit: DEAD_REASONS}] */
    bson_t *pipeline = bson_new(), stages, stage, body, op;
    BSON_APPEND_ARRAY_BEGIN(pipeline, "pipeline", &stages);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &body);
    BSON_APPEND_UTF8(&body, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    bson_append_document_end(&stage, &body);
    bson_append_document_end(&stages, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "1", &stage);
    BSON_APPEND_INT32(&stage, "$limit", DEAD_SAMPLE);
    bson_append_document_end(&stages, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "2", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &body);
    BSON_APPEND_UTF8(&body, "_id", "$" MONGOQ__F_LAST_ERROR);
    BSON_APPEND_DOCUMENT_BEGIN(&body, "count", &op);
    BSON_APPEND_INT32(&op, "$sum", 1);
    bson_append_document_end(&body, &op);
    BSON_APPEND_DOCUMENT_BEGIN(&body, "last_at", &op);
    BSON_APPEND_UTF8(&op, "$max", "$" MONGOQ__F_UPDATED_AT);
    bson_append_document_end(&body, &op);
    bson_append_document_end(&stage, &body);
    bson_append_document_end(&stages, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "3", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$sort", &body);
    BSON_APPEND_INT32(&body, "count", -1);
    BSON_APPEND_INT32(&body, "_id", 1);
    bson_append_document_end(&stage, &body);
    bson_append_document_end(&stages, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stages, "4", &stage);
    BSON_APPEND_INT32(&stage, "$limit", DEAD_REASONS);
    bson_append_document_end(&stages, &stage);
    bson_append_array_end(pipeline, &stages);
    bson_error_t error;
    mongoc_client_t *client = cli_pop(srv->cli, &error);
    if (!client) {
        serve__fail(reply, &error);
        bson_destroy(pipeline);
        return;
    }
    mongoc_collection_t *coll = mongoc_client_get_collection(client, srv->db, mongoq_queue_name(q));
    mongoc_cursor_t *cursor =
        mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    bson_t doc = BSON_INITIALIZER, arr, item;
    const bson_t *row;
    bson_iter_t it;
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
        serve__fail(reply, &error);
    } else {
        serve__ok_json(reply, &doc);
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
serve__api_get(serve_t *srv, const char *path, serve_arg_fn arg, void *ctx, serve_reply_t *reply)
{
    char name[SERVE_NAME_MAX];
    const char *rest;
    bson_error_t error;
    if (strcmp(path, "/config") == 0) {
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "db", srv->db);
        BSON_APPEND_BOOL(&doc, "actions", srv->allow_actions);
        serve__ok_json(reply, &doc);
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
    mongoq_queue_t *q = serve__open_queue(srv, name, &error);
    if (!q) {
        serve__fail(reply, &error);
    } else if (*rest == '\0') {
        get_queue(srv, q, reply);
    } else if (strcmp(rest, "/messages") == 0) {
        serve__get_messages(q, arg, ctx, reply);
    } else if (strncmp(rest, "/messages/", 10) == 0) {
        get_message(q, rest + 10, reply);
    } else if (strcmp(rest, "/consumers") == 0) {
        serve__get_consumers(srv, q, reply);
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

/*
 * `mongoq serve`: the actions (POST /api/queues/NAME/ACTION), reached only after serve.c checked
 * --allow-actions, the token and the Origin. Each is one library call (delete one: one
 * deleteOne, as the library has no call for it) and answers {"ok": true, ...}.
 */
#include <string.h>

#include "fields.h"
#include "serve.h"

static bool
parse_id(const char *hex, bson_oid_t *id)
{
    if (!hex || strlen(hex) != 24 || !bson_oid_is_valid(hex, 24)) {
        return false;
    }
    bson_oid_init_from_string(id, hex);
    return true;
}

static void
done(serve_reply_t *reply, bool ok, const bson_error_t *error, const char *count_key, int64_t count)
{
    if (!ok) {
        bool not_found =
            error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_NOT_FOUND;
        bool bad = error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_INVALID_ARG;
        serve__error(reply, not_found ? 404 : bad ? 400 : 503, error->message);
        return;
    }
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_BOOL(&doc, "ok", true);
    if (count_key) {
        BSON_APPEND_INT64(&doc, count_key, count);
    }
    reply->status = 200;
    reply->body = bson_as_relaxed_extended_json(&doc, NULL);
    bson_destroy(&doc);
}

/*
 * Deletes one dead message outside any group (a grouped dead message may be holding its group's
 * place: redrive it instead). NOT_FOUND when there is no such message.
 */
static bool
delete_one(serve_t *srv, mongoq_queue_t *q, const bson_oid_t *id, bson_error_t *error)
{
    bson_t *filter = bson_new(), exists;
    BSON_APPEND_OID(filter, "_id", id);
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_GROUP, &exists);
    BSON_APPEND_BOOL(&exists, "$exists", false);
    bson_append_document_end(filter, &exists);
    bson_t reply;
    bson_iter_t it;
    mongoc_client_t *client = cli_pop(srv->cli, error);
    if (!client) {
        bson_destroy(filter);
        return false;
    }
    mongoc_collection_t *coll = mongoc_client_get_collection(client, srv->db, mongoq_queue_name(q));
    bool ok = mongoc_collection_delete_one(coll, filter, NULL, &reply, error);
    if (ok && (!bson_iter_init_find(&it, &reply, "deletedCount") || bson_iter_as_int64(&it) != 1)) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_NOT_FOUND,
                       "no dead message outside a group has this id");
        ok = false;
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(srv->cli->pool, client);
    bson_destroy(filter);
    return ok;
}

static void
act(serve_t *srv, mongoq_queue_t *q, const char *action, serve_arg_fn arg, void *ctx,
    serve_reply_t *reply)
{
    bson_error_t error;
    bson_oid_t id;
    int64_t n = 0;
    const char *hex = arg(ctx, "id"), *all = arg(ctx, "all"), *status = arg(ctx, "status");
    bool has_id = parse_id(hex, &id);
    if (strcmp(action, "pause") == 0) {
        done(reply, mongoq_queue_pause(q, &error), &error, NULL, 0);
    } else if (strcmp(action, "resume") == 0) {
        done(reply, mongoq_queue_resume(q, &error), &error, NULL, 0);
    } else if (strcmp(action, "redrive") == 0 && (has_id || (all && strcmp(all, "1") == 0))) {
        bool ok = mongoq_queue_redrive(q, has_id ? &id : NULL, &n, &error); /* n set first */
        done(reply, ok, &error, "moved", n);
    } else if (strcmp(action, "retry") == 0 && has_id) {
        done(reply, mongoq_queue_retry_now(q, &id, &error), &error, NULL, 0);
    } else if (strcmp(action, "delete") == 0 && has_id) {
        done(reply, delete_one(srv, q, &id, &error), &error, "deleted", 1);
    } else if (strcmp(action, "purge") == 0 && status && cli_known_status(status, false)) {
        bool ok = mongoq_queue_purge(q, status, &n, &error);
        done(reply, ok, &error, "deleted", n);
    } else {
        serve__error(reply, 400,
                     "actions: pause, resume, redrive?id=ID|all=1, retry?id=ID, delete?id=ID, "
                     "purge?status=ready|processing|done|dead");
    }
}

void
serve__api_post(serve_t *srv, const char *path, serve_arg_fn arg, void *ctx, serve_reply_t *reply)
{
    char name[SERVE_NAME_MAX];
    bson_error_t error;
    const char *slash = strncmp(path, "/queues/", 8) == 0 ? strchr(path + 8, '/') : NULL;
    if (!slash || (size_t)(slash - path - 8) >= sizeof name || slash == path + 8 ||
        memchr(path + 8, '$', (size_t)(slash - path - 8))) {
        serve__error(reply, 404, "not found");
        return;
    }
    memcpy(name, path + 8, (size_t)(slash - path - 8));
    name[slash - path - 8] = '\0';
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.skip_ensure_indexes = opts.no_reaper = opts.no_change_stream = true;
    mongoq_queue_t *q = mongoq_queue_new(srv->cli->pool, srv->db, name, &opts, &error);
    if (!q) {
        serve__error(reply, 503, error.message);
        return;
    }
    act(srv, q, slash + 1, arg, ctx, reply);
    mongoq_queue_destroy(q);
}

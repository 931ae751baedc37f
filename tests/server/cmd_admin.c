/*
 * Administrative commands: handshake (hello), ping, buildInfo, serverStatus, sessions,
 * databases and collections (list/drop). create is in cmd_create.c, indexes in cmd_index.c.
 */
#include "store-private.h"

#include <string.h>
#include <unistd.h>

static void
append_host_array(bson_t *reply, const char *key)
{
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(reply, key, &arr);
    BSON_APPEND_UTF8(&arr, "0", ms_host_and_port());
    bson_append_array_end(reply, &arr);
}

static void
append_last_write(bson_t *reply)
{
    ms_optime_t t = ms_oplog_last_optime();
    bson_t lw, op;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "lastWrite", &lw);
    BSON_APPEND_DOCUMENT_BEGIN(&lw, "opTime", &op);
    BSON_APPEND_TIMESTAMP(&op, "ts", t.t, t.i);
    BSON_APPEND_INT64(&op, "t", ms_config.term);
    bson_append_document_end(&lw, &op);
    BSON_APPEND_DATE_TIME(&lw, "lastWriteDate", (int64_t)t.t * 1000);
    BSON_APPEND_DOCUMENT_BEGIN(&lw, "majorityOpTime", &op);
    BSON_APPEND_TIMESTAMP(&op, "ts", t.t, t.i);
    BSON_APPEND_INT64(&op, "t", ms_config.term);
    bson_append_document_end(&lw, &op);
    BSON_APPEND_DATE_TIME(&lw, "majorityWriteDate", (int64_t)t.t * 1000);
    bson_append_document_end(reply, &lw);
}

static bool
read_client_metadata(ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it, app;
    if (!bson_iter_init_find(&it, c->cmd, "client")) {
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "The client metadata document must be a document");
    }
    if (c->conn->appname[0] || c->conn->id < 0) {
        return true;
    }
    if (bson_iter_recurse(&it, &app) && bson_iter_find_descendant(&app, "application.name",
                                                                  &app) &&
        BSON_ITER_HOLDS_UTF8(&app)) {
        snprintf(c->conn->appname, sizeof c->conn->appname, "%s", bson_iter_utf8(&app, NULL));
    }
    return true;
}

/* hello.idl is not strict: mongod ignores the fields it does not know (a newer driver's, such
 * as the Node.js driver 7's backpressure). */
MS_HANDLER(hello)
{
    bson_iter_t it;
    if (!read_client_metadata(c, error)) {
        return false;
    }
    if (bson_iter_init_find(&it, c->cmd, "loadBalanced") && bson_iter_as_bool(&it)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "The server is not configured for load balancing");
    }
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    bool legacy = strcmp(bson_iter_key(&it), "hello") != 0;
    if (!ms_config.standalone) {
        append_host_array(reply, "hosts");
        BSON_APPEND_UTF8(reply, "setName", ms_config.set_name);
        BSON_APPEND_INT32(reply, "setVersion", MS_SET_VERSION);
    }
    BSON_APPEND_BOOL(reply, legacy ? "ismaster" : "isWritablePrimary", true);
    if (!ms_config.standalone) {
        BSON_APPEND_BOOL(reply, "secondary", false);
        BSON_APPEND_UTF8(reply, "primary", ms_host_and_port());
        BSON_APPEND_UTF8(reply, "me", ms_host_and_port());
        BSON_APPEND_OID(reply, "electionId", &ms_config.election_id);
        append_last_write(reply);
    }
    BSON_APPEND_INT32(reply, "maxBsonObjectSize", MS_MAX_BSON_BYTES);
    BSON_APPEND_INT32(reply, "maxMessageSizeBytes", MS_MAX_MESSAGE_BYTES);
    BSON_APPEND_INT32(reply, "maxWriteBatchSize", 100000);
    BSON_APPEND_DATE_TIME(reply, "localTime", ms_now_ms());
    BSON_APPEND_INT32(reply, "logicalSessionTimeoutMinutes", 30);
    BSON_APPEND_INT64(reply, "connectionId", c->conn->id);
    BSON_APPEND_INT32(reply, "minWireVersion", 0);
    BSON_APPEND_INT32(reply, "maxWireVersion", 17);
    BSON_APPEND_BOOL(reply, "readOnly", false);
    if (bson_iter_init_find(&it, c->cmd, "helloOk") && bson_iter_as_bool(&it)) {
        BSON_APPEND_BOOL(reply, "helloOk", true);
    }
    return true;
}

MS_HANDLER(ping)
{
    (void)c;
    (void)reply;
    (void)error;
    return true;
}

MS_HANDLER(whats_my_uri)
{
    (void)error;
    BSON_APPEND_UTF8(reply, "you", c->conn->peer);
    return true;
}

MS_HANDLER(build_info)
{
    bson_t arr, engines;
    (void)c;
    (void)error;
    BSON_APPEND_UTF8(reply, "version", "6.0.0-mongoq-test");
    BSON_APPEND_UTF8(reply, "gitVersion", "mongoq-test-server");
    BSON_APPEND_ARRAY_BEGIN(reply, "versionArray", &arr);
    BSON_APPEND_INT32(&arr, "0", 6);
    BSON_APPEND_INT32(&arr, "1", 0);
    BSON_APPEND_INT32(&arr, "2", 0);
    BSON_APPEND_INT32(&arr, "3", 0);
    bson_append_array_end(reply, &arr);
    BSON_APPEND_INT32(reply, "bits", 64);
    BSON_APPEND_BOOL(reply, "debug", false);
    BSON_APPEND_INT32(reply, "maxBsonObjectSize", MS_MAX_BSON_BYTES);
    BSON_APPEND_ARRAY_BEGIN(reply, "storageEngines", &engines);
    BSON_APPEND_UTF8(&engines, "0", "mongoq-memory");
    bson_append_array_end(reply, &engines);
    return true;
}

MS_HANDLER(server_status)
{
    bson_t conns;
    (void)c;
    (void)error;
    int64_t now = ms_now_ms();
    BSON_APPEND_UTF8(reply, "host", ms_host_and_port());
    BSON_APPEND_UTF8(reply, "version", "6.0.0-mongoq-test");
    BSON_APPEND_UTF8(reply, "process", "mongod");
    BSON_APPEND_INT64(reply, "pid", (int64_t)getpid());
    BSON_APPEND_INT64(reply, "uptime", (now - ms_config.start_ms) / 1000);
    BSON_APPEND_INT64(reply, "uptimeMillis", now - ms_config.start_ms);
    BSON_APPEND_DATE_TIME(reply, "localTime", now);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "connections", &conns);
    BSON_APPEND_INT64(&conns, "totalCreated", c->conn->id);
    bson_append_document_end(reply, &conns);
    ms_metrics_append(reply);
    ms_journal_server_status(reply); /* wiredTiger.log, with --dbpath */
    return true;
}

MS_HANDLER(end_sessions)
{
    bson_iter_t it;
    (void)reply;
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'endSessions' is the wrong type '%s', "
                            "expected type 'array'",
                            "other");
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_t ids;
    bson_init_static(&ids, data, len);
    ms_session_end_sessions(&ids);
    return true;
}

/* ---- databases and collections ---------------------------------------------------------- */

const char *
ms_admin_coll_name(const ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        ms_set_error(error, MS_ERR_INVALID_NAMESPACE, "collection name has invalid type %s",
                     BSON_ITER_HOLDS_NUMBER(&it) ? "int" : "other");
        return NULL;
    }
    return bson_iter_utf8(&it, NULL);
}

static size_t
db_size(const ms_db_t *d)
{
    size_t n = 0;
    for (const ms_coll_t *c = d->colls; c; c = c->next) {
        for (const ms_rec_t *r = c->head; r; r = r->next) {
            n += r->doc->len;
        }
    }
    return n;
}

static bool
filter_matcher(const ms_cmd_t *c, ms_matcher_t **m, bson_error_t *error)
{
    bson_iter_t it;
    *m = NULL;
    if (!bson_iter_init_find(&it, c->cmd, "filter") || BSON_ITER_HOLDS_NULL(&it)) {
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '%s.filter' is the wrong type, expected type "
                            "'object'",
                            c->name);
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t filter;
    bson_init_static(&filter, data, len);
    *m = ms_matcher_new(&filter, error);
    return *m != NULL;
}

static bool
flag(const bson_t *cmd, const char *name)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, cmd, name) && bson_iter_as_bool(&it);
}

MS_HANDLER(list_databases)
{
    static const char *const allowed[] = {"filter", "nameOnly", "authorizedDatabases", NULL};
    ms_matcher_t *m;
    bson_t arr;
    size_t total = 0;
    uint32_t i = 0;
    if (!ms_check_fields(c, allowed, error) || !filter_matcher(c, &m, error)) {
        return false;
    }
    bool name_only = flag(c->cmd, "nameOnly");
    BSON_APPEND_ARRAY_BEGIN(reply, "databases", &arr);
    for (ms_db_t *d = ms_store_dbs(); d; d = d->next) {
        bson_t entry = BSON_INITIALIZER;
        size_t size = db_size(d);
        BSON_APPEND_UTF8(&entry, "name", d->name);
        if (!name_only) {
            BSON_APPEND_INT64(&entry, "sizeOnDisk", (int64_t)size);
            BSON_APPEND_BOOL(&entry, "empty", size == 0);
        }
        if (!m || ms_matcher_matches(m, &entry, &c->lang)) {
            char key[16];
            const char *k;
            bson_uint32_to_string(i++, &k, key, sizeof key);
            BSON_APPEND_DOCUMENT(&arr, k, &entry);
            total += size;
        }
        bson_destroy(&entry);
    }
    bson_append_array_end(reply, &arr);
    if (!name_only) {
        BSON_APPEND_INT64(reply, "totalSize", (int64_t)total);
        BSON_APPEND_INT64(reply, "totalSizeMb", (int64_t)(total >> 20));
    }
    ms_matcher_destroy(m);
    return true;
}

bool
ms_admin_cursor_batch_size(const ms_cmd_t *c, int64_t *batch_size, bson_error_t *error)
{
    bson_iter_t it, child;
    *batch_size = 101;
    if (!bson_iter_init_find(&it, c->cmd, "cursor")) {
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '%s.cursor' is the wrong type, expected type "
                            "'object'",
                            c->name);
    }
    bson_iter_recurse(&it, &child);
    while (bson_iter_next(&child)) {
        if (strcmp(bson_iter_key(&child), "batchSize") != 0) {
            return ms_set_error(error, MS_ERR_LOCATION40415,
                                "BSON field 'cursor.%s' is an unknown field.",
                                bson_iter_key(&child));
        }
        if (!BSON_ITER_HOLDS_NUMBER(&child) || bson_iter_as_int64(&child) < 0) {
            return ms_set_error(error, MS_ERR_BAD_VALUE, "BatchSize value must be non-negative");
        }
        *batch_size = bson_iter_as_int64(&child);
    }
    return true;
}

static void
collection_info(const ms_coll_t *coll, bool name_only, bson_t *out)
{
    bson_t info, id_index, key;
    bool view = ms_view_is(coll);
    BSON_APPEND_UTF8(out, "name", coll->name);
    BSON_APPEND_UTF8(out, "type", view ? "view" : "collection");
    if (name_only) {
        return;
    }
    if (view) {
        /* a view: {viewOn, pipeline} and readOnly, no uuid or idIndex */
        BSON_APPEND_DOCUMENT(out, "options", coll->options);
        BSON_APPEND_DOCUMENT_BEGIN(out, "info", &info);
        BSON_APPEND_BOOL(&info, "readOnly", true);
        bson_append_document_end(out, &info);
        return;
    }
    BSON_APPEND_DOCUMENT(out, "options", coll->options);
    BSON_APPEND_DOCUMENT_BEGIN(out, "info", &info);
    BSON_APPEND_BOOL(&info, "readOnly", false);
    BSON_APPEND_BINARY(&info, "uuid", BSON_SUBTYPE_UUID, coll->uuid, sizeof coll->uuid);
    bson_append_document_end(out, &info);
    BSON_APPEND_DOCUMENT_BEGIN(out, "idIndex", &id_index);
    BSON_APPEND_INT32(&id_index, "v", 2);
    BSON_APPEND_DOCUMENT_BEGIN(&id_index, "key", &key);
    BSON_APPEND_INT32(&key, "_id", 1);
    bson_append_document_end(&id_index, &key);
    BSON_APPEND_UTF8(&id_index, "name", "_id_");
    bson_append_document_end(out, &id_index);
}

MS_HANDLER(list_collections)
{
    static const char *const allowed[] = {"filter", "cursor", "nameOnly", "authorizedCollections",
                                          "includePendingDrops", NULL};
    ms_matcher_t *m;
    int64_t batch_size;
    ms_docvec_t results;
    if (!ms_check_fields(c, allowed, error) || !ms_admin_cursor_batch_size(c, &batch_size, error) ||
        !filter_matcher(c, &m, error)) {
        return false;
    }
    bool name_only = flag(c->cmd, "nameOnly");
    ms_docvec_init(&results);
    for (ms_db_t *d = ms_store_dbs(); d; d = d->next) {
        if (strcmp(d->name, c->db) != 0) {
            continue;
        }
        for (ms_coll_t *coll = d->colls; coll; coll = coll->next) {
            bson_t *info = bson_new();
            collection_info(coll, name_only, info);
            if (!m || ms_matcher_matches(m, info, &c->lang)) {
                ms_docvec_push_owned(&results, info);
            } else {
                bson_destroy(info);
            }
        }
    }
    char *ns = bson_strdup_printf("%s.$cmd.listCollections", c->db);
    ms_cursor_reply(c, reply, ns, &results, batch_size);
    bson_free(ns);
    ms_docvec_destroy(&results);
    ms_matcher_destroy(m);
    return true;
}

MS_HANDLER(drop)
{
    ms_wctx_t w;
    const char *name = ms_admin_coll_name(c, error);
    if (!name || !ms_check_fields(c, NULL, error)) {
        return false;
    }
    ms_coll_t *coll = ms_store_coll(c->db, name);
    if (!coll) {
        return ms_set_error(error, MS_ERR_NAMESPACE_NOT_FOUND, "ns not found");
    }
    BSON_APPEND_INT32(reply, "nIndexesWas", (int32_t)coll->nindexes);
    BSON_APPEND_UTF8(reply, "ns", coll->ns);
    ms_wctx_init(&w, NULL);
    w.db = c->db;
    ms_txn_before_live_write(c->db, name, NULL);
    ms_store_drop_coll(coll);
    ms_wctx_log(&w, MS_OP_DROP, name, NULL);
    bool ok = ms_wctx_commit(&w, error);
    ms_wctx_destroy(&w);
    return ok;
}

MS_HANDLER(drop_database)
{
    ms_wctx_t w;
    ms_db_t *d;
    if (!ms_check_fields(c, NULL, error)) {
        return false;
    }
    ms_wctx_init(&w, NULL);
    w.db = c->db;
    for (d = ms_store_dbs(); d && strcmp(d->name, c->db) != 0; d = d->next) {
    }
    if (d) {
        ms_txn_before_live_write(c->db, NULL, NULL);
        for (ms_coll_t *coll = d->colls; coll; coll = coll->next) {
            ms_wctx_log(&w, MS_OP_DROP, coll->name, NULL);
        }
        ms_store_drop_db(c->db);
        ms_wctx_log(&w, MS_OP_DROP_DATABASE, NULL, NULL);
    }
    BSON_APPEND_UTF8(reply, "dropped", c->db);
    bool ok = ms_wctx_commit(&w, error);
    ms_wctx_destroy(&w);
    return ok;
}

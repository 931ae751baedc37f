/*
 * Change streams as mongod 6.0 has them, through libmongoc: event fields, fullDocument modes,
 * resumeAfter / startAfter / startAtOperationTime, later stages, getMore waiting, batches and
 * postBatchResumeToken, transactions, error codes. Runs unchanged against a real replica set.
 */
#include "cf_util.h"

#include <pthread.h>
#include <string.h>

static void
cs_suite_init(void)
{
    mongoc_init();
}

TestSuite(changestream, .init = cs_suite_init, .timeout = 60);

/* JSON with single quotes for readability; asserts it parses. Caller destroys. */
static bson_t *
cs_json(const char *json)
{
    char *s = bson_strdup(json);
    for (char *p = s; *p; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    bson_error_t error;
    bson_t *b = bson_new_from_json((const uint8_t *)s, -1, &error);
    cr_assert(b != NULL, "bad JSON %s: %s", s, error.message);
    bson_free(s);
    return b;
}

typedef struct {
    mongoc_client_t *client;
    char *dbname;
    mongoc_database_t *db;
    mongoc_collection_t *coll;
} cs_fixture_t;

static void
cs_setup(cs_fixture_t *f)
{
    f->client = mtest_client_new("changestream-tests");
    /* Majority writes: a real replica set reports only majority-committed writes. */
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_client_set_write_concern(f->client, wc);
    mongoc_write_concern_destroy(wc);
    f->dbname = mtest_db_name("cs");
    f->db = mongoc_client_get_database(f->client, f->dbname);
    f->coll = mongoc_client_get_collection(f->client, f->dbname, "events");
    /* Create the collection first: a stream on a missing collection works, but be explicit. */
    bson_error_t error;
    mongoc_collection_t *c = mongoc_database_create_collection(f->db, "events", NULL, &error);
    cr_assert(c != NULL, "create: %s", error.message);
    mongoc_collection_destroy(c);
}

static void
cs_teardown(cs_fixture_t *f)
{
    mtest_db_drop(f->client, f->dbname);
    mongoc_collection_destroy(f->coll);
    mongoc_database_destroy(f->db);
    bson_free(f->dbname);
    mongoc_client_destroy(f->client);
}

static mongoc_change_stream_t *
cs_watch(mongoc_collection_t *coll, const char *pipeline_json, const char *opts_json)
{
    bson_t *pipeline = cs_json(pipeline_json ? pipeline_json : "{'pipeline': []}");
    bson_t *opts = cs_json(opts_json ? opts_json : "{}");
    if (!bson_has_field(opts, "maxAwaitTimeMS")) {
        BSON_APPEND_INT64(opts, "maxAwaitTimeMS", 300);
    }
    mongoc_change_stream_t *cs = mongoc_collection_watch(coll, pipeline, opts);
    bson_destroy(pipeline);
    bson_destroy(opts);
    return cs;
}

static void
cs_sub(const bson_t *doc, const char *path, bson_t *out)
{
    bson_iter_t it;
    bson_iter_t found;
    uint32_t len;
    const uint8_t *data;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &found) &&
                  (BSON_ITER_HOLDS_DOCUMENT(&found) || BSON_ITER_HOLDS_ARRAY(&found)),
              "no document at %s", path);
    if (BSON_ITER_HOLDS_DOCUMENT(&found)) {
        bson_iter_document(&found, &len, &data);
    } else {
        bson_iter_array(&found, &len, &data);
    }
    cr_assert(bson_init_static(out, data, len));
}

/* Asserts doc[path] equals the document given as JSON. */
static void
cs_assert_doc(const bson_t *doc, const char *path, const char *json)
{
    bson_t sub;
    bson_t *want = cs_json(json);
    cs_sub(doc, path, &sub);
    char *got = bson_as_canonical_extended_json(&sub, NULL);
    char *exp = bson_as_canonical_extended_json(want, NULL);
    cr_assert_str_eq(got, exp, "%s: got %s, want %s", path, got, exp);
    bson_free(got);
    bson_free(exp);
    bson_destroy(want);
}

static void
cs_insert(mongoc_collection_t *coll, const char *json)
{
    bson_error_t error;
    bson_t *doc = cs_json(json);
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "insert: %s",
              error.message);
    bson_destroy(doc);
}

static void
cs_assert_common(const bson_t *ev, const char *op_type, const char *db, const char *coll)
{
    bson_iter_t it;
    cr_assert_str_eq(cf_str_at(ev, "operationType"), op_type);
    cr_assert(cf_str_at(ev, "_id._data") != NULL, "resume token {_data: <string>}");
    cr_assert(bson_iter_init_find(&it, ev, "clusterTime") && BSON_ITER_HOLDS_TIMESTAMP(&it));
    cr_assert(bson_iter_init_find(&it, ev, "wallTime") && BSON_ITER_HOLDS_DATE_TIME(&it));
    if (db) {
        cr_assert_str_eq(cf_str_at(ev, "ns.db"), db);
    }
    if (coll) {
        cr_assert_str_eq(cf_str_at(ev, "ns.coll"), coll);
    } else if (db) {
        cr_assert(!cf_has_at(ev, "ns.coll"));
    }
}

Test(changestream, insert_event_fields)
{
    cs_fixture_t f;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    cf_assert_stream_ok(cs);
    cs_insert(f.coll, "{'_id': 1, 'a': 'x'}");
    bson_t *ev = cf_next_event(cs);
    cs_assert_common(ev, "insert", f.dbname, "events");
    cs_assert_doc(ev, "documentKey", "{'_id': 1}");
    cs_assert_doc(ev, "fullDocument", "{'_id': 1, 'a': 'x'}");
    cr_assert(!cf_has_at(ev, "updateDescription"));
    bson_destroy(ev);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, update_replace_delete_events)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    cs_insert(f.coll, "{'_id': 1, 'a': 1, 'b': 1}");
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    bson_t *sel = cs_json("{'_id': 1}");
    bson_t *upd = cs_json("{'$set': {'a': 2}, '$unset': {'b': ''}}");
    bson_t *repl = cs_json("{'c': 3}");
    cr_assert(mongoc_collection_update_one(f.coll, sel, upd, NULL, NULL, &error), "%s",
              error.message);
    cr_assert(mongoc_collection_replace_one(f.coll, sel, repl, NULL, NULL, &error), "%s",
              error.message);
    cr_assert(mongoc_collection_delete_one(f.coll, sel, NULL, NULL, &error), "%s", error.message);

    bson_t *ev = cf_next_event(cs);
    cs_assert_common(ev, "update", f.dbname, "events");
    cs_assert_doc(ev, "documentKey", "{'_id': 1}");
    cs_assert_doc(ev, "updateDescription.updatedFields", "{'a': 2}");
    cs_assert_doc(ev, "updateDescription.removedFields", "{'0': 'b'}");
    cs_assert_doc(ev, "updateDescription.truncatedArrays", "{}");
    cr_assert(!cf_has_at(ev, "fullDocument"), "no fullDocument on updates by default");
    bson_destroy(ev);

    ev = cf_next_event(cs);
    cs_assert_common(ev, "replace", f.dbname, "events");
    cs_assert_doc(ev, "documentKey", "{'_id': 1}");
    cs_assert_doc(ev, "fullDocument", "{'_id': 1, 'c': 3}");
    bson_destroy(ev);

    ev = cf_next_event(cs);
    cs_assert_common(ev, "delete", f.dbname, "events");
    cs_assert_doc(ev, "documentKey", "{'_id': 1}");
    cr_assert(!cf_has_at(ev, "fullDocument"));
    bson_destroy(ev);

    bson_destroy(sel);
    bson_destroy(upd);
    bson_destroy(repl);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, full_document_update_lookup)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    cs_insert(f.coll, "{'_id': 7, 'n': 1}");
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, "{'fullDocument': 'updateLookup'}");
    bson_t *sel = cs_json("{'_id': 7}");
    bson_t *upd = cs_json("{'$inc': {'n': 1}}");
    cr_assert(mongoc_collection_update_one(f.coll, sel, upd, NULL, NULL, &error), "%s",
              error.message);
    bson_t *ev = cf_next_event(cs);
    cs_assert_common(ev, "update", f.dbname, "events");
    cs_assert_doc(ev, "fullDocument", "{'_id': 7, 'n': 2}");
    cs_assert_doc(ev, "updateDescription.updatedFields", "{'n': 2}");
    bson_destroy(ev);
    bson_destroy(sel);
    bson_destroy(upd);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, update_lookup_of_a_deleted_document_is_null)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    cs_insert(f.coll, "{'_id': 8, 'n': 1}");
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, "{'fullDocument': 'updateLookup'}");
    bson_t *sel = cs_json("{'_id': 8}");
    bson_t *upd = cs_json("{'$inc': {'n': 1}}");
    cr_assert(mongoc_collection_update_one(f.coll, sel, upd, NULL, NULL, &error), "%s",
              error.message);
    cr_assert(mongoc_collection_delete_one(f.coll, sel, NULL, NULL, &error), "%s", error.message);
    bson_t *ev = cf_next_event(cs);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, ev, "fullDocument") && BSON_ITER_HOLDS_NULL(&it),
              "the document is gone by lookup time: fullDocument null");
    bson_destroy(ev);
    bson_destroy(sel);
    bson_destroy(upd);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, drop_then_invalidate_ends_the_stream)
{
    cs_fixture_t f;
    bson_error_t error;
    const bson_t *doc;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    cs_insert(f.coll, "{'_id': 1}");
    cr_assert(mongoc_collection_drop(f.coll, &error), "%s", error.message);
    bson_t *ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "insert");
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cs_assert_common(ev, "drop", f.dbname, "events");
    cr_assert(!cf_has_at(ev, "documentKey"));
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "invalidate");
    cr_assert(!cf_has_at(ev, "ns"));
    bson_destroy(ev);
    /* The cursor is closed: no more events, and no error. */
    cr_assert(!mongoc_change_stream_next(cs, &doc));
    cf_assert_stream_ok(cs);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, database_stream_sees_all_collections_and_drop_database)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    bson_t *pipeline = cs_json("{'pipeline': []}");
    bson_t *opts = cs_json("{'maxAwaitTimeMS': 300}");
    mongoc_change_stream_t *cs = mongoc_database_watch(f.db, pipeline, opts);
    mongoc_collection_t *other = mongoc_database_get_collection(f.db, "other");
    cs_insert(f.coll, "{'_id': 1}");
    cs_insert(other, "{'_id': 2}");
    bson_t *ev = cf_next_event(cs);
    cs_assert_common(ev, "insert", f.dbname, "events");
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cs_assert_common(ev, "insert", f.dbname, "other");
    bson_destroy(ev);
    cr_assert(mongoc_database_drop(f.db, &error), "%s", error.message);
    /* mongod drops each collection (a drop event each), then the database. */
    int drops = 0;
    for (;;) {
        ev = cf_next_event(cs);
        if (strcmp(cf_str_at(ev, "operationType"), "drop") != 0) {
            break;
        }
        drops++;
        bson_destroy(ev);
    }
    cr_assert_eq(drops, 2);
    cs_assert_common(ev, "dropDatabase", f.dbname, NULL);
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "invalidate");
    bson_destroy(ev);
    mongoc_collection_destroy(other);
    mongoc_change_stream_destroy(cs);
    bson_destroy(pipeline);
    bson_destroy(opts);
    cs_teardown(&f);
}

Test(changestream, resume_after_a_token_misses_nothing)
{
    cs_fixture_t f;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    cs_insert(f.coll, "{'_id': 1}");
    bson_t *ev = cf_next_event(cs);
    bson_t token;
    cs_sub(ev, "_id", &token);
    bson_t *opts = bson_new();
    BSON_APPEND_DOCUMENT(opts, "resumeAfter", &token);
    BSON_APPEND_INT64(opts, "maxAwaitTimeMS", 300);
    mongoc_change_stream_destroy(cs);
    cs_insert(f.coll, "{'_id': 2}");
    cs_insert(f.coll, "{'_id': 3}");

    bson_t *pipeline = cs_json("{'pipeline': []}");
    cs = mongoc_collection_watch(f.coll, pipeline, opts);
    cf_assert_stream_ok(cs);
    for (int id = 2; id <= 3; id++) {
        bson_t *next = cf_next_event(cs);
        cr_assert_eq(cf_int_at(next, "documentKey._id"), id);
        bson_destroy(next);
    }
    bson_destroy(ev);
    bson_destroy(opts);
    bson_destroy(pipeline);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, start_after_an_invalidate)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    cr_assert(mongoc_collection_drop(f.coll, &error), "%s", error.message);
    bson_t *ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "drop");
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "invalidate");
    mongoc_change_stream_destroy(cs);
    bson_t token;
    cs_sub(ev, "_id", &token);

    /* resumeAfter an invalidate is refused (InvalidResumeToken); startAfter works. */
    bson_t *opts = bson_new();
    BSON_APPEND_DOCUMENT(opts, "resumeAfter", &token);
    bson_t *pipeline = cs_json("{'pipeline': []}");
    cs = mongoc_collection_watch(f.coll, pipeline, opts);
    const bson_t *reply;
    cr_assert(mongoc_change_stream_error_document(cs, &error, &reply));
    cr_assert_eq(error.code, 260, "code %u: %s", error.code, error.message);
    mongoc_change_stream_destroy(cs);
    bson_destroy(opts);

    opts = bson_new();
    BSON_APPEND_DOCUMENT(opts, "startAfter", &token);
    BSON_APPEND_INT64(opts, "maxAwaitTimeMS", 300);
    cs = mongoc_collection_watch(f.coll, pipeline, opts);
    cf_assert_stream_ok(cs);
    cs_insert(f.coll, "{'_id': 'again'}");
    bson_t *next = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(next, "operationType"), "insert");
    cr_assert_str_eq(cf_str_at(next, "documentKey._id"), "again");
    bson_destroy(next);
    bson_destroy(ev);
    bson_destroy(opts);
    bson_destroy(pipeline);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

/* Inserts through a plain command to read the reply's operationTime. */
static void
cs_insert_op_time(cs_fixture_t *f, int id, uint32_t *t, uint32_t *i)
{
    bson_error_t error;
    bson_t reply;
    char *cmd = bson_strdup_printf("{'insert': 'events', 'documents': [{'_id': %d}]}", id);
    bson_t *b = cs_json(cmd);
    cr_assert(mongoc_database_write_command_with_opts(f->db, b, NULL, &reply, &error), "%s",
              error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &reply, "operationTime") && BSON_ITER_HOLDS_TIMESTAMP(&it));
    bson_iter_timestamp(&it, t, i);
    bson_destroy(&reply);
    bson_destroy(b);
    bson_free(cmd);
}

Test(changestream, start_at_operation_time)
{
    cs_fixture_t f;
    uint32_t t;
    uint32_t i;
    cs_setup(&f);
    cs_insert_op_time(&f, 1, &t, &i);
    cs_insert(f.coll, "{'_id': 2}");
    bson_t *opts = bson_new();
    BSON_APPEND_TIMESTAMP(opts, "startAtOperationTime", t, i);
    BSON_APPEND_INT64(opts, "maxAwaitTimeMS", 300);
    bson_t *pipeline = cs_json("{'pipeline': []}");
    mongoc_change_stream_t *cs = mongoc_collection_watch(f.coll, pipeline, opts);
    cf_assert_stream_ok(cs);
    /* The stream starts at the insert's own cluster time, so it sees that insert too. */
    for (int id = 1; id <= 2; id++) {
        bson_t *ev = cf_next_event(cs);
        cr_assert_eq(cf_int_at(ev, "documentKey._id"), id);
        bson_iter_t it;
        uint32_t et;
        uint32_t ei;
        cr_assert(bson_iter_init_find(&it, ev, "clusterTime"));
        bson_iter_timestamp(&it, &et, &ei);
        cr_assert(et > t || (et == t && ei >= i), "events at or after startAtOperationTime");
        bson_destroy(ev);
    }
    bson_destroy(opts);
    bson_destroy(pipeline);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, match_and_project_after_change_stream)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(
        f.coll,
        "{'pipeline': [{'$match': {'operationType': 'insert', 'fullDocument.kind': 'wanted'}},"
        " {'$project': {'fullDocument.secret': 0}}]}",
        NULL);
    cf_assert_stream_ok(cs);
    cs_insert(f.coll, "{'_id': 1, 'kind': 'other'}");
    cs_insert(f.coll, "{'_id': 2, 'kind': 'wanted', 'secret': 's'}");
    bson_t *sel = cs_json("{'_id': 2}");
    cr_assert(mongoc_collection_delete_one(f.coll, sel, NULL, NULL, &error), "%s", error.message);
    cs_insert(f.coll, "{'_id': 3, 'kind': 'wanted'}");
    bson_t *ev = cf_next_event(cs);
    cs_assert_doc(ev, "fullDocument", "{'_id': 2, 'kind': 'wanted'}");
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cr_assert_eq(cf_int_at(ev, "documentKey._id"), 3);
    bson_destroy(ev);
    bson_destroy(sel);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

/* ---- getMore waits ------------------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool getmore_started;
    int64_t returned_at;
    bson_t *event;
    mongoc_change_stream_t *cs;
} cs_waiter_t;

static void
cs_on_started(const mongoc_apm_command_started_t *event)
{
    cs_waiter_t *w = mongoc_apm_command_started_get_context(event);
    if (strcmp(mongoc_apm_command_started_get_command_name(event), "getMore") == 0) {
        pthread_mutex_lock(&w->mu);
        w->getmore_started = true;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
}

static void *
cs_waiter_main(void *arg)
{
    cs_waiter_t *w = arg;
    const bson_t *doc;
    if (mongoc_change_stream_next(w->cs, &doc)) {
        w->event = bson_copy(doc);
    }
    pthread_mutex_lock(&w->mu);
    w->returned_at = mtest_now_ms();
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

Test(changestream, get_more_wakes_on_insert_before_max_time)
{
    cs_fixture_t f;
    cs_waiter_t w = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    cs_setup(&f);
    mongoc_client_t *watcher = mtest_client_new("changestream-waiter");
    mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
    mongoc_apm_set_command_started_cb(cbs, cs_on_started);
    cr_assert(mongoc_client_set_apm_callbacks(watcher, cbs, &w));
    mongoc_collection_t *coll = mongoc_client_get_collection(watcher, f.dbname, "events");
    w.cs = cs_watch(coll, NULL, "{'maxAwaitTimeMS': 8000}");
    cf_assert_stream_ok(w.cs);

    pthread_t thread;
    cr_assert(pthread_create(&thread, NULL, cs_waiter_main, &w) == 0);
    /* Wait (on a condition) until the getMore is on its way, then write. */
    pthread_mutex_lock(&w.mu);
    while (!w.getmore_started) {
        pthread_cond_wait(&w.cv, &w.mu);
    }
    pthread_mutex_unlock(&w.mu);
    int64_t inserted_at = mtest_now_ms();
    cs_insert(f.coll, "{'_id': 'wake'}");
    pthread_join(thread, NULL);

    cr_assert(w.event != NULL, "the waiting getMore returned the insert");
    cr_assert_str_eq(cf_str_at(w.event, "documentKey._id"), "wake");
    int64_t waited = w.returned_at - inserted_at;
    cr_assert_lt(waited, 4000, "woken %lld ms after the insert (maxTimeMS 8000)",
                 (long long)waited);
    bson_destroy(w.event);
    mongoc_change_stream_destroy(w.cs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(watcher);
    mongoc_apm_callbacks_destroy(cbs);
    cs_teardown(&f);
}

/* ---- raw commands: batches and postBatchResumeToken ------------------------------------- */

static int64_t
cs_cursor_id(const bson_t *reply)
{
    return cf_int_at(reply, "cursor.id");
}

static int
cs_batch_len(const bson_t *reply, const char *key)
{
    bson_t batch;
    char *path = bson_strdup_printf("cursor.%s", key);
    cs_sub(reply, path, &batch);
    bson_free(path);
    return (int)bson_count_keys(&batch);
}

static void
cs_kill_cursor(cs_fixture_t *f, int64_t id)
{
    bson_t *cmd = bson_new();
    BSON_APPEND_UTF8(cmd, "killCursors", "events");
    bson_t ids;
    BSON_APPEND_ARRAY_BEGIN(cmd, "cursors", &ids);
    BSON_APPEND_INT64(&ids, "0", id);
    bson_append_array_end(cmd, &ids);
    bson_error_t error;
    cr_assert(mongoc_database_command_simple(f->db, cmd, NULL, NULL, &error), "%s", error.message);
    bson_destroy(cmd);
}

static void
cs_get_more(cs_fixture_t *f, int64_t id, int batch_size, int max_time_ms, bson_t *reply)
{
    bson_t *cmd = bson_new();
    bson_error_t error;
    BSON_APPEND_INT64(cmd, "getMore", id);
    BSON_APPEND_UTF8(cmd, "collection", "events");
    if (batch_size > 0) {
        BSON_APPEND_INT32(cmd, "batchSize", batch_size);
    }
    BSON_APPEND_INT32(cmd, "maxTimeMS", max_time_ms);
    cr_assert(mongoc_database_command_simple(f->db, cmd, NULL, reply, &error), "getMore: %s",
              error.message);
    bson_destroy(cmd);
}

Test(changestream, batches_carry_post_batch_resume_tokens)
{
    cs_fixture_t f;
    bson_error_t error;
    bson_t reply;
    uint32_t t;
    uint32_t i;
    cs_setup(&f);
    cs_insert_op_time(&f, 0, &t, &i);
    for (int id = 1; id < 5; id++) {
        char json[64];
        snprintf(json, sizeof json, "{'_id': %d}", id);
        cs_insert(f.coll, json);
    }
    bson_t *cmd = cs_json("{'aggregate': 'events', 'cursor': {'batchSize': 2}}");
    bson_t pipeline;
    bson_t stage;
    bson_t spec;
    BSON_APPEND_ARRAY_BEGIN(cmd, "pipeline", &pipeline);
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$changeStream", &spec);
    BSON_APPEND_TIMESTAMP(&spec, "startAtOperationTime", t, i);
    bson_append_document_end(&stage, &spec);
    bson_append_document_end(&pipeline, &stage);
    bson_append_array_end(cmd, &pipeline);
    cr_assert(mongoc_database_command_simple(f.db, cmd, NULL, &reply, &error), "aggregate: %s",
              error.message);
    cr_assert_eq(cs_batch_len(&reply, "firstBatch"), 2);
    cr_assert(cf_str_at(&reply, "cursor.postBatchResumeToken._data") != NULL);
    int64_t id = cs_cursor_id(&reply);
    cr_assert_neq(id, 0);
    bson_destroy(&reply);

    cs_get_more(&f, id, 2, 1000, &reply);
    cr_assert_eq(cs_batch_len(&reply, "nextBatch"), 2);
    /* A full batch: the token is the last event's. */
    cr_assert_str_eq(cf_str_at(&reply, "cursor.postBatchResumeToken._data"),
                     cf_str_at(&reply, "cursor.nextBatch.1._id._data"));
    bson_destroy(&reply);

    cs_get_more(&f, id, 2, 1000, &reply);
    cr_assert_eq(cs_batch_len(&reply, "nextBatch"), 1);
    bson_destroy(&reply);

    /* Nothing new: an empty batch after maxTimeMS, still with a token. */
    int64_t start = mtest_now_ms();
    cs_get_more(&f, id, 2, 300, &reply);
    int64_t took = mtest_now_ms() - start;
    cr_assert_eq(cs_batch_len(&reply, "nextBatch"), 0);
    cr_assert(cf_str_at(&reply, "cursor.postBatchResumeToken._data") != NULL);
    cr_assert_geq(took, 200, "getMore waited for maxTimeMS (%lld ms)", (long long)took);
    bson_destroy(&reply);

    cs_kill_cursor(&f, id);
    bson_destroy(cmd);
    cs_teardown(&f);
}

/* ---- transactions ------------------------------------------------------------------------- */

static void
cs_txn_insert(mongoc_client_session_t *s, mongoc_collection_t *coll, const char *json)
{
    bson_error_t error;
    bson_t opts = BSON_INITIALIZER;
    cr_assert(mongoc_client_session_append(s, &opts, &error), "%s", error.message);
    bson_t *doc = cs_json(json);
    cr_assert(mongoc_collection_insert_one(coll, doc, &opts, NULL, &error), "txn insert: %s",
              error.message);
    bson_destroy(doc);
    bson_destroy(&opts);
}

Test(changestream, transaction_events_appear_at_commit_only)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    cf_assert_stream_ok(cs);
    mongoc_client_session_t *s = mongoc_client_start_session(f.client, NULL, &error);
    cr_assert(s != NULL, "%s", error.message);

    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    cs_txn_insert(s, f.coll, "{'_id': 1}");
    cs_txn_insert(s, f.coll, "{'_id': 2}");
    bson_t *early = cf_next_event_within(cs, 600);
    cr_assert(early == NULL, "no event before commit");
    cr_assert(mongoc_client_session_commit_transaction(s, NULL, &error), "%s", error.message);
    for (int id = 1; id <= 2; id++) {
        bson_t *ev = cf_next_event(cs);
        cs_assert_common(ev, "insert", f.dbname, "events");
        cr_assert_eq(cf_int_at(ev, "documentKey._id"), id);
        cr_assert(cf_has_at(ev, "lsid") && cf_has_at(ev, "txnNumber"), "transaction events: lsid");
        bson_destroy(ev);
    }

    /* An aborted transaction leaves no event: the next one seen is a later plain insert. */
    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    cs_txn_insert(s, f.coll, "{'_id': 3}");
    cr_assert(mongoc_client_session_abort_transaction(s, &error), "%s", error.message);
    cs_insert(f.coll, "{'_id': 4}");
    bson_t *ev = cf_next_event(cs);
    cr_assert_eq(cf_int_at(ev, "documentKey._id"), 4);
    cr_assert(!cf_has_at(ev, "lsid"));
    bson_destroy(ev);

    mongoc_client_session_destroy(s);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void
cs_assert_aggregate_fails(cs_fixture_t *f, const char *pipeline_json, uint32_t code)
{
    char *json =
        bson_strdup_printf("{'aggregate': 'events', 'cursor': {}, 'pipeline': %s}", pipeline_json);
    bson_t *cmd = cs_json(json);
    bson_error_t error;
    bson_t reply;
    bool ok = mongoc_database_command_simple(f->db, cmd, NULL, &reply, &error);
    cr_assert(!ok, "%s succeeded", json);
    cr_assert_eq(error.code, code, "%s: code %u (%s), want %u", json, error.code, error.message,
                 code);
    bson_destroy(&reply);
    bson_destroy(cmd);
    bson_free(json);
}

Test(changestream, invalid_requests_fail_as_mongod)
{
    cs_fixture_t f;
    cs_setup(&f);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'bogus': 1}}]", 40415);
    cs_assert_aggregate_fails(&f, "[{'$match': {}}, {'$changeStream': {}}]", 40602);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {}}, {'$group': {'_id': null}}]", 20);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'fullDocument': 'bogus'}}]", 2);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'resumeAfter': {'_data': 'zz'}}}]", 9);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'resumeAfter': {'_data': 5}}}]", 40647);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'resumeAfter': {'_data': ''}}}]", 40649);
    cs_teardown(&f);
}

/* ---- the driver resumes by itself after a network error --------------------------------- */

Test(changestream, driver_resumes_after_a_network_error)
{
    cs_fixture_t f;
    cs_setup(&f);
    mongoc_client_t *watcher = mtest_client_new("cs-resume");
    mongoc_collection_t *coll = mongoc_client_get_collection(watcher, f.dbname, "events");
    mongoc_change_stream_t *cs = cs_watch(coll, NULL, NULL);
    cf_assert_stream_ok(cs);
    cs_insert(f.coll, "{'_id': 'a'}");
    bson_t *ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "documentKey._id"), "a");
    bson_destroy(ev);

    mtest_fail_point(f.client, "{\"times\": 1}",
                     "{\"failCommands\": [\"getMore\"], \"closeConnection\": true, "
                     "\"appName\": \"cs-resume\"}");
    cs_insert(f.coll, "{'_id': 'b'}");
    ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "documentKey._id"), "b", "resumed without loss or repeat");
    bson_destroy(ev);
    mtest_fail_point(f.client, "\"off\"", NULL);

    mongoc_change_stream_destroy(cs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(watcher);
    cs_teardown(&f);
}

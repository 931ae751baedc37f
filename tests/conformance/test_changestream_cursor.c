/*
 * Change streams as mongod 6.0 has them, through libmongoc: the stream as a cursor. Where it
 * starts (resumeAfter, startAfter, startAtOperationTime), how a getMore waits, batches and
 * postBatchResumeToken on raw commands, and the driver resuming by itself after a network
 * error. The suite changestream (mongoc_init, 60 s timeout) is declared in test_changestream.c;
 * the fixture is in cf_util.h. Runs unchanged against a real replica set.
 */
#include "cf_util.h"

#include <pthread.h>
#include <string.h>

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

/*
 * Conformance: change stream getMore errors as mongod 6.0 reports them. A getMore that fails
 * once its cursor is checked out (failGetMoreAfterCursorCheckout, the fail point the drivers'
 * change stream tests use) kills the cursor, and a resumable error carries the
 * ResumableChangeStreamError label that drivers (4.4+) resume on; ChangeStreamFatalError (280)
 * and ChangeStreamHistoryLost (286) are not resumable. failCommand fires before the command
 * runs: the cursor lives on and no label is computed, except those failCommand's errorLabels
 * give. libmongoc's change stream resumes, or fails, accordingly. Runs unchanged against mongod
 * 6.0 started with enableTestCommands.
 */
#include "cf_util.h"

#include <string.h>
#include <unistd.h>

static mongoc_client_t *client;
static char *dbname;
static char appname[64]; /* this test's own: the fail points name it */
static int lock_fd = -1;

static void
set_fail_point(const char *name, const char *mode_json, const char *data_json)
{
    bson_error_t error;
    char *json =
        bson_strdup_printf("{\"configureFailPoint\": \"%s\", \"mode\": %s%s%s}", name, mode_json,
                           data_json ? ", \"data\": " : "", data_json ? data_json : "");
    cr_assert(mtest_command(client, "admin", json, NULL, &error), "%s: %s", json, error.message);
    bson_free(json);
}

/* A fail point is one per server: take turns with the other fail point suites (parallel jobs). */
static void
setup(void)
{
    mongoc_init();
    lock_fd = cf_fail_points_lock();
    dbname = mtest_db_name("cs_errors");
    snprintf(appname, sizeof appname, "%s", dbname);
    client = mtest_client_new(appname);
    bson_error_t error;
    cr_assert(mtest_command(client, dbname, "{\"create\": \"c\"}", NULL, &error), "%s",
              error.message);
}

static void
teardown(void)
{
    set_fail_point("failGetMoreAfterCursorCheckout", "\"off\"", NULL);
    cf_close(&client, &dbname);
    cf_fail_points_unlock(lock_fd);
}

/* Fail points name this test's client (appName): other tests' commands are never hit. */
TestSuite(changestream_errors, .init = setup, .fini = teardown, .timeout = 60);

/* Opens a change stream on dbname.c with a raw aggregate; returns its cursor id. */
static int64_t
open_stream(void)
{
    bson_t reply;
    bson_error_t error;
    bson_iter_t it;
    cr_assert(mtest_command(client, dbname,
                            "{\"aggregate\": \"c\", \"pipeline\": [{\"$changeStream\": {}}], "
                            "\"cursor\": {}}",
                            &reply, &error),
              "aggregate: %s", error.message);
    cr_assert(bson_iter_init(&it, &reply) && bson_iter_find_descendant(&it, "cursor.id", &it));
    int64_t id = bson_iter_as_int64(&it);
    cr_assert(id != 0, "the change stream has a cursor");
    bson_destroy(&reply);
    return id;
}

/* One getMore (short await); returns true on ok, else fills *code. reply always initialised. */
static bool
get_more(int64_t id, bson_t *reply, uint32_t *code)
{
    bson_error_t error;
    bson_t *cmd = BCON_NEW("getMore", BCON_INT64(id), "collection", BCON_UTF8("c"), "maxTimeMS",
                           BCON_INT64(50));
    bool ok = mongoc_client_command_simple(client, dbname, cmd, NULL, reply, &error);
    *code = ok ? 0 : error.code;
    bson_destroy(cmd);
    return ok;
}

static void
kill_cursor(int64_t id)
{
    bson_t *cmd = BCON_NEW("killCursors", BCON_UTF8("c"), "cursors", "[", BCON_INT64(id), "]");
    cr_assert(mongoc_client_command_simple(client, dbname, cmd, NULL, NULL, NULL));
    bson_destroy(cmd);
}

static void
assert_cursor_gone(int64_t id)
{
    bson_t reply;
    uint32_t code;
    cr_assert(!get_more(id, &reply, &code), "the failed getMore killed the cursor");
    cr_assert_eq(code, 43, "CursorNotFound, got %u", code);
    bson_destroy(&reply);
}

static void
fail_next_get_more(int code)
{
    char *data = bson_strdup_printf("{\"errorCode\": %d, \"appName\": \"%s\"}", code, appname);
    set_fail_point("failGetMoreAfterCursorCheckout", "{\"times\": 1}", data);
    bson_free(data);
}

Test(changestream_errors, resumable_error_is_labelled_and_kills_the_cursor)
{
    static const int resumable[] = {6, 91, 189, 262, 10107, 11602};
    for (size_t i = 0; i < sizeof resumable / sizeof resumable[0]; i++) {
        int64_t id = open_stream();
        bson_t reply;
        uint32_t code;
        fail_next_get_more(resumable[i]);
        cr_assert(!get_more(id, &reply, &code), "the fail point fires");
        cr_assert_eq(code, (uint32_t)resumable[i]);
        cr_assert(mongoc_error_has_label(&reply, "ResumableChangeStreamError"),
                  "code %d is resumable", resumable[i]);
        bson_destroy(&reply);
        assert_cursor_gone(id);
    }
}

Test(changestream_errors, fatal_and_history_lost_are_not_resumable)
{
    static const int fatal[] = {280, 286};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        int64_t id = open_stream();
        bson_t reply;
        uint32_t code;
        fail_next_get_more(fatal[i]);
        cr_assert(!get_more(id, &reply, &code));
        cr_assert_eq(code, (uint32_t)fatal[i]);
        cr_assert(!mongoc_error_has_label(&reply, "ResumableChangeStreamError"),
                  "code %d is not resumable", fatal[i]);
        cr_assert(mongoc_error_has_label(&reply, "NonResumableChangeStreamError"));
        bson_destroy(&reply);
        assert_cursor_gone(id);
    }
}

Test(changestream_errors, an_error_that_is_not_resumable_has_no_label)
{
    int64_t id = open_stream();
    bson_t reply;
    uint32_t code;
    fail_next_get_more(50); /* MaxTimeMSExpired: not in any resumable category */
    cr_assert(!get_more(id, &reply, &code));
    cr_assert_eq(code, 50);
    cr_assert(!mongoc_error_has_label(&reply, "ResumableChangeStreamError"));
    bson_destroy(&reply);
    assert_cursor_gone(id);
}

Test(changestream_errors, fail_command_leaves_the_cursor_and_labels_only_as_told)
{
    int64_t id = open_stream();
    bson_t reply;
    uint32_t code;
    char *data = bson_strdup_printf(
        "{\"failCommands\": [\"getMore\"], \"errorCode\": 6, \"appName\": \"%s\"}", appname);
    mtest_fail_point(client, "{\"times\": 1}", data);
    bson_free(data);
    cr_assert(!get_more(id, &reply, &code));
    cr_assert_eq(code, 6);
    cr_assert(!mongoc_error_has_label(&reply, "ResumableChangeStreamError"),
              "failCommand stops a getMore before its cursor is known: no label");
    bson_destroy(&reply);

    data = bson_strdup_printf("{\"failCommands\": [\"getMore\"], \"errorCode\": 50, "
                              "\"errorLabels\": [\"ResumableChangeStreamError\"], \"appName\": "
                              "\"%s\"}",
                              appname);
    mtest_fail_point(client, "{\"times\": 1}", data);
    bson_free(data);
    cr_assert(!get_more(id, &reply, &code));
    cr_assert_eq(code, 50);
    cr_assert(mongoc_error_has_label(&reply, "ResumableChangeStreamError"), "as errorLabels say");
    bson_destroy(&reply);

    cr_assert(get_more(id, &reply, &code), "the cursor is still there (code %u)", code);
    bson_destroy(&reply);
    kill_cursor(id);
}

/* libmongoc resumes on the label; the event inserted meanwhile still arrives. */
Test(changestream_errors, libmongoc_resumes_after_a_resumable_error)
{
    /* A client of its own: the counter must not outlive the client it watches. */
    mongoc_client_t *watcher = mtest_client_new(appname);
    mtest_counter_t *counter = mtest_counter_new();
    mtest_counter_attach_client(counter, watcher);
    mongoc_collection_t *coll = mongoc_client_get_collection(watcher, dbname, "c");
    bson_t pipeline = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("maxAwaitTimeMS", BCON_INT64(100));
    mongoc_change_stream_t *cs = mongoc_collection_watch(coll, &pipeline, opts);
    fail_next_get_more(6);
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1));
    bson_error_t error;
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "%s", error.message);
    const bson_t *ev = NULL;
    int64_t deadline = mtest_now_ms() + 10000;
    while (!mongoc_change_stream_next(cs, &ev) && mtest_now_ms() < deadline) {
        cr_assert(!mongoc_change_stream_error_document(cs, &error, NULL), "stream: %u %s",
                  error.code, error.message);
    }
    cr_assert(ev != NULL, "the insert arrives after the resume");
    cr_assert_geq(mtest_counter_get(counter, "aggregate"), 2, "the stream was resumed");
    mongoc_change_stream_destroy(cs);
    bson_destroy(doc);
    bson_destroy(opts);
    bson_destroy(&pipeline);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(watcher);
    mtest_counter_destroy(counter);
}

/* ... and reports ChangeStreamHistoryLost instead of resuming. */
Test(changestream_errors, libmongoc_does_not_resume_history_lost)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    bson_t pipeline = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("maxAwaitTimeMS", BCON_INT64(100));
    mongoc_change_stream_t *cs = mongoc_collection_watch(coll, &pipeline, opts);
    fail_next_get_more(286);
    const bson_t *ev = NULL;
    bson_error_t error;
    cr_assert(!mongoc_change_stream_next(cs, &ev));
    cr_assert(mongoc_change_stream_error_document(cs, &error, NULL), "the error surfaces");
    cr_assert_eq(error.code, 286, "got %u: %s", error.code, error.message);
    mongoc_change_stream_destroy(cs);
    bson_destroy(opts);
    bson_destroy(&pipeline);
    mongoc_collection_destroy(coll);
}

/*
 * Conformance: hello with fields it does not know, killSessions, killAllSessions and
 * getParameter, as mongod 6.0:
 * - hello (src/mongo/db/repl/hello.idl is not strict): unknown fields are ignored, as the
 *   Node.js driver 7's `backpressure`; isMaster too.
 * - killSessions (manual: reference/command/killSessions): the listed sessions' operations and
 *   cursors are killed and their transactions aborted; the next statement of the transaction
 *   is NoSuchTransaction 251 and a getMore of the cursor CursorNotFound 43.
 * - killAllSessions (reference/command/killAllSessions): [] kills every session; a list of
 *   users kills theirs (no authentication here: no session has one).
 * - getParameter (src/mongo/db/commands/parameters.cpp): admin only (Unauthorized 13); an
 *   unknown parameter is InvalidOptions 72 "no option found to get".
 * killAllSessions: [] aborts every open transaction, so it runs on a private server only (on the
 * shared one it would abort parallel tests' transactions; skipped where none can be spawned).
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "sessions_admin");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(sessions_admin, .init = setup, .fini = teardown);

Test(sessions_admin, hello_and_is_master_ignore_unknown_fields)
{
    cf_run_ok(client, "admin", "{\"hello\": 1, \"backpressure\": true, \"someFutureField\": 1}");
    cf_run_ok(client, "admin", "{\"isMaster\": 1, \"backpressure\": true}");
    cf_run_ok(client, "admin", "{\"ismaster\": 1, \"backpressure\": true}");
}

/* A transaction holding one insert; returns the session (caller destroys). */
static mongoc_client_session_t *
open_transaction(mongoc_collection_t *coll)
{
    bson_error_t error;
    mongoc_client_session_t *s = mongoc_client_start_session(client, NULL, &error);
    cr_assert(s, "%s", error.message);
    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    bson_t opts = BSON_INITIALIZER;
    cr_assert(mongoc_client_session_append(s, &opts, &error), "%s", error.message);
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1));
    cr_assert(mongoc_collection_insert_one(coll, doc, &opts, NULL, &error), "%s", error.message);
    bson_destroy(doc);
    bson_destroy(&opts);
    return s;
}

/* {killSessions: [{id: <the session's id>}]} */
static void
kill_session(mongoc_client_session_t *s)
{
    const bson_t *lsid = mongoc_client_session_get_lsid(s);
    bson_t cmd = BSON_INITIALIZER, arr;
    bson_error_t error;
    BSON_APPEND_ARRAY_BEGIN(&cmd, "killSessions", &arr);
    BSON_APPEND_DOCUMENT(&arr, "0", lsid);
    bson_append_array_end(&cmd, &arr);
    cr_assert(mongoc_client_command_simple(client, "admin", &cmd, NULL, NULL, &error), "%s",
              error.message);
    bson_destroy(&cmd);
}

Test(sessions_admin, kill_sessions_aborts_the_transaction)
{
    cf_run_ok(client, dbname, "{\"create\": \"c\"}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    mongoc_client_session_t *s = open_transaction(coll);
    kill_session(s);
    bson_t reply;
    bson_error_t error;
    cr_assert_not(mongoc_client_session_commit_transaction(s, &reply, &error));
    cr_assert_eq(error.code, 251, "%d %s", error.code, error.message);
    bson_destroy(&reply);
    bson_t empty = BSON_INITIALIZER;
    cr_assert_eq(mongoc_collection_count_documents(coll, &empty, NULL, NULL, NULL, &error), 0);
    mongoc_client_session_destroy(s);
    mongoc_collection_destroy(coll);
}

Test(sessions_admin, kill_sessions_kills_the_session_cursors)
{
    cf_run_ok(client, dbname, "{\"insert\": \"c\", \"documents\": [{\"_id\": 1}, {\"_id\": 2}]}");
    bson_error_t error;
    mongoc_client_session_t *s = mongoc_client_start_session(client, NULL, &error);
    cr_assert(s, "%s", error.message);
    bson_t opts = BSON_INITIALIZER, reply;
    cr_assert(mongoc_client_session_append(s, &opts, &error), "%s", error.message);
    bson_t *find = BCON_NEW("find", "c", "batchSize", BCON_INT32(1));
    cr_assert(mongoc_client_command_with_opts(client, dbname, find, NULL, &opts, &reply, &error),
              "%s", error.message);
    int64_t id = cf_int_at(&reply, "cursor.id");
    cr_assert_neq(id, 0);
    bson_destroy(&reply);
    kill_session(s);
    bson_t *more = BCON_NEW("getMore", BCON_INT64(id), "collection", "c");
    cr_assert_not(
        mongoc_client_command_with_opts(client, dbname, more, NULL, &opts, &reply, &error));
    cr_assert_eq(error.code, 43, "%d %s", error.code, error.message);
    bson_destroy(&reply);
    bson_destroy(more);
    bson_destroy(find);
    bson_destroy(&opts);
    mongoc_client_session_destroy(s);
}

Test(sessions_admin, kill_all_sessions_of_a_user_leaves_unauthenticated_sessions)
{
    cf_run_ok(client, dbname, "{\"create\": \"c\"}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    mongoc_client_session_t *s = open_transaction(coll);
    cf_run_ok(client, "admin",
              "{\"killAllSessions\": [{\"user\": \"nobody\", \"db\": \"admin\"}]}");
    bson_t reply;
    bson_error_t error;
    cr_assert(mongoc_client_session_commit_transaction(s, &reply, &error), "%s", error.message);
    bson_destroy(&reply);
    mongoc_client_session_destroy(s);
    mongoc_collection_destroy(coll);
    cr_assert_eq(cf_run_fail(client, "admin", "{\"killAllSessions\": 1}", NULL, NULL), 14);
}

/* {killAllSessions: []} kills every session (manual: reference/command/killAllSessions, "To
 * kill all sessions, specify an empty array"): the open transactions of two sessions are
 * aborted, their commits fail with NoSuchTransaction 251, nothing they wrote is left. */
Test(sessions_admin, kill_all_sessions_with_an_empty_list_aborts_every_transaction)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    mtest_server_t srv;
    cr_assert(mtest_server_start(&srv, NULL, 0), "start");
    mongoc_client_t *shared = client;
    client = mtest_client_for(srv.uri, "kill_all_sessions");
    cf_run_ok(client, "ks", "{\"create\": \"c\"}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "ks", "c");
    mongoc_client_session_t *a = open_transaction(coll);
    mongoc_client_session_t *b = mongoc_client_start_session(client, NULL, NULL);
    bson_error_t error;
    cr_assert(mongoc_client_session_start_transaction(b, NULL, &error), "%s", error.message);
    bson_t opts = BSON_INITIALIZER, reply;
    cr_assert(mongoc_client_session_append(b, &opts, &error), "%s", error.message);
    bson_t *doc = BCON_NEW("_id", BCON_INT32(2));
    cr_assert(mongoc_collection_insert_one(coll, doc, &opts, NULL, &error), "%s", error.message);
    cf_run_ok(client, "admin", "{\"killAllSessions\": []}");
    cr_assert_not(mongoc_client_session_commit_transaction(a, &reply, &error));
    cr_assert_eq(error.code, 251, "%d %s", error.code, error.message);
    bson_destroy(&reply);
    cr_assert_not(mongoc_client_session_commit_transaction(b, &reply, &error));
    cr_assert_eq(error.code, 251, "%d %s", error.code, error.message);
    bson_destroy(&reply);
    bson_t empty = BSON_INITIALIZER;
    cr_assert_eq(mongoc_collection_count_documents(coll, &empty, NULL, NULL, NULL, &error), 0);
    bson_destroy(doc);
    bson_destroy(&opts);
    mongoc_client_session_destroy(b);
    mongoc_client_session_destroy(a);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    client = shared;
    mtest_server_stop(&srv, false);
}

Test(sessions_admin, get_parameter)
{
    bson_t reply;
    cf_run_ok_reply(client, "admin",
                    "{\"getParameter\": 1, \"featureCompatibilityVersion\": 1, "
                    "\"requireApiVersion\": 1, \"enableTestCommands\": 1}",
                    &reply);
    cr_assert_str_eq(cf_str_at(&reply, "featureCompatibilityVersion.version"), "6.0");
    bson_iter_t it;
    cr_assert(cf_find(&reply, "requireApiVersion", &it) && !bson_iter_as_bool(&it));
    cr_assert(cf_find(&reply, "enableTestCommands", &it) && bson_iter_as_bool(&it));
    bson_destroy(&reply);
    cf_run_ok_reply(client, "admin",
                    "{\"getParameter\": {\"showDetails\": true}, \"requireApiVersion\": 1}",
                    &reply);
    cr_assert(cf_find(&reply, "requireApiVersion.settableAtRuntime", &it) &&
              bson_iter_as_bool(&it));
    bson_destroy(&reply);
    bson_error_t error;
    cr_assert_eq(cf_run_fail(client, "admin", "{\"getParameter\": 1, \"noSuchParameterX\": 1}",
                             NULL, &error),
                 72);
    cf_assert_contains(error.message, "no option found to get");
    cr_assert_eq(cf_run_fail(client, dbname, "{\"getParameter\": 1, \"requireApiVersion\": 1}",
                             NULL, NULL),
                 13);
}

/*
 * Conformance: a command on a session that another command is using waits for it. mongod checks
 * a session out for the whole of a command (src/mongo/db/session/session_catalog.cpp,
 * SessionCatalog::checkOutSession: "Wait until the session is no longer checked out"); so a
 * retryable write's retry that arrives on another connection while the first attempt is still
 * running waits, then finds the first attempt's statement executed and answers with its result
 * instead of running it a second time (manual: core/retryable-writes, "Retryable Writes";
 * write_ops_exec.cpp: an executed statement is answered from the session's record).
 *
 * The first attempt is held inside its insert by the hangDuringBatchInsert fail point
 * (write_ops_exec.cpp), found there with waitForFailPoint (failpoint_test_cmds.cpp); the retry is
 * sent meanwhile on a second client. Runs unchanged against mongod 6.0 with enableTestCommands.
 */
#include "cf_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_fail_point_open(&client, &dbname, "session_checkout");
}

static void
teardown(void)
{
    cf_fail_point_close(&client, &dbname, "hangDuringBatchInsert");
}

TestSuite(session_checkout, .init = setup, .fini = teardown);

/* One attempt of the retryable insert, on a client of its own (a connection of its own). */
typedef struct {
    const char *db;
    bson_t *command;
    bson_t reply;
    bson_error_t error;
    bool ok;
    atomic_bool done;
} attempt_t;

static void *
run_attempt(void *arg)
{
    attempt_t *a = arg;
    mongoc_client_t *own = mtest_client_new("session_checkout_attempt");
    a->ok = mongoc_client_command_simple(own, a->db, a->command, NULL, &a->reply, &a->error);
    mongoc_client_destroy(own);
    atomic_store(&a->done, true);
    return NULL;
}

/* Both attempts carry the same lsid (fresh for each run) and txnNumber. */
static void
attempt_start(attempt_t *a, const uint8_t lsid[16], pthread_t *thread)
{
    a->db = dbname;
    a->command = BCON_NEW("insert", BCON_UTF8("c"), "documents", "[", "{", "_id", BCON_INT32(1),
                          "}", "]", "lsid", "{", "id", BCON_BIN(BSON_SUBTYPE_UUID, lsid, 16), "}",
                          "txnNumber", BCON_INT64(21));
    atomic_init(&a->done, false);
    cr_assert_eq(pthread_create(thread, NULL, run_attempt, a), 0);
}

/* Asserts an attempt answered n: 1 without a write error: the insert, or its recorded result. */
static void
assert_inserted_once(attempt_t *a, const char *which)
{
    cr_assert(a->ok, "%s: %s", which, a->error.message);
    cr_assert_eq(cf_int_at(&a->reply, "n"), 1, "%s", which);
    cr_assert_not(cf_has_at(&a->reply, "writeErrors"), "%s ran the insert again: %s", which,
                  bson_as_relaxed_extended_json(&a->reply, NULL));
    bson_destroy(&a->reply);
    bson_destroy(a->command);
}

Test(session_checkout, a_retry_waits_for_the_running_attempt_and_gets_its_result)
{
    bson_t reply;
    cf_run_ok(client, dbname, "{\"create\": \"c\"}");
    cf_run_ok_reply(client, "admin",
                    "{\"configureFailPoint\": \"hangDuringBatchInsert\", \"mode\": \"alwaysOn\"}",
                    &reply);
    int64_t entered = cf_int_at(&reply, "count");
    bson_destroy(&reply);

    attempt_t first, retry;
    pthread_t first_thread, retry_thread;
    uint8_t lsid[16];
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    memcpy(lsid, oid.bytes, 12);
    memcpy(lsid + 12, oid.bytes, 4);
    attempt_start(&first, lsid, &first_thread);
    char wait[160];
    snprintf(wait, sizeof wait,
             "{\"waitForFailPoint\": \"hangDuringBatchInsert\", \"timesEntered\": %lld, "
             "\"maxTimeMS\": 10000}",
             (long long)entered + 1);
    cf_run_ok(client, "admin", wait);

    /* The first attempt is inside its insert, its session checked out: the retry waits. */
    attempt_start(&retry, lsid, &retry_thread);
    usleep(300 * 1000);
    cr_assert_not(atomic_load(&retry.done),
                  "the retry ran while the first attempt held the session");
    cr_assert_not(atomic_load(&first.done));

    cf_run_ok(client, "admin",
              "{\"configureFailPoint\": \"hangDuringBatchInsert\", "
              "\"mode\": \"off\"}");
    pthread_join(first_thread, NULL);
    pthread_join(retry_thread, NULL);
    assert_inserted_once(&first, "the first attempt");
    assert_inserted_once(&retry, "the retry");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    cr_assert_eq(mtest_count(coll, "{}"), 1);
    mongoc_collection_destroy(coll);
}

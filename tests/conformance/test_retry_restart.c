/*
 * Conformance: a retryable write's record survives a crash. mongod keeps the result of each
 * retryable write (lsid, txnNumber, statement) in config.transactions, written in the same
 * storage transaction as the write (src/mongo/db/transaction/transaction_participant.cpp,
 * onWriteOpCompletedOnPrimary; manual: "Retryable Writes"), so a driver that retries after a
 * failover or restart gets the first result instead of applying the write again or failing
 * with a duplicate key. Here the test server is killed with SIGKILL between the first attempt
 * and the retry, and restarted on the same --dbpath. The commands carry lsid and txnNumber by
 * hand, as a driver's retry sends them. Runs on private server processes; skipped when they
 * cannot be spawned.
 */
#include "cf_util.h"

#define LSID "\"lsid\": {\"id\": {\"$binary\": {\"base64\": \"c3RhYmxlLXNlc3Npb24tMQ==\", " \
             "\"subType\": \"04\"}}}"

static void
rr_suite_init(void)
{
    mongoc_init();
}

TestSuite(retry_restart, .init = rr_suite_init, .timeout = 90);

/* Kills the server with SIGKILL and starts it again on the same --dbpath; a new client. */
static mongoc_client_t *
rr_crash_and_restart(mtest_server_t *srv, mongoc_client_t *client, const char *const *args)
{
    mongoc_client_destroy(client);
    mtest_server_stop(srv, true);
    cr_assert(mtest_server_start(srv, args, 0), "restart on the same --dbpath");
    return mtest_client_for(srv->uri, NULL);
}

static const char *const insert_cmd =
    "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"v\": \"first\"}], " LSID
    ", \"txnNumber\": {\"$numberLong\": \"7\"}}";
static const char *const fam_cmd =
    "{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"update\": {\"$inc\": {\"n\": 1}}, "
    "\"new\": true, " LSID ", \"txnNumber\": {\"$numberLong\": \"8\"}}";

Test(retry_restart, retried_writes_after_kill_9_get_the_first_result)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    char *dir = mtest_tmpdir("retry");
    const char *args[] = {"--dbpath", dir, NULL};
    mtest_server_t srv;
    bson_t reply;
    bson_error_t error;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    mongoc_client_t *client = mtest_client_for(srv.uri, NULL);

    cr_assert(cf_run(client, "rr", insert_cmd, &reply, &error), "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "n"), 1);
    bson_destroy(&reply);
    client = rr_crash_and_restart(&srv, client, args);

    /* The retry of txnNumber 7: the first reply, not a duplicate key. */
    cr_assert(cf_run(client, "rr", insert_cmd, &reply, &error), "%s", error.message);
    bson_iter_t it;
    cr_assert_not(cf_find(&reply, "writeErrors", &it), "no duplicate key: %s",
                  bson_as_relaxed_extended_json(&reply, NULL));
    cr_assert_eq(cf_int_at(&reply, "n"), 1);
    bson_destroy(&reply);

    cr_assert(cf_run(client, "rr", fam_cmd, &reply, &error), "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "value.n"), 1);
    bson_destroy(&reply);
    client = rr_crash_and_restart(&srv, client, args);

    /* The retry of txnNumber 8: the same post-image, and $inc applied once. */
    cr_assert(cf_run(client, "rr", fam_cmd, &reply, &error), "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "value.n"), 1, "the first result: %s",
                 bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    cr_assert(cf_run(client, "rr", "{\"find\": \"c\", \"filter\": {}}", &reply, &error), "%s",
              error.message);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0.n"), 1, "applied once");
    cr_assert_str_eq(cf_str_at(&reply, "cursor.firstBatch.0.v"), "first");
    cr_assert_not(cf_find(&reply, "cursor.firstBatch.1", &it), "one document");
    bson_destroy(&reply);

    /* The session's newest txnNumber survived too: an older one is too old. */
    uint32_t code = cf_run_fail(client, "rr", insert_cmd, &reply, &error);
    cr_assert_eq(code, 225, "TransactionTooOld, got %u: %s", code, error.message);
    bson_destroy(&reply);

    mongoc_client_destroy(client);
    mtest_server_stop(&srv, false);
    mtest_tmpdir_remove(dir);
}

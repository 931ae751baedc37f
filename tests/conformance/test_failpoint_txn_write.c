/*
 * Conformance: the onPrimaryTransactionalWrite fail point, as mongod 6.0 with
 * enableTestCommands defines it in src/mongo/db/transaction_participant.cpp: it fires for each
 * write of a retryable write (lsid and txnNumber outside a transaction) once the write is
 * logged, before it commits. data.closeConnection (default true) ends the connection, the write
 * committing and recorded so a retry with the same txnNumber gets the first result;
 * data.failBeforeCommitExceptionCode throws that code, "the write must not be reflected", and
 * a retry runs the statement again. The drivers' retryable-writes tests are built on it
 * (specifications: source/retryable-writes/tests/unified). The fail point has no appName or
 * failCommands filter, so each test holds the server exclusively (cf_fail_point_open): no other
 * test's retryable write can meet the fault armed for this one's write.
 */
#include "cf_util.h"

#include <inttypes.h>

static mongoc_client_t *client;
static char *dbname;
/*
 * The txnNumbers of this run: above any an earlier run against the same server used on these
 * sessions (wall clock ms), or the server would answer this run's writes from that run's
 * record (a retry of a write it already made).
 */
static int64_t txn_base;

static void
setup(void)
{
    cf_fail_point_open(&client, &dbname, "fp_txn_write");
    txn_base = mtest_wall_ms() * 10;
}

static void
teardown(void)
{
    cf_fail_point_close(&client, &dbname, "onPrimaryTransactionalWrite");
}

TestSuite(failpoint_txn_write, .init = setup, .fini = teardown);

/* One session per test, so the tests' txnNumbers never meet on one session whatever their order. */
#define LSID(id) "\"lsid\": {\"id\": {\"$binary\": {\"base64\": \"" id "\", \"subType\": \"04\"}}}"
#define LSID_1 LSID("q83vASNFZ4mrze8BI0VniQ==")
#define LSID_2 LSID("q83vASNFZ4mrze8BI0Vnig==")
#define LSID_3 LSID("q83vASNFZ4mrze8BI0Vniw==")
#define TXN ", \"txnNumber\": {\"$numberLong\": \"%" PRId64 "\"}}"

static int64_t
count_docs(void)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    bson_t empty = BSON_INITIALIZER;
    bson_error_t error;
    int64_t n = mongoc_collection_count_documents(coll, &empty, NULL, NULL, NULL, &error);
    cr_assert(n >= 0, "%s", error.message);
    mongoc_collection_destroy(coll);
    return n;
}

Test(failpoint_txn_write, close_connection_after_the_write_then_the_retry_gets_its_result)
{
    char *insert = bson_strdup_printf(
        "{\"insert\": \"c\", \"documents\": [{\"_id\": 1}], " LSID_1 TXN, txn_base + 1);
    cf_run_ok(client, "admin", "{\"configureFailPoint\": \"onPrimaryTransactionalWrite\", "
                               "\"mode\": {\"times\": 1}}");
    bson_t reply;
    bson_error_t error;
    /* No reply: the connection is closed (a network error), yet the write is made. */
    cr_assert_not(cf_run(client, dbname, insert, &reply, &error));
    cr_assert_eq(error.domain, MONGOC_ERROR_STREAM, "%d.%d %s", error.domain, error.code,
                 error.message);
    bson_destroy(&reply);
    cr_assert_eq(count_docs(), 1);
    /* The retry: the recorded result, no duplicate key error, no second write. */
    cf_run_ok_reply(client, dbname, insert, &reply);
    cr_assert_eq(cf_int_at(&reply, "n"), 1);
    cr_assert_not(bson_has_field(&reply, "writeErrors"), "%s",
                  bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    cr_assert_eq(count_docs(), 1);
    bson_free(insert);
}

Test(failpoint_txn_write, fail_before_commit_fails_the_statement_and_a_retry_runs_it)
{
    char *update = bson_strdup_printf("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 2}, \"u\": "
                                      "{\"$inc\": {\"x\": 1}}}], " LSID_2 TXN,
                                      txn_base + 2);
    cf_run_ok(client, dbname, "{\"insert\": \"c\", \"documents\": [{\"_id\": 1}, {\"_id\": 2}]}");
    cf_run_ok(client, "admin", "{\"configureFailPoint\": \"onPrimaryTransactionalWrite\", "
                               "\"mode\": {\"times\": 1}, \"data\": {\"closeConnection\": false, "
                               "\"failBeforeCommitExceptionCode\": 1}}");
    bson_t reply;
    cf_run_ok_reply(client, dbname, update, &reply);
    cr_assert_eq(cf_int_at(&reply, "nModified"), 0, "%s",
                 bson_as_relaxed_extended_json(&reply, NULL));
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.index"), 0);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), 1);
    bson_destroy(&reply);
    /* The failed statement was not recorded: the retry runs it. */
    cf_run_ok_reply(client, dbname, update, &reply);
    cr_assert_eq(cf_int_at(&reply, "nModified"), 1, "%s",
                 bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    bson_t *two = BCON_NEW("_id", BCON_INT32(2), "x", BCON_INT32(1));
    bson_error_t error;
    cr_assert_eq(mongoc_collection_count_documents(coll, two, NULL, NULL, NULL, &error), 1,
                 "applied once, by the retry");
    bson_destroy(two);
    mongoc_collection_destroy(coll);
    bson_free(update);
}

Test(failpoint_txn_write, writes_outside_a_retryable_write_do_not_fire_it)
{
    cf_run_ok(client, "admin", "{\"configureFailPoint\": \"onPrimaryTransactionalWrite\", "
                               "\"mode\": {\"times\": 1}, \"data\": {\"closeConnection\": false, "
                               "\"failBeforeCommitExceptionCode\": 1}}");
    /* No txnNumber: not a retryable write. */
    cf_run_ok(client, dbname, "{\"insert\": \"c\", \"documents\": [{\"_id\": 3}]}");
    bson_t reply;
    char *insert = bson_strdup_printf(
        "{\"insert\": \"c\", \"documents\": [{\"_id\": 4}], " LSID_3 TXN, txn_base + 3);
    cf_run_ok_reply(client, dbname, insert, &reply);
    bson_free(insert);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), 1, "%s",
                 bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    cr_assert_eq(count_docs(), 1);
}

/*
 * Conformance: the failCommand fail point (mongod with enableTestCommands) and retryable
 * writes. Runs unchanged against mongod 6.0. Each test turns the fail point off at the end and
 * scopes it with appName so parallel tests are not disturbed.
 */
#include "cf_util.h"

#include <string.h>
#include <unistd.h>

static cf_fail_point_suite_t fp;

/* There is one failCommand per server: tests of this suite take turns (parallel jobs). */
static void
setup(void)
{
    cf_fail_point_suite_setup(&fp, "fp", "core-fp-admin", "core_fp");
}

static void
teardown(void)
{
    cf_fail_point_suite_teardown(&fp);
}

TestSuite(failpoint_basic, .init = setup, .fini = teardown);

static void
fail_point(const char *mode, const char *data_fmt_cmds, const char *extra)
{
    char *data =
        bson_strdup_printf("{\"failCommands\": [%s], \"appName\": \"%s\"%s%s}", data_fmt_cmds,
                           fp.appname, extra ? ", " : "", extra ? extra : "");
    mtest_fail_point(fp.admin, mode, data);
    bson_free(data);
}

Test(failpoint_basic, times_one_fails_once_with_the_code)
{
    fail_point("{\"times\": 1}", "\"find\"", "\"errorCode\": 91");
    bson_t reply;
    bson_error_t error;
    cr_assert_not(mtest_command(fp.victim, fp.dbname, "{\"find\": \"c\"}", &reply, &error));
    cr_assert_eq(error.code, 91);
    bson_destroy(&reply);
    cr_assert(mtest_command(fp.victim, fp.dbname, "{\"find\": \"c\"}", &reply, &error), "%s",
              error.message);
    bson_destroy(&reply);
}

Test(failpoint_basic, only_the_named_application_is_affected)
{
    fail_point("\"alwaysOn\"", "\"ping\"", "\"errorCode\": 2");
    bson_t reply;
    bson_error_t error;
    cr_assert(mtest_command(fp.admin, fp.dbname, "{\"ping\": 1}", &reply, &error), "%s",
              error.message);
    bson_destroy(&reply);
    cr_assert_not(mtest_command(fp.victim, fp.dbname, "{\"ping\": 1}", &reply, &error));
    cr_assert_eq(error.code, 2);
    bson_destroy(&reply);
}

Test(failpoint_basic, close_connection_then_recover)
{
    fail_point("{\"times\": 1}", "\"find\"", "\"closeConnection\": true");
    bson_t reply;
    bson_error_t error;
    cr_assert_not(mtest_command(fp.victim, fp.dbname, "{\"find\": \"c\"}", &reply, &error));
    bson_destroy(&reply);
    cr_assert(mtest_command(fp.victim, fp.dbname, "{\"find\": \"c\"}", &reply, &error), "%s",
              error.message);
    bson_destroy(&reply);
}

Test(failpoint_basic, block_connection_delays_the_command)
{
    fail_point("{\"times\": 1}", "\"find\"", "\"blockConnection\": true, \"blockTimeMS\": 300");
    bson_t reply;
    bson_error_t error;
    int64_t t0 = mtest_now_ms();
    cr_assert(mtest_command(fp.victim, fp.dbname, "{\"find\": \"c\"}", &reply, &error), "%s",
              error.message);
    cr_assert_geq(mtest_now_ms() - t0, 290);
    bson_destroy(&reply);
}

Test(failpoint_basic, write_concern_error_is_attached_after_the_write)
{
    fail_point("{\"times\": 1}", "\"insert\"",
               "\"writeConcernError\": {\"code\": 64, \"errmsg\": \"waiting for replication timed "
               "out\"}");
    bson_t reply;
    bson_error_t error;
    char *cmd = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [{\"_id\": 1}]}");
    mtest_command(fp.victim, fp.dbname, cmd, &reply, &error);
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, &reply) &&
                  bson_iter_find_descendant(&it, "writeConcernError.code", &it),
              "%s", bson_as_relaxed_extended_json(&reply, NULL));
    cr_assert_eq(bson_iter_as_int64(&it), 64);
    bson_destroy(&reply);
    bson_free(cmd);
    mongoc_collection_t *coll = mongoc_client_get_collection(fp.admin, fp.dbname, "c");
    bson_t empty = BSON_INITIALIZER;
    cr_assert_eq(mongoc_collection_count_documents(coll, &empty, NULL, NULL, NULL, &error), 1);
    mongoc_collection_destroy(coll);
}

Test(failpoint_basic, configure_reply_counts_activations)
{
    fail_point("\"alwaysOn\"", "\"ping\"", "\"errorCode\": 2");
    bson_t reply;
    bson_error_t error;
    mtest_command(fp.victim, fp.dbname, "{\"ping\": 1}", &reply, &error);
    bson_destroy(&reply);
    cr_assert(mtest_command(fp.admin, "admin",
                            "{\"configureFailPoint\": \"failCommand\", \"mode\": "
                            "\"off\"}",
                            &reply, &error),
              "%s", error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &reply, "count") && bson_iter_as_int64(&it) >= 1);
    bson_destroy(&reply);
}

Test(failpoint_basic, retryable_error_on_a_retryable_write_gets_the_label)
{
    fail_point("{\"times\": 1}", "\"insert\"", "\"errorCode\": 189");
    bson_t reply;
    bson_error_t error;
    cr_assert_not(mtest_command(fp.victim, fp.dbname,
                                "{\"insert\": \"c\", \"documents\": [{\"a\": 1}], "
                                "\"lsid\": {\"id\": {\"$binary\": {\"base64\": "
                                "\"AAAAAAAAQACAAAAAAAAAAQ==\", \"subType\": \"04\"}}}, "
                                "\"txnNumber\": {\"$numberLong\": \"1\"}}",
                                &reply, &error));
    cr_assert_eq(error.code, 189);
    cr_assert(cf_has_label(&reply, "RetryableWriteError"), "%s",
              bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
}

Test(failpoint_basic, driver_retry_of_an_applied_write_does_not_apply_it_twice)
{
    /* The write is applied, then a retryable write concern error makes the driver retry it
     * with the same txnNumber: the server answers from its record. */
    fail_point("{\"times\": 1}", "\"insert\"",
               "\"writeConcernError\": {\"code\": 91, \"errmsg\": \"Replication is being shut "
               "down\"}");
    mongoc_collection_t *coll = mongoc_client_get_collection(fp.victim, fp.dbname, "c");
    bson_t *doc = BCON_NEW("x", BCON_INT32(1));
    bson_error_t error;
    bson_t reply;
    mongoc_collection_insert_one(coll, doc, NULL, &reply, &error);
    bson_destroy(&reply);
    bson_t empty = BSON_INITIALIZER;
    cr_assert_eq(mongoc_collection_count_documents(coll, &empty, NULL, NULL, NULL, &error), 1);
    bson_destroy(doc);
    mongoc_collection_destroy(coll);
}

Test(failpoint_basic, older_txn_number_is_transaction_too_old)
{
    const char *lsid = "\"lsid\": {\"id\": {\"$binary\": {\"base64\": \"ESIzRFVmd4iZqru8zd7v8A==\","
                       " \"subType\": \"04\"}}}";
    char *first = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [{\"_id\": 1}], %s, "
                                     "\"txnNumber\": {\"$numberLong\": \"5\"}}",
                                     lsid);
    char *again = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [{\"_id\": 1}], %s, "
                                     "\"txnNumber\": {\"$numberLong\": \"5\"}}",
                                     lsid);
    char *older = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [{\"_id\": 2}], %s, "
                                     "\"txnNumber\": {\"$numberLong\": \"4\"}}",
                                     lsid);
    bson_t reply;
    bson_error_t error;
    cr_assert(mtest_command(fp.victim, fp.dbname, first, &reply, &error), "%s", error.message);
    bson_destroy(&reply);
    /* The same statement again: the recorded result, no duplicate key error. */
    cr_assert(mtest_command(fp.victim, fp.dbname, again, &reply, &error), "%s", error.message);
    cr_assert_not(bson_has_field(&reply, "writeErrors"), "%s",
                  bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    cr_assert_not(mtest_command(fp.victim, fp.dbname, older, &reply, &error));
    cr_assert_eq(error.code, 225);
    bson_destroy(&reply);
    bson_free(first);
    bson_free(again);
    bson_free(older);
}

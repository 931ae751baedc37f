/*
 * Conformance: retryable writes against failCommand, code by code. mongod 4.4+ labels an error
 * of a retryable write (txnNumber without autocommit) RetryableWriteError when its code is in
 * the RetriableError category (src/mongo/db/error_labels.cpp, isRetryableWriteError;
 * src/mongo/base/error_codes.yml): 6, 7, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435,
 * 13436. LegacyNotPrimary 10058 has no category: no label, and a driver talking to a 4.4+
 * server (which only looks at the label) does not retry it. closeConnection: true drops the
 * connection without a reply, a network error the driver retries (specifications:
 * retryable-writes). failCommand fires before the command runs, so a retried write is applied
 * once. Runs unchanged against mongod 6.0 with enableTestCommands.
 */
#include "cf_util.h"

#include <stdio.h>
#include <unistd.h>

static cf_fail_point_suite_t fp;
static mongoc_collection_t *coll;

/* One failCommand per server: the fail point suites take turns (parallel jobs). */
static void
setup(void)
{
    cf_fail_point_suite_setup(&fp, "rc", "retryable-codes-admin", "retryable_codes");
    coll = mongoc_client_get_collection(fp.victim, fp.dbname, "c");
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll);
    cf_fail_point_suite_teardown(&fp);
}

TestSuite(retryable_codes, .init = setup, .fini = teardown, .timeout = 120);

static const int retryable[] = {10107, 189, 91, 11600, 11602, 13435, 13436, 7, 6, 89, 9001, 262};

static void
fail_once(const char *command, const char *how)
{
    char *fields = bson_strdup_printf("\"failCommands\": [\"%s\"], %s", command, how);
    mtest_fail_point_app(fp.admin, fp.appname, "{\"times\": 1}", fields);
    bson_free(fields);
}

static int64_t
count(const char *filter_json)
{
    return mtest_count(coll, filter_json);
}

/* The numeric field of document _id (a string). */
static int64_t
field_of(const char *id, const char *field)
{
    bson_t reply;
    bson_error_t error;
    char *cmd = bson_strdup_printf("{\"find\": \"c\", \"filter\": {\"_id\": \"%s\"}}", id);
    cr_assert(cf_run(fp.admin, fp.dbname, cmd, &reply, &error), "%s", error.message);
    char *path = bson_strdup_printf("cursor.firstBatch.0.%s", field);
    int64_t v = cf_int_at(&reply, path);
    bson_free(path);
    bson_free(cmd);
    bson_destroy(&reply);
    return v;
}

/* The four retryable write commands the library uses; true when the driver's call succeeded. */
static bool
do_insert(int i, bson_error_t *error)
{
    bson_t *doc = BCON_NEW("_id", BCON_INT32(i));
    bool ok = mongoc_collection_insert_one(coll, doc, NULL, NULL, error);
    bson_destroy(doc);
    return ok;
}

static bool
do_update(bson_error_t *error)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("u"));
    bson_t *update = BCON_NEW("$inc", "{", "n", BCON_INT32(1), "}");
    bool ok = mongoc_collection_update_one(coll, filter, update, NULL, NULL, error);
    bson_destroy(update);
    bson_destroy(filter);
    return ok;
}

static bool
do_delete(bson_error_t *error)
{
    bson_t *filter = BCON_NEW("g", BCON_UTF8("d"));
    bool ok = mongoc_collection_delete_one(coll, filter, NULL, NULL, error);
    bson_destroy(filter);
    return ok;
}

static bool
do_find_and_modify(bson_error_t *error)
{
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("f"));
    bson_t *update = BCON_NEW("$inc", "{", "n", BCON_INT32(1), "}");
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(opts, update);
    bson_t reply;
    bool ok = mongoc_collection_find_and_modify_with_opts(coll, filter, opts, &reply, error);
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(opts);
    bson_destroy(update);
    bson_destroy(filter);
    return ok;
}

static void
seed(void)
{
    cf_run_ok(fp.admin, fp.dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": \"u\", \"n\": 0}, {\"_id\": \"f\", "
              "\"n\": 0}]}");
}

/* Adds two documents for the next delete_one to take one of. */
static void
seed_delete(int round)
{
    char *cmd = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [{\"_id\": \"d%d-a\", "
                                   "\"g\": \"d\"}, {\"_id\": \"d%d-b\", \"g\": \"d\"}]}",
                                   round, round);
    cf_run_ok(fp.admin, fp.dbname, cmd);
    bson_free(cmd);
}

/* Each write fails once with how (failCommand data fields); the driver retries it once. */
static void
assert_retried_once_each(const char *how, int round)
{
    bson_error_t error;
    int64_t updates = field_of("u", "n"), fams = field_of("f", "n");
    fail_once("insert", how);
    cr_assert(do_insert(round, &error), "insert after %s: %s", how, error.message);
    char *filter = bson_strdup_printf("{\"_id\": %d}", round);
    cr_assert_eq(count(filter), 1, "inserted once after %s", how);
    bson_free(filter);

    fail_once("update", how);
    cr_assert(do_update(&error), "update after %s: %s", how, error.message);
    cr_assert_eq(field_of("u", "n"), updates + 1, "updated once after %s", how);

    seed_delete(round);
    int64_t before = count("{\"g\": \"d\"}");
    fail_once("delete", how);
    cr_assert(do_delete(&error), "delete after %s: %s", how, error.message);
    cr_assert_eq(count("{\"g\": \"d\"}"), before - 1, "deleted once after %s", how);

    fail_once("findAndModify", how);
    cr_assert(do_find_and_modify(&error), "findAndModify after %s: %s", how, error.message);
    cr_assert_eq(field_of("f", "n"), fams + 1, "modified once after %s", how);
}

Test(retryable_codes, each_retryable_code_is_retried_once_and_applied_once)
{
    seed();
    for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++) {
        char how[64];
        snprintf(how, sizeof how, "\"errorCode\": %d", retryable[i]);
        assert_retried_once_each(how, (int)i);
    }
}

Test(retryable_codes, close_connection_is_retried_once_and_applied_once)
{
    seed();
    assert_retried_once_each("\"closeConnection\": true", 100);
}

Test(retryable_codes, the_server_labels_retryable_codes_on_retryable_writes_only)
{
    bson_t reply;
    bson_error_t error;
    for (size_t i = 0; i < sizeof retryable / sizeof retryable[0]; i++) {
        char how[64];
        snprintf(how, sizeof how, "\"errorCode\": %d", retryable[i]);
        fail_once("insert", how);
        char *cmd = bson_strdup_printf(
            "{\"insert\": \"c\", \"documents\": [{\"_id\": %zu}], \"lsid\": {\"id\": {\"$binary\": "
            "{\"base64\": \"cmV0cnlhYmxlLWNvZGVzMQ==\", \"subType\": \"04\"}}}, \"txnNumber\": "
            "{\"$numberLong\": \"%zu\"}}",
            i, i + 1);
        uint32_t code = cf_run_fail(fp.victim, fp.dbname, cmd, &reply, &error);
        cr_assert_eq(code, (uint32_t)retryable[i]);
        cr_assert(cf_has_label(&reply, "RetryableWriteError"), "code %d: %s", retryable[i],
                  bson_as_relaxed_extended_json(&reply, NULL));
        bson_destroy(&reply);
        bson_free(cmd);
    }
    /* Without txnNumber it is not a retryable write: no label. */
    fail_once("insert", "\"errorCode\": 189");
    cr_assert_eq(cf_run_fail(fp.victim, fp.dbname,
                             "{\"insert\": \"c\", \"documents\": [{\"_id\": 99}]}", &reply, &error),
                 189u);
    cr_assert_not(cf_has_label(&reply, "RetryableWriteError"));
    bson_destroy(&reply);
}

Test(retryable_codes, legacy_not_primary_is_not_retryable)
{
    bson_t reply;
    bson_error_t error;
    fail_once("insert", "\"errorCode\": 10058");
    cr_assert_eq(
        cf_run_fail(fp.victim, fp.dbname,
                    "{\"insert\": \"c\", \"documents\": [{\"_id\": 1}], \"lsid\": {\"id\": "
                    "{\"$binary\": {\"base64\": \"bGVnYWN5LW5vdHByaW1hcg==\", \"subType\": "
                    "\"04\"}}}, \"txnNumber\": {\"$numberLong\": \"1\"}}",
                    &reply, &error),
        10058u);
    cr_assert_not(cf_has_label(&reply, "RetryableWriteError"), "%s",
                  bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    /* So the driver does not retry it: the insert fails and nothing is written. */
    fail_once("insert", "\"errorCode\": 10058");
    cr_assert_not(do_insert(2, &error));
    cr_assert_eq(error.code, 10058, "%s", error.message);
    cr_assert_eq(count("{}"), 0);
}

/*
 * Conformance: the aggregation stages that write, $out and $merge (manual:
 * reference/operator/aggregation/out and merge). Either is the last stage and the aggregate
 * answers an empty cursor; it takes a writeConcern (so does a read-only aggregate, which does
 * not wait for it). $out replaces the target's documents and keeps its indexes, all or
 * nothing, and may name another database (4.4+). $merge's whenMatched / whenNotMatched / on /
 * let. mongod 6.0's errors (src/mongo/db/pipeline/document_source_out.cpp,
 * document_source_merge.cpp, pipeline.cpp): not last 40601; in a transaction
 * OperationNotSupportedInTransaction 263; with a linearizable read concern InvalidOptions 72;
 * 'on' without a unique index 51183; no match with whenNotMatched "fail" 13113; a match with
 * whenMatched "fail" DuplicateKey 11000. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;
static char *other_db;

static void
setup(void)
{
    cf_open(&client, &dbname, "agg_out");
    other_db = bson_strdup_printf("%s_o", dbname);
    cf_run_ok(client, dbname,
              "{\"insert\": \"src\", \"documents\": [{\"_id\": 1, \"x\": 1}, {\"_id\": 2, \"x\": 2}, "
              "{\"_id\": 3, \"x\": 3}]}");
}

static void
teardown(void)
{
    mtest_db_drop(client, other_db);
    bson_free(other_db);
    cf_close(&client, &dbname);
}

TestSuite(agg_out, .init = setup, .fini = teardown);

static int64_t
count_in(const char *db, const char *coll, const char *filter)
{
    bson_t reply;
    char *cmd = bson_strdup_printf("{\"count\": \"%s\", \"query\": %s}", coll, filter);
    cf_run_ok_reply(client, db, cmd, &reply);
    int64_t n = cf_int_at(&reply, "n");
    bson_destroy(&reply);
    bson_free(cmd);
    return n;
}

static void
aggregate_ok(const char *pipeline)
{
    bson_t reply;
    char *cmd = bson_strdup_printf("{\"aggregate\": \"src\", \"cursor\": {}, \"pipeline\": %s, "
                                   "\"writeConcern\": {\"w\": \"majority\"}}",
                                   pipeline);
    cf_run_ok_reply(client, dbname, cmd, &reply);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.0"), "an empty cursor");
    cr_assert_eq(cf_int_at(&reply, "cursor.id"), 0);
    bson_destroy(&reply);
    bson_free(cmd);
}

static uint32_t
aggregate_fails(const char *pipeline)
{
    char *cmd = bson_strdup_printf("{\"aggregate\": \"src\", \"cursor\": {}, \"pipeline\": %s}",
                                   pipeline);
    uint32_t code = cf_run_fail(client, dbname, cmd, NULL, NULL);
    bson_free(cmd);
    return code;
}

Test(agg_out, out_replaces_the_documents_and_keeps_the_indexes)
{
    bson_t reply;
    cf_run_ok(client, dbname, "{\"insert\": \"t\", \"documents\": [{\"_id\": 9}]}");
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"t\", \"indexes\": [{\"key\": {\"x\": 1}, \"name\": \"x_1\"}]}");
    aggregate_ok("[{\"$match\": {\"x\": {\"$gte\": 2}}}, {\"$out\": \"t\"}]");
    cr_assert_eq(count_in(dbname, "t", "{}"), 2);
    cr_assert_eq(count_in(dbname, "t", "{\"_id\": 9}"), 0);
    cf_run_ok_reply(client, dbname, "{\"listIndexes\": \"t\"}", &reply);
    cr_assert_str_eq(cf_str_at(&reply, "cursor.firstBatch.1.name"), "x_1");
    bson_destroy(&reply);
}

Test(agg_out, out_to_another_database)
{
    char *pipeline = bson_strdup_printf("[{\"$out\": {\"db\": \"%s\", \"coll\": \"t\"}}]",
                                        other_db);
    aggregate_ok(pipeline);
    cr_assert_eq(count_in(other_db, "t", "{}"), 3);
    bson_free(pipeline);
}

Test(agg_out, out_with_a_duplicate_key_changes_nothing)
{
    cf_run_ok(client, dbname, "{\"insert\": \"t\", \"documents\": [{\"_id\": 9}]}");
    cr_assert_eq(aggregate_fails("[{\"$project\": {\"_id\": 0}}, {\"$addFields\": {\"_id\": 1}}, "
                                 "{\"$out\": \"t\"}]"),
                 11000);
    cr_assert_eq(count_in(dbname, "t", "{\"_id\": 9}"), 1);
}

Test(agg_out, merge_modes)
{
    cf_run_ok(client, dbname,
              "{\"insert\": \"t\", \"documents\": [{\"_id\": 1, \"y\": 1}, {\"_id\": 2, \"y\": 2}]}");
    aggregate_ok("[{\"$merge\": {\"into\": \"t\"}}]"); /* merge / insert */
    cr_assert_eq(count_in(dbname, "t", "{\"_id\": 1, \"x\": 1, \"y\": 1}"), 1);
    cr_assert_eq(count_in(dbname, "t", "{\"_id\": 3, \"x\": 3}"), 1);
    aggregate_ok("[{\"$merge\": {\"into\": \"t\", \"whenMatched\": \"replace\"}}]");
    cr_assert_eq(count_in(dbname, "t", "{\"y\": {\"$exists\": true}}"), 0);
    aggregate_ok("[{\"$merge\": {\"into\": \"t\", \"whenMatched\": [{\"$set\": {\"z\": "
                 "{\"$add\": [\"$x\", \"$$new.x\"]}}}], \"whenNotMatched\": \"discard\"}}]");
    cr_assert_eq(count_in(dbname, "t", "{\"_id\": 2, \"z\": 4}"), 1);
    cr_assert_eq(aggregate_fails("[{\"$merge\": {\"into\": \"t\", \"whenMatched\": \"fail\"}}]"),
                 11000);
    cr_assert_eq(aggregate_fails("[{\"$merge\": {\"into\": \"none\", \"whenMatched\": \"merge\", "
                                 "\"whenNotMatched\": \"fail\"}}]"),
                 13113);
}

/* A read-only aggregate accepts a writeConcern too and does not wait for it (mongod's
 * jstests/core/aggregation_accepts_write_concern.js and replsets/aggregation_write_concern.js),
 * with no writeConcernError in its reply. */
Test(agg_out, a_read_only_aggregate_accepts_a_write_concern)
{
    bson_t reply;
    cf_run_ok_reply(client, dbname,
                    "{\"aggregate\": \"src\", \"cursor\": {}, \"pipeline\": [{\"$match\": "
                    "{\"_id\": 1}}], \"writeConcern\": {\"w\": \"majority\"}}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0._id"), 1);
    cr_assert_not(cf_has_at(&reply, "writeConcernError"));
    bson_destroy(&reply);
    cf_run_ok_reply(client, dbname,
                    "{\"aggregate\": \"src\", \"cursor\": {}, \"pipeline\": [], "
                    "\"writeConcern\": {\"w\": 1}}",
                    &reply);
    bson_destroy(&reply);
}

Test(agg_out, mongods_errors)
{
    cr_assert_eq(aggregate_fails("[{\"$out\": \"t\"}, {\"$match\": {}}]"), 40601);
    cr_assert_eq(aggregate_fails("[{\"$merge\": \"t\"}, {\"$match\": {}}]"), 40601);
    cr_assert_eq(aggregate_fails("[{\"$merge\": {\"into\": \"src\", \"on\": \"x\"}}]"), 51183);
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"aggregate\": \"src\", \"cursor\": {}, \"pipeline\": [{\"$out\": "
                             "\"t\"}], \"readConcern\": {\"level\": \"linearizable\"}}",
                             NULL, NULL),
                 72);
}

Test(agg_out, not_in_a_transaction)
{
    bson_error_t error;
    bson_t reply;
    mongoc_client_session_t *s = mongoc_client_start_session(client, NULL, &error);
    cr_assert(s, "%s", error.message);
    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    bson_t *opts = bson_new();
    cr_assert(mongoc_client_session_append(s, opts, &error), "%s", error.message);
    bson_t *cmd = cf_json("{\"aggregate\": \"src\", \"cursor\": {}, \"pipeline\": [{\"$merge\": "
                          "{\"into\": \"t\"}}]}");
    cr_assert_not(mongoc_client_command_with_opts(client, dbname, cmd, NULL, opts, &reply, &error));
    cr_assert_eq(error.code, 263, "%s", error.message);
    bson_destroy(&reply);
    bson_destroy(cmd);
    bson_destroy(opts);
    mongoc_client_session_abort_transaction(s, NULL);
    mongoc_client_session_destroy(s);
}

/*
 * $merge with whenMatched "fail": the DuplicateKey error carries keyPattern and keyValue of the
 * `on` fields, as mongod 5.1+ (DuplicateKeyErrorInfo; the crud specification's
 * aggregate-merge-errorResponse.json).
 */
Test(agg_out, merge_fail_reports_the_duplicate_key)
{
    cf_run_ok(client, dbname, "{\"insert\": \"t\", \"documents\": [{\"_id\": 2}]}");
    bson_t reply;
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"aggregate\": \"src\", \"cursor\": {}, \"pipeline\": "
                                "[{\"$match\": {\"_id\": 2}}, "
                                "{\"$merge\": {\"into\": \"t\", \"whenMatched\": \"fail\"}}]}",
                                &reply, NULL);
    cr_assert_eq(code, 11000);
    cr_assert_eq(cf_int_at(&reply, "keyPattern._id"), 1, "keyPattern {_id: 1}");
    cr_assert_eq(cf_int_at(&reply, "keyValue._id"), 2, "keyValue {_id: 2}");
    bson_destroy(&reply);
}

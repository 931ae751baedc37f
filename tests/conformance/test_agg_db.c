/*
 * Conformance: database-level aggregate ({aggregate: 1}), as mongod 6.0 (manual:
 * reference/command/aggregate, "aggregate: 1"; reference/operator/aggregation/documents and
 * listLocalSessions): $documents feeds the pipeline from an array of documents, and
 * $listLocalSessions from the sessions the server knows (the command's own session among them);
 * a first stage that needs a collection is InvalidNamespace 73 ("{aggregate: 1} is not valid for
 * '$match'; a collection is required."). The crud specification's db-aggregate tests use both.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "agg_db");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(agg_db, .init = setup, .fini = teardown);

Test(agg_db, documents_feed_the_pipeline)
{
    bson_t reply;
    cf_run_ok_reply(client, dbname,
                    "{\"aggregate\": 1, \"pipeline\": [{\"$documents\": [{\"_id\": 1, \"x\": 1}, "
                    "{\"_id\": 2, \"x\": 2}]}, {\"$match\": {\"x\": 2}}], \"cursor\": {}}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0._id"), 2, "%s",
                 bson_as_relaxed_extended_json(&reply, NULL));
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.1"));
    bson_destroy(&reply);
}

Test(agg_db, list_local_sessions_includes_the_commands_own)
{
    mongoc_database_t *db = mongoc_client_get_database(client, dbname);
    bson_t *pipeline = cf_json("{\"pipeline\": [{\"$listLocalSessions\": {}}, {\"$limit\": 1}, "
                               "{\"$addFields\": {\"dummy\": \"dummy field\"}}, "
                               "{\"$project\": {\"_id\": 0, \"dummy\": 1}}]}");
    mongoc_cursor_t *cur = mongoc_database_aggregate(db, pipeline, NULL, NULL);
    const bson_t *doc;
    cr_assert(mongoc_cursor_next(cur, &doc), "no session listed");
    cr_assert_str_eq(cf_str_at(doc, "dummy"), "dummy field");
    cr_assert_not(mongoc_cursor_next(cur, &doc));
    bson_error_t error;
    cr_assert_not(mongoc_cursor_error(cur, &error), "%s", error.message);
    mongoc_cursor_destroy(cur);
    bson_destroy(pipeline);
    mongoc_database_destroy(db);
}

Test(agg_db, a_stage_that_needs_a_collection_is_refused)
{
    bson_error_t error;
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"aggregate\": 1, \"pipeline\": [{\"$match\": {}}], \"cursor\": {}}",
                             NULL, &error),
                 73);
    cf_assert_contains(error.message, "a collection is required");
}

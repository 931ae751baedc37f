/*
 * Conformance: explain of update, delete and findAndModify. The plan is the query's under an
 * UPDATE or DELETE stage; executionStats run it up to the write and count what the write would
 * do (nMatched, nWouldModify, nWouldUpsert; nWouldDelete: plan_explainer_impl.cpp statsToBSON),
 * and nothing is written (the manual's "explain": "For write operations, explain returns
 * information about the update or delete operations that would be performed, but does not apply
 * the modifications"). A filter on _id alone is an IDHACK (get_executor.cpp,
 * isIdHackEligibleQuery). Runs unchanged against mongod 6.0.
 */
#include "cf_explain.h"

#define NDOCS 12

static mongoc_client_t *client;
static char *dbname;
static mongoc_collection_t *coll;

/* w: {_id: i, status: i < 8 ? "ready" : "done", n: i % 2} with an index on status. */
static void
setup(void)
{
    bson_error_t error;
    bson_t *docs[NDOCS];
    cf_open(&client, &dbname, "explain_writes");
    coll = mongoc_client_get_collection(client, dbname, "w");
    for (int i = 0; i < NDOCS; i++) {
        docs[i] = BCON_NEW("_id", BCON_INT32(i), "status", BCON_UTF8(i < 8 ? "ready" : "done"),
                           "n", BCON_INT32(i % 2));
    }
    cr_assert(mongoc_collection_insert_many(coll, (const bson_t **)docs, NDOCS, NULL, NULL,
                                            &error),
              "%s", error.message);
    for (int i = 0; i < NDOCS; i++) {
        bson_destroy(docs[i]);
    }
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"w\", \"indexes\": [{\"key\": {\"status\": 1}, \"name\": "
              "\"status_1\"}]}");
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll);
    cf_close(&client, &dbname);
}

TestSuite(explain_writes, .init = setup, .fini = teardown);

/* The executionStages of an explained write (a view into *reply). */
static void
explain_write(const char *cmd_json, bson_t *reply, bson_t *stages)
{
    cfx_explain(client, dbname, cmd_json, "executionStats", reply);
    cr_assert(cfx_doc_at(reply, "executionStats.executionStages", stages), "%s", cmd_json);
}

Test(explain_writes, update_counts_matched_and_would_modify_without_writing)
{
    bson_t reply, stages, plan;
    explain_write("{\"update\": \"w\", \"updates\": [{\"q\": {\"status\": \"ready\"}, \"u\": "
                  "{\"$set\": {\"n\": 1}}, \"multi\": true}]}",
                  &reply, &stages);
    cr_expect_str_eq(cf_str_at(&stages, "stage"), "UPDATE");
    cr_expect_eq(cf_int_at(&stages, "nMatched"), 8);
    cr_expect_eq(cf_int_at(&stages, "nWouldModify"), 4, "half of them already have n: 1");
    cr_expect_eq(cf_int_at(&stages, "nWouldUpsert"), 0);
    cr_expect_geq(cfx_count_stages(&stages, "IXSCAN"), 1);
    cr_assert(cfx_doc_at(&reply, "queryPlanner.winningPlan", &plan));
    cr_expect_str_eq(cf_str_at(&plan, "stage"), "UPDATE");
    bson_destroy(&reply);
    cr_expect_eq(mtest_count(coll, "{\"n\": 1}"), NDOCS / 2, "explain wrote nothing");

    explain_write("{\"update\": \"w\", \"updates\": [{\"q\": {\"status\": \"gone\"}, \"u\": "
                  "{\"$set\": {\"n\": 1}}, \"upsert\": true}]}",
                  &reply, &stages);
    cr_expect_eq(cf_int_at(&stages, "nMatched"), 0);
    cr_expect_eq(cf_int_at(&stages, "nWouldUpsert"), 1);
    bson_destroy(&reply);
    cr_expect_eq(mtest_count(coll, "{}"), NDOCS, "no upsert happened");
}

Test(explain_writes, delete_counts_would_delete_without_deleting)
{
    bson_t reply, stages;
    explain_write("{\"delete\": \"w\", \"deletes\": [{\"q\": {\"status\": \"done\"}, \"limit\": "
                  "0}]}",
                  &reply, &stages);
    cr_expect_str_eq(cf_str_at(&stages, "stage"), "DELETE");
    cr_expect_eq(cf_int_at(&stages, "nWouldDelete"), NDOCS - 8);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalKeysExamined"), NDOCS - 8);
    bson_destroy(&reply);
    explain_write("{\"delete\": \"w\", \"deletes\": [{\"q\": {\"status\": \"ready\"}, \"limit\": "
                  "1}]}",
                  &reply, &stages);
    cr_expect_eq(cf_int_at(&stages, "nWouldDelete"), 1);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 1, "deleteOne stops");
    bson_destroy(&reply);
    cr_expect_eq(mtest_count(coll, "{}"), NDOCS, "explain deleted nothing");
}

Test(explain_writes, find_and_modify_is_an_update_or_delete_of_one)
{
    bson_t reply, stages;
    explain_write("{\"findAndModify\": \"w\", \"query\": {\"status\": \"ready\"}, \"sort\": "
                  "{\"status\": 1}, \"update\": {\"$set\": {\"status\": \"processing\"}}}",
                  &reply, &stages);
    cr_expect_str_eq(cf_str_at(&stages, "stage"), "UPDATE");
    cr_expect_eq(cf_int_at(&stages, "nMatched"), 1);
    cr_expect_eq(cf_int_at(&stages, "nWouldModify"), 1);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 1);
    bson_destroy(&reply);
    explain_write("{\"findAndModify\": \"w\", \"query\": {\"_id\": 3}, \"remove\": true}", &reply,
                  &stages);
    cr_expect_str_eq(cf_str_at(&stages, "stage"), "DELETE");
    cr_expect_eq(cf_int_at(&stages, "nWouldDelete"), 1);
    cr_expect_str_eq(cf_str_at(&stages, "inputStage.stage"), "IDHACK");
    bson_destroy(&reply);
    cr_expect_eq(mtest_count(coll, "{\"status\": \"processing\"}"), 0);
    cr_expect_eq(mtest_count(coll, "{\"_id\": 3}"), 1);
}

Test(explain_writes, id_equality_alone_is_idhack)
{
    bson_t reply, stages;
    explain_write("{\"update\": \"w\", \"updates\": [{\"q\": {\"_id\": 5}, \"u\": {\"$set\": "
                  "{\"n\": 1}}}]}",
                  &reply, &stages);
    cr_expect_str_eq(cf_str_at(&stages, "inputStage.stage"), "IDHACK");
    cr_expect_eq(cf_int_at(&stages, "nWouldModify"), 0, "_id 5 has n: 1 already");
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalKeysExamined"), 1);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 1);
    bson_destroy(&reply);
    cfx_explain(client, dbname, "{\"find\": \"w\", \"filter\": {\"_id\": 5}}", "queryPlanner",
                &reply);
    cr_expect_str_eq(cf_str_at(&reply, "queryPlanner.winningPlan.stage"), "IDHACK");
    bson_destroy(&reply);
}

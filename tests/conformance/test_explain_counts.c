/*
 * Conformance: reads an index answers alone. A count whose filter the index bounds answer
 * exactly, in one interval, is a COUNT_SCAN (src/mongo/db/query/get_executor.cpp,
 * turnIxscanIntoCount; src/mongo/db/exec/count_scan.cpp) under a COUNT stage: no document is
 * examined; a count of everything asks the collection (RECORD_STORE_FAST_COUNT); a predicate
 * the index cannot answer brings a FETCH back. A find whose projection keeps only indexed fields
 * (and drops _id) is PROJECTION_COVERED. An aggregate whose later stages read no field ($count)
 * plans its $match as a count (pipeline_d.cpp: QueryPlannerParams::IS_COUNT). Shapes: the
 * manual's "Explain Results". Runs unchanged against mongod 6.0.
 */
#include "cf_explain.h"

#define READY 30
#define DELAYED 12

static mongoc_client_t *client;
static char *dbname;

/* q: READY ready documents with run_at 1000 + i (DELAYED of them after 2000), 5 done ones. */
static void
setup(void)
{
    bson_error_t error;
    bson_t *docs[READY + 5];
    cf_open(&client, &dbname, "explain_counts");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "q");
    for (int i = 0; i < READY + 5; i++) {
        int run_at = i < READY - DELAYED ? 1000 + i : i < READY ? 3000 + i : 500 + i;
        docs[i] = BCON_NEW("status", BCON_UTF8(i < READY ? "ready" : "done"), "priority",
                           BCON_INT32(i % 3), "run_at", BCON_INT32(run_at), "note",
                           BCON_UTF8(i % 2 ? "odd" : "even"));
    }
    cr_assert(mongoc_collection_insert_many(coll, (const bson_t **)docs, READY + 5, NULL, NULL,
                                            &error),
              "%s", error.message);
    for (int i = 0; i < READY + 5; i++) {
        bson_destroy(docs[i]);
    }
    mongoc_collection_destroy(coll);
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"q\", \"indexes\": [{\"key\": {\"status\": 1, \"run_at\": 1}, "
              "\"name\": \"due\"}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(explain_counts, .init = setup, .fini = teardown);

Test(explain_counts, a_count_the_index_answers_is_a_count_scan)
{
    bson_t reply, stages, scan;
    cfx_explain(client, dbname,
                "{\"count\": \"q\", \"query\": {\"status\": \"ready\", \"run_at\": {\"$gt\": "
                "2000}}}",
                "executionStats", &reply);
    cr_assert(cfx_doc_at(&reply, "executionStats.executionStages", &stages));
    cr_expect_str_eq(cf_str_at(&stages, "stage"), "COUNT");
    cr_expect_str_eq(cf_str_at(&stages, "inputStage.stage"), "COUNT_SCAN");
    cr_expect_eq(cf_int_at(&stages, "nCounted"), DELAYED);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 0);
    int64_t keys = cf_int_at(&reply, "executionStats.totalKeysExamined");
    cr_expect(keys >= DELAYED && keys <= DELAYED + 1, "%lld keys", (long long)keys);
    cr_assert(cfx_find_stage(&stages, "COUNT_SCAN", &scan));
    cr_expect_str_eq(cf_str_at(&scan, "indexName"), "due");
    cr_expect_str_eq(cf_str_at(&scan, "indexBounds.startKey.status"), "ready");
    cr_expect_eq(cf_int_at(&scan, "indexBounds.startKey.run_at"), 2000);
    cr_expect(cf_has_at(&scan, "indexBounds.startKeyInclusive"));
    cr_expect(cf_has_at(&scan, "indexBounds.endKeyInclusive"));
    bson_destroy(&reply);

    cfx_explain(client, dbname, "{\"count\": \"q\", \"query\": {\"status\": \"done\"}}",
                "executionStats", &reply);
    cr_assert(cfx_doc_at(&reply, "executionStats.executionStages", &stages));
    cr_expect_eq(cfx_count_stages(&stages, "COUNT_SCAN"), 1);
    cr_expect_eq(cf_int_at(&stages, "nCounted"), 5);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 0);
    bson_destroy(&reply);
}

Test(explain_counts, a_predicate_the_index_lacks_fetches_and_an_empty_count_asks_the_collection)
{
    bson_t reply, stages;
    cfx_explain(client, dbname,
                "{\"count\": \"q\", \"query\": {\"status\": \"ready\", \"note\": \"odd\"}}",
                "executionStats", &reply);
    cr_assert(cfx_doc_at(&reply, "executionStats.executionStages", &stages));
    cr_expect_eq(cfx_count_stages(&stages, "COUNT_SCAN"), 0);
    cr_expect_eq(cfx_count_stages(&stages, "FETCH"), 1);
    cr_expect_eq(cf_int_at(&stages, "nCounted"), READY / 2);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), READY);
    bson_destroy(&reply);

    cfx_explain(client, dbname, "{\"count\": \"q\"}", "executionStats", &reply);
    cr_expect_str_eq(cf_str_at(&reply, "queryPlanner.winningPlan.stage"),
                     "RECORD_STORE_FAST_COUNT");
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 0);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalKeysExamined"), 0);
    bson_destroy(&reply);
}

Test(explain_counts, a_projection_of_indexed_fields_is_covered)
{
    bson_t reply, plan;
    cfx_explain(client, dbname,
                "{\"find\": \"q\", \"filter\": {\"status\": \"ready\"}, \"sort\": {\"run_at\": 1}, "
                "\"projection\": {\"_id\": 0, \"run_at\": 1}, \"limit\": 1}",
                "executionStats", &reply);
    cr_assert(cfx_doc_at(&reply, "queryPlanner.winningPlan", &plan));
    cr_expect_eq(cfx_count_stages(&plan, "PROJECTION_COVERED"), 1, "%s",
                 bson_as_relaxed_extended_json(&plan, NULL));
    cr_expect_eq(cfx_count_stages(&plan, "FETCH"), 0);
    cr_expect_eq(cfx_count_stages(&plan, "SORT"), 0);
    cr_expect_eq(cf_int_at(&reply, "executionStats.nReturned"), 1);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 0);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalKeysExamined"), 1);
    bson_destroy(&reply);

    /* _id kept, or a field the index lacks: the documents are fetched */
    cfx_explain(client, dbname,
                "{\"find\": \"q\", \"filter\": {\"status\": \"ready\"}, \"sort\": {\"run_at\": 1}, "
                "\"projection\": {\"run_at\": 1}, \"limit\": 1}",
                "executionStats", &reply);
    cr_assert(cfx_doc_at(&reply, "queryPlanner.winningPlan", &plan));
    cr_expect_eq(cfx_count_stages(&plan, "PROJECTION_COVERED"), 0);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 1);
    bson_destroy(&reply);
}

Test(explain_counts, match_then_count_reads_no_document)
{
    bson_t reply;
    cfx_explain(client, dbname,
                "{\"aggregate\": \"q\", \"pipeline\": [{\"$match\": {\"status\": \"ready\", "
                "\"run_at\": {\"$gt\": 2000}}}, {\"$count\": \"n\"}], \"cursor\": {}}",
                "executionStats", &reply);
    cr_expect_geq(cfx_count_stages(&reply, "COUNT_SCAN"), 1, "%s",
                  bson_as_relaxed_extended_json(&reply, NULL));
    cr_expect_eq(cfx_count_stages(&reply, "FETCH"), 0);
    bson_destroy(&reply);
    bson_t out;
    cf_run_ok_reply(client, dbname,
                    "{\"aggregate\": \"q\", \"pipeline\": [{\"$match\": {\"status\": \"ready\", "
                    "\"run_at\": {\"$gt\": 2000}}}, {\"$count\": \"n\"}], \"cursor\": {}}",
                    &out);
    cr_expect_eq(cf_int_at(&out, "cursor.firstBatch.0.n"), DELAYED);
    bson_destroy(&out);
}

/*
 * Conformance: explain's plans and index bounds for reads, in mongod 6.0's shapes (the manual's
 * "Explain Results"; src/mongo/db/query/plan_explainer_impl.cpp). Bounds strings are
 * Interval::toString of BSONElement::toString values (index_bounds.cpp, bsonelement.cpp: a
 * double prints as appendDoubleNice, -inf.0); how each predicate becomes bounds is
 * index_bounds_builder.cpp (translateEquality, the type-bracketed ranges, null as
 * [undefined, undefined] and [null, null] under a FETCH filter). Runs unchanged against mongod
 * 6.0.
 */
#include "cf_explain.h"

static mongoc_client_t *client;
static char *dbname;

/*
 * c: {_id: i, a: i % 4, b: i} for i < 20, {_id: 100, b: 7} (no a), {_id: 101, a: null, b: 3};
 * indexes {a: 1, b: 1} and {b: -1}.
 */
static void
setup(void)
{
    bson_error_t error;
    cf_open(&client, &dbname, "explain_plans");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    bson_t *docs[22];
    for (int i = 0; i < 20; i++) {
        docs[i] = BCON_NEW("_id", BCON_INT32(i), "a", BCON_INT32(i % 4), "b", BCON_INT32(i));
    }
    docs[20] = cf_json("{\"_id\": 100, \"b\": 7}");
    docs[21] = cf_json("{\"_id\": 101, \"a\": null, \"b\": 3}");
    cr_assert(mongoc_collection_insert_many(coll, (const bson_t **)docs, 22, NULL, NULL, &error),
              "%s", error.message);
    for (int i = 0; i < 22; i++) {
        bson_destroy(docs[i]);
    }
    mongoc_collection_destroy(coll);
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"a\": 1, \"b\": 1}, \"name\": "
              "\"ab\"}, {\"key\": {\"b\": -1}, \"name\": \"b_desc\"}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(explain_plans, .init = setup, .fini = teardown);

/* Explains a find on c; the IXSCAN of its winning plan in *ixscan (a view into *reply). */
static void
explain_find(const char *find_json, bson_t *reply, bson_t *ixscan)
{
    char *cmd = bson_strdup_printf("{\"find\": \"c\", %s}", find_json);
    bson_t plan;
    cfx_explain(client, dbname, cmd, "queryPlanner", reply);
    cr_assert(cfx_doc_at(reply, "queryPlanner.winningPlan", &plan), "%s", cmd);
    cr_assert(cfx_find_stage(&plan, "IXSCAN", ixscan), "IXSCAN expected for %s", cmd);
    bson_free(cmd);
}

Test(explain_plans, ranges_are_bracketed_by_type_and_fields_without_predicate_are_all_values)
{
    bson_t reply, ixscan;
    static const char *const a_point[] = {"[1, 1]"};
    static const char *const b_range[] = {"[5, 12)"};
    static const char *const b_upper[] = {"[-inf.0, 10]"};
    static const char *const b_lower[] = {"(3, inf.0]"};
    static const char *const all[] = {"[MinKey, MaxKey]"};
    explain_find("\"filter\": {\"a\": 1, \"b\": {\"$gte\": 5, \"$lt\": 12}}", &reply, &ixscan);
    cfx_assert_bounds(&ixscan, "a", a_point, 1);
    cfx_assert_bounds(&ixscan, "b", b_range, 1);
    bson_destroy(&reply);
    explain_find("\"filter\": {\"a\": 1, \"b\": {\"$lte\": 10}}", &reply, &ixscan);
    cfx_assert_bounds(&ixscan, "b", b_upper, 1);
    bson_destroy(&reply);
    explain_find("\"filter\": {\"a\": 1, \"b\": {\"$gt\": 3}}", &reply, &ixscan);
    cfx_assert_bounds(&ixscan, "b", b_lower, 1);
    bson_destroy(&reply);
    explain_find("\"filter\": {\"a\": 1}", &reply, &ixscan);
    cfx_assert_bounds(&ixscan, "b", all, 1);
    bson_destroy(&reply);
}

Test(explain_plans, in_gives_points_in_order_and_a_descending_field_is_reversed)
{
    bson_t reply, ixscan;
    static const char *const a_points[] = {"[0, 0]", "[2, 2]", "[3, 3]"};
    static const char *const b_desc[] = {"[MaxKey, MinKey]"};
    static const char *const b_backward[] = {"[MinKey, MaxKey]"};
    explain_find("\"filter\": {\"a\": {\"$in\": [3, 0, 2, 3]}, \"b\": {\"$gt\": 100}}, "
                 "\"hint\": \"ab\"",
                 &reply, &ixscan);
    cfx_assert_bounds(&ixscan, "a", a_points, 3);
    bson_destroy(&reply);
    explain_find("\"filter\": {}, \"hint\": \"b_desc\"", &reply, &ixscan);
    cfx_assert_bounds(&ixscan, "b", b_desc, 1);
    cr_expect_str_eq(cf_str_at(&ixscan, "direction"), "forward");
    bson_destroy(&reply);
    /* sort {b: 1} scans {b: -1} backward: the bounds are shown in the scan's direction */
    explain_find("\"filter\": {}, \"sort\": {\"b\": 1}, \"hint\": \"b_desc\"", &reply, &ixscan);
    cfx_assert_bounds(&ixscan, "b", b_backward, 1);
    cr_expect_str_eq(cf_str_at(&ixscan, "direction"), "backward");
    bson_destroy(&reply);
}

/*
 * {a: null} matches a null and a missing a, both indexed as null (and undefined for an empty
 * array): two points, then a FETCH with the filter. A sort on b needs no SORT stage: mongod
 * explodes the two points into a SORT_MERGE (planner_analysis.cpp, explodeForSort).
 */
Test(explain_plans, null_equality_is_undefined_and_null_points_under_a_fetch_filter)
{
    bson_t reply, ixscan, plan, fetch;
    static const char *const null_points[] = {"[undefined, undefined]", "[null, null]"};
    explain_find("\"filter\": {\"a\": null}", &reply, &ixscan);
    cfx_assert_bounds(&ixscan, "a", null_points, 2);
    cr_assert(cfx_doc_at(&reply, "queryPlanner.winningPlan", &plan));
    cr_assert(cfx_find_stage(&plan, "FETCH", &fetch));
    cr_expect(cf_has_at(&fetch, "filter.a"), "the FETCH applies {a: {$eq: null}}: %s",
              bson_as_relaxed_extended_json(&fetch, NULL));
    bson_destroy(&reply);
    /* sorted on b: one scan per point, merged (each IXSCAN has one of the two points) */
    explain_find("\"filter\": {\"a\": null}, \"sort\": {\"b\": 1}", &reply, &ixscan);
    cr_assert(cfx_doc_at(&reply, "queryPlanner.winningPlan", &plan));
    cr_expect_eq(cfx_count_stages(&plan, "SORT"), 0, "no blocking sort: %s",
                 bson_as_relaxed_extended_json(&plan, NULL));
    cr_assert(cfx_find_stage(&plan, "FETCH", &fetch));
    cr_expect(cf_has_at(&fetch, "filter.a"));
    bson_destroy(&reply);

    /* and the results are the null and the missing a, sorted by b */
    bson_t out;
    cf_run_ok_reply(client, dbname,
                    "{\"find\": \"c\", \"filter\": {\"a\": null}, \"sort\": {\"b\": 1}}", &out);
    bson_t batch;
    bson_iter_t it;
    cr_assert(cfx_doc_at(&out, "cursor.firstBatch", &batch));
    int64_t want[] = {101, 100}, n = 0;
    bson_iter_init(&it, &batch);
    while (bson_iter_next(&it)) {
        bson_t doc;
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        bson_init_static(&doc, data, len);
        cr_assert_lt(n, 2);
        cr_expect_eq(cf_int_at(&doc, "_id"), want[n]);
        n++;
    }
    cr_expect_eq(n, 2);
    bson_destroy(&out);
}

Test(explain_plans, execution_stats_count_keys_and_documents_per_stage)
{
    bson_t reply, stages, ixscan, fetch;
    cfx_explain(client, dbname, "{\"find\": \"c\", \"filter\": {\"a\": 2, \"b\": {\"$lt\": 15}}}",
                "executionStats", &reply);
    cr_expect(cf_has_at(&reply, "queryPlanner.winningPlan"));
    cr_expect(cf_has_at(&reply, "executionStats.executionSuccess"));
    cr_expect(cf_has_at(&reply, "command"));
    cr_expect(cf_has_at(&reply, "serverInfo"));
    cr_assert(cfx_doc_at(&reply, "executionStats.executionStages", &stages));
    cr_assert(cfx_find_stage(&stages, "FETCH", &fetch));
    cr_assert(cfx_find_stage(&stages, "IXSCAN", &ixscan));
    /* a = 2 and b < 15: b in {2, 6, 10, 14}; one interval, so no key past the end is read */
    cr_expect_eq(cf_int_at(&reply, "executionStats.nReturned"), 4);
    cr_expect_eq(cf_int_at(&ixscan, "keysExamined"), 4);
    cr_expect_eq(cf_int_at(&ixscan, "nReturned"), 4);
    cr_expect_eq(cf_int_at(&fetch, "docsExamined"), 4);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalKeysExamined"), 4);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 4);
    cr_expect_geq(cf_int_at(&ixscan, "seeks"), 1);
    bson_destroy(&reply);
}

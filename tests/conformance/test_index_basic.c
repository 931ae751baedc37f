/*
 * Conformance: indexes (unique, compound, partial, TTL), index conflicts, explain and the claim
 * query served from an index. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

#include <string.h>

static mongoc_client_t *client;
static char *dbname;
static mongoc_collection_t *coll;

static void
setup(void)
{
    cf_open(&client, &dbname, "core_index");
    coll = mongoc_client_get_collection(client, dbname, "c");
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll);
    cf_close(&client, &dbname);
}

TestSuite(index_basic, .init = setup, .fini = teardown);

/* Searches a winning plan (any depth of inputStage) for an IXSCAN. */
static bool
plan_uses_index(const bson_t *reply, const char *index_name)
{
    bson_iter_t it;
    const char *paths[] = {"queryPlanner.winningPlan", "queryPlanner.winningPlan.inputStage",
                           "queryPlanner.winningPlan.inputStage.inputStage",
                           "queryPlanner.winningPlan.inputStage.inputStage.inputStage"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        char stage[128], name[128];
        snprintf(stage, sizeof stage, "%s.stage", paths[i]);
        snprintf(name, sizeof name, "%s.indexName", paths[i]);
        const char *s = cf_str_at(reply, stage);
        if (s && strcmp(s, "IXSCAN") == 0) {
            const char *n = cf_str_at(reply, name);
            return n && strcmp(n, index_name) == 0;
        }
        (void)it;
    }
    return false;
}

Test(index_basic, unique_index_reports_duplicate_key_like_mongod)
{
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"k\": 1}, \"name\": \"k_1\", "
              "\"unique\": true}]}");
    cf_run_ok(client, dbname, "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"k\": \"a\"}]}");
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname,
                     "{\"insert\": \"c\", \"documents\": [{\"_id\": 2, \"k\": \"a\"}]}", &reply,
                     &error),
              "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), 11000);
    const char *msg = cf_str_at(&reply, "writeErrors.0.errmsg");
    cr_assert(msg && strstr(msg, "E11000 duplicate key error collection: ") &&
              strstr(msg, ".c index: k_1 dup key: { k: \"a\" }"), "errmsg: %s", msg);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.keyPattern.k"), 1);
    cr_assert_str_eq(cf_str_at(&reply, "writeErrors.0.keyValue.k"), "a");
    bson_destroy(&reply);
}

Test(index_basic, creating_the_same_index_twice_is_a_no_op_and_conflicts_fail)
{
    const char *spec = "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"a\": 1, \"b\": -1}, "
                       "\"name\": \"ab\"}]}";
    cf_run_ok(client, dbname, spec);
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname, spec, &reply, &error), "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "numIndexesBefore"), cf_int_at(&reply, "numIndexesAfter"));
    bson_destroy(&reply);
    cr_assert_not(cf_run(client, dbname,
                         "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"a\": 1}, "
                         "\"name\": \"ab\"}]}",
                         &reply, &error));
    cr_assert_eq(error.code, 86);
    bson_destroy(&reply);
    /* unique is part of the index signature (IndexDescriptor::compareIndexOptions): the same
     * name with another signature is IndexKeySpecsConflict, as another key pattern is. */
    cr_assert_not(
        cf_run(client, dbname,
               "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"a\": 1, \"b\": -1}, "
               "\"name\": \"ab\", \"unique\": true}]}",
               &reply, &error));
    cr_assert_eq(error.code, 86);
    bson_destroy(&reply);
}

Test(index_basic, partial_unique_index_only_checks_matching_documents)
{
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"d\": 1}, \"name\": \"d_1\", "
              "\"unique\": true, \"partialFilterExpression\": {\"d\": {\"$exists\": true}}}]}");
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"x\": 1}, {\"x\": 2}, {\"d\": 5}]}");
    bson_t reply;
    bson_error_t error;
    cr_assert(
        cf_run(client, dbname, "{\"insert\": \"c\", \"documents\": [{\"d\": 5}]}", &reply, &error),
        "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), 11000);
    bson_destroy(&reply);
}

Test(index_basic, list_and_drop_indexes)
{
    cf_run_ok(
        client, dbname,
        "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"z\": 1}, \"name\": \"z_1\"}]}");
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname, "{\"listIndexes\": \"c\"}", &reply, &error), "%s",
              error.message);
    cr_assert_str_eq(cf_str_at(&reply, "cursor.firstBatch.0.name"), "_id_");
    cr_assert_str_eq(cf_str_at(&reply, "cursor.firstBatch.1.name"), "z_1");
    bson_destroy(&reply);
    cf_run_ok(client, dbname, "{\"dropIndexes\": \"c\", \"index\": \"z_1\"}");
    cr_assert_not(
        cf_run(client, dbname, "{\"dropIndexes\": \"c\", \"index\": \"z_1\"}", &reply, &error));
    cr_assert_eq(error.code, 27);
    bson_destroy(&reply);
    cr_assert_not(
        cf_run(client, dbname, "{\"dropIndexes\": \"c\", \"index\": \"_id_\"}", &reply, &error));
    cr_assert_eq(error.code, 72);
    bson_destroy(&reply);
}

Test(index_basic, claim_query_is_served_by_the_compound_index)
{
    cf_run_ok(
        client, dbname,
        "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"status\": 1, \"priority\": -1, "
        "\"run_at\": 1}, \"name\": \"claim\"}]}");
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"status\": \"ready\", \"priority\": 1, "
              "\"run_at\": {\"$date\": \"2020-01-01T00:00:00Z\"}}]}");
    bson_t reply;
    bson_error_t error;
    const char *explain =
        "{\"explain\": {\"findAndModify\": \"c\", \"query\": {\"status\": \"ready\", \"run_at\": "
        "{\"$lte\": {\"$date\": \"2030-01-01T00:00:00Z\"}}}, \"sort\": {\"priority\": -1, "
        "\"run_at\": 1}, \"update\": [{\"$set\": {\"status\": \"processing\"}}]}, "
        "\"verbosity\": \"queryPlanner\"}";
    cr_assert(cf_run(client, dbname, explain, &reply, &error), "%s", error.message);
    cr_assert(plan_uses_index(&reply, "claim"), "%s", bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    const char *find =
        "{\"explain\": {\"find\": \"c\", \"filter\": {\"other\": 1}}, \"verbosity\": "
        "\"queryPlanner\"}";
    cr_assert(cf_run(client, dbname, find, &reply, &error), "%s", error.message);
    cr_assert_str_eq(cf_str_at(&reply, "queryPlanner.winningPlan.stage"), "COLLSCAN");
    bson_destroy(&reply);
}

Test(index_basic, sort_through_an_index_matches_the_in_memory_sort)
{
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"s\": 1, \"p\": -1, \"t\": 1}, "
              "\"name\": \"spt\"}]}");
    for (int i = 0; i < 60; i++) {
        char *cmd = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [{\"_id\": %d, \"s\": "
                                       "\"%s\", \"p\": %d, \"t\": %d}]}", i, i % 2 ? "a" : "b",
                                       (i * 7) % 5, (i * 13) % 11);
        cf_run_ok(client, dbname, cmd);
        bson_free(cmd);
    }
    /* Same query with the index and with a collection scan ($natural hint). */
#define Q "{\"find\": \"c\", \"filter\": {\"s\": \"a\", \"t\": {\"$gte\": 3}}, " \
          "\"sort\": {\"p\": -1, \"t\": 1}, \"projection\": {\"_id\": 1}, \"batchSize\": 1000"
    char *with_index = bson_strdup(Q "}");
    char *without = bson_strdup(Q ", \"hint\": {\"$natural\": 1}}");
#undef Q
    bson_t r1, r2;
    bson_error_t error;
    cr_assert(cf_run(client, dbname, with_index, &r1, &error), "%s", error.message);
    cr_assert(cf_run(client, dbname, without, &r2, &error), "%s", error.message);
    bson_iter_t a, b;
    cr_assert(bson_iter_init(&a, &r1) && bson_iter_find_descendant(&a, "cursor.firstBatch", &a));
    cr_assert(bson_iter_init(&b, &r2) && bson_iter_find_descendant(&b, "cursor.firstBatch", &b));
    uint32_t la, lb;
    const uint8_t *da, *db;
    bson_iter_array(&a, &la, &da);
    bson_iter_array(&b, &lb, &db);
    cr_assert(la == lb && memcmp(da, db, la) == 0, "index order differs from sort order");
    bson_destroy(&r1);
    bson_destroy(&r2);
    bson_free(with_index);
    bson_free(without);
}

Test(index_basic, ttl_index_is_listed_with_its_option)
{
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"at\": 1}, \"name\": \"ttl\", "
              "\"expireAfterSeconds\": 3600}]}");
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname, "{\"listIndexes\": \"c\"}", &reply, &error), "%s",
              error.message);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.1.expireAfterSeconds"), 3600);
    bson_destroy(&reply);
}

static bool
two_left(void *ctx)
{
    bson_t empty = BSON_INITIALIZER;
    return mongoc_collection_count_documents(ctx, &empty, NULL, NULL, NULL, NULL) == 2;
}

Test(index_basic, ttl_monitor_deletes_expired_documents, .timeout = 30)
{
    if (!mtest_can_spawn()) {
        cr_skip_test("needs a private test server");
    }
    mtest_server_t server;
    const char *args[] = {"--ttl-monitor-sleep-secs", "1", NULL};
    cr_assert(mtest_server_start(&server, args, 0));
    mongoc_client_t *c = mongoc_client_new(server.uri);
    mongoc_client_set_error_api(c, MONGOC_ERROR_API_VERSION_2);
    bson_error_t error;
    cr_assert(mtest_command(c, "ttl", "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": "
                            "{\"at\": 1}, \"name\": \"ttl\", \"expireAfterSeconds\": 0}]}", NULL,
                            &error), "%s", error.message);
    cr_assert(mtest_command(c, "ttl", "{\"insert\": \"c\", \"documents\": [{\"at\": {\"$date\": "
                            "\"2000-01-01T00:00:00Z\"}}, {\"at\": {\"$date\": "
                            "\"2999-01-01T00:00:00Z\"}}, {\"at\": \"not a date\"}]}", NULL,
                            &error), "%s", error.message);
    mongoc_collection_t *cc = mongoc_client_get_collection(c, "ttl", "c");
    cr_assert(mtest_wait_until(two_left, cc, 10000), "the expired document was not swept");
    mongoc_collection_destroy(cc);
    mongoc_client_destroy(c);
    mtest_server_stop(&server, false);
}

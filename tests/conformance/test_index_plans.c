/*
 * Conformance: $in and $or served from indexes. $in on index fields is an IXSCAN over point
 * intervals; a top-level $or whose branches can all use an index is an OR of index scans (a
 * branch that cannot means a COLLSCAN). Plans are checked by the stages anywhere in the winning
 * plan (mongod wraps IXSCAN in FETCH and a rooted $or in SUBPLAN). Results must be those of a
 * collection scan ({$natural: 1} hint) in every case. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

#include <stdlib.h>
#include <string.h>

#define NDOCS 60
#define MAX_IDS 256

static mongoc_client_t *client;
static char *dbname;
static mongoc_collection_t *coll;

/*
 * NDOCS documents {_id: i, a: i % 6, b: i % 10, c: i, t: "tok<i>", status, priority, run_at},
 * plus one without any of the other fields, and the indexes the tests plan with.
 */
static void
setup(void)
{
    bson_error_t error;
    cf_open(&client, &dbname, "index_plans");
    coll = mongoc_client_get_collection(client, dbname, "c");
    for (int i = 0; i < NDOCS; i++) {
        char tok[16];
        snprintf(tok, sizeof tok, "tok%d", i);
        bson_t *doc = BCON_NEW("_id", BCON_INT32(i), "a", BCON_INT32(i % 6), "b",
                               BCON_INT32(i % 10), "c", BCON_INT32(i), "t", BCON_UTF8(tok),
                               "status", BCON_UTF8(i % 3 ? "ready" : "leased"), "priority",
                               BCON_INT32(i % 4), "run_at", BCON_INT64(1000 + i % 7));
        cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "%s",
                  error.message);
        bson_destroy(doc);
    }
    bson_t *bare = BCON_NEW("_id", BCON_INT32(1000));
    cr_assert(mongoc_collection_insert_one(coll, bare, NULL, NULL, &error), "%s", error.message);
    bson_destroy(bare);
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": ["
              "{\"key\": {\"a\": 1, \"b\": 1, \"c\": 1}, \"name\": \"abc\"},"
              "{\"key\": {\"b\": -1}, \"name\": \"b_desc\"},"
              "{\"key\": {\"status\": 1, \"priority\": -1, \"run_at\": 1, \"_id\": 1}, "
              "\"name\": \"claim\"}]}");
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll);
    cf_close(&client, &dbname);
}

TestSuite(index_plans, .init = setup, .fini = teardown);

/* ---- plans ------------------------------------------------------------------------------- */

/* How many stages named stage the tree under doc holds (any depth, inputStage(s) or not). */
static int
count_stages(const bson_t *doc, const char *stage)
{
    bson_iter_t it;
    int n = 0;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "stage") == 0 && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), stage) == 0) {
            n++;
        } else if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_t sub;
            if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
                bson_iter_document(&it, &len, &data);
            } else {
                bson_iter_array(&it, &len, &data);
            }
            cr_assert(bson_init_static(&sub, data, len));
            n += count_stages(&sub, stage);
        }
    }
    return n;
}

typedef struct {
    int or_stages, ixscans, collscans;
    int64_t docs_examined, returned;
} plan_info_t;

/* Explains cmd_json (executionStats) and counts the winning plan's stages. */
static void
explain(const char *cmd_json, plan_info_t *info)
{
    char *json = bson_strdup_printf("{\"explain\": %s, \"verbosity\": \"executionStats\"}",
                                    cmd_json);
    bson_t reply, plan;
    bson_error_t error;
    bson_iter_t it;
    cr_assert(mtest_command(client, dbname, json, &reply, &error), "%s: %s", json, error.message);
    cr_assert(bson_iter_init(&it, &reply) &&
                  bson_iter_find_descendant(&it, "queryPlanner.winningPlan", &it) &&
                  BSON_ITER_HOLDS_DOCUMENT(&it), "no winningPlan in the explain of %s", cmd_json);
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    cr_assert(bson_init_static(&plan, data, len));
    info->or_stages = count_stages(&plan, "OR");
    info->ixscans = count_stages(&plan, "IXSCAN");
    info->collscans = count_stages(&plan, "COLLSCAN");
    info->docs_examined = info->returned = -1;
    if (bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "executionStats.totalDocsExamined", &it)) {
        info->docs_examined = bson_iter_as_int64(&it);
    }
    if (bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "executionStats.nReturned", &it)) {
        info->returned = bson_iter_as_int64(&it);
    }
    bson_destroy(&reply);
    bson_free(json);
}

Test(index_plans, in_on_id_is_an_index_scan_over_its_points)
{
    plan_info_t p;
    explain("{\"find\": \"c\", \"filter\": {\"_id\": {\"$in\": [3, 7, 11, 500]}}}", &p);
    cr_expect_geq(p.ixscans, 1, "IXSCAN expected");
    cr_expect_eq(p.collscans, 0, "no COLLSCAN expected");
    cr_expect_eq(p.returned, 3);
    cr_expect_eq(p.docs_examined, 3, "only the matching documents are fetched");
}

Test(index_plans, in_with_equality_on_a_compound_prefix_is_an_index_scan)
{
    plan_info_t p;
    explain("{\"find\": \"c\", \"filter\": {\"a\": {\"$in\": [1, 2]}, \"b\": {\"$in\": [1, 2, 7]}}, "
            "\"hint\": \"abc\"}",
            &p);
    cr_expect_geq(p.ixscans, 1);
    cr_expect_eq(p.collscans, 0);
    cr_expect_eq(p.docs_examined, p.returned, "every fetched document matches");
    explain("{\"find\": \"c\", \"filter\": {\"a\": {\"$in\": [1, 2]}, \"b\": 7}}", &p);
    cr_expect_geq(p.ixscans, 1);
    cr_expect_eq(p.collscans, 0);
    cr_expect_eq(p.docs_examined, p.returned, "every fetched document matches");
}

Test(index_plans, or_of_indexable_branches_is_an_or_of_index_scans)
{
    plan_info_t p;
    explain("{\"find\": \"c\", \"filter\": {\"$or\": [{\"_id\": 1, \"t\": \"tok1\"}, "
            "{\"_id\": 2, \"t\": \"tok9\"}, {\"a\": 5, \"b\": 5}]}}",
            &p);
    cr_expect_geq(p.or_stages, 1, "OR expected");
    cr_expect_geq(p.ixscans, 2, "one IXSCAN per branch expected");
    cr_expect_eq(p.collscans, 0, "no COLLSCAN expected");
    cr_expect_eq(p.returned, 3);
}

Test(index_plans, or_with_a_branch_no_index_serves_is_a_collection_scan)
{
    plan_info_t p;
    explain("{\"find\": \"c\", \"filter\": {\"$or\": [{\"_id\": 1}, {\"t\": \"tok2\"}]}}", &p);
    cr_expect_eq(p.collscans, 1, "COLLSCAN expected");
    cr_expect_eq(p.or_stages, 0);
    cr_expect_eq(p.ixscans, 0);
    cr_expect_eq(p.returned, 2);
}

Test(index_plans, ack_many_shaped_deletes_and_updates_use_indexes)
{
    static const char *const cmds[] = {
        "{\"delete\": \"c\", \"deletes\": [{\"q\": {\"$or\": [{\"_id\": 1, \"t\": \"tok1\", "
        "\"status\": \"ready\"}, {\"_id\": 2, \"t\": \"tok2\", \"status\": \"ready\"}]}, "
        "\"limit\": 0}]}",
        "{\"update\": \"c\", \"updates\": [{\"q\": {\"$or\": [{\"_id\": 1, \"t\": \"tok1\"}, "
        "{\"_id\": 2, \"t\": \"tok2\"}]}, \"u\": {\"$set\": {\"status\": \"done\"}}, "
        "\"multi\": true}]}",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        plan_info_t p;
        explain(cmds[i], &p);
        cr_expect_geq(p.or_stages, 1, "OR expected: %s", cmds[i]);
        cr_expect_geq(p.ixscans, 2, "IXSCANs expected: %s", cmds[i]);
        cr_expect_eq(p.collscans, 0, "no COLLSCAN expected: %s", cmds[i]);
    }
}

Test(index_plans, claim_many_shaped_queries_scan_the_id_index)
{
    static const char *const cmds[] = {
        "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": {\"$in\": [1, 2, 4]}, "
        "\"status\": \"ready\", \"run_at\": {\"$lte\": 2000}}, \"u\": {\"$set\": {\"status\": "
        "\"leased\"}}, \"multi\": true}]}",
        "{\"find\": \"c\", \"filter\": {\"_id\": {\"$in\": [1, 2, 4]}, \"t\": \"tok2\"}, "
        "\"sort\": {\"priority\": -1, \"run_at\": 1, \"_id\": 1}}",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        plan_info_t p;
        explain(cmds[i], &p);
        cr_expect_geq(p.ixscans, 1, "IXSCAN expected: %s", cmds[i]);
        cr_expect_eq(p.collscans, 0, "no COLLSCAN expected: %s", cmds[i]);
        cr_expect_leq(p.docs_examined, 3, "at most the 3 ids fetched: %s", cmds[i]);
    }
}

/* ---- results equal a collection scan's ---------------------------------------------------- */

/* The _ids find returns (in order), with opts_json and optionally a {$natural: 1} hint. */
static size_t
find_ids(const char *filter_json, const char *opts_json, bool natural, int64_t *ids)
{
    bson_t *filter = cf_json(filter_json);
    bson_t *opts = cf_json(opts_json ? opts_json : "{}");
    const bson_t *doc;
    bson_error_t error;
    bson_iter_t it;
    size_t n = 0;
    if (natural) {
        bson_t hint;
        BSON_APPEND_DOCUMENT_BEGIN(opts, "hint", &hint);
        BSON_APPEND_INT32(&hint, "$natural", 1);
        bson_append_document_end(opts, &hint);
    }
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        cr_assert_lt(n, MAX_IDS);
        cr_assert(bson_iter_init_find(&it, doc, "_id"));
        ids[n++] = bson_iter_as_int64(&it);
    }
    cr_assert_not(mongoc_cursor_error(cursor, &error), "%s %s: %s", filter_json,
                  opts_json ? opts_json : "", error.message);
    mongoc_cursor_destroy(cursor);
    bson_destroy(opts);
    bson_destroy(filter);
    return n;
}

static int
cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * The query returns what a collection scan returns: the same sequence when opts sort the
 * results completely, else the same set. Returns how many.
 */
static size_t
expect_same(const char *filter_json, const char *opts_json, bool ordered)
{
    int64_t got[MAX_IDS], want[MAX_IDS];
    size_t n = find_ids(filter_json, opts_json, false, got);
    size_t m = find_ids(filter_json, opts_json, true, want);
    if (!ordered) {
        qsort(got, n, sizeof *got, cmp_id);
        qsort(want, m, sizeof *want, cmp_id);
    }
    cr_assert_eq(n, m, "%s %s: %zu results, a collection scan gives %zu", filter_json,
                 opts_json ? opts_json : "", n, m);
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(got[i], want[i], "%s %s: result %zu is %lld, a collection scan gives %lld",
                     filter_json, opts_json ? opts_json : "", i, (long long)got[i],
                     (long long)want[i]);
    }
    return n;
}

Test(index_plans, in_with_duplicates_missing_values_and_mixed_numbers)
{
    cr_expect_eq(expect_same("{\"_id\": {\"$in\": [5, 5, 5.0, {\"$numberLong\": \"5\"}, 1000, "
                             "7, 99999, \"x\"]}}",
                             NULL, false),
                 3);
    cr_expect_eq(expect_same("{\"a\": {\"$in\": [2, 2.0, 40]}, \"b\": {\"$in\": [2, 8, 8]}}",
                             NULL, false),
                 4);
    cr_expect_eq(expect_same("{\"_id\": {\"$in\": []}}", NULL, false), 0);
    /* null also matches a missing field: not a point of the index, still the right answer */
    cr_expect_eq(expect_same("{\"a\": {\"$in\": [null, 0]}}", NULL, false), 11);
    expect_same("{\"t\": {\"$in\": [\"tok3\", \"tok4\", \"nope\"]}, \"a\": {\"$in\": [3, 4]}}",
                NULL, false);
    expect_same("{\"_id\": {\"$in\": [1, 2, 3, 4, 5, 6]}, \"c\": {\"$gt\": 2}, "
                "\"b\": {\"$ne\": 5}}",
                NULL, false);
}

Test(index_plans, in_with_sort_skip_and_limit)
{
    static const char *const filters[] = {
        "{\"a\": {\"$in\": [4, 1, 3]}}",
        "{\"a\": {\"$in\": [4, 1, 3]}, \"b\": {\"$in\": [9, 1, 3, 5]}}",
        "{\"a\": {\"$in\": [0, 5]}, \"b\": {\"$in\": [0, 5, 6]}, \"c\": {\"$gte\": 10, \"$lt\": 50}}",
        "{\"_id\": {\"$in\": [30, 1, 12, 7, 44, 9, 1000]}}",
        "{\"a\": 2, \"b\": {\"$in\": [2, 8]}}",
    };
    static const char *const opts[] = {
        "{\"sort\": {\"a\": 1, \"b\": 1, \"c\": 1}}",
        "{\"sort\": {\"a\": -1, \"b\": -1, \"c\": -1}, \"limit\": 5}",
        "{\"sort\": {\"a\": 1, \"b\": 1, \"c\": 1}, \"skip\": 2, \"limit\": 3}",
        "{\"sort\": {\"c\": -1}, \"limit\": 4}",
        "{\"sort\": {\"b\": 1, \"_id\": -1}, \"skip\": 1}",
        "{\"sort\": {\"_id\": -1}, \"limit\": 3}",
        "{\"sort\": {\"priority\": -1, \"run_at\": 1, \"_id\": 1}}",
        "{\"limit\": 2}",
    };
    for (size_t f = 0; f < sizeof filters / sizeof filters[0]; f++) {
        for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
            bool limit_only = strstr(opts[o], "sort") == NULL;
            if (limit_only) {
                /* which documents a limit without a sort keeps is the server's choice */
                int64_t ids[MAX_IDS], all[MAX_IDS];
                size_t n = find_ids(filters[f], opts[o], false, ids);
                size_t m = find_ids(filters[f], NULL, true, all);
                cr_expect_eq(n, m < 2 ? m : 2);
                continue;
            }
            expect_same(filters[f], opts[o], true);
        }
    }
}

Test(index_plans, or_with_overlapping_branches_returns_each_document_once)
{
    static const char *const filters[] = {
        "{\"$or\": [{\"a\": 1}, {\"a\": {\"$in\": [1, 2]}}, {\"b\": 3}, {\"_id\": 7}]}",
        "{\"$or\": [{\"_id\": {\"$in\": [1, 2, 3]}}, {\"_id\": 2, \"t\": \"tok2\"}, "
        "{\"_id\": 3, \"t\": \"wrong\"}]}",
        "{\"$or\": [{\"a\": 3, \"b\": {\"$gte\": 3}}, {\"b\": {\"$lt\": 4}}], \"c\": {\"$lt\": 40}}",
        "{\"$and\": [{\"$or\": [{\"a\": 1}, {\"b\": 2}]}, {\"status\": \"ready\"}]}",
        "{\"$or\": [{\"a\": 4}, {\"t\": \"tok5\"}]}",
        "{\"$or\": [{\"a\": 0}]}",
        "{\"$or\": [{\"a\": 2}, {\"a\": 3}, {\"a\": 2}]}",
    };
    static const char *const opts[] = {
        NULL,
        "{\"sort\": {\"c\": 1}}",
        "{\"sort\": {\"b\": -1, \"_id\": 1}, \"skip\": 2, \"limit\": 5}",
        "{\"sort\": {\"_id\": -1}, \"limit\": 1}",
    };
    for (size_t f = 0; f < sizeof filters / sizeof filters[0]; f++) {
        for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
            expect_same(filters[f], opts[o], opts[o] != NULL);
        }
    }
}

Test(index_plans, multikey_index_still_gives_the_same_results)
{
    bson_error_t error;
    bson_t *doc = cf_json("{\"_id\": 2000, \"a\": [1, 2], \"b\": 3, \"c\": 0}");
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "%s", error.message);
    bson_destroy(doc);
    expect_same("{\"a\": {\"$in\": [1, 5]}}", "{\"sort\": {\"_id\": 1}}", true);
    expect_same("{\"$or\": [{\"a\": 2}, {\"b\": 3}]}", "{\"sort\": {\"_id\": 1}}", true);
}

/* ---- writes: each matching document once, limit 1 means one ------------------------------ */

static int64_t
count(const char *filter_json)
{
    bson_t *filter = cf_json(filter_json);
    bson_error_t error;
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    cr_assert_geq(n, 0, "%s", error.message);
    bson_destroy(filter);
    return n;
}

static const char *const overlapping_or =
    "{\"$or\": [{\"a\": 1}, {\"a\": {\"$in\": [1, 2]}}, {\"b\": 3}, {\"_id\": {\"$in\": [7, 13]}}]}";

Test(index_plans, update_many_with_or_updates_each_document_once)
{
    bson_t *filter = cf_json(overlapping_or);
    bson_t *update = cf_json("{\"$inc\": {\"n\": 1}}");
    bson_t reply;
    bson_error_t error;
    int64_t expected = count(overlapping_or);
    cr_assert_gt(expected, 0);
    cr_assert(mongoc_collection_update_many(coll, filter, update, NULL, &reply, &error), "%s",
              error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &reply, "matchedCount"));
    cr_expect_eq(bson_iter_as_int64(&it), expected);
    cr_expect_eq(count("{\"n\": 1}"), expected, "every match incremented once");
    cr_expect_eq(count("{\"n\": {\"$gt\": 1}}"), 0, "no match incremented twice");
    bson_destroy(&reply);
    cr_assert(mongoc_collection_update_one(coll, filter, update, NULL, &reply, &error), "%s",
              error.message);
    cr_assert(bson_iter_init_find(&it, &reply, "modifiedCount"));
    cr_expect_eq(bson_iter_as_int64(&it), 1, "updateOne with $or updates one document");
    cr_expect_eq(count("{\"n\": 2}"), 1);
    bson_destroy(&reply);
    bson_destroy(update);
    bson_destroy(filter);
}

Test(index_plans, delete_with_or_and_in_deletes_each_match_once)
{
    bson_t *filter = cf_json(overlapping_or);
    bson_t *in = cf_json("{\"_id\": {\"$in\": [40, 41, 41, 42, 4242]}}");
    bson_t reply;
    bson_error_t error;
    bson_iter_t it;
    int64_t expected = count(overlapping_or);
    cr_assert(mongoc_collection_delete_one(coll, filter, NULL, &reply, &error), "%s",
              error.message);
    cr_assert(bson_iter_init_find(&it, &reply, "deletedCount"));
    cr_expect_eq(bson_iter_as_int64(&it), 1, "deleteOne with $or deletes one document");
    bson_destroy(&reply);
    cr_assert(mongoc_collection_delete_many(coll, filter, NULL, &reply, &error), "%s",
              error.message);
    cr_assert(bson_iter_init_find(&it, &reply, "deletedCount"));
    cr_expect_eq(bson_iter_as_int64(&it), expected - 1);
    cr_expect_eq(count(overlapping_or), 0);
    bson_destroy(&reply);
    cr_assert(mongoc_collection_delete_many(coll, in, NULL, &reply, &error), "%s", error.message);
    cr_assert(bson_iter_init_find(&it, &reply, "deletedCount"));
    cr_expect_eq(bson_iter_as_int64(&it), 3);
    bson_destroy(&reply);
    cr_expect_eq(count("{}"), NDOCS + 1 - expected - 3);
    bson_destroy(in);
    bson_destroy(filter);
}

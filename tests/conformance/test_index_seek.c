/*
 * Conformance: an index scan seeks past keys outside its bounds. With the claim index
 * {status: 1, priority: -1, run_at: 1, _id: 1} and the claim query {status: "ready", run_at:
 * {$lte: T}} sorted {priority: -1, run_at: 1, _id: 1}, the bounds are a point on status,
 * [MaxKey, MinKey] on priority (its order is the sort) and a range on run_at; when a key's
 * run_at is past T, mongod's IndexBoundsChecker (src/mongo/db/query/index_bounds.cpp,
 * checkKey) makes the scan seek to the next priority instead of reading the keys after it, so
 * keysExamined grows with the number of priorities, not with the 100,000 keys outside the
 * bounds. keysExamined counts every key the cursor returned, the one that triggered a seek
 * included (src/mongo/db/exec/index_scan.cpp). Interval strings are Interval::toString of
 * BSONElement::toString values (index_bounds.cpp, bsonelement.cpp); the explain shapes are the
 * manual's "Explain Results". Runs unchanged against mongod 6.0.
 */
#include "cf_explain.h"

#define FUTURE 100000 /* documents due in the far future */
#define DUE 10        /* documents due now */
#define PRIORITIES 5
#define BATCH 10000

static mongoc_client_t *client;
static char *dbname;
static mongoc_collection_t *coll;

/* FUTURE + DUE ready documents {status, priority: i % PRIORITIES, run_at}, inserted in batches. */
static void
fill(void)
{
    bson_t **docs = bson_malloc(sizeof *docs * BATCH);
    bson_error_t error;
    for (int done = 0; done < FUTURE + DUE;) {
        int n = 0;
        for (; n < BATCH && done < FUTURE + DUE; n++, done++) {
            int64_t run_at = done < FUTURE ? 4102444800000LL + done : 1000000LL + done;
            docs[n] = BCON_NEW("status", BCON_UTF8("ready"), "priority",
                               BCON_INT32(done % PRIORITIES), "run_at", BCON_DATE_TIME(run_at));
        }
        bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)n, NULL,
                                                NULL, &error);
        for (int i = 0; i < n; i++) {
            bson_destroy(docs[i]);
        }
        cr_assert(ok, "%s", error.message);
    }
    bson_free(docs);
}

static void
setup(void)
{
    cf_open(&client, &dbname, "index_seek");
    coll = mongoc_client_get_collection(client, dbname, "q");
    fill();
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"q\", \"indexes\": [{\"key\": {\"status\": 1, \"priority\": "
              "-1, \"run_at\": 1, \"_id\": 1}, \"name\": \"claim\"}]}");
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll);
    cf_close(&client, &dbname);
}

TestSuite(index_seek, .init = setup, .fini = teardown, .timeout = 120);

#define CLAIM_FILTER                                                                              \
    "{\"status\": \"ready\", \"run_at\": {\"$lte\": {\"$date\": {\"$numberLong\": "           \
    "\"2000000000000\"}}}}"
#define CLAIM_SORT "{\"priority\": -1, \"run_at\": 1, \"_id\": 1}"

/* One test: the 110,000-document setup runs once per test process. */
Test(index_seek, claim_scan_reads_the_due_keys_and_one_key_per_priority)
{
    bson_t reply, stages, ixscan;
    static const char *const status[] = {"[\"ready\", \"ready\"]"};
    static const char *const priority[] = {"[MaxKey, MinKey]"};
    static const char *const run_at[] = {"[new Date(-9223372036854775808), new Date(2000000000000)]"};
    static const char *const id[] = {"[MinKey, MaxKey]"};

    /* Every due document, in claim order: no SORT, keys examined bounded by the priorities. */
    cfx_explain(client, dbname,
                "{\"find\": \"q\", \"filter\": " CLAIM_FILTER ", \"sort\": " CLAIM_SORT "}",
                "executionStats", &reply);
    cr_assert(cfx_doc_at(&reply, "executionStats.executionStages", &stages));
    cr_expect_eq(cfx_count_stages(&stages, "SORT"), 0, "the index gives the sort");
    cr_assert(cfx_find_stage(&stages, "IXSCAN", &ixscan), "IXSCAN expected");
    cr_expect_str_eq(cf_str_at(&ixscan, "indexName"), "claim");
    cfx_assert_bounds(&ixscan, "status", status, 1);
    cfx_assert_bounds(&ixscan, "priority", priority, 1);
    cfx_assert_bounds(&ixscan, "run_at", run_at, 1);
    cfx_assert_bounds(&ixscan, "_id", id, 1);
    cr_expect_eq(cf_int_at(&reply, "executionStats.nReturned"), DUE);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), DUE,
                 "only the due documents are fetched");
    int64_t keys = cf_int_at(&reply, "executionStats.totalKeysExamined");
    cr_expect_geq(keys, DUE);
    cr_expect_leq(keys, 2 * PRIORITIES + DUE + 2,
                  "%lld keys examined: the scan must seek past the future keys of each priority",
                  (long long)keys);
    cr_expect_leq(cf_int_at(&ixscan, "seeks"), PRIORITIES + 2, "a seek per priority at most");
    cr_expect_eq(cf_int_at(&ixscan, "keysExamined"), keys);
    bson_destroy(&reply);

    /* The claim itself: one document, a handful of keys. */
    cfx_explain(client, dbname,
                "{\"findAndModify\": \"q\", \"query\": " CLAIM_FILTER ", \"sort\": " CLAIM_SORT
                ", \"update\": {\"$set\": {\"status\": \"processing\"}}, \"new\": true}",
                "executionStats", &reply);
    cr_assert(cfx_doc_at(&reply, "executionStats.executionStages", &stages));
    cr_expect_str_eq(cf_str_at(&stages, "stage"), "UPDATE");
    cr_expect_eq(cf_int_at(&stages, "nMatched"), 1);
    cr_expect_eq(cf_int_at(&stages, "nWouldModify"), 1);
    cr_expect_eq(cfx_count_stages(&stages, "SORT"), 0);
    cr_expect_leq(cf_int_at(&reply, "executionStats.totalKeysExamined"), 1 + 2);
    cr_expect_eq(cf_int_at(&reply, "executionStats.totalDocsExamined"), 1);
    bson_destroy(&reply);
    cr_expect_eq(mtest_count(coll, "{\"status\": \"processing\"}"), 0, "explain wrote nothing");

    /* A limit stops the scan: the first two due documents of the highest priority. */
    cfx_explain(client, dbname,
                "{\"find\": \"q\", \"filter\": " CLAIM_FILTER ", \"sort\": " CLAIM_SORT
                ", \"limit\": 2}",
                "executionStats", &reply);
    cr_expect_eq(cf_int_at(&reply, "executionStats.nReturned"), 2);
    cr_expect_leq(cf_int_at(&reply, "executionStats.totalKeysExamined"), 2 + 2);
    bson_destroy(&reply);
}

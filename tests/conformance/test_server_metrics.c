/*
 * Conformance: serverStatus metrics.document.{inserted, updated, deleted, returned} and
 * metrics.queryExecutor.{scanned, scannedObjects}: 64-bit totals since the server started,
 * increased after each operation by what it did (src/mongo/db/curop_metrics.cpp,
 * recordCurOpMetrics: "updated" counts the documents an update matched, "scanned" the index keys
 * examined, "scannedObjects" the documents examined; the manual's serverStatus page, "metrics").
 * Other suites may run against the same server at the same time, so each check is a lower
 * bound on the increase. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;
static mongoc_collection_t *coll;

static void
setup(void)
{
    cf_open(&client, &dbname, "server_metrics");
    coll = mongoc_client_get_collection(client, dbname, "m");
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"m\", \"indexes\": [{\"key\": {\"k\": 1}, \"name\": "
              "\"k_1\"}]}");
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll);
    cf_close(&client, &dbname);
}

TestSuite(server_metrics, .init = setup, .fini = teardown);

typedef struct {
    int64_t inserted, updated, deleted, returned, scanned, scanned_objects;
} metrics_t;

static int64_t
metric(const bson_t *status, const char *path)
{
    bson_iter_t it;
    cr_assert(cf_find(status, path, &it), "serverStatus has no %s", path);
    cr_expect(BSON_ITER_HOLDS_INT64(&it), "%s is a 64-bit integer", path);
    return bson_iter_as_int64(&it);
}

static void
read_metrics(metrics_t *m)
{
    bson_t status;
    cf_run_ok_reply(client, "admin", "{\"serverStatus\": 1}", &status);
    m->inserted = metric(&status, "metrics.document.inserted");
    m->updated = metric(&status, "metrics.document.updated");
    m->deleted = metric(&status, "metrics.document.deleted");
    m->returned = metric(&status, "metrics.document.returned");
    m->scanned = metric(&status, "metrics.queryExecutor.scanned");
    m->scanned_objects = metric(&status, "metrics.queryExecutor.scannedObjects");
    bson_destroy(&status);
}

Test(server_metrics, documents_written_and_returned_and_what_queries_examined)
{
    metrics_t before, after;
    read_metrics(&before);
    cf_run_ok(client, dbname,
              "{\"insert\": \"m\", \"documents\": [{\"_id\": 1, \"k\": 1}, {\"_id\": 2, \"k\": 2}, "
              "{\"_id\": 3, \"k\": 3}, {\"_id\": 4, \"k\": 4}, {\"_id\": 5, \"k\": 5}]}");
    read_metrics(&after);
    cr_expect_geq(after.inserted - before.inserted, 5);

    before = after;
    /* k in [2, 4]: 3 keys and 3 documents examined, 3 returned */
    cf_run_ok(client, dbname,
              "{\"find\": \"m\", \"filter\": {\"k\": {\"$gte\": 2, \"$lte\": 4}}, \"hint\": "
              "\"k_1\"}");
    read_metrics(&after);
    cr_expect_geq(after.returned - before.returned, 3);
    cr_expect_geq(after.scanned - before.scanned, 3);
    cr_expect_geq(after.scanned_objects - before.scanned_objects, 3);

    before = after;
    /* a collection scan examines every document and no key */
    cf_run_ok(client, dbname, "{\"find\": \"m\", \"filter\": {\"x\": 1}}");
    read_metrics(&after);
    cr_expect_geq(after.scanned_objects - before.scanned_objects, 5);

    before = after;
    /* updated counts matched documents, also those left unchanged */
    cf_run_ok(client, dbname,
              "{\"update\": \"m\", \"updates\": [{\"q\": {\"k\": {\"$lte\": 3}}, \"u\": {\"$set\": "
              "{\"k\": 1}}, \"multi\": true}]}");
    read_metrics(&after);
    cr_expect_geq(after.updated - before.updated, 3);

    before = after;
    cf_run_ok(client, dbname,
              "{\"delete\": \"m\", \"deletes\": [{\"q\": {\"k\": {\"$gte\": 4}}, \"limit\": 0}]}");
    read_metrics(&after);
    cr_expect_geq(after.deleted - before.deleted, 2);
    cr_expect_geq(after.scanned - before.scanned, 2);
}

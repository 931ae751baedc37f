/*
 * Conformance: maxTimeMS. A command given maxTimeMS is stopped once that much time has passed,
 * checked while it works (a scan checks at its yields), and fails with MaxTimeMSExpired 50
 * "operation exceeded time limit" (manual: reference/method/cursor.maxTimeMS, "Terminate Running
 * Operations"; src/mongo/db/operation_context.cpp; the code and its name: error_codes.yml). An
 * interruption fails a write command as a whole, not as a writeError (write_ops_exec.cpp,
 * handleError: "These have always failed the whole batch"). maxTimeMS 0 means no limit.
 *
 * The maxTimeAlwaysTimeOut fail point (operation_context.cpp) makes it deterministic: while it is
 * on, every command with a maxTimeMS fails its first interrupt check, even ping
 * (jstests/core/max_time_ms.js, "maxTimeAlwaysTimeOut positive test for command"). Runs unchanged
 * against mongod 6.0 with enableTestCommands.
 */
#include "cf_util.h"

#include <stdio.h>

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_fail_point_open(&client, &dbname, "max_time");
}

static void
teardown(void)
{
    cf_fail_point_close(&client, &dbname, "maxTimeAlwaysTimeOut");
}

TestSuite(max_time, .init = setup, .fini = teardown);

/* Runs json, which must fail with MaxTimeMSExpired, named so (a code produced by the command). */
static void
assert_expired(const char *json)
{
    bson_t reply;
    cr_assert_eq(cf_run_fail(client, dbname, json, &reply, NULL), 50, "%s", json);
    cr_assert_str_eq(cf_str_at(&reply, "codeName"), "MaxTimeMSExpired");
    cr_assert_not(cf_has_at(&reply, "writeErrors"));
    bson_destroy(&reply);
}

Test(max_time, always_time_out_fails_every_command_with_max_time_ms)
{
    cf_run_ok(client, dbname, "{\"insert\": \"c\", \"documents\": [{\"_id\": 1}]}");
    cf_run_ok(client, "admin",
              "{\"configureFailPoint\": \"maxTimeAlwaysTimeOut\", "
              "\"mode\": \"alwaysOn\"}");
    assert_expired("{\"ping\": 1, \"maxTimeMS\": 600000}");
    assert_expired("{\"find\": \"c\", \"filter\": {}, \"maxTimeMS\": 600000}");
    assert_expired("{\"aggregate\": \"c\", \"pipeline\": [], \"cursor\": {}, "
                   "\"maxTimeMS\": 600000}");
    assert_expired("{\"count\": \"c\", \"maxTimeMS\": 600000}");
    assert_expired("{\"distinct\": \"c\", \"key\": \"_id\", \"maxTimeMS\": 600000}");
    assert_expired("{\"update\": \"c\", \"updates\": [{\"q\": {}, \"u\": {\"$set\": {\"x\": 1}}}], "
                   "\"maxTimeMS\": 600000}");
    assert_expired("{\"delete\": \"c\", \"deletes\": [{\"q\": {}, \"limit\": 0}], "
                   "\"maxTimeMS\": 600000}");
    assert_expired("{\"findAndModify\": \"c\", \"query\": {}, \"remove\": true, "
                   "\"maxTimeMS\": 600000}");
    /* Without a deadline nothing is checked; nothing was written above. */
    cf_run_ok(client, dbname, "{\"find\": \"c\", \"filter\": {}}");
    cf_run_ok(client, dbname, "{\"find\": \"c\", \"filter\": {}, \"maxTimeMS\": 0}");
    cf_run_ok(client, "admin",
              "{\"configureFailPoint\": \"maxTimeAlwaysTimeOut\", "
              "\"mode\": \"off\"}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    cr_assert_eq(mtest_count(coll, "{\"_id\": 1, \"x\": {\"$exists\": false}}"), 1);
    mongoc_collection_destroy(coll);
    cf_run_ok(client, dbname, "{\"find\": \"c\", \"filter\": {}, \"maxTimeMS\": 600000}");
}

/* A filter that costs a 200-element $map per document and matches none (it reads a field, so
 * no optimizer can fold it to a constant). */
static char *
slow_filter(void)
{
    char list[1200];
    size_t used = 0;
    for (int i = 0; i < 200; i++) {
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%d", i ? "," : "", i);
    }
    return bson_strdup_printf("{\"$expr\": {\"$lt\": [{\"$sum\": {\"$map\": {\"input\": [%s], "
                              "\"in\": {\"$add\": [\"$$this\", \"$x\"]}}}}, 0]}}",
                              list);
}

Test(max_time, a_scan_past_its_deadline_is_stopped)
{
    enum { N = 20000 };
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "big");
    bson_t *docs[N];
    for (int i = 0; i < N; i++) {
        docs[i] = BCON_NEW("_id", BCON_INT32(i), "x", BCON_INT32(i));
    }
    bson_error_t error;
    cr_assert(mongoc_collection_insert_many(coll, (const bson_t **)docs, N, NULL, NULL, &error),
              "%s", error.message);
    for (int i = 0; i < N; i++) {
        bson_destroy(docs[i]);
    }
    char *filter = slow_filter();
    char *find =
        bson_strdup_printf("{\"find\": \"big\", \"filter\": %s, \"maxTimeMS\": 1}", filter);
    char *count =
        bson_strdup_printf("{\"count\": \"big\", \"query\": %s, \"maxTimeMS\": 1}", filter);
    char *update = bson_strdup_printf("{\"update\": \"big\", \"updates\": [{\"q\": %s, \"u\": "
                                      "{\"$set\": {\"y\": 1}}, \"multi\": true}], "
                                      "\"maxTimeMS\": 1}",
                                      filter);
    assert_expired(find);
    assert_expired(count);
    assert_expired(update);
    /* The same scan without a deadline runs to the end (and matches nothing). */
    char *unlimited = bson_strdup_printf("{\"count\": \"big\", \"query\": %s}", filter);
    bson_t reply;
    cf_run_ok_reply(client, dbname, unlimited, &reply);
    cr_assert_eq(cf_int_at(&reply, "n"), 0);
    bson_destroy(&reply);
    bson_free(unlimited);
    bson_free(update);
    bson_free(count);
    bson_free(find);
    bson_free(filter);
    mongoc_collection_destroy(coll);
}

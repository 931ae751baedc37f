/*
 * Conformance: change events mongod 6.0 reports for particular writes
 * (manual: reference/change-events; src/mongo/db/pipeline/change_stream_event_transform.cpp):
 * - a pipeline update that shortens an array: its delta (src/mongo/db/update/
 *   document_diff_calculator.cpp) resizes the array, the event lists it in
 *   updateDescription.truncatedArrays as {field, newSize}, not as an updated field
 *   (specifications: change-streams "Test array truncation").
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "cs_events");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(changestream_events, .init = setup, .fini = teardown);

Test(changestream_events, pipeline_update_truncating_an_array_reports_truncated_arrays)
{
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"array\": [\"foo\", {\"a\": "
              "\"bar\"}, 1, 2, 3]}]}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    mongoc_change_stream_t *cs = cf_watch(coll, NULL);
    cf_assert_stream_ok(cs);
    cf_run_ok(client, dbname,
              "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": [{\"$set\": "
              "{\"array\": [\"foo\", {\"a\": \"bar\"}]}}]}]}");
    bson_t *ev = cf_next_event(cs);
    char *json = bson_as_relaxed_extended_json(ev, NULL);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "update", "%s", json);
    cr_assert_str_eq(cf_str_at(ev, "updateDescription.truncatedArrays.0.field"), "array", "%s",
                     json);
    cr_assert_eq(cf_int_at(ev, "updateDescription.truncatedArrays.0.newSize"), 2, "%s", json);
    bson_iter_t it;
    cr_assert(cf_find(ev, "updateDescription.updatedFields", &it));
    bson_t updated;
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_init_static(&updated, data, len);
    cr_assert_eq(bson_count_keys(&updated), 0, "%s", json);
    bson_free(json);
    bson_destroy(ev);
    mongoc_change_stream_destroy(cs);
    mongoc_collection_destroy(coll);
}

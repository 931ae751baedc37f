/*
 * Conformance: change events mongod 6.0 reports for particular writes
 * (manual: reference/change-events; src/mongo/db/pipeline/change_stream_event_transform.cpp):
 * - a pipeline update that shortens an array: its delta (src/mongo/db/update/
 *   document_diff_calculator.cpp) resizes the array, the event lists it in
 *   updateDescription.truncatedArrays as {field, newSize}, not as an updated field
 *   (specifications: change-streams "Test array truncation").
 * - renameCollection (manual: reference/command/renameCollection, reference/change-events/
 *   rename): a rename event {ns: source, to: target}, then invalidate on a collection stream;
 *   a database stream goes on. The command: admin only (Unauthorized 13), NamespaceNotFound 26
 *   for a missing source, NamespaceExists 48 for an existing target without dropTarget,
 *   IllegalOperation 20 for a rename to itself (src/mongo/db/catalog/rename_collection.cpp).
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

static void
rename_ok(const char *from, const char *to, bool drop_target)
{
    char *cmd = bson_strdup_printf("{\"renameCollection\": \"%s.%s\", \"to\": \"%s.%s\", "
                                   "\"dropTarget\": %s}",
                                   dbname, from, dbname, to, drop_target ? "true" : "false");
    cf_run_ok(client, "admin", cmd);
    bson_free(cmd);
}

static uint32_t
rename_fails(const char *db, const char *from, const char *to)
{
    char *cmd = bson_strdup_printf("{\"renameCollection\": \"%s.%s\", \"to\": \"%s.%s\"}",
                                   dbname, from, dbname, to);
    uint32_t code = cf_run_fail(client, db, cmd, NULL, NULL);
    bson_free(cmd);
    return code;
}

Test(changestream_events, rename_gives_rename_then_invalidate_on_a_collection_stream)
{
    cf_run_ok(client, dbname, "{\"insert\": \"a\", \"documents\": [{\"_id\": 1}]}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "a");
    mongoc_change_stream_t *cs = cf_watch(coll, NULL);
    mongoc_database_t *db = mongoc_client_get_database(client, dbname);
    bson_t empty = BSON_INITIALIZER;
    mongoc_change_stream_t *dbcs = mongoc_database_watch(db, &empty, NULL);
    cf_assert_stream_ok(cs);
    cf_assert_stream_ok(dbcs);
    rename_ok("a", "b", false);
    bson_t *ev = cf_next_event(cs);
    char *json = bson_as_relaxed_extended_json(ev, NULL);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "rename", "%s", json);
    cr_assert_str_eq(cf_str_at(ev, "ns.coll"), "a", "%s", json);
    cr_assert_str_eq(cf_str_at(ev, "to.db"), dbname, "%s", json);
    cr_assert_str_eq(cf_str_at(ev, "to.coll"), "b", "%s", json);
    bson_free(json);
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "invalidate");
    bson_destroy(ev);
    ev = cf_next_event(dbcs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "rename");
    bson_destroy(ev);
    /* The documents moved with the collection. */
    mongoc_collection_t *b = mongoc_client_get_collection(client, dbname, "b");
    bson_error_t error;
    cr_assert_eq(mongoc_collection_count_documents(b, &empty, NULL, NULL, NULL, &error), 1);
    mongoc_collection_destroy(b);
    mongoc_change_stream_destroy(dbcs);
    mongoc_change_stream_destroy(cs);
    mongoc_database_destroy(db);
    mongoc_collection_destroy(coll);
}

Test(changestream_events, rename_collection_errors_and_drop_target)
{
    cf_run_ok(client, dbname, "{\"insert\": \"a\", \"documents\": [{\"_id\": 1}]}");
    cf_run_ok(client, dbname, "{\"insert\": \"b\", \"documents\": [{\"_id\": 2}, {\"_id\": 3}]}");
    cr_assert_eq(rename_fails(dbname, "a", "c"), 13);
    cr_assert_eq(rename_fails("admin", "missing", "c"), 26);
    cr_assert_eq(rename_fails("admin", "a", "b"), 48);
    cr_assert_eq(rename_fails("admin", "a", "a"), 20);
    rename_ok("a", "b", true);
    mongoc_collection_t *b = mongoc_client_get_collection(client, dbname, "b");
    bson_t empty = BSON_INITIALIZER;
    bson_error_t error;
    cr_assert_eq(mongoc_collection_count_documents(b, &empty, NULL, NULL, NULL, &error), 1,
                 "the target dropped, the source renamed");
    mongoc_collection_destroy(b);
}

/* A change stream on c with opts (JSON); asserts it opened. */
static mongoc_change_stream_t *
watch_with(mongoc_collection_t *coll, const char *opts_json)
{
    bson_t pipeline = BSON_INITIALIZER;
    bson_t *opts = cf_json(opts_json);
    mongoc_change_stream_t *cs = mongoc_collection_watch(coll, &pipeline, opts);
    cf_assert_stream_ok(cs);
    bson_destroy(opts);
    return cs;
}

/* changeStreamPreAndPostImages (manual: reference/command/collMod, changeStreams "Change Streams
 * with Document Pre- and Post-Images", mongod 6.0): with it enabled an update's event carries the
 * post-image for fullDocument: whenAvailable/required and the pre-image for
 * fullDocumentBeforeChange; without it whenAvailable gives null and required fails
 * (NoMatchingDocument 47). */
Test(changestream_events, pre_and_post_images_follow_the_collection_option)
{
    cf_run_ok(client, dbname, "{\"insert\": \"img\", \"documents\": [{\"_id\": 1}]}");
    cf_run_ok(client, dbname,
              "{\"collMod\": \"img\", \"changeStreamPreAndPostImages\": {\"enabled\": true}}");
    bson_t reply;
    cf_run_ok_reply(client, dbname, "{\"listCollections\": 1, \"filter\": {\"name\": \"img\"}}",
                    &reply);
    bson_iter_t it;
    cr_assert(cf_find(&reply, "cursor.firstBatch.0.options.changeStreamPreAndPostImages.enabled",
                      &it) &&
              bson_iter_as_bool(&it));
    bson_destroy(&reply);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "img");
    mongoc_change_stream_t *cs = watch_with(coll, "{\"fullDocument\": \"required\", "
                                                  "\"fullDocumentBeforeChange\": \"required\"}");
    cf_run_ok(client, dbname,
              "{\"update\": \"img\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": {\"$set\": {\"x\": "
              "1}}}]}");
    bson_t *ev = cf_next_event(cs);
    char *json = bson_as_relaxed_extended_json(ev, NULL);
    cr_assert_eq(cf_int_at(ev, "fullDocument.x"), 1, "%s", json);
    cr_assert(cf_has_at(ev, "fullDocumentBeforeChange._id"), "%s", json);
    cr_assert_not(cf_has_at(ev, "fullDocumentBeforeChange.x"), "%s", json);
    bson_free(json);
    bson_destroy(ev);
    mongoc_change_stream_destroy(cs);

    cf_run_ok(client, dbname,
              "{\"collMod\": \"img\", \"changeStreamPreAndPostImages\": {\"enabled\": false}}");
    cs = watch_with(coll, "{\"fullDocument\": \"whenAvailable\", "
                          "\"fullDocumentBeforeChange\": \"whenAvailable\"}");
    cf_run_ok(client, dbname,
              "{\"update\": \"img\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": {\"$set\": {\"x\": "
              "2}}}]}");
    ev = cf_next_event(cs);
    cr_assert(cf_find(ev, "fullDocument", &it) && BSON_ITER_HOLDS_NULL(&it));
    cr_assert(cf_find(ev, "fullDocumentBeforeChange", &it) && BSON_ITER_HOLDS_NULL(&it));
    bson_destroy(ev);
    mongoc_change_stream_destroy(cs);

    cs = watch_with(coll, "{\"fullDocument\": \"required\"}");
    cf_run_ok(client, dbname,
              "{\"update\": \"img\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": {\"$set\": {\"x\": "
              "3}}}]}");
    const bson_t *doc;
    bson_error_t error;
    const bson_t *err_doc;
    int64_t deadline = mtest_now_ms() + 10000;
    while (!mongoc_change_stream_next(cs, &doc) &&
           !mongoc_change_stream_error_document(cs, &error, &err_doc) &&
           mtest_now_ms() < deadline) {
    }
    cr_assert(mongoc_change_stream_error_document(cs, &error, &err_doc), "no error");
    cr_assert_eq(error.code, 47, "%d %s", error.code, error.message);
    mongoc_change_stream_destroy(cs);
    mongoc_collection_destroy(coll);
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"collMod\": \"img\", \"changeStreamPreAndPostImages\": {}}", NULL,
                             NULL),
                 40414);
}

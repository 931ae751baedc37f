/*
 * Conformance: change events for pipeline-style updates. mongod 6.0 logs an update as a delta
 * ($v: 2 oplog entry, src/mongo/db/update/update_oplog_entry_serialization.h) when the delta is
 * smaller than the document, which a change stream reports as an "update" event with an
 * updateDescription; it logs a full replacement otherwise, reported as "replace" with the
 * fullDocument (manual: "Change Events", replace event). The first test runs unchanged against
 * mongod 6.0 (a small change to a larger document is always a delta); the second starts a
 * private test server with --pipeline-updates-as-replace, which logs every pipeline update as a
 * replacement so a consumer's replace path can be tested, and is skipped when private servers
 * cannot be spawned.
 */
#include "cf_util.h"

static void
cp_suite_init(void)
{
    mongoc_init();
}

TestSuite(changestream_pipeline, .init = cp_suite_init, .timeout = 60);

/* Inserts {_id: 1, a: 1, pad: <200 chars>} and applies [{$set: {a: 2}}]; returns the event of
 * the update (the insert's event is skipped). */
static bson_t *
cp_pipeline_update_event(mongoc_collection_t *coll)
{
    bson_error_t error;
    char pad[201];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    mongoc_change_stream_t *cs = cf_watch(coll, NULL);
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1), "a", BCON_INT32(1), "pad", BCON_UTF8(pad));
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "%s", error.message);
    bson_t *filter = BCON_NEW("_id", BCON_INT32(1));
    bson_t *update = BCON_NEW("0", "{", "$set", "{", "a", BCON_INT32(2), "}", "}");
    cr_assert(mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error), "%s",
              error.message);
    bson_t *ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "insert");
    bson_destroy(ev);
    ev = cf_next_event(cs);
    bson_destroy(update);
    bson_destroy(filter);
    bson_destroy(doc);
    mongoc_change_stream_destroy(cs);
    return ev;
}

Test(changestream_pipeline, pipeline_update_is_an_update_event)
{
    mongoc_client_t *client = mtest_client_new("cs-pipeline");
    char *db = mtest_db_name("cs_pipeline");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "c");
    bson_t *ev = cp_pipeline_update_event(coll);
    char *json = bson_as_relaxed_extended_json(ev, NULL);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "update", "%s", json);
    cr_assert_eq(cf_int_at(ev, "updateDescription.updatedFields.a"), 2, "%s", json);
    cr_assert_eq(cf_int_at(ev, "documentKey._id"), 1, "%s", json);
    bson_free(json);
    bson_destroy(ev);
    mongoc_collection_destroy(coll);
    mtest_db_drop(client, db);
    bson_free(db);
    mongoc_client_destroy(client);
}

Test(changestream_pipeline, flag_makes_a_pipeline_update_a_replace_event)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    const char *args[] = {"--pipeline-updates-as-replace", NULL};
    mtest_server_t srv;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    mongoc_client_t *client = mongoc_client_new(srv.uri);
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "cp", "c");
    bson_t *ev = cp_pipeline_update_event(coll);
    char *json = bson_as_relaxed_extended_json(ev, NULL);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "replace", "%s", json);
    cr_assert_eq(cf_int_at(ev, "fullDocument.a"), 2, "the post-image: %s", json);
    cr_assert_eq(cf_int_at(ev, "fullDocument._id"), 1, "%s", json);
    cr_assert(cf_str_at(ev, "fullDocument.pad") != NULL, "the whole document: %s", json);
    cr_assert_eq(cf_int_at(ev, "documentKey._id"), 1, "%s", json);
    bson_iter_t it;
    cr_assert_not(cf_find(ev, "updateDescription", &it), "no updateDescription: %s", json);
    bson_free(json);
    bson_destroy(ev);
    /* An operator update is still an update event. */
    mongoc_change_stream_t *cs = cf_watch(coll, NULL);
    bson_error_t error;
    bson_t *filter = BCON_NEW("_id", BCON_INT32(1));
    bson_t *update = BCON_NEW("$set", "{", "a", BCON_INT32(3), "}");
    cr_assert(mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error), "%s",
              error.message);
    ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "update");
    bson_destroy(ev);
    mongoc_change_stream_destroy(cs);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mtest_server_stop(&srv, false);
}

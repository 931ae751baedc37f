/*
 * Change streams as mongod 6.0 has them, through libmongoc: event fields, fullDocument modes,
 * drop, invalidate and database streams, later stages, transactions, error codes. Where a stream
 * starts and how its cursor waits and batches are in test_changestream_cursor.c (the same suite);
 * the fixture both use is in cf_util.h. Runs unchanged against a real replica set.
 */
#include "cf_util.h"

#include <string.h>

static void
cs_suite_init(void)
{
    mongoc_init();
}

TestSuite(changestream, .init = cs_suite_init, .timeout = 60);

/* Asserts doc[path] equals the document given as JSON. */
static void
cs_assert_doc(const bson_t *doc, const char *path, const char *json)
{
    bson_t sub;
    bson_t *want = cs_json(json);
    cs_sub(doc, path, &sub);
    char *got = bson_as_canonical_extended_json(&sub, NULL);
    char *exp = bson_as_canonical_extended_json(want, NULL);
    cr_assert_str_eq(got, exp, "%s: got %s, want %s", path, got, exp);
    bson_free(got);
    bson_free(exp);
    bson_destroy(want);
}

static void
cs_assert_common(const bson_t *ev, const char *op_type, const char *db, const char *coll)
{
    bson_iter_t it;
    cr_assert_str_eq(cf_str_at(ev, "operationType"), op_type);
    cr_assert(cf_str_at(ev, "_id._data") != NULL, "resume token {_data: <string>}");
    cr_assert(bson_iter_init_find(&it, ev, "clusterTime") && BSON_ITER_HOLDS_TIMESTAMP(&it));
    cr_assert(bson_iter_init_find(&it, ev, "wallTime") && BSON_ITER_HOLDS_DATE_TIME(&it));
    if (db) {
        cr_assert_str_eq(cf_str_at(ev, "ns.db"), db);
    }
    if (coll) {
        cr_assert_str_eq(cf_str_at(ev, "ns.coll"), coll);
    } else if (db) {
        cr_assert(!cf_has_at(ev, "ns.coll"));
    }
}

Test(changestream, insert_event_fields)
{
    cs_fixture_t f;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    cf_assert_stream_ok(cs);
    cs_insert(f.coll, "{'_id': 1, 'a': 'x'}");
    bson_t *ev = cf_next_event(cs);
    cs_assert_common(ev, "insert", f.dbname, "events");
    cs_assert_doc(ev, "documentKey", "{'_id': 1}");
    cs_assert_doc(ev, "fullDocument", "{'_id': 1, 'a': 'x'}");
    cr_assert(!cf_has_at(ev, "updateDescription"));
    bson_destroy(ev);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, update_replace_delete_events)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    cs_insert(f.coll, "{'_id': 1, 'a': 1, 'b': 1}");
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    bson_t *sel = cs_json("{'_id': 1}");
    bson_t *upd = cs_json("{'$set': {'a': 2}, '$unset': {'b': ''}}");
    bson_t *repl = cs_json("{'c': 3}");
    cr_assert(mongoc_collection_update_one(f.coll, sel, upd, NULL, NULL, &error), "%s",
              error.message);
    cr_assert(mongoc_collection_replace_one(f.coll, sel, repl, NULL, NULL, &error), "%s",
              error.message);
    cr_assert(mongoc_collection_delete_one(f.coll, sel, NULL, NULL, &error), "%s", error.message);

    bson_t *ev = cf_next_event(cs);
    cs_assert_common(ev, "update", f.dbname, "events");
    cs_assert_doc(ev, "documentKey", "{'_id': 1}");
    cs_assert_doc(ev, "updateDescription.updatedFields", "{'a': 2}");
    cs_assert_doc(ev, "updateDescription.removedFields", "{'0': 'b'}");
    cs_assert_doc(ev, "updateDescription.truncatedArrays", "{}");
    cr_assert(!cf_has_at(ev, "fullDocument"), "no fullDocument on updates by default");
    bson_destroy(ev);

    ev = cf_next_event(cs);
    cs_assert_common(ev, "replace", f.dbname, "events");
    cs_assert_doc(ev, "documentKey", "{'_id': 1}");
    cs_assert_doc(ev, "fullDocument", "{'_id': 1, 'c': 3}");
    bson_destroy(ev);

    ev = cf_next_event(cs);
    cs_assert_common(ev, "delete", f.dbname, "events");
    cs_assert_doc(ev, "documentKey", "{'_id': 1}");
    cr_assert(!cf_has_at(ev, "fullDocument"));
    bson_destroy(ev);

    bson_destroy(sel);
    bson_destroy(upd);
    bson_destroy(repl);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, full_document_update_lookup)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    cs_insert(f.coll, "{'_id': 7, 'n': 1}");
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, "{'fullDocument': 'updateLookup'}");
    bson_t *sel = cs_json("{'_id': 7}");
    bson_t *upd = cs_json("{'$inc': {'n': 1}}");
    cr_assert(mongoc_collection_update_one(f.coll, sel, upd, NULL, NULL, &error), "%s",
              error.message);
    bson_t *ev = cf_next_event(cs);
    cs_assert_common(ev, "update", f.dbname, "events");
    cs_assert_doc(ev, "fullDocument", "{'_id': 7, 'n': 2}");
    cs_assert_doc(ev, "updateDescription.updatedFields", "{'n': 2}");
    bson_destroy(ev);
    bson_destroy(sel);
    bson_destroy(upd);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, update_lookup_of_a_deleted_document_is_null)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    cs_insert(f.coll, "{'_id': 8, 'n': 1}");
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, "{'fullDocument': 'updateLookup'}");
    bson_t *sel = cs_json("{'_id': 8}");
    bson_t *upd = cs_json("{'$inc': {'n': 1}}");
    cr_assert(mongoc_collection_update_one(f.coll, sel, upd, NULL, NULL, &error), "%s",
              error.message);
    cr_assert(mongoc_collection_delete_one(f.coll, sel, NULL, NULL, &error), "%s", error.message);
    bson_t *ev = cf_next_event(cs);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, ev, "fullDocument") && BSON_ITER_HOLDS_NULL(&it),
              "the document is gone by lookup time: fullDocument null");
    bson_destroy(ev);
    bson_destroy(sel);
    bson_destroy(upd);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, drop_then_invalidate_ends_the_stream)
{
    cs_fixture_t f;
    bson_error_t error;
    const bson_t *doc;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    cs_insert(f.coll, "{'_id': 1}");
    cr_assert(mongoc_collection_drop(f.coll, &error), "%s", error.message);
    bson_t *ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "insert");
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cs_assert_common(ev, "drop", f.dbname, "events");
    cr_assert(!cf_has_at(ev, "documentKey"));
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "invalidate");
    cr_assert(!cf_has_at(ev, "ns"));
    bson_destroy(ev);
    /* The cursor is closed: no more events, and no error. */
    cr_assert(!mongoc_change_stream_next(cs, &doc));
    cf_assert_stream_ok(cs);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

Test(changestream, database_stream_sees_all_collections_and_drop_database)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    bson_t *pipeline = cs_json("{'pipeline': []}");
    bson_t *opts = cs_json("{'maxAwaitTimeMS': 300}");
    mongoc_change_stream_t *cs = mongoc_database_watch(f.db, pipeline, opts);
    mongoc_collection_t *other = mongoc_database_get_collection(f.db, "other");
    cs_insert(f.coll, "{'_id': 1}");
    cs_insert(other, "{'_id': 2}");
    bson_t *ev = cf_next_event(cs);
    cs_assert_common(ev, "insert", f.dbname, "events");
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cs_assert_common(ev, "insert", f.dbname, "other");
    bson_destroy(ev);
    cr_assert(mongoc_database_drop(f.db, &error), "%s", error.message);
    /* mongod drops each collection (a drop event each), then the database. */
    int drops = 0;
    for (;;) {
        ev = cf_next_event(cs);
        if (strcmp(cf_str_at(ev, "operationType"), "drop") != 0) {
            break;
        }
        drops++;
        bson_destroy(ev);
    }
    cr_assert_eq(drops, 2);
    cs_assert_common(ev, "dropDatabase", f.dbname, NULL);
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cr_assert_str_eq(cf_str_at(ev, "operationType"), "invalidate");
    bson_destroy(ev);
    mongoc_collection_destroy(other);
    mongoc_change_stream_destroy(cs);
    bson_destroy(pipeline);
    bson_destroy(opts);
    cs_teardown(&f);
}

Test(changestream, match_and_project_after_change_stream)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(
        f.coll,
        "{'pipeline': [{'$match': {'operationType': 'insert', 'fullDocument.kind': 'wanted'}},"
        " {'$project': {'fullDocument.secret': 0}}]}",
        NULL);
    cf_assert_stream_ok(cs);
    cs_insert(f.coll, "{'_id': 1, 'kind': 'other'}");
    cs_insert(f.coll, "{'_id': 2, 'kind': 'wanted', 'secret': 's'}");
    bson_t *sel = cs_json("{'_id': 2}");
    cr_assert(mongoc_collection_delete_one(f.coll, sel, NULL, NULL, &error), "%s", error.message);
    cs_insert(f.coll, "{'_id': 3, 'kind': 'wanted'}");
    bson_t *ev = cf_next_event(cs);
    cs_assert_doc(ev, "fullDocument", "{'_id': 2, 'kind': 'wanted'}");
    bson_destroy(ev);
    ev = cf_next_event(cs);
    cr_assert_eq(cf_int_at(ev, "documentKey._id"), 3);
    bson_destroy(ev);
    bson_destroy(sel);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

/* ---- transactions ------------------------------------------------------------------------- */

static void
cs_txn_insert(mongoc_client_session_t *s, mongoc_collection_t *coll, const char *json)
{
    bson_error_t error;
    bson_t opts = BSON_INITIALIZER;
    cr_assert(mongoc_client_session_append(s, &opts, &error), "%s", error.message);
    bson_t *doc = cs_json(json);
    cr_assert(mongoc_collection_insert_one(coll, doc, &opts, NULL, &error), "txn insert: %s",
              error.message);
    bson_destroy(doc);
    bson_destroy(&opts);
}

Test(changestream, transaction_events_appear_at_commit_only)
{
    cs_fixture_t f;
    bson_error_t error;
    cs_setup(&f);
    mongoc_change_stream_t *cs = cs_watch(f.coll, NULL, NULL);
    cf_assert_stream_ok(cs);
    mongoc_client_session_t *s = mongoc_client_start_session(f.client, NULL, &error);
    cr_assert(s != NULL, "%s", error.message);

    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    cs_txn_insert(s, f.coll, "{'_id': 1}");
    cs_txn_insert(s, f.coll, "{'_id': 2}");
    bson_t *early = cf_next_event_within(cs, 600);
    cr_assert(early == NULL, "no event before commit");
    cr_assert(mongoc_client_session_commit_transaction(s, NULL, &error), "%s", error.message);
    for (int id = 1; id <= 2; id++) {
        bson_t *ev = cf_next_event(cs);
        cs_assert_common(ev, "insert", f.dbname, "events");
        cr_assert_eq(cf_int_at(ev, "documentKey._id"), id);
        cr_assert(cf_has_at(ev, "lsid") && cf_has_at(ev, "txnNumber"), "transaction events: lsid");
        bson_destroy(ev);
    }

    /* An aborted transaction leaves no event: the next one seen is a later plain insert. */
    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    cs_txn_insert(s, f.coll, "{'_id': 3}");
    cr_assert(mongoc_client_session_abort_transaction(s, &error), "%s", error.message);
    cs_insert(f.coll, "{'_id': 4}");
    bson_t *ev = cf_next_event(cs);
    cr_assert_eq(cf_int_at(ev, "documentKey._id"), 4);
    cr_assert(!cf_has_at(ev, "lsid"));
    bson_destroy(ev);

    mongoc_client_session_destroy(s);
    mongoc_change_stream_destroy(cs);
    cs_teardown(&f);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void
cs_assert_aggregate_fails(cs_fixture_t *f, const char *pipeline_json, uint32_t code)
{
    char *json =
        bson_strdup_printf("{'aggregate': 'events', 'cursor': {}, 'pipeline': %s}", pipeline_json);
    bson_t *cmd = cs_json(json);
    bson_error_t error;
    bson_t reply;
    bool ok = mongoc_database_command_simple(f->db, cmd, NULL, &reply, &error);
    cr_assert(!ok, "%s succeeded", json);
    cr_assert_eq(error.code, code, "%s: code %u (%s), want %u", json, error.code, error.message,
                 code);
    bson_destroy(&reply);
    bson_destroy(cmd);
    bson_free(json);
}

Test(changestream, invalid_requests_fail_as_mongod)
{
    cs_fixture_t f;
    cs_setup(&f);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'bogus': 1}}]", 40415);
    cs_assert_aggregate_fails(&f, "[{'$match': {}}, {'$changeStream': {}}]", 40602);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {}}, {'$group': {'_id': null}}]", 20);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'fullDocument': 'bogus'}}]", 2);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'resumeAfter': {'_data': 'zz'}}}]", 9);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'resumeAfter': {'_data': 5}}}]", 40647);
    cs_assert_aggregate_fails(&f, "[{'$changeStream': {'resumeAfter': {'_data': ''}}}]", 40649);
    cs_teardown(&f);
}

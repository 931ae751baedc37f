/*
 * Conformance: collMod changing a TTL index's expireAfterSeconds (by key pattern and by name),
 * turning a single-field index into a TTL index, mongod 6.0's errors, the change stream's
 * "modify" event, (on a private server) the change surviving kill -9, and a validator applied.
 * An option a server does not apply must be refused, never ignored (manual:
 * reference/command/collMod; mongod: src/mongo/db/catalog/coll_mod.cpp). Runs unchanged against
 * mongod 6.0.
 */
#include "cf_util.h"

#include <dirent.h>
#include <string.h>
#include <unistd.h>

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "collmod");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(collmod, .init = setup, .fini = teardown, .timeout = 60);

/* The expireAfterSeconds listIndexes shows for index `name` of coll; -1 when it has none. */
static int64_t
ttl_of(mongoc_client_t *cl, const char *db, const char *name)
{
    int64_t secs = -2;
    const bson_t *spec;
    mongoc_collection_t *coll = mongoc_client_get_collection(cl, db, "c");
    mongoc_cursor_t *cursor = mongoc_collection_find_indexes_with_opts(coll, NULL);
    while (mongoc_cursor_next(cursor, &spec)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, spec, "name") &&
            strcmp(bson_iter_utf8(&it, NULL), name) == 0) {
            secs =
                bson_iter_init_find(&it, spec, "expireAfterSeconds") ? bson_iter_as_int64(&it) : -1;
        }
    }
    bson_error_t error;
    cr_assert(!mongoc_cursor_error(cursor, &error), "listIndexes: %s", error.message);
    cr_assert(secs != -2, "no index %s", name);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    return secs;
}

Test(collmod, changes_ttl_by_key_pattern_and_by_name)
{
    bson_t reply;
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"t\": 1}, \"name\": \"t_1\", "
              "\"expireAfterSeconds\": 60}]}");
    cf_run_ok_reply(client, dbname,
                    "{\"collMod\": \"c\", \"index\": {\"keyPattern\": {\"t\": 1}, "
                    "\"expireAfterSeconds\": 120}}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "expireAfterSeconds_old"), 60);
    cr_assert_eq(cf_int_at(&reply, "expireAfterSeconds_new"), 120);
    bson_destroy(&reply);
    cr_assert_eq(ttl_of(client, dbname, "t_1"), 120);

    cf_run_ok_reply(
        client, dbname,
        "{\"collMod\": \"c\", \"index\": {\"name\": \"t_1\", \"expireAfterSeconds\": 0}}", &reply);
    cr_assert_eq(cf_int_at(&reply, "expireAfterSeconds_old"), 120);
    cr_assert_eq(cf_int_at(&reply, "expireAfterSeconds_new"), 0);
    bson_destroy(&reply);
    cr_assert_eq(ttl_of(client, dbname, "t_1"), 0);
}

Test(collmod, single_field_index_becomes_ttl)
{
    bson_t reply;
    cf_run_ok(
        client, dbname,
        "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"a\": 1}, \"name\": \"a_1\"}]}");
    cr_assert_eq(ttl_of(client, dbname, "a_1"), -1);
    cf_run_ok_reply(
        client, dbname,
        "{\"collMod\": \"c\", \"index\": {\"name\": \"a_1\", \"expireAfterSeconds\": 10}}", &reply);
    cr_assert(!cf_has_at(&reply, "expireAfterSeconds_old"), "there was no TTL before");
    cr_assert_eq(cf_int_at(&reply, "expireAfterSeconds_new"), 10);
    bson_destroy(&reply);
    cr_assert_eq(ttl_of(client, dbname, "a_1"), 10);
}

Test(collmod, errors_as_mongod)
{
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"collMod\": \"missing\", \"index\": {\"name\": \"x_1\", "
                             "\"expireAfterSeconds\": 5}}",
                             NULL, NULL),
                 26, "NamespaceNotFound");
    cf_run_ok(
        client, dbname,
        "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"t\": 1}, \"name\": \"t_1\", "
        "\"expireAfterSeconds\": 60}, {\"key\": {\"a\": 1, \"b\": 1}, \"name\": \"a_1_b_1\"}]}");
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"collMod\": \"c\", \"index\": {\"name\": \"nope\", "
                             "\"expireAfterSeconds\": 5}}",
                             NULL, NULL),
                 27, "IndexNotFound by name");
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"collMod\": \"c\", \"index\": {\"keyPattern\": {\"nope\": 1}, "
                             "\"expireAfterSeconds\": 5}}",
                             NULL, NULL),
                 27, "IndexNotFound by key pattern");
    static const char *const invalid_options[] = {
        /* both, neither, nothing to change */
        "{\"collMod\": \"c\", \"index\": {\"name\": \"t_1\", \"keyPattern\": {\"t\": 1}, "
        "\"expireAfterSeconds\": 5}}",
        "{\"collMod\": \"c\", \"index\": {\"expireAfterSeconds\": 5}}",
        "{\"collMod\": \"c\", \"index\": {\"name\": \"t_1\"}}",
        /* out of range */
        "{\"collMod\": \"c\", \"index\": {\"name\": \"t_1\", \"expireAfterSeconds\": -1}}",
        "{\"collMod\": \"c\", \"index\": {\"name\": \"t_1\", \"expireAfterSeconds\": "
        "{\"$numberLong\": \"9223372036854775807\"}}}",
        /* no TTL on _id_ nor on a compound index */
        "{\"collMod\": \"c\", \"index\": {\"name\": \"_id_\", \"expireAfterSeconds\": 5}}",
        "{\"collMod\": \"c\", \"index\": {\"name\": \"a_1_b_1\", \"expireAfterSeconds\": 5}}",
    };
    for (size_t i = 0; i < sizeof invalid_options / sizeof invalid_options[0]; i++) {
        cr_assert_eq(cf_run_fail(client, dbname, invalid_options[i], NULL, NULL), 72,
                     "InvalidOptions: %s", invalid_options[i]);
    }
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"collMod\": \"c\", \"index\": {\"name\": \"t_1\", "
                                "\"expireAfterSeconds\": \"5\"}}",
                                NULL, NULL);
    cr_assert(code == 14 || code == 72, "a string expireAfterSeconds: got %u", code);
    code = cf_run_fail(client, dbname, "{\"collMod\": \"c\", \"noSuchOption\": 1}", NULL, NULL);
    cr_assert(code == 40415 || code == 72, "an unknown option: got %u", code);
    code = cf_run_fail(
        client, dbname,
        "{\"collMod\": \"c\", \"index\": {\"name\": \"t_1\", \"expireAfterSeconds\": 5, "
        "\"noSuchField\": 1}}",
        NULL, NULL);
    cr_assert(code == 40415 || code == 72, "an unknown index field: got %u", code);
    cr_assert_eq(ttl_of(client, dbname, "t_1"), 60, "nothing changed");
}

/* collMod's validator is applied (mongod 3.2+; manual: reference/command/collMod, "validator",
 * and core/schema-validation): a document that fails it is refused with
 * DocumentValidationFailure 121. A server that refused the option would fail here too: the
 * refusal was only acceptable before the server had validators (test_validation.c has the rest). */
Test(collmod, validator_is_applied)
{
    bson_error_t error;
    cf_run_ok(client, dbname, "{\"create\": \"c\"}");
    cf_run_ok(client, dbname, "{\"collMod\": \"c\", \"validator\": {\"n\": {\"$type\": \"int\"}}}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    bson_t *doc = BCON_NEW("n", BCON_UTF8("not an int"));
    cr_assert(!mongoc_collection_insert_one(coll, doc, NULL, NULL, &error),
              "the validator is in effect");
    cr_assert_eq(error.code, 121, "DocumentValidationFailure, got %u", error.code);
    bson_destroy(doc);
    mongoc_collection_destroy(coll);
}

/* The modify event (showExpandedEvents, mongod 6.0) carries the index option as given. */
Test(collmod, change_stream_reports_modify)
{
    bson_t reply;
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"t\": 1}, \"name\": \"t_1\", "
              "\"expireAfterSeconds\": 60}]}");
    cf_run_ok_reply(
        client, dbname,
        "{\"aggregate\": \"c\", \"pipeline\": [{\"$changeStream\": {\"showExpandedEvents\": "
        "true}}], \"cursor\": {}}",
        &reply);
    int64_t id = cf_int_at(&reply, "cursor.id");
    bson_destroy(&reply);
    cf_run_ok(client, dbname,
              "{\"collMod\": \"c\", \"index\": {\"name\": \"t_1\", \"expireAfterSeconds\": 30}}");
    bson_t *ev = cf_next_event_raw(client, dbname, "c", id);
    bson_iter_t it;
    char *json = bson_as_relaxed_extended_json(ev, NULL);
    cr_assert(bson_iter_init_find(&it, ev, "operationType") &&
                  strcmp(bson_iter_utf8(&it, NULL), "modify") == 0,
              "a modify event: %s", json);
    cr_assert_eq(cf_int_at(ev, "operationDescription.index.expireAfterSeconds"), 30, "%s", json);
    bson_free(json);
    bson_destroy(ev);
    bson_t *kill = BCON_NEW("killCursors", BCON_UTF8("c"), "cursors", "[", BCON_INT64(id), "]");
    cr_assert(mongoc_client_command_simple(client, dbname, kill, NULL, NULL, NULL));
    bson_destroy(kill);
}


Test(collmod, change_survives_kill_9)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    char *dir = mtest_tmpdir("collmod");
    const char *args[] = {"--dbpath", dir, NULL};
    mtest_server_t srv;
    bson_error_t error;
    bson_t reply;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    mongoc_client_t *cl = mtest_client_for(srv.uri, NULL);
    cr_assert(mtest_command(cl, "cm",
                            "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"t\": "
                            "1}, \"name\": \"t_1\", \"expireAfterSeconds\": 60}]}",
                            &reply, &error),
              "%s", error.message);
    bson_destroy(&reply);
    cr_assert(mtest_command(cl, "cm",
                            "{\"collMod\": \"c\", \"index\": {\"keyPattern\": {\"t\": "
                            "1}, \"expireAfterSeconds\": 7}}",
                            &reply, &error),
              "%s", error.message);
    bson_destroy(&reply);
    mongoc_client_destroy(cl);
    mtest_server_stop(&srv, true);

    cr_assert(mtest_server_start(&srv, args, 0), "restart on the same --dbpath");
    cl = mongoc_client_new(srv.uri);
    cr_assert_eq(ttl_of(cl, "cm", "t_1"), 7, "the collMod was journaled");
    mongoc_client_destroy(cl);
    mtest_server_stop(&srv, false);
    mtest_tmpdir_remove(dir);
}

/*
 * Conformance: collection validators. The manual's "Schema Validation" pages (Specify
 * Validation With Query Operators; Specify Validation Level for Existing Documents; Choose How
 * to Handle Invalid Documents; Bypass Schema Validation) and mongod 6.0's
 * src/mongo/db/catalog/collection_impl.cpp (checkValidation, parseValidator) and
 * src/mongo/db/catalog/coll_mod.cpp: create and collMod take validator, validationLevel
 * (strict | moderate | off) and validationAction (error | warn), listCollections shows them in
 * options; a write that fails validation is DocumentValidationFailure 121; moderate does not
 * check updates of documents that already fail; bypassDocumentValidation skips the check. The
 * options are part of the catalog and survive a restart. Runs unchanged against mongod 6.0
 * except the restart test, which needs a private test server.
 */
#include "cf_util.h"

#define POISON_VALIDATOR "{\"payload.kind\": {\"$ne\": \"poison\"}}"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "validation");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(validation, .init = setup, .fini = teardown, .timeout = 60);

static uint32_t
run_code(const char *json, char *msg, size_t msg_size)
{
    bson_t reply;
    bson_error_t error;
    bool ok = cf_run(client, dbname, json, &reply, &error);
    if (msg) {
        snprintf(msg, msg_size, "%s", ok ? "" : error.message);
    }
    bson_destroy(&reply);
    return ok ? 0 : error.code;
}

/* The code of the first writeError of a write command (0 when none). */
static int64_t
write_code(const char *json)
{
    bson_t reply;
    bson_error_t error;
    bson_iter_t it;
    cr_assert(cf_run(client, dbname, json, &reply, &error), "%s: %s", json, error.message);
    int64_t code = cf_find(&reply, "writeErrors.0.code", &it) ? bson_iter_as_int64(&it) : 0;
    bson_destroy(&reply);
    return code;
}

/* The options listCollections shows for collection c, as canonical JSON (caller frees). */
static char *
options_json(mongoc_client_t *cl, const char *db)
{
    bson_t reply;
    bson_error_t error;
    bson_iter_t it;
    cr_assert(cf_run(cl, db, "{\"listCollections\": 1, \"filter\": {\"name\": \"c\"}}", &reply,
                     &error),
              "%s", error.message);
    cr_assert(cf_find(&reply, "cursor.firstBatch.0.options", &it) && BSON_ITER_HOLDS_DOCUMENT(&it),
              "%s", bson_as_relaxed_extended_json(&reply, NULL));
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t opts;
    bson_init_static(&opts, data, len);
    char *json = bson_as_canonical_extended_json(&opts, NULL);
    bson_destroy(&reply);
    return json;
}

static void
assert_options(mongoc_client_t *cl, const char *db, const char *expected_json)
{
    bson_t *expected = cf_json(expected_json);
    char *want = bson_as_canonical_extended_json(expected, NULL);
    char *got = options_json(cl, db);
    cr_assert_str_eq(got, want);
    bson_free(got);
    bson_free(want);
    bson_destroy(expected);
}

Test(validation, create_shows_the_options_in_list_collections)
{
    cf_run_ok(client, dbname,
              "{\"create\": \"c\", \"validationAction\": \"error\", \"validator\": "
              POISON_VALIDATOR ", \"validationLevel\": \"moderate\"}");
    /* CollectionOptions::toBSON order: validator, validationLevel, validationAction. */
    assert_options(client, dbname,
                   "{\"validator\": " POISON_VALIDATOR ", \"validationLevel\": \"moderate\", "
                   "\"validationAction\": \"error\"}");
    cf_run_ok(client, dbname, "{\"collMod\": \"c\", \"validationLevel\": \"strict\"}");
    assert_options(client, dbname,
                   "{\"validator\": " POISON_VALIDATOR ", \"validationLevel\": \"strict\", "
                   "\"validationAction\": \"error\"}");
}

Test(validation, invalid_options_are_refused_as_mongod)
{
    char msg[512];
    uint32_t code = run_code("{\"create\": \"c\", \"validationLevel\": \"sometimes\"}", msg,
                             sizeof msg);
    cr_assert_eq(code, 2, "BadValue, got %u: %s", code, msg);
    cr_assert_str_eq(msg, "Enumeration value 'sometimes' for field 'create.validationLevel' is "
                          "not a valid value.");
    code = run_code("{\"create\": \"c\", \"validationAction\": 1}", msg, sizeof msg);
    cr_assert_eq(code, 14, "TypeMismatch, got %u: %s", code, msg);
    code = run_code("{\"create\": \"c\", \"validator\": \"x\"}", msg, sizeof msg);
    cr_assert_eq(code, 14, "TypeMismatch, got %u: %s", code, msg);
    code = run_code("{\"create\": \"c\", \"validator\": {\"a\": {\"$foo\": 1}}}", msg, sizeof msg);
    cr_assert_eq(code, 2, "BadValue, got %u: %s", code, msg);
    cf_assert_contains(msg, "unknown operator: $foo");
    cf_run_ok(client, dbname, "{\"create\": \"c\"}");
    code = run_code("{\"collMod\": \"c\", \"validationAction\": \"ignore\"}", msg, sizeof msg);
    cr_assert_eq(code, 2, "BadValue, got %u: %s", code, msg);
    cr_assert_str_eq(msg, "Enumeration value 'ignore' for field 'collMod.validationAction' is "
                          "not a valid value.");
}

Test(validation, strict_checks_inserts_and_updates)
{
    cf_run_ok(client, dbname, "{\"create\": \"c\", \"validator\": " POISON_VALIDATOR "}");
    cr_assert_eq(write_code("{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"payload\": "
                            "{\"kind\": \"poison\"}}]}"),
                 121);
    cr_assert_eq(write_code("{\"insert\": \"c\", \"documents\": [{\"_id\": 2, \"payload\": "
                            "{\"kind\": \"ok\"}}]}"),
                 0);
    cr_assert_eq(write_code("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 2}, \"u\": "
                            "{\"$set\": {\"payload.kind\": \"poison\"}}}]}"),
                 121);
    cr_assert_eq(write_code("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 2}, \"u\": "
                            "[{\"$set\": {\"payload\": {\"kind\": \"poison\"}}}]}]}"),
                 121, "a pipeline update too");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    cr_assert_eq(mtest_count(coll, "{\"payload.kind\": \"poison\"}"), 0);
    mongoc_collection_destroy(coll);
}

Test(validation, moderate_leaves_documents_that_already_fail_unchecked)
{
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": \"p\", \"payload\": {\"kind\": "
              "\"poison\"}}, {\"_id\": \"g\", \"payload\": {\"kind\": \"ok\"}}]}");
    cf_run_ok(client, dbname,
              "{\"collMod\": \"c\", \"validator\": " POISON_VALIDATOR ", \"validationLevel\": "
              "\"moderate\"}");
    /* The poisoned document already fails: its updates are not validated. */
    cr_assert_eq(write_code("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": \"p\"}, \"u\": "
                            "{\"$set\": {\"n\": 1}}}]}"),
                 0);
    /* A valid document may not become invalid, and no invalid insert. */
    cr_assert_eq(write_code("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": \"g\"}, \"u\": "
                            "{\"$set\": {\"payload.kind\": \"poison\"}}}]}"),
                 121);
    cr_assert_eq(write_code("{\"insert\": \"c\", \"documents\": [{\"_id\": \"x\", \"payload\": "
                            "{\"kind\": \"poison\"}}]}"),
                 121);
    /* strict checks every update. */
    cf_run_ok(client, dbname, "{\"collMod\": \"c\", \"validationLevel\": \"strict\"}");
    cr_assert_eq(write_code("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": \"p\"}, \"u\": "
                            "{\"$set\": {\"n\": 2}}}]}"),
                 121);
}

Test(validation, level_off_and_action_warn_let_writes_through)
{
    cf_run_ok(client, dbname,
              "{\"create\": \"c\", \"validator\": " POISON_VALIDATOR ", \"validationLevel\": "
              "\"off\"}");
    cr_assert_eq(write_code("{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"payload\": "
                            "{\"kind\": \"poison\"}}]}"),
                 0, "off");
    cf_run_ok(client, dbname,
              "{\"collMod\": \"c\", \"validationLevel\": \"strict\", \"validationAction\": "
              "\"warn\"}");
    cr_assert_eq(write_code("{\"insert\": \"c\", \"documents\": [{\"_id\": 2, \"payload\": "
                            "{\"kind\": \"poison\"}}]}"),
                 0, "warn");
    cf_run_ok(client, dbname, "{\"collMod\": \"c\", \"validationAction\": \"error\"}");
    cr_assert_eq(write_code("{\"insert\": \"c\", \"documents\": [{\"_id\": 3, \"payload\": "
                            "{\"kind\": \"poison\"}}]}"),
                 121, "error");
}

Test(validation, bypass_document_validation_skips_the_check)
{
    char msg[512];
    cf_run_ok(client, dbname, "{\"create\": \"c\", \"validator\": " POISON_VALIDATOR "}");
    cr_assert_eq(write_code("{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"payload\": "
                            "{\"kind\": \"ok\"}}]}"),
                 0);
    uint32_t code = run_code("{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"update\": "
                             "{\"$set\": {\"payload.kind\": \"poison\"}}}",
                             msg, sizeof msg);
    cr_assert_eq(code, 121, "DocumentValidationFailure, got %u: %s", code, msg);
    cf_assert_contains(msg, "Document failed validation");
    cr_assert_eq(run_code("{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"update\": "
                          "{\"$set\": {\"payload.kind\": \"poison\"}}, "
                          "\"bypassDocumentValidation\": true}",
                          msg, sizeof msg),
                 0, "%s", msg);
    cr_assert_eq(write_code("{\"insert\": \"c\", \"documents\": [{\"_id\": 2, \"payload\": "
                            "{\"kind\": \"poison\"}}], \"bypassDocumentValidation\": true}"),
                 0);
    cr_assert_eq(write_code("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 2}, \"u\": "
                            "{\"$set\": {\"n\": 1}}}], \"bypassDocumentValidation\": true}"),
                 0);
    cr_assert_eq(write_code("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 2}, \"u\": "
                            "{\"$set\": {\"n\": 2}}}]}"),
                 121, "without bypass the update of an invalid document fails (strict)");
}

Test(validation, options_survive_kill_9)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    char *dir = mtest_tmpdir("validation");
    const char *args[] = {"--dbpath", dir, NULL};
    mtest_server_t srv;
    bson_t reply;
    bson_error_t error;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    mongoc_client_t *cl = mtest_client_for(srv.uri, NULL);
    cf_run_ok(cl, "v", "{\"create\": \"c\", \"validator\": " POISON_VALIDATOR "}");
    cf_run_ok(cl, "v", "{\"collMod\": \"c\", \"validationLevel\": \"moderate\"}");
    mongoc_client_destroy(cl);
    mtest_server_stop(&srv, true);

    cr_assert(mtest_server_start(&srv, args, 0), "restart on the same --dbpath");
    cl = mtest_client_for(srv.uri, NULL);
    assert_options(cl, "v",
                   "{\"validator\": " POISON_VALIDATOR ", \"validationLevel\": \"moderate\"}");
    cr_assert(cf_run(cl, "v",
                     "{\"insert\": \"c\", \"documents\": [{\"payload\": {\"kind\": \"poison\"}}]}",
                     &reply, &error),
              "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), 121, "the validator is in force");
    bson_destroy(&reply);
    mongoc_client_destroy(cl);
    mtest_server_stop(&srv, false);
    mtest_tmpdir_remove(dir);
}

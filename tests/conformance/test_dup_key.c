/*
 * Conformance: the shape of a DuplicateKey error, which the library reads to tell an _id clash
 * from another unique index. mongod 4.4+ attaches DuplicateKeyErrorInfo (keyPattern, keyValue)
 * to every E11000 and words the message
 * "E11000 duplicate key error collection: <db>.<coll> index: <name> dup key: { <k>: <v> }"
 * (buildDupKeyErrorStatus in src/mongo/db/storage/index_entry_comparison.cpp). Insert and
 * update report it as a writeError; findAndModify as the command error, with its
 * plan-executor context (src/mongo/db/commands/find_and_modify.cpp).
 * Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "dup_key");
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"a\": 1, \"b\": -1}, "
              "\"name\": \"a_1_b_-1\", \"unique\": true}, {\"key\": {\"k\": 1}, \"name\": "
              "\"k_1\", \"unique\": true}]}");
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"a\": \"x\", \"b\": 2, \"k\": 1}, "
              "{\"_id\": 2, \"a\": \"y\", \"b\": 2}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(dup_key, .init = setup, .fini = teardown);

/* Runs a write command expected to report one writeError; returns the reply. */
static void
write_error_of(const char *cmd, bson_t *reply)
{
    bson_error_t error;
    cr_assert(cf_run(client, dbname, cmd, reply, &error), "%s", error.message);
    cr_assert_eq(cf_int_at(reply, "writeErrors.0.code"), 11000, "%s",
                 bson_as_relaxed_extended_json(reply, NULL));
}

/* The end of mongod's message, after "collection: <db>". */
static void
assert_message(const char *msg, const char *tail)
{
    cf_assert_contains(msg, "E11000 duplicate key error collection: ");
    char *expect = bson_strdup_printf("%s.c %s", dbname, tail);
    cf_assert_contains(msg, expect);
    bson_free(expect);
}

Test(dup_key, compound_key_on_insert)
{
    bson_t reply;
    write_error_of("{\"insert\": \"c\", \"documents\": [{\"_id\": 3, \"a\": \"x\", \"b\": 2}]}",
                   &reply);
    assert_message(cf_str_at(&reply, "writeErrors.0.errmsg"),
                   "index: a_1_b_-1 dup key: { a: \"x\", b: 2 }");
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.keyPattern.a"), 1);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.keyPattern.b"), -1);
    cr_assert_str_eq(cf_str_at(&reply, "writeErrors.0.keyValue.a"), "x");
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.keyValue.b"), 2);
    bson_destroy(&reply);
}

Test(dup_key, id_and_missing_fields)
{
    bson_t reply;
    write_error_of("{\"insert\": \"c\", \"documents\": [{\"_id\": 1}]}", &reply);
    assert_message(cf_str_at(&reply, "writeErrors.0.errmsg"), "index: _id_ dup key: { _id: 1 }");
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.keyPattern._id"), 1);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.keyValue._id"), 1);
    bson_destroy(&reply);
    /* Document 2 has no k: a second one without k clashes on null. */
    write_error_of("{\"insert\": \"c\", \"documents\": [{\"_id\": 4, \"a\": \"z\"}]}", &reply);
    assert_message(cf_str_at(&reply, "writeErrors.0.errmsg"), "index: k_1 dup key: { k: null }");
    bson_iter_t it;
    cr_assert(cf_find(&reply, "writeErrors.0.keyValue.k", &it) && BSON_ITER_HOLDS_NULL(&it));
    bson_destroy(&reply);
}

Test(dup_key, update_reports_a_write_error)
{
    bson_t reply;
    write_error_of("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 2}, \"u\": {\"$set\": "
                   "{\"a\": \"x\"}}}]}",
                   &reply);
    assert_message(cf_str_at(&reply, "writeErrors.0.errmsg"),
                   "index: a_1_b_-1 dup key: { a: \"x\", b: 2 }");
    cr_assert_str_eq(cf_str_at(&reply, "writeErrors.0.keyValue.a"), "x");
    bson_destroy(&reply);
}

Test(dup_key, find_and_modify_reports_the_command_error)
{
    bson_t reply;
    bson_error_t error;
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"findAndModify\": \"c\", \"query\": {\"_id\": 2}, \"update\": "
                                "{\"$set\": {\"k\": 1}}}",
                                &reply, &error);
    cr_assert_eq(code, 11000, "%s", error.message);
    assert_message(error.message, "index: k_1 dup key: { k: 1 }");
    cr_assert_eq(cf_int_at(&reply, "keyPattern.k"), 1, "%s",
                 bson_as_relaxed_extended_json(&reply, NULL));
    cr_assert_eq(cf_int_at(&reply, "keyValue.k"), 1);
    bson_destroy(&reply);
}

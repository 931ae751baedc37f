/*
 * Conformance: a document may not grow past 16 MiB through an update. mongod 6.0's UpdateStage
 * (src/mongo/db/exec/update_stage.cpp, transformAndUpdate) refuses the result with 17419
 * "Resulting document after update is larger than 16777216", for operator, replacement and
 * pipeline updates alike; UpsertStage (src/mongo/db/exec/upsert_stage.cpp) refuses an upserted
 * document with 17420 "Document to upsert is larger than 16777216"; findAndModify reports the
 * same code with its plan-executor context (src/mongo/db/commands/find_and_modify.cpp).
 *
 * Each result is made a little over 16 MiB but under 16 MiB + 16 KiB (BSONObjMaxInternalSize),
 * the window in which only these checks can fire. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

#define MAX_USER_SIZE 16777216

static mongoc_client_t *client;
static char *dbname;
static mongoc_collection_t *coll;

static void
setup(void)
{
    cf_open(&client, &dbname, "doc_size");
    coll = mongoc_client_get_collection(client, dbname, "c");
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll);
    cf_close(&client, &dbname);
}

TestSuite(doc_size, .init = setup, .fini = teardown, .timeout = 60);

/* A string of n 'x' (caller frees). */
static char *
filler(size_t n)
{
    char *s = bson_malloc(n + 1);
    memset(s, 'x', n);
    s[n] = '\0';
    return s;
}

/* {_id: 1, a: <a_len chars>} stored; returns the length of its field a. */
static void
insert_base(size_t a_len)
{
    bson_error_t error;
    char *a = filler(a_len);
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1), "a", BCON_UTF8(a));
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "%s", error.message);
    bson_destroy(doc);
    bson_free(a);
}

/* The length b must have so that {_id: 1, a: <a_len>, b: <b>} is MAX_USER_SIZE + over bytes. */
static size_t
b_len_for(size_t a_len, size_t over)
{
    char *a = filler(a_len);
    bson_t *probe = BCON_NEW("_id", BCON_INT32(1), "a", BCON_UTF8(a), "b", BCON_UTF8(""));
    size_t len = probe->len;
    bson_destroy(probe);
    bson_free(a);
    return (size_t)MAX_USER_SIZE + over - len;
}

/* The stored document still has no field b. */
static void
assert_unchanged(void)
{
    bson_error_t error;
    bson_t *filter = BCON_NEW("b", "{", "$exists", BCON_BOOL(true), "}");
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    cr_assert_eq(n, 0, "the document was not changed (%s)", error.message);
    bson_destroy(filter);
}

Test(doc_size, set_past_16_mib_is_17419)
{
    size_t a_len = 9000000;
    size_t b_len = b_len_for(a_len, 1000);
    insert_base(a_len);
    char *b = filler(b_len);
    bson_t *filter = BCON_NEW("_id", BCON_INT32(1));
    bson_t *update = BCON_NEW("$set", "{", "b", BCON_UTF8(b), "}");
    bson_t reply;
    bson_error_t error;
    cr_assert_not(mongoc_collection_update_one(coll, filter, update, NULL, &reply, &error));
    cr_assert_eq(error.code, 17419, "got %u: %s", error.code, error.message);
    cr_assert_str_eq(error.message, "Resulting document after update is larger than 16777216");
    bson_destroy(&reply);
    assert_unchanged();
    bson_destroy(update);
    bson_destroy(filter);
    bson_free(b);
}

Test(doc_size, pipeline_update_past_16_mib_is_17419)
{
    /* a copied into b: twice a, plus field overhead, lands just past the limit. */
    size_t a_len = (MAX_USER_SIZE - 40) / 2 + 500;
    insert_base(a_len);
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname,
                     "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": "
                     "[{\"$set\": {\"b\": \"$a\"}}]}]}",
                     &reply, &error),
              "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), 17419);
    cf_assert_contains(cf_str_at(&reply, "writeErrors.0.errmsg"),
                       "Resulting document after update is larger than 16777216");
    bson_destroy(&reply);
    assert_unchanged();
}

Test(doc_size, find_and_modify_past_16_mib_is_17419)
{
    size_t a_len = (MAX_USER_SIZE - 40) / 2 + 500;
    insert_base(a_len);
    bson_t reply;
    bson_error_t error;
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"update\": "
                                "[{\"$set\": {\"b\": \"$a\"}}], \"new\": true}",
                                &reply, &error);
    cr_assert_eq(code, 17419, "got %u: %s", code, error.message);
    cf_assert_contains(error.message, "Resulting document after update is larger than 16777216");
    bson_destroy(&reply);
    assert_unchanged();
}

Test(doc_size, upsert_past_16_mib_is_17420)
{
    size_t a_len = (MAX_USER_SIZE - 40) / 2 + 500;
    char *a = filler(a_len);
    bson_t *cmd = BCON_NEW("update", BCON_UTF8("c"), "updates", "[", "{", "q", "{", "_id",
                           BCON_INT32(2), "}", "u", "[", "{", "$set", "{", "a", BCON_UTF8(a), "}",
                           "}", "{", "$set", "{", "b", BCON_UTF8("$a"), "}", "}", "]", "upsert",
                           BCON_BOOL(true), "}", "]");
    bson_t reply;
    bson_error_t error;
    cr_assert(mongoc_client_command_simple(client, dbname, cmd, NULL, &reply, &error), "%s",
              error.message);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), 17420, "%s",
                 cf_str_at(&reply, "writeErrors.0.errmsg"));
    cf_assert_contains(cf_str_at(&reply, "writeErrors.0.errmsg"),
                       "Document to upsert is larger than 16777216");
    bson_destroy(&reply);
    cr_assert_eq(mtest_count(coll, "{}"), 0, "nothing was inserted");
    bson_destroy(cmd);
    bson_free(a);
}

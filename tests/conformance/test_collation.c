/*
 * Conformance: collations (manual: reference/collation). mongod applies a collation other than
 * simple to every comparison of the command (here: case-insensitive with strength 2, so "ABC"
 * matches "abc"), and takes {locale: "simple"} as the default binary comparison. The test server
 * does not implement them (the written exclusion in tests/server/README.md) and must refuse
 * them, on every command and index, with NotImplemented 238 (mongod: error_codes.yml; mongod
 * accepts the option, so none of its codes for a bad request would be honest), never ignore them.
 *
 * So each command's collation is applied (mongod) or refused with 238 (test server), the same
 * way for all of them; a server that ignored one would answer without the case-insensitive
 * match and fail. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

#include <stdio.h>

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "collation");
    cf_run_ok(client, dbname, "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"s\": \"abc\"}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(collation, .init = setup, .fini = teardown);

#define CI "{\"locale\": \"en\", \"strength\": 2}"

/* Runs json (with a case-insensitive collation); NULL when refused with NotImplemented (asserts
 * that is the only refusal), else the reply (caller destroys). */
static bson_t *
applied_or_refused(const char *json)
{
    bson_t reply;
    bson_error_t error;
    if (cf_run(client, dbname, json, &reply, &error)) {
        if (!cf_has_at(&reply, "writeErrors.0")) {
            bson_t *copy = bson_copy(&reply);
            bson_destroy(&reply);
            return copy;
        }
        /* a write statement's refusal is its writeError */
        error.code = (uint32_t)cf_int_at(&reply, "writeErrors.0.code");
        bson_strncpy(error.message, cf_str_at(&reply, "writeErrors.0.errmsg"),
                     sizeof error.message);
    }
    cr_assert_eq(error.code, 238, "%s: refused with %u, not NotImplemented: %s", json, error.code,
                 error.message);
    cf_assert_contains(error.message, "not supported");
    bson_destroy(&reply);
    return NULL;
}

Test(collation, applied_or_refused_with_not_implemented_on_every_command)
{
    static const struct {
        const char *json;
        const char *path; /* in the reply when applied */
        int64_t want;
    } cases[] = {
        {"{\"find\": \"c\", \"filter\": {\"s\": \"ABC\"}, \"collation\": " CI "}",
         "cursor.firstBatch.0._id", 1},
        {"{\"aggregate\": \"c\", \"pipeline\": [{\"$match\": {\"s\": \"ABC\"}}], \"cursor\": {}, "
         "\"collation\": " CI "}",
         "cursor.firstBatch.0._id", 1},
        {"{\"count\": \"c\", \"query\": {\"s\": \"ABC\"}, \"collation\": " CI "}", "n", 1},
        {"{\"update\": \"c\", \"updates\": [{\"q\": {\"s\": \"ABC\"}, \"u\": {\"$set\": {\"u\": "
         "1}}, "
         "\"collation\": " CI "}]}",
         "nModified", 1},
        {"{\"findAndModify\": \"c\", \"query\": {\"s\": \"ABC\"}, \"update\": {\"$set\": {\"f\": "
         "1}}, "
         "\"collation\": " CI "}",
         "lastErrorObject.n", 1},
        {"{\"delete\": \"c\", \"deletes\": [{\"q\": {\"s\": \"ABC\"}, \"limit\": 1, "
         "\"collation\": " CI "}]}",
         "n", 1},
    };
    int applied = 0, refused = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bson_t *reply = applied_or_refused(cases[i].json);
        if (!reply) {
            refused++;
            continue;
        }
        applied++;
        cr_assert_eq(cf_int_at(reply, cases[i].path), cases[i].want, "%s: %s", cases[i].json,
                     bson_as_relaxed_extended_json(reply, NULL));
        bson_destroy(reply);
    }
    cr_assert(applied == 0 || refused == 0, "collations applied by %d commands, refused by %d",
              applied, refused);
}

Test(collation, applied_or_refused_on_indexes_and_collections)
{
    bson_t *a = applied_or_refused("{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"s\": 1}, "
                                   "\"name\": \"s_ci\", \"collation\": " CI "}]}");
    bson_t *b = applied_or_refused("{\"create\": \"ci\", \"collation\": " CI "}");
    cr_assert((a == NULL) == (b == NULL), "an index collation and a collection's differ");
    bson_destroy(a);
    bson_destroy(b);
}

Test(collation, simple_is_the_default_everywhere)
{
    bson_t reply;
    cf_run_ok_reply(client, dbname,
                    "{\"find\": \"c\", \"filter\": {\"s\": \"ABC\"}, \"collation\": {\"locale\": "
                    "\"simple\"}}",
                    &reply);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.0"), "simple compares binary");
    bson_destroy(&reply);
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"s\": 1}, \"name\": \"s_1\", "
              "\"collation\": {\"locale\": \"simple\"}}]}");
    cf_run_ok(client, dbname, "{\"create\": \"simple\", \"collation\": {\"locale\": \"simple\"}}");
}

/*
 * Conformance: the `let` option of aggregate, find, update, delete and findAndModify (5.0+):
 * constants bound as $$<name> for the command's expressions. The manual: reference/command/
 * aggregate, find, update, delete, findAndModify ("let"); names follow
 * variableValidation::validateNameForUserWrite (src/mongo/db/pipeline/variables.cpp): empty
 * 16866, a first character other than a lowercase letter 16867, another character 16868.
 * Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "let");
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"x\": 1}, {\"_id\": 2, \"x\": 2}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(let, .init = setup, .fini = teardown);

Test(let, find_and_aggregate_see_the_variables)
{
    bson_t reply;
    cf_run_ok_reply(client, dbname,
                    "{\"find\": \"c\", \"filter\": {\"$expr\": {\"$eq\": [\"$_id\", \"$$id\"]}}, "
                    "\"let\": {\"id\": 2}}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0.x"), 2);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.1"));
    bson_destroy(&reply);
    cf_run_ok_reply(client, dbname,
                    "{\"aggregate\": \"c\", \"cursor\": {}, \"let\": {\"k\": {\"$add\": [1, 2]}}, "
                    "\"pipeline\": [{\"$match\": {\"_id\": 1}}, {\"$project\": {\"v\": \"$$k\"}}]}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0.v"), 3);
    bson_destroy(&reply);
}

Test(let, writes_see_the_variables)
{
    bson_t reply;
    cf_run_ok(client, dbname,
              "{\"update\": \"c\", \"let\": {\"v\": 7}, \"updates\": [{\"q\": {\"$expr\": "
              "{\"$eq\": [\"$_id\", 1]}}, \"u\": [{\"$set\": {\"x\": \"$$v\"}}]}]}");
    cf_run_ok_reply(client, dbname,
                    "{\"findAndModify\": \"c\", \"let\": {\"w\": 8}, \"query\": {\"_id\": 1}, "
                    "\"update\": [{\"$set\": {\"y\": \"$$w\"}}], \"new\": true}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "value.x"), 7);
    cr_assert_eq(cf_int_at(&reply, "value.y"), 8);
    bson_destroy(&reply);
    cf_run_ok_reply(client, dbname,
                    "{\"delete\": \"c\", \"let\": {\"id\": 2}, \"deletes\": [{\"q\": {\"$expr\": "
                    "{\"$eq\": [\"$_id\", \"$$id\"]}}, \"limit\": 0}]}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "n"), 1);
    bson_destroy(&reply);
}

Test(let, bad_names_are_mongods_errors)
{
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"find\": \"c\", \"filter\": {}, \"let\": {\"Upper\": 1}}", NULL,
                             NULL),
                 16867);
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"find\": \"c\", \"filter\": {}, \"let\": {\"a-b\": 1}}", NULL,
                             NULL),
                 16868);
    cr_assert_eq(cf_run_fail(client, dbname,
                             "{\"aggregate\": \"c\", \"cursor\": {}, \"pipeline\": [], "
                             "\"let\": {\"\": 1}}",
                             NULL, NULL),
                 16866);
}

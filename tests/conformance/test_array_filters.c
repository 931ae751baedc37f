/*
 * Conformance: $[] and $[<identifier>] with arrayFilters on update and findAndModify. The
 * manual: reference/operator/update/positional-all and positional-filtered, and
 * reference/command/update (arrayFilters). mongod 6.0's errors, ParsedUpdate::parseArrayFilters
 * (src/mongo/db/ops/parsed_update.cpp) and update_array_node.cpp: a filter whose identifier the
 * update never uses is FailedToParse 9 "The array filter for identifier 'x' was not used in
 * the update"; an identifier without a filter is BadValue 2 "No array filter found for
 * identifier"; two filters for one identifier FailedToParse 9; an identifier that does not
 * start with a lowercase letter BadValue 2; $[] on a missing path BadValue 2 "must exist".
 * Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "array_filters");
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"y\": [{\"b\": 3}, {\"b\": 1}], "
              "\"n\": [1, 2, 3]}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(array_filters, .init = setup, .fini = teardown);

static void
assert_doc(const char *path, int64_t want)
{
    bson_t reply;
    char *p = bson_strdup_printf("cursor.firstBatch.0.%s", path);
    cf_run_ok_reply(client, dbname, "{\"find\": \"c\", \"filter\": {\"_id\": 1}}", &reply);
    cr_assert_eq(cf_int_at(&reply, p), want, "%s: %s", path,
                 bson_as_relaxed_extended_json(&reply, NULL));
    bson_free(p);
    bson_destroy(&reply);
}

static uint32_t
update_error(const char *update_and_filters)
{
    bson_t reply;
    char *cmd = bson_strdup_printf("{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, %s}]}",
                                   update_and_filters);
    cf_run_ok_reply(client, dbname, cmd, &reply);
    uint32_t code = (uint32_t)cf_int_at(&reply, "writeErrors.0.code");
    bson_destroy(&reply);
    bson_free(cmd);
    return code;
}

Test(array_filters, filtered_positional_updates_matching_elements)
{
    cf_run_ok(client, dbname,
              "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": {\"$set\": "
              "{\"y.$[i].b\": 2}}, \"arrayFilters\": [{\"i.b\": 3}]}]}");
    assert_doc("y.0.b", 2);
    assert_doc("y.1.b", 1);
}

Test(array_filters, all_positional_updates_every_element)
{
    cf_run_ok(client, dbname,
              "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": {\"$inc\": "
              "{\"n.$[]\": 10}}}]}");
    assert_doc("n.0", 11);
    assert_doc("n.2", 13);
}

Test(array_filters, find_and_modify_takes_them)
{
    bson_t reply;
    cf_run_ok_reply(client, dbname,
                    "{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"new\": true, "
                    "\"update\": {\"$set\": {\"n.$[k]\": 0}}, \"arrayFilters\": [{\"k\": "
                    "{\"$gte\": 2}}]}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "value.n.0"), 1);
    cr_assert_eq(cf_int_at(&reply, "value.n.1"), 0);
    cr_assert_eq(cf_int_at(&reply, "value.n.2"), 0);
    bson_destroy(&reply);
}

Test(array_filters, mongods_errors)
{
    cr_assert_eq(update_error("\"u\": {\"$set\": {\"n.0\": 1}}, \"arrayFilters\": [{\"i\": 1}]"),
                 9, "unused filter");
    cr_assert_eq(update_error("\"u\": {\"$set\": {\"n.$[j]\": 1}}, \"arrayFilters\": [{\"i\": 1}]"),
                 2, "identifier without a filter");
    cr_assert_eq(update_error("\"u\": {\"$set\": {\"n.$[i]\": 1}}, "
                              "\"arrayFilters\": [{\"i\": 1}, {\"i\": 2}]"),
                 9, "duplicate identifier");
    cr_assert_eq(update_error("\"u\": {\"$set\": {\"n.$[I]\": 1}}, \"arrayFilters\": [{\"I\": 1}]"),
                 2, "identifier not starting with a lowercase letter");
    cr_assert_eq(update_error("\"u\": {\"$set\": {\"missing.$[]\": 1}}"), 2, "missing path");
    assert_doc("n.0", 1);
}

/*
 * Conformance: $getField, $setField and $unsetField (mongod 5.0+) read and write a field by its
 * exact name, dots and dollars included. The manual pages reference/operator/aggregation/
 * getField, setField and unsetField; mongod 6.0's ExpressionGetField::parse and
 * ExpressionSetField::parse (src/mongo/db/pipeline/expression.cpp) give the errors: a missing
 * argument 3041702/4161102/4161103/4161109, an unknown one 3041701/4161101, a field path as
 * 'field' 5654600/4161108, a non-string 'field' 5654602/4161107, an argument of $setField that
 * is not an object 4161100. The driver specifications' *-dots_and_dollars tests use the same
 * forms. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "field_exprs");
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"a.b\": 5, \"a\": {\"b\": 7}}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(field_exprs, .init = setup, .fini = teardown);

/* The single document an aggregate's $project gives for expression json. */
static void
project(const char *expr_json, bson_t *doc)
{
    char *cmd = bson_strdup_printf("{\"aggregate\": \"c\", \"cursor\": {}, \"pipeline\": "
                                   "[{\"$project\": {\"_id\": 0, \"r\": %s}}]}",
                                   expr_json);
    bson_t reply;
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    cf_run_ok_reply(client, dbname, cmd, &reply);
    cr_assert(cf_find(&reply, "cursor.firstBatch.0", &it) && BSON_ITER_HOLDS_DOCUMENT(&it));
    bson_iter_document(&it, &len, &data);
    bson_t view;
    cr_assert(bson_init_static(&view, data, len));
    bson_copy_to(&view, doc);
    bson_destroy(&reply);
    bson_free(cmd);
}

static uint32_t
project_fails(const char *expr_json)
{
    char *cmd = bson_strdup_printf("{\"aggregate\": \"c\", \"cursor\": {}, \"pipeline\": "
                                   "[{\"$project\": {\"_id\": 0, \"r\": %s}}]}",
                                   expr_json);
    uint32_t code = cf_run_fail(client, dbname, cmd, NULL, NULL);
    bson_free(cmd);
    return code;
}

Test(field_exprs, get_field_reads_the_dotted_name_not_the_path)
{
    bson_t doc;
    project("{\"$getField\": \"a.b\"}", &doc);
    cr_assert_eq(cf_int_at(&doc, "r"), 5);
    bson_destroy(&doc);
    project("{\"$getField\": {\"field\": {\"$literal\": \"a.b\"}, \"input\": \"$$ROOT\"}}",
            &doc);
    cr_assert_eq(cf_int_at(&doc, "r"), 5);
    bson_destroy(&doc);
    project("{\"$getField\": {\"field\": \"z\", \"input\": null}}", &doc);
    bson_iter_t it;
    cr_assert(cf_find(&doc, "r", &it) && BSON_ITER_HOLDS_NULL(&it), "null input gives null");
    bson_destroy(&doc);
}

Test(field_exprs, set_field_writes_and_removes_a_dollar_name)
{
    bson_t reply;
    cf_run_ok(client, dbname,
              "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": [{\"$replaceWith\": "
              "{\"$setField\": {\"field\": {\"$literal\": \"$price\"}, \"input\": \"$$ROOT\", "
              "\"value\": 10}}}, {\"$replaceWith\": {\"$unsetField\": {\"field\": \"a.b\", "
              "\"input\": \"$$ROOT\"}}}]}]}");
    cf_run_ok_reply(client, dbname,
                    "{\"aggregate\": \"c\", \"cursor\": {}, \"pipeline\": [{\"$project\": "
                    "{\"p\": {\"$getField\": {\"$literal\": \"$price\"}}, \"ab\": {\"$getField\": "
                    "\"a.b\"}, \"nested\": \"$a.b\"}}]}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0.p"), 10);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.0.ab"), "'a.b' removed");
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0.nested"), 7, "a.b the path untouched");
    bson_destroy(&reply);
}

Test(field_exprs, set_field_value_remove_drops_the_field)
{
    bson_t doc;
    project("{\"$setField\": {\"field\": \"k\", \"input\": {\"k\": 1, \"j\": 2}, "
            "\"value\": \"$$REMOVE\"}}",
            &doc);
    cr_assert_not(cf_has_at(&doc, "r.k"));
    cr_assert_eq(cf_int_at(&doc, "r.j"), 2);
    bson_destroy(&doc);
}

Test(field_exprs, mongods_errors)
{
    cr_assert_eq(project_fails("{\"$setField\": {\"input\": {}, \"value\": 1}}"), 4161102);
    cr_assert_eq(project_fails("{\"$setField\": {\"field\": \"f\", \"input\": {}}}"), 4161103);
    cr_assert_eq(project_fails("{\"$setField\": {\"field\": \"f\", \"value\": 1}}"), 4161109);
    cr_assert_eq(project_fails("{\"$setField\": {\"field\": \"f\", \"input\": {}, \"value\": 1, "
                               "\"x\": 1}}"),
                 4161101);
    cr_assert_eq(project_fails("{\"$setField\": {\"field\": \"$f\", \"input\": {}, \"value\": 1}}"),
                 4161108);
    cr_assert_eq(project_fails("{\"$setField\": {\"field\": 1, \"input\": {}, \"value\": 1}}"),
                 4161107);
    cr_assert_eq(project_fails("{\"$setField\": \"f\"}"), 4161100);
    cr_assert_eq(project_fails("{\"$getField\": {\"input\": {}}}"), 3041702);
    cr_assert_eq(project_fails("{\"$getField\": {\"field\": \"f\", \"x\": 1}}"), 3041701);
    cr_assert_eq(project_fails("{\"$getField\": \"$f\"}"), 5654600);
    cr_assert_eq(project_fails("{\"$getField\": {\"field\": 5, \"input\": {}}}"), 5654602);
}

/*
 * Conformance: an error raised by a filter's $expr fails the command. mongod evaluates $expr
 * with no catch (ExprMatchExpression::matches, src/mongo/db/matcher/expression_expr.cpp), so
 * the expression's error ends find, count, aggregate's $match, update, delete and
 * findAndModify at the first document it fails on: $divide by zero is BadValue 2 "can't
 * $divide by zero" (ExpressionDivide::evaluate, src/mongo/db/pipeline/expression.cpp), a date
 * past int64 milliseconds is Overflow 15 "date overflow in $add" (ExpressionAdd). A variable
 * is resolved when the expression is parsed (VariablesParseState::getVariable,
 * src/mongo/db/pipeline/variables.cpp): an undefined one is 17276 "Use of undefined variable"
 * even on an empty collection, and when a change stream opens. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

#define DIVIDE_BY_A "{\"$expr\": {\"$divide\": [1, \"$a\"]}}"
/* fails on the first document, so no write has happened before the error (mongod writes each
 * matching document as it scans: a multi-document write stops part way) */
#define DIVIDE_BY_A_MINUS_1 "{\"$expr\": {\"$divide\": [1, {\"$subtract\": [\"$a\", 1]}]}}"

static void
setup(void)
{
    cf_open(&client, &dbname, "expr_errors");
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"a\": 1}, {\"_id\": 2, \"a\": 0}, "
              "{\"_id\": 3, \"d\": {\"$date\": \"2020-01-01T00:00:00Z\"}}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(expr_errors, .init = setup, .fini = teardown);

static void
assert_fails(const char *json, uint32_t code, const char *message)
{
    bson_error_t error;
    cr_assert_eq(cf_run_fail(client, dbname, json, NULL, &error), code, "%s: %s", json,
                 error.message);
    cf_assert_contains(error.message, message);
}

static void
assert_write_error(const char *json, int code, const char *message)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname, json, &reply, &error), "%s: %s", json, error.message);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), code, "%s",
                 bson_as_relaxed_extended_json(&reply, NULL));
    cf_assert_contains(cf_str_at(&reply, "writeErrors.0.errmsg"), message);
    cr_assert_eq(cf_int_at(&reply, "n"), 0);
    bson_destroy(&reply);
}

Test(expr_errors, divide_by_zero_fails_the_reads)
{
    assert_fails("{\"find\": \"c\", \"filter\": " DIVIDE_BY_A "}", 2, "can't $divide by zero");
    assert_fails("{\"count\": \"c\", \"query\": " DIVIDE_BY_A "}", 2, "can't $divide by zero");
    assert_fails("{\"aggregate\": \"c\", \"cursor\": {}, \"pipeline\": [{\"$match\": " DIVIDE_BY_A
                 "}]}",
                 2, "can't $divide by zero");
    assert_fails("{\"find\": \"c\", \"filter\": {\"$nor\": [" DIVIDE_BY_A "]}}", 2,
                 "can't $divide by zero");
}

Test(expr_errors, divide_by_zero_fails_the_writes)
{
    bson_t reply;
    assert_write_error("{\"update\": \"c\", \"updates\": [{\"q\": " DIVIDE_BY_A_MINUS_1
                       ", \"u\": {\"$set\": {\"b\": 1}}, \"multi\": true}]}",
                       2, "can't $divide by zero");
    assert_write_error("{\"delete\": \"c\", \"deletes\": [{\"q\": " DIVIDE_BY_A_MINUS_1
                       ", \"limit\": 0}]}",
                       2, "can't $divide by zero");
    assert_fails("{\"findAndModify\": \"c\", \"query\": " DIVIDE_BY_A_MINUS_1
                 ", \"remove\": true}",
                 2, "can't $divide by zero");
    cf_run_ok_reply(client, dbname, "{\"count\": \"c\", \"query\": {\"b\": 1}}", &reply);
    cr_assert_eq(cf_int_at(&reply, "n"), 0, "nothing was updated");
    bson_destroy(&reply);
    cf_run_ok_reply(client, dbname, "{\"count\": \"c\"}", &reply);
    cr_assert_eq(cf_int_at(&reply, "n"), 3, "nothing was deleted");
    bson_destroy(&reply);
}

Test(expr_errors, date_overflow_fails_the_find)
{
    assert_fails("{\"find\": \"c\", \"filter\": {\"d\": {\"$exists\": true}, \"$expr\": "
                 "{\"$add\": [\"$d\", 1e300]}}}",
                 15, "date overflow in $add");
}

Test(expr_errors, undefined_variable_fails_at_parse_time)
{
    assert_fails("{\"find\": \"empty\", \"filter\": {\"$expr\": {\"$eq\": [\"$$nope\", 1]}}}",
                 17276, "Use of undefined variable: nope");
    assert_fails("{\"aggregate\": \"empty\", \"cursor\": {}, \"pipeline\": [{\"$match\": "
                 "{\"$expr\": \"$$nope\"}}]}",
                 17276, "Use of undefined variable: nope");
    assert_fails("{\"count\": \"c\", \"query\": {\"$expr\": {\"$let\": {\"vars\": {\"q\": 1, "
                 "\"r\": \"$$q\"}, \"in\": \"$$r\"}}}}",
                 17276, "Use of undefined variable: q");
    assert_fails("{\"aggregate\": \"c\", \"cursor\": {}, \"pipeline\": [{\"$changeStream\": {}}, "
                 "{\"$match\": {\"$expr\": \"$$nope\"}}]}",
                 17276, "Use of undefined variable: nope");
}

Test(expr_errors, bound_variables_are_defined)
{
    bson_t reply;
    cf_run_ok_reply(client, dbname,
                    "{\"find\": \"c\", \"let\": {\"one\": 1}, \"filter\": {\"$expr\": {\"$and\": ["
                    "{\"$eq\": [\"$a\", \"$$one\"]}, {\"$let\": {\"vars\": {\"q\": \"$a\"}, \"in\": "
                    "\"$$q\"}}, {\"$in\": [1, {\"$map\": {\"input\": [\"$a\"], \"as\": \"v\", "
                    "\"in\": \"$$v\"}}]}, {\"$size\": {\"$filter\": {\"input\": [\"$a\"], "
                    "\"cond\": \"$$this\"}}}, {\"$eq\": [\"$$ROOT.a\", \"$$CURRENT.a\"]}]}}}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0._id"), 1);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.1"));
    bson_destroy(&reply);
}

/*
 * Conformance: date arithmetic never wraps silently where mongod fails. mongod 6.0's
 * ExpressionAdd (src/mongo/db/pipeline/expression.cpp, AddState::getValue) fails with Overflow
 * (15) "date overflow in $add" when a date plus numbers leaves int64 milliseconds;
 * ExpressionSubtract turns a double into milliseconds with Value::coerceToLong
 * (src/mongo/db/exec/document_value/value.cpp), which refuses one beyond int64 with 31109.
 * A lease stamped with {$add: ["$$NOW", ms]} must never come out as a date in 1970.
 * Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "date_arith");
    /* 9223372036854775000 ms: 807 ms before the last date BSON can hold. */
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"d\": {\"$date\": "
              "{\"$numberLong\": \"9223372036854775000\"}}}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(date_arith, .init = setup, .fini = teardown);

/* The stored date of document 1, in milliseconds. */
static int64_t
stored_date(void)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname, "{\"find\": \"c\", \"filter\": {\"_id\": 1}}", &reply,
                     &error),
              "%s", error.message);
    bson_iter_t it;
    cr_assert(cf_find(&reply, "cursor.firstBatch.0.d", &it) && BSON_ITER_HOLDS_DATE_TIME(&it));
    int64_t ms = bson_iter_date_time(&it);
    bson_destroy(&reply);
    return ms;
}

Test(date_arith, pipeline_update_past_the_last_date_is_overflow)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname,
                     "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": [{\"$set\": "
                     "{\"d\": {\"$add\": [\"$d\", {\"$numberLong\": \"1000\"}]}}}]}]}",
                     &reply, &error),
              "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "writeErrors.0.code"), 15, "Overflow: %s",
                 bson_as_relaxed_extended_json(&reply, NULL));
    cf_assert_contains(cf_str_at(&reply, "writeErrors.0.errmsg"), "date overflow in $add");
    cr_assert_eq(cf_int_at(&reply, "nModified"), 0);
    bson_destroy(&reply);
    cr_assert_eq(stored_date(), INT64_C(9223372036854775000), "the document is unchanged");
}

Test(date_arith, find_and_modify_with_a_double_past_the_last_date_is_overflow)
{
    bson_t reply;
    bson_error_t error;
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"update\": "
                                "[{\"$set\": {\"d\": {\"$add\": [\"$d\", 1.0e4]}}}]}",
                                &reply, &error);
    cr_assert_eq(code, 15, "Overflow, got %u: %s", code, error.message);
    cf_assert_contains(error.message, "date overflow in $add");
    cr_assert_str_eq(cf_str_at(&reply, "codeName"), "Overflow");
    bson_destroy(&reply);
    cr_assert_eq(stored_date(), INT64_C(9223372036854775000), "the document is unchanged");
}

Test(date_arith, aggregate_add_overflow_fails_the_command)
{
    bson_t reply;
    bson_error_t error;
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"aggregate\": \"c\", \"pipeline\": [{\"$project\": {\"e\": "
                                "{\"$add\": [\"$d\", {\"$numberLong\": \"1000\"}]}}}], "
                                "\"cursor\": {}}",
                                &reply, &error);
    cr_assert_eq(code, 15, "Overflow, got %u: %s", code, error.message);
    cf_assert_contains(error.message, "date overflow in $add");
    bson_destroy(&reply);
}

Test(date_arith, add_that_comes_back_in_range_is_a_date)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname,
                     "{\"aggregate\": \"c\", \"pipeline\": [{\"$project\": {\"e\": {\"$add\": "
                     "[\"$d\", {\"$numberLong\": \"-1000\"}, 1000]}}}], \"cursor\": {}}",
                     &reply, &error),
              "%s", error.message);
    bson_iter_t it;
    cr_assert(cf_find(&reply, "cursor.firstBatch.0.e", &it) && BSON_ITER_HOLDS_DATE_TIME(&it));
    cr_assert_eq(bson_iter_date_time(&it), INT64_C(9223372036854775000));
    bson_destroy(&reply);
}

Test(date_arith, subtracting_a_double_beyond_int64_is_refused)
{
    bson_t reply;
    bson_error_t error;
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"aggregate\": \"c\", \"pipeline\": [{\"$project\": {\"e\": "
                                "{\"$subtract\": [\"$d\", -1.0e19]}}}], \"cursor\": {}}",
                                &reply, &error);
    cr_assert_eq(code, 31109, "Can't coerce out of range value, got %u: %s", code, error.message);
    bson_destroy(&reply);
}

/*
 * Conformance: the errInfo of a DocumentValidationFailure (121), as mongod 6.0 builds it
 * (src/mongo/db/matcher/doc_validation_error.cpp; the shapes of doc_validation_error_test.cpp;
 * manual: "Schema Validation" > "View Validation Failures"): {failingDocumentId, details}, the
 * details naming the failing operator (operatorName), the clause as written (specifiedAs), a
 * reason and the values considered; $and / $or list the failing clauses by index. A writeError
 * carries it for insert and update, the command error for findAndModify. Runs unchanged against
 * mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "validation_errinfo");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(validation_errinfo, .init = setup, .fini = teardown);

/* The document at path in reply equals expected_json (order and types included). */
static void
assert_doc_at(const bson_t *reply, const char *path, const char *expected_json)
{
    bson_iter_t it;
    cr_assert(cf_find(reply, path, &it) && BSON_ITER_HOLDS_DOCUMENT(&it), "no %s in %s", path,
              bson_as_relaxed_extended_json(reply, NULL));
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t got;
    bson_init_static(&got, data, len);
    bson_t *want = cf_json(expected_json);
    char *g = bson_as_canonical_extended_json(&got, NULL);
    char *w = bson_as_canonical_extended_json(want, NULL);
    cr_assert_str_eq(g, w);
    bson_free(g);
    bson_free(w);
    bson_destroy(want);
}

/* Creates c with validator, inserts doc; returns the reply (one writeError expected). */
static void
insert_failing(const char *validator_json, const char *doc_json, bson_t *reply)
{
    bson_error_t error;
    char *create = bson_strdup_printf("{\"create\": \"c\", \"validator\": %s}", validator_json);
    char *insert = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [%s]}", doc_json);
    cf_run_ok(client, dbname, create);
    cr_assert(cf_run(client, dbname, insert, reply, &error), "%s", error.message);
    cr_assert_eq(cf_int_at(reply, "writeErrors.0.code"), 121, "%s",
                 bson_as_relaxed_extended_json(reply, NULL));
    cr_assert_str_eq(cf_str_at(reply, "writeErrors.0.errmsg"), "Document failed validation");
    bson_free(create);
    bson_free(insert);
}

Test(validation_errinfo, ne_on_a_nested_field)
{
    bson_t reply;
    insert_failing("{\"payload.kind\": {\"$ne\": \"poison\"}}",
                   "{\"_id\": 7, \"payload\": {\"kind\": \"poison\"}}", &reply);
    assert_doc_at(&reply, "writeErrors.0.errInfo",
                  "{\"failingDocumentId\": 7, \"details\": {\"operatorName\": \"$ne\", "
                  "\"specifiedAs\": {\"payload.kind\": {\"$ne\": \"poison\"}}, \"reason\": "
                  "\"comparison succeeded\", \"consideredValue\": \"poison\"}}");
    bson_destroy(&reply);
}

Test(validation_errinfo, implicit_and_lists_the_failing_clause)
{
    bson_t reply;
    insert_failing("{\"a\": {\"$gt\": 0}, \"b\": {\"$type\": \"string\"}}",
                   "{\"_id\": 1, \"a\": 5, \"b\": 3}", &reply);
    assert_doc_at(&reply, "writeErrors.0.errInfo.details",
                  "{\"operatorName\": \"$and\", \"clausesNotSatisfied\": [{\"index\": 1, "
                  "\"details\": {\"operatorName\": \"$type\", \"specifiedAs\": {\"b\": "
                  "{\"$type\": \"string\"}}, \"reason\": \"type did not match\", "
                  "\"consideredValue\": 3, \"consideredType\": \"int\"}}]}");
    bson_destroy(&reply);
}

Test(validation_errinfo, missing_fields_and_equality)
{
    bson_t reply;
    insert_failing("{\"k\": {\"$exists\": true}, \"s\": \"ready\"}", "{\"_id\": 1, \"s\": 4}",
                   &reply);
    assert_doc_at(&reply, "writeErrors.0.errInfo.details",
                  "{\"operatorName\": \"$and\", \"clausesNotSatisfied\": [{\"index\": 0, "
                  "\"details\": {\"operatorName\": \"$exists\", \"specifiedAs\": {\"k\": "
                  "{\"$exists\": true}}, \"reason\": \"path does not exist\"}}, {\"index\": 1, "
                  "\"details\": {\"operatorName\": \"$eq\", \"specifiedAs\": {\"s\": \"ready\"}, "
                  "\"reason\": \"comparison failed\", \"consideredValue\": 4}}]}");
    bson_destroy(&reply);
}

Test(validation_errinfo, or_lists_every_clause)
{
    bson_t reply;
    insert_failing("{\"$or\": [{\"a\": 1}, {\"b\": {\"$gt\": 5}}]}", "{\"_id\": 1, \"a\": 2}",
                   &reply);
    assert_doc_at(&reply, "writeErrors.0.errInfo.details",
                  "{\"operatorName\": \"$or\", \"clausesNotSatisfied\": [{\"index\": 0, "
                  "\"details\": {\"operatorName\": \"$eq\", \"specifiedAs\": {\"a\": 1}, "
                  "\"reason\": \"comparison failed\", \"consideredValue\": 2}}, {\"index\": 1, "
                  "\"details\": {\"operatorName\": \"$gt\", \"specifiedAs\": {\"b\": {\"$gt\": "
                  "5}}, \"reason\": \"field was missing\"}}]}");
    bson_destroy(&reply);
}

Test(validation_errinfo, expr_reports_its_result)
{
    bson_t reply;
    insert_failing("{\"$expr\": {\"$lt\": [\"$a\", \"$b\"]}}", "{\"_id\": 1, \"a\": 2, \"b\": 1}",
                   &reply);
    assert_doc_at(&reply, "writeErrors.0.errInfo.details",
                  "{\"operatorName\": \"$expr\", \"specifiedAs\": {\"$expr\": {\"$lt\": "
                  "[\"$a\", \"$b\"]}}, \"reason\": \"expression did not match\", "
                  "\"expressionResult\": false}");
    bson_destroy(&reply);
}

Test(validation_errinfo, find_and_modify_carries_err_info_in_the_command_error)
{
    bson_t reply;
    bson_error_t error;
    cf_run_ok(client, dbname,
              "{\"create\": \"c\", \"validator\": {\"n\": {\"$lt\": 3}}}");
    cf_run_ok(client, dbname, "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"n\": 2}]}");
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"findAndModify\": \"c\", \"query\": {\"_id\": 1}, \"update\": "
                                "{\"$inc\": {\"n\": 1}}}",
                                &reply, &error);
    cr_assert_eq(code, 121, "%s", error.message);
    cr_assert_str_eq(cf_str_at(&reply, "codeName"), "DocumentValidationFailure");
    assert_doc_at(&reply, "errInfo",
                  "{\"failingDocumentId\": 1, \"details\": {\"operatorName\": \"$lt\", "
                  "\"specifiedAs\": {\"n\": {\"$lt\": 3}}, \"reason\": \"comparison failed\", "
                  "\"consideredValue\": 3}}");
    bson_destroy(&reply);
}

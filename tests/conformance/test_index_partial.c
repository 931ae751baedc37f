/*
 * Conformance: which partialFilterExpression mongod 6.0 takes. IndexCatalogImpl::_isSpecOk and
 * _checkValidFilterExpressions (src/mongo/db/catalog/index_catalog_impl.cpp, with the
 * timeseriesMetricIndexes feature flag off as in 6.0) accept equality, $exists: true,
 * $gt/$gte/$lt/$lte, $type and $and at the top level only; anything else fails createIndexes
 * with CannotCreateIndex 67 "Error in specification <spec> :: caused by :: Expression not
 * supported in partial index: <debugString>". $expr is banned by the parser
 * (MatchExpressionParser::kBanAllSpecialFeatures): QueryFeatureNotAllowed 224. See also the
 * manual page "Partial Indexes" (Create a Partial Index). Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

#include <stdio.h>

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "index_partial");
    cf_run_ok(client, dbname, "{\"create\": \"c\"}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(index_partial, .init = setup, .fini = teardown);

/* createIndexes {key: {k: 1}, name, partialFilterExpression: filter}; true when it built. */
static bool
create_partial(const char *name, const char *filter_json, bson_error_t *error)
{
    char *cmd = bson_strdup_printf("{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"k\": 1}, "
                                   "\"name\": \"%s\", \"partialFilterExpression\": %s}]}",
                                   name, filter_json);
    bson_t reply;
    bool ok = cf_run(client, dbname, cmd, &reply, error);
    bson_destroy(&reply);
    bson_free(cmd);
    return ok;
}

Test(index_partial, supported_expressions_build)
{
    static const char *const filters[] = {
        "{\"a\": 1}",
        "{\"a\": {\"$eq\": \"x\"}}",
        "{\"a\": null}",
        "{\"a\": {\"b\": 1}}",
        "{\"a\": {\"$exists\": true}}",
        "{\"a\": {\"$gt\": 1}}",
        "{\"a\": {\"$gte\": 1, \"$lt\": 5}}",
        "{\"a\": {\"$lte\": {\"$date\": \"2030-01-01T00:00:00Z\"}}}",
        "{\"a\": {\"$type\": \"string\"}}",
        "{\"a\": {\"$exists\": true}, \"b\": {\"$type\": \"int\"}}",
        "{\"$and\": [{\"a\": 1}, {\"b\": {\"$gt\": 2}}]}",
    };
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        char name[16];
        bson_error_t error;
        snprintf(name, sizeof name, "p%zu", i);
        cr_assert(create_partial(name, filters[i], &error), "%s: %s", filters[i], error.message);
    }
}

/* The filter is refused with 67 and the reason ends with the expression's debugString. */
static void
assert_unsupported(const char *filter_json, const char *debug)
{
    bson_error_t error;
    cr_assert_not(create_partial("bad", filter_json, &error), "%s was accepted", filter_json);
    cr_assert_eq(error.code, 67, "%s: CannotCreateIndex, got %u: %s", filter_json, error.code,
                 error.message);
    char *tail = bson_strdup_printf(" :: caused by :: Expression not supported in partial "
                                    "index: %s", debug);
    cf_assert_contains(error.message, tail);
    cf_assert_contains(error.message, "Error in specification {");
    bson_free(tail);
}

Test(index_partial, in_or_and_negations_are_refused)
{
    assert_unsupported("{\"a\": {\"$in\": [2, 1]}}", "a $in [ 1 2 ]\n");
    assert_unsupported("{\"$or\": [{\"a\": 1}, {\"b\": 2}]}", "$or\n    a $eq 1\n    b $eq 2\n");
    assert_unsupported("{\"a\": {\"$exists\": false}}", "$not\n    a exists\n");
    assert_unsupported("{\"a\": {\"$ne\": 1}}", "$not\n    a $eq 1\n");
    assert_unsupported("{\"b\": {\"$exists\": true}, \"a\": {\"$in\": [1]}}", "a $in [ 1 ]\n");
}

Test(index_partial, and_below_the_top_level_is_refused)
{
    bson_error_t error;
    /* {a: {$gt: 1, $lt: 5}} inside $and is itself an $and: one level too deep. */
    cr_assert_not(create_partial("bad", "{\"$and\": [{\"a\": {\"$gt\": 1, \"$lt\": 5}}]}", &error));
    cr_assert_eq(error.code, 67, "got %u: %s", error.code, error.message);
    cf_assert_contains(error.message,
                       "$and only supported in partialFilterExpression at top level");
}

Test(index_partial, expr_is_not_allowed)
{
    bson_error_t error;
    cr_assert_not(create_partial("bad", "{\"$expr\": {\"$eq\": [\"$a\", 1]}}", &error));
    cr_assert_eq(error.code, 224, "QueryFeatureNotAllowed, got %u: %s", error.code,
                 error.message);
    cf_assert_contains(error.message, "$expr is not allowed in this context");
}

Test(index_partial, refused_index_is_not_created)
{
    bson_error_t error;
    bson_t reply;
    cr_assert_not(create_partial("bad", "{\"a\": {\"$in\": [1, 2]}}", &error));
    cr_assert(cf_run(client, dbname, "{\"listIndexes\": \"c\"}", &reply, &error), "%s",
              error.message);
    bson_iter_t it;
    cr_assert(cf_find(&reply, "cursor.firstBatch.1", &it) == false, "only _id_ exists: %s",
              bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
}

Test(index_partial, sparse_with_a_partial_filter_is_refused)
{
    bson_t reply;
    bson_error_t error;
    uint32_t code = cf_run_fail(client, dbname,
                                "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"k\": 1}, "
                                "\"name\": \"k_1\", \"sparse\": true, \"partialFilterExpression\": "
                                "{\"a\": 1}}]}",
                                &reply, &error);
    cr_assert_eq(code, 67, "CannotCreateIndex, got %u: %s", code, error.message);
    cf_assert_contains(error.message,
                       "cannot mix \"partialFilterExpression\" and \"sparse\" options");
    bson_destroy(&reply);
}

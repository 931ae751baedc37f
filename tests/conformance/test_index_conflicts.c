/*
 * Conformance: createIndexes against existing indexes, as mongod 6.0's
 * IndexCatalogImpl::_doesSpecConflictWithExisting (src/mongo/db/catalog/index_catalog_impl.cpp)
 * and IndexDescriptor::compareIndexOptions (src/mongo/db/index/index_descriptor.cpp) decide:
 * the key pattern, unique, sparse and the partial filter are the index's signature.
 *  - same name, another signature: IndexKeySpecsConflict 86;
 *  - same name and signature, other options (expireAfterSeconds): IndexOptionsConflict 85;
 *  - another name, same signature: IndexOptionsConflict 85;
 *  - another name, another signature on the same key pattern: a second index;
 *  - identical (partial filters equal after normalisation, numbers by value): a no-op.
 * Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "index_conflicts");
    cf_run_ok(client, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"a\": 1}, \"name\": \"a_1\", "
              "\"expireAfterSeconds\": 10, \"partialFilterExpression\": {\"x\": 1, \"y\": "
              "{\"$gt\": 2}}}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(index_conflicts, .init = setup, .fini = teardown);

/* createIndexes with one spec (its JSON); returns the error code, 0 on success. */
static uint32_t
create(const char *spec_json, char *message, size_t message_size)
{
    char *cmd = bson_strdup_printf("{\"createIndexes\": \"c\", \"indexes\": [%s]}", spec_json);
    bson_t reply;
    bson_error_t error;
    bool ok = cf_run(client, dbname, cmd, &reply, &error);
    if (message) {
        snprintf(message, message_size, "%s", ok ? "" : error.message);
    }
    bson_destroy(&reply);
    bson_free(cmd);
    return ok ? 0 : error.code;
}

static int64_t
index_count(void)
{
    bson_t reply;
    bson_error_t error;
    bson_iter_t it, batch;
    int64_t n = 0;
    cr_assert(cf_run(client, dbname, "{\"listIndexes\": \"c\"}", &reply, &error), "%s",
              error.message);
    cr_assert(cf_find(&reply, "cursor.firstBatch", &it) && bson_iter_recurse(&it, &batch));
    while (bson_iter_next(&batch)) {
        n++;
    }
    bson_destroy(&reply);
    return n;
}

Test(index_conflicts, same_name_with_another_signature_is_86)
{
    static const char *const specs[] = {
        /* another key pattern */
        "{\"key\": {\"b\": 1}, \"name\": \"a_1\"}",
        /* unique */
        "{\"key\": {\"a\": 1}, \"name\": \"a_1\", \"unique\": true, \"expireAfterSeconds\": 10, "
        "\"partialFilterExpression\": {\"x\": 1, \"y\": {\"$gt\": 2}}}",
        /* another partial filter */
        "{\"key\": {\"a\": 1}, \"name\": \"a_1\", \"expireAfterSeconds\": 10, "
        "\"partialFilterExpression\": {\"x\": 2, \"y\": {\"$gt\": 2}}}",
        /* no partial filter */
        "{\"key\": {\"a\": 1}, \"name\": \"a_1\", \"expireAfterSeconds\": 10}",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        char msg[512];
        uint32_t code = create(specs[i], msg, sizeof msg);
        cr_assert_eq(code, 86, "%s: IndexKeySpecsConflict, got %u: %s", specs[i], code, msg);
        cf_assert_contains(msg, "An existing index has the same name as the requested index.");
    }
    cr_assert_eq(index_count(), 2);
}

Test(index_conflicts, same_name_and_signature_with_other_options_is_85)
{
    char msg[512];
    uint32_t code = create("{\"key\": {\"a\": 1}, \"name\": \"a_1\", \"expireAfterSeconds\": 20, "
                           "\"partialFilterExpression\": {\"x\": 1, \"y\": {\"$gt\": 2}}}",
                           msg, sizeof msg);
    cr_assert_eq(code, 85, "IndexOptionsConflict, got %u: %s", code, msg);
    cf_assert_contains(msg, "An equivalent index already exists with the same name but different "
                            "options.");
}

Test(index_conflicts, another_name_with_the_same_signature_is_85)
{
    char msg[512];
    uint32_t code = create("{\"key\": {\"a\": 1}, \"name\": \"other\", \"expireAfterSeconds\": 10, "
                           "\"partialFilterExpression\": {\"y\": {\"$gt\": 2}, \"x\": 1}}",
                           msg, sizeof msg);
    cr_assert_eq(code, 85, "identical but for the name, got %u: %s", code, msg);
    cr_assert_str_eq(msg, "Index already exists with a different name: a_1");
    code = create("{\"key\": {\"a\": 1}, \"name\": \"other\", \"expireAfterSeconds\": 30, "
                  "\"partialFilterExpression\": {\"x\": 1, \"y\": {\"$gt\": 2}}}",
                  msg, sizeof msg);
    cr_assert_eq(code, 85, "other options too, got %u: %s", code, msg);
    cf_assert_contains(msg, "An equivalent index already exists with a different name and "
                            "options.");
    cr_assert_eq(index_count(), 2);
}

Test(index_conflicts, another_signature_on_the_same_key_is_a_new_index)
{
    char msg[512];
    uint32_t code = create("{\"key\": {\"a\": 1}, \"name\": \"a_unique\", \"unique\": true}", msg,
                           sizeof msg);
    cr_assert_eq(code, 0, "%s", msg);
    code = create("{\"key\": {\"a\": 1}, \"name\": \"a_other_filter\", "
                  "\"partialFilterExpression\": {\"x\": 2}}",
                  msg, sizeof msg);
    cr_assert_eq(code, 0, "%s", msg);
    cr_assert_eq(index_count(), 4);
}

Test(index_conflicts, an_identical_index_is_a_no_op)
{
    bson_t reply;
    bson_error_t error;
    /* The filter written another way ($and, explicit $eq, fields swapped) and the TTL as a
     * double are still the same index. */
    cr_assert(cf_run(client, dbname,
                     "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"a\": 1}, \"name\": "
                     "\"a_1\", \"expireAfterSeconds\": 10.0, \"partialFilterExpression\": "
                     "{\"$and\": [{\"y\": {\"$gt\": 2}}, {\"x\": {\"$eq\": 1}}]}}]}",
                     &reply, &error),
              "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "numIndexesBefore"), 2);
    cr_assert_eq(cf_int_at(&reply, "numIndexesAfter"), 2);
    cr_assert_str_eq(cf_str_at(&reply, "note"), "all indexes already exist");
    bson_destroy(&reply);
}

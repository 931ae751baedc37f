/*
 * Conformance: handshake and basic CRUD through libmongoc. Runs unchanged against mongod 6.0.
 */
#include "cf_util.h"

typedef struct {
    mongoc_client_t *client;
    char *db;
    mongoc_collection_t *coll;
} fixture_t;

static fixture_t fx;

static void
setup(void)
{
    cf_open(&fx.client, &fx.db, "core_crud");
    fx.coll = mongoc_client_get_collection(fx.client, fx.db, "c");
}

static void
teardown(void)
{
    mongoc_collection_destroy(fx.coll);
    cf_close(&fx.client, &fx.db);
}

static void
insert_json(const char *s)
{
    bson_error_t error;
    bson_t *doc = cf_json(s);
    cr_assert(mongoc_collection_insert_one(fx.coll, doc, NULL, NULL, &error), "%s",
              error.message);
    bson_destroy(doc);
}

static int64_t
count(const char *filter_json)
{
    bson_error_t error;
    bson_t *filter = cf_json(filter_json);
    int64_t n = mongoc_collection_count_documents(fx.coll, filter, NULL, NULL, NULL, &error);
    cr_assert(n >= 0, "%s", error.message);
    bson_destroy(filter);
    return n;
}

TestSuite(core_crud, .init = setup, .fini = teardown);

Test(core_crud, hello_describes_a_replica_set_primary)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(mtest_command(fx.client, "admin", "{\"hello\": 1}", &reply, &error), "%s",
              error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &reply, "isWritablePrimary") && bson_iter_as_bool(&it));
    cr_assert(bson_iter_init_find(&it, &reply, "setName") && BSON_ITER_HOLDS_UTF8(&it));
    cr_assert(bson_iter_init_find(&it, &reply, "maxWireVersion") && bson_iter_as_int64(&it) >= 17);
    cr_assert(bson_iter_init_find(&it, &reply, "localTime") && BSON_ITER_HOLDS_DATE_TIME(&it));
    cr_assert(bson_iter_init_find(&it, &reply, "operationTime"));
    cr_assert(bson_iter_init_find(&it, &reply, "$clusterTime"));
    bson_destroy(&reply);
}

Test(core_crud, unknown_command_is_command_not_found)
{
    bson_t reply;
    bson_error_t error;
    cr_assert_not(mtest_command(fx.client, fx.db, "{\"noSuchCommandForMongoq\": 1}", &reply,
                                &error));
    cr_assert_eq(error.code, 59);
    bson_destroy(&reply);
}

Test(core_crud, insert_find_with_sort_skip_limit_projection)
{
    for (int i = 0; i < 10; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "{\"_id\": %d, \"k\": %d, \"x\": \"v\"}", i, i % 3);
        insert_json(buf);
    }
    bson_t *filter = cf_json("{\"k\": {\"$gte\": 1}}");
    bson_t *opts = cf_json("{\"sort\": {\"k\": -1, \"_id\": 1}, \"skip\": 1, \"limit\": 3, "
                           "\"projection\": {\"x\": 0}}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(fx.coll, filter, opts, NULL);
    const bson_t *doc;
    int ids[3], n = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        cr_assert_not(bson_has_field(doc, "x"));
        cr_assert(n < 3);
        ids[n++] = (int32_t)cf_int_at(doc, "_id");
    }
    bson_error_t error;
    cr_assert_not(mongoc_cursor_error(cur, &error), "%s", error.message);
    cr_assert_eq(n, 3);
    /* k=2: ids 2,5,8; k=1: 1,4,7. Skip one -> 5, 8, 1. */
    cr_assert_eq(ids[0], 5);
    cr_assert_eq(ids[1], 8);
    cr_assert_eq(ids[2], 1);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
}

Test(core_crud, cursor_get_more_returns_everything_once)
{
    bson_t *docs[250];
    for (int i = 0; i < 250; i++) {
        docs[i] = BCON_NEW("i", BCON_INT32(i));
    }
    bson_error_t error;
    cr_assert(mongoc_collection_insert_many(fx.coll, (const bson_t **)docs, 250, NULL, NULL,
                                            &error), "%s", error.message);
    for (int i = 0; i < 250; i++) {
        bson_destroy(docs[i]);
    }
    bson_t *opts = cf_json("{\"batchSize\": 7, \"sort\": {\"i\": 1}}");
    bson_t empty = BSON_INITIALIZER;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(fx.coll, &empty, opts, NULL);
    const bson_t *doc;
    int n = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        cr_assert_eq((int32_t)cf_int_at(doc, "i"), n);
        n++;
    }
    cr_assert_not(mongoc_cursor_error(cur, &error), "%s", error.message);
    cr_assert_eq(n, 250);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
}

Test(core_crud, update_many_upsert_and_pipeline_update)
{
    insert_json("{\"_id\": 1, \"a\": 1}");
    insert_json("{\"_id\": 2, \"a\": 1}");
    bson_t reply;
    bson_error_t error;
    bson_t *filter = cf_json("{\"a\": 1}");
    bson_t *update = cf_json("{\"$inc\": {\"b\": 5}}");
    cr_assert(mongoc_collection_update_many(fx.coll, filter, update, NULL, &reply, &error), "%s",
              error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "matchedCount"), 2);
    cr_assert_eq((int32_t)cf_int_at(&reply, "modifiedCount"), 2);
    bson_destroy(&reply);
    bson_destroy(filter);
    bson_destroy(update);

    filter = cf_json("{\"_id\": 3}");
    update = cf_json("{\"$set\": {\"a\": 7}}");
    bson_t *opts = cf_json("{\"upsert\": true}");
    cr_assert(mongoc_collection_update_one(fx.coll, filter, update, opts, &reply, &error), "%s",
              error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "upsertedCount"), 1);
    cr_assert_eq((int32_t)cf_int_at(&reply, "upsertedId"), 3);
    bson_destroy(&reply);
    bson_destroy(filter);
    bson_destroy(update);
    bson_destroy(opts);
    cr_assert_eq(count("{\"_id\": 3, \"a\": 7}"), 1);

    filter = cf_json("{\"_id\": 1}");
    update = cf_json("[{\"$set\": {\"c\": {\"$add\": [\"$b\", 1]}, \"t\": \"$$NOW\"}}]");
    cr_assert(mongoc_collection_update_one(fx.coll, filter, update, NULL, &reply, &error), "%s",
              error.message);
    bson_destroy(&reply);
    bson_destroy(filter);
    bson_destroy(update);
    cr_assert_eq(count("{\"_id\": 1, \"c\": 6, "
                       "\"t\": {\"$gt\": {\"$date\": \"2000-01-01T00:00:00Z\"}}}"), 1);
}

Test(core_crud, delete_one_and_many)
{
    for (int i = 0; i < 5; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "{\"_id\": %d, \"even\": %s}", i, i % 2 ? "false" : "true");
        insert_json(buf);
    }
    bson_t reply;
    bson_error_t error;
    bson_t *filter = cf_json("{\"even\": true}");
    cr_assert(mongoc_collection_delete_one(fx.coll, filter, NULL, &reply, &error), "%s",
              error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "deletedCount"), 1);
    bson_destroy(&reply);
    cr_assert(mongoc_collection_delete_many(fx.coll, filter, NULL, &reply, &error), "%s",
              error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "deletedCount"), 2);
    bson_destroy(&reply);
    bson_destroy(filter);
    cr_assert_eq(count("{}"), 2);
}

Test(core_crud, find_and_modify_returns_before_or_after)
{
    insert_json("{\"_id\": 1, \"n\": 1}");
    bson_t reply;
    bson_error_t error;
    bson_t *query = cf_json("{\"_id\": 1}");
    bson_t *update = cf_json("{\"$inc\": {\"n\": 1}}");
    cr_assert(mongoc_collection_find_and_modify(fx.coll, query, NULL, update, NULL, false, false,
                                                true, &reply, &error), "%s", error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "value.n"), 2);
    cr_assert_eq((int32_t)cf_int_at(&reply, "lastErrorObject.n"), 1);
    bson_destroy(&reply);
    cr_assert(mongoc_collection_find_and_modify(fx.coll, query, NULL, update, NULL, false, false,
                                                false, &reply, &error), "%s", error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "value.n"), 2);
    bson_destroy(&reply);
    cr_assert(mongoc_collection_find_and_modify(fx.coll, query, NULL, NULL, NULL, true, false,
                                                false, &reply, &error), "%s", error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "value.n"), 3);
    bson_destroy(&reply);
    cr_assert(mongoc_collection_find_and_modify(fx.coll, query, NULL, update, NULL, false, false,
                                                false, &reply, &error), "%s", error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_NULL(&it));
    bson_destroy(&reply);
    bson_destroy(query);
    bson_destroy(update);
}

Test(core_crud, find_and_modify_upsert_reports_upserted)
{
    bson_t reply;
    bson_error_t error;
    bson_t *query = cf_json("{\"_id\": \"u1\"}");
    bson_t *update = cf_json("{\"$set\": {\"v\": 9}}");
    cr_assert(mongoc_collection_find_and_modify(fx.coll, query, NULL, update, NULL, false, true,
                                                true, &reply, &error), "%s", error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, &reply) &&
              bson_iter_find_descendant(&it, "lastErrorObject.upserted", &it));
    cr_assert_str_eq(bson_iter_utf8(&it, NULL), "u1");
    cr_assert(bson_iter_init(&it, &reply) &&
              bson_iter_find_descendant(&it, "lastErrorObject.updatedExisting", &it));
    cr_assert_not(bson_iter_as_bool(&it));
    cr_assert_eq((int32_t)cf_int_at(&reply, "value.v"), 9);
    bson_destroy(&reply);
    bson_destroy(query);
    bson_destroy(update);
}

Test(core_crud, distinct_count_and_aggregate)
{
    insert_json("{\"g\": \"a\", \"v\": 1}");
    insert_json("{\"g\": \"b\", \"v\": 2}");
    insert_json("{\"g\": \"a\", \"v\": 3}");
    bson_t reply;
    bson_error_t error;
    char *cmd = bson_strdup_printf("{\"distinct\": \"c\", \"key\": \"g\"}");
    cr_assert(mtest_command(fx.client, fx.db, cmd, &reply, &error), "%s", error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, &reply) && bson_iter_find_descendant(&it, "values.1", &it));
    cr_assert_str_eq(bson_iter_utf8(&it, NULL), "b");
    bson_destroy(&reply);
    bson_free(cmd);
    cr_assert_eq(count("{\"g\": \"a\"}"), 2);

    bson_t *pipeline = cf_json("[{\"$match\": {\"g\": \"a\"}}, {\"$group\": {\"_id\": \"$g\", "
                               "\"total\": {\"$sum\": \"$v\"}}}]");
    mongoc_cursor_t *cur = mongoc_collection_aggregate(fx.coll, MONGOC_QUERY_NONE, pipeline, NULL,
                                                       NULL);
    const bson_t *doc;
    cr_assert(mongoc_cursor_next(cur, &doc), "aggregate returned nothing");
    cr_assert_eq((int32_t)cf_int_at(doc, "total"), 4);
    cr_assert_not(mongoc_cursor_next(cur, &doc));
    cr_assert_not(mongoc_cursor_error(cur, &error), "%s", error.message);
    mongoc_cursor_destroy(cur);
    bson_destroy(pipeline);
}

Test(core_crud, insert_adds_object_id_first)
{
    insert_json("{\"a\": 1}");
    bson_t empty = BSON_INITIALIZER;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(fx.coll, &empty, NULL, NULL);
    const bson_t *doc;
    cr_assert(mongoc_cursor_next(cur, &doc));
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_next(&it));
    cr_assert_str_eq(bson_iter_key(&it), "_id");
    cr_assert(BSON_ITER_HOLDS_OID(&it));
    mongoc_cursor_destroy(cur);
}

Test(core_crud, ordered_and_unordered_insert_report_write_errors_by_index)
{
    bson_t reply;
    bson_error_t error;
    char *cmd = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [{\"_id\": 1}, {\"_id\": 1},"
                                   " {\"_id\": 2}], \"ordered\": false}");
    cr_assert(mtest_command(fx.client, fx.db, cmd, &reply, &error), "%s", error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "n"), 2);
    cr_assert_eq((int32_t)cf_int_at(&reply, "writeErrors.0.index"), 1);
    cr_assert_eq((int32_t)cf_int_at(&reply, "writeErrors.0.code"), 11000);
    bson_destroy(&reply);
    bson_free(cmd);
    cmd = bson_strdup_printf("{\"insert\": \"c\", \"documents\": [{\"_id\": 3}, {\"_id\": 1},"
                             " {\"_id\": 4}], \"ordered\": true}");
    cr_assert(mtest_command(fx.client, fx.db, cmd, &reply, &error), "%s", error.message);
    cr_assert_eq((int32_t)cf_int_at(&reply, "n"), 1);
    cr_assert_eq((int32_t)cf_int_at(&reply, "writeErrors.0.index"), 1);
    bson_destroy(&reply);
    bson_free(cmd);
    cr_assert_eq(count("{}"), 3);
}

Test(core_crud, get_more_on_unknown_cursor_is_cursor_not_found)
{
    bson_t reply;
    bson_error_t error;
    insert_json("{\"a\": 1}");
    cr_assert_not(mtest_command(fx.client, fx.db,
                                "{\"getMore\": {\"$numberLong\": \"123456789\"}, \"collection\": \"c\"}",
                                &reply, &error));
    cr_assert_eq(error.code, 43);
    bson_destroy(&reply);
}

Test(core_crud, unknown_field_is_refused)
{
    bson_t reply;
    bson_error_t error;
    cr_assert_not(mtest_command(fx.client, fx.db, "{\"find\": \"c\", \"noSuchOption\": 1}",
                                &reply, &error));
    cr_assert_eq(error.code, 40415);
    bson_destroy(&reply);
}

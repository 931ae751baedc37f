/*
 * Conformance: read-only views, as mongod 6.0 (manual: core/views, reference/command/create
 * viewOn/pipeline, reference/command/listCollections): reads (find, count, distinct, aggregate)
 * see the view's pipeline applied to what it is defined on (a collection or another view);
 * writes and index commands are CommandNotSupportedOnView 166; listCollections shows
 * {type: "view", options: {viewOn, pipeline}, info: {readOnly: true}}; drop removes a view.
 * The crud specification's "estimatedDocumentCount works correctly on views" counts through one.
 */
#include "cf_util.h"

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "views");
    cf_run_ok(client, dbname,
              "{\"insert\": \"c\", \"documents\": [{\"_id\": 1, \"k\": \"a\"}, {\"_id\": 2, \"k\": "
              "\"b\"}, {\"_id\": 3, \"k\": \"b\"}]}");
    cf_run_ok(client, dbname,
              "{\"create\": \"v\", \"viewOn\": \"c\", \"pipeline\": [{\"$match\": {\"_id\": "
              "{\"$gt\": 1}}}]}");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(views, .init = setup, .fini = teardown);

Test(views, reads_apply_the_view_pipeline)
{
    bson_t reply;
    cf_run_ok_reply(client, dbname, "{\"count\": \"v\"}", &reply);
    cr_assert_eq(cf_int_at(&reply, "n"), 2);
    bson_destroy(&reply);
    cf_run_ok_reply(client, dbname, "{\"find\": \"v\", \"filter\": {\"_id\": 3}}", &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0._id"), 3);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.1"));
    bson_destroy(&reply);
    cf_run_ok_reply(client, dbname, "{\"distinct\": \"v\", \"key\": \"k\"}", &reply);
    cr_assert_str_eq(cf_str_at(&reply, "values.0"), "b");
    cr_assert_not(cf_has_at(&reply, "values.1"));
    bson_destroy(&reply);
    cf_run_ok_reply(client, dbname,
                    "{\"aggregate\": \"v\", \"pipeline\": [{\"$count\": \"n\"}], \"cursor\": {}}",
                    &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0.n"), 2);
    bson_destroy(&reply);
}

Test(views, a_view_on_a_view)
{
    cf_run_ok(client, dbname,
              "{\"create\": \"w\", \"viewOn\": \"v\", \"pipeline\": [{\"$project\": {\"k\": 0}}]}");
    bson_t reply;
    cf_run_ok_reply(client, dbname, "{\"find\": \"w\", \"sort\": {\"_id\": -1}}", &reply);
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.0._id"), 3);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.0.k"));
    cr_assert_eq(cf_int_at(&reply, "cursor.firstBatch.1._id"), 2);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.2"));
    bson_destroy(&reply);
}

Test(views, writes_and_index_commands_are_refused)
{
    const char *cmds[] = {
        "{\"insert\": \"v\", \"documents\": [{\"_id\": 9}]}",
        "{\"update\": \"v\", \"updates\": [{\"q\": {}, \"u\": {\"$set\": {\"x\": 1}}}]}",
        "{\"delete\": \"v\", \"deletes\": [{\"q\": {}, \"limit\": 0}]}",
        "{\"findAndModify\": \"v\", \"query\": {}, \"remove\": true}",
        "{\"createIndexes\": \"v\", \"indexes\": [{\"key\": {\"k\": 1}, \"name\": \"k_1\"}]}",
        "{\"listIndexes\": \"v\"}",
        NULL};
    for (int i = 0; cmds[i]; i++) {
        cr_assert_eq(cf_run_fail(client, dbname, cmds[i], NULL, NULL), 166, "%s", cmds[i]);
    }
}

Test(views, list_collections_shows_a_view_and_drop_removes_it)
{
    bson_t reply;
    cf_run_ok_reply(client, dbname, "{\"listCollections\": 1, \"filter\": {\"name\": \"v\"}}",
                    &reply);
    cr_assert_str_eq(cf_str_at(&reply, "cursor.firstBatch.0.type"), "view");
    cr_assert_str_eq(cf_str_at(&reply, "cursor.firstBatch.0.options.viewOn"), "c");
    cr_assert(cf_has_at(&reply, "cursor.firstBatch.0.options.pipeline.0.$match"));
    bson_iter_t it;
    cr_assert(cf_find(&reply, "cursor.firstBatch.0.info.readOnly", &it) &&
              bson_iter_as_bool(&it));
    bson_destroy(&reply);
    cf_run_ok(client, dbname, "{\"drop\": \"v\"}");
    cf_run_ok_reply(client, dbname, "{\"listCollections\": 1, \"filter\": {\"name\": \"v\"}}",
                    &reply);
    cr_assert_not(cf_has_at(&reply, "cursor.firstBatch.0"));
    bson_destroy(&reply);
}

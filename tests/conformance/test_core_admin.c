/*
 * Conformance: collections and databases, write concern edge cases, refusals and generic
 * command fields. Runs unchanged against mongod 6.0 (replica set of one).
 */
#include "cf_util.h"

#include <string.h>

static mongoc_client_t *client;
static char *dbname;

static void
setup(void)
{
    cf_open(&client, &dbname, "core_admin");
}

static void
teardown(void)
{
    cf_close(&client, &dbname);
}

TestSuite(core_admin, .init = setup, .fini = teardown);

Test(core_admin, create_list_and_drop_collections)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname, "{\"create\": \"a\"}", NULL, &error), "%s", error.message);
    cr_assert_eq((int)cf_run_fail(client, dbname, "{\"create\": \"a\"}", NULL, NULL), 48);
    cr_assert(cf_run(client, dbname, "{\"insert\": \"b\", \"documents\": [{}]}", NULL, &error),
              "%s", error.message);
    cr_assert(cf_run(client, dbname,
                     "{\"listCollections\": 1, \"nameOnly\": true, \"filter\": {\"name\": \"b\"}}",
                     &reply, &error),
              "%s", error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, &reply) &&
              bson_iter_find_descendant(&it, "cursor.firstBatch.0.name", &it));
    cr_assert_str_eq(bson_iter_utf8(&it, NULL), "b");
    cr_assert_not(bson_iter_init(&it, &reply) &&
                  bson_iter_find_descendant(&it, "cursor.firstBatch.1", &it));
    bson_destroy(&reply);
    cr_assert(cf_run(client, dbname, "{\"drop\": \"a\"}", NULL, &error), "%s", error.message);
    cr_assert_eq((int)cf_run_fail(client, dbname, "{\"drop\": \"a\"}", NULL, NULL), 26,
                 "mongod 6.0: ns not found");
}

Test(core_admin, list_databases_shows_the_database)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname, "{\"insert\": \"c\", \"documents\": [{}]}", NULL, &error),
              "%s", error.message);
    char *cmd = bson_strdup_printf("{\"listDatabases\": 1, \"nameOnly\": true, \"filter\": "
                                   "{\"name\": \"%s\"}}", dbname);
    cr_assert(mtest_command(client, "admin", cmd, &reply, &error), "%s", error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, &reply) &&
              bson_iter_find_descendant(&it, "databases.0.name", &it));
    cr_assert_str_eq(bson_iter_utf8(&it, NULL), dbname);
    bson_destroy(&reply);
    bson_free(cmd);
}

Test(core_admin, invalid_collection_names_are_refused)
{
    cr_assert_eq(
        (int)cf_run_fail(client, dbname, "{\"insert\": \"a$b\", \"documents\": [{}]}", NULL, NULL),
        73);
    cr_assert_eq((int)cf_run_fail(client, dbname, "{\"insert\": \"system.x\", \"documents\": [{}]}",
                                  NULL, NULL),
                 73);
}

Test(core_admin, unsatisfiable_write_concerns_report_write_concern_errors)
{
    bson_t reply;
    bson_error_t error;
    cf_run(client, dbname,
           "{\"insert\": \"c\", \"documents\": [{\"_id\": 1}], \"writeConcern\": {\"w\": 2, "
           "\"wtimeout\": 100}}",
           &reply, &error);
    cr_assert_eq(cf_int_at(&reply, "writeConcernError.code"), 100);
    bson_destroy(&reply);
    cf_run(client, dbname,
           "{\"insert\": \"c\", \"documents\": [{\"_id\": 2}], \"writeConcern\": {\"w\": "
           "\"noSuchTag\"}}",
           &reply, &error);
    cr_assert_eq(cf_int_at(&reply, "writeConcernError.code"), 79);
    bson_destroy(&reply);
    cr_assert(cf_run(client, dbname, "{\"count\": \"c\"}", &reply, &error), "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "n"), 2, "the writes were applied");
    bson_destroy(&reply);
    cr_assert(cf_run(client, dbname,
                     "{\"insert\": \"c\", \"documents\": [{\"_id\": 3}], \"writeConcern\": {\"w\": "
                     "\"majority\", \"j\": true}}",
                     &reply, &error),
              "%s", error.message);
    cr_assert_not(bson_has_field(&reply, "writeConcernError"));
    bson_destroy(&reply);
}

Test(core_admin, generic_fields_are_accepted)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, dbname,
                     "{\"find\": \"c\", \"filter\": {}, \"comment\": \"hi\", \"maxTimeMS\": 5000, "
                     "\"readConcern\": {\"level\": \"majority\"}, \"$readPreference\": {\"mode\": "
                     "\"primary\"}}",
                     &reply, &error),
              "%s", error.message);
    bson_destroy(&reply);
}

Test(core_admin, unsupported_stage_and_operator_are_refused)
{
    cr_assert_eq((int)cf_run_fail(client, dbname,
                                  "{\"aggregate\": \"c\", \"pipeline\": [{\"$noSuchStage\": {}}], "
                                  "\"cursor\": {}}",
                                  NULL, NULL),
                 40324);
    cr_assert_eq((int)cf_run_fail(client, dbname,
                                  "{\"find\": \"c\", \"filter\": {\"a\": {\"$noSuchOp\": 1}}}",
                                  NULL, NULL),
                 2);
}

Test(core_admin, build_info_and_server_status)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(mtest_command(client, "admin", "{\"buildInfo\": 1}", &reply, &error), "%s",
              error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &reply, "version") && BSON_ITER_HOLDS_UTF8(&it));
    cr_assert(bson_iter_init(&it, &reply) && bson_iter_find_descendant(&it, "versionArray.0", &it));
    cr_assert_geq(bson_iter_as_int64(&it), 6);
    bson_destroy(&reply);
    cr_assert(mtest_command(client, "admin", "{\"serverStatus\": 1}", &reply, &error), "%s",
              error.message);
    bson_destroy(&reply);
}

Test(core_admin, kill_cursors_reports_killed_and_not_found)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(
        cf_run(client, dbname, "{\"insert\": \"c\", \"documents\": [{}, {}, {}]}", NULL, &error),
        "%s", error.message);
    cr_assert(cf_run(client, dbname, "{\"find\": \"c\", \"batchSize\": 1}", &reply, &error), "%s",
              error.message);
    int64_t id = cf_int_at(&reply, "cursor.id");
    cr_assert_neq(id, 0);
    bson_destroy(&reply);
    char *cmd = bson_strdup_printf("{\"killCursors\": \"c\", \"cursors\": [{\"$numberLong\": "
                                   "\"%lld\"}, {\"$numberLong\": \"42\"}]}", (long long)id);
    cr_assert(cf_run(client, dbname, cmd, &reply, &error), "%s", error.message);
    cr_assert_eq(cf_int_at(&reply, "cursorsKilled.0"), id);
    cr_assert_eq(cf_int_at(&reply, "cursorsNotFound.0"), 42);
    bson_destroy(&reply);
    bson_free(cmd);
}

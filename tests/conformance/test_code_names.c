/*
 * Conformance: an error reply names its code as mongod does, codeName beside code (the names
 * are mongod's src/mongo/base/error_codes.yml; the reply's shape: manual,
 * reference/method/db.runCommand, "Response"). Drivers match on codeName (the unified test
 * format's errorCodeName; transactions/retryable-commit.json expects "Interrupted" for 11601),
 * so a code the server sends, or lets failCommand send, must carry mongod's name, not
 * Location<code>. A code produced by a command itself (MaxTimeMSExpired) is in test_max_time.c.
 * Runs unchanged against mongod 6.0 with enableTestCommands.
 */
#include "cf_util.h"

#include <stdio.h>
#include <string.h>

static mongoc_client_t *admin;
static mongoc_client_t *victim;
static char *dbname;
static char appname[64];
static int lock_fd = -1;

static void
setup(void)
{
    lock_fd = cf_fail_points_lock();
    char *name = mtest_db_name("codes");
    snprintf(appname, sizeof appname, "%s", name);
    bson_free(name);
    admin = mtest_client_new("code-names-admin");
    victim = mtest_client_new(appname);
    dbname = mtest_db_name("code_names");
}

static void
teardown(void)
{
    mtest_fail_point(admin, "\"off\"", NULL);
    mtest_db_drop(admin, dbname);
    bson_free(dbname);
    mongoc_client_destroy(victim);
    mongoc_client_destroy(admin);
    cf_fail_points_unlock(lock_fd);
}

TestSuite(code_names, .init = setup, .fini = teardown);

static const struct {
    int code;
    const char *name;
} named[] = {
    {11601, "Interrupted"},      {11600, "InterruptedAtShutdown"}, {91, "ShutdownInProgress"},
    {189, "PrimarySteppedDown"}, {10107, "NotWritablePrimary"},    {262, "ExceededTimeLimit"},
    {112, "WriteConflict"},      {251, "NoSuchTransaction"},       {50, "MaxTimeMSExpired"},
};

Test(code_names, injected_codes_carry_mongods_names)
{
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        char fields[96];
        snprintf(fields, sizeof fields, "\"failCommands\": [\"find\"], \"errorCode\": %d",
                 named[i].code);
        mtest_fail_point_app(admin, appname, "{\"times\": 1}", fields);
        bson_t reply;
        cr_assert_eq(cf_run_fail(victim, dbname, "{\"find\": \"c\", \"filter\": {}}", &reply, NULL),
                     (uint32_t)named[i].code);
        const char *name = cf_str_at(&reply, "codeName");
        cr_assert(name && strcmp(name, named[i].name) == 0, "code %d: codeName %s, mongod says %s",
                  named[i].code, name ? name : "(none)", named[i].name);
        bson_destroy(&reply);
    }
}

Test(code_names, the_servers_own_errors_are_named)
{
    bson_t reply;
    cr_assert_eq(cf_run_fail(victim, dbname, "{\"noSuchCommand\": 1}", &reply, NULL), 59);
    cr_assert_str_eq(cf_str_at(&reply, "codeName"), "CommandNotFound");
    bson_destroy(&reply);
    cr_assert_eq(cf_run_fail(victim, dbname, "{\"find\": \"c\", \"filter\": 1}", &reply, NULL), 14);
    cr_assert_str_eq(cf_str_at(&reply, "codeName"), "TypeMismatch");
    bson_destroy(&reply);
}

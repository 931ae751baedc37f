#include "router_util.h"

#include <stdlib.h>

const char *
rtest_uri(void)
{
    const char *uri = getenv("MONGOQ_TEST_MONGOS_URI");
    if (!uri || !*uri) {
        cr_skip_test("MONGOQ_TEST_MONGOS_URI is not set (a mongos: mongoq-test-router or real)");
    }
    return uri;
}

mongoc_client_t *
rtest_client(void)
{
    return mtest_client_for(rtest_uri(), "router-tests");
}

bool
rtest_cmd(mongoc_client_t *client, const char *db, const char *json, bson_t *reply,
          bson_error_t *error)
{
    bson_error_t e;
    bson_t *cmd = bson_new_from_json((const uint8_t *)json, -1, &e);
    cr_assert(cmd, "bad JSON %s: %s", json, e.message);
    bson_t local;
    bool ok = mongoc_client_command_simple(client, db, cmd, NULL, reply ? reply : &local,
                                          error ? error : &e);
    if (!reply) {
        bson_destroy(&local);
    }
    if (!reply && !error) {
        cr_assert(ok, "%s failed: %s", json, e.message);
    }
    bson_destroy(cmd);
    return ok;
}

void
rtest_shard(mongoc_client_t *client, const char *db, const char *coll, const char *key_json)
{
    char *json = bson_strdup_printf("{\"shardCollection\": \"%s.%s\", \"key\": %s}", db, coll,
                                    key_json);
    rtest_cmd(client, "admin", json, NULL, NULL);
    bson_free(json);
}

int64_t
rtest_noop_interval_ms(void)
{
    const char *v = getenv("MONGOQ_TEST_NOOP_INTERVAL_MS");
    return v ? atoll(v) : 0;
}

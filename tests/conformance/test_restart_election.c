/*
 * A restarted primary must stay selectable: drivers (SDAM) ignore a primary whose electionId
 * (compared with setVersion) is older than one they have seen, so a primary's electionId only
 * grows, as mongod's does with its term. One client pool lives through two kill -9 restarts on
 * the same port, each as quick as it can be (within the same second), and keeps working.
 * Runs on private server processes; skipped when they cannot be spawned.
 */
#include "testutil.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void
re_suite_init(void)
{
    mongoc_init();
}

TestSuite(restart_election, .init = re_suite_init, .timeout = 90);



/* What hello says about the replica set; asserts the fields a primary must carry. */
typedef struct {
    bson_oid_t election_id;
    int32_t set_version;
} re_hello_t;

static void
re_hello(mongoc_client_t *client, re_hello_t *out)
{
    bson_t reply;
    bson_error_t error;
    bson_iter_t it;
    bson_t *cmd = BCON_NEW("hello", BCON_INT32(1));
    cr_assert(mongoc_client_command_simple(client, "admin", cmd, NULL, &reply, &error), "hello: %s",
              error.message);
    cr_assert(bson_iter_init_find(&it, &reply, "isWritablePrimary") && bson_iter_as_bool(&it));
    cr_assert(bson_iter_init_find(&it, &reply, "electionId") && BSON_ITER_HOLDS_OID(&it),
              "a replica set primary reports electionId");
    bson_oid_copy(bson_iter_oid(&it), &out->election_id);
    cr_assert(bson_iter_init_find(&it, &reply, "setVersion") && BSON_ITER_HOLDS_INT32(&it),
              "a replica set primary reports setVersion");
    out->set_version = bson_iter_int32(&it);
    /* topologyVersion would turn on streaming monitoring, which the test server lacks. */
    cr_assert(!bson_has_field(&reply, "topologyVersion"));
    bson_destroy(cmd);
    bson_destroy(&reply);
}

/* An insert then a count through a client from the pool, each expected to work first time. */
static void
re_use_pool(mongoc_client_pool_t *pool, int id, re_hello_t *hello)
{
    bson_error_t error;
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "re", "c");
    bson_t *doc = BCON_NEW("_id", BCON_INT32(id));
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "insert %d: %s", id,
              error.message);
    bson_t empty = BSON_INITIALIZER;
    int64_t n = mongoc_collection_count_documents(coll, &empty, NULL, NULL, NULL, &error);
    cr_assert_eq(n, id, "count after insert %d: %lld (%s)", id, (long long)n, error.message);
    re_hello(client, hello);
    bson_destroy(&empty);
    bson_destroy(doc);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(pool, client);
}

Test(restart_election, pool_survives_quick_restarts)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    char *dir = mtest_tmpdir("election");
    const char *args[] = {"--dbpath", dir, NULL};
    mtest_server_t srv;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    /* A stale primary is never selected: fail in 10 s rather than the default 30. */
    char *uri_str = bson_strdup_printf("%s%sserverSelectionTimeoutMS=10000", srv.uri,
                                       strchr(srv.uri, '?') ? "&" : "?");
    mongoc_uri_t *uri = mongoc_uri_new(uri_str);
    cr_assert(uri != NULL, "bad URI %s", uri_str);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    re_hello_t before;
    re_use_pool(pool, 1, &before);

    for (int round = 0; round < 2; round++) {
        int port = srv.port;
        mtest_server_stop(&srv, true);
        cr_assert(mtest_server_start(&srv, args, port), "restart %d on port %d", round + 1, port);
        re_hello_t after;
        re_use_pool(pool, round + 2, &after);
        cr_assert(bson_oid_compare(&before.election_id, &after.election_id) < 0,
                  "electionId grows across restart %d", round + 1);
        cr_assert_eq(after.set_version, before.set_version, "setVersion stays the same");
        before = after;
    }

    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    bson_free(uri_str);
    mtest_server_stop(&srv, false);
    mtest_tmpdir_remove(dir);
}

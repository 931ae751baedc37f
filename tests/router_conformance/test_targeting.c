/*
 * Targeting rules of mongos 6.0 for a collection sharded on {p: "hashed"}:
 *  - findAndModify without an equality on the shard key: ShardKeyNotFound 61 ("Query for sharded
 *    findAndModify must contain the shard key", s/commands/cluster_find_and_modify_cmd.cpp);
 *    with it, it runs on the one shard.
 *  - updateOne without the shard key or an exact _id: InvalidOptions 72 ("A {multi:false} update
 *    on a sharded collection must contain an exact match on _id ...", s/chunk_manager_targeter.cpp
 *    targetUpdate); deleteOne: ShardKeyNotFound 61 (targetDelete).
 *  - a unique index must have the shard key as prefix: CannotCreateIndex 67
 *    (ShardKeyPattern::isUniqueIndexCompatible, s/shard_key_pattern.cpp).
 *  - a multi update is broadcast to every shard; one that changes a shard key value fails with
 *    InvalidOptions 72 "Multi-update operations are not allowed when updating the shard key
 *    field." (db/exec/update_stage.cpp).
 */
#include "router_util.h"

typedef struct {
    mongoc_client_t *client;
    char *db;
    mongoc_collection_t *coll;
} fixture_t;

static void
setup(fixture_t *f, int ndocs)
{
    f->client = rtest_client();
    f->db = mtest_db_name("rtarget");
    rtest_shard(f->client, f->db, "q", "{\"p\": \"hashed\"}");
    f->coll = mongoc_client_get_collection(f->client, f->db, "q");
    for (int k = 0; k < ndocs; k++) {
        bson_error_t error;
        bson_t *doc = BCON_NEW("_id", BCON_INT32(k), "p", BCON_INT32(k), "v", BCON_INT32(k));
        cr_assert(mongoc_collection_insert_one(f->coll, doc, NULL, NULL, &error), "%s",
                  error.message);
        bson_destroy(doc);
    }
}

static void
teardown(fixture_t *f)
{
    mongoc_collection_destroy(f->coll);
    mtest_db_drop(f->client, f->db);
    bson_free(f->db);
    mongoc_client_destroy(f->client);
}

Test(router_targeting, find_and_modify_needs_shard_key)
{
    fixture_t f;
    bson_error_t error;
    bson_t reply;
    setup(&f, 10);
    bson_t *query = BCON_NEW("v", BCON_INT32(3));
    bson_t *update = BCON_NEW("$set", "{", "claimed", BCON_BOOL(true), "}");
    bool ok = mongoc_collection_find_and_modify(f.coll, query, NULL, update, NULL, false, false,
                                                true, &reply, &error);
    cr_assert(!ok, "findAndModify without the shard key must fail on a sharded collection");
    cr_assert_eq(error.code, 61, "ShardKeyNotFound, got %u: %s", error.code, error.message);
    cr_assert(strstr(error.message, "sharded findAndModify"), "%s", error.message);
    bson_destroy(&reply);
    bson_t *with_key = BCON_NEW("p", BCON_INT32(3), "v", BCON_INT32(3));
    ok = mongoc_collection_find_and_modify(f.coll, with_key, NULL, update, NULL, false, false, true,
                                           &reply, &error);
    cr_assert(ok, "%s", error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it),
              "the document was found on its shard");
    bson_destroy(&reply);
    bson_destroy(with_key);
    bson_destroy(query);
    bson_destroy(update);
    teardown(&f);
}

Test(router_targeting, update_one_and_delete_one_need_shard_key)
{
    fixture_t f;
    bson_error_t error;
    setup(&f, 10);
    bson_t *query = BCON_NEW("v", BCON_INT32(4));
    bson_t *update = BCON_NEW("$set", "{", "x", BCON_INT32(1), "}");
    bool ok = mongoc_collection_update_one(f.coll, query, update, NULL, NULL, &error);
    cr_assert(!ok);
    cr_assert_eq(error.code, 72, "InvalidOptions, got %u: %s", error.code, error.message);
    ok = mongoc_collection_delete_one(f.coll, query, NULL, NULL, &error);
    cr_assert(!ok);
    cr_assert_eq(error.code, 61, "ShardKeyNotFound, got %u: %s", error.code, error.message);
    /* an exact _id is allowed (broadcast), and so is the full shard key */
    bson_t *by_id = BCON_NEW("_id", BCON_INT32(4));
    bson_t reply;
    ok = mongoc_collection_update_one(f.coll, by_id, update, NULL, &reply, &error);
    cr_assert(ok, "%s", error.message);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &reply, "matchedCount") && bson_iter_as_int64(&it) == 1);
    bson_destroy(&reply);
    bson_t *by_key = BCON_NEW("p", BCON_INT32(5));
    cr_assert(mongoc_collection_delete_one(f.coll, by_key, NULL, &reply, &error), "%s",
              error.message);
    cr_assert(bson_iter_init_find(&it, &reply, "deletedCount") && bson_iter_as_int64(&it) == 1);
    bson_destroy(&reply);
    bson_destroy(by_key);
    bson_destroy(by_id);
    bson_destroy(query);
    bson_destroy(update);
    teardown(&f);
}

Test(router_targeting, unique_index_needs_shard_key_prefix)
{
    fixture_t f;
    bson_error_t error;
    bson_t reply;
    setup(&f, 0);
    char *bad = bson_strdup_printf("{\"createIndexes\": \"q\", \"indexes\": [{\"key\": {\"dedup\": 1}, "
                                   "\"name\": \"dedup_1\", \"unique\": true}]}");
    cr_assert(!rtest_cmd(f.client, f.db, bad, &reply, &error));
    cr_assert_eq(error.code, 67, "CannotCreateIndex, got %u: %s", error.code, error.message);
    bson_destroy(&reply);
    /* prefixed by the shard key field: accepted (the hashed field as an ascending index field) */
    char *good = bson_strdup_printf("{\"createIndexes\": \"q\", \"indexes\": [{\"key\": {\"p\": 1, "
                                    "\"dedup\": 1}, \"name\": \"p_dedup\", \"unique\": true}]}");
    cr_assert(rtest_cmd(f.client, f.db, good, &reply, &error), "%s", error.message);
    bson_destroy(&reply);
    bson_free(bad);
    bson_free(good);
    teardown(&f);
}

Test(router_targeting, multi_update_broadcast_and_shard_key_change)
{
    fixture_t f;
    bson_error_t error;
    bson_t reply;
    bson_iter_t it;
    setup(&f, 40);
    bson_t *all = bson_new();
    bson_t *inc = BCON_NEW("$inc", "{", "v", BCON_INT32(100), "}");
    cr_assert(mongoc_collection_update_many(f.coll, all, inc, NULL, &reply, &error), "%s",
              error.message);
    cr_assert(bson_iter_init_find(&it, &reply, "modifiedCount"));
    cr_assert_eq(bson_iter_as_int64(&it), 40, "every document on every shard was updated");
    bson_destroy(&reply);
    bson_t *move = BCON_NEW("$inc", "{", "p", BCON_INT32(1), "}");
    cr_assert(!mongoc_collection_update_many(f.coll, all, move, NULL, &reply, &error));
    cr_assert_eq(error.code, 72, "InvalidOptions, got %u: %s", error.code, error.message);
    cr_assert(strstr(error.message, "shard key"), "%s", error.message);
    bson_destroy(&reply);
    bson_destroy(move);
    bson_destroy(inc);
    bson_destroy(all);
    teardown(&f);
}

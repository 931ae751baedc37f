/*
 * What a driver sees of a mongos, and sharding a collection.
 *  - hello: msg "isdbgrid" and no setName (s/commands/cluster_hello_cmd.cpp; drivers' SDAM spec
 *    "Mongos" server type).
 *  - shardCollection with a hashed key presplits an empty collection into chunks spread over the
 *    shards (manual: "Hashed Sharding", 6.0: two chunks per shard by default; InitialSplitPolicy
 *    in s/config/initial_split_policy.cpp); with a ranged key there is one chunk; config.collections
 *    holds the key (manual: "config.collections").
 */
#include "router_util.h"

Test(router_topology, hello_is_isdbgrid)
{
    mongoc_client_t *client = rtest_client();
    bson_t reply;
    bson_iter_t it;
    rtest_cmd(client, "admin", "{\"hello\": 1}", &reply, NULL);
    cr_assert(bson_iter_init_find(&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8(&it));
    cr_assert_str_eq(bson_iter_utf8(&it, NULL), "isdbgrid");
    cr_assert(!bson_has_field(&reply, "setName"), "a mongos has no replica set name");
    cr_assert(bson_iter_init_find(&it, &reply, "localTime") && BSON_ITER_HOLDS_DATE_TIME(&it));
    bson_destroy(&reply);
    rtest_cmd(client, "admin", "{\"isMaster\": 1}", &reply, NULL);
    cr_assert(bson_iter_init_find(&it, &reply, "msg"));
    cr_assert_str_eq(bson_iter_utf8(&it, NULL), "isdbgrid");
    bson_destroy(&reply);
    mongoc_client_destroy(client);
}

static int64_t
count_in(mongoc_client_t *client, const char *db, const char *coll, const bson_t *filter)
{
    mongoc_collection_t *c = mongoc_client_get_collection(client, db, coll);
    bson_error_t error;
    int64_t n = mongoc_collection_count_documents(c, filter, NULL, NULL, NULL, &error);
    cr_assert(n >= 0, "count %s.%s: %s", db, coll, error.message);
    mongoc_collection_destroy(c);
    return n;
}

/* The collection's uuid from config.collections (6.0 keys config.chunks by uuid). */
static bool
collection_entry(mongoc_client_t *client, const char *ns, bson_t *out)
{
    mongoc_collection_t *c = mongoc_client_get_collection(client, "config", "collections");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(ns));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, NULL, NULL);
    const bson_t *doc;
    bool found = mongoc_cursor_next(cur, &doc);
    if (found) {
        bson_copy_to(doc, out);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(c);
    return found;
}

Test(router_topology, shard_collection_hashed_presplits)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rtopo");
    char *ns = bson_strdup_printf("%s.q", db);
    bson_t entry, key;
    bson_iter_t it;
    const uint8_t *data;
    uint32_t len;
    rtest_shard(client, db, "q", "{\"p\": \"hashed\"}");
    cr_assert(collection_entry(client, ns, &entry), "config.collections has %s", ns);
    cr_assert(bson_iter_init_find(&it, &entry, "key"));
    bson_iter_document(&it, &len, &data);
    bson_init_static(&key, data, len);
    cr_assert(bson_iter_init_find(&it, &key, "p") && BSON_ITER_HOLDS_UTF8(&it));
    cr_assert_str_eq(bson_iter_utf8(&it, NULL), "hashed");
    cr_assert(bson_iter_init_find(&it, &entry, "uuid"));
    bson_t filter = BSON_INITIALIZER;
    bson_append_value(&filter, "uuid", 4, bson_iter_value(&it));
    int64_t chunks = count_in(client, "config", "chunks", &filter);
    bson_t none = BSON_INITIALIZER;
    int64_t shards = count_in(client, "config", "shards", &none);
    cr_assert_geq(shards, 2, "the cluster has at least two shards");
    cr_assert_geq(chunks, 2 * shards, "presplit into two chunks per shard, got %lld",
                  (long long)chunks);
    bson_destroy(&filter);
    bson_destroy(&entry);
    mtest_db_drop(client, db);
    bson_free(ns);
    bson_free(db);
    mongoc_client_destroy(client);
}

Test(router_topology, shard_collection_ranged_one_chunk)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rtopo");
    char *ns = bson_strdup_printf("%s.r", db);
    bson_t entry;
    bson_iter_t it;
    rtest_shard(client, db, "r", "{\"k\": 1}");
    cr_assert(collection_entry(client, ns, &entry));
    cr_assert(bson_iter_init_find(&it, &entry, "uuid"));
    bson_t filter = BSON_INITIALIZER;
    bson_append_value(&filter, "uuid", 4, bson_iter_value(&it));
    cr_assert_eq(count_in(client, "config", "chunks", &filter), 1,
                 "an empty collection with a ranged key has one chunk");
    /* shardCollection twice with the same key is accepted (idempotent) */
    rtest_shard(client, db, "r", "{\"k\": 1}");
    bson_destroy(&filter);
    bson_destroy(&entry);
    mtest_db_drop(client, db);
    bson_free(ns);
    bson_free(db);
    mongoc_client_destroy(client);
}

Test(router_topology, list_shards)
{
    mongoc_client_t *client = rtest_client();
    bson_t reply;
    bson_iter_t it, arr;
    int n = 0;
    rtest_cmd(client, "admin", "{\"listShards\": 1}", &reply, NULL);
    cr_assert(bson_iter_init_find(&it, &reply, "shards") && bson_iter_recurse(&it, &arr));
    while (bson_iter_next(&arr)) {
        n++;
    }
    cr_assert_geq(n, 2);
    bson_destroy(&reply);
    mongoc_client_destroy(client);
}

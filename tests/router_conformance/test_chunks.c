/*
 * Moving chunks, and the database's primary shard, as mongoq_queue_shard uses them.
 *  - moveChunk (manual: "moveChunk", 6.0): {moveChunk: "<db>.<coll>", find: <query> | bounds:
 *    [<min>, <max>], to: "<shard>"} on admin; `find` and `bounds` are mutually exclusive and one
 *    is required ("need to specify either a find query, or both lower and upper bounds.",
 *    s/commands/cluster_move_chunk_cmd.cpp); `find` must name the shard key
 *    (extractShardKeyFromQuery: "no shard key found in chunk query"); `bounds` must be exactly
 *    one chunk's; an unknown `to` fails with ShardNotFound (70); the chunk's owner becomes `to`
 *    in config.chunks.
 *  - The recipient of a chunk clones the donor's indexes before taking documents
 *    (db/s/migration_destination_manager.cpp, cloneCollectionIndexesAndOptions): a unique index
 *    built before shardCollection holds on the shard the chunk moved to.
 *  - config.databases holds each database's `primary` shard (manual: "config.databases"), where
 *    a ranged key's one initial chunk lives.
 * mongoq-test-router moves only empty chunks (tests/router/README.md); these tests move nothing
 * else, and pass against a real mongos with two shards.
 */
#include "router_util.h"

#include <string.h>

/* The first document of config.<coll> matching filter_json into *out; false when none. */
static bool
config_one(mongoc_client_t *client, const char *coll, const char *filter_json, bson_t *out)
{
    bson_error_t error;
    bson_t *filter = bson_new_from_json((const uint8_t *)filter_json, -1, &error);
    cr_assert(filter, "%s: %s", filter_json, error.message);
    mongoc_collection_t *c = mongoc_client_get_collection(client, "config", coll);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, NULL, NULL);
    const bson_t *doc;
    bool found = mongoc_cursor_next(cur, &doc);
    if (found) {
        bson_copy_to(doc, out);
    }
    cr_assert_not(mongoc_cursor_error(cur, &error), "config.%s: %s", coll, error.message);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    bson_destroy(filter);
    return found;
}

/* A string field of doc (asserted present). */
static const char *
str_field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it), "no %s", key);
    return bson_iter_utf8(&it, NULL);
}

/* The shard owning the chunk of ns whose min is {k: min} (config.chunks by the collection's
 * uuid, as 6.0 keys it); asserted found. Caller frees. */
static char *
chunk_owner(mongoc_client_t *client, const char *ns, int min)
{
    bson_t entry, chunk = BSON_INITIALIZER;
    bson_iter_t it;
    char *filter = bson_strdup_printf("{\"_id\": \"%s\"}", ns);
    cr_assert(config_one(client, "collections", filter, &entry), "config.collections has %s", ns);
    bson_free(filter);
    cr_assert(bson_iter_init_find(&it, &entry, "uuid"));
    bson_t *q = bson_new();
    bson_append_value(q, "uuid", 4, bson_iter_value(&it));
    BSON_APPEND_INT32(q, "min.k", min);
    char *json = bson_as_canonical_extended_json(q, NULL);
    cr_assert(config_one(client, "chunks", json, &chunk), "a chunk of %s at k = %d", ns, min);
    char *owner = bson_strdup(str_field(&chunk, "shard"));
    bson_free(json);
    bson_destroy(q);
    bson_destroy(&chunk);
    bson_destroy(&entry);
    return owner;
}

/* The name of a shard other than `not` (listShards). Caller frees. */
static char *
other_shard(mongoc_client_t *client, const char *not)
{
    bson_t reply;
    bson_iter_t it, arr, doc;
    char *found = NULL;
    rtest_cmd(client, "admin", "{\"listShards\": 1}", &reply, NULL);
    cr_assert(bson_iter_init_find(&it, &reply, "shards") && bson_iter_recurse(&it, &arr));
    while (!found && bson_iter_next(&arr)) {
        if (bson_iter_recurse(&arr, &doc) && bson_iter_find(&doc, "_id") &&
            strcmp(bson_iter_utf8(&doc, NULL), not) != 0) {
            found = bson_strdup(bson_iter_utf8(&doc, NULL));
        }
    }
    cr_assert(found, "the cluster has a second shard");
    bson_destroy(&reply);
    return found;
}

static void
expect_failure(mongoc_client_t *client, const char *json, int code)
{
    bson_t reply;
    bson_error_t error;
    cr_assert_not(rtest_cmd(client, "admin", json, &reply, &error), "%s succeeded", json);
    if (code) {
        cr_assert_eq(error.code, (uint32_t)code, "%s: code %u (%s)", json, error.code,
                     error.message);
    }
    bson_destroy(&reply);
}

Test(router_chunks, move_an_empty_chunk_and_its_indexes_follow)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rchunk");
    char *ns = bson_strdup_printf("%s.m", db);
    char *json;
    bson_t entry, reply;
    bson_error_t error;
    /* A unique index before sharding: it exists on the primary shard only. */
    json = bson_strdup_printf("{\"createIndexes\": \"m\", \"indexes\": [{\"key\": {\"k\": 1, "
                              "\"u\": 1}, \"name\": \"k_u\", \"unique\": true}]}");
    rtest_cmd(client, db, json, NULL, NULL);
    bson_free(json);
    json = bson_strdup_printf("{\"enableSharding\": \"%s\"}", db);
    rtest_cmd(client, "admin", json, NULL, NULL);
    bson_free(json);
    rtest_shard(client, db, "m", "{\"k\": 1}");
    json = bson_strdup_printf("{\"_id\": \"%s\"}", db);
    cr_assert(config_one(client, "databases", json, &entry), "config.databases has %s", db);
    bson_free(json);
    char *primary = bson_strdup(str_field(&entry, "primary"));
    char *other = other_shard(client, primary);
    json = bson_strdup_printf("{\"split\": \"%s\", \"middle\": {\"k\": 10}}", ns);
    rtest_cmd(client, "admin", json, NULL, NULL);
    bson_free(json);
    char *before = chunk_owner(client, ns, 10);
    cr_assert_str_eq(before, primary, "a ranged key's chunks start on the primary shard");

    json = bson_strdup_printf("{\"moveChunk\": \"%s\", \"find\": {\"k\": 12}, \"to\": \"%s\"}",
                              ns, other);
    rtest_cmd(client, "admin", json, NULL, NULL);
    bson_free(json);
    char *after = chunk_owner(client, ns, 10);
    cr_assert_str_eq(after, other, "the chunk holding k = 12 moved to %s", other);

    /* The unique index holds on the recipient. */
    mongoc_collection_t *m = mongoc_client_get_collection(client, db, "m");
    bson_t *doc = BCON_NEW("k", BCON_INT32(15), "u", BCON_INT32(1));
    cr_assert(mongoc_collection_insert_one(m, doc, NULL, NULL, &error), "%s", error.message);
    cr_assert_not(mongoc_collection_insert_one(m, doc, NULL, &reply, &error),
                  "a duplicate was inserted");
    cr_assert_eq(error.code, 11000u, "%s", error.message);
    bson_destroy(&reply);
    bson_destroy(doc);
    mongoc_collection_destroy(m);

    /* The other chunk, named by its bounds (it holds nothing: k = 15 is above 10). */
    json = bson_strdup_printf("{\"moveChunk\": \"%s\", \"bounds\": [{\"k\": {\"$minKey\": 1}}, "
                              "{\"k\": 10}], \"to\": \"%s\"}",
                              ns, other);
    rtest_cmd(client, "admin", json, NULL, NULL);
    bson_free(json);

    bson_free(after);
    bson_free(before);
    bson_free(other);
    bson_free(primary);
    bson_destroy(&entry);
    mtest_db_drop(client, db);
    bson_free(ns);
    bson_free(db);
    mongoc_client_destroy(client);
}

Test(router_chunks, move_chunk_errors)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rchunk");
    char *ns = bson_strdup_printf("%s.e", db);
    char *json;
    rtest_shard(client, db, "e", "{\"k\": 1}");
    bson_t entry;
    json = bson_strdup_printf("{\"_id\": \"%s\"}", db);
    cr_assert(config_one(client, "databases", json, &entry));
    bson_free(json);
    char *other = other_shard(client, str_field(&entry, "primary"));

    json = bson_strdup_printf("{\"moveChunk\": \"%s\", \"find\": {\"k\": 1}, \"to\": "
                              "\"no-such-shard\"}", ns);
    expect_failure(client, json, 70); /* ShardNotFound */
    bson_free(json);
    json = bson_strdup_printf("{\"moveChunk\": \"%s\", \"to\": \"%s\"}", ns, other);
    expect_failure(client, json, 0); /* neither find nor bounds */
    bson_free(json);
    json = bson_strdup_printf("{\"moveChunk\": \"%s\", \"find\": {\"k\": 1}, \"bounds\": "
                              "[{\"k\": {\"$minKey\": 1}}, {\"k\": {\"$maxKey\": 1}}], "
                              "\"to\": \"%s\"}", ns, other);
    expect_failure(client, json, 0); /* both */
    bson_free(json);
    json = bson_strdup_printf("{\"moveChunk\": \"%s\", \"find\": {\"x\": 1}, \"to\": \"%s\"}",
                              ns, other);
    expect_failure(client, json, 0); /* no shard key in find */
    bson_free(json);
    json = bson_strdup_printf("{\"moveChunk\": \"%s\", \"bounds\": [{\"k\": 0}, {\"k\": 5}], "
                              "\"to\": \"%s\"}", ns, other);
    expect_failure(client, json, 0); /* not a chunk's bounds */
    bson_free(json);
    json = bson_strdup_printf("{\"moveChunk\": \"%s.unsharded\", \"find\": {\"k\": 1}, "
                              "\"to\": \"%s\"}", db, other);
    expect_failure(client, json, 0); /* not sharded */
    bson_free(json);

    bson_free(other);
    bson_destroy(&entry);
    mtest_db_drop(client, db);
    bson_free(ns);
    bson_free(db);
    mongoc_client_destroy(client);
}

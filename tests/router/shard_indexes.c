/*
 * A sharded collection on the shards: shardCollection creates it on every shard with the shard
 * key's index and the indexes it has on the primary shard, and moveChunk first gives the
 * recipient the donor's indexes, as a chunk migration's recipient clones them before the first
 * document (db/s/migration_destination_manager.cpp, cloneCollectionIndexesAndOptions). The
 * routing table itself is in catalog.c, the chunk commands in chunks.c.
 */
#include "router.h"

#include <string.h>

/*
 * The indexes of db.coll_name on shard `from` (but _id's) into createIndexes specs (without
 * "v" and "ns") in *specs, an array (initialised here); *n of them.
 */
static bool
index_specs(mr_client_t *client, const char *db, const char *coll_name, int from, bson_t *specs,
            uint32_t *n, bson_error_t *error)
{
    static const char *const drop[] = {"v", "ns", NULL};
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_iter_t it, batch;
    char key[16];
    const char *k;
    bson_init(specs);
    *n = 0;
    BSON_APPEND_UTF8(&cmd, "listIndexes", coll_name);
    BSON_APPEND_UTF8(&cmd, "$db", db);
    bool ok = mr_shard_run(client, from, &cmd, &reply, error);
    /* A collection not there yet (NamespaceNotFound 26) has no index to copy. */
    bool missing = ok && !mr_reply_ok(&reply, error) && error->code == 26;
    ok = ok && (missing || mr_reply_ok(&reply, error));
    if (ok && !missing && bson_iter_init_find(&it, &reply, "cursor") &&
        bson_iter_recurse(&it, &batch) && bson_iter_find(&batch, "firstBatch") &&
        bson_iter_recurse(&batch, &it)) {
        while (bson_iter_next(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_t spec, clean;
            bson_iter_t name;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                continue;
            }
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&spec, data, len) ||
                (bson_iter_init_find(&name, &spec, "name") && BSON_ITER_HOLDS_UTF8(&name) &&
                 strcmp(bson_iter_utf8(&name, NULL), "_id_") == 0)) {
                continue;
            }
            mr_cmd_copy_without(&spec, drop, &clean);
            bson_uint32_to_string((*n)++, &k, key, sizeof key);
            BSON_APPEND_DOCUMENT(specs, k, &clean);
            bson_destroy(&clean);
        }
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

/*
 * Gives shard `to` the indexes db.coll_name has on shard `from`, as a chunk migration's
 * recipient clones the donor's indexes before the first document
 * (db/s/migration_destination_manager.cpp, cloneCollectionIndexesAndOptions).
 */
bool
mr_copy_indexes(mr_client_t *client, const char *db, const char *coll_name, int from, int to,
                bson_error_t *error)
{
    bson_t specs, cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    uint32_t n = 0;
    bool ok = index_specs(client, db, coll_name, from, &specs, &n, error);
    if (ok && n > 0) {
        BSON_APPEND_UTF8(&cmd, "createIndexes", coll_name);
        BSON_APPEND_ARRAY(&cmd, "indexes", &specs);
        BSON_APPEND_UTF8(&cmd, "$db", db);
        bson_destroy(&reply);
        ok = mr_shard_run(client, to, &cmd, &reply, error) && mr_reply_ok(&reply, error);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    bson_destroy(&specs);
    return ok;
}

/* Runs cmd (destroyed here) on shard s; only a network error fails, not the shard's reply. */
static bool
run_on_shard(mr_client_t *client, int s, bson_t *cmd, bson_error_t *error)
{
    bson_t reply;
    bool ok = mr_shard_run(client, s, cmd, &reply, error);
    bson_destroy(cmd);
    bson_destroy(&reply);
    return ok;
}

/*
 * Creates the collection (and the index a ranged key needs) on every shard, with the indexes it
 * has on the primary shard: mongod's shards get them with their first chunk (a presplit hashed
 * key's, at once; a ranged key's, at the first moveChunk, which copies them again).
 */
bool
mr_create_on_shards(mr_cmd_t *c, const char *db, const char *coll_name, const mr_coll_t *coll,
                 int primary, bson_error_t *error)
{
    for (int s = 0; s < mr_config.nshards; s++) {
        if (s != primary && !mr_copy_indexes(c->client, db, coll_name, primary, s, error)) {
            return false;
        }
    }
    for (int s = 0; s < mr_config.nshards; s++) {
        bson_t cmd, indexes, index;
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "create", coll_name);
        BSON_APPEND_UTF8(&cmd, "$db", db);
        if (!run_on_shard(c->client, s, &cmd, error)) {
            return false;
        }
        if (coll->hashed_field >= 0 || (coll->nfields == 1 && !strcmp(coll->fields[0], "_id"))) {
            continue; /* the test server has no hashed indexes; _id has its own */
        }
        bson_init(&cmd);
        BSON_APPEND_UTF8(&cmd, "createIndexes", coll_name);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
        BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
        BSON_APPEND_DOCUMENT(&index, "key", coll->key);
        BSON_APPEND_UTF8(&index, "name", "shardkey");
        bson_append_document_end(&indexes, &index);
        bson_append_array_end(&cmd, &indexes);
        BSON_APPEND_UTF8(&cmd, "$db", db);
        if (!run_on_shard(c->client, s, &cmd, error)) {
            return false;
        }
    }
    return true;
}

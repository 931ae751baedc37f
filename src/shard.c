/*
 * Sharding a partitioned queue's collection (mongoq/shard.h, docs/scaling.md). Why the ranged
 * key {partition: 1}, presplit into one chunk per partition:
 *  - mongod 6.0/7.0 route findAndModify, updateOne and deleteOne on a sharded collection only
 *    with an equality on the whole shard key (ShardKeyNotFound otherwise); every such write of
 *    mongoq names the partition, and only the partition;
 *  - a unique index must begin with the shard key's fields (ShardKeyPattern::
 *    isUniqueIndexCompatible compares field names, so {partition: 1, dedup_key: 1} is
 *    compatible with {partition: 1} and with {partition: "hashed"});
 *  - a multi-document update may not change the shard key, and the reaper, claim_many, redrive
 *    and ack_many rewrite status with multi updates: status is not in the key, and the
 *    partition never changes;
 *  - ranged, with a split at every partition and the chunks dealt in turn, puts exactly P / S
 *    partitions on each of S shards; a hashed key places P small numbers by their hashes,
 *    which for P = 4 on 2 shards is 2 + 2 only 6 times in 16 (and numInitialChunks, its
 *    presplit, is deprecated from 7.0: SERVER-74747).
 */
#include <inttypes.h>
#include <string.h>

#include "error-private.h"
#include "fields.h"
#include "mongoq/shard.h"
#include "queue-private.h"
#include "service-private.h"

#define ALREADY_INITIALIZED 23
#define INDEX_PARTITION_HASHED "mongoq_partition_hashed"

/* Runs cmd on admin; on failure the message says which step failed. */
static bool
admin_command(mongoc_client_t *client, const char *step, const bson_t *cmd, bson_t *reply,
              bson_error_t *error)
{
    bson_t local;
    bson_t *out = reply ? reply : &local;
    bool ok = mongoc_client_command_simple(client, "admin", cmd, NULL, out, error);
    if (!ok && error) {
        char msg[sizeof error->message];
        bson_snprintf(msg, sizeof msg, "shard: %s: %s", step, error->message);
        bson_strncpy(error->message, msg, sizeof error->message);
    }
    if (!reply) {
        bson_destroy(&local);
    }
    return ok;
}

static bool
is_mongos(mongoc_client_t *client, bool *mongos, bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_iter_t it;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    bool ok = admin_command(client, "hello", &cmd, &reply, error);
    *mongos = ok && bson_iter_init_find(&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
              strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0;
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

/* The first document of find(filter) on config.<coll>, copied into *doc (NULL when none). */
static bool
config_find(mongoc_client_t *client, const char *coll_name, const char *id, bson_t **doc,
            bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER;
    const bson_t *found;
    BSON_APPEND_UTF8(&filter, "_id", id);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "config", coll_name);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    *doc = mongoc_cursor_next(cursor, &found) ? bson_copy(found) : NULL;
    bool ok = !mongoc_cursor_error(cursor, error);
    if (!ok && error) {
        char msg[sizeof error->message];
        bson_snprintf(msg, sizeof msg, "shard: reading config.%s: %s", coll_name, error->message);
        bson_strncpy(error->message, msg, sizeof error->message);
    }
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&filter);
    return ok;
}

/* {partition: 1} or {partition: "hashed"}. */
static void
append_key(bson_t *doc, const char *name, bool hashed)
{
    bson_t key;
    BSON_APPEND_DOCUMENT_BEGIN(doc, name, &key);
    if (hashed) {
        BSON_APPEND_UTF8(&key, MONGOQ__F_PARTITION, "hashed");
    } else {
        BSON_APPEND_INT32(&key, MONGOQ__F_PARTITION, 1);
    }
    bson_append_document_end(doc, &key);
}

/* Whether config.collections' document (not dropped) shards on our key; *other: another key. */
static bool
sharded_on(const bson_t *entry, bool hashed, bool *other)
{
    bson_iter_t it, key;
    *other = false;
    if (!entry || (bson_iter_init_find(&it, entry, "dropped") && bson_iter_as_bool(&it))) {
        return false;
    }
    bool same = bson_iter_init_find(&it, entry, "key") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
                bson_iter_recurse(&it, &key) && bson_iter_next(&key) &&
                strcmp(bson_iter_key(&key), MONGOQ__F_PARTITION) == 0 &&
                (hashed ? BSON_ITER_HOLDS_UTF8(&key) : BSON_ITER_HOLDS_NUMBER(&key)) &&
                !bson_iter_next(&key);
    *other = !same;
    return same;
}

static bool
create_hashed_index(mongoq_queue_t *queue, mongoc_client_t *client, bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, indexes, index;
    BSON_APPEND_UTF8(&cmd, "createIndexes", queue->name);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
    append_key(&index, "key", true);
    BSON_APPEND_UTF8(&index, "name", INDEX_PARTITION_HASHED);
    bson_append_document_end(&indexes, &index);
    bson_append_array_end(&cmd, &indexes);
    bool ok = mongoc_client_command_simple(client, queue->db, &cmd, NULL, NULL, error);
    bson_destroy(&cmd);
    return ok;
}

static bool
shard_collection(mongoq_queue_t *queue, mongoc_client_t *client, const char *ns, bool hashed,
                 bson_error_t *error)
{
    bson_t enable = BSON_INITIALIZER, shard = BSON_INITIALIZER;
    bson_error_t enable_error;
    BSON_APPEND_UTF8(&enable, "enableSharding", queue->db);
    bool ok = admin_command(client, "enableSharding", &enable, NULL, &enable_error) ||
              mongoq__error_is_server(&enable_error, ALREADY_INITIALIZED);
    if (!ok && error) {
        *error = enable_error;
    }
    BSON_APPEND_UTF8(&shard, "shardCollection", ns);
    append_key(&shard, "key", hashed);
    ok = ok && admin_command(client, "shardCollection", &shard, NULL, error);
    bson_destroy(&shard);
    bson_destroy(&enable);
    return ok;
}

/* The shards' names from listShards, as a BSON array of strings in *ids (n of them). */
static bool
list_shards(mongoc_client_t *client, bson_t *ids, uint32_t *n, bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_iter_t it, shards, id;
    char key[16];
    const char *k;
    *n = 0;
    BSON_APPEND_INT32(&cmd, "listShards", 1);
    bool ok = admin_command(client, "listShards", &cmd, &reply, error);
    if (ok && bson_iter_init_find(&it, &reply, "shards") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &shards)) {
        while (bson_iter_next(&shards)) {
            if (bson_iter_recurse(&shards, &id) && bson_iter_find(&id, "_id") &&
                BSON_ITER_HOLDS_UTF8(&id)) {
                bson_uint32_to_string((*n)++, &k, key, sizeof key);
                BSON_APPEND_UTF8(ids, k, bson_iter_utf8(&id, NULL));
            }
        }
    }
    if (ok && *n == 0) {
        mongoq__error_set(error, MONGOQ_ERROR_SERVER, "shard: listShards lists no shard");
        ok = false;
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

/* The name of shard i (an index into list_shards' array). */
static const char *
shard_name(const bson_t *ids, uint32_t i)
{
    char key[16];
    const char *k;
    bson_iter_t it;
    bson_uint32_to_string(i, &k, key, sizeof key);
    return bson_iter_init_find(&it, ids, k) ? bson_iter_utf8(&it, NULL) : "";
}

/* {split: ns, middle: {partition: k}} or {moveChunk: ns, find: {partition: k}, to: shard}. */
static bool
chunk_command(mongoc_client_t *client, const char *ns, int32_t k, const char *to,
              bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, at;
    char step[64];
    BSON_APPEND_UTF8(&cmd, to ? "moveChunk" : "split", ns);
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, to ? "find" : "middle", &at);
    BSON_APPEND_INT32(&at, MONGOQ__F_PARTITION, k);
    bson_append_document_end(&cmd, &at);
    if (to) {
        BSON_APPEND_UTF8(&cmd, "to", to);
    }
    bson_snprintf(step, sizeof step, "%s of partition %" PRId32, to ? "moveChunk" : "split", k);
    bool ok = admin_command(client, step, &cmd, NULL, error);
    bson_destroy(&cmd);
    return ok;
}

/*
 * One chunk per partition, partition k on shard k mod S. The collection's one chunk starts on
 * the database's primary shard, so the partitions dealt to that shard stay where they are.
 */
static bool
presplit(mongoq_queue_t *queue, mongoc_client_t *client, const char *ns, bson_error_t *error)
{
    bson_t ids = BSON_INITIALIZER, *db_entry = NULL;
    bson_iter_t it;
    uint32_t n = 0;
    const char *primary = "";
    bool ok = list_shards(client, &ids, &n, error) &&
              config_find(client, "databases", queue->db, &db_entry, error);
    if (ok && db_entry && bson_iter_init_find(&it, db_entry, "primary") &&
        BSON_ITER_HOLDS_UTF8(&it)) {
        primary = bson_iter_utf8(&it, NULL);
    }
    for (int32_t k = 1; ok && k < queue->opts.partitions; k++) {
        ok = chunk_command(client, ns, k, NULL, error);
    }
    for (int32_t k = 0; ok && k < queue->opts.partitions; k++) {
        const char *to = shard_name(&ids, (uint32_t)k % n);
        if (strcmp(to, primary) != 0) {
            ok = chunk_command(client, ns, k, to, error);
        }
    }
    bson_destroy(db_entry);
    bson_destroy(&ids);
    return ok;
}

static bool
shard_with(mongoq_queue_t *queue, mongoc_client_t *client, bool hashed, bson_error_t *error)
{
    bool mongos = false, other = false;
    bson_t *entry = NULL;
    char *ns = bson_strdup_printf("%s.%s", queue->db, queue->name);
    bool ok = is_mongos(client, &mongos, error);
    if (ok && !mongos) {
        mongoq__error_set(error, MONGOQ_ERROR_SERVER,
                          "shard: the queue's pool does not talk to a mongos (hello has no msg "
                          "\"isdbgrid\"): only a sharded cluster's collection can be sharded");
        ok = false;
    }
    ok = ok && config_find(client, "collections", ns, &entry, error);
    bool done = ok && sharded_on(entry, hashed, &other);
    if (ok && !done && other && entry) {
        mongoq__error_set(error, MONGOQ_ERROR_SERVER,
                          "shard: %s is sharded on another key already (nothing changed)", ns);
        ok = false;
    }
    if (ok && !done) {
        ok = mongoq_queue_ensure_indexes(queue, error) &&
             (!hashed || create_hashed_index(queue, client, error)) &&
             shard_collection(queue, client, ns, hashed, error) &&
             (hashed || presplit(queue, client, ns, error));
    }
    bson_destroy(entry);
    bson_free(ns);
    return ok;
}

bool
mongoq_queue_shard(mongoq_queue_t *queue, const mongoq_shard_opts_t *opts, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    if (opts && (opts->version == 0 || opts->version > MONGOQ_SHARD_OPTS_VERSION)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "shard opts: unknown version (use MONGOQ_SHARD_OPTS_INIT)");
        return false;
    }
    if (queue->opts.partitions <= 1) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "shard: the queue has one partition (its messages carry no partition "
                          "field to shard on); open it with partitions > 1");
        return false;
    }
    mongoc_client_t *client = mongoq__pool_pop(queue->pool, error);
    if (!client) {
        return false;
    }
    bool ok = shard_with(queue, client, opts && opts->hashed, error);
    mongoc_client_pool_push(queue->pool, client);
    return ok;
}

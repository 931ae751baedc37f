/*
 * mongoq/shard.h - spreading a partitioned queue over a sharded cluster (docs/scaling.md).
 *
 * A queue opened with partitions > 1 (mongoq_queue_opts_t.partitions) names its partition in
 * every single-message write and begins every index with it, so its collection can be sharded
 * on {partition: 1}: each claim, ack, retry, fail and extension then reaches exactly one shard
 * through mongos (MongoDB 6.0 and 7.0 require an equality on the whole shard key for
 * findAndModify, updateOne and deleteOne on a sharded collection), the unique dedup index
 * {partition, dedup_key} is prefixed by the shard key as mongod requires of a unique index, and
 * no update changes the shard key (status, which multi-document updates rewrite, is not in it).
 *
 * Thread safety: thread-safe on a shared queue; run it once, from one process, before the
 * queue carries load (it may also run on a queue in use: mongod shards a live collection).
 */
#ifndef MONGOQ_SHARD_H
#define MONGOQ_SHARD_H

#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MONGOQ_SHARD_OPTS_VERSION 1

typedef struct {
    uint32_t version; /* MONGOQ_SHARD_OPTS_VERSION */
    /*
     * false (the default): the ranged key {partition: 1}, split into one chunk per partition
     * and the chunks dealt to the shards in turn (partition k on the k-th shard modulo the
     * number of shards), so every shard holds P / shards partitions exactly.
     * true: the hashed key {partition: "hashed"} and no presplit; mongod places each partition
     * by the hash of its number, so with few partitions the shards' shares are uneven.
     */
    bool hashed;
} mongoq_shard_opts_t;

#define MONGOQ_SHARD_OPTS_INIT {.version = MONGOQ_SHARD_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_SHARD_OPTS_INIT does, for the given version (bindings that cannot use
 * the macro): every field zero (its default) and the version set. Returns false, writing nothing,
 * for a version this library does not know (0 or newer than MONGOQ_SHARD_OPTS_VERSION). Thread-
 * safe.
 */
MONGOQ_EXPORT bool
mongoq_shard_opts_init(mongoq_shard_opts_t *opts, uint32_t version);

/*
 * Shards the queue's collection through the mongos the queue's pool talks to: creates the
 * queue's indexes (mongoq_queue_ensure_indexes; with opts->hashed also {partition: "hashed"}),
 * then enableSharding on the database (needed before 6.0, accepted after), shardCollection with
 * the key above and, for the ranged key, split at {partition: k} for k = 1 .. P-1 and moveChunk
 * of each chunk to its shard (listShards; the database's primary shard keeps its own, read from
 * config.databases). opts may be NULL (defaults).
 *
 * A collection already sharded on the same key is left as it is (its chunks too): the call
 * returns true at once. Errors: MONGOQ_ERROR_INVALID_ARG for a queue of one partition (its
 * documents carry no partition field) or an unknown opts version; MONGOQ_ERROR_SERVER when the
 * pool does not talk to a mongos (hello without msg "isdbgrid") or the collection is sharded on
 * another key (nothing changed); driver and server errors of each command otherwise, with the
 * step in the message. After an error the collection may be sharded with fewer chunks than
 * partitions: calling again returns at once (sharded on the key), so finish by hand with the
 * split and moveChunk commands of docs/scaling.md; the queue works meanwhile, only less evenly
 * spread.
 */
MONGOQ_EXPORT bool
mongoq_queue_shard(mongoq_queue_t *queue, const mongoq_shard_opts_t *opts, bson_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_SHARD_H */

/*
 * Partitions of a queue (docs/scaling.md). A queue of P > 1 partitions keeps each message's
 * partition (int32 0 .. P-1) in its `partition` field, begins every index with it, and names it
 * in every single-message write, so that on a collection sharded on {partition: 1} each such
 * write targets one shard (mongod 6.0 and 7.0 refuse findAndModify, updateOne and deleteOne on a
 * sharded collection without an equality on the whole shard key). A queue of one partition has
 * no such field: every function here then appends nothing, and its commands are those of a
 * queue built before partitions existed.
 *
 * Where a message goes: a hash of its dedup_key when it has one, so two messages with one key
 * meet in one partition and the unique index {partition, dedup_key} keeps dedup global; a hash
 * of its _id otherwise, so a producer retrying with the same caller-chosen _id reaches the same
 * partition (on a sharded collection _id is unique per shard only) and finds it stored. The hash
 * is 32-bit FNV-1a (offset basis 2166136261, prime 16777619) of the key's UTF-8 bytes or the
 * ObjectId's 12 bytes, modulo P: written here, not taken from a library, so every process and
 * every version of mongoq places a message in the same partition.
 */
#ifndef MONGOQ_PARTITION_PRIVATE_H
#define MONGOQ_PARTITION_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

/* MONGOQ__ALL_PARTITIONS ("every partition", or unknown) is defined in waker-private.h. */

/* 32-bit FNV-1a of data[0 .. len). */
uint32_t mongoq__fnv1a(const void *data, size_t len);

/*
 * The partition of a new message: of dedup_key when not NULL, else of id. MONGOQ__ALL_PARTITIONS
 * in a queue of one partition (no field is written).
 */
int32_t mongoq__partition_of(int32_t partitions, const bson_oid_t *id, const char *dedup_key);

/* Appends {partition: p} when partitions > 1 and p >= 0; nothing otherwise. */
void mongoq__partition_append(bson_t *doc, int32_t partitions, int32_t p);

/*
 * Appends {partition: {$in: [0 .. partitions-1]}} when partitions > 1: a query over every
 * partition then seeks each partition's stretch of an index that begins with partition (one
 * scan per partition, merged when sorted) instead of scanning the whole index or collection.
 */
void mongoq__partition_append_all(bson_t *filter, int32_t partitions);

/* The partition field of a message document, or MONGOQ__ALL_PARTITIONS when absent. */
int32_t mongoq__partition_read(const bson_t *doc);

#endif

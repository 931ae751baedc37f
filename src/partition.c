/* Partitions of a queue (see partition-private.h and docs/scaling.md). */
#include "partition-private.h"

#include <string.h>

#include "fields.h"
#include "queue-private.h"

#define FNV_OFFSET_BASIS 2166136261u
#define FNV_PRIME 16777619u

uint32_t
mongoq__fnv1a(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint32_t h = FNV_OFFSET_BASIS;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

int32_t
mongoq__partition_of(int32_t partitions, const bson_oid_t *id, const char *dedup_key)
{
    if (partitions <= 1) {
        return MONGOQ__ALL_PARTITIONS;
    }
    uint32_t h = dedup_key ? mongoq__fnv1a(dedup_key, strlen(dedup_key))
                           : mongoq__fnv1a(id->bytes, sizeof id->bytes);
    return (int32_t)(h % (uint32_t)partitions);
}

void
mongoq__partition_append(bson_t *doc, int32_t partitions, int32_t p)
{
    if (partitions > 1 && p >= 0) {
        BSON_APPEND_INT32(doc, MONGOQ__F_PARTITION, p);
    }
}

void
mongoq__partition_append_all(bson_t *filter, int32_t partitions)
{
    bson_t cond, list;
    char key[16];
    const char *k;
    if (partitions <= 1) {
        return;
    }
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_PARTITION, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$in", &list);
    for (int32_t p = 0; p < partitions; p++) {
        bson_uint32_to_string((uint32_t)p, &k, key, sizeof key);
        BSON_APPEND_INT32(&list, k, p);
    }
    bson_append_array_end(&cond, &list);
    bson_append_document_end(filter, &cond);
}

int32_t
mongoq__partition_read(const bson_t *doc)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, MONGOQ__F_PARTITION) && BSON_ITER_HOLDS_INT32(&it) &&
        bson_iter_int32(&it) >= 0) {
        return bson_iter_int32(&it);
    }
    return MONGOQ__ALL_PARTITIONS;
}

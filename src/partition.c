/* Partitions of a queue (see partition-private.h and docs/scaling.md). */
#include "partition-private.h"

#include <string.h>

#include "backoff-private.h"
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

/* ---- claiming across partitions --------------------------------------------------------- */

void
mongoq__partition_consumer_init(mongoq_consumer_t *consumer)
{
    int32_t n = consumer->queue->opts.partitions;
    consumer->partition = MONGOQ__ALL_PARTITIONS;
    if (n <= 1) {
        return;
    }
    consumer->marks = bson_malloc0((size_t)n * sizeof *consumer->marks);
    /* A random first partition: consumers started together do not all begin at partition 0. */
    uint32_t start = (uint32_t)(mongoq__random01() * n);
    consumer->next_partition = start < (uint32_t)n ? start : 0;
}

void
mongoq__partition_consumer_destroy(mongoq_consumer_t *consumer)
{
    bson_free(consumer->marks);
}

/*
 * Tries the partitions in turn from next_partition with `inner` aimed at one partition. After a
 * claim in partition k the next try starts at k + 1, so with messages everywhere every
 * partition is served once in every P claims. After an error the next try starts past the
 * failing partition, so one unreachable shard does not hold up the others' partitions.
 */
static bool
attempt(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs, size_t *got,
        bson_error_t *error, mongoq__attempt_fn inner)
{
    mongoq_queue_t *queue = consumer->queue;
    uint32_t n = (uint32_t)queue->opts.partitions;
    int64_t now = mongoq__now_mono_ms();
    *got = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t k = (consumer->next_partition + i) % n;
        mongoq__partition_mark_t *mark = &consumer->marks[k];
        /* Read before the claim: a wake-up for k from now on invalidates the mark set below. */
        uint64_t epoch = mongoq__waker_partition_epoch(queue->waker, (int32_t)k);
        if (mark->empty && mark->epoch == epoch && now < mark->until_mono) {
            continue; /* known empty: no round trip */
        }
        consumer->partition = (int32_t)k;
        bool ok = inner(consumer, max, msgs, got, error);
        consumer->partition = MONGOQ__ALL_PARTITIONS;
        if (!ok || *got > 0) {
            mark->empty = false;
            consumer->next_partition = (k + 1) % n;
            return ok;
        }
        mark->empty = true;
        mark->epoch = epoch;
        mark->until_mono = mongoq__now_mono_ms() + queue->opts.poll_interval_ms;
    }
    return true;
}

bool
mongoq__partition_claim_one(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs,
                            size_t *got, bson_error_t *error)
{
    return attempt(consumer, max, msgs, got, error, mongoq__claim_one);
}

bool
mongoq__partition_claim_many(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs,
                             size_t *got, bson_error_t *error)
{
    return attempt(consumer, max, msgs, got, error, mongoq__claim_many);
}

/* Claiming across the partitions of a queue (see partition_claim-private.h). */
#include "partition_claim-private.h"

#include "backoff-private.h"
#include "partition-private.h"
#include "queue-private.h"

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

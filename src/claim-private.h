/*
 * The claim commands (claim.c), shared with the consumer object and its wait loop (consumer.c).
 */
#ifndef MONGOQ_CLAIM_PRIVATE_H
#define MONGOQ_CLAIM_PRIVATE_H

#include "message-private.h"
#include "mongoq/consumer.h"

/* Ready messages a consumer skips because the server refuses to claim or bury them. */
#define MONGOQ__MAX_SKIPPED 32

/* What a consumer of a partitioned queue remembers of one partition (partition_claim.c). */
typedef struct {
    bool empty;         /* the last claim there found nothing due ... */
    uint64_t epoch;     /* ... while the partition's wake-up epoch was this ... */
    int64_t until_mono; /* ... and trusts that until this monotonic time */
} mongoq__partition_mark_t;

struct mongoq_consumer_t {
    mongoq_queue_t *queue;
    char *name;
    int64_t lease_ms;
    /*
     * _id values of poison messages this consumer could not even bury (the server refused every
     * update of them): the claim filter leaves them out so they cannot block the queue's head.
     * A BSON array of up to MONGOQ__MAX_SKIPPED values.
     */
    bson_t *skipped;
    uint32_t n_skipped;
    /*
     * Partitioned queues (partition_claim.c): the partition the claim commands aim at now
     * (MONGOQ__ALL_PARTITIONS: the queue has one partition and no field), where the next try
     * begins, and what this consumer knows of each partition (partitions entries; NULL when
     * the queue has one partition).
     */
    int32_t partition;
    uint32_t next_partition;
    mongoq__partition_mark_t *marks;
};

/*
 * One try at claiming up to max messages into msgs (*got of them), without waiting. Damaged
 * documents are buried on the way, and so are ready documents whose claim the server refuses
 * because of the document itself (poison messages); neither is ever handed out.
 */
typedef bool (*mongoq__attempt_fn)(mongoq_consumer_t *consumer, size_t max,
                                   mongoq_message_t **msgs, size_t *got, bson_error_t *error);

/* One retryable findAndModify (at most one message). */
bool mongoq__claim_one(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs,
                       size_t *got, bson_error_t *error);

/*
 * Three round trips whatever max is (find, updateMany, find). After a network error in the
 * updateMany the messages it may have leased are read back by their shared token (and returned)
 * or, when that read fails too, handed back by token, so they do not wait for lease expiry.
 */
bool mongoq__claim_many(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs,
                        size_t *got, bson_error_t *error);

#endif

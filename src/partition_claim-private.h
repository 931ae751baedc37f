/*
 * Claiming from a partitioned queue (partition_claim.c): the consumer's claim attempts over the
 * partitions, built on the claim commands (claim-private.h) and the partition field
 * (partition-private.h), which know nothing of this file.
 */
#ifndef MONGOQ_PARTITION_CLAIM_PRIVATE_H
#define MONGOQ_PARTITION_CLAIM_PRIVATE_H

#include "claim-private.h"

/*
 * The claim attempts of a consumer of a partitioned queue (mongoq__attempt_fn): one partition
 * per try, in turn from where the last claim took messages, skipping without a round trip each
 * partition this consumer found empty until its wake-up epoch moves (a change event or a
 * notification for it, a timer for its next run_at, anything about every partition) or
 * poll_interval_ms passes. claim_many takes from one partition per call (its three commands all
 * name it).
 */
bool mongoq__partition_claim_one(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs,
                                 size_t *got, bson_error_t *error);
bool mongoq__partition_claim_many(mongoq_consumer_t *consumer, size_t max,
                                  mongoq_message_t **msgs, size_t *got, bson_error_t *error);

/* Sets up a new consumer's partition state (a random first partition); frees it. */
void mongoq__partition_consumer_init(mongoq_consumer_t *consumer);
void mongoq__partition_consumer_destroy(mongoq_consumer_t *consumer);

#endif

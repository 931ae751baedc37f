/*
 * Process-local histograms of how long messages wait and how long their handling takes, kept
 * per queue for the Prometheus rendering (metrics.c). Atomics only: any thread may observe or
 * read, and a zeroed struct is an empty histogram (the queue is allocated zeroed).
 *
 *  - wait: from when a message was due (run_at) to its claim (the claim's updated_at), both on
 *    the server's clock, read from the claimed document: no extra round trip.
 *  - handling: from the claim to its acknowledgement, on this process's monotonic clock.
 */
#ifndef MONGOQ_TIMINGS_PRIVATE_H
#define MONGOQ_TIMINGS_PRIVATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds of the buckets in milliseconds (the last bucket, +Inf, is implied). */
#define MONGOQ__TIMING_BOUNDS_MS                                                                   \
    {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000, 3600000}
#define MONGOQ__TIMING_BUCKETS 16

typedef struct {
    atomic_int_least64_t buckets[MONGOQ__TIMING_BUCKETS + 1]; /* not cumulative; last: +Inf */
    atomic_int_least64_t sum_ms;
    atomic_int_least64_t count;
} mongoq__histogram_t;

typedef struct {
    mongoq__histogram_t wait;
    mongoq__histogram_t handling;
} mongoq__timings_t;

/* Counts one observation of ms (negative values count as 0: clocks may disagree slightly). */
void mongoq__histogram_observe(mongoq__histogram_t *h, int64_t ms);

/* The bucket bounds (MONGOQ__TIMING_BUCKETS of them), static. */
const int64_t *mongoq__timing_bounds_ms(void);

#endif

/* Process-local counters of a queue: atomics, so any thread may bump or read them. */
#ifndef MONGOQ_COUNTERS_PRIVATE_H
#define MONGOQ_COUNTERS_PRIVATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mongoq/queue.h"

typedef struct {
    atomic_int_least64_t enqueued;
    atomic_int_least64_t claimed;
    atomic_int_least64_t acked;
    atomic_int_least64_t retried;
    atomic_int_least64_t failed;
    atomic_int_least64_t lease_lost;
    atomic_int_least64_t reaped;
    atomic_int_least64_t wakeups_change_stream;
    atomic_int_least64_t wakeups_timer;
    atomic_int_least64_t wakeups_poll;
    atomic_int_least64_t idle_consumers;
    atomic_bool change_stream_active;
    atomic_bool polling_fallback;
    atomic_int_least64_t stream_rescans;
    atomic_int pause_state; /* MONGOQ__PAUSE_* (pause-private.h): the state last seen */
    atomic_int_least64_t pause_seen_mono; /* when (monotonic ms) it was last read or reported */
} mongoq__counters_t;

static inline void
mongoq__counter_add(atomic_int_least64_t *counter, int64_t n)
{
    atomic_fetch_add_explicit(counter, n, memory_order_relaxed);
}

/* Copies a consistent-enough snapshot (each field read atomically) into a current-version out. */
void
mongoq__counters_read(const mongoq__counters_t *c, mongoq_counters_t *out);

/* Bytes of a caller's struct of that version; 0 for an unknown version. */
size_t
mongoq__counters_size(uint32_t version);
size_t
mongoq__stats_size(uint32_t version);

/* Copies a current-version snapshot into the caller's struct of its own version (set in *out). */
bool
mongoq__counters_copy_out(const mongoq_counters_t *full, mongoq_counters_t *out);

#endif

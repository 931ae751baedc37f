/* The wait and handling histograms (timings-private.h). */
#include "timings-private.h"

static const int64_t BOUNDS[MONGOQ__TIMING_BUCKETS] = MONGOQ__TIMING_BOUNDS_MS;

const int64_t *
mongoq__timing_bounds_ms(void)
{
    return BOUNDS;
}

void
mongoq__histogram_observe(mongoq__histogram_t *h, int64_t ms)
{
    size_t i = 0;
    if (ms < 0) {
        ms = 0;
    }
    while (i < MONGOQ__TIMING_BUCKETS && ms > BOUNDS[i]) {
        i++;
    }
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ms, ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

#include "counters-private.h"

void
mongoq__counters_read(const mongoq__counters_t *c, mongoq_counters_t *out)
{
    out->enqueued = atomic_load(&c->enqueued);
    out->claimed = atomic_load(&c->claimed);
    out->acked = atomic_load(&c->acked);
    out->retried = atomic_load(&c->retried);
    out->failed = atomic_load(&c->failed);
    out->lease_lost = atomic_load(&c->lease_lost);
    out->reaped = atomic_load(&c->reaped);
    out->wakeups_change_stream = atomic_load(&c->wakeups_change_stream);
    out->wakeups_timer = atomic_load(&c->wakeups_timer);
    out->wakeups_poll = atomic_load(&c->wakeups_poll);
    out->idle_consumers = atomic_load(&c->idle_consumers);
    out->change_stream_active = atomic_load(&c->change_stream_active);
    out->polling_fallback = atomic_load(&c->polling_fallback);
}

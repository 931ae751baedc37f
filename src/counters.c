/* Process-local counters, and the version rules of the structs mongoq writes into. */
#include <stddef.h>
#include <string.h>

#include "counters-private.h"

bool
mongoq_counters_init(mongoq_counters_t *counters, uint32_t version)
{
    BSON_ASSERT_PARAM(counters);
    size_t size = mongoq__counters_size(version);
    if (size == 0) {
        return false;
    }
    memset(counters, 0, size); /* an older caller's struct is only that long */
    counters->version = version;
    return true;
}

bool
mongoq_stats_init(mongoq_stats_t *stats, uint32_t version)
{
    BSON_ASSERT_PARAM(stats);
    size_t size = mongoq__stats_size(version);
    if (size == 0) {
        return false;
    }
    memset(stats, 0, size);
    stats->version = version;
    return true;
}

/*
 * How many bytes of a struct of `version` the caller has: an older version ends where the first
 * field it lacks begins (offsetof). A field added later gets a version and a case here.
 */
size_t
mongoq__counters_size(uint32_t version)
{
    switch (version) {
    case 1:
        return offsetof(mongoq_counters_t, stream_rescans);
    case 2:
        return offsetof(mongoq_counters_t, paused);
    case MONGOQ_COUNTERS_VERSION:
        return sizeof(mongoq_counters_t);
    default:
        return 0;
    }
}

size_t
mongoq__stats_size(uint32_t version)
{
    switch (version) {
    case 1:
        return offsetof(mongoq_stats_t, paused);
    case 2:
        return offsetof(mongoq_stats_t, waiting);
    case MONGOQ_STATS_VERSION:
        return sizeof(mongoq_stats_t);
    default:
        return 0;
    }
}

void
mongoq__counters_read(const mongoq__counters_t *c, mongoq_counters_t *out)
{
    out->version = MONGOQ_COUNTERS_VERSION;
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
    out->stream_rescans = atomic_load(&c->stream_rescans);
    out->paused = atomic_load(&c->pause_state) == 2; /* MONGOQ__PAUSE_PAUSED */
}

bool
mongoq__counters_copy_out(const mongoq_counters_t *full, mongoq_counters_t *out)
{
    uint32_t version = out->version;
    size_t size = mongoq__counters_size(version);
    if (size == 0) {
        return false;
    }
    memcpy(out, full, size);
    out->version = version;
    return true;
}

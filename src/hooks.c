/* The lifecycle hook's events (see hooks-private.h and mongoq/hooks.h). */
#include "hooks-private.h"

void
mongoq__hook_tell(mongoq_queue_t *queue, mongoq_event_t *event)
{
    event->version = MONGOQ_EVENT_VERSION;
    event->queue = queue->name;
    queue->opts.hook(event, queue->opts.hook_user_data);
}

mongoq_event_t
mongoq__hook_event(mongoq_event_kind_t kind)
{
    mongoq_event_t e = {.kind = kind,
                        .enqueued_at_ms = -1,
                        .run_at_ms = -1,
                        .waited_ms = -1,
                        .handled_ms = -1,
                        .count = 1};
    return e;
}

void
mongoq__hook_enqueued(mongoq_queue_t *queue, const bson_oid_t *id, int64_t enqueued_at,
                      int64_t run_at)
{
    if (!queue->opts.hook) {
        return;
    }
    mongoq_event_t e = mongoq__hook_event(MONGOQ_EVENT_ENQUEUED);
    e.id = id;
    e.enqueued_at_ms = enqueued_at;
    e.run_at_ms = run_at;
    mongoq__hook_tell(queue, &e);
}

void
mongoq__hook_buried(mongoq_queue_t *queue, const bson_t *doc, const char *reason)
{
    bson_iter_t it;
    if (!queue->opts.hook || !bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_OID(&it)) {
        return; /* an _id that is no ObjectId cannot be told as one */
    }
    mongoq_event_t e = mongoq__hook_event(MONGOQ_EVENT_FAILED);
    e.id = bson_iter_oid(&it);
    e.reason = reason;
    mongoq__hook_tell(queue, &e);
}

void
mongoq__hook_reaped(mongoq_queue_t *queue, int64_t n, bool background)
{
    if (!queue->opts.hook || n <= 0) {
        return;
    }
    if (background) {
        atomic_fetch_add(&queue->hook_reaped_pending, n);
        return;
    }
    mongoq_event_t e = mongoq__hook_event(MONGOQ_EVENT_REAPED);
    e.count = n;
    mongoq__hook_tell(queue, &e);
}

void
mongoq__hook_flush(mongoq_queue_t *queue)
{
    if (queue->opts.hook && atomic_load(&queue->hook_reaped_pending) > 0) {
        mongoq__hook_reaped(queue, atomic_exchange(&queue->hook_reaped_pending, 0), false);
    }
}

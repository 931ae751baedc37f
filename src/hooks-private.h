/* Telling the queue's lifecycle hook (mongoq/hooks.h) of events; every call is a no-op without
 * a hook. Callers call these after the server confirmed the event, with no lock held. */
#ifndef MONGOQ_HOOKS_PRIVATE_H
#define MONGOQ_HOOKS_PRIVATE_H

#include "mongoq/hooks.h"
#include "queue-private.h"

/*
 * An event of `kind` with every field unknown (-1) or empty, count 1, for the caller to fill and
 * pass to mongoq__hook_tell; message events are built by mongoq__message_hook (message.c).
 */
mongoq_event_t mongoq__hook_event(mongoq_event_kind_t kind);

/* Calls the queue's hook with event (version and queue name filled in). The hook must be set. */
void mongoq__hook_tell(mongoq_queue_t *queue, mongoq_event_t *event);

/* ENQUEUED: a message stored with that _id, enqueued_at and run_at. */
void mongoq__hook_enqueued(mongoq_queue_t *queue, const bson_oid_t *id, int64_t enqueued_at,
                           int64_t run_at);

/* FAILED of a document buried without reaching a claimer (damaged, or refused by the server). */
void mongoq__hook_buried(mongoq_queue_t *queue, const bson_t *doc, const char *reason);

/*
 * REAPED, n messages: told now (a caller's mongoq_queue_reap) or, from the background reaper,
 * kept for the next claimer's thread (mongoq__hook_flush) so a slow hook never stalls it.
 */
void mongoq__hook_reaped(mongoq_queue_t *queue, int64_t n, bool background);

/* Tells what the background reaper kept (on a claimer's thread). */
void mongoq__hook_flush(mongoq_queue_t *queue);

#endif

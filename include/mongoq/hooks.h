/*
 * Lifecycle hooks: one optional callback on the queue (mongoq_queue_opts_t.hook) told of every
 * message's life in this process, for tracing (OpenTelemetry spans), logs or metrics of one's
 * own.
 */
#ifndef MONGOQ_HOOKS_H
#define MONGOQ_HOOKS_H

#include <stdint.h>

#include <bson/bson.h>

typedef enum {
    MONGOQ_EVENT_ENQUEUED = 1, /* stored by mongoq_enqueue / _enqueue_many (not duplicates) */
    MONGOQ_EVENT_CLAIMED,      /* handed to a claimer (consumer or worker) */
    MONGOQ_EVENT_ACKED,        /* acknowledged: done */
    MONGOQ_EVENT_RETRIED,      /* back to ready for another attempt (mongoq_message_retry) */
    MONGOQ_EVENT_FAILED,       /* moved to dead (mongoq_message_fail, retries used up, buried) */
    MONGOQ_EVENT_LEASE_LOST,   /* a write found the lease gone: someone else has the message */
    MONGOQ_EVENT_REAPED        /* expired leases returned or buried by a reaping pass (a count) */
} mongoq_event_kind_t;

#define MONGOQ_EVENT_VERSION 1

/*
 * What a hook is told. Times are epoch milliseconds on the server's clock unless said otherwise;
 * -1 where unknown. Every pointer is borrowed for the call only.
 */
typedef struct {
    uint32_t version;         /* MONGOQ_EVENT_VERSION: fields are only ever added at the end */
    mongoq_event_kind_t kind;
    const char *queue;        /* the queue's collection name */
    const bson_oid_t *id;     /* the message; NULL for REAPED */
    int32_t attempt;          /* the attempt the message is on (1 = first claim); 0 when enqueued */
    int64_t enqueued_at_ms;   /* when it was first enqueued */
    int64_t run_at_ms;        /* when it was (or is) due */
    int64_t waited_ms;        /* due to claimed: how long it waited for a claimer (CLAIMED on) */
    int64_t handled_ms;       /* claimed to this outcome, on this process's monotonic clock
                                 (ACKED, RETRIED, FAILED, LEASE_LOST) */
    int64_t count;            /* how many messages: 1, or the number reaped (REAPED) */
    const char *reason;       /* RETRIED / FAILED: the reason given, or NULL */
} mongoq_event_t;

/*
 * The hook. Called on the thread whose call caused the event (the producer's, the claimer's,
 * the worker's handler threads), after the server confirmed it and without any mongoq lock
 * held: it may call back into mongoq and takes as long as it likes from that thread alone.
 * mongoq's own threads never call it: reapings of the background reaper are told, as one
 * REAPED event with their count, on the thread of the next claim in this process, so a slow
 * hook can stall neither the waker nor the reaper. It must be thread-safe (claimers run in
 * parallel). An outcome whose write ended in MONGOQ_ERROR_UNKNOWN_OUTCOME is not told. An
 * enqueue inside the caller's transaction (mongoq_enqueue_opts_t.session) is told when its insert
 * succeeds, before the transaction commits: if the caller aborts, the message was told but never
 * stored.
 */
typedef void (*mongoq_hook_fn)(const mongoq_event_t *event, void *user_data);

#endif

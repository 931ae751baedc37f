/*
 * mongoq/worker.h - a pool of threads that claim messages and run a handler on each.
 *
 * A worker owns `threads` threads. Each claims messages from the queue (woken by the queue's
 * change stream, a timer or polling), runs the handler while a heartbeat extends the lease, and
 * acks, retries or fails the message according to the handler's answer.
 *
 * Thread safety: mongoq_worker_counters() and mongoq_worker_request_stop() may be called from
 * any thread at any time; the other functions from one controlling thread.
 */
#ifndef MONGOQ_WORKER_H
#define MONGOQ_WORKER_H

#include "message.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mongoq_worker_t mongoq_worker_t;

/* What a handler did with a message. */
typedef enum {
    MONGOQ_ACK = 0,   /* done: acknowledge */
    MONGOQ_RETRY = 1, /* give it back with the queue's backoff (dead when attempts run out) */
    MONGOQ_FAIL = 2   /* dead now */
} mongoq_result_t;

/*
 * The handler. msg is borrowed for the call (the worker acks/retries/fails and destroys it
 * afterwards); it may call mongoq_message_set_reason() and poll mongoq_message_lease_lost() to
 * stop early. Called on the worker's threads, concurrently when threads > 1.
 */
typedef mongoq_result_t (*mongoq_handler_fn)(mongoq_message_t *msg, void *user_data);

#define MONGOQ_WORKER_OPTS_VERSION 1

/* Worker options. Zero means "the default". */
typedef struct {
    uint32_t version;          /* MONGOQ_WORKER_OPTS_VERSION */
    mongoq_handler_fn handler; /* required */
    void *user_data;           /* passed to handler */
    int32_t threads;           /* handler threads: default 1, at most 256 */
    int64_t lease_ms;          /* lease per claim: default the queue's */
    int32_t batch;             /* messages claimed per round trip per thread: default 1 (max 1000) */
    int64_t heartbeat_ms;      /* extend the lease this often while a handler runs: default
                                  lease_ms / 3; negative: no heartbeat */
    const char *name;          /* consumer name prefix; default "<host>:<pid>". Copied. */
} mongoq_worker_opts_t;

#define MONGOQ_WORKER_OPTS_INIT {.version = MONGOQ_WORKER_OPTS_VERSION}

/* A stopped worker on queue (borrowed; must outlive it). NULL + error on invalid options. */
MONGOQ_EXPORT mongoq_worker_t *
mongoq_worker_new(mongoq_queue_t *queue, const mongoq_worker_opts_t *opts, bson_error_t *error);

/* Starts the threads. Fails if already started or if a thread cannot be created. */
MONGOQ_EXPORT bool
mongoq_worker_start(mongoq_worker_t *worker, bson_error_t *error);

/*
 * Async-signal-safe: asks the worker to stop claiming; returns at once. Call it from a signal
 * handler, then mongoq_worker_stop() from a normal thread.
 */
MONGOQ_EXPORT void
mongoq_worker_request_stop(mongoq_worker_t *worker);

/*
 * Stops the worker: claims nothing new, hands messages it claimed but has not started back at
 * once (ready again, attempts restored), and waits up to timeout_ms for running handlers.
 * Handlers still running at the timeout keep running; their messages are left to their leases
 * and the call returns false with MONGOQ_ERROR_STOPPED (call again or destroy, which waits).
 * Blocks; call it from a normal thread (not a signal handler).
 */
MONGOQ_EXPORT bool
mongoq_worker_stop(mongoq_worker_t *worker, int64_t timeout_ms, bson_error_t *error);

/* Stops (waiting for handlers without limit) and frees the worker. NULL is a no-op. */
MONGOQ_EXPORT void
mongoq_worker_destroy(mongoq_worker_t *worker);

/* Counters of this worker (claimed, acked, ...) plus the queue's wake-up and reap counters. */
MONGOQ_EXPORT void
mongoq_worker_counters(mongoq_worker_t *worker, mongoq_counters_t *counters);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_WORKER_H */

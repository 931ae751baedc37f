/*
 * mongoq/worker.h - a pool of threads that claim messages and run a handler on each.
 *
 * A worker owns `threads` threads. Each claims messages from the queue (woken by the queue's
 * change stream, a timer or polling), runs the handler while a heartbeat extends the lease, and
 * acks, retries or fails the message according to the handler's answer, then reports what
 * became of it (on_outcome). One more thread, the keeper, extends leases and acts on stop.
 * With opts.scheduler, one more runs a scheduler (mongoq/schedule.h) that enqueues the queue's
 * periodic messages: one process then both schedules and handles them.
 *
 * Round trips: with batch 1, a findAndModify per message and its ack (2 per message); with
 * batch B, claim_many's 3 and one ack_many per batch (4 / B per message; a claim_many that
 * lost all it found to another claimer takes one message with a findAndModify instead), plus
 * a write per MONGOQ_RETRY or MONGOQ_FAIL. Heartbeats add one updateMany per batch per
 * heartbeat_ms.
 * The acks of a batch go together: a message the handler answered MONGOQ_ACK stays held (its
 * lease extended) until its ack is sent with the others of the batch, which happens when the
 * batch ends, before a retry, fail or skip is written, right after a handler that ran 50 ms or
 * more, or before the next handler starts once the first waiting ack has waited 50 ms. So a
 * message is acknowledged at most 50 ms plus one handler's run after its handler returned, at
 * once when its handler was slow. Its outcome is reported after that write.
 *
 * Thread safety: mongoq_worker_counters() and mongoq_worker_request_stop() may be called from
 * any thread at any time; the other functions from one controlling thread (not from a handler
 * or on_outcome, which run on the worker's own threads). The handler and on_outcome run on the
 * handler threads, concurrently when threads > 1, and never with a mongoq lock held.
 */
#ifndef MONGOQ_WORKER_H
#define MONGOQ_WORKER_H

#include "message.h"
#include "queue.h"
#include "schedule.h"

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
 * afterwards); it may call mongoq_message_set_reason() and poll mongoq_message_lease_lost() and
 * mongoq_message_lease_expires_at() (kept current by the heartbeat, see below) to stop early.
 * Called on the worker's threads, concurrently when threads > 1. A message whose lease the
 * worker knows is lost or run out by the time its turn in a batch comes is never handed to it.
 */
typedef mongoq_result_t (*mongoq_handler_fn)(mongoq_message_t *msg, void *user_data);

/* The one list of what a worker did with a message: X(NAME, value, description). */
#define MONGOQ_OUTCOME_ACTION_MAP(X)                                                               \
    X(ACKED, 0, "acknowledged (the handler answered MONGOQ_ACK)")                                  \
    X(RETRIED, 1, "ready again after the backoff (MONGOQ_RETRY)")                                  \
    X(BURIED, 2, "dead: MONGOQ_RETRY with its last attempt used")                                 \
    X(FAILED, 3, "dead (MONGOQ_FAIL)")                                                             \
    X(LEASE_LOST, 4, "the handler ran but the lease was gone: nothing was written")               \
    X(HANDED_BACK, 5, "never started: given back on stop, ready again with its attempt restored") \
    X(SKIPPED_LOST, 6, "never started: its lease was lost or had run out before its turn")

typedef enum {
#define MONGOQ_OUTCOME_ENUM_(name, value, desc) MONGOQ_OUTCOME_##name = value,
    MONGOQ_OUTCOME_ACTION_MAP(MONGOQ_OUTCOME_ENUM_)
#undef MONGOQ_OUTCOME_ENUM_
} mongoq_outcome_action_t;

/* "ACKED", "HANDED_BACK", ... or "UNKNOWN". Static string. Thread-safe. */
MONGOQ_EXPORT const char *
mongoq_outcome_action_name(int action);

#define MONGOQ_OUTCOME_VERSION 1

/*
 * What became of one claimed message (mongoq_worker_opts_t.on_outcome). Filled by the worker:
 * version is the MONGOQ_OUTCOME_VERSION of the library that filled it, and fields added in a
 * later version are read only when version says they are there.
 */
typedef struct {
    uint32_t version;               /* MONGOQ_OUTCOME_VERSION of the library */
    bool handled;                   /* the handler ran on the message */
    mongoq_result_t result;         /* its answer; MONGOQ_ACK when !handled */
    mongoq_outcome_action_t action; /* what the worker did, or tried when !ok */
    /*
     * true: the message is in the state action names. false: error says why; the message kept
     * whatever lease it still had and returns through the reaper when it expires (nothing is
     * lost). LEASE_LOST and SKIPPED_LOST are never ok (error is MONGOQ_ERROR_LEASE_LOST).
     * MONGOQ_ERROR_UNKNOWN_OUTCOME: the write may or may not have been applied. A HANDED_BACK
     * that is not ok: the hand-back failed, or found some leases of its batch gone (LEASE_LOST:
     * it cannot say which, error says how many; the others were handed back).
     */
    bool ok;
    bson_error_t error; /* when !ok; zeroed otherwise */
} mongoq_outcome_t;

/*
 * Called once for every message the worker claimed, after the worker's write for it (for an
 * ack, the batch's ack_many; see above) or after deciding not to run it. msg and outcome are
 * borrowed for the call (msg is destroyed after it). Called on the handler thread that claimed
 * msg, never with a mongoq lock held, so it may call into mongoq; concurrently when threads > 1.
 * Outcomes of messages handed back on stop are reported when the handler thread ends its batch
 * (after a running handler returns).
 */
typedef void (*mongoq_outcome_fn)(const mongoq_message_t *msg, const mongoq_outcome_t *outcome,
                                  void *user_data);

/*
 * 2 added on_outcome, 3 added scheduler. Structs of an earlier version (without the fields
 * added later) are still accepted: nothing past their version's fields is read.
 */
#define MONGOQ_WORKER_OPTS_VERSION 3

/* Worker options. Zero means "the default". */
typedef struct {
    uint32_t version;          /* MONGOQ_WORKER_OPTS_VERSION */
    mongoq_handler_fn handler; /* required */
    void *user_data;           /* passed to handler and on_outcome */
    int32_t threads;           /* handler threads: default 1, at most 256 */
    int64_t lease_ms;          /* lease per claim: default the queue's; at most
                                  MONGOQ_MAX_DURATION_MS */
    int32_t batch;             /* messages claimed at once per thread: default 1 (max 1000).
                                  1 claims with one retryable findAndModify; more with
                                  mongoq_consumer_claim_many, and acks with ack_many (above) */
    int64_t heartbeat_ms;      /* extend the lease this often while a handler runs: default
                                  lease_ms / 3; negative: no heartbeat; at most
                                  MONGOQ_MAX_DURATION_MS */
    const char *name;          /* consumer name prefix (":<thread>" is appended), valid UTF-8
                                  of at most MONGOQ_MAX_NAME_BYTES - 8 bytes; default
                                  "<host>:<pid>". Copied. */
    /* version 2 */
    mongoq_outcome_fn on_outcome; /* NULL: none */
    /* version 3 */
    /*
     * NULL: none. Otherwise the worker runs a scheduler (mongoq/schedule.h) on its queue with
     * these options (copied; point at a MONGOQ_SCHEDULER_OPTS_INIT struct for the defaults),
     * alongside its threads: mongoq_worker_new creates it (bad scheduler options fail it with
     * MONGOQ_ERROR_INVALID_ARG), mongoq_worker_start starts its thread, a stop request reaches
     * it at once, mongoq_worker_stop waits for it within its bound (below) and
     * mongoq_worker_destroy frees it. It enqueues the slots of every schedule of the queue;
     * any number of workers may run one (each slot is enqueued once). It keeps enqueueing
     * while the queue is paused (a pause stops claims, not enqueues).
     */
    const mongoq_scheduler_opts_t *scheduler;
} mongoq_worker_opts_t;

#define MONGOQ_WORKER_OPTS_INIT {.version = MONGOQ_WORKER_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_WORKER_OPTS_INIT does, for the given version (bindings that cannot
 * use the macro): every field zero (its default) and the version set. An older version gets only
 * that version's fields written (the struct of a program built against an older header is
 * shorter). Returns false, writing nothing, for a version this library does not know (0 or newer
 * than MONGOQ_WORKER_OPTS_VERSION). Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_worker_opts_init(mongoq_worker_opts_t *opts, uint32_t version);

/*
 * A stopped worker on queue (borrowed; must outlive it). NULL + error on invalid options,
 * including a version outside 1 .. MONGOQ_WORKER_OPTS_VERSION.
 *
 * Heartbeat: a keeper thread extends the leases of every message a handler thread holds (the
 * running one, those waiting their turn in the batch and those whose ack waits to be sent with
 * the batch's), one updateMany per batch. A message found no longer held is marked
 * (mongoq_message_lease_lost). After each extension
 * mongoq_message_lease_expires_at() of the message is at least the server-clock estimate taken
 * just before the request plus lease_ms: a lower bound of the expiry the server wrote (the
 * estimate is never ahead of the server), so a handler that keeps to it keeps to its lease.
 */
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
 * once (ready again, attempts restored; one write per batch, sent by the keeper or by the
 * handler thread ending its batch, never by the calling thread), and waits for the threads.
 * The hand-back of one message is an updateOne, a retryable write (libmongoc sends it once
 * more after a network error or a failover); of several, an updateMany fenced by the batch's
 * lease token, which the worker sends once more itself after such an error (the token makes
 * that safe: nothing is handed back twice). A hand-back that still fails leaves the messages
 * leased; they return through the reaper when the lease expires.
 *
 * What it waits for: every handler thread to finish its running handler and its write, the
 * keeper to leave whatever network call it is in (a heartbeat, a hand-back), and the
 * scheduler (opts.scheduler) to leave the pass it is in (asked to stop at the same time as the
 * handler threads). It waits up to timeout_ms (negative counts as 0, more than
 * MONGOQ_MAX_DURATION_MS as that) for the handler threads and up to 500 ms more for the
 * keeper and the scheduler, so it returns within timeout_ms + 1 s whatever the server does:
 * the calling thread itself sends nothing and holds no lock across a network call. When
 * something is still running it returns false with MONGOQ_ERROR_STOPPED: running handlers keep
 * running (and their leases keep being extended), messages not yet handed back keep their
 * leases and return through the reaper, nothing is lost; call it again or destroy, which
 * waits.
 * Blocks; call it from a normal thread (not a signal handler nor a handler).
 */
MONGOQ_EXPORT bool
mongoq_worker_stop(mongoq_worker_t *worker, int64_t timeout_ms, bson_error_t *error);

/*
 * Stops as mongoq_worker_stop without a time limit, then frees the worker (and its
 * scheduler). NULL is a no-op. Its bound: the longest running handler, plus the network calls
 * in flight when it was called (a thread blocked inside libmongoc can only be waited for: up
 * to the pool's socketTimeoutMS, or serverSelectionTimeoutMS while no server is reachable; the
 * scheduler's calls end within a few seconds), plus the hand-back's write per batch (two
 * round trips at most). Stop first with a timeout to bound shutdown.
 */
MONGOQ_EXPORT void
mongoq_worker_destroy(mongoq_worker_t *worker);

/*
 * Counters of this worker plus the queue's wake-up and reap counters. They agree with the
 * outcomes: acked counts ACKED, retried RETRIED, failed FAILED and BURIED (as the queue counts
 * a retry that buried), lease_lost LEASE_LOST and SKIPPED_LOST (once per message); a write
 * that failed otherwise, and hand-backs, are not counted. counters->version must be set
 * (MONGOQ_COUNTERS_INIT); false, writing nothing, for an unknown version.
 */
MONGOQ_EXPORT bool
mongoq_worker_counters(mongoq_worker_t *worker, mongoq_counters_t *counters);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_WORKER_H */

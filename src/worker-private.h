/*
 * The worker's internals, shared by its three files and no others: worker.c (options,
 * lifecycle, counters, and the helpers both kinds of thread use), worker_handler.c (the handler
 * threads) and worker_keeper.c (the keeper thread). See worker.c for the design.
 */
#ifndef MONGOQ_WORKER_PRIVATE_H
#define MONGOQ_WORKER_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "message-private.h"
#include "mongoq/worker.h"
#include "queue-private.h"

/* A hand-back of msgs[from .. to) of one batch (those not known lost went in one updateMany). */
typedef struct {
    size_t from;
    size_t to;
    bool ok;
    bson_error_t error; /* when !ok */
} mongoq__hand_back_t;

/*
 * What one handler thread holds: msgs[first_held .. end) of its current batch: those whose ack
 * waits to be sent with the batch's (worker_handler.c), the running one (if any), then those not
 * started, from msgs[next]. The keeper extends them all and, on stop, takes msgs[next .. end) to
 * hand back (back) and sets end = next so the thread starts none of them. Whoever moves end
 * down first hands those messages back; the other does not.
 */
typedef struct {
    pthread_mutex_t mu;  /* guards the fields below against the keeper; never held over I/O */
    pthread_cond_t cond; /* the keeper's hand-back of this batch finished */
    mongoq_message_t **msgs;
    size_t first_held;
    size_t next;
    size_t end;
    int64_t next_beat_mono;   /* when the keeper extends this batch next */
    mongoq__hand_back_t back; /* the keeper's hand-back of this batch (from == to: none) */
    bool back_in_flight;      /* the keeper is sending it */
} mongoq__holding_t;

/* One handler thread's slot in the worker (worker->handlers[index]). */
typedef struct {
    mongoq_worker_t *worker;
    int index;
    mongoq__holding_t holding;
    pthread_t thread;
} mongoq__handler_thread_t;

struct mongoq_worker_t {
    mongoq_queue_t *queue;
    mongoq_handler_fn handler;
    mongoq_outcome_fn on_outcome;
    void *user_data;
    int threads;
    int64_t lease_ms;
    int32_t batch;
    int64_t heartbeat_ms; /* <= 0: none */
    char *name;

    mongoq__handler_thread_t *handlers; /* threads slots, n_started of them running */
    int n_started;
    pthread_t keeper;
    bool started;
    bool handlers_joined;
    bool joined;

    atomic_bool stop_requested; /* set by request_stop (async-signal-safe) */
    atomic_bool keeper_stop;
    int pipe_fds[2]; /* request_stop writes a byte to [1]; the keeper polls [0] */

    pthread_mutex_t mu;
    pthread_cond_t cond; /* handler threads or the keeper exiting; stop requests (monotonic) */
    int running;         /* handler threads not yet finished */
    int keeper_running;  /* 1 until the keeper's loop has ended */

    mongoq__counters_t counters; /* this worker's claimed, acked, ... */

    /* opts.scheduler: started and stopped with the threads; request_stop reaches it at once. */
    mongoq_scheduler_t *scheduler;
};

/* Logs through the queue's log callback. Never called with a lock held. */
void
mongoq__worker_log(mongoq_worker_t *w, mongoq_log_level_t level, const char *fmt, ...)
    BSON_GNUC_PRINTF(3, 4);


/* Whether mongoq_worker_request_stop() was called (an atomic load). */
bool
mongoq__worker_stop_requested(const mongoq_worker_t *w);

/* ---- batch writes on copies (worker.c; called without any lock held) ---------------------- */

/* updateMany with the queue's write concern; *matched from the reply. */
bool
mongoq__worker_update_many(mongoq_worker_t *w, const char *what, const bson_t *filter,
                           const bson_t *update, int64_t *matched, bson_error_t *error);

/* Copies the _ids of msgs[from .. to) not known lost into ids; returns how many. *partition:
 * the first copied one's (MONGOQ__ALL_PARTITIONS when none). */
size_t
mongoq__worker_copy_unlost_ids(mongoq_message_t *const *msgs, size_t from, size_t to,
                               bson_oid_t *ids, int32_t *partition);

/*
 * Gives back the n messages ids (of one claim: token; in partition) and fills *back: one
 * retryable updateOne for one message, else one updateMany sent once more after a retryable
 * error (the token makes resending safe).
 */
void
mongoq__worker_release_ids(mongoq_worker_t *w, const bson_oid_t *ids, size_t n,
                           const bson_oid_t *token, int32_t partition, mongoq__hand_back_t *back);

/* ---- the threads --------------------------------------------------------------------------- */

/* A handler thread's body (worker_handler.c); arg is its mongoq__handler_thread_t. */
void *
mongoq__worker_handler_main(void *arg);

/* The keeper thread's body (worker_keeper.c); arg is the worker. */
void *
mongoq__worker_keeper_main(void *arg);

/* A stop was requested: wake the handler threads wherever they wait (worker_keeper.c). */
void
mongoq__worker_spread_stop(mongoq_worker_t *w);

#endif

/*
 * The waker's internals, shared only by its own three files: waker.c (the waiting side: the
 * generation, timers, second chances, waiting and notifying), waker_thread.c (the thread that
 * watches the change stream) and waker_poll.c (the thread's server queries and its polling
 * mode). A header of its own rather than more lines in waker-private.h: that one is the
 * interface the rest of the library includes (through queue-private.h), where mongoq__waker_t
 * stays opaque; only the waker's files include this.
 */
#ifndef MONGOQ_WAKER_IMPL_H
#define MONGOQ_WAKER_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "waker-private.h"

#define MONGOQ__WAKER_MAX_TIMERS 256

typedef struct {
    int64_t due_mono_ms;
    bool recheck;
    int32_t partition; /* whose run_at; MONGOQ__ALL_PARTITIONS (-1): unknown or several */
} mongoq__due_entry_t;

struct mongoq__waker_t {
    mongoq__waker_config_t config;
    char *db;
    char *coll;
    pthread_mutex_t mu;
    pthread_cond_t cond;        /* waiters */
    pthread_cond_t thread_cond; /* the waker thread's pauses */
    uint64_t generation;
    mongoq__wake_t last_reason; /* why the generation last moved */
    mongoq__due_entry_t timers[MONGOQ__WAKER_MAX_TIMERS]; /* ascending */
    size_t n_timers;
    bool timers_dropped;  /* some run_at did not fit: ask the server once the list drains */
    bool need_next_run_at; /* the thread should query the next run_at */
    /*
     * Second chances for the latest events (0: none). A producer stamps run_at from its own
     * estimate of the server clock, which may run a millisecond or so ahead of $$NOW: the claim
     * right after the event then finds nothing. Waiters look again once the latest event's
     * run_at has surely passed (+TIMER_MARGIN_MS, then +RECHECK_MS). Two scalars, not timers:
     * O(1) however many events arrive.
     */
    int64_t settle_mono[2];
    int32_t settle_partition[2]; /* as a timer's partition */
    /* Wake-up epochs (waker-private.h): [0] every partition, [1 + k] partition k. */
    atomic_uint_least64_t epochs[MONGOQ_MAX_PARTITIONS + 1];
    int nwaiters;
    bool thread_started;
    pthread_t thread;
    bool stopping;
};

/* ---- in waker.c, for the thread: clocks, logging, waking ---------------------------------- */

/* The server clock now (the queue's estimate; the local clock when there is none). */
int64_t
mongoq__waker_server_now_ms(mongoq__waker_t *w);

/* The clock of the fastest server the queue talks to (clock-private.h), for a filter's bound. */
int64_t
mongoq__waker_server_latest_ms(mongoq__waker_t *w);


/* Logs through the queue's log callback. Never called with w->mu held. */
void
mongoq__waker_log(mongoq__waker_t *w, mongoq_log_level_t level, const char *fmt, ...)
    BSON_GNUC_PRINTF(3, 4);

/* Moves the generation (why: reason) and wakes every waiter; takes w->mu. About every
 * partition. */
void
mongoq__waker_bump(mongoq__waker_t *w, mongoq__wake_t reason);

/* The same about one partition (MONGOQ__ALL_PARTITIONS: every one). */
void
mongoq__waker_bump_partition(mongoq__waker_t *w, mongoq__wake_t reason, int32_t partition);

/* The latest event's message (run_at on the server clock, in partition, which may be
 * MONGOQ__ALL_PARTITIONS) may not be due yet: look again. */
void
mongoq__waker_settle_after(mongoq__waker_t *w, int64_t run_at_ms, int32_t partition);

/* ---- in waker_thread.c ------------------------------------------------------------------ */

/* The first pause between polls, and between attempts to connect or reopen the stream. */
#define MONGOQ__WAKER_MIN_POLL_MS 10

/* The thread's connection (a single-threaded service client) and the queue's collection on it. */
typedef struct {
    mongoc_client_t *client;
    mongoc_collection_t *coll;
} mongoq__waker_service_t;

/* Starts the thread if it is not running and the waker is not stopping (w->mu held). */
void
mongoq__waker_ensure_thread_locked(mongoq__waker_t *w);

/* After a failed call: a new connection; false when the waker stopped first. */
bool
mongoq__waker_service_renew(mongoq__waker_t *w, mongoq__waker_service_t *svc);

/* ---- in waker_poll.c, for the thread ---------------------------------------------------- */

/* Schedules the earliest future run_at among ready messages (one seek on the due index). */
void
mongoq__waker_refresh_next_run_at(mongoq__waker_t *w, mongoc_collection_t *coll);

/* Whether the waiters asked for the next run_at (read under w->mu; the refresh clears it). */
bool
mongoq__waker_take_need_next_run_at(mongoq__waker_t *w);

/* Reads the pause state (pause-private.h); true when paused. A resume wakes every waiter. */
bool
mongoq__waker_sync_pause(mongoq__waker_t *w, mongoc_collection_t *coll);

/* Polling mode: polls while someone waits, until the waker stops or no connection is left. */
void
mongoq__waker_poll_loop(mongoq__waker_t *w, mongoq__waker_service_t *svc);

#endif

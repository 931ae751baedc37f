/*
 * The waker: one per queue, shared by all its consumers. It tells idle consumers when a claim
 * may succeed. Events are a signal only: a consumer always claims with the ordinary query, so
 * correctness never depends on what the waker saw.
 *
 * Use from a claim loop:
 *
 *     uint64_t seen = mongoq__waker_generation(w);
 *     for (;;) {
 *         if (try_claim()) return got;
 *         if (mongoq__now_mono_ms() >= deadline) return none;
 *         mongoq__waker_wait(w, &seen, deadline);
 *     }
 *
 * Reading the generation BEFORE the claim attempt means a wake-up that happens between the
 * attempt and the wait is never lost.
 */
#ifndef MONGOQ_WAKER_PRIVATE_H
#define MONGOQ_WAKER_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "clock-private.h"
#include "counters-private.h"
#include "mongoq/queue.h"

typedef struct mongoq__waker_t mongoq__waker_t;

/* "Every partition" (or an unknown one) where a partition is expected (partition-private.h). */
#define MONGOQ__ALL_PARTITIONS (-1)

/* The longest pause between polls when the queue options leave poll_interval_ms 0. */
#define MONGOQ__DEFAULT_POLL_INTERVAL_MS 1000

typedef struct {
    mongoc_client_pool_t *pool; /* borrowed */
    const char *db;             /* copied */
    const char *coll;           /* copied */
    bool no_change_stream;
    int64_t poll_interval_ms;   /* <= 0: MONGOQ__DEFAULT_POLL_INTERVAL_MS */
    mongoq_log_fn log_fn;
    void *log_user_data;
    mongoq__counters_t *counters; /* borrowed, outlives the waker */
    mongoq__clock_t *clock;       /* borrowed, outlives the waker */
    int32_t partitions;           /* the queue's (1: no partition field) */
} mongoq__waker_config_t;

typedef enum {
    MONGOQ__WAKE_TIMEOUT = 0, /* the deadline passed */
    MONGOQ__WAKE_CHANGE_STREAM,
    MONGOQ__WAKE_TIMER,       /* the earliest known run_at came */
    MONGOQ__WAKE_POLL,        /* polling interval elapsed (no change stream) */
    MONGOQ__WAKE_LOCAL,       /* notified in-process (enqueue, hand-back, rescan) */
    MONGOQ__WAKE_STOP         /* the waker is shutting down */
} mongoq__wake_t;

/* Creates the waker; its thread (if any) starts on the first wait. Never fails. */
mongoq__waker_t *
mongoq__waker_new(const mongoq__waker_config_t *config);

/* Stops its thread, wakes all waiters with MONGOQ__WAKE_STOP, frees. NULL is a no-op. */
void
mongoq__waker_destroy(mongoq__waker_t *w);

/* Asks the thread to stop without waiting for it (destroy then waits). NULL is a no-op. */
void
mongoq__waker_signal_stop(mongoq__waker_t *w);

/* The current wake-up generation. */
uint64_t
mongoq__waker_generation(mongoq__waker_t *w);

/*
 * Blocks until the generation differs from *seen or deadline_ms (monotonic clock, see
 * mongoq__now_mono_ms) passes; updates *seen. Starts the waker's thread on the first call.
 * The generation moves on change events, timers, in-process notifications and rescans; in
 * polling mode the waker's thread polls (pause 10 ms doubling up to poll_interval_ms) and
 * moves it when a poll finds a due message (MONGOQ__WAKE_POLL). As a safety net every wait
 * also returns after poll_interval_ms (MONGOQ__WAKE_POLL without a poll). Wake-ups are not
 * counted here: the claimer counts the cause when the claim that follows finds work.
 * Thread-safe.
 */
mongoq__wake_t
mongoq__waker_wait(mongoq__waker_t *w, uint64_t *seen, int64_t deadline_ms);

/*
 * Counts a wake-up by its cause (change stream, timer, poll). Claimers call it only when the
 * claim that followed the wake-up found work, so a wake-up that found nothing is not counted.
 */
void
mongoq__waker_count(mongoq__counters_t *counters, mongoq__wake_t why);

/*
 * Starts the waker's thread if it is not running (a claimer calls it: the thread keeps the
 * queue's pause state current for claims that never wait). Thread-safe.
 */
void
mongoq__waker_start(mongoq__waker_t *w);

/* Wakes every waiter now (reason MONGOQ__WAKE_LOCAL), about every partition. Thread-safe. */
void
mongoq__waker_notify(mongoq__waker_t *w);

/*
 * Tells the waker a ready message becomes due at run_at_ms (server clock, ms since the epoch);
 * it wakes waiters then (MONGOQ__WAKE_TIMER), about every partition. Thread-safe.
 */
void
mongoq__waker_schedule(mongoq__waker_t *w, int64_t run_at_ms);

/*
 * Wake-up epochs of a partitioned queue (partition_claim.c). Every partition has one, and so does
 * "every partition"; whatever may make a message of partition k claimable moves k's (a change
 * event naming k, a local enqueue, retry or hand-back in k, a timer for a run_at in k), and
 * whatever cannot name a partition moves the common one (a rescan, a poll that found work, a
 * resume, a reaping, a redrive, any wake-up of mongoq__waker_notify or _schedule). A consumer
 * that found k empty trusts that while mongoq__waker_partition_epoch(k) stays the same.
 */

/* As mongoq__waker_notify, about partition k only (MONGOQ__ALL_PARTITIONS: every one). */
void
mongoq__waker_notify_partition(mongoq__waker_t *w, int32_t partition);

/* As mongoq__waker_schedule, about partition k only (MONGOQ__ALL_PARTITIONS: every one). */
void
mongoq__waker_schedule_partition(mongoq__waker_t *w, int64_t run_at_ms, int32_t partition);

/* Partition k's epoch plus the common one: it changes whenever either moves. Lock-free. */
uint64_t
mongoq__waker_partition_epoch(mongoq__waker_t *w, int32_t partition);

#endif

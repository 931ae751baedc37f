/*
 * The waker: one per queue, shared by all its consumers (see waker-private.h). This file is its
 * waiting side; its thread is in waker_thread.c (polling mode in waker_poll.c), the internals
 * they share in waker-impl.h.
 *
 * Waiters sleep on one condition variable and return when the generation moves. Three things
 * move it:
 *  - the waker's thread (waker_thread.c), which owns one change stream per queue and bumps the
 *    generation on every event that may make a message ready; where the server cannot open
 *    change streams, it polls instead;
 *  - timers: the earliest known run_at values (a delayed message falling due produces no event),
 *    fired by the waiters themselves so no thread has to be awake for them;
 *  - in-process notifications (enqueue, hand-back) and rescans after a gap in the stream.
 * Waiters also return every poll_interval_ms as a safety net. Events are a signal only: every
 * wake-up is followed by an ordinary claim, so a lost or spurious event costs latency, never
 * correctness.
 */
#include "waker-impl.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TIMER_MARGIN_MS 2 /* fire just after run_at: the claim checks run_at <= $$NOW */
#define RECHECK_MS 100    /* fire once more in case the clock estimate was early */

/* ---- clocks and logging ------------------------------------------------------------------ */

int64_t
mongoq__waker_server_now_ms(mongoq__waker_t *w)
{
    return w->config.clock ? mongoq__clock_server_now_ms(w->config.clock) : mongoq__now_real_ms();
}

int64_t
mongoq__waker_server_latest_ms(mongoq__waker_t *w)
{
    return w->config.clock ? mongoq__clock_server_latest_ms(w->config.clock)
                           : mongoq__now_real_ms();
}

static int64_t
server_to_mono_ms(mongoq__waker_t *w, int64_t server_ms)
{
    if (w->config.clock) {
        return mongoq__clock_server_to_mono_ms(w->config.clock, server_ms);
    }
    return mongoq__now_mono_ms() + (server_ms - mongoq__now_real_ms());
}

/* Never called with w->mu held: the callback may call back into mongoq. */
void
mongoq__waker_log(mongoq__waker_t *w, mongoq_log_level_t level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    if (!w->config.log_fn) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    w->config.log_fn(level, buf, w->config.log_user_data);
}

/* ---- generation and timers (w->mu held) --------------------------------------------------- */

/* Moves partition's epoch (or the common one): released before the generation moves, so a
 * waiter that sees the new generation also sees the new epoch. */
static void
move_epoch(mongoq__waker_t *w, int32_t partition)
{
    size_t i = partition >= 0 && partition < w->config.partitions ? (size_t)partition + 1 : 0;
    atomic_fetch_add(&w->epochs[i], 1);
}

static void
bump_partition_locked(mongoq__waker_t *w, mongoq__wake_t reason, int32_t partition)
{
    move_epoch(w, partition);
    w->generation++;
    w->last_reason = reason;
    pthread_cond_broadcast(&w->cond);
}

static void
bump_locked(mongoq__waker_t *w, mongoq__wake_t reason)
{
    bump_partition_locked(w, reason, MONGOQ__ALL_PARTITIONS);
}

void
mongoq__waker_bump(mongoq__waker_t *w, mongoq__wake_t reason)
{
    mongoq__waker_bump_partition(w, reason, MONGOQ__ALL_PARTITIONS);
}

void
mongoq__waker_bump_partition(mongoq__waker_t *w, mongoq__wake_t reason, int32_t partition)
{
    pthread_mutex_lock(&w->mu);
    bump_partition_locked(w, reason, partition);
    pthread_mutex_unlock(&w->mu);
}

uint64_t
mongoq__waker_partition_epoch(mongoq__waker_t *w, int32_t partition)
{
    size_t i = partition >= 0 && partition < w->config.partitions ? (size_t)partition + 1 : 0;
    /* Both only grow, so the sum stays the same only while neither moved. */
    return atomic_load(&w->epochs[0]) + (i > 0 ? atomic_load(&w->epochs[i]) : 0);
}

/* Two wake-ups merged into one are about both partitions: every one, unless the same. */
static int32_t
merge_partition(int32_t a, int32_t b)
{
    return a == b ? a : MONGOQ__ALL_PARTITIONS;
}

static void
insert_timer_locked(mongoq__waker_t *w, int64_t due, bool recheck, int32_t partition)
{
    size_t i = 0;
    while (i < w->n_timers && w->timers[i].due_mono_ms < due) {
        i++;
    }
    /* Messages due within a millisecond of each other share one wake-up. */
    if (i < w->n_timers && w->timers[i].due_mono_ms - due <= 1) {
        w->timers[i].partition = merge_partition(w->timers[i].partition, partition);
        return;
    }
    if (i > 0 && due - w->timers[i - 1].due_mono_ms <= 1) {
        w->timers[i - 1].partition = merge_partition(w->timers[i - 1].partition, partition);
        return;
    }
    if (w->n_timers == MONGOQ__WAKER_MAX_TIMERS) {
        w->timers_dropped = true;
        if (i == MONGOQ__WAKER_MAX_TIMERS) {
            return;
        }
        w->n_timers--; /* the latest one goes; the server is asked again later */
    }
    memmove(&w->timers[i + 1], &w->timers[i], (w->n_timers - i) * sizeof w->timers[0]);
    w->timers[i].due_mono_ms = due;
    w->timers[i].recheck = recheck;
    w->timers[i].partition = partition;
    w->n_timers++;
}

/* Pops every timer due at now, moves the epochs of their partitions and wakes everyone. */
static void
fire_timers_locked(mongoq__waker_t *w, int64_t now)
{
    size_t n = 0;
    bool recheck_at = false;
    int64_t recheck_due = 0;
    int32_t recheck_partition = 0;
    while (n < w->n_timers && w->timers[n].due_mono_ms <= now) {
        int32_t partition = w->timers[n].partition;
        if (!w->timers[n].recheck) {
            recheck_partition = recheck_at ? merge_partition(recheck_partition, partition)
                                           : partition;
            recheck_at = true;
            recheck_due = w->timers[n].due_mono_ms + RECHECK_MS;
        }
        move_epoch(w, partition);
        n++;
    }
    memmove(&w->timers[0], &w->timers[n], (w->n_timers - n) * sizeof w->timers[0]);
    w->n_timers -= n;
    if (recheck_at) {
        insert_timer_locked(w, recheck_due, true, recheck_partition);
    }
    if (w->n_timers == 0 && w->timers_dropped) {
        w->need_next_run_at = true;
        pthread_cond_signal(&w->thread_cond);
    }
    w->generation++;
    w->last_reason = MONGOQ__WAKE_TIMER;
    pthread_cond_broadcast(&w->cond);
}

/* The latest event's message (run_at on the server clock) may not be due yet: look again. */
void
mongoq__waker_settle_after(mongoq__waker_t *w, int64_t run_at_ms, int32_t partition)
{
    int64_t due = server_to_mono_ms(w, run_at_ms);
    const int64_t at[2] = {due + TIMER_MARGIN_MS, due + RECHECK_MS};
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < 2; i++) {
        w->settle_partition[i] = w->settle_mono[i] == 0
                                     ? partition
                                     : merge_partition(w->settle_partition[i], partition);
        if (at[i] > w->settle_mono[i]) {
            w->settle_mono[i] = at[i];
        }
    }
    pthread_mutex_unlock(&w->mu);
}

/* True (and wakes everyone) when a second chance is due. */
static bool
fire_settle_locked(mongoq__waker_t *w, int64_t now)
{
    for (int i = 0; i < 2; i++) {
        if (w->settle_mono[i] != 0 && w->settle_mono[i] <= now) {
            w->settle_mono[i] = 0;
            bump_partition_locked(w, MONGOQ__WAKE_CHANGE_STREAM, w->settle_partition[i]);
            return true;
        }
    }
    return false;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

mongoq__waker_t *
mongoq__waker_new(const mongoq__waker_config_t *config)
{
    mongoq__waker_t *w = bson_malloc0(sizeof *w);
    w->config = *config;
    w->db = bson_strdup(config->db);
    w->coll = bson_strdup(config->coll);
    w->config.db = w->db;
    w->config.coll = w->coll;
    if (w->config.poll_interval_ms <= 0) {
        w->config.poll_interval_ms = MONGOQ__DEFAULT_POLL_INTERVAL_MS;
    }
    if (w->config.partitions < 1 || w->config.partitions > MONGOQ_MAX_PARTITIONS) {
        w->config.partitions = 1;
    }
    for (size_t i = 0; i < sizeof w->epochs / sizeof w->epochs[0]; i++) {
        atomic_init(&w->epochs[i], 0);
    }
    pthread_mutex_init(&w->mu, NULL);
    mongoq__cond_init_monotonic(&w->cond);
    mongoq__cond_init_monotonic(&w->thread_cond);
    return w;
}

void
mongoq__waker_signal_stop(mongoq__waker_t *w)
{
    if (!w) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    bump_locked(w, MONGOQ__WAKE_STOP);
    pthread_cond_broadcast(&w->thread_cond);
    pthread_mutex_unlock(&w->mu);
}

void
mongoq__waker_destroy(mongoq__waker_t *w)
{
    bool joined;
    if (!w) {
        return;
    }
    mongoq__waker_signal_stop(w);
    pthread_mutex_lock(&w->mu);
    joined = w->thread_started;
    pthread_mutex_unlock(&w->mu);
    if (joined) {
        pthread_join(w->thread, NULL);
    }
    pthread_cond_destroy(&w->cond);
    pthread_cond_destroy(&w->thread_cond);
    pthread_mutex_destroy(&w->mu);
    bson_free(w->db);
    bson_free(w->coll);
    bson_free(w);
}

/* ---- waiting --------------------------------------------------------------------------------- */

/*
 * One look at the state: true when the wait is over (*why set). Otherwise *until is when to
 * look again. tick is the safety-net return (MONGOQ__WAKE_POLL without a poll). Wake-ups are
 * counted by the claimer, and only when the claim that follows finds work.
 */
static bool
wait_over_locked(mongoq__waker_t *w, uint64_t seen, int64_t deadline, int64_t tick,
                 mongoq__wake_t *why, int64_t *until)
{
    int64_t now = mongoq__now_mono_ms();
    if (w->stopping) {
        *why = MONGOQ__WAKE_STOP;
        return true;
    }
    if (w->generation != seen) {
        *why = w->last_reason;
        return true;
    }
    if (w->n_timers > 0 && w->timers[0].due_mono_ms <= now) {
        fire_timers_locked(w, now);
        *why = MONGOQ__WAKE_TIMER;
        return true;
    }
    if (fire_settle_locked(w, now)) {
        *why = MONGOQ__WAKE_CHANGE_STREAM;
        return true;
    }
    if (now >= deadline) {
        *why = MONGOQ__WAKE_TIMEOUT;
        return true;
    }
    if (now >= tick) {
        *why = MONGOQ__WAKE_POLL;
        return true;
    }
    *until = deadline < tick ? deadline : tick;
    if (w->n_timers > 0 && w->timers[0].due_mono_ms < *until) {
        *until = w->timers[0].due_mono_ms;
    }
    for (int i = 0; i < 2; i++) {
        if (w->settle_mono[i] != 0 && w->settle_mono[i] < *until) {
            *until = w->settle_mono[i];
        }
    }
    return false;
}

uint64_t
mongoq__waker_generation(mongoq__waker_t *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t g = w->generation;
    pthread_mutex_unlock(&w->mu);
    return g;
}

void
mongoq__waker_start(mongoq__waker_t *w)
{
    pthread_mutex_lock(&w->mu);
    mongoq__waker_ensure_thread_locked(w);
    pthread_mutex_unlock(&w->mu);
}

mongoq__wake_t
mongoq__waker_wait(mongoq__waker_t *w, uint64_t *seen, int64_t deadline_ms)
{
    mongoq__wake_t why = MONGOQ__WAKE_TIMEOUT;
    int64_t tick = mongoq__now_mono_ms() + w->config.poll_interval_ms;
    int64_t until = deadline_ms;
    struct timespec ts;

    pthread_mutex_lock(&w->mu);
    mongoq__waker_ensure_thread_locked(w);
    if (++w->nwaiters == 1) {
        pthread_cond_signal(&w->thread_cond); /* a poller may start polling */
    }
    atomic_store(&w->config.counters->idle_consumers, w->nwaiters);
    while (!wait_over_locked(w, *seen, deadline_ms, tick, &why, &until)) {
        mongoq__mono_timespec(until, &ts);
        pthread_cond_timedwait(&w->cond, &w->mu, &ts);
    }
    w->nwaiters--;
    atomic_store(&w->config.counters->idle_consumers, w->nwaiters);
    *seen = w->generation;
    pthread_mutex_unlock(&w->mu);
    return why;
}

void
mongoq__waker_count(mongoq__counters_t *counters, mongoq__wake_t why)
{
    if (why == MONGOQ__WAKE_CHANGE_STREAM) {
        mongoq__counter_add(&counters->wakeups_change_stream, 1);
    } else if (why == MONGOQ__WAKE_TIMER) {
        mongoq__counter_add(&counters->wakeups_timer, 1);
    } else if (why == MONGOQ__WAKE_POLL) {
        mongoq__counter_add(&counters->wakeups_poll, 1);
    }
}

void
mongoq__waker_notify(mongoq__waker_t *w)
{
    mongoq__waker_bump(w, MONGOQ__WAKE_LOCAL);
}

void
mongoq__waker_notify_partition(mongoq__waker_t *w, int32_t partition)
{
    mongoq__waker_bump_partition(w, MONGOQ__WAKE_LOCAL, partition);
}

void
mongoq__waker_schedule(mongoq__waker_t *w, int64_t run_at_ms)
{
    mongoq__waker_schedule_partition(w, run_at_ms, MONGOQ__ALL_PARTITIONS);
}

void
mongoq__waker_schedule_partition(mongoq__waker_t *w, int64_t run_at_ms, int32_t partition)
{
    int64_t due = server_to_mono_ms(w, run_at_ms) + TIMER_MARGIN_MS;
    pthread_mutex_lock(&w->mu);
    insert_timer_locked(w, due, false, partition);
    pthread_cond_broadcast(&w->cond); /* waiters recompute their timeout */
    pthread_mutex_unlock(&w->mu);
}

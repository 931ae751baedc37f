/*
 * The waker thread's server queries and its polling mode (see waker_thread.c for the thread and
 * its change stream). The queries serve both modes: the next run_at (one seek on the due index,
 * when the waiters' timer list overflowed or a stream opened afresh) and the queue's pause state.
 * Polling mode, used where the server cannot open change streams, asks whether a ready message is
 * due while someone waits, with a pause that starts at MONGOQ__WAKER_MIN_POLL_MS and doubles up
 * to poll_interval_ms, and reads the pause state at least every poll interval.
 */
#include "waker-impl.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "document-private.h"
#include "fields.h"
#include "partition-private.h"
#include "pause-private.h"

#define MAX_WAITS_PER_TURN 1000 /* wake-ups one await_poll_turn absorbs before the loop looks again */

/* ---- server queries shared by both modes ------------------------------------------------- */

/* Schedules the earliest future run_at among ready messages (one seek on the due index). */
void
mongoq__waker_refresh_next_run_at(mongoq__waker_t *w, mongoc_collection_t *coll)
{
    bson_t *filter, *opts, sub;
    const bson_t *doc;
    bson_iter_t it;
    bson_error_t error;
    mongoc_cursor_t *cursor;

    pthread_mutex_lock(&w->mu);
    w->timers_dropped = false;
    w->need_next_run_at = false;
    pthread_mutex_unlock(&w->mu);

    filter = bson_new();
    opts = bson_new();
    mongoq__partition_append_all(filter, w->config.partitions);
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, MONGOQ__S_READY);
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_RUN_AT, &sub);
    BSON_APPEND_DATE_TIME(&sub, "$gt", mongoq__waker_server_now_ms(w));
    bson_append_document_end(filter, &sub);
    mongoq__document_append_earliest_opts(opts, w->config.partitions > 1);
    cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    if (mongoc_cursor_next(cursor, &doc)) {
        if (bson_iter_init_find(&it, doc, MONGOQ__F_RUN_AT) && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            mongoq__waker_schedule_partition(w, bson_iter_date_time(&it),
                                             mongoq__partition_read(doc));
        }
    } else if (mongoc_cursor_error(cursor, &error)) {
        mongoq__waker_log(w, MONGOQ_LOG_DEBUG, "mongoq waker: next run_at of %s.%s: %s", w->db,
                          w->coll, error.message);
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    bson_destroy(opts);
}

bool
mongoq__waker_take_need_next_run_at(mongoq__waker_t *w)
{
    pthread_mutex_lock(&w->mu);
    bool need = w->need_next_run_at;
    pthread_mutex_unlock(&w->mu);
    return need;
}

/* One poll: is a ready message due? */
static bool
poll_once(mongoq__waker_t *w, mongoc_collection_t *coll, bool *failed)
{
    static const char *const id_only[] = {MONGOQ__F_ID};
    bson_t *filter, *opts;
    const bson_t *doc;
    bson_error_t error;
    mongoc_cursor_t *cursor;
    bool found;

    /* The claim's own filter: an index bound from the clock estimate, the exact test on $$NOW. */
    filter = bson_new();
    opts = bson_new();
    mongoq__partition_append_all(filter, w->config.partitions);
    mongoq__document_append_due(filter, mongoq__waker_server_latest_ms(w));
    mongoq__document_append_projection(opts, id_only, 1);
    BSON_APPEND_INT64(opts, "limit", 1);
    cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    found = mongoc_cursor_next(cursor, &doc);
    *failed = !found && mongoc_cursor_error(cursor, &error);
    if (*failed) {
        mongoq__waker_log(w, MONGOQ_LOG_DEBUG, "mongoq waker: poll of %s.%s: %s", w->db, w->coll,
                          error.message);
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    bson_destroy(opts);
    return found;
}

/* Reads the pause state (pause-private.h); true when paused. A resume wakes every waiter. */
bool
mongoq__waker_sync_pause(mongoq__waker_t *w, mongoc_collection_t *coll)
{
    bool paused;
    bson_error_t error;
    if (!mongoq__pause_read(coll, &paused, &error)) {
        mongoq__waker_log(w, MONGOQ_LOG_DEBUG, "mongoq waker: pause state of %s.%s: %s", w->db,
                          w->coll, error.message);
        return atomic_load(&w->config.counters->pause_state) == MONGOQ__PAUSE_PAUSED;
    }
    if (mongoq__pause_record(w->config.counters, paused)) {
        mongoq__waker_bump(w, MONGOQ__WAKE_LOCAL);
    }
    return paused;
}

/* ---- polling mode -------------------------------------------------------------------------- */

/*
 * Waits until a poll is due (someone waits and the pause between polls has passed) or the pause
 * state is due for a read (every poll interval, waiters or not); false when stopping.
 * *poll_due: whether to poll.
 */
static bool
await_poll_turn(mongoq__waker_t *w, int64_t next_poll, int64_t next_sync, bool *poll_due)
{
    struct timespec ts;
    bool go_on;
    *poll_due = false;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < MAX_WAITS_PER_TURN && !w->stopping && !w->need_next_run_at; i++) {
        int64_t now = mongoq__now_mono_ms();
        if (w->nwaiters > 0 && now >= next_poll) {
            *poll_due = true;
            break;
        }
        if (now >= next_sync) {
            break;
        }
        int64_t until = w->nwaiters > 0 && next_poll < next_sync ? next_poll : next_sync;
        mongoq__mono_timespec(until, &ts);
        pthread_cond_timedwait(&w->thread_cond, &w->mu, &ts);
    }
    go_on = !w->stopping;
    pthread_mutex_unlock(&w->mu);
    return go_on;
}

void
mongoq__waker_poll_loop(mongoq__waker_t *w, mongoq__waker_service_t *svc)
{
    int64_t pause = MONGOQ__WAKER_MIN_POLL_MS;
    int64_t next_poll = mongoq__now_mono_ms() + pause;
    int64_t next_sync = mongoq__now_mono_ms(); /* the pause state, read at once */
    bool poll_due;
    while (await_poll_turn(w, next_poll, next_sync, &poll_due)) {
        bool failed = false;
        if (mongoq__waker_take_need_next_run_at(w)) {
            mongoq__waker_refresh_next_run_at(w, svc->coll);
            continue;
        }
        int64_t now = mongoq__now_mono_ms();
        if (!poll_due && now < next_sync) {
            continue;
        }
        /* The pause state before every poll, and every poll interval when nobody polls. */
        bool paused = mongoq__waker_sync_pause(w, svc->coll);
        next_sync = now + w->config.poll_interval_ms;
        if (!poll_due) {
            continue;
        }
        /* Paused: nothing is due for anyone. */
        if (!paused && poll_once(w, svc->coll, &failed)) {
            mongoq__waker_bump(w, MONGOQ__WAKE_POLL);
            pause = MONGOQ__WAKER_MIN_POLL_MS;
        } else {
            pause = pause * 2 < w->config.poll_interval_ms ? pause * 2 : w->config.poll_interval_ms;
        }
        if (failed && !mongoq__waker_service_renew(w, svc)) {
            break;
        }
        next_poll = mongoq__now_mono_ms() + pause;
    }
}

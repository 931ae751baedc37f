/*
 * The waker: one per queue, shared by all its consumers (see waker-private.h).
 *
 * Waiters sleep on one condition variable and return when the generation moves. Three things
 * move it:
 *  - the waker's thread, which owns one change stream per queue (on its own service connection,
 *    never a client of the caller's pool) and bumps the generation on every event that may make a message
 *    ready; where the server cannot open change streams, it polls instead, with a pause that
 *    starts at MIN_POLL_MS and doubles up to poll_interval_ms;
 *  - timers: the earliest known run_at values (a delayed message falling due produces no event),
 *    fired by the waiters themselves so no thread has to be awake for them;
 *  - in-process notifications (enqueue, hand-back) and rescans after a gap in the stream.
 * Waiters also return every poll_interval_ms as a safety net. Events are a signal only: every
 * wake-up is followed by an ordinary claim, so a lost or spurious event costs latency, never
 * correctness.
 */
#include "waker-private.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "fields.h"
#include "service-private.h"

#define MIN_POLL_MS 10
#define MAX_AWAIT_MS 300       /* bounds how long destroy waits for the stream thread */
#define SOCKET_TIMEOUT_MS 1000 /* its connection's: a getMore answers within MAX_AWAIT_MS */
#define MAX_REOPEN_BACKOFF_MS 2000
#define MAX_TIMERS 256
#define TIMER_MARGIN_MS 2      /* fire just after run_at: the claim checks run_at <= $$NOW */
#define RECHECK_MS 100         /* fire once more in case the clock estimate was early */
#define MAX_TOKEN_FAILURES 3   /* resuming failed this often: give the token up and rescan */
#define SETTLE_WINDOW_MS 1000  /* an event's run_at this recent may not be due on $$NOW yet */

typedef struct {
    int64_t due_mono_ms;
    bool recheck;
} due_entry_t;

struct mongoq__waker_t {
    mongoq__waker_config_t config;
    char *db;
    char *coll;
    pthread_mutex_t mu;
    pthread_cond_t cond;        /* waiters */
    pthread_cond_t thread_cond; /* the waker thread's pauses */
    uint64_t generation;
    mongoq__wake_t last_reason; /* why the generation last moved */
    due_entry_t timers[MAX_TIMERS]; /* ascending */
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
    int nwaiters;
    bool thread_started;
    pthread_t thread;
    bool stopping;
};

/* ---- clocks and logging ------------------------------------------------------------------ */

static int64_t
now_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
server_now_ms(mongoq__waker_t *w)
{
    return w->config.clock ? mongoq__clock_server_now_ms(w->config.clock) : now_real_ms();
}

static int64_t
server_to_mono_ms(mongoq__waker_t *w, int64_t server_ms)
{
    if (w->config.clock) {
        return mongoq__clock_server_to_mono_ms(w->config.clock, server_ms);
    }
    return mongoq__now_mono_ms() + (server_ms - now_real_ms());
}

static void
to_timespec(int64_t mono_ms, struct timespec *ts)
{
    if (mono_ms < 0) {
        mono_ms = 0;
    }
    ts->tv_sec = (time_t)(mono_ms / 1000);
    ts->tv_nsec = (long)(mono_ms % 1000) * 1000000L;
}

/* Never called with w->mu held: the callback may call back into mongoq. */
static void
log_msg(mongoq__waker_t *w, mongoq_log_level_t level, const char *fmt, ...)
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

static void
bump_locked(mongoq__waker_t *w, mongoq__wake_t reason)
{
    w->generation++;
    w->last_reason = reason;
    pthread_cond_broadcast(&w->cond);
}

static void
bump(mongoq__waker_t *w, mongoq__wake_t reason)
{
    pthread_mutex_lock(&w->mu);
    bump_locked(w, reason);
    pthread_mutex_unlock(&w->mu);
}

static void
insert_timer_locked(mongoq__waker_t *w, int64_t due, bool recheck)
{
    size_t i = 0;
    while (i < w->n_timers && w->timers[i].due_mono_ms < due) {
        i++;
    }
    /* Messages due within a millisecond of each other share one wake-up. */
    if ((i < w->n_timers && w->timers[i].due_mono_ms - due <= 1) ||
        (i > 0 && due - w->timers[i - 1].due_mono_ms <= 1)) {
        return;
    }
    if (w->n_timers == MAX_TIMERS) {
        w->timers_dropped = true;
        if (i == MAX_TIMERS) {
            return;
        }
        w->n_timers--; /* the latest one goes; the server is asked again later */
    }
    memmove(&w->timers[i + 1], &w->timers[i], (w->n_timers - i) * sizeof w->timers[0]);
    w->timers[i].due_mono_ms = due;
    w->timers[i].recheck = recheck;
    w->n_timers++;
}

/* Pops every timer due at now and wakes everyone. */
static void
fire_timers_locked(mongoq__waker_t *w, int64_t now)
{
    size_t n = 0;
    bool recheck_at = false;
    int64_t recheck_due = 0;
    while (n < w->n_timers && w->timers[n].due_mono_ms <= now) {
        if (!w->timers[n].recheck) {
            recheck_at = true;
            recheck_due = w->timers[n].due_mono_ms + RECHECK_MS;
        }
        n++;
    }
    memmove(&w->timers[0], &w->timers[n], (w->n_timers - n) * sizeof w->timers[0]);
    w->n_timers -= n;
    if (recheck_at) {
        insert_timer_locked(w, recheck_due, true);
    }
    if (w->n_timers == 0 && w->timers_dropped) {
        w->need_next_run_at = true;
        pthread_cond_signal(&w->thread_cond);
    }
    bump_locked(w, MONGOQ__WAKE_TIMER);
}

/* The latest event's message (run_at on the server clock) may not be due yet: look again. */
static void
settle_after(mongoq__waker_t *w, int64_t run_at_ms)
{
    int64_t due = server_to_mono_ms(w, run_at_ms);
    pthread_mutex_lock(&w->mu);
    if (due + TIMER_MARGIN_MS > w->settle_mono[0]) {
        w->settle_mono[0] = due + TIMER_MARGIN_MS;
    }
    if (due + RECHECK_MS > w->settle_mono[1]) {
        w->settle_mono[1] = due + RECHECK_MS;
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
            bump_locked(w, MONGOQ__WAKE_CHANGE_STREAM);
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
    pthread_condattr_t attr;
    w->config = *config;
    w->db = bson_strdup(config->db);
    w->coll = bson_strdup(config->coll);
    w->config.db = w->db;
    w->config.coll = w->coll;
    if (w->config.poll_interval_ms <= 0) {
        w->config.poll_interval_ms = 1000;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_cond_init(&w->thread_cond, &attr);
    pthread_condattr_destroy(&attr);
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

static bool
is_stopping(mongoq__waker_t *w)
{
    pthread_mutex_lock(&w->mu);
    bool stopping = w->stopping;
    pthread_mutex_unlock(&w->mu);
    return stopping;
}

/* Sleeps up to ms on the thread's condition; false when the waker is stopping. */
static bool
pause_thread(mongoq__waker_t *w, int64_t ms)
{
    struct timespec ts;
    bool go_on;
    to_timespec(mongoq__now_mono_ms() + ms, &ts);
    pthread_mutex_lock(&w->mu);
    if (!w->stopping) {
        pthread_cond_timedwait(&w->thread_cond, &w->mu, &ts);
    }
    go_on = !w->stopping;
    pthread_mutex_unlock(&w->mu);
    return go_on;
}

/* ---- server queries shared by both modes ------------------------------------------------- */

/* Schedules the earliest future run_at among ready messages (one indexed query). */
static void
refresh_next_run_at(mongoq__waker_t *w, mongoc_collection_t *coll)
{
    bson_t *filter, *opts;
    const bson_t *doc;
    bson_iter_t it;
    bson_error_t error;
    mongoc_cursor_t *cursor;

    pthread_mutex_lock(&w->mu);
    w->timers_dropped = false;
    w->need_next_run_at = false;
    pthread_mutex_unlock(&w->mu);

    filter = BCON_NEW(MONGOQ__F_STATUS, MONGOQ__S_READY, MONGOQ__F_RUN_AT, "{", "$gt",
                      BCON_DATE_TIME(server_now_ms(w)), "}");
    opts = BCON_NEW("projection", "{", MONGOQ__F_RUN_AT, BCON_INT32(1), "_id", BCON_INT32(0), "}",
                    "sort", "{", MONGOQ__F_RUN_AT, BCON_INT32(1), "}", "limit", BCON_INT64(1));
    cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    if (mongoc_cursor_next(cursor, &doc)) {
        if (bson_iter_init_find(&it, doc, MONGOQ__F_RUN_AT) && BSON_ITER_HOLDS_DATE_TIME(&it)) {
            mongoq__waker_schedule(w, bson_iter_date_time(&it));
        }
    } else if (mongoc_cursor_error(cursor, &error)) {
        log_msg(w, MONGOQ_LOG_DEBUG, "mongoq waker: next run_at of %s.%s: %s", w->db, w->coll,
                error.message);
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    bson_destroy(opts);
}

static bool
take_need_next_run_at(mongoq__waker_t *w)
{
    pthread_mutex_lock(&w->mu);
    bool need = w->need_next_run_at;
    pthread_mutex_unlock(&w->mu);
    return need;
}

/* One poll: is a ready message due? */
static bool
poll_once(mongoq__waker_t *w, mongoc_collection_t *coll)
{
    bson_t *filter, *opts;
    const bson_t *doc;
    bson_error_t error;
    mongoc_cursor_t *cursor;
    bool found;

    /* As the claim does: an index bound from the clock estimate, the exact test on $$NOW. */
    filter = BCON_NEW(MONGOQ__F_STATUS, MONGOQ__S_READY, MONGOQ__F_RUN_AT, "{", "$lte",
                      BCON_DATE_TIME(server_now_ms(w) + MONGOQ__CLOCK_SLACK_MS), "}", "$expr", "{",
                      "$lte", "[", MONGOQ__P(MONGOQ__F_RUN_AT), "$$NOW", "]", "}");
    opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(1));
    cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    found = mongoc_cursor_next(cursor, &doc);
    if (!found && mongoc_cursor_error(cursor, &error)) {
        log_msg(w, MONGOQ_LOG_DEBUG, "mongoq waker: poll of %s.%s: %s", w->db, w->coll,
                error.message);
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    bson_destroy(opts);
    return found;
}

/* ---- polling mode -------------------------------------------------------------------------- */

/* Waits until someone waits for work and the pause has passed; false when stopping. */
static bool
await_poll_turn(mongoq__waker_t *w, int64_t next_poll)
{
    struct timespec ts;
    bool go_on;
    pthread_mutex_lock(&w->mu);
    for (int i = 0; i < 1000 && !w->stopping && !w->need_next_run_at; i++) {
        int64_t now = mongoq__now_mono_ms();
        if (w->nwaiters > 0 && now >= next_poll) {
            break;
        }
        /* Idle (nobody waiting): look again at least every poll interval. */
        int64_t until = w->nwaiters > 0 ? next_poll : now + w->config.poll_interval_ms;
        to_timespec(until, &ts);
        pthread_cond_timedwait(&w->thread_cond, &w->mu, &ts);
    }
    go_on = !w->stopping;
    pthread_mutex_unlock(&w->mu);
    return go_on;
}

static void
poll_loop(mongoq__waker_t *w, mongoc_collection_t *coll)
{
    int64_t pause = MIN_POLL_MS;
    int64_t next_poll = mongoq__now_mono_ms() + pause;
    while (await_poll_turn(w, next_poll)) {
        if (take_need_next_run_at(w)) {
            refresh_next_run_at(w, coll);
            continue;
        }
        if (mongoq__now_mono_ms() < next_poll) {
            continue;
        }
        if (poll_once(w, coll)) {
            bump(w, MONGOQ__WAKE_POLL);
            pause = MIN_POLL_MS;
        } else {
            pause = pause * 2 < w->config.poll_interval_ms ? pause * 2 : w->config.poll_interval_ms;
        }
        next_poll = mongoq__now_mono_ms() + pause;
    }
}

/* ---- change-stream mode ------------------------------------------------------------------ */

typedef enum {
    WATCH_STOPPED,     /* the waker is shutting down */
    WATCH_TRANSIENT,   /* reopen after a pause, resuming after the saved token */
    WATCH_GAP,         /* reopen without a token and make everyone rescan */
    WATCH_UNSUPPORTED  /* the server cannot do change streams: poll from now on */
} watch_result_t;

typedef struct {
    bson_t token;
    bool have_token;
    int token_failures; /* consecutive failed resumes with this token */
} watch_state_t;

static bool
is_server_error(const bson_error_t *e)
{
    /* MONGOC_ERROR_SERVER with error API 2, MONGOC_ERROR_QUERY with the legacy API 1. */
    return e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_QUERY;
}

static watch_result_t
classify(const bson_error_t *e, bool opening_with_token, watch_state_t *st)
{
    if (is_server_error(e)) {
        switch (e->code) {
        case 40573: /* the $changeStream stage is only supported on replica sets */
        case 238:   /* NotImplemented */
        case 40324: /* unrecognised pipeline stage */
        case 13:    /* Unauthorized */
        case 115:   /* CommandNotSupported */
            return WATCH_UNSUPPORTED;
        case 286: /* ChangeStreamHistoryLost */
        case 280: /* ChangeStreamFatalError */
        case 260: /* InvalidResumeToken */
            return WATCH_GAP;
        default:
            break;
        }
        if (opening_with_token && ++st->token_failures >= MAX_TOKEN_FAILURES) {
            return WATCH_GAP;
        }
        return WATCH_TRANSIENT;
    }
    if (e->domain == MONGOC_ERROR_CURSOR && e->code == MONGOC_ERROR_CURSOR_INVALID_CURSOR) {
        return WATCH_GAP; /* the server closed the stream (invalidate) */
    }
    return WATCH_TRANSIENT;
}

static void
save_token(watch_state_t *st, mongoc_change_stream_t *stream)
{
    const bson_t *token = mongoc_change_stream_get_resume_token(stream);
    if (token) {
        bson_destroy(&st->token);
        bson_copy_to(token, &st->token);
        st->have_token = true;
    }
}

/*
 * Only events that can make a message ready: inserts and replacements of ready documents,
 * updates that set status to ready; plus the events that end the stream. The projection keeps
 * _id (the resume token) and what tells a due message from a delayed one.
 */
static bson_t *
watch_pipeline(void)
{
    return BCON_NEW(
        "pipeline", "[",
        "{", "$match", "{", "$or", "[",
            "{", "operationType", "{", "$in", "[", "insert", "replace", "]", "}",
                 "fullDocument." MONGOQ__F_STATUS, MONGOQ__S_READY, "}",
            "{", "operationType", "update",
                 "updateDescription.updatedFields." MONGOQ__F_STATUS, MONGOQ__S_READY, "}",
            "{", "operationType", "{", "$in", "[", "drop", "dropDatabase", "rename", "invalidate",
                 "]", "}", "}",
        "]", "}", "}",
        "{", "$project", "{", "operationType", BCON_INT32(1), "wallTime", BCON_INT32(1),
                 "fullDocument." MONGOQ__F_RUN_AT, BCON_INT32(1),
                 "updateDescription.updatedFields." MONGOQ__F_RUN_AT, BCON_INT32(1), "}", "}",
        "]");
}

/* Reacts to one event; false when the stream must be reopened from scratch. */
static bool
handle_event(mongoq__waker_t *w, const bson_t *event)
{
    bson_iter_t it;
    const char *op = "";
    if (bson_iter_init_find(&it, event, "operationType") && BSON_ITER_HOLDS_UTF8(&it)) {
        op = bson_iter_utf8(&it, NULL);
    }
    if (!strcmp(op, "drop") || !strcmp(op, "dropDatabase") || !strcmp(op, "rename") ||
        !strcmp(op, "invalidate")) {
        return false;
    }
    const char *path = strcmp(op, "update") ? "fullDocument." MONGOQ__F_RUN_AT
                                            : "updateDescription.updatedFields." MONGOQ__F_RUN_AT;
    bson_iter_t run_at;
    if (!bson_iter_init(&it, event) || !bson_iter_find_descendant(&it, path, &run_at) ||
        !BSON_ITER_HOLDS_DATE_TIME(&run_at)) {
        bump(w, MONGOQ__WAKE_CHANGE_STREAM);
        return true;
    }
    int64_t due = bson_iter_date_time(&run_at);
    /* The event's wallTime (MongoDB 6.0+) is the server's clock at the write: a message due by
     * then is due now, whatever this process's estimate of the server clock says. */
    int64_t now = server_now_ms(w);
    if (bson_iter_init_find(&it, event, "wallTime") && BSON_ITER_HOLDS_DATE_TIME(&it) &&
        bson_iter_date_time(&it) > now) {
        now = bson_iter_date_time(&it);
    }
    if (due > now) {
        mongoq__waker_schedule(w, due); /* ready, but not yet due */
        return true;
    }
    if (due > now - SETTLE_WINDOW_MS) {
        settle_after(w, due);
    }
    bump(w, MONGOQ__WAKE_CHANGE_STREAM);
    return true;
}

static mongoc_change_stream_t *
open_stream(mongoq__waker_t *w, mongoc_collection_t *coll, const watch_state_t *st)
{
    bson_t *pipeline = watch_pipeline();
    bson_t opts = BSON_INITIALIZER;
    mongoc_change_stream_t *stream;
    (void)w;
    BSON_APPEND_INT64(&opts, "maxAwaitTimeMS", MAX_AWAIT_MS);
    if (st->have_token) {
        BSON_APPEND_DOCUMENT(&opts, "resumeAfter", &st->token);
    }
    stream = mongoc_collection_watch(coll, pipeline, &opts);
    bson_destroy(pipeline);
    bson_destroy(&opts);
    return stream;
}

/* Reads events until an error, a stop or an event that ends the stream. */
static watch_result_t
read_stream(mongoq__waker_t *w, mongoc_collection_t *coll, mongoc_change_stream_t *stream,
            watch_state_t *st)
{
    const bson_t *event;
    bson_error_t error;
    for (;;) {
        for (unsigned n = 1; mongoc_change_stream_next(stream, &event); n++) {
            if (!handle_event(w, event)) {
                return WATCH_GAP;
            }
            save_token(st, stream);
            if (n % 64 == 0 && is_stopping(w)) {
                return WATCH_STOPPED; /* a busy stream must not hold up destroy */
            }
        }
        save_token(st, stream);
        if (mongoc_change_stream_error_document(stream, &error, NULL)) {
            log_msg(w, MONGOQ_LOG_DEBUG, "mongoq waker: change stream on %s.%s: %s", w->db,
                    w->coll, error.message);
            return classify(&error, false, st);
        }
        if (is_stopping(w)) {
            return WATCH_STOPPED;
        }
        if (take_need_next_run_at(w)) {
            refresh_next_run_at(w, coll);
        }
    }
}

/* Opens the stream once and reads it until it fails or the waker stops. */
static watch_result_t
watch_once(mongoq__waker_t *w, mongoc_collection_t *coll, watch_state_t *st, int64_t *backoff)
{
    bson_error_t error;
    watch_result_t result;
    bool resumed = st->have_token;
    mongoc_change_stream_t *stream = open_stream(w, coll, st);

    if (mongoc_change_stream_error_document(stream, &error, NULL)) {
        log_msg(w, MONGOQ_LOG_DEBUG, "mongoq waker: opening a change stream on %s.%s: %s", w->db,
                w->coll, error.message);
        result = classify(&error, resumed, st);
        goto done;
    }
    st->token_failures = 0;
    *backoff = 0;
    save_token(st, stream);
    atomic_store(&w->config.counters->change_stream_active, true);
    if (!resumed) {
        /* Anything written before the stream opened was not seen: everyone rescans. */
        bump(w, MONGOQ__WAKE_LOCAL);
        refresh_next_run_at(w, coll);
    }
    result = read_stream(w, coll, stream, st);
    atomic_store(&w->config.counters->change_stream_active, false);
done:
    mongoc_change_stream_destroy(stream);
    return result;
}

/* Returns true when the waker should fall back to polling. */
static bool
watch_loop(mongoq__waker_t *w, mongoc_collection_t *coll)
{
    watch_state_t st = {.have_token = false};
    int64_t backoff = 0;
    bool unsupported = false;
    bson_init(&st.token);
    for (int64_t round = 0; round < INT64_MAX; round++) {
        watch_result_t result = watch_once(w, coll, &st, &backoff);
        if (result == WATCH_STOPPED || is_stopping(w)) {
            break;
        }
        if (result == WATCH_UNSUPPORTED) {
            unsupported = true;
            break;
        }
        if (result == WATCH_GAP) {
            /* A gap we cannot rule out: the next open starts fresh and wakes everyone. */
            bson_reinit(&st.token);
            st.have_token = false;
            st.token_failures = 0;
        }
        backoff = backoff == 0 ? MIN_POLL_MS : backoff * 2;
        if (backoff > MAX_REOPEN_BACKOFF_MS) {
            backoff = MAX_REOPEN_BACKOFF_MS;
        }
        if (!pause_thread(w, backoff)) {
            break;
        }
    }
    bson_destroy(&st.token);
    return unsupported;
}

/* ---- the thread ------------------------------------------------------------------------------ */

/*
 * The thread's own service connection (service-private.h), not a pooled client: the waker never
 * takes a client from the caller's pool, and every call it makes ends within a few seconds, so
 * destroy is bounded. NULL when the waker stopped before a connection could be made.
 */
static mongoc_client_t *
connect_service(mongoq__waker_t *w)
{
    int64_t pause = MIN_POLL_MS;
    for (;;) {
        bson_error_t error;
        mongoc_client_t *client =
            mongoq__service_client_new(w->config.pool, "mongoq-waker", SOCKET_TIMEOUT_MS, &error);
        if (client) {
            return client;
        }
        log_msg(w, MONGOQ_LOG_DEBUG, "mongoq waker: no connection for %s.%s yet: %s", w->db,
                w->coll, error.message);
        if (!pause_thread(w, pause)) {
            return NULL;
        }
        pause = pause * 2 < MAX_REOPEN_BACKOFF_MS ? pause * 2 : MAX_REOPEN_BACKOFF_MS;
    }
}

static void *
waker_thread(void *arg)
{
    mongoq__waker_t *w = arg;
    mongoc_client_t *client = connect_service(w);
    mongoc_collection_t *coll;
    if (!client) {
        return NULL;
    }
    coll = mongoc_client_get_collection(client, w->db, w->coll);
    if (w->config.no_change_stream) {
        refresh_next_run_at(w, coll);
        poll_loop(w, coll);
    } else if (watch_loop(w, coll)) {
        atomic_store(&w->config.counters->polling_fallback, true);
        log_msg(w, MONGOQ_LOG_WARNING,
                "mongoq: the server cannot open a change stream on %s.%s; idle consumers poll "
                "(every %" PRId64 " ms at most)",
                w->db, w->coll, w->config.poll_interval_ms);
        refresh_next_run_at(w, coll);
        poll_loop(w, coll);
    }
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return NULL;
}

/* Starts the thread on the first wait. */
static void
ensure_thread_locked(mongoq__waker_t *w)
{
    if (w->thread_started || w->stopping) {
        return;
    }
    /* If the thread cannot start, waiters still wake on timers and every poll interval. */
    w->thread_started = pthread_create(&w->thread, NULL, waker_thread, w) == 0;
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

mongoq__wake_t
mongoq__waker_wait(mongoq__waker_t *w, uint64_t *seen, int64_t deadline_ms)
{
    mongoq__wake_t why = MONGOQ__WAKE_TIMEOUT;
    int64_t tick = mongoq__now_mono_ms() + w->config.poll_interval_ms;
    int64_t until = deadline_ms;
    struct timespec ts;

    pthread_mutex_lock(&w->mu);
    ensure_thread_locked(w);
    if (++w->nwaiters == 1) {
        pthread_cond_signal(&w->thread_cond); /* a poller may start polling */
    }
    atomic_store(&w->config.counters->idle_consumers, w->nwaiters);
    while (!wait_over_locked(w, *seen, deadline_ms, tick, &why, &until)) {
        to_timespec(until, &ts);
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
    bump(w, MONGOQ__WAKE_LOCAL);
}

void
mongoq__waker_schedule(mongoq__waker_t *w, int64_t run_at_ms)
{
    int64_t due = server_to_mono_ms(w, run_at_ms) + TIMER_MARGIN_MS;
    pthread_mutex_lock(&w->mu);
    insert_timer_locked(w, due, false);
    pthread_cond_broadcast(&w->cond); /* waiters recompute their timeout */
    pthread_mutex_unlock(&w->mu);
}

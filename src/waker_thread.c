/*
 * The waker's thread (see waker.c for the design). It owns one change stream per queue, on its
 * own service connection (never a client of the caller's pool), and bumps the generation on
 * every event that may make a message ready; where the server cannot open change streams, it
 * polls instead (waker_poll.c, with the server queries both modes share: the pause state, and
 * the next run_at, which it asks for when the waiters' timer list overflowed).
 */
#include "waker-impl.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "fields.h"
#include "pause-private.h"
#include "service-private.h"

#define MAX_AWAIT_MS 300       /* bounds how long destroy waits for the stream thread */
#define SOCKET_TIMEOUT_MS 1000 /* its connection's: a getMore answers within MAX_AWAIT_MS */
#define MAX_REOPEN_BACKOFF_MS 2000
#define MAX_TOKEN_FAILURES 3   /* resuming failed this often: give the token up and rescan */
#define SETTLE_WINDOW_MS 1000  /* an event's run_at this recent may not be due on $$NOW yet */

/* ---- the thread's pauses --------------------------------------------------------------------- */

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
    mongoq__mono_timespec(mongoq__now_mono_ms() + ms, &ts);
    pthread_mutex_lock(&w->mu);
    if (!w->stopping) {
        pthread_cond_timedwait(&w->thread_cond, &w->mu, &ts);
    }
    go_on = !w->stopping;
    pthread_mutex_unlock(&w->mu);
    return go_on;
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
static void
append_ops(bson_t *match, const char *key, const char *const *ops, size_t n)
{
    bson_t cond, list;
    char index[16];
    const char *k;
    BSON_APPEND_DOCUMENT_BEGIN(match, key, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$in", &list);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, index, sizeof index);
        BSON_APPEND_UTF8(&list, k, ops[i]);
    }
    bson_append_array_end(&cond, &list);
    bson_append_document_end(match, &cond);
}

/*
 * {pipeline: [{$match: {$or: [
 *     {operationType: {$in: [insert, replace]}, fullDocument.status: ready},
 *     {operationType: update, updateDescription.updatedFields.status: ready},
 *     {operationType: {$in: [drop, dropDatabase, rename, invalidate]}}]}},
 *   {$project: {operationType, wallTime, fullDocument.run_at, updateDescription...run_at}}]}
 */
static bson_t *
watch_pipeline(void)
{
    static const char *const writes[] = {"insert", "replace"};
    static const char *const ends[] = {"drop", "dropDatabase", "rename", "invalidate"};
    bson_t *doc = bson_new();
    bson_t pipeline, stage, match, or, clause, project;
    BSON_APPEND_ARRAY_BEGIN(doc, "pipeline", &pipeline);
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$match", &match);
    BSON_APPEND_ARRAY_BEGIN(&match, "$or", &or);
    BSON_APPEND_DOCUMENT_BEGIN(&or, "0", &clause);
    append_ops(&clause, "operationType", writes, 2);
    BSON_APPEND_UTF8(&clause, "fullDocument." MONGOQ__F_STATUS, MONGOQ__S_READY);
    bson_append_document_end(&or, &clause);
    BSON_APPEND_DOCUMENT_BEGIN(&or, "1", &clause);
    BSON_APPEND_UTF8(&clause, "operationType", "update");
    BSON_APPEND_UTF8(&clause, "updateDescription.updatedFields." MONGOQ__F_STATUS, MONGOQ__S_READY);
    bson_append_document_end(&or, &clause);
    BSON_APPEND_DOCUMENT_BEGIN(&or, "2", &clause);
    append_ops(&clause, "operationType", ends, 4);
    bson_append_document_end(&or, &clause);
    mongoq__pause_append_stream_clause(&or, "3");
    bson_append_array_end(&match, &or);
    bson_append_document_end(&stage, &match);
    bson_append_document_end(&pipeline, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "1", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$project", &project);
    BSON_APPEND_INT32(&project, "operationType", 1);
    BSON_APPEND_INT32(&project, "wallTime", 1);
    BSON_APPEND_INT32(&project, "fullDocument." MONGOQ__F_RUN_AT, 1);
    BSON_APPEND_INT32(&project, "fullDocument." MONGOQ__F_PARTITION, 1);
    BSON_APPEND_INT32(&project, "updateDescription.updatedFields." MONGOQ__F_RUN_AT, 1);
    mongoq__pause_append_stream_projection(&project);
    bson_append_document_end(&stage, &project);
    bson_append_document_end(&pipeline, &stage);
    bson_append_array_end(doc, &pipeline);
    return doc;
}

/*
 * The partition an event is about: an insert's or a replacement's fullDocument has it; an
 * update's does not (its updatedFields never hold the partition, which no update changes), but
 * on a sharded collection its documentKey holds the shard key. MONGOQ__ALL_PARTITIONS when
 * neither tells: then the event is about every partition.
 */
static int32_t
event_partition(const bson_t *event)
{
    bson_iter_t it, found;
    static const char *const paths[] = {"fullDocument." MONGOQ__F_PARTITION,
                                        "documentKey." MONGOQ__F_PARTITION};
    for (size_t i = 0; i < 2; i++) {
        if (bson_iter_init(&it, event) && bson_iter_find_descendant(&it, paths[i], &found) &&
            BSON_ITER_HOLDS_INT32(&found) && bson_iter_int32(&found) >= 0) {
            return bson_iter_int32(&found);
        }
    }
    return MONGOQ__ALL_PARTITIONS;
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
    bool paused;
    if (mongoq__pause_from_event(event, &paused)) {
        if (mongoq__pause_record(w->config.counters, paused)) {
            mongoq__waker_bump(w, MONGOQ__WAKE_CHANGE_STREAM); /* resumed: everyone looks */
        }
        return true;
    }
    const char *path = strcmp(op, "update") ? "fullDocument." MONGOQ__F_RUN_AT
                                            : "updateDescription.updatedFields." MONGOQ__F_RUN_AT;
    int32_t partition = event_partition(event);
    bson_iter_t run_at;
    if (!bson_iter_init(&it, event) || !bson_iter_find_descendant(&it, path, &run_at) ||
        !BSON_ITER_HOLDS_DATE_TIME(&run_at)) {
        mongoq__waker_bump_partition(w, MONGOQ__WAKE_CHANGE_STREAM, partition);
        return true;
    }
    int64_t due = bson_iter_date_time(&run_at);
    /* The event's wallTime (MongoDB 6.0+) is the server's clock at the write: a message due by
     * then is due now, whatever this process's estimate of the server clock says. */
    int64_t now = mongoq__waker_server_now_ms(w);
    if (bson_iter_init_find(&it, event, "wallTime") && BSON_ITER_HOLDS_DATE_TIME(&it) &&
        bson_iter_date_time(&it) > now) {
        now = bson_iter_date_time(&it);
    }
    if (due > now) {
        mongoq__waker_schedule_partition(w, due, partition); /* ready, but not yet due */
        return true;
    }
    if (due > now - SETTLE_WINDOW_MS) {
        mongoq__waker_settle_after(w, due, partition);
    }
    mongoq__waker_bump_partition(w, MONGOQ__WAKE_CHANGE_STREAM, partition);
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
            mongoq__waker_log(w, MONGOQ_LOG_DEBUG, "mongoq waker: change stream on %s.%s: %s",
                              w->db, w->coll, error.message);
            return classify(&error, false, st);
        }
        if (is_stopping(w)) {
            return WATCH_STOPPED;
        }
        if (mongoq__waker_take_need_next_run_at(w)) {
            mongoq__waker_refresh_next_run_at(w, coll);
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
        mongoq__waker_log(w, MONGOQ_LOG_DEBUG, "mongoq waker: opening a change stream on %s.%s: %s",
                          w->db, w->coll, error.message);
        result = classify(&error, resumed, st);
        goto done;
    }
    st->token_failures = 0;
    *backoff = 0;
    save_token(st, stream);
    if (!resumed) {
        /* Anything written before the stream opened was not seen: everyone rescans. */
        mongoq__counter_add(&w->config.counters->stream_rescans, 1);
        (void)mongoq__waker_sync_pause(w, coll);
        mongoq__waker_bump(w, MONGOQ__WAKE_LOCAL);
        mongoq__waker_refresh_next_run_at(w, coll);
    }
    /* Active once the rescan it asked for is under way: from here on, events tell. */
    atomic_store(&w->config.counters->change_stream_active, true);
    result = read_stream(w, coll, stream, st);
    atomic_store(&w->config.counters->change_stream_active, false);
done:
    mongoc_change_stream_destroy(stream);
    return result;
}

/* Returns true when the waker should fall back to polling. */
static bool
watch_loop(mongoq__waker_t *w, mongoq__waker_service_t *svc)
{
    watch_state_t st = {.have_token = false};
    int64_t backoff = 0;
    bool unsupported = false;
    bson_init(&st.token);
    for (int64_t round = 0; round < INT64_MAX; round++) {
        watch_result_t result = watch_once(w, svc->coll, &st, &backoff);
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
        backoff = backoff == 0 ? MONGOQ__WAKER_MIN_POLL_MS : backoff * 2;
        if (backoff > MAX_REOPEN_BACKOFF_MS) {
            backoff = MAX_REOPEN_BACKOFF_MS;
        }
        if (!pause_thread(w, backoff) || !mongoq__waker_service_renew(w, svc)) {
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
    int64_t pause = MONGOQ__WAKER_MIN_POLL_MS;
    for (;;) {
        bson_error_t error;
        mongoc_client_t *client =
            mongoq__service_client_new(w->config.pool, "mongoq-waker", SOCKET_TIMEOUT_MS, &error);
        if (client) {
            return client;
        }
        mongoq__waker_log(w, MONGOQ_LOG_DEBUG, "mongoq waker: no connection for %s.%s yet: %s",
                          w->db, w->coll, error.message);
        if (!pause_thread(w, pause)) {
            return NULL;
        }
        pause = pause * 2 < MAX_REOPEN_BACKOFF_MS ? pause * 2 : MAX_REOPEN_BACKOFF_MS;
    }
}

static void
service_close(mongoq__waker_service_t *svc)
{
    mongoc_collection_destroy(svc->coll);
    mongoc_client_destroy(svc->client);
    svc->coll = NULL;
    svc->client = NULL;
}

/* The thread's connection and its collection; false when the waker stopped first. */
static bool
service_open(mongoq__waker_t *w, mongoq__waker_service_t *svc)
{
    svc->client = connect_service(w);
    if (!svc->client) {
        return false;
    }
    svc->coll = mongoc_client_get_collection(svc->client, w->db, w->coll);
    return true;
}

/*
 * After a failed call: a new connection. A single-threaded client that failed to reach a server
 * keeps it out of selection for five seconds ("No servers yet eligible for rescan"), which held
 * the stream closed long after a restarted server was back; a new client tries at once.
 */
bool
mongoq__waker_service_renew(mongoq__waker_t *w, mongoq__waker_service_t *svc)
{
    service_close(svc);
    return service_open(w, svc);
}

static void *
waker_thread(void *arg)
{
    mongoq__waker_t *w = arg;
    mongoq__waker_service_t svc = {NULL, NULL};
    if (!service_open(w, &svc)) {
        return NULL;
    }
    if (w->config.no_change_stream) {
        mongoq__waker_refresh_next_run_at(w, svc.coll);
        mongoq__waker_poll_loop(w, &svc);
    } else if (watch_loop(w, &svc)) {
        atomic_store(&w->config.counters->polling_fallback, true);
        mongoq__waker_log(w, MONGOQ_LOG_WARNING,
                          "mongoq: the server cannot open a change stream on %s.%s; idle "
                          "consumers poll (every %" PRId64 " ms at most)",
                          w->db, w->coll, w->config.poll_interval_ms);
        mongoq__waker_refresh_next_run_at(w, svc.coll);
        mongoq__waker_poll_loop(w, &svc);
    }
    service_close(&svc);
    return NULL;
}

/* Starts the thread on the first wait. */
void
mongoq__waker_ensure_thread_locked(mongoq__waker_t *w)
{
    if (w->thread_started || w->stopping) {
        return;
    }
    /* If the thread cannot start, waiters still wake on timers and every poll interval. */
    w->thread_started = pthread_create(&w->thread, NULL, waker_thread, w) == 0;
}

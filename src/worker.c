/*
 * The worker runtime (include/mongoq/worker.h).
 *
 * `threads` handler threads each own a consumer: claim up to `batch` messages, run the handler
 * on each in turn, then ack, retry or fail it. One more thread, the keeper, does two things:
 *  - heartbeat: every message a handler thread holds (running or waiting its turn in a batch)
 *    has its lease extended every heartbeat_ms; a LEASE_LOST answer marks the message so the
 *    handler sees mongoq_message_lease_lost();
 *  - stop requests: mongoq_worker_request_stop() only sets an atomic flag and writes one byte to
 *    a pipe (both async-signal-safe); the keeper, sleeping in poll() on that pipe, then wakes
 *    the queue's idle consumers so the handler threads notice at once.
 * On stop, messages claimed but not started are handed back at once (ready, attempts restored);
 * a running handler finishes normally.
 */
#include "mongoq/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fields.h"
#include "message-private.h"
#include "mongoq/consumer.h"
#include "mongoq/error.h"
#include "queue-private.h"

#define MAX_THREADS 256
#define MAX_BATCH 1000
#define IDLE_WAIT_MS 60000      /* an idle thread re-claims at least this often */
#define MAX_ERROR_PAUSE_MS 5000 /* after claim errors, pause up to this */
#define KEEPER_IDLE_MS 200      /* the keeper looks at the held messages at least this often */

/*
 * What one handler thread holds: msgs[first_held .. end) of its current batch, the running one
 * (if any) first, then those not started, from msgs[next]. The keeper extends them all and, on
 * stop, hands msgs[next .. end) back and sets end = next so the thread starts none of them.
 */
typedef struct {
    pthread_mutex_t mu; /* guards the fields below against the keeper */
    mongoq_message_t **msgs;
    size_t first_held;
    size_t next;
    size_t end;
    int64_t next_beat_mono; /* when the keeper extends this batch next */
} holding_t;

typedef struct {
    mongoq_worker_t *worker;
    int index;
    holding_t holding;
    pthread_t thread;
} handler_thread_t;

struct mongoq_worker_t {
    mongoq_queue_t *queue;
    mongoq_handler_fn handler;
    void *user_data;
    int threads;
    int64_t lease_ms;
    int32_t batch;
    int64_t heartbeat_ms; /* <= 0: none */
    char *name;

    handler_thread_t *handlers; /* threads slots, n_started of them running */
    int n_started;
    pthread_t keeper;
    bool started;
    bool joined;

    atomic_bool stop_requested; /* set by request_stop (async-signal-safe) */
    atomic_bool keeper_stop;
    int pipe_fds[2];            /* request_stop writes a byte to [1]; the keeper polls [0] */

    pthread_mutex_t mu;
    pthread_cond_t cond; /* handler threads exiting; stop requests seen by the keeper */
    int running;         /* handler threads not yet finished */

    mongoq__counters_t counters; /* this worker's claimed, acked, ... */
};

static void
wlog(mongoq_worker_t *w, mongoq_log_level_t level, const char *fmt, ...) BSON_GNUC_PRINTF(3, 4);

static void
wlog(mongoq_worker_t *w, mongoq_log_level_t level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mongoq__queue_log(w->queue, level, "%s", buf);
}

/* The CLOCK_REALTIME time ms from now, for pthread_cond_timedwait on w->cond. */
static void
deadline_in(int64_t ms, struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
    int64_t ns = ts->tv_nsec + (ms % 1000) * 1000000;
    ts->tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
}

static bool
stop_requested(const mongoq_worker_t *w)
{
    return atomic_load(&w->stop_requested);
}

/* ---- options ------------------------------------------------------------------------------ */

static bool
check_opts(const mongoq_worker_opts_t *opts, bson_error_t *error)
{
    const char *why = NULL;
    if (!opts) {
        why = "options are required (the handler)";
    } else if (opts->version != MONGOQ_WORKER_OPTS_VERSION) {
        why = "unknown options version";
    } else if (!opts->handler) {
        why = "handler is required";
    } else if (opts->threads < 0 || opts->threads > MAX_THREADS) {
        why = "threads must be 0 (default 1) to 256";
    } else if (opts->lease_ms < 0) {
        why = "lease_ms must not be negative";
    } else if (opts->batch < 0 || opts->batch > MAX_BATCH) {
        why = "batch must be 0 (default 1) to 1000";
    }
    if (why) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG, "worker: %s", why);
        return false;
    }
    return true;
}

static bool
open_pipe(int fds[2], bson_error_t *error)
{
    if (pipe(fds) != 0) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "worker: cannot create a pipe: %s", strerror(errno));
        return false;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
    }
    return true;
}

mongoq_worker_t *
mongoq_worker_new(mongoq_queue_t *queue, const mongoq_worker_opts_t *opts, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    if (!check_opts(opts, error)) {
        return NULL;
    }
    mongoq_worker_t *w = bson_malloc0(sizeof *w);
    if (!open_pipe(w->pipe_fds, error)) {
        bson_free(w);
        return NULL;
    }
    w->queue = queue;
    w->handler = opts->handler;
    w->user_data = opts->user_data;
    w->threads = opts->threads ? opts->threads : 1;
    w->lease_ms = opts->lease_ms ? opts->lease_ms : queue->opts.lease_ms;
    w->batch = opts->batch ? opts->batch : 1;
    w->heartbeat_ms = opts->heartbeat_ms ? opts->heartbeat_ms : w->lease_ms / 3;
    if (w->heartbeat_ms == 0) {
        w->heartbeat_ms = 1; /* a lease of 1 or 2 ms: beat as often as possible */
    }
    w->name = opts->name ? bson_strdup(opts->name) : NULL;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    return w;
}

/* ---- the handler threads ------------------------------------------------------------------- */

static void
hold(handler_thread_t *t, mongoq_message_t **msgs, size_t n)
{
    holding_t *h = &t->holding;
    pthread_mutex_lock(&h->mu);
    h->msgs = msgs;
    h->first_held = h->next = 0;
    h->end = n;
    h->next_beat_mono = mongoq__now_mono_ms() + t->worker->heartbeat_ms;
    pthread_mutex_unlock(&h->mu);
}

/* The index of the next message to run, or SIZE_MAX when none is left or stop was asked. */
static size_t
take_next(handler_thread_t *t)
{
    holding_t *h = &t->holding;
    size_t i = SIZE_MAX;
    pthread_mutex_lock(&h->mu);
    h->first_held = h->next; /* the previous one is finished: no more heartbeats */
    if (h->next < h->end && !stop_requested(t->worker)) {
        i = h->next++;
    }
    pthread_mutex_unlock(&h->mu);
    return i;
}

/* The running message is done: the keeper stops extending it before it is acked. */
static void
drop_running(handler_thread_t *t)
{
    holding_t *h = &t->holding;
    pthread_mutex_lock(&h->mu);
    h->first_held = h->next;
    pthread_mutex_unlock(&h->mu);
}

/* Ends the batch; returns the range [*from, *to) still to hand back. */
static void
unhold(handler_thread_t *t, size_t *from, size_t *to)
{
    holding_t *h = &t->holding;
    pthread_mutex_lock(&h->mu);
    *from = h->next;
    *to = h->end;
    h->msgs = NULL;
    h->first_held = h->next = h->end = 0;
    pthread_mutex_unlock(&h->mu);
}

static void
count_outcome(mongoq_worker_t *w, bool ok, const bson_error_t *error, atomic_int_least64_t *ctr)
{
    if (ok) {
        mongoq__counter_add(ctr, 1);
    } else if (error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_LEASE_LOST) {
        mongoq__counter_add(&w->counters.lease_lost, 1);
    }
}

/* Acks, retries or fails msg as the handler said. */
static void
finish(mongoq_worker_t *w, mongoq_message_t *msg, mongoq_result_t result)
{
    bson_error_t error = {0};
    bool ok;
    const char *reason = mongoq__message_reason(msg);
    const char *what = "ack";
    if (result == MONGOQ_RETRY) {
        what = "retry";
        ok = mongoq_message_retry(msg, -1, reason, &error);
        count_outcome(w, ok, &error, &w->counters.retried);
    } else if (result == MONGOQ_FAIL) {
        what = "fail";
        ok = mongoq_message_fail(msg, reason, &error);
        count_outcome(w, ok, &error, &w->counters.failed);
    } else {
        ok = mongoq_message_ack(msg, &error);
        count_outcome(w, ok, &error, &w->counters.acked);
    }
    if (!ok) {
        char oid[25];
        bson_oid_to_string(mongoq_message_id(msg), oid);
        wlog(w, MONGOQ_LOG_WARNING, "mongoq worker: %s of message %s failed: %s", what, oid,
             error.message);
    }
}

/* Gives back msgs[from .. n) at once: claimed, never started. */
static void
hand_back(mongoq_worker_t *w, mongoq_message_t **msgs, size_t from, size_t n)
{
    for (size_t i = from; i < n; i++) {
        bson_error_t error = {0};
        if (!mongoq__message_release(msgs[i], &error)) {
            char oid[25];
            bson_oid_to_string(mongoq_message_id(msgs[i]), oid);
            wlog(w, MONGOQ_LOG_WARNING,
                 "mongoq worker: handing back message %s failed (it returns when its lease "
                 "expires): %s",
                 oid, error.message);
        }
    }
}

/* Runs the handler over one claimed batch; unstarted messages go back once stop is asked. */
static void
run_batch(handler_thread_t *t, mongoq_message_t **msgs, size_t n)
{
    mongoq_worker_t *w = t->worker;
    size_t i, from, to;
    hold(t, msgs, n);
    for (size_t k = 0; k < n && (i = take_next(t)) != SIZE_MAX; k++) {
        mongoq_result_t result = w->handler(msgs[i], w->user_data);
        drop_running(t);
        finish(w, msgs[i], result);
    }
    unhold(t, &from, &to);
    hand_back(w, msgs, from, to);
    for (size_t k = 0; k < n; k++) {
        mongoq_message_destroy(msgs[k]);
    }
}

/* Sleeps up to ms unless a stop is requested (the keeper broadcasts w->cond then). */
static void
pause_unless_stopped(mongoq_worker_t *w, int64_t ms)
{
    struct timespec ts;
    deadline_in(ms, &ts);
    pthread_mutex_lock(&w->mu);
    if (!stop_requested(w)) {
        pthread_cond_timedwait(&w->cond, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
}

static mongoq_consumer_t *
new_consumer(handler_thread_t *t)
{
    mongoq_worker_t *w = t->worker;
    mongoq_consumer_opts_t copts = MONGOQ_CONSUMER_OPTS_INIT;
    char name[256];
    bson_error_t error;
    if (w->name) {
        bson_snprintf(name, sizeof name, "%s:%d", w->name, t->index);
        copts.name = name;
    }
    copts.lease_ms = w->lease_ms;
    mongoq_consumer_t *consumer = mongoq_consumer_new(w->queue, &copts, &error);
    if (!consumer) {
        wlog(w, MONGOQ_LOG_ERROR, "mongoq worker: thread %d has no consumer: %s", t->index,
             error.message);
    }
    return consumer;
}

/*
 * Claims without waiting and, when nothing is ready, waits on the queue's waker itself rather
 * than inside the claim, so a stop (which notifies the waker) ends the wait at once. The
 * generation is read before the claim: a wake-up between claim and wait is never lost.
 * *why: the cause of the last wake-up, counted when the claim after it finds work.
 */
static bool
claim_or_wait(handler_thread_t *t, mongoq_consumer_t *consumer, mongoq_message_t **msgs,
              size_t *n, mongoq__wake_t *why, bson_error_t *error)
{
    mongoq_worker_t *w = t->worker;
    mongoq__waker_t *waker = w->queue->waker;
    uint64_t seen = mongoq__waker_generation(waker);
    *n = 0;
    if (!mongoq_consumer_claim_many(consumer, (size_t)w->batch, 0, msgs, n, error)) {
        return false;
    }
    if (*n > 0) {
        mongoq__waker_count(&w->queue->counters, *why);
        *why = MONGOQ__WAKE_TIMEOUT;
    } else if (!stop_requested(w)) {
        *why = mongoq__waker_wait(waker, &seen, mongoq__now_mono_ms() + IDLE_WAIT_MS);
    }
    return true;
}

static void *
handler_main(void *arg)
{
    handler_thread_t *t = arg;
    mongoq_worker_t *w = t->worker;
    mongoq_message_t **msgs = bson_malloc0(sizeof *msgs * (size_t)w->batch);
    mongoq_consumer_t *consumer = new_consumer(t);
    int64_t pause = 0;
    mongoq__wake_t why = MONGOQ__WAKE_TIMEOUT;
    while (consumer && !stop_requested(w)) {
        size_t n = 0;
        bson_error_t error;
        if (!claim_or_wait(t, consumer, msgs, &n, &why, &error)) {
            pause = pause ? (pause * 2 < MAX_ERROR_PAUSE_MS ? pause * 2 : MAX_ERROR_PAUSE_MS) : 100;
            wlog(w, MONGOQ_LOG_WARNING, "mongoq worker: claim failed (next try in %" PRId64
                 " ms): %s", pause, error.message);
            pause_unless_stopped(w, pause);
            continue;
        }
        pause = 0;
        if (n > 0) {
            mongoq__counter_add(&w->counters.claimed, (int64_t)n);
            run_batch(t, msgs, n);
        }
    }
    mongoq_consumer_destroy(consumer);
    bson_free(msgs);
    pthread_mutex_lock(&w->mu);
    w->running--;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- the keeper: heartbeat and stop requests ------------------------------------------------ */

/*
 * Extends the leases of msgs[0 .. n) while their leases hold, on the server's clock. Messages of
 * one claim share a lease_token, so a batch usually takes one round trip; when fewer matched
 * than held, each is extended on its own to learn which leases are lost. This never writes to
 * the message structs (the handler may be using them) except the thread-safe lease_lost flag.
 */
static bool
extend_held(mongoq_worker_t *w, mongoq_message_t *const *msgs, size_t n, bool each,
            int64_t *matched_out, bson_error_t *error)
{
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(w->queue, &client);
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, opts = BSON_INITIALIZER, reply;
    bool ok;
    mongoq__message_extend_update(w->lease_ms, &update);
    if (each) {
        mongoq__message_held_filter(msgs[0], &filter);
    } else {
        mongoq__message_ids_filter(msgs, n, &filter);
        BSON_APPEND_OID(&filter, MONGOQ__F_LEASE_TOKEN, mongoq__message_lease_token(msgs[0]));
        BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    }
    mongoq__queue_append_write_concern(w->queue, &opts);
    ok = mongoc_collection_update_many(coll, &filter, &update, &opts, &reply, error);
    *matched_out = ok ? mongoq__reply_count(&reply, "matchedCount") : 0;
    bson_destroy(&reply);
    bson_destroy(&update);
    bson_destroy(&opts);
    bson_destroy(&filter);
    mongoq__queue_release(w->queue, client, coll);
    return ok;
}

static bool
same_claim(mongoq_message_t *const *msgs, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        if (!bson_oid_equal(mongoq__message_lease_token(msgs[0]),
                            mongoq__message_lease_token(msgs[i]))) {
            return false;
        }
    }
    return true;
}

static void
heartbeat(mongoq_worker_t *w, mongoq_message_t *const *msgs, size_t n)
{
    bson_error_t error;
    int64_t matched = 0;
    if (n > 1 && same_claim(msgs, n) && extend_held(w, msgs, n, false, &matched, &error) &&
        matched == (int64_t)n) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (mongoq_message_lease_lost(msgs[i])) {
            continue;
        }
        if (!extend_held(w, &msgs[i], 1, true, &matched, &error)) {
            wlog(w, MONGOQ_LOG_WARNING, "mongoq worker: heartbeat failed: %s", error.message);
        } else if (matched == 0) {
            mongoq__message_mark_lease_lost(msgs[i]);
            mongoq__counter_add(&w->counters.lease_lost, 1);
        }
    }
}

static void
beat(mongoq_worker_t *w, holding_t *h, int64_t now)
{
    pthread_mutex_lock(&h->mu);
    if (h->first_held < h->end && now >= h->next_beat_mono) {
        /* Held under h->mu: the handler thread cannot finish and free these meanwhile. */
        heartbeat(w, h->msgs + h->first_held, h->end - h->first_held);
        h->next_beat_mono = now + w->heartbeat_ms;
    }
    pthread_mutex_unlock(&h->mu);
}

/* When the keeper must look again: the earliest heartbeat due, at most KEEPER_IDLE_MS away. */
static int64_t
next_look(mongoq_worker_t *w, int64_t now)
{
    int64_t next = now + KEEPER_IDLE_MS;
    if (w->heartbeat_ms > 0 && now + w->heartbeat_ms / 2 < next) {
        next = now + (w->heartbeat_ms / 2 > 0 ? w->heartbeat_ms / 2 : 1);
    }
    for (int i = 0; i < w->threads; i++) {
        holding_t *h = &w->handlers[i].holding;
        pthread_mutex_lock(&h->mu);
        if (h->first_held < h->end && h->next_beat_mono < next) {
            next = h->next_beat_mono;
        }
        pthread_mutex_unlock(&h->mu);
    }
    return next;
}

/* On stop, what the handler threads hold but have not started goes back at once. */
static void
hand_back_unstarted(mongoq_worker_t *w)
{
    for (int i = 0; i < w->threads; i++) {
        holding_t *h = &w->handlers[i].holding;
        pthread_mutex_lock(&h->mu);
        if (h->next < h->end) {
            hand_back(w, h->msgs, h->next, h->end);
            h->end = h->next;
        }
        pthread_mutex_unlock(&h->mu);
    }
}

/* A stop was requested: wake the handler threads wherever they wait. */
static void
spread_stop(mongoq_worker_t *w)
{
    mongoq__waker_notify(w->queue->waker);
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

static void *
keeper_main(void *arg)
{
    mongoq_worker_t *w = arg;
    bool stop_spread = false;
    while (!atomic_load(&w->keeper_stop)) {
        int64_t now = mongoq__now_mono_ms();
        struct pollfd pfd = {.fd = w->pipe_fds[0], .events = POLLIN};
        int64_t wait = next_look(w, now) - now;
        if (poll(&pfd, 1, (int)(wait > 0 ? wait : 0)) > 0) {
            char buf[64];
            while (read(w->pipe_fds[0], buf, sizeof buf) > 0) {
            }
        }
        if (stop_requested(w) && !stop_spread) {
            spread_stop(w);
            hand_back_unstarted(w);
            stop_spread = true;
        }
        if (w->heartbeat_ms > 0) {
            now = mongoq__now_mono_ms();
            for (int i = 0; i < w->threads; i++) {
                beat(w, &w->handlers[i].holding, now);
            }
        }
    }
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static bool
start_handlers(mongoq_worker_t *w, bson_error_t *error)
{
    for (int i = 0; i < w->threads; i++) {
        handler_thread_t *t = &w->handlers[i];
        if (pthread_create(&t->thread, NULL, handler_main, t) != 0) {
            bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_STOPPED,
                           "worker: cannot start handler thread %d", i);
            return false; /* those already started stop as on mongoq_worker_stop */
        }
        w->n_started++;
        pthread_mutex_lock(&w->mu);
        w->running++;
        pthread_mutex_unlock(&w->mu);
    }
    return true;
}

bool
mongoq_worker_start(mongoq_worker_t *worker, bson_error_t *error)
{
    BSON_ASSERT_PARAM(worker);
    mongoq_worker_t *w = worker;
    if (w->started || w->handlers) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "worker: already started");
        return false;
    }
    w->handlers = bson_malloc0(sizeof *w->handlers * (size_t)w->threads);
    for (int i = 0; i < w->threads; i++) {
        w->handlers[i].worker = w;
        w->handlers[i].index = i;
        pthread_mutex_init(&w->handlers[i].holding.mu, NULL);
    }
    w->started = true;
    if (pthread_create(&w->keeper, NULL, keeper_main, w) != 0) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_STOPPED,
                       "worker: cannot start the heartbeat thread");
        w->started = false;
        return false;
    }
    if (!start_handlers(w, error)) {
        mongoq_worker_request_stop(w);
        return false; /* the started threads wind down; stop or destroy joins them */
    }
    mongoq__queue_start_reaper(w->queue);
    return true;
}

void
mongoq_worker_request_stop(mongoq_worker_t *worker)
{
    /* Async-signal-safe: an atomic store and a write(2) to a non-blocking pipe, nothing else. */
    int saved = errno;
    atomic_store(&worker->stop_requested, true);
    ssize_t r = write(worker->pipe_fds[1], "s", 1);
    (void)r; /* a full pipe already holds a wake-up */
    errno = saved;
}

/* Waits until every handler thread finished or the deadline (realtime timespec) passed. */
static bool
await_handlers(mongoq_worker_t *w, int64_t timeout_ms)
{
    struct timespec ts;
    bool done;
    deadline_in(timeout_ms, &ts);
    pthread_mutex_lock(&w->mu);
    while (w->running > 0) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&w->cond, &w->mu);
        } else if (pthread_cond_timedwait(&w->cond, &w->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    done = w->running == 0;
    pthread_mutex_unlock(&w->mu);
    return done;
}

static void
join_all(mongoq_worker_t *w)
{
    for (int i = 0; i < w->n_started; i++) {
        pthread_join(w->handlers[i].thread, NULL);
    }
    atomic_store(&w->keeper_stop, true);
    ssize_t r = write(w->pipe_fds[1], "k", 1);
    (void)r;
    pthread_join(w->keeper, NULL);
    w->joined = true;
}

/* timeout_ms < 0: wait without limit. */
static bool
stop_worker(mongoq_worker_t *w, int64_t timeout_ms, bson_error_t *error)
{
    if (!w->started || w->joined) {
        return true;
    }
    mongoq_worker_request_stop(w);
    spread_stop(w); /* at once, without waiting for the keeper */
    if (!await_handlers(w, timeout_ms)) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_STOPPED,
                       "worker: handlers still running after %" PRId64 " ms; their messages "
                       "keep their leases",
                       timeout_ms);
        return false;
    }
    join_all(w);
    return true;
}

bool
mongoq_worker_stop(mongoq_worker_t *worker, int64_t timeout_ms, bson_error_t *error)
{
    BSON_ASSERT_PARAM(worker);
    return stop_worker(worker, timeout_ms < 0 ? 0 : timeout_ms, error);
}

void
mongoq_worker_destroy(mongoq_worker_t *worker)
{
    if (!worker) {
        return;
    }
    stop_worker(worker, -1, NULL);
    if (worker->handlers) {
        for (int i = 0; i < worker->threads; i++) {
            pthread_mutex_destroy(&worker->handlers[i].holding.mu);
        }
    }
    close(worker->pipe_fds[0]);
    close(worker->pipe_fds[1]);
    pthread_cond_destroy(&worker->cond);
    pthread_mutex_destroy(&worker->mu);
    bson_free(worker->handlers);
    bson_free(worker->name);
    bson_free(worker);
}

void
mongoq_worker_counters(mongoq_worker_t *worker, mongoq_counters_t *counters)
{
    BSON_ASSERT_PARAM(worker);
    BSON_ASSERT_PARAM(counters);
    mongoq_counters_t own;
    mongoq_queue_counters(worker->queue, counters);
    mongoq__counters_read(&worker->counters, &own);
    counters->enqueued = 0;
    counters->claimed = own.claimed;
    counters->acked = own.acked;
    counters->retried = own.retried;
    counters->failed = own.failed;
    counters->lease_lost = own.lease_lost;
}

/*
 * The worker runtime (include/mongoq/worker.h).
 *
 * `threads` handler threads each own a consumer: claim up to `batch` messages, run the handler
 * on each in turn, then ack, retry or fail it, and report the outcome. One more thread, the
 * keeper, does three things:
 *  - heartbeat: every message a handler thread holds (running or waiting its turn in a batch)
 *    has its lease extended every heartbeat_ms, one updateMany per batch; a message found no
 *    longer held is marked (mongoq_message_lease_lost()), the others get their new expiry;
 *  - stop requests: mongoq_worker_request_stop() only sets an atomic flag and writes one byte to
 *    a pipe (both async-signal-safe); the keeper, sleeping in poll() on that pipe, then wakes
 *    the queue's idle consumers so the handler threads notice at once;
 *  - on stop, it hands back what a busy handler thread holds but has not started (one
 *    updateMany per batch); a thread between messages hands back its own.
 *
 * Lock discipline: a handler thread's holding mutex guards only which of its messages are held.
 * The keeper copies _ids and the lease token under it, talks to the server without it, then
 * re-locks and applies the answer only to messages still held (same _id and token at the same
 * place). No network call, log line or user callback is ever made with a lock held, so a slow
 * server never stalls a handler thread, and the stopping thread sends nothing at all.
 *
 * Every wait is on the monotonic clock (the condition variables are made with CLOCK_MONOTONIC).
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

#include "error-private.h"
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
#define KEEPER_GRACE_MS 500     /* stop waits this long past its timeout for the keeper */

/* A hand-back of msgs[from .. to) of one batch (those not known lost went in one updateMany). */
typedef struct {
    size_t from;
    size_t to;
    bool ok;
    bson_error_t error; /* when !ok */
} hand_back_t;

/*
 * What one handler thread holds: msgs[first_held .. end) of its current batch, the running one
 * (if any) first, then those not started, from msgs[next]. The keeper extends them all and, on
 * stop, takes msgs[next .. end) to hand back (back) and sets end = next so the thread starts
 * none of them. Whoever moves end down first hands those messages back; the other does not.
 */
typedef struct {
    pthread_mutex_t mu;  /* guards the fields below against the keeper; never held over I/O */
    pthread_cond_t cond; /* the keeper's hand-back of this batch finished */
    mongoq_message_t **msgs;
    size_t first_held;
    size_t next;
    size_t end;
    int64_t next_beat_mono; /* when the keeper extends this batch next */
    hand_back_t back;       /* the keeper's hand-back of this batch (from == to: none) */
    bool back_in_flight;    /* the keeper is sending it */
} holding_t;

typedef struct {
    mongoq_worker_t *worker;
    int index;
    holding_t holding;
    pthread_t thread;
} handler_thread_t;

/* The keeper's copy of one batch's held messages, and what the server said about them. */
typedef struct {
    bson_oid_t *ids;
    int64_t *until; /* the new lease expiry (a lower bound) of those still held */
    bool *held;
    size_t from; /* ids[j] is msgs[from + j] of the batch */
    size_t n;
    bson_oid_t token;
} beat_t;

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

    handler_thread_t *handlers; /* threads slots, n_started of them running */
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

/* A condition variable whose timed waits take CLOCK_MONOTONIC deadlines. */
static void
cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

/* A mongoq__now_mono_ms() time as a timespec for pthread_cond_timedwait on such a variable. */
static void
mono_timespec(int64_t mono_ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(mono_ms / 1000);
    ts->tv_nsec = (long)(mono_ms % 1000) * 1000000;
}

static bool
stop_requested(const mongoq_worker_t *w)
{
    return atomic_load(&w->stop_requested);
}

const char *
mongoq_outcome_action_name(int action)
{
    switch (action) {
#define MONGOQ_OUTCOME_NAME_(name, value, desc)                                                    \
    case value:                                                                                    \
        return #name;
        MONGOQ_OUTCOME_ACTION_MAP(MONGOQ_OUTCOME_NAME_)
#undef MONGOQ_OUTCOME_NAME_
    default:
        return "UNKNOWN";
    }
}

/* ---- options ------------------------------------------------------------------------------ */

static bool
check_opts(const mongoq_worker_opts_t *opts, bson_error_t *error)
{
    const char *why = NULL;
    if (!opts) {
        why = "options are required (the handler)";
    } else if (opts->version == 0 || opts->version > MONGOQ_WORKER_OPTS_VERSION) {
        why = "unknown options version (use MONGOQ_WORKER_OPTS_INIT)";
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
    /* A version 1 struct ends before on_outcome: never read past it. */
    w->on_outcome = opts->version >= 2 ? opts->on_outcome : NULL;
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
    cond_init_monotonic(&w->cond);
    return w;
}

/* ---- batch writes on copies (called without any lock held) -------------------------------- */

/*
 * updateMany with the queue's write concern; *matched from the reply. A failure after which the
 * update may have been applied becomes UNKNOWN_OUTCOME (`what` names it), as for every write.
 */
static bool
update_many(mongoq_worker_t *w, const char *what, const bson_t *filter, const bson_t *update,
            int64_t *matched, bson_error_t *error)
{
    mongoc_client_t *client = NULL;
    mongoc_collection_t *coll = mongoq__queue_checkout(w->queue, &client, error);
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    bool ok = false;
    *matched = 0;
    if (!coll) {
        goto done;
    }
    bson_destroy(&reply);
    mongoq__queue_append_write_concern(w->queue, &opts);
    ok = mongoc_collection_update_many(coll, filter, update, &opts, &reply, error);
    *matched = ok ? mongoq__reply_count(&reply, "matchedCount") : 0;
    if (!ok) {
        mongoq__error_classify_write(what, &reply, error);
    }
    mongoq__queue_release(w->queue, client, coll);
done:
    bson_destroy(&reply);
    bson_destroy(&opts);
    return ok;
}

/* Copies the _ids of msgs[from .. to) not known lost into ids; returns how many. */
static size_t
copy_unlost_ids(mongoq_message_t *const *msgs, size_t from, size_t to, bson_oid_t *ids)
{
    size_t n = 0;
    for (size_t i = from; i < to; i++) {
        if (!mongoq_message_lease_lost(msgs[i])) {
            bson_oid_copy(mongoq_message_id(msgs[i]), &ids[n++]);
        }
    }
    return n;
}

/*
 * Gives back the n messages ids (of one claim: token) in one updateMany, as
 * mongoq__message_release does one: ready, attempt restored, lease fields removed. Fewer
 * matched than sent means some leases were lost meanwhile; which ones would take another round
 * trip, which a stopping worker does not spend: those keep to the reaper.
 */
static void
release_ids(mongoq_worker_t *w, const bson_oid_t *ids, size_t n, const bson_oid_t *token,
            hand_back_t *back)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    int64_t matched = 0;
    back->ok = true;
    if (n == 0) {
        return;
    }
    mongoq__message_held_ids_filter(ids, n, token, &filter);
    mongoq__message_release_update(&update);
    back->ok = update_many(w, "hand-back", &filter, &update, &matched, &back->error);
    if (back->ok && matched < (int64_t)n) {
        back->ok = false;
        bson_set_error(&back->error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_LEASE_LOST,
                       "worker: handed back %" PRId64 " of %zu messages; the other leases were "
                       "lost (which ones is not known)", matched, n);
    }
    if (matched > 0) {
        mongoq__waker_notify(w->queue->waker);
    }
    if (!back->ok) {
        wlog(w, MONGOQ_LOG_WARNING, "mongoq worker: hand-back of %zu messages incomplete (the "
             "rest return when their leases expire): %s", n, back->error.message);
    }
    bson_destroy(&update);
    bson_destroy(&filter);
}

/* After a heartbeat matched fewer than it sent: which are still held, and until when. */
static bool
read_held(mongoq_worker_t *w, const bson_t *filter, beat_t *b, bson_error_t *error)
{
    mongoc_client_t *client = NULL;
    mongoc_collection_t *coll = mongoq__queue_checkout(w->queue, &client, error);
    bson_t *opts = BCON_NEW("projection", "{", MONGOQ__F_ID, BCON_INT32(1),
                            MONGOQ__F_LEASE_EXPIRES_AT, BCON_INT32(1), "}");
    mongoc_cursor_t *cursor = NULL;
    const bson_t *doc;
    bson_iter_t id, until;
    bool ok = false;
    if (!coll) {
        goto done;
    }
    cursor = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        if (!bson_iter_init_find(&id, doc, MONGOQ__F_ID) || !BSON_ITER_HOLDS_OID(&id) ||
            !bson_iter_init_find(&until, doc, MONGOQ__F_LEASE_EXPIRES_AT) ||
            !BSON_ITER_HOLDS_DATE_TIME(&until)) {
            continue;
        }
        for (size_t j = 0; j < b->n; j++) {
            if (bson_oid_equal(&b->ids[j], bson_iter_oid(&id))) {
                b->held[j] = true;
                b->until[j] = bson_iter_date_time(&until);
            }
        }
    }
    ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoq__queue_release(w->queue, client, coll);
done:
    bson_destroy(opts);
    return ok;
}

/*
 * Extends the leases of the batch copied in b, on the server's clock ($$NOW + lease_ms). The
 * expiry recorded for the handler is the server-clock estimate taken before sending plus
 * lease_ms: the estimate is never ahead of the server, so this never overstates the lease.
 */
static bool
beat_send(mongoq_worker_t *w, beat_t *b, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    int64_t until = mongoq__clock_server_now_ms(w->queue->clock) + w->lease_ms;
    int64_t matched = 0;
    mongoq__message_held_ids_filter(b->ids, b->n, &b->token, &filter);
    mongoq__message_extend_update(w->lease_ms, &update);
    bool ok = update_many(w, "heartbeat", &filter, &update, &matched, error);
    for (size_t j = 0; j < b->n; j++) {
        b->held[j] = matched == (int64_t)b->n;
        b->until[j] = until;
    }
    if (ok && matched < (int64_t)b->n) {
        ok = read_held(w, &filter, b, error);
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
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
    memset(&h->back, 0, sizeof h->back);
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

/*
 * Ends the batch: *own receives the range still to hand back (the keeper took none of it), and
 * *keepers what the keeper handed back, once its round trip is over (the outcomes need it).
 */
static void
unhold(handler_thread_t *t, hand_back_t *own, hand_back_t *keepers)
{
    holding_t *h = &t->holding;
    pthread_mutex_lock(&h->mu);
    own->from = h->next;
    own->to = h->end;
    h->end = h->next; /* from here on the keeper takes nothing of this batch */
    while (h->back_in_flight) {
        pthread_cond_wait(&h->cond, &h->mu);
    }
    *keepers = h->back;
    h->msgs = NULL;
    h->first_held = h->next = h->end = 0;
    memset(&h->back, 0, sizeof h->back);
    pthread_mutex_unlock(&h->mu);
}

/* ---- outcomes ------------------------------------------------------------------------------ */

static void
outcome_init(mongoq_outcome_t *o)
{
    memset(o, 0, sizeof *o);
    o->version = MONGOQ_OUTCOME_VERSION;
    o->result = MONGOQ_ACK;
}

static void
outcome_skipped(mongoq_outcome_t *o, const mongoq_message_t *msg)
{
    char oid[25];
    bson_oid_to_string(mongoq_message_id(msg), oid);
    o->action = MONGOQ_OUTCOME_SKIPPED_LOST;
    o->ok = false;
    bson_set_error(&o->error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_LEASE_LOST,
                   "worker: the lease on message %s was lost or ran out before its handler "
                   "started", oid);
}

/* Counts an outcome as the queue counts the write behind it; calls the user's callback. */
static void
report(mongoq_worker_t *w, const mongoq_message_t *msg, const mongoq_outcome_t *o)
{
    atomic_int_least64_t *ctr = NULL;
    switch (o->action) {
    case MONGOQ_OUTCOME_ACKED:
        ctr = o->ok ? &w->counters.acked : NULL;
        break;
    case MONGOQ_OUTCOME_RETRIED:
        ctr = o->ok ? &w->counters.retried : NULL;
        break;
    case MONGOQ_OUTCOME_BURIED:
    case MONGOQ_OUTCOME_FAILED:
        ctr = o->ok ? &w->counters.failed : NULL;
        break;
    case MONGOQ_OUTCOME_LEASE_LOST:
    case MONGOQ_OUTCOME_SKIPPED_LOST:
        ctr = &w->counters.lease_lost;
        break;
    case MONGOQ_OUTCOME_HANDED_BACK:
        break;
    }
    if (ctr) {
        mongoq__counter_add(ctr, 1);
    }
    if (w->on_outcome) {
        w->on_outcome(msg, o, w->user_data);
    }
}

/* Outcomes of a hand-back: those known lost were left out of it. */
static void
report_hand_back(mongoq_worker_t *w, mongoq_message_t *const *msgs, const hand_back_t *back)
{
    for (size_t i = back->from; i < back->to; i++) {
        mongoq_outcome_t o;
        outcome_init(&o);
        if (mongoq_message_lease_lost(msgs[i])) {
            outcome_skipped(&o, msgs[i]);
        } else {
            o.action = MONGOQ_OUTCOME_HANDED_BACK;
            o.ok = back->ok;
            if (!back->ok) {
                o.error = back->error;
            }
        }
        report(w, msgs[i], &o);
    }
}

/* ---- running one message ------------------------------------------------------------------- */

static bool
is_lease_lost(const bson_error_t *error)
{
    return error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_LEASE_LOST;
}

/* Acks, retries or fails msg as the handler answered; fills the outcome. */
static void
finish(mongoq_worker_t *w, mongoq_message_t *msg, mongoq_outcome_t *o)
{
    bson_error_t error = {0};
    bool ok, buried = false;
    const char *reason = mongoq__message_reason(msg);
    if (o->result == MONGOQ_RETRY) {
        ok = mongoq__message_retry_ex(msg, -1, reason, &buried, &error);
        o->action = buried ? MONGOQ_OUTCOME_BURIED : MONGOQ_OUTCOME_RETRIED;
    } else if (o->result == MONGOQ_FAIL) {
        ok = mongoq_message_fail(msg, reason, &error);
        o->action = MONGOQ_OUTCOME_FAILED;
    } else {
        ok = mongoq_message_ack(msg, &error);
        o->action = MONGOQ_OUTCOME_ACKED;
    }
    o->ok = ok;
    if (!ok) {
        char oid[25];
        bson_oid_to_string(mongoq_message_id(msg), oid);
        wlog(w, MONGOQ_LOG_WARNING, "mongoq worker: %s of message %s failed: %s",
             mongoq_outcome_action_name((int)o->action), oid, error.message);
        o->action = is_lease_lost(&error) ? MONGOQ_OUTCOME_LEASE_LOST : o->action;
        o->error = error;
    }
}

/*
 * Whether msg must not be started: its lease is known lost (a heartbeat or a write said so), or
 * the server-clock estimate has reached its recorded expiry. The estimate is never ahead of the
 * server and the recorded expiry never after the server's, so the lease has then run out on
 * the server or will within the estimate's error: no time left to run a handler. Reads the
 * estimate without refreshing it: no network call here.
 */
static bool
known_lost(mongoq_worker_t *w, mongoq_message_t *msg)
{
    if (mongoq_message_lease_lost(msg)) {
        return true;
    }
    int64_t expires_at = mongoq_message_lease_expires_at(msg);
    if (mongoq__now_mono_ms() < mongoq__clock_server_to_mono_ms(w->queue->clock, expires_at)) {
        return false;
    }
    mongoq__message_mark_lease_lost(msg);
    return true;
}

static void
run_one(handler_thread_t *t, mongoq_message_t *msg)
{
    mongoq_worker_t *w = t->worker;
    mongoq_outcome_t o;
    outcome_init(&o);
    if (known_lost(w, msg)) {
        drop_running(t);
        outcome_skipped(&o, msg);
    } else {
        o.handled = true;
        o.result = w->handler(msg, w->user_data);
        drop_running(t);
        finish(w, msg, &o);
    }
    report(w, msg, &o);
}

/* Runs the handler over one claimed batch; unstarted messages go back once stop is asked. */
static void
run_batch(handler_thread_t *t, mongoq_message_t **msgs, size_t n, bson_oid_t *ids)
{
    mongoq_worker_t *w = t->worker;
    hand_back_t own = {0}, keepers = {0};
    size_t i;
    hold(t, msgs, n);
    for (size_t k = 0; k < n && (i = take_next(t)) != SIZE_MAX; k++) {
        run_one(t, msgs[i]);
    }
    unhold(t, &own, &keepers);
    if (own.from < own.to) {
        size_t k = copy_unlost_ids(msgs, own.from, own.to, ids);
        release_ids(w, ids, k, mongoq__message_lease_token(msgs[own.from]), &own);
    }
    report_hand_back(w, msgs, &own);
    report_hand_back(w, msgs, &keepers);
    for (size_t k = 0; k < n; k++) {
        mongoq_message_destroy(msgs[k]);
    }
}

/* Sleeps up to ms unless a stop is requested (the keeper broadcasts w->cond then). */
static void
pause_unless_stopped(mongoq_worker_t *w, int64_t ms)
{
    struct timespec ts;
    mono_timespec(mongoq__now_mono_ms() + ms, &ts);
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
 * One claim without waiting: a batch of one is one findAndModify, a retryable write (the
 * driver retries it once after a network error and gets the same message back); more take
 * claim_many's three round trips.
 */
static bool
claim_now(mongoq_worker_t *w, mongoq_consumer_t *consumer, mongoq_message_t **msgs, size_t *n,
          bson_error_t *error)
{
    if (w->batch > 1) {
        return mongoq_consumer_claim_many(consumer, (size_t)w->batch, 0, msgs, n, error);
    }
    msgs[0] = NULL;
    bool ok = mongoq_consumer_claim(consumer, 0, &msgs[0], error);
    *n = msgs[0] ? 1 : 0;
    return ok;
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
    if (!claim_now(w, consumer, msgs, n, error)) {
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
    bson_oid_t *ids = bson_malloc0(sizeof *ids * (size_t)w->batch);
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
            run_batch(t, msgs, n, ids);
        }
    }
    mongoq_consumer_destroy(consumer);
    bson_free(ids);
    bson_free(msgs);
    pthread_mutex_lock(&w->mu);
    w->running--;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- the keeper: heartbeat, stop requests, hand-back ----------------------------------------- */

/*
 * Copies the batch's messages due for a heartbeat into b; false when none is. Once stopping,
 * only a running handler's message is extended: the unstarted ones are being handed back.
 */
static bool
beat_snapshot(mongoq_worker_t *w, holding_t *h, int64_t now, bool stopping, beat_t *b)
{
    pthread_mutex_lock(&h->mu);
    size_t to = stopping ? h->next : h->end;
    bool due = h->msgs && h->first_held < to && now >= h->next_beat_mono;
    if (due) {
        b->from = h->first_held;
        b->n = to - h->first_held;
        for (size_t j = 0; j < b->n; j++) {
            bson_oid_copy(mongoq_message_id(h->msgs[b->from + j]), &b->ids[j]);
        }
        /* A batch comes from one claim, so its messages share one lease token. */
        bson_oid_copy(mongoq__message_lease_token(h->msgs[b->from]), &b->token);
        h->next_beat_mono = now + w->heartbeat_ms;
    }
    pthread_mutex_unlock(&h->mu);
    return due;
}

/* Applies a heartbeat's answer to the messages still held: same place, same _id and token. */
static void
beat_apply(holding_t *h, const beat_t *b)
{
    pthread_mutex_lock(&h->mu);
    for (size_t j = 0; h->msgs && j < b->n; j++) {
        size_t i = b->from + j;
        if (i < h->first_held || i >= h->end ||
            !bson_oid_equal(mongoq_message_id(h->msgs[i]), &b->ids[j]) ||
            !bson_oid_equal(mongoq__message_lease_token(h->msgs[i]), &b->token)) {
            continue; /* finished, handed back, or another batch meanwhile */
        }
        if (b->held[j]) {
            mongoq__message_raise_lease_expires_at(h->msgs[i], b->until[j]);
        } else {
            mongoq__message_mark_lease_lost(h->msgs[i]);
        }
    }
    pthread_mutex_unlock(&h->mu);
}

static void
beat(mongoq_worker_t *w, holding_t *h, bool stopping, beat_t *b)
{
    bson_error_t error;
    if (!beat_snapshot(w, h, mongoq__now_mono_ms(), stopping, b)) {
        return;
    }
    if (!beat_send(w, b, &error)) {
        wlog(w, MONGOQ_LOG_WARNING, "mongoq worker: heartbeat failed: %s", error.message);
        return;
    }
    beat_apply(h, b);
}

/*
 * On stop: takes what a handler thread holds but has not started and hands it back in one
 * updateMany, outside the lock; the thread reports the outcomes when it ends its batch. A
 * thread already ending its batch has set end = next: there is nothing to take then.
 */
static void
take_and_hand_back(mongoq_worker_t *w, holding_t *h, beat_t *b)
{
    hand_back_t back = {0};
    size_t n;
    pthread_mutex_lock(&h->mu);
    if (!h->msgs || h->next >= h->end) {
        pthread_mutex_unlock(&h->mu);
        return;
    }
    back.from = h->next;
    back.to = h->end;
    h->end = h->next;
    h->back_in_flight = true;
    n = copy_unlost_ids(h->msgs, back.from, back.to, b->ids);
    bson_oid_copy(mongoq__message_lease_token(h->msgs[back.from]), &b->token);
    pthread_mutex_unlock(&h->mu);

    release_ids(w, b->ids, n, &b->token, &back);

    pthread_mutex_lock(&h->mu);
    h->back = back;
    h->back_in_flight = false;
    pthread_cond_broadcast(&h->cond);
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

/* Sleeps in poll() on the stop pipe until the next look is due or a byte arrives. */
static void
keeper_sleep(mongoq_worker_t *w)
{
    int64_t now = mongoq__now_mono_ms();
    struct pollfd pfd = {.fd = w->pipe_fds[0], .events = POLLIN};
    int64_t wait = next_look(w, now) - now;
    if (poll(&pfd, 1, (int)(wait > 0 ? wait : 0)) > 0) {
        char buf[64];
        while (read(w->pipe_fds[0], buf, sizeof buf) > 0) {
        }
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

static void
beat_init(beat_t *b, size_t batch)
{
    memset(b, 0, sizeof *b);
    b->ids = bson_malloc0(sizeof *b->ids * batch);
    b->until = bson_malloc0(sizeof *b->until * batch);
    b->held = bson_malloc0(sizeof *b->held * batch);
}

static void
beat_destroy(beat_t *b)
{
    bson_free(b->held);
    bson_free(b->until);
    bson_free(b->ids);
}

static void *
keeper_main(void *arg)
{
    mongoq_worker_t *w = arg;
    bool stopping = false;
    beat_t b;
    beat_init(&b, (size_t)w->batch);
    while (!atomic_load(&w->keeper_stop)) {
        keeper_sleep(w);
        if (stop_requested(w) && !stopping) {
            stopping = true;
            spread_stop(w);
            for (int i = 0; i < w->threads; i++) {
                take_and_hand_back(w, &w->handlers[i].holding, &b);
            }
        }
        for (int i = 0; w->heartbeat_ms > 0 && i < w->threads; i++) {
            beat(w, &w->handlers[i].holding, stopping, &b);
        }
    }
    beat_destroy(&b);
    pthread_mutex_lock(&w->mu);
    w->keeper_running = 0;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static bool
start_handlers(mongoq_worker_t *w, bson_error_t *error)
{
    for (int i = 0; i < w->threads; i++) {
        handler_thread_t *t = &w->handlers[i];
        pthread_mutex_lock(&w->mu);
        w->running++;
        pthread_mutex_unlock(&w->mu);
        if (pthread_create(&t->thread, NULL, handler_main, t) != 0) {
            pthread_mutex_lock(&w->mu);
            w->running--;
            pthread_mutex_unlock(&w->mu);
            bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_STOPPED,
                           "worker: cannot start handler thread %d", i);
            return false; /* those already started stop as on mongoq_worker_stop */
        }
        w->n_started++;
    }
    return true;
}

static bool
start_keeper(mongoq_worker_t *w, bson_error_t *error)
{
    w->keeper_running = 1; /* no other thread runs yet */
    if (pthread_create(&w->keeper, NULL, keeper_main, w) != 0) {
        w->keeper_running = 0;
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_STOPPED,
                       "worker: cannot start the heartbeat thread");
        return false;
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
        cond_init_monotonic(&w->handlers[i].holding.cond);
    }
    if (!start_keeper(w, error)) {
        return false;
    }
    w->started = true;
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

/* Waits until *count is 0 or deadline_mono passes (< 0: no limit); true when it is 0. */
static bool
await_zero(mongoq_worker_t *w, const int *count, int64_t deadline_mono)
{
    struct timespec ts;
    bool done;
    mono_timespec(deadline_mono, &ts);
    pthread_mutex_lock(&w->mu);
    while (*count > 0) {
        if (deadline_mono < 0) {
            pthread_cond_wait(&w->cond, &w->mu);
        } else if (pthread_cond_timedwait(&w->cond, &w->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    done = *count == 0;
    pthread_mutex_unlock(&w->mu);
    return done;
}

/* Every handler thread has returned (running is 0): joining them does not block. */
static void
join_handlers(mongoq_worker_t *w)
{
    for (int i = 0; !w->handlers_joined && i < w->n_started; i++) {
        pthread_join(w->handlers[i].thread, NULL);
    }
    w->handlers_joined = true;
}

/*
 * timeout_ms < 0: wait without limit. The calling thread sends nothing and holds no lock while
 * a network call runs: it only signals and waits, so its bound is its own timeout.
 */
static bool
stop_worker(mongoq_worker_t *w, int64_t timeout_ms, bson_error_t *error)
{
    if (!w->started || w->joined) {
        return true;
    }
    mongoq_worker_request_stop(w);
    spread_stop(w); /* at once, without waiting for the keeper */
    int64_t deadline = timeout_ms < 0 ? -1 : mongoq__now_mono_ms() + timeout_ms;
    if (!await_zero(w, &w->running, deadline)) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_STOPPED,
                       "worker: handlers still running after %" PRId64 " ms; their messages "
                       "keep their leases", timeout_ms);
        return false;
    }
    join_handlers(w);
    atomic_store(&w->keeper_stop, true);
    ssize_t r = write(w->pipe_fds[1], "k", 1);
    (void)r;
    int64_t grace = mongoq__now_mono_ms() + KEEPER_GRACE_MS;
    if (!await_zero(w, &w->keeper_running, deadline < 0 ? -1 : BSON_MAX(deadline, grace))) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_STOPPED,
                       "worker: the keeper is still in a network call (a heartbeat or a "
                       "hand-back) after %" PRId64 " ms", timeout_ms);
        return false;
    }
    pthread_join(w->keeper, NULL);
    w->joined = true;
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
            pthread_cond_destroy(&worker->handlers[i].holding.cond);
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

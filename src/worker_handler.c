/*
 * The worker's handler threads (see worker.c for the design).
 *
 * `threads` handler threads each own a consumer: claim up to `batch` messages, run the handler
 * on each in turn, then ack, retry or fail it, and report the outcome. What a thread holds
 * (its mongoq__holding_t) is shared with the keeper (worker_keeper.c), which extends the leases
 * and, on stop, takes back what has not started; a thread between messages hands back its own.
 *
 * Acks go together: the messages of a batch the handler answered MONGOQ_ACK wait, still held
 * and extended by the heartbeat, and are acknowledged in one ack_many when the batch ends,
 * before a retry, a fail or a skip is written, right after a handler that ran ACK_LINGER_MS or
 * more, or before the next handler starts once the first of them has waited ACK_LINGER_MS. So
 * quick handlers cost one ack round trip per batch, not one per message, while slow ones, for
 * which a round trip is little, are acknowledged as soon as they return.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "message-private.h"
#include "mongoq/consumer.h"
#include "mongoq/error.h"
#include "queue-private.h"
#include "worker-private.h"

#define IDLE_WAIT_MS 60000      /* an idle thread re-claims at least this often */
#define MAX_ERROR_PAUSE_MS 5000 /* after claim errors, pause up to this */
#define ACK_LINGER_MS 50        /* an ack waits at most this, plus one handler's run */

/* The acks not sent yet: msgs[from .. to) of the batch, all answered MONGOQ_ACK. */
typedef struct {
    size_t from;
    size_t to;          /* the next message to run is msgs[to]: from == to means none waits */
    int64_t since_mono; /* when the handler of msgs[from] returned */
} pending_t;

/* ---- what a thread holds (shared with the keeper) ------------------------------------------ */

static void
hold(mongoq__handler_thread_t *t, mongoq_message_t **msgs, size_t n)
{
    mongoq__holding_t *h = &t->holding;
    pthread_mutex_lock(&h->mu);
    h->msgs = msgs;
    h->first_held = h->next = 0;
    h->end = n;
    h->next_beat_mono = mongoq__now_mono_ms() + t->worker->heartbeat_ms;
    memset(&h->back, 0, sizeof h->back);
    pthread_mutex_unlock(&h->mu);
}

/*
 * The index of the next message to run, or SIZE_MAX when none is left or stop was asked. The
 * messages before it stay held (extended) until release_held says they are written.
 */
static size_t
take_next(mongoq__handler_thread_t *t)
{
    mongoq__holding_t *h = &t->holding;
    size_t i = SIZE_MAX;
    pthread_mutex_lock(&h->mu);
    if (h->next < h->end && !mongoq__worker_stop_requested(t->worker)) {
        i = h->next++;
    }
    pthread_mutex_unlock(&h->mu);
    return i;
}

/*
 * msgs[.. upto) are about to be written (or were skipped): the keeper stops extending them, so
 * a heartbeat that crosses the write never marks a message this thread just acked as lost.
 */
static void
release_held(mongoq__handler_thread_t *t, size_t upto)
{
    mongoq__holding_t *h = &t->holding;
    pthread_mutex_lock(&h->mu);
    h->first_held = upto;
    pthread_mutex_unlock(&h->mu);
}

/*
 * Ends the batch: *own receives the range still to hand back (the keeper took none of it), and
 * *keepers what the keeper handed back, once its round trip is over (the outcomes need it).
 */
static void
unhold(mongoq__handler_thread_t *t, mongoq__hand_back_t *own, mongoq__hand_back_t *keepers)
{
    mongoq__holding_t *h = &t->holding;
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
report_hand_back(mongoq_worker_t *w, mongoq_message_t *const *msgs,
                 const mongoq__hand_back_t *back)
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

/* Retries or fails msg as the handler answered; fills the outcome. */
static void
finish(mongoq_worker_t *w, mongoq_message_t *msg, mongoq_outcome_t *o)
{
    bson_error_t error = {0};
    bool ok, buried = false;
    const char *reason = mongoq__message_reason(msg);
    if (o->result == MONGOQ_RETRY) {
        ok = mongoq__message_retry_ex(msg, -1, reason, &buried, &error);
        o->action = buried ? MONGOQ_OUTCOME_BURIED : MONGOQ_OUTCOME_RETRIED;
    } else {
        ok = mongoq_message_fail(msg, reason, &error);
        o->action = MONGOQ_OUTCOME_FAILED;
    }
    o->ok = ok;
    if (!ok) {
        char oid[25];
        bson_oid_to_string(mongoq_message_id(msg), oid);
        mongoq__worker_log(w, MONGOQ_LOG_WARNING, "mongoq worker: %s of message %s failed: %s",
                           mongoq_outcome_action_name((int)o->action), oid, error.message);
        o->action = is_lease_lost(&error) ? MONGOQ_OUTCOME_LEASE_LOST : o->action;
        o->error = error;
    }
}

/*
 * The outcome of msg, one of an ack_many that answered ok and error: LEASE_LOST from ack_many
 * means the messages it marked lost were not acknowledged and the others were.
 */
static void
ack_outcome(mongoq_message_t *msg, bool ok, const bson_error_t *error, size_t n,
            mongoq_outcome_t *o)
{
    o->handled = true;
    o->action = MONGOQ_OUTCOME_ACKED;
    o->ok = ok || (is_lease_lost(error) && !mongoq_message_lease_lost(msg));
    if (o->ok) {
        return;
    }
    o->error = *error;
    if (is_lease_lost(error)) {
        o->action = MONGOQ_OUTCOME_LEASE_LOST;
        if (n > 1) {
            char oid[25];
            bson_oid_to_string(mongoq_message_id(msg), oid);
            bson_set_error(&o->error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_LEASE_LOST,
                           "the lease on message %s was lost (expired, reclaimed, reaped or "
                           "redriven) before its ack", oid);
        }
    }
}

/*
 * Sends the acks waiting in p in one ack_many and reports their outcomes; the keeper stops
 * extending msgs[.. keep_from) first (keep_from >= p->to). Afterwards none waits from keep_from.
 */
static void
flush_acks(mongoq__handler_thread_t *t, mongoq_message_t **msgs, pending_t *p, size_t keep_from)
{
    mongoq_worker_t *w = t->worker;
    bson_error_t error = {0};
    size_t n = p->to - p->from;
    release_held(t, keep_from);
    if (n > 0) {
        bool ok = mongoq_message_ack_many(msgs + p->from, n, &error);
        if (!ok) {
            mongoq__worker_log(w, MONGOQ_LOG_WARNING, "mongoq worker: ack of %zu message%s "
                               "failed: %s", n, n == 1 ? "" : "s", error.message);
        }
        for (size_t i = p->from; i < p->to; i++) {
            mongoq_outcome_t o;
            outcome_init(&o);
            ack_outcome(msgs[i], ok, &error, n, &o);
            report(w, msgs[i], &o);
        }
    }
    p->from = p->to = keep_from;
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

/*
 * Runs msgs[i] (p->to == i). An ACK joins the acks waiting in p (sent at once after a slow
 * handler); a retry, a fail or a skip is written at once, after the acks waiting before it, so
 * the waiting range stays contiguous.
 */
static void
run_one(mongoq__handler_thread_t *t, mongoq_message_t **msgs, size_t i, pending_t *p)
{
    mongoq_worker_t *w = t->worker;
    mongoq_message_t *msg = msgs[i];
    mongoq_outcome_t o;
    outcome_init(&o);
    if (known_lost(w, msg)) {
        flush_acks(t, msgs, p, i + 1);
        outcome_skipped(&o, msg);
        report(w, msg, &o);
        return;
    }
    o.handled = true;
    int64_t started = mongoq__now_mono_ms();
    o.result = w->handler(msg, w->user_data);
    if (o.result != MONGOQ_RETRY && o.result != MONGOQ_FAIL) {
        int64_t now = mongoq__now_mono_ms();
        if (p->from == p->to) {
            p->since_mono = now;
        }
        p->to = i + 1;
        if (now - started >= ACK_LINGER_MS) {
            flush_acks(t, msgs, p, i + 1); /* a slow handler: the next may be as slow */
        }
        return;
    }
    flush_acks(t, msgs, p, i + 1);
    finish(w, msg, &o);
    report(w, msg, &o);
}

/* Runs the handler over one claimed batch; unstarted messages go back once stop is asked. */
static void
run_batch(mongoq__handler_thread_t *t, mongoq_message_t **msgs, size_t n, bson_oid_t *ids)
{
    mongoq_worker_t *w = t->worker;
    mongoq__hand_back_t own = {0}, keepers = {0};
    pending_t pending = {0};
    size_t i;
    hold(t, msgs, n);
    for (size_t k = 0; k < n && (i = take_next(t)) != SIZE_MAX; k++) {
        if (pending.from < pending.to &&
            mongoq__now_mono_ms() - pending.since_mono >= ACK_LINGER_MS) {
            flush_acks(t, msgs, &pending, i);
        }
        run_one(t, msgs, i, &pending);
    }
    flush_acks(t, msgs, &pending, pending.to);
    unhold(t, &own, &keepers);
    if (own.from < own.to) {
        int32_t partition;
        size_t k = mongoq__worker_copy_unlost_ids(msgs, own.from, own.to, ids, &partition);
        mongoq__worker_release_ids(w, ids, k, mongoq__message_lease_token(msgs[own.from]),
                                   partition, &own);
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
    mongoq__mono_timespec(mongoq__now_mono_ms() + ms, &ts);
    pthread_mutex_lock(&w->mu);
    if (!mongoq__worker_stop_requested(w)) {
        pthread_cond_timedwait(&w->cond, &w->mu, &ts);
    }
    pthread_mutex_unlock(&w->mu);
}

static mongoq_consumer_t *
new_consumer(mongoq__handler_thread_t *t)
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
        mongoq__worker_log(w, MONGOQ_LOG_ERROR, "mongoq worker: thread %d has no consumer: %s",
                           t->index, error.message);
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
claim_or_wait(mongoq__handler_thread_t *t, mongoq_consumer_t *consumer, mongoq_message_t **msgs,
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
    } else if (!mongoq__worker_stop_requested(w)) {
        *why = mongoq__waker_wait(waker, &seen, mongoq__now_mono_ms() + IDLE_WAIT_MS);
    }
    return true;
}

/* ---- the thread ------------------------------------------------------------------------------ */

void *
mongoq__worker_handler_main(void *arg)
{
    mongoq__handler_thread_t *t = arg;
    mongoq_worker_t *w = t->worker;
    mongoq_message_t **msgs = bson_malloc0(sizeof *msgs * (size_t)w->batch);
    bson_oid_t *ids = bson_malloc0(sizeof *ids * (size_t)w->batch);
    mongoq_consumer_t *consumer = new_consumer(t);
    int64_t pause = 0;
    mongoq__wake_t why = MONGOQ__WAKE_TIMEOUT;
    while (consumer && !mongoq__worker_stop_requested(w)) {
        size_t n = 0;
        bson_error_t error;
        if (!claim_or_wait(t, consumer, msgs, &n, &why, &error)) {
            pause = pause ? (pause * 2 < MAX_ERROR_PAUSE_MS ? pause * 2 : MAX_ERROR_PAUSE_MS) : 100;
            mongoq__worker_log(w, MONGOQ_LOG_WARNING, "mongoq worker: claim failed (next try in "
                               "%" PRId64 " ms): %s", pause, error.message);
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

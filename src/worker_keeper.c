/*
 * The worker's keeper thread (see worker.c for the design). It does three things:
 *  - heartbeat: every message a handler thread holds (running or waiting its turn in a batch)
 *    has its lease extended every heartbeat_ms, one updateMany per batch; a message found no
 *    longer held is marked (mongoq_message_lease_lost()), the others get their new expiry;
 *  - stop requests: mongoq_worker_request_stop() only sets an atomic flag and writes one byte to
 *    a pipe (both async-signal-safe); the keeper, sleeping in poll() on that pipe, then wakes
 *    the queue's idle consumers so the handler threads notice at once;
 *  - on stop, it hands back what a busy handler thread holds but has not started (one
 *    updateMany per batch); a thread between messages hands back its own.
 * It copies _ids and the lease token under a handler thread's holding mutex, talks to the
 * server without it, then re-locks and applies the answer only to messages still held.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "fields.h"
#include "message-private.h"
#include "queue-private.h"
#include "worker-private.h"

#define KEEPER_IDLE_MS 200 /* the keeper looks at the held messages at least this often */

/* The keeper's copy of one batch's held messages, and what the server said about them. */
typedef struct {
    bson_oid_t *ids;
    int64_t *until; /* the new lease expiry (a lower bound) of those still held */
    bool *held;
    size_t from; /* ids[j] is msgs[from + j] of the batch */
    size_t n;
    bson_oid_t token;
} beat_t;

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

/* ---- heartbeat (the server calls are made without any lock held) ----------------------------- */

/* After a heartbeat matched fewer than it sent: which are still held, and until when. */
static bool
read_held(mongoq_worker_t *w, const bson_t *filter, beat_t *b, bson_error_t *error)
{
    mongoc_client_t *client = NULL;
    mongoc_collection_t *coll = mongoq__queue_checkout(w->queue, &client, error);
    static const char *const fields[] = {MONGOQ__F_ID, MONGOQ__F_LEASE_EXPIRES_AT};
    bson_t *opts = bson_new();
    mongoq__document_append_projection(opts, fields, 2);
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
    bool ok = mongoq__worker_update_many(w, "heartbeat", &filter, &update, &matched, error);
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

/*
 * Copies the batch's messages due for a heartbeat into b; false when none is. Once stopping,
 * only a running handler's message is extended: the unstarted ones are being handed back.
 */
static bool
beat_snapshot(mongoq_worker_t *w, mongoq__holding_t *h, int64_t now, bool stopping, beat_t *b)
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
beat_apply(mongoq__holding_t *h, const beat_t *b)
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
beat(mongoq_worker_t *w, mongoq__holding_t *h, bool stopping, beat_t *b)
{
    bson_error_t error;
    if (!beat_snapshot(w, h, mongoq__now_mono_ms(), stopping, b)) {
        return;
    }
    if (!beat_send(w, b, &error)) {
        mongoq__worker_log(w, MONGOQ_LOG_WARNING, "mongoq worker: heartbeat failed: %s",
                           error.message);
        return;
    }
    beat_apply(h, b);
}

/* ---- stop requests and hand-back ------------------------------------------------------------- */

/* A stop was requested: wake the handler threads wherever they wait. */
void
mongoq__worker_spread_stop(mongoq_worker_t *w)
{
    mongoq__waker_notify(w->queue->waker);
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

/*
 * On stop: takes what a handler thread holds but has not started and hands it back
 * (mongoq__worker_release_ids), outside the lock; the thread reports the outcomes when it ends its batch. A
 * thread already ending its batch has set end = next: there is nothing to take then.
 */
static void
take_and_hand_back(mongoq_worker_t *w, mongoq__holding_t *h, beat_t *b)
{
    mongoq__hand_back_t back = {0};
    int32_t partition;
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
    n = mongoq__worker_copy_unlost_ids(h->msgs, back.from, back.to, b->ids, &partition);
    bson_oid_copy(mongoq__message_lease_token(h->msgs[back.from]), &b->token);
    pthread_mutex_unlock(&h->mu);

    mongoq__worker_release_ids(w, b->ids, n, &b->token, partition, &back);

    pthread_mutex_lock(&h->mu);
    h->back = back;
    h->back_in_flight = false;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->mu);
}

/* ---- the thread ------------------------------------------------------------------------------ */

/* When the keeper must look again: the earliest heartbeat due, at most KEEPER_IDLE_MS away. */
static int64_t
next_look(mongoq_worker_t *w, int64_t now)
{
    int64_t next = now + KEEPER_IDLE_MS;
    if (w->heartbeat_ms > 0 && now + w->heartbeat_ms / 2 < next) {
        next = now + (w->heartbeat_ms / 2 > 0 ? w->heartbeat_ms / 2 : 1);
    }
    for (int i = 0; i < w->threads; i++) {
        mongoq__holding_t *h = &w->handlers[i].holding;
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

void *
mongoq__worker_keeper_main(void *arg)
{
    mongoq_worker_t *w = arg;
    bool stopping = false;
    beat_t b;
    beat_init(&b, (size_t)w->batch);
    while (!atomic_load(&w->keeper_stop)) {
        keeper_sleep(w);
        if (mongoq__worker_stop_requested(w) && !stopping) {
            stopping = true;
            mongoq__worker_spread_stop(w);
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

/*
 * The worker runtime (include/mongoq/worker.h): the worker object, its options, lifecycle and
 * counters, and the helpers both kinds of thread use.
 *
 * `threads` handler threads (worker_handler.c) each own a consumer: claim up to `batch`
 * messages, run the handler on each in turn, then ack, retry or fail it (the acks of a batch
 * together, in one ack_many), and report the outcome. One more thread, the keeper
 * (worker_keeper.c), extends the leases of every message a handler thread holds (heartbeat),
 * spreads stop requests, and on stop hands back what a busy handler thread holds but has not
 * started; a thread between messages hands back its own.
 * The structs they share are in worker-private.h.
 *
 * Lock discipline: a handler thread's holding mutex guards only which of its messages are held.
 * The keeper copies _ids and the lease token under it, talks to the server without it, then
 * re-locks and applies the answer only to messages still held (same _id and token at the same
 * place). No network call, log line or user callback is ever made with a lock held, so a slow
 * server never stalls a handler thread, and the stopping thread sends nothing at all.
 *
 * Every wait is on the monotonic clock (the condition variables are made with CLOCK_MONOTONIC).
 */
#include "mongoq/limits.h"
#include "worker-private.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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
#include "mongoq/error.h"
#include "partition-private.h"
#include "queue-private.h"
#include "waker-private.h"

#define MAX_THREADS 256
/* A thread's consumer name is "<name>:<thread>": room for the suffix within the name limit. */
#define MAX_NAME_PREFIX_BYTES (MONGOQ_MAX_NAME_BYTES - 8)
#define KEEPER_GRACE_MS 500 /* stop waits this long past its timeout for the keeper */
#define SCHEDULER_STOP_SLICE_MS 1000 /* an unbounded stop waits for the scheduler in these */

void
mongoq__worker_log(mongoq_worker_t *w, mongoq_log_level_t level, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    mongoq__queue_log(w->queue, level, "%s", buf);
}

bool
mongoq__worker_stop_requested(const mongoq_worker_t *w)
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
    } else if (opts->version == 0 || opts->version > MONGOQ_WORKER_OPTS_VERSION) {
        why = "unknown options version (use MONGOQ_WORKER_OPTS_INIT)";
    } else if (!opts->handler) {
        why = "handler is required";
    } else if (opts->threads < 0 || opts->threads > MAX_THREADS) {
        why = "threads must be 0 (default 1) to " MONGOQ__STR(MAX_THREADS);
    } else if (opts->lease_ms < 0 || opts->lease_ms > MONGOQ_MAX_DURATION_MS) {
        why = "lease_ms must be 0 (the queue's) to MONGOQ_MAX_DURATION_MS";
    } else if (opts->heartbeat_ms > MONGOQ_MAX_DURATION_MS) {
        why = "heartbeat_ms must be at most MONGOQ_MAX_DURATION_MS (negative: none)";
    } else if (opts->batch < 0 || opts->batch > MONGOQ_MAX_BATCH) {
        why = "batch must be 0 (default 1) to MONGOQ_MAX_BATCH (" MONGOQ__STR(MONGOQ_MAX_BATCH) ")";
    } else if (opts->name && (!*opts->name || strlen(opts->name) > MAX_NAME_PREFIX_BYTES ||
                              !bson_utf8_validate(opts->name, strlen(opts->name), false))) {
        why = "name must be valid UTF-8 of 1 to MONGOQ_MAX_NAME_BYTES - 8 bytes (the thread "
              "number is appended)";
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
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_SYSTEM,
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
    /* A struct of version 1 ends before on_outcome, of version 2 before scheduler: never read
     * past the fields of its version. */
    const mongoq_scheduler_opts_t *sched_opts = opts->version >= 3 ? opts->scheduler : NULL;
    mongoq_scheduler_t *scheduler = NULL;
    if (sched_opts && !(scheduler = mongoq_scheduler_new(queue, sched_opts, error))) {
        return NULL;
    }
    mongoq_worker_t *w = bson_malloc0(sizeof *w);
    if (!open_pipe(w->pipe_fds, error)) {
        mongoq_scheduler_destroy(scheduler);
        bson_free(w);
        return NULL;
    }
    w->queue = queue;
    w->scheduler = scheduler;
    w->handler = opts->handler;
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
    mongoq__cond_init_monotonic(&w->cond);
    return w;
}

/* ---- batch writes on copies (called without any lock held) -------------------------------- */

/*
 * updateMany with the queue's write concern; *matched from the reply. A failure after which the
 * update may have been applied becomes UNKNOWN_OUTCOME (`what` names it), as for every write.
 */
bool
mongoq__worker_update_many(mongoq_worker_t *w, const char *what, const bson_t *filter,
                           const bson_t *update, int64_t *matched, bson_error_t *error)
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

/*
 * Copies the _ids of msgs[from .. to) not known lost into ids; returns how many. *partition:
 * the partition of the first one copied (a batch comes from one partition), or
 * MONGOQ__ALL_PARTITIONS when none was.
 */
size_t
mongoq__worker_copy_unlost_ids(mongoq_message_t *const *msgs, size_t from, size_t to,
                               bson_oid_t *ids, int32_t *partition)
{
    size_t n = 0;
    *partition = MONGOQ__ALL_PARTITIONS;
    for (size_t i = from; i < to; i++) {
        if (!mongoq_message_lease_lost(msgs[i])) {
            if (n == 0) {
                *partition = mongoq__partition_read(msgs[i]->doc);
            }
            bson_oid_copy(mongoq_message_id(msgs[i]), &ids[n++]);
        }
    }
    return n;
}

/*
 * The hand-back's write. One message: an updateOne naming it (and its partition, the shard
 * key), a retryable write libmongoc sends again after a network error or a failover. Several:
 * an updateMany, which libmongoc never retries, so it is sent once more here after an error
 * that may be transient. Resending is safe because the filter is fenced by the batch's token
 * and status: a message the first send handed back no longer matches, so none is handed back
 * (its attempt given back) twice. After a resend, matched counts only what the resend moved:
 * *resent tells the caller not to read a shortfall as lost leases.
 */
static bool
release_write(mongoq_worker_t *w, const bson_oid_t *ids, size_t n, const bson_oid_t *token,
              int32_t partition, int64_t *matched, bool *resent, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bool ok;
    *resent = false;
    mongoq__message_release_update(&update);
    if (n == 1) {
        mongoq__partition_append(&filter, w->queue->opts.partitions, partition);
        BSON_APPEND_OID(&filter, MONGOQ__F_ID, &ids[0]);
        BSON_APPEND_OID(&filter, MONGOQ__F_LEASE_TOKEN, token);
        BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
        ok = mongoq__message_update_one(w->queue, "hand-back", &filter, &update, NULL, matched,
                                        error);
    } else {
        mongoq__message_held_ids_filter(ids, n, token, &filter);
        ok = mongoq__worker_update_many(w, "hand-back", &filter, &update, matched, error);
        if (!ok && mongoq__error_retryable(error)) {
            *resent = true;
            ok = mongoq__worker_update_many(w, "hand-back", &filter, &update, matched, error);
        }
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

/*
 * Gives back the n messages ids (of one claim: token; in partition): ready, attempt restored,
 * lease fields removed (release_write says with which command).
 * Fewer matched than sent means some leases were lost meanwhile; which ones would take another
 * round trip, which a stopping worker does not spend: those keep to the reaper.
 */
void
mongoq__worker_release_ids(mongoq_worker_t *w, const bson_oid_t *ids, size_t n,
                           const bson_oid_t *token, int32_t partition, mongoq__hand_back_t *back)
{
    int64_t matched = 0;
    bool resent = false;
    back->ok = true;
    if (n == 0) {
        return;
    }
    back->ok = release_write(w, ids, n, token, partition, &matched, &resent, &back->error);
    if (back->ok && matched < (int64_t)n && !resent) {
        back->ok = false;
        bson_set_error(&back->error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_LEASE_LOST,
                       "worker: handed back %" PRId64 " of %zu messages; the other leases were "
                       "lost (which ones is not known)", matched, n);
    }
    if (back->ok || matched > 0) {
        mongoq__waker_notify(w->queue->waker);
    }
    if (!back->ok) {
        mongoq__worker_log(w, MONGOQ_LOG_WARNING, "mongoq worker: hand-back of %zu messages "
                           "incomplete (the rest return when their leases expire): %s", n,
                           back->error.message);
    }
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static bool
start_handlers(mongoq_worker_t *w, bson_error_t *error)
{
    for (int i = 0; i < w->threads; i++) {
        mongoq__handler_thread_t *t = &w->handlers[i];
        pthread_mutex_lock(&w->mu);
        w->running++;
        pthread_mutex_unlock(&w->mu);
        if (pthread_create(&t->thread, NULL, mongoq__worker_handler_main, t) != 0) {
            pthread_mutex_lock(&w->mu);
            w->running--;
            pthread_mutex_unlock(&w->mu);
            bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_SYSTEM,
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
    if (pthread_create(&w->keeper, NULL, mongoq__worker_keeper_main, w) != 0) {
        w->keeper_running = 0;
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_SYSTEM,
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
        mongoq__cond_init_monotonic(&w->handlers[i].holding.cond);
    }
    if (!start_keeper(w, error)) {
        return false;
    }
    w->started = true;
    if (!start_handlers(w, error) ||
        (w->scheduler && !mongoq_scheduler_start(w->scheduler, error))) {
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
    mongoq_scheduler_request_stop(worker->scheduler); /* the same: a store and a write(2) */
    errno = saved;
}

/* Waits until *count is 0 or deadline_mono passes (< 0: no limit); true when it is 0. */
static bool
await_zero(mongoq_worker_t *w, const int *count, int64_t deadline_mono)
{
    struct timespec ts;
    bool done;
    mongoq__mono_timespec(deadline_mono, &ts);
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
 * Waits for the scheduler (asked to stop with the handler threads) until deadline_mono or,
 * past it, KEEPER_GRACE_MS from now, as for the keeper; < 0: as long as it takes (its calls
 * end within a few seconds whatever the server does).
 */
static bool
stop_scheduler(mongoq_worker_t *w, int64_t deadline_mono, bson_error_t *error)
{
    if (!w->scheduler) {
        return true;
    }
    if (deadline_mono < 0) {
        while (!mongoq_scheduler_stop(w->scheduler, SCHEDULER_STOP_SLICE_MS, NULL)) {
        }
        return true;
    }
    int64_t now = mongoq__now_mono_ms();
    int64_t until = BSON_MAX(deadline_mono, now + KEEPER_GRACE_MS);
    return mongoq_scheduler_stop(w->scheduler, until - now, error);
}

/*
 * timeout_ms < 0: wait without limit. The calling thread sends nothing and holds no lock while
 * a network call runs: it only signals and waits, so its bound is its own timeout. The keeper
 * is joined last, so a call that returned false for the keeper or the scheduler can be repeated.
 */
static bool
stop_worker(mongoq_worker_t *w, int64_t timeout_ms, bson_error_t *error)
{
    if (!w->started || w->joined) {
        return true;
    }
    mongoq_worker_request_stop(w);
    mongoq__worker_spread_stop(w); /* at once, without waiting for the keeper */
    /* A timeout past MONGOQ_MAX_DURATION_MS waits that long: the deadline cannot overflow. */
    int64_t deadline =
        timeout_ms < 0 ? -1 : mongoq__now_mono_ms() + BSON_MIN(timeout_ms, MONGOQ_MAX_DURATION_MS);
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
    if (!stop_scheduler(w, deadline, error)) {
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
    mongoq_scheduler_t *scheduler = worker->scheduler;
    worker->scheduler = NULL; /* stopped above */
    mongoq_scheduler_destroy(scheduler);
    close(worker->pipe_fds[0]);
    close(worker->pipe_fds[1]);
    pthread_cond_destroy(&worker->cond);
    pthread_mutex_destroy(&worker->mu);
    bson_free(worker->handlers);
    bson_free(worker->name);
    bson_free(worker);
}

bool
mongoq_worker_counters(mongoq_worker_t *worker, mongoq_counters_t *counters)
{
    BSON_ASSERT_PARAM(worker);
    BSON_ASSERT_PARAM(counters);
    mongoq_counters_t full, own;
    mongoq__counters_read(&worker->queue->counters, &full);
    mongoq__counters_read(&worker->counters, &own);
    full.enqueued = 0;
    full.claimed = own.claimed;
    full.acked = own.acked;
    full.retried = own.retried;
    full.failed = own.failed;
    full.lease_lost = own.lease_lost;
    return mongoq__counters_copy_out(&full, counters);
}

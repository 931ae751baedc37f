/*
 * The scheduler (mongoq/schedule.h): passes over the queue's schedules, on the caller's thread
 * (mongoq_scheduler_run_pass) or on a thread of its own (mongoq_scheduler_t).
 *
 * A pass reads the schedules in next_slot order (index {next_slot: 1}), at most PASS_BATCH of
 * them; every one due within lookahead_ms is fired (schedule_fire.c: one transaction each), and
 * the first one not due tells when the next pass is needed. New and changed schedules are seen
 * within poll_ms. A schedule that fails (a damaged document, an error) does not hold up the
 * others: the pass goes on and reports the first error.
 *
 * The thread talks to the server on a service connection of its own (service-private.h), so
 * its calls end within a few seconds whatever the server does; it waits on a pipe that
 * request_stop writes to (async-signal-safe), and stop waits for it on a monotonic condition.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "cron-private.h"
#include "error-private.h"
#include "schedule-private.h"
#include "service-private.h"

#define PASS_BATCH 64
#define DEFAULT_LOOKAHEAD_MS 1000
#define MAX_LOOKAHEAD_MS 3600000
#define DEFAULT_POLL_MS 1000
#define MIN_POLL_MS 10
#define SERVICE_SOCKET_TIMEOUT_MS 3000

struct mongoq_scheduler_t {
    mongoq_queue_t *queue;
    mongoq_scheduler_opts_t opts; /* defaults resolved */
    pthread_t thread;
    bool started;
    bool joined;
    atomic_bool stop_requested;
    int pipe_fds[2]; /* request_stop writes to [1]; the thread polls [0] */
    pthread_mutex_t mu;
    pthread_cond_t cond; /* the thread ended (monotonic) */
    bool running;
    atomic_int_least64_t enqueued, skipped, lost_races, next_due_ms;
};

static bool
resolve_opts(const mongoq_scheduler_opts_t *opts, mongoq_scheduler_opts_t *out, bson_error_t *error)
{
    mongoq_scheduler_opts_t defaults = MONGOQ_SCHEDULER_OPTS_INIT;
    *out = defaults;
    if (opts && (opts->version == 0 || opts->version > MONGOQ_SCHEDULER_OPTS_VERSION)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "scheduler: unknown options version (use MONGOQ_SCHEDULER_OPTS_INIT)");
        return false;
    }
    if (opts) {
        *out = *opts;
    }
    if (out->lookahead_ms < 0 || out->lookahead_ms > MAX_LOOKAHEAD_MS) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "scheduler: lookahead_ms must be 0 (default %d) to %d",
                          DEFAULT_LOOKAHEAD_MS, MAX_LOOKAHEAD_MS);
        return false;
    }
    if (out->poll_ms != 0 && (out->poll_ms < MIN_POLL_MS || out->poll_ms > MONGOQ_MAX_DURATION_MS)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "scheduler: poll_ms must be 0 (default %d) or %d to "
                          "MONGOQ_MAX_DURATION_MS (%" PRId64 ")",
                          DEFAULT_POLL_MS, MIN_POLL_MS, MONGOQ_MAX_DURATION_MS);
        return false;
    }
    out->lookahead_ms = out->lookahead_ms ? out->lookahead_ms : DEFAULT_LOOKAHEAD_MS;
    out->poll_ms = out->poll_ms ? out->poll_ms : DEFAULT_POLL_MS;
    return true;
}

/* Fires one stored schedule if it is due; *not_due_at gets its next_slot when it is not. */
static bool
visit(mongoq_queue_t *queue, mongoc_client_t *client, const bson_t *stored, int64_t now,
      const mongoq_scheduler_opts_t *opts, mongoq_scheduler_pass_t *pass, int64_t *not_due_at,
      bson_error_t *error)
{
    mongoq__schedule_doc_t doc;
    bool ok = mongoq__schedule_doc_parse(stored, &doc, error);
    if (ok && doc.next_slot_ms > now + opts->lookahead_ms) {
        *not_due_at = doc.next_slot_ms;
    } else if (ok) {
        ok = mongoq__schedule_fire(queue, client, &doc, now, opts->lookahead_ms, pass, error);
    }
    if (!ok) {
        mongoq__queue_log(queue, MONGOQ_LOG_WARNING, "scheduler: schedule \"%s\": %s",
                          doc.name ? doc.name : "?", error ? error->message : "error");
    }
    mongoq__schedule_doc_destroy(&doc);
    return ok;
}

/*
 * A pass's query: {next_slot: {$gte: -MONGOQ__SLOT_MAX_MS}} (every schedule with a next slot;
 * a finished one has null), sorted by next_slot, PASS_BATCH at a time. Both for the caller to
 * destroy.
 */
static void
pass_query(bson_t *filter, bson_t *fopts)
{
    bson_t cond, sort;
    bson_init(filter);
    BSON_APPEND_DOCUMENT_BEGIN(filter, "next_slot", &cond);
    BSON_APPEND_DATE_TIME(&cond, "$gte", -MONGOQ__SLOT_MAX_MS);
    bson_append_document_end(filter, &cond);
    bson_init(fopts);
    BSON_APPEND_DOCUMENT_BEGIN(fopts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "next_slot", 1);
    bson_append_document_end(fopts, &sort);
    BSON_APPEND_INT64(fopts, "limit", PASS_BATCH);
}

/* One pass with client; stops early (between schedules) when *stop becomes true. */
static bool
run_pass(mongoq_queue_t *queue, mongoc_client_t *client, const mongoq_scheduler_opts_t *opts,
         mongoq_scheduler_pass_t *pass, const atomic_bool *stop, bson_error_t *error)
{
    int64_t now = mongoq__clock_server_now_ms(queue->clock);
    int64_t next = -1, seen = 0;
    bson_error_t first = {0}, one;
    bool ok = true;
    bson_t filter, fopts;
    pass_query(&filter, &fopts);
    mongoc_collection_t *coll = mongoq__schedules_collection(queue, client);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &fopts, NULL);
    const bson_t *doc;
    while (next < 0 && !(stop && atomic_load(stop)) && mongoc_cursor_next(cursor, &doc)) {
        seen++;
        if (!visit(queue, client, doc, now, opts, pass, &next, &one) && ok) {
            ok = false;
            first = one;
        }
    }
    if (mongoc_cursor_error(cursor, &one) && ok) {
        ok = false;
        first = one;
    }
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&fopts);
    bson_destroy(&filter);
    int64_t due = next >= 0 ? next - opts->lookahead_ms : now + opts->poll_ms;
    if (next < 0 && seen == PASS_BATCH) {
        due = now; /* a full batch was due: go on at once */
    }
    pass->next_due_ms = due < now + opts->poll_ms ? due : now + opts->poll_ms;
    if (!ok && error) {
        *error = first;
    }
    return ok;
}

bool
mongoq_scheduler_run_pass(mongoq_queue_t *queue, const mongoq_scheduler_opts_t *opts,
                          mongoq_scheduler_pass_t *pass, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    mongoq_scheduler_opts_t resolved;
    mongoq_scheduler_pass_t ignored = MONGOQ_SCHEDULER_PASS_INIT, counts = {0};
    if (!resolve_opts(opts, &resolved, error)) {
        return false;
    }
    if (pass && (pass->version == 0 || pass->version > MONGOQ_SCHEDULER_PASS_VERSION)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "scheduler: unknown pass version (use MONGOQ_SCHEDULER_PASS_INIT)");
        return false;
    }
    mongoc_client_t *client = mongoq__pool_pop(queue->pool, error);
    if (!client) {
        return false;
    }
    bool ok = run_pass(queue, client, &resolved, &counts, NULL, error);
    mongoc_client_pool_push(queue->pool, client);
    counts.version = (pass ? pass : &ignored)->version;
    *(pass ? pass : &ignored) = counts;
    return ok;
}

/* ---- the scheduler's thread ---------------------------------------------------------------- */

mongoq_scheduler_t *
mongoq_scheduler_new(mongoq_queue_t *queue, const mongoq_scheduler_opts_t *opts,
                     bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    mongoq_scheduler_opts_t resolved;
    if (!resolve_opts(opts, &resolved, error)) {
        return NULL;
    }
    mongoq_scheduler_t *s = bson_malloc0(sizeof *s);
    if (pipe(s->pipe_fds) != 0) {
        mongoq__error_set(error, MONGOQ_ERROR_SYSTEM, "scheduler: cannot create a pipe: %s",
                          strerror(errno));
        bson_free(s);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(s->pipe_fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(s->pipe_fds[i], F_SETFL, fcntl(s->pipe_fds[i], F_GETFL) | O_NONBLOCK);
    }
    s->queue = queue;
    s->opts = resolved;
    pthread_mutex_init(&s->mu, NULL);
    mongoq__cond_init_monotonic(&s->cond);
    atomic_init(&s->stop_requested, false);
    atomic_init(&s->enqueued, 0);
    atomic_init(&s->skipped, 0);
    atomic_init(&s->lost_races, 0);
    atomic_init(&s->next_due_ms, -1);
    return s;
}

/*
 * Waits up to ms (at most poll_ms) for a stop request (the pipe). poll(2) takes an int: a
 * longer wait (poll_ms may be years) is cut to INT_MAX ms, after which a pass finds nothing due
 * and idles again, rather than turning negative (wait forever) or wrapping.
 */
static void
idle(mongoq_scheduler_t *s, int64_t ms)
{
    struct pollfd pfd = {.fd = s->pipe_fds[0], .events = POLLIN};
    if (ms > 0 && !atomic_load(&s->stop_requested)) {
        (void)poll(&pfd, 1, (int)BSON_MIN(BSON_MIN(ms, s->opts.poll_ms), (int64_t)INT_MAX));
    }
}

static void
thread_loop(mongoq_scheduler_t *s, mongoc_client_t *client)
{
    bool indexed = false;
    while (!atomic_load(&s->stop_requested)) {
        mongoq_scheduler_pass_t pass = {0};
        bson_error_t error;
        bool ok = (indexed = indexed || mongoq__schedules_ensure_index(s->queue, client, &error)) &&
                  run_pass(s->queue, client, &s->opts, &pass, &s->stop_requested, &error);
        atomic_fetch_add(&s->enqueued, pass.enqueued);
        atomic_fetch_add(&s->skipped, pass.skipped);
        atomic_fetch_add(&s->lost_races, pass.lost_races);
        atomic_store(&s->next_due_ms, pass.next_due_ms);
        if (!ok) {
            mongoq__queue_log(s->queue, MONGOQ_LOG_WARNING, "scheduler: pass failed: %s",
                              error.message);
            idle(s, s->opts.poll_ms);
        } else {
            idle(s, pass.next_due_ms - mongoq__clock_server_now_ms(s->queue->clock));
        }
    }
}

static void *
thread_main(void *arg)
{
    mongoq_scheduler_t *s = arg;
    bson_error_t error;
    mongoc_client_t *client = NULL;
    while (!client && !atomic_load(&s->stop_requested)) {
        client = mongoq__service_client_new(s->queue->pool, "mongoq-scheduler",
                                            SERVICE_SOCKET_TIMEOUT_MS, &error);
        if (!client) {
            mongoq__queue_log(s->queue, MONGOQ_LOG_WARNING, "scheduler: no connection: %s",
                              error.message);
            idle(s, s->opts.poll_ms);
        }
    }
    if (client) {
        thread_loop(s, client);
        mongoc_client_destroy(client);
    }
    pthread_mutex_lock(&s->mu);
    s->running = false;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

bool
mongoq_scheduler_start(mongoq_scheduler_t *s, bson_error_t *error)
{
    BSON_ASSERT_PARAM(s);
    if (s->started) {
        mongoq__error_set(error, MONGOQ_ERROR_STOPPED, "scheduler: already started");
        return false;
    }
    s->running = true;
    int rc = pthread_create(&s->thread, NULL, thread_main, s);
    if (rc != 0) {
        s->running = false;
        mongoq__error_set(error, MONGOQ_ERROR_SYSTEM, "scheduler: cannot start a thread: %s",
                          strerror(rc));
        return false;
    }
    s->started = true;
    return true;
}

void
mongoq_scheduler_request_stop(mongoq_scheduler_t *s)
{
    if (s) {
        atomic_store(&s->stop_requested, true);
        (void)!write(s->pipe_fds[1], "x", 1);
    }
}

bool
mongoq_scheduler_stop(mongoq_scheduler_t *s, int64_t timeout_ms, bson_error_t *error)
{
    BSON_ASSERT_PARAM(s);
    mongoq_scheduler_request_stop(s);
    if (!s->started || s->joined) {
        return true;
    }
    /* No timeout longer than MONGOQ_MAX_DURATION_MS: the deadline cannot overflow. */
    int64_t wait_ms = timeout_ms > 0 ? BSON_MIN(timeout_ms, MONGOQ_MAX_DURATION_MS) : 0;
    int64_t deadline = mongoq__now_mono_ms() + wait_ms;
    struct timespec ts;
    mongoq__mono_timespec(deadline, &ts);
    pthread_mutex_lock(&s->mu);
    while (s->running && mongoq__now_mono_ms() < deadline) {
        pthread_cond_timedwait(&s->cond, &s->mu, &ts);
    }
    bool running = s->running;
    pthread_mutex_unlock(&s->mu);
    if (running) {
        mongoq__error_set(error, MONGOQ_ERROR_STOPPED,
                          "scheduler: still in a pass after %lld ms; call stop again or destroy",
                          (long long)timeout_ms);
        return false;
    }
    pthread_join(s->thread, NULL);
    s->joined = true;
    return true;
}

void
mongoq_scheduler_destroy(mongoq_scheduler_t *s)
{
    if (!s) {
        return;
    }
    mongoq_scheduler_request_stop(s);
    if (s->started && !s->joined) {
        pthread_join(s->thread, NULL);
    }
    close(s->pipe_fds[0]);
    close(s->pipe_fds[1]);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    bson_free(s);
}

bool
mongoq_scheduler_counters(mongoq_scheduler_t *s, mongoq_scheduler_pass_t *pass)
{
    BSON_ASSERT_PARAM(s);
    BSON_ASSERT_PARAM(pass);
    if (pass->version == 0 || pass->version > MONGOQ_SCHEDULER_PASS_VERSION) {
        return false;
    }
    pass->enqueued = atomic_load(&s->enqueued);
    pass->skipped = atomic_load(&s->skipped);
    pass->lost_races = atomic_load(&s->lost_races);
    pass->next_due_ms = atomic_load(&s->next_due_ms);
    return true;
}

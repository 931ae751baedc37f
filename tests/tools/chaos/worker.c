/*
 * The worker role: a mongoq_worker whose handler records every delivery, then acks (or, now
 * and then, answers MONGOQ_RETRY); its on_outcome callback records what the worker did next.
 *
 * Records (one line each):
 *   B seq attempt oid token claimed_by lease_expires_at lease_ms mono sum_ok lease_lost
 *                                                    the handler starts on a message
 *   E seq attempt A|R mono                           the handler answers (before the ack)
 *   O seq attempt token handled action ok lease_expires_at lease_ms mono domain.code text
 *                                                    on_outcome: what became of the claim
 *   CF|HB|HF|W mono text                             claim / heartbeat / hand-back failure,
 *                                                    any other warning the library logged
 *   OF mono text                                     the library's warning about a failed
 *                                                    ack/retry (its O record says it too)
 *   D mono text                                      the library's info and debug lines
 *   C mono claimed N acked N idle N stream 0|1 poll 0|1 woken cs/timer/poll reaped N
 *                                                    the worker's counters, every 500 ms
 *   X mono stop-ok|stop-timeout ms [error]           how mongoq_worker_stop ended
 *   Y mono destroyed ms                              worker, queue and pool destroyed
 * B and E are written before the handler returns, so before the worker sends the ack.
 *
 * SIGTERM (or SIGINT; or --max-seconds passing) stops the worker with --stop-timeout-ms; when running handlers outlast
 * it the process leaves at once with status 3 (their messages keep their leases).
 */
#include "chaos.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WORKER_EXIT_STOP_TIMEOUT 3

typedef struct {
    const char *uri, *db, *coll, *name, *log_path;
    int64_t seed, threads, batch, lease_ms, retry_pct, work_max_ms, long_pct, stop_timeout_ms;
    int64_t max_seconds;
} worker_cfg_t;

typedef struct {
    worker_cfg_t cfg;
    chaos_log_t log;
    atomic_int n_threads; /* handler threads seen so far: each seeds its own generator */
} worker_ctx_t;

/* Each handler thread draws from a generator of its own, seeded from the process's seed. */
static _Thread_local struct {
    bool seeded;
    chaos_rng_t rng;
} tl;

static chaos_rng_t *
thread_rng(worker_ctx_t *ctx)
{
    if (!tl.seeded) {
        int index = atomic_fetch_add(&ctx->n_threads, 1);
        chaos_rng_seed(&tl.rng, (uint64_t)ctx->cfg.seed * 1000003ULL + (uint64_t)index);
        tl.seeded = true;
    }
    return &tl.rng;
}

static int64_t
work_ms(worker_ctx_t *ctx, chaos_rng_t *rng)
{
    if (chaos_rng_percent(rng, (int)ctx->cfg.long_pct)) {
        return ctx->cfg.lease_ms * 3 / 2; /* outlives the lease: the heartbeat must hold it */
    }
    return chaos_rng_range(rng, 0, ctx->cfg.work_max_ms);
}

static int64_t
seq_of(const mongoq_message_t *msg, bool *sum_ok)
{
    int64_t seq;
    chaos_payload_check(mongoq_message_payload(msg), &seq, sum_ok);
    return seq;
}

static mongoq_result_t
handle(mongoq_message_t *msg, void *user_data)
{
    worker_ctx_t *ctx = user_data;
    chaos_rng_t *rng = thread_rng(ctx);
    bool sum_ok;
    char oid[25], token[25];
    int64_t seq = seq_of(msg, &sum_ok);
    int attempt = mongoq_message_attempts(msg);
    const char *claimed_by = mongoq_message_claimed_by(msg);
    bson_oid_to_string(mongoq_message_id(msg), oid);
    bson_oid_to_string(mongoq_message_lease_token(msg), token);
    chaos_log_line(&ctx->log, "B %" PRId64 " %d %s %s %s %" PRId64 " %" PRId64 " %" PRId64 " %d %d",
                   seq, attempt, oid, token, claimed_by ? claimed_by : "-",
                   mongoq_message_lease_expires_at(msg), ctx->cfg.lease_ms, chaos_mono_ms(),
                   (int)sum_ok, (int)mongoq_message_lease_lost(msg));
    chaos_sleep_ms(work_ms(ctx, rng)); /* the work this handler pretends to do */
    mongoq_result_t result = MONGOQ_ACK;
    if (chaos_rng_percent(rng, (int)ctx->cfg.retry_pct)) {
        result = MONGOQ_RETRY;
        mongoq_message_set_reason(msg, "chaos: retry");
    }
    chaos_log_line(&ctx->log, "E %" PRId64 " %d %c %" PRId64, seq, attempt,
                   result == MONGOQ_RETRY ? 'R' : 'A', chaos_mono_ms());
    return result;
}

static void
on_outcome(const mongoq_message_t *msg, const mongoq_outcome_t *outcome, void *user_data)
{
    worker_ctx_t *ctx = user_data;
    bool sum_ok;
    char token[25];
    bson_oid_to_string(mongoq_message_lease_token(msg), token);
    chaos_log_line(&ctx->log, "O %" PRId64 " %d %s %d %s %d %" PRId64 " %" PRId64 " %" PRId64 " %u.%u %s",
                   seq_of(msg, &sum_ok), mongoq_message_attempts(msg), token,
                   (int)outcome->handled, mongoq_outcome_action_name((int)outcome->action),
                   (int)outcome->ok, mongoq_message_lease_expires_at(msg), ctx->cfg.lease_ms,
                   chaos_mono_ms(), outcome->ok ? 0 : outcome->error.domain,
                   outcome->ok ? 0 : outcome->error.code, outcome->ok ? "" : outcome->error.message);
}

/*
 * K oid attempt mono: the claim itself, told by the queue's CLAIMED hook on the claiming thread
 * right after the server confirmed it. The checker's claim time: a message's lease_expires_at
 * follows the heartbeats, so in a batch it says when the lease was last extended, not claimed.
 */
static void
on_event(const mongoq_event_t *event, void *user_data)
{
    worker_ctx_t *ctx = user_data;
    char oid[25];
    if (event->kind != MONGOQ_EVENT_CLAIMED || !event->id) {
        return;
    }
    bson_oid_to_string(event->id, oid);
    chaos_log_line(&ctx->log, "K %s %d %" PRId64, oid, (int)event->attempt, chaos_mono_ms());
}

/* The library's warnings, sorted into records. */
static void
on_log(mongoq_log_level_t level, const char *message, void *user_data)
{
    worker_ctx_t *ctx = user_data;
    int64_t now = chaos_mono_ms();
    if (strstr(message, " of message ") && strstr(message, " failed")) {
        /* an outcome's failure, known from its O record: a consequence, not a cause */
        chaos_log_line(&ctx->log, "OF %" PRId64 " %s", now, message);
    } else if (strstr(message, "claim failed")) {
        chaos_log_line(&ctx->log, "CF %" PRId64 " %s", now, message);
    } else if (strstr(message, "heartbeat failed")) {
        chaos_log_line(&ctx->log, "HB %" PRId64 " %s", now, message);
    } else if (strstr(message, "hand-back") || strstr(message, "handing back")) {
        chaos_log_line(&ctx->log, "HF %" PRId64 " %s", now, message);
    } else if (level <= MONGOQ_LOG_WARNING) {
        chaos_log_line(&ctx->log, "W %" PRId64 " %s", now, message);
    } else {
        chaos_log_line(&ctx->log, "D %" PRId64 " %s", now, message); /* the waker's debug lines */
    }
}

static bool
parse_cfg(int argc, char **argv, worker_cfg_t *cfg)
{
    const chaos_opt_t opts[] = {
        {"uri", CHAOS_OPT_STR, &cfg->uri},
        {"db", CHAOS_OPT_STR, &cfg->db},
        {"coll", CHAOS_OPT_STR, &cfg->coll},
        {"name", CHAOS_OPT_STR, &cfg->name},
        {"log", CHAOS_OPT_STR, &cfg->log_path},
        {"seed", CHAOS_OPT_INT, &cfg->seed},
        {"threads", CHAOS_OPT_INT, &cfg->threads},
        {"batch", CHAOS_OPT_INT, &cfg->batch},
        {"lease-ms", CHAOS_OPT_INT, &cfg->lease_ms},
        {"retry-pct", CHAOS_OPT_INT, &cfg->retry_pct},
        {"work-max-ms", CHAOS_OPT_INT, &cfg->work_max_ms},
        {"long-pct", CHAOS_OPT_INT, &cfg->long_pct},
        {"stop-timeout-ms", CHAOS_OPT_INT, &cfg->stop_timeout_ms},
        {"max-seconds", CHAOS_OPT_INT, &cfg->max_seconds},
    };
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = cfg->batch = 1;
    cfg->lease_ms = 3000;
    cfg->stop_timeout_ms = 2000;
    cfg->work_max_ms = 20;
    cfg->max_seconds = 3600;
    if (!chaos_parse_opts(argc, argv, 3, opts, sizeof opts / sizeof opts[0])) {
        return false;
    }
    if (!cfg->uri || !cfg->db || !cfg->coll || !cfg->name || !cfg->log_path) {
        fprintf(stderr, "chaos worker: --uri, --db, --coll, --name and --log are required\n");
        return false;
    }
    return true;
}

static mongoq_worker_t *
worker_open(worker_ctx_t *ctx, mongoq_queue_t *queue, bson_error_t *error)
{
    mongoq_worker_opts_t wopts = MONGOQ_WORKER_OPTS_INIT;
    wopts.handler = handle;
    wopts.user_data = ctx;
    wopts.threads = (int32_t)ctx->cfg.threads;
    wopts.batch = (int32_t)ctx->cfg.batch;
    wopts.lease_ms = ctx->cfg.lease_ms;
    wopts.name = ctx->cfg.name;
    wopts.on_outcome = on_outcome;
    mongoq_worker_t *worker = mongoq_worker_new(queue, &wopts, error);
    if (worker && !mongoq_worker_start(worker, error)) {
        mongoq_worker_destroy(worker);
        worker = NULL;
    }
    return worker;
}

/* A C record: what the worker's counters say now (for reading a run's records afterwards). */
static void
record_counters(worker_ctx_t *ctx, mongoq_worker_t *worker)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(worker, &c);
    chaos_log_line(&ctx->log, "C %" PRId64 " claimed %" PRId64 " acked %" PRId64 " idle %" PRId64
                   " stream %d poll %d woken %" PRId64 "/%" PRId64 "/%" PRId64 " reaped %" PRId64,
                   chaos_mono_ms(), c.claimed, c.acked, c.idle_consumers,
                   (int)c.change_stream_active, (int)c.polling_fallback, c.wakeups_change_stream,
                   c.wakeups_timer, c.wakeups_poll, c.reaped);
}

/*
 * Waits for SIGTERM/SIGINT (blocked in every thread; --max-seconds bounds the wait), writing a
 * C record every 500 ms, then stops within the timeout.
 */
static bool
serve_until_term(worker_ctx_t *ctx, mongoq_worker_t *worker, const sigset_t *set)
{
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 500 * 1000000L};
    bson_error_t error;
    int64_t deadline = chaos_mono_ms() + ctx->cfg.max_seconds * 1000;
    for (int64_t i = 0; i < ctx->cfg.max_seconds * 2 + 2 && chaos_mono_ms() < deadline; i++) {
        if (sigtimedwait(set, NULL, &tick) > 0) {
            break;
        }
        record_counters(ctx, worker);
    }
    int64_t t0 = chaos_mono_ms();
    bool ok = mongoq_worker_stop(worker, ctx->cfg.stop_timeout_ms, &error);
    chaos_log_line(&ctx->log, "X %" PRId64 " %s %" PRId64 " %s", chaos_mono_ms(),
                   ok ? "stop-ok" : "stop-timeout", chaos_mono_ms() - t0, ok ? "" : error.message);
    return ok;
}

int
chaos_worker_main(int argc, char **argv)
{
    worker_ctx_t ctx = {.log = {-1}};
    bson_error_t error = {0};
    mongoc_client_pool_t *pool = NULL;
    mongoq_queue_t *queue = NULL;
    mongoq_worker_t *worker = NULL;
    int rc = 1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread: all of them inherit it */
    if (!parse_cfg(argc, argv, &ctx.cfg) || !chaos_log_open(&ctx.log, ctx.cfg.log_path)) {
        return 2;
    }
    atomic_init(&ctx.n_threads, 0);
    chaos_mongoc_init();
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    chaos_queue_opts(&qopts, ctx.cfg.lease_ms);
    qopts.log_fn = on_log;
    qopts.log_user_data = &ctx;
    qopts.hook = on_event;
    qopts.hook_user_data = &ctx;
    if (!(pool = chaos_pool_new(ctx.cfg.uri, ctx.cfg.name)) ||
        !(queue = chaos_queue_open(pool, ctx.cfg.db, ctx.cfg.coll, &qopts, 30000, &error)) ||
        !(worker = worker_open(&ctx, queue, &error))) {
        fprintf(stderr, "chaos worker %s: %s\n", ctx.cfg.name, error.message);
        goto done;
    }
    chaos_announce_ready();
    if (!serve_until_term(&ctx, worker, &set)) {
        _exit(WORKER_EXIT_STOP_TIMEOUT); /* handlers still run; destroy would wait for them */
    }
    rc = 0;
done:;
    int64_t t0 = chaos_mono_ms();
    mongoq_worker_destroy(worker);
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    if (rc == 0) {
        chaos_log_line(&ctx.log, "Y %" PRId64 " destroyed %" PRId64, chaos_mono_ms(),
                       chaos_mono_ms() - t0);
    }
    mongoc_cleanup();
    chaos_log_close(&ctx.log);
    return rc;
}

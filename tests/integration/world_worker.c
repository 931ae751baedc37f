/* Workers in the integration tests, and what their handler saw (world.h). */
#include "world.h"

#include <criterion/criterion.h>
#include <string.h>

void
world_rec_init(world_rec_t *rec)
{
    memset(rec, 0, sizeof *rec);
    pthread_mutex_init(&rec->mu, NULL);
    mtest_cond_init(&rec->cond);
    rec->result = MONGOQ_ACK;
}

void
world_rec_destroy(world_rec_t *rec)
{
    pthread_cond_destroy(&rec->cond);
    pthread_mutex_destroy(&rec->mu);
}

mongoq_result_t
world_record(mongoq_message_t *msg, void *user_data)
{
    world_rec_t *rec = user_data;
    int64_t i = world_seq(msg);
    int64_t now = mtest_now_ms();
    pthread_mutex_lock(&rec->mu);
    if (i >= 0 && i < WORLD_REC_MAX) {
        if (rec->runs[i]++ == 0) {
            rec->started_at[i] = now;
        }
    }
    rec->total++;
    mongoq_result_t result = rec->result;
    pthread_cond_broadcast(&rec->cond);
    pthread_mutex_unlock(&rec->mu);
    return result;
}

bool
world_await_started(world_rec_t *rec, int i, int64_t timeout_ms)
{
    struct timespec ts;
    mtest_deadline(timeout_ms, &ts);
    pthread_mutex_lock(&rec->mu);
    while (rec->runs[i] == 0 && pthread_cond_timedwait(&rec->cond, &rec->mu, &ts) == 0) {
    }
    bool ok = rec->runs[i] > 0;
    pthread_mutex_unlock(&rec->mu);
    return ok;
}

int
world_await_all(world_rec_t *rec, int n, int64_t timeout_ms)
{
    struct timespec ts;
    int seen = 0;
    mtest_deadline(timeout_ms, &ts);
    pthread_mutex_lock(&rec->mu);
    for (;;) {
        seen = 0;
        for (int i = 0; i < n; i++) {
            seen += rec->runs[i] > 0;
        }
        if (seen == n || pthread_cond_timedwait(&rec->cond, &rec->mu, &ts) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&rec->mu);
    return seen;
}

mongoq_worker_t *
world_worker_run(mongoq_queue_t *queue, const mongoq_worker_opts_t *opts)
{
    bson_error_t error;
    mongoq_worker_t *worker = mongoq_worker_new(queue, opts, &error);
    cr_assert(worker != NULL, "worker_new: %s", error.message);
    cr_assert(mongoq_worker_start(worker, &error), "worker_start: %s", error.message);
    return worker;
}

mongoq_worker_t *
world_worker_start(mongoq_queue_t *queue, world_rec_t *rec, int threads)
{
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = world_record;
    opts.user_data = rec;
    opts.threads = threads;
    return world_worker_run(queue, &opts);
}

bool
world_acked_reached(void *acked)
{
    world_acked_t *a = acked;
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(a->worker, &c);
    return c.acked >= a->acked;
}

bool
world_stream_active(void *queue)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(queue, &c);
    return c.change_stream_active;
}

bool
world_idle_reached(void *idle)
{
    world_idle_t *i = idle;
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(i->queue, &c);
    return c.idle_consumers >= i->waiting;
}

void
world_log_fn(mongoq_log_level_t level, const char *message, void *user_data)
{
    world_log_t *log = user_data;
    (void)level;
    if (log && log->needle && strstr(message, log->needle)) {
        atomic_fetch_add(&log->matches, 1);
    }
}

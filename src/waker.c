/*
 * The waker. This first version only polls with a bounded, growing pause and honours
 * mongoq__waker_schedule/notify; the change stream comes with the waker's own thread.
 */
#include "waker-private.h"

#include <pthread.h>
#include <time.h>

#define MIN_POLL_MS 10

struct mongoq__waker_t {
    mongoq__waker_config_t config;
    char *db;
    char *coll;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t generation;
    int64_t next_due_server_ms; /* earliest scheduled run_at, or INT64_MAX */
    bool stopping;
};

int64_t
mongoq__now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

mongoq__waker_t *
mongoq__waker_new(const mongoq__waker_config_t *config)
{
    mongoq__waker_t *w = bson_malloc0(sizeof *w);
    w->config = *config;
    w->db = bson_strdup(config->db);
    w->coll = bson_strdup(config->coll);
    w->config.db = w->db;
    w->config.coll = w->coll;
    w->next_due_server_ms = INT64_MAX;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    return w;
}

void
mongoq__waker_destroy(mongoq__waker_t *w)
{
    if (!w) {
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    w->generation++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    bson_free(w->db);
    bson_free(w->coll);
    bson_free(w);
}

uint64_t
mongoq__waker_generation(mongoq__waker_t *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t g = w->generation;
    pthread_mutex_unlock(&w->mu);
    return g;
}

static void
to_timespec(int64_t mono_ms, struct timespec *ts)
{
    ts->tv_sec = mono_ms / 1000;
    ts->tv_nsec = (mono_ms % 1000) * 1000000;
}

mongoq__wake_t
mongoq__waker_wait(mongoq__waker_t *w, uint64_t *seen, int64_t deadline_ms)
{
    int64_t poll_until = mongoq__now_mono_ms() + w->config.poll_interval_ms;
    int64_t until = deadline_ms < poll_until ? deadline_ms : poll_until;
    mongoq__wake_t why = MONGOQ__WAKE_TIMEOUT;
    pthread_mutex_lock(&w->mu);
    if (w->next_due_server_ms != INT64_MAX && w->config.clock) {
        int64_t due = mongoq__clock_server_to_mono_ms(w->config.clock, w->next_due_server_ms);
        if (due < until) {
            until = due;
        }
    }
    struct timespec ts;
    to_timespec(until, &ts);
    while (w->generation == *seen && !w->stopping) {
        if (pthread_cond_timedwait(&w->cond, &w->mu, &ts) != 0) {
            break;
        }
    }
    if (w->stopping) {
        why = MONGOQ__WAKE_STOP;
    } else if (w->generation != *seen) {
        why = MONGOQ__WAKE_LOCAL;
    } else if (until >= deadline_ms) {
        why = MONGOQ__WAKE_TIMEOUT;
    } else if (until < poll_until) {
        why = MONGOQ__WAKE_TIMER;
        w->next_due_server_ms = INT64_MAX;
    } else {
        why = MONGOQ__WAKE_POLL;
    }
    *seen = w->generation;
    pthread_mutex_unlock(&w->mu);
    return why;
}

void
mongoq__waker_notify(mongoq__waker_t *w)
{
    pthread_mutex_lock(&w->mu);
    w->generation++;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
}

void
mongoq__waker_schedule(mongoq__waker_t *w, int64_t run_at_ms)
{
    pthread_mutex_lock(&w->mu);
    if (run_at_ms < w->next_due_server_ms) {
        w->next_due_server_ms = run_at_ms;
        pthread_cond_broadcast(&w->cond); /* waiters recompute their timeout */
    }
    pthread_mutex_unlock(&w->mu);
}

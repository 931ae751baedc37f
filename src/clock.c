/*
 * The server clock estimate (see clock-private.h). The offset is kept against the local
 * MONOTONIC clock, so a jump of the local wall clock cannot move the estimate; only a new
 * measurement of hello.localTime can.
 *
 * The estimate is a lower bound, never ahead of the server: hello.localTime was read on the
 * server before its reply arrived (and is truncated to the millisecond), so localTime plus the
 * time elapsed since the reply arrived is at most the server's true time. Being early by up to
 * one round trip is safe everywhere mongoq uses the estimate: a message enqueued "now" is due
 * at once for a claim evaluated on $$NOW right after it, a delayed message is due at most a
 * round trip late, never early, and a timer set from it fires once the server time has come.
 */
#include "clock-private.h"

#include <pthread.h>
#include <time.h>

#include "mongoq/error.h"
#include "service-private.h"

/* Re-measure this often: bounds how long a jump of the server's own clock goes unnoticed. */
#define REFRESH_MS 10000

int64_t
mongoq__now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
mongoq__mono_timespec(int64_t mono_ms, struct timespec *ts)
{
    if (mono_ms < 0) {
        mono_ms = 0;
    }
    ts->tv_sec = (time_t)(mono_ms / 1000);
    ts->tv_nsec = (long)(mono_ms % 1000) * 1000000L;
}

void
mongoq__cond_init_monotonic(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

static int64_t
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

struct mongoq__clock_t {
    mongoc_client_pool_t *pool;
    pthread_mutex_t mu;
    int64_t offset_us;     /* server time - local monotonic time, microseconds */
    int64_t measured_mono; /* when offset_us was measured (ms) */
    bool measuring;        /* one thread re-measures; the others use the old estimate */
};

/*
 * Runs hello; offset = localTime - the local time its reply arrived (a lower bound). `wait`:
 * take a client from the pool as a claim would; otherwise only a free one (a refresh never
 * makes its caller wait for the pool: the old estimate serves meanwhile).
 */
static bool
measure(mongoc_client_pool_t *pool, bool wait, int64_t *offset_out, bson_error_t *error)
{
    bool ok = false;
    bson_t cmd = BSON_INITIALIZER;
    bson_t reply = BSON_INITIALIZER;
    bson_iter_t iter;
    mongoc_client_t *client = wait ? mongoq__pool_pop(pool, error) : mongoc_client_pool_try_pop(pool);
    if (!client) {
        goto done;
    }
    bson_destroy(&reply);
    BSON_APPEND_INT32(&cmd, "hello", 1);
    bool sent = mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, error);
    int64_t received = mono_us();
    if (!sent) {
        goto done;
    }
    if (!bson_iter_init_find(&iter, &reply, "localTime") || !BSON_ITER_HOLDS_DATE_TIME(&iter)) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_SERVER,
                       "hello reply has no localTime date: cannot read the server clock");
        goto done;
    }
    *offset_out = bson_iter_date_time(&iter) * 1000 - received;
    ok = true;
done:
    bson_destroy(&reply);
    bson_destroy(&cmd);
    if (client) {
        mongoc_client_pool_push(pool, client);
    }
    return ok;
}

mongoq__clock_t *
mongoq__clock_new(mongoc_client_pool_t *pool, bson_error_t *error)
{
    int64_t offset;
    BSON_ASSERT_PARAM(pool);
    if (!measure(pool, true, &offset, error)) {
        return NULL;
    }
    mongoq__clock_t *clock = bson_malloc0(sizeof *clock);
    clock->pool = pool;
    clock->offset_us = offset;
    clock->measured_mono = mongoq__now_mono_ms();
    pthread_mutex_init(&clock->mu, NULL);
    return clock;
}

void
mongoq__clock_destroy(mongoq__clock_t *clock)
{
    if (!clock) {
        return;
    }
    pthread_mutex_destroy(&clock->mu);
    bson_free(clock);
}

/* Re-measures outside the lock; a failed measurement keeps the old estimate. */
static void
refresh_if_stale(mongoq__clock_t *clock)
{
    int64_t now = mongoq__now_mono_ms();
    pthread_mutex_lock(&clock->mu);
    bool mine = !clock->measuring && now - clock->measured_mono >= REFRESH_MS;
    if (mine) {
        clock->measuring = true;
    }
    pthread_mutex_unlock(&clock->mu);
    if (!mine) {
        return;
    }
    int64_t offset;
    bool ok = measure(clock->pool, false, &offset, NULL);
    pthread_mutex_lock(&clock->mu);
    if (ok) {
        clock->offset_us = offset;
    }
    clock->measured_mono = mongoq__now_mono_ms();
    clock->measuring = false;
    pthread_mutex_unlock(&clock->mu);
}

static int64_t
offset_of(mongoq__clock_t *clock)
{
    pthread_mutex_lock(&clock->mu);
    int64_t offset = clock->offset_us;
    pthread_mutex_unlock(&clock->mu);
    return offset;
}

int64_t
mongoq__clock_server_now_ms(mongoq__clock_t *clock)
{
    BSON_ASSERT_PARAM(clock);
    refresh_if_stale(clock);
    int64_t server_us = mono_us() + offset_of(clock);
    return server_us >= 0 ? server_us / 1000 : -((-server_us + 999) / 1000); /* floor */
}

int64_t
mongoq__clock_server_to_mono_ms(mongoq__clock_t *clock, int64_t server_ms)
{
    BSON_ASSERT_PARAM(clock);
    /* Rounded up: a timer set from it fires once the estimate has reached server_ms. */
    int64_t mono = server_ms * 1000 - offset_of(clock);
    return mono >= 0 ? (mono + 999) / 1000 : -(-mono / 1000);
}

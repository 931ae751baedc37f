/*
 * The server clock estimate (see clock-private.h). The offset is kept against the local
 * MONOTONIC clock, so a jump of the local wall clock cannot move the estimate; only a new
 * measurement of hello.localTime can.
 */
#include "clock-private.h"

#include <pthread.h>
#include <time.h>

#include "mongoq/error.h"
#include "waker-private.h"

/* Re-measure this often: bounds how long a jump of the server's own clock goes unnoticed. */
#define REFRESH_MS 5000

struct mongoq__clock_t {
    mongoc_client_pool_t *pool;
    pthread_mutex_t mu;
    int64_t offset_ms;      /* server time - local monotonic time */
    int64_t measured_mono;  /* when offset_ms was measured */
    bool measuring;         /* one thread re-measures; the others use the old estimate */
};

/* Runs hello and computes server - monotonic at the middle of the round trip. */
static bool
measure(mongoc_client_pool_t *pool, int64_t *offset_out, bson_error_t *error)
{
    bool ok = false;
    bson_t cmd = BSON_INITIALIZER;
    bson_t reply;
    bson_iter_t iter;
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    BSON_APPEND_INT32(&cmd, "hello", 1);
    int64_t t0 = mongoq__now_mono_ms();
    bool sent = mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, error);
    int64_t t1 = mongoq__now_mono_ms();
    if (!sent) {
        goto done;
    }
    if (!bson_iter_init_find(&iter, &reply, "localTime") || !BSON_ITER_HOLDS_DATE_TIME(&iter)) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_SERVER,
                       "hello reply has no localTime date: cannot read the server clock");
        goto done;
    }
    *offset_out = bson_iter_date_time(&iter) - (t0 + (t1 - t0) / 2);
    ok = true;
done:
    bson_destroy(&reply);
    bson_destroy(&cmd);
    mongoc_client_pool_push(pool, client);
    return ok;
}

mongoq__clock_t *
mongoq__clock_new(mongoc_client_pool_t *pool, bson_error_t *error)
{
    int64_t offset;
    BSON_ASSERT_PARAM(pool);
    if (!measure(pool, &offset, error)) {
        return NULL;
    }
    mongoq__clock_t *clock = bson_malloc0(sizeof *clock);
    clock->pool = pool;
    clock->offset_ms = offset;
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
    bool ok = measure(clock->pool, &offset, NULL);
    pthread_mutex_lock(&clock->mu);
    if (ok) {
        clock->offset_ms = offset;
    }
    clock->measured_mono = mongoq__now_mono_ms();
    clock->measuring = false;
    pthread_mutex_unlock(&clock->mu);
}

static int64_t
offset_of(mongoq__clock_t *clock)
{
    pthread_mutex_lock(&clock->mu);
    int64_t offset = clock->offset_ms;
    pthread_mutex_unlock(&clock->mu);
    return offset;
}

int64_t
mongoq__clock_server_now_ms(mongoq__clock_t *clock)
{
    BSON_ASSERT_PARAM(clock);
    refresh_if_stale(clock);
    return mongoq__now_mono_ms() + offset_of(clock);
}

int64_t
mongoq__clock_server_to_mono_ms(mongoq__clock_t *clock, int64_t server_ms)
{
    BSON_ASSERT_PARAM(clock);
    return server_ms - offset_of(clock);
}

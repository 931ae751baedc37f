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
#include <string.h>
#include <time.h>

#include "mongoq/error.h"
#include "service-private.h"

/* Re-measure this often: bounds how long a jump of the server's own clock goes unnoticed. */
#define REFRESH_MS 10000
/* Look at the driver's list of servers this often (no I/O): a changed one is measured at once. */
#define CHECK_MS 1000
/* How long opening a clock waits for the driver to discover every server it was given, so the
 * first estimate is not taken from whichever mongos answered first. */
#define DISCOVERY_MS 1000
/* How often it looks meanwhile (the driver's monitors do the work). */
#define DISCOVERY_POLL_MS 5
/* The most servers one measurement sends hello to. */
#define MAX_SERVERS 16

static int64_t
now_ms(clockid_t which)
{
    struct timespec ts;
    clock_gettime(which, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mongoq__now_mono_ms(void)
{
    return now_ms(CLOCK_MONOTONIC);
}

int64_t
mongoq__now_real_ms(void)
{
    return now_ms(CLOCK_REALTIME);
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
    int64_t offset_us;     /* server time - local monotonic time, microseconds: the slowest */
    int64_t spread_us;     /* the fastest server's offset - the slowest's (0 with one server) */
    uint32_t servers;      /* the servers measured (servers_signature) */
    int64_t measured_mono; /* when offset_us was measured (ms) */
    int64_t checked_mono;  /* when the servers were last compared with `servers` (ms) */
    bool measuring;        /* one thread re-measures; the others use the old estimate */
};

/* The servers whose clock a command's $$NOW can be: mongos routers (each runs $$NOW for the
 * commands it routes), a replica set's primary, a standalone, a load balancer. */
static bool
runs_now(const mongoc_server_description_t *sd)
{
    static const char *const types[] = {"Mongos", "RSPrimary", "Standalone", "LoadBalancer"};
    const char *type = mongoc_server_description_type(sd);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(type, types[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* A number that changes when the set of such servers does (a new primary, a mongos added). */
static uint32_t
servers_signature(mongoc_server_description_t **sds, size_t n)
{
    uint32_t sig = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        if (runs_now(sds[i])) {
            sig += (mongoc_server_description_id(sds[i]) + 1u) * 2654435761u;
        }
    }
    return sig;
}

/* One hello on server_id (0: any server, chosen by the driver); offset as measure's. */
static bool
hello_offset(mongoc_client_t *client, uint32_t server_id, int64_t *offset_out, bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_iter_t iter;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    bool ok = server_id ? mongoc_client_command_simple_with_server_id(client, "admin", &cmd, NULL,
                                                                      server_id, &reply, error)
                        : mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, error);
    int64_t received = mono_us();
    if (ok && (!bson_iter_init_find(&iter, &reply, "localTime") ||
               !BSON_ITER_HOLDS_DATE_TIME(&iter))) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_SERVER,
                       "hello reply has no localTime date: cannot read the server clock");
        ok = false;
    }
    if (ok) {
        *offset_out = bson_iter_date_time(&iter) * 1000 - received;
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return ok;
}

typedef struct {
    int64_t offset_us, spread_us;
    uint32_t servers;
} measurement_t;

/*
 * Measures every server a command's $$NOW may come from (at most MAX_SERVERS): the estimate is
 * the slowest one's clock, a lower bound of every one, and the spread says how far ahead the
 * fastest runs. Before the driver has discovered any server, one hello on whichever it selects.
 */
static bool
measure_all(mongoc_client_t *client, measurement_t *m, bson_error_t *error)
{
    size_t n = 0, measured = 0;
    mongoc_server_description_t **sds = mongoc_client_get_server_descriptions(client, &n);
    int64_t lo = INT64_MAX, hi = INT64_MIN, offset;
    bool ok = true;
    m->servers = servers_signature(sds, n);
    for (size_t i = 0; ok && i < n && measured < MAX_SERVERS; i++) {
        if (runs_now(sds[i])) {
            ok = hello_offset(client, mongoc_server_description_id(sds[i]), &offset, error);
            lo = ok && offset < lo ? offset : lo;
            hi = ok && offset > hi ? offset : hi;
            measured++;
        }
    }
    mongoc_server_descriptions_destroy_all(sds, n);
    if (ok && measured == 0) {
        ok = hello_offset(client, 0, &offset, error);
        lo = hi = offset;
        m->servers = 0; /* not known yet: the next check measures again */
    }
    if (ok) {
        m->offset_us = lo;
        m->spread_us = hi - lo;
    }
    return ok;
}

/* Whether the driver knows servers it has not reached yet (type Unknown). */
static bool
some_undiscovered(mongoc_client_t *client)
{
    size_t n = 0;
    bool unknown = false;
    mongoc_server_description_t **sds = mongoc_client_get_server_descriptions(client, &n);
    for (size_t i = 0; i < n; i++) {
        unknown = unknown || strcmp(mongoc_server_description_type(sds[i]), "Unknown") == 0;
    }
    mongoc_server_descriptions_destroy_all(sds, n);
    return unknown || n == 0;
}

/*
 * Waits (at most DISCOVERY_MS) until the driver has reached every server it knows: right after a
 * pool starts, the servers of the URI are still Unknown, and measuring only those discovered so
 * far could take the estimate from the fastest of several mongos, putting a message enqueued
 * "now" up to the spread in the future on the others. A server still Unknown after the wait (one
 * that is down) is measured when it comes up: the servers' signature changes then.
 */
static void
await_discovery(mongoc_client_t *client)
{
    int64_t deadline = mongoq__now_mono_ms() + DISCOVERY_MS;
    /* Bounded by the deadline. */
    while (some_undiscovered(client) && mongoq__now_mono_ms() < deadline) {
        struct timespec pause = {0, DISCOVERY_POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
}

/*
 * Measures the server clocks. `wait`: take a client from the pool as a claim would; otherwise
 * only a free one (a refresh never makes its caller wait for the pool: the old estimate serves
 * meanwhile).
 */
static bool
measure(mongoc_client_pool_t *pool, bool wait, measurement_t *m, bson_error_t *error)
{
    mongoc_client_t *client = wait ? mongoq__pool_pop(pool, error) : mongoc_client_pool_try_pop(pool);
    if (!client) {
        return false;
    }
    if (wait) {
        await_discovery(client);
    }
    bool ok = measure_all(client, m, error);
    mongoc_client_pool_push(pool, client);
    return ok;
}

/* The signature of the servers the pool knows now (no I/O); `known` when no client is free. */
static uint32_t
current_servers(mongoc_client_pool_t *pool, uint32_t known)
{
    size_t n = 0;
    mongoc_client_t *client = mongoc_client_pool_try_pop(pool);
    if (!client) {
        return known;
    }
    mongoc_server_description_t **sds = mongoc_client_get_server_descriptions(client, &n);
    uint32_t sig = servers_signature(sds, n);
    mongoc_server_descriptions_destroy_all(sds, n);
    mongoc_client_pool_push(pool, client);
    return sig;
}

mongoq__clock_t *
mongoq__clock_new(mongoc_client_pool_t *pool, bson_error_t *error)
{
    measurement_t m;
    BSON_ASSERT_PARAM(pool);
    if (!measure(pool, true, &m, error)) {
        return NULL;
    }
    mongoq__clock_t *clock = bson_malloc0(sizeof *clock);
    clock->pool = pool;
    clock->offset_us = m.offset_us;
    clock->spread_us = m.spread_us;
    clock->servers = m.servers;
    clock->measured_mono = clock->checked_mono = mongoq__now_mono_ms();
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

/*
 * Re-measures outside the lock when the estimate is REFRESH_MS old, or sooner when the servers
 * changed (looked at every CHECK_MS: a failover's new primary, a mongos added or gone); a failed
 * measurement keeps the old estimate.
 */
static void
refresh_if_stale(mongoq__clock_t *clock)
{
    int64_t now = mongoq__now_mono_ms();
    pthread_mutex_lock(&clock->mu);
    bool stale = now - clock->measured_mono >= REFRESH_MS;
    bool check = !stale && now - clock->checked_mono >= CHECK_MS;
    bool mine = !clock->measuring && (stale || check);
    uint32_t known = clock->servers;
    if (mine) {
        clock->measuring = true;
        clock->checked_mono = now;
    }
    pthread_mutex_unlock(&clock->mu);
    if (!mine) {
        return;
    }
    measurement_t m;
    bool measure_now = stale || current_servers(clock->pool, known) != known;
    bool ok = measure_now && measure(clock->pool, false, &m, NULL);
    pthread_mutex_lock(&clock->mu);
    if (ok) {
        clock->offset_us = m.offset_us;
        clock->spread_us = m.spread_us;
        clock->servers = m.servers;
    }
    if (measure_now) {
        clock->measured_mono = mongoq__now_mono_ms();
    }
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

int64_t
mongoq__clock_server_latest_ms(mongoq__clock_t *clock)
{
    BSON_ASSERT_PARAM(clock);
    int64_t now = mongoq__clock_server_now_ms(clock);
    pthread_mutex_lock(&clock->mu);
    int64_t spread_ms = (clock->spread_us + 999) / 1000;
    pthread_mutex_unlock(&clock->mu);
    return now + spread_ms;
}

int64_t
mongoq__clock_spread_ms(mongoq__clock_t *clock)
{
    BSON_ASSERT_PARAM(clock);
    pthread_mutex_lock(&clock->mu);
    int64_t spread_ms = (clock->spread_us + 999) / 1000;
    pthread_mutex_unlock(&clock->mu);
    return spread_ms;
}

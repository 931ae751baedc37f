/*
 * The server clock as seen from this process. Leases and run_at are decided by the server's
 * clock ($$NOW); where mongoq must compute a server time itself (a delayed message's run_at, the
 * claim filter's index bound, the waker's timer) it uses this estimate: the offset between
 * hello.localTime and the local clock when the reply arrived, refreshed periodically. It is a
 * lower bound: never ahead of the server, behind it by at most one round trip. So a message
 * enqueued "now" is due at once on the server, and the claim also checks run_at against $$NOW
 * on the server, so no estimate can release a message early.
 */
#ifndef MONGOQ_CLOCK_PRIVATE_H
#define MONGOQ_CLOCK_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>
#include <pthread.h>
#include <time.h>

#include <mongoc/mongoc.h>

/* The local monotonic clock in milliseconds: every wait and deadline in mongoq uses it. */
int64_t
mongoq__now_mono_ms(void);

/*
 * The local wall clock in milliseconds since the epoch: only to compare with a server's time
 * (the doctor's skew check, the waker's timer when it has no server clock), never for a wait.
 */
int64_t
mongoq__now_real_ms(void);

/* A mongoq__now_mono_ms() time as the deadline of a timed wait on a monotonic condition. */
void
mongoq__mono_timespec(int64_t mono_ms, struct timespec *ts);

/* Initialises a condition variable whose timed waits take monotonic deadlines (never wall time). */
void
mongoq__cond_init_monotonic(pthread_cond_t *cond);

/*
 * How far past the estimated server time the index-friendly half of a time filter reaches. The
 * exact test is a $expr against $$NOW on the server; this bound only has to be wide enough that
 * a wrong clock estimate never hides a due message from the index scan.
 */
#define MONGOQ__CLOCK_SLACK_MS 2000

typedef struct mongoq__clock_t mongoq__clock_t;

/* pool borrowed. Measures once now; NULL + error when the server cannot be reached. */
mongoq__clock_t *
mongoq__clock_new(mongoc_client_pool_t *pool, bson_error_t *error);

void
mongoq__clock_destroy(mongoq__clock_t *clock);

/* Estimated server time in ms since the epoch; re-measures when the estimate is stale. */
int64_t
mongoq__clock_server_now_ms(mongoq__clock_t *clock);

/*
 * The fastest measured server's clock: the estimate plus the spread between the servers that
 * run $$NOW (mongos routers, a primary). The index-friendly bound of a time filter starts from
 * it, so no server's $$NOW can find a message due that the bound hides. Equal to
 * mongoq__clock_server_now_ms with one server.
 */
int64_t
mongoq__clock_server_latest_ms(mongoq__clock_t *clock);

/* The spread between the servers' clocks as last measured, ms (0 with one server). */
int64_t
mongoq__clock_spread_ms(mongoq__clock_t *clock);

/* Converts a server time to the local monotonic clock (for timed waits). */
int64_t
mongoq__clock_server_to_mono_ms(mongoq__clock_t *clock, int64_t server_ms);

#endif

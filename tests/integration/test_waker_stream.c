/*
 * The waker on the server under test (MONGOQ_TEST_URI): idle consumers are woken by the queue's
 * change stream (not by polling), by a timer at run_at, and the stream survives broken
 * connections and lost history without missing a message.
 */
#include "test_waker_util.h"

#include <unistd.h>

static void
ws_suite_init(void)
{
    mongoc_init();
}

TestSuite(waker_stream, .init = ws_suite_init, .timeout = 120);

typedef struct {
    char *db;
    const char *uri;
    mongoc_client_pool_t *wpool; /* the worker's, appname = db (fail points target it) */
    mongoc_client_pool_t *ppool; /* the producer's */
    mongoq_queue_t *w;
    mongoq_queue_t *p;
    wk_rec_t rec;
    mongoq_worker_t *worker;
} ws_env_t;

static mongoq_queue_t *
ws_queue(mongoc_client_pool_t *pool, const char *db, int64_t poll_ms)
{
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.poll_interval_ms = poll_ms;
    mongoq_queue_t *q = mongoq_queue_new(pool, db, "q", &opts, &error);
    cr_assert(q != NULL, "queue_new: %s", error.message);
    return q;
}

static void
ws_open(ws_env_t *e)
{
    memset(e, 0, sizeof *e);
    e->db = mtest_db_name("wks");
    e->uri = mtest_uri();
    e->ppool = mtest_pool_for(e->uri, "wks-producer");
    e->p = ws_queue(e->ppool, e->db, 10000);
    wk_rec_init(&e->rec);
}

/* W and its worker; waits until the change stream is open. */
static void
ws_start_worker(ws_env_t *e)
{
    e->wpool = mtest_pool_for(e->uri, e->db);
    e->w = ws_queue(e->wpool, e->db, 10000); /* a poll would take 10 s: wake-ups are events */
    e->worker = wk_worker_start(e->w, &e->rec, 1);
    cr_assert(mtest_wait_until(wk_stream_active, e->w, 10000), "the change stream opens");
}

static void
ws_close(ws_env_t *e)
{
    mongoc_client_t *client = mtest_client_new("wks-cleanup");
    mtest_command(client, "admin",
                  "{\"configureFailPoint\": \"failCommand\", \"mode\": \"off\"}", NULL, NULL);
    mongoq_worker_destroy(e->worker);
    mongoq_queue_destroy(e->w);
    mongoq_queue_destroy(e->p);
    if (e->wpool) {
        mongoc_client_pool_destroy(e->wpool);
    }
    mongoc_client_pool_destroy(e->ppool);
    mtest_db_drop(client, e->db);
    mongoc_client_destroy(client);
    wk_rec_destroy(&e->rec);
    bson_free(e->db);
}

/* The worker's thread is back waiting on the waker (not merely done with its last message). */
static bool
ws_worker_waiting(void *ctx)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(ctx, &c);
    return c.idle_consumers >= 1;
}

static mongoq_counters_t
ws_counters(mongoq_queue_t *q)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(q, &c);
    return c;
}

Test(waker_stream, enqueue_wakes_idle_worker_through_the_change_stream)
{
    ws_env_t e;
    ws_open(&e);
    ws_start_worker(&e);
    for (int i = 0; i < 100; i++) {
        int64_t t0 = mtest_now_ms();
        wk_enqueue(e.p, i, 0);
        cr_assert(wk_await_started(&e.rec, i, 1000), "message %d started within 1 s", i);
        cr_assert_leq(e.rec.started_at[i] - t0, 1000);
        wk_acked_t idle = {e.worker, i + 1};
        cr_assert(mtest_wait_until(wk_acked_reached, &idle, 5000), "the worker acked it");
        cr_assert(mtest_wait_until(ws_worker_waiting, e.w, 5000), "the worker waits again");
    }
    mongoq_counters_t c = ws_counters(e.w);
    /* Every message met a waiting worker, so each was found after a wake-up; none by a poll. */
    cr_assert_geq(c.wakeups_change_stream, 95, "woken by change events: %lld (timer %lld, poll %lld)",
                  (long long)c.wakeups_change_stream, (long long)c.wakeups_timer,
                  (long long)c.wakeups_poll);
    cr_assert_eq(c.wakeups_poll, 0);
    cr_assert_not(c.polling_fallback);
    ws_close(&e);
}

/* Starts within [run_at, run_at + 300 ms] (plus the enqueue's own round trip). */
static void
ws_assert_on_time(ws_env_t *e, int64_t t0, int64_t t1, int64_t delay_ms)
{
    cr_assert(wk_await_started(&e->rec, 0, delay_ms + 3000), "the delayed message started");
    int64_t started = e->rec.started_at[0];
    cr_assert_geq(started - t0, delay_ms, "not before run_at (started %lld ms after enqueue)",
                  (long long)(started - t0));
    cr_assert_leq(started - t1, delay_ms + 300, "at most 300 ms late (%lld ms after enqueue)",
                  (long long)(started - t1));
}

Test(waker_stream, delayed_message_starts_at_run_at)
{
    ws_env_t e;
    ws_open(&e);
    ws_start_worker(&e);
    int64_t t0 = mtest_now_ms();
    wk_enqueue(e.p, 0, 1500);
    int64_t t1 = mtest_now_ms();
    ws_assert_on_time(&e, t0, t1, 1500);
    cr_assert_geq(ws_counters(e.w).wakeups_timer, 1);
    ws_close(&e);
}

Test(waker_stream, delayed_message_enqueued_before_the_waker_started)
{
    ws_env_t e;
    ws_open(&e);
    int64_t t0 = mtest_now_ms();
    wk_enqueue(e.p, 0, 2000);
    int64_t t1 = mtest_now_ms();
    ws_start_worker(&e); /* no insert event reaches it: the waker asks for the next run_at */
    ws_assert_on_time(&e, t0, t1, 2000);
    cr_assert_geq(ws_counters(e.w).wakeups_timer, 1);
    ws_close(&e);
}

/*
 * Fails the waker's next getMore with `what`. The waker watches on a connection of its own named
 * "<appname>/mongoq-waker" (the queue's pool has appname e->db). Returns the fail point's count.
 */
static int64_t
ws_fail_getmore(ws_env_t *e, const char *what)
{
    mongoc_client_t *client = mtest_client_new("wks-failpoint");
    char *fields = bson_strdup_printf("\"failCommands\": [\"getMore\"], %s", what);
    char *app = bson_strdup_printf("%s/mongoq-waker", e->db);
    int64_t before = mtest_fail_point_app(client, app, "{\"times\": 1}", fields);
    bson_free(app);
    bson_free(fields);
    mongoc_client_destroy(client);
    return before;
}

/* Turns the fail point off and asserts it fired once since `before`: the fault happened. */
static void
ws_assert_fault_fired(int64_t before)
{
    mongoc_client_t *client = mtest_client_new("wks-failpoint");
    cr_assert_eq(mtest_fail_point(client, "\"off\"", NULL) - before, 1,
                 "the waker's getMore met the fault");
    mongoc_client_destroy(client);
}

static void
ws_enqueue_and_await(ws_env_t *e, int n)
{
    for (int i = 0; i < n; i++) {
        wk_enqueue(e->p, i, 0);
    }
    int seen = wk_await_all(&e->rec, n, 5000);
    cr_assert_eq(seen, n, "all %d messages started within 5 s (poll would take 10 s): %d", n,
                 seen);
}

Test(waker_stream, closed_connection_on_getmore_resumes_without_missing_anything)
{
    ws_env_t e;
    ws_open(&e);
    ws_start_worker(&e);
    int64_t before = ws_fail_getmore(&e, "\"closeConnection\": true");
    ws_enqueue_and_await(&e, 30);
    ws_assert_fault_fired(before);
    cr_assert(mtest_wait_until(wk_stream_active, e.w, 5000), "the stream is open again");
    ws_close(&e);
}

Test(waker_stream, history_lost_on_getmore_makes_everyone_rescan)
{
    ws_env_t e;
    ws_open(&e);
    ws_start_worker(&e);
    int64_t before = ws_fail_getmore(&e, "\"errorCode\": 286");
    ws_enqueue_and_await(&e, 30);
    ws_assert_fault_fired(before);
    cr_assert(mtest_wait_until(wk_stream_active, e.w, 5000), "the stream is open again");
    ws_close(&e);
}

Test(waker_stream, other_errors_on_getmore_reopen_the_stream)
{
    ws_env_t e;
    ws_open(&e);
    ws_start_worker(&e);
    int64_t before = ws_fail_getmore(&e, "\"errorCode\": 2");
    ws_enqueue_and_await(&e, 30);
    ws_assert_fault_fired(before);
    cr_assert(mtest_wait_until(wk_stream_active, e.w, 5000), "the stream is open again");
    ws_close(&e);
}

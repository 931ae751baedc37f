/*
 * The waker against private test servers (skipped when they cannot be spawned): a standalone
 * server without change streams (polling fallback), a server killed with -9 and restarted on
 * the same --dbpath and port (the stream resumes), and a server whose history (--history 5)
 * moves past the waker's resume point while it is held up (ChangeStreamHistoryLost: rescan).
 */
#include "test_waker_util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define FALLBACK_LOG "cannot open a change stream"

static void
wv_suite_init(void)
{
    mongoc_init();
}

/* The private server of the running test, killed by the suite's fini if an assertion fails. */
static mtest_server_t *wv_current;

static void
wv_suite_fini(void)
{
    if (wv_current && wv_current->pid > 0) {
        mtest_server_stop(wv_current, true);
    }
}

TestSuite(waker_server, .init = wv_suite_init, .fini = wv_suite_fini, .timeout = 120);

typedef struct {
    mtest_server_t srv;
    mongoc_client_pool_t *wpool;
    mongoc_client_pool_t *ppool;
    mtest_counter_t *wcommands; /* commands W's pool sent */
    mongoq_queue_t *w;
    mongoq_queue_t *p;
    wk_rec_t rec;
    wk_log_t log;
    mongoq_worker_t *worker;
} wv_env_t;

static mongoq_queue_t *
wv_queue(mongoc_client_pool_t *pool, int64_t poll_ms, wk_log_t *log)
{
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.poll_interval_ms = poll_ms;
    opts.log_fn = wk_log_fn;
    opts.log_user_data = log;
    mongoq_queue_t *q = mongoq_queue_new(pool, "wv", "q", &opts, &error);
    cr_assert(q != NULL, "queue_new: %s", error.message);
    return q;
}

/* Starts a private server with args, W (with a worker) and P on it. */
static void
wv_open(wv_env_t *e, const char *const *args, int64_t poll_ms)
{
    memset(e, 0, sizeof *e);
    cr_assert(mtest_server_start(&e->srv, args, 0), "private server starts");
    wv_current = &e->srv;
    wk_rec_init(&e->rec);
    e->log.needle = FALLBACK_LOG;
    e->wpool = mtest_pool_for(e->srv.uri, "wv-worker");
    e->wcommands = mtest_counter_new();
    mtest_counter_attach_pool(e->wcommands, e->wpool);
    e->ppool = mtest_pool_for(e->srv.uri, "wv-producer");
    e->w = wv_queue(e->wpool, poll_ms, &e->log);
    e->p = wv_queue(e->ppool, poll_ms, NULL);
    e->worker = wk_worker_start(e->w, &e->rec, 2);
}

static void
wv_close(wv_env_t *e)
{
    mongoq_worker_destroy(e->worker);
    mongoq_queue_destroy(e->w);
    mongoq_queue_destroy(e->p);
    mongoc_client_pool_destroy(e->wpool);
    mongoc_client_pool_destroy(e->ppool);
    mtest_counter_destroy(e->wcommands);
    mtest_server_stop(&e->srv, false);
    wv_current = NULL;
    wk_rec_destroy(&e->rec);
}

static bool
wv_fallback(void *ctx)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(ctx, &c);
    return c.polling_fallback;
}

Test(waker_server, standalone_server_falls_back_to_polling)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    wv_env_t e;
    const char *args[] = {"--standalone", NULL};
    wv_open(&e, args, 200);
    cr_assert(mtest_wait_until(wv_fallback, e.w, 10000), "the waker falls back to polling");
    for (int i = 0; i < 50; i++) {
        wk_enqueue(e.p, i, 0);
    }
    cr_assert_eq(wk_await_all(&e.rec, 50, 20000), 50, "polling delivers every message");
    for (int i = 50; i < 60; i++) {
        wk_enqueue(e.p, i, 0);
        cr_assert(wk_await_started(&e.rec, i, 2000), "an idle consumer still wakes (%d)", i);
    }
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(e.w, &c);
    cr_assert(c.polling_fallback);
    cr_assert_not(c.change_stream_active);
    cr_assert_geq(c.wakeups_poll, 1);
    cr_assert_eq(atomic_load(&e.log.matches), 1, "the fallback is logged once");
    wv_close(&e);
}



/* Enqueues through P, retrying while the server is still coming back. */
static void
wv_enqueue_retrying(mongoq_queue_t *p, int i)
{
    bson_error_t error;
    bson_t *payload = BCON_NEW("i", BCON_INT32(i));
    bool ok = false;
    for (int attempt = 0; attempt < 50 && !ok; attempt++) {
        ok = mongoq_enqueue(p, payload, NULL, NULL, &error);
        if (!ok) {
            usleep(100 * 1000); /* the server is restarting: nothing to wait on but time */
        }
    }
    cr_assert(ok, "enqueue %d after the restart: %s", i, error.message);
    bson_destroy(payload);
}

Test(waker_server, stream_resumes_after_kill_9_and_restart)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    wv_env_t e;
    char *dir = mtest_tmpdir("waker");
    const char *args[] = {"--dbpath", dir, NULL};
    wv_open(&e, args, 10000); /* a poll would take 10 s: delivery below is by events */
    cr_assert(mtest_wait_until(wk_stream_active, e.w, 10000), "the change stream opens");
    for (int i = 0; i < 5; i++) {
        wk_enqueue(e.p, i, 0);
    }
    cr_assert_eq(wk_await_all(&e.rec, 5, 5000), 5);

    int port = e.srv.port;
    /*
     * The test server's hello.electionId is a fresh ObjectId per start: a restart within the
     * same second may draw a smaller one, and drivers then ignore the new primary as stale
     * (SDAM). Restart in a later second (mongod's electionId grows with the term instead).
     */
    time_t started = time(NULL);
    while (time(NULL) <= started) {
        usleep(20 * 1000);
    }
    mtest_server_stop(&e.srv, true);
    cr_assert(mtest_server_start(&e.srv, args, port), "restart on the same port and --dbpath");
    for (int i = 5; i < 25; i++) {
        wv_enqueue_retrying(e.p, i);
    }
    cr_assert_eq(wk_await_all(&e.rec, 25, 8000), 25, "every message after the restart");
    cr_assert(mtest_wait_until(wk_stream_active, e.w, 10000), "the stream is open again");
    for (int i = 25; i < 30; i++) {
        wk_enqueue(e.p, i, 0);
        cr_assert(wk_await_started(&e.rec, i, 1000), "woken by events again (%d)", i);
    }
    wv_close(&e);
    mtest_tmpdir_remove(dir);
}

Test(waker_server, history_lost_while_held_up_makes_everyone_rescan)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    wv_env_t e;
    const char *args[] = {"--history", "5", NULL};
    wv_open(&e, args, 10000);
    cr_assert(mtest_wait_until(wk_stream_active, e.w, 10000), "the change stream opens");

    /*
     * Hold W's next getMore for 1.5 s while 20 messages push its resume point out. The waker
     * watches on a connection of its own, named "<appname>/mongoq-waker", and sends a getMore at
     * least every maxAwaitTimeMS (300 ms), so the next one is held whenever it comes.
     */
    mongoc_client_t *client = mongoc_client_new(e.srv.uri);
    int64_t before = mtest_fail_point(
        client, "{\"times\": 1}",
        "{\"failCommands\": [\"getMore\"], \"blockConnection\": true, "
        "\"blockTimeMS\": 1500, \"appName\": \"wv-worker/mongoq-waker\"}");
    for (int i = 0; i < 20; i++) {
        wk_enqueue(e.p, i, 0);
    }
    cr_assert_eq(wk_await_all(&e.rec, 20, 6000), 20, "the rescan finds every message");
    cr_assert_eq(mtest_fail_point(client, "\"off\"", NULL) - before, 1,
                 "W's getMore was held up");
    mongoc_client_destroy(client);
    wv_close(&e);
}

/*
 * mongod may log an update as a full replacement; the change stream then reports `replace` with
 * the whole document (https://www.mongodb.com/docs/manual/reference/change-events/replace/).
 * The waker's `$match` takes replacements of ready documents: a delayed message made due by a
 * pipeline update wakes W through the stream, not its 10 s poll. The test server's
 * --pipeline-updates-as-replace makes every pipeline update such a replacement.
 */
Test(waker_server, a_replace_event_of_a_ready_message_wakes_the_worker)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    wv_env_t e;
    const char *args[] = {"--pipeline-updates-as-replace", NULL};
    wv_open(&e, args, 10000);
    cr_assert(mtest_wait_until(wk_stream_active, e.w, 10000), "the change stream opens");
    wk_enqueue(e.p, 0, 3600 * 1000); /* an hour away: W has nothing to claim yet */
    mongoc_client_t *client = mongoc_client_new(e.srv.uri);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "wv", "q");
    bson_t *filter = BCON_NEW("status", "ready");
    bson_t *update = BCON_NEW("0", "{", "$set", "{", "run_at", "$$NOW", "}", "}");
    bson_error_t error;
    int64_t t0 = mtest_now_ms();
    cr_assert(mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error), "%s",
              error.message);
    cr_assert(wk_await_started(&e.rec, 0, 3000), "woken by the replace event, not the poll");
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(e.w, &c);
    cr_assert_geq(c.wakeups_change_stream, 1, "the change stream woke it");
    cr_log_info("started %" PRId64 " ms after the update", mtest_now_ms() - t0);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    wv_close(&e);
}

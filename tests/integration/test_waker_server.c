/*
 * The waker against private test servers (skipped when they cannot be spawned): a standalone
 * server without change streams (polling fallback), a server killed with -9 and restarted on
 * the same --dbpath and port (the stream resumes), and a server whose history (--history 5)
 * moves past the waker's resume point while it is held up (ChangeStreamHistoryLost: rescan).
 */
#include "world.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FALLBACK_LOG "cannot open a change stream"
#define WV_REOPEN_BACKOFF_MS 2000 /* MAX_REOPEN_BACKOFF_MS in src/waker_thread.c */

/* The private server of the running test, killed by the suite's fini if an assertion fails. */
static mtest_server_t *wv_current;

static void
wv_suite_fini(void)
{
    if (wv_current && wv_current->pid > 0) {
        mtest_server_stop(wv_current, true);
    }
}

TestSuite(waker_server, .fini = wv_suite_fini, .timeout = 120);

/* A private server and a world on it: W (w.queue) watched by a worker, P (w.producer). */
typedef struct {
    mtest_server_t srv;
    world_t w;
    world_rec_t rec;
    world_log_t log; /* W's log lines about the polling fallback */
    mongoq_worker_t *worker;
} wv_env_t;

/* Starts a private server with args, W (with a worker) and P on it. */
static void
wv_open(wv_env_t *e, const char *const *args, int64_t poll_ms)
{
    memset(e, 0, sizeof *e);
    cr_assert(mtest_server_start(&e->srv, args, 0), "private server starts");
    wv_current = &e->srv;
    world_rec_init(&e->rec);
    e->log.needle = FALLBACK_LOG;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.poll_interval_ms = poll_ms;
    mongoq_queue_opts_t wopts = opts;
    wopts.log_fn = world_log_fn;
    wopts.log_user_data = &e->log;
    world_open_on(&e->w, e->srv.uri, &wopts, 0);
    world_open_producer(&e->w, &opts);
    e->worker = world_worker_start(e->w.queue, &e->rec, 2);
}

static void
wv_close(wv_env_t *e)
{
    mongoq_worker_destroy(e->worker);
    world_close(&e->w);
    mtest_server_stop(&e->srv, false);
    wv_current = NULL;
    world_rec_destroy(&e->rec);
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
    cr_assert(mtest_wait_until(wv_fallback, e.w.queue, 10000), "the waker falls back to polling");
    for (int i = 0; i < 50; i++) {
        world_enqueue(e.w.producer, i, NULL, NULL);
    }
    cr_assert_eq(world_await_all(&e.rec, 50, 20000), 50, "polling delivers every message");
    /* Each message meets both threads waiting (a thread just done with the previous message
     * would find it with its next claim, no wake-up needed): only a poll can deliver it. */
    mongoq_counters_t before = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(e.w.queue, &before);
    world_idle_t idle = {e.w.queue, 2};
    for (int i = 50; i < 60; i++) {
        cr_assert(mtest_wait_until(world_idle_reached, &idle, 5000), "both threads wait (%d)", i);
        world_enqueue(e.w.producer, i, NULL, NULL);
        cr_assert(world_await_started(&e.rec, i, 2000), "an idle consumer still wakes (%d)", i);
    }
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(e.w.queue, &c);
    cr_assert(c.polling_fallback);
    cr_assert_not(c.change_stream_active);
    cr_assert_geq(c.wakeups_poll - before.wakeups_poll, 10, "every message found after a poll");
    cr_assert_eq(c.wakeups_change_stream, 0);
    cr_assert_eq(atomic_load(&e.log.matches), 1, "the fallback is logged once");
    wv_close(&e);
}



/* Enqueues through P, retrying while the server is still coming back. */
static void
wv_enqueue_retrying(mongoq_queue_t *p, int i)
{
    bson_error_t error;
    bson_t payload;
    world_payload(&payload, i);
    bool ok = false;
    for (int attempt = 0; attempt < 50 && !ok; attempt++) {
        ok = mongoq_enqueue(p, &payload, NULL, NULL, &error);
        if (!ok) {
            usleep(100 * 1000); /* the server is restarting: nothing to wait on but time */
        }
    }
    cr_assert(ok, "enqueue %d after the restart: %s", i, error.message);
    bson_destroy(&payload);
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
    cr_assert(mtest_wait_until(world_stream_active, e.w.queue, 10000), "the change stream opens");
    for (int i = 0; i < 5; i++) {
        world_enqueue(e.w.producer, i, NULL, NULL);
    }
    cr_assert_eq(world_await_all(&e.rec, 5, 5000), 5);

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
    /* A stale single-threaded connection would keep the restarted server out of selection for
     * five seconds; the waker reconnects instead (src/waker_thread.c). While the server was
     * down its reopen backoff grew to at most WV_REOPEN_BACKOFF_MS: its next try may be that
     * long after the restart, then a new connection, the aggregate and the refresh. */
    cr_assert(mtest_wait_until(world_stream_active, e.w.queue, WV_REOPEN_BACKOFF_MS + 3000),
              "the stream is open again within %d ms of the restart", WV_REOPEN_BACKOFF_MS + 3000);
    for (int i = 5; i < 25; i++) {
        wv_enqueue_retrying(e.w.producer, i);
    }
    cr_assert_eq(world_await_all(&e.rec, 25, 8000), 25, "every message after the restart");
    cr_assert(mtest_wait_until(world_stream_active, e.w.queue, 10000), "the stream is open again");
    for (int i = 25; i < 30; i++) {
        world_enqueue(e.w.producer, i, NULL, NULL);
        cr_assert(world_await_started(&e.rec, i, 1000), "woken by events again (%d)", i);
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
    cr_assert(mtest_wait_until(world_stream_active, e.w.queue, 10000), "the change stream opens");

    /*
     * Hold W's next getMore for 1.5 s while 20 messages push its resume point out. The waker
     * watches on a connection of its own, named "<appname>/mongoq-waker", and sends a getMore at
     * least every maxAwaitTimeMS (300 ms), so the next one is held whenever it comes.
     */
    char *waker = bson_strdup_printf("%s/mongoq-waker", e.w.db);
    int64_t before = world_fail_point_app(
        &e.w, waker, "{\"times\": 1}",
        "\"failCommands\": [\"getMore\"], \"blockConnection\": true, \"blockTimeMS\": 1500");
    bson_free(waker);
    for (int i = 0; i < 20; i++) {
        world_enqueue(e.w.producer, i, NULL, NULL);
    }
    cr_assert_eq(world_await_all(&e.rec, 20, 6000), 20, "the rescan finds every message");
    cr_assert_eq(world_fail_point_off(&e.w, before), 1, "W's getMore was held up");
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
    cr_assert(mtest_wait_until(world_stream_active, e.w.queue, 10000), "the change stream opens");
    mongoq_enqueue_opts_t later = MONGOQ_ENQUEUE_OPTS_INIT;
    later.delay_ms = 3600 * 1000; /* an hour away: W has nothing to claim yet */
    world_enqueue(e.w.producer, 0, &later, NULL);
    world_idle_t idle = {e.w.queue, 2};
    cr_assert(mtest_wait_until(world_idle_reached, &idle, 5000), "W's threads wait");
    bson_t *filter = BCON_NEW("status", "ready");
    bson_t *update = BCON_NEW("0", "{", "$set", "{", "run_at", "$$NOW", "}", "}");
    bson_error_t error;
    int64_t t0 = mtest_now_ms();
    cr_assert(mongoc_collection_update_one(e.w.coll, filter, update, NULL, NULL, &error), "%s",
              error.message);
    cr_assert(world_await_started(&e.rec, 0, 3000), "woken by the replace event, not the poll");
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(e.w.queue, &c);
    cr_assert_geq(c.wakeups_change_stream, 1, "the change stream woke it");
    cr_log_info("started %" PRId64 " ms after the update", mtest_now_ms() - t0);
    bson_destroy(update);
    bson_destroy(filter);
    wv_close(&e);
}

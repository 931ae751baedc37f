/*
 * mongoq_queue_pause / _resume / _is_paused: a queue-wide state in the database. Handles on
 * separate pools (w.queue, w.producer) stand for separate processes: each learns of a pause
 * through its own waker (change stream); a consumer in a process of its own measures the stop
 * and resume latencies across processes.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "world.h"

TestSuite(api_pause, .timeout = 120);

static bool
sees_paused(void *queue)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(queue, &c);
    return c.paused;
}

static bool
sees_running(void *queue)
{
    return !sees_paused(queue);
}

/* The queue's waker is up (its change stream open): a claim that waited started it. */
static void
start_waker(world_t *w)
{
    mongoq_consumer_t *c = world_consumer(w, NULL, 0);
    cr_assert_null(world_claim(c, 50));
    mongoq_consumer_destroy(c);
    cr_assert(mtest_wait_until(world_stream_active, w->queue, 10000), "the change stream opens");
}

Test(api_pause, a_pause_elsewhere_stops_claims_without_a_round_trip_per_claim)
{
    world_t w;
    bson_error_t error;
    world_open(&w, NULL, WORLD_COUNTER);
    world_open_producer(&w, NULL);
    start_waker(&w);
    cr_assert(mongoq_queue_pause(w.producer, &error), "%s", error.message);
    cr_assert(mtest_wait_until(sees_paused, w.queue, 10000), "the change stream carries the pause");
    world_enqueue(w.producer, 1, NULL, NULL);

    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mtest_counter_reset(w.counter);
    for (int i = 0; i < 20; i++) {
        cr_assert_null(world_claim(c, 0), "paused: nothing is claimed");
    }
    mongoq_message_t *batch[4];
    size_t got = 9;
    cr_assert(mongoq_consumer_claim_many(c, 4, 0, batch, &got, &error), "%s", error.message);
    cr_assert_eq(got, 0);
    cr_assert_eq(mtest_counter_get(w.counter, NULL), 0, "a paused claim asks the server nothing");

    bool paused = false;
    cr_assert(mongoq_queue_is_paused(w.queue, &paused, &error), "%s", error.message);
    cr_assert(paused);
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(w.queue, &stats, &error), "%s", error.message);
    cr_assert(stats.paused);
    cr_assert_eq(stats.ready, 1, "the control document is not a message");

    cr_assert(mongoq_queue_resume(w.producer, &error), "%s", error.message);
    mongoq_message_t *msg = world_claim(c, 10000);
    cr_assert(msg, "the resume wakes the waiting claim");
    cr_assert_eq(world_seq(msg), 1);
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    cr_assert_not(sees_paused(w.queue));
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* A claim waiting through the pause returns the message once another handle resumes. */
static void *
claim_waiting(void *arg)
{
    mongoq_consumer_t *c = arg;
    mongoq_message_t *msg = NULL;
    bson_error_t error;
    if (!mongoq_consumer_claim(c, 20000, &msg, &error)) {
        return NULL;
    }
    return msg;
}

Test(api_pause, held_messages_go_on_and_a_waiting_claim_wakes_on_resume)
{
    world_t w;
    bson_error_t error;
    world_open(&w, NULL, 0);
    world_open_producer(&w, NULL);
    world_enqueue_n(&w, 1, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mongoq_message_t *held = world_claim(c, 0);
    cr_assert(held);
    cr_assert_null(world_claim(c, 50)); /* a wait starts the waker */
    cr_assert(mtest_wait_until(world_stream_active, w.queue, 10000));

    cr_assert(mongoq_queue_pause(w.queue, &error), "%s", error.message);
    cr_assert(sees_paused(w.queue), "this process sees its own pause at once");
    cr_assert(mongoq_message_extend(held, 60000, &error), "extend goes on: %s", error.message);
    cr_assert(mongoq_message_ack(held, &error), "ack goes on: %s", error.message);
    mongoq_message_destroy(held);

    world_enqueue(w.producer, 7, NULL, NULL);
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, claim_waiting, c), 0);
    /* The claim is waiting (idle) and stays empty-handed while paused. */
    cr_assert(mtest_wait_until(sees_paused, w.queue, 1000));
    cr_assert_eq(world_count(&w, "{\"status\": \"processing\"}"), 0);
    cr_assert(mongoq_queue_resume(w.producer, &error), "%s", error.message);
    void *out = NULL;
    pthread_join(thread, &out);
    mongoq_message_t *msg = out;
    cr_assert(msg, "the waiting claim got the message after the resume");
    cr_assert_eq(world_seq(msg), 7);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

Test(api_pause, a_pause_outlives_purge_and_reopening)
{
    world_t w;
    bson_error_t error;
    world_open(&w, NULL, 0);
    world_enqueue_n(&w, 3, NULL, NULL);
    cr_assert(mongoq_queue_pause(w.queue, &error), "%s", error.message);
    cr_assert(mongoq_queue_pause(w.queue, &error), "idempotent: %s", error.message);
    int64_t deleted = 0;
    cr_assert(mongoq_queue_purge(w.queue, NULL, &deleted, &error), "%s", error.message);
    cr_assert_eq(deleted, 3, "messages only");
    world_enqueue_n(&w, 1, NULL, NULL);
    /* A new handle (a restarted process) knows nothing yet: its first claim reads the state. */
    world_open_producer(&w, NULL);
    mongoq_consumer_t *c = mongoq_consumer_new(w.producer, NULL, &error);
    cr_assert(c, "%s", error.message);
    mongoq_message_t *msg = NULL;
    cr_assert(mongoq_consumer_claim(c, 0, &msg, &error), "%s", error.message);
    cr_assert_null(msg, "still paused");
    cr_assert(sees_paused(w.producer));
    cr_assert(mongoq_queue_resume(w.queue, &error), "%s", error.message);
    /* Claims that never wait still learn of the resume: the first claim started the waker's
     * thread, whose change stream keeps the state current. */
    for (int i = 0; i < 400 && !msg; i++) {
        cr_assert(mongoq_consumer_claim(c, 0, &msg, &error), "%s", error.message);
        if (!msg) {
            usleep(10000); /* a hand-written claim loop's pause between tries */
        }
    }
    cr_assert(msg, "the resume reached a process whose claims never wait");
    cr_assert(sees_running(w.producer));
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* ---- across processes ------------------------------------------------------------------------ */

Test(api_pause, pause_and_resume_reach_another_process)
{
    if (!world_child_program()) {
        cr_skip_test("mongoq-child-consumer was not built");
    }
    world_t w;
    world_child_t child;
    bson_error_t error;
    world_open(&w, NULL, 0);
    world_child_start(&child, &w, NULL, NULL);
    cr_assert_str_eq(world_child_cmd(&child, "claim 50", 5000), "none"); /* starts its waker */

    /* Stop latency: from the pause until the child no longer claims a due message. */
    int64_t t0 = mtest_now_ms();
    cr_assert(mongoq_queue_pause(w.queue, &error), "%s", error.message);
    int64_t stopped_ms = -1;
    world_enqueue(w.queue, 1, NULL, NULL);
    for (int i = 0; i < 500 && stopped_ms < 0; i++) {
        const char *line = world_child_cmd(&child, "claim 0", 5000);
        if (strcmp(line, "none") == 0) {
            stopped_ms = mtest_now_ms() - t0;
        } else {
            world_child_msg_t m;
            cr_assert(world_child_parse_msg(line, &m), "%s", line);
            char cmd[64], hex[25];
            bson_oid_to_string(&m.id, hex);
            snprintf(cmd, sizeof cmd, "ack %s", hex);
            cr_assert_str_eq(world_child_cmd(&child, cmd, 5000), "ok");
            world_enqueue(w.queue, 1, NULL, NULL);
        }
    }
    cr_assert_geq(stopped_ms, 0, "the other process stopped claiming");
    cr_log_info("pause reached the other process within %lld ms", (long long)stopped_ms);
    for (int i = 0; i < 5; i++) {
        cr_assert_str_eq(world_child_cmd(&child, "claim 0", 5000), "none", "and stays stopped");
    }

    /* Resume latency: from the resume until the child's waiting claim returns the message. */
    const char *cmd = "claim 20000\n";
    cr_assert_eq(write(child.to_child, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
    int64_t t1 = mtest_now_ms();
    cr_assert(mongoq_queue_resume(w.queue, &error), "%s", error.message);
    const char *line = world_child_read(&child, 20000);
    cr_assert(line && strncmp(line, "msg ", 4) == 0, "the waiting claim returned: %s",
              line ? line : "(nothing)");
    cr_log_info("resume reached the other process's waiting claim in %lld ms",
                (long long)(mtest_now_ms() - t1));
    world_child_stop(&child, false);
    world_close(&w);
}

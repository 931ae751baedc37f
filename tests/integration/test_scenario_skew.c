/*
 * Scenario: a consumer whose clock is ten minutes off (ahead or behind) shares a queue with
 * consumers whose clocks are right. Delivery is decided on the server's clock, so the skewed
 * consumer neither claims a delayed message early, nor loses its leases to a normal reaper, nor
 * steals or reaps a normal consumer's lease, and normal consumers cannot steal its leases.
 *
 * The skewed consumer is tests/tools/child_consumer run with libfaketime preloaded
 * (FAKETIME=+600 or -600 seconds). libfaketime 0.9.10 also fakes CLOCK_MONOTONIC by default
 * (it then reads as the faked wall clock), which is not what a skewed machine looks like:
 * FAKETIME_DONT_FAKE_MONOTONIC=1 keeps the monotonic clock real, and
 * FAKETIME_FORCE_MONOTONIC_FIX=0 keeps its pthread_cond_timedwait on a CLOCK_MONOTONIC condition
 * from returning at once (which turned every timed wait of the library into a busy loop; found by
 * the chaos run).
 */
#include <criterion/criterion.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

#define SKEW_LEASE_MS 30000
#define DELAY_MS 2000

/* libfaketimeMT (the thread-safe build) or NULL; the path lives in a static buffer. */
static const char *
faketime_library(void)
{
    static char path[512];
    glob_t g;
    const char *found = NULL;
    if (glob("/usr/lib/*/faketime/libfaketimeMT.so.1", 0, NULL, &g) == 0 && g.gl_pathc > 0) {
        snprintf(path, sizeof path, "%s", g.gl_pathv[0]);
        found = path;
    }
    globfree(&g);
    return found;
}

static void
start_skewed(world_child_t *child, world_t *s, int skew_s)
{
    static char preload[600], faketime[32];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s", faketime_library());
    snprintf(faketime, sizeof faketime, "FAKETIME=%+d", skew_s);
    const char *env[] = {preload, faketime, "FAKETIME_DONT_FAKE_MONOTONIC=1",
                         "FAKETIME_FORCE_MONOTONIC_FIX=0",
                         "ASAN_OPTIONS=verify_asan_link_order=0", NULL};
    char lease[32];
    snprintf(lease, sizeof lease, "%d", SKEW_LEASE_MS);
    const char *args[] = {"--lease-ms", lease, NULL}; /* its background reaper stays on */
    world_child_start(child, s, args, env);

    /* Make sure the clock really is off, or the test proves nothing. */
    int64_t before = mtest_wall_ms();
    const char *line = world_child_cmd(child, "clock", 10000);
    long long child_now = 0;
    cr_assert(sscanf(line, "clock %lld", &child_now) == 1, "clock answered: %s", line);
    int64_t off = (int64_t)child_now - before;
    cr_assert(llabs(off - (long long)skew_s * 1000) < 60000,
              "the child's clock is off by %" PRId64 " ms, wanted %d s", off, skew_s);
}

static void
expect_none(world_child_t *child, const char *cmd, const char *why)
{
    const char *line = world_child_cmd(child, cmd, 20000);
    cr_expect(strcmp(line, "none") == 0 || strcmp(line, "reaped 0") == 0, "%s: \"%s\" answered %s",
              why, cmd, line);
}

/* A message delayed DELAY_MS is claimed by the skewed consumer, but not before its run_at. */
static world_child_msg_t
skewed_claims_delayed(world_child_t *child, world_t *s)
{
    mongoq_enqueue_opts_t eo = MONGOQ_ENQUEUE_OPTS_INIT;
    eo.delay_ms = DELAY_MS;
    bson_oid_t id;
    int64_t t0 = mtest_now_ms();
    world_enqueue(s->queue, 1, &eo, &id);
    bson_t doc;
    cr_assert(world_find(s, &id, &doc));
    int64_t run_at = mtest_doc_date(&doc, "run_at");
    bson_destroy(&doc);
    cr_assert(run_at != INT64_MIN, "the message has no run_at date");

    const char *line = world_child_cmd(child, "claim 0", 20000);
    if (mtest_now_ms() - t0 < DELAY_MS - 500) {
        cr_expect(strcmp(line, "none") == 0, "claimed a message delayed %d ms at once: %s",
                  DELAY_MS, line);
    }
    line = world_child_cmd(child, "claim 10000", 20000);
    int64_t waited = mtest_now_ms() - t0;
    world_child_msg_t msg;
    cr_assert(world_child_parse_msg(line, &msg), "the delayed message was not claimed: %s", line);
    cr_expect(bson_oid_equal(&msg.id, &id));
    /* On the server's clock the claim came at lease_expires_at - lease. */
    int64_t claimed_at = msg.lease_expires_at - SKEW_LEASE_MS;
    cr_expect(claimed_at >= run_at, "claimed %" PRId64 " ms before its run_at",
              run_at - claimed_at);
    /* And on ours: not before the delay (less the clock estimate's error) passed. */
    cr_expect(waited >= DELAY_MS - 250, "claimed after %" PRId64 " ms of a %d ms delay", waited,
              DELAY_MS);
    cr_log_info("skew: delayed message claimed after %" PRId64 " ms (server: %" PRId64
                " ms after run_at)",
                waited, claimed_at - run_at);
    return msg;
}

/* The skewed consumer's lease holds against a normal reaper and a normal claimer. */
static void
skewed_lease_holds(world_child_t *child, world_t *s, const world_child_msg_t *msg)
{
    bson_error_t error;
    int64_t reaped = -1;
    cr_assert(mongoq_queue_reap(s->queue, &reaped, &error), "reap: %s", error.message);
    cr_expect(reaped == 0, "a normal reaper took %" PRId64 " leases of the skewed consumer",
              reaped);
    mongoq_consumer_t *consumer = world_consumer(s, NULL, 0);
    mongoq_message_t *stolen = NULL;
    cr_assert(mongoq_consumer_claim(consumer, 0, &stolen, &error), "claim: %s", error.message);
    cr_expect(stolen == NULL, "a normal consumer stole the skewed consumer's lease");
    mongoq_message_destroy(stolen);
    mongoq_consumer_destroy(consumer);

    char hex[25], cmd[96];
    bson_oid_to_string(&msg->id, hex);
    snprintf(cmd, sizeof cmd, "extend %s %d", hex, SKEW_LEASE_MS);
    const char *line = world_child_cmd(child, cmd, 20000);
    cr_expect(strcmp(line, "ok") == 0, "the skewed consumer lost its lease: %s", line);
    snprintf(cmd, sizeof cmd, "ack %s", hex);
    line = world_child_cmd(child, cmd, 20000);
    cr_expect(strcmp(line, "ok") == 0, "the skewed consumer could not ack: %s", line);
}

/* A normal consumer's lease holds against the skewed consumer's claims and reaping. */
static void
normal_lease_holds(world_child_t *child, world_t *s)
{
    bson_error_t error;
    world_enqueue(s->queue, 2, NULL, NULL);
    mongoq_consumer_t *consumer = world_consumer(s, NULL, SKEW_LEASE_MS);
    mongoq_message_t *msg = NULL;
    cr_assert(mongoq_consumer_claim(consumer, 5000, &msg, &error), "claim: %s", error.message);
    cr_assert(msg != NULL, "the normal consumer got nothing");

    expect_none(child, "claim 0", "the skewed consumer stole a lease");
    expect_none(child, "reap", "the skewed consumer reaped a live lease");
    cr_expect(mongoq_message_ack(msg, &error), "the normal consumer lost its lease: %s",
              error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(consumer);
}

static void
run_skew(int skew_s)
{
    if (world_child_program() == NULL) {
        cr_skip_test("tests/tools/child_consumer not built");
    }
    if (faketime_library() == NULL) {
        cr_skip_test("libfaketime is not installed (apt-get install faketime)");
    }
    world_t s;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true; /* reaping is done by hand, to see what it takes */
    opts.lease_ms = SKEW_LEASE_MS;
    world_open(&s, &opts, 0);
    world_child_t child;
    start_skewed(&child, &s, skew_s);

    world_child_msg_t msg = skewed_claims_delayed(&child, &s);
    skewed_lease_holds(&child, &s, &msg);
    normal_lease_holds(&child, &s);

    world_child_stop(&child, false);
    world_assert_empty(&s);
    world_close(&s);
}

Test(scenario_skew, consumer_ten_minutes_ahead, .timeout = 90)
{
    run_skew(600);
}

Test(scenario_skew, consumer_ten_minutes_behind, .timeout = 90)
{
    run_skew(-600);
}

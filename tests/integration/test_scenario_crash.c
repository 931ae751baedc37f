/*
 * Scenario: a consumer process dies (SIGKILL) while it holds leases. Nothing is lost: once the
 * leases expire on the server's clock, a reaping pass hands every message back, a surviving
 * consumer receives each again (attempts 2) and completes it.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "world.h"

#define N_CRASH 25
#define CHILD_LEASE_MS 3000

/* The child claims every message (a batch, then one by one); returns how many it holds. */
static int
child_claims_all(world_child_t *child, world_child_msg_t *held)
{
    int n = 0;
    const char *line = world_child_cmd(child, "claim_many 20 5000", 20000);
    while (line && world_child_parse_msg(line, &held[n]) && n < N_CRASH) {
        n++;
        line = world_child_read(child, 20000);
    }
    cr_assert(line && strncmp(line, "end ", 4) == 0, "claim_many answered: %s", line ? line : "-");
    while (n < N_CRASH) {
        line = world_child_cmd(child, "claim 5000", 20000);
        cr_assert(world_child_parse_msg(line, &held[n]), "claim answered: %s", line);
        n++;
    }
    for (int i = 0; i < n; i++) {
        cr_assert(held[i].attempts == 1, "first delivery has attempts %d", held[i].attempts);
    }
    return n;
}

static void
redeliver_and_complete(world_t *s, const world_child_msg_t *held)
{
    bson_error_t error;
    mongoq_consumer_t *consumer = world_consumer(s, NULL, 0);
    int seen[N_CRASH] = {0};
    for (int i = 0; i < N_CRASH; i++) {
        mongoq_message_t *msg = NULL;
        cr_assert(mongoq_consumer_claim(consumer, 5000, &msg, &error), "claim: %s", error.message);
        cr_assert(msg != NULL, "message %d of %d was not delivered again", i + 1, N_CRASH);
        int64_t seq = world_seq(msg);
        cr_assert(seq >= 0 && seq < N_CRASH && !seen[seq], "unexpected seq %" PRId64, seq);
        seen[seq] = 1;
        cr_expect(mongoq_message_attempts(msg) == 2, "redelivery has attempts %d",
                  mongoq_message_attempts(msg));
        bool was_held = false;
        for (int k = 0; k < N_CRASH; k++) {
            was_held = was_held || bson_oid_equal(&held[k].id, mongoq_message_id(msg));
        }
        cr_expect(was_held, "a message the dead consumer did not hold");
        cr_assert(mongoq_message_ack(msg, &error), "ack: %s", error.message);
        mongoq_message_destroy(msg);
    }
    mongoq_message_t *extra = NULL;
    cr_assert(mongoq_consumer_claim(consumer, 0, &extra, &error), "claim: %s", error.message);
    cr_expect(extra == NULL, "a message delivered a third time");
    mongoq_message_destroy(extra);
    mongoq_consumer_destroy(consumer);
}

Test(scenario_crash, killed_consumer_loses_nothing, .timeout = 90)
{
    if (world_child_program() == NULL) {
        cr_skip_test("tests/tools/child_consumer not built");
    }
    world_t s;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true; /* this test reaps by hand, so it can count */
    world_open(&s, &opts, 0);
    world_enqueue_n(&s, N_CRASH, NULL, NULL);

    char lease_arg[32];
    snprintf(lease_arg, sizeof lease_arg, "%d", CHILD_LEASE_MS);
    const char *args[] = {"--lease-ms", lease_arg, "--no-reaper", NULL};
    world_child_t child;
    world_child_start(&child, &s, args, NULL);
    world_child_msg_t held[N_CRASH];
    int64_t claimed_at = mtest_now_ms();
    child_claims_all(&child, held);

    /* Dies holding every lease: no ack, no clean shutdown. */
    pid_t pid = child.pid;
    cr_assert(kill(pid, SIGKILL) == 0);
    int status = 0;
    cr_assert(waitpid(pid, &status, 0) == pid);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    child.pid = 0;
    world_child_stop(&child, true);

    mongoq_stats_t st = MONGOQ_STATS_INIT;
    bson_error_t error;
    cr_assert(mongoq_queue_stats(s.queue, &st, &error), "stats: %s", error.message);
    cr_expect(st.processing == N_CRASH && st.ready == 0,
              "after the kill: processing %" PRId64 ", ready %" PRId64, st.processing, st.ready);

    /* While the leases hold, a reaping pass must leave them alone (checked only when this
     * process is sure a good margin of the lease is left). */
    int64_t early = 0;
    cr_assert(mongoq_queue_reap(s.queue, &early, &error), "reap: %s", error.message);
    if (mtest_now_ms() - claimed_at < CHILD_LEASE_MS - 1000) {
        cr_expect(early == 0, "reaped %" PRId64 " messages whose leases still held", early);
    }

    /* Leases expire on the server's clock: reap until all came back (bounded). */
    int64_t reclaimed = early + world_reap_until(&s, N_CRASH - early, CHILD_LEASE_MS + 15000);
    cr_assert(reclaimed == N_CRASH, "reaped %" PRId64 " of %d", reclaimed, N_CRASH);
    int64_t server_now = mtest_server_now_ms(s.client);
    for (int i = 0; i < N_CRASH; i++) {
        cr_expect(server_now >= held[i].lease_expires_at, "reaped before the lease ended");
    }

    redeliver_and_complete(&s, held);
    world_assert_empty(&s);
    world_close(&s);
}

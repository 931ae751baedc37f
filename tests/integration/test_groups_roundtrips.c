/*
 * Round trips of a grouped ack, counted with libmongoc's command monitoring (every command
 * started, commitTransaction included, is one round trip; the clock's hellos are left out).
 * Deterministic counts, so asserted (docs/design.md, Groups: Costs):
 *
 *   ack that empties its group           delete (message + group document) + commit   = 2
 *   ack that gives a place up (N = 2)    delete + group findAndModify + commit        = 3
 *   ack that admits the next (FIFO)      delete + group fAM + head fAM + commit       = 4
 *
 * Before group_finish.c (promote first, then the group document's delete or $inc): 4, 5, 4.
 */
#include <criterion/criterion.h>

#include "world.h"

TestSuite(groups_roundtrips, .timeout = 60);

static int64_t
work_commands(mtest_counter_t *c)
{
    return mtest_counter_get(c, NULL) - mtest_counter_get(c, "hello") -
           mtest_counter_get(c, "isMaster");
}

/* Enqueues n messages into group g, claims `claim` of them, counts the ack of the first. */
static int64_t
ack_round_trips(int32_t concurrency, int n, const char *what)
{
    world_t w;
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = concurrency;
    opts.no_change_stream = true;
    opts.no_reaper = true;
    world_open(&w, &opts, WORLD_COUNTER);
    mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
    eopts.group = "g";
    for (int i = 0; i < n; i++) {
        world_enqueue(w.queue, i, &eopts, NULL);
    }
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 5000);
    cr_assert_not_null(msg);
    mtest_counter_reset(w.counter);
    cr_assert(mongoq_message_ack(msg, &error), "ack: %s", error.message);
    int64_t rt = work_commands(w.counter);
    cr_log_info("grouped ack, %s: %lld round trips (delete %lld, findAndModify %lld, update "
                "%lld, commitTransaction %lld)",
                what, (long long)rt, (long long)mtest_counter_get(w.counter, "delete"),
                (long long)mtest_counter_get(w.counter, "findAndModify"),
                (long long)mtest_counter_get(w.counter, "update"),
                (long long)mtest_counter_get(w.counter, "commitTransaction"));
    printf("grouped ack, %s: %lld round trips\n", what, (long long)rt);
    mongoq_message_destroy(msg);
    /* the rest, so that the world is left empty */
    for (int i = 1; i < n; i++) {
        mongoq_message_t *m = world_claim(c, 5000);
        cr_assert_not_null(m);
        cr_assert(mongoq_message_ack(m, &error), "ack: %s", error.message);
        mongoq_message_destroy(m);
    }
    mongoq_consumer_destroy(c);
    cr_assert_eq(world_count(&w, "{}"), 0, "messages and group document all gone");
    world_close(&w);
    return rt;
}

Test(groups_roundtrips, ack_that_empties_its_group_is_one_command_and_the_commit)
{
    cr_assert_eq(ack_round_trips(1, 1, "the group's last message"), 2);
}

Test(groups_roundtrips, ack_that_gives_a_place_up_is_two_commands_and_the_commit)
{
    cr_assert_eq(ack_round_trips(2, 2, "a place given up, the group not empty"), 3);
}

Test(groups_roundtrips, ack_that_admits_the_next_is_three_commands_and_the_commit)
{
    cr_assert_eq(ack_round_trips(1, 2, "the next message admitted"), 4);
}

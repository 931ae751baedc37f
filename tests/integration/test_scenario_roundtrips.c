/*
 * Scenario: round trips per message, counted with libmongoc's command monitoring (every command
 * started is one round trip to the server). These are counts, not timings, so they are asserted:
 *
 *   one at a time   enqueue 1 + claim 1 + ack 1                      <= 3 per message
 *   batches of 100  enqueue_many 1 + claim_many <= 3 + ack_many 1    <= 5 per 100 = 0.05
 *
 * The queue runs without change stream and reaper so that only the caller's commands count. A
 * "hello" the library sends to refresh its server-clock estimate is counted and reported apart:
 * it is amortised over time, not paid per message.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

#define SINGLE_N 300
#define BATCH 100
#define BATCHES 10

static const char *const counted_names[] = {"insert",    "findAndModify", "update", "delete",
                                            "find",      "aggregate",     "hello",  "isMaster",
                                            "bulkWrite", "getMore",       NULL};

static void
setup(world_t *s)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_change_stream = true;
    opts.no_reaper = true;
    world_open(s, &opts, WORLD_COUNTER);
}

/* Commands started, without the clock-estimate hellos. */
static int64_t
work_commands(mtest_counter_t *c)
{
    return mtest_counter_get(c, NULL) - mtest_counter_get(c, "hello") -
           mtest_counter_get(c, "isMaster");
}

static void
print_breakdown(const char *what, mtest_counter_t *c, int64_t messages)
{
    char text[512] = "";
    size_t used = 0;
    for (int i = 0; counted_names[i]; i++) {
        int64_t n = mtest_counter_get(c, counted_names[i]);
        if (n > 0 && used < sizeof text) {
            used += (size_t)snprintf(text + used, sizeof text - used, " %s %" PRId64,
                                     counted_names[i], n);
        }
    }
    int64_t total = mtest_counter_get(c, NULL);
    printf("round trips, %s: %" PRId64 " for %" PRId64 " messages = %.3f per message (%.3f "
           "without clock hellos);%s\n",
           what, total, messages, (double)total / (double)messages,
           (double)work_commands(c) / (double)messages, text);
    cr_log_info("round trips, %s: %" PRId64 " / %" PRId64 " messages;%s", what, total, messages,
                text);
}

/* Primes the library (server-clock estimate, collection handles) outside the counted part. */
static void
warm_up(world_t *s, mongoq_consumer_t *consumer)
{
    bson_error_t error;
    world_enqueue(s->queue, -1, NULL, NULL);
    mongoq_message_t *msg = NULL;
    cr_assert(mongoq_consumer_claim(consumer, 5000, &msg, &error), "claim: %s", error.message);
    cr_assert(msg != NULL);
    cr_assert(mongoq_message_ack(msg, &error), "ack: %s", error.message);
    mongoq_message_destroy(msg);
    mtest_counter_reset(s->counter);
}

/* 900 sequential round trips: about 30 ms each under ASan next to scenario_load, so the
 * timeout leaves room for twice that; the counts, not the time, are what is asserted. */
Test(scenario_roundtrips, one_at_a_time, .timeout = 180)
{
    world_skip_sharded("counts the commands of one partition (a partitioned consumer probes every partition)");
    world_t s;
    setup(&s);
    bson_error_t error;
    mongoq_consumer_t *consumer = world_consumer(&s, NULL, 0);
    warm_up(&s, consumer);

    int missed = 0;
    for (int i = 0; i < SINGLE_N; i++) {
        world_enqueue(s.queue, i, NULL, NULL);
        mongoq_message_t *msg = NULL;
        cr_assert(mongoq_consumer_claim(consumer, 0, &msg, &error), "claim: %s", error.message);
        if (!msg) {
            missed++;
            cr_assert(mongoq_consumer_claim(consumer, 5000, &msg, &error), "claim: %s",
                      error.message);
        }
        cr_assert(msg != NULL, "an enqueued message was not claimable");
        cr_assert(mongoq_message_ack(msg, &error), "ack: %s", error.message);
        mongoq_message_destroy(msg);
    }
    print_breakdown("enqueue + claim + ack, one at a time", s.counter, SINGLE_N);
    cr_expect(missed == 0,
              "%d of %d messages enqueued without delay were not claimable at once "
              "(claim with wait 0 right after the enqueue returned)",
              missed, SINGLE_N);
    int64_t work = work_commands(s.counter);
    /* Clock hellos depend on elapsed time (a refresh every few seconds), not on messages:
     * printed above, not asserted. */
    cr_expect(work <= 3 * SINGLE_N, "%" PRId64 " round trips for %d messages (> 3 each)", work,
              SINGLE_N);

    mongoq_consumer_destroy(consumer);
    world_assert_empty(&s);
    world_close(&s);
}

/* One batch: enqueue_many (1 round trip), claim_many (<= 3), ack_many (1). */
static void
one_batch(world_t *s, mongoq_consumer_t *consumer, int64_t first_seq)
{
    bson_error_t error;
    bson_t docs[BATCH];
    const bson_t *ptrs[BATCH];
    for (int i = 0; i < BATCH; i++) {
        world_payload(&docs[i], first_seq + i);
        ptrs[i] = &docs[i];
    }
    int64_t before = work_commands(s->counter);
    cr_assert(mongoq_enqueue_many(s->queue, ptrs, BATCH, NULL, NULL, NULL, &error), "enqueue_many: %s",
              error.message);
    for (int i = 0; i < BATCH; i++) {
        bson_destroy(&docs[i]);
    }
    int64_t after_enqueue = work_commands(s->counter);
    cr_expect(after_enqueue - before == 1, "enqueue_many of %d took %" PRId64 " round trips", BATCH,
              after_enqueue - before);

    mongoq_message_t *msgs[BATCH];
    size_t n = 0;
    cr_assert(mongoq_consumer_claim_many(consumer, BATCH, 0, msgs, &n, &error), "claim_many: %s",
              error.message);
    cr_expect(n == BATCH,
              "claim_many with wait 0 right after enqueue_many returned %zu of %d "
              "messages enqueued without delay",
              n, BATCH);
    while (n < BATCH) { /* collect the rest so the batch completes; the count shows the cost */
        size_t more = 0;
        cr_assert(mongoq_consumer_claim_many(consumer, BATCH - n, 5000, msgs + n, &more, &error),
                  "claim_many: %s", error.message);
        cr_assert(more > 0, "enqueued messages not claimable after 5 s");
        n += more;
    }
    int64_t after_claim = work_commands(s->counter);
    cr_expect(after_claim - after_enqueue <= 3, "claim_many of %d took %" PRId64 " round trips",
              BATCH, after_claim - after_enqueue);

    cr_assert(mongoq_message_ack_many(msgs, n, &error), "ack_many: %s", error.message);
    int64_t after_ack = work_commands(s->counter);
    cr_expect(after_ack - after_claim == 1, "ack_many of %d took %" PRId64 " round trips", BATCH,
              after_ack - after_claim);
    for (size_t i = 0; i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
}

Test(scenario_roundtrips, batches_of_100, .timeout = 60)
{
    world_skip_sharded("counts the commands of one partition (a partitioned consumer probes every partition)");
    world_t s;
    setup(&s);
    mongoq_consumer_t *consumer = world_consumer(&s, NULL, 0);
    warm_up(&s, consumer);

    for (int b = 0; b < BATCHES; b++) {
        one_batch(&s, consumer, (int64_t)b * BATCH);
    }
    const int64_t n = (int64_t)BATCH * BATCHES;
    print_breakdown("enqueue_many + claim_many + ack_many, batches of 100", s.counter, n);
    int64_t work = work_commands(s.counter);
    int64_t total = mtest_counter_get(s.counter, NULL);
    cr_expect((double)work / (double)n <= 0.05, "%.3f round trips per message (> 0.05)",
              (double)work / (double)n);
    cr_expect((double)total / (double)n <= 0.1, "%.3f round trips per message with hellos (> 0.1)",
              (double)total / (double)n);

    mongoq_consumer_destroy(consumer);
    world_assert_empty(&s);
    world_close(&s);
}

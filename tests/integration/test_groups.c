/*
 * Message groups (docs/design.md, Groups): admission in enqueue order, one message in flight per
 * FIFO group, other groups and ungrouped messages never held back, what a dead message does to
 * its group (release or block) and how redrive and purge give places back, partitioned queues,
 * and the options refused with INVALID_ARG and nothing written. The concurrency tests are in
 * test_groups_load.c, the plans in test_groups_plans.c.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

TestSuite(groups, .timeout = 120);

static void
open_groups(world_t *w, int32_t limit, mongoq_group_dead_t dead, int32_t partitions)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = limit;
    opts.group_dead = dead;
    opts.partitions = partitions;
    opts.no_reaper = true;
    world_open(w, &opts, 0);
}

static void
enqueue_in(world_t *w, const char *group, int64_t seq)
{
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.group = group;
    world_enqueue(w->queue, seq, &opts, NULL);
}

/* Claims everything claimable now (up to 64) into msgs; returns how many. */
static size_t
claim_all(mongoq_consumer_t *c, mongoq_message_t **msgs)
{
    size_t got = 0, n = 1;
    bson_error_t error;
    /* claim_many takes from one partition per call: call again until one finds nothing (at
     * most 64 messages, so at most 65 calls). */
    for (int calls = 0; n > 0 && got < 64 && calls < 65; calls++) {
        cr_assert(mongoq_consumer_claim_many(c, 64 - got, 0, msgs + got, &n, &error), "%s",
                  error.message);
        got += n;
    }
    return got;
}

static bool
has_seq(mongoq_message_t **msgs, size_t n, int64_t seq)
{
    for (size_t i = 0; i < n; i++) {
        if (world_seq(msgs[i]) == seq) {
            return true;
        }
    }
    return false;
}

static void
destroy_all(mongoq_message_t **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
}

static void
ack(mongoq_message_t *msg)
{
    bson_error_t error;
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
}

/* Only each group's head is claimable; ungrouped messages are unaffected; acks admit the next. */
Test(groups, fifo_groups_admit_one_at_a_time_in_enqueue_order)
{
    world_t w;
    mongoq_message_t *msgs[64];
    bson_error_t error;
    open_groups(&w, 1, MONGOQ_GROUP_DEAD_RELEASE, 0);
    for (int i = 0; i < 3; i++) {
        enqueue_in(&w, "a", 100 + i);
        enqueue_in(&w, "b", 200 + i);
    }
    world_enqueue(w.queue, 1, NULL, NULL);
    world_enqueue(w.queue, 2, NULL, NULL);
    cr_assert_eq(world_count(&w, "{\"status\": \"waiting\"}"), 4);
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(w.queue, &stats, &error), "%s", error.message);
    cr_assert_eq(stats.waiting, 4);
    cr_assert_eq(stats.ready, 4);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    size_t n = claim_all(c, msgs);
    cr_assert_eq(n, 4, "two heads and two ungrouped messages, got %zu", n);
    cr_assert(has_seq(msgs, n, 100) && has_seq(msgs, n, 200) && has_seq(msgs, n, 1) &&
              has_seq(msgs, n, 2));
    for (size_t i = 0; i < n; i++) {
        const char *g = mongoq_message_group(msgs[i]);
        cr_assert(world_seq(msgs[i]) < 100 ? g == NULL : g != NULL);
    }
    cr_assert_eq(claim_all(c, msgs + n), 0, "nothing else while the heads are held");
    /* ack_many over grouped and ungrouped: each grouped ack admits its successor */
    cr_assert(mongoq_message_ack_many(msgs, n, &error), "%s", error.message);
    destroy_all(msgs, n);
    n = claim_all(c, msgs);
    cr_assert_eq(n, 2);
    cr_assert(has_seq(msgs, n, 101) && has_seq(msgs, n, 201));
    /* a retried message keeps its place: its successor stays waiting */
    for (size_t i = 0; i < n; i++) {
        cr_assert(mongoq_message_retry(msgs[i], 0, "again", &error), "%s", error.message);
    }
    destroy_all(msgs, n);
    n = claim_all(c, msgs);
    cr_assert_eq(n, 2);
    cr_assert(has_seq(msgs, n, 101) && has_seq(msgs, n, 201), "the retried ones again");
    for (size_t i = 0; i < n; i++) {
        cr_assert_eq(mongoq_message_attempts(msgs[i]), 2);
        ack(msgs[i]);
    }
    n = claim_all(c, msgs);
    cr_assert_eq(n, 2);
    cr_assert(has_seq(msgs, n, 102) && has_seq(msgs, n, 202));
    for (size_t i = 0; i < n; i++) {
        ack(msgs[i]);
    }
    cr_assert_eq(world_count(&w, "{}"), 0, "messages and group documents all gone");
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* N = 3: at most three of a group are claimable at once. */
Test(groups, concurrency_limit_admits_n_per_group)
{
    world_t w;
    mongoq_message_t *msgs[64];
    open_groups(&w, 3, MONGOQ_GROUP_DEAD_RELEASE, 0);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.group = "g";
    bson_t payloads[10];
    const bson_t *ptrs[10];
    size_t stored = 0;
    bson_error_t error;
    for (int i = 0; i < 10; i++) {
        world_payload(&payloads[i], i);
        ptrs[i] = &payloads[i];
    }
    cr_assert(mongoq_enqueue_many(w.queue, ptrs, 10, &opts, NULL, &stored, &error), "%s",
              error.message);
    cr_assert_eq(stored, 10);
    for (int i = 0; i < 10; i++) {
        bson_destroy(&payloads[i]);
    }
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    size_t n = claim_all(c, msgs);
    cr_assert_eq(n, 3);
    cr_assert(has_seq(msgs, n, 0) && has_seq(msgs, n, 1) && has_seq(msgs, n, 2));
    ack(msgs[0]);
    mongoq_message_t *more[64];
    size_t m = claim_all(c, more);
    cr_assert_eq(m, 1);
    cr_assert_eq(world_seq(more[0]), 3);
    ack(more[0]);
    for (size_t i = 1; i < n; i++) {
        ack(msgs[i]);
    }
    mongoq_group_info_t info[4] = {MONGOQ_GROUP_INFO_INIT, MONGOQ_GROUP_INFO_INIT,
                                   MONGOQ_GROUP_INFO_INIT, MONGOQ_GROUP_INFO_INIT};
    size_t groups = 0;
    cr_assert(mongoq_queue_groups(w.queue, NULL, info, 4, &groups, &error), "%s", error.message);
    cr_assert_eq(groups, 1);
    cr_assert_str_eq(info[0].name, "g");
    cr_assert_eq(info[0].active, 3);
    cr_assert_eq(info[0].waiting, 3);
    cr_assert_eq(info[0].in_flight, 0);
    cr_assert_eq(info[0].limit, 3);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* RELEASE: a dead head lets the next one go; redriven, it is delivered before later ones. */
Test(groups, a_dead_message_releases_its_group_and_redrive_puts_it_back_in_line)
{
    world_t w;
    bson_error_t error;
    open_groups(&w, 1, MONGOQ_GROUP_DEAD_RELEASE, 0);
    for (int i = 0; i < 3; i++) {
        enqueue_in(&w, "a", i);
    }
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert_eq(world_seq(msg), 0);
    cr_assert(mongoq_message_fail(msg, "broken", &error), "%s", error.message);
    mongoq_message_destroy(msg);
    msg = world_claim(c, 0);
    cr_assert(msg, "the group was released");
    cr_assert_eq(world_seq(msg), 1);
    int64_t moved = 0;
    cr_assert(mongoq_queue_redrive(w.queue, NULL, &moved, &error), "%s", error.message);
    cr_assert_eq(moved, 1);
    cr_assert_null(world_claim(c, 0), "seq 1 is still held: the redriven one waits");
    ack(msg);
    msg = world_claim(c, 0);
    cr_assert_eq(world_seq(msg), 0, "the redriven message is ahead of seq 2");
    ack(msg);
    msg = world_claim(c, 0);
    cr_assert_eq(world_seq(msg), 2);
    ack(msg);
    cr_assert_eq(world_count(&w, "{}"), 0);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* BLOCK: a dead head holds its group until redriven; purging it releases the group. */
Test(groups, a_dead_message_blocks_its_group_until_redriven_or_purged)
{
    world_t w;
    bson_error_t error;
    open_groups(&w, 1, MONGOQ_GROUP_DEAD_BLOCK, 0);
    for (int i = 0; i < 3; i++) {
        enqueue_in(&w, "a", i);
    }
    enqueue_in(&w, "b", 10);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    int64_t first = world_seq(msg);
    if (first == 10) { /* b's head: finish it, a's head next */
        ack(msg);
        msg = world_claim(c, 0);
    }
    cr_assert_eq(world_seq(msg), 0);
    cr_assert(mongoq_message_fail(msg, "broken", &error), "%s", error.message);
    mongoq_message_destroy(msg);
    msg = world_claim(c, 0);
    if (msg && world_seq(msg) == 10) {
        ack(msg);
        msg = world_claim(c, 0);
    }
    cr_assert_null(msg, "group a is blocked by its dead head");
    int64_t moved = 0;
    cr_assert(mongoq_queue_redrive(w.queue, NULL, &moved, &error), "%s", error.message);
    cr_assert_eq(moved, 1);
    msg = world_claim(c, 0);
    cr_assert_eq(world_seq(msg), 0, "redriven, the head is delivered again");
    cr_assert(mongoq_message_fail(msg, "broken again", &error), "%s", error.message);
    mongoq_message_destroy(msg);
    int64_t deleted = 0;
    cr_assert(mongoq_queue_purge(w.queue, "dead", &deleted, &error), "%s", error.message);
    cr_assert_eq(deleted, 1);
    msg = world_claim(c, 0);
    cr_assert(msg, "purging the dead head released the group");
    cr_assert_eq(world_seq(msg), 1);
    ack(msg);
    msg = world_claim(c, 0);
    cr_assert_eq(world_seq(msg), 2);
    ack(msg);
    cr_assert_eq(world_count(&w, "{}"), 0);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* A reaped lease keeps its place; one with no attempt left dies and releases its group. */
Test(groups, reaped_messages_keep_or_release_their_place)
{
    world_t w;
    bson_error_t error;
    open_groups(&w, 1, MONGOQ_GROUP_DEAD_RELEASE, 0);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.group = "a";
    opts.max_attempts = 2;
    world_enqueue(w.queue, 0, &opts, NULL);
    world_enqueue(w.queue, 1, &opts, NULL);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 100);
    for (int attempt = 1; attempt <= 2; attempt++) {
        mongoq_message_t *msg = world_claim(c, 0);
        cr_assert_eq(world_seq(msg), 0, "attempt %d: the head again", attempt);
        int64_t expires = mongoq_message_lease_expires_at(msg);
        mongoq_message_destroy(msg); /* as if its consumer died */
        cr_assert(world_wait_server_past(&w, expires, 10000));
        cr_assert_eq(world_reap_until(&w, 1, 10000), 1);
        cr_assert_eq(world_count(&w, "{\"status\": \"waiting\"}"), attempt == 1 ? 1 : 0);
    }
    cr_assert_eq(world_count(&w, "{\"status\": \"dead\"}"), 1);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert_eq(world_seq(msg), 1, "the exhausted head died and released the group");
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* A group maps to one partition, its document too; FIFO holds there. */
Test(groups, partitioned_queue_places_a_group_in_one_partition)
{
    world_t w;
    open_groups(&w, 1, MONGOQ_GROUP_DEAD_RELEASE, 4);
    const char *groups[] = {"alpha", "beta", "gamma", "delta", "epsilon"};
    for (int i = 0; i < 3; i++) {
        for (int g = 0; g < 5; g++) {
            enqueue_in(&w, groups[g], g * 100 + i);
        }
    }
    for (int g = 0; g < 5; g++) {
        char filter[128];
        bson_snprintf(filter, sizeof filter, "{\"group\": \"%s\"}", groups[g]);
        int64_t total = world_count(&w, filter);
        cr_assert_eq(total, 3);
        int found = 0;
        for (int p = 0; p < 4; p++) {
            bson_snprintf(filter, sizeof filter, "{\"group\": \"%s\", \"partition\": %d}",
                          groups[g], p);
            int64_t here = world_count(&w, filter);
            if (here > 0) {
                cr_assert_eq(here, 3, "all of %s in one partition", groups[g]);
                bson_snprintf(filter, sizeof filter,
                              "{\"_id\": \"mongoq.group:%s\", \"partition\": %d}", groups[g], p);
                cr_assert_eq(world_count(&w, filter), 1, "and its document");
                found++;
            }
        }
        cr_assert_eq(found, 1);
    }
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    int64_t next[5] = {0};
    for (int k = 0; k < 15; k++) {
        mongoq_message_t *msg = world_claim(c, 2000);
        cr_assert(msg, "message %d", k);
        int64_t seq = world_seq(msg);
        int g = (int)(seq / 100);
        cr_assert_eq(seq % 100, next[g], "group %s in order", groups[g]);
        next[g]++;
        ack(msg);
    }
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* Bad options: INVALID_ARG, nothing written (one world per test: mongoc_cleanup ends each). */
Test(groups, a_group_needs_a_queue_with_groups)
{
    world_t w;
    bson_error_t error;
    bson_t payload;
    world_payload(&payload, 1);
    world_open(&w, NULL, 0);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.group = "a";
    cr_assert_not(mongoq_enqueue(w.queue, &payload, &opts, NULL, &error), "no groups here");
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_eq(world_count(&w, "{}"), 0, "nothing written");
    bson_destroy(&payload);
    world_close(&w);
}

Test(groups, bad_group_names_and_sessions_are_refused)
{
    world_t w;
    bson_error_t error;
    bson_t payload;
    world_payload(&payload, 1);
    open_groups(&w, 2, MONGOQ_GROUP_DEAD_RELEASE, 0);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    char long_name[MONGOQ_MAX_GROUP_BYTES + 2];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    const char *names[] = {"", long_name, "bad \xff utf-8"};
    for (int i = 0; i < 3; i++) {
        opts.group = names[i];
        cr_assert_not(mongoq_enqueue(w.queue, &payload, &opts, NULL, &error), "name %d", i);
        cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "name %d: %s", i, error.message);
    }
    opts.group = "a";
    mongoc_client_session_t *session = mongoc_client_start_session(w.client, NULL, &error);
    cr_assert(session, "%s", error.message);
    opts.session = session;
    cr_assert_not(mongoq_enqueue(w.queue, &payload, &opts, NULL, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "a session outside a transaction");
    mongoc_client_session_destroy(session);
    cr_assert_eq(world_count(&w, "{}"), 0, "nothing written");
    bson_destroy(&payload);
    world_close(&w);
}

Test(groups, a_group_and_a_dedup_key_are_refused_in_a_partitioned_queue)
{
    world_t w;
    bson_error_t error;
    bson_t payload;
    world_payload(&payload, 1);
    open_groups(&w, 1, MONGOQ_GROUP_DEAD_RELEASE, 4);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.group = "a";
    opts.dedup_key = "k";
    cr_assert_not(mongoq_enqueue(w.queue, &payload, &opts, NULL, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "group and dedup_key with partitions");
    cr_assert_eq(world_count(&w, "{}"), 0, "nothing written");
    bson_destroy(&payload);
    world_close(&w);
}

Test(groups, bad_queue_options_are_refused_and_nothing_is_created)
{
    world_t w;
    bson_error_t error;
    world_open(&w, NULL, WORLD_NO_QUEUE);
    struct {
        int32_t concurrency;
        int dead;
        double rate;
        int32_t burst;
    } cases[] = {{-1, 0, 0, 0}, {MONGOQ_MAX_GROUP_CONCURRENCY + 1, 0, 0, 0}, {1, 7, 0, 0},
                 {0, 0, -1, 0}, {0, 0, MONGOQ_MAX_RATE_LIMIT * 2, 0},        {0, 0, 0, 5},
                 {0, 0, 10, -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mongoq_queue_opts_t bad = MONGOQ_QUEUE_OPTS_INIT;
        bad.group_concurrency = cases[i].concurrency;
        bad.group_dead = (mongoq_group_dead_t)cases[i].dead;
        bad.rate_limit = cases[i].rate;
        bad.rate_burst = cases[i].burst;
        cr_assert_null(mongoq_queue_new(w.pool, w.db, "jobs", &bad, &error), "case %zu", i);
        cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "case %zu: %s", i, error.message);
    }
    mongoc_database_t *db = mongoc_client_get_database(w.client, w.db);
    char **colls = mongoc_database_get_collection_names_with_opts(db, NULL, &error);
    cr_assert(colls, "%s", error.message);
    cr_assert_null(colls[0], "no collection created");
    bson_strfreev(colls);
    mongoc_database_destroy(db);
    world_close(&w);
}

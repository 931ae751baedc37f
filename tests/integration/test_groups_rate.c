/*
 * The per-group rate limit (queue opts group_rate_limit / group_rate_burst; docs/design.md,
 * Per-group rate limits), checked by counts on the server's clock: the time of each first
 * delivery is the claim's $$NOW, read back as lease_expires_at - lease_ms.
 *
 *  - Two busy groups at 10/s each (burst 2) and ungrouped messages, 4 consumer threads: in
 *    every window [t_i, t_j] of one group's first deliveries, j - i + 1 <= N + burst + rate *
 *    (t_j - t_i); the group did take about (M - N - burst) / rate seconds (the premise: the
 *    option slowed it), the other group ran alongside, not after it, neither took longer than
 *    its own limit or the pace of an unlimited group run at the same time allows (a bucket
 *    shared by the groups would double the time), and the ungrouped messages were delivered
 *    at once, before the throttled groups were done.
 *  - The same with group_concurrency 3 and batches (the enqueue admits three at once, each
 *    with its own token).
 *  - Bad options refused with INVALID_ARG; a version 4 options struct (before the per-group
 *    limit) still accepted.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "world.h"

TestSuite(groups_rate, .timeout = 120);

#define LEASE_MS 30000
#define PER_GROUP 20
#define UNGROUPED 10
#define THREADS 4
#define PACE_THREADS 2 /* consumers of the unlimited reference group */
#define RATE 10.0
#define BURST 2
#define MAX_CLAIMS (2 * PER_GROUP + UNGROUPED)

typedef struct {
    mongoq_queue_t *queue;
    int max_claims;
    pthread_mutex_t mu;
    int64_t at[3][MAX_CLAIMS]; /* first deliveries' server times: group a, group b, none */
    int n[3];
    int total;
} record_t;

static void *
consume(void *arg)
{
    record_t *r = arg;
    bson_error_t error;
    mongoq_consumer_opts_t copts = MONGOQ_CONSUMER_OPTS_INIT;
    copts.lease_ms = LEASE_MS;
    mongoq_consumer_t *c = mongoq_consumer_new(r->queue, &copts, &error);
    cr_assert(c, "mongoq_consumer_new: %s", error.message);
    int64_t deadline = mtest_now_ms() + 60000;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        bool done = r->total >= r->max_claims;
        pthread_mutex_unlock(&r->mu);
        if (done || mtest_now_ms() > deadline) {
            break;
        }
        mongoq_message_t *msg = NULL;
        cr_assert(mongoq_consumer_claim(c, 200, &msg, &error), "claim: %s", error.message);
        if (!msg) {
            continue;
        }
        const char *group = mongoq_message_group(msg);
        int k = !group ? 2 : strcmp(group, "a") == 0 ? 0 : 1;
        pthread_mutex_lock(&r->mu);
        if (mongoq_message_attempts(msg) == 1 && r->n[k] < MAX_CLAIMS) {
            r->at[k][r->n[k]++] = mongoq_message_lease_expires_at(msg) - LEASE_MS;
            r->total++;
        }
        pthread_mutex_unlock(&r->mu);
        cr_assert(mongoq_message_ack(msg, &error), "ack: %s", error.message);
        mongoq_message_destroy(msg);
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Every window of one group's first deliveries keeps the bound; returns the span in ms. */
static int64_t
check_group(const char *name, int64_t *at, int n, int32_t concurrency)
{
    qsort(at, (size_t)n, sizeof *at, cmp_i64);
    for (int i = 0; i < n; i++) {
        for (int j = i; j < n; j++) {
            double bound = concurrency + BURST + RATE * (double)(at[j] - at[i]) / 1000.0;
            cr_assert_leq((double)(j - i + 1), bound,
                          "group %s: %d first deliveries in [%lld, %lld] (%lld ms), bound %.1f",
                          name, j - i + 1, (long long)at[i], (long long)at[j],
                          (long long)(at[j] - at[i]), bound);
        }
    }
    return at[n - 1] - at[0];
}

/* Messages first + i .. first + i + batch - 1 of the group, for i = 0, batch, .. < PER_GROUP. */
static void
enqueue_batch(mongoq_queue_t *queue, const char *group, int64_t first, int i, size_t batch)
{
    bson_error_t error;
    bson_t payloads[8];
    const bson_t *ptrs[8];
    for (size_t k = 0; k < batch; k++) {
        world_payload(&payloads[k], first + i + (int64_t)k);
        ptrs[k] = &payloads[k];
    }
    mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
    eopts.group = group;
    cr_assert(mongoq_enqueue_many(queue, ptrs, batch, &eopts, NULL, NULL, &error), "enqueue: %s",
              error.message);
    for (size_t k = 0; k < batch; k++) {
        bson_destroy(&payloads[k]);
    }
}

/*
 * The pace reference: a queue of the same shape without a rate limit, its group "c" consumed by
 * threads of its own while the limited groups run. Its span is what the acks that admit each
 * next message cost at that time; on a slow machine (ASan, a loaded server) that, not the token,
 * sets a FIFO group's pace.
 */
static mongoq_queue_t *
pace_queue(world_t *w, int32_t concurrency, size_t batch)
{
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = concurrency;
    opts.no_reaper = true;
    mongoq_queue_t *queue = mongoq_queue_new(w->pool, w->db, "pace", &opts, &error);
    cr_assert(queue, "mongoq_queue_new: %s", error.message);
    for (int i = 0; i < PER_GROUP; i += (int)batch) {
        enqueue_batch(queue, "c", 0, i, batch);
    }
    return queue;
}

static void
run(int32_t concurrency, size_t batch)
{
    world_t w;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = concurrency;
    opts.group_rate_limit = RATE;
    opts.group_rate_burst = BURST;
    opts.no_reaper = true;
    world_open(&w, &opts, 0);
    for (int i = 0; i < PER_GROUP; i += (int)batch) {
        enqueue_batch(w.queue, "a", 0, i, batch);
        enqueue_batch(w.queue, "b", 1000, i, batch);
    }
    for (int i = 0; i < UNGROUPED; i++) {
        world_enqueue(w.queue, 5000 + i, NULL, NULL);
    }
    mongoq_queue_t *pace = pace_queue(&w, concurrency, batch);
    record_t r = {.queue = w.queue, .max_claims = MAX_CLAIMS};
    record_t ref = {.queue = pace, .max_claims = PER_GROUP}; /* group c in at[1] */
    pthread_mutex_init(&r.mu, NULL);
    pthread_mutex_init(&ref.mu, NULL);
    pthread_t threads[THREADS + PACE_THREADS];
    int64_t t0 = world_server_now(&w); /* after the enqueues: only the claims count */
    for (int i = 0; i < THREADS + PACE_THREADS; i++) {
        cr_assert_eq(pthread_create(&threads[i], NULL, consume, i < THREADS ? &r : &ref), 0);
    }
    for (int i = 0; i < THREADS + PACE_THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_mutex_destroy(&r.mu);
    pthread_mutex_destroy(&ref.mu);
    mongoq_queue_destroy(pace);
    cr_assert_eq(ref.n[1], PER_GROUP, "every message of the pace group delivered once");
    cr_assert_eq(r.n[0], PER_GROUP, "every message of group a delivered once");
    cr_assert_eq(r.n[1], PER_GROUP, "every message of group b delivered once");
    cr_assert_eq(r.n[2], UNGROUPED, "every ungrouped message delivered once");
    int64_t span_a = check_group("a", r.at[0], r.n[0], concurrency);
    int64_t span_b = check_group("b", r.at[1], r.n[1], concurrency);
    /* The premise: without the option all 20 would go in a few ms. */
    double slowest = (PER_GROUP - concurrency - BURST) * 1000.0 / RATE;
    cr_assert_geq((double)span_a, slowest, "group a was throttled (%lld ms)", (long long)span_a);
    cr_assert_geq((double)span_b, slowest, "group b was throttled (%lld ms)", (long long)span_b);
    /* Not slowed by each other: side by side (each began before the other was done), and each
     * at its own limit, or at the pace the unlimited group kept meanwhile when that was slower
     * (with 50 % and 500 ms for the noise of one run). A bucket shared by the two groups halves
     * each one's rate: about 3.6 s each, over the bound while the machine keeps up with 10/s. */
    int64_t a_last = r.at[0][PER_GROUP - 1], b_last = r.at[1][PER_GROUP - 1];
    cr_assert_lt(r.at[0][0], b_last, "group a began before group b was done");
    cr_assert_lt(r.at[1][0], a_last, "group b began before group a was done");
    qsort(ref.at[1], PER_GROUP, sizeof ref.at[1][0], cmp_i64);
    int64_t span_c = ref.at[1][PER_GROUP - 1] - ref.at[1][0];
    double own = (PER_GROUP + 5) * 1000.0 / RATE;
    double alone = 1.5 * (double)span_c + 500 > own ? 1.5 * (double)span_c + 500 : own;
    cr_assert_leq((double)span_a, alone, "group a at its own pace (%lld ms; unlimited: %lld ms)",
                  (long long)span_a, (long long)span_c);
    cr_assert_leq((double)span_b, alone, "group b at its own pace (%lld ms; unlimited: %lld ms)",
                  (long long)span_b, (long long)span_c);
    cr_assert_leq(r.at[0][0] - t0, 1500, "group a started at once");
    cr_assert_leq(r.at[1][0] - t0, 1500, "group b started at once");
    qsort(r.at[2], UNGROUPED, sizeof r.at[2][0], cmp_i64);
    int64_t u_last = r.at[2][UNGROUPED - 1];
    cr_assert_lt(u_last, a_last < b_last ? a_last : b_last,
                 "ungrouped messages delivered at once, not behind the throttled groups (last "
                 "after %lld ms, groups done after %lld and %lld ms)",
                 (long long)(u_last - t0), (long long)(a_last - t0), (long long)(b_last - t0));
    cr_log_info("group rate %.0f/s burst %d, N = %d: group a %d in %lld ms, group b %d in %lld "
                "ms, unlimited group %lld ms",
                RATE, BURST, concurrency, r.n[0], (long long)span_a, r.n[1], (long long)span_b,
                (long long)span_c);
    world_close(&w);
}

Test(groups_rate, fifo_groups_keep_their_limit_by_the_server_clock_and_do_not_slow_others)
{
    run(1, 1);
}

Test(groups_rate, concurrency_three_batches_each_admission_takes_its_own_token)
{
    run(3, 4);
}

/* One world for every check of a test: a second world_open after world_close in one test races
 * mongoc_cleanup with a pool's monitor thread under ASan (see test_groups.c). */
static void
expect_refused(world_t *w, const mongoq_queue_opts_t *opts, const char *what)
{
    bson_error_t error;
    mongoq_queue_t *q = mongoq_queue_new(w->pool, w->db, "jobs", opts, &error);
    cr_assert_null(q, "%s: accepted", what);
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN, "%s: %s", what, error.message);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "%s: %s", what, error.message);
}

Test(groups_rate, bad_options_are_refused)
{
    world_t w;
    world_open(&w, NULL, WORLD_NO_QUEUE);
    mongoq_queue_opts_t o = MONGOQ_QUEUE_OPTS_INIT;
    o.group_concurrency = 1;
    o.group_rate_limit = -1;
    expect_refused(&w, &o, "negative group_rate_limit");
    o.group_rate_limit = MONGOQ_MAX_GROUP_RATE_LIMIT * 2;
    expect_refused(&w, &o, "group_rate_limit over the max");
    o.group_rate_limit = 5;
    o.group_rate_burst = MONGOQ_MAX_GROUP_RATE_BURST + 1;
    expect_refused(&w, &o, "group_rate_burst over the max");
    o.group_rate_burst = -1;
    expect_refused(&w, &o, "negative group_rate_burst");
    o = (mongoq_queue_opts_t)MONGOQ_QUEUE_OPTS_INIT;
    o.group_rate_burst = 3;
    o.group_concurrency = 1;
    expect_refused(&w, &o, "group_rate_burst without group_rate_limit");
    o = (mongoq_queue_opts_t)MONGOQ_QUEUE_OPTS_INIT;
    o.group_rate_limit = 5;
    expect_refused(&w, &o, "group_rate_limit without groups");
    world_close(&w);
}

Test(groups_rate, a_version_4_options_struct_is_still_accepted)
{
    world_t w;
    bson_error_t error;
    world_open(&w, NULL, WORLD_NO_QUEUE);
    /* A caller built against version 4 passes a struct that ends before group_rate_limit:
     * garbage past its end must not be read. */
    mongoq_queue_opts_t o;
    memset(&o, 0xff, sizeof o);
    memset(&o, 0, offsetof(mongoq_queue_opts_t, group_rate_limit));
    o.version = 4;
    o.group_concurrency = 1;
    mongoq_queue_t *q = mongoq_queue_new(w.pool, w.db, "jobs", &o, &error);
    cr_assert_not_null(q, "version 4 refused: %s", error.message);
    mongoq_queue_destroy(q);
    world_close(&w);
}

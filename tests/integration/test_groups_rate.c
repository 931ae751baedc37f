/*
 * The per-group rate limit (queue opts group_rate_limit / group_rate_burst; docs/design.md,
 * Per-group rate limits), checked by counts on the server's clock: the time of each first
 * delivery is the claim's $$NOW, read back as lease_expires_at - lease_ms.
 *
 *  - Two busy groups at 10/s each (burst 2) and ungrouped messages, 4 consumer threads: in
 *    every window [t_i, t_j] of one group's first deliveries, j - i + 1 <= N + burst + rate *
 *    (t_j - t_i); the group did take about (M - N - burst) / rate seconds (the premise: the
 *    option slowed it), the other group ran alongside, not after it, and the ungrouped
 *    messages were delivered at once.
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
#define RATE 10.0
#define BURST 2
#define MAX_CLAIMS (2 * PER_GROUP + UNGROUPED)

typedef struct {
    world_t *w;
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
    mongoq_consumer_t *c = world_consumer(r->w, NULL, LEASE_MS);
    int64_t deadline = mtest_now_ms() + 60000;
    for (;;) {
        pthread_mutex_lock(&r->mu);
        bool done = r->total >= MAX_CLAIMS;
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

static void
run(int32_t concurrency, size_t batch)
{
    world_t w;
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = concurrency;
    opts.group_rate_limit = RATE;
    opts.group_rate_burst = BURST;
    opts.no_reaper = true;
    world_open(&w, &opts, 0);
    static const char *const groups[] = {"a", "b"};
    for (int i = 0; i < PER_GROUP; i += (int)batch) {
        for (int g = 0; g < 2; g++) {
            bson_t payloads[8];
            const bson_t *ptrs[8];
            for (size_t k = 0; k < batch; k++) {
                world_payload(&payloads[k], g * 1000 + i + (int64_t)k);
                ptrs[k] = &payloads[k];
            }
            mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
            eopts.group = groups[g];
            cr_assert(mongoq_enqueue_many(w.queue, ptrs, batch, &eopts, NULL, NULL, &error),
                      "enqueue: %s", error.message);
            for (size_t k = 0; k < batch; k++) {
                bson_destroy(&payloads[k]);
            }
        }
    }
    int64_t t0 = world_server_now(&w);
    for (int i = 0; i < UNGROUPED; i++) {
        world_enqueue(w.queue, 5000 + i, NULL, NULL);
    }
    record_t r = {.w = &w};
    pthread_mutex_init(&r.mu, NULL);
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        cr_assert_eq(pthread_create(&threads[i], NULL, consume, &r), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    pthread_mutex_destroy(&r.mu);
    cr_assert_eq(r.n[0], PER_GROUP, "every message of group a delivered once");
    cr_assert_eq(r.n[1], PER_GROUP, "every message of group b delivered once");
    cr_assert_eq(r.n[2], UNGROUPED, "every ungrouped message delivered once");
    int64_t span_a = check_group("a", r.at[0], r.n[0], concurrency);
    int64_t span_b = check_group("b", r.at[1], r.n[1], concurrency);
    /* The premise: without the option all 20 would go in a few ms. */
    double slowest = (PER_GROUP - concurrency - BURST) * 1000.0 / RATE;
    cr_assert_geq((double)span_a, slowest, "group a was throttled (%lld ms)", (long long)span_a);
    cr_assert_geq((double)span_b, slowest, "group b was throttled (%lld ms)", (long long)span_b);
    /* Not slowed by each other: both ran at their own limit, side by side. */
    double alone = (PER_GROUP + 5) * 1000.0 / RATE;
    cr_assert_leq((double)span_a, alone, "group a at its own pace (%lld ms)", (long long)span_a);
    cr_assert_leq((double)span_b, alone, "group b at its own pace (%lld ms)", (long long)span_b);
    cr_assert_leq(r.at[0][0] - t0, 1500, "group a started at once");
    cr_assert_leq(r.at[1][0] - t0, 1500, "group b started at once");
    qsort(r.at[2], UNGROUPED, sizeof r.at[2][0], cmp_i64);
    cr_assert_leq(r.at[2][UNGROUPED - 1] - t0, 1500,
                  "ungrouped messages delivered at once, not behind the throttled groups "
                  "(last after %lld ms)",
                  (long long)(r.at[2][UNGROUPED - 1] - t0));
    cr_log_info("group rate %.0f/s burst %d, N = %d: group a %d in %lld ms, group b %d in %lld "
                "ms",
                RATE, BURST, concurrency, r.n[0], (long long)span_a, r.n[1], (long long)span_b);
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

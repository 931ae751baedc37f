/*
 * Groups and rate limits under load: 8 consumers in 3 processes (six threads here, claiming one
 * at a time and with claim_many, and two mongoq-child-consumer processes, one of them killed with
 * SIGKILL while it holds a message), random handler times and retries. From a log of handler starts and ends per group:
 * a FIFO group never has two messages in flight (checked on the server at every start too, so
 * the killed process's lease counts) and its messages start in enqueue order; with N = 3 no
 * group ever has more than three in flight. The rate limit is checked by counts on the server's
 * clock: claims granted over [T0, T1] <= burst + rate * (T1 - T0).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "world.h"

TestSuite(groups_load, .timeout = 240);

#define GROUPS 6
#define PER_GROUP 20
/* 8 consumers in 3 processes: these threads, the child killed early, the child kept busy. */
#define THREADS 6
#define MAX_EVENTS 4096

typedef struct {
    world_t *w;
    int32_t limit;
    pthread_mutex_t mu;
    int64_t order[GROUPS][4 * PER_GROUP]; /* start order of indices per group */
    int n_order[GROUPS];
    int in_flight[GROUPS]; /* in this process */
    int max_in_flight[GROUPS];
    int server_max[GROUPS]; /* processing on the server at a start */
    bool acked[GROUPS][PER_GROUP];
    int n_acked;
    int failures;
    char failure[256];
    atomic_bool stop;
} load_t;

static void
group_name(int g, char *buf, size_t len)
{
    bson_snprintf(buf, len, "account-%d", g);
}

static void
fail(load_t *l, const char *what)
{
    pthread_mutex_lock(&l->mu);
    if (l->failures++ == 0) {
        bson_strncpy(l->failure, what, sizeof l->failure);
    }
    pthread_mutex_unlock(&l->mu);
}

/* Messages of group g being processed now, on the server (every process's leases). */
static int64_t
server_processing(mongoc_client_t *client, const char *db, int g)
{
    char name[32];
    bson_error_t error;
    group_name(g, name, sizeof name);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "jobs");
    bson_t *filter = BCON_NEW("group", BCON_UTF8(name), "status", BCON_UTF8("processing"));
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return n;
}

static void
record_start(load_t *l, mongoc_client_t *client, int64_t seq, bool here)
{
    int g = (int)(seq / 1000), i = (int)(seq % 1000);
    int64_t on_server = server_processing(client, l->w->db, g);
    pthread_mutex_lock(&l->mu);
    if (l->n_order[g] < 4 * PER_GROUP) {
        l->order[g][l->n_order[g]++] = i;
    }
    if (here && ++l->in_flight[g] > l->max_in_flight[g]) {
        l->max_in_flight[g] = l->in_flight[g];
    }
    if (on_server > l->server_max[g]) {
        l->server_max[g] = (int)on_server;
    }
    pthread_mutex_unlock(&l->mu);
}

/* The handler returned (before its ack or retry is written: only then may a successor start). */
static void
record_handler_end(load_t *l, int64_t seq)
{
    pthread_mutex_lock(&l->mu);
    l->in_flight[seq / 1000]--;
    pthread_mutex_unlock(&l->mu);
}

static void
record_end(load_t *l, int64_t seq, bool acked)
{
    int g = (int)(seq / 1000), i = (int)(seq % 1000);
    pthread_mutex_lock(&l->mu);
    if (acked && !l->acked[g][i]) {
        l->acked[g][i] = true;
        l->n_acked++;
    }
    pthread_mutex_unlock(&l->mu);
}

static void
work(unsigned *seed)
{
    struct timespec ts = {0, (long)(rand_r(seed) % 3000) * 1000}; /* 0-3 ms of "work" */
    nanosleep(&ts, NULL);
}

static void
handle(load_t *l, mongoc_client_t *client, mongoq_message_t *msg, unsigned *seed)
{
    bson_error_t error;
    int64_t seq = world_seq(msg);
    record_start(l, client, seq, true);
    work(seed);
    bool retry = mongoq_message_attempts(msg) < 3 && rand_r(seed) % 100 < 15;
    record_handler_end(l, seq);
    bool ok = retry ? mongoq_message_retry(msg, 0, "random retry", &error)
                    : mongoq_message_ack(msg, &error);
    record_end(l, seq, ok && !retry);
    if (!ok && error.code != MONGOQ_ERROR_LEASE_LOST) {
        fail(l, error.message);
    }
    mongoq_message_destroy(msg);
}

typedef struct {
    load_t *l;
    int index;
} thread_arg_t;

static void *
consume(void *arg)
{
    thread_arg_t *a = arg;
    load_t *l = a->l;
    unsigned seed = 1234u + (unsigned)a->index;
    bson_error_t error;
    mongoc_client_t *client = mongoc_client_pool_pop(l->w->pool);
    mongoq_consumer_t *c = mongoq_consumer_new(l->w->queue, NULL, &error);
    int64_t deadline = mtest_now_ms() + 120000;
    while (!atomic_load(&l->stop) && mtest_now_ms() < deadline) {
        mongoq_message_t *msgs[3];
        size_t got = 0;
        bool ok = a->index % 2 == 0 ? mongoq_consumer_claim(c, 200, &msgs[0], &error) &&
                                          (got = msgs[0] ? 1 : 0, true)
                                    : mongoq_consumer_claim_many(c, 3, 200, msgs, &got, &error);
        if (!ok) {
            fail(l, error.message);
            break;
        }
        for (size_t i = 0; i < got; i++) {
            handle(l, client, msgs[i], &seed);
        }
    }
    mongoq_consumer_destroy(c);
    mongoc_client_pool_push(l->w->pool, client);
    return NULL;
}

static void
enqueue_groups(world_t *w)
{
    for (int i = 0; i < PER_GROUP; i++) {
        for (int g = 0; g < GROUPS; g++) {
            char name[32];
            mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
            group_name(g, name, sizeof name);
            opts.group = name;
            opts.max_attempts = 10;
            world_enqueue(w->queue, g * 1000 + i, &opts, NULL);
        }
    }
}

static bool
all_acked(void *ctx)
{
    load_t *l = ctx;
    pthread_mutex_lock(&l->mu);
    bool done = l->n_acked == GROUPS * PER_GROUP || l->failures > 0;
    pthread_mutex_unlock(&l->mu);
    return done;
}

/*
 * Drives a child: one claim, killed while holding it (the lease returns it), or acked. False
 * when it found nothing.
 */
static bool
child_round(load_t *l, world_child_t *child, bool kill_it)
{
    world_child_msg_t m;
    char cmd[64];
    const char *line = world_child_cmd(child, "claim 5000", 10000);
    if (!world_child_parse_msg(line, &m)) {
        cr_assert_str_eq(line, "none");
        return false;
    }
    record_start(l, l->w->client, m.seq, false);
    if (kill_it) {
        world_child_stop(child, true); /* SIGKILL: its lease holds the group until it expires */
        return true;
    }
    char hex[25];
    bson_oid_to_string(&m.id, hex);
    bson_snprintf(cmd, sizeof cmd, "ack %s", hex);
    cr_assert_str_eq(world_child_cmd(child, cmd, 10000), "ok");
    record_end(l, m.seq, true);
    return true;
}

static void
run_load(int32_t limit)
{
    world_t w;
    load_t *l = bson_malloc0(sizeof *l);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = limit;
    opts.lease_ms = 2000; /* the background reaper runs every second */
    world_open(&w, &opts, 0);
    l->w = &w;
    l->limit = limit;
    pthread_mutex_init(&l->mu, NULL);
    enqueue_groups(&w);
    char n_arg[16];
    bson_snprintf(n_arg, sizeof n_arg, "%d", limit);
    /* Only the killed child's lease must run out (soon); the other acks what it claims, and the
     * test thread's round trips between its claim and its ack must not outlast its lease. */
    const char *killed_args[] = {"--group-concurrency", n_arg, "--lease-ms", "300", NULL};
    const char *other_args[] = {"--group-concurrency", n_arg, "--lease-ms", "60000", NULL};
    world_child_t killed, other;
    world_child_start(&killed, &w, killed_args, NULL);
    world_child_start(&other, &w, other_args, NULL);
    cr_assert(child_round(l, &killed, true), "before the threads it surely gets a message");
    pthread_t threads[THREADS];
    thread_arg_t targs[THREADS];
    for (int i = 0; i < THREADS; i++) {
        targs[i] = (thread_arg_t){l, i};
        cr_assert_eq(pthread_create(&threads[i], NULL, consume, &targs[i]), 0);
    }
    /* The second child claims alongside the threads until everything is acknowledged (bounded by
     * the message count and a deadline; a round that finds nothing waits up to 5 s). */
    int rounds = 0;
    int64_t child_deadline = mtest_now_ms() + 60000;
    for (int r = 0; r < GROUPS * PER_GROUP && !all_acked(l) && mtest_now_ms() < child_deadline;
         r++) {
        rounds += child_round(l, &other, false);
    }
    cr_log_info("the second child handled %d messages", rounds);
    bool done = mtest_wait_until(all_acked, l, 120000);
    atomic_store(&l->stop, true);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    world_child_stop(&other, false);
    cr_assert_eq(l->failures, 0, "%s", l->failure);
    cr_assert(done, "every message acknowledged (%d of %d)", l->n_acked, GROUPS * PER_GROUP);
    for (int g = 0; g < GROUPS; g++) {
        cr_assert_leq(l->max_in_flight[g], limit, "group %d: %d in flight here", g,
                      l->max_in_flight[g]);
        cr_assert_leq(l->server_max[g], limit, "group %d: %d processing on the server", g,
                      l->server_max[g]);
        if (limit == 1) {
            for (int k = 1; k < l->n_order[g]; k++) {
                cr_assert_geq(l->order[g][k], l->order[g][k - 1],
                              "group %d: message %lld started after %lld", g,
                              (long long)l->order[g][k], (long long)l->order[g][k - 1]);
            }
        }
    }
    int reached = 0;
    for (int g = 0; g < GROUPS; g++) {
        reached = l->server_max[g] > reached ? l->server_max[g] : reached;
    }
    cr_log_info("limit %d: the most in flight in one group was %d", limit, reached);
    cr_assert_eq(world_count(&w, "{}"), 0, "no message and no group document left");
    pthread_mutex_destroy(&l->mu);
    bson_free(l);
    world_close(&w);
}

Test(groups_load, fifo_groups_hold_order_across_threads_processes_retries_and_sigkill)
{
    run_load(1);
}

Test(groups_load, concurrency_three_is_never_exceeded)
{
    run_load(3);
}

/* ---- rate limit --------------------------------------------------------------------------- */

#define RATE 50.0
#define RATE_MESSAGES 200

typedef struct {
    world_t *w;
    world_child_t *child; /* NULL: a consumer thread */
    atomic_int *claimed;
} rate_arg_t;

static void *
rate_consume(void *arg)
{
    rate_arg_t *a = arg;
    bson_error_t error;
    mongoq_consumer_t *c = a->child ? NULL : mongoq_consumer_new(a->w->queue, NULL, &error);
    int64_t deadline = mtest_now_ms() + 60000;
    while (atomic_load(a->claimed) < RATE_MESSAGES && mtest_now_ms() < deadline) {
        if (a->child) {
            world_child_msg_t m;
            const char *line = world_child_cmd(a->child, "claim 200", 10000);
            if (world_child_parse_msg(line, &m)) {
                char cmd[64], hex[25];
                bson_oid_to_string(&m.id, hex);
                bson_snprintf(cmd, sizeof cmd, "ack %s", hex);
                atomic_fetch_add(a->claimed, 1);
                (void)world_child_cmd(a->child, cmd, 10000);
            }
            continue;
        }
        mongoq_message_t *msg = NULL;
        if (mongoq_consumer_claim(c, 200, &msg, &error) && msg) {
            atomic_fetch_add(a->claimed, 1);
            (void)mongoq_message_ack(msg, &error);
            mongoq_message_destroy(msg);
        }
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

/* 8 consumers in 3 processes (6 threads here, one in each of two children). */
Test(groups_load, rate_limit_holds_across_processes_by_counts_on_the_server_clock)
{
    world_t w;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.rate_limit = RATE;
    world_open(&w, &opts, 0);
    world_enqueue_n(&w, RATE_MESSAGES, NULL, NULL);
    const char *args[] = {"--rate-limit", "50", NULL};
    world_child_t children[2];
    for (int i = 0; i < 2; i++) {
        world_child_start(&children[i], &w, args, NULL);
    }
    atomic_int claimed = 0;
    pthread_t threads[8];
    rate_arg_t targs[8];
    int64_t t0 = world_server_now(&w);
    for (int i = 0; i < 8; i++) {
        targs[i] = (rate_arg_t){&w, i < 2 ? &children[i] : NULL, &claimed};
        cr_assert_eq(pthread_create(&threads[i], NULL, rate_consume, &targs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
    }
    int64_t t1 = world_server_now(&w);
    for (int i = 0; i < 2; i++) {
        world_child_stop(&children[i], false);
    }
    int n = atomic_load(&claimed);
    double bound = RATE + RATE * (double)(t1 - t0) / 1000.0; /* burst (one second's) + rate */
    cr_log_info("rate limit %.0f/s: %d claims in %lld ms of server time (%.1f/s; bound %.0f)", RATE,
                n, (long long)(t1 - t0), n * 1000.0 / (double)(t1 - t0), bound);
    cr_assert_eq(n, RATE_MESSAGES, "every message claimed");
    cr_assert_leq((double)n, bound + 1, "claims over [T0, T1] <= burst + rate * (T1 - T0)");
    world_close(&w);
}

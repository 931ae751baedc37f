/*
 * mongoq-fault-proxy-stress: the fault proxy under load and chaos at once, for ThreadSanitizer
 * (under which Criterion cannot start, so this uses no test framework).
 *
 *   MONGOQ_TEST_URI=mongodb://... mongoq-fault-proxy-stress [SECONDS (1-60, default 3)]
 *
 * Four threads insert and read through one proxy (a libmongoc pool with retryable writes) while
 * a chaos thread drives the control protocol from its table: lost replies, lost requests,
 * hangs, resets, partitions, clears, stats. The threads run for SECONDS and on until every kind
 * of fault has fired (the proxy's counters), at most FIRE_BOUND_MS in all: how far a slow run
 * (ThreadSanitizer) gets through the table in a fixed time decides nothing. At the end every
 * acknowledged insert must be stored (exactly once: _id is unique and no insert may fail as a
 * duplicate, which would mean a retry applied twice) and the counters must show that every kind
 * of fault fired. Prints "faultproxy-stress: ... N failed" and exits 1 on any failure. Every
 * loop is bounded.
 *
 *   TSAN_OPTIONS="suppressions=$PWD/tests/tools/tsan-libmongoc.supp halt_on_error=1" \
 *     build/h2-tsan/tests/tools/faultproxy/mongoq-fault-proxy-stress
 */
#include "faultproxy.h"

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 4
#define MAX_OPS 5000 /* per worker */
#define CHAOS_PAUSE_MS 40
#define FIRE_BOUND_MS 30000 /* the longest run waiting for every fault kind to fire */

static atomic_int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            if (atomic_fetch_add(&failures, 1) < 20) {                                             \
                fprintf(stderr, "faultproxy-stress: FAILED at stress.c:%d (%s): ", __LINE__,       \
                        #cond);                                                                    \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* When the workers stop: past min_ms once every fault kind fired (the chaos thread tells), and
 * past max_ms in any case. */
typedef struct {
    int64_t min_ms;
    int64_t max_ms;
    atomic_bool all_fired;
} run_end_t;

typedef struct {
    mongoc_client_pool_t *pool;
    const char *db;
    int index;
    run_end_t *end;
    bool acknowledged[MAX_OPS];
    int n_ops;
} worker_t;

typedef struct {
    mongoq_faultproxy_t *proxy;
    run_end_t *end;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool stop;
    int actions;
} chaos_t;

/* What the chaos thread does, in turn: control lines, and how long to leave each in place. */
static const struct {
    const char *line;
    int64_t hold_ms;
} chaos_table[] = {
    {"drop-reply insert 1", 0},
    {"hang find 1 100", 0},
    {"drop-request insert 1", 0},
    {"reset", 0},
    {"hang insert 1 0", 150},
    {"clear", 0},
    {"partition on", 100},
    {"partition off", 0},
    {"drop-reply * 2", 0},
    {"partition refuse", 100},
    {"heal", 0},
    {"stats", 0},
};

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
doc_id(const worker_t *w, int op)
{
    return w->index * 1000000 + op;
}

static void
one_op(worker_t *w, mongoc_collection_t *coll, int op)
{
    bson_error_t error;
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_INT32(&doc, "_id", doc_id(w, op));
    w->acknowledged[op] = mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error);
    CHECK(w->acknowledged[op] || error.code != 11000, "insert %d applied twice: %s", doc_id(w, op),
          error.message);
    if (op % 4 == 0) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &doc, NULL, NULL);
        const bson_t *found;
        while (mongoc_cursor_next(cursor, &found)) {
        }
        mongoc_cursor_destroy(cursor);
    }
    bson_destroy(&doc);
}

static bool
run_over(run_end_t *end)
{
    int64_t now = now_ms();
    return now >= end->max_ms || (now >= end->min_ms && atomic_load(&end->all_fired));
}

static void *
worker_main(void *arg)
{
    worker_t *w = arg;
    mongoc_client_t *client = mongoc_client_pool_pop(w->pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, w->db, "c");
    for (w->n_ops = 0; w->n_ops < MAX_OPS && !run_over(w->end); w->n_ops++) {
        one_op(w, coll, w->n_ops);
    }
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(w->pool, client);
    return NULL;
}

/* Waits up to ms for the stop flag (a monotonic timed wait, not a sleep); true once stopped. */
static bool
chaos_pause(chaos_t *chaos, int64_t ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(ms / 1000);
    deadline.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&chaos->mu);
    while (!chaos->stop && pthread_cond_timedwait(&chaos->cond, &chaos->mu, &deadline) == 0) {
    }
    bool stop = chaos->stop;
    pthread_mutex_unlock(&chaos->mu);
    return stop;
}

/*
 * A rule the chaos thread just added ("ok rule=ID"): waits (bounded, 2 s) until it has hit a
 * request, so a slow run (ThreadSanitizer) cannot clear it before any traffic met it and every
 * fault kind surely fires. Returns true once stopped.
 */
static bool
await_hit(chaos_t *chaos, const char *reply)
{
    const char *id = reply ? strstr(reply, "rule=") : NULL;
    if (!id) {
        return false;
    }
    int32_t rule = (int32_t)strtol(id + 5, NULL, 10);
    for (int i = 0; i < 200 && mongoq_faultproxy_rule_hits(chaos->proxy, rule) == 0; i++) {
        if (chaos_pause(chaos, 10)) {
            return true;
        }
    }
    return false;
}

/* Whether the counters show every kind of fault check_faults_fired asks for (keep the two in
 * step). */
static bool
every_kind_fired(const mongoq_faultproxy_stats_t *s)
{
    return s->replies_dropped > 0 && s->requests_dropped > 0 && s->requests_held > 0 &&
           s->connections_closed > 0;
}

/* Tells the workers once every kind of fault has fired. */
static void
note_fired(chaos_t *chaos)
{
    mongoq_faultproxy_stats_t s = MONGOQ_FAULTPROXY_STATS_INIT;
    if (!atomic_load(&chaos->end->all_fired) && mongoq_faultproxy_stats(chaos->proxy, &s, NULL) &&
        every_kind_fired(&s)) {
        atomic_store(&chaos->end->all_fired, true);
    }
}

static void *
chaos_main(void *arg)
{
    chaos_t *chaos = arg;
    size_t n = sizeof chaos_table / sizeof chaos_table[0];
    for (int i = 0; i < 100000 && !chaos_pause(chaos, CHAOS_PAUSE_MS); i++) {
        char *reply = NULL;
        bool ok = mongoq_faultproxy_control(chaos->proxy, chaos_table[i % n].line, &reply);
        CHECK(ok, "'%s' answered '%s'", chaos_table[i % n].line, reply);
        bool stopped = await_hit(chaos, reply);
        bson_free(reply);
        chaos->actions++;
        note_fired(chaos);
        if (stopped) {
            break;
        }
        if (chaos_table[i % n].hold_ms && chaos_pause(chaos, chaos_table[i % n].hold_ms)) {
            break;
        }
    }
    return NULL;
}

/* Every acknowledged insert is stored. */
static void
check_stored(mongoc_client_t *direct, const char *db, worker_t *workers, int *acked)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(direct, db, "c");
    bson_error_t error;
    for (int w = 0; w < WORKERS; w++) {
        for (int op = 0; op < workers[w].n_ops; op++) {
            if (!workers[w].acknowledged[op]) {
                continue;
            }
            (*acked)++;
            bson_t filter = BSON_INITIALIZER;
            BSON_APPEND_INT32(&filter, "_id", doc_id(&workers[w], op));
            int64_t n = mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL, &error);
            CHECK(n == 1, "acknowledged insert %d stored %lld times (%s)", doc_id(&workers[w], op),
                  (long long)n, n < 0 ? error.message : "");
            bson_destroy(&filter);
        }
    }
    mongoc_collection_destroy(coll);
}

static void
check_faults_fired(mongoq_faultproxy_t *proxy)
{
    mongoq_faultproxy_stats_t s = MONGOQ_FAULTPROXY_STATS_INIT;
    CHECK(mongoq_faultproxy_stats(proxy, &s, NULL), "stats");
    CHECK(s.requests_forwarded > 0 && s.replies_forwarded > 0, "no traffic");
    CHECK(s.replies_dropped > 0, "no reply was dropped");
    CHECK(s.requests_dropped > 0, "no request was dropped");
    CHECK(s.requests_held > 0, "no request was held");
    CHECK(s.connections_closed > 0, "no connection was closed");
    printf("faultproxy-stress: forwarded=%lld replies_dropped=%lld requests_dropped=%lld "
           "held=%lld closed=%lld refused=%lld\n",
           (long long)s.requests_forwarded, (long long)s.replies_dropped,
           (long long)s.requests_dropped, (long long)s.requests_held,
           (long long)s.connections_closed, (long long)s.connections_refused);
}

static mongoc_client_pool_t *
proxied_pool(mongoq_faultproxy_t *proxy, const char *server_uri)
{
    char *uri = mongoq_faultproxy_uri(server_uri, mongoq_faultproxy_port(proxy), NULL);
    char *full = bson_strdup_printf("%s&retryWrites=true&socketTimeoutMS=1000"
                                    "&serverSelectionTimeoutMS=2000&heartbeatFrequencyMS=500"
                                    "&appname=faultproxy-stress",
                                    uri);
    mongoc_uri_t *parsed = mongoc_uri_new(full);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(parsed);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_uri_destroy(parsed);
    bson_free(full);
    bson_free(uri);
    return pool;
}

static void
chaos_start(chaos_t *chaos, pthread_t *thread)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* chaos_pause's deadlines */
    pthread_mutex_init(&chaos->mu, NULL);
    pthread_cond_init(&chaos->cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_create(thread, NULL, chaos_main, chaos);
}

static void
chaos_stop(chaos_t *chaos, pthread_t thread)
{
    pthread_mutex_lock(&chaos->mu);
    chaos->stop = true;
    pthread_cond_broadcast(&chaos->cond);
    pthread_mutex_unlock(&chaos->mu);
    pthread_join(thread, NULL);
    pthread_cond_destroy(&chaos->cond);
    pthread_mutex_destroy(&chaos->mu);
}

/* Checks what the server stored, then drops the database. */
static void
verify(const char *server_uri, const char *db, mongoq_faultproxy_t *proxy, worker_t *workers,
       int *acked)
{
    mongoc_client_t *direct = mongoc_client_new(server_uri);
    check_stored(direct, db, workers, acked);
    check_faults_fired(proxy);
    mongoc_database_t *database = mongoc_client_get_database(direct, db);
    CHECK(mongoc_database_drop(database, NULL), "drop %s", db);
    mongoc_database_destroy(database);
    mongoc_client_destroy(direct);
}

static void
run(const char *server_uri, int seconds, mongoq_faultproxy_t *proxy, const char *db)
{
    static worker_t workers[WORKERS];
    int64_t start = now_ms();
    run_end_t end = {.min_ms = start + seconds * 1000,
                     .max_ms =
                         start + (seconds * 1000 > FIRE_BOUND_MS ? seconds * 1000 : FIRE_BOUND_MS)};
    chaos_t chaos = {.proxy = proxy, .end = &end};
    pthread_t worker_threads[WORKERS], chaos_thread;
    mongoc_client_pool_t *pool = proxied_pool(proxy, server_uri);
    int acked = 0, ops = 0;
    atomic_init(&end.all_fired, false);
    chaos_start(&chaos, &chaos_thread);
    for (int i = 0; i < WORKERS; i++) {
        workers[i] = (worker_t){.pool = pool, .db = db, .index = i, .end = &end};
        pthread_create(&worker_threads[i], NULL, worker_main, &workers[i]);
    }
    for (int i = 0; i < WORKERS; i++) {
        pthread_join(worker_threads[i], NULL);
        ops += workers[i].n_ops;
    }
    chaos_stop(&chaos, chaos_thread);
    mongoc_client_pool_destroy(pool);
    verify(server_uri, db, proxy, workers, &acked);
    printf("faultproxy-stress: %d operations, %d inserts acknowledged, %d chaos actions in "
           "%lld ms\n",
           ops, acked, chaos.actions, (long long)(now_ms() - start));
}

int
main(int argc, char **argv)
{
    const char *server_uri = getenv("MONGOQ_TEST_URI");
    int seconds = argc > 1 ? atoi(argv[1]) : 3;
    bson_error_t error;
    /* At most 60 s (also the longest run, FIRE_BOUND_MS being less): the chaos table adds about
     * 10 rules a second, the proxy keeps 1024. */
    if (!server_uri || !*server_uri || seconds < 1 || seconds > 60) {
        fprintf(stderr, "usage: MONGOQ_TEST_URI=mongodb://... %s [SECONDS (1-60)]\n", argv[0]);
        return 2;
    }
    mongoc_init();
    mongoq_faultproxy_t *proxy = mongoq_faultproxy_start(server_uri, NULL, &error);
    if (!proxy) {
        fprintf(stderr, "faultproxy-stress: %s\n", error.message);
        mongoc_cleanup();
        return 1;
    }
    char *db = bson_strdup_printf("fpstress_%d", (int)getpid());
    run(server_uri, seconds, proxy, db);
    mongoq_faultproxy_stop(proxy);
    bson_free(db);
    mongoc_cleanup();
    int failed = atomic_load(&failures);
    printf("faultproxy-stress: %s, %d failed\n", failed ? "FAILED" : "passed", failed);
    return failed ? 1 : 0;
}

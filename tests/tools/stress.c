/*
 * mongoq-stress: every thread mongoq has, running at once, checked with real assertions.
 *
 *   MONGOQ_TEST_URI=mongodb://... mongoq-stress [part ...]
 *
 * Written for ThreadSanitizer, under which Criterion cannot start, so it uses no test framework:
 * a failed check prints where and what, and the program ends with "stress: N passed, M failed"
 * (exit status 1 on any failure). Parts (all by default; name them to run some):
 *   producers - enqueue/enqueue_many from 3 threads, claim/claim_many from 4 with ack, ack_many,
 *               retry (delay 0) and fail: every message ends acked or dead as its sequence number
 *               says, delivered exactly as often as expected;
 *   worker    - a worker (4 threads, batch 10, heartbeat) while producers enqueue, stopped
 *               mid-flight with a timeout, then a second worker drains the rest: every message
 *               handled exactly once, counters consistent;
 *   waker     - idle consumers blocked in claim woken through the change stream by enqueues on
 *               another handle, while the queue's reaper returns what consumers abandon;
 *   signal    - mongoq_worker_request_stop from a SIGUSR1 handler (pthread_kill from another
 *               thread), then mongoq_worker_stop;
 *   destroy   - mongoq_queue_destroy while the waker's thread waits (change stream or polling),
 *               idle or busy: it returns promptly.
 * Each part uses its own database stress_<pid>_<part> and drops it. Every loop is bounded.
 *
 * Under ThreadSanitizer (libmongoc/libbson are not instrumented; see the suppression file):
 *   cmake -S . -B build/stress-tsan -DMONGOQ_SANITIZE=thread && cmake --build build/stress-tsan
 *   TSAN_OPTIONS="suppressions=$PWD/tests/tools/tsan-libmongoc.supp halt_on_error=1" \
 *     setarch -R build/stress-tsan/tests/mongoq-stress
 */
#include <mongoq/mongoq.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_PRINTED_FAILURES 20

/* ---- checks, time, environment --------------------------------------------------------------- */

typedef struct {
    const char *name;
    atomic_int failures;
} part_t;

static bool
check(part_t *part, bool ok, const char *expr, int line, const char *fmt, ...)
    BSON_GNUC_PRINTF(5, 6);

/* Any thread may check; a failure is printed (the first few) and counted against the part. */
static bool
check(part_t *part, bool ok, const char *expr, int line, const char *fmt, ...)
{
    if (ok) {
        return true;
    }
    if (atomic_fetch_add(&part->failures, 1) < MAX_PRINTED_FAILURES) {
        char what[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        fprintf(stderr, "stress: %s: FAILED at stress.c:%d (%s): %s\n", part->name, line, expr,
                what);
    }
    return false;
}

#define CHECK(part, cond, ...) check((part), (cond), #cond, __LINE__, __VA_ARGS__)

static const char *g_uri;

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls cond every 5 ms until it holds or timeout_ms passes; returns its last value. */
static bool
wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    for (int64_t i = 0; i <= timeout_ms / 5; i++) {
        if (cond(ctx)) {
            return true;
        }
        if (now_ms() >= deadline) {
            break;
        }
        sleep_ms(5);
    }
    return cond(ctx);
}

static mongoc_client_pool_t *
pool_new(const char *appname)
{
    mongoc_uri_t *uri = mongoc_uri_new(g_uri);
    BSON_ASSERT(uri); /* validated in main */
    mongoc_uri_set_appname(uri, appname);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    BSON_ASSERT(pool);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_uri_destroy(uri);
    return pool;
}

/* One part's database, a pool for its queues and a client of its own for direct reads. */
typedef struct {
    part_t *part;
    char db[64];
    mongoc_client_pool_t *pool;
    mongoc_client_t *client;
} env_t;

static void
env_open(env_t *e, part_t *part)
{
    memset(e, 0, sizeof *e);
    e->part = part;
    bson_snprintf(e->db, sizeof e->db, "stress_%d_%s", (int)getpid(), part->name);
    e->pool = pool_new("stress");
    e->client = mongoc_client_new(g_uri);
    BSON_ASSERT(e->client);
    mongoc_client_set_error_api(e->client, MONGOC_ERROR_API_VERSION_2);
}

static void
env_close(env_t *e)
{
    bson_error_t error;
    mongoc_database_t *db = mongoc_client_get_database(e->client, e->db);
    CHECK(e->part, mongoc_database_drop_with_opts(db, NULL, &error), "drop %s: %s", e->db,
          error.message);
    mongoc_database_destroy(db);
    mongoc_client_destroy(e->client);
    mongoc_client_pool_destroy(e->pool);
}

/* Documents of the queue collection matching a JSON filter; -1 on error (checked). */
static int64_t
count_docs(env_t *e, const char *filter_json)
{
    bson_error_t error;
    bson_t *filter = bson_new_from_json((const uint8_t *)filter_json, -1, &error);
    BSON_ASSERT(filter);
    mongoc_collection_t *coll = mongoc_client_get_collection(e->client, e->db, "q");
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    CHECK(e->part, n >= 0, "count %s: %s", filter_json, error.message);
    mongoc_collection_destroy(coll);
    bson_destroy(filter);
    return n;
}

/* Warnings and errors the library logs are worth seeing next to a failure. */
static void
on_log(mongoq_log_level_t level, const char *message, void *user_data)
{
    if (level <= MONGOQ_LOG_WARNING) {
        fprintf(stderr, "stress: %s: log: %s\n", ((part_t *)user_data)->name, message);
    }
}

static mongoq_queue_t *
queue_open(env_t *e, mongoc_client_pool_t *pool, mongoq_queue_opts_t *opts)
{
    bson_error_t error;
    opts->log_fn = on_log;
    opts->log_user_data = e->part;
    mongoq_queue_t *q = mongoq_queue_new(pool, e->db, "q", opts, &error);
    CHECK(e->part, q != NULL, "queue_new: %s", error.message);
    return q;
}

/* ---- messages carry a sequence number ------------------------------------------------------- */

static bool
enqueue_seqs(part_t *part, mongoq_queue_t *q, int first, int n)
{
    bson_t *payloads[16];
    bson_error_t error;
    bool ok;
    BSON_ASSERT(n >= 1 && n <= 16);
    for (int i = 0; i < n; i++) {
        payloads[i] = BCON_NEW("seq", BCON_INT32(first + i));
    }
    if (n == 1) {
        ok = mongoq_enqueue(q, payloads[0], NULL, NULL, &error);
    } else {
        ok = mongoq_enqueue_many(q, (const bson_t *const *)payloads, (size_t)n, NULL, NULL, NULL, &error);
    }
    CHECK(part, ok, "enqueue of %d from %d: %s", n, first, error.message);
    for (int i = 0; i < n; i++) {
        bson_destroy(payloads[i]);
    }
    return ok;
}

/* The message's sequence number: -1 (poison) .. n-1; checked, INT32_MIN when absent. */
static int
seq_of(part_t *part, const mongoq_message_t *msg, int n)
{
    bson_iter_t it;
    int seq = INT32_MIN;
    if (bson_iter_init_find(&it, mongoq_message_payload(msg), "seq") &&
        BSON_ITER_HOLDS_INT32(&it)) {
        seq = bson_iter_int32(&it);
    }
    if (!CHECK(part, seq >= -1 && seq < n, "payload seq %d out of range", seq)) {
        return INT32_MIN;
    }
    return seq;
}

static atomic_int *
counts_new(int n)
{
    atomic_int *c = bson_malloc(sizeof *c * (size_t)n);
    for (int i = 0; i < n; i++) {
        atomic_init(&c[i], 0);
    }
    return c;
}

static mongoq_consumer_t *
consumer_new(part_t *part, mongoq_queue_t *q, const char *name, int index)
{
    char buf[64];
    bson_error_t error;
    mongoq_consumer_opts_t opts = MONGOQ_CONSUMER_OPTS_INIT;
    bson_snprintf(buf, sizeof buf, "stress-%s-%d", name, index);
    opts.name = buf;
    mongoq_consumer_t *c = mongoq_consumer_new(q, &opts, &error);
    CHECK(part, c != NULL, "consumer_new: %s", error.message);
    return c;
}

/* ---- part 1: producers and consumers on one queue -------------------------------------------- */

#define P1_PRODUCERS 3
#define P1_PER_PRODUCER 150
#define P1_N (P1_PRODUCERS * P1_PER_PRODUCER)
#define P1_CONSUMERS 4
#define P1_CLAIM_MANY 7
#define P1_DEADLINE_MS 60000

/* What a consumer does with message seq (max_attempts is 2 on this queue). */
typedef enum { FATE_ACK, FATE_RETRY_THEN_ACK, FATE_RETRY_TO_DEATH, FATE_FAIL } fate_t;

static fate_t
fate_of(int seq)
{
    switch (seq % 10) {
    case 0:
        return FATE_FAIL;
    case 1:
    case 2:
        return FATE_RETRY_THEN_ACK;
    case 3:
        return FATE_RETRY_TO_DEATH; /* retried on attempt 1; the retry of attempt 2 buries it */
    default:
        return FATE_ACK;
    }
}

typedef struct {
    part_t *part;
    mongoq_queue_t *queue;
    atomic_int *claims, *acked, *dead;
    atomic_int finished; /* messages that reached acked or dead */
    atomic_int retried;  /* retries that made the message ready again */
    int64_t deadline;
} p1_t;

typedef struct {
    p1_t *p;
    int index;
    pthread_t thread;
} p1_thread_t;

static void *
p1_producer(void *arg)
{
    p1_thread_t *t = arg;
    int seq = t->index * P1_PER_PRODUCER, end = seq + P1_PER_PRODUCER;
    /* Rounds go: one enqueue_many of 10, then 5 single enqueues, and again. */
    for (int round = 0; seq < end && round < P1_PER_PRODUCER; round++) {
        int n = round % 6 == 0 ? 10 : 1;
        n = n > end - seq ? end - seq : n;
        if (!enqueue_seqs(t->p->part, t->p->queue, seq, n)) {
            break;
        }
        seq += n;
    }
    return NULL;
}

static void
p1_record_final(p1_t *p, atomic_int *outcome, int seq)
{
    atomic_fetch_add(&outcome[seq], 1);
    atomic_fetch_add(&p->finished, 1);
}

/* Retries msg (delay 0): ready again, or dead once attempts reach max_attempts. */
static void
p1_retry(p1_t *p, mongoq_message_t *msg, int seq)
{
    bson_error_t error;
    bool dies = mongoq_message_attempts(msg) >= mongoq_message_max_attempts(msg);
    if (!CHECK(p->part, mongoq_message_retry(msg, 0, "stress: retry", &error),
               "retry of %d: %s", seq, error.message)) {
        return;
    }
    if (dies) {
        p1_record_final(p, p->dead, seq);
    } else {
        atomic_fetch_add(&p->retried, 1);
    }
}

/*
 * Does what fate_of(seq) says with one claimed message. Messages to ack go to ack_later when the
 * caller acks them together (ack_many); otherwise they are acked here. Takes msg unless it is
 * put in ack_later.
 */
static void
p1_handle(p1_t *p, mongoq_message_t *msg, mongoq_message_t **ack_later, size_t *n_later)
{
    bson_error_t error;
    int seq = seq_of(p->part, msg, P1_N);
    if (!CHECK(p->part, seq >= 0, "a message without its sequence number")) {
        mongoq_message_destroy(msg);
        return;
    }
    int claims = atomic_fetch_add(&p->claims[seq], 1) + 1;
    CHECK(p->part, mongoq_message_attempts(msg) == claims, "message %d: attempts %d on claim %d",
          seq, mongoq_message_attempts(msg), claims);
    fate_t fate = fate_of(seq);
    if (fate == FATE_FAIL) {
        if (CHECK(p->part, mongoq_message_fail(msg, "stress: fail", &error), "fail of %d: %s", seq,
                  error.message)) {
            p1_record_final(p, p->dead, seq);
        }
    } else if (fate == FATE_RETRY_TO_DEATH || (fate == FATE_RETRY_THEN_ACK && claims == 1)) {
        p1_retry(p, msg, seq);
    } else if (ack_later) {
        ack_later[(*n_later)++] = msg;
        return;
    } else if (CHECK(p->part, mongoq_message_ack(msg, &error), "ack of %d: %s", seq,
                     error.message)) {
        p1_record_final(p, p->acked, seq);
    }
    mongoq_message_destroy(msg);
}

/* Acks the messages a claim_many consumer set aside, in one ack_many. */
static void
p1_ack_many(p1_t *p, mongoq_message_t **msgs, size_t n)
{
    bson_error_t error;
    bool ok = mongoq_message_ack_many(msgs, n, &error);
    CHECK(p->part, ok, "ack_many of %zu: %s", n, error.message);
    for (size_t i = 0; i < n; i++) {
        if (ok) {
            p1_record_final(p, p->acked, seq_of(p->part, msgs[i], P1_N));
        }
        mongoq_message_destroy(msgs[i]);
    }
}

/* Even consumers claim one at a time, odd ones claim_many and ack_many. */
static void *
p1_consumer(void *arg)
{
    p1_thread_t *t = arg;
    p1_t *p = t->p;
    mongoq_consumer_t *c = consumer_new(p->part, p->queue, "p1", t->index);
    bool many = t->index % 2 == 1;
    for (int round = 0;
         c && round < 100000 && atomic_load(&p->finished) < P1_N && now_ms() < p->deadline;
         round++) {
        mongoq_message_t *msgs[P1_CLAIM_MANY], *later[P1_CLAIM_MANY];
        size_t n = 0, n_later = 0;
        bson_error_t error;
        bool ok = many ? mongoq_consumer_claim_many(c, P1_CLAIM_MANY, 100, msgs, &n, &error)
                       : mongoq_consumer_claim(c, 100, &msgs[0], &error);
        if (!CHECK(p->part, ok, "claim: %s", error.message)) {
            break;
        }
        n = many ? n : (msgs[0] != NULL);
        for (size_t i = 0; i < n; i++) {
            p1_handle(p, msgs[i], many ? later : NULL, &n_later);
        }
        if (n_later > 0) {
            p1_ack_many(p, later, n_later);
        }
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

static void
p1_check_seqs(p1_t *p)
{
    for (int seq = 0; seq < P1_N; seq++) {
        fate_t fate = fate_of(seq);
        int claims = atomic_load(&p->claims[seq]), acked = atomic_load(&p->acked[seq]);
        int dead = atomic_load(&p->dead[seq]);
        int want_claims = fate == FATE_ACK || fate == FATE_FAIL ? 1 : 2;
        bool want_dead = fate == FATE_FAIL || fate == FATE_RETRY_TO_DEATH;
        CHECK(p->part, claims == want_claims, "message %d claimed %d times, want %d", seq, claims,
              want_claims);
        CHECK(p->part, acked + dead == 1 && dead == (want_dead ? 1 : 0),
              "message %d: acked %d times, dead %d times (fate %d)", seq, acked, dead, (int)fate);
    }
}

/* Per 10 messages: 13 claims, 8 acked, 2 dead, 3 retried back to ready. */
static void
p1_check_totals(p1_t *p, env_t *e)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(p->queue, &c);
    int64_t tens = P1_N / 10;
    CHECK(p->part, c.enqueued == P1_N, "enqueued %" PRId64, c.enqueued);
    CHECK(p->part, c.claimed == 13 * tens, "claimed %" PRId64 ", want %" PRId64, c.claimed,
          13 * tens);
    CHECK(p->part, c.acked == 8 * tens, "acked %" PRId64, c.acked);
    CHECK(p->part, c.failed == 2 * tens, "failed %" PRId64, c.failed);
    CHECK(p->part, c.retried == 3 * tens && atomic_load(&p->retried) == 3 * tens,
          "retried %" PRId64 " (seen %d)", c.retried, atomic_load(&p->retried));
    CHECK(p->part, c.lease_lost == 0, "lease_lost %" PRId64, c.lease_lost);
    int64_t dead = count_docs(e, "{\"status\": \"dead\"}"), all = count_docs(e, "{}");
    CHECK(p->part, dead == 2 * tens && all == dead,
          "on the server: %" PRId64 " dead of %" PRId64 " documents, want %" PRId64 " dead only",
          dead, all, 2 * tens);
}

static void
part_producers(part_t *part)
{
    env_t e;
    env_open(&e, part);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.max_attempts = 2;
    p1_t p = {.part = part, .deadline = now_ms() + P1_DEADLINE_MS};
    p.queue = queue_open(&e, e.pool, &opts);
    if (p.queue) {
        p.claims = counts_new(P1_N);
        p.acked = counts_new(P1_N);
        p.dead = counts_new(P1_N);
        p1_thread_t producers[P1_PRODUCERS], consumers[P1_CONSUMERS];
        for (int i = 0; i < P1_CONSUMERS; i++) {
            consumers[i] = (p1_thread_t){.p = &p, .index = i};
            BSON_ASSERT(pthread_create(&consumers[i].thread, NULL, p1_consumer, &consumers[i]) == 0);
        }
        for (int i = 0; i < P1_PRODUCERS; i++) {
            producers[i] = (p1_thread_t){.p = &p, .index = i};
            BSON_ASSERT(pthread_create(&producers[i].thread, NULL, p1_producer, &producers[i]) == 0);
        }
        for (int i = 0; i < P1_PRODUCERS; i++) {
            pthread_join(producers[i].thread, NULL);
        }
        for (int i = 0; i < P1_CONSUMERS; i++) {
            pthread_join(consumers[i].thread, NULL);
        }
        p1_check_seqs(&p);
        p1_check_totals(&p, &e);
        bson_free(p.claims);
        bson_free(p.acked);
        bson_free(p.dead);
    }
    mongoq_queue_destroy(p.queue);
    env_close(&e);
}

/* ---- part 2: a worker stopped mid-flight, a second one drains the rest ----------------------- */

#define P2_N 400
#define P2_PRODUCERS 2
#define P2_LEASE_MS 1500
#define P2_HEARTBEAT_MS 150
#define P2_SLOW_MS 1800 /* longer than the lease: only the heartbeat keeps it */
#define P2_DEADLINE_MS 60000

static bool
p2_is_slow(int seq)
{
    return seq % 100 == 5;
}

typedef struct {
    part_t *part;
    atomic_int *runs;  /* per seq, over both workers */
    atomic_int calls;  /* this worker's handler calls */
} p2_ctx_t;

static mongoq_result_t
p2_handler(mongoq_message_t *msg, void *user_data)
{
    p2_ctx_t *ctx = user_data;
    int seq = seq_of(ctx->part, msg, P2_N);
    atomic_fetch_add(&ctx->calls, 1);
    if (seq < 0) {
        return MONGOQ_FAIL;
    }
    int runs = atomic_fetch_add(&ctx->runs[seq], 1) + 1;
    CHECK(ctx->part, runs == 1, "message %d handled %d times", seq, runs);
    sleep_ms(p2_is_slow(seq) ? P2_SLOW_MS : 1);
    CHECK(ctx->part, !mongoq_message_lease_lost(msg),
          "message %d lost its lease while its handler ran (heartbeat)", seq);
    return MONGOQ_ACK;
}

typedef struct {
    part_t *part;
    mongoq_queue_t *queue;
    int index;
    pthread_t thread;
} p2_producer_t;

/* Batches of 5 and single messages, paced so the first worker is stopped mid-flight. */
static void *
p2_producer(void *arg)
{
    p2_producer_t *t = arg;
    int per = P2_N / P2_PRODUCERS, seq = t->index * per, end = seq + per;
    for (int round = 0; seq < end && round < per; round++) {
        int n = round % 2 == 0 ? 5 : 1;
        n = n > end - seq ? end - seq : n;
        if (!enqueue_seqs(t->part, t->queue, seq, n)) {
            return NULL;
        }
        seq += n;
        sleep_ms(5);
    }
    return NULL;
}

static mongoq_worker_t *
p2_worker_start(part_t *part, mongoq_queue_t *q, p2_ctx_t *ctx, const char *name)
{
    bson_error_t error;
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = p2_handler;
    opts.user_data = ctx;
    opts.threads = 4;
    opts.batch = 10;
    opts.heartbeat_ms = P2_HEARTBEAT_MS;
    opts.name = name;
    mongoq_worker_t *w = mongoq_worker_new(q, &opts, &error);
    if (!CHECK(part, w != NULL, "worker_new: %s", error.message)) {
        return NULL;
    }
    if (!CHECK(part, mongoq_worker_start(w, &error), "worker_start: %s", error.message)) {
        mongoq_worker_destroy(w);
        return NULL;
    }
    return w;
}

typedef struct {
    mongoq_worker_t *a, *b;
    int64_t acked;
} p2_progress_t;

static bool
p2_acked_reached(void *arg)
{
    p2_progress_t *pr = arg;
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    int64_t acked = 0;
    if (pr->a) {
        mongoq_worker_counters(pr->a, &c);
        acked += c.acked;
    }
    if (pr->b) {
        mongoq_worker_counters(pr->b, &c);
        acked += c.acked;
    }
    return acked >= pr->acked;
}

/* Stops with a short timeout (a slow handler may outlast it: STOPPED), then for good. */
static void
p2_stop_mid_flight(part_t *part, mongoq_worker_t *w)
{
    bson_error_t error;
    int64_t t0 = now_ms();
    bool stopped = mongoq_worker_stop(w, 50, &error);
    bool timed_out = !stopped;
    if (!stopped) {
        CHECK(part, error.domain == MONGOQ_ERROR_DOMAIN && error.code == MONGOQ_ERROR_STOPPED,
              "a timed-out stop: domain %u code %u: %s", error.domain, error.code, error.message);
        stopped = mongoq_worker_stop(w, 10000, &error);
    }
    CHECK(part, stopped, "worker_stop: %s", error.message);
    printf("stress: %s: first worker stopped in %" PRId64 " ms (the 50 ms stop %s)\n",
           part->name, now_ms() - t0, timed_out ? "timed out" : "was enough");
}

/* The first worker is stopped: what it did adds up, and it holds nothing any more. */
static void
p2_check_first(part_t *part, env_t *e, mongoq_worker_t *w, p2_ctx_t *ctx)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    CHECK(part, c.acked == atomic_load(&ctx->calls), "first worker: acked %" PRId64
          " of %d handled", c.acked, atomic_load(&ctx->calls));
    CHECK(part, c.claimed >= c.acked && c.lease_lost == 0 && c.retried == 0 && c.failed == 0,
          "first worker: claimed %" PRId64 " acked %" PRId64 " lease_lost %" PRId64
          " retried %" PRId64 " failed %" PRId64,
          c.claimed, c.acked, c.lease_lost, c.retried, c.failed);
    CHECK(part, c.acked < P2_N, "first worker handled everything: not stopped mid-flight");
    int64_t processing = count_docs(e, "{\"status\": \"processing\"}");
    CHECK(part, processing == 0, "%" PRId64 " messages still processing after the first stop",
          processing);
}

static void
p2_check_end(part_t *part, env_t *e, mongoq_queue_t *q, mongoq_worker_t *a, mongoq_worker_t *b,
             atomic_int *runs)
{
    mongoq_counters_t ca = MONGOQ_COUNTERS_INIT, cb = MONGOQ_COUNTERS_INIT, cq = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(a, &ca);
    mongoq_worker_counters(b, &cb);
    mongoq_queue_counters(q, &cq);
    for (int seq = 0; seq < P2_N; seq++) {
        CHECK(part, atomic_load(&runs[seq]) == 1, "message %d handled %d times", seq,
              atomic_load(&runs[seq]));
    }
    CHECK(part, ca.acked + cb.acked == P2_N && cq.acked == P2_N,
          "acked %" PRId64 " + %" PRId64 " (queue %" PRId64 "), want %d", ca.acked, cb.acked,
          cq.acked, P2_N);
    CHECK(part, cq.claimed == ca.claimed + cb.claimed && cq.enqueued == P2_N,
          "queue claimed %" PRId64 " vs workers %" PRId64 " + %" PRId64 ", enqueued %" PRId64,
          cq.claimed, ca.claimed, cb.claimed, cq.enqueued);
    CHECK(part, cb.lease_lost == 0 && cq.lease_lost == 0, "lease_lost %" PRId64 " / %" PRId64,
          cb.lease_lost, cq.lease_lost);
    int64_t left = count_docs(e, "{}");
    CHECK(part, left == 0, "%" PRId64 " documents left", left);
    printf("stress: %s: first worker acked %" PRId64 " (claimed %" PRId64 "), second %" PRId64
           " (claimed %" PRId64 ")\n",
           part->name, ca.acked, ca.claimed, cb.acked, cb.claimed);
}

static void
p2_run(part_t *part, env_t *e, mongoq_queue_t *q, atomic_int *runs)
{
    p2_ctx_t ca = {.part = part, .runs = runs}, cb = {.part = part, .runs = runs};
    p2_producer_t producers[P2_PRODUCERS];
    mongoq_worker_t *a = p2_worker_start(part, q, &ca, "stress-a"), *b = NULL;
    if (!a) {
        return;
    }
    for (int i = 0; i < P2_PRODUCERS; i++) {
        producers[i] = (p2_producer_t){.part = part, .queue = q, .index = i};
        BSON_ASSERT(pthread_create(&producers[i].thread, NULL, p2_producer, &producers[i]) == 0);
    }
    p2_progress_t pr = {.a = a, .acked = P2_N / 3};
    CHECK(part, wait_until(p2_acked_reached, &pr, 20000), "first worker acked < %d in 20 s",
          P2_N / 3);
    p2_stop_mid_flight(part, a);
    p2_check_first(part, e, a, &ca);
    b = p2_worker_start(part, q, &cb, "stress-b");
    for (int i = 0; i < P2_PRODUCERS; i++) {
        pthread_join(producers[i].thread, NULL);
    }
    if (b) {
        pr = (p2_progress_t){.a = a, .b = b, .acked = P2_N};
        CHECK(part, wait_until(p2_acked_reached, &pr, P2_DEADLINE_MS), "not all acked in time");
        bson_error_t error;
        CHECK(part, mongoq_worker_stop(b, 10000, &error), "second stop: %s", error.message);
        p2_check_end(part, e, q, a, b, runs);
    }
    mongoq_worker_destroy(b);
    mongoq_worker_destroy(a);
}

static void
part_worker(part_t *part)
{
    env_t e;
    env_open(&e, part);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = P2_LEASE_MS;
    mongoq_queue_t *q = queue_open(&e, e.pool, &opts);
    if (q) {
        atomic_int *runs = counts_new(P2_N);
        p2_run(part, &e, q, runs);
        bson_free(runs);
    }
    mongoq_queue_destroy(q);
    env_close(&e);
}

/* ---- part 3: idle consumers woken by the change stream, the reaper running -------------------- */

#define P3_N 24
#define P3_CONSUMERS 4 /* the last one abandons what it claims first */
#define P3_LEASE_MS 600
#define P3_REAP_MS 100
#define P3_POLL_MS 10000     /* so only the change stream can wake idle consumers quickly */
#define P3_CLAIM_WAIT_MS 4000
#define P3_MAX_LATENCY_MS 2000
#define P3_DEADLINE_MS 40000

typedef struct {
    part_t *part;
    mongoq_queue_t *queue;    /* the consumers' handle */
    mongoq_queue_t *producer; /* another handle on another pool: wakes nobody in-process */
    atomic_int in_claim;
    atomic_int *claims, *acked, *abandoned;
    atomic_int_least64_t enqueued_at[P3_N];
    atomic_int_least64_t max_latency_ms; /* enqueue -> first claim */
    atomic_int acked_total, abandoned_total;
    atomic_bool done;
    int64_t deadline;
} p3_t;

typedef struct {
    p3_t *p;
    int index;
    pthread_t thread;
} p3_thread_t;

static void
p3_note_latency(p3_t *p, int seq)
{
    int64_t latency = now_ms() - atomic_load(&p->enqueued_at[seq]);
    int64_t max = atomic_load(&p->max_latency_ms);
    for (int i = 0; i < 1000 && latency > max; i++) {
        if (atomic_compare_exchange_weak(&p->max_latency_ms, &max, latency)) {
            break;
        }
    }
}

/*
 * Acks msg, or abandons it (no ack: the lease is left to expire) on its first attempt when the
 * abandoner claimed it or its seq is a multiple of 4.
 */
static void
p3_handle(p3_t *p, mongoq_message_t *msg, bool abandoner)
{
    bson_error_t error;
    int seq = seq_of(p->part, msg, P3_N);
    if (seq >= 0) {
        int claims = atomic_fetch_add(&p->claims[seq], 1) + 1;
        if (claims == 1) {
            p3_note_latency(p, seq);
        }
        if ((abandoner || seq % 4 == 0) && mongoq_message_attempts(msg) == 1) {
            atomic_fetch_add(&p->abandoned[seq], 1);
            atomic_fetch_add(&p->abandoned_total, 1);
            mongoq_message_destroy(msg);
            return;
        }
    }
    if (CHECK(p->part, mongoq_message_ack(msg, &error), "ack of %d: %s", seq, error.message) &&
        seq >= 0) {
        atomic_fetch_add(&p->acked[seq], 1);
        atomic_fetch_add(&p->acked_total, 1);
    }
    mongoq_message_destroy(msg);
}

static void *
p3_consumer(void *arg)
{
    p3_thread_t *t = arg;
    p3_t *p = t->p;
    bool abandoner = t->index == P3_CONSUMERS - 1;
    mongoq_consumer_t *c = consumer_new(p->part, p->queue, "p3", t->index);
    for (int round = 0; c && round < 10000 && !atomic_load(&p->done) && now_ms() < p->deadline;
         round++) {
        mongoq_message_t *msgs[3];
        size_t n = 0;
        bson_error_t error;
        atomic_fetch_add(&p->in_claim, 1);
        bool ok = abandoner
                      ? mongoq_consumer_claim_many(c, 3, P3_CLAIM_WAIT_MS, msgs, &n, &error)
                      : mongoq_consumer_claim(c, P3_CLAIM_WAIT_MS, &msgs[0], &error);
        atomic_fetch_sub(&p->in_claim, 1);
        if (!CHECK(p->part, ok, "claim: %s", error.message)) {
            break;
        }
        n = abandoner ? n : (msgs[0] != NULL);
        for (size_t i = 0; i < n; i++) {
            p3_handle(p, msgs[i], abandoner);
        }
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

static bool
p3_all_in_claim(void *arg)
{
    p3_t *p = arg;
    return atomic_load(&p->in_claim) == P3_CONSUMERS;
}

/* One message at a time, each once every consumer is (back) in claim. */
static void *
p3_producer(void *arg)
{
    p3_t *p = arg;
    for (int seq = 0; seq < P3_N; seq++) {
        wait_until(p3_all_in_claim, p, 5000);
        sleep_ms(20); /* from inside claim to the wait: no condition to await here */
        atomic_store(&p->enqueued_at[seq], now_ms());
        if (!enqueue_seqs(p->part, p->producer, seq, 1)) {
            break;
        }
    }
    return NULL;
}

/* Reads stats and counters while everything runs; true once the change stream was open. */
static bool
p3_monitor(p3_t *p)
{
    bool stream_seen = false;
    for (int i = 0; i < 2000 && atomic_load(&p->acked_total) < P3_N && now_ms() < p->deadline;
         i++) {
        mongoq_stats_t stats = MONGOQ_STATS_INIT;
        mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
        bson_error_t error;
        CHECK(p->part, mongoq_queue_stats(p->queue, &stats, &error), "stats: %s", error.message);
        mongoq_queue_counters(p->queue, &c);
        stream_seen = stream_seen || c.change_stream_active;
        sleep_ms(20);
    }
    return stream_seen;
}

static void
p3_check(p3_t *p, env_t *e, bool stream_seen)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(p->queue, &c);
    for (int seq = 0; seq < P3_N; seq++) {
        int claims = atomic_load(&p->claims[seq]), abandoned = atomic_load(&p->abandoned[seq]);
        CHECK(p->part, atomic_load(&p->acked[seq]) == 1 && claims == 1 + abandoned,
              "message %d: acked %d, claimed %d, abandoned %d", seq, atomic_load(&p->acked[seq]),
              claims, abandoned);
    }
    int abandoned = atomic_load(&p->abandoned_total);
    CHECK(p->part, abandoned >= P3_N / 4, "only %d abandoned", abandoned);
    CHECK(p->part, stream_seen && !c.polling_fallback, "the change stream never opened");
    CHECK(p->part, c.wakeups_change_stream > 0, "no consumer was woken by the change stream");
    CHECK(p->part, c.reaped >= abandoned, "reaped %" PRId64 " of %d abandoned", c.reaped,
          abandoned);
    CHECK(p->part, c.lease_lost == 0, "lease_lost %" PRId64, c.lease_lost);
    int64_t max = atomic_load(&p->max_latency_ms);
    CHECK(p->part, max < P3_MAX_LATENCY_MS, "an idle consumer took %" PRId64 " ms to wake", max);
    int64_t left = count_docs(e, "{\"payload.seq\": {\"$gte\": 0}}");
    CHECK(p->part, left == 0, "%" PRId64 " messages left", left);
    printf("stress: %s: %d abandoned, %" PRId64 " reaped, %" PRId64 " change-stream wake-ups, "
           "slowest wake %" PRId64 " ms\n",
           p->part->name, abandoned, c.reaped, c.wakeups_change_stream, max);
}

static void
p3_run(p3_t *p, env_t *e)
{
    p3_thread_t consumers[P3_CONSUMERS];
    pthread_t producer;
    for (int i = 0; i < P3_CONSUMERS; i++) {
        consumers[i] = (p3_thread_t){.p = p, .index = i};
        BSON_ASSERT(pthread_create(&consumers[i].thread, NULL, p3_consumer, &consumers[i]) == 0);
    }
    BSON_ASSERT(pthread_create(&producer, NULL, p3_producer, p) == 0);
    bool stream_seen = p3_monitor(p);
    pthread_join(producer, NULL);
    /* Poison messages (seq -1) end the consumers' waits; each then sees done and returns. */
    atomic_store(&p->done, true);
    for (int i = 0; i < 2 * P3_CONSUMERS; i++) {
        enqueue_seqs(p->part, p->producer, -1, 1);
    }
    for (int i = 0; i < P3_CONSUMERS; i++) {
        pthread_join(consumers[i].thread, NULL);
    }
    p3_check(p, e, stream_seen);
}

static void
part_waker(part_t *part)
{
    env_t e;
    env_open(&e, part);
    mongoc_client_pool_t *producer_pool = pool_new("stress-producer");
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT, popts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = P3_LEASE_MS;
    opts.reap_interval_ms = P3_REAP_MS;
    opts.poll_interval_ms = P3_POLL_MS;
    popts.no_reaper = true;
    popts.skip_ensure_indexes = true;
    p3_t *p = bson_malloc0(sizeof *p);
    p->part = part;
    p->deadline = now_ms() + P3_DEADLINE_MS;
    p->queue = queue_open(&e, e.pool, &opts);
    p->producer = p->queue ? queue_open(&e, producer_pool, &popts) : NULL;
    if (p->producer) {
        p->claims = counts_new(P3_N);
        p->acked = counts_new(P3_N);
        p->abandoned = counts_new(P3_N);
        p3_run(p, &e);
        bson_free(p->claims);
        bson_free(p->acked);
        bson_free(p->abandoned);
    }
    mongoq_queue_destroy(p->producer);
    mongoq_queue_destroy(p->queue);
    bson_free(p);
    mongoc_client_pool_destroy(producer_pool);
    env_close(&e);
}

/* ---- part 4: request_stop from a signal handler ------------------------------------------------ */

#define P4_N 10
#define P4_THREADS 2
#define P4_BATCH 5

/* Set before the signal can be sent (the threads that send it are created afterwards). */
static mongoq_worker_t *g_sig_worker;
/* Written by the handler, read by the thread it interrupted (and after joining it). */
static volatile sig_atomic_t g_sig_handled;

static void
on_sigusr1(int sig)
{
    (void)sig;
    mongoq_worker_request_stop(g_sig_worker);
    g_sig_handled = 1;
}

typedef struct {
    part_t *part;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool gate_open;   /* handlers block until then */
    int started;      /* handlers that began */
    pthread_t target; /* the thread that takes the signal */
    atomic_bool target_ready;
} p4_t;

/* Holds every handler until the test opens the gate (at most 15 s). */
static mongoq_result_t
p4_handler(mongoq_message_t *msg, void *user_data)
{
    p4_t *p = user_data;
    struct timespec until;
    (void)msg;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 15;
    pthread_mutex_lock(&p->mu);
    p->started++;
    pthread_cond_broadcast(&p->cond);
    for (int i = 0; i < 100000 && !p->gate_open; i++) {
        if (pthread_cond_timedwait(&p->cond, &p->mu, &until) != 0) {
            break;
        }
    }
    CHECK(p->part, p->gate_open, "a handler waited 15 s for the gate");
    pthread_mutex_unlock(&p->mu);
    return MONGOQ_ACK;
}

/* The only thread with SIGUSR1 unblocked: it waits (bounded) for the signal to arrive. */
static void *
p4_target(void *arg)
{
    p4_t *p = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    atomic_store(&p->target_ready, true);
    for (int i = 0; i < 2000 && !g_sig_handled; i++) {
        sleep_ms(5); /* interrupted by the signal */
    }
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return NULL;
}

static bool
p4_target_ready(void *arg)
{
    return atomic_load(&((p4_t *)arg)->target_ready);
}

static void *
p4_killer(void *arg)
{
    p4_t *p = arg;
    if (CHECK(p->part, wait_until(p4_target_ready, p, 10000), "the target thread never ran")) {
        CHECK(p->part, pthread_kill(p->target, SIGUSR1) == 0, "pthread_kill failed");
    }
    return NULL;
}

static bool
p4_all_started(void *arg)
{
    p4_t *p = arg;
    pthread_mutex_lock(&p->mu);
    bool all = p->started == P4_THREADS;
    pthread_mutex_unlock(&p->mu);
    return all;
}

/* The keeper handed back what the two blocked threads claimed but did not start. */
static bool
p4_handed_back(void *arg)
{
    env_t *e = arg;
    return count_docs(e, "{\"status\": \"ready\", \"attempts\": 0}") == P4_N - P4_THREADS &&
           count_docs(e, "{\"status\": \"processing\"}") == P4_THREADS;
}

static void
p4_signal_and_stop(p4_t *p, env_t *e, mongoq_worker_t *w)
{
    pthread_t killer;
    bson_error_t error;
    CHECK(p->part, wait_until(p4_all_started, p, 10000), "both handler threads did not start");
    BSON_ASSERT(pthread_create(&p->target, NULL, p4_target, p) == 0);
    BSON_ASSERT(pthread_create(&killer, NULL, p4_killer, p) == 0);
    pthread_join(killer, NULL);
    pthread_join(p->target, NULL);
    CHECK(p->part, g_sig_handled, "the SIGUSR1 handler did not run");
    CHECK(p->part, wait_until(p4_handed_back, e, 10000),
          "after the signal, unstarted messages were not handed back");
    pthread_mutex_lock(&p->mu);
    p->gate_open = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    int64_t t0 = now_ms();
    CHECK(p->part, mongoq_worker_stop(w, 5000, &error), "worker_stop: %s", error.message);
    int64_t took = now_ms() - t0;
    CHECK(p->part, took < 3000, "worker_stop took %" PRId64 " ms", took);
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    CHECK(p->part, c.claimed >= P4_THREADS && c.acked == P4_THREADS && c.lease_lost == 0,
          "claimed %" PRId64 ", acked %" PRId64 ", lease_lost %" PRId64, c.claimed, c.acked,
          c.lease_lost);
    int64_t ready = count_docs(e, "{\"status\": \"ready\"}"), all = count_docs(e, "{}");
    CHECK(p->part, ready == P4_N - P4_THREADS && all == ready,
          "%" PRId64 " ready of %" PRId64 " left", ready, all);
    printf("stress: %s: SIGUSR1 handled, %" PRId64 " handed back, stop took %" PRId64 " ms\n",
           p->part->name, ready, took);
}

static void
p4_run(p4_t *p, env_t *e, mongoq_queue_t *q)
{
    bson_error_t error;
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = p4_handler;
    opts.user_data = p;
    opts.threads = P4_THREADS;
    opts.batch = P4_BATCH;
    if (!enqueue_seqs(p->part, q, 0, P4_N)) {
        return;
    }
    mongoq_worker_t *w = mongoq_worker_new(q, &opts, &error);
    if (!CHECK(p->part, w != NULL, "worker_new: %s", error.message)) {
        return;
    }
    g_sig_worker = w;
    if (CHECK(p->part, mongoq_worker_start(w, &error), "worker_start: %s", error.message)) {
        p4_signal_and_stop(p, e, w);
    }
    pthread_mutex_lock(&p->mu);
    p->gate_open = true; /* whatever failed, no handler stays blocked */
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    mongoq_worker_destroy(w);
    g_sig_worker = NULL;
}

static void
part_signal(part_t *part)
{
    env_t e;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    BSON_ASSERT(sigaction(SIGUSR1, &sa, &old) == 0);
    env_open(&e, part);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    mongoq_queue_t *q = queue_open(&e, e.pool, &opts);
    p4_t p = {.part = part};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cond, NULL);
    g_sig_handled = 0;
    if (q) {
        p4_run(&p, &e, q);
    }
    mongoq_queue_destroy(q);
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.mu);
    env_close(&e);
    sigaction(SIGUSR1, &old, NULL);
}

/* ---- part 5: destroying a queue while its waker waits ------------------------------------------- */

#define P5_ROUNDS 6
/*
 * The waker's thread notices a stop between server round trips (a change stream's getMore
 * waits up to 300 ms). With a producer keeping the server busy one getMore can take a second or
 * so on the test server, so the busy variant gets more room.
 */
#define P5_MAX_DESTROY_MS 2000
#define P5_MAX_BUSY_DESTROY_MS 5000

typedef struct {
    part_t *part;
    mongoq_queue_t *queue; /* a second handle on its own pool */
    atomic_bool stop;
    atomic_int batches;
} p5_busy_t;

/* Keeps the change stream busy: batches of 16 until told to stop (at most 5000 batches). */
static void *
p5_busy_producer(void *arg)
{
    p5_busy_t *b = arg;
    for (int i = 0; i < 5000 && !atomic_load(&b->stop); i++) {
        if (!enqueue_seqs(b->part, b->queue, 0, 16)) {
            break;
        }
        atomic_fetch_add(&b->batches, 1);
    }
    return NULL;
}

static bool
p5_stream_open(void *arg)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(arg, &c);
    return c.change_stream_active;
}

static bool
p5_busy_started(void *arg)
{
    return atomic_load(&((p5_busy_t *)arg)->batches) >= 3;
}

/*
 * Claims with a wait, which starts the waker's thread and the reaper; with await_stream, again
 * until the change stream is open (a claim whose first attempt outlasts its wait never waits,
 * so it does not start the waker: likely under ThreadSanitizer).
 */
static void
p5_start_threads(part_t *part, mongoq_queue_t *q, bool await_stream)
{
    bson_error_t error;
    mongoq_consumer_t *c = consumer_new(part, q, "p5", 0);
    int64_t deadline = now_ms() + 10000;
    for (int i = 0; c && i < 1000; i++) {
        mongoq_message_t *msg = NULL;
        if (!CHECK(part, mongoq_consumer_claim(c, 100, &msg, &error), "claim: %s",
                   error.message)) {
            break;
        }
        mongoq_message_destroy(msg); /* abandoned: a busy round may find one */
        if (!await_stream || p5_stream_open(q)) {
            break;
        }
        if (!CHECK(part, now_ms() < deadline, "the change stream did not open in 10 s")) {
            break;
        }
    }
    mongoq_consumer_destroy(c);
}

/*
 * variant 0: destroy at once (the thread may still be popping a client or opening the stream);
 * 1: once it waits (change stream open / polling for a while); 2: while a producer keeps it busy.
 */
static void
p5_round(part_t *part, env_t *e, bool stream, int variant)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_change_stream = !stream;
    opts.poll_interval_ms = 10000; /* a destroy that waited out a pause would show */
    opts.lease_ms = 1000;
    mongoq_queue_t *q = queue_open(e, e->pool, &opts);
    if (!q) {
        return;
    }
    mongoc_client_pool_t *busy_pool = pool_new("stress-busy");
    mongoq_queue_opts_t bopts = MONGOQ_QUEUE_OPTS_INIT;
    bopts.no_reaper = bopts.skip_ensure_indexes = true;
    p5_busy_t busy = {.part = part};
    pthread_t busy_thread;
    bool busy_on = false;
    p5_start_threads(part, q, variant >= 1 && stream);
    if (variant >= 1 && !stream) {
        sleep_ms(300); /* several polls: nothing to await in polling mode */
    }
    if (variant == 2) {
        busy.queue = queue_open(e, busy_pool, &bopts);
        busy_on = busy.queue && pthread_create(&busy_thread, NULL, p5_busy_producer, &busy) == 0;
        CHECK(part, busy_on && wait_until(p5_busy_started, &busy, 10000), "no busy producer");
    }
    int64_t t0 = now_ms();
    mongoq_queue_destroy(q);
    int64_t took = now_ms() - t0;
    CHECK(part, took < (variant == 2 ? P5_MAX_BUSY_DESTROY_MS : P5_MAX_DESTROY_MS), "destroy (%s, variant %d) took %" PRId64 " ms",
          stream ? "stream" : "poll", variant, took);
    atomic_store(&busy.stop, true);
    if (busy_on) {
        pthread_join(busy_thread, NULL);
    }
    mongoq_queue_destroy(busy.queue);
    mongoc_client_pool_destroy(busy_pool);
    printf("stress: %s: destroy (%s, variant %d) took %" PRId64 " ms\n", part->name,
           stream ? "stream" : "poll", variant, took);
}

static void
part_destroy(part_t *part)
{
    env_t e;
    env_open(&e, part);
    for (int round = 0; round < P5_ROUNDS; round++) {
        p5_round(part, &e, round % 2 == 0, round / 2);
    }
    env_close(&e);
}

/* ---- main -------------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*run)(part_t *part);
} part_def_t;

static const part_def_t parts[] = {
    {"producers", part_producers}, {"worker", part_worker},   {"waker", part_waker},
    {"signal", part_signal},       {"destroy", part_destroy},
};
#define N_PARTS (sizeof parts / sizeof parts[0])

static bool
selected(int argc, char **argv, const char *name)
{
    if (argc < 2) {
        return true;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], name)) {
            return true;
        }
    }
    return false;
}

int
main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    g_uri = getenv("MONGOQ_TEST_URI");
    mongoc_uri_t *uri = g_uri ? mongoc_uri_new(g_uri) : NULL;
    if (!uri) {
        fprintf(stderr, "stress: MONGOQ_TEST_URI is unset or invalid: run scripts/test, or point "
                        "it at a replica set\n");
        return 1;
    }
    mongoc_uri_destroy(uri);
    /* Only part 4's target thread takes SIGUSR1: every other thread inherits it blocked. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    mongoc_init();
    for (size_t i = 0; i < N_PARTS; i++) {
        if (!selected(argc, argv, parts[i].name)) {
            continue;
        }
        part_t part = {.name = parts[i].name};
        atomic_init(&part.failures, 0);
        int64_t t0 = now_ms();
        parts[i].run(&part);
        int failures = atomic_load(&part.failures);
        printf("stress: %s: %s (%d failed checks, %.1f s)\n", part.name,
               failures ? "FAILED" : "passed", failures, (double)(now_ms() - t0) / 1000.0);
        fflush(stdout);
        if (failures) {
            failed++;
        } else {
            passed++;
        }
    }
    mongoc_cleanup();
    printf("stress: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

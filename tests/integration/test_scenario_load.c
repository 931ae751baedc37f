/*
 * Scenario: 4 producer and 8 consumer threads move 20,000 messages through one queue.
 * Producers mix mongoq_enqueue and mongoq_enqueue_many; consumers mix claim and claim_many,
 * ack and ack_many. Every message carries a sequence number, so the test can tell that each is
 * acknowledged exactly once, none is lost, and no two consumers held it under overlapping
 * leases (a lease interval is [lease_expires_at - lease_ms, lease_expires_at) on the server's
 * clock). The lease outlasts the test, so no message may be delivered twice at all.
 *
 * The run ends when every message is acked, when no ack came for STALL_MS (a lost or stuck
 * message), or at RUN_CAP_MS, a backstop under the Criterion timeout: progress, not a fixed
 * time, so a slow build (ASan moves about 230 msg/s on 2 cores) still finishes.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "world.h"

#define N_MSGS 20000
#define N_PRODUCERS 4
#define N_CONSUMERS 8
#define PER_PRODUCER (N_MSGS / N_PRODUCERS)
#define LEASE_MS 600000 /* longer than the test may run: nothing may expire */
#define STALL_MS 30000   /* no ack for this long: the run stops and the test fails */
#define RUN_CAP_MS 260000
#define N_STRIPES 64

typedef struct {
    int32_t claims;
    int32_t acks;
    int32_t holder;      /* consumer holding it, -1 none */
    int64_t lease_from;  /* server ms: claim time of the last claim */
    int64_t lease_until; /* server ms: its lease_expires_at */
} slot_t;

typedef struct {
    world_t s;
    slot_t *slots;
    pthread_mutex_t stripes[N_STRIPES];
    atomic_llong acked;
    atomic_llong overlaps;
    atomic_llong double_acks;
    atomic_llong redelivered;
    atomic_llong lease_lost;
    atomic_llong bad_messages;
    atomic_llong claim_calls, claim_many_calls, ack_calls, ack_many_calls;
    atomic_llong single_enqueues, batch_enqueues;
    atomic_bool failed;
    pthread_mutex_t error_mu;
    char first_error[1024];
    int64_t cap;              /* mtest_now_ms: the backstop */
    atomic_llong last_ack_ms; /* mtest_now_ms of the latest ack (the start before any) */
} load_t;

typedef struct {
    load_t *load;
    int index;
} role_t;

static void
fail(load_t *l, const char *what, const bson_error_t *error)
{
    pthread_mutex_lock(&l->error_mu);
    if (!atomic_load(&l->failed)) {
        snprintf(l->first_error, sizeof l->first_error, "%s: %s (domain %u code %u)", what,
                 error ? error->message : "", error ? error->domain : 0, error ? error->code : 0);
    }
    atomic_store(&l->failed, true);
    pthread_mutex_unlock(&l->error_mu);
}

static bool
keep_going(load_t *l)
{
    int64_t now = mtest_now_ms();
    return !atomic_load(&l->failed) && atomic_load(&l->acked) < N_MSGS && now < l->cap &&
           now - atomic_load(&l->last_ack_ms) < STALL_MS;
}

/* ---- producers ------------------------------------------------------------------------------ */

/* Ten single enqueues, then a batch of ninety, until the producer's share is queued. */
static void *
producer_main(void *arg)
{
    role_t *role = arg;
    load_t *l = role->load;
    int64_t next = (int64_t)role->index * PER_PRODUCER;
    int64_t end = next + PER_PRODUCER;
    bson_t docs[90];
    const bson_t *ptrs[90];
    bson_error_t error;
    for (int round = 0; next < end && !atomic_load(&l->failed); round++) {
        for (int i = 0; i < 10 && next < end; i++) {
            bson_t payload;
            world_payload(&payload, next++);
            bool ok = mongoq_enqueue(l->s.queue, &payload, NULL, NULL, &error);
            bson_destroy(&payload);
            if (!ok) {
                fail(l, "mongoq_enqueue", &error);
                return NULL;
            }
            atomic_fetch_add(&l->single_enqueues, 1);
        }
        size_t n = 0;
        while (n < 90 && next < end) {
            world_payload(&docs[n], next++);
            ptrs[n] = &docs[n];
            n++;
        }
        bool ok = n == 0 || mongoq_enqueue_many(l->s.queue, ptrs, n, NULL, NULL, NULL, &error);
        for (size_t i = 0; i < n; i++) {
            bson_destroy(&docs[i]);
        }
        if (!ok) {
            fail(l, "mongoq_enqueue_many", &error);
            return NULL;
        }
        atomic_fetch_add(&l->batch_enqueues, 1);
    }
    return NULL;
}

/* ---- consumers ------------------------------------------------------------------------------ */

/* Records a claim; flags a lease interval that overlaps the previous holder's. */
static bool
record_claim(load_t *l, int consumer, const mongoq_message_t *msg)
{
    int64_t seq = world_seq(msg);
    if (seq < 0 || seq >= N_MSGS) {
        atomic_fetch_add(&l->bad_messages, 1);
        return false;
    }
    int64_t until = mongoq_message_lease_expires_at(msg);
    int64_t from = until - LEASE_MS;
    pthread_mutex_t *mu = &l->stripes[seq % N_STRIPES];
    pthread_mutex_lock(mu);
    slot_t *slot = &l->slots[seq];
    if (slot->claims > 0) {
        atomic_fetch_add(&l->redelivered, 1);
        if (from < slot->lease_until && slot->lease_from < until) {
            atomic_fetch_add(&l->overlaps, 1);
        }
    } else if (mongoq_message_attempts(msg) != 1) {
        atomic_fetch_add(&l->bad_messages, 1);
    }
    slot->claims++;
    slot->holder = consumer;
    slot->lease_from = from;
    slot->lease_until = until;
    pthread_mutex_unlock(mu);
    return true;
}

static void
record_ack(load_t *l, const mongoq_message_t *msg)
{
    int64_t seq = world_seq(msg);
    pthread_mutex_t *mu = &l->stripes[seq % N_STRIPES];
    pthread_mutex_lock(mu);
    slot_t *slot = &l->slots[seq];
    if (++slot->acks > 1) {
        atomic_fetch_add(&l->double_acks, 1);
    }
    slot->holder = -1;
    pthread_mutex_unlock(mu);
    atomic_store(&l->last_ack_ms, mtest_now_ms());
    atomic_fetch_add(&l->acked, 1);
}

static void
ack_one(load_t *l, mongoq_message_t *msg)
{
    bson_error_t error;
    atomic_fetch_add(&l->ack_calls, 1);
    if (mongoq_message_ack(msg, &error)) {
        record_ack(l, msg);
    } else if (error.domain == MONGOQ_ERROR_DOMAIN && error.code == MONGOQ_ERROR_LEASE_LOST) {
        atomic_fetch_add(&l->lease_lost, 1);
    } else {
        fail(l, "mongoq_message_ack", &error);
    }
}

static void
ack_batch(load_t *l, mongoq_message_t **msgs, size_t n)
{
    bson_error_t error;
    atomic_fetch_add(&l->ack_many_calls, 1);
    bool ok = mongoq_message_ack_many(msgs, n, &error);
    if (!ok && !(error.domain == MONGOQ_ERROR_DOMAIN && error.code == MONGOQ_ERROR_LEASE_LOST)) {
        fail(l, "mongoq_message_ack_many", &error);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (mongoq_message_lease_lost(msgs[i])) {
            atomic_fetch_add(&l->lease_lost, 1);
        } else {
            record_ack(l, msgs[i]);
        }
    }
}

/* Even rounds claim one message; odd rounds claim up to 1..32, acked one by one or at once. */
static void
consume_round(load_t *l, int index, mongoq_consumer_t *consumer, int round)
{
    mongoq_message_t *msgs[32];
    size_t n = 0;
    bson_error_t error;
    bool ok;
    if (round % 2 == 0) {
        atomic_fetch_add(&l->claim_calls, 1);
        ok = mongoq_consumer_claim(consumer, 250, &msgs[0], &error);
        n = ok && msgs[0] ? 1 : 0;
    } else {
        atomic_fetch_add(&l->claim_many_calls, 1);
        ok = mongoq_consumer_claim_many(consumer, 1 + (size_t)(round % 32), 250, msgs, &n, &error);
    }
    if (!ok) {
        fail(l, round % 2 == 0 ? "mongoq_consumer_claim" : "mongoq_consumer_claim_many", &error);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        record_claim(l, index, msgs[i]);
    }
    if (n > 1 && round % 4 == 1) {
        ack_batch(l, msgs, n);
    } else {
        for (size_t i = 0; i < n; i++) {
            ack_one(l, msgs[i]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
}

static void *
consumer_main(void *arg)
{
    role_t *role = arg;
    load_t *l = role->load;
    bson_error_t error;
    mongoq_consumer_t *consumer = mongoq_consumer_new(l->s.queue, NULL, &error);
    if (!consumer) {
        fail(l, "mongoq_consumer_new", &error);
        return NULL;
    }
    for (int round = 0; keep_going(l); round++) {
        consume_round(l, role->index, consumer, round);
    }
    mongoq_consumer_destroy(consumer);
    return NULL;
}

/* ---- the test ------------------------------------------------------------------------------- */

static void
check_slots(load_t *l)
{
    int64_t missing = 0, first_missing = -1;
    for (int64_t i = 0; i < N_MSGS; i++) {
        if (l->slots[i].acks != 1) {
            if (first_missing < 0) {
                first_missing = i;
            }
            missing++;
        }
    }
    cr_expect(missing == 0,
              "%" PRId64 " messages not acked exactly once (first: seq %" PRId64 ", acks %d)",
              missing, first_missing, first_missing >= 0 ? l->slots[first_missing].acks : 0);
}

static void
report(load_t *l, int64_t elapsed_ms)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(l->s.queue, &c);
    cr_log_info("load: %d messages in %" PRId64 " ms (%.0f msg/s); enqueue %lld single + %lld "
                "batches; claim %lld + claim_many %lld; ack %lld + ack_many %lld; redelivered "
                "%lld, lease lost %lld; wake-ups: change stream %" PRId64 ", timer %" PRId64
                ", poll %" PRId64,
                N_MSGS, elapsed_ms, N_MSGS * 1000.0 / (double)(elapsed_ms ? elapsed_ms : 1),
                (long long)l->single_enqueues, (long long)l->batch_enqueues,
                (long long)l->claim_calls, (long long)l->claim_many_calls, (long long)l->ack_calls,
                (long long)l->ack_many_calls, (long long)l->redelivered, (long long)l->lease_lost,
                c.wakeups_change_stream, c.wakeups_timer, c.wakeups_poll);
    printf("scenario load: %d messages, 4 producers, 8 consumers: %" PRId64 " ms (%.0f msg/s)\n",
           N_MSGS, elapsed_ms, N_MSGS * 1000.0 / (double)(elapsed_ms ? elapsed_ms : 1));
    cr_expect(c.enqueued == N_MSGS && c.acked == N_MSGS && c.claimed == N_MSGS,
              "counters: enqueued %" PRId64 " claimed %" PRId64 " acked %" PRId64, c.enqueued,
              c.claimed, c.acked);
}

Test(scenario_load, producers_and_consumers_move_20000_messages, .timeout = 300)
{
    load_t *l = bson_malloc0(sizeof *l);
    l->slots = bson_malloc0(N_MSGS * sizeof *l->slots);
    for (int i = 0; i < N_STRIPES; i++) {
        pthread_mutex_init(&l->stripes[i], NULL);
    }
    pthread_mutex_init(&l->error_mu, NULL);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = LEASE_MS;
    world_open(&l->s, &opts, 0);

    pthread_t threads[N_PRODUCERS + N_CONSUMERS];
    role_t roles[N_PRODUCERS + N_CONSUMERS];
    int64_t start = mtest_now_ms();
    l->cap = start + RUN_CAP_MS;
    atomic_store(&l->last_ack_ms, start);
    for (int i = 0; i < N_PRODUCERS + N_CONSUMERS; i++) {
        roles[i].load = l;
        roles[i].index = i < N_PRODUCERS ? i : i - N_PRODUCERS;
        int rc = pthread_create(&threads[i], NULL, i < N_PRODUCERS ? producer_main : consumer_main,
                                &roles[i]);
        cr_assert(rc == 0, "pthread_create: %d", rc);
    }
    for (int i = 0; i < N_PRODUCERS + N_CONSUMERS; i++) {
        pthread_join(threads[i], NULL);
    }
    int64_t elapsed = mtest_now_ms() - start;

    cr_assert(!atomic_load(&l->failed), "%s", l->first_error);
    cr_expect(atomic_load(&l->acked) == N_MSGS,
              "acked %lld of %d in %" PRId64 " ms (the last ack %" PRId64 " ms before the end)",
              (long long)atomic_load(&l->acked), N_MSGS, elapsed,
              start + elapsed - (int64_t)atomic_load(&l->last_ack_ms));
    cr_expect(l->overlaps == 0, "%lld messages held by two consumers at once",
              (long long)l->overlaps);
    cr_expect(l->double_acks == 0, "%lld messages acked twice", (long long)l->double_acks);
    cr_expect(l->bad_messages == 0, "%lld messages with a bad payload or attempts",
              (long long)l->bad_messages);
    cr_expect(l->redelivered == 0 && l->lease_lost == 0,
              "leases outlast the test, yet %lld redeliveries and %lld lost leases",
              (long long)l->redelivered, (long long)l->lease_lost);
    check_slots(l);
    report(l, elapsed);
    world_assert_empty(&l->s);

    world_close(&l->s);
    for (int i = 0; i < N_STRIPES; i++) {
        pthread_mutex_destroy(&l->stripes[i]);
    }
    pthread_mutex_destroy(&l->error_mu);
    bson_free(l->slots);
    bson_free(l);
}

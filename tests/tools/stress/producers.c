/* mongoq-stress, part 1: producers and consumers on one queue (enqueue, claim, ack, retry, fail). */

#include "stress.h"

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
        if (!stress_enqueue_seqs(t->p->part, t->p->queue, seq, n)) {
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
    int seq = stress_seq_of(p->part, msg, P1_N);
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
            p1_record_final(p, p->acked, stress_seq_of(p->part, msgs[i], P1_N));
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
    mongoq_consumer_t *c = stress_consumer_new(p->part, p->queue, "p1", t->index);
    bool many = t->index % 2 == 1;
    for (int round = 0;
         c && round < 100000 && atomic_load(&p->finished) < P1_N && stress_now_ms() < p->deadline;
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
    int64_t dead = stress_count_docs(e, "{\"status\": \"dead\"}"), all = stress_count_docs(e, "{}");
    CHECK(p->part, dead == 2 * tens && all == dead,
          "on the server: %" PRId64 " dead of %" PRId64 " documents, want %" PRId64 " dead only",
          dead, all, 2 * tens);
}

void
stress_part_producers(part_t *part)
{
    env_t e;
    stress_env_open(&e, part);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.max_attempts = 2;
    p1_t p = {.part = part, .deadline = stress_now_ms() + P1_DEADLINE_MS};
    p.queue = stress_queue_open(&e, e.pool, &opts);
    if (p.queue) {
        p.claims = stress_counts_new(P1_N);
        p.acked = stress_counts_new(P1_N);
        p.dead = stress_counts_new(P1_N);
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
    stress_env_close(&e);
}

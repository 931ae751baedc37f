/*
 * mongoq-stress, part 7: message groups and a rate limit under threads (for TSan). Producer
 * threads enqueue grouped messages (one at a time and in batches) on one handle while consumer
 * threads on another claim (claim and claim_many), ack, retry and fail them, and a reaper pass
 * runs alongside; the queue is rate limited, so consumers also wait for tokens. Every message
 * ends acknowledged or dead exactly once, no FIFO group ever has two messages in the hands of
 * this process's consumers at once, and no group document is left.
 */

#include "stress.h"

#define P7_GROUPS 8
#define P7_PER_GROUP 24
#define P7_N (P7_GROUPS * P7_PER_GROUP)
#define P7_PRODUCERS 2
#define P7_CONSUMERS 4
#define P7_DEADLINE_MS 90000

typedef struct {
    part_t *part;
    mongoq_queue_t *producer, *consumer;
    atomic_int in_hand[P7_GROUPS];
    atomic_int finished;
    atomic_int *done; /* per seq: acknowledged or dead */
    int64_t deadline;
} p7_t;

typedef struct {
    p7_t *p;
    int index;
} p7_arg_t;

static void *
p7_produce(void *arg)
{
    p7_arg_t *a = arg;
    p7_t *p = a->p;
    bson_error_t error;
    /* producer k enqueues groups k, k + P, ...: each group's messages in order */
    for (int g = a->index; g < P7_GROUPS; g += P7_PRODUCERS) {
        char name[16];
        mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
        bson_snprintf(name, sizeof name, "g%d", g);
        opts.group = name;
        opts.max_attempts = 3;
        for (int i = 0; i < P7_PER_GROUP; i += 4) {
            bson_t payloads[4];
            const bson_t *ptrs[4];
            for (int k = 0; k < 4; k++) {
                payloads[k] = (bson_t)BSON_INITIALIZER;
                BSON_APPEND_INT32(&payloads[k], "seq", g * P7_PER_GROUP + i + k);
                ptrs[k] = &payloads[k];
            }
            size_t stored = 0;
            bool ok = i % 8 == 0
                          ? mongoq_enqueue_many(p->producer, ptrs, 4, &opts, NULL, &stored, &error)
                          : (mongoq_enqueue(p->producer, ptrs[0], &opts, NULL, &error) &&
                             mongoq_enqueue(p->producer, ptrs[1], &opts, NULL, &error) &&
                             mongoq_enqueue(p->producer, ptrs[2], &opts, NULL, &error) &&
                             mongoq_enqueue(p->producer, ptrs[3], &opts, NULL, &error));
            CHECK(p->part, ok, "grouped enqueue: %s", error.message);
            for (int k = 0; k < 4; k++) {
                bson_destroy(&payloads[k]);
            }
        }
    }
    return NULL;
}

static void
p7_handle(p7_t *p, mongoq_message_t *msg, int turn)
{
    bson_error_t error;
    int seq = stress_seq_of(p->part, msg, P7_N);
    if (seq < 0) {
        mongoq_message_destroy(msg); /* reported by stress_seq_of */
        return;
    }
    int g = seq / P7_PER_GROUP;
    CHECK(p->part, atomic_fetch_add(&p->in_hand[g], 1) == 0, "group %d: two in hand", g);
    bool ok;
    bool last = mongoq_message_attempts(msg) >= mongoq_message_max_attempts(msg);
    atomic_fetch_sub(&p->in_hand[g], 1); /* the handler's end: before the write that frees it */
    if (seq % 11 == 0) {
        ok = mongoq_message_fail(msg, "stress", &error);
        last = true;
    } else if (seq % 5 == 0 && mongoq_message_attempts(msg) == 1 && turn % 2 == 0) {
        ok = mongoq_message_retry(msg, 0, "stress", &error);
    } else {
        ok = mongoq_message_ack(msg, &error);
        last = true;
    }
    CHECK(p->part, ok, "seq %d: %s", seq, error.message);
    if (ok && last) {
        CHECK(p->part, atomic_fetch_add(&p->done[seq], 1) == 0, "seq %d finished twice", seq);
        atomic_fetch_add(&p->finished, 1);
    }
    mongoq_message_destroy(msg);
}

static void *
p7_consume(void *arg)
{
    p7_arg_t *a = arg;
    p7_t *p = a->p;
    bson_error_t error;
    mongoq_consumer_t *c = stress_consumer_new(p->part, p->consumer, "groups", a->index);
    for (int turn = 0; c && atomic_load(&p->finished) < P7_N && stress_now_ms() < p->deadline;
         turn++) {
        mongoq_message_t *msgs[3];
        size_t got = 0;
        bool ok = a->index % 2 ? mongoq_consumer_claim_many(c, 3, 100, msgs, &got, &error)
                               : (mongoq_consumer_claim(c, 100, &msgs[0], &error) &&
                                  (got = msgs[0] ? 1 : 0, true));
        CHECK(p->part, ok, "claim: %s", error.message);
        for (size_t i = 0; i < got; i++) {
            p7_handle(p, msgs[i], turn);
        }
        if (a->index == 0 && turn % 10 == 0) {
            int64_t n = 0;
            CHECK(p->part, mongoq_queue_reap(p->consumer, &n, &error), "reap: %s", error.message);
        }
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

void
stress_part_groups(part_t *part)
{
    env_t e;
    stress_env_open(&e, part);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = 1;
    opts.rate_limit = 400;
    mongoc_client_pool_t *other = stress_pool_new("stress-groups-producer");
    p7_t p = {.part = part, .done = stress_counts_new(P7_N)};
    p.consumer = stress_queue_open(&e, e.pool, &opts);
    p.producer = stress_queue_open(&e, other, &opts);
    p.deadline = stress_now_ms() + P7_DEADLINE_MS;
    pthread_t threads[P7_PRODUCERS + P7_CONSUMERS];
    p7_arg_t args[P7_PRODUCERS + P7_CONSUMERS];
    for (int i = 0; i < P7_PRODUCERS + P7_CONSUMERS; i++) {
        args[i] = (p7_arg_t){&p, i < P7_PRODUCERS ? i : i - P7_PRODUCERS};
        pthread_create(&threads[i], NULL, i < P7_PRODUCERS ? p7_produce : p7_consume, &args[i]);
    }
    for (int i = 0; i < P7_PRODUCERS + P7_CONSUMERS; i++) {
        pthread_join(threads[i], NULL);
    }
    CHECK(part, atomic_load(&p.finished) == P7_N, "%d of %d messages finished",
          atomic_load(&p.finished), P7_N);
    CHECK(part,
          stress_count_docs(
              &e, "{\"group\": {\"$exists\": true}, \"status\": {\"$ne\": \"dead\"}}") == 0,
          "grouped messages left unfinished");
    mongoq_queue_destroy(p.producer);
    mongoq_queue_destroy(p.consumer);
    mongoc_client_pool_destroy(other);
    bson_free(p.done);
    stress_env_close(&e);
}

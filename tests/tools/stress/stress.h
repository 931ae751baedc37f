/* mongoq-stress's private header: the part and environment types, CHECK, and the helpers
 * (support.c) and parts (one file each) that main.c runs. */
#ifndef MONGOQ_STRESS_H
#define MONGOQ_STRESS_H

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

typedef struct {
    const char *name;
    atomic_int failures;
} part_t;

bool
stress_check(part_t *part, bool ok, const char *file, int line, const char *expr, const char *fmt,
             ...) BSON_GNUC_PRINTF(6, 7);

#define CHECK(part, cond, ...) stress_check((part), (cond), __FILE__, __LINE__, #cond, __VA_ARGS__)

/* The server under test (MONGOQ_TEST_URI), set by main before any part runs. */
extern const char *stress_uri;

/* One part's database, a pool for its queues and a client of its own for direct reads. */
typedef struct {
    part_t *part;
    char db[64];
    mongoc_client_pool_t *pool;
    mongoc_client_t *client;
} env_t;

/* ---- support.c: time, environment, messages with a sequence number ---- */
int64_t
stress_now_ms(void);
void
stress_sleep_ms(int64_t ms);
bool
stress_wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms);
mongoc_client_pool_t *
stress_pool_new(const char *appname);
void
stress_env_open(env_t *e, part_t *part);
void
stress_env_close(env_t *e);
int64_t
stress_count_docs(env_t *e, const char *filter_json);
mongoq_queue_t *
stress_queue_open(env_t *e, mongoc_client_pool_t *pool, mongoq_queue_opts_t *opts);
bool
stress_enqueue_seqs(part_t *part, mongoq_queue_t *q, int first, int n);
int
stress_seq_of(part_t *part, const mongoq_message_t *msg, int n);
atomic_int *
stress_counts_new(int n);
mongoq_consumer_t *
stress_consumer_new(part_t *part, mongoq_queue_t *q, const char *name, int index);

/* ---- the parts ---- */
void
stress_part_producers(part_t *part); /* producers.c */
void
stress_part_worker(part_t *part); /* worker.c */
void
stress_part_waker(part_t *part); /* waker.c */
void
stress_part_signal(part_t *part); /* signal.c */
void
stress_part_destroy(part_t *part); /* destroy.c */
void
stress_part_schedules(part_t *part); /* schedules.c */
void
stress_part_groups(part_t *part); /* groups.c */

#endif

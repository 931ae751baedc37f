/* mongoq-bench's private header: the configuration, the figures shared between workloads, and
 * the helpers (bench_util.c, bench_raw.c) and workloads (bench_throughput.c, bench_wake.c,
 * bench_cost.c) that bench.c runs. */
#ifndef MONGOQ_BENCH_H
#define MONGOQ_BENCH_H

#include <mongoq/mongoq.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPS 9
#define MAX_THREADS 16
#define QUEUE_NAME "bench"

typedef struct {
    const char *uri;
    const char *out_dir;
    bool large;
    bool quick;
    int reps;
    int64_t burn_depth;
    int64_t depths[3];
    int wake_messages;
    const char *only; /* run just these workloads: comma-separated names (cost,enqueue,...) */
    const char *durable_uri; /* a server started with --dbpath (NULL: no durable run) */
    int64_t durable_messages; /* messages per durable burn-down */
    int64_t depth_sample;     /* claims + acks timed per depth cell */
    int depth_calls;          /* reap passes, redrives timed per depth cell */
    int depth_stats_calls;    /* stats calls timed per depth cell */
    const char *mongos_uri;   /* a mongos in front of shards (NULL: no sharded partitions run) */
} config_t;

typedef struct {
    double median, min, max;
} summary_t;

/* Burn-down loops: the naive raw loop, mongoq single and batched, and the raw loops that send
 * mongoq's own commands (bench_same.c), single and batched. */
typedef enum { MODE_RAW, MODE_SINGLE, MODE_BATCH, MODE_SAME, MODE_SAME_BATCH, MODE_COUNT } burn_mode_t;

#define BENCH_BATCH 100 /* claim_many / ack_many size everywhere */

/* Key figures for the targets table, filled as the workloads run. */
typedef struct {
    double single_vs_same;  /* burn-down, 1 thread, 100 B: mongoq / same-commands loop */
    double batch_vs_same;   /* the same, batched */
    double single_vs_raw;   /* burn-down, 1 thread, 100 B */
    double batch_vs_single; /* same */
    double rt_single;
    double rt_batch;
    double wake_p50_cs;
    double depth_ratio;        /* the worst operation but stats at depth_max / at 1,000 */
    char depth_worst[96];      /* which one */
    double depth_stats_ratio;  /* the worst stats at depth_max / at 1,000 */
    int64_t depth_max;
    double keys_single_vs_raw; /* server keys examined per message: mongoq single / naive loop */
    double keys_batch_vs_raw;  /* mongoq batched / naive loop (negative: not reported) */
} bench_key_t;

/* Defined in bench.c. */
extern config_t bench_cfg;
extern mongoc_client_pool_t *bench_pool;
extern mongoc_uri_t *bench_uri_parsed;
extern atomic_int_least64_t bench_commands_started;
extern FILE *bench_md; /* DIR/results.md */
extern char bench_db_name[64];
extern bench_key_t bench_key;

/* ---- bench_util.c: clocks, statistics, payloads, the database and the queue ---- */
double
bench_now_s(void);
/* ms since the epoch (CLOCK_REALTIME), for dates near the server's clock */
int64_t
bench_wall_ms(void);
double
bench_cpu_s(void);
void
bench_die(const char *what, const bson_error_t *error);
int
bench_cmp_double(const void *a, const void *b);
summary_t
bench_summarize(double *v, int n);
double
bench_percentile(double *sorted, int n, double p);
void
bench_on_command_started(const mongoc_apm_command_started_t *event);
/* Records the shape (keys and value types, no values) of every command sent through the pool
 * from start to stop; stop returns them, one a line (bson_free). Not nested. */
void
bench_shape_start(void);
char *
bench_shape_stop(void);
void
bench_make_payload(bson_t *payload, int64_t seq, size_t size);
mongoc_collection_t *
bench_get_collection(mongoc_client_t *client);
void
bench_drop_db(void);
mongoq_queue_t *
bench_open_queue(bool no_change_stream, int64_t poll_ms);
mongoq_queue_t *
bench_fresh_queue(void);
void
bench_fill(mongoq_queue_t *q, int64_t n, size_t payload_size);

/* ---- bench_raw.c: the same work with plain libmongoc calls ---- */
mongoc_write_concern_t *
bench_majority_journaled(void);
void
bench_raw_insert(mongoc_collection_t *coll, int64_t n, size_t size, int batch);
bool
bench_raw_claim_ack(mongoc_collection_t *coll, const mongoc_write_concern_t *wc);
/* A raw document of mongoq's shape, ready and due (caller destroys). */
void
bench_raw_message(bson_t *doc, const bson_t *payload);

/* ---- bench_same.c: mongoq's own commands with plain libmongoc calls ---- */
/* One claim + ack; false when nothing was due. wc_opts: {writeConcern: ...}. */
bool
bench_same_claim_ack(mongoc_collection_t *coll, const bson_t *wc_opts);
/* One claim_many(max) + ack_many; how many moved. */
int
bench_same_claim_ack_many(mongoc_collection_t *coll, const bson_t *wc_opts, int max);

/* ---- bench_server.c: serverStatus figures, the durable (--dbpath) server ---- */
/* A number at a dotted path of serverStatus (path keys may hold spaces); false when absent. */
bool
bench_status_number(const bson_t *status, const char *path, double *out);
/* serverStatus of the server behind pool into *status (initialised). */
void
bench_server_status(mongoc_client_pool_t *pool, bson_t *status);
/* Checks that the same-commands loops send mongoq's command shapes; writes the verdict. */
void
bench_shapes(void);

/*
 * Msgs/s of `threads` consumers claiming and acking one at a time until `limit` messages are
 * taken in all (a thread gives up after 20 empty 50 ms claims); adds the claims per partition
 * to per_partition and the number taken to *total_out (both may be NULL). bench_util.c.
 */
double
bench_claim_ack(mongoq_queue_t *q, int threads, int64_t limit, int64_t *per_partition,
                int64_t *total_out);

/* ---- the workloads ---- */
double
bench_burn(mongoq_queue_t *q, burn_mode_t mode, int threads, int64_t limit, int64_t *total_out);
void
bench_burndown(void);
void
bench_enqueue(void);
void
bench_wake(void);
void
bench_depth(void);
void
bench_cost(void);
void
bench_server_work(void);
void
bench_durable(void);
void
bench_groups(void); /* bench_groups.c: message groups */
void
bench_partitions(void); /* bench_partitions.c: partitioned queues, one server and --mongos-uri */

#endif

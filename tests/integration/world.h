/*
 * The integration tests' fixture: one test's world, and the helpers every test file shares.
 *
 * A world is a database of its own on the server under test (or on a private test server), a
 * queue on db.jobs whose pool has the database's name as appname (so a fail point or a proxy
 * rule can hit this test's connections only), a separate client straight to the server for
 * checks, and on request a command counter on the pool, a fault proxy between the pool and the
 * server, and a second queue handle on a pool of its own (a producer whose enqueues reach the
 * queue's consumers only through the server).
 *
 * Payloads are {seq: N} (an int64); world_seq reads one back. Everything asserts success.
 * Three parts: the world and its queue (world.c), workers and what their handler saw
 * (world_worker.c), a consumer in a process of its own (world_child.c).
 */
#ifndef MONGOQ_TEST_WORLD_H
#define MONGOQ_TEST_WORLD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <mongoq/mongoq.h>

#include "faultproxy.h"
#include "testutil.h"

/* world_open's flags. */
enum {
    WORLD_NO_QUEUE = 1 << 0, /* open no queue: tests of mongoq_queue_new itself */
    WORLD_COUNTER = 1 << 1,  /* count the commands the pool sends (attached before any pop) */
    WORLD_PROXY = 1 << 2     /* the pool reaches the server through a fault proxy */
};

typedef struct {
    const char *uri;            /* the server: mtest_uri() or a private server's */
    char *db;                   /* unique to the test; dropped by world_close */
    mongoc_client_pool_t *pool; /* the queue's; appname == db */
    mongoc_client_t *client;    /* straight to the server (test thread only): checks, fail points */
    mongoc_collection_t *coll;  /* db.jobs on client */
    mongoq_queue_t *queue;      /* db.jobs on pool; NULL with WORLD_NO_QUEUE */
    mtest_counter_t *counter;   /* with WORLD_COUNTER: commands sent through pool */
    mongoq_faultproxy_t *proxy; /* with WORLD_PROXY: in front of pool (client bypasses it) */
    mongoc_client_pool_t *producer_pool; /* world_open_producer's */
    mongoq_queue_t *producer;   /* world_open_producer: db.jobs on producer_pool */
    bool fail_point_set;        /* world_close turns it off */
} world_t;

/* ---- partitioned mode (the ctest variant queue-tests-sharded) ------------------------------ */

/* MONGOQ_TEST_PARTITIONS (default 1): the partitions of every queue the world opens whose
 * options leave partitions at 0 (MONGOQ_QUEUE_OPTS_INIT, or NULL options). */
int32_t world_partitions(void);

/* Whether the server at uri answers hello as a mongos (msg "isdbgrid"); asked once per process. */
bool world_uri_is_mongos(const char *uri);

/* Skips the test (cr_skip_test, with the reason) in partitioned mode or on a mongos: for tests
 * of what the router leaves out or of one partition's commands (tests/router/README.md lists
 * them). Call it first, before world_open. */
void world_skip_sharded(const char *reason);

/*
 * mongoc_init, a fresh database on mtest_uri() and the queue (opts may be NULL). With
 * MONGOQ_TEST_PARTITIONS > 1 the queue (and world_open_producer's) gets that many partitions
 * unless opts sets its own; a queue of P > 1 on a mongos is sharded first (mongoq_queue_shard,
 * through a pool of its own).
 */
void world_open(world_t *w, const mongoq_queue_opts_t *opts, unsigned flags);

/* The same on another server (a private test server started by the test). */
void world_open_on(world_t *w, const char *uri, const mongoq_queue_opts_t *opts, unsigned flags);

/* A second handle on db.jobs, on a pool of its own (appname "<db>-producer"): w->producer. */
void world_open_producer(world_t *w, const mongoq_queue_opts_t *opts);

/* Turns the fail point off (if set), heals the proxy, destroys the queues, drops the database,
 * frees everything, mongoc_cleanup. Workers and consumers must be destroyed before. */
void world_close(world_t *w);

/* ---- payloads and the queue ----------------------------------------------------------------- */

/* {seq: seq} into an uninitialised payload. */
void world_payload(bson_t *payload, int64_t seq);

/* The message payload's seq, or -1. */
int64_t world_seq(const mongoq_message_t *msg);

/* Enqueues {seq: seq} on queue (w->queue, w->producer) with opts (may be NULL); id may be NULL. */
void world_enqueue(mongoq_queue_t *queue, int64_t seq, const mongoq_enqueue_opts_t *opts,
                   bson_oid_t *id);

/* Enqueues seq 0 .. n-1 on w->queue in order; ids (may be NULL) receives their ids. */
void world_enqueue_n(world_t *w, int n, const mongoq_enqueue_opts_t *opts, bson_oid_t *ids);

/* A consumer on w->queue; name NULL and lease_ms 0 mean the defaults. */
mongoq_consumer_t *world_consumer(world_t *w, const char *name, int64_t lease_ms);

/* Claims with wait_ms; asserts the call succeeds (the message may be NULL). */
mongoq_message_t *world_claim(mongoq_consumer_t *consumer, int64_t wait_ms);

/* A claim_many of up to two messages (no wait), run on a thread of its own or on the caller's:
 * for tests that hold one claimer's command on the server while another goes. */
typedef struct {
    mongoq_consumer_t *consumer;
    mongoq_message_t *msgs[2];
    size_t n;
    bool ok;
    bson_error_t error;
    pthread_t thread;
} world_claimer_t;

/* The claim itself (a pthread start routine; arg: a world_claimer_t). */
void *world_claim_two(void *claimer);

/* Starts world_claim_two on a thread; world_claimer_join waits for it. */
void world_claimer_start(world_claimer_t *c);
void world_claimer_join(world_claimer_t *c);

/* For mtest_wait_until (ctx: an mtest_counter_t): an update command has been sent. */
bool world_update_sent(void *counter);

/*
 * Lists o page by page: each page a new browse of `page` messages resumed from the previous
 * page's token, until a page comes back short, at most max_pages pages. each(msg, opens_page,
 * ctx) sees every message in listing order (msg borrowed for the call; opens_page: the first of
 * its page). Returns how many were listed.
 */
int64_t world_browse_pages(world_t *w, mongoq_browse_opts_t o, int page, int max_pages,
                           void (*each)(const mongoq_message_t *msg, bool opens_page, void *ctx),
                           void *ctx);

/* ---- checks, straight to the server --------------------------------------------------------- */

/* Documents of db.jobs matching the JSON filter. */
int64_t world_count(world_t *w, const char *filter_json);

/* Reads one document of db.jobs by _id into *doc (always initialised); false when absent. */
bool world_find(world_t *w, const bson_oid_t *id, bson_t *doc);

/* The server's clock (hello.localTime), ms since the epoch. */
int64_t world_server_now(world_t *w);

/* Waits (up to timeout_ms) until the server's clock passes server_ms; false if it did not. */
bool world_wait_server_past(world_t *w, int64_t server_ms, int64_t timeout_ms);

/* Asserts the queue holds nothing: stats all zero and no document left. */
void world_assert_empty(world_t *w);

/* ---- plans (world_explain.c) ------------------------------------------------------------------ */

/* What explain with executionStats says a command examined. */
typedef struct {
    char name[32]; /* the command's name */
    int64_t keys, docs, returned;
} world_cost_t;

/* Whether cmd is a query explain takes (find, findAndModify, update, delete, count, ...). */
bool world_explainable(const bson_t *cmd);

/* Runs cmd (a command the pool sent, generic fields dropped) through explain on w's database. */
world_cost_t world_explain(world_t *w, const bson_t *cmd);

/* Whether cmd reads the queue's control document (the pause state) by its _id. */
bool world_is_control_read(const bson_t *cmd);

/*
 * Inserts n documents straight to the server (no library), in unordered batches of 10,000:
 * fill(doc, i, ctx) writes document i into doc (initialised and destroyed here). For the crowds
 * the plan tests measure against.
 */
void world_insert_many(world_t *w, int64_t n, void (*fill)(bson_t *doc, int64_t i, void *ctx),
                       void *ctx);

/*
 * Explains every query the pool sent since the last counter reset (WORLD_COUNTER, with
 * mtest_counter_keep_commands), but the pause-state reads; asserts each examined at most
 * max_keys keys and max_docs documents; resets the counter; returns how many were explained.
 */
int world_assert_sent_within(world_t *w, const char *op, int64_t max_keys, int64_t max_docs);

/* ---- faults ---------------------------------------------------------------------------------- */

/*
 * Sets failCommand for this test's connections only (appName = w->db). data_fields_json: the
 * fields of "data" other than appName, e.g. "\"failCommands\": [\"delete\"], \"errorCode\": 91".
 * Returns the fail point's count before (see world_fail_point_off).
 */
int64_t world_fail_point(world_t *w, const char *mode_json, const char *data_fields_json);

/* The same for another appname of the test's (e.g. "<db>/mongoq-waker", the waker's own). */
int64_t world_fail_point_app(world_t *w, const char *appname, const char *mode_json,
                             const char *data_fields_json);

/* Turns the fail point off; returns how often it fired since `count` (world_fail_point's). */
int64_t world_fail_point_off(world_t *w, int64_t count);

/* A rule on the proxy (WORLD_PROXY) for this test's connections; returns its id. */
int32_t world_proxy_rule(world_t *w, mongoq_fault_kind_t kind, const char *commands,
                         int32_t times);

/* ---- draining and reaping -------------------------------------------------------------------- */

#define WORLD_DRAIN_MAX 16

/* What world_drain found: how often each seq was acked, and its attempts when it was. */
typedef struct {
    int acks[WORLD_DRAIN_MAX];
    int attempts[WORLD_DRAIN_MAX];
} world_drained_t;

/*
 * Claims and acks until n messages (seq 0 .. n-1) were completed, reaping expired leases
 * between empty claims; expects each acked once. Bounded: a stranded message makes this fail
 * after timeout_ms.
 */
void world_drain(world_t *w, mongoq_consumer_t *consumer, int n, world_drained_t *out,
                 int64_t timeout_ms);

/* Reaps until `expected` messages in all were reclaimed or timeout_ms passed; returns the
 * number reclaimed. Re-reaps at most every 50 ms: the leases expire on the server's clock, so
 * this awaits a condition rather than sleeping for a guessed time. */
int64_t world_reap_until(world_t *w, int64_t expected, int64_t timeout_ms);

/* ---- workers (world_worker.c) ---------------------------------------------------------------- */

#define WORLD_REC_MAX 2048

/* What world_record saw: when each message (by seq) first started and how often it ran. */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;        /* monotonic (mtest_cond_init) */
    int64_t started_at[WORLD_REC_MAX]; /* mtest_now_ms() when the handler first saw seq i */
    int runs[WORLD_REC_MAX];    /* how often the handler ran seq i */
    int total;                  /* handler runs */
    mongoq_result_t result;     /* what the handler answers (MONGOQ_ACK) */
} world_rec_t;

void world_rec_init(world_rec_t *rec);
void world_rec_destroy(world_rec_t *rec);

/* A handler (user_data: a world_rec_t) that records each run and answers rec->result. */
mongoq_result_t world_record(mongoq_message_t *msg, void *user_data);

/* Waits until seq i started; false on timeout. */
bool world_await_started(world_rec_t *rec, int i, int64_t timeout_ms);

/* Waits until seq 0 .. n-1 all started; returns how many did. */
int world_await_all(world_rec_t *rec, int n, int64_t timeout_ms);

/* A new, started worker on queue. */
mongoq_worker_t *world_worker_run(mongoq_queue_t *queue, const mongoq_worker_opts_t *opts);

/* A started worker on queue running world_record with `threads` threads. */
mongoq_worker_t *world_worker_start(mongoq_queue_t *queue, world_rec_t *rec, int threads);

/* For mtest_wait_until: the worker has acknowledged at least `acked` messages. */
typedef struct {
    mongoq_worker_t *worker;
    int64_t acked;
} world_acked_t;

bool world_acked_reached(void *acked);

/* For mtest_wait_until: the queue's (ctx) change stream is open. */
bool world_stream_active(void *queue);

/*
 * For mtest_wait_until: at least `waiting` consumers of the queue wait on its waker (a worker's
 * threads back waiting, not merely done with their last message). A message enqueued then can
 * only be found after a wake-up, so the wake-up counters name its cause.
 */
typedef struct {
    mongoq_queue_t *queue;
    int64_t waiting;
} world_idle_t;

bool world_idle_reached(void *idle);

/* A log_fn counting the lines that contain `needle` (thread-safe). */
typedef struct {
    atomic_int matches;
    const char *needle;
} world_log_t;

void world_log_fn(mongoq_log_level_t level, const char *message, void *user_data);

/* ---- a consumer in a process of its own (world_child.c, tests/tools/child_consumer.c) --------- */

typedef struct {
    pid_t pid;
    int to_child;   /* its stdin */
    int from_child; /* its stdout */
    char buf[8192]; /* bytes read but not yet returned as lines */
    size_t len;
    char line[1024]; /* the last line read, without its newline */
} world_child_t;

/* Path of the child consumer program, or NULL when it was not built. */
const char *world_child_program(void);

/*
 * Starts child_consumer on w's queue with extra arguments (NULL-terminated, may be NULL) and
 * extra environment entries ("NAME=value", NULL-terminated, may be NULL) on top of ours.
 * Waits (bounded) for its "ready" line.
 */
void world_child_start(world_child_t *child, world_t *w, const char *const *args,
                       const char *const *env);

/* Sends one command line and reads the first line of the answer into child->line (returned);
 * asserts an answer came within timeout_ms. */
const char *world_child_cmd(world_child_t *child, const char *cmd, int64_t timeout_ms);

/* Reads the next line of output within timeout_ms into child->line; NULL on EOF/timeout. */
const char *world_child_read(world_child_t *child, int64_t timeout_ms);

/* SIGKILL (hard) or "quit" then wait; reaps the process either way. */
void world_child_stop(world_child_t *child, bool hard);

/* One "msg" line of the child: msg <oid> <attempts> <lease_expires_at_ms> <seq> */
typedef struct {
    bson_oid_t id;
    int32_t attempts;
    int64_t lease_expires_at;
    int64_t seq;
} world_child_msg_t;

bool world_child_parse_msg(const char *line, world_child_msg_t *out);

#endif

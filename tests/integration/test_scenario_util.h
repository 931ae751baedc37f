/*
 * Helpers shared by the scenario tests (tests/integration/test_scenario_*.c): a per-test queue on
 * its own database, payloads numbered by a sequence, draining a queue, and a child consumer
 * process (tests/tools/child_consumer.c) driven line by line through pipes.
 */
#ifndef MONGOQ_TEST_SCENARIO_UTIL_H
#define MONGOQ_TEST_SCENARIO_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <mongoq/mongoq.h>

#include "testutil.h"

/* One test's world: a pool (appname = the database name), a client, a database, a queue. */
typedef struct {
    char *db;                   /* unique to the test; dropped by scen_teardown */
    mongoc_client_pool_t *pool; /* appname == db, so fail points can target this test only */
    mongoc_client_t *client;    /* for fail points, direct reads and the final drop */
    mongoq_queue_t *queue;      /* on db.jobs */
    mtest_counter_t *counter;   /* non-NULL when asked for: attached before any client pops */
    bool fail_point_set;        /* scen_teardown turns it off */
} scen_t;

/* Opens the world. opts may be NULL. with_counter attaches a command counter to the pool. */
void scen_setup(scen_t *s, const char *prefix, const mongoq_queue_opts_t *opts, bool with_counter);

/* Turns the fail point off (if set), destroys the queue, drops the database, frees all. */
void scen_teardown(scen_t *s);

/* Sets failCommand for this test's connections only (appName filter). data_json: the fields
 * of "data" other than appName, e.g. "\"failCommands\": [\"delete\"], \"errorCode\": 91". */
int64_t scen_fail_point(scen_t *s, const char *mode_json, const char *data_fields_json);

/* Turns the fail point off; returns how often it fired since `count` (scen_fail_point's). */
int64_t scen_fail_point_off(scen_t *s, int64_t count);

/* {seq: seq} */
void scen_payload(bson_t *payload, int64_t seq);

/* The payload's seq, or -1. */
int64_t scen_payload_seq(const bson_t *payload);

/* Enqueues {seq: seq} with default options; asserts success. */
void scen_enqueue_seq(scen_t *s, int64_t seq);

/* Enqueues seq 0 .. n-1, in order. */
void scen_enqueue_n(scen_t *s, int n);

/* A consumer on s's queue with lease_ms (0: the queue's); asserts success. */
mongoq_consumer_t *scen_consumer(scen_t *s, int64_t lease_ms);

/* Asserts the queue holds nothing (server stats all zero). */
void scen_assert_empty(scen_t *s);

/* Reaps until `expected` messages in all were reclaimed or timeout_ms passed; returns the
 * number reclaimed. Re-reaps at most every 50 ms: the leases expire on the server's clock, so
 * this awaits a condition rather than sleeping for a guessed time. */
int64_t scen_reap_until(scen_t *s, int64_t expected, int64_t timeout_ms);

/* Reads one document of db.jobs by _id into *doc (initialised); false when absent. */
bool scen_find_doc(scen_t *s, const bson_oid_t *id, bson_t *doc);

/* ---- a child consumer process -------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    int to_child;   /* its stdin */
    int from_child; /* its stdout */
    char buf[8192]; /* bytes read but not yet returned as lines */
    size_t len;
    char line[1024]; /* the last line read, without its newline */
} scen_child_t;

/* Path of the child consumer program, or NULL when it was not built. */
const char *scen_child_program(void);

/*
 * Starts child_consumer on s's database with extra arguments (NULL-terminated, may be NULL)
 * and extra environment entries ("NAME=value", NULL-terminated, may be NULL) on top of ours.
 * Waits (bounded) for its "ready" line. Asserts success.
 */
void scen_child_start(scen_child_t *child, scen_t *s, const char *const *args,
                      const char *const *env);

/* Sends one command line and reads the first line of the answer into child->line (returned);
 * asserts an answer came within timeout_ms. */
const char *scen_child_cmd(scen_child_t *child, const char *cmd, int64_t timeout_ms);

/* Reads the next line of output within timeout_ms into child->line; NULL on EOF/timeout. */
const char *scen_child_read(scen_child_t *child, int64_t timeout_ms);

/* SIGKILL (hard) or "quit" then wait; reaps the process either way. */
void scen_child_stop(scen_child_t *child, bool hard);

/* One "msg" line of the child: msg <oid> <attempts> <lease_expires_at_ms> <seq> */
typedef struct {
    bson_oid_t id;
    int32_t attempts;
    int64_t lease_expires_at;
    int64_t seq;
} scen_child_msg_t;

bool scen_parse_msg(const char *line, scen_child_msg_t *out);

#endif

/*
 * Helpers shared by the Criterion programs that talk to a server (MONGOQ_TEST_URI).
 * Each test uses its own database (mtest_db_new) and drops it (mtest_db_drop).
 */
#ifndef MONGOQ_TESTUTIL_H
#define MONGOQ_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>
#include <pthread.h>
#include <sys/types.h>
#include <time.h>

/*
 * The server under test: $MONGOQ_TEST_URI. Aborts the test with a clear message when unset.
 * The first call takes the server's turn, shared, for the rest of the test's process: tests run
 * at once share the server, except with a test that holds it exclusively (turns.c).
 */
const char *
mtest_uri(void);

/*
 * Holds the server's turn exclusively for the rest of the test's process, waiting until no other
 * test talks to the server: for a test that arms a fail point mongod cannot confine to its own
 * commands (no appName or namespace filter). Call it before any fail point turn.
 */
void
mtest_server_exclusive(void);

/* A new client pool on mtest_uri() with the given appname (may be NULL). Caller destroys it. */
mongoc_client_pool_t *
mtest_pool_new(const char *appname);

/* The same on another server's URI (a private test server). Caller destroys it. */
mongoc_client_pool_t *
mtest_pool_for(const char *uri, const char *appname);

/* A new single client on mtest_uri() with the given appname (may be NULL). Caller destroys it. */
mongoc_client_t *
mtest_client_new(const char *appname);

/* The same on another server's URI (a private test server). Caller destroys it. */
mongoc_client_t *
mtest_client_for(const char *uri, const char *appname);

/* A database name unique to this process and call: "<prefix>_<pid>_<n>". Caller frees (bson_free). */
char *
mtest_db_name(const char *prefix);

/* Drops a database; asserts success. */
void
mtest_db_drop(mongoc_client_t *client, const char *db);

/* Milliseconds on a monotonic clock. */
int64_t
mtest_now_ms(void);

/* Milliseconds since the epoch on this host's wall clock (CLOCK_REALTIME): for comparing with a
 * server's clock, never for timing a wait (mtest_now_ms). */
int64_t
mtest_wall_ms(void);

/*
 * Timed waits on the monotonic clock (as the library's own, src/worker.c): a condition variable
 * made by mtest_cond_init takes the deadline mtest_deadline computes, so a wall-clock step
 * neither ends a wait early nor stretches it.
 */
void
mtest_cond_init(pthread_cond_t *cond);

/* mtest_now_ms() + timeout_ms as the absolute time pthread_cond_timedwait takes. */
void
mtest_deadline(int64_t timeout_ms, struct timespec *ts);

/*
 * Polls cond(ctx) every few milliseconds until it returns true or timeout_ms passes.
 * Returns the last value of cond. For conditions that have no event to wait on.
 */
bool
mtest_wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms);

/*
 * Sets the failCommand fail point: mode is a JSON value ("\"alwaysOn\"", "{\"times\": 1}",
 * "\"off\""), data a JSON document or NULL. Asserts success. Returns the reply's "count": how
 * many times failCommand was entered before this call (mongod's count is cumulative, so the
 * difference between two calls is how often it fired in between), or -1 when absent.
 */
int64_t
mtest_fail_point(mongoc_client_t *client, const char *mode_json, const char *data_json);


/*
 * The fail points' turn, held across a whole test rather than from setting a fault to turning it
 * off (mtest_fail_point takes and gives it that way): for suites whose every test sets faults.
 */
void
mtest_fail_point_hold(void);
void
mtest_fail_point_release(void);

/*
 * The same for one appname's connections only (so tests running at once are not hit):
 * data_fields_json holds the fields of "data" other than appName, e.g.
 * "\"failCommands\": [\"insert\"], \"errorCode\": 2". Asserts success.
 */
int64_t
mtest_fail_point_app(mongoc_client_t *client, const char *appname, const char *mode_json,
                     const char *data_fields_json);

/* Runs a command on db and returns true on ok:1; reply (if not NULL) is always initialised. */
bool
mtest_command(mongoc_client_t *client, const char *db, const char *cmd_json, bson_t *reply,
              bson_error_t *error);

/* The server's clock now (hello.localTime), ms since the epoch; asserts it answered. */
int64_t
mtest_server_now_ms(mongoc_client_t *client);

/* Documents of coll matching the JSON filter; asserts success. */
int64_t
mtest_count(mongoc_collection_t *coll, const char *filter_json);

/* Reads one document by _id into *doc (always initialised); false when absent. */
bool
mtest_find_by_id(mongoc_collection_t *coll, const bson_oid_t *id, bson_t *doc);

/* Field readers for assertions: NULL / INT64_MIN when missing or of another type. */
const char *
mtest_doc_str(const bson_t *doc, const char *field);
int64_t
mtest_doc_date(const bson_t *doc, const char *field);
int64_t
mtest_doc_int(const bson_t *doc, const char *field);

/*
 * Counts commands sent through a client or pool (libmongoc command monitoring), by name.
 * Attach with mtest_counter_attach_pool / _client before any client is popped.
 */
typedef struct mtest_counter_t mtest_counter_t;
mtest_counter_t *
mtest_counter_new(void);
void
mtest_counter_attach_pool(mtest_counter_t *counter, mongoc_client_pool_t *pool);
void
mtest_counter_attach_client(mtest_counter_t *counter, mongoc_client_t *client);
/* Total commands started (name == NULL) or those with that command name. Thread-safe. */
int64_t
mtest_counter_get(mtest_counter_t *counter, const char *name);
void
mtest_counter_reset(mtest_counter_t *counter);
/* From now on keeps a copy of every command started (reset drops them), for explain. */
void
mtest_counter_keep_commands(mtest_counter_t *counter);
/*
 * Copies of the kept commands whose name is name (all when NULL), oldest first, into
 * out[0 .. max); returns how many. The caller destroys each (bson_destroy).
 */
size_t
mtest_counter_commands(mtest_counter_t *counter, const char *name, bson_t **out, size_t max);
void
mtest_counter_destroy(mtest_counter_t *counter);


/*
 * A private test-server process for tests about restarts, standalone mode or history limits.
 * Started from MONGOQ_TEST_SERVER_BIN with "--port 0" plus extra_args (NULL-terminated, may be
 * NULL); waits until it answers hello. Such tests exercise the test server's own flags and are
 * skipped when $MONGOQ_TEST_NO_SPAWN is set (e.g. against a real replica set without the binary).
 */
typedef struct {
    pid_t pid;
    char uri[256];
    int port;
} mtest_server_t;

bool
mtest_server_start(mtest_server_t *server, const char *const *extra_args, int port);
/* SIGKILL (hard = true) or SIGTERM, then waits for the process. */
void
mtest_server_stop(mtest_server_t *server, bool hard);
/* A new empty directory /tmp/mongoq-<prefix>-XXXXXX (for --dbpath). Caller frees with
 * mtest_tmpdir_remove. */
char *
mtest_tmpdir(const char *prefix);

/* Removes the files in dir (one level), dir itself, and frees the string. */
void
mtest_tmpdir_remove(char *dir);

/* Whether tests may spawn private servers. */
bool
mtest_can_spawn(void);

#endif

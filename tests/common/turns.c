/*
 * Taking turns on the one server under test, between tests that run at once (Criterion's
 * --jobs=2, programs run side by side). Criterion runs each test in a process of its own, so a
 * turn is an flock that the test's process holds until it gives it back or exits. The lock files
 * are named after the server's URI (FNV-1a; tests/cli/fail_point.sh computes the same name), so
 * suites run against different servers never wait for each other.
 *
 * Two turns, always taken in this order, so two tests never each hold what the other waits for:
 *  - the server's: every test that talks to the server under test holds it shared from its first
 *    mtest_uri(). A test that arms a fail point mongod cannot confine to its own commands (no
 *    appName or namespace filter: onPrimaryTransactionalWrite, hangDuringBatchInsert,
 *    maxTimeAlwaysTimeOut) holds it exclusively (mtest_server_exclusive), so no other test's
 *    command meets that fault or uses it up.
 *  - failCommand's: each failCommand names its test's appName, but the server has one
 *    failCommand, so tests that set it take turns instead of switching each other's faults.
 */
#include "testutil.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* Opens (creating it) /tmp/mongoq-<kind>-<FNV-1a of uri>.lock; asserts it could. */
static int
open_turn(const char *uri, const char *kind)
{
    uint32_t hash = 2166136261u;
    for (const char *c = uri; *c; c++) {
        hash = (hash ^ (uint8_t)*c) * 16777619u;
    }
    char path[96];
    bson_snprintf(path, sizeof path, "/tmp/mongoq-%s-%08x.lock", kind, hash);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    cr_assert(fd >= 0, "cannot open %s", path);
    return fd;
}

/* flock(fd, op), again when a signal interrupted the wait (bounded); 0 or -1 as flock. */
static int
lock_turn(int fd, int op)
{
    int rc = flock(fd, op);
    for (int i = 0; i < 1000 && rc != 0 && errno == EINTR; i++) {
        rc = flock(fd, op);
    }
    return rc;
}

/* ---- the server's turn ---------------------------------------------------------------------- */

static pthread_mutex_t server_turn_mu = PTHREAD_MUTEX_INITIALIZER;
static int server_turn_fd = -1;
static int server_turn_held;        /* 0, LOCK_SH or LOCK_EX: what this process holds */
static int fail_point_lock_fd = -1; /* failCommand's turn, when this process holds it */

/* Takes the server's turn as op (LOCK_SH or LOCK_EX) unless this process holds it already as
 * much; an exclusive turn is never given back to a shared one. */
static void
take_server_turn(const char *uri, int op)
{
    int rc = 0, err = 0;
    pthread_mutex_lock(&server_turn_mu);
    if (server_turn_fd < 0) {
        server_turn_fd = open_turn(uri, "server");
    }
    if (server_turn_held != LOCK_EX && server_turn_held != op) {
        rc = lock_turn(server_turn_fd, op); /* shared to exclusive: flock lets go, then waits */
        err = errno;
        server_turn_held = rc == 0 ? op : 0;
    }
    pthread_mutex_unlock(&server_turn_mu);
    cr_assert(rc == 0, "cannot lock the server's turn: %s", strerror(err));
}

const char *
mtest_uri(void)
{
    const char *uri = getenv("MONGOQ_TEST_URI");
    if (!uri || !*uri) {
        cr_assert_fail("MONGOQ_TEST_URI is not set: run scripts/test, or point it at a replica set");
    }
    take_server_turn(uri, LOCK_SH);
    return uri;
}

void
mtest_server_exclusive(void)
{
    /* The order above: failCommand's turn is taken after the server's, never before. */
    cr_assert(fail_point_lock_fd < 0, "take the server's turn before failCommand's");
    const char *uri = getenv("MONGOQ_TEST_URI");
    cr_assert(uri && *uri, "MONGOQ_TEST_URI is not set");
    take_server_turn(uri, LOCK_EX);
}

/* ---- failCommand's turn --------------------------------------------------------------------- */

/* configureFailPoint's "count": the times failCommand was entered so far (mongod: cumulative). */
static int64_t
entered_count(const bson_t *reply)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, "count") && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : -1;
}

/* Held by this process from mtest_fail_point_hold to mtest_fail_point_release. */
static bool fail_point_pinned;

static void
hold_fail_point(bool hold)
{
    if (!hold) {
        if (fail_point_lock_fd >= 0 && !fail_point_pinned) {
            close(fail_point_lock_fd); /* gives the turn back */
            fail_point_lock_fd = -1;
        }
        return;
    }
    if (fail_point_lock_fd >= 0) {
        return;
    }
    const char *uri = mtest_uri(); /* the server's turn first (shared, unless held already) */
    fail_point_lock_fd = open_turn(uri, "failcommand");
    cr_assert(lock_turn(fail_point_lock_fd, LOCK_EX) == 0, "cannot lock failCommand's turn: %s",
              strerror(errno));
}

void
mtest_fail_point_hold(void)
{
    hold_fail_point(true);
    fail_point_pinned = true;
}

void
mtest_fail_point_release(void)
{
    fail_point_pinned = false;
    hold_fail_point(false);
}

int64_t
mtest_fail_point(mongoc_client_t *client, const char *mode_json, const char *data_json)
{
    bool off = strcmp(mode_json, "\"off\"") == 0;
    if (!off) {
        hold_fail_point(true);
    }
    char *json = bson_strdup_printf("{\"configureFailPoint\": \"failCommand\", \"mode\": %s%s%s}",
                                    mode_json, data_json ? ", \"data\": " : "",
                                    data_json ? data_json : "");
    bson_error_t error;
    bson_t reply;
    bool ok = mtest_command(client, "admin", json, &reply, &error);
    cr_assert(ok, "configureFailPoint %s: %s", json, error.message);
    int64_t count = entered_count(&reply);
    bson_destroy(&reply);
    bson_free(json);
    if (off) {
        hold_fail_point(false);
    }
    return count;
}

int64_t
mtest_fail_point_app(mongoc_client_t *client, const char *appname, const char *mode_json,
                     const char *data_fields_json)
{
    char *data = bson_strdup_printf("{\"appName\": \"%s\", %s}", appname, data_fields_json);
    int64_t count = mtest_fail_point(client, mode_json, data);
    bson_free(data);
    return count;
}

/*
 * The helpers every conformance file shares: running commands written as relaxed extended JSON,
 * reading replies by dotted path, taking turns on the server's one failCommand, change streams
 * (and the fixture of the change-stream tests) and the little-endian integers of the wire
 * protocol. Header-only (static inline) so each test file stays one concern and uses only what
 * it needs.
 */
#ifndef MONGOQ_CF_UTIL_H
#define MONGOQ_CF_UTIL_H

#include "testutil.h"

#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

/*
 * A suite's connection: a client with appname `name` and a database of its own
 * ("<name>_<pid>_<n>"). cf_close drops the database and frees both.
 */
static inline void
cf_open(mongoc_client_t **client, char **dbname, const char *name)
{
    *client = mtest_client_new(name);
    *dbname = mtest_db_name(name);
}

static inline void
cf_close(mongoc_client_t **client, char **dbname)
{
    mtest_db_drop(*client, *dbname);
    bson_free(*dbname);
    mongoc_client_destroy(*client);
    *dbname = NULL;
    *client = NULL;
}

/* A document from relaxed extended JSON; asserts it parses. Caller destroys. */
static inline bson_t *
cf_json(const char *json)
{
    bson_error_t error;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &error);
    cr_assert(b, "bad JSON %s: %s", json, error.message);
    return b;
}

/* Runs a command; reply (if not NULL) is always initialised. */
static inline bool
cf_run(mongoc_client_t *client, const char *db, const char *json, bson_t *reply,
       bson_error_t *error)
{
    return mtest_command(client, db, json, reply, error);
}

/* Runs a command that must succeed (ok: 1); its reply is left in *reply (initialised). */
static inline void
cf_run_ok_reply(mongoc_client_t *client, const char *db, const char *json, bson_t *reply)
{
    bson_error_t error;
    cr_assert(cf_run(client, db, json, reply, &error), "%s: %s", json, error.message);
}

/* Runs a command that must succeed (ok: 1). */
static inline void
cf_run_ok(mongoc_client_t *client, const char *db, const char *json)
{
    bson_t reply;
    cf_run_ok_reply(client, db, json, &reply);
    bson_destroy(&reply);
}

/* Runs a command that must fail (ok: 0); returns its code. reply and error may be NULL; the
 * reply is left in *reply (initialised). */
static inline uint32_t
cf_run_fail(mongoc_client_t *client, const char *db, const char *json, bson_t *reply,
            bson_error_t *error)
{
    bson_error_t local;
    bson_error_t *e = error ? error : &local;
    cr_assert_not(cf_run(client, db, json, reply, e), "%s succeeded", json);
    return e->code;
}

static inline bool
cf_find(const bson_t *doc, const char *path, bson_iter_t *it)
{
    return bson_iter_init(it, doc) && bson_iter_find_descendant(it, path, it);
}

/* Whether doc has anything at path. */
static inline bool
cf_has_at(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    return cf_find(doc, path, &it);
}

/* A string at path, or NULL. */
static inline const char *
cf_str_at(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    return cf_find(doc, path, &it) && BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : NULL;
}

/* A number at path (asserts it is there). */
static inline int64_t
cf_int_at(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    cr_assert(cf_find(doc, path, &it) && BSON_ITER_HOLDS_NUMBER(&it), "no number %s in %s", path,
              bson_as_relaxed_extended_json(doc, NULL));
    return bson_iter_as_int64(&it);
}

/* Whether a reply carries an error label. */
static inline bool
cf_has_label(const bson_t *reply, const char *label)
{
    bson_iter_t it, child;
    if (!bson_iter_init_find(&it, reply, "errorLabels") || !bson_iter_recurse(&it, &child)) {
        return false;
    }
    while (bson_iter_next(&child)) {
        if (BSON_ITER_HOLDS_UTF8(&child) && strcmp(bson_iter_utf8(&child, NULL), label) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether the message contains part; a readable assertion message either way. */
static inline void
cf_assert_contains(const char *message, const char *part)
{
    cr_assert(message && strstr(message, part), "\"%s\" does not contain \"%s\"",
              message ? message : "(null)", part);
}

/*
 * The server has one failCommand (and one of each fail point): the conformance suites that set
 * them take turns (parallel jobs) by holding testutil's fail point turn from their setup to their
 * teardown, the same turn mtest_fail_point takes. Returns a token for cf_fail_points_unlock.
 */
static inline int
cf_fail_points_lock(void)
{
    mtest_fail_point_hold();
    return 0;
}

static inline void
cf_fail_points_unlock(int token)
{
    (void)token;
    mtest_fail_point_release();
}

/*
 * A suite that arms one server-wide fail point mongod cannot confine to its own commands (no
 * appName or namespace filter): each test holds the server exclusively, so no other test's
 * command meets the fault or uses it up, and the fail-point turn, from setup to teardown around
 * cf_open's client and database. cf_fail_point_close turns fail_point off, then closes and gives
 * the fail-point turn back; the server's comes back when the test's process ends.
 */
static inline void
cf_fail_point_open(mongoc_client_t **client, char **dbname, const char *name)
{
    mtest_server_exclusive();
    mtest_fail_point_hold();
    cf_open(client, dbname, name);
}

static inline void
cf_fail_point_close(mongoc_client_t **client, char **dbname, const char *fail_point)
{
    char *json =
        bson_strdup_printf("{\"configureFailPoint\": \"%s\", \"mode\": \"off\"}", fail_point);
    cf_run_ok(*client, "admin", json);
    bson_free(json);
    cf_close(client, dbname);
    mtest_fail_point_release();
}

/*
 * What a suite of failCommand tests shares: the fail-point turn (held from setup to teardown), an
 * admin client that sets the fail point, a victim client whose appName (unique per test) the
 * fail point names, so other tests' commands are never hit, and a database of its own.
 */
typedef struct {
    mongoc_client_t *admin;
    mongoc_client_t *victim;
    char *dbname;
    char appname[64];
} cf_fail_point_suite_t;

/* app_prefix and db_prefix name the victim's appName and the database; admin_app the admin's. */
static inline void
cf_fail_point_suite_setup(cf_fail_point_suite_t *s, const char *app_prefix, const char *admin_app,
                          const char *db_prefix)
{
    mtest_fail_point_hold();
    char *name = mtest_db_name(app_prefix);
    snprintf(s->appname, sizeof s->appname, "%s", name);
    bson_free(name);
    s->admin = mtest_client_new(admin_app);
    s->victim = mtest_client_new(s->appname);
    s->dbname = mtest_db_name(db_prefix);
}

/* Turns the fail point off, drops the database, and gives the turn to the next suite. */
static inline void
cf_fail_point_suite_teardown(cf_fail_point_suite_t *s)
{
    mtest_fail_point(s->admin, "\"off\"", NULL);
    mtest_db_drop(s->admin, s->dbname);
    bson_free(s->dbname);
    mongoc_client_destroy(s->victim);
    mongoc_client_destroy(s->admin);
    mtest_fail_point_release();
}

/* ---- change streams ------------------------------------------------------------------------- */

/* A change stream on coll (no pipeline) waiting at most 300 ms per getMore; resume_after may be
 * NULL. */
static inline mongoc_change_stream_t *
cf_watch(mongoc_collection_t *coll, const bson_t *resume_after)
{
    bson_t pipeline = BSON_INITIALIZER;
    bson_t opts = BSON_INITIALIZER;
    BSON_APPEND_INT64(&opts, "maxAwaitTimeMS", 300);
    if (resume_after) {
        BSON_APPEND_DOCUMENT(&opts, "resumeAfter", resume_after);
    }
    mongoc_change_stream_t *cs = mongoc_collection_watch(coll, &pipeline, &opts);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
    return cs;
}

/* Asserts the stream has no error, with the server's reply when there is one. */
static inline void
cf_assert_stream_ok(mongoc_change_stream_t *cs)
{
    bson_error_t error;
    const bson_t *reply;
    if (mongoc_change_stream_error_document(cs, &error, &reply)) {
        char *json = reply ? bson_as_relaxed_extended_json(reply, NULL) : NULL;
        cr_assert_fail("change stream error %u: %s %s", error.code, error.message,
                       json ? json : "");
    }
}

/* The next event within timeout_ms (a copy; caller destroys), or NULL. Asserts no error. */
static inline bson_t *
cf_next_event_within(mongoc_change_stream_t *cs, int64_t timeout_ms)
{
    const bson_t *doc;
    int64_t deadline = mtest_now_ms() + timeout_ms;
    do {
        if (mongoc_change_stream_next(cs, &doc)) {
            return bson_copy(doc);
        }
        cf_assert_stream_ok(cs);
    } while (mtest_now_ms() < deadline);
    return NULL;
}

/* The next event within 10 s (a copy; caller destroys); asserts there is one and no error. */
static inline bson_t *
cf_next_event(mongoc_change_stream_t *cs)
{
    bson_t *ev = cf_next_event_within(cs, 10000);
    cr_assert(ev != NULL, "no change event within 10 s");
    return ev;
}

/*
 * The first event of a change stream cursor opened by a raw aggregate, for $changeStream options
 * libmongoc's watch cannot pass (showExpandedEvents in libmongoc 1.23): getMores on coll of db
 * until one returns an event, at most 10 s. A copy; the caller destroys it.
 */
static inline bson_t *
cf_next_event_raw(mongoc_client_t *cl, const char *db, const char *coll, int64_t cursor_id)
{
    int64_t deadline = mtest_now_ms() + 10000;
    while (mtest_now_ms() < deadline) {
        bson_t reply;
        bson_error_t error;
        bson_iter_t it, batch;
        bson_t *cmd = BCON_NEW("getMore", BCON_INT64(cursor_id), "collection", BCON_UTF8(coll),
                               "maxTimeMS", BCON_INT64(500));
        cr_assert(mongoc_client_command_simple(cl, db, cmd, NULL, &reply, &error), "getMore: %s",
                  error.message);
        bson_destroy(cmd);
        bson_t *ev = NULL;
        if (bson_iter_init(&it, &reply) &&
            bson_iter_find_descendant(&it, "cursor.nextBatch", &batch) &&
            bson_iter_recurse(&batch, &it) && bson_iter_next(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            ev = bson_new_from_data(data, len);
        }
        bson_destroy(&reply);
        if (ev) {
            return ev;
        }
    }
    cr_assert_fail("no change event within 10 s");
    return NULL;
}

/* ---- the change-stream tests' fixture (test_changestream.c, test_changestream_cursor.c) ---- */

/* JSON with single quotes for readability; asserts it parses. Caller destroys. */
static inline bson_t *
cs_json(const char *json)
{
    char *s = bson_strdup(json);
    for (char *p = s; *p; p++) {
        if (*p == '\'') {
            *p = '"';
        }
    }
    bson_error_t error;
    bson_t *b = bson_new_from_json((const uint8_t *)s, -1, &error);
    cr_assert(b != NULL, "bad JSON %s: %s", s, error.message);
    bson_free(s);
    return b;
}

typedef struct {
    mongoc_client_t *client;
    char *dbname;
    mongoc_database_t *db;
    mongoc_collection_t *coll;
} cs_fixture_t;

static inline void
cs_setup(cs_fixture_t *f)
{
    f->client = mtest_client_new("changestream-tests");
    /* Majority writes: a real replica set reports only majority-committed writes. */
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_client_set_write_concern(f->client, wc);
    mongoc_write_concern_destroy(wc);
    f->dbname = mtest_db_name("cs");
    f->db = mongoc_client_get_database(f->client, f->dbname);
    f->coll = mongoc_client_get_collection(f->client, f->dbname, "events");
    /* Create the collection first: a stream on a missing collection works, but be explicit. */
    bson_error_t error;
    mongoc_collection_t *c = mongoc_database_create_collection(f->db, "events", NULL, &error);
    cr_assert(c != NULL, "create: %s", error.message);
    mongoc_collection_destroy(c);
}

static inline void
cs_teardown(cs_fixture_t *f)
{
    mtest_db_drop(f->client, f->dbname);
    mongoc_collection_destroy(f->coll);
    mongoc_database_destroy(f->db);
    bson_free(f->dbname);
    mongoc_client_destroy(f->client);
}

static inline mongoc_change_stream_t *
cs_watch(mongoc_collection_t *coll, const char *pipeline_json, const char *opts_json)
{
    bson_t *pipeline = cs_json(pipeline_json ? pipeline_json : "{'pipeline': []}");
    bson_t *opts = cs_json(opts_json ? opts_json : "{}");
    if (!bson_has_field(opts, "maxAwaitTimeMS")) {
        BSON_APPEND_INT64(opts, "maxAwaitTimeMS", 300);
    }
    mongoc_change_stream_t *cs = mongoc_collection_watch(coll, pipeline, opts);
    bson_destroy(pipeline);
    bson_destroy(opts);
    return cs;
}

static inline void
cs_sub(const bson_t *doc, const char *path, bson_t *out)
{
    bson_iter_t it;
    bson_iter_t found;
    uint32_t len;
    const uint8_t *data;
    cr_assert(bson_iter_init(&it, doc) && bson_iter_find_descendant(&it, path, &found) &&
                  (BSON_ITER_HOLDS_DOCUMENT(&found) || BSON_ITER_HOLDS_ARRAY(&found)),
              "no document at %s", path);
    if (BSON_ITER_HOLDS_DOCUMENT(&found)) {
        bson_iter_document(&found, &len, &data);
    } else {
        bson_iter_array(&found, &len, &data);
    }
    cr_assert(bson_init_static(out, data, len));
}

static inline void
cs_insert(mongoc_collection_t *coll, const char *json)
{
    bson_error_t error;
    bson_t *doc = cs_json(json);
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "insert: %s",
              error.message);
    bson_destroy(doc);
}

/* ---- the wire protocol's little-endian integers ---------------------------------------------- */

static inline void
cf_put_i32(uint8_t *p, int32_t v)
{
    uint32_t u = (uint32_t)v;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

static inline int32_t
cf_get_i32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

#endif

/*
 * A write that asks for the journal is answered only after the journal is on disk.
 *
 * The manual, "Write Concern", j option (https://www.mongodb.com/docs/v6.0/reference/write-concern/#j-option):
 * j: true requests acknowledgment that the write has been written to the on-disk journal.
 * "Implicit Default Write Concern" (same page): a replica set without arbiters defaults to
 * {w: "majority"}. writeConcernMajorityJournalDefault (replica set configuration, default true):
 * w: "majority" is acknowledged once a majority has written to the on-disk journal. mongod's
 * src/mongo/db/write_concern.cpp (extractWriteConcern, waitForWriteConcern) applies the default
 * and waits for the JournalFlusher on SyncMode::JOURNAL; with w: 1 and j unset the sync mode is
 * NONE and nothing waits. "Journaling" (https://www.mongodb.com/docs/v6.0/core/journaling/):
 * a write with j: true makes WiredTiger sync the log at once instead of at the next
 * commitIntervalMs (100 ms).
 *
 * What proves the flush: serverStatus wiredTiger.log."log sync operations", the count of log
 * syncs WiredTiger reports (serverStatus output, wiredTiger section,
 * https://www.mongodb.com/docs/v6.0/reference/command/serverStatus/#wiredtiger). The test server
 * reports its fdatasync calls on DIR/journal.bson under the same name when it runs with
 * --dbpath.
 *
 * On a private test server (--dbpath in a fresh directory) nothing else writes, so the count
 * shows both that a journaled write synced and that a w: 1 write did not. Against a real mongod
 * (MONGOQ_TEST_NO_SPAWN) the JournalFlusher also syncs every commitIntervalMs and other suites
 * write at the same time: only "a journaled write was followed by a sync" can be shown there,
 * and the parts that need a quiet server are skipped with a message saying so.
 */
#include "cf_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JS_SYNCS "wiredTiger.log.log sync operations"

static void
js_suite_init(void)
{
    mongoc_init();
}

TestSuite(journal_sync, .init = js_suite_init, .timeout = 60);

/* The server under test: a private one on a fresh --dbpath (plus extra, may be NULL), or the
 * shared server when private servers cannot be spawned (a real mongod). */
typedef struct {
    bool private_server;
    mtest_server_t srv;
    char *dir;
    mongoc_client_t *client;
    char *db;
} js_world_t;

static int64_t
js_syncs(js_world_t *w);

/* Opens the world; skips the test when the server keeps no journal. */
static void
js_open(js_world_t *w, const char *extra)
{
    memset(w, 0, sizeof *w);
    w->private_server = mtest_can_spawn();
    if (w->private_server) {
        w->dir = mtest_tmpdir("jsync");
        const char *args[] = {"--dbpath", w->dir, extra, NULL};
        cr_assert(mtest_server_start(&w->srv, args, 0), "start a server on --dbpath %s", w->dir);
        w->client = mtest_client_for(w->srv.uri, "journal_sync");
    } else {
        w->client = mtest_client_new("journal_sync");
    }
    w->db = mtest_db_name("jsync");
    (void)js_syncs(w);
}

static void
js_close(js_world_t *w)
{
    mtest_db_drop(w->client, w->db);
    bson_free(w->db);
    mongoc_client_destroy(w->client);
    if (w->private_server) {
        mtest_server_stop(&w->srv, false);
        mtest_tmpdir_remove(w->dir);
    }
}

/* The log sync count. The shared server may keep no journal (an in-memory engine): the test is
 * skipped; a private one runs with --dbpath and must report it. js_open asks first, before the
 * test allocates anything. */
static int64_t
js_syncs(js_world_t *w)
{
    bson_t reply;
    cf_run_ok_reply(w->client, "admin", "{\"serverStatus\": 1}", &reply);
    if (!cf_has_at(&reply, JS_SYNCS)) {
        bson_destroy(&reply);
        /* A private server runs with --dbpath: it journals, so it must say so. */
        cr_assert_not(w->private_server,
                      "serverStatus of a --dbpath test server has no wiredTiger.log: its "
                      "serverStatus handler must append ms_journal_server_status(reply)");
        js_close(w);
        cr_skip("serverStatus has no wiredTiger.log: the server keeps no journal");
    }
    int64_t n = cf_int_at(&reply, JS_SYNCS);
    bson_destroy(&reply);
    return n;
}

/* Inserts {_id: id} with the write concern wc (a JSON object, or NULL for none). */
static void
js_insert(js_world_t *w, int id, const char *wc)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "{\"insert\": \"c\", \"documents\": [{\"_id\": %d}]%s%s}", id,
             wc ? ", \"writeConcern\": " : "", wc ? wc : "");
    bson_t reply;
    cf_run_ok_reply(w->client, w->db, cmd, &reply);
    cr_assert_eq(cf_int_at(&reply, "n"), 1, "%s inserted nothing", cmd);
    cr_assert_not(cf_has_at(&reply, "writeConcernError"), "%s: writeConcernError", cmd);
    bson_destroy(&reply);
}

/* A write with j: true, with w: "majority", or with no write concern at all (the replica set's
 * implicit default, w: "majority") is followed by at least one log sync before its reply. */
Test(journal_sync, journaled_writes_wait_for_a_sync)
{
    static const char *const concerns[] = {"{\"w\": 1, \"j\": true}", "{\"j\": true}",
                                           "{\"w\": \"majority\"}", NULL};
    js_world_t w;
    js_open(&w, NULL);
    js_insert(&w, 0, "{\"w\": 1}"); /* creates the collection */
    for (int k = 0; k < 4; k++) {
        int64_t before = js_syncs(&w);
        js_insert(&w, k + 1, concerns[k]);
        int64_t after = js_syncs(&w);
        cr_assert_gt(after, before, "writeConcern %s: no log sync before the reply (%lld, %lld)",
                     concerns[k] ? concerns[k] : "(none: the implicit default)",
                     (long long)before, (long long)after);
    }
    js_close(&w);
}

/* w: 1 with j unset or false does not wait for the journal: no sync on a quiet server. */
Test(journal_sync, w1_writes_do_not_sync)
{
    js_world_t w;
    js_open(&w, NULL);
    if (!w.private_server) {
        js_close(&w);
        cr_skip("a real mongod also syncs every commitIntervalMs and other suites write: "
                "the absence of a sync cannot be shown on a shared server");
    }
    js_insert(&w, 0, "{\"w\": 1, \"j\": true}");
    int64_t before = js_syncs(&w);
    js_insert(&w, 1, "{\"w\": 1}");
    js_insert(&w, 2, "{\"w\": 1, \"j\": false}");
    bson_t reply;
    cf_run_ok_reply(w.client, w.db,
                    "{\"update\": \"c\", \"updates\": [{\"q\": {\"_id\": 1}, \"u\": {\"$set\": "
                    "{\"x\": 1}}}], \"writeConcern\": {\"w\": 1}}",
                    &reply);
    bson_destroy(&reply);
    cr_assert_eq(js_syncs(&w), before, "a w: 1 write synced the journal");
    /* The next journaled write syncs what the w: 1 writes left behind too. */
    js_insert(&w, 3, "{\"w\": 1, \"j\": true}");
    cr_assert_gt(js_syncs(&w), before);
    js_close(&w);
}

/* A standalone's implicit default is {w: 1}: no sync without j; j: true still syncs. */
Test(journal_sync, standalone_default_does_not_sync)
{
    if (!mtest_can_spawn()) {
        cr_skip("needs a private standalone test server");
    }
    js_world_t w;
    js_open(&w, "--standalone");
    js_insert(&w, 0, NULL);
    int64_t before = js_syncs(&w);
    js_insert(&w, 1, NULL);
    cr_assert_eq(js_syncs(&w), before, "a standalone's default write concern synced");
    js_insert(&w, 2, "{\"j\": true}");
    cr_assert_gt(js_syncs(&w), before, "j: true on a standalone did not sync");
    js_close(&w);
}

/* Inside a transaction the statements take no write concern; the commit's w: "majority" waits. */
Test(journal_sync, transaction_commit_syncs)
{
    js_world_t w;
    js_open(&w, NULL);
    js_insert(&w, 0, "{\"w\": \"majority\"}");
    bson_error_t error;
    mongoc_client_session_t *s = mongoc_client_start_session(w.client, NULL, &error);
    cr_assert(s, "%s", error.message);
    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    mongoc_collection_t *coll = mongoc_client_get_collection(w.client, w.db, "c");
    bson_t opts = BSON_INITIALIZER;
    cr_assert(mongoc_client_session_append(s, &opts, &error));
    bson_t *doc = BCON_NEW("_id", BCON_INT32(1));
    int64_t before = js_syncs(&w);
    cr_assert(mongoc_collection_insert_one(coll, doc, &opts, NULL, &error), "%s", error.message);
    if (w.private_server) {
        cr_assert_eq(js_syncs(&w), before, "a statement inside a transaction synced");
    }
    bson_t reply;
    cr_assert(mongoc_client_session_commit_transaction(s, &reply, &error), "%s", error.message);
    bson_destroy(&reply);
    cr_assert_gt(js_syncs(&w), before, "the commit did not sync");
    bson_destroy(doc);
    bson_destroy(&opts);
    mongoc_collection_destroy(coll);
    mongoc_client_session_destroy(s);
    js_close(&w);
}

/*
 * The test server's own flags, on private server processes: --dbpath (kill -9, restart, data
 * and resume tokens survive; a torn last record is cut off), --history and --history-bytes
 * (ChangeStreamHistoryLost; by default sized in bytes as mongod sizes its oplog)
 * and --standalone (no change streams). Skipped when private servers cannot be spawned.
 */
#include "cf_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
jr_suite_init(void)
{
    mongoc_init();
}

TestSuite(journal, .init = jr_suite_init, .timeout = 90);

static void
jr_insert(mongoc_collection_t *coll, int id)
{
    bson_error_t error;
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_INT32(&doc, "_id", id);
    cr_assert(mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error), "insert %d: %s", id,
              error.message);
    bson_destroy(&doc);
}

static int32_t
jr_doc_id(const bson_t *ev)
{
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, ev) && bson_iter_find_descendant(&it, "documentKey._id", &it));
    return bson_iter_int32(&it);
}

static void
jr_cluster_time(const bson_t *ev, uint32_t *t, uint32_t *i)
{
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, ev, "clusterTime") && BSON_ITER_HOLDS_TIMESTAMP(&it));
    bson_iter_timestamp(&it, t, i);
}

static void
jr_create_unique_index(mongoc_collection_t *coll)
{
    bson_error_t error;
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(mongoc_collection_get_name(coll)), "indexes",
                           "[", "{", "key", "{", "k", BCON_INT32(1), "}", "name", BCON_UTF8("k_1"),
                           "unique", BCON_BOOL(true), "}", "]");
    cr_assert(mongoc_collection_write_command_with_opts(coll, cmd, NULL, NULL, &error),
              "createIndexes: %s", error.message);
    bson_destroy(cmd);
}

static void
jr_insert_k(mongoc_collection_t *coll, int id, int k, uint32_t want_code)
{
    bson_error_t error;
    bson_t *doc = BCON_NEW("_id", BCON_INT32(id), "k", BCON_INT32(k));
    bool ok = mongoc_collection_insert_one(coll, doc, NULL, NULL, &error);
    if (want_code) {
        cr_assert(!ok && error.code == want_code, "want error %u, got %u", want_code, error.code);
    } else {
        cr_assert(ok, "insert: %s", error.message);
    }
    bson_destroy(doc);
}

Test(journal, kill_9_then_restart_keeps_data_and_resume_tokens)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    char *dir = mtest_tmpdir("journal");
    const char *args[] = {"--dbpath", dir, NULL};
    mtest_server_t srv;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    mongoc_client_t *client = mtest_client_for(srv.uri, NULL);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "jr", "c");
    jr_create_unique_index(coll);
    mongoc_change_stream_t *cs = cf_watch(coll, NULL);
    jr_insert_k(coll, 1, 1, 0);
    bson_t *ev = cf_next_event(cs);
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, ev, "_id"));
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t *saved = bson_new_from_data(data, len);
    bson_destroy(ev);
    jr_insert_k(coll, 2, 2, 0);
    jr_insert_k(coll, 3, 3, 0);
    mongoc_change_stream_destroy(cs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mtest_server_stop(&srv, true);

    cr_assert(mtest_server_start(&srv, args, 0), "restart on the same --dbpath");
    client = mtest_client_for(srv.uri, NULL);
    coll = mongoc_client_get_collection(client, "jr", "c");
    bson_error_t error;
    bson_t empty = BSON_INITIALIZER;
    int64_t n = mongoc_collection_count_documents(coll, &empty, NULL, NULL, NULL, &error);
    cr_assert_eq(n, 3, "documents after kill -9: %lld (%s)", (long long)n, error.message);
    jr_insert_k(coll, 4, 1, 11000); /* the unique index came back too */

    cs = cf_watch(coll, saved);
    uint32_t t3 = 0;
    uint32_t i3 = 0;
    for (int id = 2; id <= 3; id++) {
        ev = cf_next_event(cs);
        cr_assert_eq(jr_doc_id(ev), id, "resumed across the restart in order");
        jr_cluster_time(ev, &t3, &i3);
        bson_destroy(ev);
    }
    jr_insert(coll, 5);
    ev = cf_next_event(cs);
    cr_assert_eq(jr_doc_id(ev), 5);
    uint32_t t5;
    uint32_t i5;
    jr_cluster_time(ev, &t5, &i5);
    cr_assert(t5 > t3 || (t5 == t3 && i5 > i3), "cluster time keeps increasing after a restart");
    bson_destroy(ev);

    mongoc_change_stream_destroy(cs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mtest_server_stop(&srv, false);
    bson_destroy(saved);
    bson_destroy(&empty);
    mtest_tmpdir_remove(dir);
}

Test(journal, torn_last_record_is_cut_off)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    char *dir = mtest_tmpdir("journal");
    const char *args[] = {"--dbpath", dir, NULL};
    mtest_server_t srv;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    mongoc_client_t *client = mtest_client_for(srv.uri, NULL);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "jr", "c");
    jr_insert(coll, 1);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mtest_server_stop(&srv, true);

    /* A crash in the middle of a write: a record's length prefix and a few of its bytes. */
    char *path = bson_strdup_printf("%s/journal.bson", dir);
    int fd = open(path, O_WRONLY | O_APPEND);
    cr_assert(fd >= 0, "the journal is %s", path);
    static const char torn[] = {0x40, 0x00, 0x00, 0x00, 0x10, 'x', 0x00};
    cr_assert(write(fd, torn, sizeof torn) == (ssize_t)sizeof torn);
    close(fd);
    bson_free(path);

    for (int round = 0; round < 2; round++) {
        cr_assert(mtest_server_start(&srv, args, 0), "restart after a torn write");
        client = mtest_client_for(srv.uri, NULL);
        coll = mongoc_client_get_collection(client, "jr", "c");
        bson_error_t error;
        bson_t empty = BSON_INITIALIZER;
        int64_t n = mongoc_collection_count_documents(coll, &empty, NULL, NULL, NULL, &error);
        cr_assert_eq(n, 1 + round, "round %d: %lld documents (%s)", round, (long long)n,
                     error.message);
        jr_insert(coll, 2 + round);
        bson_destroy(&empty);
        mongoc_collection_destroy(coll);
        mongoc_client_destroy(client);
        mtest_server_stop(&srv, true);
    }
    mtest_tmpdir_remove(dir);
}

static uint32_t jr_resume_after(const char **args, int n, size_t bytes);

Test(journal, resume_point_older_than_history_is_lost)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    const char *args[] = {"--history", "5", NULL};
    cr_assert_eq(jr_resume_after(args, 10, 1), 286, "ChangeStreamHistoryLost");
}

Test(journal, standalone_has_no_change_streams)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    const char *args[] = {"--standalone", NULL};
    mtest_server_t srv;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    mongoc_client_t *client = mtest_client_for(srv.uri, NULL);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "jr", "c");
    mongoc_change_stream_t *cs = cf_watch(coll, NULL);
    bson_error_t error;
    const bson_t *doc;
    mongoc_change_stream_next(cs, &doc);
    cr_assert(mongoc_change_stream_error_document(cs, &error, NULL), "watch must fail");
    cr_assert_eq(error.code, 40573, "got %u: %s", error.code, error.message);
    cr_assert(strstr(error.message, "only supported on replica sets") != NULL);
    mongoc_change_stream_destroy(cs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mtest_server_stop(&srv, false);
}

/* Inserts n documents of about `bytes` bytes each (ids from first), in batches of 1000. */
static void
jr_insert_many(mongoc_collection_t *coll, int first, int n, size_t bytes)
{
    char *pad = bson_malloc(bytes + 1);
    memset(pad, 'x', bytes);
    pad[bytes] = '\0';
    for (int done = 0; done < n;) {
        int batch = n - done < 1000 ? n - done : 1000;
        bson_t **docs = bson_malloc(sizeof *docs * (size_t)batch);
        for (int k = 0; k < batch; k++) {
            docs[k] = BCON_NEW("_id", BCON_INT32(first + done + k), "pad", BCON_UTF8(pad));
        }
        bson_error_t error;
        cr_assert(mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)batch, NULL,
                                                NULL, &error),
                  "%s", error.message);
        for (int k = 0; k < batch; k++) {
            bson_destroy(docs[k]);
        }
        bson_free(docs);
        done += batch;
    }
    bson_free(pad);
}

/* On a private server started with args: the token of a first insert, then n more inserts of
 * about `bytes` bytes, then a resume from that token: 0 when it resumes, else the error code. */
static uint32_t
jr_resume_after(const char **args, int n, size_t bytes)
{
    mtest_server_t srv;
    cr_assert(mtest_server_start(&srv, args, 0), "start");
    mongoc_client_t *client = mtest_client_for(srv.uri, NULL);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "jr", "c");
    mongoc_change_stream_t *cs = cf_watch(coll, NULL);
    jr_insert(coll, 0);
    bson_t *ev = cf_next_event(cs);
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    cr_assert(bson_iter_init_find(&it, ev, "_id"));
    bson_iter_document(&it, &len, &data);
    bson_t *saved = bson_new_from_data(data, len);
    bson_destroy(ev);
    mongoc_change_stream_destroy(cs);
    jr_insert_many(coll, 1, n, bytes);
    cs = cf_watch(coll, saved);
    const bson_t *doc;
    bson_error_t error;
    uint32_t code = 0;
    if (!mongoc_change_stream_next(cs, &doc) &&
        mongoc_change_stream_error_document(cs, &error, NULL)) {
        code = error.code;
    }
    mongoc_change_stream_destroy(cs);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mtest_server_stop(&srv, false);
    bson_destroy(saved);
    return code;
}

/* The history is sized in bytes as mongod's oplog (manual: core/replica-set-oplog, "Oplog
 * Size": by default 5% of free disk space, at least 990 MB, at most 50 GB on Unix with
 * WiredTiger; mongod: src/mongo/db/repl/oplog.cpp, getNewOplogSizeBytes): 10,050 small
 * operations later the first one can still be resumed from (no count limit, deviation 14 of
 * issue 9: it was 10,000 operations), and --history-bytes makes the window small. The 5% rule
 * itself depends on the disk and is not asserted. */
Test(journal, history_is_sized_in_bytes)
{
    if (!mtest_can_spawn()) {
        cr_skip("cannot spawn a private test server");
    }
    const char *defaults[] = {NULL};
    cr_assert_eq(jr_resume_after(defaults, 10050, 10), 0, "resumed after 10,050 operations");
    const char *small[] = {"--history-bytes", "4000", NULL};
    cr_assert_eq(jr_resume_after(small, 40, 200), 286, "ChangeStreamHistoryLost");
    const char *enough[] = {"--history-bytes", "100000", NULL};
    cr_assert_eq(jr_resume_after(enough, 40, 200), 0);
}

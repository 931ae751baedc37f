/*
 * Conformance: multi-document transactions through libmongoc sessions. Runs unchanged against
 * mongod 6.0 (replica set).
 */
#include "cf_util.h"

#include <string.h>

static mongoc_client_t *client;
static mongoc_client_t *other;
static char *dbname;
static mongoc_collection_t *coll;
static mongoc_collection_t *other_coll;

static void
setup(void)
{
    cf_open(&client, &dbname, "core_txn");
    other = mtest_client_new("core_txn_other");
    coll = mongoc_client_get_collection(client, dbname, "c");
    other_coll = mongoc_client_get_collection(other, dbname, "c");
    bson_error_t error;
    /* Create the collection outside any transaction first (works on every version). */
    cr_assert(mtest_command(client, dbname, "{\"create\": \"c\"}", NULL, &error), "%s",
              error.message);
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll);
    mongoc_collection_destroy(other_coll);
    mongoc_client_destroy(other);
    cf_close(&client, &dbname);
}

TestSuite(txn_basic, .init = setup, .fini = teardown);

static mongoc_client_session_t *
start(mongoc_client_t *c)
{
    bson_error_t error;
    mongoc_client_session_t *s = mongoc_client_start_session(c, NULL, &error);
    cr_assert(s, "%s", error.message);
    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    return s;
}

static bson_t *
session_opts(mongoc_client_session_t *s)
{
    bson_t *opts = bson_new();
    bson_error_t error;
    cr_assert(mongoc_client_session_append(s, opts, &error), "%s", error.message);
    return opts;
}

static bool
insert_in(mongoc_collection_t *c, mongoc_client_session_t *s, const char *json,
          bson_t *reply, bson_error_t *error)
{
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, NULL);
    bson_t *opts = s ? session_opts(s) : NULL;
    bool ok = mongoc_collection_insert_one(c, doc, opts, reply, error);
    bson_destroy(doc);
    if (opts) {
        bson_destroy(opts);
    }
    return ok;
}

static bool
update_in(mongoc_collection_t *c, mongoc_client_session_t *s, const char *filter_json,
          const char *update_json, bson_t *reply, bson_error_t *error)
{
    bson_t *filter = bson_new_from_json((const uint8_t *)filter_json, -1, NULL);
    bson_t *update = bson_new_from_json((const uint8_t *)update_json, -1, NULL);
    bson_t *opts = s ? session_opts(s) : NULL;
    bool ok = mongoc_collection_update_one(c, filter, update, opts, reply, error);
    bson_destroy(filter);
    bson_destroy(update);
    if (opts) {
        bson_destroy(opts);
    }
    return ok;
}

static int64_t
count_in(mongoc_collection_t *c, mongoc_client_session_t *s)
{
    bson_t empty = BSON_INITIALIZER;
    bson_t *opts = s ? session_opts(s) : NULL;
    bson_error_t error;
    int64_t n = mongoc_collection_count_documents(c, &empty, opts, NULL, NULL, &error);
    cr_assert(n >= 0, "%s", error.message);
    if (opts) {
        bson_destroy(opts);
    }
    return n;
}

Test(txn_basic, writes_become_visible_at_commit_only)
{
    mongoc_client_session_t *s = start(client);
    bson_error_t error;
    bson_t reply;
    cr_assert(insert_in(coll, s, "{\"_id\": 1}", NULL, &error), "%s", error.message);
    cr_assert(insert_in(coll, s, "{\"_id\": 2}", NULL, &error), "%s", error.message);
    cr_assert_eq(count_in(coll, s), 2, "the transaction sees its own writes");
    cr_assert_eq(count_in(other_coll, NULL), 0, "others do not");
    cr_assert(mongoc_client_session_commit_transaction(s, &reply, &error), "%s", error.message);
    bson_destroy(&reply);
    cr_assert_eq(count_in(other_coll, NULL), 2);
    mongoc_client_session_destroy(s);
}

Test(txn_basic, abort_discards_the_writes)
{
    mongoc_client_session_t *s = start(client);
    bson_error_t error;
    cr_assert(insert_in(coll, s, "{\"_id\": 1}", NULL, &error), "%s", error.message);
    cr_assert(mongoc_client_session_abort_transaction(s, &error), "%s", error.message);
    cr_assert_eq(count_in(coll, NULL), 0);
    mongoc_client_session_destroy(s);
}

Test(txn_basic, reads_see_the_snapshot_not_later_commits)
{
    bson_error_t error;
    cr_assert(insert_in(coll, NULL, "{\"_id\": 1}", NULL, &error), "%s", error.message);
    mongoc_client_session_t *s = start(client);
    cr_assert_eq(count_in(coll, s), 1);
    cr_assert(insert_in(other_coll, NULL, "{\"_id\": 2}", NULL, &error), "%s", error.message);
    cr_assert_eq(count_in(coll, s), 1, "a commit after the snapshot is invisible");
    cr_assert(mongoc_client_session_abort_transaction(s, &error), "%s", error.message);
    mongoc_client_session_destroy(s);
}

Test(txn_basic, concurrent_writers_of_one_document_conflict)
{
    bson_error_t error;
    bson_t reply;
    cr_assert(insert_in(coll, NULL, "{\"_id\": 1, \"v\": 0}", NULL, &error), "%s", error.message);
    mongoc_client_session_t *a = start(client);
    mongoc_client_session_t *b = start(other);
    cr_assert(update_in(coll, a, "{\"_id\": 1}", "{\"$set\": {\"v\": 1}}", NULL, &error), "%s",
              error.message);
    cr_assert_not(update_in(other_coll, b, "{\"_id\": 1}", "{\"$set\": {\"v\": 2}}", &reply,
                            &error));
    cr_assert_eq(error.code, 112, "%s", error.message);
    cr_assert(cf_has_label(&reply, "TransientTransactionError"), "%s",
              bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    cr_assert(mongoc_client_session_commit_transaction(a, NULL, &error), "%s", error.message);
    mongoc_client_session_abort_transaction(b, NULL);
    mongoc_client_session_destroy(a);
    mongoc_client_session_destroy(b);
}

Test(txn_basic, a_write_committed_after_the_snapshot_conflicts)
{
    bson_error_t error;
    bson_t reply;
    cr_assert(insert_in(coll, NULL, "{\"_id\": 1, \"v\": 0}", NULL, &error), "%s", error.message);
    mongoc_client_session_t *s = start(client);
    cr_assert_eq(count_in(coll, s), 1); /* the snapshot is taken */
    cr_assert(update_in(other_coll, NULL, "{\"_id\": 1}", "{\"$set\": {\"v\": 5}}", NULL,
                        &error), "%s", error.message);
    cr_assert_not(update_in(coll, s, "{\"_id\": 1}", "{\"$set\": {\"v\": 1}}", &reply, &error));
    cr_assert_eq(error.code, 112, "%s", error.message);
    bson_destroy(&reply);
    mongoc_client_session_abort_transaction(s, NULL);
    mongoc_client_session_destroy(s);
}

Test(txn_basic, commit_without_transaction_is_no_such_transaction)
{
    bson_t reply;
    bson_error_t error;
    cr_assert_not(mtest_command(client, "admin", "{\"commitTransaction\": 1, \"lsid\": {\"id\": "
                                "{\"$binary\": {\"base64\": \"q80AAAAAQACAAAAAAAAAAg==\", "
                                "\"subType\": \"04\"}}}, \"txnNumber\": {\"$numberLong\": "
                                "\"7\"}, \"autocommit\": false}", &reply, &error));
    cr_assert_eq(error.code, 251);
    cr_assert(cf_has_label(&reply, "TransientTransactionError"));
    bson_destroy(&reply);
}

Test(txn_basic, insert_into_a_new_collection_inside_a_transaction)
{
    mongoc_collection_t *fresh = mongoc_client_get_collection(client, dbname, "fresh");
    mongoc_client_session_t *s = start(client);
    bson_error_t error;
    cr_assert(insert_in(fresh, s, "{\"_id\": 1}", NULL, &error), "%s", error.message);
    cr_assert(mongoc_client_session_commit_transaction(s, NULL, &error), "%s", error.message);
    cr_assert_eq(count_in(fresh, NULL), 1);
    mongoc_client_session_destroy(s);
    mongoc_collection_destroy(fresh);
}

/* {createIndexes: coll, indexes: [{key: {x: 1}, name: "x_1"}]} in transaction s. */
static bool
create_index_in(mongoc_client_session_t *s, const char *coll_name, bson_t *reply,
                bson_error_t *error)
{
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(coll_name), "indexes", "[", "{", "key",
                           "{", "x", BCON_INT32(1), "}", "name", "x_1", "}", "]");
    bson_t *opts = session_opts(s);
    bool ok = mongoc_client_write_command_with_opts(client, dbname, cmd, opts, reply, error);
    bson_destroy(opts);
    bson_destroy(cmd);
    return ok;
}

static bool
has_index(const char *coll_name, const char *index)
{
    mongoc_collection_t *c = mongoc_client_get_collection(client, dbname, coll_name);
    mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(c, NULL);
    const bson_t *doc;
    bool found = false;
    while (mongoc_cursor_next(cur, &doc)) {
        found = found || strcmp(cf_str_at(doc, "name"), index) == 0;
    }
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    return found;
}

/* mongod 4.4+ (manual: core/transactions-operations, "Create Collections and Indexes in a
 * Transaction"): createIndexes in a transaction on a collection that does not exist creates
 * both, visible at commit; on an existing collection it is OperationNotSupportedInTransaction
 * 263 (create_indexes_cmd.cpp). */
Test(txn_basic, create_indexes_on_a_new_collection_commits_with_the_transaction)
{
    mongoc_client_session_t *s = start(client);
    bson_t reply;
    bson_error_t error;
    cr_assert(create_index_in(s, "fresh", &reply, &error), "%s", error.message);
    bson_destroy(&reply);
    cr_assert_not(has_index("fresh", "x_1"), "visible before the commit");
    cr_assert(mongoc_client_session_commit_transaction(s, &reply, &error), "%s", error.message);
    bson_destroy(&reply);
    cr_assert(has_index("fresh", "x_1"));
    mongoc_client_session_destroy(s);
}

Test(txn_basic, create_indexes_on_an_existing_collection_is_refused)
{
    mongoc_client_session_t *s = start(client);
    bson_t reply;
    bson_error_t error;
    cr_assert_not(create_index_in(s, "c", &reply, &error));
    cr_assert_eq(error.code, 263, "%d %s", error.code, error.message);
    bson_destroy(&reply);
    mongoc_client_session_destroy(s);
}

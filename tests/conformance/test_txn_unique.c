/*
 * Conformance: unique keys across transactions. In mongod 6.0 a transaction inserting a unique
 * key that a concurrent transaction inserted and has not committed (or that was committed after
 * its snapshot) hits a storage write conflict: WiredTigerIndexUnique inserts and removes the
 * key's prefix so such inserts conflict (src/mongo/db/storage/wiredtiger/wiredtiger_index.cpp).
 * Inside a transaction that is WriteConflict 112 with TransientTransactionError
 * (src/mongo/db/error_labels.cpp), the second transaction is the one that fails and is aborted,
 * and mongoc_client_session_with_transaction retries it. A DuplicateKey against a committed
 * document is a write error that aborts the transaction (handleError in
 * src/mongo/db/ops/write_ops_exec.cpp): its next statement gets NoSuchTransaction 251
 * (manual: "Transactions", "Transactions and Write Concern"/"Retry Transaction").
 * Runs unchanged against mongod 6.0 (replica set).
 */
#include "cf_util.h"

static mongoc_client_t *client_a;
static mongoc_client_t *client_b;
static char *dbname;
static mongoc_collection_t *coll_a;
static mongoc_collection_t *coll_b;

static void
setup(void)
{
    cf_open(&client_a, &dbname, "txn_unique");
    client_b = mtest_client_new("txn_unique_b");
    coll_a = mongoc_client_get_collection(client_a, dbname, "c");
    coll_b = mongoc_client_get_collection(client_b, dbname, "c");
    cf_run_ok(client_a, dbname,
              "{\"createIndexes\": \"c\", \"indexes\": [{\"key\": {\"k\": 1}, \"name\": \"k_1\", "
              "\"unique\": true}]}");
}

static void
teardown(void)
{
    mongoc_collection_destroy(coll_a);
    mongoc_collection_destroy(coll_b);
    mongoc_client_destroy(client_b);
    cf_close(&client_a, &dbname);
}

TestSuite(txn_unique, .init = setup, .fini = teardown, .timeout = 60);

static mongoc_client_session_t *
begin(mongoc_client_t *client)
{
    bson_error_t error;
    mongoc_client_session_t *s = mongoc_client_start_session(client, NULL, &error);
    cr_assert(s, "%s", error.message);
    cr_assert(mongoc_client_session_start_transaction(s, NULL, &error), "%s", error.message);
    return s;
}

/* Inserts {_id: id, k: k} (in session s when not NULL); reply is always initialised. */
static bool
insert(mongoc_collection_t *coll, mongoc_client_session_t *s, int id, int k, bson_t *reply,
       bson_error_t *error)
{
    bson_t *doc = BCON_NEW("_id", BCON_INT32(id), "k", BCON_INT32(k));
    bson_t opts = BSON_INITIALIZER;
    if (s) {
        cr_assert(mongoc_client_session_append(s, &opts, error), "%s", error->message);
    }
    bool ok = mongoc_collection_insert_one(coll, doc, &opts, reply, error);
    bson_destroy(&opts);
    bson_destroy(doc);
    return ok;
}

static int64_t
count_id(int id)
{
    char filter[32];
    snprintf(filter, sizeof filter, "{\"_id\": %d}", id);
    return mtest_count(coll_a, filter);
}

Test(txn_unique, second_transaction_inserting_an_uncommitted_key_gets_write_conflict)
{
    bson_t reply;
    bson_error_t error;
    mongoc_client_session_t *a = begin(client_a);
    mongoc_client_session_t *b = begin(client_b);
    cr_assert(insert(coll_a, a, 1, 1, NULL, &error), "%s", error.message);
    cr_assert_not(insert(coll_b, b, 2, 1, &reply, &error), "the second insert of k: 1");
    cr_assert_eq(error.code, 112, "WriteConflict, got %u: %s", error.code, error.message);
    cr_assert(cf_has_label(&reply, "TransientTransactionError"), "%s",
              bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    /* The first transaction is untouched and commits. */
    cr_assert(insert(coll_a, a, 3, 3, NULL, &error), "%s", error.message);
    cr_assert(mongoc_client_session_commit_transaction(a, NULL, &error), "%s", error.message);
    cr_assert_eq(count_id(1), 1);
    cr_assert_eq(count_id(3), 1);
    /* The second was aborted: its next statement finds no transaction. */
    cr_assert_not(insert(coll_b, b, 4, 4, &reply, &error));
    cr_assert_eq(error.code, 251, "NoSuchTransaction, got %u: %s", error.code, error.message);
    bson_destroy(&reply);
    cr_assert_eq(count_id(2) + count_id(4), 0);
    mongoc_client_session_destroy(a);
    mongoc_client_session_destroy(b);
}

Test(txn_unique, a_key_committed_after_the_snapshot_is_a_write_conflict)
{
    bson_t reply;
    bson_error_t error;
    mongoc_client_session_t *b = begin(client_b);
    /* B's snapshot exists once it has read. */
    bson_t opts = BSON_INITIALIZER;
    cr_assert(mongoc_client_session_append(b, &opts, &error), "%s", error.message);
    bson_t empty = BSON_INITIALIZER;
    cr_assert_eq(mongoc_collection_count_documents(coll_b, &empty, &opts, NULL, NULL, &error), 0,
                 "%s", error.message);
    bson_destroy(&opts);
    cr_assert(insert(coll_a, NULL, 1, 1, NULL, &error), "%s", error.message);
    cr_assert_not(insert(coll_b, b, 2, 1, &reply, &error));
    cr_assert_eq(error.code, 112, "WriteConflict, got %u: %s", error.code, error.message);
    cr_assert(cf_has_label(&reply, "TransientTransactionError"));
    bson_destroy(&reply);
    mongoc_client_session_destroy(b);
}

typedef struct {
    mongoc_client_session_t *blocker; /* the uncommitted transaction holding k: 1 */
    int attempts;
} retry_ctx_t;

/* Inserts k: 1; after the first attempt fails, the blocking transaction goes away. */
static bool
insert_k1(mongoc_client_session_t *session, void *ctx_, bson_t **reply, bson_error_t *error)
{
    retry_ctx_t *ctx = ctx_;
    bson_t local;
    ctx->attempts++;
    bool ok = insert(coll_b, session, 2, 1, &local, error);
    if (!ok && ctx->attempts == 1) {
        cr_assert_eq(error->code, 112, "%s", error->message);
        bson_error_t ignored;
        mongoc_client_session_abort_transaction(ctx->blocker, &ignored);
    }
    *reply = bson_copy(&local);
    bson_destroy(&local);
    return ok;
}

Test(txn_unique, with_transaction_retries_the_write_conflict)
{
    bson_error_t error;
    mongoc_client_session_t *a = begin(client_a);
    cr_assert(insert(coll_a, a, 1, 1, NULL, &error), "%s", error.message);
    mongoc_client_session_t *b = mongoc_client_start_session(client_b, NULL, &error);
    cr_assert(b, "%s", error.message);
    retry_ctx_t ctx = {a, 0};
    bson_t reply;
    cr_assert(mongoc_client_session_with_transaction(b, insert_k1, NULL, &ctx, &reply, &error),
              "%s", error.message);
    bson_destroy(&reply);
    cr_assert_eq(ctx.attempts, 2, "retried once after TransientTransactionError");
    cr_assert_eq(count_id(2), 1);
    cr_assert_eq(count_id(1), 0);
    mongoc_client_session_destroy(b);
    mongoc_client_session_destroy(a);
}

Test(txn_unique, duplicate_of_a_committed_key_aborts_the_transaction)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(insert(coll_a, NULL, 1, 1, NULL, &error), "%s", error.message);
    mongoc_client_session_t *b = begin(client_b);
    cr_assert_not(insert(coll_b, b, 2, 1, &reply, &error));
    cr_assert_eq(error.code, 11000, "DuplicateKey, got %u: %s", error.code, error.message);
    cr_assert_not(cf_has_label(&reply, "TransientTransactionError"), "not transient: %s",
                  bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    cr_assert_not(insert(coll_b, b, 3, 3, &reply, &error));
    cr_assert_eq(error.code, 251, "NoSuchTransaction, got %u: %s", error.code, error.message);
    cr_assert(cf_has_label(&reply, "TransientTransactionError"), "%s",
              bson_as_relaxed_extended_json(&reply, NULL));
    bson_destroy(&reply);
    cr_assert_not(mongoc_client_session_commit_transaction(b, &reply, &error));
    cr_assert_eq(error.code, 251, "%s", error.message);
    bson_destroy(&reply);
    cr_assert_eq(count_id(2) + count_id(3), 0);
    mongoc_client_session_destroy(b);
}

/*
 * Reads through a mongos over a collection sharded on {p: "hashed"}, its documents on every shard:
 *  - find with a sort returns the documents of every shard in the sort's order, limit and skip
 *    applied after the merge (s/query/async_results_merger.cpp, cluster_find.cpp);
 *  - count sums the shards' counts, skip and limit applied to the sum (cluster_count_cmd.cpp);
 *  - getMore and killCursors take the mongos's own cursor ids (s/query/cluster_cursor_manager.cpp).
 */
#include "router_util.h"

#define NDOCS 60

static mongoc_collection_t *
filled(mongoc_client_t *client, const char *db)
{
    bson_error_t error;
    rtest_shard(client, db, "q", "{\"p\": \"hashed\"}");
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "q");
    bson_t *docs[NDOCS];
    for (int k = 0; k < NDOCS; k++) {
        /* v in a shuffled order so no shard holds a sorted run by accident */
        docs[k] = BCON_NEW("_id", BCON_INT32(k), "p", BCON_INT32(k), "v", BCON_INT32((k * 37) % NDOCS));
    }
    cr_assert(mongoc_collection_insert_many(coll, (const bson_t **)docs, NDOCS, NULL, NULL, &error),
              "%s", error.message);
    for (int k = 0; k < NDOCS; k++) {
        bson_destroy(docs[k]);
    }
    return coll;
}

Test(router_reads, merged_sorted_find)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rreads");
    mongoc_collection_t *coll = filled(client, db);
    bson_t *filter = bson_new();
    bson_t *opts = BCON_NEW("sort", "{", "v", BCON_INT32(-1), "}", "skip", BCON_INT64(5), "limit",
                            BCON_INT64(30), "batchSize", BCON_INT32(7));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    int n = 0;
    int expect = NDOCS - 1 - 5;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        cr_assert(bson_iter_init_find(&it, doc, "v"));
        cr_assert_eq(bson_iter_int32(&it), expect, "document %d: v %d, expected %d", n,
                     bson_iter_int32(&it), expect);
        expect--;
        n++;
    }
    bson_error_t error;
    cr_assert(!mongoc_cursor_error(cur, &error), "%s", error.message);
    cr_assert_eq(n, 30);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mtest_db_drop(client, db);
    bson_free(db);
    mongoc_client_destroy(client);
}

Test(router_reads, count_sums_shards)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rreads");
    mongoc_collection_t *coll = filled(client, db);
    bson_t reply;
    bson_iter_t it;
    cr_assert(rtest_cmd(client, db, "{\"count\": \"q\"}", &reply, NULL));
    cr_assert(bson_iter_init_find(&it, &reply, "n"));
    cr_assert_eq(bson_iter_as_int64(&it), NDOCS);
    bson_destroy(&reply);
    cr_assert(rtest_cmd(client, db, "{\"count\": \"q\", \"query\": {\"v\": {\"$gte\": 10}}, "
                                    "\"skip\": 5, \"limit\": 20}", &reply, NULL));
    cr_assert(bson_iter_init_find(&it, &reply, "n"));
    cr_assert_eq(bson_iter_as_int64(&it), 20, "min(50 - 5, 20)");
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    mtest_db_drop(client, db);
    bson_free(db);
    mongoc_client_destroy(client);
}

static int64_t
cursor_id(const bson_t *reply, int *batch_len)
{
    bson_iter_t it, c, b;
    cr_assert(bson_iter_init_find(&it, reply, "cursor") && bson_iter_recurse(&it, &c));
    int64_t id = 0;
    *batch_len = 0;
    while (bson_iter_next(&c)) {
        if (!strcmp(bson_iter_key(&c), "id")) {
            id = bson_iter_as_int64(&c);
        } else if (!strcmp(bson_iter_key(&c), "firstBatch") || !strcmp(bson_iter_key(&c), "nextBatch")) {
            bson_iter_recurse(&c, &b);
            while (bson_iter_next(&b)) {
                (*batch_len)++;
            }
        }
    }
    return id;
}

Test(router_reads, get_more_and_kill_cursors)
{
    mongoc_client_t *client = rtest_client();
    char *db = mtest_db_name("rreads");
    mongoc_collection_t *coll = filled(client, db);
    bson_t reply;
    int len;
    cr_assert(rtest_cmd(client, db, "{\"find\": \"q\", \"batchSize\": 4}", &reply, NULL));
    int64_t id = cursor_id(&reply, &len);
    cr_assert_eq(len, 4);
    cr_assert_neq(id, 0, "more documents remain: the mongos keeps a cursor");
    bson_destroy(&reply);
    char *gm = bson_strdup_printf("{\"getMore\": {\"$numberLong\": \"%lld\"}, \"collection\": \"q\", "
                                  "\"batchSize\": 6}", (long long)id);
    cr_assert(rtest_cmd(client, db, gm, &reply, NULL));
    cr_assert_eq(cursor_id(&reply, &len), id, "getMore answers on the same mongos cursor id");
    cr_assert_eq(len, 6);
    bson_destroy(&reply);
    char *kc = bson_strdup_printf("{\"killCursors\": \"q\", \"cursors\": [{\"$numberLong\": \"%lld\"}]}",
                                  (long long)id);
    cr_assert(rtest_cmd(client, db, kc, &reply, NULL));
    bson_iter_t it, arr;
    cr_assert(bson_iter_init_find(&it, &reply, "cursorsKilled") && bson_iter_recurse(&it, &arr) &&
              bson_iter_next(&arr) && bson_iter_as_int64(&arr) == id);
    bson_destroy(&reply);
    bson_error_t error;
    cr_assert(!rtest_cmd(client, db, gm, &reply, &error), "a killed cursor is gone");
    cr_assert_eq(error.code, 43, "CursorNotFound, got %u: %s", error.code, error.message);
    bson_destroy(&reply);
    bson_free(gm);
    bson_free(kc);
    mongoc_collection_destroy(coll);
    mtest_db_drop(client, db);
    bson_free(db);
    mongoc_client_destroy(client);
}

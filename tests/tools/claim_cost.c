/*
 * mongoq-claim-cost URI [SMALL LARGE CLAIMS]: the cost of a claim (findAndModify on
 * {status: "ready", run_at: {$lte: now}} sorted by {priority: -1, run_at: 1} with a pipeline
 * update, served by the index {status: 1, priority: -1, run_at: 1}) on a collection of SMALL
 * documents (default 1000) and of LARGE documents (default 1000000). Prints the insert time, the
 * mean claim time of each and their ratio. Not a test: a measurement to run by hand, e.g.
 *
 *   build/core/tests/server/mongoq-test-server --port 0 &   # prints the URI
 *   build/core/tests/mongoq-claim-cost 'mongodb://127.0.0.1:PORT/?replicaSet=rs0'
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define BATCH 1000

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool
fill(mongoc_collection_t *coll, long n, bson_error_t *error)
{
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    bson_t **docs = bson_malloc(sizeof *docs * BATCH);
    bool ok = true;
    for (long done = 0; ok && done < n;) {
        int k = 0;
        for (; k < BATCH && done < n; k++, done++) {
            docs[k] = BCON_NEW("status", BCON_UTF8("ready"), "priority",
                               BCON_INT32((int32_t)(done % 10)), "run_at",
                               BCON_DATE_TIME(now_ms - 1000 - done % 100000), "payload", "{",
                               "n", BCON_INT64(done), "}");
        }
        ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, (size_t)k, NULL, NULL,
                                           error);
        for (int i = 0; i < k; i++) {
            bson_destroy(docs[i]);
        }
    }
    bson_free(docs);
    return ok;
}

static bool
claim(mongoc_collection_t *coll, bson_error_t *error)
{
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    bson_t *query = BCON_NEW("status", BCON_UTF8("ready"), "run_at", "{", "$lte",
                             BCON_DATE_TIME(now_ms), "}");
    bson_t *sort = BCON_NEW("priority", BCON_INT32(-1), "run_at", BCON_INT32(1));
    bson_t *update = BCON_NEW("0", "{", "$set", "{", "status", BCON_UTF8("processing"),
                              "claimed_at", BCON_UTF8("$$NOW"), "}", "}");
    bson_t reply;
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_sort(opts, sort);
    mongoc_find_and_modify_opts_set_update(opts, update);
    mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    bool ok = mongoc_collection_find_and_modify_with_opts(coll, query, opts, &reply, error);
    bson_iter_t it;
    if (ok && !(bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it))) {
        bson_set_error(error, 0, 0, "a claim found nothing");
        ok = false;
    }
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(opts);
    bson_destroy(query);
    bson_destroy(sort);
    bson_destroy(update);
    return ok;
}

/* Mean seconds per claim on a fresh collection of n documents. */
static double
measure(mongoc_client_t *client, long n, int claims)
{
    bson_error_t error;
    char dbname[64];
    snprintf(dbname, sizeof dbname, "claim_cost_%ld_%d", n, (int)getpid());
    mongoc_database_t *db = mongoc_client_get_database(client, dbname);
    mongoc_collection_t *coll = mongoc_database_get_collection(db, "jobs");
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8("jobs"), "indexes", "[", "{", "key", "{",
                           "status", BCON_INT32(1), "priority", BCON_INT32(-1), "run_at",
                           BCON_INT32(1), "}", "name", BCON_UTF8("claim"), "}", "]");
    bool created = mongoc_database_write_command_with_opts(db, cmd, NULL, NULL, &error);
    bson_destroy(cmd);
    if (!created) {
        fprintf(stderr, "createIndexes: %s\n", error.message);
        exit(1);
    }
    double t0 = now_s();
    if (!fill(coll, n, &error)) {
        fprintf(stderr, "insert: %s\n", error.message);
        exit(1);
    }
    double t1 = now_s();
    for (int i = 0; i < claims; i++) {
        if (!claim(coll, &error)) {
            fprintf(stderr, "claim: %s\n", error.message);
            exit(1);
        }
    }
    double t2 = now_s();
    printf("%8ld documents: insert %.2f s (%.0f docs/s), %d claims %.3f s, %.1f us/claim\n", n,
           t1 - t0, (double)n / (t1 - t0), claims, t2 - t1, (t2 - t1) / claims * 1e6);
    mongoc_database_drop(db, NULL);
    mongoc_collection_destroy(coll);
    mongoc_database_destroy(db);
    return (t2 - t1) / claims;
}

int
main(int argc, char **argv)
{
    if (argc != 2 && argc != 5) {
        fprintf(stderr, "usage: %s URI [SMALL LARGE CLAIMS]\n", argv[0]);
        return 2;
    }
    long small = argc == 5 ? atol(argv[2]) : 1000;
    long large = argc == 5 ? atol(argv[3]) : 1000000;
    int claims = argc == 5 ? atoi(argv[4]) : 1000;
    if (small < claims || large < claims || claims <= 0) {
        fprintf(stderr, "each collection needs at least CLAIMS documents\n");
        return 2;
    }
    mongoc_init();
    mongoc_client_t *client = mongoc_client_new(argv[1]);
    if (!client) {
        fprintf(stderr, "bad URI\n");
        return 2;
    }
    double a = measure(client, small, claims);
    double b = measure(client, large, claims);
    printf("ratio large/small: %.2f\n", b / a);
    mongoc_client_destroy(client);
    mongoc_cleanup();
    return 0;
}

/* mongoq-bench's baselines: the work mongoq does, written with plain libmongoc calls. */

#include "bench.h"

/* ---- raw libmongoc baselines -------------------------------------------------------------- */

/* The document mongoq writes, built by hand: the fair baseline for an insert. */
void
bench_raw_message(bson_t *doc, const bson_t *payload)
{
    int64_t now = (int64_t)time(NULL) * 1000;
    bson_oid_t oid;
    bson_oid_init(&oid, NULL);
    bson_init(doc);
    BSON_APPEND_OID(doc, "_id", &oid);
    BSON_APPEND_DOCUMENT(doc, "payload", payload);
    BSON_APPEND_UTF8(doc, "status", "ready");
    BSON_APPEND_INT32(doc, "priority", 0);
    BSON_APPEND_DATE_TIME(doc, "run_at", now);
    BSON_APPEND_INT32(doc, "attempts", 0);
    BSON_APPEND_INT32(doc, "max_attempts", 5);
    BSON_APPEND_DATE_TIME(doc, "enqueued_at", now);
    BSON_APPEND_DATE_TIME(doc, "updated_at", now);
}

mongoc_write_concern_t *
bench_majority_journaled(void)
{
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_wmajority(wc, 0);
    mongoc_write_concern_set_journal(wc, true);
    return wc;
}

void
bench_raw_insert(mongoc_collection_t *coll, int64_t n, size_t size, int batch)
{
    bson_t opts = BSON_INITIALIZER;
    mongoc_write_concern_t *wc = bench_majority_journaled();
    mongoc_write_concern_append(wc, &opts);
    bson_t docs[100];
    const bson_t *ptrs[100];
    bson_error_t error;
    for (int64_t done = 0; done < n; done += batch) {
        for (int i = 0; i < batch; i++) {
            bson_t payload;
            bench_make_payload(&payload, done + i, size);
            bench_raw_message(&docs[i], &payload);
            bson_destroy(&payload);
            ptrs[i] = &docs[i];
        }
        bool ok = batch == 1
                      ? mongoc_collection_insert_one(coll, &docs[0], &opts, NULL, &error)
                      : mongoc_collection_insert_many(coll, ptrs, (size_t)batch, &opts, NULL,
                                                      &error);
        if (!ok) {
            bench_die("raw insert", &error);
        }
        for (int i = 0; i < batch; i++) {
            bson_destroy(&docs[i]);
        }
    }
    mongoc_write_concern_destroy(wc);
    bson_destroy(&opts);
}

/* The naive loop: findAndModify with a plain $set on the client's clock (the same filter fields,
 * sort and index as mongoq, no fencing token, no $$NOW), then delete_one by _id. */
bool
bench_raw_claim_ack(mongoc_collection_t *coll, const mongoc_write_concern_t *wc)
{
    bson_error_t error;
    bson_t reply;
    bson_t *query = BCON_NEW("status", "ready", "run_at", "{", "$lte",
                             BCON_DATE_TIME((int64_t)time(NULL) * 1000 + 1000), "}");
    bson_t *sort = BCON_NEW("priority", BCON_INT32(-1), "run_at", BCON_INT32(1), "_id",
                            BCON_INT32(1));
    bson_t *update = BCON_NEW("$set", "{", "status", "processing", "lease_expires_at",
                              BCON_DATE_TIME((int64_t)time(NULL) * 1000 + 30000), "}", "$inc",
                              "{", "attempts", BCON_INT32(1), "}");
    mongoc_find_and_modify_opts_t *opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_sort(opts, sort);
    mongoc_find_and_modify_opts_set_update(opts, update);
    mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    bson_t extra = BSON_INITIALIZER;
    mongoc_write_concern_append((mongoc_write_concern_t *)wc, &extra);
    mongoc_find_and_modify_opts_append(opts, &extra);
    bool got = false;
    if (!mongoc_collection_find_and_modify_with_opts(coll, query, opts, &reply, &error)) {
        bench_die("raw findAndModify", &error);
    }
    bson_iter_t it, id;
    if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &id) && bson_iter_find(&id, "_id")) {
        bson_t filter = BSON_INITIALIZER;
        BSON_APPEND_VALUE(&filter, "_id", bson_iter_value(&id));
        if (!mongoc_collection_delete_one(coll, &filter, &extra, NULL, &error)) {
            bench_die("raw delete", &error);
        }
        bson_destroy(&filter);
        got = true;
    }
    bson_destroy(&extra);
    bson_destroy(&reply);
    mongoc_find_and_modify_opts_destroy(opts);
    bson_destroy(query);
    bson_destroy(sort);
    bson_destroy(update);
    return got;
}

/*
 * Enqueueing. The documents are built on the client (document.c) with times from the server
 * clock estimate (clock.c): an insert cannot evaluate $$NOW. The claim checks run_at against
 * $$NOW on the server, so an estimate that runs early can delay a message by the estimate's
 * error at most, never release it early.
 */
#include <string.h>

#include "document-private.h"
#include "fields.h"
#include "mongoq/error.h"
#include "mongoq/producer.h"
#include "queue-private.h"

/* A bounded number of insert attempts when the dedup holder finishes between insert and look-up. */
#define DEDUP_TRIES 3

#define DUPLICATE_KEY 11000

/* After a successful enqueue: wake local consumers now, or when the message becomes due. */
static void
wake_for(mongoq_queue_t *queue, int64_t run_at, int64_t now)
{
    if (run_at > now) {
        mongoq__waker_schedule(queue->waker, run_at);
    } else {
        mongoq__waker_notify(queue->waker);
    }
}

/*
 * The collection to write to. With a session, the session's client (libmongoc refuses a session
 * on another client); otherwise one popped from the pool (*client_out, to push back).
 */
static mongoc_collection_t *
collection_for(mongoq_queue_t *queue, mongoc_client_session_t *session,
               mongoc_client_t **client_out)
{
    if (session) {
        *client_out = NULL;
        return mongoc_client_get_collection(mongoc_client_session_get_client(session), queue->db,
                                            queue->name);
    }
    return mongoq__queue_collection(queue, client_out);
}

/* Insert options: the session, and the write concern unless inside a transaction (not allowed). */
static bool
insert_opts(mongoq_queue_t *queue, mongoc_client_session_t *session, bson_t *opts,
            bson_error_t *error)
{
    if (session && !mongoc_client_session_append(session, opts, error)) {
        return false;
    }
    if (!session || !mongoc_client_session_in_transaction(session)) {
        mongoq__queue_append_write_concern(queue, opts);
    }
    return true;
}

/* The _id of the unfinished message holding key; false with *found = false when none does. */
static bool
find_holder(mongoq_queue_t *queue, const char *key, bson_oid_t *id, bool *found,
            bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, proj;
    const bson_t *doc;
    bson_iter_t it;
    *found = false;
    BSON_APPEND_UTF8(&filter, MONGOQ__F_DEDUP_KEY, key);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, MONGOQ__F_ID, 1);
    bson_append_document_end(&opts, &proj);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    if (mongoc_cursor_next(cursor, &doc) && bson_iter_init_find(&it, doc, MONGOQ__F_ID) &&
        BSON_ITER_HOLDS_OID(&it)) {
        bson_oid_copy(bson_iter_oid(&it), id);
        *found = true;
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

static bool
insert_one(mongoq_queue_t *queue, const bson_t *doc, mongoc_client_session_t *session,
           bson_error_t *error)
{
    bson_t opts = BSON_INITIALIZER;
    mongoc_client_t *client;
    mongoc_collection_t *coll = collection_for(queue, session, &client);
    bool ok = insert_opts(queue, session, &opts, error) &&
              mongoc_collection_insert_one(coll, doc, &opts, NULL, error);
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    return ok;
}

/*
 * Inserts doc. When an unfinished message holds the dedup_key, fails with DUPLICATE, sets
 * *duplicate and fills *holder.
 */
static bool
insert_dedup(mongoq_queue_t *queue, const bson_t *doc, const mongoq_enqueue_opts_t *opts,
             bson_oid_t *holder, bool *duplicate, bson_error_t *error)
{
    bson_error_t err;
    *duplicate = false;
    for (int i = 0; i < DEDUP_TRIES; i++) {
        if (insert_one(queue, doc, opts ? opts->session : NULL, &err)) {
            return true;
        }
        if (err.code != DUPLICATE_KEY || !opts || !opts->dedup_key) {
            break;
        }
        bool found = false;
        if (!find_holder(queue, opts->dedup_key, holder, &found, error)) {
            return false;
        }
        if (found) {
            *duplicate = true;
            bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_DUPLICATE,
                           "an unfinished message already holds dedup_key \"%s\"", opts->dedup_key);
            return false;
        }
        /* The holder finished between our insert and the look-up: the key is free now. */
    }
    if (error) {
        *error = err;
    }
    return false;
}

bool
mongoq_enqueue(mongoq_queue_t *queue, const bson_t *payload, const mongoq_enqueue_opts_t *opts,
               bson_oid_t *id_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    bson_t doc;
    bson_oid_t id, holder;
    bool duplicate = false;
    if (!mongoq__enqueue_opts_check(opts, false, error)) {
        return false;
    }
    int64_t now = mongoq__clock_server_now_ms(queue->clock);
    bson_oid_init(&id, NULL);
    bool ok =
        mongoq__document_build(payload, opts, queue->opts.max_attempts, now, &id, &doc, error) &&
        insert_dedup(queue, &doc, opts, &holder, &duplicate, error);
    bson_destroy(&doc);
    if (ok) {
        mongoq__counter_add(&queue->counters.enqueued, 1);
        wake_for(queue, mongoq__document_run_at(opts, now), now);
    }
    if (id_out && (ok || duplicate)) {
        bson_oid_copy(ok ? &id : &holder, id_out);
    }
    return ok;
}

/* Builds all n documents first, so that nothing is written when one is invalid. */
static bool
build_all(mongoq_queue_t *queue, const bson_t *const *payloads, size_t n,
          const mongoq_enqueue_opts_t *opts, int64_t now, bson_t *docs, bson_oid_t *ids,
          bson_error_t *error)
{
    for (size_t i = 0; i < n; i++) {
        bson_oid_init(&ids[i], NULL);
        if (!mongoq__document_build(payloads[i], opts, queue->opts.max_attempts, now, &ids[i],
                                    &docs[i], error)) {
            for (size_t j = 0; j <= i; j++) {
                bson_destroy(&docs[j]);
            }
            char msg[sizeof error->message];
            if (error) {
                bson_snprintf(msg, sizeof msg, "enqueue_many: message %zu: %s", i, error->message);
                bson_strncpy(error->message, msg, sizeof error->message);
            }
            return false;
        }
    }
    return true;
}

/* Says how many went in before a failing ordered insert; domain and code stay the driver's. */
static void
note_partial(bson_error_t *error, const bson_t *reply, size_t n)
{
    int64_t inserted = mongoq__reply_count(reply, "insertedCount");
    if (error) {
        char msg[sizeof error->message];
        bson_snprintf(msg, sizeof msg, "enqueue_many: %" PRId64 " of %zu enqueued, then: %s",
                      inserted, n, error->message);
        bson_strncpy(error->message, msg, sizeof error->message);
    }
}

static bool
insert_all(mongoq_queue_t *queue, const bson_t **docs, size_t n, mongoc_client_session_t *session,
           int64_t *inserted, bson_error_t *error)
{
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    mongoc_client_t *client;
    mongoc_collection_t *coll = collection_for(queue, session, &client);
    bool ok = insert_opts(queue, session, &opts, error);
    if (ok) {
        bson_destroy(&reply);
        ok = mongoc_collection_insert_many(coll, docs, n, &opts, &reply, error);
        if (!ok) {
            note_partial(error, &reply, n);
        }
    }
    *inserted = mongoq__reply_count(&reply, "insertedCount");
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&reply);
    bson_destroy(&opts);
    return ok;
}

bool
mongoq_enqueue_many(mongoq_queue_t *queue, const bson_t *const *payloads, size_t n,
                    const mongoq_enqueue_opts_t *opts, bson_oid_t *ids_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    if (n == 0) {
        return true;
    }
    if (!payloads) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "enqueue_many: payloads is NULL");
        return false;
    }
    if (!mongoq__enqueue_opts_check(opts, true, error)) {
        return false;
    }
    int64_t now = mongoq__clock_server_now_ms(queue->clock);
    int64_t inserted = 0;
    /* bson_t asks for 128-byte alignment, which plain bson_malloc does not give. */
    bson_t *docs = bson_aligned_alloc(BSON_ALIGNOF(bson_t), n * sizeof *docs);
    const bson_t **ptrs = bson_malloc(n * sizeof *ptrs);
    bson_oid_t *ids = ids_out ? ids_out : bson_malloc(n * sizeof *ids);
    bool built = build_all(queue, payloads, n, opts, now, docs, ids, error);
    bool ok = false;
    if (built) {
        for (size_t i = 0; i < n; i++) {
            ptrs[i] = &docs[i];
        }
        ok = insert_all(queue, ptrs, n, opts ? opts->session : NULL, &inserted, error);
        for (size_t i = 0; i < n; i++) {
            bson_destroy(&docs[i]);
        }
    }
    if (inserted > 0) {
        mongoq__counter_add(&queue->counters.enqueued, inserted);
        wake_for(queue, mongoq__document_run_at(opts, now), now);
    }
    if (ids != ids_out) {
        bson_free(ids);
    }
    bson_free(ptrs);
    bson_free(docs);
    return ok;
}

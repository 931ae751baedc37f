/*
 * Enqueueing. The documents are built on the client (document.c) with times from the server
 * clock estimate (clock.c): an insert cannot evaluate $$NOW. The claim checks run_at against
 * $$NOW on the server, so an estimate that runs early can delay a message by the estimate's
 * error at most, never release it early.
 *
 * Duplicate keys (11000) mean one of two things, told apart by the index the server names:
 *  - the dedup index: an unfinished message holds the dedup_key (MONGOQ_ERROR_DUPLICATE);
 *  - the _id index, with caller-chosen ids: this message was stored before (a retry after an
 *    unknown outcome), which counts as queued.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "document-private.h"
#include "error-private.h"
#include "fields.h"
#include "group-private.h"
#include "hooks-private.h"
#include "mongoq/limits.h"
#include "mongoq/producer.h"
#include "partition-private.h"
#include "queue-private.h"
#include "struct_init-private.h"
#include "producer-private.h"

/* A bounded number of insert attempts when the dedup holder finishes between insert and look-up. */
#define DEDUP_TRIES 3

/* Options with every field of the current version; a version 1 caller's struct is shorter. */
void
mongoq__enqueue_normalize_opts(const mongoq_enqueue_opts_t *opts, mongoq_enqueue_opts_t *out)
{
    mongoq_enqueue_opts_t defaults = MONGOQ_ENQUEUE_OPTS_INIT;
    *out = defaults;
    if (opts && opts->version > 0 && opts->version <= MONGOQ_ENQUEUE_OPTS_VERSION) {
        memcpy(out, opts, mongoq__enqueue_opts_size(opts->version));
    }
}

/* After a successful enqueue: wake local consumers of partition (MONGOQ__ALL_PARTITIONS:
 * every one) now, or when the message becomes due. */
void
mongoq__enqueue_wake_for(mongoq_queue_t *queue, int64_t run_at, int64_t now, int32_t partition)
{
    if (run_at > now) {
        mongoq__waker_schedule_partition(queue->waker, run_at, partition);
    } else {
        mongoq__waker_notify_partition(queue->waker, partition);
    }
}

static bool
in_transaction(mongoc_client_session_t *session)
{
    return session && mongoc_client_session_in_transaction(session);
}

/*
 * The collection to use. With a session, the session's client (libmongoc refuses a session on
 * another client); otherwise one taken from the pool (*client_out, to push back).
 */
mongoc_collection_t *
mongoq__enqueue_collection(mongoq_queue_t *queue, mongoc_client_session_t *session,
                           mongoc_client_t **client_out, bson_error_t *error)
{
    if (session) {
        *client_out = NULL;
        return mongoc_client_get_collection(mongoc_client_session_get_client(session), queue->db,
                                            queue->name);
    }
    return mongoq__queue_checkout(queue, client_out, error);
}

/* Command options: the session, and the write concern unless inside a transaction. */
bool
mongoq__enqueue_command_opts(mongoq_queue_t *queue, mongoc_client_session_t *session, bool write,
                             bson_t *opts, bson_error_t *error)
{
    if (session && !mongoc_client_session_append(session, opts, error)) {
        return false;
    }
    if (write && !in_transaction(session)) {
        mongoq__queue_append_write_concern(queue, opts);
    }
    return true;
}

/* The first document of find(filter, limit 1) in the session (may be NULL), copied to *doc_out. */
static bool
find_one(mongoq_queue_t *queue, mongoc_client_session_t *session, const bson_t *filter,
         bson_t **doc_out, bson_error_t *error)
{
    bson_t opts = BSON_INITIALIZER;
    const bson_t *doc;
    mongoc_client_t *client;
    bool ok = false;
    *doc_out = NULL;
    mongoc_collection_t *coll = mongoq__enqueue_collection(queue, session, &client, error);
    if (coll && mongoq__enqueue_command_opts(queue, session, false, &opts, error)) {
        BSON_APPEND_INT64(&opts, "limit", 1);
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, &opts, NULL);
        if (mongoc_cursor_next(cursor, &doc)) {
            *doc_out = bson_copy(doc);
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    return ok;
}

/* The _id of the unfinished message holding key, looked up in the session (may be NULL). */
static bool
find_holder(mongoq_queue_t *queue, mongoc_client_session_t *session, const char *key,
            bson_oid_t *id, bool *found, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, *doc = NULL;
    bson_iter_t it;
    /* The key's partition: the dedup index {partition, dedup_key} answers with one seek. */
    mongoq__partition_append(&filter, queue->opts.partitions,
                             mongoq__partition_of(queue->opts.partitions, NULL, key));
    BSON_APPEND_UTF8(&filter, MONGOQ__F_DEDUP_KEY, key);
    bool ok = find_one(queue, session, &filter, &doc, error);
    *found = doc && bson_iter_init_find(&it, doc, MONGOQ__F_ID) && BSON_ITER_HOLDS_OID(&it);
    if (*found) {
        bson_oid_copy(bson_iter_oid(&it), id);
    }
    bson_destroy(doc);
    bson_destroy(&filter);
    return ok;
}

/* Whether a duplicate-key write error names the _id index (keyPattern, or the message). */
bool
mongoq__enqueue_duplicate_on_id(const bson_t *write_error)
{
    bson_iter_t it, key;
    if (bson_iter_init_find(&it, write_error, "keyPattern") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &key) && bson_iter_next(&key)) {
        return strcmp(bson_iter_key(&key), MONGOQ__F_ID) == 0 && !bson_iter_next(&key);
    }
    return bson_iter_init_find(&it, write_error, "errmsg") && BSON_ITER_HOLDS_UTF8(&it) &&
           strstr(bson_iter_utf8(&it, NULL), "index: _id_ ") != NULL;
}

/* After an insert: the reply goes to opts->reply when the caller asked; everything is released. */
void
mongoq__enqueue_end_insert(mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts,
                           mongoc_client_t *client, mongoc_collection_t *coll, bson_t *reply,
                           bson_t *cmd_opts)
{
    if (opts->reply) {
        bson_destroy(opts->reply);
        bson_copy_to(reply, opts->reply);
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(reply);
    bson_destroy(cmd_opts);
}

/* ---- one message ------------------------------------------------------------------------- */

typedef enum {
    INSERTED,
    DUP_ID,  /* the _id is taken */
    DUP_KEY, /* the dedup_key (or another unique index) is taken */
    FAILED
} insert_result_t;

/* Classifies a failed insert's reply (its first writeError). */
static insert_result_t
failed_insert(const bson_t *reply, const bson_error_t *error)
{
    bson_iter_t it, errs, first;
    if (!mongoq__error_is_server(error, MONGOQ__DUPLICATE_KEY)) {
        return FAILED;
    }
    if (bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &errs) && bson_iter_next(&errs) && BSON_ITER_HOLDS_DOCUMENT(&errs) &&
        bson_iter_recurse(&errs, &first)) {
        uint32_t len;
        const uint8_t *data;
        bson_t write_error;
        bson_iter_document(&errs, &len, &data);
        if (bson_init_static(&write_error, data, len) &&
            mongoq__enqueue_duplicate_on_id(&write_error)) {
            return DUP_ID;
        }
    }
    return DUP_KEY;
}

/* One insert_one; its reply goes to opts->reply when the caller asked for it. */
static insert_result_t
insert_one(mongoq_queue_t *queue, const bson_t *doc, const mongoq_enqueue_opts_t *opts,
           bson_error_t *error)
{
    bson_t cmd_opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    mongoc_client_t *client;
    insert_result_t result = FAILED;
    mongoc_collection_t *coll = mongoq__enqueue_collection(queue, opts->session, &client, error);
    if (coll && mongoq__enqueue_command_opts(queue, opts->session, true, &cmd_opts, error)) {
        bson_destroy(&reply);
        result = mongoc_collection_insert_one(coll, doc, &cmd_opts, &reply, error)
                     ? INSERTED
                     : failed_insert(&reply, error);
        if (result == FAILED) {
            mongoq__error_classify_write("enqueue", &reply, error);
        }
    }
    mongoq__enqueue_end_insert(queue, opts, client, coll, &reply, &cmd_opts);
    return result;
}

/* Whether the message stored under _id `id` is this one (same payload), or gone since. */
bool
mongoq__enqueue_same_message_stored(mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts,
                                    const bson_oid_t *id, const bson_t *doc, bool *same,
                                    bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, *stored = NULL;
    bson_iter_t a, b;
    BSON_APPEND_OID(&filter, MONGOQ__F_ID, id);
    bool ok = find_one(queue, opts->session, &filter, &stored, error);
    /* Gone: it was stored (the server just said so) and has been finished since. */
    *same =
        ok &&
        (!stored ||
         (bson_iter_init_find(&a, stored, MONGOQ__F_PAYLOAD) &&
          bson_iter_init_find(&b, doc, MONGOQ__F_PAYLOAD) &&
          bson_iter_value(&a)->value_type == bson_iter_value(&b)->value_type &&
          bson_iter_value(&a)->value.v_doc.data_len == bson_iter_value(&b)->value.v_doc.data_len &&
          memcmp(bson_iter_value(&a)->value.v_doc.data, bson_iter_value(&b)->value.v_doc.data,
                 bson_iter_value(&a)->value.v_doc.data_len) == 0));
    bson_destroy(stored);
    bson_destroy(&filter);
    return ok;
}

static bool
duplicate_error(const mongoq_enqueue_opts_t *opts, bool aborted, bson_error_t *error)
{
    mongoq__error_set(error, MONGOQ_ERROR_DUPLICATE,
                      "an unfinished message already holds dedup_key \"%s\"%s", opts->dedup_key,
                      aborted ? "; the server aborted the transaction" : "");
    return false;
}

/* An insert that met the _id taken: "already queued" (*already) when it is this message. */
bool
mongoq__enqueue_settle_dup_id(mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts,
                              const bson_oid_t *id, const bson_t *doc, bool *already,
                              bson_error_t *error)
{
    char hex[25];
    bool same = false;
    if (in_transaction(opts->session)) {
        bson_oid_to_string(id, hex);
        mongoq__error_set(error, MONGOQ_ERROR_DUPLICATE,
                          "a message with _id %s is already stored; the server aborted the "
                          "transaction",
                          hex);
        return false;
    }
    if (!mongoq__enqueue_same_message_stored(queue, opts, id, doc, &same, error)) {
        return false;
    }
    if (!same) {
        bson_oid_to_string(id, hex);
        mongoq__error_set(error, MONGOQ_ERROR_DUPLICATE,
                          "another message (a different payload) already has _id %s", hex);
    }
    *already = same;
    return same;
}

/*
 * Inserts doc. A taken dedup_key fails with DUPLICATE and fills *holder (*duplicate set); a
 * taken _id (caller's ids) is settled by mongoq__enqueue_settle_dup_id (*already: it was this
 * message).
 */
static bool
insert_dedup(mongoq_queue_t *queue, const bson_t *doc, const mongoq_enqueue_opts_t *opts,
             const bson_oid_t *id, bson_oid_t *holder, bool *duplicate, bool *already,
             bson_error_t *error)
{
    bool txn = in_transaction(opts->session);
    *duplicate = *already = false;
    for (int i = 0; i < DEDUP_TRIES; i++) {
        bool found = false;
        /* In a transaction the unique index must never see a key the transaction can see:
         * mongod aborts the whole transaction on 11000. */
        if (opts->dedup_key && (txn || i > 0) &&
            !find_holder(queue, opts->session, opts->dedup_key, holder, &found, error)) {
            return false;
        }
        if (found) {
            *duplicate = true;
            return duplicate_error(opts, false, error);
        }
        insert_result_t r = insert_one(queue, doc, opts, error);
        if (r == INSERTED) {
            return true;
        }
        if (r == DUP_ID && opts->caller_ids) {
            return mongoq__enqueue_settle_dup_id(queue, opts, id, doc, already, error);
        }
        if (r != DUP_KEY || !opts->dedup_key) {
            return false;
        }
        if (txn) {
            return duplicate_error(opts, true, error);
        }
        /* Look the holder up next round; if it finished meanwhile the key is free again. */
    }
    return false;
}

bool
mongoq__enqueue_check_ids_given(const mongoq_enqueue_opts_t *opts, const void *ids,
                                bson_error_t *error)
{
    if (opts->caller_ids && !ids) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "enqueue opts: caller_ids needs the ids (id_out / ids_out)");
        return false;
    }
    return true;
}

bool
mongoq_enqueue(mongoq_queue_t *queue, const bson_t *payload, const mongoq_enqueue_opts_t *opts_in,
               bson_oid_t *id_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    mongoq_enqueue_opts_t opts;
    bson_t doc;
    bson_oid_t id, holder;
    bool duplicate = false, already = false;
    mongoq__enqueue_normalize_opts(opts_in, &opts);
    if (opts.reply) {
        bson_init(opts.reply); /* on every path, as libmongoc does with its replies */
    }
    if (!mongoq__enqueue_opts_check(opts_in, false, error)) {
        return false;
    }
    if (!mongoq__enqueue_check_ids_given(&opts, id_out, error) ||
        !mongoq__group_check_opts(queue, &opts, error)) {
        return false;
    }
    int64_t now = mongoq__clock_server_now_ms(queue->clock);
    if (opts.caller_ids) {
        bson_oid_copy(id_out, &id);
    } else {
        bson_oid_init(&id, NULL);
    }
    if (!mongoq__document_build(payload, &opts, queue->opts.max_attempts, now, &id, &doc, error)) {
        bson_destroy(&doc);
        return false;
    }
    int32_t partition;
    bool ok;
    if (opts.group) {
        size_t stored = 0;
        partition = mongoq__group_partition(queue, opts.group);
        ok = mongoq__group_enqueue(queue, &doc, 1, &opts, &stored, &duplicate, &holder, error);
    } else {
        partition = mongoq__partition_of(queue->opts.partitions, &id, opts.dedup_key);
        mongoq__partition_append(&doc, queue->opts.partitions, partition);
        ok = insert_dedup(queue, &doc, &opts, &id, &holder, &duplicate, &already, error);
    }
    bson_destroy(&doc);
    if (ok && !already) { /* "already queued" was counted and told by the call that stored it */
        mongoq__counter_add(&queue->counters.enqueued, 1);
        mongoq__enqueue_wake_for(queue, mongoq__document_run_at(&opts, now), now, partition);
        mongoq__hook_enqueued(queue, &id, now, mongoq__document_run_at(&opts, now));
    }
    if (id_out) {
        bson_oid_copy(duplicate ? &holder : &id, id_out);
    }
    return ok;
}

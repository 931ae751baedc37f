/*
 * Message groups in the queue-wide writes: the reaper's exhausted grouped leases, redriving
 * grouped dead messages, purging and recounting. These run only in queues with groups
 * (group_concurrency > 0); the queue-wide commands of a queue without groups are unchanged.
 * Each move of a message into or out of a place is a transaction with its group's document,
 * as in group.c; docs/design.md (Groups) has the argument.
 */
#include "group-private.h"

#include <string.h>

#include "error-private.h"
#include "fields.h"
#include "partition-private.h"
#include "service-private.h"

/* Grouped messages handled one transaction each per call of the reaper or redrive: a bound. */
#define BATCH 1000

static void
append_unset(bson_t *pipeline, const char *key, bool with_dedup)
{
    const char *const fields[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT,
                                  MONGOQ__F_GROUP_BLOCKING, MONGOQ__F_DEDUP_KEY};
    mongoq__document_append_unset(pipeline, key, fields, with_dedup ? 4 : 3);
}

/* {$expr: {$lt: ["$lease_expires_at", $$NOW less hold_ms]}} (reaper.c: why hold_ms) */
static void
append_expired(bson_t *filter, int64_t hold_ms)
{
    bson_t expr, args;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "$expr", &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, "$lt", &args);
    BSON_APPEND_UTF8(&args, "0", MONGOQ__P_LEASE_EXPIRES_AT);
    mongoq__document_append_now_less(&args, "1", hold_ms);
    bson_append_array_end(&expr, &args);
    bson_append_document_end(filter, &expr);
}

/* ---- reaping ------------------------------------------------------------------------------ */

/* The ids, tokens and groups of expired grouped leases with no attempt left (lease index). */
static bool
find_exhausted(mongoc_collection_t *coll, const mongoq_queue_t *queue, int64_t server_now,
               bson_t *found, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, range, exists, expr, and, c, a;
    const bson_t *doc;
    char key[16];
    const char *k;
    uint32_t i = 0;
    mongoq__partition_append_all(&filter, queue->opts.partitions);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_LEASE_EXPIRES_AT, &range);
    BSON_APPEND_DATE_TIME(&range, "$lt", server_now + MONGOQ__CLOCK_SLACK_MS);
    bson_append_document_end(&filter, &range);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_GROUP, &exists);
    BSON_APPEND_BOOL(&exists, "$exists", true);
    bson_append_document_end(&filter, &exists);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "$expr", &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, "$and", &and);
    BSON_APPEND_DOCUMENT_BEGIN(&and, "0", &c);
    BSON_APPEND_ARRAY_BEGIN(&c, "$lt", &a);
    BSON_APPEND_UTF8(&a, "0", MONGOQ__P_LEASE_EXPIRES_AT);
    mongoq__document_append_now_less(&a, "1", mongoq__clock_spread_ms(queue->clock));
    bson_append_array_end(&c, &a);
    bson_append_document_end(&and, &c);
    BSON_APPEND_DOCUMENT_BEGIN(&and, "1", &c);
    BSON_APPEND_ARRAY_BEGIN(&c, "$gte", &a);
    BSON_APPEND_UTF8(&a, "0", MONGOQ__P_ATTEMPTS);
    BSON_APPEND_UTF8(&a, "1", MONGOQ__P_MAX_ATTEMPTS);
    bson_append_array_end(&c, &a);
    bson_append_document_end(&and, &c);
    bson_append_array_end(&expr, &and);
    bson_append_document_end(&filter, &expr);
    const char *const proj[] = {MONGOQ__F_ID, MONGOQ__F_LEASE_TOKEN, MONGOQ__F_GROUP,
                                MONGOQ__F_PARTITION};
    mongoq__document_append_projection(&opts, proj, 4);
    BSON_APPEND_INT64(&opts, "limit", BATCH);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        bson_uint32_to_string(i++, &k, key, sizeof key);
        BSON_APPEND_DOCUMENT(found, k, doc);
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* dead, "lease expired", lease fields and dedup_key gone, group_blocking when blocking. */
static void
build_reaped_dead(bool blocking, bson_t *pipeline)
{
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    mongoq__document_append_reason(&set, MONGOQ__F_LAST_ERROR, MONGOQ__REASON_LEASE_EXPIRED);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    if (blocking) {
        BSON_APPEND_BOOL(&set, MONGOQ__F_GROUP_BLOCKING, true);
    }
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    const char *const fields[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT,
                                  MONGOQ__F_DEDUP_KEY};
    mongoq__document_append_unset(pipeline, "1", fields, 3);
}

/* One exhausted grouped lease to dead, fenced by its token and its expiry on $$NOW. */
static bool
reap_one(mongoq_queue_t *queue, mongoc_client_t *client, mongoc_collection_t *coll,
         const bson_t *doc, int64_t *n, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bson_iter_t it;
    const char *group = NULL;
    bool release = queue->opts.group_dead == MONGOQ_GROUP_DEAD_RELEASE, ok = true;
    int64_t matched = 0;
    if (bson_iter_init_find(&it, doc, MONGOQ__F_GROUP) && BSON_ITER_HOLDS_UTF8(&it)) {
        group = bson_iter_utf8(&it, NULL);
    }
    if (bson_iter_init_find(&it, doc, MONGOQ__F_PARTITION)) {
        bson_append_value(&filter, MONGOQ__F_PARTITION, -1, bson_iter_value(&it));
    }
    bson_iter_init_find(&it, doc, MONGOQ__F_ID);
    bson_append_value(&filter, MONGOQ__F_ID, -1, bson_iter_value(&it));
    if (bson_iter_init_find(&it, doc, MONGOQ__F_LEASE_TOKEN)) {
        bson_append_value(&filter, MONGOQ__F_LEASE_TOKEN, -1, bson_iter_value(&it));
    }
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    /* A heartbeat since the find keeps it alive. */
    append_expired(&filter, mongoq__clock_spread_ms(queue->clock));
    build_reaped_dead(!release || !group, &update);
    if (release && group) {
        ok = mongoq__group_finish(queue, client, group, &filter, &update, &matched, error);
    } else {
        bson_t opts = BSON_INITIALIZER, reply;
        mongoq__queue_append_write_concern(queue, &opts);
        ok = mongoc_collection_update_one(coll, &filter, &update, &opts, &reply, error);
        matched = ok ? mongoq__reply_count(&reply, "matchedCount") : 0;
        bson_destroy(&reply);
        bson_destroy(&opts);
    }
    *n += matched;
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

bool
mongoq__group_reap_exhausted(mongoq_queue_t *queue, mongoc_client_t *client, int64_t server_now,
                             int64_t *n, bson_error_t *error)
{
    bson_t found = BSON_INITIALIZER;
    bson_iter_t it;
    *n = 0;
    mongoc_collection_t *coll = mongoc_client_get_collection(client, queue->db, queue->name);
    bool ok = find_exhausted(coll, queue, server_now, &found, error);
    if (ok && bson_iter_init(&it, &found)) {
        while (ok && bson_iter_next(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_t doc;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&doc, data, len);
            ok = reap_one(queue, client, coll, &doc, n, error);
        }
    }
    int64_t swept = 0; /* emptied groups' documents: not counted as reaped messages */
    ok = ok && mongoq__group_rate_sweep(queue, client, &swept, error);
    mongoc_collection_destroy(coll);
    bson_destroy(&found);
    return ok;
}

/* ---- filling a group's places ------------------------------------------------------------- */

/*
 * Admits waiting messages while the group has free places (at most limit - active of them), and
 * writes the counts: active and waiting as given plus the admissions. seq is raised to at least
 * min_seq. Deletes the document of a group left with nothing.
 */
static bool
fill(mongoq__txn_t *txn, const char *group, int64_t active, int64_t waiting, int64_t min_seq,
     int64_t *promoted_out, bson_error_t *error)
{
    int64_t limit = txn->queue->opts.group_concurrency, promoted = 0, n = 0;
    int64_t free = limit - active < waiting ? limit - active : waiting;
    bool ok = true, more = true;
    bson_t *bucket = NULL;
    if (free > 0 && mongoq__group_rate_on(txn->queue)) {
        ok = mongoq__group_rate_take(txn, group, free, &bucket, error); /* a token each */
    }
    while (ok && more && promoted < free) {
        int64_t run_at = 0, due = mongoq__group_rate_due(txn->queue, bucket, promoted);
        ok = mongoq__group_promote_head(txn, group, due, &more, &run_at, error);
        promoted += ok && more;
    }
    bson_destroy(bucket);
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, max, lit;
    mongoq__group_doc_filter(txn->queue, group, &filter);
    if (ok && active + waiting == 0) {
        /* a bucket still refilling keeps the document (the reaper deletes it later) */
        bson_t last = BSON_INITIALIZER;
        bson_concat(&last, &filter);
        if (mongoq__group_rate_on(txn->queue)) {
            mongoq__group_rate_append_refilled(&last);
        }
        ok = mongoq__txn_write_one(txn, &last, NULL, &n, error);
        bson_destroy(&last);
    }
    if (ok && (active + waiting > 0 || n == 0)) {
        bson_t stage, args;
        BSON_APPEND_DOCUMENT_BEGIN(&update, "0", &stage);
        BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
        BSON_APPEND_INT64(&set, MONGOQ__F_G_ACTIVE, active + promoted);
        BSON_APPEND_INT64(&set, MONGOQ__F_G_WAITING, waiting - promoted);
        BSON_APPEND_INT64(&set, MONGOQ__F_G_LIMIT, limit);
        BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_G_NAME, &lit);
        BSON_APPEND_UTF8(&lit, "$literal", group);
        bson_append_document_end(&set, &lit);
        BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_G_SEQ, &max);
        BSON_APPEND_ARRAY_BEGIN(&max, "$max", &args);
        BSON_APPEND_UTF8(&args, "0", "$" MONGOQ__F_G_SEQ);
        BSON_APPEND_INT64(&args, "1", min_seq);
        bson_append_array_end(&max, &args);
        bson_append_document_end(&set, &max);
        BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
        bson_append_document_end(&stage, &set);
        bson_append_document_end(&update, &stage);
        bson_t opts = BSON_INITIALIZER, reply;
        BSON_APPEND_BOOL(&opts, "upsert", true);
        ok = mongoq__txn_opts(txn, &opts, error);
        if (ok) {
            ok = mongoc_collection_update_one(txn->coll, &filter, &update, &opts, &reply, error);
            if (!ok) {
                mongoq__txn_keep_reply(txn, &reply);
            }
            bson_destroy(&reply);
        }
        bson_destroy(&opts);
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    *promoted_out = promoted;
    return ok;
}

/* count in the transaction; -1 on error */
static int64_t
txn_count(mongoq__txn_t *txn, const char *group, const char *status, bool blocking,
          bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, reply;
    int64_t n = -1;
    mongoq__partition_append(&filter, txn->queue->opts.partitions,
                             mongoq__group_partition(txn->queue, group));
    BSON_APPEND_UTF8(&filter, MONGOQ__F_GROUP, group);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, status);
    if (blocking) {
        BSON_APPEND_BOOL(&filter, MONGOQ__F_GROUP_BLOCKING, true);
    }
    if (mongoq__txn_opts(txn, &opts, error)) {
        n = mongoc_collection_count_documents(txn->coll, &filter, &opts, NULL, &reply, error);
        if (n < 0) {
            mongoq__txn_keep_reply(txn, &reply);
        }
        bson_destroy(&reply);
    }
    bson_destroy(&opts);
    bson_destroy(&filter);
    return n;
}

/* The highest group_seq among the group's messages (0 when none). */
static bool
max_seq(mongoq__txn_t *txn, const char *group, int64_t *seq, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
    const bson_t *doc;
    *seq = 0;
    mongoq__partition_append(&filter, txn->queue->opts.partitions,
                             mongoq__group_partition(txn->queue, group));
    BSON_APPEND_UTF8(&filter, MONGOQ__F_GROUP, group);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, MONGOQ__F_GROUP_SEQ, -1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", 1);
    bool ok = mongoq__txn_opts(txn, &opts, error);
    if (ok) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(txn->coll, &filter, &opts, NULL);
        if (mongoc_cursor_next(cursor, &doc)) {
            *seq = mongoq__int_field(doc, MONGOQ__F_GROUP_SEQ);
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

static bool
recount_body(mongoq__txn_t *txn, void *arg, bson_error_t *error)
{
    const char *group = arg;
    int64_t ready = txn_count(txn, group, MONGOQ__S_READY, false, error);
    int64_t processing = ready < 0 ? -1 : txn_count(txn, group, MONGOQ__S_PROCESSING, false, error);
    int64_t blocking = processing < 0 ? -1 : txn_count(txn, group, MONGOQ__S_DEAD, true, error);
    int64_t waiting = blocking < 0 ? -1 : txn_count(txn, group, MONGOQ__S_WAITING, false, error);
    int64_t seq = 0, promoted = 0;
    return waiting >= 0 && max_seq(txn, group, &seq, error) &&
           fill(txn, group, ready + processing + blocking, waiting, seq, &promoted, error);
}

bool
mongoq__group_recount(mongoq_queue_t *queue, const char *group, bson_error_t *error)
{
    bool ok = mongoq__txn_run(queue, NULL, recount_body, (void *)group, error);
    if (ok) {
        mongoq__waker_notify_partition(queue->waker, mongoq__group_partition(queue, group));
    }
    return ok;
}

/* ---- redrive ------------------------------------------------------------------------------ */

/* A dead message back in line: ready (it kept its place: blocking) or waiting (it gave it up). */
static void
build_back(bool ready, bson_t *pipeline)
{
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, ready ? MONGOQ__S_READY : MONGOQ__S_WAITING);
    BSON_APPEND_INT32(&set, MONGOQ__F_ATTEMPTS, 0);
    BSON_APPEND_UTF8(&set, MONGOQ__F_RUN_AT, "$$NOW");
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    append_unset(pipeline, "1", false);
}

typedef struct {
    const bson_oid_t *id;
    const char *group;
    int64_t seq;
    int64_t moved;
} redrive_ctx_t;

static bool
redrive_body(mongoq__txn_t *txn, void *arg, bson_error_t *error)
{
    redrive_ctx_t *c = arg;
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, exists, *old = NULL;
    int64_t promoted = 0;
    c->moved = 0;
    mongoq__partition_append(&filter, txn->queue->opts.partitions,
                             mongoq__group_partition(txn->queue, c->group));
    BSON_APPEND_OID(&filter, MONGOQ__F_ID, c->id);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_GROUP_BLOCKING, &exists);
    BSON_APPEND_BOOL(&exists, "$exists", false);
    bson_append_document_end(&filter, &exists);
    build_back(false, &update);
    bool ok = mongoq__txn_write_one(txn, &filter, &update, &c->moved, error);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (!ok || c->moved == 0) {
        return ok;
    }
    /* Read the group as it is (in the transaction, which writes it below). */
    bson_t gfilter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *doc;
    mongoq__group_doc_filter(txn->queue, c->group, &gfilter);
    ok = mongoq__txn_opts(txn, &opts, error);
    if (ok) {
        mongoc_cursor_t *cursor =
            mongoc_collection_find_with_opts(txn->coll, &gfilter, &opts, NULL);
        if (mongoc_cursor_next(cursor, &doc)) {
            old = bson_copy(doc);
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
    bson_destroy(&opts);
    bson_destroy(&gfilter);
    ok = ok && fill(txn, c->group, mongoq__int_field(old, MONGOQ__F_G_ACTIVE),
                    mongoq__int_field(old, MONGOQ__F_G_WAITING) + 1, c->seq, &promoted, error);
    bson_destroy(old);
    return ok;
}

/* Reads the dead message id: its group, seq and whether it blocks (found false: not dead). */
static bool
read_dead(mongoq_queue_t *queue, const bson_oid_t *id, bool *found, char **group, int64_t *seq,
          bool *blocking, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *doc;
    bson_iter_t it;
    mongoc_client_t *client;
    bool ok = false;
    *found = false;
    *group = NULL;
    BSON_APPEND_OID(&filter, MONGOQ__F_ID, id);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (coll) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        if (mongoc_cursor_next(cursor, &doc)) {
            *found = true;
            if (bson_iter_init_find(&it, doc, MONGOQ__F_GROUP) && BSON_ITER_HOLDS_UTF8(&it)) {
                *group = bson_strdup(bson_iter_utf8(&it, NULL));
            }
            *seq = mongoq__int_field(doc, MONGOQ__F_GROUP_SEQ);
            *blocking = bson_iter_init_find(&it, doc, MONGOQ__F_GROUP_BLOCKING);
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

bool
mongoq__group_redrive_one(mongoq_queue_t *queue, const bson_oid_t *id, int64_t *moved,
                          bson_error_t *error)
{
    char *group = NULL;
    bool found = false, blocking = false, ok;
    int64_t seq = 0;
    *moved = 0;
    ok = read_dead(queue, id, &found, &group, &seq, &blocking, error);
    if (ok && found) {
        if (!group || blocking) {
            /* It holds its place (or has no group): back to ready, as an ungrouped one. */
            bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
            BSON_APPEND_OID(&filter, MONGOQ__F_ID, id);
            BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
            build_back(true, &update);
            ok = mongoq__queue_write_many(queue, "redrive", &filter, &update, moved, error);
            bson_destroy(&update);
            bson_destroy(&filter);
        } else {
            redrive_ctx_t c = {.id = id, .group = group, .seq = seq};
            ok = mongoq__txn_run(queue, NULL, redrive_body, &c, error);
            *moved = ok ? c.moved : 0;
        }
    }
    bson_free(group);
    return ok;
}

/* One batch of grouped dead messages redriven by id; *found: how many the read found. */
static bool
redrive_batch(mongoq_queue_t *queue, int64_t *moved, size_t *found, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, exists;
    const bson_t *doc;
    bson_iter_t it;
    mongoc_client_t *client;
    bson_oid_t ids[BATCH];
    size_t n = 0;
    *moved = 0;
    mongoq__partition_append_all(&filter, queue->opts.partitions);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_GROUP, &exists);
    BSON_APPEND_BOOL(&exists, "$exists", true);
    bson_append_document_end(&filter, &exists);
    const char *const proj[] = {MONGOQ__F_ID};
    mongoq__document_append_projection(&opts, proj, 1);
    BSON_APPEND_INT64(&opts, "limit", BATCH);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    bool ok = coll != NULL;
    if (ok) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        while (n < BATCH && mongoc_cursor_next(cursor, &doc)) {
            if (bson_iter_init_find(&it, doc, MONGOQ__F_ID) && BSON_ITER_HOLDS_OID(&it)) {
                bson_oid_copy(bson_iter_oid(&it), &ids[n++]);
            }
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
    mongoq__queue_release(queue, client, coll);
    for (size_t i = 0; ok && i < n; i++) {
        int64_t one = 0;
        ok = mongoq__group_redrive_one(queue, &ids[i], &one, error);
        *moved += one;
    }
    *found = n;
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

bool
mongoq__group_redrive_all(mongoq_queue_t *queue, int64_t *moved, bson_error_t *error)
{
    size_t found = BATCH;
    bool ok = true;
    *moved = 0;
    /* Batch after batch while full ones come and move something (bounded by what is dead). */
    for (int64_t round = 0, m = 1; ok && found == BATCH && m > 0; round++) {
        m = 0;
        ok = redrive_batch(queue, &m, &found, error);
        *moved += m;
    }
    return ok;
}

/*
 * A claimed message: accessors and what its claimer does with it.
 *
 * Lease fencing: every write here matches {_id, lease_token, status: "processing"}. A claim
 * writes a fresh lease_token, and reaping or redriving removes it, so a consumer whose lease
 * ended matches nothing and changes nothing: the write reports zero matches and the call fails
 * with LEASE_LOST. Because nobody else can change a message while the lease holds, the claimed
 * copy (attempts, errors) is authoritative for building the next state.
 */
#include "message-private.h"

#include <string.h>

#include "backoff-private.h"
#include "fields.h"
#include "mongoq/error.h"

/* ---- construction ------------------------------------------------------------------------- */

mongoq_message_t *
mongoq__message_new(mongoq_queue_t *queue, bson_t *doc, char *reason, size_t reason_len)
{
    /* Parsed in place: parsed.payload is a static bson_t, which must not be copied by value
     * (its buffer pointer points into the struct itself), and bson_t asks for 128-byte
     * alignment, which plain bson_malloc does not give. */
    mongoq_message_t *msg = BSON_ALIGNED_ALLOC0(mongoq_message_t);
    if (!mongoq__document_parse(doc, &msg->parsed, reason, reason_len)) {
        bson_free(msg);
        return NULL;
    }
    msg->queue = queue;
    msg->doc = doc;
    atomic_init(&msg->lease_lost, false);
    atomic_init(&msg->lease_expires_at, msg->parsed.lease_expires_at);
    return msg;
}

void
mongoq_message_destroy(mongoq_message_t *msg)
{
    if (!msg) {
        return;
    }
    bson_destroy(msg->doc);
    bson_free(msg->reason);
    bson_free(msg);
}

/* ---- accessors ---------------------------------------------------------------------------- */

const bson_oid_t *
mongoq_message_id(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return &msg->parsed.id;
}

const bson_t *
mongoq_message_payload(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return &msg->parsed.payload;
}

int32_t
mongoq_message_attempts(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.attempts;
}

int32_t
mongoq_message_max_attempts(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.max_attempts;
}

int32_t
mongoq_message_priority(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.priority;
}

int64_t
mongoq_message_enqueued_at(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.enqueued_at;
}

int64_t
mongoq_message_lease_expires_at(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return atomic_load(&((mongoq_message_t *)msg)->lease_expires_at);
}

const char *
mongoq_message_dedup_key(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.dedup_key;
}

bool
mongoq_message_lease_lost(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return atomic_load(&((mongoq_message_t *)msg)->lease_lost);
}

void
mongoq_message_set_reason(mongoq_message_t *msg, const char *reason)
{
    BSON_ASSERT_PARAM(msg);
    bson_free(msg->reason);
    msg->reason = reason ? bson_strdup(reason) : NULL;
}

const char *
mongoq__message_reason(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->reason;
}

const bson_oid_t *
mongoq__message_lease_token(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return &msg->parsed.lease_token;
}

void
mongoq__message_mark_lease_lost(mongoq_message_t *msg)
{
    if (!atomic_exchange(&msg->lease_lost, true)) {
        mongoq__counter_add(&msg->queue->counters.lease_lost, 1);
    }
}

/* ---- shared plumbing ---------------------------------------------------------------------- */

void
mongoq__message_held_filter(const mongoq_message_t *msg, bson_t *filter)
{
    BSON_APPEND_OID(filter, MONGOQ__F_ID, &msg->parsed.id);
    BSON_APPEND_OID(filter, MONGOQ__F_LEASE_TOKEN, &msg->parsed.lease_token);
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
}

static bool
lease_lost(mongoq_message_t *msg, bson_error_t *error)
{
    char id[25];
    bson_oid_to_string(&msg->parsed.id, id);
    mongoq__message_mark_lease_lost(msg);
    bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_LEASE_LOST,
                   "the lease on message %s was lost (expired, reclaimed, reaped or redriven)", id);
    return false;
}

/* Runs update_one(filter, pipeline) with the queue's write concern; *matched from the reply. */
static bool
update_one(mongoq_queue_t *queue, const bson_t *filter, const bson_t *pipeline, int64_t *matched,
           bson_error_t *error)
{
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    bson_t opts = BSON_INITIALIZER, reply;
    mongoq__queue_append_write_concern(queue, &opts);
    bool ok = mongoc_collection_update_one(coll, filter, pipeline, &opts, &reply, error);
    *matched = ok ? mongoq__reply_count(&reply, "matchedCount") : 0;
    bson_destroy(&reply);
    bson_destroy(&opts);
    mongoq__queue_release(queue, client, coll);
    return ok;
}

/* Appends {$unset: [fields...]} as pipeline stage `index`. */
static void
append_unset(bson_t *pipeline, const char *index, const char *const *fields, size_t n)
{
    bson_t stage, list;
    char key[16];
    const char *k;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, index, &stage);
    BSON_APPEND_ARRAY_BEGIN(&stage, "$unset", &list);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_UTF8(&list, k, fields[i]);
    }
    bson_append_array_end(&stage, &list);
    bson_append_document_end(pipeline, &stage);
}

/* Runs a fenced pipeline update on msg; LEASE_LOST when the lease is gone. */
static bool
update_held(mongoq_message_t *msg, const bson_t *pipeline, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER;
    int64_t matched = 0;
    mongoq__message_held_filter(msg, &filter);
    bool ok = update_one(msg->queue, &filter, pipeline, &matched, error);
    bson_destroy(&filter);
    if (ok && matched == 0) {
        return lease_lost(msg, error);
    }
    return ok;
}

/* ---- dead ---------------------------------------------------------------------------------- */

/* The pipeline that makes a message dead now with reason, its history extended. */
static void
build_dead(const bson_t *old_errors, const char *reason, bson_t *pipeline)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT,
                                        MONGOQ__F_DEDUP_KEY};
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    mongoq__document_append_reason(&set, MONGOQ__F_LAST_ERROR, reason);
    mongoq__document_append_errors(&set, old_errors, reason);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
}

static bool
make_dead(mongoq_message_t *msg, const char *reason, bson_error_t *error)
{
    bson_t pipeline = BSON_INITIALIZER;
    build_dead(msg->parsed.has_errors ? &msg->parsed.errors : NULL, reason, &pipeline);
    bool ok = update_held(msg, &pipeline, error);
    bson_destroy(&pipeline);
    if (ok) {
        mongoq__counter_add(&msg->queue->counters.failed, 1);
    }
    return ok;
}

bool
mongoq_message_fail(mongoq_message_t *msg, const char *reason, bson_error_t *error)
{
    BSON_ASSERT_PARAM(msg);
    return make_dead(msg, reason, error);
}

bool
mongoq__message_bury(mongoq_queue_t *queue, const bson_t *doc, const char *reason,
                     bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, pipeline = BSON_INITIALIZER;
    bson_iter_t it;
    int64_t matched = 0;
    /* _id may be of any type in a damaged document; match it as it is. */
    if (bson_iter_init_find(&it, doc, MONGOQ__F_ID)) {
        bson_append_value(&filter, MONGOQ__F_ID, -1, bson_iter_value(&it));
    }
    if (bson_iter_init_find(&it, doc, MONGOQ__F_LEASE_TOKEN)) {
        bson_append_value(&filter, MONGOQ__F_LEASE_TOKEN, -1, bson_iter_value(&it));
    }
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    build_dead(NULL, reason, &pipeline);
    bool ok = update_one(queue, &filter, &pipeline, &matched, error);
    if (ok && matched > 0) {
        mongoq__counter_add(&queue->counters.failed, matched);
    }
    bson_destroy(&pipeline);
    bson_destroy(&filter);
    return ok;
}

/* ---- retry --------------------------------------------------------------------------------- */

static void
build_retry(const mongoq_message_t *msg, int64_t delay_ms, const char *reason, bson_t *pipeline)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT};
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_READY);
    /* run_at on the server's clock: a client clock must not decide when a message is due. */
    mongoq__document_append_now_plus(&set, MONGOQ__F_RUN_AT, delay_ms);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    mongoq__document_append_reason(&set, MONGOQ__F_LAST_ERROR, reason);
    mongoq__document_append_errors(&set, msg->parsed.has_errors ? &msg->parsed.errors : NULL,
                                   reason);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
}

bool
mongoq_message_retry(mongoq_message_t *msg, int64_t delay_ms, const char *reason,
                     bson_error_t *error)
{
    BSON_ASSERT_PARAM(msg);
    const mongoq_queue_opts_t *o = &msg->queue->opts;
    if (msg->parsed.attempts >= msg->parsed.max_attempts) {
        return make_dead(msg, reason, error);
    }
    if (delay_ms < 0) {
        delay_ms = mongoq__backoff_ms(msg->parsed.attempts, o->backoff_base_ms, o->backoff_cap_ms,
                                      o->backoff_jitter, mongoq__random01());
    }
    bson_t pipeline = BSON_INITIALIZER;
    build_retry(msg, delay_ms, reason, &pipeline);
    bool ok = update_held(msg, &pipeline, error);
    bson_destroy(&pipeline);
    if (ok) {
        mongoq__counter_add(&msg->queue->counters.retried, 1);
        int64_t due = mongoq__clock_server_now_ms(msg->queue->clock) + delay_ms;
        if (delay_ms > 0) {
            mongoq__waker_schedule(msg->queue->waker, due);
        } else {
            mongoq__waker_notify(msg->queue->waker);
        }
    }
    return ok;
}

/* ---- release (worker stop) ------------------------------------------------------------------ */

bool
mongoq__message_release(mongoq_message_t *msg, bson_error_t *error)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT};
    BSON_ASSERT_PARAM(msg);
    bson_t pipeline = BSON_INITIALIZER, stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_READY);
    BSON_APPEND_INT32(&set, MONGOQ__F_ATTEMPTS, msg->parsed.attempts - 1);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(&pipeline, &stage);
    append_unset(&pipeline, "1", unset, sizeof unset / sizeof unset[0]);
    bool ok = update_held(msg, &pipeline, error);
    bson_destroy(&pipeline);
    if (ok) {
        mongoq__waker_notify(msg->queue->waker);
    }
    return ok;
}

/* ---- extend -------------------------------------------------------------------------------- */

void
mongoq__message_extend_update(int64_t lease_ms, bson_t *pipeline)
{
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    mongoq__document_append_now_plus(&set, MONGOQ__F_LEASE_EXPIRES_AT, lease_ms);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
}

/* Reads lease_expires_at from a findAndModify reply; false when nothing matched. */
static bool
extended_until(mongoc_find_and_modify_opts_t *fam, mongoc_collection_t *coll, const bson_t *filter,
               int64_t *until, bool *matched, bson_error_t *error)
{
    bson_t reply;
    bson_iter_t it, value;
    bool ok = mongoc_collection_find_and_modify_with_opts(coll, filter, fam, &reply, error);
    *matched = false;
    if (ok && bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &value) && bson_iter_find(&value, MONGOQ__F_LEASE_EXPIRES_AT) &&
        BSON_ITER_HOLDS_DATE_TIME(&value)) {
        *until = bson_iter_date_time(&value);
        *matched = true;
    }
    bson_destroy(&reply);
    return ok;
}

bool
mongoq_message_extend(mongoq_message_t *msg, int64_t lease_ms, bson_error_t *error)
{
    BSON_ASSERT_PARAM(msg);
    if (lease_ms <= 0) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "extend: lease_ms must be positive");
        return false;
    }
    mongoq_queue_t *queue = msg->queue;
    bson_t filter = BSON_INITIALIZER, pipeline = BSON_INITIALIZER, fields = BSON_INITIALIZER;
    bson_t extra = BSON_INITIALIZER;
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    mongoq__message_held_filter(msg, &filter);
    mongoq__message_extend_update(lease_ms, &pipeline);
    BSON_APPEND_INT32(&fields, MONGOQ__F_LEASE_EXPIRES_AT, 1);
    mongoc_find_and_modify_opts_set_update(fam, &pipeline);
    mongoc_find_and_modify_opts_set_fields(fam, &fields);
    mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    mongoq__queue_append_write_concern(queue, &extra);
    mongoc_find_and_modify_opts_append(fam, &extra);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    int64_t until = 0;
    bool matched = false;
    bool ok = extended_until(fam, coll, &filter, &until, &matched, error);
    mongoq__queue_release(queue, client, coll);
    mongoc_find_and_modify_opts_destroy(fam);
    bson_destroy(&extra);
    bson_destroy(&fields);
    bson_destroy(&pipeline);
    bson_destroy(&filter);
    if (ok && !matched) {
        return lease_lost(msg, error);
    }
    if (ok) {
        atomic_store(&msg->lease_expires_at, until);
    }
    return ok;
}

/* ---- ack ----------------------------------------------------------------------------------- */

/*
 * The update that acknowledges in MONGOQ_ACK_KEEP mode. lease_token becomes a token fresh for
 * this acknowledgement, which is how ack_many tells its own acks from messages finished by
 * someone else; dedup_key goes so that a new message may take the key.
 */
static void
build_done(const bson_oid_t *ack_token, bson_t *pipeline)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_EXPIRES_AT, MONGOQ__F_DEDUP_KEY};
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_DONE);
    BSON_APPEND_OID(&set, MONGOQ__F_LEASE_TOKEN, ack_token);
    BSON_APPEND_UTF8(&set, MONGOQ__F_DONE_AT, "$$NOW");
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
}

/* delete_many or update_many (KEEP) on filter; *n_out = how many were acknowledged. */
static bool
ack_matching(mongoq_queue_t *queue, const bson_t *filter, const bson_oid_t *ack_token,
             int64_t *n_out, bson_error_t *error)
{
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    bson_t opts = BSON_INITIALIZER, reply, pipeline = BSON_INITIALIZER;
    bool ok;
    mongoq__queue_append_write_concern(queue, &opts);
    if (queue->opts.ack_mode == MONGOQ_ACK_KEEP) {
        build_done(ack_token, &pipeline);
        ok = mongoc_collection_update_many(coll, filter, &pipeline, &opts, &reply, error);
        *n_out = ok ? mongoq__reply_count(&reply, "matchedCount") : 0;
    } else {
        ok = mongoc_collection_delete_many(coll, filter, &opts, &reply, error);
        *n_out = ok ? mongoq__reply_count(&reply, "deletedCount") : 0;
    }
    bson_destroy(&reply);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
    mongoq__queue_release(queue, client, coll);
    return ok;
}

bool
mongoq_message_ack(mongoq_message_t *msg, bson_error_t *error)
{
    BSON_ASSERT_PARAM(msg);
    bson_t filter = BSON_INITIALIZER;
    bson_oid_t ack_token;
    int64_t n = 0;
    bson_oid_init(&ack_token, NULL);
    mongoq__message_held_filter(msg, &filter);
    bool ok = ack_matching(msg->queue, &filter, &ack_token, &n, error);
    bson_destroy(&filter);
    if (ok && n == 0) {
        return lease_lost(msg, error);
    }
    if (ok) {
        mongoq__counter_add(&msg->queue->counters.acked, 1);
    }
    return ok;
}

/* {$or: [{_id, lease_token, status}, ...]} */
static void
build_or_filter(mongoq_message_t *const *msgs, size_t n, bson_t *filter)
{
    bson_t list, held;
    char key[16];
    const char *k;
    BSON_APPEND_ARRAY_BEGIN(filter, "$or", &list);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        bson_append_document_begin(&list, k, -1, &held);
        mongoq__message_held_filter(msgs[i], &held);
        bson_append_document_end(&list, &held);
    }
    bson_append_array_end(filter, &list);
}

/* Whether doc shows its message acknowledged by the call that used ack_token. */
static bool
acked_by_us(const bson_oid_t *ack_token, const bson_t *doc, mongoq_ack_mode_t mode)
{
    bson_iter_t it;
    if (mode != MONGOQ_ACK_KEEP) {
        return false; /* deleted ones are gone: a document still there was not acknowledged */
    }
    if (!bson_iter_init_find(&it, doc, MONGOQ__F_LEASE_TOKEN) || !BSON_ITER_HOLDS_OID(&it) ||
        !bson_oid_equal(bson_iter_oid(&it), ack_token)) {
        return false;
    }
    return bson_iter_init_find(&it, doc, MONGOQ__F_STATUS) && BSON_ITER_HOLDS_UTF8(&it) &&
           strcmp(bson_iter_utf8(&it, NULL), MONGOQ__S_DONE) == 0;
}

/* The index of the message doc is about, or n. */
static size_t
find_msg(mongoq_message_t *const *msgs, size_t n, const bson_t *doc)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, MONGOQ__F_ID) || !BSON_ITER_HOLDS_OID(&it)) {
        return n;
    }
    for (size_t i = 0; i < n; i++) {
        if (bson_oid_equal(&msgs[i]->parsed.id, bson_iter_oid(&it))) {
            return i;
        }
    }
    return n;
}

void
mongoq__message_ids_filter(mongoq_message_t *const *msgs, size_t n, bson_t *filter)
{
    bson_t ids, in;
    char key[16];
    const char *k;
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_ID, &ids);
    BSON_APPEND_ARRAY_BEGIN(&ids, "$in", &in);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_OID(&in, k, &msgs[i]->parsed.id);
    }
    bson_append_array_end(&ids, &in);
    bson_append_document_end(filter, &ids);
}

/*
 * After a shortfall: marks the messages whose documents show they were not acknowledged by
 * this call. In KEEP mode a message is ours when it is done with our ack token, so every other one
 * is lost, present or not. In DELETE mode a document still present was not ours to delete; a
 * lost message that someone else deleted meanwhile cannot be told from one this call deleted.
 */
static bool
mark_lost(mongoq_queue_t *queue, mongoq_message_t *const *msgs, size_t n,
          const bson_oid_t *ack_token, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER;
    const bson_t *doc;
    bool keep = queue->opts.ack_mode == MONGOQ_ACK_KEEP;
    bool *ours = bson_malloc(n * sizeof *ours);
    for (size_t i = 0; i < n; i++) {
        ours[i] = !keep; /* DELETE: presumed deleted by us unless still present */
    }
    mongoq__message_ids_filter(msgs, n, &filter);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        size_t i = find_msg(msgs, n, doc);
        if (i < n) {
            ours[i] = acked_by_us(ack_token, doc, queue->opts.ack_mode);
        }
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoq__queue_release(queue, client, coll);
    for (size_t i = 0; ok && i < n; i++) {
        if (!ours[i]) {
            mongoq__message_mark_lease_lost(msgs[i]);
        }
    }
    bson_free(ours);
    bson_destroy(&filter);
    return ok;
}

static bool
check_batch(mongoq_message_t *const *msgs, size_t n, bson_error_t *error)
{
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i] || msgs[i]->queue != msgs[0]->queue) {
            bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                           "ack_many: message %zu is NULL or from another queue", i);
            return false;
        }
    }
    return true;
}

bool
mongoq_message_ack_many(mongoq_message_t *const *msgs, size_t n, bson_error_t *error)
{
    if (n == 0) {
        return true;
    }
    BSON_ASSERT_PARAM(msgs);
    if (!check_batch(msgs, n, error)) {
        return false;
    }
    mongoq_queue_t *queue = msgs[0]->queue;
    bson_t filter = BSON_INITIALIZER;
    bson_oid_t ack_token;
    int64_t acked = 0;
    bson_oid_init(&ack_token, NULL);
    build_or_filter(msgs, n, &filter);
    bool ok = ack_matching(queue, &filter, &ack_token, &acked, error);
    bson_destroy(&filter);
    if (!ok) {
        return false;
    }
    mongoq__counter_add(&queue->counters.acked, acked);
    if ((size_t)acked == n) {
        return true;
    }
    if (!mark_lost(queue, msgs, n, &ack_token, error)) {
        return false;
    }
    bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_LEASE_LOST,
                   "ack_many: %zu of %zu leases were lost; the others were acknowledged",
                   n - (size_t)acked, n);
    return false;
}

/* ---- for the worker: batch writes on copies, counted retries -------------------------------- */

void
mongoq__message_held_ids_filter(const bson_oid_t *ids, size_t n, const bson_oid_t *token,
                                bson_t *filter)
{
    bson_t cond, in;
    char key[16];
    const char *k;
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_ID, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$in", &in);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_OID(&in, k, &ids[i]);
    }
    bson_append_array_end(&cond, &in);
    bson_append_document_end(filter, &cond);
    BSON_APPEND_OID(filter, MONGOQ__F_LEASE_TOKEN, token);
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
}

/*
 * mongoq__message_release's update for many messages at once: the attempt is given back on the
 * server (attempts - 1), which is the claimed copy's value minus one while the lease holds.
 */
void
mongoq__message_release_update(bson_t *pipeline)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT};
    bson_t stage, set, sub, args;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_READY);
    BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_ATTEMPTS, &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "$subtract", &args);
    BSON_APPEND_UTF8(&args, "0", MONGOQ__P_ATTEMPTS);
    BSON_APPEND_INT32(&args, "1", 1);
    bson_append_array_end(&sub, &args);
    bson_append_document_end(&set, &sub);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
}

bool
mongoq__message_retry_ex(mongoq_message_t *msg, int64_t delay_ms, const char *reason,
                         bool *buried_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(msg);
    BSON_ASSERT_PARAM(buried_out);
    /* The rule mongoq_message_retry applies: no attempt left means dead. */
    *buried_out = msg->parsed.attempts >= msg->parsed.max_attempts;
    return mongoq_message_retry(msg, delay_ms, reason, error);
}

void
mongoq__message_raise_lease_expires_at(mongoq_message_t *msg, int64_t at_least_ms)
{
    BSON_ASSERT_PARAM(msg);
    int_least64_t seen = atomic_load(&msg->lease_expires_at);
    while (seen < at_least_ms &&
           !atomic_compare_exchange_weak(&msg->lease_expires_at, &seen, at_least_ms)) {
    }
}

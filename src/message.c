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

#include <inttypes.h>
#include <string.h>

#include "backoff-private.h"
#include "error-private.h"
#include "fields.h"
#include "hooks-private.h"
#include "mongoq/error.h"
#include "mongoq/limits.h"
#include "partition-private.h"

/* ---- construction ------------------------------------------------------------------------- */

/* The wait (-1 unknown) into the histogram: the claim wrote updated_at = $$NOW, so both ends
 * are server times. */
static int64_t
observe_wait(mongoq_queue_t *queue, const bson_t *doc, int64_t run_at)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, MONGOQ__F_UPDATED_AT) && BSON_ITER_HOLDS_DATE_TIME(&it)) {
        int64_t waited = bson_iter_date_time(&it) - run_at;
        mongoq__histogram_observe(&queue->timings.wait, waited);
        return waited;
    }
    return -1;
}

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
    msg->waited_ms = observe_wait(queue, doc, msg->parsed.run_at);
    msg->claimed_mono_ms = mongoq__now_mono_ms();
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

const bson_oid_t *
mongoq_message_lease_token(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return &msg->parsed.lease_token;
}

const char *
mongoq_message_claimed_by(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.claimed_by;
}

const char *
mongoq_message_group(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.group;
}

int32_t
mongoq_message_partition(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    int32_t p = mongoq__partition_read(msg->doc);
    return p >= 0 ? p : 0;
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

void
mongoq__message_hook(mongoq_queue_t *queue, mongoq_event_kind_t kind, const mongoq_message_t *msg,
                     const char *reason)
{
    if (!queue->opts.hook) {
        return;
    }
    mongoq_event_t e = mongoq__hook_event(kind);
    e.id = &msg->parsed.id;
    e.attempt = msg->parsed.attempts;
    e.enqueued_at_ms = msg->parsed.enqueued_at;
    e.run_at_ms = msg->parsed.run_at;
    e.waited_ms = msg->waited_ms;
    if (kind != MONGOQ_EVENT_CLAIMED) {
        e.handled_ms = mongoq__now_mono_ms() - msg->claimed_mono_ms;
    }
    e.reason = reason;
    mongoq__hook_tell(queue, &e);
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
        mongoq__message_hook(msg->queue, MONGOQ_EVENT_LEASE_LOST, msg, NULL);
    }
}

/* ---- shared plumbing ---------------------------------------------------------------------- */

void
mongoq__message_held_filter(const mongoq_message_t *msg, bson_t *filter)
{
    /* In a partitioned queue the partition too: the shard key of a sharded one, which every
     * single-document write must name to reach one shard (partition-private.h). */
    mongoq__partition_append(filter, msg->queue->opts.partitions, mongoq__partition_read(msg->doc));
    BSON_APPEND_OID(filter, MONGOQ__F_ID, &msg->parsed.id);
    BSON_APPEND_OID(filter, MONGOQ__F_LEASE_TOKEN, &msg->parsed.lease_token);
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
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

bool
mongoq__message_lease_lost_error(mongoq_message_t *msg, bson_error_t *error)
{
    char id[25];
    bson_oid_to_string(&msg->parsed.id, id);
    mongoq__message_mark_lease_lost(msg);
    bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_LEASE_LOST,
                   "the lease on message %s was lost (expired, reclaimed, reaped or redriven)", id);
    return false;
}

/*
 * Runs update_one(filter, pipeline) with the queue's write concern and extra options (may be
 * NULL); *matched from the reply. A retryable write: libmongoc sends it once more after a
 * network error or a failover. `what` names the call in an UNKNOWN_OUTCOME error.
 */
bool
mongoq__message_update_one(mongoq_queue_t *queue, const char *what, const bson_t *filter, const bson_t *pipeline,
           const bson_t *extra, int64_t *matched, bson_error_t *error)
{
    mongoc_client_t *client;
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    bool ok = false;
    *matched = 0;
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (coll) {
        bson_destroy(&reply);
        mongoq__queue_append_write_concern(queue, &opts);
        if (extra) {
            bson_concat(&opts, extra);
        }
        ok = mongoc_collection_update_one(coll, filter, pipeline, &opts, &reply, error);
        *matched = ok ? mongoq__reply_count(&reply, "matchedCount") : 0;
        if (!ok) {
            mongoq__error_classify_write(what, &reply, error);
        }
    }
    bson_destroy(&reply);
    bson_destroy(&opts);
    mongoq__queue_release(queue, client, coll);
    return ok;
}


/* Runs a fenced pipeline update on msg; LEASE_LOST when the lease is gone. */
bool
mongoq__message_update_held(mongoq_message_t *msg, const char *what, const bson_t *pipeline, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER;
    int64_t matched = 0;
    mongoq__message_held_filter(msg, &filter);
    bool ok = mongoq__message_update_one(msg->queue, what, &filter, pipeline, NULL, &matched, error);
    bson_destroy(&filter);
    if (ok && matched == 0) {
        return mongoq__message_lease_lost_error(msg, error);
    }
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
    mongoq__document_append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
}

bool
mongoq_message_retry(mongoq_message_t *msg, int64_t delay_ms, const char *reason,
                     bson_error_t *error)
{
    BSON_ASSERT_PARAM(msg);
    const mongoq_queue_opts_t *o = &msg->queue->opts;
    if (!mongoq__message_check_claimed(msg, "retry", error)) {
        return false;
    }
    if (delay_ms > MONGOQ_MAX_DURATION_MS) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "retry: delay_ms %" PRId64 " exceeds MONGOQ_MAX_DURATION_MS (%" PRId64 ")",
                       delay_ms, MONGOQ_MAX_DURATION_MS);
        return false;
    }
    if (msg->parsed.attempts >= msg->parsed.max_attempts) {
        return mongoq__message_make_dead(msg, reason, error);
    }
    if (delay_ms < 0) {
        delay_ms = mongoq__backoff_ms(msg->parsed.attempts, o->backoff_base_ms, o->backoff_cap_ms,
                                      o->backoff_jitter, mongoq__random01());
    }
    bson_t pipeline = BSON_INITIALIZER;
    build_retry(msg, delay_ms, reason, &pipeline);
    bool ok = mongoq__message_update_held(msg, "retry", &pipeline, error);
    bson_destroy(&pipeline);
    if (ok) {
        mongoq__counter_add(&msg->queue->counters.retried, 1);
        mongoq__message_hook(msg->queue, MONGOQ_EVENT_RETRIED, msg, reason);
        int64_t due = mongoq__clock_server_now_ms(msg->queue->clock) + delay_ms;
        int32_t partition = mongoq__partition_read(msg->doc);
        if (delay_ms > 0) {
            mongoq__waker_schedule_partition(msg->queue->waker, due, partition);
        } else {
            mongoq__waker_notify_partition(msg->queue->waker, partition);
        }
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
    if (!ok) {
        mongoq__error_classify_write("extend", &reply, error);
    }
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
    if (!mongoq__message_check_claimed(msg, "extend", error)) {
        return false;
    }
    if (lease_ms <= 0 || lease_ms > MONGOQ_MAX_DURATION_MS) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "extend: lease_ms must be 1 to MONGOQ_MAX_DURATION_MS (%" PRId64 "), not %" PRId64,
                       MONGOQ_MAX_DURATION_MS, lease_ms);
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
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    int64_t until = 0;
    bool matched = false;
    bool ok = coll && extended_until(fam, coll, &filter, &until, &matched, error);
    mongoq__queue_release(queue, client, coll);
    mongoc_find_and_modify_opts_destroy(fam);
    bson_destroy(&extra);
    bson_destroy(&fields);
    bson_destroy(&pipeline);
    bson_destroy(&filter);
    if (ok && !matched) {
        return mongoq__message_lease_lost_error(msg, error);
    }
    if (ok) {
        atomic_store(&msg->lease_expires_at, until);
    }
    return ok;
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
 * The hand-back's update: the attempt is given back on the server (attempts - 1), which is the
 * claimed copy's value minus one while the lease holds (the filter is fenced by the token).
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
    mongoq__document_append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
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

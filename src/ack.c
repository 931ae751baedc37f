/*
 * Acknowledging claimed messages: ack (one retryable deleteOne or updateOne) and ack_many (one
 * deleteMany or updateMany for the batch).
 *
 * Both are fenced like every write on a claimed message ({_id, lease_token, status}), and both
 * settle an ambiguous outcome by reading the messages back: a network error after the write was
 * sent, or a write that matched fewer messages than it was given (a retry of a write that had
 * applied matches nothing). What the documents show decides, per message:
 *  - acknowledged: in MONGOQ_ACK_KEEP mode "done" with this claim's lease_token (an ack keeps
 *    the claim's token, which no one else can hold: any other claim writes a fresh one); after a
 *    write whose outcome is unknown, also absent (this ack may have deleted it; in DELETE mode
 *    nothing else can tell);
 *  - still held: "processing" with this claim's token: the write did not apply; it is sent once
 *    more;
 *  - lost: anything else (reclaimed, reaped, redriven, done or dead by someone else).
 * So a call repeated after MONGOQ_ERROR_UNKNOWN_OUTCOME recognises its own earlier acks.
 */
#include <string.h>

#include "error-private.h"
#include "fields.h"
#include "group-private.h"
#include "message-private.h"
#include "mongoq/limits.h"

typedef enum { ACK_APPLIED, ACK_HELD, ACK_LOST, ACK_ABSENT } ack_state_t;

/* KEEP mode: done now; lease_token stays (the claim's), dedup_key goes so the key is free. */
static void
build_done(bson_t *pipeline)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_EXPIRES_AT, MONGOQ__F_DEDUP_KEY};
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_DONE);
    BSON_APPEND_UTF8(&set, MONGOQ__F_DONE_AT, "$$NOW");
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    mongoq__document_append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
}

/*
 * One acknowledging write over filter; *n_out = how many it acknowledged. `single` uses the
 * one-document commands, which libmongoc retries once after a network error or a failover.
 * `group` (one message of a group): the write and the release of its place in one transaction.
 */
static bool
ack_write(mongoq_queue_t *queue, const bson_t *filter, bool single, const char *group,
          int64_t *n_out, bson_error_t *error)
{
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER, pipeline = BSON_INITIALIZER;
    mongoc_client_t *client = NULL;
    bool ok = false;
    *n_out = 0;
    if (group) {
        bool keep = queue->opts.ack_mode == MONGOQ_ACK_KEEP;
        if (keep) {
            build_done(&pipeline);
        }
        ok = mongoq__group_finish(queue, NULL, group, filter, keep ? &pipeline : NULL, n_out,
                                  error);
        bson_destroy(&pipeline);
        bson_destroy(&reply);
        bson_destroy(&opts);
        return ok;
    }
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (!coll) {
        goto done;
    }
    bson_destroy(&reply);
    mongoq__queue_append_write_concern(queue, &opts);
    if (queue->opts.ack_mode == MONGOQ_ACK_KEEP) {
        build_done(&pipeline);
        ok = single ? mongoc_collection_update_one(coll, filter, &pipeline, &opts, &reply, error)
                    : mongoc_collection_update_many(coll, filter, &pipeline, &opts, &reply, error);
        *n_out = ok ? mongoq__reply_count(&reply, "matchedCount") : 0;
    } else {
        ok = single ? mongoc_collection_delete_one(coll, filter, &opts, &reply, error)
                    : mongoc_collection_delete_many(coll, filter, &opts, &reply, error);
        *n_out = ok ? mongoq__reply_count(&reply, "deletedCount") : 0;
    }
    if (!ok) {
        mongoq__error_classify_write("ack", &reply, error);
    }
done:
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&reply);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
    return ok;
}

static bool
same_oid(const bson_t *doc, const char *field, const bson_oid_t *oid)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_OID(&it) &&
           bson_oid_equal(bson_iter_oid(&it), oid);
}

static bool
has_status(const bson_t *doc, const char *status)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, MONGOQ__F_STATUS) && BSON_ITER_HOLDS_UTF8(&it) &&
           strcmp(bson_iter_utf8(&it, NULL), status) == 0;
}

/* What doc, the document of msg, shows (absent documents are settled by the caller). */
static ack_state_t
state_of(const mongoq_message_t *msg, const bson_t *doc, mongoq_ack_mode_t mode)
{
    if (!same_oid(doc, MONGOQ__F_LEASE_TOKEN, mongoq__message_lease_token(msg))) {
        return ACK_LOST;
    }
    if (has_status(doc, MONGOQ__S_PROCESSING)) {
        return ACK_HELD;
    }
    return mode == MONGOQ_ACK_KEEP && has_status(doc, MONGOQ__S_DONE) ? ACK_APPLIED : ACK_LOST;
}

/* The index of the message doc is about, or n. */
static size_t
find_msg(mongoq_message_t *const *msgs, size_t n, const bson_t *doc)
{
    for (size_t i = 0; i < n; i++) {
        if (same_oid(doc, MONGOQ__F_ID, mongoq_message_id(msgs[i]))) {
            return i;
        }
    }
    return n;
}

/* Reads the documents of msgs back (one find): the state of each, ACK_ABSENT when gone. */
static bool
read_states(mongoq_queue_t *queue, mongoq_message_t *const *msgs, size_t n, ack_state_t *states,
            bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, proj;
    const bson_t *doc;
    mongoc_client_t *client;
    for (size_t i = 0; i < n; i++) {
        states[i] = ACK_ABSENT;
    }
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (!coll) {
        return false;
    }
    mongoq__message_ids_filter(msgs, n, &filter);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, MONGOQ__F_STATUS, 1);
    BSON_APPEND_INT32(&proj, MONGOQ__F_LEASE_TOKEN, 1);
    bson_append_document_end(&opts, &proj);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        size_t i = find_msg(msgs, n, doc);
        if (i < n) {
            states[i] = state_of(msgs[i], doc, queue->opts.ack_mode);
        }
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* {$or: [{_id, lease_token, status}, ...]} over the messages whose state is `only`. */
static size_t
build_held_filter(mongoq_message_t *const *msgs, size_t n, const ack_state_t *states,
                  ack_state_t only, bson_t *filter)
{
    bson_t list, held;
    char key[16];
    const char *k;
    uint32_t used = 0;
    BSON_APPEND_ARRAY_BEGIN(filter, "$or", &list);
    for (size_t i = 0; i < n; i++) {
        if (states && states[i] != only) {
            continue;
        }
        bson_uint32_to_string(used++, &k, key, sizeof key);
        bson_append_document_begin(&list, k, -1, &held);
        mongoq__message_held_filter(msgs[i], &held);
        bson_append_document_end(&list, &held);
    }
    bson_append_array_end(filter, &list);
    return used;
}

/*
 * After a write that was ambiguous or fell short: reads the states, sends the acks still held
 * once more when the write's outcome was unknown, and reads again. Fills states.
 */
static bool
settle(mongoq_queue_t *queue, mongoq_message_t *const *msgs, size_t n, bool resend,
       ack_state_t *states, bson_error_t *error)
{
    if (!read_states(queue, msgs, n, states, error)) {
        return false;
    }
    bson_t filter = BSON_INITIALIZER;
    int64_t acked = 0;
    size_t held = build_held_filter(msgs, n, states, ACK_HELD, &filter);
    bool ok = true;
    if (resend && held > 0) {
        ok = ack_write(queue, &filter, n == 1, n == 1 ? msgs[0]->parsed.group : NULL, &acked,
                       error) &&
             read_states(queue, msgs, n, states, error);
    }
    bson_destroy(&filter);
    return ok;
}

/* The handling histogram (claim to acknowledgement) and the ACKED hook, for each applied one
 * (all when states is NULL). */
static void
observe_handling(mongoq_message_t *const *msgs, size_t n, const ack_state_t *states)
{
    int64_t now = mongoq__now_mono_ms();
    for (size_t i = 0; i < n; i++) {
        if (!states || states[i] == ACK_APPLIED) {
            mongoq__histogram_observe(&msgs[i]->queue->timings.handling,
                                      now - msgs[i]->claimed_mono_ms);
            mongoq__message_hook(msgs[i]->queue, MONGOQ_EVENT_ACKED, msgs[i], NULL);
        }
    }
}

/*
 * Whose doing is an absent document? After a write whose outcome is unknown, or one that
 * acknowledged some, it counts as this call's (in DELETE mode nothing else can tell; where
 * someone else finished a message whose lease lapsed, it is done either way). After a write
 * that acknowledged none, absence was someone else's doing: lost.
 */
static void
resolve_absent(ack_state_t *states, size_t n, bool unknown, int64_t acked)
{
    for (size_t i = 0; i < n; i++) {
        if (states[i] == ACK_ABSENT) {
            states[i] = unknown || acked > 0 ? ACK_APPLIED : ACK_LOST;
        }
    }
}

/*
 * Marks the lost ones and, with count_applied, counts the applied ones (after an unknown outcome:
 * otherwise the write's own count was taken); LEASE_LOST when any was lost.
 */
static bool
conclude(mongoq_queue_t *queue, mongoq_message_t *const *msgs, size_t n, const ack_state_t *states,
         bool count_applied, bson_error_t *error)
{
    size_t applied = 0, lost = 0, held = 0;
    for (size_t i = 0; i < n; i++) {
        if (states[i] == ACK_APPLIED) {
            applied++;
        } else if (states[i] == ACK_LOST) {
            lost++;
            mongoq__message_mark_lease_lost(msgs[i]);
        } else {
            held++;
        }
    }
    if (count_applied) {
        mongoq__counter_add(&queue->counters.acked, (int64_t)applied);
    }
    observe_handling(msgs, n, states);
    if (held > 0) {
        /* Still held after a second write that succeeded: the server is not doing what it said. */
        mongoq__error_set(error, MONGOQ_ERROR_SERVER,
                          "ack: %zu of %zu messages are still held after acknowledging them", held,
                          n);
        return false;
    }
    if (lost > 0) {
        char id[25];
        bson_oid_to_string(mongoq_message_id(msgs[0]), id);
        if (n == 1) {
            mongoq__error_set(error, MONGOQ_ERROR_LEASE_LOST,
                              "the lease on message %s was lost (expired, reclaimed, reaped or "
                              "redriven)",
                              id);
        } else {
            mongoq__error_set(error, MONGOQ_ERROR_LEASE_LOST,
                              "ack_many: %zu of %zu leases were lost (those messages are marked "
                              "lease_lost); the others were acknowledged",
                              lost, n);
        }
        return false;
    }
    return true;
}

/* The ack of msgs[0 .. n): one write, then settling when it was ambiguous or fell short. */
static bool
ack_batch(mongoq_queue_t *queue, mongoq_message_t *const *msgs, size_t n, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER;
    bson_error_t first = {0};
    int64_t acked = 0;
    if (n == 1) {
        mongoq__message_held_filter(msgs[0], &filter);
    } else {
        build_held_filter(msgs, n, NULL, ACK_HELD, &filter);
    }
    bool ok = ack_write(queue, &filter, n == 1, n == 1 ? msgs[0]->parsed.group : NULL, &acked,
                        &first);
    bson_destroy(&filter);
    if (ok && (size_t)acked == n) {
        mongoq__counter_add(&queue->counters.acked, acked);
        observe_handling(msgs, n, NULL);
        return true;
    }
    /* A failover or shutdown refused the write: fenced, it is safe to send once more. */
    bool unknown = !ok && mongoq__error_retryable(&first);
    if (ok) {
        mongoq__counter_add(&queue->counters.acked, acked);
    } else if (!unknown) {
        if (error) {
            *error = first; /* known not applied (e.g. no server could be selected) */
        }
        return false;
    }
    ack_state_t stack_states[16];
    ack_state_t *states = n <= 16 ? stack_states : bson_malloc(n * sizeof *states);
    bson_error_t settling;
    bool settled = settle(queue, msgs, n, unknown, states, &settling);
    bool result = false;
    if (settled) {
        resolve_absent(states, n, unknown, acked);
        result = conclude(queue, msgs, n, states, unknown, error);
    } else if (error) {
        /* Neither the write's outcome nor the documents could be read. */
        *error = unknown ? first : settling;
        if (!unknown) {
            mongoq__error_classify_write("ack", NULL, error);
        }
    }
    if (states != stack_states) {
        bson_free(states);
    }
    return result;
}

bool
mongoq_message_ack(mongoq_message_t *msg, bson_error_t *error)
{
    BSON_ASSERT_PARAM(msg);
    if (!mongoq__message_check_claimed(msg, "ack", error)) {
        return false;
    }
    return ack_batch(msg->queue, &msg, 1, error);
}

static bool
check_batch(mongoq_message_t *const *msgs, size_t n, bson_error_t *error)
{
    if (n > MONGOQ_MAX_BATCH) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "ack_many: at most %d messages per call, %zu given", MONGOQ_MAX_BATCH,
                          n);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i] || msgs[i]->queue != msgs[0]->queue) {
            mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                              "ack_many: message %zu is NULL or from another queue", i);
            return false;
        }
        if (!mongoq__message_check_claimed(msgs[i], "ack_many", error)) {
            return false;
        }
        for (size_t j = 0; j < i; j++) {
            if (msgs[j] == msgs[i]) {
                mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                                  "ack_many: message %zu is given twice (also at %zu)", i, j);
                return false;
            }
        }
    }
    return true;
}

/*
 * Grouped messages are acknowledged one by one (each releases its place in its own transaction),
 * the others in one write as before. The first error is returned; LEASE_LOST wins over nothing.
 */
static bool
ack_split(mongoq_message_t *const *msgs, size_t n, bson_error_t *error)
{
    mongoq_queue_t *queue = msgs[0]->queue;
    size_t grouped = 0;
    for (size_t i = 0; i < n; i++) {
        grouped += msgs[i]->parsed.group != NULL;
    }
    if (grouped == 0) {
        return ack_batch(queue, msgs, n, error);
    }
    mongoq_message_t **plain = bson_malloc(n * sizeof *plain);
    size_t n_plain = 0;
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        bson_error_t e;
        if (!msgs[i]->parsed.group) {
            plain[n_plain++] = msgs[i];
        } else if (!ack_batch(queue, &msgs[i], 1, &e)) {
            if (ok && error) {
                *error = e;
            }
            ok = false;
        }
    }
    if (n_plain > 0) {
        bson_error_t e;
        if (!ack_batch(queue, plain, n_plain, &e)) {
            if (ok && error) {
                *error = e;
            }
            ok = false;
        }
    }
    bson_free(plain);
    return ok;
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
    return ack_split(msgs, n, error);
}

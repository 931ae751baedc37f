/*
 * Claiming a schedule's due slots and enqueueing their messages: one transaction per schedule.
 *
 *   start transaction (the queue's write concern)
 *     for each slot the catch-up policy runs:
 *       find the slot's message by its _id (derived from name and slot); absent: enqueue it
 *       (mongoq_enqueue in the session, caller _id, run_at = the slot)
 *     update the schedule {_id: name, rev: <as read>}: next_slot = the first slot not yet due,
 *       rev + 1, counts, last slot           -- matching nothing: abort (another got there first)
 *   commit
 *
 * Why a slot is enqueued exactly once (docs/design.md, "Schedules"):
 *  - atomicity: the messages and the advance of next_slot commit together or not at all, so a
 *    crash anywhere (before, during, after the commit) leaves the schedule pointing at the slot
 *    exactly when its message does not exist;
 *  - concurrency: the advance is a compare-and-set on rev; two schedulers that read the same rev
 *    both write the same schedule document, so one meets a write conflict (or, once the other
 *    committed, matches nothing) and aborts, its inserts with it. The message _id is the same in
 *    both, which makes their inserts conflict as well;
 *  - the message may be acknowledged and deleted at once: that changes nothing, since the slot's
 *    record is next_slot in the schedule, not the message.
 * A commit whose reply is lost (UNKNOWN_OUTCOME) is settled by the next pass: it reads rev and
 * next_slot again, advanced if the commit applied, unchanged (and claimed once more) if not.
 */
#include <string.h>

#include "cron-private.h"
#include "error-private.h"
#include "mongoq/producer.h"
#include "schedule-private.h"

/* The most slots one pass looks at for one schedule (a year of minutes is 525,600). */
#define MAX_SCAN 1000000

/* The due slots of a schedule: the latest `cap` of them in a ring, their count, and the first
 * slot not yet due. */
typedef struct {
    int64_t ring[MONGOQ_MAX_CATCH_UP];
    int32_t cap;
    int64_t count;
    int64_t next;   /* -1: the expression has no slot left */
    bool truncated; /* MAX_SCAN reached: next is still due */
} due_t;

static int64_t
due_at(const due_t *due, int64_t k) /* k-th of the kept slots, oldest first */
{
    int64_t kept = due->count < due->cap ? due->count : due->cap;
    return due->ring[(due->count - kept + k) % due->cap];
}

static bool
scan_due(const mongoq__schedule_doc_t *doc, int64_t horizon, int32_t cap, due_t *due,
         bson_error_t *error)
{
    mongoq__cron_t cron;
    mongoq__tz_t *tz = NULL;
    if (!mongoq__cron_parse(doc->cron, &cron, error) ||
        !(tz = mongoq__tz_load(doc->tz, NULL, error))) {
        return false;
    }
    due->cap = cap;
    due->count = 0;
    due->truncated = false;
    int64_t slot = doc->next_slot_ms;
    while (slot >= 0 && slot <= horizon) {
        if (due->count == MAX_SCAN) {
            due->truncated = true;
            break;
        }
        due->ring[due->count++ % cap] = slot;
        if (!mongoq__cron_next(&cron, tz, slot, &slot)) {
            slot = -1;
        }
    }
    due->next = slot;
    mongoq__tz_destroy(tz);
    return true;
}

/* Which kept slots run: [*first, kept) of the ring, oldest first. */
static int64_t
choose(const mongoq__schedule_doc_t *doc, const due_t *due, int64_t now)
{
    int64_t kept = due->count < due->cap ? due->count : due->cap;
    if (due->truncated) {
        return kept; /* more than MAX_SCAN slots late: skip them all, go on next pass */
    }
    if (doc->catch_up == MONGOQ_CATCH_UP_SKIP) {
        int64_t first = 0;
        while (first < kept && now - due_at(due, first) > doc->grace_ms) {
            first++;
        }
        return first;
    }
    return doc->catch_up == MONGOQ_CATCH_UP_LATEST ? kept - 1 : 0;
}

typedef struct {
    mongoq_queue_t *queue;
    mongoc_client_t *client;
    mongoc_client_session_t *session;
    const mongoq__schedule_doc_t *doc;
    int64_t enqueued;
    int64_t skipped;
    int64_t last_slot;
    bson_oid_t last_id;
    bool conflict; /* a transient transaction error: another transaction got there first */
} fire_t;

static bool
transient(fire_t *f, const bson_t *reply)
{
    if (reply && mongoc_error_has_label(reply, "TransientTransactionError")) {
        f->conflict = true;
    }
    return f->conflict;
}

/*
 * Whether the slot's message exists, read in the transaction. By _id alone, without the
 * partition the enqueue would choose: that partition follows the schedule's dedup_key, which an
 * update may have changed since the slot's message went in, and a message with this _id in
 * another partition (another shard, where _id is unique per shard only) must still be found.
 * On a cluster it asks every shard, once per slot.
 */
static bool
stored(fire_t *f, const bson_oid_t *id, bool *exists, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *doc;
    BSON_APPEND_OID(&filter, "_id", id);
    bool ok = mongoc_client_session_append(f->session, &opts, error);
    if (ok) {
        mongoc_collection_t *coll =
            mongoc_client_get_collection(f->client, f->queue->db, f->queue->name);
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        *exists = mongoc_cursor_next(cursor, &doc);
        ok = !mongoc_cursor_error_document(cursor, error, &doc);
        if (!ok) {
            transient(f, doc);
        }
        mongoc_cursor_destroy(cursor);
        mongoc_collection_destroy(coll);
    }
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* Enqueues one slot's message in the transaction (unless it exists already). */
static bool
enqueue_slot(fire_t *f, int64_t slot, bson_error_t *error)
{
    const mongoq__schedule_doc_t *doc = f->doc;
    bson_oid_t id;
    bool exists = false;
    mongoq__schedule_slot_id(doc->name, slot, &id);
    if (!stored(f, &id, &exists, error)) {
        return false;
    }
    if (exists) {
        f->skipped++; /* enqueued before (the schedule was set back to this slot) */
        return true;
    }
    bson_t payload, sub, reply;
    bson_init(&payload);
    bson_copy_to_excluding_noinit(&doc->payload, &payload, MONGOQ__SCHEDULE_PAYLOAD_FIELD, NULL);
    BSON_APPEND_DOCUMENT_BEGIN(&payload, MONGOQ__SCHEDULE_PAYLOAD_FIELD, &sub);
    BSON_APPEND_UTF8(&sub, "name", doc->name);
    BSON_APPEND_DATE_TIME(&sub, "slot", slot);
    bson_append_document_end(&payload, &sub);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.priority = doc->priority;
    opts.max_attempts = doc->max_attempts;
    opts.dedup_key = doc->dedup_key;
    opts.run_at_ms = slot > 0 ? slot : 1;
    opts.session = f->session;
    opts.caller_ids = true;
    opts.reply = &reply;
    bool ok = mongoq_enqueue(f->queue, &payload, &opts, &id, error);
    if (ok) {
        f->enqueued++;
        f->last_slot = slot;
        f->last_id = id;
    } else if (mongoq__error_is(error, MONGOQ_ERROR_DUPLICATE) && !transient(f, &reply) &&
               !strstr(error->message, "aborted")) {
        f->skipped++; /* the message of an earlier slot holds the dedup_key */
        ok = true;
    } else {
        transient(f, &reply);
    }
    bson_destroy(&reply);
    bson_destroy(&payload);
    return ok;
}

/* The compare-and-set that claims the slots: false + *matched false when rev moved. */
static bool
advance(fire_t *f, int64_t next, int64_t extra_skipped, int64_t now, bool *matched,
        bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, inc, opts = BSON_INITIALIZER;
    bson_t reply;
    BSON_APPEND_UTF8(&filter, "_id", f->doc->name);
    BSON_APPEND_INT64(&filter, "rev", f->doc->rev);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    if (next >= 0) {
        BSON_APPEND_DATE_TIME(&set, "next_slot", next);
    } else {
        BSON_APPEND_NULL(&set, "next_slot");
    }
    if (f->enqueued > 0) {
        BSON_APPEND_DATE_TIME(&set, "last_slot", f->last_slot);
        BSON_APPEND_OID(&set, "last_id", &f->last_id);
        BSON_APPEND_DATE_TIME(&set, "last_run_at", now);
    }
    bson_append_document_end(&update, &set);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
    BSON_APPEND_INT64(&inc, "rev", 1);
    BSON_APPEND_INT64(&inc, "enqueued", f->enqueued);
    BSON_APPEND_INT64(&inc, "skipped", f->skipped + extra_skipped);
    bson_append_document_end(&update, &inc);
    bool ok = mongoc_client_session_append(f->session, &opts, error);
    mongoc_collection_t *coll = mongoq__schedules_collection(f->queue, f->client);
    bson_init(&reply);
    if (ok) {
        bson_destroy(&reply);
        ok = mongoc_collection_update_one(coll, &filter, &update, &opts, &reply, error);
    }
    *matched = ok && mongoq__reply_count(&reply, "matchedCount") == 1;
    if (!ok) {
        transient(f, &reply);
    }
    mongoc_collection_destroy(coll);
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

/* Commits; once more when the first reply is lost (commitTransaction may be repeated). */
static bool
commit(fire_t *f, bson_error_t *error)
{
    for (int i = 0; i < 2; i++) {
        bson_t reply;
        bool ok = mongoc_client_session_commit_transaction(f->session, &reply, error);
        bool unknown = !ok && mongoc_error_has_label(&reply, "UnknownTransactionCommitResult");
        if (!ok && !unknown) {
            transient(f, &reply);
        }
        bson_destroy(&reply);
        if (ok || !unknown) {
            return ok;
        }
    }
    mongoq__error_classify_write("schedule commit", NULL, error);
    if (!mongoq__error_is(error, MONGOQ_ERROR_UNKNOWN_OUTCOME)) {
        char msg[sizeof error->message];
        bson_snprintf(msg, sizeof msg, "schedule commit: the outcome is unknown: %s",
                      error->message);
        mongoq__error_set(error, MONGOQ_ERROR_UNKNOWN_OUTCOME, "%s", msg);
    }
    return false;
}

/* The transaction's body and commit; false with f->conflict for a lost race. */
static bool
run_transaction(fire_t *f, const due_t *due, int64_t first, int64_t now, bool *matched,
                bson_error_t *error)
{
    int64_t kept = due->count < due->cap ? due->count : due->cap;
    mongoc_transaction_opt_t *topts = mongoc_transaction_opts_new();
    mongoc_transaction_opts_set_write_concern(topts, f->queue->wc);
    bool ok = mongoc_client_session_start_transaction(f->session, topts, error);
    mongoc_transaction_opts_destroy(topts);
    for (int64_t k = first; ok && k < kept; k++) {
        ok = enqueue_slot(f, due_at(due, k), error);
    }
    if (ok) {
        ok = advance(f, due->next, due->count - (kept - first), now, matched, error);
    }
    if (ok && *matched) {
        return commit(f, error);
    }
    bson_error_t ignored;
    mongoc_client_session_abort_transaction(f->session, &ignored);
    return ok;
}

bool
mongoq__schedule_fire(mongoq_queue_t *queue, mongoc_client_t *client,
                      const mongoq__schedule_doc_t *doc, int64_t now, int64_t lookahead_ms,
                      mongoq_scheduler_pass_t *pass, bson_error_t *error)
{
    due_t *due = bson_malloc0(sizeof *due);
    int32_t cap = doc->catch_up == MONGOQ_CATCH_UP_LATEST ? 1 : doc->catch_up_limit;
    fire_t f = {.queue = queue, .client = client, .doc = doc};
    bool ok = scan_due(doc, now + lookahead_ms, cap, due, error);
    if (ok && due->count > 0) {
        int64_t first = choose(doc, due, now);
        bool matched = false;
        f.session = mongoc_client_start_session(client, NULL, error);
        ok = f.session && run_transaction(&f, due, first, now, &matched, error);
        if (f.conflict || (ok && !matched)) {
            pass->lost_races++; /* nothing of ours was applied; the next pass reads again */
            ok = true;
        } else if (ok) {
            int64_t kept = due->count < cap ? due->count : cap;
            pass->enqueued += f.enqueued;
            pass->skipped += f.skipped + due->count - (kept - first);
        }
        mongoc_client_session_destroy(f.session);
    }
    bson_free(due);
    return ok;
}

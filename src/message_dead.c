/*
 * Dead messages: a claimed message failed (mongoq_message_fail, a retry with no attempt left),
 * and documents buried because they cannot be delivered (damaged, or poison: the server refuses
 * to claim them). A grouped message that dies gives its place to its group's next message in
 * the same transaction, or keeps it (MONGOQ_GROUP_DEAD_BLOCK; group-private.h).
 */
#include "message-private.h"

#include "error-private.h"
#include "fields.h"
#include "group-private.h"
#include "hooks-private.h"

/* group_blocking: {$cond: [{$gt: ["$group", null]}, true, "$$REMOVE"]} */
static void
append_blocking_if_grouped(bson_t *set)
{
    bson_t cond, args, gt, gt_args;
    BSON_APPEND_DOCUMENT_BEGIN(set, MONGOQ__F_GROUP_BLOCKING, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$cond", &args);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "0", &gt);
    BSON_APPEND_ARRAY_BEGIN(&gt, "$gt", &gt_args);
    BSON_APPEND_UTF8(&gt_args, "0", "$" MONGOQ__F_GROUP);
    BSON_APPEND_NULL(&gt_args, "1");
    bson_append_array_end(&gt, &gt_args);
    bson_append_document_end(&args, &gt);
    BSON_APPEND_BOOL(&args, "1", true);
    BSON_APPEND_UTF8(&args, "2", "$$REMOVE");
    bson_append_array_end(&cond, &args);
    bson_append_document_end(set, &cond);
}

/* What a death does to the message's group place (group-private.h). */
enum { PLACE_NONE, PLACE_KEPT, PLACE_KEPT_IF_GROUPED };

/*
 * The pipeline that makes a message dead now with reason, its history extended; `place`: a
 * grouped message that keeps its group's place is marked group_blocking (KEPT), or, when the
 * caller does not know whether the document has a group (a buried one), if it has (KEPT_IF_*).
 */
static void
build_dead(const bson_t *old_errors, const char *reason, int place, bson_t *pipeline)
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
    if (place == PLACE_KEPT) {
        BSON_APPEND_BOOL(&set, MONGOQ__F_GROUP_BLOCKING, true);
    } else if (place == PLACE_KEPT_IF_GROUPED) {
        append_blocking_if_grouped(&set);
    }
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    mongoq__document_append_unset(pipeline, "1", unset, sizeof unset / sizeof unset[0]);
}

/*
 * A grouped message that dies gives its place to its group's next message in the same
 * transaction (MONGOQ_GROUP_DEAD_RELEASE), or keeps it (BLOCK: one fenced update, marked).
 */
bool
mongoq__message_make_dead(mongoq_message_t *msg, const char *reason, bson_error_t *error)
{
    bson_t pipeline = BSON_INITIALIZER, filter = BSON_INITIALIZER;
    const char *group = msg->parsed.group;
    bool release = group && msg->queue->opts.group_dead == MONGOQ_GROUP_DEAD_RELEASE;
    int64_t matched = 0;
    bool ok;
    build_dead(msg->parsed.has_errors ? &msg->parsed.errors : NULL, reason,
               group && !release ? PLACE_KEPT : PLACE_NONE, &pipeline);
    if (release) {
        mongoq__message_held_filter(msg, &filter);
        ok = mongoq__group_finish(msg->queue, NULL, group, &filter, &pipeline, &matched, error);
        if (ok && matched == 0) {
            ok = mongoq__message_lease_lost_error(msg, error);
        }
    } else {
        ok = mongoq__message_update_held(msg, "fail", &pipeline, error);
    }
    bson_destroy(&filter);
    bson_destroy(&pipeline);
    if (ok) {
        mongoq__counter_add(&msg->queue->counters.failed, 1);
        mongoq__message_hook(msg->queue, MONGOQ_EVENT_FAILED, msg, reason);
    }
    return ok;
}

bool
mongoq_message_fail(mongoq_message_t *msg, const char *reason, bson_error_t *error)
{
    BSON_ASSERT_PARAM(msg);
    if (!mongoq__message_check_claimed(msg, "fail", error)) {
        return false;
    }
    return mongoq__message_make_dead(msg, reason, error);
}

/* {$set: {status: dead}, $unset: {dedup_key, lease_token, lease_expires_at}}: never grows a
 * document. */
static void
build_dead_minimal(bson_t *update)
{
    bson_t set, unset;
    BSON_APPEND_DOCUMENT_BEGIN(update, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    bson_append_document_end(update, &set);
    BSON_APPEND_DOCUMENT_BEGIN(update, "$unset", &unset);
    BSON_APPEND_UTF8(&unset, MONGOQ__F_DEDUP_KEY, "");
    BSON_APPEND_UTF8(&unset, MONGOQ__F_LEASE_TOKEN, "");
    BSON_APPEND_UTF8(&unset, MONGOQ__F_LEASE_EXPIRES_AT, "");
    bson_append_document_end(update, &unset);
}

/* {[partition,] _id: <as it is>, lease_token: <as it is, if any>, status} */
static void
build_bury_filter(const bson_t *doc, const char *status, bson_t *filter)
{
    bson_iter_t it;
    /* _id may be of any type in a damaged document; match it as it is. */
    if (bson_iter_init_find(&it, doc, MONGOQ__F_PARTITION)) {
        bson_append_value(filter, MONGOQ__F_PARTITION, -1, bson_iter_value(&it));
    }
    if (bson_iter_init_find(&it, doc, MONGOQ__F_ID)) {
        bson_append_value(filter, MONGOQ__F_ID, -1, bson_iter_value(&it));
    }
    if (bson_iter_init_find(&it, doc, MONGOQ__F_LEASE_TOKEN)) {
        bson_append_value(filter, MONGOQ__F_LEASE_TOKEN, -1, bson_iter_value(&it));
    }
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, status);
}

bool
mongoq__message_bury(mongoq_queue_t *queue, const bson_t *doc, const char *status,
                     const char *reason, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, full = BSON_INITIALIZER, minimal = BSON_INITIALIZER;
    bson_t bypass = BSON_INITIALIZER;
    int64_t matched = 0;
    build_bury_filter(doc, status, &filter);
    bson_iter_t git;
    /* A grouped message buried keeps its place (redrive or purge gives it back); a poison one
     * is known by its _id only, so in a queue with groups the server decides. */
    build_dead(NULL, reason,
               bson_iter_init_find(&git, doc, MONGOQ__F_GROUP) ? PLACE_KEPT
               : queue->opts.group_concurrency > 0             ? PLACE_KEPT_IF_GROUPED
                                                               : PLACE_NONE,
               &full);
    build_dead_minimal(&minimal);
    BSON_APPEND_BOOL(&bypass, "bypassDocumentValidation", true);
    /* The document itself may refuse the full update (too large to grow, a validator): then
     * status alone, then status alone past validation (needs the bypassDocumentValidation
     * privilege; without it the last error is returned). */
    bool ok = mongoq__message_update_one(queue, "bury", &filter, &full, NULL, &matched, error);
    if (!ok && mongoq__error_document_dependent(error)) {
        ok = mongoq__message_update_one(queue, "bury", &filter, &minimal, NULL, &matched, error);
    }
    if (!ok && mongoq__error_document_dependent(error)) {
        ok = mongoq__message_update_one(queue, "bury", &filter, &minimal, &bypass, &matched, error);
    }
    if (ok && matched > 0) {
        mongoq__counter_add(&queue->counters.failed, matched);
        mongoq__hook_buried(queue, doc, reason);
    }
    bson_destroy(&bypass);
    bson_destroy(&minimal);
    bson_destroy(&full);
    bson_destroy(&filter);
    return ok;
}

/*
 * Message groups: the release of a place when a grouped message finishes (acknowledged, or dead
 * with MONGOQ_GROUP_DEAD_RELEASE), and the admission of a group's head. One transaction:
 *
 *   ack (the message deleted): one `delete` command of two ordered statements, the message
 *     (fenced) and the group document when this was its last message (active <= 1, waiting
 *     <= 0, and with a per-group rate limit its bucket refilled). The reply counts both:
 *       2  the message was held and its group is now empty: done;
 *       0  the message was not held (its lease is gone) and its group not emptied: nothing;
 *       1  one of the two: the group document's findAndModify below finds the document when it
 *          was the message that went, and nothing when it was the group document (then the
 *          message was not held and the transaction is aborted: nothing happened);
 *   any other finish (an update of the message): that fenced update, nothing more unless held;
 *   then the group document's findAndModify: a waiting head takes the place (waiting - 1, a
 *     token taken) or the place is given up (active - 1), and the document is returned;
 *   then the head's admission when there is one; an emptied group's document deleted (updates
 *     only: the delete above did it for acks).
 * So an ack that empties its group costs one command and the commit, one that gives a place up
 * two, one that admits the next message three (docs/design.md, Groups: Costs).
 */
#include "group-private.h"

#include <string.h>

#include "error-private.h"
#include "fields.h"
#include "partition-private.h"
#include "service-private.h"

/* The transaction is aborted on purpose: the message was not held (see above). */
#define NOT_HELD_MESSAGE "mongoq: grouped finish: the message was not held"

typedef struct {
    const char *group;
    const bson_t *filter;
    const bson_t *update;
    int64_t matched;
    bool not_held; /* aborted because the message was not held */
    bool promoted;
    int64_t promoted_run_at;
} finish_ctx_t;

bool
mongoq__group_promote_head(mongoq__txn_t *txn, const char *group, int64_t due_ms, bool *promoted,
                           int64_t *run_at, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, sort = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bson_t stage, set, max, args, *doc = NULL;
    bson_iter_t it;
    mongoq__partition_append(&filter, txn->queue->opts.partitions,
                             mongoq__group_partition(txn->queue, group));
    BSON_APPEND_UTF8(&filter, MONGOQ__F_GROUP, group);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_WAITING);
    BSON_APPEND_INT32(&sort, MONGOQ__F_GROUP_SEQ, 1);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_READY);
    if (due_ms > 0) {
        /* not due before its token: run_at = max(run_at, due) */
        BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_RUN_AT, &max);
        BSON_APPEND_ARRAY_BEGIN(&max, "$max", &args);
        BSON_APPEND_UTF8(&args, "0", "$" MONGOQ__F_RUN_AT);
        BSON_APPEND_DATE_TIME(&args, "1", due_ms);
        bson_append_array_end(&max, &args);
        bson_append_document_end(&set, &max);
    }
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(&update, &stage);
    bool ok = mongoq__txn_fam(txn, &filter, &sort, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW, &doc,
                              error);
    *promoted = ok && doc != NULL;
    if (*promoted && bson_iter_init_find(&it, doc, MONGOQ__F_RUN_AT) &&
        BSON_ITER_HOLDS_DATE_TIME(&it)) {
        *run_at = bson_iter_date_time(&it);
    }
    bson_destroy(doc);
    bson_destroy(&update);
    bson_destroy(&sort);
    bson_destroy(&filter);
    return ok;
}

/* The group's document when the message leaving was its last: nothing held, nobody waiting
 * after it, and (per-group rate limit) a refilled bucket, which is worth no more than none. */
static void
build_last_filter(const mongoq_queue_t *queue, const char *group, int64_t active, bson_t *filter)
{
    bson_t cond;
    mongoq__group_doc_filter(queue, group, filter);
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_G_ACTIVE, &cond);
    BSON_APPEND_INT64(&cond, "$lte", active);
    bson_append_document_end(filter, &cond);
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_G_WAITING, &cond);
    BSON_APPEND_INT64(&cond, "$lte", 0);
    bson_append_document_end(filter, &cond);
    if (mongoq__group_rate_on(queue)) {
        mongoq__group_rate_append_refilled(filter);
    }
}

/* One `delete` command, ordered: the message (fenced), then its group's document if it was the
 * last. *n: how many of the two were deleted. */
static bool
delete_pair(mongoq__txn_t *txn, const bson_t *msg_filter, const char *group, int64_t *n,
            bson_error_t *error)
{
    bson_t opts = BSON_INITIALIZER, last = BSON_INITIALIZER, reply;
    bool ok = false;
    *n = 0;
    build_last_filter(txn->queue, group, 1, &last);
    if (mongoq__txn_opts(txn, &opts, error)) {
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(txn->coll, &opts);
        ok = mongoc_bulk_operation_remove_one_with_opts(bulk, msg_filter, NULL, error) &&
             mongoc_bulk_operation_remove_one_with_opts(bulk, &last, NULL, error);
        if (ok) {
            ok = mongoc_bulk_operation_execute(bulk, &reply, error) != 0;
            if (ok) {
                *n = mongoq__int_field(&reply, "nRemoved");
            } else {
                mongoq__txn_keep_reply(txn, &reply);
            }
            bson_destroy(&reply);
        }
        mongoc_bulk_operation_destroy(bulk);
    }
    bson_destroy(&last);
    bson_destroy(&opts);
    return ok;
}

/*
 * The group document after a message left its place, returned as updated:
 *   stage 0: admitted = waiting > 0 ? 1 : 0   (the head takes the place)
 *   stage 1: active += admitted - 1, waiting -= admitted
 *   stages 2-3 (per-group rate limit): the head's token
 */
static bool
leave_place(mongoq__txn_t *txn, const char *group, bson_t **doc, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, stage, set, cond, args, gt, gt_a;
    bson_t sum, sum_a;
    mongoq__group_doc_filter(txn->queue, group, &filter);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_G_ADMITTED, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$cond", &args);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "0", &gt);
    BSON_APPEND_ARRAY_BEGIN(&gt, "$gt", &gt_a);
    mongoq__group_append_or_zero(&gt_a, "0", "$" MONGOQ__F_G_WAITING);
    BSON_APPEND_INT64(&gt_a, "1", 0);
    bson_append_array_end(&gt, &gt_a);
    bson_append_document_end(&args, &gt);
    BSON_APPEND_INT64(&args, "1", 1);
    BSON_APPEND_INT64(&args, "2", 0);
    bson_append_array_end(&cond, &args);
    bson_append_document_end(&set, &cond);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(&update, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "1", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_G_ACTIVE, &sum);
    BSON_APPEND_ARRAY_BEGIN(&sum, "$add", &sum_a);
    mongoq__group_append_or_zero(&sum_a, "0", "$" MONGOQ__F_G_ACTIVE);
    BSON_APPEND_UTF8(&sum_a, "1", "$" MONGOQ__F_G_ADMITTED);
    BSON_APPEND_INT64(&sum_a, "2", -1);
    bson_append_array_end(&sum, &sum_a);
    bson_append_document_end(&set, &sum);
    BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_G_WAITING, &sum);
    BSON_APPEND_ARRAY_BEGIN(&sum, "$subtract", &sum_a);
    mongoq__group_append_or_zero(&sum_a, "0", "$" MONGOQ__F_G_WAITING);
    BSON_APPEND_UTF8(&sum_a, "1", "$" MONGOQ__F_G_ADMITTED);
    bson_append_array_end(&sum, &sum_a);
    bson_append_document_end(&set, &sum);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(&update, &stage);
    if (mongoq__group_rate_on(txn->queue)) {
        mongoq__group_rate_append(txn->queue, &update, 2);
    }
    bool ok =
        mongoq__txn_fam(txn, &filter, NULL, &update, MONGOC_FIND_AND_MODIFY_RETURN_NEW, doc, error);
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

/* After leave_place: the head admitted, or an emptied group's document deleted (updates). */
static bool
after_leaving(mongoq__txn_t *txn, finish_ctx_t *c, const bson_t *doc, bson_error_t *error)
{
    int64_t n = 0;
    if (mongoq__int_field(doc, MONGOQ__F_G_ADMITTED) > 0) {
        int64_t due = mongoq__group_rate_due(txn->queue, doc, 0);
        if (!mongoq__group_promote_head(txn, c->group, due, &c->promoted, &c->promoted_run_at,
                                        error)) {
            return false;
        }
        if (!c->promoted) {
            /* waiting said someone waits and nobody does (a damaged count): give the place up */
            bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, inc;
            mongoq__group_doc_filter(txn->queue, c->group, &filter);
            BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
            BSON_APPEND_INT64(&inc, MONGOQ__F_G_ACTIVE, -1);
            BSON_APPEND_INT64(&inc, MONGOQ__F_G_WAITING, 1);
            bson_append_document_end(&update, &inc);
            bool ok = mongoq__txn_write_one(txn, &filter, &update, &n, error);
            bson_destroy(&update);
            bson_destroy(&filter);
            return ok;
        }
        return true;
    }
    if (!c->update || mongoq__int_field(doc, MONGOQ__F_G_ACTIVE) > 0 ||
        mongoq__int_field(doc, MONGOQ__F_G_WAITING) > 0) {
        return true;
    }
    bson_t last = BSON_INITIALIZER;
    build_last_filter(txn->queue, c->group, 0, &last);
    bool ok = mongoq__txn_write_one(txn, &last, NULL, &n, error);
    bson_destroy(&last);
    return ok;
}

static bool
finish_body(mongoq__txn_t *txn, void *arg, bson_error_t *error)
{
    finish_ctx_t *c = arg;
    int64_t n = 0;
    bson_t *doc = NULL;
    c->matched = 0;
    c->not_held = false;
    c->promoted = false;
    if (!c->update) {
        if (!delete_pair(txn, c->filter, c->group, &n, error)) {
            return false;
        }
        if (n != 1) {
            c->matched = n == 2; /* 2: held, and its group is now empty; 0: not held */
            return true;
        }
    } else if (!mongoq__txn_write_one(txn, c->filter, c->update, &n, error)) {
        return false;
    } else if (n == 0) {
        return true; /* not held any more: its place is someone else's business */
    }
    if (!leave_place(txn, c->group, &doc, error)) {
        return false;
    }
    if (!doc && !c->update) {
        /* The pair's one deletion was the group document's: the message was not held. */
        c->not_held = true;
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_LEASE_LOST, NOT_HELD_MESSAGE);
        return false; /* aborts: the group document comes back */
    }
    c->matched = 1;
    bool ok = !doc || after_leaving(txn, c, doc, error);
    bson_destroy(doc);
    return ok;
}

bool
mongoq__group_finish(mongoq_queue_t *queue, mongoc_client_t *client, const char *group,
                     const bson_t *filter, const bson_t *update, int64_t *matched,
                     bson_error_t *error)
{
    finish_ctx_t c = {.group = group, .filter = filter, .update = update};
    bool ok = mongoq__txn_run(queue, client, finish_body, &c, error);
    if (!ok && c.not_held) {
        ok = true; /* nothing happened, on purpose */
        c.matched = 0;
        if (error) {
            memset(error, 0, sizeof *error);
        }
    }
    *matched = ok ? c.matched : 0;
    if (ok && c.promoted) {
        int32_t partition = mongoq__group_partition(queue, group);
        int64_t now = mongoq__clock_server_now_ms(queue->clock);
        if (c.promoted_run_at > now) {
            mongoq__waker_schedule_partition(queue->waker, c.promoted_run_at, partition);
        } else {
            mongoq__waker_notify_partition(queue->waker, partition);
        }
    }
    return ok;
}

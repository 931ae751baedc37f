/*
 * Operators' writes over many messages: redriving dead messages back to the queue, and purging
 * messages by status. Both are one updateMany or deleteMany, safe to repeat: a redriven message
 * is no longer dead, a purged one is gone.
 */
#include <string.h>

#include "document-private.h"
#include "error-private.h"
#include "fields.h"
#include "group-private.h"
#include "partition-private.h"
#include "pause-private.h"
#include "queue-private.h"

/* Dead -> ready, attempts 0, due now on the server's clock (at the back of its priority). */
static void
build_redrive_update(bool groups, bson_t *pipeline)
{
    static const char *const unset[] = {MONGOQ__F_LEASE_TOKEN, MONGOQ__F_LEASE_EXPIRES_AT,
                                        MONGOQ__F_GROUP_BLOCKING};
    bson_t stage, set;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_READY);
    BSON_APPEND_INT32(&set, MONGOQ__F_ATTEMPTS, 0);
    BSON_APPEND_UTF8(&set, MONGOQ__F_RUN_AT, "$$NOW");
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    mongoq__document_append_unset(pipeline, "1", unset, groups ? 3 : 2);
}

/*
 * In a queue with groups, a dead grouped message that gave its place up goes back in line
 * through its group (group_admin.c); the rest as before: {status: dead, $or: [{group: {$exists:
 * false}}, {group_blocking: true}]}.
 */
static void
append_place_holders(bson_t *filter)
{
    bson_t or, clause, exists;
    BSON_APPEND_ARRAY_BEGIN(filter, "$or", &or);
    BSON_APPEND_DOCUMENT_BEGIN(&or, "0", &clause);
    BSON_APPEND_DOCUMENT_BEGIN(&clause, MONGOQ__F_GROUP, &exists);
    BSON_APPEND_BOOL(&exists, "$exists", false);
    bson_append_document_end(&clause, &exists);
    bson_append_document_end(&or, &clause);
    BSON_APPEND_DOCUMENT_BEGIN(&or, "1", &clause);
    BSON_APPEND_BOOL(&clause, MONGOQ__F_GROUP_BLOCKING, true);
    bson_append_document_end(&or, &clause);
    bson_append_array_end(filter, &or);
}

bool
mongoq_queue_redrive(mongoq_queue_t *queue, const bson_oid_t *id, int64_t *moved_out,
                     bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    int64_t moved = 0;
    if (moved_out) {
        *moved_out = 0;
    }
    bool groups = queue->opts.group_concurrency > 0, ok;
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
    if (id) {
        /* An updateMany: by _id it needs no partition (mongos sends it to every shard). */
        BSON_APPEND_OID(&filter, MONGOQ__F_ID, id);
    } else {
        mongoq__partition_append_all(&filter, queue->opts.partitions);
    }
    if (groups) {
        append_place_holders(&filter);
    }
    build_redrive_update(groups, &update);
    if (groups && id) {
        ok = mongoq__group_redrive_one(queue, id, &moved, error);
    } else {
        ok = mongoq__queue_write_many(queue, "redrive", &filter, &update, &moved, error);
    }
    if (ok && groups && !id) {
        int64_t grouped = 0;
        ok = mongoq__group_redrive_all(queue, &grouped, error);
        moved += grouped;
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    if (ok && id && moved == 0) {
        char hex[25];
        bson_oid_to_string(id, hex);
        mongoq__error_set(error, MONGOQ_ERROR_NOT_FOUND, "redrive: no dead message with _id %s",
                          hex);
        return false;
    }
    if (moved > 0) {
        mongoq__waker_notify(queue->waker);
    }
    if (moved_out) {
        *moved_out = moved;
    }
    return ok;
}

static bool
known_status(const mongoq_queue_t *queue, const char *status)
{
    return strcmp(status, MONGOQ__S_READY) == 0 || strcmp(status, MONGOQ__S_PROCESSING) == 0 ||
           strcmp(status, MONGOQ__S_DONE) == 0 || strcmp(status, MONGOQ__S_DEAD) == 0 ||
           (queue->opts.group_concurrency > 0 && strcmp(status, MONGOQ__S_WAITING) == 0);
}

bool
mongoq_queue_purge(mongoq_queue_t *queue, const char *status, int64_t *deleted_out,
                   bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    bson_t filter = BSON_INITIALIZER;
    int64_t deleted = 0;
    if (deleted_out) {
        *deleted_out = 0;
    }
    if (status && !known_status(queue, status)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "purge: unknown status \"%s\" (ready, processing, done, dead or NULL)",
                          status);
        return false;
    }
    if (queue->opts.group_concurrency > 0 && (!status || strcmp(status, MONGOQ__S_DONE) != 0)) {
        bool ok = mongoq__group_purge(queue, status, &deleted, error);
        if (ok && deleted_out) {
            *deleted_out = deleted;
        }
        bson_destroy(&filter);
        return ok;
    }
    if (status) {
        mongoq__partition_append_all(&filter, queue->opts.partitions);
        BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, status);
    } else {
        bson_t ne;
        BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_ID, &ne);
        BSON_APPEND_UTF8(&ne, "$ne", MONGOQ__CONTROL_ID); /* a pause outlives a purge */
        bson_append_document_end(&filter, &ne);
    }
    bool ok = mongoq__queue_write_many(queue, "purge", &filter, NULL, &deleted, error);
    if (ok && deleted_out) {
        *deleted_out = deleted;
    }
    bson_destroy(&filter);
    return ok;
}

/*
 * Message groups: listing them (mongoq/group.h) and purging in a queue with groups, which
 * recounts every group it touched so that no group is left holding places for messages that
 * are gone, nor waiting with free places.
 */
#include "group-private.h"

#include <string.h>

#include "error-private.h"
#include "fields.h"
#include "mongoq/group.h"
#include "partition-private.h"
#include "pause-private.h"

/* The _id range of group documents: "mongoq.group:" <= _id < "mongoq.group;" (':' + 1). */
#define GROUP_ID_END "mongoq.group;"

/* {_id: {$gt|$gte: from, $lt: end}} */
static void
append_group_range(bson_t *filter, const char *after)
{
    bson_t range;
    char *from = after ? mongoq__group_doc_id(after) : NULL;
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_ID, &range);
    if (from) {
        BSON_APPEND_UTF8(&range, "$gt", from);
    } else {
        BSON_APPEND_UTF8(&range, "$gte", MONGOQ__GROUP_ID_PREFIX);
    }
    BSON_APPEND_UTF8(&range, "$lt", GROUP_ID_END);
    bson_append_document_end(filter, &range);
    bson_free(from);
}

/* A `count` command (counted from the group index's keys, as stats' counts are); -1 on error. */
static int64_t
count_processing(mongoc_collection_t *coll, const mongoq_queue_t *queue, const char *group,
                 bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, filter, reply;
    bson_iter_t it;
    int64_t n = -1;
    BSON_APPEND_UTF8(&cmd, "count", queue->name);
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "query", &filter);
    mongoq__partition_append(&filter, queue->opts.partitions,
                             mongoq__group_partition(queue, group));
    BSON_APPEND_UTF8(&filter, MONGOQ__F_GROUP, group);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    bson_append_document_end(&cmd, &filter);
    if (mongoc_collection_read_command_with_opts(coll, &cmd, NULL, NULL, &reply, error) &&
        bson_iter_init_find(&it, &reply, "n") && BSON_ITER_HOLDS_NUMBER(&it)) {
        n = bson_iter_as_int64(&it);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return n;
}

static void
fill_info(const bson_t *doc, mongoq_group_info_t *info)
{
    bson_iter_t it;
    uint32_t version = info->version;
    memset(info, 0, sizeof *info);
    info->version = version;
    if (bson_iter_init_find(&it, doc, MONGOQ__F_G_NAME) && BSON_ITER_HOLDS_UTF8(&it)) {
        bson_strncpy(info->name, bson_iter_utf8(&it, NULL), sizeof info->name);
    }
    info->active = mongoq__int_field(doc, MONGOQ__F_G_ACTIVE);
    info->waiting = mongoq__int_field(doc, MONGOQ__F_G_WAITING);
    info->limit = (int32_t)mongoq__int_field(doc, MONGOQ__F_G_LIMIT);
    info->partition = (int32_t)mongoq__int_field(doc, MONGOQ__F_PARTITION);
}

bool
mongoq_queue_groups(mongoq_queue_t *queue, const char *after, mongoq_group_info_t *out, size_t max,
                    size_t *n_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(out);
    BSON_ASSERT_PARAM(n_out);
    *n_out = 0;
    if (max < 1 || max > MONGOQ_MAX_BATCH || (after && strlen(after) > MONGOQ_MAX_GROUP_BYTES)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "groups: max must be 1 to MONGOQ_MAX_BATCH and after a group name");
        return false;
    }
    for (size_t i = 0; i < max; i++) {
        if (out[i].version == 0 || out[i].version > MONGOQ_GROUP_INFO_VERSION) {
            mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                              "groups: out[%zu] has an unknown version (MONGOQ_GROUP_INFO_INIT)",
                              i);
            return false;
        }
    }
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
    const bson_t *doc;
    mongoc_client_t *client;
    append_group_range(&filter, after);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, MONGOQ__F_ID, 1);
    bson_append_document_end(&opts, &sort);
    BSON_APPEND_INT64(&opts, "limit", (int64_t)max);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    bool ok = coll != NULL;
    if (ok) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        while (*n_out < max && mongoc_cursor_next(cursor, &doc)) {
            fill_info(doc, &out[(*n_out)++]);
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
        for (size_t i = 0; ok && i < *n_out; i++) {
            out[i].in_flight = count_processing(coll, queue, out[i].name, error);
            ok = out[i].in_flight >= 0;
        }
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    if (!ok) {
        *n_out = 0;
    }
    return ok;
}

/* ---- purge -------------------------------------------------------------------------------- */

/* Appends the names of the groups whose messages of `status` (NULL: group documents) exist. */
static bool
touched_groups(mongoq_queue_t *queue, const char *status, bson_t *names, uint32_t *n,
               bson_error_t *error)
{
    bson_t pipeline = BSON_INITIALIZER, filter = BSON_INITIALIZER, stage, group, exists;
    const bson_t *doc;
    bson_iter_t it;
    mongoc_client_t *client;
    char key[16];
    const char *k;
    if (status) {
        mongoq__partition_append_all(&filter, queue->opts.partitions);
        BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, status);
        BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_GROUP, &exists);
        BSON_APPEND_BOOL(&exists, "$exists", true);
        bson_append_document_end(&filter, &exists);
    } else {
        append_group_range(&filter, NULL);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT(&stage, "$match", &filter);
    bson_append_document_end(&pipeline, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&pipeline, "1", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$group", &group);
    BSON_APPEND_UTF8(&group, MONGOQ__F_ID, status ? "$" MONGOQ__F_GROUP : "$" MONGOQ__F_G_NAME);
    bson_append_document_end(&stage, &group);
    bson_append_document_end(&pipeline, &stage);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    bool ok = coll != NULL;
    if (ok) {
        mongoc_cursor_t *cursor =
            mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, &pipeline, NULL, NULL);
        while (mongoc_cursor_next(cursor, &doc)) {
            if (bson_iter_init_find(&it, doc, MONGOQ__F_ID) && BSON_ITER_HOLDS_UTF8(&it)) {
                bson_uint32_to_string((*n)++, &k, key, sizeof key);
                BSON_APPEND_UTF8(names, k, bson_iter_utf8(&it, NULL));
            }
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&filter);
    bson_destroy(&pipeline);
    return ok;
}

/*
 * Purge in a queue with groups: the groups with messages to delete are read first (for
 * everything: every group document), then the messages deleted (never a group document nor the
 * control document), then each of those groups recounted in a transaction of its own.
 */
bool
mongoq__group_purge(mongoq_queue_t *queue, const char *status, int64_t *deleted,
                    bson_error_t *error)
{
    bson_t names = BSON_INITIALIZER, filter = BSON_INITIALIZER, id;
    bson_iter_t it;
    uint32_t n = 0;
    bool ok = touched_groups(queue, status, &names, &n, error);
    if (ok && status) {
        mongoq__partition_append_all(&filter, queue->opts.partitions);
        BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, status);
    } else if (ok) {
        /* Messages only: their _ids are ObjectIds; the control, group and rate documents'
         * are strings beginning "mongoq." */
        BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_ID, &id);
        BSON_APPEND_REGEX(&id, "$not", "^mongoq\\.", "");
        bson_append_document_end(&filter, &id);
    }
    ok = ok && mongoq__queue_write_many(queue, "purge", &filter, NULL, deleted, error);
    if (ok && bson_iter_init(&it, &names)) {
        while (ok && bson_iter_next(&it)) {
            ok = mongoq__group_recount(queue, bson_iter_utf8(&it, NULL), error);
        }
    }
    bson_destroy(&filter);
    bson_destroy(&names);
    return ok;
}

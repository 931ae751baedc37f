/*
 * findAndModify through the router (s/commands/cluster_find_and_modify_cmd.cpp): on a sharded
 * collection the query must pin one shard: an equality on the full shard key, or (SERVER-44422)
 * a filter whose bounds reach one shard only; an upsert needs the full shard key. Otherwise
 * ShardKeyNotFound 61 "Query for sharded findAndModify must contain the shard key" (6.0), unless
 * --shardkeyless-writes asks for 7.1's two-phase write (SERVER-70948): find the document the
 * sort picks across the shards, then run the command on its shard narrowed to its _id.
 */
#include "write-private.h"

#include <string.h>

/* Sort spec's first match on each shard in mask; the best one by sort (or the first found). */
bool
mr__find_one_id(mr_cmd_t *c, const char *coll, uint32_t mask, const bson_t *filter,
                const bson_t *sort, bson_value_t *id, int *shard, bool *found,
                bson_error_t *error)
{
    bson_t *best = NULL;
    *found = false;
    for (int s = 0; s < mr_config.nshards; s++) {
        bson_t cmd = BSON_INITIALIZER, reply, cursor, batch, doc;
        bson_iter_t it;
        if (!(mask & (1u << s))) {
            continue;
        }
        BSON_APPEND_UTF8(&cmd, "find", coll);
        BSON_APPEND_DOCUMENT(&cmd, "filter", filter);
        if (sort) {
            BSON_APPEND_DOCUMENT(&cmd, "sort", sort);
        }
        BSON_APPEND_INT32(&cmd, "limit", 1);
        BSON_APPEND_BOOL(&cmd, "singleBatch", true);
        BSON_APPEND_UTF8(&cmd, "$db", c->db);
        bool ok = mr_shard_run(c->client, s, &cmd, &reply, error) && mr_reply_ok(&reply, error);
        bson_destroy(&cmd);
        if (ok && mr__get_doc(&reply, "cursor", &cursor) &&
            mr__get_doc(&cursor, "firstBatch", &batch) && bson_iter_init(&it, &batch) &&
            bson_iter_next(&it) && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&doc, data, len);
            if (!best || (sort && ms_sort_cmp(sort, &doc, best) < 0)) {
                if (best) {
                    bson_destroy(best);
                }
                best = bson_copy(&doc);
                *shard = s;
            }
        }
        bson_destroy(&reply);
        if (!ok) {
            if (best) {
                bson_destroy(best);
            }
            return false;
        }
    }
    bson_iter_t it;
    if (best && bson_iter_init_find(&it, best, "_id")) {
        bson_value_copy(bson_iter_value(&it), id);
        *found = true;
    }
    if (best) {
        bson_destroy(best);
    }
    return true;
}

/* The command with its query narrowed to {$and: [query, {_id: id}]}. */
static void
narrowed_command(const bson_t *cmd, const bson_t *query, const bson_value_t *id, bson_t *out)
{
    static const char *const drop[] = {"query", NULL};
    bson_t q, arr, idd;
    mr_cmd_copy_without(cmd, drop, out);
    BSON_APPEND_DOCUMENT_BEGIN(out, "query", &q);
    BSON_APPEND_ARRAY_BEGIN(&q, "$and", &arr);
    BSON_APPEND_DOCUMENT(&arr, "0", query);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "1", &idd);
    BSON_APPEND_VALUE(&idd, "_id", id);
    bson_append_document_end(&arr, &idd);
    bson_append_array_end(&q, &arr);
    bson_append_document_end(out, &q);
}

static bool
keyless(mr_cmd_t *c, uint32_t mask, const bson_t *query, bson_error_t *error)
{
    bson_t sort;
    bson_value_t id;
    int shard = 0;
    bool found = false;
    bool has_sort = mr__get_doc(c->cmd, "sort", &sort);
    if (!mr__find_one_id(c, c->coll, mask, query, has_sort ? &sort : NULL, &id, &shard, &found,
                         error)) {
        return false;
    }
    if (!found) {
        /* Nothing matches: one shard answers (an upsert cannot get here: it needs the key). */
        return mr_forward(c, __builtin_ctz(mask), error);
    }
    bson_t cmd, reply;
    narrowed_command(c->cmd, query, &id, &cmd);
    bson_value_destroy(&id);
    bool ok = mr_shard_run(c->client, shard, &cmd, &reply, error);
    if (ok) {
        bson_concat(c->reply, &reply);
        c->reply_done = true;
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return ok;
}

bool
mr_cmd_find_and_modify(mr_cmd_t *c, bson_error_t *error)
{
    bson_t query = BSON_INITIALIZER;
    bson_iter_t it;
    if (!c->coll) {
        return ms_set_error(error, 73, "collection name has invalid type");
    }
    char *ns = bson_strdup_printf("%s.%s", c->db, c->coll);
    int primary = mr_catalog_primary(c->db);
    mr__get_doc(c->cmd, "query", &query);
    bool upsert = bson_iter_init_find(&it, c->cmd, "upsert") && bson_iter_as_bool(&it);
    mr_catalog_lock();
    mr_coll_t *coll = mr_catalog_coll(ns);
    uint32_t mask = coll ? mr_target_query(coll, &query) : 1u << primary;
    bool full = coll && mr_query_has_full_key(coll, &query);
    mr_catalog_unlock();
    bson_free(ns);
    bool one = __builtin_popcount(mask) == 1;
    if (coll && (upsert ? !full : !one)) {
        if (mr_config.shardkeyless_writes && !upsert) {
            return mr_txn_pin(c->cmd, mask, error) && keyless(c, mask, &query, error);
        }
        return ms_set_error(error, MR_SHARD_KEY_NOT_FOUND,
                            "Query for sharded findAndModify must contain the shard key");
    }
    return mr_txn_pin(c->cmd, mask, error) && mr_forward(c, __builtin_ctz(mask), error);
}

/*
 * Reads through the router (s/commands/cluster_find_cmd.cpp, cluster_aggregate.cpp,
 * cluster_count_cmd.cpp, cluster_distinct_cmd.cpp): a filter that reaches one shard is sent
 * there unchanged; otherwise every shard the filter can reach gets it, with limit + skip as the
 * limit and no skip, and the router merges (cursor.c) and applies skip and limit. An aggregate's
 * leading per-document stages ($match, $project, $addFields, $set, $unset, $replaceRoot,
 * $replaceWith) and a $sort (with the $limit after it) run on the shards; the rest of the
 * pipeline runs on the router over everything the shards returned ($group, $count, $skip, ...).
 * count sums the shards' counts then applies skip and limit; distinct unites the shards' values.
 */
#include "router.h"
#include "write-private.h"

#include <string.h>

#define DEFAULT_BATCH 101

/* The shards a read with this filter goes to (the primary for an unsharded collection). */
static uint32_t
read_mask(mr_cmd_t *c, const bson_t *filter)
{
    char *ns = bson_strdup_printf("%s.%s", c->db, c->coll ? c->coll : "");
    int primary = mr_catalog_primary(c->db);
    mr_catalog_lock();
    mr_coll_t *coll = mr_catalog_coll(ns);
    uint32_t mask = coll ? mr_target_query(coll, filter) : 1u << primary;
    mr_catalog_unlock();
    bson_free(ns);
    return mask;
}

static int64_t
first_batch_size(const bson_t *cmd)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, cmd, "batchSize") && BSON_ITER_HOLDS_NUMBER(&it)) {
        return bson_iter_as_int64(&it);
    }
    if (bson_iter_init_find(&it, cmd, "cursor") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &it) && bson_iter_find(&it, "batchSize")) {
        return bson_iter_as_int64(&it);
    }
    return DEFAULT_BATCH;
}

static const char *
reply_ns(const bson_t *reply, const char *fallback)
{
    bson_t cursor;
    bson_iter_t it;
    if (mr__get_doc(reply, "cursor", &cursor) && bson_iter_init_find(&it, &cursor, "ns") &&
        BSON_ITER_HOLDS_UTF8(&it)) {
        return bson_iter_utf8(&it, NULL);
    }
    return fallback;
}

/* Sends cmd to every shard in mask and adds each reply as a remote of cur. */
static bool
open_remotes(mr_cmd_t *c, mr_cursor_t **out, uint32_t mask, const bson_t *cmd, bson_error_t *error)
{
    char *ns = bson_strdup_printf("%s.%s", c->db, c->coll ? c->coll : "");
    mr_cursor_t *cur = NULL;
    bool ok = true;
    for (int s = 0; ok && s < mr_config.nshards; s++) {
        bson_t reply;
        if (!(mask & (1u << s))) {
            continue;
        }
        ok = mr_shard_run(c->client, s, cmd, &reply, error);
        if (ok && !cur) {
            cur = mr_cursor_new(c->db, reply_ns(&reply, ns));
        }
        ok = ok && mr_cursor_add_remote(cur, s, &reply, error);
        bson_destroy(&reply);
    }
    bson_free(ns);
    if (!ok) {
        mr_cursor_destroy(c->client, cur);
        cur = NULL;
    }
    *out = cur;
    return ok;
}

bool
mr_cmd_cursor_on_primary(mr_cmd_t *c, bson_error_t *error)
{
    mr_cursor_t *cur;
    uint32_t mask = 1u << mr_catalog_primary(c->db);
    return open_remotes(c, &cur, mask, c->cmd, error) &&
           mr_cursor_reply(c, cur, first_batch_size(c->cmd), true, error);
}

/* ---- find ------------------------------------------------------------------------------------ */

static bool
is_config_read(const mr_cmd_t *c)
{
    return strcmp(c->db, "config") == 0 && c->coll &&
           (!strcmp(c->coll, "collections") || !strcmp(c->coll, "chunks") ||
            !strcmp(c->coll, "databases") || !strcmp(c->coll, "shards"));
}

bool
mr_cmd_find(mr_cmd_t *c, bson_error_t *error)
{
    static const char *const drop[] = {"skip", "limit", NULL};
    bson_t filter = BSON_INITIALIZER, sort, cmd;
    bson_iter_t it;
    mr_cursor_t *cur = NULL;
    if (is_config_read(c)) {
        return mr_catalog_config_find(c, error);
    }
    mr__get_doc(c->cmd, "filter", &filter);
    uint32_t mask = read_mask(c, &filter);
    if (!mr_txn_pin(c->cmd, mask, error)) {
        return false;
    }
    if (__builtin_popcount(mask) == 1) {
        return open_remotes(c, &cur, mask, c->cmd, error) &&
               mr_cursor_reply(c, cur, first_batch_size(c->cmd), true, error);
    }
    int64_t skip = bson_iter_init_find(&it, c->cmd, "skip") ? bson_iter_as_int64(&it) : 0;
    int64_t limit = bson_iter_init_find(&it, c->cmd, "limit") ? bson_iter_as_int64(&it) : 0;
    mr_cmd_copy_without(c->cmd, drop, &cmd);
    if (limit > 0) {
        BSON_APPEND_INT64(&cmd, "limit", limit + skip);
    }
    bool ok = open_remotes(c, &cur, mask, &cmd, error);
    bson_destroy(&cmd);
    if (!ok) {
        return false;
    }
    if (mr__get_doc(c->cmd, "sort", &sort) && !bson_empty(&sort) &&
        ms_sort_validate(&sort, NULL)) {
        cur->sort = bson_copy(&sort);
    }
    cur->skip = skip;
    cur->limit = limit > 0 ? limit : -1;
    return mr_cursor_reply(c, cur, first_batch_size(c->cmd), true, error);
}

/* ---- aggregate ------------------------------------------------------------------------------- */

static bool
per_document_stage(const char *name)
{
    static const char *const stages[] = {"$match",       "$project",     "$addFields", "$set",
                                         "$unset",       "$replaceRoot", "$replaceWith", NULL};
    for (size_t k = 0; stages[k]; k++) {
        if (strcmp(name, stages[k]) == 0) {
            return true;
        }
    }
    return false;
}

/* Splits pipeline into the shards' part and the router's; *sort borrows the pushed $sort. */
static void
split_pipeline(const bson_t *pipeline, bson_t *shard_part, bson_t *merge_part, bson_t *sort,
               bool *has_sort, int64_t *limit)
{
    bson_iter_t it;
    char key[24];
    uint32_t ns = 0, nm = 0;
    int phase = 0; /* 0: per-document, 1: after $sort (a $limit may follow), 2: the router's */
    bson_init(shard_part);
    bson_init(merge_part);
    *has_sort = false;
    *limit = -1;
    bson_iter_init(&it, pipeline);
    while (bson_iter_next(&it)) {
        bson_t stage;
        bson_iter_t s;
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        bson_init_static(&stage, data, len);
        bson_iter_init(&s, &stage);
        const char *name = bson_iter_next(&s) ? bson_iter_key(&s) : "";
        if (phase == 0 && !strcmp(name, "$sort") && mr__get_doc(&stage, "$sort", sort)) {
            *has_sort = true;
            phase = 1;
        } else if (phase == 1 && !strcmp(name, "$limit") && *limit < 0) {
            *limit = bson_iter_as_int64(&s);
        } else if (phase == 0 && per_document_stage(name)) {
        } else {
            phase = 2;
            snprintf(key, sizeof key, "%u", nm++);
            BSON_APPEND_DOCUMENT(merge_part, key, &stage);
            continue;
        }
        snprintf(key, sizeof key, "%u", ns++);
        BSON_APPEND_DOCUMENT(shard_part, key, &stage);
    }
}

static bool
first_match(const bson_t *pipeline, bson_t *filter)
{
    bson_iter_t it;
    bson_t stage;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init(&it, pipeline) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return false;
    }
    bson_iter_document(&it, &len, &data);
    bson_init_static(&stage, data, len);
    return mr__get_doc(&stage, "$match", filter);
}

static bool
aggregate_merged(mr_cmd_t *c, uint32_t mask, const bson_t *pipeline, bson_error_t *error)
{
    static const char *const drop[] = {"pipeline", NULL};
    bson_t shard_part, merge_part, sort, cmd;
    bool has_sort;
    int64_t limit;
    mr_cursor_t *cur = NULL;
    bool ok = false;
    split_pipeline(pipeline, &shard_part, &merge_part, &sort, &has_sort, &limit);
    if (!bson_empty(&merge_part) && !ms_pipeline_validate(&merge_part, NULL)) {
        ms_set_error(error, 238, "this pipeline cannot be split over the shards by "
                                 "mongoq-test-router");
        goto done;
    }
    mr_cmd_copy_without(c->cmd, drop, &cmd);
    bson_append_array(&cmd, "pipeline", -1, &shard_part);
    ok = open_remotes(c, &cur, mask, &cmd, error);
    bson_destroy(&cmd);
    if (!ok) {
        goto done;
    }
    cur->sort = has_sort ? bson_copy(&sort) : NULL;
    cur->limit = limit;
    if (!bson_empty(&merge_part)) {
        ms_docvec_t all;
        ms_ctx_t ctx = {.now_ms = mr_now_ms()};
        ok = mr_cursor_drain(c->client, cur, &all, error) &&
             ms_pipeline_run(&merge_part, &all, &ctx, &cur->local, error);
        ms_docvec_destroy(&all);
        cur->use_local = true;
        cur->limit = -1;
    }
    ok = ok ? mr_cursor_reply(c, cur, first_batch_size(c->cmd), true, error)
            : (mr_cursor_destroy(c->client, cur), false);
done:
    bson_destroy(&shard_part);
    bson_destroy(&merge_part);
    return ok;
}

bool
mr_cmd_aggregate(mr_cmd_t *c, bson_error_t *error)
{
    bson_t pipeline = BSON_INITIALIZER, filter = BSON_INITIALIZER;
    mr_cursor_t *cur = NULL;
    if (mr_is_change_stream(c->cmd)) {
        return mr_changestream_open(c, error);
    }
    if (is_config_read(c)) {
        return mr_catalog_config_find(c, error);
    }
    if (!c->coll) {
        return mr_cmd_cursor_on_primary(c, error); /* {aggregate: 1} */
    }
    mr__get_doc(c->cmd, "pipeline", &pipeline);
    first_match(&pipeline, &filter);
    uint32_t mask = read_mask(c, &filter);
    if (!mr_txn_pin(c->cmd, mask, error)) {
        return false;
    }
    if (__builtin_popcount(mask) == 1 || bson_has_field(c->cmd, "explain")) {
        return open_remotes(c, &cur, 1u << __builtin_ctz(mask), c->cmd, error) &&
               mr_cursor_reply(c, cur, first_batch_size(c->cmd), true, error);
    }
    return aggregate_merged(c, mask, &pipeline, error);
}

/* ---- count, distinct ------------------------------------------------------------------------ */

bool
mr_cmd_count(mr_cmd_t *c, bson_error_t *error)
{
    static const char *const drop[] = {"skip", "limit", NULL};
    bson_t query = BSON_INITIALIZER, cmd;
    bson_iter_t it;
    int64_t total = 0;
    mr__get_doc(c->cmd, "query", &query);
    uint32_t mask = read_mask(c, &query);
    if (!mr_txn_pin(c->cmd, mask, error)) {
        return false;
    }
    if (__builtin_popcount(mask) == 1) {
        return mr_forward(c, __builtin_ctz(mask), error);
    }
    int64_t skip = bson_iter_init_find(&it, c->cmd, "skip") ? bson_iter_as_int64(&it) : 0;
    int64_t limit = bson_iter_init_find(&it, c->cmd, "limit") ? bson_iter_as_int64(&it) : 0;
    limit = limit < 0 ? -limit : limit;
    mr_cmd_copy_without(c->cmd, drop, &cmd);
    if (limit > 0) {
        BSON_APPEND_INT64(&cmd, "limit", limit + skip);
    }
    bool ok = true;
    for (int s = 0; ok && s < mr_config.nshards; s++) {
        bson_t reply;
        if (mask & (1u << s)) {
            ok = mr_shard_run(c->client, s, &cmd, &reply, error) && mr_reply_ok(&reply, error);
            total += ok && bson_iter_init_find(&it, &reply, "n") ? bson_iter_as_int64(&it) : 0;
            bson_destroy(&reply);
        }
    }
    bson_destroy(&cmd);
    total = total > skip ? total - skip : 0;
    total = limit > 0 && total > limit ? limit : total;
    if (ok) {
        BSON_APPEND_INT32(c->reply, "n", (int32_t)total);
    }
    return ok;
}

static void
add_distinct(ms_docvec_t *seen, const bson_value_t *v)
{
    for (size_t k = 0; k < seen->len; k++) {
        bson_iter_t it;
        bson_iter_init(&it, seen->docs[k]);
        bson_iter_next(&it);
        if (ms_value_cmp(bson_iter_value(&it), v) == 0) {
            return;
        }
    }
    bson_t *d = bson_new();
    bson_append_value(d, "v", 1, v);
    ms_docvec_push_owned(seen, d);
}

bool
mr_cmd_distinct(mr_cmd_t *c, bson_error_t *error)
{
    bson_t query = BSON_INITIALIZER, values, arr;
    ms_docvec_t seen;
    char key[24];
    mr__get_doc(c->cmd, "query", &query);
    uint32_t mask = read_mask(c, &query);
    if (!mr_txn_pin(c->cmd, mask, error)) {
        return false;
    }
    if (__builtin_popcount(mask) == 1) {
        return mr_forward(c, __builtin_ctz(mask), error);
    }
    bool ok = true;
    ms_docvec_init(&seen);
    for (int s = 0; ok && s < mr_config.nshards; s++) {
        bson_t reply;
        bson_iter_t it;
        if (!(mask & (1u << s))) {
            continue;
        }
        ok = mr_shard_run(c->client, s, c->cmd, &reply, error) && mr_reply_ok(&reply, error);
        if (ok && mr__get_doc(&reply, "values", &values) && bson_iter_init(&it, &values)) {
            while (bson_iter_next(&it)) {
                add_distinct(&seen, bson_iter_value(&it));
            }
        }
        bson_destroy(&reply);
    }
    BSON_APPEND_ARRAY_BEGIN(c->reply, "values", &arr);
    for (size_t k = 0; ok && k < seen.len; k++) {
        bson_iter_t it;
        bson_iter_init(&it, seen.docs[k]);
        bson_iter_next(&it);
        snprintf(key, sizeof key, "%zu", k);
        bson_append_value(&arr, key, -1, bson_iter_value(&it));
    }
    bson_append_array_end(c->reply, &arr);
    ms_docvec_destroy(&seen);
    return ok;
}

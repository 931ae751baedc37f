/*
 * The commands that change a sharded collection's chunks, after mongos's (s/commands/
 * cluster_split_cmd.cpp, cluster_move_chunk_cmd.cpp): split at a `middle` key, which makes two
 * chunks of one on the same shard, and moveChunk, which gives a chunk to another shard in the
 * routing table. No document ever moves: only an empty chunk does (every chunk right after
 * shardCollection and split), after the recipient got the donor's indexes (shard_indexes.c).
 * Chunk lookup and shard key reading are in target.c.
 */
#include "router.h"

#include <string.h>

/* ---- split ---------------------------------------------------------------------------------- */

/* {split: ns, middle: {shard key}}: the chunk holding middle becomes two on the same shard
 * (s/commands/cluster_split_cmd.cpp); find/bounds splits are not done here. */
bool
mr_cmd_split(mr_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    bson_t middle;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, c->cmd, "middle") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, 238, "split without 'middle' is not supported by "
                                        "mongoq-test-router");
    }
    bson_iter_document(&it, &len, &data);
    bson_init_static(&middle, data, len);
    mr_catalog_lock();
    mr_coll_t *coll = c->coll ? mr_catalog_coll(c->coll) : NULL;
    bool ok = coll && (int)bson_count_keys(&middle) == coll->nfields;
    if (ok) {
        size_t k = mr_chunk_for_key(coll, &middle);
        ok = mr_key_cmp(&middle, coll->chunks[k].min) != 0;
        if (ok) {
            coll->chunks = bson_realloc(coll->chunks, (coll->nchunks + 1) * sizeof *coll->chunks);
            memmove(&coll->chunks[k + 2], &coll->chunks[k + 1],
                    (coll->nchunks - k - 1) * sizeof *coll->chunks);
            coll->nchunks++;
            mr_chunk_t *lo = &coll->chunks[k];
            mr_chunk_t *hi = &coll->chunks[k + 1];
            hi->shard = lo->shard;
            hi->min = bson_copy(&middle);
            hi->max = lo->max;
            lo->max = bson_copy(&middle);
        }
    }
    mr_catalog_unlock();
    if (!ok) {
        return ms_set_error(error, 2, "cannot split %s at that key", c->coll ? c->coll : "");
    }
    return true;
}

/* ---- moveChunk ------------------------------------------------------------------------------ */

/*
 * The chunk a moveChunk names: `find` (an equality on every shard key field, hashed where the
 * key is: ShardKeyPattern::extractShardKeyFromQuery) or `bounds` ([min, max] exactly a chunk's),
 * never both (s/commands/cluster_move_chunk_cmd.cpp). With the catalog locked; -1 and *error.
 */
static long
move_chunk_target(const mr_coll_t *coll, const bson_t *cmd, bson_error_t *error)
{
    bson_iter_t it, arr;
    bson_t find, lo, hi;
    uint32_t len;
    const uint8_t *data;
    bool has_find = bson_iter_init_find(&it, cmd, "find") && BSON_ITER_HOLDS_DOCUMENT(&it);
    if (has_find) {
        bson_iter_document(&it, &len, &data);
        bson_init_static(&find, data, len);
        has_find = !bson_empty(&find);
    }
    bool has_bounds = bson_iter_init_find(&it, cmd, "bounds") && BSON_ITER_HOLDS_ARRAY(&it);
    if (has_find == has_bounds) {
        ms_set_error(error, 2, "need to specify either a find query, or both lower and upper "
                               "bounds.");
        return -1;
    }
    if (has_find) {
        bson_t key = BSON_INITIALIZER;
        bson_value_t v;
        bool full = true;
        for (int k = 0; full && k < coll->nfields; k++) {
            full = mr_find_equality(&find, coll->fields[k], &v);
            if (full && k == coll->hashed_field) {
                BSON_APPEND_INT64(&key, coll->fields[k], mr_hash_value(&v));
            } else if (full) {
                bson_append_value(&key, coll->fields[k], -1, &v);
            }
        }
        long found = full ? (long)mr_chunk_for_key(coll, &key) : -1;
        bson_destroy(&key);
        if (!full) {
            char *json = bson_as_relaxed_extended_json(&find, NULL);
            ms_set_error(error, 2, "no shard key found in chunk query %s", json);
            bson_free(json);
        }
        return found;
    }
    bool two = bson_iter_recurse(&it, &arr) && bson_iter_next(&arr) &&
               BSON_ITER_HOLDS_DOCUMENT(&arr);
    if (two) {
        bson_iter_document(&arr, &len, &data);
        bson_init_static(&lo, data, len);
        two = bson_iter_next(&arr) && BSON_ITER_HOLDS_DOCUMENT(&arr);
    }
    if (two) {
        bson_iter_document(&arr, &len, &data);
        bson_init_static(&hi, data, len);
        two = !bson_iter_next(&arr) && (int)bson_count_keys(&lo) == coll->nfields &&
              (int)bson_count_keys(&hi) == coll->nfields;
    }
    for (size_t k = 0; two && k < coll->nchunks; k++) {
        if (mr_key_cmp(&lo, coll->chunks[k].min) == 0 && mr_key_cmp(&hi, coll->chunks[k].max) == 0) {
            return (long)k;
        }
    }
    ms_set_error(error, 2, "no chunk found with the shard key bounds given (bounds must be "
                           "exactly one chunk's [min, max))");
    return -1;
}

/* Whether the shard holds a document whose shard key falls in coll_copy's one chunk (a copy,
 * so the catalog may change meanwhile). Reads every document's key fields from the shard. */
static bool
chunk_has_documents(mr_cmd_t *c, const mr_coll_t *coll_copy, int shard, bool *has,
                    bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, proj, reply;
    const char *dot = strchr(coll_copy->ns, '.');
    char *db = bson_strndup(coll_copy->ns, (size_t)(dot - coll_copy->ns));
    ms_docvec_t docs;
    ms_docvec_init(&docs);
    BSON_APPEND_UTF8(&cmd, "find", dot + 1);
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "projection", &proj);
    BSON_APPEND_INT32(&proj, "_id", 0);
    for (int k = 0; k < coll_copy->nfields; k++) {
        if (strcmp(coll_copy->fields[k], "_id") != 0) {
            BSON_APPEND_INT32(&proj, coll_copy->fields[k], 1);
        }
    }
    bson_append_document_end(&cmd, &proj);
    BSON_APPEND_UTF8(&cmd, "$db", db);
    mr_cursor_t *cur = mr_cursor_new(db, coll_copy->ns);
    bool ok = mr_shard_run(c->client, shard, &cmd, &reply, error) &&
              mr_reply_ok(&reply, error) && mr_cursor_add_remote(cur, shard, &reply, error) &&
              mr_cursor_drain(c->client, cur, &docs, error);
    *has = false;
    for (size_t k = 0; ok && !*has && k < docs.len; k++) {
        bson_t key;
        mr_extract_key(coll_copy, docs.docs[k], &key);
        *has = mr_key_cmp(&key, coll_copy->chunks[0].min) >= 0 &&
               mr_key_cmp(&key, coll_copy->chunks[0].max) < 0;
        bson_destroy(&key);
    }
    mr_cursor_destroy(c->client, cur);
    ms_docvec_destroy(&docs);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    bson_free(db);
    return ok;
}

/*
 * {moveChunk: ns, find: {key} | bounds: [min, max], to: shard}: the chunk's owner becomes `to`
 * in the routing table. The router migrates no documents: a chunk that holds any (on its shard)
 * is refused with NotImplemented; an empty chunk (every chunk right after shardCollection and
 * split) moves by updating the table, which is all a migration of nothing does on a cluster.
 * mongod's errors: ShardNotFound for an unknown `to`, InvalidOptions "Destination shard cannot
 * be the same as source" (s/migration_source_manager.cpp) for the chunk's own shard.
 */
bool
mr_cmd_move_chunk(mr_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    if (strcmp(c->db, "admin") != 0) {
        return ms_set_error(error, 13, "moveChunk may only be run against the admin database.");
    }
    if (!c->coll || !strchr(c->coll, '.')) {
        return ms_set_error(error, 73, "Invalid namespace specified '%s'", c->coll ? c->coll : "");
    }
    if (!bson_iter_init_find(&it, c->cmd, "to") || !BSON_ITER_HOLDS_UTF8(&it)) {
        return ms_set_error(error, 14, "'to' must be of type String");
    }
    const char *to_name = bson_iter_utf8(&it, NULL);
    int to = -1;
    for (int k = 0; k < mr_config.nshards; k++) {
        to = strcmp(mr_config.shard_set[k], to_name) == 0 ? k : to;
    }
    if (to < 0) {
        return ms_set_error(error, 70, "Could not move chunk in '%s' to shard '%s' because that "
                                       "shard does not exist", c->coll, to_name);
    }
    /* The chunk, copied out: a one-chunk collection of its bounds to test documents against. */
    mr_coll_t probe = {0};
    mr_chunk_t chunk = {0};
    int from = -1;
    mr_catalog_lock();
    mr_coll_t *coll = mr_catalog_coll(c->coll);
    long k = coll ? move_chunk_target(coll, c->cmd, error) : -1;
    if (!coll) {
        ms_set_error(error, 118, "Collection %s is not sharded.", c->coll);
    }
    if (k >= 0) {
        from = coll->chunks[k].shard;
        probe = *coll;
        probe.ns = bson_strdup(coll->ns);
        probe.fields = bson_malloc0((size_t)coll->nfields * sizeof *probe.fields);
        for (int f = 0; f < coll->nfields; f++) {
            probe.fields[f] = bson_strdup(coll->fields[f]);
        }
        chunk.min = bson_copy(coll->chunks[k].min);
        chunk.max = bson_copy(coll->chunks[k].max);
        chunk.shard = from;
        probe.key = bson_copy(coll->key);
        probe.chunks = &chunk;
        probe.nchunks = 1;
    }
    mr_catalog_unlock();
    bool ok = k >= 0;
    if (ok && from == to) {
        ok = ms_set_error(error, 72, "Destination shard cannot be the same as source");
    }
    bool has = false;
    ok = ok && chunk_has_documents(c, &probe, from, &has, error);
    if (ok && has) {
        ok = ms_set_error(error, 238, "mongoq-test-router does not migrate documents: the chunk "
                                      "of %s on %s holds documents (only empty chunks move)",
                          c->coll, mr_config.shard_set[from]);
    }
    if (ok) {
        /* The recipient clones the donor's indexes first, as a migration does. */
        const char *dot = strchr(c->coll, '.');
        char *db = bson_strndup(c->coll, (size_t)(dot - c->coll));
        ok = mr_copy_indexes(c->client, db, dot + 1, from, to, error);
        bson_free(db);
    }
    if (ok) {
        /* Moved, unless the table changed meanwhile (a split, a drop, another move). */
        mr_catalog_lock();
        coll = mr_catalog_coll(c->coll);
        size_t j = 0;
        while (coll && j < coll->nchunks && mr_key_cmp(coll->chunks[j].min, chunk.min) != 0) {
            j++;
        }
        ok = coll && j < coll->nchunks && mr_key_cmp(coll->chunks[j].max, chunk.max) == 0 &&
             coll->chunks[j].shard == from;
        if (ok) {
            coll->chunks[j].shard = to;
        }
        mr_catalog_unlock();
        if (!ok) {
            ms_set_error(error, 117, "the chunk of %s changed during moveChunk", c->coll);
        }
    }
    if (ok) {
        BSON_APPEND_INT32(c->reply, "millis", 0);
    }
    if (k >= 0) {
        for (int f = 0; f < probe.nfields; f++) {
            bson_free(probe.fields[f]);
        }
        bson_free(probe.fields);
        bson_free(probe.ns);
        bson_destroy(probe.key);
        bson_destroy(chunk.min);
        bson_destroy(chunk.max);
    }
    return ok;
}

/*
 * Index commands: createIndexes, listIndexes, dropIndexes, with mongod 6.0's conflict rules
 * and replies.
 */
#include "store-private.h"

#include <string.h>

/* A conflict error naming both specs as mongod prints them (BSONObj::toString). */
static bool
conflict(bson_error_t *error, int code, const char *what, const ms_index_t *requested,
         const ms_index_t *existing)
{
    char *a = ms_render_doc(requested->spec);
    char *b = ms_render_doc(existing->spec);
    ms_set_error(error, code, "%s Requested index: %s, existing index: %s", what, a, b);
    bson_free(a);
    bson_free(b);
    return false;
}

/*
 * mongod 6.0's IndexCatalogImpl::_doesSpecConflictWithExisting
 * (src/mongo/db/catalog/index_catalog_impl.cpp): first the index of the same name (another
 * key pattern or signature: IndexKeySpecsConflict 86; other options: IndexOptionsConflict 85;
 * identical: nothing to do), then an index of the same key pattern and signature under another
 * name (85). Indexes on one key pattern with different signatures (unique, sparse, partial
 * filter) may coexist. *exists: an identical index is already there.
 */
static bool
compare_existing(const ms_coll_t *coll, const ms_index_t *ix, bool *exists, bson_error_t *error)
{
    *exists = false;
    const ms_index_t *same_name = ms_coll_index_by_name(coll, ix->name);
    if (same_name) {
        switch (ms_index_compare(ix, same_name)) {
        case MS_INDEX_DIFFERENT:
            return conflict(error, MS_ERR_INDEX_KEY_SPECS_CONFLICT,
                            "An existing index has the same name as the requested "
                            "index. When index names are not specified, they are auto "
                            "generated and can cause conflicts. Please refer to our "
                            "documentation.",
                            ix, same_name);
        case MS_INDEX_EQUIVALENT:
            return conflict(error, MS_ERR_INDEX_OPTIONS_CONFLICT,
                            "An equivalent index already exists with the same name "
                            "but different options.",
                            ix, same_name);
        case MS_INDEX_IDENTICAL:
            *exists = true;
            return true;
        }
    }
    for (size_t i = 0; i < coll->nindexes; i++) {
        const ms_index_t *old = coll->indexes[i];
        ms_index_cmp_t cmp = ms_index_compare(ix, old);
        if (cmp == MS_INDEX_EQUIVALENT) {
            return conflict(error, MS_ERR_INDEX_OPTIONS_CONFLICT,
                            "An equivalent index already exists with a different "
                            "name and options.",
                            ix, old);
        }
        if (cmp == MS_INDEX_IDENTICAL) {
            return ms_set_error(error, MS_ERR_INDEX_OPTIONS_CONFLICT,
                                "Index already exists with a different name: %s", old->name);
        }
    }
    return true;
}

static bool
index_specs(const ms_cmd_t *c, bson_iter_t *specs, bson_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->cmd, "indexes") || !BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'createIndexes.indexes' is missing but a "
                            "required field");
    }
    bson_iter_recurse(&it, specs);
    return true;
}

static ms_index_t *
parse_spec(const bson_iter_t *it, bson_error_t *error)
{
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                     "The elements of the 'indexes' array must be objects");
        return NULL;
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(it, &len, &data);
    bson_t spec;
    bson_init_static(&spec, data, len);
    if (!bson_has_field(&spec, "name")) {
        ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                     "Error in specification %s :: caused by :: The 'name' field is a "
                     "required property of an index specification",
                     "{...}");
        return NULL;
    }
    return ms_index_new(&spec, error);
}

static bool
create_one(ms_wctx_t *w, ms_coll_t *coll, const bson_iter_t *it, bool *created,
           bson_error_t *error)
{
    bool exists;
    *created = false;
    ms_index_t *ix = parse_spec(it, error);
    if (!ix) {
        return false;
    }
    if (!compare_existing(coll, ix, &exists, error)) {
        ms_index_destroy(ix);
        return false;
    }
    if (exists) {
        ms_index_destroy(ix);
        return true;
    }
    ms_txn_before_live_write(coll->db, coll->name, NULL);
    bson_t *spec = bson_copy(ix->spec);
    if (!ms_coll_add_index(coll, ix, error)) {
        ms_index_destroy(ix);
        bson_destroy(spec);
        return false;
    }
    ms_wctx_log(w, MS_OP_CREATE_INDEX, coll->name, spec);
    bson_destroy(spec);
    *created = true;
    return true;
}

/*
 * createIndexes in a transaction (mongod 4.4+, src/mongo/db/commands/create_indexes_cmd.cpp):
 * only on a collection that does not exist yet (created by it) or that this transaction created
 * and is still empty; the indexes are built in the transaction's snapshot and on the live
 * collection at commit.
 */
static bool
create_indexes_in_txn(ms_cmd_t *c, const char *name, bson_iter_t *specs, bson_t *reply,
                      bson_error_t *error)
{
    ms_coll_t *coll = ms_txn_view(c->txn, c->db, name, false, NULL);
    bool auto_created = coll == NULL;
    if (coll && !ms_txn_created_coll(c->txn, c->db, name)) {
        return ms_set_error(error, MS_ERR_OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
                            "Cannot create new indexes on existing collection %s.%s in a "
                            "multi-document transaction.",
                            c->db, name);
    }
    if (coll && coll->count > 0) {
        return ms_set_error(error, MS_ERR_OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
                            "Cannot create new indexes on non-empty collection %s.%s in a "
                            "multi-document transaction.",
                            c->db, name);
    }
    if (!coll && !(coll = ms_txn_view(c->txn, c->db, name, true, error))) {
        return false;
    }
    size_t before = coll->nindexes;
    while (bson_iter_next(specs)) {
        bool exists;
        ms_index_t *ix = parse_spec(specs, error);
        if (!ix || !compare_existing(coll, ix, &exists, error)) {
            ms_index_destroy(ix);
            return false;
        }
        if (exists) {
            ms_index_destroy(ix);
            continue;
        }
        bson_t *spec = bson_copy(ix->spec);
        if (!ms_coll_add_index(coll, ix, error)) {
            ms_index_destroy(ix);
            bson_destroy(spec);
            return false;
        }
        ms_txn_record(c->txn, MS_OP_CREATE_INDEX, c->db, name, NULL, spec, NULL);
        bson_destroy(spec);
    }
    BSON_APPEND_INT32(reply, "numIndexesBefore", (int32_t)before);
    BSON_APPEND_INT32(reply, "numIndexesAfter", (int32_t)coll->nindexes);
    BSON_APPEND_BOOL(reply, "createdCollectionAutomatically", auto_created);
    return true;
}

MS_HANDLER(create_indexes)
{
    static const char *const allowed[] = {"indexes", "commitQuorum", "ignoreUnknownIndexOptions",
                                          "isTimeseriesNamespace", NULL};
    bson_iter_t specs;
    ms_wctx_t w;
    bool ok = false;
    int created_count = 0;
    const char *name = ms_admin_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) || !index_specs(c, &specs, error)) {
        return false;
    }
    if (c->txn) {
        return create_indexes_in_txn(c, name, &specs, reply, error);
    }
    ms_wctx_init(&w, NULL);
    w.db = c->db;
    ms_coll_t *coll = ms_store_coll(c->db, name);
    bool auto_created = coll == NULL;
    if (!coll && !(coll = ms_wctx_coll(&w, name, true, error))) {
        goto done;
    }
    size_t before = coll->nindexes;
    while (bson_iter_next(&specs)) {
        bool created;
        if (!create_one(&w, coll, &specs, &created, error)) {
            goto commit;
        }
        created_count += created;
    }
    BSON_APPEND_INT32(reply, "numIndexesBefore", (int32_t)before);
    BSON_APPEND_INT32(reply, "numIndexesAfter", (int32_t)coll->nindexes);
    BSON_APPEND_BOOL(reply, "createdCollectionAutomatically", auto_created);
    if (created_count == 0) {
        BSON_APPEND_UTF8(reply, "note", "all indexes already exist");
    }
    ok = true;
commit:
    /* Whatever was created before an error is committed, as on mongod. */
    if (!ms_wctx_commit(&w, ok ? error : NULL)) {
        ok = false;
    }
done:
    ms_wctx_destroy(&w);
    return ok;
}

MS_HANDLER(list_indexes)
{
    static const char *const allowed[] = {"cursor", "includeBuildUUIDs", "includeIndexBuildInfo",
                                          NULL};
    int64_t batch_size;
    ms_docvec_t results;
    const char *name = ms_admin_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) || !ms_admin_cursor_batch_size(c, &batch_size, error)) {
        return false;
    }
    ms_wctx_t w;
    ms_wctx_init(&w, c);
    ms_coll_t *coll = ms_wctx_coll(&w, name, false, NULL);
    ms_wctx_destroy(&w);
    if (!coll) {
        return ms_set_error(error, MS_ERR_NAMESPACE_NOT_FOUND, "ns does not exist: %s.%s", c->db,
                            name);
    }
    ms_docvec_init(&results);
    for (size_t i = 0; i < coll->nindexes; i++) {
        ms_docvec_push_copy(&results, coll->indexes[i]->spec);
    }
    char *ns = bson_strdup_printf("%s.$cmd.listIndexes.%s", c->db, name);
    ms_cursor_reply(c, reply, ns, &results, batch_size);
    bson_free(ns);
    ms_docvec_destroy(&results);
    return true;
}

static ms_index_t *
index_by_arg(const ms_coll_t *coll, const bson_iter_t *it, bson_error_t *error)
{
    ms_index_t *ix = NULL;
    if (BSON_ITER_HOLDS_UTF8(it)) {
        const char *n = bson_iter_utf8(it, NULL);
        ix = ms_coll_index_by_name(coll, n);
        if (!ix) {
            ms_set_error(error, MS_ERR_INDEX_NOT_FOUND, "index not found with name [%s]", n);
        }
    } else if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(it, &len, &data);
        bson_t key;
        bson_init_static(&key, data, len);
        for (size_t i = 0; i < coll->nindexes && !ix; i++) {
            if (bson_equal(coll->indexes[i]->key, &key)) {
                ix = coll->indexes[i];
            }
        }
        if (!ix) {
            char *j = bson_as_relaxed_extended_json(&key, NULL);
            ms_set_error(error, MS_ERR_INDEX_NOT_FOUND, "can't find index with key: %s", j);
            bson_free(j);
        }
    } else {
        ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                     "BSON field 'dropIndexes.index' is the wrong type");
    }
    if (ix && ix == coll->indexes[0]) {
        ms_set_error(error, MS_ERR_INVALID_OPTIONS, "cannot drop _id index");
        ix = NULL;
    }
    return ix;
}

static void
drop_one(ms_wctx_t *w, ms_coll_t *coll, ms_index_t *ix)
{
    bson_t spec = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&spec, "name", ix->name);
    ms_txn_before_live_write(coll->db, coll->name, NULL);
    ms_coll_drop_index(coll, ix);
    ms_wctx_log(w, MS_OP_DROP_INDEX, coll->name, &spec);
    bson_destroy(&spec);
}

static bool
drop_indexes_arg(ms_wctx_t *w, ms_coll_t *coll, bson_iter_t *it, bson_error_t *error)
{
    if (BSON_ITER_HOLDS_UTF8(it) && strcmp(bson_iter_utf8(it, NULL), "*") == 0) {
        while (coll->nindexes > 1) {
            drop_one(w, coll, coll->indexes[coll->nindexes - 1]);
        }
        return true;
    }
    if (BSON_ITER_HOLDS_ARRAY(it)) {
        bson_iter_t child;
        bson_iter_recurse(it, &child);
        /* Check every name first: all or nothing. */
        while (bson_iter_next(&child)) {
            if (!index_by_arg(coll, &child, error)) {
                return false;
            }
        }
        bson_iter_recurse(it, &child);
        while (bson_iter_next(&child)) {
            drop_one(w, coll, index_by_arg(coll, &child, NULL));
        }
        return true;
    }
    ms_index_t *ix = index_by_arg(coll, it, error);
    if (!ix) {
        return false;
    }
    drop_one(w, coll, ix);
    return true;
}

MS_HANDLER(drop_indexes)
{
    static const char *const allowed[] = {"index", NULL};
    bson_iter_t it;
    ms_wctx_t w;
    const char *name = ms_admin_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error)) {
        return false;
    }
    if (!bson_iter_init_find(&it, c->cmd, "index")) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'dropIndexes.index' is missing but a "
                            "required field");
    }
    ms_coll_t *coll = ms_store_coll(c->db, name);
    if (!coll) {
        return ms_set_error(error, MS_ERR_NAMESPACE_NOT_FOUND, "ns not found %s.%s", c->db, name);
    }
    BSON_APPEND_INT32(reply, "nIndexesWas", (int32_t)coll->nindexes);
    ms_wctx_init(&w, NULL);
    w.db = c->db;
    bool ok = drop_indexes_arg(&w, coll, &it, error);
    if (!ms_wctx_commit(&w, ok ? error : NULL)) {
        ok = false;
    }
    ms_wctx_destroy(&w);
    return ok;
}

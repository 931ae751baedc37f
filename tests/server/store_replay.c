/*
 * The oplog's side of the store: applying journaled operations at start-up (ms_store_replay)
 * and the lookups change streams make for updateLookup (ms_store_lookup).
 */
#include "store-private.h"

#include <string.h>

static bool
replay_doc_op(const ms_op_t *op, bson_error_t *error)
{
    ms_coll_t *c = ms_store_coll(op->db, op->coll);
    if (!c) {
        c = ms_store_create_coll(op->db, op->coll, NULL);
    }
    bson_iter_t it;
    bson_value_t id = {0};
    if (op->document_key && bson_iter_init_find(&it, op->document_key, "_id")) {
        id = *bson_iter_value(&it);
    }
    ms_rec_t *rec = id.value_type ? ms_coll_find_id(c, &id) : NULL;
    if (op->type == MS_OP_DELETE) {
        if (rec) {
            ms_coll_remove(c, rec);
        }
        return true;
    }
    if (!op->full_document) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "journal entry without a document");
    }
    ms_doc_t *doc = ms_doc_new(op->full_document);
    bool ok = rec ? ms_coll_replace(c, rec, doc, error) : ms_coll_insert(c, doc, &rec, error);
    if (ok) {
        rec->seq = ms_store_next_seq();
    }
    ms_doc_unref(doc);
    return ok;
}

static bool
replay_index_op(const ms_op_t *op, bson_error_t *error)
{
    ms_coll_t *c = ms_store_coll(op->db, op->coll);
    bson_iter_t it;
    if (!op->spec || !bson_iter_init_find(&it, op->spec, "name") || !BSON_ITER_HOLDS_UTF8(&it)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "journal index entry without a name");
    }
    const char *name = bson_iter_utf8(&it, NULL);
    if (op->type == MS_OP_DROP_INDEX) {
        ms_index_t *ix = c ? ms_coll_index_by_name(c, name) : NULL;
        if (ix && ix != c->indexes[0]) {
            ms_coll_drop_index(c, ix);
        }
        return true;
    }
    if (!c) {
        c = ms_store_create_coll(op->db, op->coll, NULL);
    }
    if (ms_coll_index_by_name(c, name)) {
        return true;
    }
    ms_index_t *ix = ms_index_new(op->spec, error);
    if (!ix) {
        return false;
    }
    if (!ms_coll_add_index(c, ix, error)) {
        ms_index_destroy(ix);
        return false;
    }
    return true;
}

/* collMod {validator?, validationLevel?, validationAction?}: the collection's new options. */
static void
replay_validation(ms_coll_t *c, const bson_t *changes)
{
    bson_t options;
    ms_validation_merge(c->options, changes, &options);
    bson_destroy(c->options);
    c->options = bson_copy(&options);
    ms_coll_validation_init(c);
    bson_destroy(&options);
}

/* collMod: {index: {name | keyPattern, expireAfterSeconds}} or validation fields. */
static bool
replay_coll_mod(const ms_op_t *op, bson_error_t *error)
{
    bson_iter_t it, index;
    ms_coll_t *c = ms_store_coll(op->db, op->coll);
    ms_index_t *ix = NULL;
    size_t n = 0;
    if (c && op->spec && bson_iter_init_find(&it, op->spec, "changeStreamPreAndPostImages") &&
        bson_iter_recurse(&it, &index) && bson_iter_find(&index, "enabled")) {
        ms_coll_set_pre_post_images(c, bson_iter_as_bool(&index));
        return true;
    }
    if (c && op->spec && !bson_has_field(op->spec, "index")) {
        replay_validation(c, op->spec);
        return true;
    }
    if (!c || !op->spec || !bson_iter_init_find(&it, op->spec, "index") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &index)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "journal collMod entry without its collection or index");
    }
    int64_t secs = -1;
    while (bson_iter_next(&index)) {
        const char *k = bson_iter_key(&index);
        if (strcmp(k, "name") == 0 && BSON_ITER_HOLDS_UTF8(&index)) {
            ix = ms_coll_index_by_name(c, bson_iter_utf8(&index, NULL));
        } else if (strcmp(k, "keyPattern") == 0 && BSON_ITER_HOLDS_DOCUMENT(&index)) {
            uint32_t len;
            const uint8_t *data;
            bson_t key;
            bson_iter_document(&index, &len, &data);
            bson_init_static(&key, data, len);
            ix = ms_coll_index_by_key(c, &key, &n);
        } else if (strcmp(k, "expireAfterSeconds") == 0 && BSON_ITER_HOLDS_NUMBER(&index)) {
            secs = bson_iter_as_int64(&index);
        }
    }
    if (!ix || secs < 0) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "journal collMod entry names no index or no TTL");
    }
    ms_index_set_ttl(ix, secs);
    return true;
}

/* renameCollection: the target (if dropTarget) dropped, the source renamed. */
static bool
replay_rename(const ms_op_t *op, bson_error_t *error)
{
    bson_iter_t it;
    ms_coll_t *c = ms_store_coll(op->db, op->coll);
    if (!op->spec || !bson_iter_init_find(&it, op->spec, "to") || !BSON_ITER_HOLDS_UTF8(&it)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "journal rename entry names no target");
    }
    const char *to = bson_iter_utf8(&it, NULL);
    ms_coll_t *target = ms_store_coll(op->db, to);
    if (target) {
        ms_store_drop_coll(target);
    }
    if (c) {
        ms_store_rename_coll(c, to);
    }
    return true;
}

bool
ms_store_replay(const ms_op_t *op, bson_error_t *error)
{
    ms_coll_t *c;
    switch (op->type) {
    case MS_OP_INSERT:
    case MS_OP_UPDATE:
    case MS_OP_REPLACE:
    case MS_OP_DELETE:
        return replay_doc_op(op, error);
    case MS_OP_CREATE:
        if (!ms_store_coll(op->db, op->coll)) {
            ms_store_create_coll(op->db, op->coll, op->spec);
        }
        return true;
    case MS_OP_DROP:
        c = ms_store_coll(op->db, op->coll);
        if (c) {
            ms_store_drop_coll(c);
        }
        return true;
    case MS_OP_DROP_DATABASE:
        ms_store_drop_db(op->db);
        return true;
    case MS_OP_CREATE_INDEX:
    case MS_OP_DROP_INDEX:
        return replay_index_op(op, error);
    case MS_OP_COLL_MOD:
        return replay_coll_mod(op, error);
    case MS_OP_RENAME:
        return replay_rename(op, error);
    case MS_OP_RETRY_RESULT:
        if (!op->lsid || !op->spec) {
            return ms_set_error(error, MS_ERR_BAD_VALUE,
                                "journal retryable write result without its session");
        }
        ms_session_restore_retry(op->lsid, op->txn_number, op->spec);
        return true;
    }
    return ms_set_error(error, MS_ERR_BAD_VALUE, "unknown journal operation %d", (int)op->type);
}

bool
ms_store_lookup(const char *db, const char *coll, const bson_value_t *id, bson_t *out)
{
    bool found = false;
    ms_store_lock();
    ms_coll_t *c = ms_store_coll(db, coll);
    ms_rec_t *rec = c ? ms_coll_find_id(c, id) : NULL;
    if (rec) {
        bson_t view;
        ms_doc_view(rec->doc, &view);
        bson_copy_to(&view, out);
        found = true;
    } else {
        bson_init(out);
    }
    ms_store_unlock();
    return found;
}

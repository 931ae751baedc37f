/*
 * The write context: one command's writes, either to the live store (recorded for the oplog and
 * committed by ms_wctx_commit before the reply) or to a transaction's snapshot (recorded in the
 * transaction and applied to the live store at commitTransaction).
 */
#include "store-private.h"

#include <string.h>

/* The lsid document of a retryable write ({id: UUID}), or NULL when c is not one. */
static bson_t *
retry_lsid(const ms_cmd_t *c)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!c || !c->has_lsid || !c->has_txn_number || c->in_txn ||
        !bson_iter_init_find(&it, c->cmd, "lsid") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return NULL;
    }
    bson_iter_document(&it, &len, &data);
    return bson_new_from_data(data, len);
}

void
ms_wctx_init(ms_wctx_t *w, ms_cmd_t *c)
{
    memset(w, 0, sizeof *w);
    w->txn = c ? c->txn : NULL;
    w->db = c ? c->db : NULL;
    w->retry_lsid = retry_lsid(c);
    w->retry_txn_number = c ? c->txn_number : 0;
    w->cmd = c;
    bson_iter_t it;
    w->bypass_validation = !c || (bson_iter_init_find(&it, c->cmd, "bypassDocumentValidation") &&
                                  ms_true_value(bson_iter_value(&it)));
}

static bson_t *
own(ms_wctx_t *w, const bson_t *b)
{
    if (!b) {
        return NULL;
    }
    if (w->nowned == w->owned_cap) {
        w->owned_cap = w->owned_cap ? w->owned_cap * 2 : 16;
        w->owned = bson_realloc(w->owned, sizeof *w->owned * w->owned_cap);
    }
    bson_t *copy = bson_copy(b);
    w->owned[w->nowned++] = copy;
    return copy;
}

static char *
own_str(ms_wctx_t *w, const char *s)
{
    if (!s) {
        return NULL;
    }
    /* Batches name the same namespace over and over: reuse the previous op's copy. */
    if (w->nops > 1) {
        const ms_op_t *prev = &w->ops[w->nops - 2];
        if (prev->db && strcmp(prev->db, s) == 0) {
            return (char *)prev->db;
        }
        if (prev->coll && strcmp(prev->coll, s) == 0) {
            return (char *)prev->coll;
        }
    }
    /* Strings ride in a tiny document so one owner list frees everything. */
    bson_t tmp = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&tmp, "s", s);
    bson_t *b = own(w, &tmp);
    bson_destroy(&tmp);
    bson_iter_t it;
    bson_iter_init_find(&it, b, "s");
    return (char *)bson_iter_utf8(&it, NULL);
}

static void
log_op(ms_wctx_t *w, ms_op_type_t type, const char *db, const char *coll, const bson_t *key,
       const bson_t *full, const bson_t *desc, const bson_t *spec)
{
    if (w->nops == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 16;
        w->ops = bson_realloc(w->ops, sizeof *w->ops * w->cap);
    }
    ms_op_t *op = &w->ops[w->nops++];
    memset(op, 0, sizeof *op);
    op->type = type;
    op->lsid = w->lsid;
    op->txn_number = w->txn_number;
    op->db = own_str(w, db);
    op->coll = own_str(w, coll);
    op->document_key = own(w, key);
    op->full_document = own(w, full);
    op->update_description = own(w, desc);
    op->spec = own(w, spec);
}

/*
 * onPrimaryTransactionalWrite, for each document a retryable write writes (mongod: once the
 * write is logged, before its unit of work commits): false with the fail point's code when the
 * write must not be made; a connection to close is closed after the reply is recorded.
 */
static bool
primary_write_fail_point(ms_wctx_t *w, bson_error_t *error)
{
    ms_failpoint_hit_t hit;
    bool ok = true;
    if (!w->retry_lsid || w->txn || !w->cmd ||
        !ms_failpoint_check(MS_FP_ON_PRIMARY_TRANSACTIONAL_WRITE, w->cmd->command, w->cmd->conn,
                            NULL, &hit)) {
        return true;
    }
    if (hit.close_connection) {
        w->cmd->close_connection = true;
    }
    if (hit.error_code) {
        w->cmd->retry_unrecorded = true;
        ok = ms_set_error(error, hit.error_code,
                          "Failing write for txnNumber %lld due to failpoint. The write must "
                          "not be reflected.",
                          (long long)w->retry_txn_number);
    }
    ms_failpoint_hit_destroy(&hit);
    return ok;
}

/* The last logged op's pre-image, when c records them (changeStreamPreAndPostImages). */
static void
keep_pre_image(ms_wctx_t *w, const ms_coll_t *c, const bson_t *before)
{
    if (ms_coll_pre_post_images(c)) {
        w->ops[w->nops - 1].pre_image = own(w, before);
    }
}

static void
id_key(const bson_t *doc, bson_t *key, bson_value_t *id)
{
    bson_iter_t it;
    bson_init(key);
    memset(id, 0, sizeof *id);
    if (bson_iter_init_find(&it, doc, "_id")) {
        *id = *bson_iter_value(&it);
        bson_append_value(key, "_id", 3, id);
    }
}

void
ms_wctx_log(ms_wctx_t *w, ms_op_type_t type, const char *coll, const bson_t *spec)
{
    log_op(w, type, w->db, coll, NULL, NULL, NULL, spec);
}

ms_coll_t *
ms_wctx_create_coll(ms_wctx_t *w, const char *coll, const bson_t *options, bson_error_t *error)
{
    if (!ms_valid_coll_name(w->db, coll, error)) {
        return NULL;
    }
    ms_txn_before_live_write(w->db, coll, NULL);
    ms_coll_t *c = ms_store_create_coll(w->db, coll, options);
    bson_t empty = BSON_INITIALIZER;
    log_op(w, MS_OP_CREATE, w->db, coll, NULL, NULL, NULL, options ? options : &empty);
    bson_destroy(&empty);
    return c;
}

ms_coll_t *
ms_wctx_coll(ms_wctx_t *w, const char *coll, bool create, bson_error_t *error)
{
    ms_coll_t *view = w->db ? ms_store_coll(w->db, coll) : NULL;
    if (ms_view_is(view)) {
        if (create) {
            ms_set_error(error, MS_ERR_COMMAND_NOT_SUPPORTED_ON_VIEW,
                         "Namespace %s is a view, not a collection", view->ns);
            return NULL;
        }
        return ms_view_materialize(w, view, error);
    }
    if (w->txn) {
        return ms_txn_view(w->txn, w->db, coll, create, error);
    }
    ms_coll_t *c = ms_store_coll(w->db, coll);
    if (c || !create) {
        if (!c) {
            ms_set_error(error, MS_ERR_NAMESPACE_NOT_FOUND, "ns not found");
        }
        return c;
    }
    return ms_wctx_create_coll(w, coll, NULL, error);
}

bool
ms_wctx_insert(ms_wctx_t *w, ms_coll_t *c, const bson_t *doc, bson_error_t *error)
{
    bson_t key;
    bson_value_t id;
    bool ok = false;
    id_key(doc, &key, &id);
    if (!w->bypass_validation && !ms_validation_check(c, NULL, doc, error)) {
        goto done;
    }
    if (w->cmd && strcmp(w->cmd->name, "insert") == 0) {
        ms_failpoint_pause_while_set(MS_FP_HANG_DURING_BATCH_INSERT, w->cmd->command,
                                     w->cmd->conn);
    }
    if (!primary_write_fail_point(w, error)) {
        goto done;
    }
    ms_doc_t *d = ms_doc_new(doc);
    if (w->txn) {
        if (!ms_txn_before_write(w->txn, c, &id, d, error)) {
            ms_doc_unref(d);
            goto done;
        }
    } else {
        ms_txn_before_live_write(c->db, c->name, &id);
        ms_txn_before_live_keys(c, d);
    }
    ms_rec_t *rec = NULL;
    ok = ms_coll_insert(c, d, &rec, error);
    ms_doc_unref(d);
    if (!ok) {
        goto done;
    }
    if (w->txn) {
        ms_txn_record(w->txn, MS_OP_INSERT, c->db, c->name, &id, doc, NULL);
    } else {
        rec->seq = ms_store_next_seq();
        log_op(w, MS_OP_INSERT, c->db, c->name, &key, doc, NULL, NULL);
    }
done:
    bson_destroy(&key);
    return ok;
}

bool
ms_wctx_replace(ms_wctx_t *w, ms_coll_t *c, ms_rec_t *rec, const bson_t *doc,
                bool is_replacement, bson_error_t *error)
{
    bson_t key, before, desc = BSON_INITIALIZER;
    bson_value_t id;
    bool ok = false;
    ms_doc_t *old = ms_doc_ref(rec->doc);
    ms_doc_view(old, &before);
    id_key(&before, &key, &id);
    if (!w->bypass_validation && !ms_validation_check(c, &before, doc, error)) {
        goto done;
    }
    if (w->cmd && strcmp(w->cmd->name, "insert") == 0) {
        ms_failpoint_pause_while_set(MS_FP_HANG_DURING_BATCH_INSERT, w->cmd->command,
                                     w->cmd->conn);
    }
    if (!primary_write_fail_point(w, error)) {
        goto done;
    }
    ms_doc_t *d = ms_doc_new(doc);
    if (w->txn ? !ms_txn_before_write(w->txn, c, &id, d, error) : false) {
        ms_doc_unref(d);
        goto done;
    }
    if (!w->txn) {
        ms_txn_before_live_write(c->db, c->name, &id);
        ms_txn_before_live_keys(c, d);
    }
    ok = ms_coll_replace(c, rec, d, error);
    ms_doc_unref(d);
    if (!ok) {
        goto done;
    }
    ms_op_type_t type = is_replacement ? MS_OP_REPLACE : MS_OP_UPDATE;
    if (w->txn) {
        ms_txn_record(w->txn, type, c->db, c->name, &id, doc, NULL);
    } else {
        rec->seq = ms_store_next_seq();
        if (!is_replacement) {
            bson_destroy(&desc);
            if (w->delta) {
                ms_update_description_delta(&before, doc, &desc);
            } else {
                ms_update_description(&before, doc, &desc);
            }
        }
        log_op(w, type, c->db, c->name, &key, doc, is_replacement ? NULL : &desc, NULL);
        keep_pre_image(w, c, &before);
    }
done:
    ms_doc_unref(old);
    bson_destroy(&desc);
    bson_destroy(&key);
    return ok;
}

bool
ms_wctx_delete(ms_wctx_t *w, ms_coll_t *c, ms_rec_t *rec, bson_error_t *error)
{
    bson_t key, before;
    bson_value_t id;
    bool ok = true;
    ms_doc_t *old = ms_doc_ref(rec->doc);
    ms_doc_view(old, &before);
    id_key(&before, &key, &id);
    if (!primary_write_fail_point(w, error)) {
        ok = false;
    } else if (w->txn) {
        ok = ms_txn_before_write(w->txn, c, &id, NULL, error);
        if (ok) {
            ms_txn_record(w->txn, MS_OP_DELETE, c->db, c->name, &id, NULL, NULL);
        }
    } else if (ok) {
        ms_txn_before_live_write(c->db, c->name, &id);
        ms_store_next_seq();
        log_op(w, MS_OP_DELETE, c->db, c->name, &key, NULL, NULL, NULL);
        keep_pre_image(w, c, &before);
    }
    if (ok) {
        ms_coll_remove(c, rec);
    }
    ms_doc_unref(old);
    bson_destroy(&key);
    return ok;
}

/* The retryable write's result rides with its writes, in the same journal append. */
static void
log_retry_result(ms_wctx_t *w)
{
    if (!w->retry_lsid || !w->result || w->nops == 0 || (w->cmd && w->cmd->retry_unrecorded)) {
        return;
    }
    log_op(w, MS_OP_RETRY_RESULT, w->db, NULL, NULL, NULL, NULL, w->result);
    ms_op_t *op = &w->ops[w->nops - 1];
    op->lsid = own(w, w->retry_lsid);
    op->txn_number = w->retry_txn_number;
}

bool
ms_wctx_commit(ms_wctx_t *w, bson_error_t *error)
{
    if (w->nops == 0) {
        return true;
    }
    ms_optime_t t;
    log_retry_result(w);
    bool ok = ms_oplog_commit(w->ops, w->nops, &t, error);
    if (!ok) {
        ms_log("oplog commit failed: %s", error ? error->message : "?");
    }
    w->nops = 0;
    return ok;
}

void
ms_wctx_destroy(ms_wctx_t *w)
{
    for (size_t i = 0; i < w->nowned; i++) {
        bson_destroy(w->owned[i]);
    }
    bson_free(w->owned);
    bson_free(w->ops);
    if (w->retry_lsid) {
        bson_destroy(w->retry_lsid);
    }
    memset(w, 0, sizeof *w);
}

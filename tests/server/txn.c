/*
 * Multi-document transactions (all under the storage lock).
 *
 * Snapshot isolation: a transaction's snapshot is the live state when it started. Rather than
 * copying everything at start, a transaction takes its private copy of a collection lazily,
 * either on first use or just before any live write to that collection changes it (see
 * ms_txn_before_live_write), so each copy equals the state at start. Documents are shared by
 * reference, so a copy costs pointers, not bytes.
 *
 * Conflicts: a transaction writing a document that changed after its snapshot, or that another
 * active transaction wrote, gets WriteConflict and is aborted; so does one writing a unique key
 * another active transaction wrote or a commit added after its snapshot (the second writer
 * fails, as with mongod). A live (non-transaction) write to a document or unique key an active
 * transaction wrote aborts that transaction: mongod would make the live write wait for the
 * transaction instead; here the transaction loses, which drivers handle the same way
 * (TransientTransactionError, retry).
 */
#include "session-private.h"

#include <string.h>

static ms_txn_t *active_txns;

/* ---- transactions -------------------------------------------------------------------------- */

void
ms__txn_free_state(ms_txn_t *t)
{
    for (size_t i = 0; i < t->nviews; i++) {
        ms_coll_destroy(t->views[i].view);
        bson_free(t->views[i].db);
        bson_free(t->views[i].coll);
    }
    bson_free(t->views);
    for (size_t i = 0; i < t->nops; i++) {
        bson_free(t->ops[i].db);
        bson_free(t->ops[i].coll);
        bson_value_destroy(&t->ops[i].id);
        if (t->ops[i].doc) {
            bson_destroy(t->ops[i].doc);
        }
    }
    bson_free(t->ops);
    for (size_t i = 0; i < t->nkeys; i++) {
        bson_free(t->keys[i].ns);
        bson_value_destroy(&t->keys[i].id);
    }
    bson_free(t->keys);
    for (size_t i = 0; i < t->nukeys; i++) {
        bson_free(t->ukeys[i].ns);
        bson_free(t->ukeys[i].index);
        for (size_t j = 0; j < t->ukeys[i].n; j++) {
            bson_value_destroy(&t->ukeys[i].vals[j]);
        }
        bson_free(t->ukeys[i].vals);
    }
    bson_free(t->ukeys);
    t->ukeys = NULL;
    t->nukeys = 0;
    t->views = NULL;
    t->ops = NULL;
    t->keys = NULL;
    t->nviews = t->nops = t->nkeys = 0;
}

static void
txn_deactivate(ms_txn_t *t)
{
    for (ms_txn_t **p = &active_txns; *p; p = &(*p)->next_active) {
        if (*p == t) {
            *p = t->next_active;
            break;
        }
    }
    t->next_active = NULL;
}

void
ms__txn_end(ms_txn_t *t, txn_state_t state)
{
    txn_deactivate(t);
    t->state = state;
    ms__txn_free_state(t);
}

void
ms__txn_destroy(ms_txn_t *t)
{
    if (t) {
        ms__txn_end(t, TXN_ABORTED);
        if (t->lsid) {
            bson_destroy(t->lsid);
        }
        bson_free(t);
    }
}

static txn_view_t *
find_view(ms_txn_t *t, const char *db, const char *coll)
{
    for (size_t i = 0; i < t->nviews; i++) {
        if (strcmp(t->views[i].db, db) == 0 && strcmp(t->views[i].coll, coll) == 0) {
            return &t->views[i];
        }
    }
    return NULL;
}

static txn_view_t *
capture(ms_txn_t *t, const char *db, const char *coll)
{
    txn_view_t *v = find_view(t, db, coll);
    if (v) {
        return v;
    }
    ms_coll_t *live = ms_store_coll(db, coll);
    t->views = bson_realloc(t->views, sizeof *t->views * (t->nviews + 1));
    v = &t->views[t->nviews++];
    v->db = bson_strdup(db);
    v->coll = bson_strdup(coll);
    v->view = live ? ms_coll_clone(live) : NULL;
    return v;
}

static bool
txn_wrote(const ms_txn_t *t, const char *ns, const bson_value_t *id)
{
    for (size_t i = 0; i < t->nkeys; i++) {
        if (strcmp(t->keys[i].ns, ns) == 0 && ms_value_cmp(&t->keys[i].id, id) == 0 &&
            t->keys[i].id.value_type == id->value_type) {
            return true;
        }
    }
    return false;
}

/* mongod's transactionLifetimeLimitSeconds: an abandoned transaction is aborted after 60 s. */
#define TXN_LIFETIME_MS 60000

void
ms_txn_before_live_write(const char *db, const char *coll, const bson_value_t *id)
{
    int64_t now = ms_now_ms();
    for (ms_txn_t *t = active_txns, *next; t; t = next) {
        next = t->next_active;
        if (now - t->started_ms > TXN_LIFETIME_MS) {
            ms__txn_end(t, TXN_ABORTED);
            continue;
        }
        if (coll) {
            capture(t, db, coll);
        } else {
            for (ms_db_t *d = ms_store_dbs(); d; d = d->next) {
                for (ms_coll_t *c = strcmp(d->name, db) == 0 ? d->colls : NULL; c; c = c->next) {
                    capture(t, db, c->name);
                }
            }
        }
        if (id && coll) {
            char *ns = bson_strdup_printf("%s.%s", db, coll);
            if (txn_wrote(t, ns, id)) {
                t->conflicted = true;
                ms__txn_end(t, TXN_ABORTED);
            }
            bson_free(ns);
        }
    }
}

ms_coll_t *
ms_txn_view(ms_txn_t *t, const char *db, const char *coll, bool create, bson_error_t *error)
{
    txn_view_t *v = capture(t, db, coll);
    if (!v->view && create) {
        if (!ms_valid_coll_name(db, coll, error)) {
            return NULL;
        }
        v->view = ms_coll_new(db, coll, NULL);
        ms_txn_record(t, MS_OP_CREATE, db, coll, NULL, NULL, NULL);
    }
    if (!v->view) {
        ms_set_error(error, MS_ERR_NAMESPACE_NOT_FOUND, "ns not found");
    }
    return v->view;
}

static bool
conflict(ms_txn_t *t, bson_error_t *error)
{
    /* The running command may still hold pointers into the snapshot: freed at session end. */
    txn_deactivate(t);
    t->state = TXN_ABORTED;
    return ms_set_error(error, MS_ERR_WRITE_CONFLICT,
                        "WriteConflict error: this operation conflicted with another "
                        "operation. Please retry your operation or multi-document transaction.");
}

/* ---- unique keys --------------------------------------------------------------------------- */

static bool
same_tuple(const bson_value_t *a, const bson_value_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ms_value_cmp(&a[i], &b[i]) != 0) {
            return false;
        }
    }
    return true;
}

static bool
txn_wrote_key(const ms_txn_t *t, const char *ns, const char *index, const bson_value_t *tuple,
              size_t n)
{
    for (size_t i = 0; i < t->nukeys; i++) {
        const txn_ukey_t *k = &t->ukeys[i];
        if (k->n == n && strcmp(k->ns, ns) == 0 && strcmp(k->index, index) == 0 &&
            same_tuple(k->vals, tuple, n)) {
            return true;
        }
    }
    return false;
}

static void
remember_key(ms_txn_t *t, const char *ns, const char *index, const bson_value_t *tuple, size_t n)
{
    if (txn_wrote_key(t, ns, index, tuple, n)) {
        return;
    }
    t->ukeys = bson_realloc(t->ukeys, sizeof *t->ukeys * (t->nukeys + 1));
    txn_ukey_t *k = &t->ukeys[t->nukeys++];
    k->ns = bson_strdup(ns);
    k->index = bson_strdup(index);
    k->n = n;
    k->vals = bson_malloc(sizeof *k->vals * n);
    for (size_t i = 0; i < n; i++) {
        bson_value_copy(&tuple[i], &k->vals[i]);
    }
}

/*
 * Whether writing tuple into unique index ix of snapshot c conflicts, as WiredTiger's unique
 * index does (WiredTigerIndexUnique writes the key's prefix so two writers of one key collide):
 * another active transaction wrote the key, or a commit after the snapshot put it in the live
 * index while the snapshot does not have it (when the snapshot has it, the write is a plain
 * DuplicateKey).
 */
static bool
key_conflicts(const ms_txn_t *t, const ms_coll_t *c, const ms_index_t *ix,
              const bson_value_t *tuple, const ms_coll_t *live, const ms_rec_t *live_self)
{
    for (const ms_txn_t *o = active_txns; o; o = o->next_active) {
        if (o != t && txn_wrote_key(o, c->ns, ix->name, tuple, ix->nfields)) {
            return true;
        }
    }
    const ms_index_t *lix = live ? ms_coll_index_by_name(live, ix->name) : NULL;
    const ms_rec_t *r = lix ? ms_index_find_key(lix, tuple, live_self) : NULL;
    return r && r->seq > t->snapshot_seq && !ms_index_find_key(ix, tuple, NULL);
}

/* Checks and remembers the unique keys (other than _id) doc has in snapshot c. */
static bool
unique_keys_free(ms_txn_t *t, const ms_coll_t *c, const bson_value_t *id, const ms_doc_t *doc)
{
    const ms_coll_t *live = ms_store_coll(c->db, c->name);
    const ms_rec_t *live_self = live ? ms_coll_find_id(live, id) : NULL;
    for (size_t i = 1; i < c->nindexes; i++) {
        const ms_index_t *ix = c->indexes[i];
        bson_value_t *keys = NULL;
        size_t count = 0;
        if (!ix->unique || !ms_index_doc_keys(ix, doc, &keys, &count)) {
            bson_free(keys);
            continue; /* parallel arrays: the write itself fails */
        }
        bool clash = false;
        for (size_t k = 0; k < count && !clash; k++) {
            clash = key_conflicts(t, c, ix, keys + k * ix->nfields, live, live_self);
        }
        for (size_t k = 0; k < count && !clash; k++) {
            remember_key(t, c->ns, ix->name, keys + k * ix->nfields, ix->nfields);
        }
        bson_free(keys);
        if (clash) {
            return false;
        }
    }
    return true;
}

void
ms_txn_before_live_keys(const ms_coll_t *c, const ms_doc_t *doc)
{
    for (ms_txn_t *t = active_txns, *next; t; t = next) {
        next = t->next_active;
        bool touched = false;
        for (size_t i = 0; i < t->nukeys && !touched; i++) {
            touched = strcmp(t->ukeys[i].ns, c->ns) == 0;
        }
        for (size_t i = 1; i < c->nindexes && touched; i++) {
            const ms_index_t *ix = c->indexes[i];
            bson_value_t *keys = NULL;
            size_t count = 0;
            if (ix->unique && ms_index_doc_keys(ix, doc, &keys, &count)) {
                for (size_t k = 0; k < count && touched; k++) {
                    if (txn_wrote_key(t, c->ns, ix->name, keys + k * ix->nfields, ix->nfields)) {
                        t->conflicted = true;
                        ms__txn_end(t, TXN_ABORTED);
                        touched = false;
                    }
                }
            }
            bson_free(keys);
        }
    }
}

/* ---- writes ------------------------------------------------------------------------------- */

bool
ms_txn_before_write(ms_txn_t *t, const ms_coll_t *c, const bson_value_t *id, const ms_doc_t *doc,
                    bson_error_t *error)
{
    const char *ns = c->ns;
    if (!id || id->value_type == BSON_TYPE_EOD) {
        return true;
    }
    if (doc && !unique_keys_free(t, c, id, doc)) {
        return conflict(t, error);
    }
    for (ms_txn_t *o = active_txns; o; o = o->next_active) {
        if (o != t && txn_wrote(o, ns, id)) {
            return conflict(t, error);
        }
    }
    if (!txn_wrote(t, ns, id)) {
        const char *dot = strchr(ns, '.');
        char *db = bson_strndup(ns, (size_t)(dot - ns));
        ms_coll_t *live = ms_store_coll(db, dot + 1);
        txn_view_t *v = find_view(t, db, dot + 1);
        bson_free(db);
        ms_rec_t *live_rec = live ? ms_coll_find_id(live, id) : NULL;
        ms_rec_t *snap_rec = v && v->view ? ms_coll_find_id(v->view, id) : NULL;
        /* Changed, created or deleted by someone else since the snapshot. */
        if ((live_rec && live_rec->seq > t->snapshot_seq) || (live_rec && !snap_rec) ||
            (!live_rec && snap_rec)) {
            return conflict(t, error);
        }
        t->keys = bson_realloc(t->keys, sizeof *t->keys * (t->nkeys + 1));
        t->keys[t->nkeys].ns = bson_strdup(ns);
        bson_value_copy(id, &t->keys[t->nkeys].id);
        t->nkeys++;
    }
    return true;
}

void
ms_txn_record(ms_txn_t *t, ms_op_type_t type, const char *db, const char *coll,
              const bson_value_t *id, const bson_t *doc, const bson_t *spec)
{
    (void)spec;
    t->ops = bson_realloc(t->ops, sizeof *t->ops * (t->nops + 1));
    txn_op_t *op = &t->ops[t->nops++];
    memset(op, 0, sizeof *op);
    op->type = type;
    op->db = bson_strdup(db);
    op->coll = bson_strdup(coll);
    if (id) {
        bson_value_copy(id, &op->id);
    }
    op->doc = doc ? bson_copy(doc) : NULL;
}

bool
ms_txn_created_coll(const ms_txn_t *t, const char *db, const char *coll)
{
    for (size_t i = 0; i < t->nops; i++) {
        const txn_op_t *op = &t->ops[i];
        if (op->type == MS_OP_CREATE && strcmp(op->db, db) == 0 && strcmp(op->coll, coll) == 0) {
            return true;
        }
    }
    return false;
}

/* An index the transaction created (op->doc: its spec), built on the live collection. */
static bool
apply_create_index(ms_wctx_t *w, const txn_op_t *op, bson_error_t *error)
{
    ms_coll_t *c = ms_wctx_coll(w, op->coll, true, error);
    ms_index_t *ix = c ? ms_index_new(op->doc, error) : NULL;
    if (!ix) {
        return false;
    }
    if (!ms_coll_add_index(c, ix, error)) {
        ms_index_destroy(ix);
        return false;
    }
    ms_wctx_log(w, MS_OP_CREATE_INDEX, op->coll, op->doc);
    return true;
}

/* Applies one recorded operation to the live store through a live write context. */
static bool
apply_op(ms_wctx_t *w, const txn_op_t *op, bson_error_t *error)
{
    w->db = op->db;
    if (op->type == MS_OP_CREATE) {
        return ms_store_coll(op->db, op->coll) || ms_wctx_coll(w, op->coll, true, error);
    }
    if (op->type == MS_OP_CREATE_INDEX) {
        return apply_create_index(w, op, error);
    }
    ms_coll_t *c = ms_wctx_coll(w, op->coll, op->type != MS_OP_DELETE, error);
    if (!c) {
        return op->type == MS_OP_DELETE;
    }
    ms_rec_t *rec = ms_coll_find_id(c, &op->id);
    switch (op->type) {
    case MS_OP_INSERT:
        return ms_wctx_insert(w, c, op->doc, error);
    case MS_OP_UPDATE:
    case MS_OP_REPLACE:
        return rec ? ms_wctx_replace(w, c, rec, op->doc, op->type == MS_OP_REPLACE, error)
                   : ms_wctx_insert(w, c, op->doc, error);
    case MS_OP_DELETE:
        return !rec || ms_wctx_delete(w, c, rec, error);
    default:
        return true;
    }
}

static bool
txn_commit(ms_txn_t *t, bson_error_t *error)
{
    ms_wctx_t w;
    bool ok = true;
    /* Not active any more: its own writes must not count as conflicts with itself. */
    txn_deactivate(t);
    t->state = TXN_COMMITTING;
    ms_wctx_init(&w, NULL);
    w.lsid = t->lsid;
    w.txn_number = t->number;
    for (size_t i = 0; i < t->nops && ok; i++) {
        ok = apply_op(&w, &t->ops[i], error);
    }
    if (!ms_wctx_commit(&w, ok ? error : NULL)) {
        ok = false;
    }
    ms_wctx_destroy(&w);
    ms__txn_free_state(t);
    t->state = ok ? TXN_COMMITTED : TXN_ABORTED;
    return ok;
}

ms_txn_t *
ms__txn_start(int64_t number, bson_t *lsid)
{
    ms_txn_t *t = bson_malloc0(sizeof *t);
    t->number = number;
    t->lsid = lsid;
    t->snapshot_seq = ms_store_current_seq();
    t->started_ms = ms_now_ms();
    t->next_active = active_txns;
    active_txns = t;
    return t;
}

/* ---- commitTransaction / abortTransaction ---------------------------------------------- */

MS_HANDLER(commit_transaction)
{
    static const char *const allowed[] = {"recoveryToken", NULL};
    (void)reply;
    if (!ms_check_fields(c, allowed, error)) {
        return false;
    }
    if (!c->txn) {
        if (c->session && c->session->txn && c->session->txn->state == TXN_COMMITTED) {
            return true; /* retried commit */
        }
        return ms_set_error(error, MS_ERR_NO_SUCH_TRANSACTION,
                            "commitTransaction must be run within a transaction");
    }
    return txn_commit(c->txn, error);
}

MS_HANDLER(abort_transaction)
{
    static const char *const allowed[] = {"recoveryToken", NULL};
    (void)reply;
    if (!ms_check_fields(c, allowed, error)) {
        return false;
    }
    if (!c->txn) {
        return ms_set_error(error, MS_ERR_NO_SUCH_TRANSACTION,
                            "abortTransaction must be run within a transaction");
    }
    ms__txn_end(c->txn, TXN_ABORTED);
    return true;
}

/*
 * update and findAndModify, with upserts, pipeline updates, arrayFilters and per-statement
 * writeErrors as mongod reports them (delete: cmd_delete.c).
 */
#include "crud-private.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    bson_t q;
    bson_value_t u;
    bool upsert;
    bool multi;
    bool has_hint;
    bson_value_t hint;
    ms_update_kind_t kind;
    bool has_array_filters;
    bson_t array_filters;
} update_stmt_t;

/* Outcome of one update on one collection. */
typedef struct {
    int64_t matched;
    int64_t modified;
    bool upserted;
    bson_value_t upserted_id; /* owned copy when upserted */
} update_result_t;

/*
 * _id first and the size limit of the document an upsert inserts: UpsertStage refuses one past
 * 16 MiB with 17420 (src/mongo/db/exec/upsert_stage.cpp), not with the insert's 10334.
 */
static bool
upsert_id_first(const bson_t *in, bson_t *out, bson_error_t *error)
{
    if (ms_crud_id_first(in, out, error)) {
        return true;
    }
    if (error && error->code == MS_ERR_BSON_OBJECT_TOO_LARGE) {
        ms_set_error(error, MS_ERR_LOCATION17420, "Document to upsert is larger than %d",
                     MS_MAX_BSON_BYTES);
    }
    return false;
}

/* Builds the document an upsert inserts. */
static bool
upsert_doc(ms_cmd_t *c, const bson_t *q, const bson_value_t *u, ms_update_kind_t kind,
           bson_t *out, bson_error_t *error)
{
    bson_t seed, applied;
    bool changed, ok = false;
    bson_init(out);
    if (!ms_update_upsert_seed(q, &seed, error)) {
        bson_destroy(&seed);
        return false;
    }
    if (kind == MS_UPDATE_REPLACEMENT) {
        /* The replacement keeps the query's _id when it has none of its own. */
        bson_t repl, merged = BSON_INITIALIZER;
        bson_iter_t it;
        bson_init_static(&repl, u->value.v_doc.data, u->value.v_doc.data_len);
        if (!bson_has_field(&repl, "_id") && bson_iter_init_find(&it, &seed, "_id")) {
            bson_append_iter(&merged, "_id", 3, &it);
        }
        bson_concat(&merged, &repl);
        bson_destroy(out);
        ok = upsert_id_first(&merged, out, error);
        bson_destroy(&merged);
        bson_destroy(&seed);
        return ok;
    }
    if (ms_update_apply(u, &seed, true, &c->lang, &applied, &changed, error)) {
        bson_destroy(out);
        ok = upsert_id_first(&applied, out, error);
    }
    bson_destroy(&applied);
    bson_destroy(&seed);
    return ok;
}

/* Applies u to rec; *modified when the document changed. */
static bool
update_rec(ms_cmd_t *c, ms_wctx_t *w, ms_coll_t *coll, ms_rec_t *rec, const bson_value_t *u,
           ms_update_kind_t kind, bool *modified, bson_error_t *error)
{
    bson_t view, out;
    bool changed = false;
    ms_doc_view(rec->doc, &view);
    bool ok = ms_update_apply(u, &view, false, &c->lang, &out, &changed, error);
    /* UpdateStage::transformAndUpdate (src/mongo/db/exec/update_stage.cpp), for every kind of
     * update, pipelines included. */
    if (ok && changed && out.len > MS_MAX_BSON_BYTES) {
        ok = ms_set_error(error, MS_ERR_LOCATION17419,
                          "Resulting document after update is larger than %d", MS_MAX_BSON_BYTES);
    }
    if (ok && changed) {
        bool as_replace = kind == MS_UPDATE_REPLACEMENT ||
                          (kind == MS_UPDATE_PIPELINE && ms_config.pipeline_updates_as_replace);
        w->delta = kind == MS_UPDATE_PIPELINE;
        ok = ms_wctx_replace(w, coll, rec, &out, as_replace, error);
        w->delta = false;
    }
    *modified = ok && changed;
    bson_destroy(&out);
    return ok;
}

static bool
run_update(ms_cmd_t *c, ms_wctx_t *w, const char *name, const update_stmt_t *s,
           update_result_t *r, bson_error_t *error)
{
    ms_recvec_t recs;
    ms_plan_t plan;
    bool ok = false;
    memset(r, 0, sizeof *r);
    ms_coll_t *coll = ms_wctx_coll(w, name, s->upsert, s->upsert ? error : NULL);
    if (!coll && s->upsert) {
        return false;
    }
    ms_query_t q = {.filter = &s->q,
                    .hint = s->has_hint ? &s->hint : NULL,
                    .limit = s->multi ? 0 : 1,
                    .ctx = &c->lang,
                    .write_stops = true};
    if (!ms_query_exec(coll, &q, &recs, &plan, error)) {
        return false;
    }
    c->lang.array_filters = s->has_array_filters ? &s->array_filters : NULL;
    for (size_t i = 0; i < recs.len; i++) {
        bool modified;
        if (!update_rec(c, w, coll, recs.recs[i], &s->u, s->kind, &modified, error)) {
            goto done;
        }
        r->matched++;
        r->modified += modified;
    }
    if (recs.len == 0 && s->upsert) {
        bson_t doc;
        bson_iter_t it;
        if (!upsert_doc(c, &s->q, &s->u, s->kind, &doc, error) ||
            !ms_wctx_insert(w, coll, &doc, error)) {
            bson_destroy(&doc);
            goto done;
        }
        bson_iter_init_find(&it, &doc, "_id");
        bson_value_copy(bson_iter_value(&it), &r->upserted_id);
        r->upserted = true;
        bson_destroy(&doc);
    }
    ms_metrics_add(MS_METRIC_UPDATED, r->matched);
    ok = true;
done:
    c->lang.array_filters = NULL;
    ms_recvec_destroy(&recs);
    return ok;
}

static bool
parse_update_stmt(const bson_iter_t *it, int32_t index, update_stmt_t *s, bson_error_t *error)
{
    static const char *const allowed[] = {"q", "u", "c", "upsert", "multi", "arrayFilters",
                                          "hint", "collation", "upsertSupplied", "sampleId",
                                          NULL};
    bson_t stmt;
    bson_iter_t f;
    memset(s, 0, sizeof *s);
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'update.updates.%d' is the wrong type", index);
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(it, &len, &data);
    bson_init_static(&stmt, data, len);
    if (!ms_check_doc_fields(&stmt, allowed, "update.updates", error)) {
        return false;
    }
    if (!ms_crud_refuse_unsupported(&stmt, "update", error) ||
        !ms_crud_get_doc(&stmt, "q", true, &s->q, "update.updates", error)) {
        return false;
    }
    if (!bson_iter_init_find(&f, &stmt, "u") ||
        (!BSON_ITER_HOLDS_DOCUMENT(&f) && !BSON_ITER_HOLDS_ARRAY(&f))) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'update.updates.u' is missing but a "
                            "required field");
    }
    s->u = *bson_iter_value(&f);
    s->upsert = bson_iter_init_find(&f, &stmt, "upsert") && bson_iter_as_bool(&f);
    s->multi = bson_iter_init_find(&f, &stmt, "multi") && bson_iter_as_bool(&f);
    if (bson_iter_init_find(&f, &stmt, "hint")) {
        s->hint = *bson_iter_value(&f);
        s->has_hint = true;
    }
    if (!ms_update_classify(&s->u, &s->kind, error) ||
        !ms_crud_array_filters(&stmt, &s->u, &s->array_filters, &s->has_array_filters,
                               "update.updates", error)) {
        return false;
    }
    if (s->multi && s->kind == MS_UPDATE_REPLACEMENT) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "multi update is not supported for replacement-style "
                            "update");
    }
    return true;
}

static void
append_upserted(bson_t *arr, uint32_t *n, int32_t index, const bson_value_t *id)
{
    char key[16];
    const char *k;
    bson_t entry;
    bson_uint32_to_string((*n)++, &k, key, sizeof key);
    bson_append_document_begin(arr, k, -1, &entry);
    BSON_APPEND_INT32(&entry, "index", index);
    BSON_APPEND_VALUE(&entry, "_id", id);
    bson_append_document_end(arr, &entry);
}

static bool
update_body(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    static const char *const allowed[] = {"updates", "ordered", "bypassDocumentValidation",
                                          "let", "stmtIds", "runtimeConstants", NULL};
    bson_iter_t stmts;
    ms_wctx_t w;
    bson_t errors = BSON_INITIALIZER, upserted = BSON_INITIALIZER;
    uint32_t nerr = 0, nups = 0;
    int64_t n = 0, modified = 0;
    bool ok = false;
    bool fatal = false;
    const char *name = ms_crud_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) ||
        !ms_crud_refuse_unsupported(c->cmd, "update", error) ||
        !ms_crud_statements(c, "updates", &stmts, error)) {
        goto out;
    }
    bool ordered = ms_crud_ordered(c->cmd);
    ms_wctx_init(&w, c);
    for (int32_t i = 0; bson_iter_next(&stmts); i++) {
        update_stmt_t s;
        update_result_t r;
        bson_error_t werr;
        bool stmt_ok = parse_update_stmt(&stmts, i, &s, &werr);
        if (stmt_ok && !ms_valid_coll_name(c->db, name, &werr)) {
            stmt_ok = false;
        }
        if (stmt_ok) {
            stmt_ok = run_update(c, &w, name, &s, &r, &werr);
        }
        if (!stmt_ok) {
            ms_stmt_after_t after = ms_crud_stmt_failed(&errors, &nerr, i, ordered, &werr, error);
            if (after != MS_STMT_NEXT) {
                fatal = after == MS_STMT_FATAL;
                break;
            }
            continue;
        }
        n += r.matched + (r.upserted ? 1 : 0);
        modified += r.modified;
        if (r.upserted) {
            append_upserted(&upserted, &nups, i, &r.upserted_id);
            bson_value_destroy(&r.upserted_id);
        }
    }
    if (!fatal) {
        /* Complete before the commit: a retryable write journals it with the writes. */
        BSON_APPEND_INT32(reply, "n", (int32_t)n);
        BSON_APPEND_INT32(reply, "nModified", (int32_t)modified);
        if (nups) {
            BSON_APPEND_ARRAY(reply, "upserted", &upserted);
        }
        if (nerr) {
            BSON_APPEND_ARRAY(reply, "writeErrors", &errors);
        }
        w.result = reply;
    }
    ok = ms_wctx_commit(&w, fatal ? NULL : error) && !fatal;
    ms_wctx_destroy(&w);
out:
    bson_destroy(&errors);
    bson_destroy(&upserted);
    return ok;
}

/* With the command's `let` variables ($$<name>). */
MS_HANDLER(update)
{
    return ms_crud_with_let(c, reply, error, update_body);
}

/* ---- findAndModify ------------------------------------------------------------------------- */

typedef struct {
    const char *coll;
    bson_t query;
    bson_t sort;
    bson_t fields;
    bool remove;
    bool has_update;
    bson_value_t update;
    ms_update_kind_t kind;
    bool return_new;
    bool upsert;
    bool has_hint;
    bson_value_t hint;
    bool has_array_filters;
    bson_t array_filters;
} fam_args_t;

static bool
fam_parse(ms_cmd_t *c, fam_args_t *a, bson_error_t *error)
{
    static const char *const allowed[] = {"query", "sort", "remove", "update", "new", "fields",
                                          "upsert", "bypassDocumentValidation", "arrayFilters",
                                          "hint", "collation", "let", "runtimeConstants", NULL};
    bson_iter_t it;
    memset(a, 0, sizeof *a);
    if (!(a->coll = ms_crud_coll_name(c, error)) || !ms_check_fields(c, allowed, error) ||
        !ms_crud_refuse_unsupported(c->cmd, "findAndModify", error) ||
        !ms_crud_get_doc(c->cmd, "query", false, &a->query, "findAndModify", error) ||
        !ms_crud_get_doc(c->cmd, "sort", false, &a->sort, "findAndModify", error) ||
        !ms_crud_get_doc(c->cmd, "fields", false, &a->fields, "findAndModify", error)) {
        return false;
    }
    a->remove = bson_iter_init_find(&it, c->cmd, "remove") && bson_iter_as_bool(&it);
    a->return_new = bson_iter_init_find(&it, c->cmd, "new") && bson_iter_as_bool(&it);
    a->upsert = bson_iter_init_find(&it, c->cmd, "upsert") && bson_iter_as_bool(&it);
    if (bson_iter_init_find(&it, c->cmd, "hint")) {
        a->hint = *bson_iter_value(&it);
        a->has_hint = true;
    }
    if (bson_iter_init_find(&it, c->cmd, "update") && !BSON_ITER_HOLDS_NULL(&it)) {
        a->has_update = true;
        a->update = *bson_iter_value(&it);
    }
    if (a->remove && a->has_update) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "Cannot specify both an update and remove=true");
    }
    if (!a->remove && !a->has_update) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "Either an update or remove=true must be specified");
    }
    if (a->remove && a->return_new) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "Cannot specify both new=true and remove=true; 'remove' "
                            "always returns the deleted document");
    }
    if (a->remove && a->upsert) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "Cannot specify both upsert=true and remove=true ");
    }
    if (a->has_update && a->update.value_type != BSON_TYPE_DOCUMENT &&
        a->update.value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "Update argument must be either an object or an array");
    }
    return !a->has_update ||
           (ms_update_classify(&a->update, &a->kind, error) &&
            ms_crud_array_filters(c->cmd, &a->update, &a->array_filters, &a->has_array_filters,
                                  "findAndModify", error));
}

static bool
fam_value(ms_cmd_t *c, const fam_args_t *a, const bson_t *doc, bson_t *reply,
          bson_error_t *error)
{
    if (!doc) {
        BSON_APPEND_NULL(reply, "value");
        return true;
    }
    if (bson_empty(&a->fields)) {
        BSON_APPEND_DOCUMENT(reply, "value", doc);
        return true;
    }
    bson_t projected;
    bool ok = ms_project(&a->fields, doc, &c->lang, &projected, error);
    if (ok) {
        BSON_APPEND_DOCUMENT(reply, "value", &projected);
    }
    bson_destroy(&projected);
    return ok;
}

static bool
fam_found(ms_cmd_t *c, ms_wctx_t *w, ms_coll_t *coll, const fam_args_t *a, ms_rec_t *rec,
          bson_t *reply, bson_error_t *error)
{
    bson_t lastop;
    ms_doc_t *before = ms_doc_ref(rec->doc);
    bson_t before_view;
    bool modified = false;
    bool ok;
    ms_doc_view(before, &before_view);
    if (a->remove) {
        ok = ms_wctx_delete(w, coll, rec, error);
    } else {
        ok = update_rec(c, w, coll, rec, &a->update, a->kind, &modified, error);
    }
    if (ok) {
        ms_metrics_add(a->remove ? MS_METRIC_DELETED : MS_METRIC_UPDATED, 1);
    }
    if (ok) {
        BSON_APPEND_DOCUMENT_BEGIN(reply, "lastErrorObject", &lastop);
        BSON_APPEND_INT32(&lastop, "n", 1);
        if (!a->remove) {
            BSON_APPEND_BOOL(&lastop, "updatedExisting", true);
        }
        bson_append_document_end(reply, &lastop);
        bson_t after;
        if (a->return_new) {
            ms_doc_view(rec->doc, &after);
        }
        ok = fam_value(c, a, a->return_new ? &after : &before_view, reply, error);
    }
    ms_doc_unref(before);
    return ok;
}

static bool
fam_not_found(ms_cmd_t *c, ms_wctx_t *w, ms_coll_t *coll, const fam_args_t *a, bson_t *reply,
              bson_error_t *error)
{
    bson_t lastop, doc;
    bson_iter_t it;
    if (!a->upsert) {
        BSON_APPEND_DOCUMENT_BEGIN(reply, "lastErrorObject", &lastop);
        BSON_APPEND_INT32(&lastop, "n", 0);
        if (!a->remove) {
            BSON_APPEND_BOOL(&lastop, "updatedExisting", false);
        }
        bson_append_document_end(reply, &lastop);
        return fam_value(c, a, NULL, reply, error);
    }
    if (!upsert_doc(c, &a->query, &a->update, a->kind, &doc, error) ||
        !ms_wctx_insert(w, coll, &doc, error)) {
        bson_destroy(&doc);
        return false;
    }
    BSON_APPEND_DOCUMENT_BEGIN(reply, "lastErrorObject", &lastop);
    BSON_APPEND_INT32(&lastop, "n", 1);
    BSON_APPEND_BOOL(&lastop, "updatedExisting", false);
    bson_iter_init_find(&it, &doc, "_id");
    bson_append_iter(&lastop, "upserted", -1, &it);
    bson_append_document_end(reply, &lastop);
    bool ok = fam_value(c, a, a->return_new ? &doc : NULL, reply, error);
    bson_destroy(&doc);
    return ok;
}

/*
 * An error from running the modification (not from parsing the command) carries the context
 * mongod's findAndModify adds around its plan executor (advanceExecutor in
 * src/mongo/db/commands/find_and_modify.cpp); the code is unchanged.
 */
static void
fam_exec_error(bson_error_t *error)
{
    static const char prefix[] = "Plan executor error during findAndModify :: caused by :: ";
    char msg[sizeof error->message];
    if (!error || error->domain != MS_ERROR_DOMAIN) {
        return;
    }
    size_t keep = sizeof msg - sizeof prefix;
    memcpy(msg, prefix, sizeof prefix - 1);
    memcpy(msg + sizeof prefix - 1, error->message, keep);
    msg[sizeof msg - 1] = '\0';
    memcpy(error->message, msg, sizeof msg);
}

static bool
find_and_modify_body(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    fam_args_t a;
    ms_wctx_t w;
    ms_recvec_t recs = {0};
    ms_plan_t plan;
    bool ok = false;
    if (!fam_parse(c, &a, error)) {
        return false;
    }
    ms_wctx_init(&w, c);
    if (a.upsert && !ms_valid_coll_name(c->db, a.coll, error)) {
        goto done;
    }
    ms_coll_t *coll = ms_wctx_coll(&w, a.coll, a.upsert, a.upsert ? error : NULL);
    if (!coll && a.upsert) {
        goto done;
    }
    ms_query_t q = {.filter = &a.query,
                    .sort = &a.sort,
                    .hint = a.has_hint ? &a.hint : NULL,
                    .limit = 1,
                    .ctx = &c->lang,
                    .write_stops = bson_empty(&a.sort)};
    if (!ms_query_exec(coll, &q, &recs, &plan, error)) {
        goto done;
    }
    c->lang.array_filters = a.has_array_filters ? &a.array_filters : NULL;
    ok = recs.len ? fam_found(c, &w, coll, &a, recs.recs[0], reply, error)
                  : fam_not_found(c, &w, coll, &a, reply, error);
    c->lang.array_filters = NULL;
    if (!ok) {
        fam_exec_error(error);
    }
    w.result = ok ? reply : NULL;
    if (!ms_wctx_commit(&w, ok ? error : NULL)) {
        ok = false;
    }
done:
    ms_recvec_destroy(&recs);
    ms_wctx_destroy(&w);
    return ok;
}

/* With the command's `let` variables ($$<name>). */
MS_HANDLER(find_and_modify)
{
    return ms_crud_with_let(c, reply, error, find_and_modify_body);
}

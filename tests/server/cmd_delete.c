/*
 * delete, with per-statement writeErrors as mongod reports them (split from cmd_write.c).
 */
#include "crud-private.h"

#include <string.h>

/* ---- delete -------------------------------------------------------------------------------- */

static bool
parse_delete_stmt(const bson_iter_t *it, bson_t *q, int64_t *limit, bson_value_t *hint,
                  bool *has_hint, bson_error_t *error)
{
    static const char *const allowed[] = {"q", "limit", "hint", "collation", "sampleId", NULL};
    bson_t stmt;
    bson_iter_t f;
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'delete.deletes' element is the wrong type");
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(it, &len, &data);
    bson_init_static(&stmt, data, len);
    if (!ms_check_doc_fields(&stmt, allowed, "delete.deletes", error)) {
        return false;
    }
    if (!ms_crud_refuse_unsupported(&stmt, "delete", error) ||
        !ms_crud_get_doc(&stmt, "q", true, q, "delete.deletes", error)) {
        return false;
    }
    if (!bson_iter_init_find(&f, &stmt, "limit")) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'delete.deletes.limit' is missing but a "
                            "required field");
    }
    *limit = bson_iter_as_int64(&f);
    if (!BSON_ITER_HOLDS_NUMBER(&f) || (*limit != 0 && *limit != 1)) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "The limit field in delete objects must be 0 or 1. Got %lld",
                            (long long)*limit);
    }
    *has_hint = bson_iter_init_find(&f, &stmt, "hint");
    if (*has_hint) {
        *hint = *bson_iter_value(&f);
    }
    return true;
}

static bool
run_delete(ms_cmd_t *c, ms_wctx_t *w, const char *name, const bson_t *q, int64_t limit,
           const bson_value_t *hint, int64_t *deleted, bson_error_t *error)
{
    ms_recvec_t recs;
    ms_plan_t plan;
    *deleted = 0;
    ms_coll_t *coll = ms_wctx_coll(w, name, false, NULL);
    ms_query_t query = {
        .filter = q, .hint = hint, .limit = limit, .ctx = &c->lang, .write_stops = true};
    if (!ms_query_exec(coll, &query, &recs, &plan, error)) {
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < recs.len && ok; i++) {
        ok = ms_wctx_delete(w, coll, recs.recs[i], error);
        *deleted += ok;
    }
    ms_metrics_add(MS_METRIC_DELETED, *deleted);
    ms_recvec_destroy(&recs);
    return ok;
}

static bool
delete_body(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    static const char *const allowed[] = {"deletes", "ordered", "let", "stmtIds", NULL};
    bson_iter_t stmts;
    ms_wctx_t w;
    bson_t errors = BSON_INITIALIZER;
    uint32_t nerr = 0;
    int64_t n = 0;
    bool ok = false;
    bool fatal = false;
    const char *name = ms_crud_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) ||
        !ms_crud_refuse_unsupported(c->cmd, "delete", error) ||
        !ms_crud_statements(c, "deletes", &stmts, error)) {
        goto out;
    }
    bool ordered = ms_crud_ordered(c->cmd);
    ms_wctx_init(&w, c);
    for (int32_t i = 0; bson_iter_next(&stmts); i++) {
        bson_t q;
        int64_t limit = 0, deleted = 0;
        bson_value_t hint;
        bool has_hint = false;
        bson_error_t werr;
        if (!parse_delete_stmt(&stmts, &q, &limit, &hint, &has_hint, &werr) ||
            !run_delete(c, &w, name, &q, limit, has_hint ? &hint : NULL, &deleted, &werr)) {
            n += deleted;
            ms_stmt_after_t after = ms_crud_stmt_failed(&errors, &nerr, i, ordered, &werr, error);
            if (after != MS_STMT_NEXT) {
                fatal = after == MS_STMT_FATAL;
                break;
            }
            continue;
        }
        n += deleted;
    }
    if (!fatal) {
        /* Complete before the commit: a retryable write journals it with the writes. */
        BSON_APPEND_INT32(reply, "n", (int32_t)n);
        if (nerr) {
            BSON_APPEND_ARRAY(reply, "writeErrors", &errors);
        }
        w.result = reply;
    }
    ok = ms_wctx_commit(&w, fatal ? NULL : error) && !fatal;
    ms_wctx_destroy(&w);
out:
    bson_destroy(&errors);
    return ok;
}

/* With the command's `let` variables ($$<name>). */
MS_HANDLER(delete)
{
    return ms_crud_with_let(c, reply, error, delete_body);
}

/*
 * insert and the reads (find, count, distinct), with find's argument parsing and run that
 * explain shares (crud-private.h). update and findAndModify are in cmd_write.c, delete in
 * cmd_delete.c, aggregate in cmd_agg.c, explain in cmd_explain.c, the helpers every document
 * command shares in crud.c. All
 * run under the storage lock, on the live store or on the transaction's snapshot.
 */
#include "crud-private.h"

#include <string.h>

/* ---- counts ------------------------------------------------------------------------------- */

/* A value that may be an integer count: skip/limit/batchSize. */
static bool
get_count(const bson_t *cmd, const char *field, const char *cmd_name, int64_t *out,
          bson_error_t *error)
{
    bson_iter_t it;
    *out = 0;
    if (!bson_iter_init_find(&it, cmd, field) || BSON_ITER_HOLDS_NULL(&it)) {
        return true;
    }
    if (!BSON_ITER_HOLDS_NUMBER(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '%s.%s' is the wrong type '%s', expected types "
                            "'[long, int, decimal, double']",
                            cmd_name, field, ms_crud_type_name(bson_iter_type(&it)));
    }
    *out = bson_iter_as_int64(&it);
    return true;
}

/* ---- insert -------------------------------------------------------------------------------- */

MS_HANDLER(insert)
{
    static const char *const allowed[] = {"documents", "ordered", "bypassDocumentValidation",
                                          "stmtIds", NULL};
    bson_iter_t docs;
    ms_wctx_t w;
    bson_t errors = BSON_INITIALIZER;
    uint32_t nerr = 0;
    int32_t n = 0;
    bool ok = false;
    bool fatal = false;
    const char *name = ms_crud_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) ||
        !ms_crud_statements(c, "documents", &docs, error)) {
        bson_destroy(&errors);
        return false;
    }
    bool ordered = ms_crud_ordered(c->cmd);
    ms_wctx_init(&w, c);
    ms_coll_t *coll = ms_wctx_coll(&w, name, true, error);
    if (!coll) {
        goto done;
    }
    for (int32_t i = 0; bson_iter_next(&docs); i++) {
        bson_error_t werr;
        bson_t doc, prepared;
        if (!BSON_ITER_HOLDS_DOCUMENT(&docs)) {
            ms_set_error(&werr, MS_ERR_TYPE_MISMATCH,
                         "BSON field 'insert.documents.%d' is the wrong type", i);
            ms_stmt_after_t after = ms_crud_stmt_failed(&errors, &nerr, i, ordered, &werr, error);
            if (after != MS_STMT_NEXT) {
                fatal = after == MS_STMT_FATAL;
                break;
            }
            continue;
        }
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&docs, &len, &data);
        bson_init_static(&doc, data, len);
        bool doc_ok = ms_crud_id_first(&doc, &prepared, &werr) &&
                      ms_wctx_insert(&w, coll, &prepared, &werr);
        bson_destroy(&prepared);
        if (doc_ok) {
            n++;
            continue;
        }
        ms_stmt_after_t after = ms_crud_stmt_failed(&errors, &nerr, i, ordered, &werr, error);
        if (after != MS_STMT_NEXT) {
            fatal = after == MS_STMT_FATAL;
            break;
        }
    }
    if (fatal) {
        ms_wctx_commit(&w, NULL);
        goto done;
    }
    /* The reply is complete before the commit: a retryable write journals it with the writes. */
    BSON_APPEND_INT32(reply, "n", n);
    if (nerr) {
        BSON_APPEND_ARRAY(reply, "writeErrors", &errors);
    }
    w.result = reply;
    ok = ms_wctx_commit(&w, error);
    if (ok) {
        ms_metrics_add(MS_METRIC_INSERTED, n);
    }
done:
    ms_wctx_destroy(&w);
    bson_destroy(&errors);
    return ok;
}

/* ---- find ---------------------------------------------------------------------------------- */

static bool
refuse_find_options(const ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    static const char *const unsupported[] = {"max", "min", NULL};
    for (int i = 0; unsupported[i]; i++) {
        if (bson_iter_init_find(&it, c->cmd, unsupported[i]) && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *d;
            bson_iter_document(&it, &len, &d);
            if (len > 5) {
                return ms_set_error(error, MS_ERR_BAD_VALUE,
                                    "find.%s is not supported by mongoq-test-server",
                                    unsupported[i]);
            }
        }
    }
    if ((bson_iter_init_find(&it, c->cmd, "returnKey") && bson_iter_as_bool(&it)) ||
        (bson_iter_init_find(&it, c->cmd, "showRecordId") && bson_iter_as_bool(&it))) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "returnKey and showRecordId are not supported by "
                            "mongoq-test-server");
    }
    bool tailable = bson_iter_init_find(&it, c->cmd, "tailable") && bson_iter_as_bool(&it);
    if (bson_iter_init_find(&it, c->cmd, "awaitData") && bson_iter_as_bool(&it) && !tailable) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "Cannot set 'awaitData' without also setting 'tailable'");
    }
    if (tailable) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "error processing query: tailable cursor requested on non "
                            "capped collection");
    }
    return ms_crud_refuse_unsupported(c->cmd, "find", error);
}

bool
ms_crud_parse_find(ms_cmd_t *c, ms_find_args_t *a, bson_error_t *error)
{
    static const char *const allowed[] = {
        "filter", "projection", "sort", "hint", "skip", "limit", "batchSize", "singleBatch", "let",
        "max", "min", "returnKey", "showRecordId", "tailable", "oplogReplay", "noCursorTimeout",
        "awaitData", "allowPartialResults", "collation", "allowDiskUse", "readOnce", "term",
        NULL};
    bson_iter_t it;
    memset(a, 0, sizeof *a);
    a->batch_size = 101;
    if (!(a->coll = ms_crud_coll_name(c, error)) || !ms_check_fields(c, allowed, error) ||
        !refuse_find_options(c, error) ||
        !ms_crud_get_doc(c->cmd, "filter", false, &a->filter, "find", error) ||
        !ms_crud_get_doc(c->cmd, "projection", false, &a->projection, "find", error) ||
        !ms_crud_get_doc(c->cmd, "sort", false, &a->sort, "find", error) ||
        !get_count(c->cmd, "skip", "find", &a->skip, error) ||
        !get_count(c->cmd, "limit", "find", &a->limit, error)) {
        return false;
    }
    if (bson_iter_init_find(&it, c->cmd, "batchSize") && !BSON_ITER_HOLDS_NULL(&it)) {
        if (!get_count(c->cmd, "batchSize", "find", &a->batch_size, error)) {
            return false;
        }
        if (a->batch_size < 0) {
            return ms_set_error(error, MS_ERR_LOCATION51024,
                                "BSON field 'batchSize' value must be >= 0, actual "
                                "value '%lld'",
                                (long long)a->batch_size);
        }
    }
    if (a->skip < 0 || a->limit < 0) {
        return ms_set_error(error, MS_ERR_LOCATION51024,
                            "BSON field '%s' value must be >= 0, actual value "
                            "'%lld'",
                            a->skip < 0 ? "skip" : "limit",
                            (long long)(a->skip < 0 ? a->skip : a->limit));
    }
    a->single_batch = bson_iter_init_find(&it, c->cmd, "singleBatch") && bson_iter_as_bool(&it);
    if (bson_iter_init_find(&it, c->cmd, "hint")) {
        a->hint = *bson_iter_value(&it);
        a->has_hint = true;
    }
    return true;
}

/* Runs a find and collects projected copies of the results. */
bool
ms_crud_run_find(ms_cmd_t *c, const ms_find_args_t *a, ms_docvec_t *out, ms_plan_t *plan,
                 bson_error_t *error)
{
    ms_wctx_t w;
    ms_recvec_t recs;
    bool ok = false;
    ms_docvec_init(out);
    ms_wctx_init(&w, c);
    ms_coll_t *coll = ms_wctx_coll(&w, a->coll, false, NULL);
    ms_query_t q = {.filter = &a->filter,
                    .sort = &a->sort,
                    .hint = a->has_hint ? &a->hint : NULL,
                    .skip = a->skip,
                    .limit = a->limit,
                    .ctx = &c->lang,
                    .projection = &a->projection,
                    .explain = a->explain};
    if (!ms_query_exec(coll, &q, &recs, plan, error)) {
        goto done;
    }
    bool project = !bson_empty(&a->projection);
    for (size_t i = 0; i < recs.len; i++) {
        bson_t view;
        ms_doc_view(recs.recs[i]->doc, &view);
        if (!project) {
            ms_docvec_push_copy(out, &view);
            continue;
        }
        bson_t *projected = bson_new();
        bson_t tmp;
        if (!ms_project(&a->projection, &view, &c->lang, &tmp, error)) {
            bson_destroy(&tmp);
            bson_destroy(projected);
            ms_recvec_destroy(&recs);
            goto done;
        }
        bson_concat(projected, &tmp);
        bson_destroy(&tmp);
        ms_docvec_push_owned(out, projected);
    }
    ms_recvec_destroy(&recs);
    ok = true;
done:
    ms_wctx_destroy(&w);
    return ok;
}

static bool
find_body(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    ms_find_args_t a;
    ms_docvec_t results;
    ms_plan_t plan;
    if (!ms_crud_parse_find(c, &a, error) || !ms_crud_run_find(c, &a, &results, &plan, error)) {
        return false;
    }
    char *ns = bson_strdup_printf("%s.%s", c->db, a.coll);
    if (a.single_batch) {
        size_t to = ms_cursor_batch_end(&results, 0, a.batch_size);
        ms_cursor_append_batch(reply, 0, ns, "firstBatch", &results, 0, to);
    } else {
        ms_cursor_reply(c, reply, ns, &results, a.batch_size);
    }
    bson_free(ns);
    ms_docvec_destroy(&results);
    return true;
}

/* With the command's `let` variables ($$<name>). */
MS_HANDLER(find)
{
    return ms_crud_with_let(c, reply, error, find_body);
}

/* ---- count and distinct -------------------------------------------------------------------- */

bool
ms_crud_count(ms_cmd_t *c, bool explain, int64_t *n, ms_plan_t *plan, bson_error_t *error)
{
    static const char *const allowed[] = {"query", "limit", "skip", "hint", "collation",
                                          "fields", NULL};
    bson_t query;
    int64_t limit, skip;
    bson_iter_t it;
    ms_wctx_t w;
    ms_recvec_t recs;
    memset(plan, 0, sizeof *plan);
    const char *name = ms_crud_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) ||
        !ms_crud_refuse_unsupported(c->cmd, "count", error) ||
        !ms_crud_get_doc(c->cmd, "query", false, &query, "count", error) ||
        !get_count(c->cmd, "limit", "count", &limit, error) ||
        !get_count(c->cmd, "skip", "count", &skip, error)) {
        return false;
    }
    if (skip < 0) {
        return ms_set_error(error, MS_ERR_LOCATION51024,
                            "BSON field 'skip' value must be >= 0, actual value "
                            "'%lld'",
                            (long long)skip);
    }
    bool has_hint = bson_iter_init_find(&it, c->cmd, "hint");
    ms_query_t q = {.filter = &query,
                    .hint = has_hint ? bson_iter_value(&it) : NULL,
                    .skip = skip,
                    .limit = limit < 0 ? -limit : limit,
                    .ctx = &c->lang,
                    .mode = MS_QUERY_COUNT,
                    .explain = explain};
    ms_wctx_init(&w, c);
    ms_coll_t *coll = ms_wctx_coll(&w, name, false, NULL);
    bool ok = ms_query_exec(coll, &q, &recs, plan, error);
    ms_wctx_destroy(&w);
    if (ok) {
        *n = (int64_t)recs.len;
        ms_recvec_destroy(&recs);
    }
    return ok;
}

MS_HANDLER(count)
{
    ms_plan_t plan;
    int64_t n = 0;
    if (!ms_crud_count(c, false, &n, &plan, error)) {
        return false;
    }
    BSON_APPEND_INT64(reply, "n", n);
    return true;
}

static bool
value_seen(const bson_t *values, const bson_value_t *v)
{
    bson_iter_t it;
    bson_iter_init(&it, values);
    while (bson_iter_next(&it)) {
        if (ms_value_cmp(bson_iter_value(&it), v) == 0) {
            return true;
        }
    }
    return false;
}

static void
distinct_collect(const bson_value_t *v, bool expand, bson_t *values, uint32_t *n)
{
    if (expand && v->value_type == BSON_TYPE_ARRAY) {
        bson_t arr;
        bson_iter_t it;
        bson_init_static(&arr, v->value.v_doc.data, v->value.v_doc.data_len);
        bson_iter_init(&it, &arr);
        while (bson_iter_next(&it)) {
            distinct_collect(bson_iter_value(&it), false, values, n);
        }
        return;
    }
    if (value_seen(values, v)) {
        return;
    }
    char key[16];
    const char *k;
    size_t klen = bson_uint32_to_string((*n)++, &k, key, sizeof key);
    bson_append_value(values, k, (int)klen, v);
}

static int
value_item_cmp(const void *a, const void *b)
{
    return ms_value_cmp(a, b);
}

/* The distinct values sorted as mongod's index order would give them. */
static void
append_sorted_values(bson_t *reply, const bson_t *values, uint32_t n)
{
    bson_value_t *items = bson_malloc(sizeof *items * (n ? n : 1));
    bson_iter_t it;
    uint32_t i = 0;
    bson_iter_init(&it, values);
    while (bson_iter_next(&it) && i < n) {
        items[i++] = *bson_iter_value(&it);
    }
    qsort(items, i, sizeof *items, value_item_cmp);
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(reply, "values", &arr);
    for (uint32_t j = 0; j < i; j++) {
        char key[16];
        const char *k;
        size_t klen = bson_uint32_to_string(j, &k, key, sizeof key);
        bson_append_value(&arr, k, (int)klen, &items[j]);
    }
    bson_append_array_end(reply, &arr);
    bson_free(items);
}

MS_HANDLER(distinct)
{
    static const char *const allowed[] = {"key", "query", "collation", "hint", NULL};
    bson_t query, values = BSON_INITIALIZER;
    bson_iter_t it;
    ms_wctx_t w;
    ms_recvec_t recs;
    ms_plan_t plan;
    uint32_t n = 0;
    const char *name = ms_crud_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) ||
        !ms_crud_refuse_unsupported(c->cmd, "distinct", error) ||
        !ms_crud_get_doc(c->cmd, "query", false, &query, "distinct", error)) {
        bson_destroy(&values);
        return false;
    }
    if (!bson_iter_init_find(&it, c->cmd, "key") || !BSON_ITER_HOLDS_UTF8(&it)) {
        bson_destroy(&values);
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'distinct.key' is missing but a required "
                            "field");
    }
    const char *key = bson_iter_utf8(&it, NULL);
    ms_query_t q = {.filter = &query, .ctx = &c->lang};
    ms_wctx_init(&w, c);
    ms_coll_t *coll = ms_wctx_coll(&w, name, false, NULL);
    bool ok = ms_query_exec(coll, &q, &recs, &plan, error);
    ms_wctx_destroy(&w);
    for (size_t i = 0; ok && i < recs.len; i++) {
        bson_t view;
        bson_value_t v;
        ms_doc_view(recs.recs[i]->doc, &view);
        if (ms_path_get(&view, key, &v)) {
            distinct_collect(&v, true, &values, &n);
        }
    }
    if (ok) {
        append_sorted_values(reply, &values, n);
        ms_recvec_destroy(&recs);
    }
    bson_destroy(&values);
    return ok;
}

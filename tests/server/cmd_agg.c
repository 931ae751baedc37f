/*
 * aggregate (a leading $match is planned like a find filter, the rest runs in
 * ms_pipeline_run; $changeStream goes to changestream.c) and explain.
 */
#include "crud-private.h"

#include <string.h>

/* Copies every field of src but "ok" (the dispatcher adds its own). */
static void
concat_without_ok(bson_t *dst, const bson_t *src)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, src)) {
        return;
    }
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "ok") != 0) {
            bson_append_iter(dst, NULL, 0, &it);
        }
    }
}

typedef struct {
    const char *coll; /* NULL for aggregate: 1 */
    bson_t pipeline;
    int64_t batch_size;
    bool explain;
    bool has_hint;
    bson_value_t hint;
} agg_args_t;

static bool
agg_cursor_opts(const ms_cmd_t *c, agg_args_t *a, bson_error_t *error)
{
    bson_iter_t it, child;
    a->batch_size = 101;
    if (!bson_iter_init_find(&it, c->cmd, "cursor")) {
        if (!a->explain) {
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                "The 'cursor' option is required, except for aggregate "
                                "with the explain argument");
        }
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "cursor field must be missing or an object");
    }
    bson_iter_recurse(&it, &child);
    while (bson_iter_next(&child)) {
        if (strcmp(bson_iter_key(&child), "batchSize") != 0) {
            return ms_set_error(error, MS_ERR_LOCATION40415,
                                "BSON field 'cursor.%s' is an unknown field.",
                                bson_iter_key(&child));
        }
        if (!BSON_ITER_HOLDS_NUMBER(&child) || bson_iter_as_int64(&child) < 0) {
            return ms_set_error(error, MS_ERR_BAD_VALUE, "BatchSize value must be non-negative");
        }
        a->batch_size = bson_iter_as_int64(&child);
    }
    return true;
}

static bool
agg_parse(ms_cmd_t *c, agg_args_t *a, bson_error_t *error)
{
    static const char *const allowed[] = {"pipeline", "cursor", "explain", "allowDiskUse",
                                          "bypassDocumentValidation", "collation", "hint", "let",
                                          "fromMongos", "needsMerge", NULL};
    bson_iter_t it;
    memset(a, 0, sizeof *a);
    if (!ms_check_fields(c, allowed, error) ||
        !ms_crud_refuse_unsupported(c->cmd, "aggregate", error)) {
        return false;
    }
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        a->coll = bson_iter_utf8(&it, NULL);
    } else if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) != 1) {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE, "Invalid %s argument to aggregate",
                            "collection");
    }
    if (!bson_iter_init_find(&it, c->cmd, "pipeline") || !BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'aggregate.pipeline' is missing but a "
                            "required field");
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_init_static(&a->pipeline, data, len);
    a->explain = bson_iter_init_find(&it, c->cmd, "explain") && bson_iter_as_bool(&it);
    if (bson_iter_init_find(&it, c->cmd, "hint")) {
        a->hint = *bson_iter_value(&it);
        a->has_hint = true;
    }
    return agg_cursor_opts(c, a, error);
}

static bool
first_stage(const bson_t *pipeline, const char **name, bson_t *arg)
{
    bson_iter_t it, stage;
    if (!bson_iter_init(&it, pipeline) || !bson_iter_next(&it) ||
        !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &stage) ||
        !bson_iter_next(&stage)) {
        return false;
    }
    *name = bson_iter_key(&stage);
    bson_init(arg);
    if (BSON_ITER_HOLDS_DOCUMENT(&stage)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&stage, &len, &data);
        bson_init_static(arg, data, len);
    }
    return true;
}

static bool
open_change_stream(ms_cmd_t *c, const agg_args_t *a, bson_t *reply, bson_error_t *error)
{
    ms_changestream_t *cs = NULL;
    bson_t tmp;
    if (c->in_txn) {
        return ms_set_error(error, MS_ERR_OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
                            "Operation not permitted in transaction :: caused by :: "
                            "$changeStream");
    }
    int64_t id = ms_cursor_new_id();
    bool ok = ms_changestream_open(c->db, a->coll, c->cmd, id, ms_config.standalone, &cs, &tmp,
                                   error);
    if (ok) {
        concat_without_ok(reply, &tmp);
        if (cs) {
            char *ns = bson_strdup_printf("%s.%s", c->db, a->coll ? a->coll : "$cmd.aggregate");
            ms_cursor_add_changestream(id, ns, cs);
            ms_cursor_set_session(id, c);
            bson_free(ns);
        }
    }
    bson_destroy(&tmp);
    return ok;
}

/* The pipeline after its first stage, as a new array. */
static void
rest_of_pipeline(const bson_t *pipeline, bson_t *out)
{
    bson_iter_t it;
    uint32_t n = 0;
    bson_init(out);
    bson_iter_init(&it, pipeline);
    bson_iter_next(&it);
    while (bson_iter_next(&it)) {
        char key[16];
        const char *k;
        size_t klen = bson_uint32_to_string(n++, &k, key, sizeof key);
        bson_append_iter(out, k, (int)klen, &it);
    }
}

static bool
run_pipeline(ms_cmd_t *c, const agg_args_t *a, ms_docvec_t *out, ms_plan_t *plan,
             bson_error_t *error)
{
    ms_docvec_t input;
    ms_recvec_t recs;
    ms_wctx_t w;
    bson_t match_arg, rest;
    const char *stage = NULL;
    bool ok = false;
    ms_docvec_init(out);
    ms_docvec_init(&input);
    bool leading_match = first_stage(&a->pipeline, &stage, &match_arg) &&
                         strcmp(stage, "$match") == 0;
    if (leading_match) {
        rest_of_pipeline(&a->pipeline, &rest);
    } else {
        bson_init(&rest);
        bson_concat(&rest, &a->pipeline);
    }
    ms_wctx_init(&w, c);
    ms_coll_t *coll = ms_wctx_coll(&w, a->coll, false, NULL);
    ms_query_t q = {leading_match ? &match_arg : NULL, NULL, a->has_hint ? &a->hint : NULL, 0, 0,
                    &c->lang};
    if (!ms_query_exec(coll, &q, &recs, plan, error)) {
        goto done;
    }
    for (size_t i = 0; i < recs.len; i++) {
        bson_t view;
        ms_doc_view(recs.recs[i]->doc, &view);
        ms_docvec_push_copy(&input, &view);
    }
    ms_recvec_destroy(&recs);
    ms_docvec_destroy(out);
    ok = ms_pipeline_run(&rest, &input, &c->lang, out, error);
done:
    ms_wctx_destroy(&w);
    ms_docvec_destroy(&input);
    bson_destroy(&rest);
    return ok;
}

static void
explain_reply(const char *ns, const ms_plan_t *plan, const ms_query_t *q, const bson_t *command,
              bool exec_stats, int64_t n_returned, bson_t *reply);

/* $changeStream anywhere but first: 40602 as mongod. */
static bool
change_stream_not_first(const bson_t *pipeline, bson_error_t *error)
{
    bson_iter_t it, stage;
    bson_iter_init(&it, pipeline);
    for (int i = 0; bson_iter_next(&it); i++) {
        if (i > 0 && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &stage) &&
            bson_iter_next(&stage) && strcmp(bson_iter_key(&stage), "$changeStream") == 0) {
            return ms_set_error(error, MS_ERR_LOCATION40602,
                                "$changeStream is only valid as the first stage in "
                                "a pipeline");
        }
    }
    return true;
}

static bool
aggregate_body(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    agg_args_t a;
    ms_docvec_t results;
    ms_plan_t plan;
    const char *stage = NULL;
    bson_t arg;
    if (!agg_parse(c, &a, error) || !change_stream_not_first(&a.pipeline, error)) {
        return false;
    }
    if (first_stage(&a.pipeline, &stage, &arg) && strcmp(stage, "$changeStream") == 0) {
        return open_change_stream(c, &a, reply, error);
    }
    if (!a.coll) {
        return ms_agg_db(c, &a.pipeline, a.batch_size, a.explain, reply, error);
    }
    bson_t *rest = bson_new();
    const char *write_stage = NULL;
    bson_value_t write_spec;
    bool ok = ms_agg_split_write_stage(&a.pipeline, &write_stage, &write_spec, rest, error);
    bson_init_static(&a.pipeline, bson_get_data(rest), rest->len);
    ok = ok && ms_pipeline_validate(&a.pipeline, error) &&
         run_pipeline(c, &a, &results, &plan, error);
    if (ok && write_stage && !a.explain) { /* $out, $merge: written, none returned */
        ok = ms_agg_write_stage(c, write_stage, &write_spec, &results, error);
        ms_docvec_destroy(&results);
        ms_docvec_init(&results);
    }
    bson_destroy(rest);
    if (!ok) {
        return false;
    }
    char *ns = bson_strdup_printf("%s.%s", c->db, a.coll);
    if (a.explain) {
        ms_query_t q = {NULL, NULL, NULL, 0, 0, &c->lang};
        explain_reply(ns, &plan, &q, c->cmd, false, (int64_t)results.len, reply);
    } else {
        ms_cursor_reply(c, reply, ns, &results, a.batch_size);
    }
    bson_free(ns);
    ms_docvec_destroy(&results);
    return true;
}

/* With the command's `let` variables ($$<name>). */
MS_HANDLER(aggregate)
{
    return ms_crud_with_let(c, reply, error, aggregate_body);
}

/* ---- explain ------------------------------------------------------------------------------- */

static void
explain_reply(const char *ns, const ms_plan_t *plan, const ms_query_t *q, const bson_t *command,
              bool exec_stats, int64_t n_returned, bson_t *reply)
{
    bson_t qp, stats, server;
    BSON_APPEND_UTF8(reply, "explainVersion", "1");
    BSON_APPEND_DOCUMENT_BEGIN(reply, "queryPlanner", &qp);
    BSON_APPEND_UTF8(&qp, "namespace", ns);
    BSON_APPEND_BOOL(&qp, "indexFilterSet", false);
    if (q->filter) {
        BSON_APPEND_DOCUMENT(&qp, "parsedQuery", q->filter);
    }
    ms_plan_describe(plan, q, &qp);
    bson_t rejected;
    BSON_APPEND_ARRAY_BEGIN(&qp, "rejectedPlans", &rejected);
    bson_append_array_end(&qp, &rejected);
    bson_append_document_end(reply, &qp);
    if (exec_stats) {
        BSON_APPEND_DOCUMENT_BEGIN(reply, "executionStats", &stats);
        BSON_APPEND_BOOL(&stats, "executionSuccess", true);
        BSON_APPEND_INT64(&stats, "nReturned", n_returned);
        BSON_APPEND_INT64(&stats, "executionTimeMillis", 0);
        BSON_APPEND_INT64(&stats, "totalKeysExamined", plan->keys_examined);
        BSON_APPEND_INT64(&stats, "totalDocsExamined", plan->docs_examined);
        bson_append_document_end(reply, &stats);
    }
    BSON_APPEND_DOCUMENT(reply, "command", command);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "serverInfo", &server);
    BSON_APPEND_UTF8(&server, "host", ms_config.bind);
    BSON_APPEND_INT32(&server, "port", ms_config.port);
    BSON_APPEND_UTF8(&server, "version", "6.0.0-mongoq-test");
    bson_append_document_end(reply, &server);
}

typedef struct {
    bson_t filter;
    bson_t sort;
    int64_t skip;
    int64_t limit;
    bool has_hint;
    bson_value_t hint;
} explain_query_t;

/* The query part of an explained command (find, count, delete, update, findAndModify, ...). */
static bool
explained_query(const char *cmd_name, const bson_t *inner, explain_query_t *e,
                bson_error_t *error)
{
    bson_iter_t it, stmts;
    bson_t stmt;
    memset(e, 0, sizeof *e);
    bson_init(&e->filter);
    bson_init(&e->sort);
    const char *filter_field = "filter";
    const bson_t *src = inner;
    if (strcmp(cmd_name, "update") == 0 || strcmp(cmd_name, "delete") == 0) {
        const char *arr = cmd_name[0] == 'u' ? "updates" : "deletes";
        if (!bson_iter_init_find(&it, inner, arr) || !bson_iter_recurse(&it, &stmts) ||
            !bson_iter_next(&stmts) || !BSON_ITER_HOLDS_DOCUMENT(&stmts)) {
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE, "explain of %s needs one statement",
                                cmd_name);
        }
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&stmts, &len, &data);
        bson_init_static(&stmt, data, len);
        src = &stmt;
        filter_field = "q";
        e->limit = 1;
        if (bson_iter_init_find(&it, &stmt, "multi") && bson_iter_as_bool(&it)) {
            e->limit = 0;
        }
        if (bson_iter_init_find(&it, &stmt, "limit")) {
            e->limit = bson_iter_as_int64(&it);
        }
    } else if (strcmp(cmd_name, "findAndModify") == 0 || strcmp(cmd_name, "count") == 0 ||
               strcmp(cmd_name, "distinct") == 0) {
        filter_field = "query";
        e->limit = cmd_name[0] == 'f' ? 1 : 0;
    } else if (strcmp(cmd_name, "find") != 0) {
        return ms_set_error(error, MS_ERR_ILLEGAL_OPERATION, "Cannot explain cmd: %s", cmd_name);
    }
    if (!ms_crud_get_doc(src, filter_field, false, &e->filter, cmd_name, error) ||
        !ms_crud_get_doc(src, "sort", false, &e->sort, cmd_name, error)) {
        return false;
    }
    if (strcmp(cmd_name, "find") == 0 || strcmp(cmd_name, "count") == 0) {
        if (bson_iter_init_find(&it, src, "skip")) {
            e->skip = bson_iter_as_int64(&it);
        }
        if (bson_iter_init_find(&it, src, "limit")) {
            e->limit = bson_iter_as_int64(&it);
            e->limit = e->limit < 0 ? -e->limit : e->limit;
        }
    }
    if (bson_iter_init_find(&it, src, "hint")) {
        e->hint = *bson_iter_value(&it);
        e->has_hint = true;
    }
    return true;
}

/* An explained aggregate: its leading $match is what the planner sees. */
static bool
explained_pipeline(const bson_t *inner, explain_query_t *e, bson_error_t *error)
{
    bson_iter_t it;
    const char *stage = NULL;
    bson_t arg;
    memset(e, 0, sizeof *e);
    bson_init(&e->filter);
    bson_init(&e->sort);
    if (!bson_iter_init_find(&it, inner, "pipeline") || !BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'aggregate.pipeline' is missing but a "
                            "required field");
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_t pipeline;
    bson_init_static(&pipeline, data, len);
    if (!ms_pipeline_validate(&pipeline, error)) {
        return false;
    }
    if (first_stage(&pipeline, &stage, &arg) && strcmp(stage, "$match") == 0) {
        e->filter = arg;
    }
    return true;
}

static bool
explain_verbosity(const ms_cmd_t *c, bool *exec_stats, bson_error_t *error)
{
    bson_iter_t it;
    *exec_stats = true; /* mongod's default is allPlansExecution */
    if (!bson_iter_init_find(&it, c->cmd, "verbosity")) {
        return true;
    }
    const char *v = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "";
    if (strcmp(v, "queryPlanner") == 0) {
        *exec_stats = false;
    } else if (strcmp(v, "executionStats") && strcmp(v, "allPlansExecution")) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "verbosity string must be one of {'queryPlanner', "
                            "'executionStats', 'allPlansExecution'}");
    }
    return true;
}

MS_HANDLER(explain)
{
    static const char *const allowed[] = {"verbosity", NULL};
    bson_iter_t it, inner_it;
    bson_t inner;
    explain_query_t e;
    ms_recvec_t recs;
    ms_plan_t plan;
    ms_wctx_t w;
    bool exec_stats;
    if (!ms_check_fields(c, allowed, error) || !explain_verbosity(c, &exec_stats, error) ||
        !ms_crud_get_doc(c->cmd, "explain", true, &inner, "explain", error)) {
        return false;
    }
    if (!bson_iter_init(&inner_it, &inner) || !bson_iter_next(&inner_it) ||
        !BSON_ITER_HOLDS_UTF8(&inner_it)) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "explain command requires a nested object");
    }
    const char *cmd_name = bson_iter_key(&inner_it);
    if (strcmp(cmd_name, "findandmodify") == 0) {
        cmd_name = "findAndModify";
    }
    const char *coll_name = bson_iter_utf8(&inner_it, NULL);
    if (strcmp(cmd_name, "aggregate") == 0) {
        if (!explained_pipeline(&inner, &e, error)) {
            return false;
        }
    } else if (!explained_query(cmd_name, &inner, &e, error)) {
        return false;
    }
    ms_query_t q = {&e.filter, &e.sort, e.has_hint ? &e.hint : NULL, e.skip, e.limit, &c->lang};
    ms_wctx_init(&w, c);
    ms_coll_t *coll = ms_wctx_coll(&w, coll_name, false, NULL);
    bool ok = ms_query_exec(coll, &q, &recs, &plan, error);
    ms_wctx_destroy(&w);
    if (!ok) {
        return false;
    }
    char *ns = bson_strdup_printf("%s.%s", c->db, coll_name);
    (void)it;
    explain_reply(ns, &plan, &q, &inner, exec_stats, (int64_t)recs.len, reply);
    bson_free(ns);
    ms_recvec_destroy(&recs);
    return true;
}

/*
 * explain of find, count, distinct, aggregate, update, delete and findAndModify in mongod 6.0's
 * shapes (the classic engine; "Explain Results" in the manual, src/mongo/db/query/explain.cpp):
 * queryPlanner (namespace, parsedQuery, winningPlan, rejectedPlans), executionStats at the
 * executionStats and allPlansExecution verbosities (the default), command and serverInfo. The
 * plan is run to count what it examines; a write is run up to the point of writing: its UPDATE
 * stage applies the update to each matched document to tell nWouldModify, and nothing is
 * written. An aggregate whose whole pipeline the query runs is shown like a find; otherwise as
 * stages: [{$cursor: {queryPlanner, executionStats}}, {<stage>: ..., nReturned}, ...].
 */
#include "crud-private.h"

#include <string.h>

typedef struct {
    bool exec_stats;
    bool all_plans;
} verbosity_t;

static _Thread_local const verbosity_t *current; /* for the bodies ms_crud_with_let runs */

static bool
explain_verbosity(const ms_cmd_t *c, verbosity_t *v, bson_error_t *error)
{
    bson_iter_t it;
    v->exec_stats = v->all_plans = true; /* mongod's default is allPlansExecution */
    if (!bson_iter_init_find(&it, c->cmd, "verbosity")) {
        return true;
    }
    const char *s = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "";
    if (strcmp(s, "queryPlanner") == 0) {
        v->exec_stats = v->all_plans = false;
    } else if (strcmp(s, "executionStats") == 0) {
        v->all_plans = false;
    } else if (strcmp(s, "allPlansExecution") != 0) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "verbosity string must be one of {'queryPlanner', "
                            "'executionStats', 'allPlansExecution'}");
    }
    return true;
}

/* ---- the reply ------------------------------------------------------------------------------ */

static void
append_query_planner(const ms_cmd_t *c, const char *coll, const bson_t *filter,
                     const ms_plan_t *plan, const ms_write_stage_t *w, bool optimized,
                     bson_t *parent)
{
    bson_t qp, rejected;
    char *ns = bson_strdup_printf("%s.%s", c->db, coll);
    BSON_APPEND_DOCUMENT_BEGIN(parent, "queryPlanner", &qp);
    BSON_APPEND_UTF8(&qp, "namespace", ns);
    BSON_APPEND_BOOL(&qp, "indexFilterSet", false);
    ms_plan_parsed_query(filter, &qp);
    if (optimized) {
        BSON_APPEND_BOOL(&qp, "optimizedPipeline", true);
    }
    BSON_APPEND_BOOL(&qp, "maxIndexedOrSolutionsReached", false);
    BSON_APPEND_BOOL(&qp, "maxIndexedAndSolutionsReached", false);
    BSON_APPEND_BOOL(&qp, "maxScansToExplodeReached", false);
    ms_plan_describe(plan, w, &qp, "winningPlan");
    BSON_APPEND_ARRAY_BEGIN(&qp, "rejectedPlans", &rejected);
    bson_append_array_end(&qp, &rejected);
    bson_append_document_end(parent, &qp);
    bson_free(ns);
}

static void
append_server(bson_t *reply)
{
    bson_t server, params;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "serverInfo", &server);
    BSON_APPEND_UTF8(&server, "host", ms_config.bind);
    BSON_APPEND_INT32(&server, "port", ms_config.port);
    BSON_APPEND_UTF8(&server, "version", "6.0.0-mongoq-test");
    BSON_APPEND_UTF8(&server, "gitVersion", "mongoq-test-server");
    bson_append_document_end(reply, &server);
    BSON_APPEND_DOCUMENT_BEGIN(reply, "serverParameters", &params);
    BSON_APPEND_INT32(&params, "internalQueryFacetBufferSizeBytes", 104857600);
    BSON_APPEND_INT32(&params, "internalQueryFacetMaxOutputDocSizeBytes", 104857600);
    BSON_APPEND_INT32(&params, "internalLookupStageIntermediateDocumentMaxSizeBytes", 104857600);
    BSON_APPEND_INT32(&params, "internalDocumentSourceGroupMaxMemoryBytes", 104857600);
    BSON_APPEND_INT32(&params, "internalQueryMaxBlockingSortMemoryUsageBytes", 104857600);
    BSON_APPEND_BOOL(&params, "internalQueryProhibitBlockingMergeOnMongoS", false);
    BSON_APPEND_INT32(&params, "internalQueryMaxAddToSetBytes", 104857600);
    BSON_APPEND_INT32(&params, "internalDocumentSourceSetWindowFieldsMaxMemoryBytes", 104857600);
    bson_append_document_end(reply, &params);
}

/* The explained command as the reply shows it: with its $db. */
static void
append_command(const ms_cmd_t *c, const bson_t *command, bson_t *reply)
{
    bson_t cmd;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "command", &cmd);
    bson_concat(&cmd, command);
    if (!bson_has_field(command, "$db")) {
        BSON_APPEND_UTF8(&cmd, "$db", c->db);
    }
    bson_append_document_end(reply, &cmd);
}

/* A find-shaped reply: queryPlanner, executionStats, command, serverInfo. */
static void
query_reply(const ms_cmd_t *c, const char *coll, const bson_t *filter, const ms_plan_t *plan,
            const ms_write_stage_t *w, bool optimized, const verbosity_t *v,
            const bson_t *command, bson_t *reply)
{
    BSON_APPEND_UTF8(reply, "explainVersion", "1");
    append_query_planner(c, coll, filter, plan, w, optimized, reply);
    if (v->exec_stats) {
        ms_plan_exec_stats(plan, w, v->all_plans, reply);
    }
    append_command(c, command, reply);
    append_server(reply);
}

/* ---- reads ---------------------------------------------------------------------------------- */

static bool
explain_find(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    ms_find_args_t a;
    ms_docvec_t results;
    ms_plan_t plan = {0};
    if (!ms_crud_parse_find(c, &a, error)) {
        return false;
    }
    a.explain = true;
    if (!ms_crud_run_find(c, &a, &results, &plan, error)) {
        return false;
    }
    ms_docvec_destroy(&results);
    query_reply(c, a.coll, &a.filter, &plan, NULL, false, current, c->cmd, reply);
    ms_plan_destroy(&plan);
    return true;
}

static bool
explain_count(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    ms_plan_t plan = {0};
    int64_t n;
    bson_t query;
    if (!ms_crud_count(c, true, &n, &plan, error) ||
        !ms_crud_get_doc(c->cmd, "query", false, &query, "count", error)) {
        ms_plan_destroy(&plan);
        return false;
    }
    query_reply(c, ms_crud_coll_name(c, NULL), &query, &plan, NULL, false, current, c->cmd,
                reply);
    ms_plan_destroy(&plan);
    return true;
}

static bool
explain_distinct(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    static const char *const allowed[] = {"key", "query", "collation", "hint", NULL};
    bson_t query;
    ms_recvec_t recs;
    ms_plan_t plan = {0};
    ms_wctx_t w;
    const char *name = ms_crud_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) ||
        !ms_crud_refuse_unsupported(c->cmd, "distinct", error) ||
        !ms_crud_get_doc(c->cmd, "query", false, &query, "distinct", error)) {
        return false;
    }
    ms_query_t q = {.filter = &query, .ctx = &c->lang, .explain = true};
    ms_wctx_init(&w, c);
    bool ok = ms_query_exec(ms_wctx_coll(&w, name, false, NULL), &q, &recs, &plan, error);
    ms_wctx_destroy(&w);
    if (ok) {
        ms_recvec_destroy(&recs);
        query_reply(c, name, &query, &plan, NULL, false, current, c->cmd, reply);
    }
    ms_plan_destroy(&plan);
    return ok;
}

/* ---- writes --------------------------------------------------------------------------------- */

/* What an update would do to the matched records, without writing (UpdateStage in explain). */
static bool
would_modify(ms_cmd_t *c, const ms_recvec_t *recs, const bson_value_t *u, int64_t *n,
             bson_error_t *error)
{
    *n = 0;
    for (size_t i = 0; i < recs->len; i++) {
        bson_t view, out;
        bool changed = false;
        ms_doc_view(recs->recs[i]->doc, &view);
        bool ok = ms_update_apply(u, &view, false, &c->lang, &out, &changed, error);
        bson_destroy(&out);
        if (!ok) {
            return false;
        }
        *n += changed;
    }
    return true;
}

/* Runs q (explained) on coll and fills the write stage; the caller sets what it would write. */
static bool
explain_write(ms_cmd_t *c, const char *coll, ms_query_t *q, const bson_value_t *u, bool upsert,
              bool remove, ms_write_stage_t *ws, ms_plan_t *plan, bson_error_t *error)
{
    ms_recvec_t recs;
    ms_wctx_t w;
    q->explain = true;
    ms_wctx_init(&w, c);
    bool ok = ms_query_exec(ms_wctx_coll(&w, coll, false, NULL), q, &recs, plan, error);
    if (ok) {
        ws->stage = remove ? "DELETE" : "UPDATE";
        ws->matched = (int64_t)recs.len;
        ws->would_delete = remove ? (int64_t)recs.len : 0;
        ws->would_upsert = !remove && upsert && recs.len == 0;
        ok = remove || would_modify(c, &recs, u, &ws->would_modify, error);
        ms_recvec_destroy(&recs);
    }
    ms_wctx_destroy(&w);
    return ok;
}

/* The first statement of an update or delete command (mongod explains one). */
static bool
first_statement(const ms_cmd_t *c, const char *field, bson_t *stmt, bson_error_t *error)
{
    bson_iter_t it, stmts;
    if (!bson_iter_init_find(&it, c->cmd, field) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &stmts) || !bson_iter_next(&stmts) ||
        !BSON_ITER_HOLDS_DOCUMENT(&stmts)) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE, "explain of %s needs one statement",
                            c->name);
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&stmts, &len, &data);
    bson_init_static(stmt, data, len);
    return true;
}

static bool
explain_update_or_delete(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    bool remove = strcmp(c->name, "delete") == 0;
    bson_t stmt, q, array_filters;
    bson_iter_t it;
    bson_value_t u = {0}, hint;
    ms_update_kind_t kind;
    ms_write_stage_t ws = {0};
    ms_plan_t plan = {0};
    bool has_af = false, upsert = false;
    const char *name = ms_crud_coll_name(c, error);
    if (!name || !first_statement(c, remove ? "deletes" : "updates", &stmt, error) ||
        !ms_crud_refuse_unsupported(&stmt, c->name, error) ||
        !ms_crud_get_doc(&stmt, "q", true, &q, c->name, error)) {
        return false;
    }
    bool has_hint = bson_iter_init_find(&it, &stmt, "hint");
    if (has_hint) {
        hint = *bson_iter_value(&it);
    }
    bool one = remove ? !(bson_iter_init_find(&it, &stmt, "limit") && bson_iter_as_int64(&it) == 0)
                      : !(bson_iter_init_find(&it, &stmt, "multi") && bson_iter_as_bool(&it));
    if (!remove) {
        if (!bson_iter_init_find(&it, &stmt, "u")) {
            return ms_set_error(error, MS_ERR_LOCATION40414,
                                "BSON field 'update.updates.u' is missing but a required field");
        }
        u = *bson_iter_value(&it);
        upsert = bson_iter_init_find(&it, &stmt, "upsert") && bson_iter_as_bool(&it);
        if (!ms_update_classify(&u, &kind, error) ||
            !ms_crud_array_filters(&stmt, &u, &array_filters, &has_af, "update.updates", error)) {
            return false;
        }
    }
    ms_query_t query = {.filter = &q,
                        .hint = has_hint ? &hint : NULL,
                        .limit = one ? 1 : 0,
                        .ctx = &c->lang,
                        .write_stops = true};
    c->lang.array_filters = has_af ? &array_filters : NULL;
    bool ok = explain_write(c, name, &query, &u, upsert, remove, &ws, &plan, error);
    c->lang.array_filters = NULL;
    if (ok) {
        query_reply(c, name, &q, &plan, &ws, false, current, c->cmd, reply);
    }
    ms_plan_destroy(&plan);
    return ok;
}

static bool
explain_find_and_modify(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    bson_t query, sort, array_filters;
    bson_iter_t it;
    bson_value_t u = {0}, hint;
    ms_update_kind_t kind;
    ms_write_stage_t ws = {0};
    ms_plan_t plan = {0};
    bool has_af = false;
    const char *name = ms_crud_coll_name(c, error);
    if (!name || !ms_crud_refuse_unsupported(c->cmd, "findAndModify", error) ||
        !ms_crud_get_doc(c->cmd, "query", false, &query, "findAndModify", error) ||
        !ms_crud_get_doc(c->cmd, "sort", false, &sort, "findAndModify", error)) {
        return false;
    }
    bool remove = bson_iter_init_find(&it, c->cmd, "remove") && bson_iter_as_bool(&it);
    bool upsert = bson_iter_init_find(&it, c->cmd, "upsert") && bson_iter_as_bool(&it);
    bool return_new = bson_iter_init_find(&it, c->cmd, "new") && bson_iter_as_bool(&it);
    bool has_hint = bson_iter_init_find(&it, c->cmd, "hint");
    if (has_hint) {
        hint = *bson_iter_value(&it);
    }
    if (!remove) {
        if (!bson_iter_init_find(&it, c->cmd, "update") ||
            !(BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it))) {
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                "Either an update or remove=true must be specified");
        }
        u = *bson_iter_value(&it);
        if (!ms_update_classify(&u, &kind, error) ||
            !ms_crud_array_filters(c->cmd, &u, &array_filters, &has_af, "findAndModify",
                                   error)) {
            return false;
        }
    }
    /* ParsedUpdate / ParsedDelete: the query's limit is 1 only with a sort (a top-1 SORT or a
     * LIMIT); without one the UPDATE or DELETE stage stops at its first document. */
    ms_query_t q = {.filter = &query,
                    .sort = &sort,
                    .hint = has_hint ? &hint : NULL,
                    .limit = 1,
                    .ctx = &c->lang,
                    .write_stops = bson_empty(&sort)};
    c->lang.array_filters = has_af ? &array_filters : NULL;
    bool ok = explain_write(c, name, &q, &u, upsert, remove, &ws, &plan, error);
    c->lang.array_filters = NULL;
    ws.returned = ws.matched + (ws.would_upsert && return_new);
    if (ok) {
        query_reply(c, name, &query, &plan, &ws, false, current, c->cmd, reply);
    }
    ms_plan_destroy(&plan);
    return ok;
}

/* ---- aggregate ------------------------------------------------------------------------------ */

static void
append_stage_entry(bson_t *stages, uint32_t *n, const bson_t *stage, const ms_docvec_t *out)
{
    bson_t entry;
    char idx[16];
    const char *k;
    bson_uint32_to_string((*n)++, &k, idx, sizeof idx);
    bson_append_document_begin(stages, k, -1, &entry);
    bson_concat(&entry, stage);
    if (out) {
        BSON_APPEND_INT64(&entry, "nReturned", (int64_t)out->len);
        BSON_APPEND_INT64(&entry, "executionTimeMillisEstimate", 0);
    }
    bson_append_document_end(stages, &entry);
}

/* Each stage after the query, run alone on the previous one's output to count what it returns;
 * a $out or $merge last, not run. */
static bool
append_later_stages(ms_cmd_t *c, const bson_t *rest, ms_docvec_t *input, const char *write_stage,
                    const verbosity_t *v, bson_t *stages, uint32_t *n, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, rest);
    while (bson_iter_next(&it)) {
        bson_t one = BSON_INITIALIZER, stage;
        ms_docvec_t out;
        uint32_t len;
        const uint8_t *data;
        bson_append_iter(&one, "0", 1, &it);
        bool ok = ms_pipeline_run(&one, input, &c->lang, &out, error);
        bson_destroy(&one);
        if (!ok) {
            ms_docvec_destroy(&out);
            return false;
        }
        bson_iter_document(&it, &len, &data);
        bson_init_static(&stage, data, len);
        append_stage_entry(stages, n, &stage, v->exec_stats ? &out : NULL);
        ms_docvec_destroy(input);
        *input = out;
    }
    if (write_stage) {
        bson_t stage = BSON_INITIALIZER, spec;
        BSON_APPEND_DOCUMENT_BEGIN(&stage, write_stage, &spec);
        bson_append_document_end(&stage, &spec);
        append_stage_entry(stages, n, &stage, NULL);
        bson_destroy(&stage);
    }
    return true;
}

bool
ms_explain_aggregate(ms_cmd_t *c, const char *coll, const bson_t *pipeline,
                     const bson_value_t *hint, const char *write_stage, bool exec_stats,
                     bool all_plans, const bson_t *command, bson_t *reply, bson_error_t *error)
{
    verbosity_t v = {exec_stats, all_plans};
    ms_agg_prefix_t pre;
    ms_recvec_t recs;
    ms_plan_t plan = {0};
    ms_wctx_t w;
    ms_docvec_t input;
    bson_t stages, cursor, entry;
    uint32_t n = 0;
    ms_agg_prefix(pipeline, &pre);
    ms_query_t q = {.filter = pre.has_match ? &pre.match : NULL,
                    .sort = pre.has_sort ? &pre.sort : NULL,
                    .hint = hint,
                    .limit = pre.limit,
                    .ctx = &c->lang,
                    .mode = pre.mode,
                    .explain = true};
    ms_docvec_init(&input);
    ms_wctx_init(&w, c);
    bool ok = ms_query_exec(ms_wctx_coll(&w, coll, false, NULL), &q, &recs, &plan, error);
    for (size_t i = 0; ok && i < recs.len; i++) {
        bson_t view;
        ms_doc_view(recs.recs[i]->doc, &view);
        ms_docvec_push_copy(&input, &view);
    }
    if (ok) {
        ms_recvec_destroy(&recs);
    }
    bool whole = bson_empty(pre.rest) && !write_stage;
    if (ok && whole) {
        query_reply(c, coll, q.filter, &plan, NULL, true, &v, command, reply);
    } else if (ok) {
        BSON_APPEND_UTF8(reply, "explainVersion", "1");
        BSON_APPEND_ARRAY_BEGIN(reply, "stages", &stages);
        bson_append_document_begin(&stages, "0", 1, &entry);
        n = 1;
        BSON_APPEND_DOCUMENT_BEGIN(&entry, "$cursor", &cursor);
        append_query_planner(c, coll, q.filter, &plan, NULL, false, &cursor);
        if (v.exec_stats) {
            ms_plan_exec_stats(&plan, NULL, v.all_plans, &cursor);
        }
        bson_append_document_end(&entry, &cursor);
        bson_append_document_end(&stages, &entry);
        ok = append_later_stages(c, pre.rest, &input, write_stage, &v, &stages, &n, error);
        bson_append_array_end(reply, &stages);
        append_server(reply);
        append_command(c, command, reply);
    }
    ms_wctx_destroy(&w);
    ms_docvec_destroy(&input);
    ms_plan_destroy(&plan);
    ms_agg_prefix_destroy(&pre);
    return ok;
}

static bool
explain_aggregate(ms_cmd_t *c, bson_t *reply, bson_error_t *error)
{
    bson_iter_t it;
    bson_t pipeline;
    const char *write_stage = NULL;
    bson_value_t write_spec;
    const char *name = ms_crud_coll_name(c, error);
    if (!name) {
        return false;
    }
    if (!bson_iter_init_find(&it, c->cmd, "pipeline") || !BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'aggregate.pipeline' is missing but a required field");
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_init_static(&pipeline, data, len);
    bson_t *rest = bson_new();
    bool ok = ms_agg_split_write_stage(&pipeline, &write_stage, &write_spec, rest, error) &&
              ms_pipeline_validate(rest, error);
    bool has_hint = bson_iter_init_find(&it, c->cmd, "hint");
    ok = ok && ms_explain_aggregate(c, name, rest, has_hint ? bson_iter_value(&it) : NULL,
                                    write_stage, current->exec_stats, current->all_plans, c->cmd,
                                    reply, error);
    bson_destroy(rest);
    return ok;
}

/* ---- the command ---------------------------------------------------------------------------- */

typedef bool (*explain_fn)(ms_cmd_t *c, bson_t *reply, bson_error_t *error);

static const struct {
    const char *name;
    explain_fn fn;
} explainable[] = {
    {"find", explain_find},
    {"count", explain_count},
    {"distinct", explain_distinct},
    {"aggregate", explain_aggregate},
    {"update", explain_update_or_delete},
    {"delete", explain_update_or_delete},
    {"findAndModify", explain_find_and_modify},
    {"findandmodify", explain_find_and_modify},
};

MS_HANDLER(explain)
{
    static const char *const allowed[] = {"verbosity", NULL};
    bson_iter_t it;
    bson_t inner;
    verbosity_t v;
    if (!ms_check_fields(c, allowed, error) || !explain_verbosity(c, &v, error) ||
        !ms_crud_get_doc(c->cmd, "explain", true, &inner, "explain", error)) {
        return false;
    }
    if (!bson_iter_init(&it, &inner) || !bson_iter_next(&it) || !BSON_ITER_HOLDS_UTF8(&it)) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "explain command requires a nested object");
    }
    const char *name = bson_iter_key(&it);
    for (size_t i = 0; i < sizeof explainable / sizeof explainable[0]; i++) {
        if (strcmp(name, explainable[i].name) == 0) {
            ms_cmd_t inner_cmd = *c;
            inner_cmd.cmd = &inner;
            inner_cmd.name = strcmp(name, "findandmodify") == 0 ? "findAndModify" : name;
            current = &v;
            bool ok = ms_crud_with_let(&inner_cmd, reply, error, explainable[i].fn);
            current = NULL;
            return ok;
        }
    }
    return ms_set_error(error, MS_ERR_ILLEGAL_OPERATION, "Cannot explain cmd: %s", name);
}

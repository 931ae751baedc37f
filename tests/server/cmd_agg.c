/*
 * aggregate: the leading $match, a $sort and a $limit after it are planned as a find's filter,
 * sort and limit (a pipeline whose next stage reads no field, $count and the like, as a count:
 * mongod's IS_COUNT); the rest runs in ms_pipeline_run. $changeStream goes to changestream.c,
 * explain to cmd_explain.c.
 */
#include "crud-private.h"
#include "lang-private.h"

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

static bool
stage_is(const bson_value_t *stage, const char *name, bson_value_t *arg)
{
    bson_iter_t it;
    return stage->value_type == BSON_TYPE_DOCUMENT &&
           bson_iter_init_from_data(&it, stage->value.v_doc.data, stage->value.v_doc.data_len) &&
           bson_iter_next(&it) && strcmp(bson_iter_key(&it), name) == 0 &&
           (*arg = *bson_iter_value(&it), true);
}

/* A value that names no field: not a "$path" string, not a document or array. */
static bool
constant(const bson_value_t *v)
{
    return !(v->value_type == BSON_TYPE_UTF8 && v->value.v_utf8.len > 0 &&
             v->value.v_utf8.str[0] == '$') &&
           v->value_type != BSON_TYPE_DOCUMENT && v->value_type != BSON_TYPE_ARRAY;
}

/* $count, or $group {_id: <constant>, <name>: {<accumulator>: <constant>}, ...}: stages that
 * read no field of the documents (mongod's DepsTracker::hasNoRequirements). */
static bool
reads_no_field(const bson_value_t *stage)
{
    bson_value_t arg;
    bson_iter_t it, acc;
    if (stage_is(stage, "$count", &arg)) {
        return true;
    }
    if (!stage_is(stage, "$group", &arg) || arg.value_type != BSON_TYPE_DOCUMENT) {
        return false;
    }
    bson_iter_init_from_data(&it, arg.value.v_doc.data, arg.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "_id") == 0) {
            if (!constant(bson_iter_value(&it))) {
                return false;
            }
        } else if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &acc) ||
                   !bson_iter_next(&acc) || !constant(bson_iter_value(&acc))) {
            return false;
        }
    }
    return true;
}

void
ms_agg_prefix(const bson_t *pipeline, ms_agg_prefix_t *out)
{
    bson_iter_t it;
    bson_value_t arg;
    uint32_t n = 0;
    memset(out, 0, sizeof *out);
    out->rest = bson_new();
    out->mode = MS_QUERY_FIND;
    bson_iter_init(&it, pipeline);
    bool more = bson_iter_next(&it);
    if (more && stage_is(bson_iter_value(&it), "$match", &arg) &&
        arg.value_type == BSON_TYPE_DOCUMENT) {
        bson_init_static(&out->match, arg.value.v_doc.data, arg.value.v_doc.data_len);
        out->has_match = true;
        more = bson_iter_next(&it);
    }
    if (more && stage_is(bson_iter_value(&it), "$sort", &arg) &&
        arg.value_type == BSON_TYPE_DOCUMENT) {
        bson_init_static(&out->sort, arg.value.v_doc.data, arg.value.v_doc.data_len);
        out->has_sort = true;
        more = bson_iter_next(&it);
    }
    if (more && stage_is(bson_iter_value(&it), "$limit", &arg) && ms__is_number(arg.value_type) &&
        ms__num_as_double(&arg) >= 1) {
        out->limit = (int64_t)ms__num_as_double(&arg);
        more = bson_iter_next(&it);
    }
    if (more && !out->has_sort && reads_no_field(bson_iter_value(&it))) {
        out->mode = MS_QUERY_NO_FIELDS;
    }
    for (; more; more = bson_iter_next(&it)) {
        char key[16];
        const char *k;
        size_t klen = bson_uint32_to_string(n++, &k, key, sizeof key);
        bson_append_iter(out->rest, k, (int)klen, &it);
    }
}

void
ms_agg_prefix_destroy(ms_agg_prefix_t *p)
{
    bson_destroy(p->rest);
    p->rest = NULL;
}

static bool
run_pipeline(ms_cmd_t *c, const agg_args_t *a, ms_docvec_t *out, ms_plan_t *plan,
             bson_error_t *error)
{
    ms_docvec_t input;
    ms_recvec_t recs;
    ms_wctx_t w;
    ms_agg_prefix_t pre;
    bool ok = false;
    ms_docvec_init(out);
    ms_docvec_init(&input);
    ms_agg_prefix(&a->pipeline, &pre);
    ms_wctx_init(&w, c);
    ms_coll_t *coll = ms_wctx_coll(&w, a->coll, false, NULL);
    ms_query_t q = {.filter = pre.has_match ? &pre.match : NULL,
                    .sort = pre.has_sort ? &pre.sort : NULL,
                    .hint = a->has_hint ? &a->hint : NULL,
                    .limit = pre.limit,
                    .ctx = &c->lang,
                    .mode = pre.mode};
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
    ok = ms_pipeline_run(pre.rest, &input, &c->lang, out, error);
done:
    ms_wctx_destroy(&w);
    ms_docvec_destroy(&input);
    ms_agg_prefix_destroy(&pre);
    return ok;
}

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
    ok = ok && ms_pipeline_validate(&a.pipeline, error);
    if (ok && a.explain) { /* aggregate's explain: true is the queryPlanner verbosity */
        ok = ms_explain_aggregate(c, a.coll, &a.pipeline, a.has_hint ? &a.hint : NULL,
                                  write_stage, false, false, c->cmd, reply, error);
        bson_destroy(rest);
        return ok;
    }
    ok = ok && run_pipeline(c, &a, &results, &plan, error);
    if (ok && write_stage) { /* $out, $merge: written, none returned */
        ok = ms_agg_write_stage(c, write_stage, &write_spec, &results, error);
        ms_docvec_destroy(&results);
        ms_docvec_init(&results);
    }
    bson_destroy(rest);
    if (!ok) {
        return false;
    }
    char *ns = bson_strdup_printf("%s.%s", c->db, a.coll);
    ms_cursor_reply(c, reply, ns, &results, a.batch_size);
    bson_free(ns);
    ms_docvec_destroy(&results);
    return true;
}

/* With the command's `let` variables ($$<name>). */
MS_HANDLER(aggregate)
{
    return ms_crud_with_let(c, reply, error, aggregate_body);
}

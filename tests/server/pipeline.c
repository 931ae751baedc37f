/*
 * mongoq-test-server: aggregation pipelines over an in-memory vector of documents, and the
 * single-document stages that pipeline-style updates run. Stages are a table, stages[]: a row
 * per stage with its validation, its run over the documents and whether updates may use it;
 * $group's functions are in group.c, the stages that reshape each document ($project, $unset,
 * $addFields/$set, $replaceRoot/$replaceWith) in pipeline_reshape.c.
 */
#include "lang-private.h"

#include <math.h>
#include <string.h>

/* ---- document vectors ------------------------------------------------------------------ */

void
ms_docvec_init(ms_docvec_t *v)
{
    memset(v, 0, sizeof *v);
}

void
ms_docvec_push_owned(ms_docvec_t *v, bson_t *doc)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->docs = bson_realloc(v->docs, v->cap * sizeof *v->docs);
    }
    v->docs[v->len++] = doc;
}

void
ms_docvec_push_copy(ms_docvec_t *v, const bson_t *doc)
{
    ms_docvec_push_owned(v, bson_copy(doc));
}

void
ms_docvec_destroy(ms_docvec_t *v)
{
    for (size_t i = 0; i < v->len; i++) {
        if (v->docs[i]) { /* stages that move documents on leave NULL behind */
            bson_destroy(v->docs[i]);
        }
    }
    bson_free(v->docs);
    memset(v, 0, sizeof *v);
}

/* ---- stage table ----------------------------------------------------------------------- */

typedef bool (*stage_validate_fn)(const bson_value_t *arg, bson_error_t *error);
typedef bool (*stage_run_fn)(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                             ms_docvec_t *out, bson_error_t *error);

typedef struct {
    const char *name;
    bool in_update; /* allowed in a pipeline-style update */
    stage_validate_fn validate;
    stage_run_fn run;
} stage_def_t;

bool
ms__stage_arg_doc(const bson_value_t *arg, bson_t *doc)
{
    return arg->value_type == BSON_TYPE_DOCUMENT &&
           bson_init_static(doc, arg->value.v_doc.data, arg->value.v_doc.data_len);
}

bool
ms__stage_map_docs(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
                   ms_stage_doc_fn fn, bson_error_t *error)
{
    for (size_t i = 0; i < in->len; i++) {
        bson_t result; /* initialised by fn on every path */
        bool keep = true;
        if (!fn(arg, in->docs[i], ctx, &result, &keep, error)) {
            bson_destroy(&result);
            return false;
        }
        if (keep) {
            ms_docvec_push_owned(out, bson_copy(&result));
        }
        bson_destroy(&result);
    }
    return true;
}

/* $match */

static bool
match_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t q;
    if (!ms__stage_arg_doc(arg, &q)) {
        return ms_set_error(error, MS_ERR_LOCATION15959,
                            "the match filter must be an expression in an object");
    }
    ms_matcher_t *m = ms_matcher_new(&q, error);
    ms_matcher_destroy(m);
    return m != NULL;
}

static bool
match_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
          bson_error_t *error)
{
    bson_t q;
    ms__stage_arg_doc(arg, &q);
    ms_matcher_t *m = ms_matcher_new(&q, error);
    if (!m) {
        return false;
    }
    bool ok = ms__matcher_check_vars(m, ctx, error);
    for (size_t i = 0; i < in->len && ok; i++) {
        bool yes = false;
        ok = ms_matcher_test(m, in->docs[i], ctx, &yes, error);
        if (ok && yes) {
            ms_docvec_push_owned(out, in->docs[i]);
            in->docs[i] = NULL;
        }
    }
    ms_matcher_destroy(m);
    return ok;
}

/* $sort */

static bool
sort_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t spec;
    if (!ms__stage_arg_doc(arg, &spec)) {
        return ms_set_error(error, MS_ERR_LOCATION15973,
                            "the $sort key specification must be an object");
    }
    if (bson_empty(&spec)) {
        return ms_set_error(error, MS_ERR_LOCATION15976,
                            "$sort stage must have at least one sort key");
    }
    return ms_sort_validate(&spec, error);
}

static int
sort_docs_cmp(const void *a, const void *b, void *ctx)
{
    return ms_sort_cmp(ctx, a, b);
}

static bool
sort_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
         bson_error_t *error)
{
    bson_t spec;
    (void)ctx;
    (void)error;
    ms__stage_arg_doc(arg, &spec);
    ms__stable_sort((void **)in->docs, in->len, sort_docs_cmp, &spec);
    *out = *in;
    ms_docvec_init(in);
    return true;
}

/* $limit and $skip */

static bool
integral(const bson_value_t *arg, int64_t *n)
{
    double d = ms__num_as_double(arg);
    if (!ms__is_number(arg->value_type) || isnan(d) || d != floor(d)) {
        return false;
    }
    *n = arg->value_type == BSON_TYPE_INT64 ? arg->value.v_int64 : ms__clamp_i64(d);
    return true;
}

static bool
limit_validate(const bson_value_t *arg, bson_error_t *error)
{
    int64_t n;
    if (!integral(arg, &n)) {
        return ms_set_error(error, MS_ERR_LOCATION15957, "the limit must be specified as a number");
    }
    return n > 0 || ms_set_error(error, MS_ERR_LOCATION15958, "the limit must be positive");
}

static bool
skip_validate(const bson_value_t *arg, bson_error_t *error)
{
    int64_t n;
    if (!integral(arg, &n)) {
        return ms_set_error(error, MS_ERR_LOCATION15972, "Argument to $skip must be a number");
    }
    return n >= 0 ||
           ms_set_error(error, MS_ERR_LOCATION15956, "Argument to $skip cannot be negative");
}

static bool
slice_run(const bson_value_t *arg, ms_docvec_t *in, ms_docvec_t *out, bool is_skip)
{
    int64_t n = 0;
    integral(arg, &n); /* validated before the run */
    for (size_t i = 0; i < in->len; i++) {
        bool keep = is_skip ? (int64_t)i >= n : (int64_t)i < n;
        if (keep) {
            ms_docvec_push_owned(out, in->docs[i]);
            in->docs[i] = NULL;
        }
    }
    return true;
}

static bool
limit_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
          bson_error_t *error)
{
    (void)ctx;
    (void)error;
    return slice_run(arg, in, out, false);
}

static bool
skip_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
         bson_error_t *error)
{
    (void)ctx;
    (void)error;
    return slice_run(arg, in, out, true);
}

/* $count */

static bool
count_validate(const bson_value_t *arg, bson_error_t *error)
{
    if (arg->value_type != BSON_TYPE_UTF8 || arg->value.v_utf8.len == 0) {
        return ms_set_error(error, MS_ERR_LOCATION40156,
                            "the count field must be a non-empty string");
    }
    if (arg->value.v_utf8.str[0] == '$') {
        return ms_set_error(error, MS_ERR_LOCATION40158,
                            "the count field cannot be a $-prefixed path");
    }
    if (strchr(arg->value.v_utf8.str, '.')) {
        return ms_set_error(error, MS_ERR_LOCATION40160, "the count field cannot contain '.'");
    }
    return true;
}

static bool
count_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
          bson_error_t *error)
{
    (void)ctx;
    (void)error;
    if (in->len == 0) {
        return true;
    }
    bson_t *doc = bson_new();
    if (in->len <= INT32_MAX) {
        bson_append_int32(doc, arg->value.v_utf8.str, -1, (int32_t)in->len);
    } else {
        bson_append_int64(doc, arg->value.v_utf8.str, -1, (int64_t)in->len);
    }
    ms_docvec_push_owned(out, doc);
    return true;
}

static const stage_def_t stages[] = {
    {"$match", false, match_validate, match_run},
    {"$sort", false, sort_validate, sort_run},
    {"$limit", false, limit_validate, limit_run},
    {"$skip", false, skip_validate, skip_run},
    {"$project", true, ms__stage_project_validate, ms__stage_project_run},
    {"$addFields", true, ms__stage_add_fields_validate, ms__stage_add_fields_run},
    {"$set", true, ms__stage_add_fields_validate, ms__stage_add_fields_run},
    {"$unset", true, ms__stage_unset_validate, ms__stage_unset_run},
    {"$group", false, ms__group_validate, ms__group_run},
    {"$count", false, count_validate, count_run},
    {"$replaceRoot", true, ms__stage_replace_root_validate, ms__stage_replace_root_run},
    {"$replaceWith", true, ms__stage_replace_with_validate, ms__stage_replace_with_run},
};

/* ---- pipelines ------------------------------------------------------------------------- */

static const stage_def_t *
stage_of(const bson_value_t *stage, bson_value_t *arg, bson_error_t *error)
{
    bson_iter_t it;
    if (stage->value_type != BSON_TYPE_DOCUMENT) {
        ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                     "Each element of the 'pipeline' array must be an object");
        return NULL;
    }
    bson_iter_init_from_data(&it, stage->value.v_doc.data, stage->value.v_doc.data_len);
    if (!bson_iter_next(&it)) {
        ms_set_error(error, MS_ERR_LOCATION40323,
                     "A pipeline stage specification object must contain exactly one field.");
        return NULL;
    }
    const char *name = bson_iter_key(&it);
    *arg = *bson_iter_value(&it);
    if (bson_iter_next(&it)) {
        ms_set_error(error, MS_ERR_LOCATION40323,
                     "A pipeline stage specification object must contain exactly one field.");
        return NULL;
    }
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        if (strcmp(stages[i].name, name) == 0) {
            return &stages[i];
        }
    }
    ms_set_error(error, MS_ERR_LOCATION40324, "Unrecognized pipeline stage name: '%s'", name);
    return NULL;
}

static bool
validate_pipeline(const bson_t *pipeline, bool for_update, bson_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, pipeline)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "'pipeline' option must be specified as an array");
    }
    while (bson_iter_next(&it)) {
        bson_value_t arg;
        const stage_def_t *st = stage_of(bson_iter_value(&it), &arg, error);
        if (!st) {
            return false;
        }
        if (for_update && !st->in_update) {
            return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                                "%s is not allowed to be used within an update", st->name);
        }
        if (!st->validate(&arg, error)) {
            return false;
        }
    }
    return true;
}

bool
ms_pipeline_validate(const bson_t *pipeline, bson_error_t *error)
{
    return validate_pipeline(pipeline, false, error);
}

bool
ms_pipeline_check_vars(const bson_t *pipeline, const ms_ctx_t *ctx, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, pipeline);
    while (bson_iter_next(&it)) {
        bson_value_t arg;
        bson_t q;
        const stage_def_t *st = stage_of(bson_iter_value(&it), &arg, error);
        if (!st) {
            return false;
        }
        if (st->run != match_run || !ms__stage_arg_doc(&arg, &q)) {
            continue;
        }
        ms_matcher_t *m = ms_matcher_new(&q, error);
        bool ok = m && ms__matcher_check_vars(m, ctx, error);
        ms_matcher_destroy(m);
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool
ms_pipeline_run(const bson_t *pipeline, const ms_docvec_t *input, const ms_ctx_t *ctx,
                ms_docvec_t *out, bson_error_t *error)
{
    ms_docvec_t cur, next;
    bson_iter_t it;
    bool ok = false;
    ms_docvec_init(out);
    ms_docvec_init(&cur);
    for (size_t i = 0; i < input->len; i++) {
        ms_docvec_push_copy(&cur, input->docs[i]);
    }
    if (!validate_pipeline(pipeline, false, error)) {
        goto done;
    }
    bson_iter_init(&it, pipeline);
    while (bson_iter_next(&it)) {
        bson_value_t arg;
        const stage_def_t *st = stage_of(bson_iter_value(&it), &arg, error);
        ms_docvec_init(&next);
        if (!st->run(&arg, &cur, ctx, &next, error)) {
            ms_docvec_destroy(&next);
            goto done;
        }
        ms_docvec_destroy(&cur);
        cur = next;
    }
    *out = cur;
    ms_docvec_init(&cur);
    ok = true;
done:
    ms_docvec_destroy(&cur);
    return ok;
}

bool
ms__update_pipeline_validate(const bson_t *pipeline, bson_error_t *error)
{
    return validate_pipeline(pipeline, true, error);
}

bool
ms__update_pipeline_apply(const bson_t *pipeline, const bson_t *doc, const ms_ctx_t *ctx,
                          bson_t *out, bson_error_t *error)
{
    ms_docvec_t in, result;
    bool ok;
    ms_docvec_init(&in);
    ms_docvec_push_copy(&in, doc);
    if (!validate_pipeline(pipeline, true, error)) {
        ms_docvec_destroy(&in);
        bson_init(out);
        return false;
    }
    ok = ms_pipeline_run(pipeline, &in, ctx, &result, error) && result.len == 1;
    if (ok) {
        bson_copy_to(result.docs[0], out);
    } else {
        bson_init(out);
    }
    ms_docvec_destroy(&in);
    ms_docvec_destroy(&result);
    return ok;
}

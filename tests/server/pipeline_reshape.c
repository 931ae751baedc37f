/*
 * mongoq-test-server: the pipeline stages that reshape each document, rows of pipeline.c's
 * stages[] that pipeline-style updates may use too: $project, $unset (an exclusion projection),
 * $addFields and its alias $set, $replaceRoot {newRoot: expr} and $replaceWith expr.
 */
#include "lang-private.h"

#include <string.h>

/* $project */

bool
ms__stage_project_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t spec;
    if (!ms__stage_arg_doc(arg, &spec)) {
        return ms_set_error(error, MS_ERR_LOCATION15969,
                            "$project specification must be an object");
    }
    return ms__project_validate(&spec, MS_PROJ_STAGE_PROJECT, error);
}

static bool
project_doc(const bson_value_t *arg, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
            bool *keep, bson_error_t *error)
{
    bson_t spec;
    (void)keep;
    ms__stage_arg_doc(arg, &spec);
    return ms__project_apply(&spec, MS_PROJ_STAGE_PROJECT, doc, ctx, out, error);
}

bool
ms__stage_project_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                      ms_docvec_t *out, bson_error_t *error)
{
    return ms__stage_map_docs(arg, in, ctx, out, project_doc, error);
}

/* $unset: a field name or an array of them, as an exclusion projection */

static bool
unset_spec(const bson_value_t *arg, bson_t *spec, bson_error_t *error)
{
    bson_init(spec);
    if (arg->value_type == BSON_TYPE_UTF8) {
        bson_append_int32(spec, arg->value.v_utf8.str, -1, 0);
        return true;
    }
    if (arg->value_type != BSON_TYPE_ARRAY || arg->value.v_doc.data_len <= 5) {
        return ms_set_error(error, MS_ERR_LOCATION31002,
                            "$unset specification must be a string or an array");
    }
    bson_iter_t it;
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_UTF8(&it)) {
            return ms_set_error(error, MS_ERR_LOCATION31120,
                                "$unset specification must be a string or an array containing "
                                "only string values");
        }
        bson_append_int32(spec, bson_iter_utf8(&it, NULL), -1, 0);
    }
    return true;
}

bool
ms__stage_unset_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t spec;
    bool ok =
        unset_spec(arg, &spec, error) && ms__project_validate(&spec, MS_PROJ_STAGE_UNSET, error);
    bson_destroy(&spec);
    return ok;
}

static bool
unset_doc(const bson_value_t *arg, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out, bool *keep,
          bson_error_t *error)
{
    bson_t spec;
    bool ok;
    (void)keep;
    unset_spec(arg, &spec, NULL);
    ok = ms__project_apply(&spec, MS_PROJ_STAGE_UNSET, doc, ctx, out, error);
    bson_destroy(&spec);
    return ok;
}

bool
ms__stage_unset_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
                    bson_error_t *error)
{
    return ms__stage_map_docs(arg, in, ctx, out, unset_doc, error);
}

/* $addFields / $set */

bool
ms__stage_add_fields_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t spec;
    if (!ms__stage_arg_doc(arg, &spec)) {
        return ms_set_error(error, MS_ERR_LOCATION40272,
                            "$addFields specification stage must be an object, got %s",
                            ms__type_name(arg->value_type));
    }
    return ms__add_fields_validate(&spec, error);
}

static bool
add_fields_doc(const bson_value_t *arg, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
               bool *keep, bson_error_t *error)
{
    bson_t spec;
    (void)keep;
    ms__stage_arg_doc(arg, &spec);
    return ms__add_fields_apply(&spec, doc, ctx, out, error);
}

bool
ms__stage_add_fields_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                         ms_docvec_t *out, bson_error_t *error)
{
    return ms__stage_map_docs(arg, in, ctx, out, add_fields_doc, error);
}

/* $replaceRoot {newRoot: expr} and $replaceWith expr */

static bool
new_root_expr(const bson_value_t *arg, bool replace_with, bson_value_t *expr, bson_error_t *error)
{
    if (replace_with) {
        *expr = *arg;
        return true;
    }
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        return ms_set_error(error, MS_ERR_LOCATION40228,
                            "expected an object as specification for $replaceRoot stage, got %s",
                            ms__type_name(arg->value_type));
    }
    if (!ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "newRoot", 7, expr)) {
        return ms_set_error(error, MS_ERR_LOCATION40231,
                            "no newRoot specified for the $replaceRoot stage");
    }
    return true;
}

bool
ms__stage_replace_root_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_value_t expr;
    return new_root_expr(arg, false, &expr, error) && ms__expr_validate(&expr, error);
}

bool
ms__stage_replace_with_validate(const bson_value_t *arg, bson_error_t *error)
{
    return ms__expr_validate(arg, error);
}

static bool
replace_doc(const bson_value_t *expr, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
            bson_error_t *error)
{
    bson_value_t v;
    bson_init(out);
    if (!ms__expr_eval(expr, doc, doc, ctx, &v, error)) {
        return false;
    }
    if (v.value_type != BSON_TYPE_DOCUMENT) {
        char *json = ms__value_json(&v);
        ms_set_error(error, MS_ERR_LOCATION40228,
                     "'newRoot' expression must evaluate to an object, but resulting value was: "
                     "%s. Type of resulting value: '%s'.",
                     json, ms__type_name(v.value_type));
        bson_free(json);
        bson_value_destroy(&v);
        return false;
    }
    bson_t tmp;
    bson_init_static(&tmp, v.value.v_doc.data, v.value.v_doc.data_len);
    bson_destroy(out);
    bson_copy_to(&tmp, out);
    bson_value_destroy(&v);
    return true;
}

static bool
replace_root_doc(const bson_value_t *arg, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
                 bool *keep, bson_error_t *error)
{
    bson_value_t expr;
    (void)keep;
    new_root_expr(arg, false, &expr, NULL);
    return replace_doc(&expr, doc, ctx, out, error);
}

static bool
replace_with_doc(const bson_value_t *arg, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
                 bool *keep, bson_error_t *error)
{
    (void)keep;
    return replace_doc(arg, doc, ctx, out, error);
}

bool
ms__stage_replace_root_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                           ms_docvec_t *out, bson_error_t *error)
{
    return ms__stage_map_docs(arg, in, ctx, out, replace_root_doc, error);
}

bool
ms__stage_replace_with_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                           ms_docvec_t *out, bson_error_t *error)
{
    return ms__stage_map_docs(arg, in, ctx, out, replace_with_doc, error);
}

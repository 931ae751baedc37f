/*
 * mongoq-test-server: aggregation pipelines over an in-memory vector of documents, and the
 * single-document stages that pipeline-style updates run.
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

static bool
arg_doc(const bson_value_t *arg, bson_t *doc)
{
    return arg->value_type == BSON_TYPE_DOCUMENT &&
           bson_init_static(doc, arg->value.v_doc.data, arg->value.v_doc.data_len);
}

/* Per-document stages share this loop: fn maps one document to zero or one. */
typedef bool (*doc_fn)(const bson_value_t *arg, const bson_t *doc, const ms_ctx_t *ctx,
                       bson_t *out, bool *keep, bson_error_t *error);

static bool
map_docs(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
         doc_fn fn, bson_error_t *error)
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
    if (!arg_doc(arg, &q)) {
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
    arg_doc(arg, &q);
    ms_matcher_t *m = ms_matcher_new(&q, error);
    if (!m) {
        return false;
    }
    for (size_t i = 0; i < in->len; i++) {
        if (ms_matcher_matches(m, in->docs[i], ctx)) {
            ms_docvec_push_owned(out, in->docs[i]);
            in->docs[i] = NULL;
        }
    }
    ms_matcher_destroy(m);
    return true;
}

/* $sort */

static bool
sort_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t spec;
    if (!arg_doc(arg, &spec)) {
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
    arg_doc(arg, &spec);
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

/* $project */

static bool
project_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t spec;
    if (!arg_doc(arg, &spec)) {
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
    arg_doc(arg, &spec);
    return ms__project_apply(&spec, MS_PROJ_STAGE_PROJECT, doc, ctx, out, error);
}

static bool
project_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
            bson_error_t *error)
{
    return map_docs(arg, in, ctx, out, project_doc, error);
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

static bool
unset_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t spec;
    bool ok = unset_spec(arg, &spec, error) &&
              ms__project_validate(&spec, MS_PROJ_STAGE_UNSET, error);
    bson_destroy(&spec);
    return ok;
}

static bool
unset_doc(const bson_value_t *arg, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
          bool *keep, bson_error_t *error)
{
    bson_t spec;
    bool ok;
    (void)keep;
    unset_spec(arg, &spec, NULL);
    ok = ms__project_apply(&spec, MS_PROJ_STAGE_UNSET, doc, ctx, out, error);
    bson_destroy(&spec);
    return ok;
}

static bool
unset_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
          bson_error_t *error)
{
    return map_docs(arg, in, ctx, out, unset_doc, error);
}

/* $addFields / $set */

static bool
add_fields_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_t spec;
    if (!arg_doc(arg, &spec)) {
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
    arg_doc(arg, &spec);
    return ms__add_fields_apply(&spec, doc, ctx, out, error);
}

static bool
add_fields_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
               bson_error_t *error)
{
    return map_docs(arg, in, ctx, out, add_fields_doc, error);
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

static bool
replace_root_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_value_t expr;
    return new_root_expr(arg, false, &expr, error) && ms__expr_validate(&expr, error);
}

static bool
replace_with_validate(const bson_value_t *arg, bson_error_t *error)
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

static bool
replace_root_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                 ms_docvec_t *out, bson_error_t *error)
{
    return map_docs(arg, in, ctx, out, replace_root_doc, error);
}

static bool
replace_with_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                 ms_docvec_t *out, bson_error_t *error)
{
    return map_docs(arg, in, ctx, out, replace_with_doc, error);
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

/* $group: in group.c's place, below */
static bool group_validate(const bson_value_t *arg, bson_error_t *error);
static bool group_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                      ms_docvec_t *out, bson_error_t *error);

static const stage_def_t stages[] = {
    {"$match", false, match_validate, match_run},
    {"$sort", false, sort_validate, sort_run},
    {"$limit", false, limit_validate, limit_run},
    {"$skip", false, skip_validate, skip_run},
    {"$project", true, project_validate, project_run},
    {"$addFields", true, add_fields_validate, add_fields_run},
    {"$set", true, add_fields_validate, add_fields_run},
    {"$unset", true, unset_validate, unset_run},
    {"$group", false, group_validate, group_run},
    {"$count", false, count_validate, count_run},
    {"$replaceRoot", true, replace_root_validate, replace_root_run},
    {"$replaceWith", true, replace_with_validate, replace_with_run},
};

/* ---- $group ---------------------------------------------------------------------------- */

typedef enum { A_SUM, A_AVG, A_MIN, A_MAX, A_FIRST, A_LAST, A_PUSH, A_ADD_TO_SET, A_COUNT } acc_kind_t;

static const struct {
    const char *name;
    acc_kind_t kind;
} accumulators[] = {
    {"$sum", A_SUM},   {"$avg", A_AVG},   {"$min", A_MIN},   {"$max", A_MAX},
    {"$first", A_FIRST}, {"$last", A_LAST}, {"$push", A_PUSH}, {"$addToSet", A_ADD_TO_SET},
    {"$count", A_COUNT},
};

typedef struct {
    const char *field;
    acc_kind_t kind;
    bson_value_t expr; /* borrowed from the stage */
} acc_spec_t;

typedef struct {
    ms_sum_t sum;
    size_t count;
    bson_value_t value; /* min/max/first/last; EOD until set */
    bool seen;
    ms_node_t *list;    /* push/addToSet */
} acc_state_t;

typedef struct {
    bson_value_t key;
    acc_state_t *accs;
} group_t;

static bool
parse_group(const bson_value_t *arg, bson_value_t *id_expr, acc_spec_t **specs, size_t *n,
            bson_error_t *error)
{
    bson_iter_t it;
    bool have_id = false;
    *specs = NULL;
    *n = 0;
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        return ms_set_error(error, MS_ERR_LOCATION15947,
                            "a group's fields must be specified in an object");
    }
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *field = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        bson_iter_t acc;
        if (strcmp(field, "_id") == 0) {
            *id_expr = *v;
            have_id = true;
            if (!ms__expr_validate(v, error)) {
                return false;
            }
            continue;
        }
        if (field[0] == '$') {
            return ms_set_error(error, MS_ERR_LOCATION40236,
                                "The field name '%s' cannot be an operator name", field);
        }
        if (strchr(field, '.')) {
            return ms_set_error(error, MS_ERR_LOCATION40235,
                                "The field name '%s' cannot contain '.'", field);
        }
        if (v->value_type != BSON_TYPE_DOCUMENT) {
            return ms_set_error(error, MS_ERR_LOCATION40234,
                                "The field '%s' must be an accumulator object", field);
        }
        bson_iter_init_from_data(&acc, v->value.v_doc.data, v->value.v_doc.data_len);
        if (!bson_iter_next(&acc) || v->value.v_doc.data_len <= 5) {
            return ms_set_error(error, MS_ERR_LOCATION40234,
                                "The field '%s' must be an accumulator object", field);
        }
        const char *op = bson_iter_key(&acc);
        size_t k = 0;
        while (k < sizeof accumulators / sizeof accumulators[0] && strcmp(accumulators[k].name, op) != 0) {
            k++;
        }
        if (k == sizeof accumulators / sizeof accumulators[0]) {
            return ms_set_error(error, MS_ERR_LOCATION15952, "unknown group operator '%s'", op);
        }
        *specs = bson_realloc(*specs, (*n + 1) * sizeof **specs);
        (*specs)[*n].field = field;
        (*specs)[*n].kind = accumulators[k].kind;
        (*specs)[*n].expr = *bson_iter_value(&acc);
        (*n)++;
        if (bson_iter_next(&acc)) {
            return ms_set_error(error, MS_ERR_LOCATION40238,
                                "The field '%s' must specify one accumulator", field);
        }
        if (accumulators[k].kind == A_COUNT) {
            const bson_value_t *e = &(*specs)[*n - 1].expr;
            if (e->value_type != BSON_TYPE_DOCUMENT || e->value.v_doc.data_len > 5) {
                return ms_set_error(error, MS_ERR_LOCATION40237,
                                    "$count takes no arguments, i.e. $count:{}");
            }
        } else if (!ms__expr_validate(&(*specs)[*n - 1].expr, error)) {
            return false;
        }
    }
    return have_id ||
           ms_set_error(error, MS_ERR_LOCATION15955, "a group specification must include an _id");
}

static bool
group_validate(const bson_value_t *arg, bson_error_t *error)
{
    bson_value_t id;
    acc_spec_t *specs;
    size_t n;
    bool ok = parse_group(arg, &id, &specs, &n, error);
    bson_free(specs);
    return ok;
}

static void
acc_add(acc_state_t *st, acc_kind_t kind, const bson_value_t *v)
{
    bool missing = v->value_type == BSON_TYPE_EOD;
    bool nullish = missing || v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED;
    switch (kind) {
    case A_SUM:
    case A_AVG:
        if (ms__is_number(v->value_type)) {
            ms__sum_add(&st->sum, v);
            st->count++;
        }
        break;
    case A_COUNT:
        st->count++;
        break;
    case A_MIN:
    case A_MAX:
        if (!nullish) {
            int c = st->seen ? ms_value_cmp(v, &st->value) : 0;
            if (!st->seen || (kind == A_MIN ? c < 0 : c > 0)) {
                bson_value_destroy(&st->value);
                bson_value_copy(v, &st->value);
                st->seen = true;
            }
        }
        break;
    case A_FIRST:
    case A_LAST:
        if (kind == A_LAST || !st->seen) {
            bson_value_destroy(&st->value);
            if (missing) {
                st->value.value_type = BSON_TYPE_NULL;
            } else {
                bson_value_copy(v, &st->value);
            }
            st->seen = true;
        }
        break;
    case A_PUSH:
    case A_ADD_TO_SET:
        if (missing) {
            break;
        }
        if (!st->list) {
            st->list = ms__node_new(BSON_TYPE_ARRAY);
        }
        ms_node_t *n = ms__node_from_value(v);
        for (size_t i = 0; kind == A_ADD_TO_SET && i < st->list->len; i++) {
            if (ms_type_rank(st->list->kids[i]->type) == ms_type_rank(n->type) &&
                ms__node_cmp(st->list->kids[i], n) == 0) {
                ms__node_destroy(n);
                n = NULL;
                break;
            }
        }
        if (n) {
            ms__node_push(st->list, NULL, 0, n);
        }
        break;
    }
}

static void
acc_result(acc_state_t *st, acc_kind_t kind, bson_t *out, const char *field)
{
    bson_value_t v = {.value_type = BSON_TYPE_NULL};
    switch (kind) {
    case A_SUM:
        ms__sum_value(&st->sum, &v);
        break;
    case A_COUNT: {
        ms_sum_t s = {.kind = 0, .i = (int64_t)st->count};
        ms__sum_value(&s, &v);
        break;
    }
    case A_AVG:
        if (st->count > 0) {
            double total = st->sum.kind <= 1 ? (double)st->sum.i : st->sum.d;
            ms__double_value(total / (double)st->count, st->sum.kind == 3, &v);
        }
        break;
    case A_PUSH:
    case A_ADD_TO_SET:
        if (!st->list) {
            st->list = ms__node_new(BSON_TYPE_ARRAY);
        }
        ms__node_append_to(out, field, st->list);
        return;
    default:
        if (st->seen) {
            bson_append_value(out, field, -1, &st->value);
            return;
        }
        break;
    }
    bson_append_value(out, field, -1, &v);
    bson_value_destroy(&v);
}

typedef struct {
    group_t **groups; /* in order of first appearance */
    group_t **index;  /* sorted by key */
    size_t n, cap;
} groups_t;

static group_t *
group_find_or_add(groups_t *g, const bson_value_t *key, size_t naccs)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = ms_value_cmp(&g->index[mid]->key, key);
        if (c == 0) {
            return g->index[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (g->n == g->cap) {
        g->cap = g->cap ? g->cap * 2 : 16;
        g->groups = bson_realloc(g->groups, g->cap * sizeof *g->groups);
        g->index = bson_realloc(g->index, g->cap * sizeof *g->index);
    }
    group_t *grp = bson_malloc0(sizeof *grp);
    bson_value_copy(key, &grp->key);
    grp->accs = bson_malloc0((naccs ? naccs : 1) * sizeof *grp->accs);
    memmove(g->index + lo + 1, g->index + lo, (g->n - lo) * sizeof *g->index);
    g->index[lo] = grp;
    g->groups[g->n++] = grp;
    return grp;
}

static void
groups_destroy(groups_t *g, size_t naccs)
{
    for (size_t i = 0; i < g->n; i++) {
        for (size_t k = 0; k < naccs; k++) {
            bson_value_destroy(&g->groups[i]->accs[k].value);
            ms__node_destroy(g->groups[i]->accs[k].list);
        }
        bson_free(g->groups[i]->accs);
        bson_value_destroy(&g->groups[i]->key);
        bson_free(g->groups[i]);
    }
    bson_free(g->groups);
    bson_free(g->index);
}

static bool
group_one(const bson_value_t *id_expr, const acc_spec_t *specs, size_t n, const bson_t *doc,
          const ms_ctx_t *ctx, groups_t *g, bson_error_t *error)
{
    bson_value_t key;
    if (!ms__expr_eval(id_expr, doc, doc, ctx, &key, error)) {
        return false;
    }
    if (key.value_type == BSON_TYPE_EOD) {
        key.value_type = BSON_TYPE_NULL; /* missing and null group together */
    }
    group_t *grp = group_find_or_add(g, &key, n);
    bson_value_destroy(&key);
    for (size_t k = 0; k < n; k++) {
        bson_value_t v = {.value_type = BSON_TYPE_EOD};
        if (specs[k].kind != A_COUNT &&
            !ms__expr_eval(&specs[k].expr, doc, doc, ctx, &v, error)) {
            return false;
        }
        acc_add(&grp->accs[k], specs[k].kind, &v);
        bson_value_destroy(&v);
    }
    return true;
}

static bool
group_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
          bson_error_t *error)
{
    bson_value_t id_expr;
    acc_spec_t *specs = NULL;
    size_t n = 0;
    groups_t g = {0};
    bool ok = false;
    if (!parse_group(arg, &id_expr, &specs, &n, error)) {
        goto done;
    }
    for (size_t i = 0; i < in->len; i++) {
        if (!group_one(&id_expr, specs, n, in->docs[i], ctx, &g, error)) {
            goto done;
        }
    }
    for (size_t i = 0; i < g.n; i++) {
        bson_t *doc = bson_new();
        bson_append_value(doc, "_id", 3, &g.groups[i]->key);
        for (size_t k = 0; k < n; k++) {
            acc_result(&g.groups[i]->accs[k], specs[k].kind, doc, specs[k].field);
        }
        ms_docvec_push_owned(out, doc);
    }
    ok = true;
done:
    groups_destroy(&g, n);
    bson_free(specs);
    return ok;
}

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

/*
 * mongoq-test-server: the $group stage ({_id: <expr>, field: {<accumulator>: <expr>}, ...}), a row
 * of pipeline.c's stage table. Groups keep their first-seen order; accumulators $sum $avg $min
 * $max $first $last $push $addToSet $count, with mongod 6.0's errors
 * (src/mongo/db/pipeline/document_source_group.cpp, accumulator*.cpp).
 */
#include "lang-private.h"

#include <string.h>

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

bool
ms__group_validate(const bson_value_t *arg, bson_error_t *error)
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

bool
ms__group_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
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

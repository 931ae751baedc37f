/*
 * mongoq-test-server: what the query planner (query.c) reads from a filter to choose an index:
 * the equality, $in list or range a filter puts on a path at its top level (possibly inside a
 * top-level $and). Part of the language library so lang_tests can check it without a server.
 */
#include "lang-private.h"

#include <math.h>
#include <string.h>

static bool
is_nan(const bson_value_t *v)
{
    return ms__is_number(v->value_type) && isnan(ms__num_as_double(v));
}

/* Calls fn on each (path, value) pair constraining the top level, descending into $and. */
typedef void (*constraint_fn)(const char *key, const bson_value_t *v, void *ctx);

static void
each_top_constraint(const bson_t *filter, constraint_fn fn, void *ctx, int depth)
{
    bson_iter_t it;
    if (depth > 20 || !bson_iter_init(&it, filter)) {
        return;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(key, "$and") == 0 && v->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t ai;
            bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len);
            while (bson_iter_next(&ai)) {
                const bson_value_t *e = bson_iter_value(&ai);
                bson_t sub;
                if (e->value_type == BSON_TYPE_DOCUMENT &&
                    bson_init_static(&sub, e->value.v_doc.data, e->value.v_doc.data_len)) {
                    each_top_constraint(&sub, fn, ctx, depth + 1);
                }
            }
        } else if (key[0] != '$') {
            fn(key, v, ctx);
        }
    }
}

typedef struct {
    const char *path;
    bool found;
    bson_value_t eq;
} eq_search_t;

/*
 * Values that pin an index key exactly: not null (it also matches missing), not an array (it
 * also matches arrays holding it), not a regex (a pattern, not a value).
 */
static bool
exact_key_value(const bson_value_t *v)
{
    return v->value_type != BSON_TYPE_NULL && v->value_type != BSON_TYPE_UNDEFINED &&
           v->value_type != BSON_TYPE_ARRAY && v->value_type != BSON_TYPE_REGEX &&
           v->value_type != BSON_TYPE_EOD;
}

static void
eq_visit(const char *key, const bson_value_t *v, void *ctx)
{
    eq_search_t *s = ctx;
    bson_value_t inner;
    if (s->found || strcmp(key, s->path) != 0) {
        return;
    }
    if (!ms__is_operator_doc(v)) {
        if (exact_key_value(v)) {
            s->eq = *v;
            s->found = true;
        }
        return;
    }
    if (ms__find_field(v->value.v_doc.data, v->value.v_doc.data_len, "$eq", 3, &inner) &&
        exact_key_value(&inner)) {
        s->eq = inner;
        s->found = true;
    }
}

/* The value visit finds for path among the top-level constraints, borrowed from filter. */
static bool
find_constraint(const bson_t *filter, const char *path, constraint_fn visit, bson_value_t *out)
{
    eq_search_t s = {.path = path};
    each_top_constraint(filter, visit, &s, 0);
    if (s.found) {
        *out = s.eq;
    }
    return s.found;
}

bool
ms_filter_equality(const bson_t *filter, const char *path, bson_value_t *eq)
{
    return find_constraint(filter, path, eq_visit, eq);
}

static bool
all_exact_key_values(const bson_value_t *array)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, array->value.v_doc.data, array->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (!exact_key_value(bson_iter_value(&it))) {
            return false;
        }
    }
    return true;
}

static void
in_visit(const char *key, const bson_value_t *v, void *ctx)
{
    eq_search_t *s = ctx;
    bson_value_t arr;
    if (s->found || strcmp(key, s->path) != 0 || !ms__is_operator_doc(v)) {
        return;
    }
    if (ms__find_field(v->value.v_doc.data, v->value.v_doc.data_len, "$in", 3, &arr) &&
        arr.value_type == BSON_TYPE_ARRAY && all_exact_key_values(&arr)) {
        s->eq = arr;
        s->found = true;
    }
}

bool
ms_filter_in(const bson_t *filter, const char *path, bson_value_t *values)
{
    return find_constraint(filter, path, in_visit, values);
}

typedef struct {
    const char *path;
    bson_value_t lo, hi;
    bool has_lo, has_hi, lo_inc, hi_inc;
} range_search_t;

/* Keeps the tighter of two bounds of the same type; across types either one is implied. */
static void
tighten(bson_value_t *cur, bool *has, bool *inc, const bson_value_t *v, bool v_inc, bool lower)
{
    if (is_nan(v) || v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_MINKEY ||
        v->value_type == BSON_TYPE_MAXKEY) {
        return; /* bounds the matcher handles specially; not worth an index range */
    }
    if (*has) {
        if (ms_type_rank(cur->value_type) != ms_type_rank(v->value_type)) {
            return;
        }
        int c = ms_value_cmp(v, cur);
        bool better = lower ? (c > 0 || (c == 0 && !v_inc)) : (c < 0 || (c == 0 && !v_inc));
        if (!better) {
            return;
        }
    }
    *cur = *v;
    *has = true;
    *inc = v_inc;
}

static void
range_visit(const char *key, const bson_value_t *v, void *ctx)
{
    range_search_t *s = ctx;
    bson_iter_t it;
    if (strcmp(key, s->path) != 0 || !ms__is_operator_doc(v)) {
        return;
    }
    bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *op = bson_iter_key(&it);
        const bson_value_t *b = bson_iter_value(&it);
        if (strcmp(op, "$gt") == 0 || strcmp(op, "$gte") == 0) {
            tighten(&s->lo, &s->has_lo, &s->lo_inc, b, op[3] == 'e', true);
        } else if (strcmp(op, "$lt") == 0 || strcmp(op, "$lte") == 0) {
            tighten(&s->hi, &s->has_hi, &s->hi_inc, b, op[3] == 'e', false);
        }
    }
}

bool
ms_filter_range(const bson_t *filter, const char *path, bson_value_t *lo, bool *lo_inclusive,
                bool *has_lo, bson_value_t *hi, bool *hi_inclusive, bool *has_hi)
{
    range_search_t s = {.path = path};
    each_top_constraint(filter, range_visit, &s, 0);
    *has_lo = s.has_lo;
    *has_hi = s.has_hi;
    *lo_inclusive = s.lo_inc;
    *hi_inclusive = s.hi_inc;
    if (s.has_lo) {
        *lo = s.lo;
    }
    if (s.has_hi) {
        *hi = s.hi;
    }
    return s.has_lo || s.has_hi;
}

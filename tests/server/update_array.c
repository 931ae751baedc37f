/*
 * mongoq-test-server: the array update operators ($push with $each/$position/$sort/$slice,
 * $addToSet, $pop, $pull, $pullAll), rows of update_ops[] in update_ops.c. Arguments, types
 * and messages as mongod 6.0 (src/mongo/db/update/push_node.cpp, add_to_set_node.cpp,
 * pop_node.cpp, pull_node.cpp, pullall_node.cpp).
 */
#include "update-private.h"

#include <math.h>
#include <string.h>

static bool
uses_each(const bson_value_t *arg)
{
    bson_value_t v;
    return arg->value_type == BSON_TYPE_DOCUMENT &&
           ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$each", 5, &v);
}

/* {$each: [...], ...}: $push also takes $slice, $position and $sort. */
static bool
validate_each(const ms_mod_t *mod, bool push_clauses, bson_error_t *error)
{
    const char *op = mod->op->name;
    const bson_value_t *arg = mod->arg;
    bson_iter_t it;
    bool has_each = false;
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "$each") == 0) {
            has_each = true;
            if (v->value_type != BSON_TYPE_ARRAY) {
                return ms_set_error(
                    error, MS_ERR_BAD_VALUE,
                    "The argument to $each in %s must be an array but it was of type: %s", op,
                    ms__type_name(v->value_type));
            }
        } else if (push_clauses && strcmp(k, "$slice") == 0) {
            if (!ms__is_number(v->value_type)) {
                return ms_set_error(
                    error, MS_ERR_BAD_VALUE,
                    "The value for $slice must be an integer value but was given type: %s",
                    ms__type_name(v->value_type));
            }
        } else if (push_clauses && strcmp(k, "$position") == 0) {
            if (!ms__is_number(v->value_type)) {
                return ms_set_error(
                    error, MS_ERR_BAD_VALUE,
                    "The value for $position must be an integer value, not of type: %s",
                    ms__type_name(v->value_type));
            }
        } else if (push_clauses && strcmp(k, "$sort") == 0) {
            bool ok = v->value_type == BSON_TYPE_DOCUMENT ||
                      (ms__is_number(v->value_type) && fabs(ms__num_as_double(v)) == 1);
            if (!ok) {
                return ms_set_error(error, MS_ERR_BAD_VALUE,
                                    "The $sort is invalid: use 1/-1 to sort the whole element, or "
                                    "{field:1/-1} to sort embedded fields");
            }
            if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t spec;
                bson_init_static(&spec, v->value.v_doc.data, v->value.v_doc.data_len);
                if (!ms_sort_validate(&spec, error)) {
                    return false;
                }
            }
        } else {
            return ms_set_error(error, MS_ERR_BAD_VALUE, "Unrecognized clause in %s: %s", op, k);
        }
    }
    return has_each || ms_set_error(error, MS_ERR_BAD_VALUE, "%s modifiers need $each", op);
}

typedef void (*not_array_fn)(const ms_update_doc_t *ud, const ms_mod_t *mod, const char *key,
                             const ms_node_t *cur, bson_error_t *error);

/* The array at key (*arr NULL when missing); something else there is not_array's error. */
static bool
array_at(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
         not_array_fn not_array, ms_node_t **arr, bson_error_t *error)
{
    ms_node_t *cur = ms__update_child(parent, key);
    *arr = cur;
    if (!cur || cur->type == BSON_TYPE_ARRAY) {
        return true;
    }
    not_array(ud, mod, key, cur, error);
    return false;
}

/* The array at key for $push and $addToSet, made when missing; NULL on error. */
static ms_node_t *
array_to_grow(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
              not_array_fn not_array, bson_error_t *error)
{
    ms_node_t *arr;
    if (!array_at(ud, mod, parent, key, not_array, &arr, error)) {
        return NULL;
    }
    if (!arr) {
        ms__update_set_child(parent, key, ms__node_new(BSON_TYPE_ARRAY));
        arr = ms__update_child(parent, key);
    }
    return arr;
}

bool
ms__update_validate_push(const ms_mod_t *mod, bson_error_t *error)
{
    return !uses_each(mod->arg) || validate_each(mod, true, error);
}

static void
push_not_array(const ms_update_doc_t *ud, const ms_mod_t *mod, const char *key,
               const ms_node_t *cur, bson_error_t *error)
{
    char *id = ms__update_id_json(ud);
    (void)mod;
    ms_set_error(error, MS_ERR_BAD_VALUE,
                 "The field '%s' must be an array but is of type %s in document %s", key,
                 ms__type_name(cur->type), id);
    bson_free(id);
}

typedef struct {
    const bson_t *spec;
    int direction; /* 0: by the spec document */
} push_sort_t;

static int
push_sort_cmp(const void *pa, const void *pb, void *ctx)
{
    const ms_node_t *a = pa, *b = pb;
    const push_sort_t *ps = ctx;
    if (ps->direction != 0) {
        return ps->direction * ms__node_cmp(a, b);
    }
    bson_t da = BSON_INITIALIZER, db = BSON_INITIALIZER;
    if (a->type == BSON_TYPE_DOCUMENT) {
        bson_destroy(&da);
        ms__node_to_bson(a, &da);
    }
    if (b->type == BSON_TYPE_DOCUMENT) {
        bson_destroy(&db);
        ms__node_to_bson(b, &db);
    }
    int r = ms_sort_cmp(ps->spec, &da, &db);
    bson_destroy(&da);
    bson_destroy(&db);
    return r;
}

/* $push's $each, $position, $sort and $slice, in that order of effect. */
static void
push_each(ms_node_t *arr, const bson_value_t *arg)
{
    bson_value_t each, slice, position, sort;
    bool has_slice =
        ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$slice", 6, &slice);
    bool has_pos =
        ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$position", 9, &position);
    bool has_sort =
        ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$sort", 5, &sort);
    ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$each", 5, &each);
    ms_node_t *items = ms__node_from_value(&each);
    int64_t pos = (int64_t)arr->len;
    if (has_pos) {
        int64_t p = ms__clamp_i64(ms__num_as_double(&position));
        pos = p < 0 ? (int64_t)arr->len + p : p;
        pos = pos < 0 ? 0 : pos > (int64_t)arr->len ? (int64_t)arr->len : pos;
    }
    for (size_t i = 0; i < items->len; i++) {
        ms__node_push(arr, NULL, 0, items->kids[i]);
        /* rotate the new element into place */
        size_t at = (size_t)pos + i;
        ms_node_t *kid = arr->kids[arr->len - 1];
        memmove(arr->kids + at + 1, arr->kids + at, (arr->len - 1 - at) * sizeof *arr->kids);
        arr->kids[at] = kid;
    }
    items->len = 0;
    ms__node_destroy(items);
    if (has_sort) {
        bson_t spec = BSON_INITIALIZER;
        push_sort_t ps = {.spec = &spec, .direction = 0};
        if (sort.value_type == BSON_TYPE_DOCUMENT) {
            bson_destroy(&spec);
            bson_init_static(&spec, sort.value.v_doc.data, sort.value.v_doc.data_len);
        } else {
            ps.direction = ms__num_as_double(&sort) < 0 ? -1 : 1;
        }
        ms__stable_sort((void **)arr->kids, arr->len, push_sort_cmp, &ps);
        bson_destroy(&spec);
    }
    if (has_slice) {
        int64_t s = ms__clamp_i64(ms__num_as_double(&slice));
        size_t keep = (size_t)(s < 0 ? -s : s);
        while (arr->len > keep) {
            ms__node_remove_at(arr, s < 0 ? 0 : arr->len - 1);
        }
    }
}

bool
ms__update_apply_push(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                      const char *key, bson_error_t *error)
{
    ms_node_t *arr = array_to_grow(ud, mod, parent, key, push_not_array, error);
    if (!arr) {
        return false;
    }
    if (uses_each(mod->arg)) {
        push_each(arr, mod->arg);
    } else {
        ms__node_push(arr, NULL, 0, ms__node_from_value(mod->arg));
    }
    return true;
}

bool
ms__update_validate_add_to_set(const ms_mod_t *mod, bson_error_t *error)
{
    return !uses_each(mod->arg) || validate_each(mod, false, error);
}

static void
add_to_set_not_array(const ms_update_doc_t *ud, const ms_mod_t *mod, const char *key,
                     const ms_node_t *cur, bson_error_t *error)
{
    (void)ud;
    (void)mod;
    ms_set_error(error, MS_ERR_BAD_VALUE,
                 "Cannot apply $addToSet to non-array field. Field named '%s' has non-array "
                 "type %s",
                 key, ms__type_name(cur->type));
}

static bool
contains(const ms_node_t *arr, const bson_value_t *v)
{
    ms_node_t *n = ms__node_from_value(v);
    bool found = false;
    for (size_t i = 0; i < arr->len && !found; i++) {
        found = ms_type_rank(arr->kids[i]->type) == ms_type_rank(n->type) &&
                ms__node_cmp(arr->kids[i], n) == 0;
    }
    ms__node_destroy(n);
    return found;
}

static void
add_to_set(ms_node_t *arr, const bson_value_t *arg)
{
    bson_value_t each;
    if (!uses_each(arg)) {
        if (!contains(arr, arg)) {
            ms__node_push(arr, NULL, 0, ms__node_from_value(arg));
        }
        return;
    }
    bson_iter_t it;
    ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$each", 5, &each);
    bson_iter_init_from_data(&it, each.value.v_doc.data, each.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (!contains(arr, bson_iter_value(&it))) {
            ms__node_push(arr, NULL, 0, ms__node_from_value(bson_iter_value(&it)));
        }
    }
}

bool
ms__update_apply_add_to_set(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                 const char *key, bson_error_t *error)
{
    ms_node_t *arr = array_to_grow(ud, mod, parent, key, add_to_set_not_array, error);
    if (!arr) {
        return false;
    }
    add_to_set(arr, mod->arg);
    return true;
}

bool
ms__update_validate_pop(const ms_mod_t *mod, bson_error_t *error)
{
    double d = ms__num_as_double(mod->arg);
    if (!ms__is_number(mod->arg->value_type) || (d != 1 && d != -1)) {
        char *json = ms__value_json(mod->arg);
        ms_set_error(error, MS_ERR_FAILED_TO_PARSE, "$pop expects 1 or -1, found: %s", json);
        bson_free(json);
        return false;
    }
    return true;
}

static void
pop_not_array(const ms_update_doc_t *ud, const ms_mod_t *mod, const char *key,
              const ms_node_t *cur, bson_error_t *error)
{
    (void)ud;
    (void)key;
    ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                 "Path '%s' contains an element of non-array type '%s'", mod->field,
                 ms__type_name(cur->type));
}

/* Popping from nothing does nothing. */
bool
ms__update_apply_pop(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                     const char *key, bson_error_t *error)
{
    ms_node_t *arr;
    if (!array_at(ud, mod, parent, key, pop_not_array, &arr, error)) {
        return false;
    }
    if (arr && arr->len > 0) {
        ms__node_remove_at(arr, ms__num_as_double(mod->arg) > 0 ? arr->len - 1 : 0);
    }
    return true;
}

/* $pull's condition on elements: a query ({a: 1}) or operators on values ({$gte: 6}). */
static ms_matcher_t *
pull_matcher(const bson_value_t *cond, bson_error_t *error)
{
    bson_t q;
    bson_init_static(&q, cond->value.v_doc.data, cond->value.v_doc.data_len);
    return ms__is_operator_doc(cond) ? ms__matcher_new_value(cond, error)
                                     : ms_matcher_new(&q, error);
}

bool
ms__update_validate_pull(const ms_mod_t *mod, bson_error_t *error)
{
    if (mod->arg->value_type == BSON_TYPE_DOCUMENT) {
        ms_matcher_t *m = pull_matcher(mod->arg, error);
        if (!m) {
            return false;
        }
        ms_matcher_destroy(m);
    }
    return true;
}

static void
pull_not_array(const ms_update_doc_t *ud, const ms_mod_t *mod, const char *key,
               const ms_node_t *cur, bson_error_t *error)
{
    (void)ud;
    (void)key;
    (void)cur;
    ms_set_error(error, MS_ERR_BAD_VALUE, "Cannot apply %s to a non-array value", mod->op->name);
}

/* Whether array element e matches cond: by equality (m NULL) or the matcher m made of it. */
static bool
pull_matches(const bson_value_t *cond, const ms_matcher_t *m, const ms_node_t *e,
             const ms_ctx_t *ctx)
{
    bson_value_t v;
    bool r;
    ms__node_to_value(e, &v);
    if (!m) {
        r = ms_type_rank(v.value_type) == ms_type_rank(cond->value_type) &&
            ms_value_cmp(&v, cond) == 0;
    } else if (cond->value_type == BSON_TYPE_DOCUMENT && !ms__matcher_is_value(m)) {
        bson_t doc;
        r = v.value_type == BSON_TYPE_DOCUMENT &&
            bson_init_static(&doc, v.value.v_doc.data, v.value.v_doc.data_len) &&
            ms_matcher_matches(m, &doc, ctx);
    } else {
        r = ms__matcher_matches_value(m, &v, ctx);
    }
    bson_value_destroy(&v);
    return r;
}

/* Pulling from nothing does nothing. */
bool
ms__update_apply_pull(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                      const char *key, bson_error_t *error)
{
    ms_node_t *arr;
    const bson_value_t *cond = mod->arg;
    if (!array_at(ud, mod, parent, key, pull_not_array, &arr, error)) {
        return false;
    }
    if (!arr) {
        return true;
    }
    ms_matcher_t *m = cond->value_type == BSON_TYPE_DOCUMENT ? pull_matcher(cond, NULL) : NULL;
    for (size_t i = arr->len; i-- > 0;) {
        if (pull_matches(cond, m, arr->kids[i], ud->ctx)) {
            ms__node_remove_at(arr, i);
        }
    }
    ms_matcher_destroy(m);
    return true;
}

bool
ms__update_validate_pull_all(const ms_mod_t *mod, bson_error_t *error)
{
    if (mod->arg->value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "$pullAll requires an array argument but was given a %s",
                            ms__type_name(mod->arg->value_type));
    }
    return true;
}

/* Whether e equals one of the values of the array values. */
static bool
equals_one_of(const bson_value_t *values, const ms_node_t *e, const ms_ctx_t *ctx)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, values->value.v_doc.data, values->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (pull_matches(bson_iter_value(&it), NULL, e, ctx)) {
            return true;
        }
    }
    return false;
}

bool
ms__update_apply_pull_all(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
               const char *key, bson_error_t *error)
{
    ms_node_t *arr;
    if (!array_at(ud, mod, parent, key, pull_not_array, &arr, error)) {
        return false;
    }
    for (size_t i = arr ? arr->len : 0; i-- > 0;) {
        if (equals_one_of(mod->arg, arr->kids[i], ud->ctx)) {
            ms__node_remove_at(arr, i);
        }
    }
    return true;
}

/*
 * mongoq-test-server: the update operators, one row each in update_ops[] (update.c parses and
 * applies them): the check of one argument, the effect on one path of the mutable document, and
 * flags; the field operators here, the array ones in update_array.c. Arguments, types and
 * messages as mongod 6.0 (the <op>_node.cpp files of src/mongo/db/update/).
 */
#include "update-private.h"

#include <math.h>
#include <string.h>

static bool
field_error(bson_error_t *error, int code, const char *prefix, const char *field,
            const bson_value_t *arg)
{
    char *json = ms__value_json(arg);
    ms_set_error(error, code, "%s{%s: %s}", prefix, field, json);
    bson_free(json);
    return false;
}

/* ---- $set, $setOnInsert, $unset ---------------------------------------------------------- */

static bool
apply_set(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
          bson_error_t *error)
{
    (void)ud;
    (void)error;
    ms__update_set_child(parent, key, ms__node_from_value(mod->arg));
    return true;
}

static bool
apply_unset(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
            bson_error_t *error)
{
    long at = ms__node_find(parent, key, strlen(key));
    (void)ud;
    (void)mod;
    (void)error;
    if (at >= 0 && parent->type == BSON_TYPE_DOCUMENT) {
        ms__node_remove_at(parent, (size_t)at);
    } else if (at >= 0) {
        ms__update_set_child(parent, key, ms__update_null_node()); /* array elements become null */
    }
    return true;
}

/* ---- $inc, $mul, $min, $max ---------------------------------------------------------------- */

static bool
numeric_arg(const ms_mod_t *mod, const char *prefix, bson_error_t *error)
{
    return ms__is_number(mod->arg->value_type) ||
           field_error(error, MS_ERR_TYPE_MISMATCH, prefix, mod->field, mod->arg);
}

static bool
validate_inc(const ms_mod_t *mod, bson_error_t *error)
{
    return numeric_arg(mod, "Cannot increment with non-numeric argument: ", error);
}

static bool
validate_mul(const ms_mod_t *mod, bson_error_t *error)
{
    return numeric_arg(mod, "Cannot multiply with non-numeric argument: ", error);
}

/* The number at key (NULL when missing); anything else there is a TypeMismatch. */
static bool
numeric_field(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
              const char *key, ms_node_t **cur, bson_error_t *error)
{
    *cur = ms__update_child(parent, key);
    if (!*cur || ms__is_number((*cur)->type)) {
        return true;
    }
    char *id = ms__update_id_json(ud);
    ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                 "Cannot apply %s to a value of non-numeric type. %s has the field '%s' of "
                 "non-numeric type %s",
                 mod->op->name, id, key, ms__type_name((*cur)->type));
    bson_free(id);
    return false;
}

static bool
apply_inc(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
          bson_error_t *error)
{
    ms_node_t *cur;
    ms_sum_t s = {0};
    bson_value_t result;
    if (!numeric_field(ud, mod, parent, key, &cur, error)) {
        return false;
    }
    if (cur) {
        ms__sum_add(&s, &cur->value);
    }
    ms__sum_add(&s, mod->arg);
    ms__sum_value(&s, &result);
    ms__update_set_child(parent, key, ms__node_from_value(&result));
    bson_value_destroy(&result);
    return true;
}

static void
multiply(const bson_value_t *a, const bson_value_t *b, bson_value_t *out)
{
    bool a_int = a->value_type == BSON_TYPE_INT32 || a->value_type == BSON_TYPE_INT64;
    bool b_int = b->value_type == BSON_TYPE_INT32 || b->value_type == BSON_TYPE_INT64;
    bool dec = a->value_type == BSON_TYPE_DECIMAL128 || b->value_type == BSON_TYPE_DECIMAL128;
    if (a_int && b_int) {
        int64_t x = a->value_type == BSON_TYPE_INT32 ? a->value.v_int32 : a->value.v_int64;
        int64_t y = b->value_type == BSON_TYPE_INT32 ? b->value.v_int32 : b->value.v_int64;
        long double p = (long double)x * (long double)y;
        if (p <= (long double)INT64_MAX && p >= (long double)INT64_MIN) {
            ms_sum_t s = {.kind =
                              a->value_type == BSON_TYPE_INT64 || b->value_type == BSON_TYPE_INT64,
                          .i = x * y};
            ms__sum_value(&s, out);
            return;
        }
    }
    ms__double_value(ms__num_as_double(a) * ms__num_as_double(b), dec, out);
}

static bool
apply_mul(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
          bson_error_t *error)
{
    ms_node_t *cur;
    bson_value_t result, zero = {.value_type = BSON_TYPE_INT32};
    if (!numeric_field(ud, mod, parent, key, &cur, error)) {
        return false;
    }
    multiply(cur ? &cur->value : &zero, mod->arg, &result);
    if (!cur && mod->arg->value_type != BSON_TYPE_INT32) {
        /* a missing field multiplies to zero of the argument's type */
        bson_value_destroy(&result);
        multiply(mod->arg, &zero, &result);
    }
    ms__update_set_child(parent, key, ms__node_from_value(&result));
    bson_value_destroy(&result);
    return true;
}

/* $min (sign -1) and $max (sign 1): the argument replaces a value it sorts beyond. */
static bool
min_max(const ms_mod_t *mod, ms_node_t *parent, const char *key, int sign)
{
    ms_node_t *cur = ms__update_child(parent, key);
    ms_node_t *arg = ms__node_from_value(mod->arg);
    int c = cur ? ms__node_cmp(arg, cur) : 0;
    if (!cur || (sign < 0 ? c < 0 : c > 0)) {
        ms__update_set_child(parent, key, arg);
    } else {
        ms__node_destroy(arg);
    }
    return true;
}

static bool
apply_min(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
          bson_error_t *error)
{
    (void)ud;
    (void)error;
    return min_max(mod, parent, key, -1);
}

static bool
apply_max(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
          bson_error_t *error)
{
    (void)ud;
    (void)error;
    return min_max(mod, parent, key, 1);
}

/* ---- $currentDate, $rename ------------------------------------------------------------------ */

static bool
validate_current_date(const ms_mod_t *mod, bson_error_t *error)
{
    const bson_value_t *arg = mod->arg;
    bson_value_t t;
    if (arg->value_type == BSON_TYPE_BOOL) {
        return true;
    }
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "%s is not valid type for $currentDate. Please use a boolean ('true') "
                            "or a $type expression ({$type: 'timestamp/date'}).",
                            ms__type_name(arg->value_type));
    }
    if (ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$type", 5, &t) &&
        t.value_type == BSON_TYPE_UTF8 &&
        (strcmp(t.value.v_utf8.str, "date") == 0 || strcmp(t.value.v_utf8.str, "timestamp") == 0)) {
        return true;
    }
    return ms_set_error(error, MS_ERR_BAD_VALUE,
                        "The '$type' string field is required to be 'date' or 'timestamp': "
                        "{$currentDate: {field : {$type: 'date'}}}");
}

static bool
apply_current_date(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                   const char *key, bson_error_t *error)
{
    bson_value_t v = {.value_type = BSON_TYPE_DATE_TIME};
    bson_value_t t;
    v.value.v_datetime = ud->ctx->now_ms;
    if (mod->arg->value_type == BSON_TYPE_DOCUMENT &&
        ms__find_field(mod->arg->value.v_doc.data, mod->arg->value.v_doc.data_len, "$type", 5,
                       &t) &&
        strcmp(t.value.v_utf8.str, "timestamp") == 0) {
        v.value_type = BSON_TYPE_TIMESTAMP;
        v.value.v_timestamp.timestamp =
            ud->ctx->cluster_time_t ? ud->ctx->cluster_time_t : (uint32_t)(ud->ctx->now_ms / 1000);
        v.value.v_timestamp.increment = ud->ctx->cluster_time_t ? ud->ctx->cluster_time_i : 1;
    }
    (void)error;
    ms__update_set_child(parent, key, ms__node_from_value(&v));
    return true;
}

static bool
validate_rename(const ms_mod_t *mod, bson_error_t *error)
{
    const bson_value_t *arg = mod->arg;
    if (arg->value_type != BSON_TYPE_UTF8) {
        return field_error(error, MS_ERR_BAD_VALUE, "The 'to' field for $rename must be a string: ",
                           mod->field, arg);
    }
    if (strcmp(arg->value.v_utf8.str, mod->field) == 0) {
        return field_error(error, MS_ERR_BAD_VALUE,
                           "The source and target field for $rename must differ: ", mod->field,
                           arg);
    }
    return true;
}

static bool
apply_rename(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent, const char *key,
             bson_error_t *error)
{
    ms_path_t target;
    bool failed, ok = false;
    (void)parent;
    (void)key;
    ms_node_t *src_parent = ms__update_resolve_parent(ud->doc, &mod->path, false, &failed, error);
    const char *src_key = mod->path.parts[mod->path.n - 1];
    long at = src_parent && src_parent->type == BSON_TYPE_DOCUMENT
                  ? ms__node_find(src_parent, src_key, strlen(src_key))
                  : -1;
    if (at < 0) {
        return true; /* renaming a missing field does nothing */
    }
    ms_node_t *moved = src_parent->kids[at];
    src_parent->kids[at] = ms__update_null_node();
    ms__node_remove_at(src_parent, (size_t)at);
    ms__path_init(&target, mod->arg->value.v_utf8.str);
    ms_node_t *dst_parent = ms__update_resolve_parent(ud->doc, &target, true, &failed, error);
    if (dst_parent) {
        ms__update_set_child(dst_parent, target.parts[target.n - 1], moved);
        moved = NULL;
        ok = true;
    }
    ms__node_destroy(moved);
    ms__path_destroy(&target);
    return ok;
}

/* ---- the table --------------------------------------------------------------------------- */

/* Update operators. An operator not here is FailedToParse "Unknown modifier". */
static const ms_update_op_t update_ops[] = {
    {"$set", NULL, apply_set, UOP_CREATES_PATH},
    {"$setOnInsert", NULL, apply_set, UOP_CREATES_PATH | UOP_INSERT_ONLY},
    {"$unset", NULL, apply_unset, UOP_DOLLAR_FIELDS},
    {"$inc", validate_inc, apply_inc, UOP_CREATES_PATH},
    {"$mul", validate_mul, apply_mul, UOP_CREATES_PATH},
    {"$min", NULL, apply_min, UOP_CREATES_PATH},
    {"$max", NULL, apply_max, UOP_CREATES_PATH},
    {"$currentDate", validate_current_date, apply_current_date, UOP_CREATES_PATH},
    {"$rename", validate_rename, apply_rename, UOP_MOVES},
    {"$push", ms__update_validate_push, ms__update_apply_push, UOP_CREATES_PATH},
    {"$addToSet", ms__update_validate_add_to_set, ms__update_apply_add_to_set, UOP_CREATES_PATH},
    {"$pull", ms__update_validate_pull, ms__update_apply_pull, 0},
    {"$pullAll", ms__update_validate_pull_all, ms__update_apply_pull_all, 0},
    {"$pop", ms__update_validate_pop, ms__update_apply_pop, 0},
};

const ms_update_op_t *
ms__update_op(const char *name)
{
    for (size_t i = 0; i < sizeof update_ops / sizeof update_ops[0]; i++) {
        if (strcmp(update_ops[i].name, name) == 0) {
            return &update_ops[i];
        }
    }
    return NULL;
}

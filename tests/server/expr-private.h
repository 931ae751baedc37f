/*
 * mongoq-test-server: what the expression files share: small value setters and predicates,
 * evaluation (expr.c), and every operator function expr.c's table names, grouped by the file
 * that defines it (expr_arith.c, expr_cond.c, expr_array.c, expr_string.c, expr_type.c,
 * expr_object.c, expr_field.c).
 */
#ifndef MS_EXPR_PRIVATE_H
#define MS_EXPR_PRIVATE_H

#include "lang-private.h"

#include <string.h>

static inline void
set_missing(bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_EOD;
}

static inline void
set_null(bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_NULL;
}

static inline void
set_bool(bson_value_t *out, bool b)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_BOOL;
    out->value.v_bool = b;
}

static inline void
set_int64(bson_value_t *out, int64_t i)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_INT64;
    out->value.v_int64 = i;
}

static inline void
set_date(bson_value_t *out, int64_t ms)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_DATE_TIME;
    out->value.v_datetime = ms;
}

static inline void
set_string(bson_value_t *out, const char *s, size_t len)
{
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = bson_strndup(s, len);
    out->value.v_utf8.len = (uint32_t)len;
}

static inline bool
nullish(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_EOD || v->value_type == BSON_TYPE_NULL ||
           v->value_type == BSON_TYPE_UNDEFINED;
}

static inline bool
is_int(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64;
}

static inline int64_t
as_i64(const bson_value_t *v)
{
    return v->value_type == BSON_TYPE_INT32 ? v->value.v_int32 : v->value.v_int64;
}

static inline int
num_kind(bson_type_t t)
{
    return t == BSON_TYPE_INT32 ? 0 : t == BSON_TYPE_INT64 ? 1 : t == BSON_TYPE_DOUBLE ? 2 : 3;
}

/* ---- evaluation (expr.c) ---------------------------------------------------------------- */

/* A variable bound by $let, $map or $filter; a list, innermost first. */
typedef struct ms_expr_var_t {
    const char *name;
    const bson_value_t *value;
    const struct ms_expr_var_t *next;
} ms_expr_var_t;

/* What an expression is evaluated against: $$ROOT, $$CURRENT, $$NOW..., the variables. */
typedef struct {
    const bson_t *root;
    const bson_t *current;
    const ms_ctx_t *ctx;
    const ms_expr_var_t *vars;
} ms_expr_ev_t;

/* An operator over its evaluated arguments (args[0..n), owned by the caller). */
typedef bool (*ms_expr_eager_fn)(const char *name, bson_value_t *args, size_t n,
                                 bson_value_t *out, bson_error_t *error);
/* An operator that evaluates its argument expression itself ($cond, $and, $map, ...). */
typedef bool (*ms_expr_lazy_fn)(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
                                bson_value_t *out, bson_error_t *error);

/* A row of expr.c's operator table. */
typedef struct {
    const char *name;
    int min_args, max_args; /* -1: unbounded; lazy operators check their own */
    ms_expr_eager_fn eager;
    ms_expr_lazy_fn lazy;
    /* Checks the argument when the pipeline is parsed (NULL: the argument count only). */
    bool (*check)(const char *name, const bson_value_t *arg, bson_error_t *error);
} ms_expr_op_t;

/* Evaluates expr under ev (out owned by the caller; BSON_TYPE_EOD when missing). */
bool
ms__expr_eval_in(const ms_expr_ev_t *ev, const bson_value_t *expr, bson_value_t *out,
                 bson_error_t *error);
/* The arguments of an operator: the elements of an array (up to max into items), or the single
 * value. Returns how many there are. */
size_t
ms__expr_args(const bson_value_t *arg, bson_value_t *items, size_t max);
/* Field name of an operator's spec document ({if, then, else}), borrowed. */
bool
ms__expr_spec_field(const bson_value_t *spec, const char *name, bson_value_t *out);
/* The row of ops[] named name, or NULL. */
const ms_expr_op_t *
ms__expr_find_op(const char *name);
/* Location16020 when n arguments are outside op's min_args .. max_args (eager operators). */
bool
ms__expr_check_arg_count(const ms_expr_op_t *op, size_t n, bson_error_t *error);
/* The first key and value of doc (borrowed) and how many keys it has; false when empty. */
bool
ms__expr_first_key(const bson_value_t *doc, const char **key, bson_value_t *value, int *nkeys);

/* ---- operators, by the file that defines them (rows of expr.c's ops[]) ------------------- */

/* expr_arith.c: arithmetic, and $min $max $sum $avg over arguments or one array */
bool
ms__op_add(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error);
bool
ms__op_subtract(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                bson_error_t *error);
bool
ms__op_multiply(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                bson_error_t *error);
bool
ms__op_divide_mod(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                  bson_error_t *error);
bool
ms__op_unary_math(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                  bson_error_t *error);
bool
ms__op_list_reduce(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                   bson_error_t *error);
bool
ms__op_rand(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
            bson_error_t *error);

/* expr_cond.c */
bool
ms__op_compare(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
               bson_error_t *error);
bool
ms__op_not(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
           bson_error_t *error);
bool
ms__op_and_or(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
              bson_value_t *out, bson_error_t *error);
bool
ms__op_cond(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
            bson_value_t *out, bson_error_t *error);
bool
ms__op_if_null(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
               bson_value_t *out, bson_error_t *error);
bool
ms__op_switch(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
              bson_value_t *out, bson_error_t *error);

/* expr_array.c */
bool
ms__op_in(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
          bson_error_t *error);
bool
ms__op_size(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
            bson_error_t *error);
bool
ms__op_is_array(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                bson_error_t *error);
bool
ms__op_array_elem_at(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                     bson_error_t *error);
bool
ms__op_first_last(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                  bson_error_t *error);
bool
ms__op_concat_arrays(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                     bson_error_t *error);
bool
ms__op_map_filter(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
                  bson_value_t *out, bson_error_t *error);

/* expr_string.c */
bool
ms__op_concat(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
              bson_error_t *error);
bool
ms__op_case(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
            bson_error_t *error);

/* expr_type.c */
bool
ms__op_type(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
            bson_error_t *error);
bool
ms__op_to_string(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                 bson_error_t *error);
bool
ms__op_to_number(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                 bson_error_t *error);
bool
ms__op_to_bool(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
               bson_error_t *error);

/* expr_field.c: $getField, $setField, $unsetField */
bool
ms__op_field_check(const char *name, const bson_value_t *arg, bson_error_t *error);
bool
ms__op_get_field(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
                 bson_value_t *out, bson_error_t *error);
bool
ms__op_set_field(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
                 bson_value_t *out, bson_error_t *error);

/* expr_object.c */
bool
ms__op_merge_objects(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                     bson_error_t *error);

#endif

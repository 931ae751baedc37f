/*
 * mongoq-test-server: what the expression files (expr.c, expr_arith.c) share: small value
 * setters and predicates, and the arithmetic operators expr.c's operator table names.
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

/* ---- arithmetic operators (expr_arith.c): eager operators over evaluated arguments ---- */

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

#endif

/*
 * mongoq-test-server: array expression operators ($in $size $isArray $arrayElemAt $first $last
 * $concatArrays $map $filter), rows of expr.c's ops[]. Errors as mongod 6.0
 * (src/mongo/db/pipeline/expression.cpp).
 */
#include "expr-private.h"

#include <math.h>
#include <string.h>

bool
ms__op_in(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    bson_iter_t it;
    (void)name;
    (void)n;
    if (args[1].value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_LOCATION40081,
                            "$in requires an array as a second argument, found: %s",
                            ms__type_name(args[1].value_type));
    }
    bson_iter_init_from_data(&it, args[1].value.v_doc.data, args[1].value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (ms__expr_cmp(&args[0], bson_iter_value(&it)) == 0) {
            set_bool(out, true);
            return true;
        }
    }
    set_bool(out, false);
    return true;
}

bool
ms__op_size(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    (void)name;
    (void)n;
    if (args[0].value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_LOCATION17124,
                            "The argument to $size must be an array. Type of argument: %s",
                            ms__type_name(args[0].value_type));
    }
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_INT32;
    out->value.v_int32 = (int32_t)ms__array_len(&args[0]);
    return true;
}

bool
ms__op_is_array(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
            bson_error_t *error)
{
    (void)name;
    (void)n;
    (void)error;
    set_bool(out, args[0].value_type == BSON_TYPE_ARRAY);
    return true;
}

bool
ms__op_array_elem_at(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                 bson_error_t *error)
{
    (void)name;
    (void)n;
    if (nullish(&args[0]) || nullish(&args[1])) {
        set_null(out);
        return true;
    }
    if (args[0].value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_LOCATION28689,
                            "$arrayElemAt's first argument must be an array, but is %s",
                            ms__type_name(args[0].value_type));
    }
    double d = ms__num_as_double(&args[1]);
    if (!ms__is_number(args[1].value_type) || d != floor(d)) {
        return ms_set_error(error, MS_ERR_LOCATION28691,
                            "$arrayElemAt's second argument must be a numeric value representable "
                            "as a 32-bit integral value");
    }
    int64_t len = (int64_t)ms__array_len(&args[0]);
    int64_t at = ms__clamp_i64(d);
    int64_t idx = at < 0 ? len + at : at;
    set_missing(out);
    if (idx >= 0 && idx < len) {
        char buf[16];
        const char *key;
        bson_value_t e;
        size_t klen = bson_uint32_to_string((uint32_t)idx, &key, buf, sizeof buf);
        if (ms__find_field(args[0].value.v_doc.data, args[0].value.v_doc.data_len, key, klen, &e)) {
            bson_value_copy(&e, out);
        }
    }
    return true;
}

bool
ms__op_first_last(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
              bson_error_t *error)
{
    bson_value_t idx = {.value_type = BSON_TYPE_INT32};
    bson_value_t pair[2];
    (void)n;
    if (nullish(&args[0])) {
        set_null(out);
        return true;
    }
    if (args[0].value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_LOCATION28689,
                            "%s's argument must be an array, but is %s", name,
                            ms__type_name(args[0].value_type));
    }
    idx.value.v_int32 = strcmp(name, "$first") == 0 ? 0 : -1;
    pair[0] = args[0];
    pair[1] = idx;
    return ms__op_array_elem_at(name, pair, 2, out, error);
}

bool
ms__op_concat_arrays(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                 bson_error_t *error)
{
    bson_t result = BSON_INITIALIZER;
    uint32_t idx = 0;
    (void)name;
    for (size_t i = 0; i < n; i++) {
        if (nullish(&args[i])) {
            bson_destroy(&result);
            set_null(out);
            return true;
        }
        if (args[i].value_type != BSON_TYPE_ARRAY) {
            bson_destroy(&result);
            return ms_set_error(error, MS_ERR_LOCATION28664,
                                "$concatArrays only supports arrays, not %s",
                                ms__type_name(args[i].value_type));
        }
        bson_iter_t it;
        bson_iter_init_from_data(&it, args[i].value.v_doc.data, args[i].value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            char buf[16];
            const char *key;
            bson_uint32_to_string(idx++, &key, buf, sizeof buf);
            bson_append_value(&result, key, -1, bson_iter_value(&it));
        }
    }
    ms__value_from_bson(&result, true, out);
    bson_destroy(&result);
    return true;
}

/* $map and $filter: {input, as (default "this"), in | cond}. */
bool
ms__op_map_filter(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
                  bson_value_t *out, bson_error_t *error)
{
    bool is_map = strcmp(name, "$map") == 0;
    bson_value_t input_expr, body, as_value;
    const bson_value_t *as = NULL;
    bson_value_t input;
    bson_t result = BSON_INITIALIZER;
    bson_iter_t it;
    bool ok = false;
    uint32_t idx = 0;
    if (arg->value_type != BSON_TYPE_DOCUMENT || !ms__expr_spec_field(arg, "input", &input_expr) ||
        !ms__expr_spec_field(arg, is_map ? "in" : "cond", &body)) {
        bson_destroy(&result);
        return ms_set_error(error, is_map ? MS_ERR_LOCATION16882 : MS_ERR_LOCATION28648,
                            "Missing 'input' or '%s' parameter to %s", is_map ? "in" : "cond",
                            name);
    }
    if (ms__expr_spec_field(arg, "as", &as_value)) {
        as = &as_value;
    }
    if (!ms__expr_eval_in(ev, &input_expr, &input, error)) {
        bson_destroy(&result);
        return false;
    }
    if (nullish(&input)) {
        set_null(out);
        ok = true;
        goto done;
    }
    if (input.value_type != BSON_TYPE_ARRAY) {
        ms_set_error(error, is_map ? MS_ERR_LOCATION16883 : MS_ERR_LOCATION28651,
                     "input to %s must be an array not %s", name, ms__type_name(input.value_type));
        goto done;
    }
    bson_iter_init_from_data(&it, input.value.v_doc.data, input.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        ms_expr_var_t var = {.name = as && as->value_type == BSON_TYPE_UTF8 ? as->value.v_utf8.str
                                                                            : "this",
                             .value = bson_iter_value(&it),
                             .next = ev->vars};
        ms_expr_ev_t inner = *ev;
        bson_value_t v;
        inner.vars = &var;
        if (!ms__expr_eval_in(&inner, &body, &v, error)) {
            goto done;
        }
        char buf[16];
        const char *key;
        bson_uint32_to_string(idx, &key, buf, sizeof buf);
        if (is_map) {
            if (v.value_type == BSON_TYPE_EOD) {
                set_null(&v);
            }
            bson_append_value(&result, key, -1, &v);
            idx++;
        } else if (ms__value_truthy(&v)) {
            bson_append_value(&result, key, -1, bson_iter_value(&it));
            idx++;
        }
        bson_value_destroy(&v);
    }
    ms__value_from_bson(&result, true, out);
    ok = true;
done:
    bson_value_destroy(&input);
    bson_destroy(&result);
    return ok;
}

/*
 * mongoq-test-server: comparison ($cmp $eq $ne $gt $gte $lt $lte), boolean ($and $or $not) and
 * conditional ($cond $ifNull $switch) expression operators, rows of expr.c's ops[]. Types,
 * short-circuits and errors as mongod 6.0 (src/mongo/db/pipeline/expression.cpp).
 */
#include "expr-private.h"

#include <string.h>

bool
ms__op_compare(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
           bson_error_t *error)
{
    int c = ms__expr_cmp(&args[0], &args[1]);
    (void)n;
    (void)error;
    if (strcmp(name, "$cmp") == 0) {
        memset(out, 0, sizeof *out);
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = c;
        return true;
    }
    bool r = strcmp(name, "$eq") == 0    ? c == 0
             : strcmp(name, "$ne") == 0  ? c != 0
             : strcmp(name, "$gt") == 0  ? c > 0
             : strcmp(name, "$gte") == 0 ? c >= 0
             : strcmp(name, "$lt") == 0  ? c < 0
                                         : c <= 0;
    set_bool(out, r);
    return true;
}

bool
ms__op_not(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    (void)name;
    (void)n;
    (void)error;
    set_bool(out, !ms__value_truthy(&args[0]));
    return true;
}

bool
ms__op_and_or(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
          bson_error_t *error)
{
    size_t n = ms__expr_args(arg, NULL, 0);
    bool is_and = strcmp(name, "$and") == 0;
    bson_iter_t it;
    if (arg->value_type != BSON_TYPE_ARRAY) {
        n = 1;
    }
    for (size_t i = 0; i < n; i++) {
        const bson_value_t *e = arg;
        bson_value_t v;
        if (arg->value_type == BSON_TYPE_ARRAY) {
            if (i == 0) {
                bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
            }
            bson_iter_next(&it);
            e = bson_iter_value(&it);
        }
        if (!ms__expr_eval_in(ev, e, &v, error)) {
            return false;
        }
        bool t = ms__value_truthy(&v);
        bson_value_destroy(&v);
        if (t != is_and) {
            set_bool(out, !is_and);
            return true;
        }
    }
    set_bool(out, is_and);
    return true;
}

bool
ms__op_cond(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
        bson_error_t *error)
{
    bson_value_t parts[3];
    bson_value_t test;
    (void)name;
    if (arg->value_type == BSON_TYPE_DOCUMENT) {
        static const struct {
            const char *name;
            int code;
        } fields[3] = {{"if", MS_ERR_LOCATION17080},
                       {"then", MS_ERR_LOCATION17081},
                       {"else", MS_ERR_LOCATION17082}};
        for (int i = 0; i < 3; i++) {
            if (!ms__expr_spec_field(arg, fields[i].name, &parts[i])) {
                return ms_set_error(error, fields[i].code, "Missing '%s' parameter to $cond",
                                    fields[i].name);
            }
        }
    } else if (arg->value_type != BSON_TYPE_ARRAY || ms__expr_args(arg, parts, 3) != 3) {
        return ms_set_error(error, MS_ERR_LOCATION16020,
                            "Expression $cond takes exactly 3 arguments. %zu were passed in.",
                            arg->value_type == BSON_TYPE_ARRAY ? ms__expr_args(arg, parts, 0) : 1);
    }
    if (!ms__expr_eval_in(ev, &parts[0], &test, error)) {
        return false;
    }
    bool t = ms__value_truthy(&test);
    bson_value_destroy(&test);
    return ms__expr_eval_in(ev, &parts[t ? 1 : 2], out, error);
}

bool
ms__op_if_null(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
           bson_error_t *error)
{
    bson_value_t items[64];
    size_t n = arg->value_type == BSON_TYPE_ARRAY ? ms__expr_args(arg, items, 64) : 0;
    (void)name;
    if (n < 2 || n > 64) {
        return ms_set_error(error, MS_ERR_LOCATION1257300,
                            "$ifNull needs at least two arguments, had: %zu", n);
    }
    for (size_t i = 0; i < n; i++) {
        if (!ms__expr_eval_in(ev, &items[i], out, error)) {
            return false;
        }
        if (i == n - 1 || !nullish(out)) {
            return true;
        }
        bson_value_destroy(out);
    }
    return true;
}

bool
ms__op_switch(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
          bson_error_t *error)
{
    bson_value_t branches, dflt;
    bool has_default;
    bson_iter_t it;
    (void)name;
    if (arg->value_type != BSON_TYPE_DOCUMENT || !ms__expr_spec_field(arg, "branches", &branches) ||
        branches.value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_LOCATION40061, "$switch requires at least one branch.");
    }
    has_default = ms__expr_spec_field(arg, "default", &dflt);
    bson_iter_init_from_data(&it, branches.value.v_doc.data, branches.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *br = bson_iter_value(&it);
        bson_value_t c, then;
        bson_value_t test;
        if (br->value_type != BSON_TYPE_DOCUMENT || !ms__expr_spec_field(br, "case", &c) ||
            !ms__expr_spec_field(br, "then", &then)) {
            return ms_set_error(
                error, MS_ERR_LOCATION40064,
                "$switch requires each branch have a 'case' and 'then' expression.");
        }
        if (!ms__expr_eval_in(ev, &c, &test, error)) {
            return false;
        }
        bool t = ms__value_truthy(&test);
        bson_value_destroy(&test);
        if (t) {
            return ms__expr_eval_in(ev, &then, out, error);
        }
    }
    if (!has_default) {
        return ms_set_error(error, MS_ERR_LOCATION40066,
                            "$switch could not find a matching branch for an input, and no "
                            "default was specified.");
    }
    return ms__expr_eval_in(ev, &dflt, out, error);
}

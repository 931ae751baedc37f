/*
 * mongoq-test-server: aggregation expressions, interpreted from their BSON. Field paths ("$a.b"),
 * variables ($$NOW, $$ROOT, $$CURRENT, $$REMOVE, $let/$map/$filter names) and operators. Results
 * are owned bson_value_t; a missing value is BSON_TYPE_EOD.
 */
#include "expr-private.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct var_t {
    const char *name;
    const bson_value_t *value;
    const struct var_t *next;
} var_t;

typedef struct {
    const bson_t *root;
    const bson_t *current;
    const ms_ctx_t *ctx;
    const var_t *vars;
} ev_t;

typedef bool (*eager_fn)(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                         bson_error_t *error);
typedef bool (*lazy_fn)(const ev_t *ev, const char *name, const bson_value_t *arg,
                        bson_value_t *out, bson_error_t *error);

typedef struct {
    const char *name;
    int min_args, max_args; /* -1: unbounded; lazy operators check their own */
    eager_fn eager;
    lazy_fn lazy;
} op_def_t;

static bool
eval(const ev_t *ev, const bson_value_t *expr, bson_value_t *out, bson_error_t *error);
static const op_def_t *
find_op(const char *name);

/* ---- comparison ------------------------------------------------------------------------ */

int
ms__expr_cmp(const bson_value_t *a, const bson_value_t *b)
{
    bool am = a->value_type == BSON_TYPE_EOD;
    bool bm = b->value_type == BSON_TYPE_EOD;
    if (am || bm) {
        /* missing sorts below everything but MinKey in aggregation comparisons */
        if (am && bm) {
            return 0;
        }
        const bson_value_t *other = am ? b : a;
        int r = other->value_type == BSON_TYPE_MINKEY ? 1 : -1;
        return am ? r : -r;
    }
    return ms_value_cmp(a, b);
}

/* ---- field paths and variables -------------------------------------------------------- */

static void path_from_value(const bson_value_t *base, const char *path, bson_value_t *out);

static void
path_over_array(const bson_value_t *arr, const char *path, bson_value_t *out)
{
    bson_iter_t it;
    bson_t result = BSON_INITIALIZER;
    uint32_t i = 0;
    bson_iter_init_from_data(&it, arr->value.v_doc.data, arr->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *e = bson_iter_value(&it);
        bson_value_t sub;
        if (e->value_type != BSON_TYPE_DOCUMENT && e->value_type != BSON_TYPE_ARRAY) {
            continue;
        }
        if (e->value_type == BSON_TYPE_ARRAY) {
            path_over_array(e, path, &sub);
        } else {
            path_from_value(e, path, &sub);
        }
        if (sub.value_type != BSON_TYPE_EOD) {
            char buf[16];
            const char *key;
            size_t klen = bson_uint32_to_string(i++, &key, buf, sizeof buf);
            bson_append_value(&result, key, (int)klen, &sub);
        }
        bson_value_destroy(&sub);
    }
    ms__value_from_bson(&result, true, out);
    bson_destroy(&result);
}

/* "a.b" on a document value; arrays on the way map over their document elements. */
static void
path_from_value(const bson_value_t *base, const char *path, bson_value_t *out)
{
    bson_value_t v;
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    set_missing(out);
    if (base->value_type != BSON_TYPE_DOCUMENT ||
        !ms__find_field(base->value.v_doc.data, base->value.v_doc.data_len, path, n, &v)) {
        return;
    }
    if (!dot) {
        bson_value_copy(&v, out);
    } else if (v.value_type == BSON_TYPE_DOCUMENT) {
        path_from_value(&v, dot + 1, out);
    } else if (v.value_type == BSON_TYPE_ARRAY) {
        path_over_array(&v, dot + 1, out);
    }
}

static void
doc_value(const bson_t *doc, bson_value_t *v)
{
    memset(v, 0, sizeof *v);
    v->value_type = BSON_TYPE_DOCUMENT;
    v->value.v_doc.data = (uint8_t *)bson_get_data(doc);
    v->value.v_doc.data_len = doc->len;
}

static bool
eval_variable(const ev_t *ev, const char *ref, bson_value_t *out, bson_error_t *error)
{
    const char *dot = strchr(ref, '.');
    size_t n = dot ? (size_t)(dot - ref) : strlen(ref);
    bson_value_t base;
    set_missing(out);
    if (n == 3 && strncmp(ref, "NOW", 3) == 0) {
        set_date(&base, ev->ctx->now_ms);
    } else if (n == 12 && strncmp(ref, "CLUSTER_TIME", 12) == 0) {
        memset(&base, 0, sizeof base);
        base.value_type = BSON_TYPE_TIMESTAMP;
        base.value.v_timestamp.timestamp = ev->ctx->cluster_time_t;
        base.value.v_timestamp.increment = ev->ctx->cluster_time_i;
    } else if (n == 4 && strncmp(ref, "ROOT", 4) == 0) {
        doc_value(ev->root, &base);
    } else if (n == 7 && strncmp(ref, "CURRENT", 7) == 0) {
        doc_value(ev->current, &base);
    } else if (n == 6 && strncmp(ref, "REMOVE", 6) == 0) {
        return true;
    } else {
        const var_t *var = ev->vars;
        while (var && !(strncmp(var->name, ref, n) == 0 && var->name[n] == '\0')) {
            var = var->next;
        }
        if (!var) {
            return ms_set_error(error, MS_ERR_LOCATION17276, "Use of undefined variable: %.*s",
                                (int)n, ref);
        }
        base = *var->value;
    }
    if (!dot) {
        bson_value_copy(&base, out);
    } else if (base.value_type == BSON_TYPE_ARRAY) {
        path_over_array(&base, dot + 1, out);
    } else {
        path_from_value(&base, dot + 1, out);
    }
    return true;
}

/* ---- evaluation ------------------------------------------------------------------------ */

/* The arguments of an operator: the elements of an array, or the single value. */
static size_t
arg_list(const bson_value_t *arg, bson_value_t *items, size_t max)
{
    if (arg->value_type != BSON_TYPE_ARRAY) {
        if (max > 0) {
            items[0] = *arg;
        }
        return 1;
    }
    bson_iter_t it;
    size_t n = 0;
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (n < max) {
            items[n] = *bson_iter_value(&it);
        }
        n++;
    }
    return n;
}

static size_t
arg_count(const bson_value_t *arg)
{
    return arg_list(arg, NULL, 0);
}

static bool
check_arg_count(const op_def_t *op, size_t n, bson_error_t *error)
{
    if (op->min_args < 0) {
        return true;
    }
    if (op->min_args == op->max_args && n != (size_t)op->min_args) {
        return ms_set_error(error, MS_ERR_LOCATION16020,
                            "Expression %s takes exactly %d arguments. %zu were passed in.",
                            op->name, op->min_args, n);
    }
    if (n < (size_t)op->min_args) {
        return ms_set_error(error, MS_ERR_LOCATION16020,
                            "Expression %s takes at least %d arguments, and %zu were passed in.",
                            op->name, op->min_args, n);
    }
    if (op->max_args >= 0 && n > (size_t)op->max_args) {
        return ms_set_error(error, MS_ERR_LOCATION16020,
                            "Expression %s takes at most %d arguments, and %zu were passed in.",
                            op->name, op->max_args, n);
    }
    return true;
}

static bool
eval_operator(const ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
              bson_error_t *error)
{
    const op_def_t *op = find_op(name);
    bool ok = false;
    size_t n = 0;
    bson_value_t *items = NULL;
    bson_value_t *args = NULL;
    if (!op) {
        return ms_set_error(error, MS_ERR_INVALID_PIPELINE_OPERATOR, "Unrecognized expression '%s'",
                            name);
    }
    if (op->lazy) {
        return op->lazy(ev, name, arg, out, error);
    }
    n = arg_count(arg);
    if (!check_arg_count(op, n, error)) {
        return false;
    }
    items = bson_malloc0((n + 1) * sizeof *items);
    args = bson_malloc0((n + 1) * sizeof *args);
    arg_list(arg, items, n);
    for (size_t i = 0; i < n; i++) {
        if (!eval(ev, &items[i], &args[i], error)) {
            n = i;
            goto done;
        }
    }
    ok = op->eager(name, args, n, out, error);
done:
    for (size_t i = 0; i < n; i++) {
        bson_value_destroy(&args[i]);
    }
    bson_free(args);
    bson_free(items);
    return ok;
}

static bool
eval_object(const ev_t *ev, const bson_value_t *expr, bson_value_t *out, bson_error_t *error)
{
    bson_iter_t it;
    bson_t result = BSON_INITIALIZER;
    bool ok = false;
    bson_iter_init_from_data(&it, expr->value.v_doc.data, expr->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        bson_value_t v;
        if (!eval(ev, bson_iter_value(&it), &v, error)) {
            goto done;
        }
        if (v.value_type != BSON_TYPE_EOD) {
            bson_append_value(&result, bson_iter_key(&it), -1, &v);
        }
        bson_value_destroy(&v);
    }
    ms__value_from_bson(&result, false, out);
    ok = true;
done:
    bson_destroy(&result);
    return ok;
}

static bool
eval_array(const ev_t *ev, const bson_value_t *expr, bson_value_t *out, bson_error_t *error)
{
    bson_iter_t it;
    bson_t result = BSON_INITIALIZER;
    bool ok = false;
    bson_iter_init_from_data(&it, expr->value.v_doc.data, expr->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        bson_value_t v;
        if (!eval(ev, bson_iter_value(&it), &v, error)) {
            goto done;
        }
        if (v.value_type == BSON_TYPE_EOD) {
            set_null(&v);
        }
        bson_append_value(&result, bson_iter_key(&it), -1, &v);
        bson_value_destroy(&v);
    }
    ms__value_from_bson(&result, true, out);
    ok = true;
done:
    bson_destroy(&result);
    return ok;
}

static bool
first_key(const bson_value_t *doc, const char **key, bson_value_t *value, int *nkeys)
{
    bson_iter_t it;
    *nkeys = 0;
    *key = NULL;
    bson_iter_init_from_data(&it, doc->value.v_doc.data, doc->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (*nkeys == 0) {
            *key = bson_iter_key(&it);
            *value = *bson_iter_value(&it);
        }
        (*nkeys)++;
    }
    return *nkeys > 0;
}

static bool
eval(const ev_t *ev, const bson_value_t *expr, bson_value_t *out, bson_error_t *error)
{
    const char *key;
    bson_value_t arg;
    int nkeys;
    set_missing(out);
    switch (expr->value_type) {
    case BSON_TYPE_UTF8:
        if (expr->value.v_utf8.str[0] != '$') {
            break;
        }
        if (expr->value.v_utf8.str[1] == '$') {
            return eval_variable(ev, expr->value.v_utf8.str + 2, out, error);
        }
        {
            bson_value_t cur;
            doc_value(ev->current, &cur);
            path_from_value(&cur, expr->value.v_utf8.str + 1, out);
        }
        return true;
    case BSON_TYPE_DOCUMENT:
        if (first_key(expr, &key, &arg, &nkeys) && key[0] == '$') {
            if (nkeys != 1) {
                return ms_set_error(error, MS_ERR_LOCATION15983,
                                    "an expression specification must contain exactly one field, "
                                    "the name of the expression. Found %d fields",
                                    nkeys);
            }
            return eval_operator(ev, key, &arg, out, error);
        }
        return eval_object(ev, expr, out, error);
    case BSON_TYPE_ARRAY:
        return eval_array(ev, expr, out, error);
    default:
        break;
    }
    bson_value_copy(expr, out);
    return true;
}

bool
ms__expr_eval(const bson_value_t *expr, const bson_t *root, const bson_t *current,
              const ms_ctx_t *ctx, bson_value_t *out, bson_error_t *error)
{
    ev_t ev = {.root = root, .current = current, .ctx = ctx, .vars = NULL};
    return eval(&ev, expr, out, error);
}

bool
ms_expr_eval(const bson_value_t *expr, const bson_t *root, const ms_ctx_t *ctx, bson_value_t *out,
             bool *missing, bson_error_t *error)
{
    bool ok = ms__expr_eval(expr, root, root, ctx, out, error);
    if (!ok) {
        set_missing(out);
    }
    if (missing) {
        *missing = out->value_type == BSON_TYPE_EOD;
    }
    return ok;
}

/* ---- validation ------------------------------------------------------------------------ */

static bool
validate(const bson_value_t *expr, int depth, bson_error_t *error)
{
    const char *key;
    bson_value_t arg;
    int nkeys;
    bson_iter_t it;
    if (depth > 150) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "expression nested too deeply");
    }
    if (expr->value_type == BSON_TYPE_DOCUMENT && first_key(expr, &key, &arg, &nkeys) &&
        key[0] == '$') {
        const op_def_t *op = find_op(key);
        if (!op) {
            return ms_set_error(error, MS_ERR_INVALID_PIPELINE_OPERATOR,
                                "Unrecognized expression '%s'", key);
        }
        if (nkeys != 1) {
            return ms_set_error(error, MS_ERR_LOCATION15983,
                                "an expression specification must contain exactly one field, the "
                                "name of the expression. Found %d fields",
                                nkeys);
        }
        if (strcmp(key, "$literal") == 0) {
            return true;
        }
        if (!op->lazy && !check_arg_count(op, arg_count(&arg), error)) {
            return false;
        }
        expr = &arg;
        if (expr->value_type != BSON_TYPE_DOCUMENT && expr->value_type != BSON_TYPE_ARRAY) {
            return true;
        }
        if (op->lazy && expr->value_type == BSON_TYPE_DOCUMENT) {
            /* {$cond: {if, then, else}} and friends: validate the values of the spec */
            bson_iter_init_from_data(&it, expr->value.v_doc.data, expr->value.v_doc.data_len);
            while (bson_iter_next(&it)) {
                if (!validate(bson_iter_value(&it), depth + 1, error)) {
                    return false;
                }
            }
            return true;
        }
    }
    if (expr->value_type == BSON_TYPE_DOCUMENT || expr->value_type == BSON_TYPE_ARRAY) {
        bson_iter_init_from_data(&it, expr->value.v_doc.data, expr->value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            if (!validate(bson_iter_value(&it), depth + 1, error)) {
                return false;
            }
        }
    }
    return true;
}

bool
ms__expr_validate(const bson_value_t *expr, bson_error_t *error)
{
    return validate(expr, 0, error);
}

/* ---- comparison and logic --------------------------------------------------------------- */

static bool
op_compare(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
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

static bool
op_not(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    (void)name;
    (void)n;
    (void)error;
    set_bool(out, !ms__value_truthy(&args[0]));
    return true;
}

static bool
op_and_or(const ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
          bson_error_t *error)
{
    size_t n = arg_list(arg, NULL, 0);
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
        if (!eval(ev, e, &v, error)) {
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

static bool
spec_field(const bson_value_t *spec, const char *name, bson_value_t *out)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), name) == 0) {
            *out = *bson_iter_value(&it);
            return true;
        }
    }
    return false;
}

static bool
op_cond(const ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
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
            if (!spec_field(arg, fields[i].name, &parts[i])) {
                return ms_set_error(error, fields[i].code, "Missing '%s' parameter to $cond",
                                    fields[i].name);
            }
        }
    } else if (arg->value_type != BSON_TYPE_ARRAY || arg_list(arg, parts, 3) != 3) {
        return ms_set_error(error, MS_ERR_LOCATION16020,
                            "Expression $cond takes exactly 3 arguments. %zu were passed in.",
                            arg->value_type == BSON_TYPE_ARRAY ? arg_list(arg, parts, 0) : 1);
    }
    if (!eval(ev, &parts[0], &test, error)) {
        return false;
    }
    bool t = ms__value_truthy(&test);
    bson_value_destroy(&test);
    return eval(ev, &parts[t ? 1 : 2], out, error);
}

static bool
op_if_null(const ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
           bson_error_t *error)
{
    bson_value_t items[64];
    size_t n = arg->value_type == BSON_TYPE_ARRAY ? arg_list(arg, items, 64) : 0;
    (void)name;
    if (n < 2 || n > 64) {
        return ms_set_error(error, MS_ERR_LOCATION1257300,
                            "$ifNull needs at least two arguments, had: %zu", n);
    }
    for (size_t i = 0; i < n; i++) {
        if (!eval(ev, &items[i], out, error)) {
            return false;
        }
        if (i == n - 1 || !nullish(out)) {
            return true;
        }
        bson_value_destroy(out);
    }
    return true;
}

static bool
op_switch(const ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
          bson_error_t *error)
{
    bson_value_t branches, dflt;
    bool has_default;
    bson_iter_t it;
    (void)name;
    if (arg->value_type != BSON_TYPE_DOCUMENT || !spec_field(arg, "branches", &branches) ||
        branches.value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_LOCATION40061, "$switch requires at least one branch.");
    }
    has_default = spec_field(arg, "default", &dflt);
    bson_iter_init_from_data(&it, branches.value.v_doc.data, branches.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *br = bson_iter_value(&it);
        bson_value_t c, then;
        bson_value_t test;
        if (br->value_type != BSON_TYPE_DOCUMENT || !spec_field(br, "case", &c) ||
            !spec_field(br, "then", &then)) {
            return ms_set_error(
                error, MS_ERR_LOCATION40064,
                "$switch requires each branch have a 'case' and 'then' expression.");
        }
        if (!eval(ev, &c, &test, error)) {
            return false;
        }
        bool t = ms__value_truthy(&test);
        bson_value_destroy(&test);
        if (t) {
            return eval(ev, &then, out, error);
        }
    }
    if (!has_default) {
        return ms_set_error(error, MS_ERR_LOCATION40066,
                            "$switch could not find a matching branch for an input, and no "
                            "default was specified.");
    }
    return eval(ev, &dflt, out, error);
}

static bool
op_literal(const ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
           bson_error_t *error)
{
    (void)ev;
    (void)name;
    (void)error;
    bson_value_copy(arg, out);
    return true;
}

static bool
op_let(const ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
       bson_error_t *error)
{
    bson_value_t vars, in;
    bson_iter_t it;
    var_t *list = NULL;
    bson_value_t *values = NULL;
    size_t n = 0, cap = 0;
    bool ok = false;
    (void)name;
    if (arg->value_type != BSON_TYPE_DOCUMENT || !spec_field(arg, "vars", &vars) ||
        !spec_field(arg, "in", &in) || vars.value_type != BSON_TYPE_DOCUMENT) {
        return ms_set_error(error, MS_ERR_LOCATION16866,
                            "$let requires 'vars' (an object) and 'in'");
    }
    bson_iter_init_from_data(&it, vars.value.v_doc.data, vars.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        cap++;
    }
    list = bson_malloc0((cap + 1) * sizeof *list);
    values = bson_malloc0((cap + 1) * sizeof *values);
    bson_iter_init_from_data(&it, vars.value.v_doc.data, vars.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (!eval(ev, bson_iter_value(&it), &values[n], error)) {
            goto done;
        }
        list[n].name = bson_iter_key(&it);
        list[n].value = &values[n];
        list[n].next = n > 0 ? &list[n - 1] : ev->vars;
        n++;
    }
    ev_t inner = *ev;
    inner.vars = n > 0 ? &list[n - 1] : ev->vars;
    ok = eval(&inner, &in, out, error);
done:
    for (size_t i = 0; i < n; i++) {
        bson_value_destroy(&values[i]);
    }
    bson_free(values);
    bson_free(list);
    return ok;
}

/* $map and $filter: {input, as (default "this"), in | cond}. */
static bool
op_map_filter(const ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
              bson_error_t *error)
{
    bool is_map = strcmp(name, "$map") == 0;
    bson_value_t input_expr, body, as_value;
    const bson_value_t *as = NULL;
    bson_value_t input;
    bson_t result = BSON_INITIALIZER;
    bson_iter_t it;
    bool ok = false;
    uint32_t idx = 0;
    if (arg->value_type != BSON_TYPE_DOCUMENT || !spec_field(arg, "input", &input_expr) ||
        !spec_field(arg, is_map ? "in" : "cond", &body)) {
        bson_destroy(&result);
        return ms_set_error(error, is_map ? MS_ERR_LOCATION16882 : MS_ERR_LOCATION28648,
                            "Missing 'input' or '%s' parameter to %s", is_map ? "in" : "cond",
                            name);
    }
    if (spec_field(arg, "as", &as_value)) {
        as = &as_value;
    }
    if (!eval(ev, &input_expr, &input, error)) {
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
        var_t var = {.name = as && as->value_type == BSON_TYPE_UTF8 ? as->value.v_utf8.str : "this",
                     .value = bson_iter_value(&it),
                     .next = ev->vars};
        ev_t inner = *ev;
        bson_value_t v;
        inner.vars = &var;
        if (!eval(&inner, &body, &v, error)) {
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

/* ---- arrays, strings, types ------------------------------------------------------------ */

static size_t
array_len(const bson_value_t *v)
{
    return arg_list(v, NULL, 0);
}

static bool
op_in(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
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

static bool
op_size(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
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
    out->value.v_int32 = (int32_t)array_len(&args[0]);
    return true;
}

static bool
op_is_array(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
            bson_error_t *error)
{
    (void)name;
    (void)n;
    (void)error;
    set_bool(out, args[0].value_type == BSON_TYPE_ARRAY);
    return true;
}

static bool
op_array_elem_at(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
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
    int64_t len = (int64_t)array_len(&args[0]);
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

static bool
op_first_last(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
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
    return op_array_elem_at(name, pair, 2, out, error);
}

static bool
op_concat_arrays(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
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

static bool
op_concat(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    size_t total = 0;
    (void)name;
    for (size_t i = 0; i < n; i++) {
        if (nullish(&args[i])) {
            set_null(out);
            return true;
        }
        if (args[i].value_type != BSON_TYPE_UTF8) {
            return ms_set_error(error, MS_ERR_LOCATION16702,
                                "$concat only supports strings, not %s",
                                ms__type_name(args[i].value_type));
        }
        total += args[i].value.v_utf8.len;
    }
    char *buf = bson_malloc(total + 1);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + pos, args[i].value.v_utf8.str, args[i].value.v_utf8.len);
        pos += args[i].value.v_utf8.len;
    }
    buf[pos] = '\0';
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = buf;
    out->value.v_utf8.len = (uint32_t)total;
    return true;
}

static bool
op_case(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    (void)n;
    if (nullish(&args[0])) {
        set_string(out, "", 0);
        return true;
    }
    if (args[0].value_type != BSON_TYPE_UTF8) {
        return ms_set_error(error, MS_ERR_LOCATION16007,
                            "can't convert from BSON type %s to String",
                            ms__type_name(args[0].value_type));
    }
    set_string(out, args[0].value.v_utf8.str, args[0].value.v_utf8.len);
    bool upper = strcmp(name, "$toUpper") == 0;
    for (char *c = out->value.v_utf8.str; *c; c++) {
        if (upper && *c >= 'a' && *c <= 'z') {
            *c = (char)(*c - 'a' + 'A');
        } else if (!upper && *c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a');
        }
    }
    return true;
}

static bool
op_type(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    (void)name;
    (void)n;
    (void)error;
    const char *t = ms__type_name(args[0].value_type);
    set_string(out, t, strlen(t));
    return true;
}

/* Shortest decimal form that reads back as the same double, as mongod prints doubles. */
static void
format_double(double d, char *buf, size_t len)
{
    if (isnan(d)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, len, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) {
            return;
        }
    }
}

static void
format_date(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int millis = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

static bool
op_to_string(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
             bson_error_t *error)
{
    char buf[64];
    const bson_value_t *v = &args[0];
    (void)name;
    (void)n;
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        set_null(out);
        return true;
    case BSON_TYPE_UTF8:
        bson_value_copy(v, out);
        return true;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
        snprintf(buf, sizeof buf, "%" PRId64, as_i64(v));
        break;
    case BSON_TYPE_DOUBLE:
        format_double(v->value.v_double, buf, sizeof buf);
        break;
    case BSON_TYPE_DECIMAL128:
        bson_decimal128_to_string(&v->value.v_decimal128, buf);
        break;
    case BSON_TYPE_BOOL:
        snprintf(buf, sizeof buf, "%s", v->value.v_bool ? "true" : "false");
        break;
    case BSON_TYPE_OID:
        bson_oid_to_string(&v->value.v_oid, buf);
        break;
    case BSON_TYPE_DATE_TIME:
        format_date(v->value.v_datetime, buf, sizeof buf);
        break;
    default:
        return ms_set_error(
            error, MS_ERR_CONVERSION_FAILURE,
            "Unsupported conversion from %s to string in $convert with no onError value",
            ms__type_name(v->value_type));
    }
    set_string(out, buf, strlen(buf));
    return true;
}

static bool
op_to_number(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
             bson_error_t *error)
{
    const bson_value_t *v = &args[0];
    double d;
    (void)n;
    if (nullish(v)) {
        set_null(out);
        return true;
    }
    if (ms__is_number(v->value_type)) {
        d = ms__num_as_double(v);
    } else if (v->value_type == BSON_TYPE_BOOL) {
        d = v->value.v_bool;
    } else if (v->value_type == BSON_TYPE_DATE_TIME) {
        d = (double)v->value.v_datetime;
    } else if (v->value_type == BSON_TYPE_UTF8) {
        char *end;
        d = strtod(v->value.v_utf8.str, &end);
        if (end == v->value.v_utf8.str || *end) {
            return ms_set_error(error, MS_ERR_CONVERSION_FAILURE,
                                "Failed to parse number '%s' in $convert with no onError value",
                                v->value.v_utf8.str);
        }
    } else {
        return ms_set_error(error, MS_ERR_CONVERSION_FAILURE,
                            "Unsupported conversion from %s in $convert with no onError value",
                            ms__type_name(v->value_type));
    }
    if (isnan(d) && strcmp(name, "$toDouble") != 0 && strcmp(name, "$toDecimal") != 0) {
        return ms_set_error(error, MS_ERR_CONVERSION_FAILURE,
                            "Attempt to convert NaN value to integer type in $convert with no "
                            "onError value");
    }
    memset(out, 0, sizeof *out);
    if (strcmp(name, "$toDouble") == 0) {
        out->value_type = BSON_TYPE_DOUBLE;
        out->value.v_double = d;
    } else if (strcmp(name, "$toInt") == 0) {
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = (int32_t)(d > INT32_MAX ? INT32_MAX : d < INT32_MIN ? INT32_MIN : d);
    } else if (strcmp(name, "$toLong") == 0) {
        set_int64(out, is_int(v) ? as_i64(v) : v->value_type == BSON_TYPE_DATE_TIME ? v->value.v_datetime : ms__clamp_i64(d));
    } else if (strcmp(name, "$toDecimal") == 0) {
        ms__double_value(d, true, out);
    } else { /* $toDate */
        if (v->value_type == BSON_TYPE_UTF8 || v->value_type == BSON_TYPE_BOOL) {
            return ms_set_error(
                error, MS_ERR_CONVERSION_FAILURE,
                "Unsupported conversion from %s to date in $convert with no onError value",
                ms__type_name(v->value_type));
        }
        set_date(out, is_int(v) ? as_i64(v) : v->value_type == BSON_TYPE_DATE_TIME ? v->value.v_datetime : ms__clamp_i64(d));
    }
    return true;
}

static bool
op_to_bool(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    (void)name;
    (void)n;
    (void)error;
    if (nullish(&args[0])) {
        set_null(out);
    } else {
        set_bool(out, ms__value_truthy(&args[0]));
    }
    return true;
}

/* $min/$max/$sum/$avg as expressions: over the arguments, or the elements of one array. */
static bool
op_list_reduce(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
               bson_error_t *error)
{
    bson_iter_t it;
    bool from_array = n == 1 && args[0].value_type == BSON_TYPE_ARRAY;
    bool is_sum = strcmp(name, "$sum") == 0, is_avg = strcmp(name, "$avg") == 0;
    bool is_max = strcmp(name, "$max") == 0;
    ms_sum_t sum = {0};
    size_t count = 0;
    bson_value_t best; /* struct copy; bytes borrowed from args */
    bool have_best = false;
    (void)error;
    if (from_array) {
        bson_iter_init_from_data(&it, args[0].value.v_doc.data, args[0].value.v_doc.data_len);
    }
    for (size_t i = 0;; i++) {
        const bson_value_t *v;
        if (from_array) {
            if (!bson_iter_next(&it)) {
                break;
            }
            v = bson_iter_value(&it);
        } else {
            if (i >= n) {
                break;
            }
            v = &args[i];
        }
        if (is_sum || is_avg) {
            if (ms__is_number(v->value_type)) {
                ms__sum_add(&sum, v);
                count++;
            }
        } else if (!nullish(v)) {
            int c = have_best ? ms_value_cmp(v, &best) : 0;
            if (!have_best || (is_max ? c > 0 : c < 0)) {
                best = *v;
                have_best = true;
            }
        }
    }
    if (is_sum) {
        ms__sum_value(&sum, out);
    } else if (is_avg) {
        if (count == 0) {
            set_null(out);
        } else {
            double total = sum.kind <= 1 ? (double)sum.i : sum.d;
            ms__double_value(total / (double)count, sum.kind == 3, out);
        }
    } else if (have_best) {
        bson_value_copy(&best, out);
    } else {
        set_null(out);
    }
    return true;
}

static bool
op_merge_objects(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                 bson_error_t *error)
{
    ms_node_t *merged = ms__node_new(BSON_TYPE_DOCUMENT);
    (void)name;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        if (nullish(&args[i])) {
            continue;
        }
        if (args[i].value_type != BSON_TYPE_DOCUMENT) {
            ms__node_destroy(merged);
            return ms_set_error(error, MS_ERR_LOCATION40400,
                                "$mergeObjects requires object inputs, but input is of type %s",
                                ms__type_name(args[i].value_type));
        }
        bson_iter_init_from_data(&it, args[i].value.v_doc.data, args[i].value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            ms__node_put(merged, k, strlen(k), ms__node_from_value(bson_iter_value(&it)));
        }
    }
    ms__node_to_value(merged, out);
    ms__node_destroy(merged);
    return true;
}

static const op_def_t ops[] = {
    {"$abs", 1, 1, ms__op_unary_math, NULL},
    {"$add", 0, -1, ms__op_add, NULL},
    {"$and", -1, -1, NULL, op_and_or},
    {"$arrayElemAt", 2, 2, op_array_elem_at, NULL},
    {"$avg", 0, -1, op_list_reduce, NULL},
    {"$ceil", 1, 1, ms__op_unary_math, NULL},
    {"$cmp", 2, 2, op_compare, NULL},
    {"$concat", 0, -1, op_concat, NULL},
    {"$concatArrays", 0, -1, op_concat_arrays, NULL},
    {"$cond", -1, -1, NULL, op_cond},
    {"$divide", 2, 2, ms__op_divide_mod, NULL},
    {"$eq", 2, 2, op_compare, NULL},
    {"$filter", -1, -1, NULL, op_map_filter},
    {"$first", 1, 1, op_first_last, NULL},
    {"$floor", 1, 1, ms__op_unary_math, NULL},
    {"$gt", 2, 2, op_compare, NULL},
    {"$gte", 2, 2, op_compare, NULL},
    {"$ifNull", -1, -1, NULL, op_if_null},
    {"$in", 2, 2, op_in, NULL},
    {"$isArray", 1, 1, op_is_array, NULL},
    {"$last", 1, 1, op_first_last, NULL},
    {"$let", -1, -1, NULL, op_let},
    {"$literal", -1, -1, NULL, op_literal},
    {"$lt", 2, 2, op_compare, NULL},
    {"$lte", 2, 2, op_compare, NULL},
    {"$map", -1, -1, NULL, op_map_filter},
    {"$max", 1, -1, op_list_reduce, NULL},
    {"$mergeObjects", 0, -1, op_merge_objects, NULL},
    {"$min", 1, -1, op_list_reduce, NULL},
    {"$mod", 2, 2, ms__op_divide_mod, NULL},
    {"$multiply", 0, -1, ms__op_multiply, NULL},
    {"$ne", 2, 2, op_compare, NULL},
    {"$not", 1, 1, op_not, NULL},
    {"$or", -1, -1, NULL, op_and_or},
    {"$size", 1, 1, op_size, NULL},
    {"$subtract", 2, 2, ms__op_subtract, NULL},
    {"$sum", 0, -1, op_list_reduce, NULL},
    {"$switch", -1, -1, NULL, op_switch},
    {"$toBool", 1, 1, op_to_bool, NULL},
    {"$toDate", 1, 1, op_to_number, NULL},
    {"$toDecimal", 1, 1, op_to_number, NULL},
    {"$toDouble", 1, 1, op_to_number, NULL},
    {"$toInt", 1, 1, op_to_number, NULL},
    {"$toLong", 1, 1, op_to_number, NULL},
    {"$toLower", 1, 1, op_case, NULL},
    {"$toString", 1, 1, op_to_string, NULL},
    {"$toUpper", 1, 1, op_case, NULL},
    {"$type", 1, 1, op_type, NULL},
};

static const op_def_t *
find_op(const char *name)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(ops[i].name, name) == 0) {
            return &ops[i];
        }
    }
    return NULL;
}

/*
 * mongoq-test-server: aggregation expressions, interpreted from their BSON. Field paths ("$a.b"),
 * variables ($$NOW, $$ROOT, $$CURRENT, $$REMOVE, $let/$map/$filter names) and operators. Results
 * are owned bson_value_t; a missing value is BSON_TYPE_EOD.
 *
 * Operators are a table, ops[] (below): a row per operator with its argument count and its
 * function, eager (arguments evaluated first) or lazy (evaluates what it needs). The functions
 * live by family, as redis's t_*.c: expr_arith.c, expr_cond.c, expr_array.c, expr_string.c,
 * expr_type.c, expr_object.c, expr_field.c; $let and $literal here, with the variables. What
 * mongod checks when it parses an expression (operators known, argument counts, variables
 * defined) is in expr_parse.c.
 */
#include "expr-private.h"

#include <string.h>

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
eval_variable(const ms_expr_ev_t *ev, const char *ref, bson_value_t *out, bson_error_t *error)
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
        const ms_expr_var_t *var = ev->vars;
        while (var && !(strncmp(var->name, ref, n) == 0 && var->name[n] == '\0')) {
            var = var->next;
        }
        if (var) {
            base = *var->value;
        } else if (!ev->ctx->let ||
                   !ms__find_field(bson_get_data(ev->ctx->let), ev->ctx->let->len, ref, n,
                                   &base)) {
            return ms_set_error(error, MS_ERR_LOCATION17276, "Use of undefined variable: %.*s",
                                (int)n, ref);
        }
    }
    if (base.value_type == BSON_TYPE_EOD) {
        /* a variable bound to a missing value ($let of "$missing") is missing, as are its paths */
        memset(out, 0, sizeof *out);
        return true;
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
size_t
ms__expr_args(const bson_value_t *arg, bson_value_t *items, size_t max)
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
    return ms__expr_args(arg, NULL, 0);
}

bool
ms__expr_check_arg_count(const ms_expr_op_t *op, size_t n, bson_error_t *error)
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
eval_operator(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
              bson_error_t *error)
{
    const ms_expr_op_t *op = ms__expr_find_op(name);
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
    if (!ms__expr_check_arg_count(op, n, error)) {
        return false;
    }
    items = bson_malloc0((n + 1) * sizeof *items);
    args = bson_malloc0((n + 1) * sizeof *args);
    ms__expr_args(arg, items, n);
    for (size_t i = 0; i < n; i++) {
        if (!ms__expr_eval_in(ev, &items[i], &args[i], error)) {
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
eval_object(const ms_expr_ev_t *ev, const bson_value_t *expr, bson_value_t *out,
            bson_error_t *error)
{
    bson_iter_t it;
    bson_t result = BSON_INITIALIZER;
    bool ok = false;
    bson_iter_init_from_data(&it, expr->value.v_doc.data, expr->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        bson_value_t v;
        if (!ms__expr_eval_in(ev, bson_iter_value(&it), &v, error)) {
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
eval_array(const ms_expr_ev_t *ev, const bson_value_t *expr, bson_value_t *out, bson_error_t *error)
{
    bson_iter_t it;
    bson_t result = BSON_INITIALIZER;
    bool ok = false;
    bson_iter_init_from_data(&it, expr->value.v_doc.data, expr->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        bson_value_t v;
        if (!ms__expr_eval_in(ev, bson_iter_value(&it), &v, error)) {
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

bool
ms__expr_first_key(const bson_value_t *doc, const char **key, bson_value_t *value, int *nkeys)
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

bool
ms__expr_eval_in(const ms_expr_ev_t *ev, const bson_value_t *expr, bson_value_t *out,
                 bson_error_t *error)
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
        if (ms__expr_first_key(expr, &key, &arg, &nkeys) && key[0] == '$') {
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
    ms_expr_ev_t ev = {.root = root, .current = current, .ctx = ctx, .vars = NULL};
    return ms__expr_eval_in(&ev, expr, out, error);
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

/* ---- variables: $let, $literal ----------------------------------------------------------- */

bool
ms__expr_spec_field(const bson_value_t *spec, const char *name, bson_value_t *out)
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
op_literal(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
           bson_error_t *error)
{
    (void)ev;
    (void)name;
    (void)error;
    bson_value_copy(arg, out);
    return true;
}

static bool
op_let(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
       bson_error_t *error)
{
    bson_value_t vars, in;
    bson_iter_t it;
    ms_expr_var_t *list = NULL;
    bson_value_t *values = NULL;
    size_t n = 0, cap = 0;
    bool ok = false;
    (void)name;
    if (arg->value_type != BSON_TYPE_DOCUMENT || !ms__expr_spec_field(arg, "vars", &vars) ||
        !ms__expr_spec_field(arg, "in", &in) || vars.value_type != BSON_TYPE_DOCUMENT) {
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
        if (!ms__expr_eval_in(ev, bson_iter_value(&it), &values[n], error)) {
            goto done;
        }
        list[n].name = bson_iter_key(&it);
        list[n].value = &values[n];
        list[n].next = n > 0 ? &list[n - 1] : ev->vars;
        n++;
    }
    ms_expr_ev_t inner = *ev;
    inner.vars = n > 0 ? &list[n - 1] : ev->vars;
    ok = ms__expr_eval_in(&inner, &in, out, error);
done:
    for (size_t i = 0; i < n; i++) {
        bson_value_destroy(&values[i]);
    }
    bson_free(values);
    bson_free(list);
    return ok;
}

static const ms_expr_op_t ops[] = {
    {"$abs", 1, 1, ms__op_unary_math, NULL, NULL},
    {"$add", 0, -1, ms__op_add, NULL, NULL},
    {"$and", -1, -1, NULL, ms__op_and_or, NULL},
    {"$arrayElemAt", 2, 2, ms__op_array_elem_at, NULL, NULL},
    {"$avg", 0, -1, ms__op_list_reduce, NULL, NULL},
    {"$ceil", 1, 1, ms__op_unary_math, NULL, NULL},
    {"$cmp", 2, 2, ms__op_compare, NULL, NULL},
    {"$concat", 0, -1, ms__op_concat, NULL, NULL},
    {"$concatArrays", 0, -1, ms__op_concat_arrays, NULL, NULL},
    {"$cond", -1, -1, NULL, ms__op_cond, NULL},
    {"$divide", 2, 2, ms__op_divide_mod, NULL, NULL},
    {"$eq", 2, 2, ms__op_compare, NULL, NULL},
    {"$filter", -1, -1, NULL, ms__op_map_filter, NULL},
    {"$first", 1, 1, ms__op_first_last, NULL, NULL},
    {"$floor", 1, 1, ms__op_unary_math, NULL, NULL},
    {"$getField", -1, -1, NULL, ms__op_get_field, ms__op_field_check},
    {"$gt", 2, 2, ms__op_compare, NULL, NULL},
    {"$gte", 2, 2, ms__op_compare, NULL, NULL},
    {"$ifNull", -1, -1, NULL, ms__op_if_null, NULL},
    {"$in", 2, 2, ms__op_in, NULL, NULL},
    {"$isArray", 1, 1, ms__op_is_array, NULL, NULL},
    {"$last", 1, 1, ms__op_first_last, NULL, NULL},
    {"$let", -1, -1, NULL, op_let, NULL},
    {"$literal", -1, -1, NULL, op_literal, NULL},
    {"$lt", 2, 2, ms__op_compare, NULL, NULL},
    {"$lte", 2, 2, ms__op_compare, NULL, NULL},
    {"$map", -1, -1, NULL, ms__op_map_filter, NULL},
    {"$max", 1, -1, ms__op_list_reduce, NULL, NULL},
    {"$mergeObjects", 0, -1, ms__op_merge_objects, NULL, NULL},
    {"$min", 1, -1, ms__op_list_reduce, NULL, NULL},
    {"$mod", 2, 2, ms__op_divide_mod, NULL, NULL},
    {"$multiply", 0, -1, ms__op_multiply, NULL, NULL},
    {"$ne", 2, 2, ms__op_compare, NULL, NULL},
    {"$not", 1, 1, ms__op_not, NULL, NULL},
    {"$or", -1, -1, NULL, ms__op_and_or, NULL},
    {"$rand", -1, -1, NULL, ms__op_rand, NULL},
    {"$setField", -1, -1, NULL, ms__op_set_field, ms__op_field_check},
    {"$size", 1, 1, ms__op_size, NULL, NULL},
    {"$subtract", 2, 2, ms__op_subtract, NULL, NULL},
    {"$sum", 0, -1, ms__op_list_reduce, NULL, NULL},
    {"$switch", -1, -1, NULL, ms__op_switch, NULL},
    {"$toBool", 1, 1, ms__op_to_bool, NULL, NULL},
    {"$toDate", 1, 1, ms__op_to_number, NULL, NULL},
    {"$toDecimal", 1, 1, ms__op_to_number, NULL, NULL},
    {"$toDouble", 1, 1, ms__op_to_number, NULL, NULL},
    {"$toInt", 1, 1, ms__op_to_number, NULL, NULL},
    {"$toLong", 1, 1, ms__op_to_number, NULL, NULL},
    {"$toLower", 1, 1, ms__op_case, NULL, NULL},
    {"$toString", 1, 1, ms__op_to_string, NULL, NULL},
    {"$toUpper", 1, 1, ms__op_case, NULL, NULL},
    {"$type", 1, 1, ms__op_type, NULL, NULL},
    {"$unsetField", -1, -1, NULL, ms__op_set_field, ms__op_field_check},
};

const ms_expr_op_t *
ms__expr_find_op(const char *name)
{
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (strcmp(ops[i].name, name) == 0) {
            return &ops[i];
        }
    }
    return NULL;
}

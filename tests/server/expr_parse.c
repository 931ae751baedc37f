/*
 * mongoq-test-server: what mongod checks when it parses an aggregation expression, before any
 * document is seen: every operator known, with its argument count and its own parse-time check
 * (ms_expr_op_t.check), nesting depth, and every variable ($$name) defined where it is used
 * (by $let, $map, $filter, the command's let, or a builtin). Evaluation is in expr.c.
 */
#include "expr-private.h"

#include <string.h>

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
    if (expr->value_type == BSON_TYPE_DOCUMENT && ms__expr_first_key(expr, &key, &arg, &nkeys) &&
        key[0] == '$') {
        const ms_expr_op_t *op = ms__expr_find_op(key);
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
        if (op->check && !op->check(key, &arg, error)) {
            return false;
        }
        if (!op->lazy && !ms__expr_check_arg_count(op, ms__expr_args(&arg, NULL, 0), error)) {
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

/* ---- variables defined where used (mongod resolves them when it parses: expression.cpp) -- */

typedef struct scope {
    const char *name;
    size_t len;
    const struct scope *next;
} scope_t;

static bool
var_defined(const char *ref, size_t n, const scope_t *sc, const bson_t *let)
{
    static const char *const builtins[] = {"NOW", "CLUSTER_TIME", "ROOT", "CURRENT", "REMOVE"};
    bson_value_t unused;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        if (strlen(builtins[i]) == n && strncmp(builtins[i], ref, n) == 0) {
            return true;
        }
    }
    for (; sc; sc = sc->next) {
        if (sc->len == n && strncmp(sc->name, ref, n) == 0) {
            return true;
        }
    }
    return let && ms__find_field(bson_get_data(let), let->len, ref, n, &unused);
}

static bool check_vars(const bson_value_t *expr, const scope_t *sc, const bson_t *let, int depth,
                       bson_error_t *error);

/* The names a binding operator adds for the fields of its spec that see them. */
static bool
check_binding(const char *op, const bson_value_t *spec, const scope_t *sc, const bson_t *let,
              int depth, bson_error_t *error)
{
    bson_iter_t it;
    bson_value_t as;
    scope_t a = {"this", 4, sc}, b = {"value", 5, &a};
    if (strcmp(op, "$let") != 0 && ms__expr_spec_field(spec, "as", &as) &&
        as.value_type == BSON_TYPE_UTF8) {
        a.name = as.value.v_utf8.str;
        a.len = as.value.v_utf8.len;
    }
    const scope_t *inner = strcmp(op, "$reduce") == 0 ? &b : &a;
    bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        bool sees = strcmp(key, "in") == 0 || strcmp(key, "cond") == 0;
        if (strcmp(op, "$let") == 0 && strcmp(key, "in") == 0) {
            continue; /* below, with the vars */
        }
        if (!check_vars(bson_iter_value(&it), sees ? inner : sc, let, depth + 1, error)) {
            return false;
        }
    }
    return true;
}

static bool
check_let(const bson_value_t *spec, const scope_t *sc, const bson_t *let, int depth,
          bson_error_t *error)
{
    bson_value_t vars, in;
    bson_iter_t it;
    if (!ms__expr_spec_field(spec, "vars", &vars) || !ms__expr_spec_field(spec, "in", &in) ||
        vars.value_type != BSON_TYPE_DOCUMENT) {
        return check_binding("$let", spec, sc, let, depth, error);
    }
    size_t n = 0;
    bson_iter_init_from_data(&it, vars.value.v_doc.data, vars.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        n++;
    }
    scope_t *names = bson_malloc0(sizeof *names * (n + 1));
    const scope_t *top = sc;
    size_t i = 0;
    bson_iter_init_from_data(&it, vars.value.v_doc.data, vars.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        names[i] = (scope_t){bson_iter_key(&it), strlen(bson_iter_key(&it)), top};
        top = &names[i++];
    }
    bool ok = check_binding("$let", spec, sc, let, depth, error) &&
              check_vars(&in, top, let, depth + 1, error);
    bson_free(names);
    return ok;
}

static bool
check_vars(const bson_value_t *expr, const scope_t *sc, const bson_t *let, int depth,
           bson_error_t *error)
{
    const char *key;
    bson_value_t arg;
    int nkeys;
    bson_iter_t it;
    if (depth > 150) {
        return true; /* validate refuses it */
    }
    if (expr->value_type == BSON_TYPE_UTF8 && strncmp(expr->value.v_utf8.str, "$$", 2) == 0) {
        const char *ref = expr->value.v_utf8.str + 2;
        const char *dot = strchr(ref, '.');
        size_t n = dot ? (size_t)(dot - ref) : strlen(ref);
        if (!var_defined(ref, n, sc, let)) {
            return ms_set_error(error, MS_ERR_LOCATION17276, "Use of undefined variable: %.*s",
                                (int)n, ref);
        }
        return true;
    }
    if (expr->value_type == BSON_TYPE_DOCUMENT && ms__expr_first_key(expr, &key, &arg, &nkeys) &&
        key[0] == '$' && nkeys == 1) {
        if (strcmp(key, "$literal") == 0) {
            return true;
        }
        if (arg.value_type == BSON_TYPE_DOCUMENT && strcmp(key, "$let") == 0) {
            return check_let(&arg, sc, let, depth, error);
        }
        if (arg.value_type == BSON_TYPE_DOCUMENT &&
            (strcmp(key, "$map") == 0 || strcmp(key, "$filter") == 0 ||
             strcmp(key, "$reduce") == 0)) {
            return check_binding(key, &arg, sc, let, depth, error);
        }
    }
    if (expr->value_type == BSON_TYPE_DOCUMENT || expr->value_type == BSON_TYPE_ARRAY) {
        bson_iter_init_from_data(&it, expr->value.v_doc.data, expr->value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            if (!check_vars(bson_iter_value(&it), sc, let, depth + 1, error)) {
                return false;
            }
        }
    }
    return true;
}

bool
ms__expr_check_vars(const bson_value_t *expr, const bson_t *let, bson_error_t *error)
{
    return check_vars(expr, NULL, let, 0, error);
}

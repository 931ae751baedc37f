/*
 * mongoq-test-server: $getField, $setField and $unsetField (mongod 5.0+), rows of expr.c's ops[].
 * They read and write a field by its exact name, dots and dollars included, so the name must be
 * a constant string: a bare "$a" is a field path and refused, as mongod's
 * ExpressionGetField::parse and ExpressionSetField::parse (src/mongo/db/pipeline/expression.cpp)
 * refuse it. Manual: reference/operator/aggregation/getField, setField, unsetField.
 */
#include "expr-private.h"

#include <string.h>

/* The error codes of one operator, as mongod's parser and evaluate() raise them. */
typedef struct {
    const char *name;
    int unknown_arg, no_field, no_input, no_value;
    int field_path, not_constant, not_string, input_not_object;
} field_op_codes_t;

static const field_op_codes_t get_codes = {
    .name = "$getField",
    .unknown_arg = MS_ERR_LOCATION3041701,
    .no_field = MS_ERR_LOCATION3041702,
    .no_input = MS_ERR_LOCATION3041703,
    .no_value = 0, /* $getField takes no value */
    .field_path = MS_ERR_LOCATION5654600,
    .not_constant = MS_ERR_LOCATION5654601,
    .not_string = MS_ERR_LOCATION5654602,
    .input_not_object = MS_ERR_LOCATION3041705,
};
static const field_op_codes_t set_codes = {
    .name = "$setField",
    .unknown_arg = MS_ERR_LOCATION4161101,
    .no_field = MS_ERR_LOCATION4161102,
    .no_input = MS_ERR_LOCATION4161109,
    .no_value = MS_ERR_LOCATION4161103,
    .field_path = MS_ERR_LOCATION4161108,
    .not_constant = MS_ERR_LOCATION4161106,
    .not_string = MS_ERR_LOCATION4161107,
    .input_not_object = MS_ERR_LOCATION4161105,
};

typedef struct {
    bool has_field, has_input, has_value;
    bson_value_t field, input, value;
} field_args_t;

/* The constant name in 'field': a string, or {$literal: string} / {$const: string}. */
static bool
field_name(const field_op_codes_t *c, const bson_value_t *field, const char **name,
           bson_error_t *error)
{
    bson_value_t lit = *field;
    if (field->value_type == BSON_TYPE_UTF8 && field->value.v_utf8.str[0] == '$') {
        const char *fp = field->value.v_utf8.str;
        return ms_set_error(error, c->field_path,
                            "'%s' is a field path reference which is not allowed in this context. "
                            "Did you mean {$literal: '%s'}?",
                            fp, fp);
    }
    if (field->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t it;
        const char *k = NULL;
        int n = 0;
        bson_iter_init_from_data(&it, field->value.v_doc.data, field->value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            k = bson_iter_key(&it);
            lit = *bson_iter_value(&it);
            n++;
        }
        if (n != 1 || (strcmp(k, "$literal") != 0 && strcmp(k, "$const") != 0)) {
            return ms_set_error(error, c->not_constant,
                                "%s requires 'field' to evaluate to a constant, but got a "
                                "non-constant argument",
                                c->name);
        }
    } else if (field->value_type == BSON_TYPE_ARRAY) {
        return ms_set_error(error, c->not_constant,
                            "%s requires 'field' to evaluate to a constant, but got a "
                            "non-constant argument",
                            c->name);
    }
    if (lit.value_type != BSON_TYPE_UTF8) {
        return ms_set_error(error, c->not_string,
                            "%s requires 'field' to evaluate to type String, but got %s", c->name,
                            ms__type_name(lit.value_type));
    }
    *name = lit.value.v_utf8.str;
    return true;
}

/* {field, input[, value]}; $getField also takes a bare field (input: $$CURRENT). */
static bool
parse_args(const field_op_codes_t *c, const char *op, const bson_value_t *arg, field_args_t *a,
           bson_error_t *error)
{
    bson_iter_t it;
    memset(a, 0, sizeof *a);
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        if (c == &set_codes) {
            return ms_set_error(error, MS_ERR_LOCATION4161100,
                                "%s only supports an object as its argument", c->name);
        }
        a->field = *arg;
        a->has_field = a->has_input = true;
        return true;
    }
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (c == &get_codes && !a->has_field && !a->has_input && k[0] == '$') {
            a->field = *arg; /* {$getField: {$literal: "a.b"}} */
            a->has_field = a->has_input = true;
            return true;
        } else if (strcmp(k, "field") == 0) {
            a->field = *bson_iter_value(&it);
            a->has_field = true;
        } else if (strcmp(k, "input") == 0) {
            a->input = *bson_iter_value(&it);
            a->has_input = true;
        } else if (strcmp(k, "value") == 0 && strcmp(op, "$setField") == 0) {
            a->value = *bson_iter_value(&it);
            a->has_value = true;
        } else {
            return ms_set_error(error, c->unknown_arg, "%s found an unknown argument: %s", c->name,
                                k);
        }
    }
    if (!a->has_field) {
        return ms_set_error(error, c->no_field, "%s requires 'field' to be specified", c->name);
    }
    if (c->no_value && strcmp(op, "$setField") == 0 && !a->has_value) {
        return ms_set_error(error, c->no_value, "%s requires 'value' to be specified", c->name);
    }
    if (!a->has_input) {
        return ms_set_error(error, c->no_input, "%s requires 'input' to be specified", c->name);
    }
    return true;
}

static const field_op_codes_t *
codes_of(const char *op)
{
    return strcmp(op, "$getField") == 0 ? &get_codes : &set_codes;
}

bool
ms__op_field_check(const char *name, const bson_value_t *arg, bson_error_t *error)
{
    field_args_t a;
    const char *field;
    const field_op_codes_t *c = codes_of(name);
    return parse_args(c, name, arg, &a, error) && field_name(c, &a.field, &field, error);
}

static bool
eval_input(const ms_expr_ev_t *ev, const field_op_codes_t *c, const field_args_t *a,
           bson_value_t *input, bson_error_t *error)
{
    if (!a->input.value_type) {
        bson_value_t cur = {.value_type = BSON_TYPE_UTF8};
        cur.value.v_utf8.str = (char *)"$$CURRENT";
        cur.value.v_utf8.len = 9;
        return ms__expr_eval_in(ev, &cur, input, error);
    }
    if (!ms__expr_eval_in(ev, &a->input, input, error)) {
        return false;
    }
    if (!nullish(input) && input->value_type != BSON_TYPE_DOCUMENT) {
        ms_set_error(error, c->input_not_object,
                     "%s requires 'input' to evaluate to type Object, but got %s", c->name,
                     ms__type_name(input->value_type));
        bson_value_destroy(input);
        set_missing(input);
        return false;
    }
    return true;
}

bool
ms__op_get_field(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
                 bson_value_t *out, bson_error_t *error)
{
    field_args_t a;
    const char *field;
    bson_value_t input, v;
    if (!parse_args(&get_codes, name, arg, &a, error) ||
        !field_name(&get_codes, &a.field, &field, error) ||
        !eval_input(ev, &get_codes, &a, &input, error)) {
        return false;
    }
    if (nullish(&input)) {
        set_null(out);
    } else if (ms__find_field(input.value.v_doc.data, input.value.v_doc.data_len, field,
                              strlen(field), &v)) {
        bson_value_copy(&v, out);
    }
    bson_value_destroy(&input);
    return true;
}

bool
ms__op_set_field(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg,
                 bson_value_t *out, bson_error_t *error)
{
    field_args_t a;
    const char *field;
    bson_value_t input, value;
    set_missing(&value);
    if (!parse_args(&set_codes, name, arg, &a, error) ||
        !field_name(&set_codes, &a.field, &field, error) ||
        !eval_input(ev, &set_codes, &a, &input, error)) {
        return false;
    }
    if (nullish(&input)) {
        bson_value_destroy(&input);
        set_null(out);
        return true;
    }
    if (a.has_value && !ms__expr_eval_in(ev, &a.value, &value, error)) {
        bson_value_destroy(&input);
        return false;
    }
    ms_node_t *doc = ms__node_from_value(&input);
    if (value.value_type == BSON_TYPE_EOD) { /* $$REMOVE, a missing path, or $unsetField */
        long i = ms__node_find(doc, field, strlen(field));
        if (i >= 0) {
            ms__node_remove_at(doc, (size_t)i);
        }
    } else {
        ms__node_put(doc, field, strlen(field), ms__node_from_value(&value));
    }
    ms__node_to_value(doc, out);
    ms__node_destroy(doc);
    bson_value_destroy(&value);
    bson_value_destroy(&input);
    return true;
}

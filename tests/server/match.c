/*
 * mongoq-test-server: query filters. A filter is compiled once into a tree of logical nodes and
 * leaves (path + operator); matching walks the document's raw BSON with MongoDB's array rules:
 * a path reaching an array matches when the whole array or any element matches, dotted paths
 * descend into arrays of documents, and negations ($ne, $nin, $not, $nor) negate that whole
 * "any" so {a: {$ne: 5}} rejects {a: [5, 6]}.
 *
 * Operators are tables: top_ops[] here, the top-level ones ($and, $expr, ...); query_ops[] in
 * match_ops.c, the field operators ({a: {$gt: 1}}), each row naming its parser, its leaf's test
 * of one value and its flags.
 */
#include "match-private.h"

#include <string.h>

struct ms_matcher_t {
    ms_qnode_t *root;
    bool value_mode; /* leaves apply to a value rather than to fields of a document */
};

/* ---- construction ---------------------------------------------------------------------- */

ms_qnode_t *
ms__qnode_new(ms_qkind_t kind)
{
    ms_qnode_t *n = bson_malloc0(sizeof *n);
    n->kind = kind;
    return n;
}

void
ms__qnode_destroy(ms_qnode_t *n)
{
    if (!n) {
        return;
    }
    for (size_t i = 0; i < n->nkids; i++) {
        ms__qnode_destroy(n->kids[i]);
    }
    bson_free(n->kids);
    ms__path_destroy(&n->path);
    ms__qitem_destroy(&n->arg);
    for (size_t i = 0; i < n->nlist; i++) {
        ms__qitem_destroy(&n->list[i]);
    }
    bson_free(n->list);
    bson_free(n->types);
    ms__qnode_destroy(n->sub);
    bson_value_destroy(&n->expr);
    bson_free(n);
}

void
ms__qnode_add(ms_qnode_t *parent, ms_qnode_t *kid)
{
    parent->kids = bson_realloc(parent->kids, (parent->nkids + 1) * sizeof *parent->kids);
    parent->kids[parent->nkids++] = kid;
}

ms_qnode_t *
ms__qnode_not(ms_qnode_t *kid)
{
    ms_qnode_t *n = ms__qnode_new(N_NOT);
    ms__qnode_add(n, kid);
    return n;
}

/* A leaf testing path with op's match function. */
ms_qnode_t *
ms__qleaf_new(const char *path, const ms_query_op_t *op, bson_error_t *error)
{
    ms_qnode_t *n = ms__qnode_new(N_LEAF);
    n->op = op;
    if (path && !ms__path_init(&n->path, path)) {
        ms__qnode_destroy(n);
        ms_set_error(error, MS_ERR_BAD_VALUE, "FieldPath must not contain empty field names: '%s'",
                     path);
        return NULL;
    }
    return n;
}

bool
ms__is_operator_doc(const bson_value_t *v)
{
    bson_iter_t it;
    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_next(&it)) {
        return false;
    }
    return bson_iter_key(&it)[0] == '$';
}

/* ---- filters ----------------------------------------------------------------------------- */

/* {$gt: 1, $lt: 5} applied to path (NULL path: to the value itself). */
ms_qnode_t *
ms__qparse_value_ops(const char *path, const bson_value_t *ops, bson_error_t *error)
{
    bson_iter_t it;
    bool regex_done = false;
    ms_qnode_t *and = ms__qnode_new(N_AND);
    bson_iter_init_from_data(&it, ops->value.v_doc.data, ops->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        ms_query_args_t a = {path, ms__query_op(bson_iter_key(&it)), bson_iter_value(&it), ops,
                       &regex_done};
        ms_qnode_t *kid = NULL;
        if (!a.op) {
            ms_set_error(error, MS_ERR_BAD_VALUE, "unknown operator: %s", bson_iter_key(&it));
        } else if ((kid = a.op->parse(&a, error)) && (a.op->flags & QOP_NEGATED)) {
            kid = ms__qnode_not(kid);
        }
        if (!kid) {
            ms__qnode_destroy(and);
            return NULL;
        }
        ms__qnode_add(and, kid);
    }
    return and;
}

static ms_qnode_t *
parse_field(const char *path, const bson_value_t *v, bson_error_t *error)
{
    if (ms__is_operator_doc(v)) {
        return ms__qparse_value_ops(path, v, error);
    }
    const char *op = v->value_type == BSON_TYPE_REGEX ? "$regex" : "$eq";
    return ms__qleaf_with_arg(path, ms__query_op(op), v, error);
}

/* A top-level operator: {$and: [...]}, {$expr: ...}. */
typedef struct top_op_t {
    const char *name;
    ms_qnode_t *(*parse)(const struct top_op_t *op, const bson_value_t *arg, bson_error_t *error);
    ms_qkind_t kind; /* the node it makes */
} top_op_t;

static ms_qnode_t *
parse_logical(const top_op_t *op, const bson_value_t *arg, bson_error_t *error)
{
    bson_iter_t it;
    if (arg->value_type != BSON_TYPE_ARRAY) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "%s must be an array", op->name);
        return NULL;
    }
    if (arg->value.v_doc.data_len <= 5) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$and/$or/$nor must be a nonempty array");
        return NULL;
    }
    ms_qnode_t *n = ms__qnode_new(op->kind);
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        bson_t sub;
        ms_qnode_t *kid;
        if (v->value_type != BSON_TYPE_DOCUMENT) {
            ms_set_error(error, MS_ERR_BAD_VALUE, "$or/$and/$nor entries need to be full objects");
            ms__qnode_destroy(n);
            return NULL;
        }
        bson_init_static(&sub, v->value.v_doc.data, v->value.v_doc.data_len);
        kid = ms__qparse_filter(&sub, error);
        if (!kid) {
            ms__qnode_destroy(n);
            return NULL;
        }
        ms__qnode_add(n, kid);
    }
    return n;
}

static ms_qnode_t *
parse_expr(const top_op_t *op, const bson_value_t *arg, bson_error_t *error)
{
    if (!ms__expr_validate(arg, error)) {
        return NULL;
    }
    ms_qnode_t *n = ms__qnode_new(op->kind);
    bson_value_copy(arg, &n->expr);
    return n;
}

/* $comment, $alwaysTrue, $alwaysFalse: the argument does not matter. */
static ms_qnode_t *
parse_constant(const top_op_t *op, const bson_value_t *arg, bson_error_t *error)
{
    (void)arg;
    (void)error;
    return ms__qnode_new(op->kind);
}

static ms_qnode_t *
refuse_top_op(const top_op_t *op, const bson_value_t *arg, bson_error_t *error)
{
    (void)arg;
    ms_set_error(error, MS_ERR_BAD_VALUE, "%s is not supported by the test server", op->name);
    return NULL;
}

static const top_op_t top_ops[] = {
    {"$and", parse_logical, N_AND},
    {"$or", parse_logical, N_OR},
    {"$nor", parse_logical, N_NOR},
    {"$expr", parse_expr, N_EXPR},
    {"$comment", parse_constant, N_TRUE},
    {"$alwaysTrue", parse_constant, N_TRUE},
    {"$alwaysFalse", parse_constant, N_FALSE},
    {"$where", refuse_top_op, N_FALSE},
    {"$text", refuse_top_op, N_FALSE},
    {"$jsonSchema", refuse_top_op, N_FALSE},
};

static ms_qnode_t *
parse_top_operator(const char *name, const bson_value_t *arg, bson_error_t *error)
{
    for (size_t i = 0; i < sizeof top_ops / sizeof top_ops[0]; i++) {
        if (strcmp(top_ops[i].name, name) == 0) {
            return top_ops[i].parse(&top_ops[i], arg, error);
        }
    }
    ms_set_error(error, MS_ERR_BAD_VALUE,
                 "unknown top level operator: %s. If you have a field name that starts with a "
                 "'$' symbol, consider using $getField or $setField.",
                 name);
    return NULL;
}

ms_qnode_t *
ms__qparse_filter(const bson_t *filter, bson_error_t *error)
{
    bson_iter_t it;
    ms_qnode_t *and = ms__qnode_new(N_AND);
    if (!bson_iter_init(&it, filter)) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "invalid BSON in filter");
        ms__qnode_destroy(and);
        return NULL;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        ms_qnode_t *kid = key[0] == '$' ? parse_top_operator(key, bson_iter_value(&it), error)
                                    : parse_field(key, bson_iter_value(&it), error);
        if (!kid) {
            ms__qnode_destroy(and);
            return NULL;
        }
        ms__qnode_add(and, kid);
    }
    return and;
}

/* True when no document or array inside data nests deeper than limit (bounded recursion). */
static bool
depth_ok(const uint8_t *data, uint32_t len, int limit)
{
    bson_iter_t it;
    if (limit <= 0) {
        return false;
    }
    if (!bson_iter_init_from_data(&it, data, len)) {
        return true;
    }
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        if ((v->value_type == BSON_TYPE_DOCUMENT || v->value_type == BSON_TYPE_ARRAY) &&
            !depth_ok(v->value.v_doc.data, v->value.v_doc.data_len, limit - 1)) {
            return false;
        }
    }
    return true;
}

ms_matcher_t *
ms_matcher_new(const bson_t *filter, bson_error_t *error)
{
    if (!depth_ok(bson_get_data(filter), filter->len, 100)) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "exceeded maximum query tree depth of 100");
        return NULL;
    }
    ms_qnode_t *root = ms__qparse_filter(filter, error);
    if (!root) {
        return NULL;
    }
    ms_matcher_t *m = bson_malloc0(sizeof *m);
    m->root = root;
    return m;
}

ms_matcher_t *
ms__matcher_new_value(const bson_value_t *cond, bson_error_t *error)
{
    ms_qnode_t *root = ms__is_operator_doc(cond) ? ms__qparse_value_ops(NULL, cond, error)
                                              : parse_field(NULL, cond, error);
    if (!root) {
        return NULL;
    }
    ms_matcher_t *m = bson_malloc0(sizeof *m);
    m->root = root;
    m->value_mode = true;
    return m;
}

void
ms_matcher_destroy(ms_matcher_t *m)
{
    if (m) {
        ms__qnode_destroy(m->root);
        bson_free(m);
    }
}

/* ---- matching -------------------------------------------------------------------------- */

/* The operator on one candidate value; v NULL means the path is missing. */
static bool
pred(const ms_qnode_t *n, const bson_value_t *v)
{
    return n->op->match(n, v);
}

/* Operators that see an array's elements as well as the array itself. */
static bool
expands_arrays(const ms_query_op_t *op)
{
    return !(op->flags & QOP_WHOLE_ARRAY);
}

static bool walk_value(const ms_qnode_t *n, const bson_value_t *v, size_t depth);

static bool
walk_doc(const ms_qnode_t *n, const bson_value_t *doc, size_t depth)
{
    bson_value_t v;
    const char *key = n->path.parts[depth];
    if (!ms__find_field(doc->value.v_doc.data, doc->value.v_doc.data_len, key, strlen(key), &v)) {
        return pred(n, NULL);
    }
    return walk_value(n, &v, depth + 1);
}

static bool
walk_array_path(const ms_qnode_t *n, const bson_value_t *arr, size_t depth)
{
    bson_iter_t it;
    uint32_t idx;
    const char *key = n->path.parts[depth];
    if (ms__is_index(key, strlen(key), &idx)) {
        bson_value_t e;
        if (ms__find_field(arr->value.v_doc.data, arr->value.v_doc.data_len, key, strlen(key),
                           &e) &&
            walk_value(n, &e, depth + 1)) {
            return true;
        }
    }
    bson_iter_init_from_data(&it, arr->value.v_doc.data, arr->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *e = bson_iter_value(&it);
        if (e->value_type == BSON_TYPE_DOCUMENT && walk_doc(n, e, depth)) {
            return true;
        }
    }
    return false;
}

/* v is the value found at path.parts[depth - 1] (or the root value when depth is 0). */
static bool
walk_value(const ms_qnode_t *n, const bson_value_t *v, size_t depth)
{
    if (depth == n->path.n) {
        if (v->value_type == BSON_TYPE_ARRAY && expands_arrays(n->op)) {
            bson_iter_t it;
            if (pred(n, v)) {
                return true;
            }
            bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
            while (bson_iter_next(&it)) {
                if (pred(n, bson_iter_value(&it))) {
                    return true;
                }
            }
            return false;
        }
        return pred(n, v);
    }
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        return walk_doc(n, v, depth);
    }
    if (v->value_type == BSON_TYPE_ARRAY) {
        return walk_array_path(n, v, depth);
    }
    return pred(n, NULL);
}

/* mongod fails the command at the first document whose $expr errors (expression_expr.cpp). */
static bool
match_expr(const ms_qnode_t *n, const bson_value_t *root, const ms_ctx_t *ctx, bool *yes,
           bson_error_t *error)
{
    static const ms_ctx_t zero_ctx = {0};
    bson_t doc;
    bson_value_t out;
    *yes = false;
    if (root->value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&doc, root->value.v_doc.data, root->value.v_doc.data_len)) {
        return true;
    }
    if (!ms__expr_eval(&n->expr, &doc, &doc, ctx ? ctx : &zero_ctx, &out, error)) {
        return false;
    }
    *yes = ms__value_truthy(&out);
    bson_value_destroy(&out);
    return true;
}

/* The logical nodes over $expr; false (error filled) when an expression fails. */
static bool
qmatch(const ms_qnode_t *n, const bson_value_t *root, const ms_ctx_t *ctx, bool *yes,
       bson_error_t *error)
{
    bool kid = false;
    switch (n->kind) {
    case N_AND:
    case N_OR:
    case N_NOR:
        for (size_t i = 0; i < n->nkids; i++) {
            if (!qmatch(n->kids[i], root, ctx, &kid, error)) {
                return false;
            }
            if (kid != (n->kind == N_AND)) {
                *yes = n->kind == N_OR;
                return true;
            }
        }
        *yes = n->kind != N_OR;
        return true;
    case N_NOT:
        if (!qmatch(n->kids[0], root, ctx, &kid, error)) {
            return false;
        }
        *yes = !kid;
        return true;
    case N_EXPR:
        return match_expr(n, root, ctx, yes, error);
    default:
        *yes = ms__qmatch_node(n, root, ctx);
        return true;
    }
}

bool
ms__qmatch_node(const ms_qnode_t *n, const bson_value_t *root, const ms_ctx_t *ctx)
{
    switch (n->kind) {
    case N_AND:
        for (size_t i = 0; i < n->nkids; i++) {
            if (!ms__qmatch_node(n->kids[i], root, ctx)) {
                return false;
            }
        }
        return true;
    case N_OR:
    case N_NOR:
        for (size_t i = 0; i < n->nkids; i++) {
            if (ms__qmatch_node(n->kids[i], root, ctx)) {
                return n->kind == N_OR;
            }
        }
        return n->kind == N_NOR;
    case N_NOT:
        return !ms__qmatch_node(n->kids[0], root, ctx);
    case N_EXPR: {
        /* only at the top level, which goes through qmatch; $elemMatch refuses $expr */
        bool yes = false;
        return match_expr(n, root, ctx, &yes, NULL) && yes;
    }
    case N_TRUE:
        return true;
    case N_FALSE:
        return false;
    case N_LEAF:
        if (n->path.n == 0) {
            return walk_value(n, root, 0);
        }
        if (root->value_type != BSON_TYPE_DOCUMENT) {
            return pred(n, NULL);
        }
        return walk_doc(n, root, 0);
    }
    return false;
}

bool
ms_matcher_test(const ms_matcher_t *m, const bson_t *doc, const ms_ctx_t *ctx, bool *yes,
                bson_error_t *error)
{
    bson_value_t root = {.value_type = BSON_TYPE_DOCUMENT};
    root.value.v_doc.data = (uint8_t *)bson_get_data(doc);
    root.value.v_doc.data_len = doc->len;
    return qmatch(m->root, &root, ctx, yes, error);
}

bool
ms_matcher_matches(const ms_matcher_t *m, const bson_t *doc, const ms_ctx_t *ctx)
{
    bool yes = false;
    return ms_matcher_test(m, doc, ctx, &yes, NULL) && yes;
}

bool
ms__matcher_matches_value(const ms_matcher_t *m, const bson_value_t *v, const ms_ctx_t *ctx)
{
    return ms__qmatch_node(m->root, v, ctx);
}

bool
ms__matcher_is_value(const ms_matcher_t *m)
{
    return m->value_mode;
}

static bool
check_vars(const ms_qnode_t *n, const bson_t *let, bson_error_t *error)
{
    if (n->kind == N_EXPR) {
        return ms__expr_check_vars(&n->expr, let, error);
    }
    if (n->kind == N_AND || n->kind == N_OR || n->kind == N_NOR || n->kind == N_NOT) {
        for (size_t i = 0; i < n->nkids; i++) {
            if (!check_vars(n->kids[i], let, error)) {
                return false;
            }
        }
    }
    return true;
}

bool
ms__matcher_check_vars(const ms_matcher_t *m, const ms_ctx_t *ctx, bson_error_t *error)
{
    return check_vars(m->root, ctx ? ctx->let : NULL, error);
}

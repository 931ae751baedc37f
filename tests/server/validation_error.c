/*
 * The details of a DocumentValidationFailure, as mongod 6.0 builds them
 * (src/mongo/db/matcher/doc_validation_error.cpp, shapes as in doc_validation_error_test.cpp):
 * the validator is read as mongod's parser builds its tree (a document is an implicit $and of
 * its clauses, collapsed when there is one; a field with n operators is n clauses), then walked
 * from the root, which failed:
 *  - a leaf reports {operatorName, specifiedAs: {path: {op: value}}, reason, consideredValue(s)}
 *    ("comparison failed", "field was missing", "type did not match", ...);
 *  - $and reports the clauses that failed ({index, details} in clausesNotSatisfied), $or all of
 *    them, $nor the ones that matched (clausesSatisfied), $not its operand's error as details;
 *  - under a negation reasons are inverted ("comparison succeeded"); $ne, $nin and
 *    $exists: false are negations reported under their own name;
 *  - $expr reports expressionResult.
 * Whether a sub-expression matches is decided by the server's own matcher on a filter built for
 * it. Considered values are capped at 10, as internalQueryMaxDocValidationErrorConsideredValues.
 */
#include "store-private.h"

#include <string.h>

#define MAX_CONSIDERED 10

typedef enum { N_LEAF, N_AND, N_OR, N_NOR, N_NOT, N_EXPR } kind_t;

typedef enum { L_CMP, L_IN, L_EXISTS, L_TYPE, L_REGEX, L_SIZE, L_ALL, L_ELEM, L_MOD, L_OTHER } leaf_t;

typedef struct node_t {
    kind_t kind;
    char *tag;        /* operatorName */
    bson_t *filter;   /* a filter equivalent to this node alone (also specifiedAs of leaves) */
    char *path;       /* leaves */
    leaf_t leaf;
    bool negated;     /* $ne, $nin, $exists: false */
    struct node_t **kids;
    size_t nkids;
} node_t;

typedef struct {
    const bson_t *doc;
    const ms_ctx_t *ctx;
} gen_t;

static node_t *parse_doc(const bson_t *doc);

/* ---- the tree ------------------------------------------------------------------------------ */

static node_t *
node_new(kind_t kind, const char *tag, bson_t *filter)
{
    node_t *n = bson_malloc0(sizeof *n);
    n->kind = kind;
    n->tag = bson_strdup(tag);
    n->filter = filter;
    return n;
}

static void
node_add(node_t *n, node_t *kid)
{
    n->kids = bson_realloc(n->kids, sizeof *n->kids * (n->nkids + 1));
    n->kids[n->nkids++] = kid;
}

static void
node_free(node_t *n)
{
    if (!n) {
        return;
    }
    for (size_t i = 0; i < n->nkids; i++) {
        node_free(n->kids[i]);
    }
    bson_free(n->kids);
    bson_free(n->tag);
    bson_free(n->path);
    if (n->filter) {
        bson_destroy(n->filter);
    }
    bson_free(n);
}

/* {path: value} */
static bson_t *
path_filter(const char *path, const bson_value_t *v)
{
    bson_t *f = bson_new();
    bson_append_value(f, path, -1, v);
    return f;
}

/* {path: {op: value}} (with $options beside $regex) */
static bson_t *
op_filter(const char *path, const char *op, const bson_value_t *v, const bson_value_t *options)
{
    bson_t *f = bson_new(), inner;
    bson_append_document_begin(f, path, -1, &inner);
    bson_append_value(&inner, op, -1, v);
    if (options) {
        bson_append_value(&inner, "$options", -1, options);
    }
    bson_append_document_end(f, &inner);
    return f;
}

static leaf_t
leaf_of(const char *op)
{
    static const struct {
        const char *op;
        leaf_t leaf;
    } table[] = {{"$eq", L_CMP},     {"$ne", L_CMP},     {"$gt", L_CMP},      {"$gte", L_CMP},
                 {"$lt", L_CMP},     {"$lte", L_CMP},    {"$in", L_IN},       {"$nin", L_IN},
                 {"$exists", L_EXISTS}, {"$type", L_TYPE}, {"$regex", L_REGEX}, {"$size", L_SIZE},
                 {"$all", L_ALL},    {"$elemMatch", L_ELEM}, {"$mod", L_MOD}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(table[i].op, op) == 0) {
            return table[i].leaf;
        }
    }
    return L_OTHER;
}

static node_t *
leaf_new(const char *path, const char *op, bson_t *filter, const bson_value_t *v)
{
    node_t *n = node_new(N_LEAF, op, filter);
    n->path = bson_strdup(path);
    n->leaf = leaf_of(op);
    n->negated = strcmp(op, "$ne") == 0 || strcmp(op, "$nin") == 0 ||
                 (strcmp(op, "$exists") == 0 && v && !ms_true_value(v));
    return n;
}

/* The operand of $not: one operator is that leaf, several an $and of them (parseNot). */
static node_t *
parse_not(const char *path, const bson_value_t *v)
{
    bson_iter_t it;
    node_t *not = node_new(N_NOT, "$not", op_filter(path, "$not", v, NULL));
    if (v->value_type == BSON_TYPE_REGEX) {
        node_add(not, leaf_new(path, "$regex", path_filter(path, v), NULL));
        return not;
    }
    node_t *and = node_new(N_AND, "$and", path_filter(path, v));
    if (v->value_type == BSON_TYPE_DOCUMENT &&
        bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
        while (bson_iter_next(&it)) {
            const char *op = bson_iter_key(&it);
            node_add(and, leaf_new(path, op, op_filter(path, op, bson_iter_value(&it), NULL),
                                   bson_iter_value(&it)));
        }
    }
    if (and->nkids == 1) {
        node_add(not, and->kids[0]);
        and->nkids = 0;
        node_free(and);
    } else {
        node_add(not, and);
    }
    return not;
}

/* The nodes one clause (key: value) of a filter document makes, appended to parent. */
static void
parse_clause(node_t *parent, const char *key, const bson_value_t *v)
{
    bson_iter_t it, opt;
    if (strcmp(key, "$comment") == 0) {
        return;
    }
    if (strcmp(key, "$and") == 0 || strcmp(key, "$or") == 0 || strcmp(key, "$nor") == 0) {
        kind_t kind = key[1] == 'a' ? N_AND : key[1] == 'o' ? N_OR : N_NOR;
        node_t *n = node_new(kind, key, path_filter(key, v));
        if (v->value_type == BSON_TYPE_ARRAY &&
            bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
            while (bson_iter_next(&it)) {
                bson_t sub;
                const bson_value_t *e = bson_iter_value(&it);
                if (e->value_type == BSON_TYPE_DOCUMENT &&
                    bson_init_static(&sub, e->value.v_doc.data, e->value.v_doc.data_len)) {
                    node_add(n, parse_doc(&sub));
                }
            }
        }
        node_add(parent, n);
        return;
    }
    if (key[0] == '$') {
        node_add(parent, node_new(strcmp(key, "$expr") == 0 ? N_EXPR : N_LEAF, key,
                                  path_filter(key, v)));
        return;
    }
    if (v->value_type == BSON_TYPE_REGEX) {
        node_add(parent, leaf_new(key, "$regex", path_filter(key, v), NULL));
        return;
    }
    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_next(&it) || bson_iter_key(&it)[0] != '$') {
        node_add(parent, leaf_new(key, "$eq", path_filter(key, v), NULL));
        return;
    }
    do {
        const char *op = bson_iter_key(&it);
        const bson_value_t *options = NULL;
        if (strcmp(op, "$options") == 0) {
            continue;
        }
        if (strcmp(op, "$not") == 0) {
            node_add(parent, parse_not(key, bson_iter_value(&it)));
            continue;
        }
        if (strcmp(op, "$regex") == 0 &&
            bson_iter_init_from_data(&opt, v->value.v_doc.data, v->value.v_doc.data_len) &&
            bson_iter_find(&opt, "$options")) {
            options = bson_iter_value(&opt);
        }
        node_add(parent, leaf_new(key, op, op_filter(key, op, bson_iter_value(&it), options),
                                  bson_iter_value(&it)));
    } while (bson_iter_next(&it));
}

/* A filter document: its one node, or an implicit $and of its nodes. */
static node_t *
parse_doc(const bson_t *doc)
{
    bson_iter_t it;
    node_t *and = node_new(N_AND, "$and", bson_copy(doc));
    if (bson_iter_init(&it, doc)) {
        while (bson_iter_next(&it)) {
            parse_clause(and, bson_iter_key(&it), bson_iter_value(&it));
        }
    }
    if (and->nkids != 1) {
        return and;
    }
    node_t *only = and->kids[0];
    and->nkids = 0;
    node_free(and);
    return only;
}

/* ---- matching ------------------------------------------------------------------------------- */

static bool
matches(const gen_t *g, const node_t *n)
{
    ms_matcher_t *m = ms_matcher_new(n->filter, NULL);
    bool ok = m && ms_matcher_matches(m, g->doc, g->ctx);
    ms_matcher_destroy(m);
    return ok;
}

/* ---- considered values ------------------------------------------------------------------- */

typedef struct {
    bson_t arr;
    uint32_t n;
    bool truncated;
    bool found; /* the path exists (even when it gave no value, e.g. an empty array) */
} values_t;

static void
values_push(values_t *vs, const bson_value_t *v)
{
    char key[16];
    const char *k;
    if (vs->n >= MAX_CONSIDERED) {
        vs->truncated = true;
        return;
    }
    size_t klen = bson_uint32_to_string(vs->n++, &k, key, sizeof key);
    bson_append_value(&vs->arr, k, (int)klen, v);
}

/*
 * ElementPath over doc: arrays on the way are walked into their documents; at the end an array
 * gives its elements (kTraverseOmitArray) or itself (kNoTraversal, omit false).
 */
static void
collect(const uint8_t *data, uint32_t len, const char *path, bool omit_array, values_t *vs)
{
    bson_iter_t it, el;
    const char *dot = strchr(path, '.');
    size_t clen = dot ? (size_t)(dot - path) : strlen(path);
    if (!bson_iter_init_from_data(&it, data, len) || !bson_iter_find_w_len(&it, path, (int)clen)) {
        return;
    }
    if (!dot) {
        vs->found = true;
        if (omit_array && BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &el)) {
            while (bson_iter_next(&el)) {
                values_push(vs, bson_iter_value(&el));
            }
        } else {
            values_push(vs, bson_iter_value(&it));
        }
        return;
    }
    const bson_value_t *v = bson_iter_value(&it);
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        collect(v->value.v_doc.data, v->value.v_doc.data_len, dot + 1, omit_array, vs);
    } else if (v->value_type == BSON_TYPE_ARRAY && bson_iter_recurse(&it, &el)) {
        while (bson_iter_next(&el)) {
            const bson_value_t *e = bson_iter_value(&el);
            if (e->value_type == BSON_TYPE_DOCUMENT) {
                collect(e->value.v_doc.data, e->value.v_doc.data_len, dot + 1, omit_array, vs);
            }
        }
    }
}

/* consideredValue (one) or consideredValues, and consideredValuesTruncated. */
static void
append_considered(bson_t *out, values_t *vs)
{
    bson_iter_t it;
    if (vs->n == 1 && !vs->truncated && bson_iter_init(&it, &vs->arr) && bson_iter_next(&it)) {
        bson_append_iter(out, "consideredValue", -1, &it);
    } else {
        BSON_APPEND_ARRAY(out, "consideredValues", &vs->arr);
    }
    if (vs->truncated) {
        BSON_APPEND_BOOL(out, "consideredValuesTruncated", true);
    }
}

/* consideredType or consideredTypes (a sorted set of names). */
static void
append_types(bson_t *out, values_t *vs, const char *field_one, const char *field_many)
{
    const char *names[MAX_CONSIDERED];
    size_t n = 0;
    bson_iter_t it;
    bson_iter_init(&it, &vs->arr);
    while (bson_iter_next(&it)) {
        const char *t = ms_type_name(bson_iter_type(&it));
        size_t i = 0;
        while (i < n && strcmp(names[i], t) < 0) {
            i++;
        }
        if (i < n && strcmp(names[i], t) == 0) {
            continue;
        }
        memmove(&names[i + 1], &names[i], sizeof *names * (n - i));
        names[i] = t;
        n++;
    }
    if (n == 1) {
        BSON_APPEND_UTF8(out, field_one, names[0]);
    } else if (n > 1) {
        bson_t arr;
        BSON_APPEND_ARRAY_BEGIN(out, field_many, &arr);
        for (size_t i = 0; i < n; i++) {
            char key[16];
            const char *k;
            bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
            BSON_APPEND_UTF8(&arr, k, names[i]);
        }
        bson_append_array_end(out, &arr);
    }
}

/* ---- leaves -------------------------------------------------------------------------------- */

typedef struct {
    const char *normal;
    const char *inverted;
    const char *const *expected; /* expected type names, sorted; NULL: any type */
    bool omit_array;             /* kTraverseOmitArray, else kNoTraversal */
} leaf_rule_t;

static const char *const numbers[] = {"decimal", "double", "int", "long", NULL};
static const char *const strings[] = {"regex", "string", "symbol", NULL};
static const char *const arrays[] = {"array", NULL};

static leaf_rule_t
rule_of(leaf_t leaf)
{
    switch (leaf) {
    case L_CMP:
        return (leaf_rule_t){"comparison failed", "comparison succeeded", NULL, true};
    case L_IN:
        return (leaf_rule_t){"no matching value found in array", "matching value found in array",
                             NULL, true};
    case L_REGEX:
        return (leaf_rule_t){"regular expression did not match", "regular expression did match",
                             strings, true};
    case L_SIZE:
        return (leaf_rule_t){"array length was not equal to given size",
                             "array length was equal to given size", arrays, false};
    case L_ALL:
        return (leaf_rule_t){"array did not contain all specified values",
                             "array did contain all specified values", NULL, false};
    case L_ELEM:
        return (leaf_rule_t){"array did not satisfy the child predicate",
                             "array did satisfy the child predicate", arrays, false};
    case L_MOD:
        return (leaf_rule_t){"$mod did not evaluate to expected remainder",
                             "$mod did evaluate to expected remainder", numbers, true};
    default:
        return (leaf_rule_t){"expression did not match", "expression did match", NULL, true};
    }
}

/* Whether some considered value has one of the expected types (appendTypeMismatch). */
static bool
type_expected(values_t *vs, const char *const *expected)
{
    bson_iter_t it;
    bson_iter_init(&it, &vs->arr);
    while (bson_iter_next(&it)) {
        for (int i = 0; expected[i]; i++) {
            if (strcmp(expected[i], ms_type_name(bson_iter_type(&it))) == 0) {
                return true;
            }
        }
    }
    return false;
}

static void
append_expected(bson_t *out, const char *const *expected)
{
    if (!expected[1]) {
        BSON_APPEND_UTF8(out, "expectedType", expected[0]);
        return;
    }
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(out, "expectedTypes", &arr);
    for (uint32_t i = 0; expected[i]; i++) {
        char key[16];
        const char *k;
        bson_uint32_to_string(i, &k, key, sizeof key);
        BSON_APPEND_UTF8(&arr, k, expected[i]);
    }
    bson_append_array_end(out, &arr);
}

/* generatePathError / generateTypeError / the $exists visitor for one leaf. */
static void
leaf_error(const gen_t *g, const node_t *n, bool inverted, bson_t *out)
{
    values_t vs = {.n = 0};
    BSON_APPEND_UTF8(out, "operatorName", n->tag);
    BSON_APPEND_DOCUMENT(out, "specifiedAs", n->filter);
    if (n->leaf == L_EXISTS) {
        BSON_APPEND_UTF8(out, "reason", inverted ? "path does exist" : "path does not exist");
        return;
    }
    leaf_rule_t rule = rule_of(n->leaf);
    bson_init(&vs.arr);
    collect(bson_get_data(g->doc), g->doc->len, n->path, rule.omit_array || n->leaf == L_TYPE,
            &vs);
    bool present = vs.found;
    if (!present) {
        BSON_APPEND_UTF8(out, "reason", "field was missing");
    } else if (n->leaf == L_TYPE) {
        BSON_APPEND_UTF8(out, "reason", inverted ? "type did match" : "type did not match");
        append_considered(out, &vs);
        append_types(out, &vs, "consideredType", "consideredTypes");
    } else if (rule.expected && !type_expected(&vs, rule.expected)) {
        BSON_APPEND_UTF8(out, "reason", "type did not match");
        append_types(out, &vs, "consideredType", "consideredTypes");
        append_expected(out, rule.expected);
        append_considered(out, &vs);
    } else {
        BSON_APPEND_UTF8(out, "reason", inverted ? rule.inverted : rule.normal);
        append_considered(out, &vs);
    }
    bson_destroy(&vs.arr);
}

static void
expr_error(const gen_t *g, const node_t *n, bool inverted, bson_t *out)
{
    bson_iter_t it;
    bson_value_t result;
    bool missing = false;
    bson_error_t error;
    BSON_APPEND_UTF8(out, "operatorName", "$expr");
    BSON_APPEND_DOCUMENT(out, "specifiedAs", n->filter);
    if (!bson_iter_init_find(&it, n->filter, "$expr")) {
        return;
    }
    if (!ms_expr_eval(bson_iter_value(&it), g->doc, g->ctx, &result, &missing, &error)) {
        bson_t details;
        BSON_APPEND_UTF8(out, "reason", "failed to evaluate aggregation expression");
        BSON_APPEND_DOCUMENT_BEGIN(out, "details", &details);
        BSON_APPEND_INT32(&details, "code", (int32_t)error.code);
        BSON_APPEND_UTF8(&details, "codeName", ms_code_name((int)error.code));
        BSON_APPEND_UTF8(&details, "errmsg", error.message);
        bson_append_document_end(out, &details);
        return;
    }
    BSON_APPEND_UTF8(out, "reason", inverted ? "expression did match" : "expression did not match");
    if (!missing) {
        BSON_APPEND_VALUE(out, "expressionResult", &result);
    }
    bson_value_destroy(&result);
}

/* ---- the walk ----------------------------------------------------------------------------- */

static void gen(const gen_t *g, const node_t *n, bool inverted, bson_t *out);

/* Logical operators: the children that contribute, as {index, details}, under key. */
static void
list_error(const gen_t *g, const node_t *n, bool kids_inverted, bool only_failing,
           const char *key, bson_t *out)
{
    bson_t arr;
    uint32_t k = 0;
    BSON_APPEND_UTF8(out, "operatorName", n->tag);
    BSON_APPEND_ARRAY_BEGIN(out, key, &arr);
    for (size_t i = 0; i < n->nkids; i++) {
        /* A child contributes when it "fails" in its context: does not match in a normal
         * context, matches in an inverted one. */
        if (only_failing && matches(g, n->kids[i]) != kids_inverted) {
            continue;
        }
        char idx[16];
        const char *ik;
        bson_t entry, details;
        bson_uint32_to_string(k++, &ik, idx, sizeof idx);
        bson_append_document_begin(&arr, ik, -1, &entry);
        BSON_APPEND_INT32(&entry, "index", (int32_t)i); /* appendNumber: an int when it fits */
        BSON_APPEND_DOCUMENT_BEGIN(&entry, "details", &details);
        gen(g, n->kids[i], kids_inverted, &details);
        bson_append_document_end(&entry, &details);
        bson_append_document_end(&arr, &entry);
    }
    bson_append_array_end(out, &arr);
}

static void
gen(const gen_t *g, const node_t *n, bool inverted, bson_t *out)
{
    bson_t details;
    switch (n->kind) {
    case N_LEAF:
        leaf_error(g, n, inverted != n->negated, out);
        return;
    case N_EXPR:
        expr_error(g, n, inverted, out);
        return;
    case N_AND:
        /* failed: the clauses that failed; matched under a negation: all of them */
        list_error(g, n, inverted, !inverted, inverted ? "clausesSatisfied" : "clausesNotSatisfied",
                   out);
        return;
    case N_OR:
        list_error(g, n, inverted, inverted, inverted ? "clausesSatisfied" : "clausesNotSatisfied",
                   out);
        return;
    case N_NOR:
        list_error(g, n, !inverted, !inverted,
                   inverted ? "clausesNotSatisfied" : "clausesSatisfied", out);
        return;
    case N_NOT:
        BSON_APPEND_UTF8(out, "operatorName", "$not");
        BSON_APPEND_DOCUMENT_BEGIN(out, "details", &details);
        if (n->nkids == 1) {
            gen(g, n->kids[0], !inverted, &details);
        }
        bson_append_document_end(out, &details);
        return;
    }
}

void
ms_validation_details(const bson_t *validator, const bson_t *doc, const ms_ctx_t *ctx,
                      bson_t *out)
{
    gen_t g = {doc, ctx};
    node_t *root = parse_doc(validator);
    bson_init(out);
    gen(&g, root, false, out);
    node_free(root);
}

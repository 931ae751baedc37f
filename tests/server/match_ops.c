/*
 * mongoq-test-server: the field operators of query filters ({path: {<op>: arg}}), one row each
 * in query_ops[]: the parser that makes its node, its leaf's test of one candidate value (NULL:
 * the path is missing) and its flags (QOP_*). Behaviour as mongod 6.0's matcher
 * (src/mongo/db/matcher/expression_leaf.cpp): comparisons bracket by type, $in takes regexes,
 * $regex with $options, $elemMatch on values or documents, $all as an $and of equalities.
 */
#include "match-private.h"

#include <math.h>
#include <string.h>

void
ms__qitem_destroy(ms_qitem_t *it)
{
    bson_value_destroy(&it->value);
    if (it->re) {
        regfree(it->re);
        bson_free(it->re);
    }
}

/* Translates the common PCRE escapes to POSIX classes, then compiles. */
static regex_t *
regex_compile(const char *pattern, const char *options, bson_error_t *error)
{
    char *posix = bson_malloc(strlen(pattern) * 12 + 1);
    char *o = posix;
    for (const char *p = pattern; *p; p++) {
        const char *rep = NULL;
        if (p[0] == '\\' && p[1]) {
            switch (p[1]) {
            case 'd': rep = "[0-9]"; break;
            case 'D': rep = "[^0-9]"; break;
            case 'w': rep = "[A-Za-z0-9_]"; break;
            case 'W': rep = "[^A-Za-z0-9_]"; break;
            case 's': rep = "[[:space:]]"; break;
            case 'S': rep = "[^[:space:]]"; break;
            default: break;
            }
        }
        if (rep) {
            strcpy(o, rep);
            o += strlen(rep);
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    int flags = REG_EXTENDED | REG_NOSUB;
    if (strchr(options, 'i')) {
        flags |= REG_ICASE;
    }
    if (strchr(options, 'm')) {
        flags |= REG_NEWLINE;
    }
    regex_t *re = bson_malloc(sizeof *re);
    int rc = regcomp(re, posix, flags);
    bson_free(posix);
    if (rc != 0) {
        bson_free(re);
        ms_set_error(error, MS_ERR_LOCATION51091, "Regular expression is invalid: %s", pattern);
        return NULL;
    }
    return re;
}

static bool
item_init(ms_qitem_t *it, const bson_value_t *v, bson_error_t *error)
{
    bson_value_copy(v, &it->value);
    if (v->value_type == BSON_TYPE_REGEX) {
        it->re = regex_compile(v->value.v_regex.regex, v->value.v_regex.options, error);
        return it->re != NULL;
    }
    return true;
}

ms_qnode_t *
ms__qleaf_with_arg(const char *path, const ms_query_op_t *op, const bson_value_t *v,
                   bson_error_t *error)
{
    ms_qnode_t *n = ms__qleaf_new(path, op, error);
    if (n && !item_init(&n->arg, v, error)) {
        ms__qnode_destroy(n);
        return NULL;
    }
    return n;
}

typedef bool (*leaf_fill_fn)(ms_qnode_t *n, const ms_query_args_t *a, bson_error_t *error);

/* A leaf of a->op that fill completes from the argument ($in's list, $type's types, ...). */
static ms_qnode_t *
leaf_filled(const ms_query_args_t *a, leaf_fill_fn fill, bson_error_t *error)
{
    ms_qnode_t *n = ms__qleaf_new(a->path, a->op, error);
    if (n && !fill(n, a, error)) {
        ms__qnode_destroy(n);
        return NULL;
    }
    return n;
}

static bool
as_int64(const bson_value_t *v, int64_t *out)
{
    if (!ms__is_number(v->value_type)) {
        return false;
    }
    double d = ms__num_as_double(v);
    if (isnan(d) || isinf(d)) {
        return false;
    }
    *out = v->value_type == BSON_TYPE_INT64 ? v->value.v_int64 : ms__clamp_i64(d);
    return true;
}

static bool
is_nan(const bson_value_t *v)
{
    return ms__is_number(v->value_type) && isnan(ms__num_as_double(v));
}

static bool
eq_matches(const bson_value_t *arg, const bson_value_t *v)
{
    if (!v) {
        return arg->value_type == BSON_TYPE_NULL;
    }
    return ms_type_rank(v->value_type) == ms_type_rank(arg->value_type) &&
           ms_value_cmp(arg, v) == 0;
}

/* $eq, $ne and the comparisons: a leaf holding the argument. */
static ms_qnode_t *
parse_compare(const ms_query_args_t *a, bson_error_t *error)
{
    return ms__qleaf_with_arg(a->path, a->op, a->arg, error);
}

static bool
match_eq(const ms_qnode_t *n, const bson_value_t *v)
{
    return eq_matches(&n->arg.value, v);
}

/* $lt/$lte/$gt/$gte: only values of the same canonical type compare (type bracketing). */
static bool
cmp_matches(const bson_value_t *arg, const bson_value_t *v, bool above, bool inclusive)
{
    static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
    bool cross = arg->value_type == BSON_TYPE_MINKEY || arg->value_type == BSON_TYPE_MAXKEY;
    if (!v) {
        v = &null_value;
    }
    if (!cross && ms_type_rank(v->value_type) != ms_type_rank(arg->value_type)) {
        return false;
    }
    if (is_nan(arg) || is_nan(v)) {
        return is_nan(arg) && is_nan(v) && inclusive;
    }
    int c = ms_value_cmp(v, arg);
    return (above ? c > 0 : c < 0) || (inclusive && c == 0);
}

static bool
match_compare(const ms_qnode_t *n, const bson_value_t *v)
{
    return cmp_matches(&n->arg.value, v, n->op->flags & QOP_ABOVE, n->op->flags & QOP_OR_EQUAL);
}

static bool
in_list(ms_qnode_t *n, const ms_query_args_t *a, bson_error_t *error)
{
    bson_iter_t it;
    if (a->arg->value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "%s needs an array", a->op->name);
    }
    bson_iter_init_from_data(&it, a->arg->value.v_doc.data, a->arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        if (ms__is_operator_doc(v)) {
            return ms_set_error(error, MS_ERR_BAD_VALUE, "cannot nest $ under %s", a->op->name);
        }
        n->list = bson_realloc(n->list, (n->nlist + 1) * sizeof *n->list);
        memset(&n->list[n->nlist], 0, sizeof n->list[0]);
        if (!item_init(&n->list[n->nlist++], v, error)) {
            return false;
        }
    }
    return true;
}

/* $in and $nin: a leaf holding the list. */
static ms_qnode_t *
parse_in(const ms_query_args_t *a, bson_error_t *error)
{
    return leaf_filled(a, in_list, error);
}

static bool
regex_matches(const ms_qitem_t *it, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_UTF8 || v->value_type == BSON_TYPE_SYMBOL) {
        /* strings with NUL bytes are matched up to the first one */
        return regexec(it->re, v->value.v_utf8.str, 0, NULL, 0) == 0;
    }
    return v->value_type == BSON_TYPE_REGEX && ms_value_cmp(&it->value, v) == 0;
}

static bool
match_in(const ms_qnode_t *n, const bson_value_t *v)
{
    for (size_t i = 0; i < n->nlist; i++) {
        if (n->list[i].re ? v && regex_matches(&n->list[i], v)
                          : eq_matches(&n->list[i].value, v)) {
            return true;
        }
    }
    return false;
}

static ms_qnode_t *
parse_exists(const ms_query_args_t *a, bson_error_t *error)
{
    ms_qnode_t *n = ms__qleaf_new(a->path, a->op, error);
    return n && !ms__value_truthy(a->arg) ? ms__qnode_not(n) : n;
}

static bool
match_exists(const ms_qnode_t *n, const bson_value_t *v)
{
    (void)n;
    return v != NULL;
}

static bool
type_list(ms_qnode_t *n, const ms_query_args_t *a, bson_error_t *error)
{
    const bson_value_t *arg = a->arg;
    bson_iter_t it;
    int t;
    if (arg->value_type != BSON_TYPE_ARRAY) {
        n->types = bson_malloc(sizeof *n->types);
        n->ntypes = 1;
        return ms__type_parse(arg, &n->types[0], error);
    }
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (!ms__type_parse(bson_iter_value(&it), &t, error)) {
            return false;
        }
        n->types = bson_realloc(n->types, (n->ntypes + 1) * sizeof *n->types);
        n->types[n->ntypes++] = t;
    }
    return true;
}

static ms_qnode_t *
parse_type(const ms_query_args_t *a, bson_error_t *error)
{
    return leaf_filled(a, type_list, error);
}

static bool
match_type(const ms_qnode_t *n, const bson_value_t *v)
{
    for (size_t i = 0; v && i < n->ntypes; i++) {
        if (ms__type_matches(n->types[i], v->value_type)) {
            return true;
        }
    }
    return false;
}

static ms_qnode_t *
parse_size(const ms_query_args_t *a, bson_error_t *error)
{
    int64_t size;
    if (!as_int64(a->arg, &size) || (double)size != ms__num_as_double(a->arg)) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$size needs a number");
        return NULL;
    }
    if (size < 0) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$size may not be negative");
        return NULL;
    }
    ms_qnode_t *n = ms__qleaf_new(a->path, a->op, error);
    if (n) {
        n->size = size;
    }
    return n;
}

static bool
match_size(const ms_qnode_t *n, const bson_value_t *v)
{
    return v && v->value_type == BSON_TYPE_ARRAY && (int64_t)ms__array_len(v) == n->size;
}

static bool
mod_args(ms_qnode_t *n, const ms_query_args_t *a, bson_error_t *error)
{
    const bson_value_t *arg = a->arg;
    bson_iter_t it;
    bson_value_t parts[2];
    int count = 0;
    if (arg->value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "malformed mod, needs to be an array");
    }
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (count == 2) {
            return ms_set_error(error, MS_ERR_BAD_VALUE, "malformed mod, too many elements");
        }
        parts[count++] = *bson_iter_value(&it);
    }
    if (count < 2) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "malformed mod, not enough elements");
    }
    if (!as_int64(&parts[0], &n->mod_div)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "malformed mod, divisor not a number");
    }
    if (!as_int64(&parts[1], &n->mod_rem)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "malformed mod, remainder not a number");
    }
    if (n->mod_div == 0) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "divisor cannot be 0");
    }
    return true;
}

static ms_qnode_t *
parse_mod(const ms_query_args_t *a, bson_error_t *error)
{
    return leaf_filled(a, mod_args, error);
}

static bool
match_mod(const ms_qnode_t *n, const bson_value_t *v)
{
    int64_t x;
    if (!v || !as_int64(v, &x)) {
        return false;
    }
    if (n->mod_div == -1) {
        return n->mod_rem == 0;
    }
    return x % n->mod_div == n->mod_rem;
}

/* The pattern and options of {$regex: ..., $options: ...} (options "" when none). */
static bool
regex_parts(const bson_value_t *ops, const char **pattern, const char **options,
            bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, ops->value.v_doc.data, ops->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(bson_iter_key(&it), "$regex") == 0) {
            if (v->value_type == BSON_TYPE_REGEX) {
                *pattern = v->value.v_regex.regex;
                if (*v->value.v_regex.options) {
                    *options = v->value.v_regex.options;
                }
            } else if (v->value_type == BSON_TYPE_UTF8) {
                *pattern = v->value.v_utf8.str;
            } else {
                return ms_set_error(error, MS_ERR_BAD_VALUE, "$regex has to be a string");
            }
        } else if (strcmp(bson_iter_key(&it), "$options") == 0) {
            if (v->value_type != BSON_TYPE_UTF8) {
                return ms_set_error(error, MS_ERR_BAD_VALUE, "$options has to be a string");
            }
            *options = v->value.v_utf8.str;
        }
    }
    return true;
}

/* $regex with its $options sibling: one leaf for the pair, whichever comes first. */
static ms_qnode_t *
parse_regex(const ms_query_args_t *a, bson_error_t *error)
{
    bson_value_t found, rv = {.value_type = BSON_TYPE_REGEX};
    const char *pattern = NULL;
    const char *options = "";
    if (*a->regex_done) {
        return ms__qnode_new(N_TRUE);
    }
    *a->regex_done = true;
    if (strcmp(a->op->name, "$options") == 0 &&
        !ms__find_field(a->ops->value.v_doc.data, a->ops->value.v_doc.data_len, "$regex", 6,
                        &found)) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$options needs a $regex");
        return NULL;
    }
    if (!regex_parts(a->ops, &pattern, &options, error)) {
        return NULL;
    }
    rv.value.v_regex.regex = (char *)pattern;
    rv.value.v_regex.options = (char *)options;
    return ms__qleaf_with_arg(a->path, ms__query_op("$regex"), &rv, error);
}

static bool
match_regex(const ms_qnode_t *n, const bson_value_t *v)
{
    return v && regex_matches(&n->arg, v);
}

static ms_qnode_t *
parse_not(const ms_query_args_t *a, bson_error_t *error)
{
    const bson_value_t *arg = a->arg;
    ms_qnode_t *inner = NULL;
    if (arg->value_type == BSON_TYPE_REGEX) {
        inner = ms__qleaf_with_arg(a->path, ms__query_op("$regex"), arg, error);
    } else if (arg->value_type == BSON_TYPE_DOCUMENT) {
        if (arg->value.v_doc.data_len <= 5) {
            ms_set_error(error, MS_ERR_BAD_VALUE, "$not cannot be empty");
            return NULL;
        }
        if (!ms__is_operator_doc(arg)) {
            ms_set_error(error, MS_ERR_BAD_VALUE, "$not needs a regex or a document");
            return NULL;
        }
        inner = ms__qparse_value_ops(a->path, arg, error);
    } else {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$not needs a regex or a document");
        return NULL;
    }
    return inner ? ms__qnode_not(inner) : NULL;
}

/* {$elemMatch: {$gt: 1}} tests element values; {$elemMatch: {a: 1}} or {$and: ...} is a query
 * on element documents. */
static bool
elem_match_on_docs(const bson_value_t *arg)
{
    bson_iter_t it;
    if (!ms__is_operator_doc(arg)) {
        return true;
    }
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    bson_iter_next(&it);
    const char *k = bson_iter_key(&it);
    return strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0 ||
           strcmp(k, "$expr") == 0;
}

static ms_qnode_t *
elem_match_new(const char *path, const bson_value_t *arg, bson_error_t *error)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$elemMatch needs an Object");
        return NULL;
    }
    ms_qnode_t *n = ms__qleaf_new(path, ms__query_op("$elemMatch"), error);
    if (!n) {
        return NULL;
    }
    n->elem_docs = elem_match_on_docs(arg);
    if (n->elem_docs) {
        bson_t sub;
        bson_init_static(&sub, arg->value.v_doc.data, arg->value.v_doc.data_len);
        n->sub = ms__qparse_filter(&sub, error);
    } else {
        n->sub = ms__qparse_value_ops(NULL, arg, error);
    }
    if (!n->sub) {
        ms__qnode_destroy(n);
        return NULL;
    }
    return n;
}

static ms_qnode_t *
parse_elem_match(const ms_query_args_t *a, bson_error_t *error)
{
    return elem_match_new(a->path, a->arg, error);
}

static bool
match_elem(const ms_qnode_t *n, const bson_value_t *v)
{
    bson_iter_t it;
    if (!v || v->value_type != BSON_TYPE_ARRAY) {
        return false;
    }
    bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *e = bson_iter_value(&it);
        if (n->elem_docs && e->value_type != BSON_TYPE_DOCUMENT &&
            e->value_type != BSON_TYPE_ARRAY) {
            continue;
        }
        if (ms__qmatch_node(n->sub, e, NULL)) {
            return true;
        }
    }
    return false;
}

/* One element of $all: a value to equal, or {$elemMatch: ...}. */
static ms_qnode_t *
all_element(const char *path, const bson_value_t *v, bson_error_t *error)
{
    bson_value_t em;
    if (!ms__is_operator_doc(v)) {
        return ms__qleaf_with_arg(path, ms__query_op("$eq"), v, error);
    }
    if (ms__find_field(v->value.v_doc.data, v->value.v_doc.data_len, "$elemMatch", 10, &em)) {
        return elem_match_new(path, &em, error);
    }
    ms_set_error(error, MS_ERR_BAD_VALUE, "no $ expressions in $all");
    return NULL;
}

/* {$all: [a, b]} is {$and: [{$eq: a}, {$eq: b}]}; an empty $all matches nothing. */
static ms_qnode_t *
parse_all(const ms_query_args_t *a, bson_error_t *error)
{
    bson_iter_t it;
    if (a->arg->value_type != BSON_TYPE_ARRAY) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$all needs an array");
        return NULL;
    }
    ms_qnode_t *and = ms__qnode_new(a->arg->value.v_doc.data_len <= 5 ? N_FALSE : N_AND);
    bson_iter_init_from_data(&it, a->arg->value.v_doc.data, a->arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        ms_qnode_t *kid = all_element(a->path, bson_iter_value(&it), error);
        if (!kid) {
            ms__qnode_destroy(and);
            return NULL;
        }
        ms__qnode_add(and, kid);
    }
    return and;
}

/* Field operators: {path: {<name>: arg}}. An operator not here is BadValue "unknown operator". */
static const ms_query_op_t query_ops[] = {
    {"$eq", parse_compare, match_eq, 0},
    {"$ne", parse_compare, match_eq, QOP_NEGATED},
    {"$lt", parse_compare, match_compare, 0},
    {"$lte", parse_compare, match_compare, QOP_OR_EQUAL},
    {"$gt", parse_compare, match_compare, QOP_ABOVE},
    {"$gte", parse_compare, match_compare, QOP_ABOVE | QOP_OR_EQUAL},
    {"$in", parse_in, match_in, 0},
    {"$nin", parse_in, match_in, QOP_NEGATED},
    {"$exists", parse_exists, match_exists, QOP_WHOLE_ARRAY},
    {"$type", parse_type, match_type, 0},
    {"$size", parse_size, match_size, QOP_WHOLE_ARRAY},
    {"$mod", parse_mod, match_mod, 0},
    {"$regex", parse_regex, match_regex, 0},
    {"$options", parse_regex, match_regex, 0},
    {"$not", parse_not, NULL, 0},
    {"$elemMatch", parse_elem_match, match_elem, QOP_WHOLE_ARRAY},
    {"$all", parse_all, NULL, 0},
};

const ms_query_op_t *
ms__query_op(const char *name)
{
    for (size_t i = 0; i < sizeof query_ops / sizeof query_ops[0]; i++) {
        if (strcmp(query_ops[i].name, name) == 0) {
            return &query_ops[i];
        }
    }
    return NULL;
}

/*
 * mongoq-test-server: query filters. A filter is compiled once into a tree of logical nodes and
 * leaves (path + operator); matching walks the document's raw BSON with MongoDB's array rules:
 * a path reaching an array matches when the whole array or any element matches, dotted paths
 * descend into arrays of documents, and negations ($ne, $nin, $not, $nor) negate that whole
 * "any" so {a: {$ne: 5}} rejects {a: [5, 6]}.
 *
 * Operators are tables: query_ops[] (field operators: {a: {$gt: 1}}) names each one's parser,
 * its leaf's test of one value and its flags; top_ops[] the top-level ones ($and, $expr, ...).
 */
#include "lang-private.h"

#include <math.h>
#include <regex.h>
#include <string.h>

typedef enum { N_AND, N_OR, N_NOR, N_NOT, N_EXPR, N_TRUE, N_FALSE, N_LEAF } kind_t;

typedef struct node_t node_t;
typedef struct query_op_t query_op_t;

typedef struct {
    bson_value_t value; /* owned */
    regex_t *re;        /* compiled when value is a regex */
} item_t;

struct node_t {
    kind_t kind;
    node_t **kids;
    size_t nkids;
    /* leaves */
    ms_path_t path;
    const query_op_t *op;
    item_t arg;     /* $eq, comparisons, $regex */
    item_t *list;   /* $in */
    size_t nlist;
    int *types;     /* $type */
    size_t ntypes;
    int64_t size;   /* $size */
    int64_t mod_div, mod_rem;
    node_t *sub;    /* $elemMatch */
    bool elem_docs; /* $elemMatch: a query on element documents, not operators on values */
    bson_value_t expr; /* N_EXPR, owned */
};

struct ms_matcher_t {
    node_t *root;
    bool value_mode; /* leaves apply to a value rather than to fields of a document */
};

/* What a field operator's parser sees of {path: {..., name: arg, ...}}. */
typedef struct {
    const char *path;        /* NULL: the value itself ($elemMatch on values, $pull) */
    const query_op_t *op;    /* the operator's row */
    const bson_value_t *arg;
    const bson_value_t *ops; /* the whole operator document ($regex reads $options) */
    bool *regex_done;        /* $regex and $options make one leaf between them */
} op_args_t;

enum {
    QOP_NEGATED = 1,     /* the leaf is negated as a whole: $ne, $nin */
    QOP_WHOLE_ARRAY = 2, /* an array is one value, its elements are not tried: $exists, $size,
                            $elemMatch */
    QOP_ABOVE = 4,       /* a comparison true above the argument: $gt, $gte */
    QOP_OR_EQUAL = 8     /* a comparison true at the argument: $lte, $gte */
};

/* One field operator: how {path: {name: arg}} becomes a node, and its leaf's test of a value
 * (v NULL: the path is missing; match NULL: the parser builds other nodes, as $not and $all). */
struct query_op_t {
    const char *name;
    node_t *(*parse)(const op_args_t *a, bson_error_t *error);
    bool (*match)(const node_t *n, const bson_value_t *v);
    unsigned flags; /* QOP_* */
};

static bool
match_node(const node_t *n, const bson_value_t *root, const ms_ctx_t *ctx);
static const query_op_t *
query_op(const char *name);

/* ---- construction ---------------------------------------------------------------------- */

static node_t *
node_new(kind_t kind)
{
    node_t *n = bson_malloc0(sizeof *n);
    n->kind = kind;
    return n;
}

static void
item_destroy(item_t *it)
{
    bson_value_destroy(&it->value);
    if (it->re) {
        regfree(it->re);
        bson_free(it->re);
    }
}

static void
node_destroy(node_t *n)
{
    if (!n) {
        return;
    }
    for (size_t i = 0; i < n->nkids; i++) {
        node_destroy(n->kids[i]);
    }
    bson_free(n->kids);
    ms__path_destroy(&n->path);
    item_destroy(&n->arg);
    for (size_t i = 0; i < n->nlist; i++) {
        item_destroy(&n->list[i]);
    }
    bson_free(n->list);
    bson_free(n->types);
    node_destroy(n->sub);
    bson_value_destroy(&n->expr);
    bson_free(n);
}

static void
node_add(node_t *parent, node_t *kid)
{
    parent->kids = bson_realloc(parent->kids, (parent->nkids + 1) * sizeof *parent->kids);
    parent->kids[parent->nkids++] = kid;
}

static node_t *
node_not(node_t *kid)
{
    node_t *n = node_new(N_NOT);
    node_add(n, kid);
    return n;
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
item_init(item_t *it, const bson_value_t *v, bson_error_t *error)
{
    bson_value_copy(v, &it->value);
    if (v->value_type == BSON_TYPE_REGEX) {
        it->re = regex_compile(v->value.v_regex.regex, v->value.v_regex.options, error);
        return it->re != NULL;
    }
    return true;
}

/* A leaf testing path with op's match function. */
static node_t *
leaf_new(const char *path, const query_op_t *op, bson_error_t *error)
{
    node_t *n = node_new(N_LEAF);
    n->op = op;
    if (path && !ms__path_init(&n->path, path)) {
        node_destroy(n);
        ms_set_error(error, MS_ERR_BAD_VALUE, "FieldPath must not contain empty field names: '%s'",
                     path);
        return NULL;
    }
    return n;
}

/* A leaf of op whose argument is v ({$eq: v}, {$regex: v}). */
static node_t *
leaf_with_arg(const char *path, const query_op_t *op, const bson_value_t *v, bson_error_t *error)
{
    node_t *n = leaf_new(path, op, error);
    if (n && !item_init(&n->arg, v, error)) {
        node_destroy(n);
        return NULL;
    }
    return n;
}

/* A leaf of a->op that fill completes from the argument ($in's list, $type's types, ...). */
static node_t *
leaf_filled(const op_args_t *a, bool (*fill)(node_t *n, const op_args_t *a, bson_error_t *error),
            bson_error_t *error)
{
    node_t *n = leaf_new(a->path, a->op, error);
    if (n && !fill(n, a, error)) {
        node_destroy(n);
        return NULL;
    }
    return n;
}

static bool
starts_with_operator(const bson_value_t *v)
{
    bson_iter_t it;
    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_next(&it)) {
        return false;
    }
    return bson_iter_key(&it)[0] == '$';
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

static node_t *
parse_filter(const bson_t *filter, bson_error_t *error);
static node_t *
parse_value_ops(const char *path, const bson_value_t *ops, bson_error_t *error);

/* ---- field operators: parsers and leaf tests, in query_ops[] order -------------------------- */

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
static node_t *
parse_compare(const op_args_t *a, bson_error_t *error)
{
    return leaf_with_arg(a->path, a->op, a->arg, error);
}

static bool
match_eq(const node_t *n, const bson_value_t *v)
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
match_compare(const node_t *n, const bson_value_t *v)
{
    return cmp_matches(&n->arg.value, v, n->op->flags & QOP_ABOVE, n->op->flags & QOP_OR_EQUAL);
}

static bool
in_list(node_t *n, const op_args_t *a, bson_error_t *error)
{
    bson_iter_t it;
    if (a->arg->value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "%s needs an array", a->op->name);
    }
    bson_iter_init_from_data(&it, a->arg->value.v_doc.data, a->arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        if (starts_with_operator(v)) {
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
static node_t *
parse_in(const op_args_t *a, bson_error_t *error)
{
    return leaf_filled(a, in_list, error);
}

static bool
regex_matches(const item_t *it, const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_UTF8 || v->value_type == BSON_TYPE_SYMBOL) {
        /* strings with NUL bytes are matched up to the first one */
        return regexec(it->re, v->value.v_utf8.str, 0, NULL, 0) == 0;
    }
    return v->value_type == BSON_TYPE_REGEX && ms_value_cmp(&it->value, v) == 0;
}

static bool
match_in(const node_t *n, const bson_value_t *v)
{
    for (size_t i = 0; i < n->nlist; i++) {
        if (n->list[i].re ? v && regex_matches(&n->list[i], v)
                          : eq_matches(&n->list[i].value, v)) {
            return true;
        }
    }
    return false;
}

static node_t *
parse_exists(const op_args_t *a, bson_error_t *error)
{
    node_t *n = leaf_new(a->path, a->op, error);
    return n && !ms__value_truthy(a->arg) ? node_not(n) : n;
}

static bool
match_exists(const node_t *n, const bson_value_t *v)
{
    (void)n;
    return v != NULL;
}

static bool
type_list(node_t *n, const op_args_t *a, bson_error_t *error)
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

static node_t *
parse_type(const op_args_t *a, bson_error_t *error)
{
    return leaf_filled(a, type_list, error);
}

static bool
match_type(const node_t *n, const bson_value_t *v)
{
    for (size_t i = 0; v && i < n->ntypes; i++) {
        if (ms__type_matches(n->types[i], v->value_type)) {
            return true;
        }
    }
    return false;
}

static node_t *
parse_size(const op_args_t *a, bson_error_t *error)
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
    node_t *n = leaf_new(a->path, a->op, error);
    if (n) {
        n->size = size;
    }
    return n;
}

static bool
match_size(const node_t *n, const bson_value_t *v)
{
    return v && v->value_type == BSON_TYPE_ARRAY && (int64_t)ms__array_len(v) == n->size;
}

static bool
mod_args(node_t *n, const op_args_t *a, bson_error_t *error)
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

static node_t *
parse_mod(const op_args_t *a, bson_error_t *error)
{
    return leaf_filled(a, mod_args, error);
}

static bool
match_mod(const node_t *n, const bson_value_t *v)
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
static node_t *
parse_regex(const op_args_t *a, bson_error_t *error)
{
    bson_value_t found, rv = {.value_type = BSON_TYPE_REGEX};
    const char *pattern = NULL;
    const char *options = "";
    if (*a->regex_done) {
        return node_new(N_TRUE);
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
    return leaf_with_arg(a->path, query_op("$regex"), &rv, error);
}

static bool
match_regex(const node_t *n, const bson_value_t *v)
{
    return v && regex_matches(&n->arg, v);
}

static node_t *
parse_not(const op_args_t *a, bson_error_t *error)
{
    const bson_value_t *arg = a->arg;
    node_t *inner = NULL;
    if (arg->value_type == BSON_TYPE_REGEX) {
        inner = leaf_with_arg(a->path, query_op("$regex"), arg, error);
    } else if (arg->value_type == BSON_TYPE_DOCUMENT) {
        if (arg->value.v_doc.data_len <= 5) {
            ms_set_error(error, MS_ERR_BAD_VALUE, "$not cannot be empty");
            return NULL;
        }
        if (!starts_with_operator(arg)) {
            ms_set_error(error, MS_ERR_BAD_VALUE, "$not needs a regex or a document");
            return NULL;
        }
        inner = parse_value_ops(a->path, arg, error);
    } else {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$not needs a regex or a document");
        return NULL;
    }
    return inner ? node_not(inner) : NULL;
}

/* {$elemMatch: {$gt: 1}} tests element values; {$elemMatch: {a: 1}} or {$and: ...} is a query
 * on element documents. */
static bool
elem_match_on_docs(const bson_value_t *arg)
{
    bson_iter_t it;
    if (!starts_with_operator(arg)) {
        return true;
    }
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    bson_iter_next(&it);
    const char *k = bson_iter_key(&it);
    return strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0 ||
           strcmp(k, "$expr") == 0;
}

static node_t *
elem_match_new(const char *path, const bson_value_t *arg, bson_error_t *error)
{
    if (arg->value_type != BSON_TYPE_DOCUMENT) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$elemMatch needs an Object");
        return NULL;
    }
    node_t *n = leaf_new(path, query_op("$elemMatch"), error);
    if (!n) {
        return NULL;
    }
    n->elem_docs = elem_match_on_docs(arg);
    if (n->elem_docs) {
        bson_t sub;
        bson_init_static(&sub, arg->value.v_doc.data, arg->value.v_doc.data_len);
        n->sub = parse_filter(&sub, error);
    } else {
        n->sub = parse_value_ops(NULL, arg, error);
    }
    if (!n->sub) {
        node_destroy(n);
        return NULL;
    }
    return n;
}

static node_t *
parse_elem_match(const op_args_t *a, bson_error_t *error)
{
    return elem_match_new(a->path, a->arg, error);
}

static bool
match_elem(const node_t *n, const bson_value_t *v)
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
        if (match_node(n->sub, e, NULL)) {
            return true;
        }
    }
    return false;
}

/* One element of $all: a value to equal, or {$elemMatch: ...}. */
static node_t *
all_element(const char *path, const bson_value_t *v, bson_error_t *error)
{
    bson_value_t em;
    if (!starts_with_operator(v)) {
        return leaf_with_arg(path, query_op("$eq"), v, error);
    }
    if (ms__find_field(v->value.v_doc.data, v->value.v_doc.data_len, "$elemMatch", 10, &em)) {
        return elem_match_new(path, &em, error);
    }
    ms_set_error(error, MS_ERR_BAD_VALUE, "no $ expressions in $all");
    return NULL;
}

/* {$all: [a, b]} is {$and: [{$eq: a}, {$eq: b}]}; an empty $all matches nothing. */
static node_t *
parse_all(const op_args_t *a, bson_error_t *error)
{
    bson_iter_t it;
    if (a->arg->value_type != BSON_TYPE_ARRAY) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "$all needs an array");
        return NULL;
    }
    node_t *and = node_new(a->arg->value.v_doc.data_len <= 5 ? N_FALSE : N_AND);
    bson_iter_init_from_data(&it, a->arg->value.v_doc.data, a->arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        node_t *kid = all_element(a->path, bson_iter_value(&it), error);
        if (!kid) {
            node_destroy(and);
            return NULL;
        }
        node_add(and, kid);
    }
    return and;
}

/* Field operators: {path: {<name>: arg}}. An operator not here is BadValue "unknown operator". */
static const query_op_t query_ops[] = {
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

static const query_op_t *
query_op(const char *name)
{
    for (size_t i = 0; i < sizeof query_ops / sizeof query_ops[0]; i++) {
        if (strcmp(query_ops[i].name, name) == 0) {
            return &query_ops[i];
        }
    }
    return NULL;
}

/* ---- filters ----------------------------------------------------------------------------- */

/* {$gt: 1, $lt: 5} applied to path (NULL path: to the value itself). */
static node_t *
parse_value_ops(const char *path, const bson_value_t *ops, bson_error_t *error)
{
    bson_iter_t it;
    bool regex_done = false;
    node_t *and = node_new(N_AND);
    bson_iter_init_from_data(&it, ops->value.v_doc.data, ops->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        op_args_t a = {path, query_op(bson_iter_key(&it)), bson_iter_value(&it), ops,
                       &regex_done};
        node_t *kid = NULL;
        if (!a.op) {
            ms_set_error(error, MS_ERR_BAD_VALUE, "unknown operator: %s", bson_iter_key(&it));
        } else if ((kid = a.op->parse(&a, error)) && (a.op->flags & QOP_NEGATED)) {
            kid = node_not(kid);
        }
        if (!kid) {
            node_destroy(and);
            return NULL;
        }
        node_add(and, kid);
    }
    return and;
}

static node_t *
parse_field(const char *path, const bson_value_t *v, bson_error_t *error)
{
    if (starts_with_operator(v)) {
        return parse_value_ops(path, v, error);
    }
    const char *op = v->value_type == BSON_TYPE_REGEX ? "$regex" : "$eq";
    return leaf_with_arg(path, query_op(op), v, error);
}

/* A top-level operator: {$and: [...]}, {$expr: ...}. */
typedef struct top_op_t {
    const char *name;
    node_t *(*parse)(const struct top_op_t *op, const bson_value_t *arg, bson_error_t *error);
    kind_t kind; /* the node it makes */
} top_op_t;

static node_t *
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
    node_t *n = node_new(op->kind);
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        bson_t sub;
        node_t *kid;
        if (v->value_type != BSON_TYPE_DOCUMENT) {
            ms_set_error(error, MS_ERR_BAD_VALUE, "$or/$and/$nor entries need to be full objects");
            node_destroy(n);
            return NULL;
        }
        bson_init_static(&sub, v->value.v_doc.data, v->value.v_doc.data_len);
        kid = parse_filter(&sub, error);
        if (!kid) {
            node_destroy(n);
            return NULL;
        }
        node_add(n, kid);
    }
    return n;
}

static node_t *
parse_expr(const top_op_t *op, const bson_value_t *arg, bson_error_t *error)
{
    if (!ms__expr_validate(arg, error)) {
        return NULL;
    }
    node_t *n = node_new(op->kind);
    bson_value_copy(arg, &n->expr);
    return n;
}

/* $comment, $alwaysTrue, $alwaysFalse: the argument does not matter. */
static node_t *
parse_constant(const top_op_t *op, const bson_value_t *arg, bson_error_t *error)
{
    (void)arg;
    (void)error;
    return node_new(op->kind);
}

static node_t *
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

static node_t *
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

static node_t *
parse_filter(const bson_t *filter, bson_error_t *error)
{
    bson_iter_t it;
    node_t *and = node_new(N_AND);
    if (!bson_iter_init(&it, filter)) {
        ms_set_error(error, MS_ERR_BAD_VALUE, "invalid BSON in filter");
        node_destroy(and);
        return NULL;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        node_t *kid = key[0] == '$' ? parse_top_operator(key, bson_iter_value(&it), error)
                                    : parse_field(key, bson_iter_value(&it), error);
        if (!kid) {
            node_destroy(and);
            return NULL;
        }
        node_add(and, kid);
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
    node_t *root = parse_filter(filter, error);
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
    node_t *root = starts_with_operator(cond) ? parse_value_ops(NULL, cond, error)
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
        node_destroy(m->root);
        bson_free(m);
    }
}

/* ---- matching -------------------------------------------------------------------------- */

/* The operator on one candidate value; v NULL means the path is missing. */
static bool
pred(const node_t *n, const bson_value_t *v)
{
    return n->op->match(n, v);
}

/* Operators that see an array's elements as well as the array itself. */
static bool
expands_arrays(const query_op_t *op)
{
    return !(op->flags & QOP_WHOLE_ARRAY);
}

static bool walk_value(const node_t *n, const bson_value_t *v, size_t depth);

static bool
walk_doc(const node_t *n, const bson_value_t *doc, size_t depth)
{
    bson_value_t v;
    const char *key = n->path.parts[depth];
    if (!ms__find_field(doc->value.v_doc.data, doc->value.v_doc.data_len, key, strlen(key), &v)) {
        return pred(n, NULL);
    }
    return walk_value(n, &v, depth + 1);
}

static bool
walk_array_path(const node_t *n, const bson_value_t *arr, size_t depth)
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
walk_value(const node_t *n, const bson_value_t *v, size_t depth)
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

static bool
match_expr(const node_t *n, const bson_value_t *root, const ms_ctx_t *ctx)
{
    static const ms_ctx_t zero_ctx = {0};
    bson_t doc;
    bson_value_t out;
    bool result;
    if (root->value_type != BSON_TYPE_DOCUMENT ||
        !bson_init_static(&doc, root->value.v_doc.data, root->value.v_doc.data_len)) {
        return false;
    }
    /* a runtime error in $expr (e.g. $divide by zero) makes the document not match */
    if (!ms__expr_eval(&n->expr, &doc, &doc, ctx ? ctx : &zero_ctx, &out, NULL)) {
        return false;
    }
    result = ms__value_truthy(&out);
    bson_value_destroy(&out);
    return result;
}

static bool
match_node(const node_t *n, const bson_value_t *root, const ms_ctx_t *ctx)
{
    switch (n->kind) {
    case N_AND:
        for (size_t i = 0; i < n->nkids; i++) {
            if (!match_node(n->kids[i], root, ctx)) {
                return false;
            }
        }
        return true;
    case N_OR:
    case N_NOR:
        for (size_t i = 0; i < n->nkids; i++) {
            if (match_node(n->kids[i], root, ctx)) {
                return n->kind == N_OR;
            }
        }
        return n->kind == N_NOR;
    case N_NOT:
        return !match_node(n->kids[0], root, ctx);
    case N_EXPR:
        return match_expr(n, root, ctx);
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
ms_matcher_matches(const ms_matcher_t *m, const bson_t *doc, const ms_ctx_t *ctx)
{
    bson_value_t root = {.value_type = BSON_TYPE_DOCUMENT};
    root.value.v_doc.data = (uint8_t *)bson_get_data(doc);
    root.value.v_doc.data_len = doc->len;
    return match_node(m->root, &root, ctx);
}

bool
ms__matcher_matches_value(const ms_matcher_t *m, const bson_value_t *v, const ms_ctx_t *ctx)
{
    return match_node(m->root, v, ctx);
}

/* ---- index selection ------------------------------------------------------------------- */

/* Calls fn on each (path, value) pair constraining the top level, descending into $and. */
typedef void (*constraint_fn)(const char *key, const bson_value_t *v, void *ctx);

static void
each_top_constraint(const bson_t *filter, constraint_fn fn, void *ctx, int depth)
{
    bson_iter_t it;
    if (depth > 20 || !bson_iter_init(&it, filter)) {
        return;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(key, "$and") == 0 && v->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t ai;
            bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len);
            while (bson_iter_next(&ai)) {
                const bson_value_t *e = bson_iter_value(&ai);
                bson_t sub;
                if (e->value_type == BSON_TYPE_DOCUMENT &&
                    bson_init_static(&sub, e->value.v_doc.data, e->value.v_doc.data_len)) {
                    each_top_constraint(&sub, fn, ctx, depth + 1);
                }
            }
        } else if (key[0] != '$') {
            fn(key, v, ctx);
        }
    }
}

typedef struct {
    const char *path;
    bool found;
    bson_value_t eq;
} eq_search_t;

/*
 * Values that pin an index key exactly: not null (it also matches missing), not an array (it
 * also matches arrays holding it), not a regex (a pattern, not a value).
 */
static bool
exact_key_value(const bson_value_t *v)
{
    return v->value_type != BSON_TYPE_NULL && v->value_type != BSON_TYPE_UNDEFINED &&
           v->value_type != BSON_TYPE_ARRAY && v->value_type != BSON_TYPE_REGEX &&
           v->value_type != BSON_TYPE_EOD;
}

static void
eq_visit(const char *key, const bson_value_t *v, void *ctx)
{
    eq_search_t *s = ctx;
    bson_value_t inner;
    if (s->found || strcmp(key, s->path) != 0) {
        return;
    }
    if (!starts_with_operator(v)) {
        if (exact_key_value(v)) {
            s->eq = *v;
            s->found = true;
        }
        return;
    }
    if (ms__find_field(v->value.v_doc.data, v->value.v_doc.data_len, "$eq", 3, &inner) &&
        exact_key_value(&inner)) {
        s->eq = inner;
        s->found = true;
    }
}

bool
ms_filter_equality(const bson_t *filter, const char *path, bson_value_t *eq)
{
    eq_search_t s = {.path = path};
    each_top_constraint(filter, eq_visit, &s, 0);
    if (s.found) {
        *eq = s.eq;
    }
    return s.found;
}

static bool
all_exact_key_values(const bson_value_t *array)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, array->value.v_doc.data, array->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (!exact_key_value(bson_iter_value(&it))) {
            return false;
        }
    }
    return true;
}

static void
in_visit(const char *key, const bson_value_t *v, void *ctx)
{
    eq_search_t *s = ctx;
    bson_value_t arr;
    if (s->found || strcmp(key, s->path) != 0 || !starts_with_operator(v)) {
        return;
    }
    if (ms__find_field(v->value.v_doc.data, v->value.v_doc.data_len, "$in", 3, &arr) &&
        arr.value_type == BSON_TYPE_ARRAY && all_exact_key_values(&arr)) {
        s->eq = arr;
        s->found = true;
    }
}

bool
ms_filter_in(const bson_t *filter, const char *path, bson_value_t *values)
{
    eq_search_t s = {.path = path};
    each_top_constraint(filter, in_visit, &s, 0);
    if (s.found) {
        *values = s.eq;
    }
    return s.found;
}

typedef struct {
    const char *path;
    bson_value_t lo, hi;
    bool has_lo, has_hi, lo_inc, hi_inc;
} range_search_t;

/* Keeps the tighter of two bounds of the same type; across types either one is implied. */
static void
tighten(bson_value_t *cur, bool *has, bool *inc, const bson_value_t *v, bool v_inc, bool lower)
{
    if (is_nan(v) || v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_MINKEY ||
        v->value_type == BSON_TYPE_MAXKEY) {
        return; /* bounds the matcher handles specially; not worth an index range */
    }
    if (*has) {
        if (ms_type_rank(cur->value_type) != ms_type_rank(v->value_type)) {
            return;
        }
        int c = ms_value_cmp(v, cur);
        bool better = lower ? (c > 0 || (c == 0 && !v_inc)) : (c < 0 || (c == 0 && !v_inc));
        if (!better) {
            return;
        }
    }
    *cur = *v;
    *has = true;
    *inc = v_inc;
}

static void
range_visit(const char *key, const bson_value_t *v, void *ctx)
{
    range_search_t *s = ctx;
    bson_iter_t it;
    if (strcmp(key, s->path) != 0 || !starts_with_operator(v)) {
        return;
    }
    bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *op = bson_iter_key(&it);
        const bson_value_t *b = bson_iter_value(&it);
        if (strcmp(op, "$gt") == 0 || strcmp(op, "$gte") == 0) {
            tighten(&s->lo, &s->has_lo, &s->lo_inc, b, op[3] == 'e', true);
        } else if (strcmp(op, "$lt") == 0 || strcmp(op, "$lte") == 0) {
            tighten(&s->hi, &s->has_hi, &s->hi_inc, b, op[3] == 'e', false);
        }
    }
}

bool
ms_filter_range(const bson_t *filter, const char *path, bson_value_t *lo, bool *lo_inclusive,
                bool *has_lo, bson_value_t *hi, bool *hi_inclusive, bool *has_hi)
{
    range_search_t s = {.path = path};
    each_top_constraint(filter, range_visit, &s, 0);
    *has_lo = s.has_lo;
    *has_hi = s.has_hi;
    *lo_inclusive = s.lo_inc;
    *hi_inclusive = s.hi_inc;
    if (s.has_lo) {
        *lo = s.lo;
    }
    if (s.has_hi) {
        *hi = s.hi;
    }
    return s.has_lo || s.has_hi;
}

bool
ms__matcher_is_value(const ms_matcher_t *m)
{
    return m->value_mode;
}

/*
 * Partial filter expressions as mongod 6.0 takes them (src/mongo/db/catalog/
 * index_catalog_impl.cpp, _checkValidFilterExpressions, feature flag timeseriesMetricIndexes
 * off): equality, $exists: true, $gt/$gte/$lt/$lte, $type, and $and only at the top level.
 * $in, $or and everything else fail with CannotCreateIndex 67 "Expression not supported in
 * partial index: <MatchExpression::debugString()>"; $expr and $where are refused earlier by the
 * parser (kBanAllSpecialFeatures in src/mongo/db/matcher/expression_parser.cpp).
 *
 * (Whether two partial filters are equivalent is in index_spec.c, with the other comparisons.)
 *
 * The filter is read as mongod's parser builds its tree: a document is an implicit $and of its
 * clauses, collapsed to the clause when there is one, and {a: {$gt: 1, $lt: 5}} gives one clause
 * per operator. The level of a node is its depth in that tree.
 */
#include "store-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- debugString ------------------------------------------------------------------------ */

typedef struct {
    char buf[480];
    size_t len;
} dbg_t;

static void
dbg_put(dbg_t *d, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

static void
dbg_put(dbg_t *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (d->len < sizeof d->buf) {
        int n = vsnprintf(d->buf + d->len, sizeof d->buf - d->len, fmt, ap);
        d->len = n < 0 ? d->len : d->len + (size_t)n;
        d->len = d->len < sizeof d->buf ? d->len : sizeof d->buf - 1;
    }
    va_end(ap);
}

static void
dbg_indent(dbg_t *d, int level)
{
    for (int i = 0; i < level; i++) {
        dbg_put(d, "    ");
    }
}

static void
dbg_value(dbg_t *d, const bson_value_t *v)
{
    char *s = ms_render_value(v);
    dbg_put(d, "%s", s);
    bson_free(s);
}

static int
value_sort_cmp(const void *a, const void *b)
{
    return ms_value_cmp(a, b);
}

/* InMatchExpression::debugString: the equalities sorted and deduplicated, then regexes. */
static void
dbg_in(dbg_t *d, const char *path, const bson_value_t *arr, int level)
{
    bson_iter_t it;
    size_t n = 0;
    bson_value_t *vals = NULL;
    dbg_indent(d, level);
    dbg_put(d, "%s $in [ ", path);
    if (arr->value_type == BSON_TYPE_ARRAY &&
        bson_iter_init_from_data(&it, arr->value.v_doc.data, arr->value.v_doc.data_len)) {
        vals = bson_malloc(sizeof *vals * (arr->value.v_doc.data_len + 1));
        while (bson_iter_next(&it)) {
            if (!BSON_ITER_HOLDS_REGEX(&it)) {
                vals[n++] = *bson_iter_value(&it);
            }
        }
        qsort(vals, n, sizeof *vals, value_sort_cmp);
        for (size_t i = 0; i < n; i++) {
            if (i == 0 || ms_value_cmp(&vals[i - 1], &vals[i]) != 0) {
                dbg_value(d, &vals[i]);
                dbg_put(d, " ");
            }
        }
        bson_iter_init_from_data(&it, arr->value.v_doc.data, arr->value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            if (BSON_ITER_HOLDS_REGEX(&it)) {
                dbg_value(d, bson_iter_value(&it));
                dbg_put(d, " ");
            }
        }
    }
    bson_free(vals);
    dbg_put(d, "]\n");
}

static void dbg_doc(dbg_t *d, const bson_value_t *doc, int level);

/* One operator of a field ({$gt: 1} of a: {$gt: 1}) as its node prints itself. */
static void
dbg_field_op(dbg_t *d, const char *path, const char *op, const bson_value_t *v,
             const char *regex_options, int level)
{
    static const char *const comparisons[] = {"$eq", "$gt", "$gte", "$lt", "$lte", NULL};
    for (int i = 0; comparisons[i]; i++) {
        if (strcmp(op, comparisons[i]) == 0) {
            dbg_indent(d, level);
            dbg_put(d, "%s %s ", path, op);
            dbg_value(d, v);
            dbg_put(d, "\n");
            return;
        }
    }
    if (strcmp(op, "$in") == 0) {
        dbg_in(d, path, v, level);
        return;
    }
    dbg_indent(d, level);
    if (strcmp(op, "$exists") == 0) {
        dbg_put(d, "%s exists\n", path);
    } else if (strcmp(op, "$ne") == 0) {
        dbg_put(d, "$not\n");
        dbg_field_op(d, path, "$eq", v, NULL, level + 1);
    } else if (strcmp(op, "$nin") == 0) {
        dbg_put(d, "$not\n");
        dbg_in(d, path, v, level + 1);
    } else if (strcmp(op, "$regex") == 0) {
        dbg_put(d, "%s regex /%s/%s\n", path,
                v->value_type == BSON_TYPE_UTF8 ? v->value.v_utf8.str : v->value.v_regex.regex,
                regex_options ? regex_options : "");
    } else if (strcmp(op, "$size") == 0) {
        dbg_put(d, "%s $size : ", path);
        dbg_value(d, v);
        dbg_put(d, "\n");
    } else if (strcmp(op, "$not") == 0) {
        dbg_put(d, "$not\n");
        if (v->value_type == BSON_TYPE_REGEX) {
            dbg_indent(d, level + 1);
            dbg_put(d, "%s regex /%s/%s\n", path, v->value.v_regex.regex, v->value.v_regex.options);
        } else {
            /* mongod parses the operand into an $and of its operators */
            bson_iter_t it;
            dbg_indent(d, level + 1);
            dbg_put(d, "$and\n");
            if (v->value_type == BSON_TYPE_DOCUMENT &&
                bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
                while (bson_iter_next(&it)) {
                    dbg_field_op(d, path, bson_iter_key(&it), bson_iter_value(&it), NULL,
                                 level + 2);
                }
            }
        }
    } else {
        dbg_put(d, "%s %s ", path, op);
        dbg_value(d, v);
        dbg_put(d, "\n");
    }
}

/* A whole clause of a document (field: value or $op: ...) as its nodes print themselves. */
static void
dbg_clause(dbg_t *d, const char *key, const bson_value_t *v, int level)
{
    if (key[0] == '$') {
        if (strcmp(key, "$and") == 0 || strcmp(key, "$or") == 0 || strcmp(key, "$nor") == 0) {
            bson_iter_t it;
            dbg_indent(d, level);
            dbg_put(d, "%s\n", key);
            if (v->value_type == BSON_TYPE_ARRAY &&
                bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
                while (bson_iter_next(&it)) {
                    dbg_doc(d, bson_iter_value(&it), level + 1);
                }
            }
        } else {
            dbg_indent(d, level);
            dbg_put(d, "%s\n", key);
        }
        return;
    }
    if (v->value_type == BSON_TYPE_REGEX) {
        dbg_field_op(d, key, "$regex", v, v->value.v_regex.options, level);
        return;
    }
    bson_iter_t it;
    if (v->value_type == BSON_TYPE_DOCUMENT &&
        bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) &&
        bson_iter_next(&it) && bson_iter_key(&it)[0] == '$') {
        do {
            dbg_field_op(d, key, bson_iter_key(&it), bson_iter_value(&it), NULL, level);
        } while (bson_iter_next(&it));
        return;
    }
    dbg_field_op(d, key, "$eq", v, NULL, level);
}

/* A document: its single clause, or $and over its clauses. */
static void
dbg_doc(dbg_t *d, const bson_value_t *doc, int level)
{
    bson_iter_t it;
    if (doc->value_type != BSON_TYPE_DOCUMENT ||
        !bson_iter_init_from_data(&it, doc->value.v_doc.data, doc->value.v_doc.data_len)) {
        return;
    }
    uint32_t n = 0;
    while (bson_iter_next(&it)) {
        n += strcmp(bson_iter_key(&it), "$comment") != 0;
    }
    bson_iter_init_from_data(&it, doc->value.v_doc.data, doc->value.v_doc.data_len);
    if (n != 1) {
        dbg_indent(d, level);
        dbg_put(d, "$and\n");
    }
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "$comment") != 0) {
            dbg_clause(d, bson_iter_key(&it), bson_iter_value(&it), n == 1 ? level : level + 1);
        }
    }
}

static bool
unsupported(bson_error_t *error, dbg_t *d)
{
    return ms_set_error(error, MS_ERR_CANNOT_CREATE_INDEX,
                        "Expression not supported in partial index: %s", d->buf);
}

static bool
and_not_at_top(int level, bson_error_t *error)
{
    if (level > 0) {
        return ms_set_error(error, MS_ERR_CANNOT_CREATE_INDEX,
                            "$and only supported in partialFilterExpression at top "
                            "level");
    }
    return true;
}

/* ---- the rule ---------------------------------------------------------------------------- */

static bool check_doc(const bson_value_t *doc, int level, bson_error_t *error);

/* How many nodes a document's clauses make (a field with n operators makes n). */
static uint32_t
node_count(const bson_value_t *doc)
{
    bson_iter_t it, ops;
    uint32_t n = 0;
    bson_iter_init_from_data(&it, doc->value.v_doc.data, doc->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "$comment") == 0) {
            continue;
        }
        if (k[0] != '$' && BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &ops) &&
            bson_iter_next(&ops) && bson_iter_key(&ops)[0] == '$') {
            do {
                n += strcmp(bson_iter_key(&ops), "$options") != 0;
            } while (bson_iter_next(&ops));
            continue;
        }
        n++;
    }
    return n;
}

/* $all of plain values is an $and of equalities (parseAll); anything else is refused. */
static bool
check_all(const char *path, const bson_value_t *v, int level, bson_error_t *error)
{
    bson_iter_t it;
    dbg_t d = {{0}, 0};
    bool plain = v->value_type == BSON_TYPE_ARRAY &&
                 bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) &&
                 bson_iter_next(&it);
    if (plain) {
        do {
            plain = !BSON_ITER_HOLDS_REGEX(&it) && !BSON_ITER_HOLDS_DOCUMENT(&it);
        } while (plain && bson_iter_next(&it));
    }
    if (!plain) {
        dbg_field_op(&d, path, "$all", v, NULL, 0);
        return unsupported(error, &d);
    }
    return and_not_at_top(level, error);
}

static bool
check_field_op(const char *path, const char *op, const bson_value_t *v, const char *options,
               int level, bson_error_t *error)
{
    static const char *const allowed[] = {"$eq", "$gt", "$gte", "$lt", "$lte", "$type", NULL};
    dbg_t d = {{0}, 0};
    for (int i = 0; allowed[i]; i++) {
        if (strcmp(op, allowed[i]) == 0) {
            return true;
        }
    }
    if (strcmp(op, "$exists") == 0 && ms_true_value(v)) {
        return true;
    }
    if (strcmp(op, "$all") == 0) {
        return check_all(path, v, level, error);
    }
    if (strcmp(op, "$exists") == 0) {
        dbg_put(&d, "$not\n");
        dbg_field_op(&d, path, "$exists", v, NULL, 1);
    } else {
        dbg_field_op(&d, path, op, v, options, 0);
    }
    return unsupported(error, &d);
}

static bool
check_field(const char *path, const bson_value_t *v, int level, bson_error_t *error)
{
    bson_iter_t it, opt;
    dbg_t d = {{0}, 0};
    if (v->value_type == BSON_TYPE_REGEX) {
        dbg_field_op(&d, path, "$regex", v, v->value.v_regex.options, 0);
        return unsupported(error, &d);
    }
    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_next(&it) || bson_iter_key(&it)[0] != '$') {
        return true; /* equality with a value */
    }
    do {
        const char *op = bson_iter_key(&it);
        const char *options = NULL;
        if (strcmp(op, "$options") == 0) {
            continue;
        }
        if (strcmp(op, "$regex") == 0 &&
            bson_iter_init_from_data(&opt, v->value.v_doc.data, v->value.v_doc.data_len) &&
            bson_iter_find(&opt, "$options") && BSON_ITER_HOLDS_UTF8(&opt)) {
            options = bson_iter_utf8(&opt, NULL);
        }
        if (!check_field_op(path, op, bson_iter_value(&it), options, level, error)) {
            return false;
        }
    } while (bson_iter_next(&it));
    return true;
}

static bool
check_clause(const char *key, const bson_value_t *v, int level, bson_error_t *error)
{
    bson_iter_t it;
    dbg_t d = {{0}, 0};
    if (key[0] != '$') {
        return check_field(key, v, level, error);
    }
    if (strcmp(key, "$and") == 0) {
        if (!and_not_at_top(level, error)) {
            return false;
        }
        if (v->value_type == BSON_TYPE_ARRAY &&
            bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
            while (bson_iter_next(&it)) {
                if (!check_doc(bson_iter_value(&it), level + 1, error)) {
                    return false;
                }
            }
        }
        return true;
    }
    dbg_clause(&d, key, v, 0);
    return unsupported(error, &d);
}

static bool
check_doc(const bson_value_t *doc, int level, bson_error_t *error)
{
    bson_iter_t it;
    if (doc->value_type != BSON_TYPE_DOCUMENT) {
        return true; /* the parser refuses it */
    }
    uint32_t n = node_count(doc);
    if (n > 1 && !and_not_at_top(level, error)) {
        return false;
    }
    bson_iter_init_from_data(&it, doc->value.v_doc.data, doc->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "$comment") != 0 &&
            !check_clause(bson_iter_key(&it), bson_iter_value(&it), n == 1 ? level : level + 1,
                          error)) {
            return false;
        }
    }
    return true;
}

/* The parser's kBanAllSpecialFeatures, anywhere in the filter. */
static bool
check_banned(const bson_t *filter, bson_error_t *error)
{
    bson_iter_t it, child;
    bson_iter_init(&it, filter);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "$expr") == 0 || strcmp(k, "$jsonSchema") == 0) {
            return ms_set_error(error, MS_ERR_QUERY_FEATURE_NOT_ALLOWED,
                                "%s is not allowed in this context", k);
        }
        if (strcmp(k, "$where") == 0 || strcmp(k, "$text") == 0) {
            return ms_set_error(error, MS_ERR_BAD_VALUE, "%s is not allowed in this context", k);
        }
        if ((strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0) &&
            BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &child)) {
            while (bson_iter_next(&child)) {
                bson_t sub;
                uint32_t len;
                const uint8_t *data;
                if (!BSON_ITER_HOLDS_DOCUMENT(&child)) {
                    continue;
                }
                bson_iter_document(&child, &len, &data);
                bson_init_static(&sub, data, len);
                if (!check_banned(&sub, error)) {
                    return false;
                }
            }
        }
    }
    return true;
}

bool
ms_partial_filter_check(const bson_t *filter, bson_error_t *error)
{
    bson_value_t doc;
    memset(&doc, 0, sizeof doc);
    doc.value_type = BSON_TYPE_DOCUMENT;
    doc.value.v_doc.data = (uint8_t *)bson_get_data(filter);
    doc.value.v_doc.data_len = filter->len;
    return check_banned(filter, error) && check_doc(&doc, 0, error);
}

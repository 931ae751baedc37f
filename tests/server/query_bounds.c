/*
 * Index bounds as mongod builds them (src/mongo/db/query/index_bounds_builder.cpp,
 * index_bounds.cpp): for every field of an index an interval list (query_intervals.c) from the
 * filter's top-level predicates on that field, intersected; a field without a predicate gets
 * [MinKey, MaxKey]; a top-level $or whose branches are each one predicate on the same field
 * gets their union. The bounds are "exact" when every predicate of the filter is answered by
 * them; the others are the residual filter a FETCH applies to each document (mongod's
 * INEXACT_FETCH). Also the filter as parsedQuery shows it, a scan's single interval
 * (isSingleInterval) and the bounds as explain prints them.
 */
#include "lang-private.h"
#include "query-private.h"

#include <string.h>

static bson_value_t
typed(bson_type_t t)
{
    bson_value_t v;
    memset(&v, 0, sizeof v);
    v.value_type = t;
    return v;
}

/* ---- the filter's predicates --------------------------------------------------------------- */

/*
 * The filter's conjuncts as mongod's parsed query shows them: $and flattened, an equality as
 * {path: {$eq: value}}, an operator document or a top-level operator as written ($comment
 * dropped). Collected into a bson array; ms__conjuncts_doc makes {} / the one / {$and: [...]}.
 */
typedef struct {
    bson_t arr;
    uint32_t n;
} conjuncts_t;

static void
conjunct_add(conjuncts_t *c, const char *key, const bson_value_t *v)
{
    char idx[16];
    const char *k;
    bson_t doc, eq;
    bson_uint32_to_string(c->n++, &k, idx, sizeof idx);
    bson_append_document_begin(&c->arr, k, -1, &doc);
    if (key[0] != '$' && !ms__is_operator_doc(v)) {
        bson_append_document_begin(&doc, key, -1, &eq);
        BSON_APPEND_VALUE(&eq, "$eq", v);
        bson_append_document_end(&doc, &eq);
    } else {
        bson_append_value(&doc, key, -1, v);
    }
    bson_append_document_end(&c->arr, &doc);
}

/* Appends the conjuncts to out (an empty document). */
static void
conjuncts_doc(conjuncts_t *c, bson_t *out)
{
    bson_iter_t it;
    if (c->n == 1 && bson_iter_init(&it, &c->arr) && bson_iter_next(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t one;
        bson_iter_document(&it, &len, &data);
        bson_init_static(&one, data, len);
        bson_concat(out, &one);
    } else if (c->n > 1) {
        BSON_APPEND_ARRAY(out, "$and", &c->arr);
    }
    bson_destroy(&c->arr);
}

typedef struct {
    const ms_index_t *ix; /* NULL: only the conjuncts are wanted */
    ms_bounds_t *b;
    bool exact;
    conjuncts_t residual; /* the conjuncts the bounds do not answer (all when ix is NULL) */
} build_t;

static int
field_of(const ms_index_t *ix, const char *path)
{
    for (size_t i = 0; ix && i < ix->nfields && i < MS_QUERY_MAX_FIELDS; i++) {
        if (strcmp(ix->paths[i], path) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Intersects a field's bounds with oil; whether the predicate is answered by them. */
static bool
constrain(build_t *b, const char *path, const ms_oil_t *oil, bool exact)
{
    int i = field_of(b->ix, path);
    if (i < 0) {
        return false; /* a predicate on a field the index does not hold */
    }
    ms__oil_intersect(&b->b->f[i], oil);
    return exact;
}

const char *
ms__or_one_path(const bson_value_t *branches)
{
    bson_iter_t it, b;
    const char *path = NULL;
    if (branches->value_type != BSON_TYPE_ARRAY ||
        !bson_iter_init_from_data(&it, branches->value.v_doc.data,
                                  branches->value.v_doc.data_len)) {
        return NULL;
    }
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &b) || !bson_iter_next(&b)) {
            return NULL;
        }
        const char *key = bson_iter_key(&b);
        if (key[0] == '$' || (path && strcmp(path, key) != 0) || bson_iter_next(&b)) {
            return NULL;
        }
        path = key;
    }
    return path;
}

/* A $or of predicates on one field: the union of their bounds. */
static bool
constrain_or(build_t *b, const bson_value_t *branches)
{
    bson_iter_t it, br;
    const char *path = ms__or_one_path(branches);
    ms_oil_t all = {0};
    bool exact = true;
    if (!path || field_of(b->ix, path) < 0) {
        return false;
    }
    bson_iter_init_from_data(&it, branches->value.v_doc.data, branches->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        ms_oil_t one = {0};
        bool one_exact;
        bson_iter_recurse(&it, &br);
        bson_iter_next(&br);
        ms__translate(bson_iter_value(&br), &one, &one_exact);
        for (size_t k = 0; k < one.n; k++) {
            ms__oil_append(&all, &one.iv[k]);
        }
        exact = exact && one_exact;
        ms__oil_free(&one);
    }
    ms__oil_unionize(&all);
    bool answered = constrain(b, path, &all, exact);
    ms__oil_free(&all);
    return answered;
}

/* One conjunct: bounds when the index holds its field; kept as residual unless answered. */
static void
conjunct(build_t *b, const char *key, const bson_value_t *v)
{
    bool answered = false;
    if (strcmp(key, "$or") == 0) {
        answered = b->ix && constrain_or(b, v);
    } else if (key[0] != '$' && b->ix) {
        ms_oil_t one = {0};
        bool exact;
        ms__translate(v, &one, &exact);
        answered = constrain(b, key, &one, exact);
        ms__oil_free(&one);
    }
    if (!answered) {
        b->exact = false; /* $expr, $nor, $where, ...: checked on the document */
        conjunct_add(&b->residual, key, v);
    }
}

static void
walk(build_t *b, const bson_t *filter, int depth)
{
    bson_iter_t it;
    if (depth > 20 || !bson_iter_init(&it, filter)) {
        b->exact = false;
        return;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(key, "$and") == 0 && v->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t ai;
            bson_t sub;
            bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len);
            while (bson_iter_next(&ai)) {
                const bson_value_t *e = bson_iter_value(&ai);
                if (e->value_type == BSON_TYPE_DOCUMENT &&
                    bson_init_static(&sub, e->value.v_doc.data, e->value.v_doc.data_len)) {
                    walk(b, &sub, depth + 1);
                }
            }
        } else if (strcmp(key, "$comment") != 0) {
            conjunct(b, key, v);
        }
    }
}

void
ms__filter_normalized(const bson_t *filter, bson_t *out)
{
    build_t st;
    memset(&st, 0, sizeof st);
    bson_init(&st.residual.arr);
    if (filter) {
        walk(&st, filter, 0);
    }
    bson_init(out);
    conjuncts_doc(&st.residual, out);
}

static void
describe(const ms_bounds_t *b, ms_bounds_info_t *info)
{
    info->point_prefix = 0;
    info->in_fields = 0;
    info->points = 1;
    for (size_t i = 0; i < b->nfields; i++) {
        info->bounded[i] = !ms__oil_is_all_values(&b->f[i]);
    }
    for (size_t i = 0; i < b->nfields; i++) {
        const ms_oil_t *o = &b->f[i];
        bool points = true;
        for (size_t k = 0; k < o->n && points; k++) {
            points = ms__interval_is_point(&o->iv[k]);
        }
        if (!points) {
            break;
        }
        info->point_prefix++;
        info->in_fields += o->n > 1;
        info->points = o->n == 0 ? 0 : info->points > 1000000000 / o->n ? 1000000000
                                                                        : info->points * o->n;
    }
}

void
ms__bounds_build(const ms_index_t *ix, const bson_t *filter, ms_bounds_t *b,
                 ms_bounds_info_t *info, bson_t *residual)
{
    build_t st = {ix, b, true, {BSON_INITIALIZER, 0}};
    memset(b, 0, sizeof *b);
    b->nfields = ix->nfields < MS_QUERY_MAX_FIELDS ? ix->nfields : MS_QUERY_MAX_FIELDS;
    for (size_t i = 0; i < b->nfields; i++) {
        ms__oil_all_values(&b->f[i]);
    }
    if (filter) {
        walk(&st, filter, 0);
    }
    memset(info, 0, sizeof *info);
    info->exact = st.exact && ix->nfields <= MS_QUERY_MAX_FIELDS;
    describe(b, info);
    if (residual) {
        conjuncts_doc(&st.residual, residual);
    } else {
        bson_destroy(&st.residual.arr);
    }
}

void
ms__bounds_destroy(ms_bounds_t *b)
{
    for (size_t i = 0; i < b->nfields; i++) {
        ms__oil_free(&b->f[i]);
    }
    b->nfields = 0;
}

void
ms__bounds_align(ms_bounds_t *b, const ms_index_t *ix, bool backward)
{
    for (size_t i = 0; i < b->nfields; i++) {
        if ((ix->dirs[i] < 0) != backward) {
            ms__oil_reverse(&b->f[i]);
        }
    }
}

/* An all-values field after the range: MinKey or MaxKey, as the range's ends are inclusive. */
static void
fill_all_values(const ms_interval_t *iv, bool start_inc, bool end_inc, bson_value_t *start,
                bson_value_t *end)
{
    bool ascending = iv->start.value_type == BSON_TYPE_MINKEY;
    bool start_min = start_inc == ascending;
    bool end_max = end_inc == ascending;
    *start = typed(start_min ? BSON_TYPE_MINKEY : BSON_TYPE_MAXKEY);
    *end = typed(end_max ? BSON_TYPE_MAXKEY : BSON_TYPE_MINKEY);
}

bool
ms__bounds_single(const ms_bounds_t *b, bson_value_t *start, bool *start_inc, bson_value_t *end,
                  bool *end_inc)
{
    size_t i = 0;
    *start_inc = *end_inc = true;
    for (; i < b->nfields && b->f[i].n == 1 && ms__interval_is_point(&b->f[i].iv[0]); i++) {
        start[i] = b->f[i].iv[0].start;
        end[i] = b->f[i].iv[0].end;
    }
    if (i == b->nfields) {
        return true;
    }
    if (b->f[i].n != 1) {
        return false;
    }
    start[i] = b->f[i].iv[0].start;
    end[i] = b->f[i].iv[0].end;
    *start_inc = b->f[i].iv[0].start_inc;
    *end_inc = b->f[i].iv[0].end_inc;
    for (i++; i < b->nfields; i++) {
        if (!ms__oil_is_all_values(&b->f[i])) {
            return false;
        }
        fill_all_values(&b->f[i].iv[0], *start_inc, *end_inc, &start[i], &end[i]);
    }
    return true;
}

/* ---- explain's form ------------------------------------------------------------------------ */

/* Interval::toString: "[" or "(", the ends as BSONElement::toString prints them. */
static char *
interval_string(const ms_interval_t *iv)
{
    char *a = ms_render_value(&iv->start);
    char *b = ms_render_value(&iv->end);
    char *s = bson_strdup_printf("%s%s, %s%s", iv->start_inc ? "[" : "(", a, b,
                                 iv->end_inc ? "]" : ")");
    bson_free(a);
    bson_free(b);
    return s;
}

void
ms__bounds_append(const ms_bounds_t *b, const ms_index_t *ix, bson_t *parent, const char *key)
{
    bson_t doc, arr;
    bson_append_document_begin(parent, key, -1, &doc);
    for (size_t i = 0; i < b->nfields; i++) {
        bson_append_array_begin(&doc, ix->paths[i], -1, &arr);
        for (size_t k = 0; k < b->f[i].n; k++) {
            char idx[16];
            const char *kk;
            char *s = interval_string(&b->f[i].iv[k]);
            bson_uint32_to_string((uint32_t)k, &kk, idx, sizeof idx);
            BSON_APPEND_UTF8(&arr, kk, s);
            bson_free(s);
        }
        bson_append_array_end(&doc, &arr);
    }
    bson_append_document_end(parent, &doc);
}

void
ms__key_append(const ms_index_t *ix, const bson_value_t *keys, bson_t *parent, const char *key)
{
    bson_t doc;
    bson_append_document_begin(parent, key, -1, &doc);
    for (size_t i = 0; i < ix->nfields && i < MS_QUERY_MAX_FIELDS; i++) {
        bson_append_value(&doc, ix->paths[i], -1, &keys[i]);
    }
    bson_append_document_end(parent, &doc);
}

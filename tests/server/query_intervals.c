/*
 * Interval lists as mongod builds them for one index field (src/mongo/db/query/
 * index_bounds_builder.cpp, interval.cpp): mongod's OrderedIntervalList, and the bounds of one
 * predicate on a field:
 *   - equality: a point [v, v]; null gives two points, [undefined, undefined] and [null, null],
 *     and needs a FETCH with the filter (the index does not tell a null from a missing field);
 *   - $in: the union of its elements' points;
 *   - $gt/$gte/$lt/$lte: a range to the end of the operand's type ("type bracketing"): numbers
 *     to -inf/inf, strings to "" and {}, dates to new Date(-9223372036854775808) ...;
 *   - what this server does not bound ($ne, $exists, $regex, ...): [MinKey, MaxKey], inexact.
 * Lists are built ascending in value order; a field scanned descending is reversed
 * (ms__oil_reverse), as explain shows it ("[MaxKey, MinKey]").
 */
#include "lang-private.h"
#include "query-private.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static const uint8_t empty_bson[5] = {5, 0, 0, 0, 0};
static const uint8_t oid_zero[12] = {0};
static const uint8_t oid_max[12] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static bson_value_t
typed(bson_type_t t)
{
    bson_value_t v;
    memset(&v, 0, sizeof v);
    v.value_type = t;
    return v;
}

static bson_value_t
number(double d)
{
    bson_value_t v = typed(BSON_TYPE_DOUBLE);
    v.value.v_double = d;
    return v;
}

static bson_value_t
empty_container(bson_type_t t)
{
    bson_value_t v = typed(t);
    v.value.v_doc.data = (uint8_t *)empty_bson;
    v.value.v_doc.data_len = sizeof empty_bson;
    return v;
}

/* ---- interval lists ---------------------------------------------------------------------- */

void
ms__oil_append(ms_oil_t *o, const ms_interval_t *iv)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 4;
        o->iv = bson_realloc(o->iv, sizeof *o->iv * o->cap);
    }
    o->iv[o->n++] = *iv;
}

void
ms__oil_push(ms_oil_t *o, const bson_value_t *start, bool start_inc, const bson_value_t *end,
             bool end_inc)
{
    int c = ms_value_cmp(start, end);
    if (c > 0 || (c == 0 && !(start_inc && end_inc))) {
        return; /* [x, x) and the like are empty */
    }
    ms__oil_append(o, &(ms_interval_t){*start, *end, start_inc, end_inc});
}

void
ms__oil_all_values(ms_oil_t *o)
{
    bson_value_t lo = typed(BSON_TYPE_MINKEY), hi = typed(BSON_TYPE_MAXKEY);
    o->n = 0;
    ms__oil_push(o, &lo, true, &hi, true);
}

void
ms__oil_free(ms_oil_t *o)
{
    bson_free(o->iv);
    memset(o, 0, sizeof *o);
}

bool
ms__interval_is_point(const ms_interval_t *iv)
{
    return iv->start_inc && iv->end_inc && ms_value_cmp(&iv->start, &iv->end) == 0;
}

bool
ms__oil_is_all_values(const ms_oil_t *o)
{
    if (o->n != 1 || !o->iv[0].start_inc || !o->iv[0].end_inc) {
        return false;
    }
    bson_type_t a = o->iv[0].start.value_type, b = o->iv[0].end.value_type;
    return (a == BSON_TYPE_MINKEY && b == BSON_TYPE_MAXKEY) ||
           (a == BSON_TYPE_MAXKEY && b == BSON_TYPE_MINKEY);
}

/* Intervals by start, the inclusive one first (IntervalComparison). */
static int
interval_order(const void *pa, const void *pb)
{
    const ms_interval_t *a = pa, *b = pb;
    int c = ms_value_cmp(&a->start, &b->start);
    if (c) {
        return c;
    }
    return a->start_inc == b->start_inc ? 0 : a->start_inc ? -1 : 1;
}

/* IndexBoundsBuilder::unionize: sorted, overlapping or touching intervals merged. */
void
ms__oil_unionize(ms_oil_t *o)
{
    if (o->n < 2) {
        return;
    }
    qsort(o->iv, o->n, sizeof *o->iv, interval_order);
    size_t w = 0;
    for (size_t r = 1; r < o->n; r++) {
        ms_interval_t *cur = &o->iv[w], *next = &o->iv[r];
        int c = ms_value_cmp(&cur->end, &next->start);
        if (c > 0 || (c == 0 && (cur->end_inc || next->start_inc))) {
            int e = ms_value_cmp(&next->end, &cur->end);
            if (e > 0 || (e == 0 && next->end_inc)) {
                cur->end = next->end;
                cur->end_inc = next->end_inc;
            }
        } else {
            o->iv[++w] = *next;
        }
    }
    o->n = w + 1;
}

/* *into = *into intersected with other (both ascending and disjoint). */
void
ms__oil_intersect(ms_oil_t *into, const ms_oil_t *other)
{
    ms_oil_t out = {0};
    size_t i = 0, j = 0;
    while (i < into->n && j < other->n) {
        const ms_interval_t *a = &into->iv[i], *b = &other->iv[j];
        int s = ms_value_cmp(&a->start, &b->start);
        const ms_interval_t *later_start = s > 0 || (s == 0 && !a->start_inc) ? a : b;
        int e = ms_value_cmp(&a->end, &b->end);
        const ms_interval_t *earlier_end = e < 0 || (e == 0 && !a->end_inc) ? a : b;
        ms__oil_push(&out, &later_start->start, later_start->start_inc, &earlier_end->end,
                     earlier_end->end_inc);
        if (earlier_end == a) {
            i++;
        } else {
            j++;
        }
    }
    ms__oil_free(into);
    *into = out;
}

void
ms__oil_reverse(ms_oil_t *o)
{
    for (size_t a = 0, b = o->n; a < b; a++, b--) {
        ms_interval_t x = o->iv[a], y = o->iv[b - 1];
        o->iv[a] = (ms_interval_t){y.end, y.start, y.end_inc, y.start_inc};
        o->iv[b - 1] = (ms_interval_t){x.end, x.start, x.end_inc, x.start_inc};
    }
}

/* ---- translating predicates -------------------------------------------------------------- */

static bool
is_nan(const bson_value_t *v)
{
    return ms__is_number(v->value_type) && isnan(ms__num_as_double(v));
}

/*
 * The far end of v's type for a one-sided range (BSONObjBuilder::appendMinForType /
 * appendMaxForType; numbers use -inf/inf) and whether it is inclusive (typeMatch: the same
 * canonical type). False for types this server does not bound (the field gets all values).
 */
static bool
type_bracket(const bson_value_t *v, bool lower, bson_value_t *out, bool *inc)
{
    *inc = true;
    switch (v->value_type) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        *out = number(lower ? -INFINITY : INFINITY);
        return true;
    case BSON_TYPE_UTF8:
    case BSON_TYPE_SYMBOL:
        if (lower) {
            *out = typed(BSON_TYPE_UTF8);
            out->value.v_utf8.str = (char *)"";
        } else {
            *out = empty_container(BSON_TYPE_DOCUMENT);
            *inc = false;
        }
        return true;
    case BSON_TYPE_OID:
        *out = typed(BSON_TYPE_OID);
        memcpy(out->value.v_oid.bytes, lower ? oid_zero : oid_max, 12);
        return true;
    case BSON_TYPE_BOOL:
        *out = typed(BSON_TYPE_BOOL);
        out->value.v_bool = !lower;
        return true;
    case BSON_TYPE_DATE_TIME:
        *out = typed(BSON_TYPE_DATE_TIME);
        out->value.v_datetime = lower ? INT64_MIN : INT64_MAX;
        return true;
    case BSON_TYPE_TIMESTAMP:
        *out = typed(BSON_TYPE_TIMESTAMP);
        out->value.v_timestamp.timestamp = lower ? 0 : UINT32_MAX;
        out->value.v_timestamp.increment = lower ? 0 : UINT32_MAX;
        return true;
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        *out = typed(v->value_type);
        return true;
    default:
        return false;
    }
}

/* Indexability::isExactBoundsGenerating for a comparison's operand. */
static bool
exact_operand(const bson_value_t *v)
{
    return v->value_type != BSON_TYPE_NULL && v->value_type != BSON_TYPE_UNDEFINED &&
           v->value_type != BSON_TYPE_ARRAY && v->value_type != BSON_TYPE_DOCUMENT &&
           v->value_type != BSON_TYPE_REGEX;
}

/* translateEquality: a point; null two points and a fetch; what bounds cannot answer, all. */
static void
translate_eq(const bson_value_t *v, ms_oil_t *out, bool *exact)
{
    *exact = true;
    if (v->value_type == BSON_TYPE_NULL) {
        bson_value_t u = typed(BSON_TYPE_UNDEFINED), n = typed(BSON_TYPE_NULL);
        ms__oil_push(out, &u, true, &u, true);
        ms__oil_push(out, &n, true, &n, true);
        *exact = false;
        return;
    }
    if (v->value_type == BSON_TYPE_ARRAY || v->value_type == BSON_TYPE_REGEX ||
        v->value_type == BSON_TYPE_UNDEFINED) {
        ms__oil_all_values(out);
        *exact = false;
        return;
    }
    ms__oil_push(out, v, true, v, true);
}

static void
translate_in(const bson_value_t *array, ms_oil_t *out, bool *exact)
{
    bson_iter_t it;
    *exact = true;
    if (array->value_type != BSON_TYPE_ARRAY ||
        !bson_iter_init_from_data(&it, array->value.v_doc.data, array->value.v_doc.data_len)) {
        ms__oil_all_values(out);
        *exact = false;
        return;
    }
    while (bson_iter_next(&it)) {
        const bson_value_t *e = bson_iter_value(&it);
        bool e_exact;
        if (e->value_type == BSON_TYPE_ARRAY || e->value_type == BSON_TYPE_REGEX ||
            e->value_type == BSON_TYPE_UNDEFINED) {
            ms__oil_all_values(out);
            *exact = false;
            return;
        }
        translate_eq(e, out, &e_exact);
        *exact = *exact && e_exact;
    }
    ms__oil_unionize(out);
}

/* $lt/$lte (upper) and $gt/$gte (lower) on d. */
static void
translate_range(const bson_value_t *d, bool upper, bool inclusive, ms_oil_t *out, bool *exact)
{
    bson_value_t far;
    bool far_inc;
    *exact = exact_operand(d);
    if (d->value_type == (upper ? BSON_TYPE_MAXKEY : BSON_TYPE_MINKEY)) {
        ms__oil_all_values(out); /* everything is <= MaxKey, >= MinKey */
        *exact = true;
        return;
    }
    if (is_nan(d)) {
        if (inclusive) { /* only NaN is <= NaN; nothing is < NaN */
            ms__oil_push(out, d, true, d, true);
        }
        *exact = true;
        return;
    }
    if (d->value_type == BSON_TYPE_NULL) {
        if (inclusive) { /* $lte/$gte null: the same as {$eq: null} */
            translate_eq(d, out, exact);
        }
        *exact = false;
        return;
    }
    if (!type_bracket(d, upper, &far, &far_inc)) { /* $lt: from the type's min */
        ms__oil_all_values(out);
        *exact = false;
        return;
    }
    if (upper) {
        ms__oil_push(out, &far, far_inc, d, inclusive);
    } else {
        ms__oil_push(out, d, inclusive, &far, far_inc);
    }
}

/* The bounds of one predicate on a field: a value (equality) or an operator document. */
void
ms__translate(const bson_value_t *v, ms_oil_t *out, bool *exact)
{
    bson_iter_t it;
    out->n = 0;
    if (!ms__is_operator_doc(v)) {
        translate_eq(v, out, exact);
        return;
    }
    ms__oil_all_values(out);
    *exact = true;
    bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *op = bson_iter_key(&it);
        const bson_value_t *arg = bson_iter_value(&it);
        ms_oil_t one = {0};
        bool one_exact = false;
        if (strcmp(op, "$eq") == 0) {
            translate_eq(arg, &one, &one_exact);
        } else if (strcmp(op, "$in") == 0) {
            translate_in(arg, &one, &one_exact);
        } else if (strcmp(op, "$lt") == 0 || strcmp(op, "$lte") == 0) {
            translate_range(arg, true, op[3] == 'e', &one, &one_exact);
        } else if (strcmp(op, "$gt") == 0 || strcmp(op, "$gte") == 0) {
            translate_range(arg, false, op[3] == 'e', &one, &one_exact);
        } else {
            ms__oil_all_values(&one); /* $ne, $exists, $type, $regex, ...: not bounded here */
        }
        ms__oil_intersect(out, &one);
        ms__oil_free(&one);
        *exact = *exact && one_exact;
    }
}

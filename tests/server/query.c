/*
 * Query planning and execution. An index is used when the filter pins a prefix of its fields
 * (equality, or $in: one point interval per value), puts a range on the next one, or when it
 * yields the requested sort order after that prefix (Equality, Sort, Range). A top-level $or
 * whose every branch can use an index becomes an OR plan: the union of the branch scans,
 * deduplicated by record (mongod's OR stage); one branch that cannot means a collection scan, as
 * in mongod. The filter is always re-checked on every candidate document, so the index only
 * narrows the scan and never changes the results.
 */
#include "store-private.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 32
/* Point intervals of one scan ($in values multiplied across fields) before $in stops pinning. */
#define MAX_POINTS 1000000

typedef struct {
    const ms_index_t *ix;
    size_t eq;                        /* leading fields pinned to points */
    bson_value_t eqv[MAX_FIELDS + 1]; /* the point being scanned (equality: its value) */
    bson_value_t in[MAX_FIELDS];      /* a field's $in array (borrowed from the filter) */
    bool is_in[MAX_FIELDS];
    size_t npoints[MAX_FIELDS]; /* values of each pinned field ($in elements; 1 for equality) */
    size_t combos;              /* point intervals: the product of npoints */
    size_t in_fields;
    bool sort_ok;
    bool backward;
    bool range;
    bson_value_t lo, hi;
    bool lo_inc, hi_inc, has_lo, has_hi;
    long score;
} cand_t;

/* The branches of a top-level $or, each with the index scan that serves it. */
typedef struct {
    bson_value_t branches; /* the $or array, borrowed from the filter */
    bool rooted;           /* the filter is the $or alone (mongod plans it with SUBPLAN) */
    cand_t *cands;
    size_t n;
} or_plan_t;

void
ms_recvec_destroy(ms_recvec_t *v)
{
    bson_free(v->recs);
    memset(v, 0, sizeof *v);
}

static void
recvec_push(ms_recvec_t *v, ms_rec_t *r)
{
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 16;
        v->recs = bson_realloc(v->recs, sizeof *v->recs * v->cap);
    }
    v->recs[v->len++] = r;
}

static bool
usable_equality(const bson_value_t *v)
{
    if (v->value_type == BSON_TYPE_REGEX || v->value_type == BSON_TYPE_ARRAY ||
        v->value_type == BSON_TYPE_UNDEFINED) {
        return false;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_t d;
        bson_iter_t it;
        if (bson_init_static(&d, v->value.v_doc.data, v->value.v_doc.data_len) &&
            bson_iter_init(&it, &d) && bson_iter_next(&it) && bson_iter_key(&it)[0] == '$') {
            return false;
        }
    }
    return true;
}

/* Whether every element of a $in array can be an index point; *n: how many there are. */
static bool
usable_in(const bson_value_t *array, size_t *n)
{
    bson_iter_t it;
    *n = 0;
    if (!bson_iter_init_from_data(&it, array->value.v_doc.data, array->value.v_doc.data_len)) {
        return false;
    }
    while (bson_iter_next(&it)) {
        if (!usable_equality(bson_iter_value(&it)) || ++*n > MAX_POINTS) {
            return false;
        }
    }
    return true;
}

/* Pins the next index field by equality or $in; false when the filter does neither. */
static bool
pin_field(cand_t *c, const bson_t *filter)
{
    size_t i = c->eq, n;
    const char *path = c->ix->paths[i];
    if (ms_filter_equality(filter, path, &c->eqv[i]) && usable_equality(&c->eqv[i])) {
        c->npoints[i] = 1;
        return true;
    }
    if (!ms_filter_in(filter, path, &c->in[i]) || !usable_in(&c->in[i], &n) ||
        (n > 0 && c->combos > MAX_POINTS / n)) {
        return false;
    }
    c->is_in[i] = true;
    c->npoints[i] = n;
    c->combos *= n;
    c->in_fields++;
    return true;
}

/* Whether field is pinned to a single value (constant across the scan). */
static bool
fixed_field(const cand_t *c, const char *field)
{
    for (size_t i = 0; i < c->eq; i++) {
        if (c->npoints[i] == 1 && strcmp(c->ix->paths[i], field) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Whether scanning c's index yields sort's order. Fields pinned to one value are constant and
 * may appear anywhere in the sort; every other sort field must follow the index from its first
 * field that is not constant ($in points are scanned in index order, so they count as sorted).
 */
static bool
sort_served(cand_t *c, const bson_t *sort)
{
    bson_iter_t it;
    size_t k = 0;
    int sign = 0;
    c->backward = false;
    if (!sort || bson_empty(sort)) {
        return true;
    }
    bson_iter_init(&it, sort);
    while (bson_iter_next(&it)) {
        const char *field = bson_iter_key(&it);
        if (!BSON_ITER_HOLDS_NUMBER(&it)) {
            return false;
        }
        if (fixed_field(c, field)) {
            continue;
        }
        while (k < c->eq && c->npoints[k] == 1) {
            k++;
        }
        if (k >= c->ix->nfields || strcmp(field, c->ix->paths[k]) != 0) {
            return false;
        }
        int s = (bson_iter_as_double(&it) > 0 ? 1 : -1) * c->ix->dirs[k];
        if (sign && s != sign) {
            return false;
        }
        sign = s;
        k++;
    }
    c->backward = sign < 0;
    return true;
}

/* Every field of a unique index pinned: each point is at most one document. */
static bool
pins_unique(const cand_t *c)
{
    return c->ix && c->ix->unique && c->eq == c->ix->nfields;
}

static void
analyse(const ms_index_t *ix, const ms_query_t *q, cand_t *c)
{
    memset(c, 0, sizeof *c);
    c->ix = ix;
    c->combos = 1;
    const bson_t *filter = q->filter;
    while (filter && c->eq < ix->nfields && c->eq < MAX_FIELDS && pin_field(c, filter)) {
        c->eq++;
    }
    if (filter && c->eq < ix->nfields) {
        c->range = ms_filter_range(filter, ix->paths[c->eq], &c->lo, &c->lo_inc, &c->has_lo,
                                   &c->hi, &c->hi_inc, &c->has_hi);
    }
    c->sort_ok = sort_served(c, q->sort);
    bool has_sort = q->sort && !bson_empty(q->sort);
    if (pins_unique(c)) {
        /* One point beats many; a few points still beat any scan of a range. */
        c->score = 1000000000L - (long)c->combos;
    } else if (c->eq == 0 && !c->range && !(has_sort && c->sort_ok)) {
        c->score = -1;
    } else {
        c->score = (has_sort && c->sort_ok ? (q->limit ? 100000 : 60) : 0) + (long)c->eq * 100 -
                   (long)c->in_fields * 10 + (c->range ? 50 : 0) - (long)ix->nfields;
    }
}

static bool
find_hinted(const ms_coll_t *coll, const bson_value_t *hint, const ms_index_t **out,
            bool *natural, bool *natural_backward, bson_error_t *error)
{
    *out = NULL;
    *natural = false;
    if (hint->value_type == BSON_TYPE_UTF8) {
        *out = ms_coll_index_by_name(coll, hint->value.v_utf8.str);
    } else if (hint->value_type == BSON_TYPE_DOCUMENT) {
        bson_t h;
        bson_iter_t it;
        bson_init_static(&h, hint->value.v_doc.data, hint->value.v_doc.data_len);
        if (bson_empty(&h)) {
            return true; /* {} means no hint */
        }
        if (bson_iter_init_find(&it, &h, "$natural")) {
            *natural = true;
            *natural_backward = bson_iter_as_double(&it) < 0;
            return true;
        }
        for (size_t i = 0; i < coll->nindexes && !*out; i++) {
            if (bson_equal(coll->indexes[i]->key, &h)) {
                *out = coll->indexes[i];
            }
        }
    }
    if (!*out) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "hint provided does not correspond to an existing index");
    }
    return true;
}

/* The best index for q by the rules above; ix NULL when none is worth scanning. */
static void
best_index(const ms_coll_t *coll, const ms_query_t *q, cand_t *best)
{
    cand_t c;
    best->ix = NULL;
    best->score = -1;
    for (size_t i = 0; i < coll->nindexes; i++) {
        const ms_index_t *ix = coll->indexes[i];
        if (ix->multikey || ix->partial || ix->sparse) {
            continue;
        }
        analyse(ix, q, &c);
        if (c.score > best->score) {
            *best = c;
        }
    }
    if (best->score < 0) {
        best->ix = NULL;
    }
}

/* The first $or at the top level of filter or inside its top-level $and. */
static bool
find_or(const bson_t *filter, bson_value_t *branches, bool *rooted, int depth)
{
    bson_iter_t it;
    bson_t sub;
    if (!filter || depth > 1 || !bson_iter_init(&it, filter)) {
        return false;
    }
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(key, "$or") == 0 && v->value_type == BSON_TYPE_ARRAY) {
            *branches = *v;
            *rooted = depth == 0 && bson_count_keys(filter) == 1;
            return true;
        }
        if (strcmp(key, "$and") != 0 || v->value_type != BSON_TYPE_ARRAY) {
            continue;
        }
        bson_iter_t ai;
        bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len);
        while (bson_iter_next(&ai)) {
            const bson_value_t *e = bson_iter_value(&ai);
            if (e->value_type == BSON_TYPE_DOCUMENT &&
                bson_init_static(&sub, e->value.v_doc.data, e->value.v_doc.data_len) &&
                find_or(&sub, branches, rooted, depth + 1)) {
                *rooted = false;
                return true;
            }
        }
    }
    return false;
}

static uint32_t
array_len(const bson_value_t *array)
{
    bson_iter_t it;
    uint32_t n = 0;
    bson_iter_init_from_data(&it, array->value.v_doc.data, array->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        n++;
    }
    return n;
}

static void
or_plan_destroy(or_plan_t *o)
{
    bson_free(o->cands);
    o->cands = NULL;
    o->n = 0;
}

/* Plans every branch of o->branches; false (o emptied) when some branch cannot use an index. */
static bool
plan_or(const ms_coll_t *coll, or_plan_t *o)
{
    bson_iter_t it;
    bson_t branch;
    o->n = 0;
    o->cands = NULL;
    uint32_t count = array_len(&o->branches);
    if (count == 0) {
        return false;
    }
    o->cands = bson_malloc(sizeof *o->cands * count);
    bson_iter_init_from_data(&it, o->branches.value.v_doc.data, o->branches.value.v_doc.data_len);
    while (bson_iter_next(&it) && o->n < count) {
        const bson_value_t *v = bson_iter_value(&it);
        if (v->value_type != BSON_TYPE_DOCUMENT ||
            !bson_init_static(&branch, v->value.v_doc.data, v->value.v_doc.data_len)) {
            break;
        }
        ms_query_t bq = {&branch, NULL, NULL, 0, 0, NULL};
        best_index(coll, &bq, &o->cands[o->n]);
        if (!o->cands[o->n].ix) {
            break;
        }
        o->n++;
    }
    if (o->n < count) {
        or_plan_destroy(o);
        return false;
    }
    return true;
}

/*
 * Picks the access path: a hinted index, an index for the whole filter, or an OR plan (*orp
 * non-empty). An index that pins a unique key wins over an OR plan; otherwise an $or whose
 * branches all use indexes is preferred to scanning the other conditions' index.
 */
static bool
choose(const ms_coll_t *coll, const ms_query_t *q, cand_t *best, or_plan_t *orp,
       bool *natural_backward, bson_error_t *error)
{
    const ms_index_t *hinted = NULL;
    bool natural = false;
    *natural_backward = false;
    best->ix = NULL;
    orp->n = 0;
    orp->cands = NULL;
    if (q->hint && !find_hinted(coll, q->hint, &hinted, &natural, natural_backward, error)) {
        return false;
    }
    if (natural) {
        return true;
    }
    if (hinted) {
        if (!hinted->multikey) {
            analyse(hinted, q, best);
        }
        return true;
    }
    best_index(coll, q, best);
    if (!pins_unique(best) && find_or(q->filter, &orp->branches, &orp->rooted, 0) &&
        plan_or(coll, orp)) {
        best->ix = NULL;
    }
    return true;
}

/* -1: below the range, 0: inside, 1: above. */
static int
range_pos(const cand_t *c, const bson_value_t *v)
{
    if (c->has_lo) {
        int r = ms_value_cmp(v, &c->lo);
        if (r < 0 || (r == 0 && !c->lo_inc)) {
            return -1;
        }
    }
    if (c->has_hi) {
        int r = ms_value_cmp(v, &c->hi);
        if (r > 0 || (r == 0 && !c->hi_inc)) {
            return 1;
        }
    }
    return 0;
}

/* The first entry of the scan, in scan order. */
static ms_ientry_t *
scan_start(const cand_t *c)
{
    const ms_index_t *ix = c->ix;
    bson_value_t bound[MAX_FIELDS + 1];
    memcpy(bound, c->eqv, sizeof *bound * c->eq);
    int d = c->eq < ix->nfields ? ix->dirs[c->eq] : 1;
    /* In index order the range starts at lo when the field ascends, at hi when it descends. */
    bool first_is_lo = d > 0;
    if (!c->backward) {
        if (c->range && (first_is_lo ? c->has_lo : c->has_hi)) {
            bound[c->eq] = first_is_lo ? c->lo : c->hi;
            return ms_index_seek(ix, bound, c->eq + 1, !(first_is_lo ? c->lo_inc : c->hi_inc));
        }
        return ms_index_seek(ix, bound, c->eq, false);
    }
    ms_ientry_t *after;
    if (c->range && (first_is_lo ? c->has_hi : c->has_lo)) {
        bound[c->eq] = first_is_lo ? c->hi : c->lo;
        after = ms_index_seek(ix, bound, c->eq + 1, first_is_lo ? c->hi_inc : c->lo_inc);
    } else if (c->eq > 0) {
        after = ms_index_seek(ix, bound, c->eq, true);
    } else {
        return ms_index_last(ix);
    }
    return after ? ms_ientry_next(after, true) : ms_index_last(ix);
}

/* Records already offered (an OR plan's branches may find the same one): open addressing. */
typedef struct {
    const ms_rec_t **slots;
    size_t cap; /* a power of two */
    size_t len;
} recset_t;

static size_t
recset_slot(const recset_t *set, const ms_rec_t *rec)
{
    size_t h = (size_t)((uintptr_t)rec >> 4) * (size_t)0x9E3779B97F4A7C15ULL;
    size_t i = h & (set->cap - 1);
    while (set->slots[i] && set->slots[i] != rec) {
        i = (i + 1) & (set->cap - 1);
    }
    return i;
}

/* Adds rec; false when it was there already. */
static bool
recset_add(recset_t *set, const ms_rec_t *rec)
{
    if (2 * (set->len + 1) > set->cap) {
        recset_t bigger = {bson_malloc0(sizeof *set->slots * (set->cap ? set->cap * 2 : 64)),
                           set->cap ? set->cap * 2 : 64, 0};
        for (size_t i = 0; i < set->cap; i++) {
            if (set->slots[i]) {
                bigger.slots[recset_slot(&bigger, set->slots[i])] = set->slots[i];
                bigger.len++;
            }
        }
        bson_free(set->slots);
        *set = bigger;
    }
    size_t i = recset_slot(set, rec);
    if (set->slots[i]) {
        return false;
    }
    set->slots[i] = rec;
    set->len++;
    return true;
}

typedef struct {
    const ms_query_t *q;
    const ms_matcher_t *m;
    ms_recvec_t *out;
    int64_t skipped;
    bool streaming; /* skip/limit applied as we go (no in-memory sort) */
    ms_plan_t *plan;
    recset_t *seen; /* deduplication across an OR plan's branches, else NULL */
} sink_t;

/* Offers a record; returns false once the limit is reached. */
static bool
sink_offer(sink_t *s, ms_rec_t *rec)
{
    bson_t view;
    if (s->seen && !recset_add(s->seen, rec)) {
        return true; /* the filter was already checked on it */
    }
    s->plan->docs_examined++;
    ms_doc_view(rec->doc, &view);
    if (s->m && !ms_matcher_matches(s->m, &view, s->q->ctx)) {
        return true;
    }
    if (s->streaming && s->skipped < s->q->skip) {
        s->skipped++;
        return true;
    }
    recvec_push(s->out, rec);
    return !(s->streaming && s->q->limit > 0 && (int64_t)s->out->len >= s->q->limit);
}

/* Scans the interval of the point in c->eqv; false once the sink wants no more. */
static bool
index_scan(const cand_t *c, sink_t *s)
{
    const ms_index_t *ix = c->ix;
    int d = c->eq < ix->nfields ? ix->dirs[c->eq] : 1;
    bool values_ascend = (d > 0) != c->backward;
    for (ms_ientry_t *e = scan_start(c); e; e = ms_ientry_next(e, c->backward)) {
        const bson_value_t *keys = ms_ientry_keys(e);
        s->plan->keys_examined++;
        bool same_prefix = true;
        for (size_t i = 0; i < c->eq && same_prefix; i++) {
            same_prefix = ms_value_cmp(&keys[i], &c->eqv[i]) == 0;
        }
        if (!same_prefix) {
            break;
        }
        if (c->range) {
            int pos = range_pos(c, &keys[c->eq]);
            if ((pos > 0 && values_ascend) || (pos < 0 && !values_ascend)) {
                break;
            }
            if (pos != 0) {
                continue;
            }
        }
        if (!sink_offer(s, ms_ientry_rec(e))) {
            return false;
        }
        if (pins_unique(c)) {
            return true; /* a unique key has one entry: no need to look at the next */
        }
    }
    return true;
}

typedef struct {
    bson_value_t *v;
    size_t n;
} points_t;

static int
value_qsort_cmp(const void *a, const void *b)
{
    return ms_value_cmp(a, b);
}

/* Pinned field i's values, distinct, in the order a forward scan of the index meets them. */
static void
field_points(const cand_t *c, size_t i, points_t *p)
{
    bson_iter_t it;
    p->n = 0;
    p->v = bson_malloc(sizeof *p->v * (c->npoints[i] ? c->npoints[i] : 1));
    if (!c->is_in[i]) {
        p->v[p->n++] = c->eqv[i];
        return;
    }
    bson_iter_init_from_data(&it, c->in[i].value.v_doc.data, c->in[i].value.v_doc.data_len);
    while (bson_iter_next(&it) && p->n < c->npoints[i]) {
        p->v[p->n++] = *bson_iter_value(&it);
    }
    qsort(p->v, p->n, sizeof *p->v, value_qsort_cmp);
    size_t w = 0;
    for (size_t r = 0; r < p->n; r++) {
        if (w == 0 || ms_value_cmp(&p->v[w - 1], &p->v[r]) != 0) {
            p->v[w++] = p->v[r];
        }
    }
    p->n = w;
    for (size_t a = 0, b = w; c->ix->dirs[i] < 0 && a + 1 < b; a++, b--) {
        bson_value_t t = p->v[a];
        p->v[a] = p->v[b - 1];
        p->v[b - 1] = t;
    }
}

/* The next combination of points (the last field moves fastest); false after the last. */
static bool
next_point(size_t *idx, const points_t *pts, size_t nfields)
{
    for (size_t i = nfields; i > 0; i--) {
        if (++idx[i - 1] < pts[i - 1].n) {
            return true;
        }
        idx[i - 1] = 0;
    }
    return false;
}

/*
 * Scans every point interval of c in index order (reversed for a backward scan), so the union
 * keeps the index's order. A non-multikey index has one entry per record, so distinct points
 * never yield a record twice.
 */
static bool
scan_points(const cand_t *c, sink_t *s)
{
    points_t pts[MAX_FIELDS];
    size_t idx[MAX_FIELDS] = {0};
    cand_t *cur = bson_malloc(sizeof *cur);
    bool more = c->combos > 0;
    bool go_on = true;
    *cur = *c;
    for (size_t i = 0; i < c->eq; i++) {
        field_points(c, i, &pts[i]);
    }
    while (more && go_on) {
        for (size_t i = 0; i < c->eq; i++) {
            cur->eqv[i] = pts[i].v[c->backward ? pts[i].n - 1 - idx[i] : idx[i]];
        }
        go_on = index_scan(cur, s);
        more = next_point(idx, pts, c->eq);
    }
    for (size_t i = 0; i < c->eq; i++) {
        bson_free(pts[i].v);
    }
    bson_free(cur);
    return go_on;
}

static _Thread_local const bson_t *sort_spec;

/* No bson_t inside: it wants 128-byte alignment, which a malloc'ed array does not give. */
typedef struct {
    ms_rec_t *rec;
    size_t pos;
} sort_item_t;

static int
sort_item_cmp(const void *a, const void *b)
{
    const sort_item_t *x = a, *y = b;
    bson_t xv, yv;
    ms_doc_view(x->rec->doc, &xv);
    ms_doc_view(y->rec->doc, &yv);
    int c = ms_sort_cmp(sort_spec, &xv, &yv);
    if (c) {
        return c;
    }
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void
sort_and_slice(const ms_query_t *q, ms_recvec_t *v)
{
    sort_item_t *items = bson_malloc(sizeof *items * (v->len ? v->len : 1));
    for (size_t i = 0; i < v->len; i++) {
        items[i].rec = v->recs[i];
        items[i].pos = i;
    }
    sort_spec = q->sort;
    qsort(items, v->len, sizeof *items, sort_item_cmp);
    size_t from = q->skip > 0 ? (size_t)q->skip : 0;
    size_t n = 0;
    for (size_t i = from; i < v->len; i++) {
        if (q->limit > 0 && (int64_t)n >= q->limit) {
            break;
        }
        v->recs[n++] = items[i].rec;
    }
    v->len = n;
    bson_free(items);
}

/* Runs the chosen access path into the sink. */
static void
run_plan(const ms_coll_t *coll, const cand_t *best, const or_plan_t *orp, bool natural_backward,
         sink_t *s)
{
    if (best->ix) {
        scan_points(best, s);
        return;
    }
    if (orp->n) {
        recset_t seen = {0};
        s->seen = &seen;
        for (size_t i = 0; i < orp->n && scan_points(&orp->cands[i], s); i++) {
        }
        s->seen = NULL;
        bson_free(seen.slots);
        return;
    }
    for (ms_rec_t *r = natural_backward ? coll->tail : coll->head; r;
         r = natural_backward ? r->prev : r->next) {
        if (!sink_offer(s, r)) {
            break;
        }
    }
}

static void
record_plan(const ms_coll_t *coll, const cand_t *best, const or_plan_t *orp, bool natural_backward,
            bool has_sort, ms_plan_t *plan)
{
    plan->index = best->ix;
    plan->backward = best->ix ? best->backward : natural_backward;
    plan->in_memory_sort = has_sort && !(best->ix && best->sort_ok);
    plan->eq_fields = best->ix ? best->eq : 0;
    plan->has_range = best->ix && best->range;
    plan->points = best->ix ? best->combos : 0;
    plan->is_or = orp->n > 0;
    if (plan->is_or) {
        plan->or_rooted = orp->rooted;
        plan->or_branches = orp->branches;
        plan->or_coll = coll;
    }
}

bool
ms_query_exec(const ms_coll_t *coll, const ms_query_t *q, ms_recvec_t *out, ms_plan_t *plan,
              bson_error_t *error)
{
    cand_t *best = NULL;
    or_plan_t orp = {0};
    bool natural_backward = false;
    bool ok = false;
    ms_matcher_t *m = NULL;
    memset(out, 0, sizeof *out);
    memset(plan, 0, sizeof *plan);
    bool has_sort = q->sort && !bson_empty(q->sort);
    if (has_sort && !ms_sort_validate(q->sort, error)) {
        goto done;
    }
    if (q->filter && !(m = ms_matcher_new(q->filter, error))) {
        goto done;
    }
    if (!coll) {
        ok = true;
        goto done;
    }
    best = bson_malloc(sizeof *best);
    if (!choose(coll, q, best, &orp, &natural_backward, error)) {
        goto done;
    }
    record_plan(coll, best, &orp, natural_backward, has_sort, plan);
    sink_t s = {q, m, out, 0, !plan->in_memory_sort, plan, NULL};
    run_plan(coll, best, &orp, natural_backward, &s);
    if (plan->in_memory_sort) {
        sort_and_slice(q, out);
    }
    ok = true;
done:
    or_plan_destroy(&orp);
    bson_free(best);
    ms_matcher_destroy(m);
    return ok;
}

static void
append_stage(bson_t *parent, const char *key, const char *stage, bson_t *child)
{
    bson_append_document_begin(parent, key, -1, child);
    BSON_APPEND_UTF8(child, "stage", stage);
}

/* FETCH (with filter, when there is one) over an IXSCAN of ix. */
static void
describe_ixscan(bson_t *parent, const char *key, const ms_index_t *ix, bool backward,
                const bson_t *filter)
{
    bson_t fetch, scan;
    append_stage(parent, key, "FETCH", &fetch);
    if (filter && !bson_empty(filter)) {
        BSON_APPEND_DOCUMENT(&fetch, "filter", filter);
    }
    append_stage(&fetch, "inputStage", "IXSCAN", &scan);
    BSON_APPEND_DOCUMENT(&scan, "keyPattern", ix->key);
    BSON_APPEND_UTF8(&scan, "indexName", ix->name);
    BSON_APPEND_BOOL(&scan, "isMultiKey", ix->multikey);
    BSON_APPEND_BOOL(&scan, "isUnique", ix->unique);
    BSON_APPEND_BOOL(&scan, "isSparse", ix->sparse);
    BSON_APPEND_BOOL(&scan, "isPartial", ix->partial != NULL);
    BSON_APPEND_UTF8(&scan, "direction", backward ? "backward" : "forward");
    bson_append_document_end(&fetch, &scan);
    bson_append_document_end(parent, &fetch);
}

/*
 * Whether mongod would show the OR as one index scan: a single branch, or branches that are each
 * one predicate on the same field, all served by the same index through that field (mongod
 * merges their bounds into one IXSCAN).
 */
static bool
or_collapses(const or_plan_t *o)
{
    bson_iter_t it, b;
    const char *field = NULL;
    if (o->n == 1) {
        return true;
    }
    bson_iter_init_from_data(&it, o->branches.value.v_doc.data, o->branches.value.v_doc.data_len);
    for (size_t i = 0; i < o->n && bson_iter_next(&it); i++) {
        if (!bson_iter_recurse(&it, &b) || !bson_iter_next(&b) || bson_iter_key(&b)[0] == '$' ||
            (field && strcmp(field, bson_iter_key(&b)) != 0) || bson_iter_next(&b) ||
            o->cands[i].ix != o->cands[0].ix || (o->cands[i].eq == 0 && !o->cands[i].range)) {
            return false;
        }
        bson_iter_recurse(&it, &b);
        bson_iter_next(&b);
        field = bson_iter_key(&b);
    }
    return field && strcmp(field, o->cands[0].ix->paths[0]) == 0;
}

/* OR over one FETCH + IXSCAN per branch (the branches planned again, as they were run). */
static void
describe_or(const ms_plan_t *plan, bson_t *parent, const char *key)
{
    bson_t or_stage, inputs, branch;
    bson_iter_t it;
    or_plan_t orp = {plan->or_branches, plan->or_rooted, NULL, 0};
    char idx[16];
    const char *k;
    if (!plan_or(plan->or_coll, &orp)) {
        append_stage(parent, key, "OR", &or_stage);
        bson_append_document_end(parent, &or_stage);
        return;
    }
    if (or_collapses(&orp)) {
        describe_ixscan(parent, key, orp.cands[0].ix, false, NULL);
        or_plan_destroy(&orp);
        return;
    }
    append_stage(parent, key, "OR", &or_stage);
    BSON_APPEND_ARRAY_BEGIN(&or_stage, "inputStages", &inputs);
    bson_iter_init_from_data(&it, orp.branches.value.v_doc.data, orp.branches.value.v_doc.data_len);
    for (uint32_t i = 0; i < orp.n && bson_iter_next(&it); i++) {
        const bson_value_t *v = bson_iter_value(&it);
        bson_init_static(&branch, v->value.v_doc.data, v->value.v_doc.data_len);
        bson_uint32_to_string(i, &k, idx, sizeof idx);
        describe_ixscan(&inputs, k, orp.cands[i].ix, false, &branch);
    }
    bson_append_array_end(&or_stage, &inputs);
    bson_append_document_end(parent, &or_stage);
    or_plan_destroy(&orp);
}

/* The access stage: OR, FETCH + IXSCAN, or COLLSCAN. */
static void
describe_access(const ms_plan_t *plan, const ms_query_t *q, bson_t *parent, const char *key)
{
    bson_t fetch, scan;
    bool has_filter = q->filter && !bson_empty(q->filter);
    if (plan->is_or && plan->or_rooted) {
        describe_or(plan, parent, key);
    } else if (plan->is_or) {
        append_stage(parent, key, "FETCH", &fetch);
        if (has_filter) {
            BSON_APPEND_DOCUMENT(&fetch, "filter", q->filter);
        }
        describe_or(plan, &fetch, "inputStage");
        bson_append_document_end(parent, &fetch);
    } else if (plan->index) {
        describe_ixscan(parent, key, plan->index, plan->backward, q->filter);
    } else {
        append_stage(parent, key, "COLLSCAN", &scan);
        if (has_filter) {
            BSON_APPEND_DOCUMENT(&scan, "filter", q->filter);
        }
        BSON_APPEND_UTF8(&scan, "direction", plan->backward ? "backward" : "forward");
        bson_append_document_end(parent, &scan);
    }
}

/* LIMIT (streamed) or SORT (in memory, with its limit) over the access stage. */
static void
describe_limit_sort(const ms_plan_t *plan, const ms_query_t *q, bson_t *parent, const char *key)
{
    bson_t stage;
    bool has_limit = q->limit > 0;
    if (!plan->in_memory_sort && !has_limit) {
        describe_access(plan, q, parent, key);
        return;
    }
    if (plan->in_memory_sort) {
        append_stage(parent, key, "SORT", &stage);
        BSON_APPEND_DOCUMENT(&stage, "sortPattern", q->sort);
        BSON_APPEND_UTF8(&stage, "type", "simple");
        if (has_limit) {
            BSON_APPEND_INT64(&stage, "limitAmount", q->limit);
        }
    } else {
        append_stage(parent, key, "LIMIT", &stage);
        BSON_APPEND_INT64(&stage, "limitAmount", q->limit);
    }
    describe_access(plan, q, &stage, "inputStage");
    bson_append_document_end(parent, &stage);
}

void
ms_plan_describe(const ms_plan_t *plan, const ms_query_t *q, bson_t *out)
{
    bson_t subplan;
    if (!plan->is_or || !plan->or_rooted || array_len(&plan->or_branches) < 2) {
        describe_limit_sort(plan, q, out, "winningPlan");
        return;
    }
    /* mongod plans a rooted $or branch by branch under a SUBPLAN stage. */
    append_stage(out, "winningPlan", "SUBPLAN", &subplan);
    describe_limit_sort(plan, q, &subplan, "inputStage");
    bson_append_document_end(out, &subplan);
}

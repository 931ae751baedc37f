/*
 * Running a query plan (query.c chooses it): index scans over point intervals ($in values
 * multiplied across the pinned fields) and a range, in the index's order or backward; OR plans
 * as the union of their branches' scans, deduplicated by record; collection scans. Every
 * candidate goes through the filter, then skip and limit (as it streams, or after an in-memory
 * sort).
 */
#include "query-private.h"

#include <stdlib.h>
#include <string.h>

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

/* -1: below the range, 0: inside, 1: above. */
static int
range_pos(const ms_cand_t *c, const bson_value_t *v)
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
scan_start(const ms_cand_t *c)
{
    const ms_index_t *ix = c->ix;
    bson_value_t bound[MS_QUERY_MAX_FIELDS + 1];
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
    bson_error_t *error;
    bool failed; /* the filter's $expr failed on a document: the scan stops */
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
    bool yes = true;
    if (s->m && !ms_matcher_test(s->m, &view, s->q->ctx, &yes, s->error)) {
        s->failed = true;
        return false;
    }
    if (!yes) {
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
index_scan(const ms_cand_t *c, sink_t *s)
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
        if (ms__cand_pins_unique(c)) {
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
field_points(const ms_cand_t *c, size_t i, points_t *p)
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
scan_points(const ms_cand_t *c, sink_t *s)
{
    points_t pts[MS_QUERY_MAX_FIELDS];
    size_t idx[MS_QUERY_MAX_FIELDS] = {0};
    ms_cand_t *cur = bson_malloc(sizeof *cur);
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
run_plan(const ms_coll_t *coll, const ms_cand_t *best, const ms_or_plan_t *orp,
         bool natural_backward, sink_t *s)
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

bool
ms__query_scan(const ms_coll_t *coll, const ms_cand_t *best, const ms_or_plan_t *orp,
               bool natural_backward, const ms_query_t *q, const ms_matcher_t *m,
               ms_recvec_t *out, ms_plan_t *plan, bson_error_t *error)
{
    sink_t s = {q, m, out, 0, !plan->in_memory_sort, plan, NULL, error, false};
    run_plan(coll, best, orp, natural_backward, &s);
    if (s.failed) {
        return false;
    }
    if (plan->in_memory_sort) {
        sort_and_slice(q, out);
    }
    return true;
}

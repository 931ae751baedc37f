/*
 * Running a query plan (query.c chooses it) stage by stage as mongod's classic engine would,
 * counting what each stage does: the access (COLLSCAN, IXSCAN with the FETCH of its filter,
 * COUNT_SCAN, IDHACK, or an OR of index scans deduplicated by record), then an in-memory SORT,
 * SKIP, the FETCH of documents an index scan did not read, and LIMIT. Without a SORT the stages
 * stream: a limit stops the scan. query_ixscan.c walks the indexes.
 *
 * Whatever the plan, every candidate document goes through the whole filter, so the results
 * are a collection scan's; a plan only decides what is read and what is counted.
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
    ms_qplan_t *p;
    const ms_query_t *q;
    const ms_matcher_t *m;
    ms_matcher_t **branch_m; /* an OR plan's branch filters (their FETCH stages) */
    ms_recvec_t *out;
    ms_recvec_t to_sort;
    recset_t seen;
    bson_error_t *error;
    bool failed;       /* a filter's $expr failed on a document, or maxTimeMS: the run stops */
    unsigned examined; /* documents since the start, for the deadline's check */
} run_t;

/* How often a scan checks maxTimeMS (deadline.c), in documents examined. */
#define CHECK_EVERY 128

/* Applies m to rec (NULL: everything matches); false when the filter failed (r->failed). */
static bool
passes(run_t *r, const ms_matcher_t *m, const ms_rec_t *rec, bool *yes)
{
    bson_t view;
    *yes = true;
    if (++r->examined % CHECK_EVERY == 0 && !ms_deadline_check(r->error)) {
        r->failed = true;
        return false;
    }
    if (!m) {
        return true;
    }
    ms_doc_view(rec->doc, &view);
    if (!ms_matcher_test(m, &view, r->q->ctx, yes, r->error)) {
        r->failed = true;
        return false;
    }
    return true;
}

/* SKIP, the FETCH an unfetched access needs, LIMIT (and the COUNT stage's skip and limit). */
static bool
finish(run_t *r, ms_rec_t *rec, bool fetched)
{
    ms_qplan_t *p = r->p;
    p->skip_in++;
    if (p->skipped < p->skip) {
        p->skipped++;
        return true;
    }
    if (p->late_fetch && !fetched) {
        p->late_docs++;
    }
    recvec_push(r->out, rec);
    p->out++;
    if (p->limit > 0 && (int64_t)r->out->len >= p->limit) {
        p->limit_reached = true;
        return false;
    }
    return true;
}

/* Everything above the access: collected for the SORT, or streamed on. */
static bool
after_access(run_t *r, ms_rec_t *rec, bool fetched)
{
    ms_qplan_t *p = r->p;
    if (!p->sort_stage) {
        return finish(r, rec, fetched);
    }
    if (p->fetch_before_sort && !fetched) {
        p->sort_fetch_docs++;
    }
    p->sort_in++;
    recvec_push(&r->to_sort, rec);
    return true;
}

/* An OR branch's record: its FETCH, the OR's deduplication, the FETCH above the OR. */
static bool
or_offer(run_t *r, ms_rec_t *rec, ms_scan_t *from)
{
    ms_qplan_t *p = r->p;
    size_t i = (size_t)(from - p->branches);
    bool yes;
    if (!from->info.exact) {
        from->fetch_docs++;
        if (!passes(r, r->branch_m[i], rec, &yes)) {
            return false;
        }
        if (!yes) {
            return true;
        }
        from->fetch_advanced++;
    }
    p->or_tested++;
    if (!recset_add(&r->seen, rec)) {
        p->or_dropped++;
        return true;
    }
    if (p->or_fetch) {
        if (from->info.exact) {
            p->or_fetch_docs++;
        } else {
            p->or_fetch_already++;
        }
    }
    if (!passes(r, r->m, rec, &yes)) {
        return false;
    }
    if (!yes) {
        return true;
    }
    p->or_advanced++;
    return after_access(r, rec, p->or_fetch || !from->info.exact);
}

/* The sink of every index scan. */
static bool
scan_offer(void *ctx, ms_rec_t *rec, const ms_scan_t *from)
{
    run_t *r = ctx;
    ms_scan_t *s = (ms_scan_t *)from;
    bool yes;
    if (r->p->access == MS_ACCESS_OR) {
        return or_offer(r, rec, s);
    }
    bool fetch = r->p->access == MS_ACCESS_IXSCAN && !s->info.exact;
    if (fetch) {
        s->fetch_docs++;
    }
    if (!passes(r, r->m, rec, &yes)) {
        return false;
    }
    if (!yes) {
        return true; /* exact bounds never get here: the filter is their predicates */
    }
    if (fetch) {
        s->fetch_advanced++;
    }
    return after_access(r, rec, fetch);
}

static void
run_collscan(run_t *r, const ms_coll_t *coll)
{
    ms_qplan_t *p = r->p;
    bool back = p->natural_backward, yes;
    for (ms_rec_t *rec = back ? coll->tail : coll->head; rec; rec = back ? rec->prev : rec->next) {
        p->coll_docs++;
        if (!passes(r, r->m, rec, &yes)) {
            return;
        }
        if (yes) {
            p->coll_advanced++;
            if (!after_access(r, rec, true)) {
                return;
            }
        }
    }
    p->access_eof = true;
}

static void
run_idhack(run_t *r, const ms_coll_t *coll)
{
    bson_iter_t it;
    bool yes;
    r->p->access_eof = true;
    if (!bson_iter_init_find(&it, r->q->filter, "_id")) {
        return;
    }
    ms_rec_t *rec = ms_coll_find_id(coll, bson_iter_value(&it));
    if (!rec) {
        return;
    }
    r->p->id_keys = r->p->id_docs = 1;
    if (passes(r, r->m, rec, &yes) && yes) {
        after_access(r, rec, true);
    }
}

static void
run_or(run_t *r)
{
    ms_qplan_t *p = r->p;
    r->branch_m = bson_malloc0(sizeof *r->branch_m * (p->nbranches ? p->nbranches : 1));
    bool go_on = true;
    for (size_t i = 0; i < p->nbranches && go_on && !r->failed; i++) {
        if (!p->branches[i].info.exact &&
            !(r->branch_m[i] = ms_matcher_new(p->branches[i].filter, r->error))) {
            r->failed = true;
            break;
        }
        go_on = ms__ixscan_run(&p->branches[i], scan_offer, r);
    }
    p->access_eof = go_on && !r->failed;
    for (size_t i = 0; i < p->nbranches; i++) {
        ms_matcher_destroy(r->branch_m[i]);
    }
    bson_free(r->branch_m);
    bson_free(r->seen.slots);
}

/* ---- SORT_MERGE ------------------------------------------------------------------------------ */

/* The scans a SORT_MERGE merges: the plan's scan with its point prefix fixed, one per point
 * combination, in scan order (QueryPlannerAnalysis::explodeForSort). */
static void
explode(ms_qplan_t *p)
{
    const ms_scan_t *s = &p->scan;
    size_t k = s->info.point_prefix, idx[MS_QUERY_MAX_FIELDS] = {0};
    p->nbranches = 0;
    p->branches = bson_malloc0(sizeof *p->branches * (s->info.points ? s->info.points : 1));
    for (size_t guard = 0; guard < s->info.points; guard++) {
        ms_scan_t *b = &p->branches[p->nbranches++];
        b->ix = s->ix;
        b->backward = s->backward;
        b->info.exact = true;
        b->bounds.nfields = s->bounds.nfields;
        for (size_t i = 0; i < s->bounds.nfields; i++) {
            const ms_oil_t *from = &s->bounds.f[i];
            for (size_t j = i < k ? idx[i] : 0; j < (i < k ? idx[i] + 1 : from->n); j++) {
                ms__oil_append(&b->bounds.f[i], &from->iv[j]);
            }
        }
        bson_value_t a[MS_QUERY_MAX_FIELDS], z[MS_QUERY_MAX_FIELDS];
        bool ai, zi;
        b->single = ms__bounds_single(&b->bounds, a, &ai, z, &zi);
        for (size_t i = k; i > 0; i--) { /* the next combination: the last field moves fastest */
            if (++idx[i - 1] < s->bounds.f[i - 1].n) {
                break;
            }
            idx[i - 1] = 0;
        }
    }
}

static _Thread_local const bson_t *sort_spec;

static int
rec_sort_cmp(const ms_rec_t *a, const ms_rec_t *b)
{
    bson_t av, bv;
    ms_doc_view(a->doc, &av);
    ms_doc_view(b->doc, &bv);
    return ms_sort_cmp(sort_spec, &av, &bv);
}

/* MergeSortStage: the smallest head of the scans, then the next record of that scan. */
static void
run_merge(run_t *r)
{
    ms_qplan_t *p = r->p;
    bool exact = p->scan.info.exact, yes;
    explode(p);
    ms_ixcursor_t **cur = bson_malloc0(sizeof *cur * (p->nbranches ? p->nbranches : 1));
    ms_rec_t **head = bson_malloc0(sizeof *head * (p->nbranches ? p->nbranches : 1));
    for (size_t i = 0; i < p->nbranches; i++) {
        cur[i] = ms__ixcursor_new(&p->branches[i]);
        head[i] = ms__ixcursor_next(cur[i]);
    }
    sort_spec = p->sort;
    p->access_eof = true;
    for (;;) { /* each turn consumes one record of a bounded scan */
        size_t best = p->nbranches;
        for (size_t i = 0; i < p->nbranches; i++) {
            if (head[i] && (best == p->nbranches || rec_sort_cmp(head[i], head[best]) < 0)) {
                best = i;
            }
        }
        if (best == p->nbranches) {
            break;
        }
        ms_rec_t *rec = head[best];
        head[best] = ms__ixcursor_next(cur[best]);
        p->merge_out++;
        p->merge_fetch_docs += !exact;
        if (!passes(r, r->m, rec, &yes)) {
            break;
        }
        if (!yes) {
            continue;
        }
        p->merge_fetch_advanced += !exact;
        if (!after_access(r, rec, !exact)) {
            p->access_eof = false;
            break;
        }
    }
    for (size_t i = 0; i < p->nbranches; i++) {
        ms__ixcursor_destroy(cur[i]);
    }
    bson_free(cur);
    bson_free(head);
}

/* ---- SORT ------------------------------------------------------------------------------------ */

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

/* The SORT stage (keeping skip + limit when there is a limit), then what follows it. */
static void
run_sort(run_t *r)
{
    ms_qplan_t *p = r->p;
    ms_recvec_t *v = &r->to_sort;
    sort_item_t *items = bson_malloc(sizeof *items * (v->len ? v->len : 1));
    for (size_t i = 0; i < v->len; i++) {
        items[i].rec = v->recs[i];
        items[i].pos = i;
    }
    sort_spec = p->sort;
    qsort(items, v->len, sizeof *items, sort_item_cmp);
    size_t keep = v->len;
    if (p->limit > 0 && (uint64_t)(p->limit + p->skip) < keep) {
        keep = (size_t)(p->limit + p->skip);
    }
    p->sort_out = (int64_t)keep;
    bool fetched = !p->sort_on_keys;
    for (size_t i = 0; i < keep && finish(r, items[i].rec, fetched); i++) {
    }
    bson_free(items);
}

bool
ms__query_run(const ms_coll_t *coll, ms_qplan_t *p, const ms_query_t *q, const ms_matcher_t *m,
              ms_recvec_t *out, bson_error_t *error)
{
    run_t r = {.p = p, .q = q, .m = m, .out = out, .error = error};
    switch (p->access) {
    case MS_ACCESS_COLLSCAN:
        run_collscan(&r, coll);
        break;
    case MS_ACCESS_IDHACK:
        run_idhack(&r, coll);
        break;
    case MS_ACCESS_IXSCAN:
        p->access_eof = ms__ixscan_run(&p->scan, scan_offer, &r) && !r.failed;
        break;
    case MS_ACCESS_COUNT_SCAN:
        p->access_eof = ms__count_scan_run(&p->scan, scan_offer, &r) && !r.failed;
        break;
    case MS_ACCESS_OR:
        run_or(&r);
        break;
    case MS_ACCESS_SORT_MERGE:
        run_merge(&r);
        break;
    case MS_ACCESS_FAST_COUNT:
        for (ms_rec_t *rec = coll->head; rec && finish(&r, rec, true); rec = rec->next) {
        }
        p->access_eof = true;
        break;
    case MS_ACCESS_EOF:
        p->access_eof = true;
        break;
    }
    if (!r.failed && p->sort_stage) {
        run_sort(&r);
    }
    ms_recvec_destroy(&r.to_sort);
    return !r.failed;
}

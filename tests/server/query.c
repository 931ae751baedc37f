/*
 * Query planning and execution. An index is used when the filter has equality on a prefix of
 * its fields, a range on the next one, or when it yields the requested sort order after that
 * equality prefix (Equality, Sort, Range). The filter is always re-checked on every candidate
 * document, so the index only narrows the scan and never changes the results.
 */
#include "store-private.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 32

typedef struct {
    const ms_index_t *ix;
    size_t eq;
    bson_value_t eqv[MAX_FIELDS + 1];
    bool sort_ok;
    bool backward;
    bool range;
    bson_value_t lo, hi;
    bool lo_inc, hi_inc, has_lo, has_hi;
    long score;
} cand_t;

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

static bool
in_eq_prefix(const cand_t *c, const char *field)
{
    for (size_t i = 0; i < c->eq; i++) {
        if (strcmp(c->ix->paths[i], field) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether scanning c's index after its equality prefix yields sort's order. */
static bool
sort_served(cand_t *c, const bson_t *sort)
{
    bson_iter_t it;
    size_t k = c->eq;
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
        if (in_eq_prefix(c, field)) {
            continue;
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

static void
analyse(const ms_index_t *ix, const ms_query_t *q, cand_t *c)
{
    memset(c, 0, sizeof *c);
    c->ix = ix;
    const bson_t *filter = q->filter;
    while (filter && c->eq < ix->nfields && c->eq < MAX_FIELDS &&
           ms_filter_equality(filter, ix->paths[c->eq], &c->eqv[c->eq]) &&
           usable_equality(&c->eqv[c->eq])) {
        c->eq++;
    }
    if (filter && c->eq < ix->nfields) {
        c->range = ms_filter_range(filter, ix->paths[c->eq], &c->lo, &c->lo_inc, &c->has_lo,
                                   &c->hi, &c->hi_inc, &c->has_hi);
    }
    c->sort_ok = sort_served(c, q->sort);
    bool has_sort = q->sort && !bson_empty(q->sort);
    if (ix->unique && c->eq == ix->nfields) {
        c->score = 1000000000L;
    } else if (c->eq == 0 && !c->range && !(has_sort && c->sort_ok)) {
        c->score = -1;
    } else {
        c->score = (has_sort && c->sort_ok ? (q->limit ? 100000 : 60) : 0) + (long)c->eq * 100 +
                   (c->range ? 50 : 0) - (long)ix->nfields;
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
        return ms_set_error(error, 2, "hint provided does not correspond to an existing index");
    }
    return true;
}

static bool
choose(const ms_coll_t *coll, const ms_query_t *q, cand_t *best, bool *natural_backward,
       bson_error_t *error)
{
    const ms_index_t *hinted = NULL;
    bool natural = false;
    *natural_backward = false;
    best->ix = NULL;
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
    best->score = -1;
    for (size_t i = 0; i < coll->nindexes; i++) {
        const ms_index_t *ix = coll->indexes[i];
        if (ix->multikey || ix->partial || ix->sparse) {
            continue;
        }
        cand_t c;
        analyse(ix, q, &c);
        if (c.score > best->score) {
            *best = c;
        }
    }
    if (best->score < 0) {
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

typedef struct {
    const ms_query_t *q;
    const ms_matcher_t *m;
    ms_recvec_t *out;
    int64_t skipped;
    bool streaming; /* skip/limit applied as we go (no in-memory sort) */
    ms_plan_t *plan;
} sink_t;

/* Offers a record; returns false once the limit is reached. */
static bool
sink_offer(sink_t *s, ms_rec_t *rec)
{
    bson_t view;
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

static void
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
            break;
        }
    }
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

bool
ms_query_exec(const ms_coll_t *coll, const ms_query_t *q, ms_recvec_t *out, ms_plan_t *plan,
              bson_error_t *error)
{
    cand_t best;
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
    if (!choose(coll, q, &best, &natural_backward, error)) {
        goto done;
    }
    plan->index = best.ix;
    plan->backward = best.ix ? best.backward : natural_backward;
    plan->in_memory_sort = has_sort && !(best.ix && best.sort_ok);
    plan->eq_fields = best.ix ? best.eq : 0;
    plan->has_range = best.ix && best.range;
    sink_t s = {q, m, out, 0, !plan->in_memory_sort, plan};
    if (best.ix) {
        index_scan(&best, &s);
    } else {
        ms_rec_t *r = natural_backward ? coll->tail : coll->head;
        for (; r; r = natural_backward ? r->prev : r->next) {
            if (!sink_offer(&s, r)) {
                break;
            }
        }
    }
    if (plan->in_memory_sort) {
        sort_and_slice(q, out);
    }
    ok = true;
done:
    ms_matcher_destroy(m);
    return ok;
}

static void
append_stage(bson_t *parent, const char *key, const char *stage, bson_t *child)
{
    bson_append_document_begin(parent, key, -1, child);
    BSON_APPEND_UTF8(child, "stage", stage);
}

void
ms_plan_describe(const ms_plan_t *plan, const ms_query_t *q, bson_t *out)
{
    bson_t sort_stage, fetch, scan, *cur = out;
    const char *key = "winningPlan";
    bool has_limit = q->limit > 0;
    bson_t limit_stage;
    if (has_limit && !plan->in_memory_sort) {
        append_stage(cur, key, "LIMIT", &limit_stage);
        BSON_APPEND_INT64(&limit_stage, "limitAmount", q->limit);
        cur = &limit_stage;
        key = "inputStage";
    }
    if (plan->in_memory_sort) {
        append_stage(cur, key, "SORT", &sort_stage);
        BSON_APPEND_DOCUMENT(&sort_stage, "sortPattern", q->sort);
        BSON_APPEND_UTF8(&sort_stage, "type", "simple");
        if (has_limit) {
            BSON_APPEND_INT64(&sort_stage, "limitAmount", q->limit);
        }
        cur = &sort_stage;
        key = "inputStage";
    }
    if (plan->index) {
        append_stage(cur, key, "FETCH", &fetch);
        if (q->filter && !bson_empty(q->filter)) {
            BSON_APPEND_DOCUMENT(&fetch, "filter", q->filter);
        }
        append_stage(&fetch, "inputStage", "IXSCAN", &scan);
        BSON_APPEND_DOCUMENT(&scan, "keyPattern", plan->index->key);
        BSON_APPEND_UTF8(&scan, "indexName", plan->index->name);
        BSON_APPEND_BOOL(&scan, "isMultiKey", plan->index->multikey);
        BSON_APPEND_BOOL(&scan, "isUnique", plan->index->unique);
        BSON_APPEND_BOOL(&scan, "isSparse", plan->index->sparse);
        BSON_APPEND_BOOL(&scan, "isPartial", plan->index->partial != NULL);
        BSON_APPEND_UTF8(&scan, "direction", plan->backward ? "backward" : "forward");
        bson_append_document_end(&fetch, &scan);
        bson_append_document_end(cur, &fetch);
    } else {
        append_stage(cur, key, "COLLSCAN", &scan);
        if (q->filter && !bson_empty(q->filter)) {
            BSON_APPEND_DOCUMENT(&scan, "filter", q->filter);
        }
        BSON_APPEND_UTF8(&scan, "direction", plan->backward ? "backward" : "forward");
        bson_append_document_end(cur, &scan);
    }
    if (plan->in_memory_sort) {
        bson_append_document_end(has_limit && !plan->in_memory_sort ? &limit_stage : out,
                                 &sort_stage);
    }
    if (has_limit && !plan->in_memory_sort) {
        bson_append_document_end(out, &limit_stage);
    }
}

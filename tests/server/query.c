/*
 * Query planning and execution. An index is used when the filter pins a prefix of its fields
 * (equality, or $in: one point interval per value), puts a range on the next one, or when it
 * yields the requested sort order after that prefix (Equality, Sort, Range). A top-level $or
 * whose every branch can use an index becomes an OR plan: the union of the branch scans,
 * deduplicated by record (mongod's OR stage); one branch that cannot means a collection scan, as
 * in mongod. The filter is always re-checked on every candidate document, so the index only
 * narrows the scan and never changes the results.
 *
 * Here: choosing the plan. query_scan.c runs it, query_explain.c describes it for explain;
 * query_filter.c (in the language library) reads the filter's constraints.
 */
#include "lang-private.h"
#include "query-private.h"

#include <string.h>

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
        if (!usable_equality(bson_iter_value(&it)) || ++*n > MS_QUERY_MAX_POINTS) {
            return false;
        }
    }
    return true;
}

/* Pins the next index field by equality or $in; false when the filter does neither. */
static bool
pin_field(ms_cand_t *c, const bson_t *filter)
{
    size_t i = c->eq, n;
    const char *path = c->ix->paths[i];
    if (ms_filter_equality(filter, path, &c->eqv[i]) && usable_equality(&c->eqv[i])) {
        c->npoints[i] = 1;
        return true;
    }
    if (!ms_filter_in(filter, path, &c->in[i]) || !usable_in(&c->in[i], &n) ||
        (n > 0 && c->combos > MS_QUERY_MAX_POINTS / n)) {
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
fixed_field(const ms_cand_t *c, const char *field)
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
sort_served(ms_cand_t *c, const bson_t *sort)
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

static void
analyse(const ms_index_t *ix, const ms_query_t *q, ms_cand_t *c)
{
    memset(c, 0, sizeof *c);
    c->ix = ix;
    c->combos = 1;
    const bson_t *filter = q->filter;
    while (filter && c->eq < ix->nfields && c->eq < MS_QUERY_MAX_FIELDS && pin_field(c, filter)) {
        c->eq++;
    }
    if (filter && c->eq < ix->nfields) {
        c->range = ms_filter_range(filter, ix->paths[c->eq], &c->lo, &c->lo_inc, &c->has_lo,
                                   &c->hi, &c->hi_inc, &c->has_hi);
    }
    c->sort_ok = sort_served(c, q->sort);
    bool has_sort = q->sort && !bson_empty(q->sort);
    if (ms__cand_pins_unique(c)) {
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
best_index(const ms_coll_t *coll, const ms_query_t *q, ms_cand_t *best)
{
    ms_cand_t c;
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

void
ms__or_plan_destroy(ms_or_plan_t *o)
{
    bson_free(o->cands);
    o->cands = NULL;
    o->n = 0;
}

/* Plans every branch of o->branches; false (o emptied) when some branch cannot use an index. */
bool
ms__plan_or(const ms_coll_t *coll, ms_or_plan_t *o)
{
    bson_iter_t it;
    bson_t branch;
    o->n = 0;
    o->cands = NULL;
    uint32_t count = ms__array_count(&o->branches);
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
        ms__or_plan_destroy(o);
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
choose(const ms_coll_t *coll, const ms_query_t *q, ms_cand_t *best, ms_or_plan_t *orp,
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
    if (!ms__cand_pins_unique(best) && find_or(q->filter, &orp->branches, &orp->rooted, 0) &&
        ms__plan_or(coll, orp)) {
        best->ix = NULL;
    }
    return true;
}

static void
record_plan(const ms_coll_t *coll, const ms_cand_t *best, const ms_or_plan_t *orp,
            bool natural_backward, bool has_sort, ms_plan_t *plan)
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
    ms_cand_t *best = NULL;
    ms_or_plan_t orp = {0};
    bool natural_backward = false;
    bool ok = false;
    ms_matcher_t *m = NULL;
    memset(out, 0, sizeof *out);
    memset(plan, 0, sizeof *plan);
    bool has_sort = q->sort && !bson_empty(q->sort);
    if (has_sort && !ms_sort_validate(q->sort, error)) {
        goto done;
    }
    if (q->filter && (!(m = ms_matcher_new(q->filter, error)) ||
                      !ms__matcher_check_vars(m, q->ctx, error))) {
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
    if (!ms__query_scan(coll, best, &orp, natural_backward, q, m, out, plan, error)) {
        ms_recvec_destroy(out);
        goto done;
    }
    ok = true;
done:
    ms__or_plan_destroy(&orp);
    bson_free(best);
    ms_matcher_destroy(m);
    return ok;
}

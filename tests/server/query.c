/*
 * Query planning. Every index is a candidate with bounds on each of its fields
 * (query_bounds.c); one is usable when its first field is bounded or when its order is the
 * query's sort (fields whose bounds are one point are constant and may sit anywhere in the
 * sort). Candidates are ranked as mongod's multi-planner tends to rank them: a unique index
 * with every field a point first, then a sort the index serves (decisive with a limit), points
 * on a longer prefix, a range after them, more bounded fields, no FETCH. A top-level $or whose
 * every branch can use an index becomes an OR of the branch scans (one branch that cannot means
 * a collection scan, as in mongod); a $or of predicates on one field is bounds, not an OR.
 * {_id: <value>} alone is IDHACK; a count an index answers with one interval and no filter is a
 * COUNT_SCAN; a find whose projection the index holds is PROJECTION_COVERED.
 *
 * The filter is applied to every candidate document whatever the plan, so a plan only narrows
 * what is read and never changes the results. query_scan.c runs the plan, query_explain.c
 * describes it.
 */
#include "lang-private.h"
#include "query-private.h"

#include <string.h>

/* ---- sort ------------------------------------------------------------------------------- */

static bool
single_point(const ms_scan_t *s, size_t i)
{
    return s->bounds.f[i].n == 1 && ms__interval_is_point(&s->bounds.f[i].iv[0]);
}

/* A field pinned to one point, or one of the first `exploded` (each scan of a SORT_MERGE has one
 * point of each). */
static bool
constant(const ms_scan_t *s, size_t i, size_t exploded)
{
    return i < exploded || single_point(s, i);
}

static bool
constant_field(const ms_scan_t *s, const char *path, size_t exploded)
{
    for (size_t i = 0; i < s->bounds.nfields; i++) {
        if (constant(s, i, exploded) && strcmp(s->ix->paths[i], path) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Whether scanning s's index yields sort's order (and in which direction): after the fields
 * pinned to one point, the sort's fields must follow the index's, all in its direction or all
 * against it. Intervals are scanned in order, so several points or a range on a field keep it
 * sorted.
 */
static bool
sort_served(ms_scan_t *s, const bson_t *sort, size_t exploded)
{
    bson_iter_t it;
    size_t k = 0;
    int sign = 0;
    s->backward = false;
    if (!sort || bson_empty(sort)) {
        return true;
    }
    bson_iter_init(&it, sort);
    while (bson_iter_next(&it)) {
        const char *field = bson_iter_key(&it);
        if (!BSON_ITER_HOLDS_NUMBER(&it)) {
            return false;
        }
        if (constant_field(s, field, exploded)) {
            continue;
        }
        while (k < s->bounds.nfields && constant(s, k, exploded)) {
            k++;
        }
        if (k >= s->bounds.nfields || strcmp(field, s->ix->paths[k]) != 0) {
            return false;
        }
        int d = (bson_iter_as_double(&it) > 0 ? 1 : -1) * s->ix->dirs[k];
        if (sign && d != sign) {
            return false;
        }
        sign = d;
        k++;
    }
    s->backward = sign < 0;
    return true;
}

/* ---- candidates ------------------------------------------------------------------------- */

static bool
unique_point(const ms_scan_t *s)
{
    return s->ix->unique && s->info.point_prefix == s->ix->nfields;
}

static bool
count_mode(const ms_query_t *q)
{
    return q->mode == MS_QUERY_COUNT || q->mode == MS_QUERY_NO_FIELDS;
}

static long
score(const ms_scan_t *s, const ms_query_t *q)
{
    bool has_sort = q->sort && !bson_empty(q->sort);
    const ms_bounds_info_t *in = &s->info;
    if (unique_point(s)) {
        return 1000000000L - (long)in->points; /* one point beats many; a few beat any range */
    }
    if (!in->bounded[0] && !(has_sort && s->sort_ok)) {
        return -1; /* mongod plans only with indexes whose first field has a predicate */
    }
    if (count_mode(q) && in->exact && s->single) {
        return 100000000L; /* the first candidate a COUNT_SCAN can serve (getExecutorCount) */
    }
    long later = 0;
    for (size_t i = in->point_prefix + 1; i < s->bounds.nfields; i++) {
        later += in->bounded[i];
    }
    bool next_bounded = in->point_prefix < s->bounds.nfields && in->bounded[in->point_prefix];
    bool sorted = has_sort && (s->sort_ok || s->explode);
    return (sorted ? (q->limit ? 100000 : 60) - (s->explode ? 5 : 0) : 0) +
           (long)in->point_prefix * 100 - (long)in->in_fields * 10 + (next_bounded ? 50 : 0) +
           later * 20 + (in->exact ? 5 : 0) - (long)s->ix->nfields;
}

static void
scan_free(ms_scan_t *s)
{
    ms__bounds_destroy(&s->bounds);
    bson_destroy(s->residual);
    s->residual = NULL;
    s->ix = NULL;
}

static void
analyse(const ms_index_t *ix, const ms_query_t *q, ms_scan_t *s)
{
    bson_value_t a[MS_QUERY_MAX_FIELDS], b[MS_QUERY_MAX_FIELDS];
    bool ai, bi;
    memset(s, 0, sizeof *s);
    s->ix = ix;
    s->filter = q->filter;
    s->residual = bson_new();
    ms__bounds_build(ix, q->filter, &s->bounds, &s->info, s->residual);
    s->sort_ok = sort_served(s, q->sort, 0);
    /* QueryPlannerAnalysis::explodeForSort: a prefix of point fields (at most
     * internalQueryMaxScansToExplode = 200 combinations) becomes one scan per point, merged in
     * sort order by SORT_MERGE, when the fields after it give the sort. */
    if (!s->sort_ok && s->info.point_prefix > 0 && s->info.points > 1 && s->info.points <= 200 &&
        q->mode != MS_QUERY_COUNT) {
        s->explode = sort_served(s, q->sort, s->info.point_prefix);
        s->sort_ok = false;
    }
    ms__bounds_align(&s->bounds, ix, s->backward);
    s->single = ms__bounds_single(&s->bounds, a, &ai, b, &bi);
    s->score = score(s, q);
}

/* The best index for q by the rules above; ix NULL when none is worth scanning. */
static void
best_index(const ms_coll_t *coll, const ms_query_t *q, ms_scan_t *best)
{
    ms_scan_t c;
    memset(best, 0, sizeof *best);
    best->score = -1;
    for (size_t i = 0; i < coll->nindexes; i++) {
        const ms_index_t *ix = coll->indexes[i];
        if (ix->multikey || ix->partial || ix->sparse) {
            continue;
        }
        analyse(ix, q, &c);
        if (c.score > best->score) {
            scan_free(best);
            *best = c;
        } else {
            scan_free(&c);
        }
    }
    if (best->score < 0) {
        scan_free(best);
    }
}

/* ---- hint, IDHACK, $or --------------------------------------------------------------------- */

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

/* CanonicalQuery::isSimpleIdQuery: the filter is {_id: <value>} and nothing else. */
static bool
simple_id_query(const bson_t *filter)
{
    bson_iter_t it;
    if (!filter || !bson_iter_init(&it, filter) || !bson_iter_next(&it) ||
        strcmp(bson_iter_key(&it), "_id") != 0) {
        return false;
    }
    const bson_value_t *v = bson_iter_value(&it);
    bool ok = v->value_type == BSON_TYPE_DOCUMENT ? !ms__is_operator_doc(v)
                                                 : v->value_type != BSON_TYPE_NULL &&
                                                       v->value_type != BSON_TYPE_UNDEFINED &&
                                                       v->value_type != BSON_TYPE_ARRAY &&
                                                       v->value_type != BSON_TYPE_REGEX;
    return ok && !bson_iter_next(&it);
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

bool
ms__plan_or(const ms_coll_t *coll, const ms_query_t *q, ms_qplan_t *o)
{
    bson_iter_t it;
    uint32_t count = 0;
    bson_iter_init_from_data(&it, o->or_branches.value.v_doc.data,
                             o->or_branches.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        count++;
    }
    o->nbranches = 0;
    o->branches = count ? bson_malloc0(sizeof *o->branches * count) : NULL;
    bson_iter_init_from_data(&it, o->or_branches.value.v_doc.data,
                             o->or_branches.value.v_doc.data_len);
    bool all = count > 0;
    while (all && bson_iter_next(&it) && o->nbranches < count) {
        const bson_value_t *v = bson_iter_value(&it);
        ms_scan_t *s = &o->branches[o->nbranches];
        bson_t *branch = v->value_type == BSON_TYPE_DOCUMENT
                             ? bson_new_from_data(v->value.v_doc.data, v->value.v_doc.data_len)
                             : NULL;
        if (!branch) {
            all = false;
            break;
        }
        ms_query_t bq = {.filter = branch, .ctx = q->ctx, .mode = q->mode};
        best_index(coll, &bq, s);
        s->filter = branch; /* owned by the branch: freed with it */
        o->nbranches++;
        all = s->ix != NULL;
    }
    if (!all || o->nbranches < count) {
        for (size_t i = 0; i < o->nbranches; i++) {
            scan_free(&o->branches[i]);
            bson_destroy((bson_t *)o->branches[i].filter);
        }
        bson_free(o->branches);
        o->branches = NULL;
        o->nbranches = 0;
        return false;
    }
    return true;
}

void
ms__qplan_free(ms_qplan_t *p)
{
    if (!p) {
        return;
    }
    scan_free(&p->scan);
    for (size_t i = 0; i < p->nbranches; i++) {
        scan_free(&p->branches[i]);
        bson_destroy((bson_t *)p->branches[i].filter);
    }
    bson_free(p->branches);
    if (p->filter) {
        bson_destroy(p->filter);
    }
    if (p->sort) {
        bson_destroy(p->sort);
    }
    if (p->projection) {
        bson_destroy(p->projection);
    }
    bson_free(p);
}

/* ---- choosing ------------------------------------------------------------------------------ */

static bool
choose_hinted(const ms_coll_t *coll, const ms_query_t *q, ms_qplan_t *p, bson_error_t *error)
{
    const ms_index_t *hinted = NULL;
    bool natural = false;
    if (!find_hinted(coll, q->hint, &hinted, &natural, &p->natural_backward, error)) {
        return false;
    }
    if (hinted && !hinted->multikey) {
        analyse(hinted, q, &p->scan);
        p->access = MS_ACCESS_IXSCAN;
    } else if (hinted || natural) {
        p->access = MS_ACCESS_COLLSCAN;
    }
    return true;
}

/*
 * The access path: a hinted index, IDHACK, the best index, or an OR plan. An index that pins a
 * unique key wins over an OR plan; otherwise an $or whose branches all use indexes is preferred
 * to scanning the other conditions' index.
 */
static bool
choose(const ms_coll_t *coll, const ms_query_t *q, ms_qplan_t *p, bson_error_t *error)
{
    bool has_hint = q->hint && !(q->hint->value_type == BSON_TYPE_DOCUMENT &&
                                 q->hint->value.v_doc.data_len <= 5);
    p->access = MS_ACCESS_COLLSCAN;
    if (has_hint) {
        return choose_hinted(coll, q, p, error);
    }
    if (q->mode == MS_QUERY_COUNT && (!q->filter || bson_empty(q->filter))) {
        p->access = MS_ACCESS_FAST_COUNT; /* getExecutorCount's RecordStoreFastCountStage */
        return true;
    }
    if (q->skip == 0 && simple_id_query(q->filter) && coll->nindexes > 0) {
        p->access = MS_ACCESS_IDHACK;
        return true;
    }
    best_index(coll, q, &p->scan);
    if (p->scan.ix) {
        p->access = MS_ACCESS_IXSCAN;
    }
    if ((!p->scan.ix || !unique_point(&p->scan)) &&
        find_or(q->filter, &p->or_branches, &p->or_rooted, 0) &&
        !ms__or_one_path(&p->or_branches) && ms__plan_or(coll, q, p)) {
        scan_free(&p->scan);
        p->access = MS_ACCESS_OR;
    }
    return true;
}

/* ---- the stages above the access ------------------------------------------------------------ */

/* What a find projection is: PROJECTION_SIMPLE (top-level fields kept or dropped),
 * PROJECTION_COVERED (kept fields all in the index, _id dropped unless it is one of them) or
 * PROJECTION_DEFAULT. */
static ms_proj_kind_t
projection_kind(const bson_t *proj, const ms_index_t *ix, bool unfetched)
{
    bson_iter_t it;
    bool covered = unfetched && ix != NULL, simple = true, inclusion = false, id_kept = true;
    bson_iter_init(&it, proj);
    while (bson_iter_next(&it)) {
        const char *path = bson_iter_key(&it);
        bool number = BSON_ITER_HOLDS_NUMBER(&it) || BSON_ITER_HOLDS_BOOL(&it);
        bool keep = number && bson_iter_as_bool(&it);
        simple = simple && number && path[0] != '$' && !strchr(path, '.');
        if (!number) {
            covered = false;
            continue;
        }
        if (strcmp(path, "_id") == 0) {
            id_kept = keep;
            continue;
        }
        inclusion = inclusion || keep;
        bool in_index = false;
        for (size_t i = 0; ix && i < ix->nfields && !in_index; i++) {
            in_index = strcmp(ix->paths[i], path) == 0;
        }
        covered = covered && keep && in_index;
    }
    for (size_t i = 0; ix && id_kept && covered && i < ix->nfields; i++) {
        id_kept = strcmp(ix->paths[i], "_id") != 0;
    }
    if (covered && inclusion && !id_kept) {
        return MS_PROJ_COVERED;
    }
    return simple ? MS_PROJ_SIMPLE : MS_PROJ_DEFAULT;
}

/* Whether every field of the sort is a field of the index (a SORT of index keys). */
static bool
sort_on_keys(const bson_t *sort, const ms_index_t *ix)
{
    bson_iter_t it;
    bson_iter_init(&it, sort);
    while (bson_iter_next(&it)) {
        bool found = false;
        for (size_t i = 0; i < ix->nfields && !found; i++) {
            found = strcmp(ix->paths[i], bson_iter_key(&it)) == 0;
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

/* QueryPlannerAnalysis::analyzeDataAccess: SORT, SKIP, PROJECTION or FETCH, LIMIT. */
static void
shape(ms_qplan_t *p, const ms_query_t *q)
{
    bool has_sort = q->sort && !bson_empty(q->sort) && q->mode != MS_QUERY_COUNT;
    bool fetched = p->access == MS_ACCESS_COLLSCAN || p->access == MS_ACCESS_IDHACK ||
                   (p->scan.ix && !p->scan.info.exact);
    if (p->access == MS_ACCESS_OR) {
        bool all_fetched = true;
        for (size_t i = 0; i < p->nbranches; i++) {
            all_fetched = all_fetched && !p->branches[i].info.exact;
        }
        p->or_fetch = !p->or_rooted || (!all_fetched && !count_mode(q));
        fetched = p->or_fetch || all_fetched;
    }
    if (count_mode(q) && p->access == MS_ACCESS_IXSCAN && !fetched && p->scan.single &&
        !has_sort) {
        p->access = MS_ACCESS_COUNT_SCAN; /* turnIxscanIntoCount (no sort: a forward scan) */
    }
    if (p->access == MS_ACCESS_IXSCAN && has_sort && !p->scan.sort_ok && p->scan.explode) {
        p->access = MS_ACCESS_SORT_MERGE;
    }
    p->sort_stage = has_sort && p->access != MS_ACCESS_IDHACK &&
                    p->access != MS_ACCESS_SORT_MERGE &&
                    !(p->access == MS_ACCESS_IXSCAN && p->scan.sort_ok);
    if (p->sort_stage && !fetched) {
        p->sort_on_keys = p->access == MS_ACCESS_IXSCAN && sort_on_keys(q->sort, p->scan.ix);
        p->fetch_before_sort = !p->sort_on_keys;
        fetched = p->fetch_before_sort;
    }
    bool has_proj = q->mode == MS_QUERY_FIND && q->projection && !bson_empty(q->projection);
    if (has_proj) {
        p->proj = projection_kind(q->projection, p->scan.ix, !fetched);
    }
    p->late_fetch = !fetched && q->mode == MS_QUERY_FIND && p->proj != MS_PROJ_COVERED;
}

static bson_t *
copy_or_null(const bson_t *b)
{
    return b ? bson_copy(b) : NULL;
}

static void
add_totals(const ms_scan_t *s, ms_plan_t *plan)
{
    plan->keys_examined += s->keys;
    plan->docs_examined += s->fetch_docs;
}

static void
totals(const ms_qplan_t *p, ms_plan_t *plan)
{
    plan->keys_examined = p->id_keys;
    plan->docs_examined = p->coll_docs + p->id_docs + p->or_fetch_docs + p->merge_fetch_docs +
                          p->sort_fetch_docs + p->late_docs;
    if (p->scan.ix) {
        add_totals(&p->scan, plan);
    }
    for (size_t i = 0; i < p->nbranches; i++) {
        add_totals(&p->branches[i], plan);
    }
}

bool
ms_query_exec(const ms_coll_t *coll, const ms_query_t *q, ms_recvec_t *out, ms_plan_t *plan,
              bson_error_t *error)
{
    ms_qplan_t *p = bson_malloc0(sizeof *p);
    ms_matcher_t *m = NULL;
    bool ok = false;
    memset(out, 0, sizeof *out);
    memset(plan, 0, sizeof *plan);
    p->access = MS_ACCESS_EOF;
    p->filter = copy_or_null(q->filter);
    p->sort = q->sort && !bson_empty(q->sort) ? bson_copy(q->sort) : NULL;
    p->projection = copy_or_null(q->projection);
    p->skip = q->skip;
    p->limit = q->limit;
    p->mode = q->mode;
    p->write_stops = q->write_stops;
    if (q->sort && !bson_empty(q->sort) && !ms_sort_validate(q->sort, error)) {
        goto done;
    }
    if (q->filter && (!(m = ms_matcher_new(q->filter, error)) ||
                      !ms__matcher_check_vars(m, q->ctx, error))) {
        goto done;
    }
    if (coll && !choose(coll, q, p, error)) {
        goto done;
    }
    shape(p, q);
    if (coll && !ms__query_run(coll, p, q, m, out, error)) {
        ms_recvec_destroy(out);
        goto done;
    }
    totals(p, plan);
    if (!q->explain) {
        ms_metrics_add(MS_METRIC_SCANNED, plan->keys_examined);
        ms_metrics_add(MS_METRIC_SCANNED_OBJECTS, plan->docs_examined);
    }
    ok = true;
done:
    if (ok && q->explain) {
        plan->detail = p;
    } else {
        ms__qplan_free(p);
    }
    ms_matcher_destroy(m);
    return ok;
}

void
ms_plan_destroy(ms_plan_t *plan)
{
    ms__qplan_free(plan->detail);
    plan->detail = NULL;
}

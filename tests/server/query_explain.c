/*
 * explain's queryPlanner.winningPlan for a plan query.c chose, in mongod 6.0's shapes: IXSCAN
 * with keyPattern, indexName, direction and indexBounds; COLLSCAN; FETCH with the filter; OR
 * and SUBPLAN for $or; SORT, LIMIT and SKIP around them.
 */
#include "query-private.h"

#include <string.h>

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
or_collapses(const ms_or_plan_t *o)
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
    ms_or_plan_t orp = {plan->or_branches, plan->or_rooted, NULL, 0};
    char idx[16];
    const char *k;
    if (!ms__plan_or(plan->or_coll, &orp)) {
        append_stage(parent, key, "OR", &or_stage);
        bson_append_document_end(parent, &or_stage);
        return;
    }
    if (or_collapses(&orp)) {
        describe_ixscan(parent, key, orp.cands[0].ix, false, NULL);
        ms__or_plan_destroy(&orp);
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
    ms__or_plan_destroy(&orp);
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
    if (!plan->is_or || !plan->or_rooted || ms__array_count(&plan->or_branches) < 2) {
        describe_limit_sort(plan, q, out, "winningPlan");
        return;
    }
    /* mongod plans a rooted $or branch by branch under a SUBPLAN stage. */
    append_stage(out, "winningPlan", "SUBPLAN", &subplan);
    describe_limit_sort(plan, q, &subplan, "inputStage");
    bson_append_document_end(out, &subplan);
}

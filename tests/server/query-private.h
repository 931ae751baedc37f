/*
 * mongoq-test-server: what the query files share: query.c (choosing a plan), query_scan.c
 * (running it) and query_explain.c (describing it).
 */
#ifndef MS_QUERY_PRIVATE_H
#define MS_QUERY_PRIVATE_H

#include "store-private.h"

#define MS_QUERY_MAX_FIELDS 32
/* Point intervals of one scan ($in values multiplied across fields) before $in stops pinning. */
#define MS_QUERY_MAX_POINTS 1000000

/* A candidate index scan: the index, the points and range the filter gives it, its score. */
typedef struct {
    const ms_index_t *ix;
    size_t eq; /* leading fields pinned to points */
    /* the point being scanned (equality: its value) */
    bson_value_t eqv[MS_QUERY_MAX_FIELDS + 1];
    /* a field's $in array (borrowed from the filter) */
    bson_value_t in[MS_QUERY_MAX_FIELDS];
    bool is_in[MS_QUERY_MAX_FIELDS];
    /* values of each pinned field ($in elements; 1 for equality) */
    size_t npoints[MS_QUERY_MAX_FIELDS];
    size_t combos; /* point intervals: the product of npoints */
    size_t in_fields;
    bool sort_ok;
    bool backward;
    bool range;
    bson_value_t lo, hi;
    bool lo_inc, hi_inc, has_lo, has_hi;
    long score;
} ms_cand_t;

/* The branches of a top-level $or, each with the index scan that serves it. */
typedef struct {
    bson_value_t branches; /* the $or array, borrowed from the filter */
    bool rooted;           /* the filter is the $or alone (mongod plans it with SUBPLAN) */
    ms_cand_t *cands;
    size_t n;
} ms_or_plan_t;

/* Every field of a unique index pinned: each point is at most one document. */
static inline bool
ms__cand_pins_unique(const ms_cand_t *c)
{
    return c->ix && c->ix->unique && c->eq == c->ix->nfields;
}

/* The number of elements of an array value. */
static inline uint32_t
ms__array_count(const bson_value_t *array)
{
    bson_iter_t it;
    uint32_t n = 0;
    bson_iter_init_from_data(&it, array->value.v_doc.data, array->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        n++;
    }
    return n;
}

/* ---- query.c ----------------------------------------------------------------------------- */

/* Plans every branch of o->branches; false (o emptied) when some branch cannot use an index. */
bool
ms__plan_or(const ms_coll_t *coll, ms_or_plan_t *o);
void
ms__or_plan_destroy(ms_or_plan_t *o);

/* ---- query_scan.c ------------------------------------------------------------------------ */

/* Runs the chosen access path (best's index, orp's branches, or the collection) into out,
 * filtered by m, skipped, limited and sorted as q and plan say; counts into plan. False (error
 * filled) when m's $expr fails on a document, as mongod fails the command at that document. */
bool
ms__query_scan(const ms_coll_t *coll, const ms_cand_t *best, const ms_or_plan_t *orp,
               bool natural_backward, const ms_query_t *q, const ms_matcher_t *m,
               ms_recvec_t *out, ms_plan_t *plan, bson_error_t *error);

#endif

/*
 * mongoq-test-server: what the query files share. query_bounds.c builds index bounds from a
 * filter (mongod's IndexBoundsBuilder), query.c chooses the plan, query_ixscan.c walks an index
 * within its bounds (mongod's IndexScan and IndexBoundsChecker), query_scan.c runs the plan's
 * other stages, query_explain.c describes the plan and its counters as mongod's explain does.
 */
#ifndef MS_QUERY_PRIVATE_H
#define MS_QUERY_PRIVATE_H

#include "store-private.h"

#define MS_QUERY_MAX_FIELDS 32

/* ---- index bounds (query_bounds.c) ------------------------------------------------------- */

/* One interval of a field's values; start comes first in the order the scan meets values. */
typedef struct {
    bson_value_t start, end; /* borrowed from the filter, or constants (MinKey, -inf, ...) */
    bool start_inc, end_inc;
} ms_interval_t;

/* mongod's OrderedIntervalList: disjoint intervals in scan order. */
typedef struct {
    ms_interval_t *iv;
    size_t n;
    size_t cap;
} ms_oil_t;

typedef struct {
    ms_oil_t f[MS_QUERY_MAX_FIELDS];
    size_t nfields;
} ms_bounds_t;

/* query_intervals.c: interval lists. append adds iv as it is; push an ascending interval
 * unless it is empty. */
void
ms__oil_append(ms_oil_t *o, const ms_interval_t *iv);
void
ms__oil_push(ms_oil_t *o, const bson_value_t *start, bool start_inc, const bson_value_t *end,
             bool end_inc);
void
ms__oil_all_values(ms_oil_t *o);
void
ms__oil_free(ms_oil_t *o);
bool
ms__oil_is_all_values(const ms_oil_t *o);
/* Sorted, overlapping or touching intervals merged (IndexBoundsBuilder::unionize). */
void
ms__oil_unionize(ms_oil_t *o);
/* *into intersected with other, both ascending (IndexBoundsBuilder::intersectize). */
void
ms__oil_intersect(ms_oil_t *into, const ms_oil_t *other);
void
ms__oil_reverse(ms_oil_t *o);
/* The bounds of one predicate on a field, a value (equality) or an operator document, into out
 * (empty), ascending; *exact when they answer the predicate. */
void
ms__translate(const bson_value_t *v, ms_oil_t *out, bool *exact);

/* What the bounds of an index say about a filter. */
typedef struct {
    bool exact;          /* every predicate is answered by the bounds: no FETCH filter needed */
    bool bounded[MS_QUERY_MAX_FIELDS]; /* the field's bounds are not [MinKey, MaxKey] */
    size_t point_prefix; /* leading fields whose bounds are points only */
    size_t in_fields;    /* fields of that prefix with more than one point */
    size_t points;       /* point combinations of the prefix (capped) */
} ms_bounds_info_t;

/* ix's bounds for filter (NULL: none), ascending in value order per field, what they say, and
 * (residual not NULL: an empty document) the predicates they leave to a FETCH filter. */
void
ms__bounds_build(const ms_index_t *ix, const bson_t *filter, ms_bounds_t *b,
                 ms_bounds_info_t *info, bson_t *residual);
/* The filter as mongod's parsedQuery shows it: $and flattened, equality as {path: {$eq: v}};
 * {} when empty, the conjunct alone, or {$and: [...]}. out initialised by the callee. */
void
ms__filter_normalized(const bson_t *filter, bson_t *out);
void
ms__bounds_destroy(ms_bounds_t *b);
/* Reverses the fields a scan of ix in this direction meets in descending order of value. */
void
ms__bounds_align(ms_bounds_t *b, const ms_index_t *ix, bool backward);
/* mongod's IndexBoundsBuilder::isSingleInterval over aligned bounds: the start and end keys. */
bool
ms__bounds_single(const ms_bounds_t *b, bson_value_t *start, bool *start_inc, bson_value_t *end,
                  bool *end_inc);
/* Whether the interval is a point. */
bool
ms__interval_is_point(const ms_interval_t *iv);
/* indexBounds as explain shows them: {path: ["[\"a\", \"a\"]", ...], ...}. */
void
ms__bounds_append(const ms_bounds_t *b, const ms_index_t *ix, bson_t *parent, const char *key);
/* The field every branch of a $or array constrains alone (their union is that field's bounds),
 * or NULL. */
const char *
ms__or_one_path(const bson_value_t *branches);
/* {path: value, ...} for a COUNT_SCAN's startKey / endKey. */
void
ms__key_append(const ms_index_t *ix, const bson_value_t *keys, bson_t *parent, const char *key);

/* ---- plans (query.c) ------------------------------------------------------------------- */

typedef enum {
    MS_ACCESS_EOF, /* no collection */
    MS_ACCESS_COLLSCAN,
    MS_ACCESS_IXSCAN,
    MS_ACCESS_COUNT_SCAN,
    MS_ACCESS_OR,
    MS_ACCESS_IDHACK,
    MS_ACCESS_SORT_MERGE, /* scan's point prefix exploded: one scan per point (branches) */
    MS_ACCESS_FAST_COUNT /* a count of everything: the collection's record count */
} ms_access_t;

typedef enum { MS_PROJ_NONE, MS_PROJ_SIMPLE, MS_PROJ_DEFAULT, MS_PROJ_COVERED } ms_proj_kind_t;

/* An index scan: its index, bounds, direction and, once run, its counters. */
typedef struct {
    const ms_index_t *ix;
    ms_bounds_t bounds; /* aligned to the scan's direction */
    ms_bounds_info_t info;
    const bson_t *filter; /* what it serves: the query's filter or its $or branch (borrowed) */
    bson_t *residual;     /* the predicates its bounds leave to the FETCH above it (owned) */
    bool backward;
    bool sort_ok; /* the scan's order is the query's sort */
    bool explode; /* one scan per point of its point prefix, merged, gives the sort */
    bool single;  /* one interval: the cursor stops at the end key, no bounds checker */
    long score;
    /* counters */
    int64_t keys, seeks, advanced, need_time;
    bool eof, done_on_key;
    /* the FETCH with the filter above it (when the bounds are not exact) */
    int64_t fetch_docs, fetch_advanced;
} ms_scan_t;

/* The chosen plan, its stages and their counters (ms_plan_t.detail). */
struct ms_qplan_t {
    ms_access_t access;
    ms_scan_t scan;        /* IXSCAN, COUNT_SCAN */
    ms_scan_t *branches;   /* OR: the branches' scans; SORT_MERGE: one scan per point */
    size_t nbranches;
    bson_value_t or_branches; /* borrowed from the filter */
    bool or_rooted;        /* the filter is the $or alone: SUBPLAN, no filter above the OR */
    bool or_fetch;         /* a FETCH above the OR */
    bool natural_backward; /* COLLSCAN */
    /* what the query asked, copied (explain outlives the command's documents only by a call) */
    bson_t *filter, *sort, *projection;
    int64_t skip, limit;
    ms_query_mode_t mode;
    bool write_stops; /* the limit is the UPDATE/DELETE stage's: no LIMIT stage */
    /* the stages above the access */
    bool sort_stage, sort_on_keys, fetch_before_sort, late_fetch;
    ms_proj_kind_t proj;
    /* counters */
    int64_t coll_docs, coll_advanced, id_keys, id_docs;
    int64_t or_tested, or_dropped, or_fetch_docs, or_fetch_already, or_advanced;
    int64_t merge_out, merge_fetch_docs, merge_fetch_advanced; /* SORT_MERGE, its FETCH */
    int64_t sort_fetch_docs, sort_in, sort_out;
    int64_t skip_in, skipped, late_docs, out;
    bool access_eof, limit_reached;
};

/* The branches of o->branches planned: false (o emptied) when some branch cannot use an index. */
bool
ms__plan_or(const ms_coll_t *coll, const ms_query_t *q, ms_qplan_t *o);
void
ms__qplan_free(ms_qplan_t *p);

/* ---- running them (query_ixscan.c, query_scan.c) ------------------------------------------ */

/* Receives the records an access stage yields; false when it wants no more. */
typedef bool (*ms_rec_sink_t)(void *ctx, ms_rec_t *rec, const ms_scan_t *from);

/* A scan of s's index within its bounds, pulled one record at a time, counting into s as
 * mongod's IndexScan; next gives NULL once the scan is over (s->eof). */
typedef struct ms_ixcursor_t ms_ixcursor_t;
ms_ixcursor_t *
ms__ixcursor_new(ms_scan_t *s);
ms_rec_t *
ms__ixcursor_next(ms_ixcursor_t *c);
void
ms__ixcursor_destroy(ms_ixcursor_t *c);
/* Walks s's index within its bounds offering each record in bounds to sink; false when the
 * sink stopped it. */
bool
ms__ixscan_run(ms_scan_t *s, ms_rec_sink_t sink, void *ctx);
/* COUNT_SCAN over s's single interval (always forward): the keys counted, one more examined. */
bool
ms__count_scan_run(ms_scan_t *s, ms_rec_sink_t sink, void *ctx);

/* Runs plan p over coll into out, filtered by m; counts into p. False (error filled) when m's
 * $expr fails on a document, as mongod fails the command at that document. */
bool
ms__query_run(const ms_coll_t *coll, ms_qplan_t *p, const ms_query_t *q, const ms_matcher_t *m,
              ms_recvec_t *out, bson_error_t *error);

/* ---- explain (query_explain.c, query_explain_access.c) ------------------------------------- */

/* A stage's common counters as explain shows them. */
typedef struct {
    int64_t works, advanced, need_time;
    bool eof;
} ms_stage_stats_t;

/* BSONObjBuilder::appendNumber(long long): an int32 when it fits in 30 bits, else an int64. */
void
ms__explain_num(bson_t *b, const char *key, int64_t n);
/* Begins a stage document under key: stage, filter (when not empty), the counters (exec). */
void
ms__explain_open(bool exec, bson_t *parent, const char *key, const char *stage,
                 const bson_t *filter, const ms_stage_stats_t *st, bson_t *child);
/* The counters of p's access stage (the top of it: a FETCH above an IXSCAN, ...). */
ms_stage_stats_t
ms__access_stats(const ms_qplan_t *p);
/* p's access stages under key. */
void
ms__explain_access(const ms_qplan_t *p, bool exec, bson_t *parent, const char *key);

#endif

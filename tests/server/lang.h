/*
 * mongoq-test-server: MongoDB's query, update and aggregation languages over libbson documents.
 *
 * Pure functions: no storage, no locks, no I/O. The command layer (storage, indexes, cursors,
 * change streams) calls these. Every error is a bson_error_t from ms_set_error() with mongod's
 * code and message (BadValue 2 for an unknown operator, 40324 for an unrecognised stage, ...).
 * Nothing unknown is silently ignored.
 *
 * Ownership: const arguments are borrowed for the call. Out bson_t are initialised by the callee
 * (bson_init) on every path, success or failure, and destroyed by the caller.
 */
#ifndef MS_LANG_H
#define MS_LANG_H

#include "common.h"

/* What an evaluation may see besides the document: $$NOW, $$CLUSTER_TIME, the command's `let`
 * variables and an update's arrayFilters. */
typedef struct {
    int64_t now_ms;           /* $$NOW, milliseconds since the epoch (a BSON date) */
    uint32_t cluster_time_t;  /* $$CLUSTER_TIME timestamp seconds (may be 0) */
    uint32_t cluster_time_i;  /* $$CLUSTER_TIME timestamp increment */
    const bson_t *let;        /* {name: value}: the command's `let`, evaluated (NULL: none) */
    const bson_t *array_filters; /* the update's arrayFilters (NULL: none) */
} ms_ctx_t;

/* ---- values ---------------------------------------------------------------------------- */

/*
 * Compares two values in MongoDB's sort order across types (MinKey < null < numbers < string <
 * object < array < binData < ObjectId < bool < date < timestamp < regex < MaxKey), numbers of
 * different types by value, documents field by field, arrays element by element.
 * Returns <0, 0, >0. A missing value is passed as NULL and sorts like null.
 */
int
ms_value_cmp(const bson_value_t *a, const bson_value_t *b);

/* Canonical type order rank used by ms_value_cmp (numbers share one rank). */
int
ms_type_rank(bson_type_t type);

/*
 * Looks up a dotted path ("a.b.c") in doc without array traversal (a numeric component indexes
 * an array). Returns true and sets *out (borrowed from doc) when present.
 */
bool
ms_path_get(const bson_t *doc, const char *path, bson_value_t *out);

/* ---- query (find filters, $match) ------------------------------------------------------ */

typedef struct ms_matcher_t ms_matcher_t;

/*
 * Parses and validates a filter ({a: 1, b: {$gt: 2}, $or: [...], $expr: ...}). Returns NULL and
 * fills error on an invalid filter (unknown operator: BadValue 2 "unknown operator: $foo").
 * The matcher copies what it needs from filter.
 */
ms_matcher_t *
ms_matcher_new(const bson_t *filter, bson_error_t *error);

/*
 * Sets *yes when doc matches. ctx supplies $$NOW and let for $expr. Returns false and fills
 * error when an expression fails on doc (mongod fails the command: expression_expr.cpp).
 */
bool
ms_matcher_test(const ms_matcher_t *m, const bson_t *doc, const ms_ctx_t *ctx, bool *yes,
                bson_error_t *error);

/* As ms_matcher_test, for callers mongod lets not fail: an expression error does not match. */
bool
ms_matcher_matches(const ms_matcher_t *m, const bson_t *doc, const ms_ctx_t *ctx);

void
ms_matcher_destroy(ms_matcher_t *m);

/* ---- sort and projection ---------------------------------------------------------------- */

/* Validates a sort spec ({a: 1, b: -1}; values 1/-1 only, else BadValue). */
bool
ms_sort_validate(const bson_t *sort, bson_error_t *error);

/* Compares two documents under a validated sort spec (missing fields sort as null). */
int
ms_sort_cmp(const bson_t *sort, const bson_t *a, const bson_t *b);

/*
 * Applies a find/findAndModify projection ({a: 1}, {a: 0}, {_id: 0, a: 1}, expressions as in
 * $project) to doc, writing the result to out. Errors: mixing inclusion and exclusion (31254 /
 * 31253 as mongod, or BadValue).
 */
bool
ms_project(const bson_t *projection, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
           bson_error_t *error);

/*
 * Validates a find/findAndModify projection without a document, so a bad projection fails
 * even when nothing matches (as mongod does). Same errors as ms_project.
 */
bool
ms_project_validate(const bson_t *projection, bson_error_t *error);

/* ---- update ----------------------------------------------------------------------------- */

typedef enum {
    MS_UPDATE_OPERATORS,  /* {$set: {...}, $inc: {...}, ...} */
    MS_UPDATE_REPLACEMENT, /* a whole new document (no $ keys) */
    MS_UPDATE_PIPELINE     /* an array of stages: $set/$addFields, $unset, $project,
                              $replaceRoot/$replaceWith */
} ms_update_kind_t;

/*
 * Classifies and validates an update given as a bson_value_t (document or array), e.g. the `u`
 * of an update statement or the `update` of findAndModify. Errors as mongod (FailedToParse 9 for
 * an unknown modifier "Unknown modifier: $foo", a mix of $ and non-$ keys, ...).
 */
bool
ms_update_classify(const bson_value_t *update, ms_update_kind_t *kind, bson_error_t *error);

/*
 * Applies an update to doc and writes the new document to out. _id is preserved (changing it
 * is error 66 ImmutableField). When inserting through an upsert, is_upsert_insert is true so
 * $setOnInsert applies, and doc is the seed from ms_update_upsert_seed. Sets *changed to whether
 * out differs from doc.
 */
bool
ms_update_apply(const bson_value_t *update, const bson_t *doc, bool is_upsert_insert,
                const ms_ctx_t *ctx, bson_t *out, bool *changed, bson_error_t *error);

/*
 * Checks an update's arrayFilters (NULL: none) against it, as mongod parses them: each filter
 * names one identifier (a lowercase letter, then letters and digits), no two the same, every
 * one is used by a $[<identifier>] of the update, every identifier has a filter; none with a
 * pipeline. Call with every update statement, filters or not.
 */
bool
ms_update_check_array_filters(const bson_value_t *update, const bson_t *array_filters,
                              bson_error_t *error);

/*
 * The starting document of an upsert: the equality fields of the query ({a: 1, "b.c": 2,
 * $and: [{d: 3}]} -> {a: 1, b: {c: 2}, d: 3}). No _id is added here.
 */
bool
ms_update_upsert_seed(const bson_t *query, bson_t *out, bson_error_t *error);

/*
 * updateDescription for a change event, from the document before and after:
 * {updatedFields: {...}, removedFields: [...], truncatedArrays: []}. Top-level granularity is
 * enough; nested changes may be reported with dotted paths.
 */
void
ms_update_description(const bson_t *before, const bson_t *after, bson_t *out);
/*
 * The same for a pipeline update, as mongod's delta (doc_diff::computeOplogDiff): arrays are
 * compared element by element, a shorter one reported in truncatedArrays ({field, newSize}),
 * changed or added elements as updatedFields "<path>.<index>".
 */
void
ms_update_description_delta(const bson_t *before, const bson_t *after, bson_t *out);

/* ---- aggregation expressions ------------------------------------------------------------ */

/*
 * Evaluates an aggregation expression (field paths "$a.b", $$NOW, $$ROOT, $$CURRENT, $literal,
 * $add $subtract $multiply $divide $cond $ifNull $min $max $eq $ne $gt $gte $lt $lte $cmp $and
 * $or $not $in, objects of expressions, arrays of expressions) against root.
 * The result is written to out (a copy; release with bson_value_destroy). A missing field yields
 * *missing = true (out set to BSON_TYPE_EOD) so callers can drop the field as mongod does.
 */
bool
ms_expr_eval(const bson_value_t *expr, const bson_t *root, const ms_ctx_t *ctx, bson_value_t *out,
             bool *missing, bson_error_t *error);

/* ---- aggregation pipelines -------------------------------------------------------------- */

/* A growable array of owned documents. */
typedef struct {
    bson_t **docs;
    size_t len;
    size_t cap;
} ms_docvec_t;

void
ms_docvec_init(ms_docvec_t *v);
/* Appends a copy of doc. */
void
ms_docvec_push_copy(ms_docvec_t *v, const bson_t *doc);
/* Appends doc, taking ownership (doc must be heap-allocated with bson_new or bson_copy). */
void
ms_docvec_push_owned(ms_docvec_t *v, bson_t *doc);
void
ms_docvec_destroy(ms_docvec_t *v);

/*
 * Validates a pipeline (a BSON array of stages). Known stages: $match $sort $limit $skip
 * $project $addFields $set $unset $group $count $replaceRoot $replaceWith. Anything else:
 * 40324 "Unrecognized pipeline stage name: '$foo'". $changeStream and other source stages are
 * the command layer's business and are not accepted here.
 */
bool
ms_pipeline_validate(const bson_t *pipeline, bson_error_t *error);

/* After ms_pipeline_validate: fails with 17276 when a $match's $expr uses a variable that is
 * neither bound nor in ctx's let (ctx NULL: none), as mongod does when it parses the pipeline. */
bool
ms_pipeline_check_vars(const bson_t *pipeline, const ms_ctx_t *ctx, bson_error_t *error);

/*
 * Runs a validated pipeline over input (borrowed), writing the results to out (initialised by
 * the callee). $group accumulators: $sum $min $max $avg $first $last $count $push $addToSet.
 */
bool
ms_pipeline_run(const bson_t *pipeline, const ms_docvec_t *input, const ms_ctx_t *ctx,
                ms_docvec_t *out, bson_error_t *error);

#endif

/*
 * mongoq-test-server: internals shared by the language files (the LANG_SOURCES of
 * CMakeLists.txt). Not used by the command layer.
 */
#ifndef MS_LANG_PRIVATE_H
#define MS_LANG_PRIVATE_H

#include "lang.h"

/* ---- values (value.c) -------------------------------------------------------------------- */

bool
ms__is_number(bson_type_t type);
/* A double truncated to int64, saturating (NaN is 0): a plain cast of 1e300 is undefined. */
int64_t
ms__clamp_i64(double d);
/* A number (any numeric type) as a double; 0 for other types. */
double
ms__num_as_double(const bson_value_t *v);
/* Aggregation truthiness: false, null, undefined, missing and numeric zero are false. */
bool
ms__value_truthy(const bson_value_t *v);
/* MongoDB's type name ("double", "string", "object", "missing" for EOD, ...). */
const char *
ms__type_name(bson_type_t type);
/* A $type argument (number or alias) to a BSON type; "number" gives MS_TYPE_NUMBER. */
#define MS_TYPE_NUMBER 0x100
bool
ms__type_parse(const bson_value_t *v, int *type, bson_error_t *error);
bool
ms__type_matches(int type, bson_type_t actual);
/* A value rendered as relaxed extended JSON (for error messages); caller frees (bson_free). */
char *
ms__value_json(const bson_value_t *v);
/* The number of elements of an array (or fields of a document) value. */
size_t
ms__array_len(const bson_value_t *v);
/* Owned value from a built document or array (copies the bytes). */
void
ms__value_from_bson(const bson_t *b, bool is_array, bson_value_t *out);
/* A component that is a non-negative decimal integer without leading zeros ("0", "12"). */
bool
ms__is_index(const char *s, size_t len, uint32_t *idx);
/* Finds key (len bytes) among the top-level fields of a document/array given as raw data. */
bool
ms__find_field(const uint8_t *data, uint32_t len, const char *key, size_t keylen,
               bson_value_t *out);

/* Stable merge sort of pointers. */
typedef int (*ms_cmp_fn)(const void *a, const void *b, void *ctx);
void
ms__stable_sort(void **items, size_t n, ms_cmp_fn cmp, void *ctx);

/* ---- matcher internals (match.c) ------------------------------------------------------- */

/* A document whose first key starts with '$' ({$gt: 1}): operators, not a value to equal. */
bool
ms__is_operator_doc(const bson_value_t *v);

/* A condition on a value ({$gte: 6}, as in $pull and $elemMatch) or equality with a value. */
ms_matcher_t *
ms__matcher_new_value(const bson_value_t *cond, bson_error_t *error);
bool
ms__matcher_is_value(const ms_matcher_t *m);

/* Fails as mongod does when it parses the filter's $expr with the command's let (ctx). */
bool
ms__matcher_check_vars(const ms_matcher_t *m, const ms_ctx_t *ctx, bson_error_t *error);
bool
ms__matcher_matches_value(const ms_matcher_t *m, const bson_value_t *v, const ms_ctx_t *ctx);

/* ---- mutable documents (node.c) -------------------------------------------------------- */

/* A document or array (children) or any other value (value), all owned. */
typedef struct ms_node_t ms_node_t;
struct ms_node_t {
    bson_type_t type;
    bson_value_t value; /* scalars only */
    size_t len;
    size_t cap;
    char **keys; /* documents only */
    ms_node_t **kids;
};

ms_node_t *
ms__node_new(bson_type_t container);
ms_node_t *
ms__node_from_value(const bson_value_t *v);
ms_node_t *
ms__node_from_bson(const bson_t *doc);
ms_node_t *
ms__node_copy(const ms_node_t *n);
void
ms__node_destroy(ms_node_t *n);
/* Writes a document node to out (bson_init'ed here). */
void
ms__node_to_bson(const ms_node_t *doc, bson_t *out);
/* Owned bson_value_t of any node. */
void
ms__node_to_value(const ms_node_t *n, bson_value_t *out);
void
ms__node_append_to(bson_t *dst, const char *key, const ms_node_t *n);
/* Child index of key (documents by name, arrays by index), or -1. */
long
ms__node_find(const ms_node_t *n, const char *key, size_t keylen);
/* Replaces or appends a field of a document node, taking ownership of val. */
void
ms__node_put(ms_node_t *doc, const char *key, size_t keylen, ms_node_t *val);
/* Appends to an array (or a document, with key), taking ownership of val. */
void
ms__node_push(ms_node_t *n, const char *key, size_t keylen, ms_node_t *val);
/* Removes child i. */
void
ms__node_remove_at(ms_node_t *n, size_t i);
/* Moves child i to position 0. */
void
ms__node_move_first(ms_node_t *n, size_t i);
int
ms__node_cmp(const ms_node_t *a, const ms_node_t *b);

/* ---- paths --------------------------------------------------------------------------- */

typedef struct {
    char *buf;    /* the path with '.' replaced by NUL */
    char **parts; /* into buf */
    size_t n;
} ms_path_t;

/* Splits a dotted path; false (error filled by the caller) for an empty path or component. */
bool
ms__path_init(ms_path_t *p, const char *path);
void
ms__path_destroy(ms_path_t *p);

/* ---- expressions (expr.c; the number widening in expr_arith.c) -------------------------- */

/* Checks operator names and argument counts without evaluating. */
bool
ms__expr_validate(const bson_value_t *expr, bson_error_t *error);

/* Fails with 17276 "Use of undefined variable" as mongod does when it parses expr: every $$name
 * is a builtin, bound by an enclosing $let/$map/$filter/$reduce, or a field of let (NULL: none). */
bool
ms__expr_check_vars(const bson_value_t *expr, const bson_t *let, bson_error_t *error);
/* Evaluates with $$ROOT = root and $$CURRENT = current. */
bool
ms__expr_eval(const bson_value_t *expr, const bson_t *root, const bson_t *current,
              const ms_ctx_t *ctx, bson_value_t *out, bson_error_t *error);
/* Aggregation comparison (missing sorts below null, as in $eq/$cmp). */
int
ms__expr_cmp(const bson_value_t *a, const bson_value_t *b);
/* $add / $sum style addition with int32 -> int64 -> double widening. */
typedef struct {
    int kind; /* 0 int32, 1 int64, 2 double, 3 decimal */
    int64_t i;
    double d;
} ms_sum_t;
void
ms__sum_add(ms_sum_t *s, const bson_value_t *v);
void
ms__sum_value(const ms_sum_t *s, bson_value_t *out);
void
ms__double_value(double d, bool decimal, bson_value_t *out);

/* ---- projections and stages (project.c) ----------------------------------------------- */

typedef enum { MS_PROJ_FIND, MS_PROJ_STAGE_PROJECT, MS_PROJ_STAGE_UNSET } ms_proj_mode_t;

bool
ms__project_validate(const bson_t *projection, ms_proj_mode_t mode, bson_error_t *error);
bool
ms__project_apply(const bson_t *projection, ms_proj_mode_t mode, const bson_t *doc,
                  const ms_ctx_t *ctx, bson_t *out, bson_error_t *error);
/* $addFields/$set: each field an expression, dotted paths allowed. */
bool
ms__add_fields_validate(const bson_t *spec, bson_error_t *error);
bool
ms__add_fields_apply(const bson_t *spec, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
                     bson_error_t *error);

/* ---- stages in files of their own, rows of pipeline.c's stage table ---------------------- */

/* A stage's argument as a document (a static view of it); false when it is not a document. */
bool
ms__stage_arg_doc(const bson_value_t *arg, bson_t *doc);

/* Per-document stages share one loop: fn maps one document to zero (*keep false) or one. */
typedef bool (*ms_stage_doc_fn)(const bson_value_t *arg, const bson_t *doc, const ms_ctx_t *ctx,
                                bson_t *out, bool *keep, bson_error_t *error);
bool
ms__stage_map_docs(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                   ms_docvec_t *out, ms_stage_doc_fn fn, bson_error_t *error);

/* $group (group.c) */

bool
ms__group_validate(const bson_value_t *arg, bson_error_t *error);
bool
ms__group_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx, ms_docvec_t *out,
              bson_error_t *error);

/* The stages that reshape each document (pipeline_reshape.c) */
bool
ms__stage_project_validate(const bson_value_t *arg, bson_error_t *error);
bool
ms__stage_project_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                      ms_docvec_t *out, bson_error_t *error);
bool
ms__stage_unset_validate(const bson_value_t *arg, bson_error_t *error);
bool
ms__stage_unset_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                    ms_docvec_t *out, bson_error_t *error);
bool
ms__stage_add_fields_validate(const bson_value_t *arg, bson_error_t *error);
bool
ms__stage_add_fields_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                         ms_docvec_t *out, bson_error_t *error);
bool
ms__stage_replace_root_validate(const bson_value_t *arg, bson_error_t *error);
bool
ms__stage_replace_root_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                           ms_docvec_t *out, bson_error_t *error);
bool
ms__stage_replace_with_validate(const bson_value_t *arg, bson_error_t *error);
bool
ms__stage_replace_with_run(const bson_value_t *arg, ms_docvec_t *in, const ms_ctx_t *ctx,
                           ms_docvec_t *out, bson_error_t *error);

/* ---- single-document stages (pipeline.c), used by pipeline updates ---------------------- */

bool
ms__update_pipeline_validate(const bson_t *pipeline, bson_error_t *error);
bool
ms__update_pipeline_apply(const bson_t *pipeline, const bson_t *doc, const ms_ctx_t *ctx,
                          bson_t *out, bson_error_t *error);

#endif

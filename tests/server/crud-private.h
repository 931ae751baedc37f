/*
 * Helpers shared by the document commands (cmd_crud.c, cmd_write.c, cmd_agg.c), defined in
 * crud.c, and find's arguments (cmd_crud.c), which explain shares.
 */
#ifndef MS_CRUD_PRIVATE_H
#define MS_CRUD_PRIVATE_H

#include "store-private.h"

typedef struct {
    const char *coll;
    bson_t filter;
    bson_t projection;
    bson_t sort;
    int64_t skip;
    int64_t limit;
    int64_t batch_size;
    bool single_batch;
    bool has_hint;
    bson_value_t hint;
    bool explain; /* keep the plan (ms_query_t.explain) */
} ms_find_args_t;

/* The collection named by the command's first field (a string), else InvalidNamespace. */
const char *
ms_crud_coll_name(const ms_cmd_t *c, bson_error_t *error);
/* A document field of cmd as a static view (empty when absent and not required). */
bool
ms_crud_get_doc(const bson_t *cmd, const char *field, bool required, bson_t *out,
                const char *cmd_name, bson_error_t *error);
const char *
ms_crud_type_name(bson_type_t t);
/* Copies in with _id first (an ObjectId when missing); checks _id and the size limit. */
bool
ms_crud_id_first(const bson_t *in, bson_t *out, bson_error_t *error);
/* Appends {index, code, errmsg[, keyPattern, keyValue]} to a writeErrors array. */
void
ms_crud_write_error(bson_t *arr, uint32_t *n, int32_t index, const bson_error_t *error);
/* What a write command does after one of its statements failed (ms_crud_stmt_failed). */
typedef enum { MS_STMT_NEXT, MS_STMT_STOP, MS_STMT_FATAL } ms_stmt_after_t;

/*
 * Statement i of a write command failed with werr. A write conflict fails the whole command (and
 * the transaction): *error = werr, MS_STMT_FATAL. Anything else becomes writeErrors[i]; an
 * ordered command stops there (MS_STMT_STOP), an unordered one goes on (MS_STMT_NEXT).
 */
ms_stmt_after_t
ms_crud_stmt_failed(bson_t *errors, uint32_t *nerr, int32_t i, bool ordered,
                    const bson_error_t *werr, bson_error_t *error);

/* Refuses non-simple collations. */
bool
ms_crud_refuse_unsupported(const bson_t *doc, const char *where, bson_error_t *error);
/* The arrayFilters of an update statement or findAndModify (a view into stmt; *has false when
 * absent), checked against its update (ms_update_check_array_filters). */
bool
ms_crud_array_filters(const bson_t *stmt, const bson_value_t *update, bson_t *filters,
                      bool *has, const char *where, bson_error_t *error);
/* Evaluates the command's `let` into vars (always initialised; the caller destroys it after the
 * command) and makes it c->lang.let: $$<name> in the command's expressions. Bad names are
 * mongod's 16866-16868. */
bool
ms_crud_let(ms_cmd_t *c, bson_t *vars, bson_error_t *error);
/* cmd_agg_write.c: $out and $merge. The pipeline without its last stage when that is $out or
 * $merge (*stage, *spec borrowed from pipeline; *stage NULL otherwise) appended to rest (an
 * initialised bson_t); 40601 when either is anywhere but last. */
bool
ms_agg_split_write_stage(const bson_t *pipeline, const char **stage, bson_value_t *spec,
                         bson_t *rest, bson_error_t *error);
/* Whether an aggregate command's pipeline ends with $out or $merge (it takes a writeConcern). */
bool
ms_agg_writes(const bson_t *cmd);
/* Writes an aggregate's results as its last stage ($out or $merge, spec) says. */
bool
ms_agg_write_stage(ms_cmd_t *c, const char *stage, const bson_value_t *spec,
                   const ms_docvec_t *results, bson_error_t *error);
/* cmd_agg.c: what of a pipeline the query runs (mongod pushes it into the query layer). */
typedef struct {
    bson_t match; /* a leading $match (a view into the pipeline) */
    bool has_match;
    bson_t sort; /* a $sort after it */
    bool has_sort;
    int64_t limit;        /* a $limit after those (0: none) */
    ms_query_mode_t mode; /* MS_QUERY_NO_FIELDS when the next stage reads no field */
    bson_t *rest;         /* the other stages, a new array */
} ms_agg_prefix_t;

void
ms_agg_prefix(const bson_t *pipeline, ms_agg_prefix_t *out);
void
ms_agg_prefix_destroy(ms_agg_prefix_t *p);
/* cmd_explain.c: an aggregate's explain (exec_stats: with executionStats) into reply; command is
 * what the reply shows as the explained command; write_stage the $out/$merge split off (or
 * NULL). */
bool
ms_explain_aggregate(ms_cmd_t *c, const char *coll, const bson_t *pipeline,
                     const bson_value_t *hint, const char *write_stage, bool exec_stats,
                     bool all_plans, const bson_t *command, bson_t *reply, bson_error_t *error);
/* cmd_agg_db.c: {aggregate: 1} with $documents or $listLocalSessions first (else
 * InvalidNamespace 73), its cursor reply. */
bool
ms_agg_db(ms_cmd_t *c, const bson_t *pipeline, int64_t batch_size, bool explain, bson_t *reply,
          bson_error_t *error);
/* Runs a command's handler body with its `let` (ms_crud_let). */
bool
ms_crud_with_let(ms_cmd_t *c, bson_t *reply, bson_error_t *error,
                 bool (*run)(ms_cmd_t *c, bson_t *reply, bson_error_t *error));

/* The statements array of a write command (1..100000 entries). */
bool
ms_crud_statements(const ms_cmd_t *c, const char *field, bson_iter_t *out, bson_error_t *error);
/* The "ordered" flag of a write command (default true). */
bool
ms_crud_ordered(const bson_t *cmd);

bool
ms_crud_parse_find(ms_cmd_t *c, ms_find_args_t *a, bson_error_t *error);
/* The count command c: *n, and the plan (kept when explain). */
bool
ms_crud_count(ms_cmd_t *c, bool explain, int64_t *n, ms_plan_t *plan, bson_error_t *error);
bool
ms_crud_run_find(ms_cmd_t *c, const ms_find_args_t *a, ms_docvec_t *out, ms_plan_t *plan,
                 bson_error_t *error);

#endif

/*
 * mongoq-test-server storage: databases -> collections -> records, each collection with its
 * ordered indexes (skip lists keyed by the compound key, then the record id). Everything here
 * runs under the storage lock (ms_store_lock). Documents are immutable and reference-counted so
 * a transaction's snapshot can share them with the live collection.
 */
#ifndef MS_STORE_PRIVATE_H
#define MS_STORE_PRIVATE_H

#include "server-private.h"

/* ---- documents --------------------------------------------------------------------------- */

typedef struct {
    int32_t refs;
    uint32_t len;
    uint8_t data[];
} ms_doc_t;

ms_doc_t *
ms_doc_new(const bson_t *b);
ms_doc_t *
ms_doc_ref(ms_doc_t *d);
void
ms_doc_unref(ms_doc_t *d);
/* A read-only bson_t over the document's bytes (valid while d is referenced). */
void
ms_doc_view(const ms_doc_t *d, bson_t *out);

/* ---- records and collections ------------------------------------------------------------ */

typedef struct ms_rec_t {
    ms_doc_t *doc;
    int64_t recid;
    uint64_t seq; /* global commit sequence of the last write (transaction conflicts) */
    struct ms_rec_t *prev, *next;
    struct ms_rec_t *clone; /* scratch of ms_coll_clone (under the storage lock): its copy */
} ms_rec_t;

typedef struct ms_ientry_t ms_ientry_t;

typedef struct {
    char *name;
    bson_t *spec; /* as listIndexes shows it: {v: 2, key, name, unique, ...} */
    bson_t *key;
    size_t nfields;
    char **paths;
    int *dirs;
    bool unique;
    bool sparse;
    ms_matcher_t *partial; /* partialFilterExpression, or NULL */
    bool has_ttl;
    int64_t expire_after_secs;
    bool multikey; /* some document had an array on a key path: not used for planning */
    /* skip list */
    ms_ientry_t *head;
    int level;
    size_t len;
    uint64_t rng;
} ms_index_t;

typedef struct ms_validation_t ms_validation_t;

typedef struct ms_coll_t {
    char *db;
    char *name;
    char *ns;
    bson_t *options;
    ms_validation_t *validation; /* from options (validation.c); NULL: no validator */
    uint8_t uuid[16];
    ms_rec_t *head, *tail;
    size_t count;
    ms_index_t **indexes; /* [0] is _id_ */
    size_t nindexes;
    int64_t next_recid;
    struct ms_coll_t *next;
} ms_coll_t;

typedef struct ms_db_t {
    char *name;
    ms_coll_t *colls;
    struct ms_db_t *next;
} ms_db_t;

/* The live databases (under the storage lock). */
ms_db_t *
ms_store_dbs(void);
ms_coll_t *
ms_store_coll(const char *db, const char *coll);
/* Creates db.coll (must not exist) with options (may be NULL). */
ms_coll_t *
ms_store_create_coll(const char *db, const char *coll, const bson_t *options);
void
ms_store_drop_coll(ms_coll_t *c);
/* Whether c records pre- and post-images for change streams (changeStreamPreAndPostImages). */
bool
ms_coll_pre_post_images(const ms_coll_t *c);
/* Parses {enabled: bool} of command cmd_name's changeStreamPreAndPostImages (cmd_collmod.c),
 * with the IDL's errors. */
bool
ms_parse_pre_post_images(const char *cmd_name, const bson_iter_t *it, bool *enabled,
                         bson_error_t *error);
/* Sets or clears options.changeStreamPreAndPostImages. */
void
ms_coll_set_pre_post_images(ms_coll_t *c, bool enabled);
/* Renames c within its database (the target must not exist). */
void
ms_store_rename_coll(ms_coll_t *c, const char *to);
/* Drops every collection of db (the database disappears with its last collection). */
void
ms_store_drop_db(const char *db);
/* Global commit sequence: the next value. */
uint64_t
ms_store_next_seq(void);
uint64_t
ms_store_current_seq(void);

/* Validates a collection name for creation: InvalidNamespace 73. */
bool
ms_valid_coll_name(const char *db, const char *coll, bson_error_t *error);
bool
ms_valid_db_name(const char *db, bson_error_t *error);

ms_coll_t *
ms_coll_new(const char *db, const char *name, const bson_t *options);
void
ms_coll_destroy(ms_coll_t *c);
/* A private copy sharing the documents, with the same indexes (a transaction's snapshot). */
ms_coll_t *
ms_coll_clone(const ms_coll_t *c);

/*
 * A copy of src whose entries point at map(rec) for each of src's records, in src's order
 * (index.c): linear, without comparing keys, where adding every record again is n log n.
 */
ms_index_t *
ms_index_clone(const ms_index_t *src, ms_rec_t *(*map)(ms_rec_t *rec));
/* Inserts doc (a reference is taken); unique violations fail with 11000 and leave c as it was. */
bool
ms_coll_insert(ms_coll_t *c, ms_doc_t *doc, ms_rec_t **out, bson_error_t *error);
bool
ms_coll_replace(ms_coll_t *c, ms_rec_t *rec, ms_doc_t *doc, bson_error_t *error);
void
ms_coll_remove(ms_coll_t *c, ms_rec_t *rec);
ms_rec_t *
ms_coll_find_id(const ms_coll_t *c, const bson_value_t *id);
ms_index_t *
ms_coll_index_by_name(const ms_coll_t *c, const char *name);
/* Key patterns compare as BSON does: the same fields in order, numbers by value. */
bool
ms_key_pattern_equal(const bson_t *a, const bson_t *b);
/* The ready index whose key pattern equals key (numbers by value); *count says how many match. */
ms_index_t *
ms_coll_index_by_key(const ms_coll_t *c, const bson_t *key, size_t *count);
/* Adds a built index (unique violations among existing documents fail with 11000). */
bool
ms_coll_add_index(ms_coll_t *c, ms_index_t *ix, bson_error_t *error);
void
ms_coll_drop_index(ms_coll_t *c, ms_index_t *ix);

/* ---- collection validators (validation.c, validation_error.c) ------------------------------ */

/* validator, validationLevel or validationAction. */
bool
ms_validation_field(const char *name);
/*
 * The validation fields of a create or collMod command for db.coll, checked as mongod does
 * (IDL types and enums, the validator parsed, no validator on admin/local/config), copied as
 * given into *out (initialised by the callee).
 */
bool
ms_validation_parse(const ms_cmd_t *c, const char *coll, bson_t *out, bson_error_t *error);
/* Collection options with changes applied, in mongod's order (empty validator: none). */
void
ms_validation_merge(const bson_t *options, const bson_t *changes, bson_t *out);
/* (Re)builds c->validation from c->options / frees it. */
void
ms_coll_validation_init(ms_coll_t *c);
void
ms_coll_validation_free(ms_coll_t *c);
/*
 * Whether doc may be stored in c (old: the document it replaces, NULL for an insert), by the
 * collection's validator, level and action; else DocumentValidationFailure 121 with errInfo
 * set as the error's extra fields (ms_error_info).
 */
bool
ms_validation_check(const ms_coll_t *c, const bson_t *old, const bson_t *doc, bson_error_t *error);
/* errInfo.details for doc failing validator (mongod's doc_validation_error shapes). */
void
ms_validation_details(const bson_t *validator, const bson_t *doc, const ms_ctx_t *ctx,
                      bson_t *out);

/* ---- indexes (index.c) ------------------------------------------------------------------- */

/* An empty index with its skip list, nothing else set (index_spec.c fills it). */
ms_index_t *
ms__index_alloc(void);
void
ms_index_destroy(ms_index_t *ix);

/* ---- index specs (index_spec.c) ---------------------------------------------------------- */

/* Validates a createIndexes spec as mongod's _isSpecOk; builds an empty index. */
ms_index_t *
ms_index_new(const bson_t *spec, bson_error_t *error);
/* Makes ix a TTL index with this expireAfterSeconds, as collMod does (spec updated to match). */
void
ms_index_set_ttl(ms_index_t *ix, int64_t expire_after_secs);

/* mongod's IndexDescriptor::Comparison of a requested index with an existing one. */
typedef enum {
    MS_INDEX_DIFFERENT,  /* another key pattern, or unique, sparse or partial filter differ */
    MS_INDEX_EQUIVALENT, /* the same signature, other options (e.g. expireAfterSeconds) differ */
    MS_INDEX_IDENTICAL
} ms_index_cmp_t;
ms_index_cmp_t
ms_index_compare(const ms_index_t *requested, const ms_index_t *existing);

/* ---- partial filters (index_partial.c) --------------------------------------------------- */

/*
 * Whether a parsed partialFilterExpression holds only what mongod 6.0 allows: equality,
 * $exists: true, $gt/$gte/$lt/$lte, $type, and $and at the top level. Else CannotCreateIndex 67
 * "Expression not supported in partial index: <debugString>" (or 224 / 2 for $expr / $where).
 */
bool
ms_partial_filter_check(const bson_t *filter, bson_error_t *error);
/* Whether two valid partial filters are the same after mongod's normalisation. */
bool
ms_partial_filter_equivalent(const bson_t *a, const bson_t *b);
/* Fails with 11000 if doc would violate ix's uniqueness (ignoring self). */
bool
ms_index_check(ms_index_t *ix, const ms_coll_t *c, const ms_doc_t *doc, const ms_rec_t *self,
               bson_error_t *error);
/* Adds/removes rec's entries (rec->doc must be the document they were computed from). */
bool
ms_index_add(ms_index_t *ix, ms_rec_t *rec, bson_error_t *error);
void
ms_index_remove(ms_index_t *ix, ms_rec_t *rec);
/* Key values of a document for a single-key index lookup (e.g. _id). */
ms_rec_t *
ms_index_find_exact(const ms_index_t *ix, const bson_value_t *keys);
/*
 * The key tuples of doc in ix (ix->nfields values each, borrowed from doc) in *keys (caller
 * frees with bson_free); *count 0 when ix does not index doc. False for parallel arrays.
 */
bool
ms_index_doc_keys(const ms_index_t *ix, const ms_doc_t *doc, bson_value_t **keys, size_t *count);
/* A record other than self whose entry in ix has this key tuple, or NULL. */
ms_rec_t *
ms_index_find_key(const ms_index_t *ix, const bson_value_t *tuple, const ms_rec_t *self);

/* Index scans for the planner: first entry >= bound on n fields (> when after; n 0: first). */
ms_ientry_t *
ms_index_seek(const ms_index_t *ix, const bson_value_t *bound, size_t n, bool after);
ms_ientry_t *
ms_index_last(const ms_index_t *ix);
ms_ientry_t *
ms_ientry_next(const ms_ientry_t *e, bool backward);
const bson_value_t *
ms_ientry_keys(const ms_ientry_t *e);
ms_rec_t *
ms_ientry_rec(const ms_ientry_t *e);

/* Key pattern as a string "a_1_b_-1" (default index names). Caller frees. */
char *
ms_index_default_name(const bson_t *key);


/* ---- queries (query.c) ----------------------------------------------------------------- */

typedef struct {
    ms_rec_t **recs;
    size_t len;
    size_t cap;
} ms_recvec_t;

void
ms_recvec_destroy(ms_recvec_t *v);

/* What the query's results are for (mongod's QueryPlannerParams::IS_COUNT and the stages). */
typedef enum {
    MS_QUERY_FIND,     /* the documents: FETCH what the index does not give */
    MS_QUERY_COUNT,    /* the count command: a COUNT stage, no document read that need not be */
    MS_QUERY_NO_FIELDS /* an aggregate whose later stages read no field ($count, ...) */
} ms_query_mode_t;

typedef struct {
    const bson_t *filter; /* may be NULL: everything */
    const bson_t *sort;   /* may be NULL or empty */
    const bson_value_t *hint; /* may be NULL */
    int64_t skip;
    int64_t limit; /* 0: none */
    const ms_ctx_t *ctx;
    const bson_t *projection; /* find's projection, NULL or empty: whole documents */
    ms_query_mode_t mode;
    bool write_stops; /* limit is an update's or delete's one document, not a LIMIT stage */
    bool explain;     /* keep the plan and its counters (plan->detail); metrics untouched */
} ms_query_t;

typedef struct ms_qplan_t ms_qplan_t;

typedef struct {
    int64_t keys_examined; /* index keys looked at, as mongod counts keysExamined */
    int64_t docs_examined; /* documents fetched or scanned */
    ms_qplan_t *detail;    /* the plan and its stages' counters when q->explain, else NULL */
} ms_plan_t;

/* Runs q over c: the matching records in order, after skip and limit. Adds what it examined to
 * the serverStatus metrics unless q->explain. */
bool
ms_query_exec(const ms_coll_t *c, const ms_query_t *q, ms_recvec_t *out, ms_plan_t *plan,
              bson_error_t *error);
/* Frees what an explained query kept (no-op otherwise). */
void
ms_plan_destroy(ms_plan_t *plan);

/* A write stage explain shows above the query's: UPDATE or DELETE, and what it would do. */
typedef struct {
    const char *stage; /* "UPDATE", "DELETE" */
    int64_t matched, would_modify, would_upsert, would_delete;
    int64_t returned; /* documents it hands back (findAndModify: 1) */
} ms_write_stage_t;

/* queryPlanner's winningPlan of an explained query (under write, which may be NULL) at key. */
void
ms_plan_describe(const ms_plan_t *plan, const ms_write_stage_t *write, bson_t *parent,
                 const char *key);
/* executionStats of an explained query: executionSuccess, nReturned, totals, executionStages
 * (with allPlansExecution: [] when all_plans). */
void
ms_plan_exec_stats(const ms_plan_t *plan, const ms_write_stage_t *write, bool all_plans,
                   bson_t *parent);
/* queryPlanner's parsedQuery: the filter's conjuncts as mongod shows them. */
void
ms_plan_parsed_query(const bson_t *filter, bson_t *parent);

/* ---- serverStatus metrics (metrics.c) ----------------------------------------------------- */

typedef enum {
    MS_METRIC_INSERTED, /* metrics.document.inserted */
    MS_METRIC_UPDATED,  /* metrics.document.updated: documents matched by updates */
    MS_METRIC_DELETED,  /* metrics.document.deleted */
    MS_METRIC_RETURNED, /* metrics.document.returned: documents in cursor batches */
    MS_METRIC_SCANNED,  /* metrics.queryExecutor.scanned: index keys examined */
    MS_METRIC_SCANNED_OBJECTS, /* metrics.queryExecutor.scannedObjects: documents examined */
    MS_METRIC_COUNT
} ms_metric_t;

void
ms_metrics_add(ms_metric_t m, int64_t n);
/* serverStatus's metrics: {document: {...}, queryExecutor: {...}} as int64 totals. */
void
ms_metrics_append(bson_t *reply);

/* ---- write context: live store or transaction (write.c) ---------------------------------- */

typedef struct {
    ms_txn_t *txn; /* NULL: writes go to the live store and the oplog */
    const char *db;
    ms_op_t *ops; /* live writes to hand to ms_oplog_commit */
    bson_t **owned;
    size_t nops;
    size_t cap;
    size_t nowned;
    size_t owned_cap;
    const bson_t *lsid; /* a committing transaction's session, else NULL */
    int64_t txn_number;
    bool bypass_validation; /* bypassDocumentValidation, or no command (a commit applying) */
    bool delta; /* the update being applied is a pipeline update: arrays diffed (truncatedArrays) */
    /*
     * A retryable write (lsid and txnNumber outside a transaction): its reply body, which the
     * handler sets (complete) before ms_wctx_commit, is journaled with the writes so a retry
     * after a restart gets it back (MS_OP_RETRY_RESULT in oplog.h).
     */
    bson_t *retry_lsid;
    int64_t retry_txn_number;
    const bson_t *result;
    ms_cmd_t *cmd; /* the command writing (NULL: a commit applying), for onPrimaryTransactionalWrite */
} ms_wctx_t;

void
ms_wctx_init(ms_wctx_t *w, ms_cmd_t *c);
/*
 * The collection to read or write: the live one, or the transaction's snapshot of it.
 * create: make it (implicitly, as insert and upsert do) when missing. NULL when missing.
 */
ms_coll_t *
ms_wctx_coll(ms_wctx_t *w, const char *coll, bool create, bson_error_t *error);
/* Creates live collection coll with options (may be NULL), logged for the oplog. */
ms_coll_t *
ms_wctx_create_coll(ms_wctx_t *w, const char *coll, const bson_t *options, bson_error_t *error);
bool
ms_wctx_insert(ms_wctx_t *w, ms_coll_t *c, const bson_t *doc, bson_error_t *error);
bool
ms_wctx_replace(ms_wctx_t *w, ms_coll_t *c, ms_rec_t *rec, const bson_t *doc, bool is_replacement,
                bson_error_t *error);
bool
ms_wctx_delete(ms_wctx_t *w, ms_coll_t *c, ms_rec_t *rec, bson_error_t *error);
/* Records a non-document op (create, drop, index) for the oplog. */
void
ms_wctx_log(ms_wctx_t *w, ms_op_type_t type, const char *coll, const bson_t *spec);
/* Hands the live writes to the oplog (with a retryable write's result, see above). */
bool
ms_wctx_commit(ms_wctx_t *w, bson_error_t *error);
void
ms_wctx_destroy(ms_wctx_t *w);

/* ---- sessions and transactions (session.c) ---------------------------------------------- */

/*
 * Called before any live change to db.coll (coll NULL: the whole database): every active
 * transaction that has not seen it yet takes its snapshot now, and transactions that wrote a
 * document this write touches (id non-NULL) are aborted with WriteConflict.
 */
void
ms_txn_before_live_write(const char *db, const char *coll, const bson_value_t *id);
/* A transaction's snapshot of db.coll (taken on first use); *exists false when missing. */
ms_coll_t *
ms_txn_view(ms_txn_t *txn, const char *db, const char *coll, bool create, bson_error_t *error);
/* True when txn created db.coll (create, or an insert or createIndexes creating it). */
bool
ms_txn_created_coll(const ms_txn_t *txn, const char *db, const char *coll);
/*
 * Conflict check and bookkeeping before a transaction writes the document with id of c (its
 * snapshot of the collection); doc is the new version (NULL for a delete). WriteConflict 112
 * (and the transaction aborted) when another active transaction wrote that document or one of
 * doc's unique keys, or when either was changed by a commit after the snapshot.
 */
bool
ms_txn_before_write(ms_txn_t *txn, const ms_coll_t *c, const bson_value_t *id,
                    const ms_doc_t *doc, bson_error_t *error);
/*
 * Called before a live write stores doc in c: active transactions that wrote one of doc's
 * unique keys are aborted (the transaction loses, as for ms_txn_before_live_write).
 */
void
ms_txn_before_live_keys(const ms_coll_t *c, const ms_doc_t *doc);
/* Records a transaction's operation, applied to the live store at commit. */
void
ms_txn_record(ms_txn_t *txn, ms_op_type_t type, const char *db, const char *coll,
              const bson_value_t *id, const bson_t *doc, const bson_t *spec);

/* Session bookkeeping around a command (under the storage lock). */
bool
ms_session_begin(ms_cmd_t *c, bool *replayed, bson_t *reply, bson_error_t *error);
void
ms_session_end(ms_cmd_t *c, bool ok, const bson_t *reply);
void
ms_session_end_sessions(const bson_t *ids);
/* killSessions / killAllSessions: aborts the transactions and kills the cursors of the sessions
 * ids lists ([{id: UUID}, ...]), of every session when ids is NULL. */
void
ms_session_kill(const bson_t *ids);
/* $listLocalSessions: {_id: {id, uid}, lastUse} of every session, appended to out. */
void
ms_session_list(ms_docvec_t *out);
/* Journal replay: the result of retryable write txn_number of session lsid ({id: UUID}). */
void
ms_session_restore_retry(const bson_t *lsid, int64_t txn_number, const bson_t *reply);

/* ---- views (view.c) ---------------------------------------------------------------------- */

/* Whether c is a view (options {viewOn, pipeline}). */
bool
ms_view_is(const ms_coll_t *c);
/* A new view's definition: its pipeline (no $out, $merge, $changeStream) and no cycle. */
bool
ms_view_check_definition(const char *db, const char *name, const bson_t *options,
                         bson_error_t *error);
/* A view's documents as a temporary collection owned by w's command; NULL and error on failure. */
ms_coll_t *
ms_view_materialize(ms_wctx_t *w, const ms_coll_t *view, bson_error_t *error);
/* Frees the views a command read. */
void
ms_view_release(ms_cmd_t *c);
/* CommandNotSupportedOnView 166 when c writes to a view or works on its indexes (storage lock
 * held). */
bool
ms_view_refuse(const ms_cmd_t *c, bson_error_t *error);

#endif

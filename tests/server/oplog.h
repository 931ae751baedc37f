/*
 * mongoq-test-server: the oplog (history of committed writes), the journal (--dbpath) and
 * change streams. Owned by oplog.c, journal.c and changestream*.c.
 *
 * Contract with the storage/command layer (store.c and friends):
 *  - Every committed write is handed to ms_oplog_commit() exactly once, in commit order, while
 *    the caller still holds the storage write lock, BEFORE the client is answered. A transaction
 *    hands all its operations in one call at commitTransaction. ms_oplog_commit journals them
 *    (when --dbpath is set; the write() completes before it returns, so kill -9 loses nothing
 *    acknowledged), appends them to the in-memory history (bytes as mongod's oplog, or
 *    --history N events, --history-bytes N bytes), and wakes
 *    waiting change streams.
 *  - At start-up, ms_oplog_init() replays the journal by calling ms_store_replay() for every
 *    journaled operation, in order, before the server accepts connections.
 *  - Change streams never take the storage lock while they wait; updateLookup calls
 *    ms_store_lookup(), which takes it briefly.
 *  - dropDatabase is handed as mongod's oplog has it: one MS_OP_DROP per collection, then one
 *    MS_OP_DROP_DATABASE (collection streams see their drop + invalidate; database streams see
 *    the drops, then dropDatabase + invalidate).
 *  - Ops of a transaction carry lsid and txn_number, which the events report as mongod does.
 *  - A retryable write (lsid + txnNumber outside a transaction) hands its writes followed by one
 *    MS_OP_RETRY_RESULT {lsid, txn_number, spec = the reply} in the same ms_oplog_commit call,
 *    as mongod writes config.transactions in the write's own storage transaction: the journal
 *    holds both or neither, and a retry after a restart gets the first reply. The record takes
 *    the cluster time of the write before it, is never in the history and is never an event.
 */
#ifndef MS_OPLOG_H
#define MS_OPLOG_H

#include "common.h"

typedef enum {
    MS_OP_INSERT,        /* full_document = the inserted document */
    MS_OP_UPDATE,        /* full_document = after image; update_description set */
    MS_OP_REPLACE,       /* full_document = the replacement */
    MS_OP_DELETE,        /* full_document = NULL */
    MS_OP_CREATE,        /* collection created (explicitly or implicitly); options in spec */
    MS_OP_DROP,          /* collection dropped */
    MS_OP_DROP_DATABASE, /* coll = NULL */
    MS_OP_CREATE_INDEX,  /* spec = the index spec ({key, name, unique, ...}) */
    MS_OP_DROP_INDEX,    /* spec = {name: "..."} */
    MS_OP_COLL_MOD,      /* spec = {index: {name | keyPattern, expireAfterSeconds}} (mongod's o) */
    MS_OP_RETRY_RESULT,  /* a retryable write's result (see below); not an event */
    MS_OP_RENAME         /* coll renamed: spec = {to: "<coll>", dropTarget: bool} (same db) */
} ms_op_type_t;

typedef struct {
    ms_op_type_t type;
    const char *db;
    const char *coll;                 /* NULL for MS_OP_DROP_DATABASE */
    const bson_t *document_key;       /* {_id: ...} for document operations, else NULL */
    const bson_t *full_document;      /* see above */
    const bson_t *update_description; /* {updatedFields, removedFields, truncatedArrays} */
    const bson_t *spec;               /* index spec / collection options, else NULL */
    const bson_t *pre_image;          /* update, replace, delete on a collection with
                                         changeStreamPreAndPostImages: the document before */
    const bson_t *lsid;               /* inside a transaction: its session id, else NULL */
    int64_t txn_number;               /* inside a transaction: its txnNumber */
} ms_op_t;

/* A cluster time: a BSON timestamp (seconds, increment). */
typedef struct {
    uint32_t t;
    uint32_t i;
} ms_optime_t;

/*
 * Opens the journal in dbpath (NULL: in memory only), keeps the latest events: at most `history`
 * of them (0: no count limit) in at most `history_bytes` bytes (0: mongod's default oplog size,
 * from the free space of dbpath's filesystem), and replays the journal through ms_store_replay(). Call once.
 */
bool
ms_oplog_init(const char *dbpath, size_t history, uint64_t history_bytes, bson_error_t *error);

/* Flushes and closes the journal (on SIGTERM). */
void
ms_oplog_shutdown(void);

/*
 * Commits ops (n >= 1, all with one cluster time per op, consecutive increments). Returns the
 * cluster time of the last op in *optime. Fails only on journal I/O errors (the write must then
 * be reported as failed by the caller).
 */
bool
ms_oplog_commit(const ms_op_t *ops, size_t n, ms_optime_t *optime, bson_error_t *error);

/*
 * With --dbpath: returns once fdatasync has covered everything journaled so far (a write whose
 * write concern asks for the journal calls it before answering). Concurrent callers share one
 * sync (group commit). Returns at once without a journal or when nothing is left unsynced.
 * Never takes the storage lock; call it without holding it.
 */
bool
ms_journal_wait_durable(bson_error_t *error);

/* With --dbpath: appends mongod's serverStatus wiredTiger: {log: {"log sync operations",
 * "log sync time duration (usecs)"}} for the journal's syncs. Nothing without a journal. */
void
ms_journal_server_status(bson_t *reply);

/*
 * --noop-interval (noop.c): when nothing was committed since *seen_gen, moves the newest cluster
 * time one tick on without a history entry (mongod's periodic no-op oplog entry, which no change
 * stream reports but which advances every stream's postBatchResumeToken) and wakes the waiting
 * getMores. Sets *seen_gen to the current commit generation. Returns whether it wrote one.
 */
bool
ms_oplog_noop_if_idle(uint64_t *seen_gen);

/*
 * A $clusterTime gossiped by a client (a router) moves the server's clock up to it, as mongod's
 * logical clock advances on every $clusterTime it receives: writes (and no-ops) after it get
 * later cluster times, so writes made one after another through a router order across its
 * shards. The history's newest position, and so change streams' high-water marks, do not move.
 */
void
ms_oplog_advance_cluster_time(ms_optime_t seen);

/* The newest committed cluster time (for operationTime and $clusterTime in replies). */
ms_optime_t
ms_oplog_last_optime(void);

/* ---- change streams (aggregate with a first stage $changeStream) ------------------------- */

typedef struct ms_changestream_t ms_changestream_t;

/*
 * Opens a change stream for `aggregate` on db.coll (coll NULL or 1 for a whole database:
 * aggregate: 1). cmd is the whole aggregate command (pipeline, cursor.batchSize, ...).
 * standalone: the server runs with --standalone, so fail with 40573 as mongod does.
 * On success *out is the stream and reply holds {cursor: {id: cursor_id, ns, firstBatch,
 * postBatchResumeToken}, ok: 1}. When the first batch already ends the stream (an invalidate),
 * the reply's id is 0 and *out is NULL: there is no cursor to register.
 */
bool
ms_changestream_open(const char *db, const char *coll, const bson_t *cmd, int64_t cursor_id,
                     bool standalone, ms_changestream_t **out, bson_t *reply,
                     bson_error_t *error);

/*
 * getMore on a change stream: waits (without holding the storage lock, without busy waiting)
 * until an event arrives or maxTimeMS (default 1000) passes, then answers {cursor: {id, ns,
 * nextBatch, postBatchResumeToken}, ok: 1}. *closed is set when the stream was invalidated and
 * the cursor must be removed (id 0 in the reply).
 */
bool
ms_changestream_getmore(ms_changestream_t *cs, const bson_t *cmd, bson_t *reply, bool *closed,
                        bson_error_t *error);

void
ms_changestream_destroy(ms_changestream_t *cs);

/* Wakes every waiting getMore (killCursors, shutdown). */
void
ms_changestream_wake_all(void);

/* ---- provided by the storage layer (store.c) ------------------------------------------- */

/* Applies one journaled op to storage during replay, without logging it again. */
bool
ms_store_replay(const ms_op_t *op, bson_error_t *error);

/*
 * Copies the current version of db.coll's document whose _id equals id into out (initialised
 * by the callee). Returns false when there is none. Takes the storage lock briefly.
 */
bool
ms_store_lookup(const char *db, const char *coll, const bson_value_t *id, bson_t *out);

#endif

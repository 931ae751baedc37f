/*
 * Message groups (docs/design.md, Groups). A grouped message is admitted by its group or waits:
 * the group document (fields.h) counts the messages holding a place (`active`, at most the
 * queue's group_concurrency) and those waiting, and every write that moves a message into or
 * out of a place writes the group document in the same transaction. Only admitted messages are
 * "ready", so the ordinary claim (claim.c, unchanged) finds them and never a waiting one.
 *
 * Transactions (group.c's txn helper): every transaction here writes its group's document, so
 * two that touch one group conflict on it and the server lets one commit; the other is retried
 * by libmongoc's with_transaction (TransientTransactionError). Writes outside transactions
 * (claim, retry, extend, reap back to ready, the worker's hand-back) keep a message's place:
 * they move it between ready and processing only, which `active` counts alike.
 */
#ifndef MONGOQ_GROUP_PRIVATE_H
#define MONGOQ_GROUP_PRIVATE_H

#include "message-private.h"

/* One transaction's state: the session and the collection on its client. */
typedef struct {
    mongoq_queue_t *queue;
    mongoc_client_session_t *session;
    mongoc_collection_t *coll;
    bson_t *reply; /* the reply of the command that failed, for its error labels (or NULL) */
} mongoq__txn_t;

typedef bool (*mongoq__txn_body_fn)(mongoq__txn_t *txn, void *ctx, bson_error_t *error);

/*
 * Runs body in a transaction with the queue's write concern on client (NULL: one from the
 * pool), retried whole on TransientTransactionError and its commit on
 * UnknownTransactionCommitResult (libmongoc's with_transaction). The body must start from
 * scratch on every call. MONGOQ_ERROR_UNKNOWN_OUTCOME when the commit's outcome stayed
 * unknown; other failures applied nothing.
 */
bool mongoq__txn_run(mongoq_queue_t *queue, mongoc_client_t *client, mongoq__txn_body_fn body,
                     void *ctx, bson_error_t *error);

/* The group document's _id, "mongoq.group:<name>" (bson_free it). */
char *mongoq__group_doc_id(const char *group);

/* {[partition,] _id: <group document>} */
void mongoq__group_doc_filter(const mongoq_queue_t *queue, const char *group, bson_t *filter);

/* The partition of a group's messages and document (MONGOQ__ALL_PARTITIONS with one). */
int32_t mongoq__group_partition(const mongoq_queue_t *queue, const char *group);

/*
 * INVALID_ARG when a group is asked for where it cannot be had: the queue has no groups, a
 * dedup_key with a group in a partitioned queue, a session outside a transaction.
 */
bool mongoq__group_check_opts(const mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts,
                              bson_error_t *error);

/*
 * Enqueues n messages (docs[i] built by mongoq__document_build, status ready, partition not yet
 * appended) into opts->group: one transaction (or the caller's, opts->session) that takes n
 * places in line from the group document and admits as many as its free places allow when none
 * is waiting before them. *stored: how many are stored. *duplicate: opts->dedup_key is held
 * (*holder: by which message); nothing was written then.
 */
bool mongoq__group_enqueue(mongoq_queue_t *queue, const bson_t *docs, size_t n,
                           const mongoq_enqueue_opts_t *opts, size_t *stored, bool *duplicate,
                           bson_oid_t *holder, bson_error_t *error);

/*
 * A grouped message leaves its place: in one transaction, the fenced write `update` (a pipeline;
 * NULL: delete) over `filter`, and when it matched, the group's next waiting message admitted
 * or the place given up. *matched: whether the message's write matched. client may be NULL.
 */
bool mongoq__group_finish(mongoq_queue_t *queue, mongoc_client_t *client, const char *group,
                          const bson_t *filter, const bson_t *update, int64_t *matched,
                          bson_error_t *error);

/* Counts and admissions made right again for one group, from its messages (group_admin.c). */
bool mongoq__group_recount(mongoq_queue_t *queue, const char *group, bson_error_t *error);

/*
 * Group-aware pieces of the queue-wide writes (group_admin.c), used only when the queue has
 * groups: the reaper's exhausted grouped leases (each made dead in its own transaction), a
 * redrive of one grouped dead message, redrive of every grouped dead one, purge's recounts.
 */
bool mongoq__group_reap_exhausted(mongoq_queue_t *queue, mongoc_client_t *client,
                                  int64_t server_now, int64_t *n, bson_error_t *error);
bool mongoq__group_redrive_one(mongoq_queue_t *queue, const bson_oid_t *id, int64_t *moved,
                               bson_error_t *error);
bool mongoq__group_redrive_all(mongoq_queue_t *queue, int64_t *moved, bson_error_t *error);
bool mongoq__group_purge(mongoq_queue_t *queue, const char *status, int64_t *deleted,
                         bson_error_t *error);

/* ---- inside a transaction (group.c) ---------------------------------------------------- */

/* The session's options for one command of the transaction. */
bool mongoq__txn_opts(mongoq__txn_t *txn, bson_t *opts, bson_error_t *error);

/* Keeps a failing command's reply (its labels decide whether the transaction runs again). */
void mongoq__txn_keep_reply(mongoq__txn_t *txn, const bson_t *reply);

/* findAndModify; *value_out (may be NULL) a copy of the document returned, or NULL. */
bool mongoq__txn_fam(mongoq__txn_t *txn, const bson_t *filter, const bson_t *sort,
                     const bson_t *update, mongoc_find_and_modify_flags_t flags, bson_t **value_out,
                     bson_error_t *error);

/* updateOne (update not NULL) or deleteOne; *n: matched or deleted. */
bool mongoq__txn_write_one(mongoq__txn_t *txn, const bson_t *filter, const bson_t *update,
                           int64_t *n, bson_error_t *error);

/*
 * Admits the group's head (its waiting message of the lowest group_seq: ready now), its run_at
 * raised to due_ms when due_ms > 0 (its token's due time, group_rate.c). *run_at: the head's.
 */
bool mongoq__group_promote_head(mongoq__txn_t *txn, const char *group, int64_t due_ms,
                                bool *promoted, int64_t *run_at, bson_error_t *error);

/* {$cond: [{$gt: [waiting, 0]}, 0, {$max: [0, {$min: [n, limit - active]}]}]} (group.c) */
void mongoq__group_append_admit(bson_t *parent, const char *key, int64_t limit, int64_t n);

/* {$ifNull: [path, 0]} (group.c) */
void mongoq__group_append_or_zero(bson_t *parent, const char *key, const char *path);

/* ---- the per-group rate limit (group_rate.c) --------------------------------------------- */

/* Whether the queue has a per-group rate limit (queue opts group_rate_limit > 0). */
bool mongoq__group_rate_on(const mongoq_queue_t *queue);

/*
 * Appends two pipeline stages (keys first, first + 1) that take `admitted` tokens from the
 * group document's bucket on $$NOW; the stages before must have set the document's `admitted`.
 */
void mongoq__group_rate_append(const mongoq_queue_t *queue, bson_t *pipeline, uint32_t first);

/* The due time (server clock, ms) of the i-th (from 0) message admitted by the write that
 * returned the group document doc; 0 without a per-group rate limit. */
int64_t mongoq__group_rate_due(const mongoq_queue_t *queue, const bson_t *doc, int64_t i);

/* Takes k tokens for k admissions made outside the pipelines above (filling a group's places
 * after redrive or purge): *doc_out, the group document after (bson_destroy it). */
bool mongoq__group_rate_take(mongoq__txn_t *txn, const char *group, int64_t k, bson_t **doc_out,
                             bson_error_t *error);

/* Appends {$expr: rate_tat <= $$NOW} to a filter: the group's bucket has refilled. */
void mongoq__group_rate_append_refilled(bson_t *filter);

/* The reaper's pass: deletes emptied group documents whose bucket has refilled (*n of them). */
bool mongoq__group_rate_sweep(mongoq_queue_t *queue, mongoc_client_t *client, int64_t *n,
                              bson_error_t *error);

/* A number field of doc (may be NULL) as int64, 0 when absent. */
int64_t mongoq__int_field(const bson_t *doc, const char *field);

#endif

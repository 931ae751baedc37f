/* A claimed message's internals, shared by consumer.c, message.c and the worker. */
#ifndef MONGOQ_MESSAGE_PRIVATE_H
#define MONGOQ_MESSAGE_PRIVATE_H

#include <stdatomic.h>

#include "document-private.h"
#include "mongoq/hooks.h"
#include "mongoq/message.h"
#include "queue-private.h"

struct mongoq_message_t {
    mongoq_queue_t *queue; /* borrowed; outlives the message */
    bson_t *doc;           /* the claimed document, owned; `parsed` points into it */
    mongoq__parsed_t parsed;
    atomic_bool lease_lost;
    /* Written by extend, which a worker's heartbeat runs while the handler may read it. */
    atomic_int_least64_t lease_expires_at;
    char *reason; /* set by mongoq_message_set_reason, for the worker */
    bool browsed; /* read by mongoq_queue_get or a browse, not claimed: no write may use it */
    int64_t claimed_mono_ms; /* local monotonic time of the claim (handling-time histogram) */
    int64_t waited_ms;       /* run_at to the claim, on the server's clock; -1 unknown */
};

/*
 * Wraps any stored message document for reading (mongoq_queue_get, browse): fields its status
 * lacks stay zero. Ownership of doc passes on success; NULL with MONGOQ_ERROR_SERVER when doc is
 * not a message (its _id is not an ObjectId, no payload document).
 */
mongoq_message_t *mongoq__message_new_browsed(mongoq_queue_t *queue, bson_t *doc,
                                              bson_error_t *error);

/*
 * INVALID_ARG naming `what` when msg was browsed rather than claimed: every write on a message
 * is its claimer's. True for a claimed message.
 */
bool mongoq__message_check_claimed(const mongoq_message_t *msg, const char *what,
                                   bson_error_t *error);

/*
 * Wraps a claimed document (ownership of doc passes to the message on success). Returns NULL
 * and writes the reason when the document is damaged; doc stays the caller's then.
 */
mongoq_message_t *mongoq__message_new(mongoq_queue_t *queue, bson_t *doc, char *reason,
                                      size_t reason_len);

/*
 * Moves a document that cannot be delivered to "dead" with reason: a damaged document a claim
 * returned (status "processing", fenced by the lease_token the claim wrote), or a ready one
 * whose claim the server refuses because of the document itself (status "ready", doc holding
 * only its _id). Matches _id as it is (any type), lease_token when doc has one, and status.
 * When the document refuses the full update (too large to grow, a validator) it falls back to
 * setting status alone, then to that past document validation. Counts buried ones as failed.
 */
bool mongoq__message_bury(mongoq_queue_t *queue, const bson_t *doc, const char *status,
                          const char *reason, bson_error_t *error);

/*
 * The fenced single-document writes of message.c, shared with message_dead.c: update_one runs
 * updateOne(filter, pipeline) with the queue's write concern and extra options (may be NULL),
 * *matched from the reply (a retryable write; `what` names the call in UNKNOWN_OUTCOME);
 * update_held matches msg's held filter and fails with LEASE_LOST when nothing matched, as
 * lease_lost_error does (marking the message).
 */
bool mongoq__message_update_one(mongoq_queue_t *queue, const char *what, const bson_t *filter,
                                const bson_t *pipeline, const bson_t *extra, int64_t *matched,
                                bson_error_t *error);
bool mongoq__message_update_held(mongoq_message_t *msg, const char *what, const bson_t *pipeline,
                                 bson_error_t *error);
bool mongoq__message_lease_lost_error(mongoq_message_t *msg, bson_error_t *error);

/* Makes the claimed msg dead with reason (message_dead.c): counted, told to the hook. */
bool mongoq__message_make_dead(mongoq_message_t *msg, const char *reason, bson_error_t *error);

/*
 * Tells the queue's hook (a no-op without one) CLAIMED, ACKED, RETRIED, FAILED or LEASE_LOST of
 * the claimed msg; reason may be NULL. After the server confirmed it, with no lock held.
 */
void mongoq__message_hook(mongoq_queue_t *queue, mongoq_event_kind_t kind,
                          const mongoq_message_t *msg, const char *reason);

/* Records that the lease is lost (thread-safe; counted once). */
void mongoq__message_mark_lease_lost(mongoq_message_t *msg);

/* The fencing token of the claim that produced msg. */
const bson_oid_t *mongoq__message_lease_token(const mongoq_message_t *msg);

/* The reason set with mongoq_message_set_reason, or NULL. Borrowed. */
const char *mongoq__message_reason(const mongoq_message_t *msg);

/* The filter that matches msg only while its lease holds: {_id, lease_token, status}. */
void mongoq__message_held_filter(const mongoq_message_t *msg, bson_t *filter);

/* Appends {_id: {$in: [the ids of msgs[0 .. n)]}} to filter. */
void mongoq__message_ids_filter(mongoq_message_t *const *msgs, size_t n, bson_t *filter);

/* The update pipeline of an extend: lease_expires_at = $$NOW + lease_ms, updated_at = $$NOW. */
void mongoq__message_extend_update(int64_t lease_ms, bson_t *pipeline);

/* ---- for the worker -------------------------------------------------------------------------- */

/*
 * Appends {_id: {$in: ids[0 .. n)}, lease_token: token, status: "processing"}: the messages of
 * one claim still held, from copies of their ids (a keeper thread must not touch the messages).
 */
void mongoq__message_held_ids_filter(const bson_oid_t *ids, size_t n, const bson_oid_t *token,
                                     bson_t *filter);

/*
 * The hand-back's update (worker stop, claim_many's recovery): "ready" again with the attempt
 * the claim used given back (attempts - 1 on the server), lease fields removed.
 */
void mongoq__message_release_update(bson_t *pipeline);

/*
 * mongoq_message_retry, and *buried_out says whether it moved the message to "dead" (its last
 * attempt was used) rather than back to "ready". *buried_out is meaningful when it returns true.
 */
bool mongoq__message_retry_ex(mongoq_message_t *msg, int64_t delay_ms, const char *reason,
                              bool *buried_out, bson_error_t *error);

/* Moves mongoq_message_lease_expires_at() up to at_least_ms, never down. Thread-safe. */
void mongoq__message_raise_lease_expires_at(mongoq_message_t *msg, int64_t at_least_ms);

#endif

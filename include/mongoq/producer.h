/*
 * mongoq/producer.h - putting messages on a queue.
 *
 * Thread safety: every function here is thread-safe on a shared queue.
 */
#ifndef MONGOQ_PRODUCER_H
#define MONGOQ_PRODUCER_H

#include "limits.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 2 added caller_ids and reply, 3 group. */
#define MONGOQ_ENQUEUE_OPTS_VERSION 3

/*
 * Options of one enqueue. Zero means "the default" for every field. Version 1 callers (without
 * the fields after `session`) are still accepted.
 */
typedef struct {
    uint32_t version;     /* MONGOQ_ENQUEUE_OPTS_VERSION */
    int32_t priority;     /* higher is claimed first; default 0 */
    int64_t delay_ms;     /* ready this long after now (server clock): 0 to MONGOQ_MAX_DURATION_MS */
    int64_t run_at_ms;    /* ready at this time (ms since the epoch, at most MONGOQ_MAX_RUN_AT_MS);
                             exclusive with delay_ms */
    int32_t max_attempts; /* default: the queue's; 1 to MONGOQ_MAX_ATTEMPTS */
    /*
     * NULL: none. At most one unfinished message holds a key. Valid UTF-8 of at most
     * MONGOQ_MAX_DEDUP_KEY_BYTES. Copied.
     */
    const char *dedup_key;
    /*
     * NULL, or the caller's session: the insert runs in it, so inside a transaction the
     * message exists only if the transaction commits. Borrowed for the call. The session must
     * come from a client of the queue's pool.
     */
    mongoc_client_session_t *session;

    /* ---- version 2 ---- */

    /*
     * false (default): mongoq gives each message a new ObjectId. true: the caller chooses:
     * *id_out (enqueue) or ids_out[i] (enqueue_many) holds the _id to give the message on
     * entry. A message whose _id is already stored counts as queued, not as an error, so a
     * producer that retries with the same ids never stores a message twice (see "Retrying"
     * below). ids must then be given (id_out / ids_out not NULL).
     */
    bool caller_ids;
    /*
     * NULL, or a bson_t the call always initialises (even when it fails at once) and fills with
     * the server's reply to the insert (error labels included; empty when nothing was sent). Inside
     * a transaction, hand it to mongoc_client_session_with_transaction as the callback's reply,
     * so a TransientTransactionError (a write conflict with another transaction) is retried.
     * The caller destroys it.
     */
    bson_t *reply;

    /* ---- version 3 ---- */

    /*
     * NULL: none. The message's group (an account id, say): valid UTF-8 of 1 to
     * MONGOQ_MAX_GROUP_BYTES bytes, copied. Needs a queue with group_concurrency > 0
     * (INVALID_ARG otherwise): at most that many messages of one group are in flight at once,
     * taken in enqueue order. A grouped enqueue is a transaction (the group's document and the
     * message); with opts.session it runs in the caller's transaction, which must be started
     * (INVALID_ARG otherwise). In a partitioned queue the group decides the partition (every
     * message of a group in one), and a dedup_key with a group is INVALID_ARG there (the key
     * could not be checked in its own partition). enqueue_many with a group enqueues the n
     * messages into that group in order. With caller_ids, an _id already stored fails the whole
     * grouped enqueue with MONGOQ_ERROR_DUPLICATE (nothing written) rather than counting as
     * queued: after UNKNOWN_OUTCOME, look the id up before enqueueing again.
     */
    const char *group;
} mongoq_enqueue_opts_t;

#define MONGOQ_ENQUEUE_OPTS_INIT {.version = MONGOQ_ENQUEUE_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_ENQUEUE_OPTS_INIT does, for the given version (bindings that cannot
 * use the macro): every field zero (its default) and the version set. An older version gets only
 * that version's fields written (the struct of a program built against an older header is
 * shorter). Returns false, writing nothing, for a version this library does not know (0 or newer
 * than MONGOQ_ENQUEUE_OPTS_VERSION). Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_enqueue_opts_init(mongoq_enqueue_opts_t *opts, uint32_t version);

/*
 * Enqueues one message whose payload is a copy of `payload` (borrowed for the call; at most
 * MONGOQ_MAX_PAYLOAD_BYTES). opts may be NULL. id_out may be NULL unless opts->caller_ids.
 *
 * *id_out, the one rule for ids after a failure (ids_out of enqueue_many follows it too):
 * untouched when the arguments are refused (INVALID_ARG); on every other path it holds the _id
 * this call gave the message (chosen before anything is sent, so also after a failure and when
 * nothing was stored), except on MONGOQ_ERROR_DUPLICATE when the call found the message
 * holding the key (its lookup, in the caller's transaction or outside one): then the holder's
 * _id. A duplicate met only by the insert inside a transaction (the server aborted it; the
 * holder is not visible to the transaction) leaves the _id this call gave the message.
 *
 * Errors, and what a retry does:
 *  - MONGOQ_ERROR_INVALID_ARG (NULL payload, a payload over MONGOQ_MAX_PAYLOAD_BYTES, an option
 *    out of range, a group on a queue without groups): nothing written; a retry fails the
 *    same way.
 *  - Grouped messages (opts->group): the group's document and the message are written in one
 *    transaction, so a failure at any point stores neither; errors and retries are those
 *    below (UNKNOWN_OUTCOME when the commit's reply was lost even after libmongoc retried it).
 *  - MONGOQ_ERROR_DUPLICATE: an unfinished message holds opts->dedup_key; nothing written.
 *    Inside a transaction the key is looked up in the transaction first, so a holder the
 *    transaction can see never reaches the server's unique index; when the insert still meets
 *    one (a holder committed meanwhile), the server has aborted the transaction: *id_out holds
 *    this call's unused _id (above) and opts->reply carries the server's error labels.
 *  - MONGOQ_ERROR_UNKNOWN_OUTCOME: the insert was sent but its reply was lost (after libmongoc's
 *    own retry): the message may be stored. Retry with opts->caller_ids and the same *id_out
 *    (as returned), or with the same dedup_key, to store it at most once; a plain retry may
 *    store it twice.
 *  - MONGOQ_ERROR_NO_CLIENT, driver and server errors: nothing was stored; a retry is safe.
 *
 * Idempotence with caller_ids: an insert that finds the _id taken reads the stored message:
 * the same payload (or no message any more: it was stored, then finished and deleted) means
 * "already queued" and returns true; a different payload is MONGOQ_ERROR_DUPLICATE. A message
 * that was finished and removed (ack in DELETE mode, or the done retention ran out) before the
 * retry cannot be told from one never stored only in that window: the retry then stores it
 * again, so retry promptly. "Already queued" is not stored again, so it is not counted in
 * counters.enqueued nor told to the ENQUEUED hook a second time (the call that stored it was).
 */
MONGOQ_EXPORT bool
mongoq_enqueue(mongoq_queue_t *queue, const bson_t *payload, const mongoq_enqueue_opts_t *opts,
               bson_oid_t *id_out, bson_error_t *error);

/*
 * Enqueues n messages (0 to MONGOQ_MAX_ENQUEUE_MANY; more is INVALID_ARG, nothing written) in
 * one round trip (one insert command; libmongoc splits it only past the server's 48 MB message
 * limit). n = 0 sends nothing and returns true (*enqueued_out 0, ids_out untouched).
 * payloads[i] are borrowed. ids_out (may be NULL unless
 * opts->caller_ids) has room for n ids and, on every path past argument checks, holds the _id of
 * each message (chosen before anything is sent). *enqueued_out (may be NULL) receives how many
 * of the n messages are stored, on success and on failure.
 *
 * The same opts apply to each; a dedup_key is refused here (INVALID_ARG) since one key cannot
 * name n messages. Validation happens before anything is written: on INVALID_ARG nothing is.
 * Without caller_ids the insert is ordered: after a server error the first *enqueued_out
 * messages are stored and the rest are not. With caller_ids it is unordered, and messages whose
 * _id is already stored count as stored (see mongoq_enqueue).
 *
 * MONGOQ_ERROR_UNKNOWN_OUTCOME: the reply was lost; any of the messages may be stored and
 * *enqueued_out is 0. Retrying the same call with caller_ids and the same ids stores each at
 * most once; without caller_ids a retry may store some twice. Messages a retry finds already
 * queued count in *enqueued_out but not again in counters.enqueued or the ENQUEUED hook.
 */
MONGOQ_EXPORT bool
mongoq_enqueue_many(mongoq_queue_t *queue, const bson_t *const *payloads, size_t n,
                    const mongoq_enqueue_opts_t *opts, bson_oid_t *ids_out, size_t *enqueued_out,
                    bson_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_PRODUCER_H */

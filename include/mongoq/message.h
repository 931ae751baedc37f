/*
 * mongoq/message.h - a claimed message and what its claimer does with it.
 *
 * Every operation on a message matches its _id and the lease_token of the claim that produced
 * it (the fencing token). When the lease was lost (it expired and the message was reclaimed,
 * reaped or redriven) the operation changes nothing and fails with MONGOQ_ERROR_LEASE_LOST.
 *
 * Thread safety: a message is not thread-safe, except mongoq_message_lease_lost(), which may
 * be called from any thread (a worker's heartbeat sets it while the handler runs).
 */
#ifndef MONGOQ_MESSAGE_H
#define MONGOQ_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mongoq_message_t mongoq_message_t;

/* Accessors. Pointers are borrowed from the message and valid until it is destroyed. */
MONGOQ_EXPORT const bson_oid_t *
mongoq_message_id(const mongoq_message_t *msg);
MONGOQ_EXPORT const bson_t *
mongoq_message_payload(const mongoq_message_t *msg);
/* Attempts including this one (1 on the first delivery). */
MONGOQ_EXPORT int32_t
mongoq_message_attempts(const mongoq_message_t *msg);
MONGOQ_EXPORT int32_t
mongoq_message_max_attempts(const mongoq_message_t *msg);
MONGOQ_EXPORT int32_t
mongoq_message_priority(const mongoq_message_t *msg);
/* Milliseconds since the epoch, server clock. */
MONGOQ_EXPORT int64_t
mongoq_message_enqueued_at(const mongoq_message_t *msg);
/* When the current lease ends (ms since the epoch, server clock); updated by _extend. */
MONGOQ_EXPORT int64_t
mongoq_message_lease_expires_at(const mongoq_message_t *msg);
/* The dedup_key or NULL. */
MONGOQ_EXPORT const char *
mongoq_message_dedup_key(const mongoq_message_t *msg);

/*
 * True once mongoq learnt that the lease is lost (an operation returned LEASE_LOST, or a
 * worker's heartbeat did). A handler may poll it to stop early. Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_message_lease_lost(const mongoq_message_t *msg);

/* Acknowledges: the message is done (deleted, or kept as "done"; see mongoq_ack_mode_t). */
MONGOQ_EXPORT bool
mongoq_message_ack(mongoq_message_t *msg, bson_error_t *error);

/*
 * Acknowledges n messages (of one queue) in one round trip. Messages whose lease was lost are
 * left alone and marked (mongoq_message_lease_lost); the call then fails with
 * MONGOQ_ERROR_LEASE_LOST after acknowledging the others, and error->message says how many were
 * lost (finding which takes one more round trip). With MONGOQ_ACK_KEEP the marking is exact;
 * with MONGOQ_ACK_DELETE a lost message that someone else deleted meanwhile cannot be told from
 * one this call deleted, so only lost messages still present are marked.
 */
MONGOQ_EXPORT bool
mongoq_message_ack_many(mongoq_message_t *const *msgs, size_t n, bson_error_t *error);

/*
 * Gives the message back for another attempt: "ready" with run_at = now + delay_ms on the server
 * clock, or, when delay_ms < 0, the queue's exponential backoff with jitter. Once attempts reach
 * max_attempts the message goes to "dead" instead. reason (may be NULL; copied) is recorded in
 * last_error and errors (the last five failures, each {at, error}).
 */
MONGOQ_EXPORT bool
mongoq_message_retry(mongoq_message_t *msg, int64_t delay_ms, const char *reason,
                     bson_error_t *error);

/* Moves the message to "dead" now, recording reason (may be NULL; copied). */
MONGOQ_EXPORT bool
mongoq_message_fail(mongoq_message_t *msg, const char *reason, bson_error_t *error);

/*
 * Heartbeat: the lease now ends lease_ms (> 0) from now on the server clock. Fails with
 * MONGOQ_ERROR_LEASE_LOST when the lease is already lost.
 */
MONGOQ_EXPORT bool
mongoq_message_extend(mongoq_message_t *msg, int64_t lease_ms, bson_error_t *error);

/*
 * Sets the reason a worker records when its handler returns MONGOQ_RETRY or MONGOQ_FAIL.
 * reason is copied; NULL clears it.
 */
MONGOQ_EXPORT void
mongoq_message_set_reason(mongoq_message_t *msg, const char *reason);

/*
 * Frees the message. A message destroyed without ack/retry/fail keeps its lease until it
 * expires; the reaper then gives it back. NULL is a no-op.
 */
MONGOQ_EXPORT void
mongoq_message_destroy(mongoq_message_t *msg);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_MESSAGE_H */

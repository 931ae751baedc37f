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
/*
 * When the current lease ends (ms since the epoch, server clock); updated by _extend and by a
 * worker's heartbeats. Thread-safe (a heartbeat may update it while a handler reads it).
 */
MONGOQ_EXPORT int64_t
mongoq_message_lease_expires_at(const mongoq_message_t *msg);
/* The dedup_key or NULL. */
MONGOQ_EXPORT const char *
mongoq_message_dedup_key(const mongoq_message_t *msg);
/*
 * The fencing token of the claim that produced this message (the document's lease_token).
 * Every write on the message matches it; messages of one claim_many share it. Useful to
 * correlate logs, or to fence side effects of your own (store it next to what the handler
 * writes elsewhere).
 */
MONGOQ_EXPORT const bson_oid_t *
mongoq_message_lease_token(const mongoq_message_t *msg);
/* The name of the consumer that claimed it (the document's claimed_by), or NULL if absent. */
MONGOQ_EXPORT const char *
mongoq_message_claimed_by(const mongoq_message_t *msg);

/*
 * The message's partition (0 .. partitions-1, see mongoq_queue_opts_t.partitions); 0 in a queue
 * of one partition, whose documents carry no partition field. Thread-safe.
 */
MONGOQ_EXPORT int32_t
mongoq_message_partition(const mongoq_message_t *msg);

/* The message's group (mongoq_enqueue_opts_t.group) or NULL. Borrowed from the message. */
MONGOQ_EXPORT const char *
mongoq_message_group(const mongoq_message_t *msg);

/*
 * True once mongoq learnt that the lease is lost (an operation returned LEASE_LOST, or a
 * worker's heartbeat did). A handler may poll it to stop early. Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_message_lease_lost(const mongoq_message_t *msg);

/*
 * Acknowledges: the message is done (deleted, or kept as "done"; see mongoq_ack_mode_t). One
 * deleteOne or updateOne, a retryable write: libmongoc sends it once more after a network error
 * or a failover, and the server answers that retry with the first attempt's result.
 *
 * When the outcome is still in doubt (the write matched nothing, failed after it was sent, or
 * met a failover) the call reads the message back and decides: "done" with this claim's
 * lease_token (KEEP mode) counts as acknowledged; still held, the ack is sent once more; no
 * longer present counts as acknowledged after a write whose outcome was unknown (in DELETE mode
 * an ack leaves no trace, so a message someone else finished meanwhile cannot be told apart; it
 * is done either way) and as lost otherwise; anything else is MONGOQ_ERROR_LEASE_LOST.
 *
 * Errors: MONGOQ_ERROR_LEASE_LOST (nothing changed; another consumer may hold or have finished
 * the message); MONGOQ_ERROR_UNKNOWN_OUTCOME when the outcome is still unknown after settling:
 * the write's reply was lost and the message could not be read back, or it was read back still
 * held and the ack sent once more failed too (its reply lost again). Calling ack again is then
 * safe: in KEEP mode an ack that had applied is
 * recognised and returns true; in DELETE mode it leaves no trace, so the repeat reports
 * LEASE_LOST although the message is done. MONGOQ_ERROR_NO_CLIENT; driver errors for a write known not to have been sent (a retry
 * does the whole ack again).
 *
 * A grouped message (mongoq_message_group() not NULL) is acknowledged in a transaction that
 * also releases its place in the group and admits the group's next waiting message, so the
 * group is never left held by a finished message nor released before it finished; the
 * settling above applies unchanged (the transaction applied wholly or not at all). The same
 * holds for retry and fail when they make a grouped message dead (with
 * MONGOQ_GROUP_DEAD_BLOCK the dead message keeps its place instead, with no transaction).
 */
MONGOQ_EXPORT bool
mongoq_message_ack(mongoq_message_t *msg, bson_error_t *error);

/*
 * Acknowledges n messages (of one queue, each at most once, n <= 1000) in one round trip
 * (deleteMany or updateMany). When fewer matched than were given, or the write's outcome is
 * unknown, the call settles each message as mongoq_message_ack does (one find, and one more
 * write for those still held). On return every message is either acknowledged or marked lost
 * (mongoq_message_lease_lost() is true): true when all were acknowledged, false with
 * MONGOQ_ERROR_LEASE_LOST when some were lost (error->message says how many; the others were
 * acknowledged). MONGOQ_ERROR_UNKNOWN_OUTCOME when the messages could not be read back: none is
 * marked, and calling ack_many again with the same messages is safe (acks that applied are
 * recognised). INVALID_ARG for a NULL message, messages of different queues, a message given
 * twice, or n > 1000.
 */
MONGOQ_EXPORT bool
mongoq_message_ack_many(mongoq_message_t *const *msgs, size_t n, bson_error_t *error);

/*
 * Gives the message back for another attempt: "ready" with run_at = now + delay_ms on the server
 * clock (delay_ms at most MONGOQ_MAX_DURATION_MS), or, when delay_ms < 0, the queue's exponential
 * backoff with jitter. Once attempts reach max_attempts the message goes to "dead" instead.
 * reason (may be NULL; copied, cut to MONGOQ_MAX_REASON_BYTES) is recorded in last_error and
 * errors (the last five failures, each {at, error}). One updateOne, a retryable write.
 *
 * Errors: INVALID_ARG (delay_ms too large; nothing written); LEASE_LOST (nothing changed);
 * MONGOQ_ERROR_UNKNOWN_OUTCOME when the write was sent and no reply came back even after
 * libmongoc's retry: the retry may have applied. Calling retry again is safe: if the first
 * applied, the lease is gone and the call fails with LEASE_LOST, changing nothing; otherwise it
 * applies now. The same holds for mongoq_message_fail and mongoq_message_extend below.
 */
MONGOQ_EXPORT bool
mongoq_message_retry(mongoq_message_t *msg, int64_t delay_ms, const char *reason,
                     bson_error_t *error);

/*
 * Moves the message to "dead" now, recording reason (may be NULL; copied, cut to
 * MONGOQ_MAX_REASON_BYTES). One updateOne, a retryable write; errors as mongoq_message_retry.
 */
MONGOQ_EXPORT bool
mongoq_message_fail(mongoq_message_t *msg, const char *reason, bson_error_t *error);

/*
 * Heartbeat: the lease now ends lease_ms (1 to MONGOQ_MAX_DURATION_MS) from now on the server
 * clock. One findAndModify, a retryable write. Fails with MONGOQ_ERROR_LEASE_LOST when the lease
 * is already lost; after MONGOQ_ERROR_UNKNOWN_OUTCOME calling extend again is safe (it extends
 * once more from the new now).
 */
MONGOQ_EXPORT bool
mongoq_message_extend(mongoq_message_t *msg, int64_t lease_ms, bson_error_t *error);

/*
 * Sets the reason a worker records when its handler returns MONGOQ_RETRY or MONGOQ_FAIL.
 * reason is copied (and cut to MONGOQ_MAX_REASON_BYTES when stored); NULL clears it.
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

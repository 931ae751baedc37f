/*
 * mongoq/consumer.h - claiming messages.
 *
 * A claim is one findAndModify that moves the best ready message (priority descending, then
 * run_at, then _id) whose run_at has come to "processing", adds one to attempts, writes a fresh
 * lease_token and sets lease_expires_at on the server's clock. Until the lease expires only the
 * claimer can ack, retry, fail or extend it.
 *
 * Thread safety: a consumer is NOT thread-safe: use one per thread. Many consumers in many
 * threads and processes may share a queue; no message is handed to two of them while a lease
 * holds.
 */
#ifndef MONGOQ_CONSUMER_H
#define MONGOQ_CONSUMER_H

#include "message.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mongoq_consumer_t mongoq_consumer_t;

#define MONGOQ_CONSUMER_OPTS_VERSION 1

typedef struct {
    uint32_t version; /* MONGOQ_CONSUMER_OPTS_VERSION */
    const char *name; /* written to claimed_by; default "<host>:<pid>:<n>". Copied. Valid
                         UTF-8 of 1 to MONGOQ_MAX_NAME_BYTES bytes, else INVALID_ARG */
    int64_t lease_ms; /* lease of each claim; 0: the queue's; 1 to MONGOQ_MAX_DURATION_MS,
                         else (negative, larger) INVALID_ARG */
} mongoq_consumer_opts_t;

#define MONGOQ_CONSUMER_OPTS_INIT {.version = MONGOQ_CONSUMER_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_CONSUMER_OPTS_INIT does, for the given version (bindings that cannot
 * use the macro): every field zero (its default) and the version set. Returns false, writing
 * nothing, for a version this library does not know (0 or newer than
 * MONGOQ_CONSUMER_OPTS_VERSION). Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_consumer_opts_init(mongoq_consumer_opts_t *opts, uint32_t version);

/* A consumer on queue (borrowed; must outlive it). opts may be NULL. NULL + error on failure:
 * MONGOQ_ERROR_INVALID_ARG for an unknown opts version or an option out of the bounds above
 * (nothing is sent; a retry with the same options fails the same way). */
MONGOQ_EXPORT mongoq_consumer_t *
mongoq_consumer_new(mongoq_queue_t *queue, const mongoq_consumer_opts_t *opts,
                    bson_error_t *error);

/* Frees the consumer. Messages it claimed stay valid and keep their leases. NULL is a no-op. */
MONGOQ_EXPORT void
mongoq_consumer_destroy(mongoq_consumer_t *consumer);

/*
 * Claims one message, waiting up to wait_ms (0: don't wait; negative: INVALID_ARG) for one to
 * become ready. Idle
 * consumers are woken by the queue's change stream, by a timer at the next run_at, or by
 * polling when change streams are unavailable.
 *
 * Returns true with *msg_out set to a new message (owned by the caller: mongoq_message_destroy)
 * or to NULL when nothing became ready in time. Returns false and fills error on a driver or
 * server error (*msg_out is NULL). A message document someone else damaged (missing fields,
 * wrong types) is moved to "dead" with a reason and never handed out.
 *
 * No poison message: when the server refuses to claim a message because of the document itself
 * (it would pass 16 MiB, a collection validator refuses it, arithmetic on its values overflows),
 * that one message is moved to "dead" with the server's error as its reason (or, when even that
 * is refused, with status alone; past document validation as a last resort) and the claim goes
 * on to the next. A document the server refuses to touch at all is logged and skipped by this
 * consumer from then on. The rule: the claim is tried again pinned to the head's _id; refused
 * again with a code known to be the document's (document too large, validation, overflow,
 * invalid path or name), the head is buried. Refused with any other server error code (say a
 * DuplicateKey from an index of yours that the claim's fields break), it is buried only if the
 * same claim without the head then claims another message (that message is returned); if
 * nothing else is due, or that claim is refused too, the error is returned and nothing is
 * buried. Never buried on a network, server selection, write concern, auth, NotWritablePrimary
 * class, shutdown, interrupted, time limit, write conflict or UNKNOWN_OUTCOME error.
 *
 * The claim is one findAndModify, a retryable write: libmongoc sends it once more after a
 * network error or a failover, and the server answers with the first attempt's result. After
 * MONGOQ_ERROR_UNKNOWN_OUTCOME (no reply even then) a message may have been leased to this
 * consumer without it knowing: it returns to the queue when that lease expires (attempts counts
 * the lost delivery). Claiming again is safe. MONGOQ_ERROR_NO_CLIENT: the pool gave no client.
 *
 * Rate limits (mongoq_queue_opts_t.rate_limit): each try first takes a token from the queue's
 * bucket (one findAndModify on the server's clock; claim_many takes up to max and claims at
 * most what it got, giving unused ones back). Without a token the call sleeps until the next
 * one is due (within wait_ms; 0: it answers none at once), so a throttled consumer costs one
 * round trip per token interval. An error taking the token is returned as the claim's error
 * (nothing was claimed; retrying is safe).
 *
 * Groups (mongoq_queue_opts_t.group_concurrency): only messages their group admitted are
 * claimed; a claimed message holds its group's place until it is acknowledged or dead, or, if
 * its consumer disappears, until its lease expires and it is delivered again.
 */
MONGOQ_EXPORT bool
mongoq_consumer_claim(mongoq_consumer_t *consumer, int64_t wait_ms, mongoq_message_t **msg_out,
                      bson_error_t *error);

/*
 * Claims up to max messages (1 to MONGOQ_MAX_BATCH) in a bounded number of round trips (three per
 * try, whatever max is, plus one per damaged or poison document buried), waiting up to wait_ms
 * for at least one. When another claimer took every message it found first, it claims one with
 * a findAndModify instead (two round trips wasted, one spent): it answers none only when none
 * was due. Concurrent calls in one process (a worker's threads, say) do not race for the same
 * messages: the k-th call under way starts its search k batches further down the queue (up to
 * 15, and never more than 512 messages down: none for batches of 512 and more), and looks from
 * the head again when it finds nothing there, so order across concurrent calls is approximate,
 * as it always is between concurrent claimers. msgs_out has room for max pointers; *n_out
 * receives how many were claimed (0 when none in time). Each message is owned by the caller.
 * All messages of one call share a lease_token (still fenced per message by _id).
 *
 * The claiming updateMany is not retried by libmongoc; claim_many retries it itself once after a
 * network error or a failover (safe: a message the first attempt claimed is no longer ready),
 * then reads back by its token every message either attempt leased and returns them. Only when
 * that read fails too does it hand them back by token (ready again, the attempt restored) and
 * return the error; what even that cannot reach returns when its lease expires.
 */
MONGOQ_EXPORT bool
mongoq_consumer_claim_many(mongoq_consumer_t *consumer, size_t max, int64_t wait_ms,
                           mongoq_message_t **msgs_out, size_t *n_out, bson_error_t *error);

/* The consumer's name, borrowed. */
MONGOQ_EXPORT const char *
mongoq_consumer_name(const mongoq_consumer_t *consumer);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_CONSUMER_H */

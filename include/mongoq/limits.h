/*
 * mongoq/limits.h - the bounds mongoq checks on every size and time a caller passes.
 *
 * Each limit is checked where the caller passes the value (enqueue, enqueue_many, retry, extend,
 * queue, consumer and worker options). A value past its limit fails the call with
 * MONGOQ_ERROR_INVALID_ARG and nothing is written. The limits keep every time mongoq computes on
 * the server ({$add: ["$$NOW", ms]}) far from int64 overflow, and every document mongoq writes
 * under the server's 16 MiB document limit whatever fields it adds later in the message's life.
 */
#ifndef MONGOQ_LIMITS_H
#define MONGOQ_LIMITS_H

/* The server's largest document (maxBsonObjectSize). */
#define MONGOQ_MAX_DOCUMENT_BYTES (16 * 1024 * 1024)

/*
 * The largest payload (its BSON size) enqueue accepts: the document limit less 64 KiB kept for
 * what mongoq adds to a message in its life (status, times, counters, lease fields, claimed_by,
 * dedup_key, last_error and the capped errors history; at most about 9 KiB with every string at
 * its limit below), so no claim, retry or failure can push a stored message past the limit.
 */
#define MONGOQ_MAX_PAYLOAD_BYTES (MONGOQ_MAX_DOCUMENT_BYTES - 64 * 1024)

/* The longest dedup_key, in bytes of UTF-8. */
#define MONGOQ_MAX_DEDUP_KEY_BYTES 1024

/* The longest message group name (mongoq_enqueue_opts_t.group), in bytes of UTF-8. */
#define MONGOQ_MAX_GROUP_BYTES 256

/* The longest consumer or worker name, in bytes of UTF-8. */
#define MONGOQ_MAX_NAME_BYTES 256

/*
 * The longest failure reason stored (retry, fail, set_reason, a server error that buried a
 * message). Longer reasons are cut at a UTF-8 character boundary, not refused: a reason is
 * often an error text the caller did not write.
 */
#define MONGOQ_MAX_REASON_BYTES 1024

/*
 * The longest duration in milliseconds: leases, delays, backoff, poll and reap intervals,
 * heartbeats (ten years of 365.25 days). retention_s is bounded by the same span in seconds.
 */
#define MONGOQ_MAX_DURATION_MS ((int64_t)315576000000)

/* The latest run_at_ms an enqueue accepts: 9999-12-31T23:59:59.999Z. */
#define MONGOQ_MAX_RUN_AT_MS ((int64_t)253402300799999)

/* The most messages one claim_many, ack_many or worker batch handles. */
#define MONGOQ_MAX_BATCH 1000

/* The most messages one mongoq_enqueue_many takes: the server's maxWriteBatchSize, so that the
 * call stays one insert command (more is MONGOQ_ERROR_INVALID_ARG, nothing written). */
#define MONGOQ_MAX_ENQUEUE_MANY 100000

/* The most attempts a message may be given (queue and enqueue max_attempts). */
#define MONGOQ_MAX_ATTEMPTS 1000000

#endif /* MONGOQ_LIMITS_H */

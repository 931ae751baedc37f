/*
 * mongoq/queue.h - a queue: one MongoDB collection holding messages.
 *
 * A mongoq_queue_t is a handle on one collection ("db.name"). It borrows a
 * mongoc_client_pool_t, which must outlive it, and pops clients from the pool per operation:
 * each call holds one client for its duration and gives it back, so any pool size works, one
 * included. A pool whose wait queue times out (waitQueueTimeoutMS) makes the call fail with
 * MONGOQ_ERROR_NO_CLIENT, having sent nothing.
 *
 * Connections of its own: the queue's background threads (the change-stream waker and the
 * reaper) do not take clients from the pool. Each opens one single-threaded connection from the
 * pool's URI, with its connect, server-selection and socket timeouts capped at a few seconds, so
 * a queue uses at most two connections besides the pool's (a mongoq_worker started with
 * opts.scheduler opens a third, its scheduler's, for as long as it runs), and
 * mongoq_queue_destroy returns
 * within MONGOQ_QUEUE_DESTROY_BOUND_MS even while the server is down or a socket hangs. TLS and credentials for them come from the URI: settings made only through
 * mongoc_client_pool_set_ssl_opts are not seen by these connections.
 *
 * Thread safety: a queue is thread-safe. Producers may enqueue on one queue from many threads;
 * consumers (mongoq_consumer_t, one per thread) and workers share it. Destroy it only after
 * every consumer and worker made from it is destroyed.
 *
 * Message document (one file, src/fields.h, owns the names): _id (ObjectId), payload (the user's
 * document), status ("ready" | "processing" | "done" | "dead"), priority (int32, higher first),
 * run_at (date), attempts, max_attempts, lease_expires_at, lease_token (fencing token written by
 * every claim), claimed_by, enqueued_at, updated_at, last_error, errors (the last few failures
 * with their times), dedup_key (optional); grouped messages also group, group_seq and, dead
 * and keeping their group's place, group_blocking, and status may be "waiting" (not yet
 * admitted by the group). The collection also holds a few documents that are not messages, all
 * with string _ids beginning "mongoq." and no status: the pause control document, one document
 * per message group, the rate limit's bucket.
 *
 * Time: every time that decides delivery (lease expiry, run_at) is taken from the server's
 * clock ($$NOW, or hello.localTime), never the client's.
 */
#ifndef MONGOQ_QUEUE_H
#define MONGOQ_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "export.h"
#include "hooks.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mongoq_queue_t mongoq_queue_t;

/* What acknowledging a message does with it. */
typedef enum {
    MONGOQ_ACK_DELETE = 0, /* delete the document (the default) */
    MONGOQ_ACK_KEEP = 1    /* keep it as "done" for retention_s seconds (TTL index) */
} mongoq_ack_mode_t;

typedef enum {
    MONGOQ_LOG_ERROR = 0,
    MONGOQ_LOG_WARNING = 1,
    MONGOQ_LOG_INFO = 2,
    MONGOQ_LOG_DEBUG = 3
} mongoq_log_level_t;

/*
 * Log callback. Called from mongoq's threads (the waker, the reaper, workers) and from callers'
 * threads; it must be thread-safe. `message` is borrowed for the call. Never called while a
 * mongoq lock is held, so it may call back into mongoq.
 */
typedef void (*mongoq_log_fn)(mongoq_log_level_t level, const char *message, void *user_data);

/* 2 added hook and hook_user_data, 3 partitions, 4 groups and rate limits, 5 per-group rate
 * limits. */
#define MONGOQ_QUEUE_OPTS_VERSION 5

/* The highest per-group concurrency limit (mongoq_queue_opts_t.group_concurrency). */
#define MONGOQ_MAX_GROUP_CONCURRENCY 10000

/* The highest rate limit, in claims per second (mongoq_queue_opts_t.rate_limit), and the
 * highest burst (mongoq_queue_opts_t.rate_burst). */
#define MONGOQ_MAX_RATE_LIMIT 1000000.0
#define MONGOQ_MAX_RATE_BURST (MONGOQ_MAX_BATCH * 1000)

/* The highest per-group rate limit, in admissions per second per group
 * (mongoq_queue_opts_t.group_rate_limit), and the highest per-group burst. */
#define MONGOQ_MAX_GROUP_RATE_LIMIT 100000.0
#define MONGOQ_MAX_GROUP_RATE_BURST 100000

/*
 * What a grouped message that dies (fail, retries or leases used up) does to its group
 * (docs/design.md, Groups).
 */
typedef enum {
    /* The default: the dead message gives up its place; the group's next message is released.
     * Redriving it puts it back in line ahead of the messages enqueued after it. */
    MONGOQ_GROUP_DEAD_RELEASE = 0,
    /* The dead message keeps its place: the group is blocked (with group_concurrency 1, no
     * later message of the group is delivered) until it is redriven or purged. */
    MONGOQ_GROUP_DEAD_BLOCK = 1
} mongoq_group_dead_t;

/* The most partitions a queue may have (mongoq_queue_opts_t.partitions). */
#define MONGOQ_MAX_PARTITIONS 128

/*
 * Queue options. Zero means "the default" for every field. Durations are 0 to
 * MONGOQ_MAX_DURATION_MS (retention_s: 0 to MONGOQ_MAX_DURATION_MS / 1000 s), max_attempts 0 to
 * MONGOQ_MAX_ATTEMPTS; anything else is MONGOQ_ERROR_INVALID_ARG.
 */
typedef struct {
    uint32_t version; /* MONGOQ_QUEUE_OPTS_VERSION */

    /* Write concern for every write. NULL: {w: "majority", j: true}. Copied by _new. */
    const mongoc_write_concern_t *write_concern;

    int64_t lease_ms;        /* default lease of a claim: 30000 ms; negative is an error */
    int32_t max_attempts;    /* default attempts before a message is dead: 5; negative: error */
    int64_t backoff_base_ms; /* retry backoff: base * 2^(attempts-1) ... default 1000 */
    int64_t backoff_cap_ms;  /* ... capped at this: default 300000 */
    double backoff_jitter;   /* fraction of the delay drawn at random: default 0.2, range
                                (0, 1]; negative: no jitter */

    mongoq_ack_mode_t ack_mode; /* default MONGOQ_ACK_DELETE */
    int64_t retention_s;        /* MONGOQ_ACK_KEEP: seconds done messages are kept; default 86400 */

    bool skip_ensure_indexes; /* true: _new does not create indexes (call ensure_indexes) */

    /* Waking idle consumers (see mongoq_consumer_claim). */
    bool no_change_stream;    /* true: never open a change stream; poll only */
    int64_t poll_interval_ms; /* longest pause between polls: default 1000 ms */

    /* Background reaper (a thread the queue owns). */
    bool no_reaper;           /* true: no background reaper; call mongoq_queue_reap yourself */
    int64_t reap_interval_ms; /* default lease_ms / 2 */

    mongoq_log_fn log_fn;  /* NULL: no logging */
    void *log_user_data;   /* passed to log_fn */

    /* ---- version 2 ---- */

    mongoq_hook_fn hook;  /* NULL: none; lifecycle events (mongoq/hooks.h) */
    void *hook_user_data; /* passed to hook */

    /* ---- version 3 ---- */

    /*
     * Partitions (docs/scaling.md): 0 or 1 (the default) is one partition, the layout of every
     * earlier version (no partition field, the same indexes and commands). P = 2 to
     * MONGOQ_MAX_PARTITIONS spreads messages over P partitions held in each document's
     * `partition` field (int32 0 .. P-1), and every index begins with it, so the collection can
     * be sharded on {partition: 1} (mongoq_queue_shard) with every single-message write aimed
     * at one shard. A message's partition is a hash of its dedup_key when it has one (so dedup
     * stays global) and of its _id otherwise (FNV-1a, stable across processes and versions).
     * Consumers take partitions in turn from a random start; priorities hold within a
     * partition, not across partitions. Every process of a queue must use the same value: a
     * queue's partitions cannot be changed in place (its indexes differ; opening a queue built
     * with P = 1 with P > 1, or back, fails with IndexKeySpecsConflict, 86).
     */
    int32_t partitions;

    /* ---- version 4 ---- */

    /*
     * Message groups (docs/design.md, Groups). 0 (the default): the queue has no groups, an
     * enqueue with a group is INVALID_ARG, and every command is the one of earlier versions.
     * N = 1 to MONGOQ_MAX_GROUP_CONCURRENCY: messages enqueued with a group (opts.group) are
     * delivered at most N at a time per group; N = 1 is strict FIFO per group (one message in
     * flight, in enqueue order; a retried or reaped message keeps its place and holds its group
     * until it is done or dead). Messages of other groups, and messages without a group, are
     * never held back by a busy group. A group is held by its message from its admission to its
     * acknowledgement or death, across crashes: a consumer killed mid-message holds it until
     * the lease expires and the message is reaped and delivered again. Grouped enqueues, acks
     * and deaths are transactions (a replica set or a sharded cluster is needed; a standalone
     * server refuses them). Every process of a queue must use the same value.
     */
    int32_t group_concurrency;
    /* What a grouped message that dies does to its group (default: release it). */
    mongoq_group_dead_t group_dead;
    /*
     * Rate limit: at most rate_limit claims per second across every process of the queue (0:
     * no limit and no round trip; up to MONGOQ_MAX_RATE_LIMIT), with bursts of up to rate_burst
     * claims (0: one second's worth, at least 1; up to MONGOQ_MAX_RATE_BURST). A token bucket
     * kept in the queue's collection and updated on the server's clock: one findAndModify per
     * claim call while a limit is set. A throttled claim waits (within its wait_ms) until the
     * next token is due, woken by a timer, without spinning. Every process should use the same
     * values (each enforces its own against the one bucket).
     */
    double rate_limit;
    int32_t rate_burst;

    /* ---- version 5 ---- */

    /*
     * Per-group rate limit (docs/design.md, Per-group rate limits): at most group_rate_limit
     * messages of one group per second fall due (0: none, the default; up to
     * MONGOQ_MAX_GROUP_RATE_LIMIT; needs group_concurrency > 0), with bursts of up to
     * group_rate_burst (0: one second's worth, at least 1; up to MONGOQ_MAX_GROUP_RATE_BURST;
     * needs a group_rate_limit). Every group gets a bucket of its own, kept in its group
     * document and updated on the server's clock in the transaction that admits the group's
     * messages (a grouped enqueue, the ack or death that admits the next, redrive, purge): an
     * admitted message's run_at is raised to the time its token is due, so a throttled group
     * costs no extra round trip and no consumer waits on it (the claim passes it over until it
     * is due, and the waker's timer wakes consumers then). What counts: each admission, i.e.
     * each message's first delivery (and once more after a redrive of a message whose death
     * released its place). Retries, deliveries after an expired lease and retry_now of an
     * admitted message are not counted and not delayed (they keep their place; backoff paces
     * them). The bound, by the server's clock: the first deliveries of one group over any
     * interval [a, b] are at most group_rate_burst + group_rate_limit * (b - a) +
     * group_concurrency (a backlog of admitted, due, unclaimed messages may be claimed
     * together). Other groups, and messages without a group, are never slowed by a throttled
     * group. An emptied group's document is kept until its bucket has refilled (the reaper
     * deletes it then). Every process of a queue should use the same values.
     */
    double group_rate_limit;
    int32_t group_rate_burst;
} mongoq_queue_opts_t;

#define MONGOQ_QUEUE_OPTS_INIT {.version = MONGOQ_QUEUE_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_QUEUE_OPTS_INIT does, for the given version (bindings that cannot use
 * the macro): every field zero (its default) and the version set. An older version gets only that
 * version's fields written (the struct of a program built against an older header is shorter).
 * Returns false, writing nothing, for a version this library does not know (0 or newer than
 * MONGOQ_QUEUE_OPTS_VERSION). Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_queue_opts_init(mongoq_queue_opts_t *opts, uint32_t version);

/*
 * Opens the queue stored in collection `name` of database `db`. The pool is borrowed and must
 * outlive the queue; db and name are copied; opts may be NULL (defaults) and is copied.
 * Unless opts->skip_ensure_indexes, creates the queue's indexes (mongoq_queue_ensure_indexes).
 * Starts the background reaper and the change-stream waker lazily (on first claim) unless they
 * are turned off.
 *
 * Returns NULL and fills error on failure: MONGOQ_ERROR_INVALID_ARG for an invalid collection
 * name (empty, '$' in it, "system." prefix, namespace "db.name" over 255 bytes), an invalid
 * database name (empty, over 63 bytes, any of / \ . space " $ in it) or an invalid option;
 * driver and server errors as libmongoc reports them (_new reads the server's clock once, so the
 * server must be reachable; it first waits, at most a second, until the driver has reached
 * every server of the URI, so that with several mongos the estimate is the slowest clock).
 */
MONGOQ_EXPORT mongoq_queue_t *
mongoq_queue_new(mongoc_client_pool_t *pool, const char *db, const char *name,
                 const mongoq_queue_opts_t *opts, bson_error_t *error);

/* How long mongoq_queue_destroy may take at most while a background call is in flight. */
#define MONGOQ_QUEUE_DESTROY_BOUND_MS 5000

/*
 * Stops the queue's threads and frees it, within MONGOQ_QUEUE_DESTROY_BOUND_MS whatever the server
 * does. Nothing is lost by destroying: messages claimed and not finished keep their leases and
 * return through the reaper of any process. NULL is a no-op. Not concurrent with other calls.
 */
MONGOQ_EXPORT void
mongoq_queue_destroy(mongoq_queue_t *queue);

/*
 * Creates the queue's indexes; idempotent. The claim index {status, priority desc, run_at, _id}
 * (equality, sort, range order), the lease index {status, lease_expires_at} for the reaper, the
 * due index {status, run_at} (the earliest run_at and the delayed count in one seek each), a
 * unique index on dedup_key among unfinished messages (partial on {dedup_key: {$exists: true}}:
 * only ready and processing messages carry the key, done and dead ones drop it; a filter on
 * status with $in would need MongoDB 6.0+ at a matching feature compatibility version), and,
 * with MONGOQ_ACK_KEEP, a TTL index on done_at that removes done messages after retention_s
 * (a changed retention_s is applied with collMod). Thread-safe.
 *
 * Migration: on a queue written by an earlier mongoq it builds only the indexes missing (e.g.
 * the due index, new in 0.2), on the live collection: messages are neither moved nor rewritten,
 * and producers and consumers may go on meanwhile (mongod builds the index without blocking
 * them; until it is ready, the reads it serves are slower, not wrong). Errors: driver and server
 * errors (e.g. IndexKeySpecsConflict, 86, when an index of the same name has other keys); after
 * any error, calling it again builds what is still missing.
 */
MONGOQ_EXPORT bool
mongoq_queue_ensure_indexes(mongoq_queue_t *queue, bson_error_t *error);

/* The collection's name and database, borrowed from the queue. */
MONGOQ_EXPORT const char *
mongoq_queue_name(const mongoq_queue_t *queue);
MONGOQ_EXPORT const char *
mongoq_queue_db(const mongoq_queue_t *queue);

/*
 * One reaping pass: every "processing" message whose lease has expired on the server's clock
 * goes back to "ready" keeping its run_at (or to "dead" when its attempts are used up; both
 * get last_error "lease expired"), in two updateMany round trips. Through several mongos, a
 * lease counts as expired only once it is past on every clock the queue measured (the server's
 * clock less the spread between them: docs/scaling.md). Safe to run from many threads and
 * processes at once.
 * *reclaimed_out (may be NULL) receives how many messages were returned or buried.
 * Safe to repeat: after MONGOQ_ERROR_UNKNOWN_OUTCOME a second pass reclaims what the first did
 * not. MONGOQ_ERROR_NO_CLIENT when the pool gives no client.
 */
MONGOQ_EXPORT bool
mongoq_queue_reap(mongoq_queue_t *queue, int64_t *reclaimed_out, bson_error_t *error);

/*
 * Structs mongoq writes into (mongoq_stats_t, mongoq_counters_t) carry a version, like the
 * option structs: set it with the _INIT macro (or the _init function, for bindings) before the
 * call. A program built against an older header passes an older version and gets exactly the
 * fields it knows; fields are only ever added at the end.
 */
/* 2 added paused, 3 waiting. */
#define MONGOQ_STATS_VERSION 3

/* A snapshot of the queue read from the server (mongoq_queue_stats). */
typedef struct {
    uint32_t version;        /* MONGOQ_STATS_VERSION */
    int64_t ready;           /* status "ready", due or not */
    int64_t delayed;         /* of those, with run_at still in the future (on this process's
                                estimate of the server clock: one due within the last round
                                trip may still count as delayed) */
    int64_t processing;
    int64_t done;            /* only with MONGOQ_ACK_KEEP */
    int64_t dead;
    int64_t oldest_ready_age_ms; /* how long the longest-due ready message has been due (now -
                                    its run_at), -1 if none is due */
    int64_t next_run_at_ms;      /* earliest run_at among ready messages (epoch ms; in the past
                                    when one is due), -1 if none */

    /* ---- version 2 ---- */
    bool paused; /* the queue is paused (mongoq_queue_pause) */

    /* ---- version 3 ---- */
    int64_t waiting; /* grouped messages waiting for their group (status "waiting"); counted
                        only when the queue has groups (group_concurrency > 0), else 0 */
} mongoq_stats_t;

#define MONGOQ_STATS_INIT {.version = MONGOQ_STATS_VERSION}

/*
 * Initialises stats as MONGOQ_STATS_INIT does, for the given version (bindings that cannot use
 * the macro). Returns false for a version this library does not know (0 or newer than
 * MONGOQ_STATS_VERSION). Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_stats_init(mongoq_stats_t *stats, uint32_t version);

/*
 * Reads counts per status and the ages above into *stats, whose version the caller set (fields
 * past that version are not written). Six reads answered from the queue's indexes (a `count`
 * per status, one for the delayed, one seek for the earliest run_at), none of which reads a
 * message, so the cost does not grow with what the queue holds beyond counting index keys, and
 * one read of the pause state (the queue's control document, by _id). The
 * reads are one after another, not one snapshot: a message that changes status meanwhile may be
 * counted twice or not at all. "Now" is this process's estimate of the server's clock (exact to
 * within a round trip). MONGOQ_ERROR_INVALID_ARG for an unknown version; driver errors.
 * Read-only: repeat it freely. Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_queue_stats(mongoq_queue_t *queue, mongoq_stats_t *stats, bson_error_t *error);

/* 2 added stream_rescans, 3 paused. Version 1 callers get the fields up to polling_fallback. */
#define MONGOQ_COUNTERS_VERSION 3

/* Counters kept in this process since the queue was opened (no round trip). */
typedef struct {
    uint32_t version; /* MONGOQ_COUNTERS_VERSION */
    int64_t enqueued;
    int64_t claimed;
    int64_t acked;
    int64_t retried;
    int64_t failed;     /* moved to dead: _fail, retries or leases used up, damaged documents */
    int64_t lease_lost; /* ack/retry/fail/extend that found the lease gone */
    int64_t reaped;     /* messages returned or buried by reaping */
    int64_t wakeups_change_stream; /* consumers woken by a change event */
    int64_t wakeups_timer;         /* ... by the timer for the next run_at */
    int64_t wakeups_poll;          /* ... by a poll that found work */
    int64_t idle_consumers;        /* consumers and worker threads waiting for work right now */
    bool change_stream_active;     /* the waker's change stream is open now */
    bool polling_fallback;         /* the server cannot open change streams: polling only */

    /* ---- version 2 ---- */

    /*
     * Change streams opened without a resume token (the first, and each after a gap the waker
     * could not rule out: history lost, invalidate, a token the server refused); every idle
     * consumer rescans then. A stream resumed after a network error does not count.
     */
    int64_t stream_rescans;

    /* ---- version 3 ---- */

    /* The queue's pause state as this process last saw it (stats.paused asks the server). */
    bool paused;
} mongoq_counters_t;

#define MONGOQ_COUNTERS_INIT {.version = MONGOQ_COUNTERS_VERSION}

/* As mongoq_stats_init, for counters. */
MONGOQ_EXPORT bool
mongoq_counters_init(mongoq_counters_t *counters, uint32_t version);

/*
 * Copies the counters into *counters, whose version the caller set (MONGOQ_COUNTERS_INIT);
 * fields past that version are not written. Returns false, writing nothing, for an unknown
 * version. Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_queue_counters(mongoq_queue_t *queue, mongoq_counters_t *counters);

/*
 * Moves dead messages back to ready with attempts reset and run_at = now (server clock): all
 * of them (id == NULL) or the one with _id *id (MONGOQ_ERROR_NOT_FOUND when it is not dead).
 * last_error and errors stay as history; a dedup_key released when the message died is not
 * restored. *moved_out (may be NULL) receives how many moved. Safe to repeat: a redriven message
 * is no longer dead. After MONGOQ_ERROR_UNKNOWN_OUTCOME a repeat moves what the first did not;
 * a repeat by id reports NOT_FOUND when the first had moved it.
 */
MONGOQ_EXPORT bool
mongoq_queue_redrive(mongoq_queue_t *queue, const bson_oid_t *id, int64_t *moved_out,
                     bson_error_t *error);

/*
 * Deletes messages by status: "ready", "processing", "done", "dead", or NULL for all messages
 * (a pause stays: the queue's control document is not a message).
 * MONGOQ_ERROR_INVALID_ARG for any other status. *deleted_out (may be NULL) gets the count.
 * Safe to repeat (after MONGOQ_ERROR_UNKNOWN_OUTCOME too): what is deleted is gone.
 */
MONGOQ_EXPORT bool
mongoq_queue_purge(mongoq_queue_t *queue, const char *status, int64_t *deleted_out,
                   bson_error_t *error);

/*
 * Pauses the queue for every process: from then on no consumer or worker anywhere claims a
 * message (claims wait, or return none when their wait ends), while messages already claimed
 * go on: acks, retries, fails, extensions and heartbeats work as before, and the reaper still
 * returns expired leases. The state is one document in the queue's collection
 * ({_id: "mongoq.control", paused: true}), so it survives restarts. Other processes see it
 * within their wake-up latency: at once through the change stream, within poll_interval_ms when
 * polling; this process at once. A claim asks the server nothing while the state is known.
 * Idempotent and safe to repeat after any error (MONGOQ_ERROR_UNKNOWN_OUTCOME: the pause may or
 * may not be stored; repeat it). Driver and server errors otherwise. Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_queue_pause(mongoq_queue_t *queue, bson_error_t *error);

/*
 * Resumes a paused queue: waiting consumers and workers here are woken at once, elsewhere
 * within their wake-up latency. Idempotent; errors and retries as mongoq_queue_pause.
 */
MONGOQ_EXPORT bool
mongoq_queue_resume(mongoq_queue_t *queue, bson_error_t *error);

/*
 * Reads whether the queue is paused from the server into *paused (false when it never was).
 * Read-only; driver errors. Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_queue_is_paused(mongoq_queue_t *queue, bool *paused, bson_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_QUEUE_H */

/*
 * mongoq/check.h - the doctor: what a queue needs from its server, checked and explained.
 *
 * mongoq_queue_check runs a fixed list of checks against the queue's server and collection and
 * returns a report: one item per check, each with a stable name, a level, a one-line message and
 * a one-line advice, and details (a BSON document of the figures behind it). The checks, by name:
 *
 *   server          the server's version (buildInfo): error below 4.2 (no pipeline updates,
 *                   no $$NOW), warning below 6.0 (mongoq is tested on 6.0+)
 *   topology        hello: setName = replica set (ok); msg "isdbgrid" = mongos (ok for a
 *                   partitioned queue; warning for one partition: claims on a sharded
 *                   collection need the shard key); else standalone (warning: no change
 *                   streams, no transactions)
 *   change_streams  opens a change stream on the queue (maxAwaitTimeMS 1) and closes it; a
 *                   refusal is a warning (consumers fall back to polling)
 *   pipeline_update an updateOne with a pipeline using $$NOW whose filter matches no document
 *                   (an _id made for the probe that no message has): the server parses and
 *                   plans it and writes nothing; a refusal is an error
 *   now             $$NOW evaluated by the server: aggregate {$documents: [{now: "$$NOW"}]}
 *                   (5.1+); older servers evaluate it over the queue's first document instead
 *                   ({$limit: 1}, {$project}); a refusal is an error
 *   clock_skew      hello.localTime against this machine's clock, taken halfway through the
 *                   round trip: warning past skew_warn_ms (mongoq decides on the server's
 *                   clock, but times a client passes, such as run_at_ms, are its own)
 *   indexes         listIndexes against the indexes mongoq_queue_ensure_indexes creates (names,
 *                   keys, unique, partial filter, TTL): a missing or different one is an error
 *   claim_plan      explain (executionStats) of the claim's find (ready and due, sorted by
 *                   priority, run_at, _id, limit 1): error when it does not use the claim index,
 *                   warning when it examines more than keys_warn keys; a partitioned queue's
 *                   claim names partition 0 (as every claim names its partition)
 *   partitions      the queue's partitions (details: partitions); on a mongos also whether
 *                   config.collections shards the collection (details: sharded, shard_key):
 *                   ok on {partition: 1} or {partition: "hashed"} with partitions > 1, or
 *                   unsharded with one; warning when a partitioned queue is not sharded
 *                   (mongoq_queue_shard); error when sharded on another key or with one
 *                   partition (claims would fail: mongos needs the shard key)
 *   write_concern   the queue's write concern: warning for w: 0, or w: 1 without j
 *   paused          the pause state (mongoq_queue_stats): warning while the queue is paused
 *                   (mongoq_queue_pause), with the resume command as the advice
 *   backlog         the oldest due message's age (mongoq_queue_stats): warning past
 *                   oldest_due_warn_ms
 *   dead_letters    the dead count: warning when any
 *
 * Nothing the checks send writes a document. When the server cannot be reached, the report has
 * the server item (error) alone.
 *
 * Thread safety: mongoq_queue_check is thread-safe; a report is immutable and may be read from
 * any thread.
 */
#ifndef MONGOQ_CHECK_H
#define MONGOQ_CHECK_H

#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    MONGOQ_CHECK_OK = 0,
    MONGOQ_CHECK_WARNING = 1,
    MONGOQ_CHECK_ERROR = 2
} mongoq_check_level_t;

/* "ok", "warning" or "error" (static). */
MONGOQ_EXPORT const char *
mongoq_check_level_name(mongoq_check_level_t level);

#define MONGOQ_CHECK_OPTS_VERSION 1

/* Thresholds; zero means the default. Negative values are INVALID_ARG. */
typedef struct {
    uint32_t version;           /* MONGOQ_CHECK_OPTS_VERSION */
    int64_t oldest_due_warn_ms; /* default 300000 (5 minutes) */
    int64_t skew_warn_ms;       /* default 1000 */
    int64_t keys_warn;          /* default 1000 keys examined by one claim */
} mongoq_check_opts_t;

#define MONGOQ_CHECK_OPTS_INIT {.version = MONGOQ_CHECK_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_CHECK_OPTS_INIT does, for the given version (bindings that cannot use
 * the macro): every field zero (its default) and the version set. Returns false, writing nothing,
 * for a version this library does not know (0 or newer than MONGOQ_CHECK_OPTS_VERSION). Thread-
 * safe.
 */
MONGOQ_EXPORT bool
mongoq_check_opts_init(mongoq_check_opts_t *opts, uint32_t version);

typedef struct mongoq_report_t mongoq_report_t;

/*
 * Runs the checks on queue (opts may be NULL) and hands the report to *report_out (owned by
 * the caller: mongoq_report_destroy). A check that fails is an item at its level, not a failure
 * of the call: the call fails only for invalid opts (MONGOQ_ERROR_INVALID_ARG; *report_out
 * NULL). Read-only apart from the probe above (which matches nothing); repeat it freely.
 */
MONGOQ_EXPORT bool
mongoq_queue_check(mongoq_queue_t *queue, const mongoq_check_opts_t *opts,
                   mongoq_report_t **report_out, bson_error_t *error);

/* How many items the report holds. */
MONGOQ_EXPORT size_t
mongoq_report_count(const mongoq_report_t *report);

/* The worst level of its items (MONGOQ_CHECK_OK for an empty report). */
MONGOQ_EXPORT mongoq_check_level_t
mongoq_report_level(const mongoq_report_t *report);

/*
 * Item i (i < mongoq_report_count): its name (from the list above), level, one-line message,
 * one-line advice ("" when none is needed) and details (a document of the figures: version,
 * skew_ms, index names, keys examined, ...). Strings and details are borrowed from the report.
 */
MONGOQ_EXPORT const char *
mongoq_report_name(const mongoq_report_t *report, size_t i);
MONGOQ_EXPORT mongoq_check_level_t
mongoq_report_item_level(const mongoq_report_t *report, size_t i);
MONGOQ_EXPORT const char *
mongoq_report_message(const mongoq_report_t *report, size_t i);
MONGOQ_EXPORT const char *
mongoq_report_advice(const mongoq_report_t *report, size_t i);
MONGOQ_EXPORT const bson_t *
mongoq_report_details(const mongoq_report_t *report, size_t i);

/*
 * The whole report as one document: {level: "warning", items: [{name, level, message, advice,
 * details}, ...]} into out (initialised by the call; the caller destroys it).
 */
MONGOQ_EXPORT void
mongoq_report_to_bson(const mongoq_report_t *report, bson_t *out);

/* Frees the report. NULL is a no-op. */
MONGOQ_EXPORT void
mongoq_report_destroy(mongoq_report_t *report);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_CHECK_H */

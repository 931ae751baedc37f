/*
 * The message document on the client side: checking enqueue options, building the document an
 * enqueue inserts, and parsing the document a claim returns. Pure functions over libbson (no
 * I/O), so they are unit-tested without a server. Field names come from fields.h.
 */
#ifndef MONGOQ_DOCUMENT_PRIVATE_H
#define MONGOQ_DOCUMENT_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "mongoq/producer.h"

/* Checks enqueue options (NULL is fine). `many`: refuse a dedup_key. INVALID_ARG on error. */
bool mongoq__enqueue_opts_check(const mongoq_enqueue_opts_t *opts, bool many, bson_error_t *error);

/*
 * When a message enqueued now (server time now_ms) becomes due: now + delay_ms, or run_at_ms,
 * or now. opts (may be NULL) must have passed mongoq__enqueue_opts_check.
 */
int64_t mongoq__document_run_at(const mongoq_enqueue_opts_t *opts, int64_t now_ms);

/*
 * Builds the document of a new message with _id `id` into `out` (initialised by the callee on
 * every path). default_max_attempts applies when opts leave it 0. INVALID_ARG when payload is
 * NULL or the document would pass the 16 MiB limit.
 */
bool mongoq__document_build(const bson_t *payload, const mongoq_enqueue_opts_t *opts,
                            int32_t default_max_attempts, int64_t now_ms, const bson_oid_t *id,
                            bson_t *out, bson_error_t *error);

/* A claimed message document, parsed. Pointers and views are borrowed from the document. */
typedef struct {
    bson_oid_t id;
    bson_t payload; /* static view */
    int32_t attempts;
    int32_t max_attempts;
    int32_t priority;
    int64_t enqueued_at;
    int64_t run_at;
    int64_t lease_expires_at;
    bson_oid_t lease_token;
    const char *dedup_key;  /* NULL when absent */
    const char *group;      /* NULL when absent (an ungrouped message) */
    const char *claimed_by; /* NULL when absent */
    bool has_errors;
    bson_t errors; /* static view of the errors array when has_errors */
} mongoq__parsed_t;

/*
 * Parses a document a claim returned (status processing, lease fields set). Returns false with
 * a human-readable reason in reason[reason_len] when the document is damaged: missing fields or
 * wrong types. Never crashes on any valid BSON.
 */
bool mongoq__document_parse(const bson_t *doc, mongoq__parsed_t *out, char *reason,
                            size_t reason_len);

/* A static view of doc's sub-document (array: an array) `field` in *out; false when absent or of
 * another type. */
bool mongoq__document_subdoc(const bson_t *doc, const char *field, bool array, bson_t *out);

/*
 * Appends to `set` (the body of a pipeline $set stage) the `errors` field of a message that
 * fails now: the last MONGOQ__MAX_ERRORS - 1 entries of `old` (may be NULL) followed by
 * {at: $$NOW, error: reason}. Old entries and the reason are wrapped in $literal so text that
 * looks like an expression ("$x") is stored as written. reason may be NULL (stored as null).
 */
void mongoq__document_append_errors(bson_t *set, const bson_t *old, const char *reason);

/*
 * How much of reason is stored: whole UTF-8 characters up to MONGOQ_MAX_REASON_BYTES, cut at the
 * first invalid byte (a reason is often text the caller did not write).
 */
size_t mongoq__reason_length(const char *reason);

/* Appends `key: {$literal: reason}` (cut by mongoq__reason_length) or `key: null`. */
void mongoq__document_append_reason(bson_t *doc, const char *key, const char *reason);

/*
 * Appends `key: {$add: ["$$NOW", ms]}`: a time `ms` after the server's clock when the update
 * runs. Leases and retry times are computed this way only, never from a client clock.
 */
void mongoq__document_append_now_plus(bson_t *doc, const char *key, int64_t ms);
/*
 * key: "$$NOW", or {$subtract: ["$$NOW", ms]} when ms > 0: the server's clock held back by the
 * measured spread between the clocks of the servers the queue talks to (several mongos), so an
 * expiry test passes only once every one of those clocks is past the expiry (docs/scaling.md).
 */
void mongoq__document_append_now_less(bson_t *doc, const char *key, int64_t ms);

/* Appends {$unset: [fields[0 .. n)]} to an update pipeline as stage `index` ("0", "1", ...). */
void mongoq__document_append_unset(bson_t *pipeline, const char *index, const char *const *fields,
                                   size_t n);

/*
 * Appends the filter of a ready message due on the server's clock:
 * {status: ready, run_at: {$lte: server_now + MONGOQ__CLOCK_SLACK_MS}, $expr: {$lte: ["$run_at",
 * "$$NOW"]}}. The range lets the claim index serve it; the $expr decides on the server's clock.
 */
void mongoq__document_append_due(bson_t *filter, int64_t server_now);

/* Appends {projection: {fields[0]: 1, ...}} to a find's options. */
void mongoq__document_append_projection(bson_t *opts, const char *const *fields, size_t n);

/*
 * Appends a find's options that read the earliest run_at of the messages a filter on status (and
 * a range on run_at) selects: {projection: {_id: 0, run_at: 1}, sort: {run_at: 1}, limit: 1}.
 * The due index {status, run_at} answers it with one seek and no document read (covered).
 * with_partition: a partitioned queue's ({partition: {$in: all}} in the filter, the due index
 * {partition, status, run_at}): the partition is projected too (still covered), and the server
 * merges one seek per partition.
 */
void mongoq__document_append_earliest_opts(bson_t *opts, bool with_partition);

#endif

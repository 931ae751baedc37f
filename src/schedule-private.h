/*
 * Schedules' internals, shared by schedule.c (definitions: set, get, list, remove),
 * schedule_fire.c (claiming a schedule's due slots and enqueueing them in one transaction) and
 * scheduler.c (passes, and the scheduler's thread). See docs/design.md, "Schedules".
 *
 * The schedule document, in "<queue>.schedules":
 *   _id (the name), cron, tz, payload, priority, max_attempts, dedup_key (absent: none),
 *   catch_up ("latest" | "skip" | "all"), catch_up_limit, grace_ms,
 *   next_slot (date, or null when the expression has no slot left), rev (int64, +1 on every
 *   write: the compare-and-set of a slot claim), enqueued, skipped (int64 counts),
 *   last_slot, last_run_at, last_id (the latest slot's message), created_at, updated_at.
 */
#ifndef MONGOQ_SCHEDULE_PRIVATE_H
#define MONGOQ_SCHEDULE_PRIVATE_H

#include "mongoq/schedule.h"
#include "queue-private.h"

#define MONGOQ__SCHEDULES_SUFFIX ".schedules"
/* The field of the message payload that names the schedule and slot. */
#define MONGOQ__SCHEDULE_PAYLOAD_FIELD "mongoq_schedule"
/* Room kept in a payload for that field. */
#define MONGOQ__SCHEDULE_PAYLOAD_ROOM 1024

#define MONGOQ__DEFAULT_CATCH_UP_LIMIT 10
#define MONGOQ__DEFAULT_GRACE_MS 60000

/* A schedule document as read. */
typedef struct {
    char *name;
    char *cron;
    char *tz;
    char *dedup_key; /* NULL: none */
    bson_t payload;
    int32_t priority;
    int32_t max_attempts;
    mongoq_catch_up_t catch_up;
    int32_t catch_up_limit;
    int64_t grace_ms;
    int64_t next_slot_ms; /* -1: none */
    int64_t rev;
    int64_t enqueued;
    int64_t skipped;
    int64_t last_slot_ms;   /* -1: none */
    int64_t last_run_at_ms; /* -1: never */
    int64_t updated_at_ms;
} mongoq__schedule_doc_t;

/* Reads doc into *out (destroy it after, also on failure). MONGOQ_ERROR_SERVER when damaged. */
bool mongoq__schedule_doc_parse(const bson_t *doc, mongoq__schedule_doc_t *out,
                                bson_error_t *error);

void mongoq__schedule_doc_destroy(mongoq__schedule_doc_t *doc);

/* "latest", "skip", "all" (NULL for another value) and back (-1 for an unknown name). */
const char *mongoq__catch_up_name(mongoq_catch_up_t policy);
int mongoq__catch_up_from_name(const char *name);

/* The schedules collection of queue on client (the caller destroys it). */
mongoc_collection_t *mongoq__schedules_collection(const mongoq_queue_t *queue,
                                                  mongoc_client_t *client);

/* Creates the index {next_slot: 1} the scheduler's due query uses. Idempotent. */
bool mongoq__schedules_ensure_index(const mongoq_queue_t *queue, mongoc_client_t *client,
                                    bson_error_t *error);

/* The _id of the message of slot slot_ms of schedule name (see schedule.h). */
void mongoq__schedule_slot_id(const char *name, int64_t slot_ms, bson_oid_t *id);

/*
 * Claims the due slots of one schedule (as read in *doc, due when next_slot <= now +
 * lookahead_ms) and enqueues the messages the catch-up policy chooses, in one transaction on a
 * session of client (see schedule_fire.c). Adds to pass->enqueued, skipped and lost_races.
 * Errors: driver errors, MONGOQ_ERROR_UNKNOWN_OUTCOME (commit reply lost).
 */
bool mongoq__schedule_fire(mongoq_queue_t *queue, mongoc_client_t *client,
                           const mongoq__schedule_doc_t *doc, int64_t now, int64_t lookahead_ms,
                           mongoq_scheduler_pass_t *pass, bson_error_t *error);

#endif

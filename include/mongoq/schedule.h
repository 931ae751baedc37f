/*
 * mongoq/schedule.h - periodic messages: named cron schedules stored with the queue, and the
 * scheduler that enqueues one message per slot.
 *
 * A schedule is a document in the collection "<queue>.schedules" (same database), keyed by its
 * name: a cron expression, a time zone, the message to enqueue (payload, priority, max_attempts,
 * dedup_key), a catch-up policy, and the next slot to enqueue. Any number of processes may run
 * a scheduler on the same queue: each slot is enqueued exactly once, as one message whose
 * run_at is the slot. The scheduler claims a slot and inserts its message in one transaction
 * (the schedule's next slot is advanced by a compare-and-set on its revision), so a crash at any
 * point leaves either both or neither, and two schedulers racing for a slot cannot both commit
 * (docs/design.md, "Schedules"). Transactions need a replica set or a sharded cluster: on a
 * standalone server the scheduler fails with the server's error.
 *
 * Cron expressions: five fields "minute hour day-of-month month day-of-week", each "*", a
 * value, a range "a-b", a list "a,b-c", with an optional step "/n" ("*" + "/15", "8-18/2");
 * "a/n" runs from a to the field's end. Months take JAN-DEC and days of week SUN-SAT (0 and 7
 * are Sunday), in any case. Macros: @yearly (@annually), @monthly, @weekly (Sunday 00:00),
 * @daily (@midnight), @hourly. As in Vixie cron, when both day-of-month and day-of-week are
 * restricted a day matching either one runs ("0 9 1 * MON": the 1st and every Monday); when
 * either field starts with '*' (also "*" + "/2") both must match.
 *
 * Time zones: "UTC" or an IANA name ("Europe/Berlin") read from the system's tz database
 * (/usr/share/zoneinfo, or $TZDIR) by mongoq itself (no TZ variable, no tzset: thread-safe).
 * Slots are wall-clock minutes in that zone:
 *  - daylight-saving gap: a wall-clock time that does not exist (02:30 on the night clocks go
 *    forward) runs at the first instant after the gap (03:00 new time); several slots inside one
 *    gap run once there, together with a slot at that instant;
 *  - repeat: a wall-clock time that occurs twice (01:30 on the night clocks go back) runs once,
 *    at its first occurrence.
 * The last slot a schedule can have is 2106-02-07 (a message _id holds the slot in 32 bits).
 *
 * Precision: a slot's message is inserted up to lookahead_ms before the slot with run_at = the
 * slot, so it becomes claimable at the slot on the server's clock ($$NOW) however late the
 * scheduler ran within the lookahead; a consumer waiting on the queue is woken by the queue's
 * timer for it. A scheduler started late, or a new schedule seen only at its next poll, enqueues
 * within poll_ms (run_at then lies in the past and the message is due at once).
 *
 * The message: the schedule's payload with one field appended, "mongoq_schedule": {name: <the
 * schedule's name>, slot: <the slot as a date>}, so a handler knows which run it is. Its _id is
 * derived from (name, slot): the slot's seconds as the ObjectId's time, then 8 bytes of a hash
 * of the name, so the same slot of the same schedule always has the same _id.
 *
 * Thread safety: every function here is thread-safe on a shared queue. A scheduler's
 * functions are called from one controlling thread, except mongoq_scheduler_request_stop().
 */
#ifndef MONGOQ_SCHEDULE_H
#define MONGOQ_SCHEDULE_H

#include "limits.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The longest cron expression and time zone name, in bytes. */
#define MONGOQ_MAX_CRON_BYTES 256
#define MONGOQ_MAX_TZ_BYTES 128

/* The most messages one catch-up may enqueue (catch_up_limit). */
#define MONGOQ_MAX_CATCH_UP 1000

/* What a scheduler does with slots it finds already past (after downtime, or a pause). */
typedef enum {
    /* Default: of the slots due, enqueue only the latest (however late); skip the others. */
    MONGOQ_CATCH_UP_LATEST = 0,
    /* Enqueue only slots at most grace_ms late; skip the others. */
    MONGOQ_CATCH_UP_SKIP = 1,
    /* Enqueue every slot due, oldest first, at most catch_up_limit (the latest ones). */
    MONGOQ_CATCH_UP_ALL = 2
} mongoq_catch_up_t;

#define MONGOQ_SCHEDULE_OPTS_VERSION 1

/* A schedule's definition (mongoq_schedule_set). Zero means "the default" for every field. */
typedef struct {
    uint32_t version;  /* MONGOQ_SCHEDULE_OPTS_VERSION */
    const char *cron;  /* required: see above; at most MONGOQ_MAX_CRON_BYTES */
    const char *tz;    /* NULL: "UTC"; an IANA zone name, at most MONGOQ_MAX_TZ_BYTES */
    const bson_t *payload; /* NULL: {}; copied; at most MONGOQ_MAX_PAYLOAD_BYTES - 1024 */
    int32_t priority;      /* of each message; default 0 */
    int32_t max_attempts;  /* of each message: 0 the queue's, else 1 to MONGOQ_MAX_ATTEMPTS */
    /*
     * NULL: none. Each message holds this dedup_key while unfinished: a slot that comes while
     * the message of an earlier slot is still unfinished is skipped (counted in `skipped`), so
     * runs never overlap. At most MONGOQ_MAX_DEDUP_KEY_BYTES.
     */
    const char *dedup_key;
    mongoq_catch_up_t catch_up;
    int32_t catch_up_limit; /* MONGOQ_CATCH_UP_ALL: default 10, at most MONGOQ_MAX_CATCH_UP */
    int64_t grace_ms;       /* MONGOQ_CATCH_UP_SKIP: how late a slot may still run; default
                               60000, at most MONGOQ_MAX_DURATION_MS */
} mongoq_schedule_opts_t;

#define MONGOQ_SCHEDULE_OPTS_INIT {.version = MONGOQ_SCHEDULE_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_SCHEDULE_OPTS_INIT does, for the given version (bindings that cannot
 * use the macro): every field zero (its default) and the version set. Returns false, writing
 * nothing, for a version this library does not know (0 or newer than
 * MONGOQ_SCHEDULE_OPTS_VERSION). Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_schedule_opts_init(mongoq_schedule_opts_t *opts, uint32_t version);

/*
 * Creates schedule `name` (valid UTF-8 of 1 to MONGOQ_MAX_NAME_BYTES, borrowed) on queue, or
 * replaces the definition of the one of that name. A new schedule (or one whose cron or tz
 * changed) gets as next slot the first slot after now (server clock); a replaced one with the
 * same cron and tz keeps its next slot and its counts. Everything is checked before anything is
 * written: MONGOQ_ERROR_INVALID_ARG for a bad cron expression (the message names the field and
 * why), an unknown time zone, a bad name or option. Creates the schedules collection's index.
 * Errors after sending: driver errors; MONGOQ_ERROR_UNKNOWN_OUTCOME (the write may have been
 * applied). Repeating the call after any error is safe: it sets the same definition.
 */
MONGOQ_EXPORT bool
mongoq_schedule_set(mongoq_queue_t *queue, const char *name, const mongoq_schedule_opts_t *opts,
                    bson_error_t *error);

/*
 * Removes schedule `name`: no slot after this is enqueued (a slot a scheduler is committing at
 * this moment may still be). Messages already enqueued stay. MONGOQ_ERROR_NOT_FOUND when there
 * is no such schedule. Safe to repeat (after UNKNOWN_OUTCOME a repeat says NOT_FOUND when the
 * first had removed it).
 */
MONGOQ_EXPORT bool
mongoq_schedule_remove(mongoq_queue_t *queue, const char *name, bson_error_t *error);

#define MONGOQ_SCHEDULE_INFO_VERSION 1

/*
 * A stored schedule as read (mongoq_schedule_get, mongoq_schedule_list). Filled by mongoq:
 * version is the MONGOQ_SCHEDULE_INFO_VERSION of the library that filled it. Every pointer is
 * borrowed from the info and valid until it is destroyed.
 */
typedef struct {
    uint32_t version;
    const char *name;
    const char *cron;
    const char *tz;
    const bson_t *payload;
    int32_t priority;
    int32_t max_attempts;  /* 0: the queue's */
    const char *dedup_key; /* NULL: none */
    mongoq_catch_up_t catch_up;
    int32_t catch_up_limit;
    int64_t grace_ms;
    int64_t next_slot_ms;   /* the next slot to enqueue (ms since the epoch); -1: none ever */
    int64_t last_slot_ms;   /* the latest slot enqueued; -1: none yet */
    int64_t last_run_at_ms; /* when it was enqueued (server clock estimate); -1: never */
    int64_t enqueued;       /* slots enqueued so far */
    int64_t skipped;        /* slots skipped (catch-up policy, or dedup_key held) */
    int64_t updated_at_ms;  /* when the definition was last set */
} mongoq_schedule_info_t;

/*
 * Reads schedule `name` into *info_out (the caller destroys it with
 * mongoq_schedule_info_destroy). MONGOQ_ERROR_NOT_FOUND when there is none; driver errors.
 * Read-only.
 */
MONGOQ_EXPORT bool
mongoq_schedule_get(mongoq_queue_t *queue, const char *name, mongoq_schedule_info_t **info_out,
                    bson_error_t *error);

/* Frees an info. NULL is a no-op. */
MONGOQ_EXPORT void
mongoq_schedule_info_destroy(mongoq_schedule_info_t *info);

/*
 * Reads every schedule of queue, by name, into *infos_out (an array of *n_out pointers; the
 * caller frees it with mongoq_schedule_infos_destroy; NULL and 0 when there are none, or on
 * error). A stored document mongoq cannot read (edited by hand) is left out and logged.
 * Driver errors. Read-only.
 */
MONGOQ_EXPORT bool
mongoq_schedule_list(mongoq_queue_t *queue, mongoq_schedule_info_t ***infos_out, size_t *n_out,
                     bson_error_t *error);

/* Frees what mongoq_schedule_list returned. NULL is a no-op. */
MONGOQ_EXPORT void
mongoq_schedule_infos_destroy(mongoq_schedule_info_t **infos, size_t n);

/*
 * Pure computation, no server: the first slot of cron in zone tz (NULL: UTC) strictly after
 * after_ms, into *next_ms (-1 when there is none before 2106). MONGOQ_ERROR_INVALID_ARG for a
 * bad expression or zone, as mongoq_schedule_set.
 */
MONGOQ_EXPORT bool
mongoq_cron_next(const char *cron, const char *tz, int64_t after_ms, int64_t *next_ms,
                 bson_error_t *error);

/* ---- the scheduler ----------------------------------------------------------------------- */

typedef struct mongoq_scheduler_t mongoq_scheduler_t;

#define MONGOQ_SCHEDULER_OPTS_VERSION 1

/* Scheduler options. Zero means "the default". */
typedef struct {
    uint32_t version;     /* MONGOQ_SCHEDULER_OPTS_VERSION */
    int64_t lookahead_ms; /* insert a slot's message this long before the slot: default 1000,
                             at most 3600000 (run_at is the slot either way) */
    int64_t poll_ms;      /* look for new and changed schedules this often: default 1000, 10 to
                             MONGOQ_MAX_DURATION_MS */
} mongoq_scheduler_opts_t;

#define MONGOQ_SCHEDULER_OPTS_INIT {.version = MONGOQ_SCHEDULER_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_SCHEDULER_OPTS_INIT does, for the given version (bindings that cannot
 * use the macro): every field zero (its default) and the version set. Returns false, writing
 * nothing, for a version this library does not know (0 or newer than
 * MONGOQ_SCHEDULER_OPTS_VERSION). Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_scheduler_opts_init(mongoq_scheduler_opts_t *opts, uint32_t version);

#define MONGOQ_SCHEDULER_PASS_VERSION 1

/* What one pass did (mongoq_scheduler_run_pass). The caller sets version. */
typedef struct {
    uint32_t version;     /* MONGOQ_SCHEDULER_PASS_VERSION */
    int64_t enqueued;     /* messages this pass enqueued (slots it committed) */
    int64_t skipped;      /* slots it skipped (catch-up policy, dedup_key held) */
    int64_t lost_races;   /* schedules another scheduler (or an update) advanced first */
    int64_t next_due_ms;  /* server time at which a slot is next due for insertion (its slot
                             less lookahead), capped at now + poll_ms: call again then */
} mongoq_scheduler_pass_t;

#define MONGOQ_SCHEDULER_PASS_INIT {.version = MONGOQ_SCHEDULER_PASS_VERSION}

/*
 * Initialises pass as MONGOQ_SCHEDULER_PASS_INIT does, for the given version (bindings that cannot
 * use the macro): every field zero (its default) and the version set. Returns false, writing
 * nothing, for a version this library does not know (0 or newer than
 * MONGOQ_SCHEDULER_PASS_VERSION). Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_scheduler_pass_init(mongoq_scheduler_pass_t *pass, uint32_t version);

/*
 * One pass, on the calling thread: every schedule of queue whose next slot is due within
 * lookahead_ms has its due slots claimed and enqueued (one transaction per schedule, see the
 * top of the file). For a loop of your own (a worker's handler thread between messages, a
 * cron-like process); mongoq_scheduler_t runs the same on a thread of its own. opts and pass
 * may be NULL. Errors: INVALID_ARG for bad options; driver errors (a standalone server refuses
 * transactions); MONGOQ_ERROR_UNKNOWN_OUTCOME when a commit's reply was lost (the slot may have
 * been enqueued: the next pass sees the schedule advanced, or claims the slot again; never
 * both). The schedules before the failing one were done. Safe to repeat at any time.
 */
MONGOQ_EXPORT bool
mongoq_scheduler_run_pass(mongoq_queue_t *queue, const mongoq_scheduler_opts_t *opts,
                          mongoq_scheduler_pass_t *pass, bson_error_t *error);

/*
 * A stopped scheduler on queue (borrowed; must outlive it). NULL + INVALID_ARG for bad
 * options. It talks to the server on a connection of its own (from the pool's URI, with
 * timeouts capped at a few seconds, as the queue's waker), so any pool size works and a stop is
 * bounded whatever the server does.
 */
MONGOQ_EXPORT mongoq_scheduler_t *
mongoq_scheduler_new(mongoq_queue_t *queue, const mongoq_scheduler_opts_t *opts,
                     bson_error_t *error);

/*
 * Starts its thread: passes as mongoq_scheduler_run_pass, each when the next slot is due or
 * after poll_ms, errors logged through the queue's log_fn and retried after poll_ms. Fails
 * (MONGOQ_ERROR_STOPPED) if already started, MONGOQ_ERROR_SYSTEM if no thread can be made.
 */
MONGOQ_EXPORT bool
mongoq_scheduler_start(mongoq_scheduler_t *scheduler, bson_error_t *error);

/* Async-signal-safe: asks the scheduler's thread to stop; returns at once. */
MONGOQ_EXPORT void
mongoq_scheduler_request_stop(mongoq_scheduler_t *scheduler);

/*
 * Stops the thread: waits up to timeout_ms (negative counts as 0, more than
 * MONGOQ_MAX_DURATION_MS as that) for it to leave the pass it is in (a pass's calls end within
 * a few seconds whatever the server does). false with MONGOQ_ERROR_STOPPED when it is still
 * running: call again or destroy. A transaction cut short by a stop is aborted by the server,
 * never half applied. The calling thread sends nothing. true when it was not started.
 */
MONGOQ_EXPORT bool
mongoq_scheduler_stop(mongoq_scheduler_t *scheduler, int64_t timeout_ms, bson_error_t *error);

/* Stops (waiting as long as it takes) and frees. NULL is a no-op. */
MONGOQ_EXPORT void
mongoq_scheduler_destroy(mongoq_scheduler_t *scheduler);

/*
 * This scheduler's totals since it started, in a pass struct (next_due_ms: of its latest
 * pass). pass->version must be set. Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_scheduler_counters(mongoq_scheduler_t *scheduler, mongoq_scheduler_pass_t *pass);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_SCHEDULE_H */

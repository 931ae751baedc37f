/*
 * Cron expressions, time zones and the next slot of a schedule: pure computation, no I/O but
 * reading a zone's TZif file, no global state (setenv("TZ") / tzset / localtime are not used:
 * they are process-wide and not thread-safe). Three files:
 *  - cron.c       parses "m h dom mon dow" (lists, ranges, steps, names, @daily ...) and
 *                 matches a civil (wall-clock) time;
 *  - cron_tz.c    reads a zone from the tz database (TZif v2+, with its POSIX TZ footer for
 *                 times past the last transition) and gives the UTC offset at an instant;
 *  - cron_next.c  the civil calendar and the next slot after an instant, with the DST rules
 *                 (a wall-clock time in a gap runs at the first instant after the gap; one that
 *                 occurs twice runs once, at its first occurrence).
 * All times are int64 milliseconds since the Unix epoch (UTC).
 */
#ifndef MONGOQ_CRON_PRIVATE_H
#define MONGOQ_CRON_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include <bson/bson.h>

/* ---- cron expressions (cron.c) ----------------------------------------------------------- */

typedef struct {
    uint64_t minutes; /* bit m: minute m (0-59) */
    uint32_t hours;   /* bit h: hour h (0-23) */
    uint32_t doms;    /* bit d: day of month d (1-31) */
    uint16_t months;  /* bit m: month m (1-12) */
    uint8_t dows;     /* bit d: day of week d (0 = Sunday .. 6; 7 is read as 0) */
    bool dom_star;    /* the day-of-month field starts with '*' (Vixie cron's rule) */
    bool dow_star;    /* the day-of-week field starts with '*' */
} mongoq__cron_t;

/* The longest cron expression accepted, in bytes. */
#define MONGOQ__CRON_MAX_BYTES 256

/*
 * Parses expr into *cron. MONGOQ_ERROR_INVALID_ARG naming the field and the reason for
 * anything else, including an expression that can never match (e.g. "0 0 30 2 *").
 */
bool mongoq__cron_parse(const char *expr, mongoq__cron_t *cron, bson_error_t *error);

/*
 * Whether the day (month 1-12, dom 1-31, dow 0-6) matches. When both day fields are restricted
 * (neither starts with '*'), either one matching is enough; otherwise both must match.
 */
bool mongoq__cron_day_matches(const mongoq__cron_t *cron, int month, int dom, int dow);

/* ---- time zones (cron_tz.c) --------------------------------------------------------------- */

typedef struct mongoq__tz_t mongoq__tz_t;

/* The longest zone name accepted, in bytes. */
#define MONGOQ__TZ_MAX_NAME_BYTES 128

/*
 * Loads zone `name` ("UTC", or an IANA name such as "Europe/Berlin") from the tz database in
 * zoneinfo_dir (NULL: $TZDIR, else /usr/share/zoneinfo). "UTC", "Etc/UTC" and "GMT" work
 * without the database. MONGOQ_ERROR_INVALID_ARG for a malformed name (absolute, "..", odd
 * characters), an unknown zone or a file that is not TZif.
 */
mongoq__tz_t *mongoq__tz_load(const char *name, const char *zoneinfo_dir, bson_error_t *error);

void mongoq__tz_destroy(mongoq__tz_t *tz);

/* The zone's name as given. */
const char *mongoq__tz_name(const mongoq__tz_t *tz);

/* Seconds to add to UTC to get local time at instant utc_ms (e.g. 3600 for CET). */
int32_t mongoq__tz_offset_s(const mongoq__tz_t *tz, int64_t utc_ms);

/* ---- the calendar and the next slot (cron_next.c) ----------------------------------------- */

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12). */
int64_t mongoq__days_from_civil(int64_t year, int month, int day);

/* The date of a day number (inverse of mongoq__days_from_civil). */
void mongoq__civil_from_days(int64_t days, int64_t *year, int *month, int *day);

/*
 * The first slot strictly after after_ms, as a UTC instant, into *slot_ms: the earliest
 * instant whose wall-clock time in tz matches cron, where
 *  - a matching wall-clock time that does not exist (a DST gap) runs at the first instant after
 *    the gap (every matching time of one gap collapses into that one run), and
 *  - a matching wall-clock time that occurs twice (DST ends) runs once, at its first occurrence.
 * Slots are whole minutes of wall-clock time. Returns false when there is none within nine years
 * or before MONGOQ__SLOT_MAX_MS (the schedule has ended).
 */
bool mongoq__cron_next(const mongoq__cron_t *cron, const mongoq__tz_t *tz, int64_t after_ms,
                       int64_t *slot_ms);

/* The latest slot a schedule may have: the message _id's 32-bit time (2106-02-07). */
#define MONGOQ__SLOT_MAX_MS ((int64_t)UINT32_MAX * 1000)

#endif

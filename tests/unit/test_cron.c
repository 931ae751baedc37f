/*
 * Cron expressions, time zones from the tz database and the next slot, across the DST
 * transitions of Europe/Berlin and America/New_York. Pure computation on the system's tz
 * database (tzdata), no clock: compiled in directly (internal symbols are hidden in the shared
 * library). The offsets are also checked against the C library's own reading of the same
 * database (TZ + localtime_r, fine here: each Criterion test runs in a process of its own).
 */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/cron.c"
#include "../../src/cron_next.c"
#include "../../src/cron_tz.c"

/* "YYYY-MM-DDTHH:MM" in UTC, as ms since the epoch. */
static int64_t
iso(const char *text)
{
    int y, mo, d, h, mi;
    cr_assert(sscanf(text, "%d-%d-%dT%d:%d", &y, &mo, &d, &h, &mi) == 5, "bad time %s", text);
    return (mongoq__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60) * 1000;
}

static mongoq__cron_t
cron(const char *expr)
{
    mongoq__cron_t c;
    bson_error_t error;
    cr_assert(mongoq__cron_parse(expr, &c, &error), "%s: %s", expr, error.message);
    return c;
}

static void
assert_bad(const char *expr, const char *needle)
{
    mongoq__cron_t c;
    bson_error_t error;
    cr_assert_not(mongoq__cron_parse(expr, &c, &error), "\"%s\" was accepted", expr);
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert(strstr(error.message, needle), "\"%s\": message \"%s\" lacks \"%s\"", expr,
              error.message, needle);
}

static mongoq__tz_t *
zone(const char *name)
{
    bson_error_t error;
    mongoq__tz_t *tz = mongoq__tz_load(name, NULL, &error);
    cr_assert(tz, "%s: %s", name, error.message);
    return tz;
}

/* The next slot of expr in zone after `after` (ISO, UTC) is `expected` (ISO, UTC). */
static void
assert_next(const char *expr, const char *zone_name, const char *after, const char *expected)
{
    mongoq__cron_t c = cron(expr);
    mongoq__tz_t *tz = zone(zone_name);
    int64_t slot = 0;
    cr_assert(mongoq__cron_next(&c, tz, iso(after), &slot), "%s: no slot after %s", expr, after);
    cr_assert_eq(slot, iso(expected), "%s in %s after %s: got %lld ms, expected %s (%lld)", expr,
                 zone_name, after, (long long)slot, expected, (long long)iso(expected));
    mongoq__tz_destroy(tz);
}

Test(cron, calendar_agrees_with_the_epoch)
{
    cr_assert_eq(iso("2024-01-01T00:00"), 1704067200000LL);
    cr_assert_eq(iso("1970-01-01T00:00"), 0);
    int64_t y;
    int m, d;
    mongoq__civil_from_days(mongoq__days_from_civil(2024, 2, 29), &y, &m, &d);
    cr_assert(y == 2024 && m == 2 && d == 29);
}

Test(cron, fields_lists_ranges_steps_and_names)
{
    mongoq__cron_t c = cron("*/15 9-17/4 1,15 jan-MAR,Dec MON-fri");
    cr_assert_eq(c.minutes, (1ULL << 0) | (1ULL << 15) | (1ULL << 30) | (1ULL << 45));
    cr_assert_eq(c.hours, (1u << 9) | (1u << 13) | (1u << 17));
    cr_assert_eq(c.doms, (1u << 1) | (1u << 15));
    cr_assert_eq(c.months, (1u << 1) | (1u << 2) | (1u << 3) | (1u << 12));
    cr_assert_eq(c.dows, 0x3e);
    cr_assert_eq(cron("5/20 * * * *").minutes, (1ULL << 5) | (1ULL << 25) | (1ULL << 45));
    cr_assert_eq(cron("0 0 * * 7").dows, 1, "7 is Sunday");
    cr_assert_eq(cron("0 0 * * 5-7").dows, 0x61);
    cr_assert_eq(cron("0 0 * * *").dows, 0x7f);
    cr_assert(cron("* * * * *").dom_star && cron("0 0 */2 * 1").dom_star);
}

Test(cron, macros)
{
    mongoq__cron_t a = cron("@weekly"), b = cron("0 0 * * 0");
    cr_assert(memcmp(&a, &b, sizeof a) == 0);
    a = cron("@HOURLY");
    cr_assert_eq(a.minutes, 1);
    cr_assert_eq(a.hours, 0xffffff);
    cron("@yearly");
    cron("@annually");
    cron("@monthly");
    cron("@daily");
    cron("@midnight");
}

Test(cron, bad_expressions_say_why)
{
    assert_bad("* * * *", "has 4 fields");
    assert_bad("* * * * * *", "has 6 fields");
    assert_bad("", "1 to");
    assert_bad("60 * * * *", "field 1 (minute) \"60\": out of range 0-59");
    assert_bad("0 24 * * *", "field 2 (hour)");
    assert_bad("0 0 0 * *", "field 3 (day of month)");
    assert_bad("0 0 * 13 *", "field 4 (month)");
    assert_bad("0 0 * * 8", "field 5 (day of week)");
    assert_bad("0 0 * FOO *", "expected a number or a name");
    assert_bad("*/0 * * * *", "step");
    assert_bad("5-1 * * * *", "backwards");
    assert_bad("1,,2 * * * *", "empty list item");
    assert_bad("1- * * * *", "a range needs an end");
    assert_bad("1x * * * *", "unexpected characters");
    assert_bad("0 0 * * MONDAY", "expected a number or a name");
    assert_bad("@reboot", "unknown macro");
    assert_bad("0 0 30 2 *", "never matches");
    assert_bad("0 0 31 4,6,9,11 *", "never matches");
}

Test(cron, both_day_fields_restricted_means_either)
{
    mongoq__cron_t c = cron("0 0 13 * FRI");
    cr_assert(mongoq__cron_day_matches(&c, 6, 13, 2), "the 13th, a Tuesday");
    cr_assert(mongoq__cron_day_matches(&c, 6, 14, 5), "a Friday");
    cr_assert_not(mongoq__cron_day_matches(&c, 6, 14, 4));
    c = cron("0 0 */2 * FRI"); /* a field starting with '*' leaves the other in charge: both */
    cr_assert(mongoq__cron_day_matches(&c, 6, 13, 5));
    cr_assert_not(mongoq__cron_day_matches(&c, 6, 13, 4));
    cr_assert_not(mongoq__cron_day_matches(&c, 6, 14, 5));
    c = cron("0 0 30 2 MON"); /* Feb 30 never comes, Mondays in February do */
    cr_assert(mongoq__cron_day_matches(&c, 2, 5, 1));
    assert_next("0 0 13 * FRI", "UTC", "2024-09-01T00:00", "2024-09-06T00:00");
    assert_next("0 0 13 * FRI", "UTC", "2024-09-07T00:00", "2024-09-13T00:00");
}

Test(cron, next_in_utc)
{
    assert_next("0 8 * * MON", "UTC", "2024-01-01T00:00", "2024-01-01T08:00");
    assert_next("0 8 * * MON", "UTC", "2024-01-01T08:00", "2024-01-08T08:00");
    assert_next("* * * * *", "UTC", "2024-01-01T08:00", "2024-01-01T08:01");
    assert_next("0 0 29 2 *", "UTC", "2023-03-01T00:00", "2024-02-29T00:00");
    assert_next("@yearly", "Etc/UTC", "2024-06-01T00:00", "2025-01-01T00:00");
    assert_next("59 23 31 12 *", "UTC", "1999-12-31T23:59", "2000-12-31T23:59");
}

Test(cron, slot_within_the_minute_is_not_repeated)
{
    mongoq__cron_t c = cron("* * * * *");
    mongoq__tz_t *tz = zone("UTC");
    int64_t slot;
    cr_assert(mongoq__cron_next(&c, tz, iso("2024-01-01T08:00") + 59999, &slot));
    cr_assert_eq(slot, iso("2024-01-01T08:01"));
    cr_assert(mongoq__cron_next(&c, tz, iso("2024-01-01T08:00") - 1, &slot));
    cr_assert_eq(slot, iso("2024-01-01T08:00"));
    cr_assert_not(mongoq__cron_next(&c, tz, MONGOQ__SLOT_MAX_MS, &slot), "past the last slot");
    mongoq__tz_destroy(tz);
}

/* Berlin: 2024-03-31 02:00 CET -> 03:00 CEST (01:00 UTC); 2024-10-27 03:00 CEST -> 02:00 CET. */
Test(cron, berlin_spring_gap_runs_at_the_first_instant_after_it)
{
    assert_next("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00", "2024-03-31T01:00");
    assert_next("30 2 * * *", "Europe/Berlin", "2024-03-31T01:00", "2024-04-01T00:30");
    /* hourly: 01:00 CET, then the missing 02:00 and 03:00 CEST run once, at 01:00 UTC */
    assert_next("0 * * * *", "Europe/Berlin", "2024-03-30T23:30", "2024-03-31T00:00");
    assert_next("0 * * * *", "Europe/Berlin", "2024-03-31T00:00", "2024-03-31T01:00");
    assert_next("0 * * * *", "Europe/Berlin", "2024-03-31T01:00", "2024-03-31T02:00");
    /* every 15 minutes in the gap: one run at the transition, then 03:15 CEST */
    assert_next("*/15 2 * * *", "Europe/Berlin", "2024-03-30T12:00", "2024-03-31T01:00");
    assert_next("*/15 2-3 * * *", "Europe/Berlin", "2024-03-31T01:00", "2024-03-31T01:15");
    assert_next("0 9 * * *", "Europe/Berlin", "2024-03-30T12:00", "2024-03-31T07:00");
}

Test(cron, berlin_autumn_repeat_runs_once_at_the_first)
{
    assert_next("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00", "2024-10-27T00:30");
    assert_next("30 2 * * *", "Europe/Berlin", "2024-10-27T00:30", "2024-10-28T01:30");
    assert_next("0 * * * *", "Europe/Berlin", "2024-10-26T23:30", "2024-10-27T00:00");
    assert_next("0 * * * *", "Europe/Berlin", "2024-10-27T00:00", "2024-10-27T02:00");
    /* from inside the second pass of the repeated hour: 03:00 CET is next */
    assert_next("*/10 * * * *", "Europe/Berlin", "2024-10-27T01:25", "2024-10-27T02:00");
    assert_next("0 9 * * *", "Europe/Berlin", "2024-10-26T12:00", "2024-10-27T08:00");
}

/* New York: 2024-03-10 02:00 EST -> 03:00 EDT (07:00 UTC); 2024-11-03 02:00 EDT -> 01:00 EST. */
Test(cron, new_york_gap_and_repeat)
{
    assert_next("30 2 * * *", "America/New_York", "2024-03-09T12:00", "2024-03-10T07:00");
    assert_next("30 2 * * *", "America/New_York", "2024-03-10T07:00", "2024-03-11T06:30");
    assert_next("30 1 * * *", "America/New_York", "2024-11-02T12:00", "2024-11-03T05:30");
    assert_next("30 1 * * *", "America/New_York", "2024-11-03T05:30", "2024-11-04T06:30");
    assert_next("0 8 * * MON", "America/New_York", "2024-11-01T00:00", "2024-11-04T13:00");
}

Test(cron, past_the_last_transition_the_posix_rule_decides)
{
    /* Berlin 2050: the last Sunday of March is the 27th; 02:30 does not exist */
    assert_next("30 2 * * *", "Europe/Berlin", "2050-03-26T12:00", "2050-03-27T01:00");
    assert_next("0 12 * * *", "Europe/Berlin", "2050-07-01T00:00", "2050-07-01T10:00");
    assert_next("0 12 * * *", "America/New_York", "2050-12-01T00:00", "2050-12-01T17:00");
}

Test(cron, offsets_agree_with_the_c_library)
{
    static const char *const zones[] = {
        "Europe/Berlin",     "America/New_York",  "Australia/Sydney",
        "Europe/Dublin",     "Pacific/Chatham",   "Asia/Kolkata",
        "America/Sao_Paulo", "Africa/Casablanca", "UTC"};
    for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
        mongoq__tz_t *tz = zone(zones[z]);
        setenv("TZ", zones[z], 1);
        tzset();
        uint64_t seed = 88172645463325252ULL;
        for (time_t t = 0; t < (time_t)4102444800; t += 86400 * 3) { /* 1970 .. 2100 */
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            time_t at = t + (time_t)(seed % 86400);
            struct tm tm;
            localtime_r(&at, &tm);
            int32_t got = mongoq__tz_offset_s(tz, (int64_t)at * 1000);
            cr_assert_eq(got, (int32_t)tm.tm_gmtoff, "%s at %lld: %d, libc says %ld", zones[z],
                         (long long)at, got, tm.tm_gmtoff);
        }
        mongoq__tz_destroy(tz);
    }
}

Test(cron, bad_zones_are_invalid_arguments)
{
    static const char *const bad[] = {
        "Mars/Olympus_Mons", "../../etc/passwd", "/etc/localtime", "Europe/Berlin;", "",
        "zone.tab"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bson_error_t error;
        cr_assert_null(mongoq__tz_load(bad[i], NULL, &error), "\"%s\" was accepted", bad[i]);
        cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
        cr_assert(strstr(error.message, "time zone"), "%s", error.message);
    }
    /* UTC works without the database */
    bson_error_t error;
    mongoq__tz_t *tz = mongoq__tz_load("UTC", "/nonexistent", &error);
    cr_assert(tz);
    cr_assert_eq(mongoq__tz_offset_s(tz, iso("2024-06-01T00:00")), 0);
    mongoq__tz_destroy(tz);
}

/* ---- damaged input: refused or read within bounds (run under ASan/UBSan to mean much) ----------
 */

static uint64_t
next_random(uint64_t *seed)
{
    *seed ^= *seed << 13, *seed ^= *seed >> 7, *seed ^= *seed << 17;
    return *seed;
}

/* A zone that parsed from damaged bytes still answers every instant within +-26 h. */
static void
assert_sane_zone(mongoq__tz_t *tz, uint64_t *seed)
{
    mongoq__cron_t every5 = cron("*/5 * * * *");
    for (int i = 0; i < 8; i++) {
        int64_t at = (int64_t)(next_random(seed) % (uint64_t)MONGOQ__SLOT_MAX_MS);
        int32_t off = mongoq__tz_offset_s(tz, at);
        cr_assert(off >= -26 * 3600 && off <= 26 * 3600, "offset %d at %lld", off, (long long)at);
        int64_t slot = -1;
        if (mongoq__cron_next(&every5, tz, at, &slot)) {
            cr_assert_gt(slot, at);
        }
    }
}

Test(cron, damaged_tzif_files_are_refused_or_read_within_bounds)
{
    FILE *f = fopen("/usr/share/zoneinfo/Europe/Berlin", "rb");
    cr_assert(f, "no tz database");
    static uint8_t good[MAX_FILE_BYTES];
    size_t len = fread(good, 1, sizeof good, f);
    fclose(f);
    cr_assert_gt(len, 44);
    uint8_t *data = bson_malloc(len);
    uint64_t seed = 0x9E3779B97F4A7C15ULL;
    int parsed = 0;
    for (int round = 0; round < 20000; round++) {
        size_t n = len;
        memcpy(data, good, len);
        switch (next_random(&seed) % 4) {
        case 0: /* a few random bytes */
            for (int k = 1 + (int)(next_random(&seed) % 8); k > 0; k--) {
                data[next_random(&seed) % len] = (uint8_t)next_random(&seed);
            }
            break;
        case 1: /* cut short */
            n = (size_t)(next_random(&seed) % len);
            break;
        case 2: /* a count of the first or second header made up */
        {
            size_t second = 44 + 5 * 1 + 6 * 1; /* anywhere near; the byte may miss a header */
            size_t at = (next_random(&seed) % 2 ? 20 : second) + 4 * (next_random(&seed) % 6);
            uint32_t v = (uint32_t)next_random(&seed) >> (next_random(&seed) % 32);
            for (int b = 0; b < 4 && at + (size_t)b < len; b++) {
                data[at + (size_t)b] = (uint8_t)(v >> (24 - 8 * b));
            }
            break;
        }
        default: /* the footer's text */
            for (int k = 1 + (int)(next_random(&seed) % 4); k > 0; k--) {
                size_t tail = 1 + (size_t)(next_random(&seed) % 40);
                data[len - BSON_MIN(tail, len)] =
                    (uint8_t) " ,./:<>+-0123456789MJCESTA\n"[next_random(&seed) % 27];
            }
        }
        /* The bytes in a buffer of their own size, so a read past them is ASan's to see. */
        uint8_t *exact = bson_malloc(n ? n : 1);
        memcpy(exact, data, n);
        mongoq__tz_t *tz = bson_malloc0(sizeof *tz);
        if (parse_tzif(exact, n, tz)) {
            parsed++;
            assert_sane_zone(tz, &seed);
        }
        mongoq__tz_destroy(tz);
        bson_free(exact);
    }
    bson_free(data);
    cr_log_info("damaged Berlin files: %d of 20000 still parsed", parsed);
}

/* Appends to buf (of size 128) the printf-formatted text. */
static void append(char *buf, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

static void
append(char *buf, const char *fmt, ...)
{
    va_list ap;
    size_t used = strlen(buf);
    va_start(ap, fmt);
    vsnprintf(buf + used, 128 - used, fmt, ap);
    va_end(ap);
}

/* A POSIX TZ string made of plausible parts with numbers in and out of range. */
static void
random_footer(uint64_t *seed, char *buf)
{
    static const char *const names[] = {"CET", "<+0330>", "EST", "AB", "<-03>", "<x", ""};
    static const char *const kinds[] = {"M", "J", "", "M1", "Q"};
    buf[0] = '\0';
    append(buf, "%s%s%d", names[next_random(seed) % 7], next_random(seed) % 3 ? "" : "-",
           (int)(next_random(seed) % 30));
    if (next_random(seed) % 2) {
        append(buf, ":%d", (int)(next_random(seed) % 70));
    }
    if (next_random(seed) % 4 == 0) {
        return;
    }
    append(buf, "%s", names[next_random(seed) % 7]);
    if (next_random(seed) % 3 == 0) {
        append(buf, "%d", (int)(next_random(seed) % 30) - 5);
    }
    for (int r = 0; r < 2 && next_random(seed) % 8; r++) {
        append(buf, ",%s%d", kinds[next_random(seed) % 5], (int)(next_random(seed) % 400));
        if (next_random(seed) % 2) {
            append(buf, ".%d.%d", (int)(next_random(seed) % 7), (int)(next_random(seed) % 8));
        }
        if (next_random(seed) % 2) {
            append(buf, "/%s%d", next_random(seed) % 4 ? "" : "-", (int)(next_random(seed) % 200));
        }
    }
}

/* A cron expression made of plausible items with values in and out of range. */
static void
random_expression(uint64_t *seed, char *buf)
{
    static const char *const names[] = {"JAN", "dec", "MON", "sun", "Fri", "XYZ"};
    buf[0] = '\0';
    if (next_random(seed) % 20 == 0) {
        append(buf, "%s",
               (const char *[]){"@daily", "@hourly", "@weekly", "@bogus"}[next_random(seed) % 4]);
        return;
    }
    int n_fields = 5 + (next_random(seed) % 10 == 0 ? (int)(next_random(seed) % 3) - 1 : 0);
    for (int f = 0; f < n_fields; f++) {
        int items = 1 + (int)(next_random(seed) % 3);
        append(buf, "%s", f ? (next_random(seed) % 5 ? " " : " \t ") : "");
        for (int i = 0; i < items; i++) {
            int lo = (int)(next_random(seed) % 64), hi = (int)(next_random(seed) % 64);
            append(buf, "%s", i ? "," : "");
            switch (next_random(seed) % 6) {
            case 0:
                append(buf, "*");
                break;
            case 1:
                append(buf, "%d", lo);
                break;
            case 2:
                append(buf, "%d-%d", lo, hi);
                break;
            case 3:
                append(buf, "%s", names[next_random(seed) % 6]);
                break;
            case 4:
                append(buf, "%s-%s", names[next_random(seed) % 6], names[next_random(seed) % 6]);
                break;
            default:
                append(buf, "%d/", lo);
                break;
            }
            if (next_random(seed) % 3 == 0) {
                append(buf, "/%d", (int)(next_random(seed) % 70));
            }
        }
    }
}

/* Overwrites one character with a random one, now and then. */
static void
maybe_mutate(uint64_t *seed, char *buf)
{
    size_t n = strlen(buf);
    if (n && next_random(seed) % 4 == 0) {
        buf[next_random(seed) % n] = " ,-/*:<>.0123456789MJ@"[next_random(seed) % 22];
    }
}

Test(cron, random_posix_footers_and_expressions_are_refused_or_sane)
{
    uint64_t seed = 0xD1B54A32D192ED03ULL;
    int footers = 0, crons = 0, slots = 0;
    mongoq__tz_t *utc = zone("UTC"), *berlin = zone("Europe/Berlin");
    for (int round = 0; round < 20000; round++) {
        char text[128];
        posix_tz_t p;
        random_footer(&seed, text);
        maybe_mutate(&seed, text);
        if (parse_posix(text, &p)) {
            footers++;
            int64_t t = (int64_t)(next_random(&seed) % 4102444800ULL);
            int32_t off = posix_offset(&p, t);
            cr_assert(off >= -26 * 3600 && off <= 26 * 3600, "\"%s\": %d", text, off);
        }
        mongoq__cron_t c;
        random_expression(&seed, text);
        maybe_mutate(&seed, text);
        if (!mongoq__cron_parse(text, &c, NULL)) {
            continue;
        }
        crons++;
        int64_t after = (int64_t)(next_random(&seed) % 4102444800ULL) * 1000, slot = -1;
        if (mongoq__cron_next(&c, round % 2 ? utc : berlin, after, &slot)) {
            slots++;
            cr_assert_gt(slot, after, "\"%s\"", text);
            cr_assert_eq(slot % 60000, 0, "\"%s\"", text);
        }
    }
    mongoq__tz_destroy(berlin);
    mongoq__tz_destroy(utc);
    cr_log_info("random text: %d footers and %d expressions parsed, %d slots", footers, crons,
                slots);
}

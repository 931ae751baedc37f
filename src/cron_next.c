/*
 * The next slot of a cron expression in a time zone (cron-private.h).
 *
 * Wall-clock times W (whole minutes, written as milliseconds "as if UTC") are tried in order
 * from just after the wall-clock time of `after`; each matching W is mapped to the instant it
 * runs at, r(W):
 *  - W occurs once: that instant;
 *  - W occurs twice (DST ends, the clock goes back): the first occurrence, so a time in the
 *    repeated hour runs once;
 *  - W does not occur (DST starts, the clock jumps forward): the first instant after the gap,
 *    i.e. the transition itself; every matching W in one gap maps to that instant, so they run
 *    once together (and with a matching W right after the gap, which maps there too).
 * r is non-decreasing in W, and no W at or before the wall-clock time of `after` maps past it,
 * so the first matching W with r(W) > after gives the earliest slot.
 */
#include "cron-private.h"

#define MS_PER_MINUTE ((int64_t)60000)
#define MS_PER_HOUR ((int64_t)3600000)
#define MS_PER_DAY ((int64_t)86400000)
/* Offsets differ from UTC by at most 26 h: every instant of W lies within this of W. */
#define SEARCH_MS (26 * MS_PER_HOUR)
/* How far ahead a slot is looked for: every day pattern (Feb 29 on a weekday...) recurs. */
#define SEARCH_DAYS (366 * 9)

static int64_t
floor_div(int64_t a, int64_t b)
{
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}

/* Howard Hinnant's days_from_civil: days since 1970-01-01. */
int64_t
mongoq__days_from_civil(int64_t year, int month, int day)
{
    year -= month <= 2;
    int64_t era = floor_div(year, 400);
    int64_t yoe = year - era * 400;
    int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void
mongoq__civil_from_days(int64_t days, int64_t *year, int *month, int *day)
{
    days += 719468;
    int64_t era = floor_div(days, 146097);
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

static int64_t
offset_ms(const mongoq__tz_t *tz, int64_t utc_ms)
{
    return (int64_t)mongoq__tz_offset_s(tz, utc_ms) * 1000;
}

/* The instant wall-clock time w runs at (see the top of the file). */
static int64_t
run_instant(const mongoq__tz_t *tz, int64_t w)
{
    int64_t offs[3] = {offset_ms(tz, w - SEARCH_MS), offset_ms(tz, w), offset_ms(tz, w + SEARCH_MS)};
    int64_t best = INT64_MAX, lo = INT64_MAX, hi = INT64_MIN;
    for (int i = 0; i < 3; i++) {
        int64_t u = w - offs[i];
        if (offset_ms(tz, u) == offs[i] && u < best) {
            best = u; /* w occurs at u; the earliest is its first occurrence */
        }
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    if (best != INT64_MAX) {
        return best;
    }
    /* A gap: the transition lies in (lo, hi]; find its first instant. */
    int64_t before = offset_ms(tz, lo);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (offset_ms(tz, mid) == before) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return hi;
}

/* The first matching minute of one day with r(W) > after_ms, into *slot_ms. */
static bool
next_in_day(const mongoq__cron_t *cron, const mongoq__tz_t *tz, int64_t day, int64_t local_after,
            int64_t after_ms, int64_t *slot_ms)
{
    int64_t midnight = day * MS_PER_DAY;
    for (int h = 0; h < 24; h++) {
        if (!(cron->hours >> h & 1) || midnight + (h + 1) * MS_PER_HOUR <= local_after) {
            continue;
        }
        for (int m = 0; m < 60; m++) {
            int64_t w = midnight + h * MS_PER_HOUR + m * MS_PER_MINUTE;
            if (!(cron->minutes >> m & 1) || w <= local_after) {
                continue;
            }
            int64_t r = run_instant(tz, w);
            if (r > after_ms) {
                *slot_ms = r;
                return true;
            }
        }
    }
    return false;
}

bool
mongoq__cron_next(const mongoq__cron_t *cron, const mongoq__tz_t *tz, int64_t after_ms,
                  int64_t *slot_ms)
{
    if (after_ms >= MONGOQ__SLOT_MAX_MS || after_ms < -MONGOQ__SLOT_MAX_MS) {
        return false;
    }
    int64_t local_after = after_ms + offset_ms(tz, after_ms);
    int64_t first = floor_div(local_after, MS_PER_DAY);
    for (int64_t day = first; day <= first + SEARCH_DAYS; day++) {
        int64_t year;
        int month, dom;
        mongoq__civil_from_days(day, &year, &month, &dom);
        int dow = (int)(((day + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
        if (mongoq__cron_day_matches(cron, month, dom, dow) &&
            next_in_day(cron, tz, day, local_after, after_ms, slot_ms)) {
            return *slot_ms < MONGOQ__SLOT_MAX_MS;
        }
    }
    return false;
}

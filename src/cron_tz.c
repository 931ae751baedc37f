/*
 * Time zones from the tz database, read without the C library's process-wide TZ state
 * (setenv("TZ") + tzset + localtime_r is not thread-safe, and a library must not change its
 * host's environment). A zone is its TZif file (RFC 8536) under /usr/share/zoneinfo ($TZDIR):
 * the list of transitions with the UTC offset after each, and, in version 2+ files, a POSIX TZ
 * string ("CET-1CEST,M3.5.0,M10.5.0/3") for instants after the last transition, which this file
 * evaluates too. Leap seconds ("right/" zones) are ignored: slots are POSIX times.
 */
#include "cron-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error-private.h"

#define MAX_FILE_BYTES (1024 * 1024)

/* One rule of a POSIX TZ string: when DST starts or ends. */
typedef struct {
    char kind;    /* 'M' month.week.day, 'J' Julian day 1-365 (no Feb 29), 'D' day 0-365 */
    int month;    /* 'M' */
    int week;     /* 'M': 1-5, 5 = last */
    int day;      /* 'M': weekday 0-6; 'J', 'D': the day */
    int32_t time; /* seconds after local midnight (may be negative or past 24 h) */
} rule_t;

typedef struct {
    int32_t std_off; /* seconds east of UTC */
    int32_t dst_off;
    bool has_dst;
    rule_t start, end;
} posix_tz_t;

struct mongoq__tz_t {
    char *name;
    int64_t *times;   /* transition instants, seconds, ascending */
    uint8_t *types;   /* the local time type after each transition */
    size_t n_times;
    int32_t *offsets; /* UTC offset of each type, seconds */
    size_t n_types;
    bool has_footer;
    posix_tz_t footer;
};

/* ---- POSIX TZ strings --------------------------------------------------------------------- */

static bool
parse_num(const char **p, int max, int *out)
{
    const char *s = *p;
    int v = 0;
    if (*s < '0' || *s > '9') {
        return false;
    }
    while (*s >= '0' && *s <= '9' && v <= max) {
        v = v * 10 + (*s++ - '0');
    }
    *p = s;
    *out = v;
    return v <= max;
}

/* [+-]hh[:mm[:ss]] in seconds. */
static bool
parse_time(const char **p, int max_hours, int32_t *out)
{
    int sign = 1, h = 0, m = 0, s = 0;
    if (**p == '+' || **p == '-') {
        sign = **p == '-' ? -1 : 1;
        (*p)++;
    }
    if (!parse_num(p, max_hours, &h)) {
        return false;
    }
    if (**p == ':' && (++*p, !parse_num(p, 59, &m))) {
        return false;
    }
    if (**p == ':' && (++*p, !parse_num(p, 59, &s))) {
        return false;
    }
    *out = sign * (h * 3600 + m * 60 + s);
    return true;
}

static bool
skip_name(const char **p)
{
    const char *s = *p;
    if (*s == '<') {
        const char *close = strchr(s, '>');
        *p = close ? close + 1 : s;
        return close != NULL;
    }
    while ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')) {
        s++;
    }
    bool ok = s - *p >= 3;
    *p = s;
    return ok;
}

static bool
parse_rule(const char **p, rule_t *r)
{
    r->time = 7200;
    if (**p == 'M') {
        (*p)++;
        r->kind = 'M';
        if (!parse_num(p, 12, &r->month) || *(*p)++ != '.' || !parse_num(p, 5, &r->week) ||
            *(*p)++ != '.' || !parse_num(p, 6, &r->day) || r->month < 1 || r->week < 1) {
            return false;
        }
    } else {
        r->kind = **p == 'J' ? 'J' : 'D';
        *p += r->kind == 'J';
        if (!parse_num(p, 365, &r->day) || (r->kind == 'J' && r->day < 1)) {
            return false;
        }
    }
    return **p != '/' || (++*p, parse_time(p, 167, &r->time));
}

/* A POSIX TZ string as a TZif footer has it. */
static bool
parse_posix(const char *s, posix_tz_t *tz)
{
    int32_t off;
    memset(tz, 0, sizeof *tz);
    if (!skip_name(&s) || !parse_time(&s, 24, &off)) {
        return false;
    }
    tz->std_off = -off;
    if (!*s) {
        return true;
    }
    if (!skip_name(&s)) {
        return false;
    }
    tz->has_dst = true;
    tz->dst_off = tz->std_off + 3600;
    if (*s && *s != ',') {
        if (!parse_time(&s, 24, &off)) {
            return false;
        }
        tz->dst_off = -off;
    }
    if (!*s) { /* no rules: the POSIX default, the US rules */
        tz->start = (rule_t){'M', 3, 2, 0, 7200};
        tz->end = (rule_t){'M', 11, 1, 0, 7200};
        return true;
    }
    return *s++ == ',' && parse_rule(&s, &tz->start) && *s++ == ',' &&
           parse_rule(&s, &tz->end) && !*s;
}

static bool
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* The local time (seconds since the epoch, as if UTC) at which rule r takes effect in year y. */
static int64_t
rule_local_s(const rule_t *r, int64_t y)
{
    int64_t day;
    if (r->kind == 'J') {
        day = mongoq__days_from_civil(y, 1, 1) + r->day - 1 + (is_leap(y) && r->day >= 60);
    } else if (r->kind == 'D') {
        day = mongoq__days_from_civil(y, 1, 1) + r->day;
    } else {
        int64_t first = mongoq__days_from_civil(y, r->month, 1);
        int64_t next = r->month == 12 ? mongoq__days_from_civil(y + 1, 1, 1)
                                      : mongoq__days_from_civil(y, r->month + 1, 1);
        int dow = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday */
        day = first + (r->day - dow + 7) % 7 + (int64_t)(r->week - 1) * 7;
        while (day >= next) {
            day -= 7;
        }
    }
    return day * 86400 + r->time;
}

static int32_t
posix_offset(const posix_tz_t *tz, int64_t t)
{
    if (!tz->has_dst) {
        return tz->std_off;
    }
    int64_t y;
    int month, mday;
    int64_t local = t + tz->std_off;
    mongoq__civil_from_days(local >= 0 ? local / 86400 : (local - 86399) / 86400, &y, &month,
                            &mday);
    int64_t start = rule_local_s(&tz->start, y) - tz->std_off;
    int64_t end = rule_local_s(&tz->end, y) - tz->dst_off;
    bool dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
    return dst ? tz->dst_off : tz->std_off;
}

/* ---- TZif files --------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t left;
} reader_t;

static bool
take(reader_t *r, size_t n, const uint8_t **out)
{
    if (r->left < n) {
        return false;
    }
    *out = r->p;
    r->p += n;
    r->left -= n;
    return true;
}

static int64_t
be(const uint8_t *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v = v << 8 | p[i];
    }
    /* sign-extend */
    if (bytes < 8 && (v >> (bytes * 8 - 1) & 1)) {
        v |= ~(uint64_t)0 << (bytes * 8);
    }
    return (int64_t)v;
}

/* A header: version and the six counts (isut, isstd, leap, time, type, char). */
static bool
read_header(reader_t *r, char *version, uint32_t counts[6])
{
    const uint8_t *h;
    if (!take(r, 44, &h) || memcmp(h, "TZif", 4) != 0) {
        return false;
    }
    *version = (char)h[4];
    for (int i = 0; i < 6; i++) {
        counts[i] = (uint32_t)be(h + 20 + 4 * i, 4) & 0xffffffffu;
    }
    return counts[4] > 0 && counts[3] < 100000 && counts[4] < 256;
}

/* The data block of a header with times of `tb` bytes (4: v1, 8: v2+) into tz. */
static bool
read_block(reader_t *r, const uint32_t c[6], int tb, mongoq__tz_t *tz)
{
    const uint8_t *times, *idx, *types, *rest;
    if (!take(r, (size_t)c[3] * tb, &times) || !take(r, c[3], &idx) ||
        !take(r, (size_t)c[4] * 6, &types) ||
        !take(r, (size_t)c[5] + (size_t)c[2] * (tb + 4) + c[1] + c[0], &rest)) {
        return false;
    }
    tz->n_times = c[3];
    tz->n_types = c[4];
    tz->times = bson_malloc0((c[3] + 1) * sizeof *tz->times);
    tz->types = bson_malloc0(c[3] + 1);
    tz->offsets = bson_malloc0(c[4] * sizeof *tz->offsets);
    for (uint32_t i = 0; i < c[3]; i++) {
        tz->times[i] = be(times + (size_t)i * tb, tb);
        tz->types[i] = idx[i];
        if (idx[i] >= c[4] || (i > 0 && tz->times[i] <= tz->times[i - 1])) {
            return false;
        }
    }
    for (uint32_t i = 0; i < c[4]; i++) {
        tz->offsets[i] = (int32_t)be(types + 6 * i, 4);
        if (tz->offsets[i] < -25 * 3600 || tz->offsets[i] > 26 * 3600) {
            return false;
        }
    }
    return true;
}

static bool
parse_tzif(const uint8_t *data, size_t len, mongoq__tz_t *tz)
{
    reader_t r = {data, len};
    char version;
    uint32_t c[6];
    if (!read_header(&r, &version, c)) {
        return false;
    }
    if (version == '\0') {
        return read_block(&r, c, 4, tz);
    }
    const uint8_t *skip;
    if (!take(&r, (size_t)c[3] * 5 + (size_t)c[4] * 6 + c[5] + (size_t)c[2] * 8 + c[1] + c[0],
              &skip) ||
        !read_header(&r, &version, c) || !read_block(&r, c, 8, tz)) {
        return false;
    }
    /* The footer: "\n<POSIX TZ>\n"; an empty one means none. */
    if (r.left >= 2 && r.p[0] == '\n') {
        const uint8_t *nl = memchr(r.p + 1, '\n', r.left - 1);
        size_t n = nl ? (size_t)(nl - r.p - 1) : 0;
        if (n > 0 && n < 128) {
            char footer[128];
            memcpy(footer, r.p + 1, n);
            footer[n] = '\0';
            tz->has_footer = parse_posix(footer, &tz->footer);
            return tz->has_footer;
        }
    }
    return true;
}

/* ---- loading -------------------------------------------------------------------------------- */

/* A name a tz database path may be made of: no absolute path, no "..", plain characters. */
static bool
valid_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > MONGOQ__TZ_MAX_NAME_BYTES || name[0] == '/' || strstr(name, "..")) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '/' || ch == '_' || ch == '-' || ch == '+' || ch == '.')) {
            return false;
        }
    }
    return true;
}

static bool
is_builtin_utc(const char *name)
{
    static const char *const utc[] = {"UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z", NULL};
    for (int i = 0; utc[i]; i++) {
        if (strcmp(name, utc[i]) == 0) {
            return true;
        }
    }
    return false;
}

static uint8_t *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        return NULL;
    }
    uint8_t *buf = bson_malloc(MAX_FILE_BYTES);
    *len = fread(buf, 1, MAX_FILE_BYTES, f);
    fclose(f);
    return buf;
}

mongoq__tz_t *
mongoq__tz_load(const char *name, const char *zoneinfo_dir, bson_error_t *error)
{
    if (!name || !valid_name(name)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "time zone \"%.60s\": not a zone name (e.g. \"UTC\", \"Europe/Berlin\")",
                          name ? name : "(null)");
        return NULL;
    }
    mongoq__tz_t *tz = bson_malloc0(sizeof *tz);
    tz->name = bson_strdup(name);
    const char *dir = zoneinfo_dir ? zoneinfo_dir : getenv("TZDIR");
    char *path = bson_strdup_printf("%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    size_t len = 0;
    uint8_t *data = read_file(path, &len);
    bool ok = data && len < MAX_FILE_BYTES && parse_tzif(data, len, tz);
    if (!data && is_builtin_utc(name)) {
        tz->n_types = 1;
        tz->offsets = bson_malloc0(sizeof *tz->offsets);
        ok = true;
    }
    if (!ok) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          data ? "time zone \"%s\": %s is not a valid TZif file"
                               : "time zone \"%s\": unknown (no %s in the tz database)",
                          name, path);
        mongoq__tz_destroy(tz);
        tz = NULL;
    }
    bson_free(data);
    bson_free(path);
    return tz;
}

void
mongoq__tz_destroy(mongoq__tz_t *tz)
{
    if (tz) {
        bson_free(tz->name);
        bson_free(tz->times);
        bson_free(tz->types);
        bson_free(tz->offsets);
        bson_free(tz);
    }
}

const char *
mongoq__tz_name(const mongoq__tz_t *tz)
{
    return tz->name;
}

int32_t
mongoq__tz_offset_s(const mongoq__tz_t *tz, int64_t utc_ms)
{
    int64_t t = utc_ms >= 0 ? utc_ms / 1000 : (utc_ms - 999) / 1000;
    if (tz->n_times == 0 || t >= tz->times[tz->n_times - 1]) {
        if (tz->has_footer) {
            return posix_offset(&tz->footer, t);
        }
        return tz->n_times ? tz->offsets[tz->types[tz->n_times - 1]] : tz->offsets[0];
    }
    if (t < tz->times[0]) {
        return tz->offsets[0];
    }
    size_t lo = 0, hi = tz->n_times - 1; /* times[lo] <= t < times[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->times[mid] <= t) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return tz->offsets[tz->types[lo]];
}

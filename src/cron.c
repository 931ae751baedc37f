/*
 * Cron expressions (cron-private.h): five fields, "minute hour day-of-month month day-of-week",
 * each a comma-separated list of items: "*", a value, a range "a-b", any of those with a step
 * "/n" ("*" + "/15" = every 15th, "10-40/10" = 10, 20, 30, 40), or "a/n" (from a to the field's
 * end, as cronie reads it). Months take JAN-DEC, days of week SUN-SAT (0 or 7 is Sunday), in
 * any case, also in ranges. The macros @yearly (@annually), @monthly, @weekly, @daily
 * (@midnight) and @hourly stand for the usual five fields.
 *
 * Day of month and day of week: when both are restricted, a day matching either runs (Vixie
 * cron's rule: "0 9 1 * MON" is the 1st of every month and every Monday); when either field
 * starts with '*' (including "*" + "/2"), both must match, so "*" leaves the other in charge.
 */
#include "cron-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "error-private.h"

typedef struct {
    const char *what; /* "minute" ... for messages */
    int min;
    int max;
    const char *const *names; /* names[i] is the value min + i (NULL: none) */
} field_t;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                          "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const dow_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

static const field_t fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day of month", 1, 31, NULL},
    {"month", 1, 12, month_names},
    {"day of week", 0, 7, dow_names},
};

/* The macros: one row each. */
static const struct {
    const char *name;
    const char *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static bool
field_error(bson_error_t *error, int index, const char *text, size_t len, const char *why)
{
    mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG, "cron: field %d (%s) \"%.*s\": %s",
                      index + 1, fields[index].what, (int)(len > 40 ? 40 : len), text, why);
    return false;
}

/* A value at *p (digits or a name) into *value; advances *p. */
static bool
parse_value(const field_t *f, const char **p, const char *end, int *value)
{
    const char *s = *p;
    if (s < end && s[0] >= '0' && s[0] <= '9') {
        long v = 0;
        while (s < end && *s >= '0' && *s <= '9' && v < 1000) {
            v = v * 10 + (*s++ - '0');
        }
        *value = (int)v;
        *p = s;
        return true;
    }
    for (int i = 0; f->names && f->names[i]; i++) {
        if (end - s >= 3 && strncasecmp(s, f->names[i], 3) == 0 &&
            (end - s == 3 || !((s[3] | 0x20) >= 'a' && (s[3] | 0x20) <= 'z'))) {
            *value = f->min + i;
            *p = s + 3;
            return true;
        }
    }
    return false;
}

/* One item ("*", "a", "a-b", each with an optional "/n") into *bits. */
static bool
parse_item(int index, const char *s, const char *end, uint64_t *bits, bson_error_t *error)
{
    const field_t *f = &fields[index];
    const char *p = s;
    int lo = f->min, hi = f->max, step = 1;
    bool range = false;
    if (p < end && *p == '*') {
        p++;
        range = true;
        if (index == 4) {
            hi = 6; /* "*" is Sunday to Saturday once */
        }
    } else {
        if (!parse_value(f, &p, end, &lo)) {
            return field_error(error, index, s, (size_t)(end - s), "expected a number or a name");
        }
        hi = lo;
        if (p < end && *p == '-') {
            p++;
            range = true;
            if (!parse_value(f, &p, end, &hi)) {
                return field_error(error, index, s, (size_t)(end - s), "a range needs an end");
            }
        }
    }
    if (p < end && *p == '/') {
        p++;
        if (!parse_value(&fields[0], &p, end, &step) || step < 1) {
            return field_error(error, index, s, (size_t)(end - s), "a step must be 1 or more");
        }
        if (!range) {
            hi = index == 4 ? 6 : f->max; /* "a/n": from a to the field's end */
        }
    }
    if (p != end) {
        return field_error(error, index, s, (size_t)(end - s), "unexpected characters");
    }
    if (lo < f->min || hi > f->max || lo > f->max || hi < f->min) {
        char why[64];
        bson_snprintf(why, sizeof why, "out of range %d-%d", f->min, f->max);
        return field_error(error, index, s, (size_t)(end - s), why);
    }
    if (lo > hi) {
        return field_error(error, index, s, (size_t)(end - s), "a range must not run backwards");
    }
    for (int v = lo; v <= hi; v += step) {
        *bits |= (uint64_t)1 << (index == 4 && v == 7 ? 0 : v);
    }
    return true;
}

/* One field (comma-separated items) into *bits; *star when it starts with '*'. */
static bool
parse_field(int index, const char *s, const char *end, uint64_t *bits, bool *star,
            bson_error_t *error)
{
    *bits = 0;
    *star = s < end && *s == '*';
    while (s <= end) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *item_end = comma ? comma : end;
        if (item_end == s) {
            return field_error(error, index, s, 0, "an empty list item");
        }
        if (!parse_item(index, s, item_end, bits, error)) {
            return false;
        }
        s = item_end + 1;
    }
    return true;
}

static int
days_in_month_max(int month)
{
    static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return days[month - 1];
}

/* A restricted day of month that no chosen month has (and no weekday to rescue it). */
static bool
can_match(const mongoq__cron_t *cron)
{
    if (!cron->dow_star && !cron->dom_star) {
        return true; /* either field: some weekday always comes */
    }
    if (!cron->dows) {
        return false;
    }
    for (int m = 1; m <= 12; m++) {
        if ((cron->months >> m & 1) && (cron->doms & (((uint32_t)2 << days_in_month_max(m)) - 2))) {
            return true;
        }
    }
    return false;
}

static const char *
expand_macro(const char *expr, bson_error_t *error)
{
    for (size_t i = 0; i < sizeof macros / sizeof macros[0]; i++) {
        if (strcasecmp(expr, macros[i].name) == 0) {
            return macros[i].expr;
        }
    }
    mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                      "cron: unknown macro \"%.40s\" (@yearly, @annually, @monthly, @weekly, "
                      "@daily, @midnight, @hourly)",
                      expr);
    return NULL;
}

/* Splits expr at blanks into exactly five fields. */
static bool
split_fields(const char *expr, const char *starts[5], const char *ends[5], bson_error_t *error)
{
    int n = 0;
    const char *p = expr;
    for (;;) {
        while (*p == ' ' || *p == '\t') {
            p++;
        }
        if (!*p) {
            break;
        }
        const char *s = p;
        while (*p && *p != ' ' && *p != '\t') {
            p++;
        }
        if (n < 5) {
            starts[n] = s;
            ends[n] = p;
        }
        n++;
    }
    if (n != 5) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "cron: \"%.60s\" has %d fields; expected 5 (minute hour day-of-month "
                          "month day-of-week) or a macro such as @daily",
                          expr, n);
        return false;
    }
    return true;
}

bool
mongoq__cron_parse(const char *expr, mongoq__cron_t *cron, bson_error_t *error)
{
    const char *starts[5], *ends[5];
    uint64_t bits[5];
    bool stars[5];
    memset(cron, 0, sizeof *cron);
    if (!expr || !*expr || strlen(expr) > MONGOQ__CRON_MAX_BYTES) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "cron: the expression must be 1 to %d bytes", MONGOQ__CRON_MAX_BYTES);
        return false;
    }
    if (expr[0] == '@' && !(expr = expand_macro(expr, error))) {
        return false;
    }
    if (!split_fields(expr, starts, ends, error)) {
        return false;
    }
    for (int i = 0; i < 5; i++) {
        if (!parse_field(i, starts[i], ends[i], &bits[i], &stars[i], error)) {
            return false;
        }
    }
    cron->minutes = bits[0];
    cron->hours = (uint32_t)bits[1];
    cron->doms = (uint32_t)bits[2];
    cron->months = (uint16_t)bits[3];
    cron->dows = (uint8_t)bits[4];
    cron->dom_star = stars[2];
    cron->dow_star = stars[4];
    if (!can_match(cron)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "cron: \"%.60s\" never matches: no chosen month has the chosen days",
                          expr);
        return false;
    }
    return true;
}

bool
mongoq__cron_day_matches(const mongoq__cron_t *cron, int month, int dom, int dow)
{
    if (!(cron->months >> month & 1)) {
        return false;
    }
    bool dom_ok = cron->doms >> dom & 1, dow_ok = cron->dows >> dow & 1;
    if (cron->dom_star || cron->dow_star) {
        return dom_ok && dow_ok;
    }
    return dom_ok || dow_ok;
}

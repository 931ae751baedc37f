/* The Prometheus exposition checker (promcheck.h). */
#include "promcheck.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FAMILIES 256
#define NAME_MAX_LEN 200

typedef struct {
    char name[NAME_MAX_LEN];
    char type[64];
    bool seen_samples, closed;
    /* histogram state, per label set (the labels other than le): one at a time */
    char series[512];
    double last_le, last_bucket, inf_bucket;
    bool has_inf, has_sum, has_count;
    bool open; /* a histogram series is being read */
} family_t;

typedef struct {
    family_t fam[MAX_FAMILIES];
    int n, current;
    char *why;
    size_t why_size;
    int line;
} state_t;

static bool
fail(state_t *s, const char *what, const char *detail)
{
    snprintf(s->why, s->why_size, "line %d: %s%s%s", s->line, what, detail ? ": " : "",
             detail ? detail : "");
    return false;
}

static bool
name_ok(const char *p, size_t len, bool label)
{
    if (len == 0 || len >= NAME_MAX_LEN) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        bool ok = isalpha((unsigned char)c) || c == '_' || (!label && c == ':') ||
                  (i > 0 && isdigit((unsigned char)c));
        if (!ok) {
            return false;
        }
    }
    return true;
}

static family_t *
find(state_t *s, const char *name)
{
    for (int i = 0; i < s->n; i++) {
        if (strcmp(s->fam[i].name, name) == 0) {
            return &s->fam[i];
        }
    }
    return NULL;
}

static family_t *
add(state_t *s, const char *name)
{
    if (s->n == MAX_FAMILIES) {
        return NULL;
    }
    family_t *f = &s->fam[s->n++];
    memset(f, 0, sizeof *f);
    size_t len = strlen(name);
    len = len < sizeof f->name ? len : sizeof f->name - 1;
    memcpy(f->name, name, len);
    return f;
}

/* The family a sample name belongs to (histogram suffixes stripped when the base is one). */
static family_t *
family_of(state_t *s, const char *sample, const char **suffix)
{
    static const char *const parts[] = {"_bucket", "_sum", "_count"};
    *suffix = "";
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(sample), k = strlen(parts[i]);
        if (n > k && strcmp(sample + n - k, parts[i]) == 0) {
            char base[NAME_MAX_LEN];
            snprintf(base, sizeof base, "%.*s", (int)(n - k), sample);
            family_t *f = find(s, base);
            if (f && strcmp(f->type, "histogram") == 0) {
                *suffix = parts[i];
                return f;
            }
        }
    }
    family_t *f = find(s, sample);
    return f ? f : add(s, sample);
}

static bool
comment(state_t *s, const char *l)
{
    char kind[8], name[NAME_MAX_LEN], rest[64];
    if (sscanf(l, "# %7s %199s %63s", kind, name, rest) < 2 ||
        (strcmp(kind, "HELP") != 0 && strcmp(kind, "TYPE") != 0)) {
        return true; /* another comment */
    }
    if (!name_ok(name, strlen(name), false)) {
        return fail(s, "bad metric name", name);
    }
    family_t *f = find(s, name);
    if (strcmp(kind, "TYPE") == 0) {
        static const char *const types[] = {"counter", "gauge", "histogram", "summary", "untyped"};
        bool known = false;
        for (size_t i = 0; i < 5; i++) {
            known = known || strcmp(rest, types[i]) == 0;
        }
        if (!known) {
            return fail(s, "unknown type", rest);
        }
        if (f && (f->type[0] || f->seen_samples)) {
            return fail(s, "TYPE after samples or twice", name);
        }
        f = f ? f : add(s, name);
        snprintf(f->type, sizeof f->type, "%s", rest);
    } else if (!f) {
        add(s, name);
    }
    return true;
}

/* Parses {a="x",b="y"} at *p; copies the labels other than le into series, le into le. */
static bool
labels(state_t *s, const char **p, char *series, size_t size, char *le, size_t le_size)
{
    const char *c = *p + 1;
    size_t used = 0;
    le[0] = series[0] = '\0';
    while (*c != '}') {
        const char *start = c;
        while (isalnum((unsigned char)*c) || *c == '_') {
            c++;
        }
        if (!name_ok(start, (size_t)(c - start), true) || c[0] != '=' || c[1] != '"') {
            return fail(s, "bad label", start);
        }
        bool is_le = c - start == 2 && strncmp(start, "le", 2) == 0;
        char value[256];
        size_t v = 0;
        for (c += 2; *c != '"'; c++) {
            if (*c == '\0' || *c == '\n') {
                return fail(s, "unterminated label value", NULL);
            }
            if (*c == '\\') {
                c++;
                if (*c != '\\' && *c != '"' && *c != 'n') {
                    return fail(s, "bad escape in a label value", NULL);
                }
            }
            if (v + 1 < sizeof value) {
                value[v++] = *c;
            }
        }
        value[v] = '\0';
        c++;
        if (is_le) {
            snprintf(le, le_size, "%s", value);
        } else {
            used += (size_t)snprintf(series + used, used < size ? size - used : 0, "%.*s=%s,",
                                     (int)(strchr(start, '=') - start), start, value);
        }
        if (*c == ',') {
            c++;
        } else if (*c != '}') {
            return fail(s, "expected , or } in labels", NULL);
        }
    }
    *p = c + 1;
    return true;
}

static bool
parse_value(const char *text, double *out)
{
    char *end;
    if (strcmp(text, "+Inf") == 0 || strcmp(text, "-Inf") == 0 || strcmp(text, "NaN") == 0) {
        *out = strcmp(text, "NaN") == 0 ? NAN : text[0] == '+' ? INFINITY : -INFINITY;
        return true;
    }
    *out = strtod(text, &end);
    return end != text && (*end == '\0' || *end == ' ');
}

/* Closes the histogram series of f being read: its +Inf, _sum and _count must be there. */
static bool
close_series(state_t *s, family_t *f)
{
    if (strcmp(f->type, "histogram") == 0 && f->open &&
        (!f->has_inf || !f->has_sum || !f->has_count)) {
        return fail(s, "histogram series without +Inf bucket, _sum or _count", f->name);
    }
    return true;
}

static bool
histogram_sample(state_t *s, family_t *f, const char *suffix, const char *series, const char *le,
                 double value)
{
    if (!f->open || strcmp(series, f->series) != 0) {
        if (!close_series(s, f)) {
            return false;
        }
        snprintf(f->series, sizeof f->series, "%s", series);
        f->last_le = -INFINITY;
        f->last_bucket = 0;
        f->has_inf = f->has_sum = f->has_count = false;
        f->open = true;
    }
    if (value < 0) {
        return fail(s, "negative histogram value", f->name);
    }
    if (strcmp(suffix, "_bucket") == 0) {
        double bound;
        if (!le[0] || !parse_value(le, &bound)) {
            return fail(s, "bucket without a numeric le", f->name);
        }
        if (bound <= f->last_le || value < f->last_bucket || f->has_inf) {
            return fail(s, "buckets out of order or not cumulative", f->name);
        }
        f->last_le = bound;
        f->last_bucket = value;
        f->has_inf = isinf(bound) && bound > 0;
        f->inf_bucket = value;
    } else if (strcmp(suffix, "_count") == 0) {
        if (!f->has_inf || value != f->inf_bucket) {
            return fail(s, "_count differs from the +Inf bucket", f->name);
        }
        f->has_count = true;
    } else if (strcmp(suffix, "_sum") == 0) {
        f->has_sum = true;
    } else {
        return fail(s, "a histogram sample without _bucket, _sum or _count", f->name);
    }
    return true;
}

static bool
sample(state_t *s, const char *l)
{
    const char *p = l;
    while (isalnum((unsigned char)*p) || *p == '_' || *p == ':') {
        p++;
    }
    char name[NAME_MAX_LEN], series[512] = "", le[256] = "";
    if (!name_ok(l, (size_t)(p - l), false)) {
        return fail(s, "bad sample name", l);
    }
    snprintf(name, sizeof name, "%.*s", (int)(p - l), l);
    if (*p == '{' && !labels(s, &p, series, sizeof series, le, sizeof le)) {
        return false;
    }
    double value;
    if (*p != ' ' || !parse_value(p + 1, &value)) {
        return fail(s, "bad value", l);
    }
    const char *suffix;
    family_t *f = family_of(s, name, &suffix);
    if (!f) {
        return fail(s, "too many metrics", NULL);
    }
    int index = (int)(f - s->fam);
    if (f->closed || (s->current >= 0 && s->current != index && f->seen_samples)) {
        return fail(s, "the samples of a metric are not contiguous", f->name);
    }
    if (s->current >= 0 && s->current != index) {
        if (!close_series(s, &s->fam[s->current])) {
            return false;
        }
        s->fam[s->current].closed = true;
    }
    s->current = index;
    f->seen_samples = true;
    if (strcmp(f->type, "counter") == 0 && value < 0) {
        return fail(s, "negative counter", f->name);
    }
    if (strcmp(f->type, "histogram") == 0) {
        return histogram_sample(s, f, suffix, series, le, value);
    }
    return true;
}

bool
promcheck(const char *text, char *why, size_t why_size)
{
    state_t *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(why, why_size, "out of memory");
        return false;
    }
    s->why = why;
    s->why_size = why_size;
    s->current = -1;
    bool ok = true;
    const char *l = text;
    while (ok && *l) {
        const char *end = strchr(l, '\n');
        if (!end) {
            s->line++;
            ok = fail(s, "the text does not end with a newline", NULL);
            break;
        }
        char line[4096];
        snprintf(line, sizeof line, "%.*s", (int)(end - l), l);
        s->line++;
        if (line[0] == '#') {
            ok = comment(s, line);
        } else if (line[0] != '\0') {
            ok = sample(s, line);
        }
        l = end + 1;
    }
    if (ok && s->current >= 0) {
        ok = close_series(s, &s->fam[s->current]);
    }
    if (ok && why_size > 0) {
        why[0] = '\0';
    }
    free(s);
    return ok;
}

/*
 * Walking an index within its bounds as mongod's IndexScan does (src/mongo/db/exec/
 * index_scan.cpp), with its IndexBoundsChecker (src/mongo/db/query/index_bounds.cpp):
 *   - bounds that are one interval (points, then at most one range, then [MinKey, MaxKey]
 *     fields: IndexBoundsBuilder::isSingleInterval) are a start key and an end key: the cursor
 *     seeks to the start and stops at the end without returning the key past it;
 *   - any other bounds go through the checker: each key the cursor returns is VALID (inside
 *     every field's current interval), MUST_ADVANCE (the scan seeks to the next key that could
 *     be inside: the start of the next interval, or past every key with the same prefix when a
 *     later field has left its last interval) or DONE.
 * keysExamined counts every key the cursor returned, the one that made the scan seek or stop
 * included; seeks counts the first positioning and each MUST_ADVANCE. So a scan over
 * {status: "ready", priority: [MaxKey, MinKey], run_at: [.., T]} reads the due keys of each
 * priority plus one key per priority, not the keys with run_at > T.
 *
 * COUNT_SCAN (src/mongo/db/exec/count_scan.cpp) walks one interval forward and counts one key
 * more than it finds: the cursor's final "no more" is counted too.
 */
#include "query-private.h"

#include <string.h>

typedef enum { BEHIND, WITHIN, AHEAD } location_t;
typedef enum { KEY_VALID, KEY_MUST_ADVANCE, KEY_DONE } key_state_t;

/* Where the checker sends the scan: a prefix of the current key, then interval starts. */
typedef struct {
    size_t prefix_len;
    bool prefix_exclusive;
    bson_value_t vals[MS_QUERY_MAX_FIELDS];
    bool inc[MS_QUERY_MAX_FIELDS];
} seek_point_t;

typedef struct {
    const ms_bounds_t *b;
    size_t n;
    int dir[MS_QUERY_MAX_FIELDS]; /* +1 when the scan meets the field's values ascending */
    size_t cur[MS_QUERY_MAX_FIELDS];
} checker_t;

static int
sgn(int x)
{
    return (x > 0) - (x < 0);
}

static location_t
interval_cmp(const ms_interval_t *iv, const bson_value_t *key, int dir)
{
    int c = sgn(ms_value_cmp(key, &iv->start));
    if (!(c == dir || (c == 0 && iv->start_inc))) {
        return BEHIND;
    }
    c = sgn(ms_value_cmp(key, &iv->end));
    if (!(c == -dir || (c == 0 && iv->end_inc))) {
        return AHEAD;
    }
    return WITHIN;
}

/* findIntervalForField: the first interval the key is not ahead of (binary search). */
static location_t
find_interval(const ms_oil_t *o, const bson_value_t *key, int dir, size_t *idx)
{
    size_t lo = 0, hi = o->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (interval_cmp(&o->iv[mid], key, dir) == AHEAD) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == o->n) {
        return AHEAD;
    }
    *idx = lo;
    return interval_cmp(&o->iv[lo], key, dir);
}

static bool
leftmost_problem(const checker_t *ck, const bson_value_t *keys, size_t *where, location_t *what)
{
    for (size_t i = 0; i < ck->n; i++) {
        location_t l = interval_cmp(&ck->b->f[i].iv[ck->cur[i]], &keys[i], ck->dir[i]);
        if (l != WITHIN) {
            *where = i;
            *what = l;
            return true;
        }
    }
    return false;
}

/* spaceLeftToAdvance: whether a field left of `fields` can still move to a later value. */
static bool
space_left(const checker_t *ck, size_t fields, const bson_value_t *keys)
{
    for (size_t i = 0; i < fields; i++) {
        const ms_oil_t *o = &ck->b->f[i];
        if (ck->cur[i] != o->n - 1) {
            return true;
        }
        const ms_interval_t *iv = &o->iv[ck->cur[i]];
        if (!iv->end_inc || -ck->dir[i] == sgn(ms_value_cmp(&keys[i], &iv->end))) {
            return true;
        }
    }
    return false;
}

/* The seek to the current intervals' starts from field `from` on, after the key's prefix. */
static key_state_t
advance_to_starts(const checker_t *ck, const bson_value_t *keys, size_t from, seek_point_t *sp)
{
    sp->prefix_len = from;
    sp->prefix_exclusive = false;
    memcpy(sp->vals, keys, sizeof *keys * from);
    for (size_t j = from; j < ck->n; j++) {
        sp->vals[j] = ck->b->f[j].iv[ck->cur[j]].start;
        sp->inc[j] = ck->b->f[j].iv[ck->cur[j]].start_inc;
    }
    return KEY_MUST_ADVANCE;
}

/* IndexBoundsChecker::checkKey. */
static key_state_t
check_key(checker_t *ck, const bson_value_t *keys, seek_point_t *sp)
{
    size_t f;
    location_t where;
    if (!leftmost_problem(ck, keys, &f, &where)) {
        return KEY_VALID;
    }
    if (where == BEHIND) {
        for (size_t i = f; i < ck->n; i++) {
            ck->cur[i] = 0;
        }
        if (!leftmost_problem(ck, keys, &f, &where)) {
            return KEY_VALID;
        }
        if (where == BEHIND) {
            return advance_to_starts(ck, keys, f, sp);
        }
    }
    while (f < ck->n) {
        size_t idx = 0;
        location_t l = find_interval(&ck->b->f[f], &keys[f], ck->dir[f], &idx);
        if (l == WITHIN) {
            ck->cur[f] = idx;
            f++;
        } else if (l == BEHIND) {
            ck->cur[f] = idx;
            for (size_t i = f + 1; i < ck->n; i++) {
                ck->cur[i] = 0;
            }
            return advance_to_starts(ck, keys, f, sp);
        } else {
            if (!space_left(ck, f, keys)) {
                return KEY_DONE;
            }
            sp->prefix_len = f;
            sp->prefix_exclusive = true;
            memcpy(sp->vals, keys, sizeof *keys * f);
            for (size_t i = f; i < ck->n; i++) {
                ck->cur[i] = 0;
            }
            return KEY_MUST_ADVANCE;
        }
    }
    return KEY_VALID;
}

/* ---- the cursor ---------------------------------------------------------------------------- */

/*
 * The first entry at or past the seek point in the scan's direction
 * (IndexEntryComparison::makeKeyStringFromSeekPointForSeek): fields up to the first exclusive
 * start compared; exclusive means past every key that begins with them.
 */
static ms_ientry_t *
seek(const ms_index_t *ix, const seek_point_t *sp, size_t n, bool backward)
{
    size_t m = n;
    bool exclusive = false;
    if (sp->prefix_exclusive) {
        m = sp->prefix_len;
        exclusive = true;
    } else {
        for (size_t i = sp->prefix_len; i < n; i++) {
            if (!sp->inc[i]) {
                m = i + 1;
                exclusive = true;
                break;
            }
        }
    }
    if (!backward) {
        return ms_index_seek(ix, sp->vals, m, exclusive);
    }
    ms_ientry_t *after = ms_index_seek(ix, sp->vals, m, !exclusive);
    return after ? ms_ientry_next(after, true) : ms_index_last(ix);
}

/* a against b on n fields, in the order the scan meets them. */
static int
scan_cmp(const ms_scan_t *s, const bson_value_t *a, const bson_value_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int c = ms_value_cmp(&a[i], &b[i]);
        if (c) {
            return (s->ix->dirs[i] < 0) != s->backward ? -c : c;
        }
    }
    return 0;
}

static void
checker_init(checker_t *ck, const ms_scan_t *s)
{
    memset(ck, 0, sizeof *ck);
    ck->b = &s->bounds;
    ck->n = s->bounds.nfields;
    for (size_t i = 0; i < ck->n; i++) {
        ck->dir[i] = (s->ix->dirs[i] < 0) != s->backward ? -1 : 1;
    }
}

/* The scan's first entry: the start key, or the checker's start seek point. */
static ms_ientry_t *
first_entry(const ms_scan_t *s, const bson_value_t *start, bool start_inc)
{
    seek_point_t sp;
    size_t n = s->bounds.nfields;
    memset(&sp, 0, sizeof sp);
    for (size_t i = 0; i < n; i++) {
        if (s->single) {
            sp.vals[i] = start[i];
            sp.inc[i] = i + 1 < n || start_inc;
        } else if (s->bounds.f[i].n == 0) {
            return NULL; /* getStartSeekPoint: an empty field means no key */
        } else {
            sp.vals[i] = s->bounds.f[i].iv[0].start;
            sp.inc[i] = s->bounds.f[i].iv[0].start_inc;
        }
    }
    return seek(s->ix, &sp, n, s->backward);
}

/* Whether e lies past the single interval's end key (the cursor's end position). */
static bool
past_end(const ms_scan_t *s, const ms_ientry_t *e, const bson_value_t *end, bool end_inc)
{
    int c = scan_cmp(s, ms_ientry_keys(e), end, s->bounds.nfields);
    return c > 0 || (c == 0 && !end_inc);
}

struct ms_ixcursor_t {
    ms_scan_t *s;
    checker_t ck;
    seek_point_t sp;
    bson_value_t start[MS_QUERY_MAX_FIELDS], end[MS_QUERY_MAX_FIELDS];
    bool start_inc, end_inc;
    ms_ientry_t *e;
    size_t guard; /* every step examines an entry past the last one: at most each entry once */
};

ms_ixcursor_t *
ms__ixcursor_new(ms_scan_t *s)
{
    ms_ixcursor_t *c = bson_malloc0(sizeof *c);
    c->s = s;
    c->start_inc = c->end_inc = true;
    if (s->single) {
        ms__bounds_single(&s->bounds, c->start, &c->start_inc, c->end, &c->end_inc);
    }
    checker_init(&c->ck, s);
    s->seeks = 1;
    c->e = first_entry(s, c->start, c->start_inc);
    c->guard = s->ix->len + 1;
    s->eof = false;
    return c;
}

void
ms__ixcursor_destroy(ms_ixcursor_t *c)
{
    bson_free(c);
}

ms_rec_t *
ms__ixcursor_next(ms_ixcursor_t *c)
{
    ms_scan_t *s = c->s;
    size_t n = s->bounds.nfields;
    for (; c->e && c->guard > 0; c->guard--) {
        ms_ientry_t *e = c->e;
        if (s->single && past_end(s, e, c->end, c->end_inc)) {
            break;
        }
        s->keys++;
        key_state_t st = s->single ? KEY_VALID : check_key(&c->ck, ms_ientry_keys(e), &c->sp);
        if (st == KEY_DONE) {
            s->done_on_key = true;
            break;
        }
        if (st == KEY_MUST_ADVANCE) {
            s->need_time++;
            s->seeks++;
            ms_ientry_t *to = seek(s->ix, &c->sp, n, s->backward);
            if (to && scan_cmp(s, ms_ientry_keys(to), ms_ientry_keys(e), n) <= 0) {
                to = ms_ientry_next(e, s->backward); /* never back: the checker's seeks go on */
            }
            c->e = to;
            continue;
        }
        s->advanced++;
        c->e = ms_ientry_next(e, s->backward);
        c->guard--;
        return ms_ientry_rec(e);
    }
    c->e = NULL;
    s->eof = true;
    return NULL;
}

bool
ms__ixscan_run(ms_scan_t *s, ms_rec_sink_t sink, void *ctx)
{
    ms_ixcursor_t *c = ms__ixcursor_new(s);
    bool go_on = true;
    while (go_on) { /* bounded by the cursor: each entry at most once */
        ms_rec_t *rec = ms__ixcursor_next(c);
        if (!rec) {
            break;
        }
        go_on = sink(ctx, rec, s);
    }
    ms__ixcursor_destroy(c);
    return go_on;
}

bool
ms__count_scan_run(ms_scan_t *s, ms_rec_sink_t sink, void *ctx)
{
    bson_value_t start[MS_QUERY_MAX_FIELDS], end[MS_QUERY_MAX_FIELDS];
    bool start_inc = true, end_inc = true;
    ms__bounds_single(&s->bounds, start, &start_inc, end, &end_inc);
    ms_ientry_t *e = first_entry(s, start, start_inc);
    for (size_t guard = s->ix->len + 1; guard > 0; guard--) {
        s->keys++;
        if (!e || past_end(s, e, end, end_inc)) {
            s->eof = true;
            return true;
        }
        s->advanced++;
        if (!sink(ctx, ms_ientry_rec(e), s)) {
            return false;
        }
        e = ms_ientry_next(e, false);
    }
    s->eof = true;
    return true;
}

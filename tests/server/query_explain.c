/*
 * explain's description of a plan query.c chose and query_scan.c ran, in the shapes of mongod
 * 6.0's classic engine (src/mongo/db/query/plan_explainer_impl.cpp, statsToBSON): from the top,
 * UPDATE or DELETE (a write's), COUNT (the count command's), SUBPLAN (a rooted $or), LIMIT,
 * PROJECTION_SIMPLE / PROJECTION_DEFAULT / PROJECTION_COVERED, a FETCH without filter, SKIP,
 * SORT (over a FETCH, or over index keys), then the access: COLLSCAN, IXSCAN (under a FETCH
 * with the predicates its bounds leave), COUNT_SCAN, IDHACK, or an OR of index scans.
 *
 * With executionStats every stage carries nReturned, works, advanced, needTime, isEOF and its
 * own counters (keysExamined, seeks, docsExamined, ...). works and needTime follow each classic
 * stage's doWork (a key or document per work, a NEED_TIME for a seek or a rejected document, a
 * work for the end) from the counters the run kept.
 */
#include "query-private.h"

#include <string.h>

/* The stages, top to bottom; a plan has some of them. */
typedef enum {
    L_WRITE,
    L_COUNT,
    L_SUBPLAN,
    L_LIMIT,
    L_PROJ,
    L_LATE_FETCH,
    L_SKIP,
    L_SORT,
    L_SORT_FETCH,
    L_ACCESS,
    L_END
} level_t;

typedef struct {
    int64_t works, advanced, need_time;
    bool eof;
} common_t;

typedef struct {
    const ms_qplan_t *p;
    const ms_write_stage_t *w;
    bool exec;
} ctx_t;

/* BSONObjBuilder::appendNumber(long long): an int when it fits in 30 bits. */
static void
append_num(bson_t *b, const char *key, int64_t n)
{
    if (n > -(1LL << 30) && n < (1LL << 30)) {
        BSON_APPEND_INT32(b, key, (int32_t)n);
    } else {
        BSON_APPEND_INT64(b, key, n);
    }
}

/* A rooted $or of two or more branches is planned branch by branch under a SUBPLAN stage, also
 * when its branches on one field make one IXSCAN of their union. */
static bool
subplan(const ms_qplan_t *p)
{
    bson_iter_t it, b;
    uint32_t n = 0;
    if (!p->filter || bson_count_keys(p->filter) != 1 ||
        !bson_iter_init_find(&it, p->filter, "$or") || !bson_iter_recurse(&it, &b)) {
        return false;
    }
    if (p->access == MS_ACCESS_OR ? !p->or_rooted
                                  : p->access != MS_ACCESS_IXSCAN ||
                                        !ms__or_one_path(bson_iter_value(&it))) {
        return false;
    }
    while (bson_iter_next(&b)) {
        n++;
    }
    return n >= 2;
}

static bool
present(const ctx_t *c, level_t l)
{
    const ms_qplan_t *p = c->p;
    bool count = p->mode == MS_QUERY_COUNT;
    switch (l) {
    case L_WRITE:
        return c->w != NULL;
    case L_COUNT:
        return count && p->access != MS_ACCESS_FAST_COUNT;
    case L_SUBPLAN:
        return subplan(p);
    case L_LIMIT:
        return !count && !p->sort_stage && p->limit > 0 && !p->write_stops;
    case L_PROJ:
        return p->proj != MS_PROJ_NONE;
    case L_LATE_FETCH:
        return p->late_fetch;
    case L_SKIP:
        return !count && p->skip > 0;
    case L_SORT:
        return p->sort_stage;
    case L_SORT_FETCH:
        return p->fetch_before_sort;
    default:
        return true;
    }
}

static level_t
below(const ctx_t *c, level_t l)
{
    level_t n = (level_t)(l + 1);
    while (n < L_ACCESS && !present(c, n)) {
        n = (level_t)(n + 1);
    }
    return n;
}

/* ---- counters ------------------------------------------------------------------------------- */

static common_t
ixscan_common(const ms_scan_t *s)
{
    common_t c = {0, s->advanced, s->need_time, s->eof};
    c.works = s->advanced + s->need_time + (s->eof ? 1 : 0);
    return c;
}

/* The IXSCAN, or the FETCH with its filter above it. */
static common_t
scan_top_common(const ms_scan_t *s)
{
    common_t c = ixscan_common(s);
    if (s->info.exact) {
        return c;
    }
    c.need_time += s->fetch_docs - s->fetch_advanced;
    c.advanced = s->fetch_advanced;
    return c;
}

static common_t
or_common(const ms_qplan_t *p)
{
    common_t c = {0, p->or_tested - p->or_dropped, 0, p->access_eof};
    for (size_t i = 0; i < p->nbranches; i++) {
        c.works += scan_top_common(&p->branches[i]).works;
    }
    c.need_time = c.works - c.advanced - (c.eof ? 1 : 0);
    return c;
}

static common_t
merge_common(const ms_qplan_t *p)
{
    common_t c = {1, p->merge_out, 0, p->access_eof};
    for (size_t i = 0; i < p->nbranches; i++) {
        c.works += ixscan_common(&p->branches[i]).works;
    }
    c.need_time = c.works - c.advanced - (c.eof ? 1 : 0);
    return c;
}

static common_t
access_common(const ms_qplan_t *p)
{
    common_t c = {0, 0, 0, p->access_eof};
    switch (p->access) {
    case MS_ACCESS_COLLSCAN:
        c.works = p->coll_docs + (c.eof ? 1 : 0);
        c.advanced = p->coll_advanced;
        c.need_time = p->coll_docs - p->coll_advanced;
        return c;
    case MS_ACCESS_IDHACK:
        c.advanced = p->id_docs;
        c.works = c.advanced + 1;
        return c;
    case MS_ACCESS_FAST_COUNT:
        c.works = 1;
        c.eof = true;
        return c;
    case MS_ACCESS_IXSCAN:
        return scan_top_common(&p->scan);
    case MS_ACCESS_COUNT_SCAN:
        c.works = p->scan.keys;
        c.advanced = p->scan.advanced;
        c.eof = p->scan.eof;
        return c;
    case MS_ACCESS_SORT_MERGE:
        c = merge_common(p);
        if (!p->scan.info.exact) {
            c.need_time += c.advanced - p->merge_fetch_advanced;
            c.advanced = p->merge_fetch_advanced;
        }
        return c;
    case MS_ACCESS_OR:
        c = or_common(p);
        if (p->or_fetch) {
            c.need_time += c.advanced - p->or_advanced;
            c.advanced = p->or_advanced;
        }
        return c;
    default:
        c.works = 1;
        return c;
    }
}

static common_t level_common(const ctx_t *c, level_t l);

static common_t
write_common(const ctx_t *c, common_t in)
{
    common_t out = {in.works, c->w->returned, 0, in.eof};
    if (!in.eof && c->p->write_stops && c->w->matched > 0) {
        out.eof = true;
    }
    out.need_time = out.works - out.advanced - (in.eof ? 1 : 0);
    if (out.need_time < 0) {
        out.need_time = 0;
    }
    return out;
}

static common_t
level_common(const ctx_t *c, level_t l)
{
    const ms_qplan_t *p = c->p;
    if (l >= L_ACCESS) {
        return access_common(p);
    }
    common_t in = level_common(c, below(c, l)), out = in;
    switch (l) {
    case L_WRITE:
        return write_common(c, in);
    case L_COUNT:
        out.works = in.works + (p->limit_reached ? 1 : 0);
        out.advanced = 0;
        out.need_time = in.works - (in.eof ? 1 : 0);
        out.eof = true;
        return out;
    case L_LIMIT:
        out.works = in.works + (p->limit_reached ? 1 : 0);
        out.advanced = p->out;
        out.eof = p->limit_reached || in.eof;
        return out;
    case L_SKIP:
        out.advanced = in.advanced - p->skipped;
        out.need_time = in.need_time + p->skipped;
        return out;
    case L_SORT:
        out.works = in.works + p->sort_out + 1;
        out.advanced = p->sort_out;
        out.need_time = in.works;
        out.eof = true;
        return out;
    default: /* SUBPLAN, PROJECTION, FETCH: one work of theirs per work of their input */
        return out;
    }
}

/* ---- stages -------------------------------------------------------------------------------- */

static void
open_stage(const ctx_t *c, bson_t *parent, const char *key, const char *stage,
           const bson_t *filter, const common_t *cm, bson_t *child)
{
    bson_append_document_begin(parent, key, -1, child);
    BSON_APPEND_UTF8(child, "stage", stage);
    if (filter && !bson_empty(filter)) {
        BSON_APPEND_DOCUMENT(child, "filter", filter);
    }
    if (c->exec) {
        append_num(child, "nReturned", cm->advanced);
        append_num(child, "executionTimeMillisEstimate", 0);
        append_num(child, "works", cm->works);
        append_num(child, "advanced", cm->advanced);
        append_num(child, "needTime", cm->need_time);
        append_num(child, "needYield", 0);
        append_num(child, "saveState", 0);
        append_num(child, "restoreState", 0);
        append_num(child, "isEOF", cm->eof ? 1 : 0);
    }
}

static int32_t
index_version(const ms_index_t *ix)
{
    bson_iter_t it;
    return ix->spec && bson_iter_init_find(&it, ix->spec, "v") && BSON_ITER_HOLDS_NUMBER(&it)
               ? (int32_t)bson_iter_as_int64(&it)
               : 2;
}

/* keyPattern ... indexVersion, as IXSCAN and COUNT_SCAN show their index. */
static void
append_index(bson_t *st, const ms_index_t *ix)
{
    bson_t paths, none;
    BSON_APPEND_DOCUMENT(st, "keyPattern", ix->key);
    BSON_APPEND_UTF8(st, "indexName", ix->name);
    BSON_APPEND_BOOL(st, "isMultiKey", ix->multikey);
    BSON_APPEND_DOCUMENT_BEGIN(st, "multiKeyPaths", &paths);
    for (size_t i = 0; i < ix->nfields; i++) {
        bson_append_array_begin(&paths, ix->paths[i], -1, &none);
        bson_append_array_end(&paths, &none);
    }
    bson_append_document_end(st, &paths);
    BSON_APPEND_BOOL(st, "isUnique", ix->unique);
    BSON_APPEND_BOOL(st, "isSparse", ix->sparse);
    BSON_APPEND_BOOL(st, "isPartial", ix->partial != NULL);
    BSON_APPEND_INT32(st, "indexVersion", index_version(ix));
}

static void
emit_ixscan(const ctx_t *c, const ms_scan_t *s, bson_t *parent, const char *key)
{
    bson_t st;
    common_t cm = ixscan_common(s);
    open_stage(c, parent, key, "IXSCAN", NULL, &cm, &st);
    append_index(&st, s->ix);
    BSON_APPEND_UTF8(&st, "direction", s->backward ? "backward" : "forward");
    ms__bounds_append(&s->bounds, s->ix, &st, "indexBounds");
    if (c->exec) {
        append_num(&st, "keysExamined", s->keys);
        append_num(&st, "seeks", s->seeks);
        append_num(&st, "dupsTested", 0);
        append_num(&st, "dupsDropped", 0);
    }
    bson_append_document_end(parent, &st);
}

/* FETCH with the filter the bounds leave over the IXSCAN, or the IXSCAN alone. */
static void
emit_scan(const ctx_t *c, const ms_scan_t *s, bson_t *parent, const char *key)
{
    bson_t st;
    if (s->info.exact) {
        emit_ixscan(c, s, parent, key);
        return;
    }
    common_t cm = scan_top_common(s);
    open_stage(c, parent, key, "FETCH", s->residual, &cm, &st);
    if (c->exec) {
        append_num(&st, "docsExamined", s->fetch_docs);
        append_num(&st, "alreadyHasObj", 0);
    }
    emit_ixscan(c, s, &st, "inputStage");
    bson_append_document_end(parent, &st);
}

static void
emit_count_scan(const ctx_t *c, const ms_scan_t *s, bson_t *parent, const char *key)
{
    bson_value_t start[MS_QUERY_MAX_FIELDS], end[MS_QUERY_MAX_FIELDS];
    bool start_inc = true, end_inc = true;
    bson_t st, b;
    common_t cm = access_common(c->p);
    ms__bounds_single(&s->bounds, start, &start_inc, end, &end_inc);
    open_stage(c, parent, key, "COUNT_SCAN", NULL, &cm, &st);
    if (c->exec) {
        append_num(&st, "keysExamined", s->keys);
    }
    append_index(&st, s->ix);
    BSON_APPEND_DOCUMENT_BEGIN(&st, "indexBounds", &b);
    ms__key_append(s->ix, start, &b, "startKey");
    BSON_APPEND_BOOL(&b, "startKeyInclusive", start_inc);
    ms__key_append(s->ix, end, &b, "endKey");
    BSON_APPEND_BOOL(&b, "endKeyInclusive", end_inc);
    bson_append_document_end(&st, &b);
    bson_append_document_end(parent, &st);
}

static void
emit_or(const ctx_t *c, bson_t *parent, const char *key)
{
    const ms_qplan_t *p = c->p;
    bson_t st, inputs;
    common_t cm = or_common(p);
    open_stage(c, parent, key, "OR", NULL, &cm, &st);
    if (c->exec) {
        append_num(&st, "dupsTested", p->or_tested);
        append_num(&st, "dupsDropped", p->or_dropped);
    }
    BSON_APPEND_ARRAY_BEGIN(&st, "inputStages", &inputs);
    for (size_t i = 0; i < p->nbranches; i++) {
        char idx[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
        emit_scan(c, &p->branches[i], &inputs, k);
    }
    bson_append_array_end(&st, &inputs);
    bson_append_document_end(parent, &st);
}

static void
emit_merge(const ctx_t *c, bson_t *parent, const char *key)
{
    const ms_qplan_t *p = c->p;
    bson_t st, inputs;
    common_t cm = merge_common(p);
    open_stage(c, parent, key, "SORT_MERGE", NULL, &cm, &st);
    BSON_APPEND_DOCUMENT(&st, "sortPattern", p->sort);
    if (c->exec) {
        append_num(&st, "dupsTested", 0);
        append_num(&st, "dupsDropped", 0);
    }
    BSON_APPEND_ARRAY_BEGIN(&st, "inputStages", &inputs);
    for (size_t i = 0; i < p->nbranches; i++) {
        char idx[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
        emit_ixscan(c, &p->branches[i], &inputs, k);
    }
    bson_append_array_end(&st, &inputs);
    bson_append_document_end(parent, &st);
}

static void
emit_access(const ctx_t *c, bson_t *parent, const char *key)
{
    const ms_qplan_t *p = c->p;
    bson_t st, normalized;
    common_t cm = access_common(p);
    switch (p->access) {
    case MS_ACCESS_IXSCAN:
        emit_scan(c, &p->scan, parent, key);
        return;
    case MS_ACCESS_COUNT_SCAN:
        emit_count_scan(c, &p->scan, parent, key);
        return;
    case MS_ACCESS_SORT_MERGE:
        if (p->scan.info.exact) {
            emit_merge(c, parent, key);
            return;
        }
        open_stage(c, parent, key, "FETCH", p->scan.residual, &cm, &st);
        if (c->exec) {
            append_num(&st, "docsExamined", p->merge_fetch_docs);
            append_num(&st, "alreadyHasObj", 0);
        }
        emit_merge(c, &st, "inputStage");
        break;
    case MS_ACCESS_OR:
        if (!p->or_fetch) {
            emit_or(c, parent, key);
            return;
        }
        ms__filter_normalized(p->or_rooted ? NULL : p->filter, &normalized);
        open_stage(c, parent, key, "FETCH", &normalized, &cm, &st);
        bson_destroy(&normalized);
        if (c->exec) {
            append_num(&st, "docsExamined", p->or_fetch_docs);
            append_num(&st, "alreadyHasObj", p->or_fetch_already);
        }
        emit_or(c, &st, "inputStage");
        break;
    case MS_ACCESS_COLLSCAN:
        ms__filter_normalized(p->filter, &normalized);
        open_stage(c, parent, key, "COLLSCAN", &normalized, &cm, &st);
        bson_destroy(&normalized);
        BSON_APPEND_UTF8(&st, "direction", p->natural_backward ? "backward" : "forward");
        if (c->exec) {
            append_num(&st, "docsExamined", p->coll_docs);
        }
        break;
    case MS_ACCESS_FAST_COUNT:
        open_stage(c, parent, key, "RECORD_STORE_FAST_COUNT", NULL, &cm, &st);
        if (c->exec) {
            append_num(&st, "nCounted", p->out);
            append_num(&st, "nSkipped", p->skipped);
        }
        break;
    case MS_ACCESS_IDHACK:
        open_stage(c, parent, key, "IDHACK", NULL, &cm, &st);
        if (c->exec) {
            append_num(&st, "keysExamined", p->id_keys);
            append_num(&st, "docsExamined", p->id_docs);
        }
        break;
    default:
        open_stage(c, parent, key, "EOF", NULL, &cm, &st);
        break;
    }
    bson_append_document_end(parent, &st);
}

static const char *
level_name(const ctx_t *c, level_t l)
{
    static const char *const proj[] = {"", "PROJECTION_SIMPLE", "PROJECTION_DEFAULT",
                                       "PROJECTION_COVERED"};
    switch (l) {
    case L_WRITE:
        return c->w->stage;
    case L_COUNT:
        return "COUNT";
    case L_SUBPLAN:
        return "SUBPLAN";
    case L_LIMIT:
        return "LIMIT";
    case L_PROJ:
        return proj[c->p->proj];
    case L_SKIP:
        return "SKIP";
    case L_SORT:
        return "SORT";
    default:
        return "FETCH";
    }
}

/* The stage's own fields (statsToBSON's per-stage part). */
static void
level_fields(const ctx_t *c, level_t l, bson_t *st)
{
    const ms_qplan_t *p = c->p;
    const ms_write_stage_t *w = c->w;
    if (l == L_WRITE && c->exec && strcmp(w->stage, "DELETE") == 0) {
        append_num(st, "nWouldDelete", w->would_delete);
    } else if (l == L_WRITE && c->exec) {
        append_num(st, "nMatched", w->matched);
        append_num(st, "nWouldModify", w->would_modify);
        append_num(st, "nWouldUpsert", w->would_upsert);
    } else if (l == L_COUNT && c->exec) {
        append_num(st, "nCounted", p->out);
        append_num(st, "nSkipped", p->skipped);
    } else if (l == L_LIMIT) {
        append_num(st, "limitAmount", p->limit);
    } else if (l == L_PROJ) {
        BSON_APPEND_DOCUMENT(st, "transformBy", p->projection);
    } else if (l == L_SKIP) {
        append_num(st, "skipAmount", p->skip);
    } else if (l == L_SORT) {
        BSON_APPEND_DOCUMENT(st, "sortPattern", p->sort);
        append_num(st, "memLimit", 104857600);
        if (p->limit > 0) {
            append_num(st, "limitAmount", p->limit + p->skip);
        }
        BSON_APPEND_UTF8(st, "type", p->sort_on_keys ? "default" : "simple");
        if (c->exec) {
            append_num(st, "totalDataSizeSorted", 0);
            BSON_APPEND_BOOL(st, "usedDisk", false);
            append_num(st, "spills", 0);
        }
    } else if ((l == L_LATE_FETCH || l == L_SORT_FETCH) && c->exec) {
        append_num(st, "docsExamined", l == L_LATE_FETCH ? p->late_docs : p->sort_fetch_docs);
        append_num(st, "alreadyHasObj", 0);
    }
}

static void
emit(const ctx_t *c, level_t l, bson_t *parent, const char *key)
{
    bson_t st;
    if (l >= L_ACCESS) {
        emit_access(c, parent, key);
        return;
    }
    common_t cm = level_common(c, l);
    open_stage(c, parent, key, level_name(c, l), NULL, &cm, &st);
    level_fields(c, l, &st);
    emit(c, below(c, l), &st, "inputStage");
    bson_append_document_end(parent, &st);
}

static level_t
top(const ctx_t *c)
{
    return present(c, L_WRITE) ? L_WRITE : below(c, L_WRITE);
}

void
ms_plan_describe(const ms_plan_t *plan, const ms_write_stage_t *write, bson_t *parent,
                 const char *key)
{
    ctx_t c = {plan->detail, write, false};
    if (c.p) {
        emit(&c, top(&c), parent, key);
    }
}

void
ms_plan_exec_stats(const ms_plan_t *plan, const ms_write_stage_t *write, bool all_plans,
                   bson_t *parent)
{
    ctx_t c = {plan->detail, write, true};
    bson_t stats, none;
    if (!c.p) {
        return;
    }
    common_t root = level_common(&c, top(&c));
    BSON_APPEND_DOCUMENT_BEGIN(parent, "executionStats", &stats);
    BSON_APPEND_BOOL(&stats, "executionSuccess", true);
    append_num(&stats, "nReturned", root.advanced);
    append_num(&stats, "executionTimeMillis", 0);
    append_num(&stats, "totalKeysExamined", plan->keys_examined);
    append_num(&stats, "totalDocsExamined", plan->docs_examined);
    emit(&c, top(&c), &stats, "executionStages");
    if (all_plans) {
        BSON_APPEND_ARRAY_BEGIN(&stats, "allPlansExecution", &none);
        bson_append_array_end(&stats, &none);
    }
    bson_append_document_end(parent, &stats);
}

void
ms_plan_parsed_query(const bson_t *filter, bson_t *parent)
{
    bson_t normalized;
    ms__filter_normalized(filter, &normalized);
    BSON_APPEND_DOCUMENT(parent, "parsedQuery", &normalized);
    bson_destroy(&normalized);
}

/*
 * explain's description of a plan query.c chose and query_scan.c ran, in the shapes of mongod
 * 6.0's classic engine (src/mongo/db/query/plan_explainer_impl.cpp, statsToBSON): from the top,
 * UPDATE or DELETE (a write's), COUNT (the count command's), SUBPLAN (a rooted $or), LIMIT,
 * PROJECTION_SIMPLE / PROJECTION_DEFAULT / PROJECTION_COVERED, a FETCH without filter, SKIP,
 * SORT (over a FETCH, or over index keys), then the access (query_explain_access.c).
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

typedef ms_stage_stats_t common_t;

typedef struct {
    const ms_qplan_t *p;
    const ms_write_stage_t *w;
    bool exec;
} ctx_t;

/* BSONObjBuilder::appendNumber(long long): an int when it fits in 30 bits. */
void
ms__explain_num(bson_t *b, const char *key, int64_t n)
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
        return ms__access_stats(p);
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
        ms__explain_num(st, "nWouldDelete", w->would_delete);
    } else if (l == L_WRITE && c->exec) {
        ms__explain_num(st, "nMatched", w->matched);
        ms__explain_num(st, "nWouldModify", w->would_modify);
        ms__explain_num(st, "nWouldUpsert", w->would_upsert);
    } else if (l == L_COUNT && c->exec) {
        ms__explain_num(st, "nCounted", p->out);
        ms__explain_num(st, "nSkipped", p->skipped);
    } else if (l == L_LIMIT) {
        ms__explain_num(st, "limitAmount", p->limit);
    } else if (l == L_PROJ) {
        BSON_APPEND_DOCUMENT(st, "transformBy", p->projection);
    } else if (l == L_SKIP) {
        ms__explain_num(st, "skipAmount", p->skip);
    } else if (l == L_SORT) {
        BSON_APPEND_DOCUMENT(st, "sortPattern", p->sort);
        ms__explain_num(st, "memLimit", 104857600);
        if (p->limit > 0) {
            ms__explain_num(st, "limitAmount", p->limit + p->skip);
        }
        BSON_APPEND_UTF8(st, "type", p->sort_on_keys ? "default" : "simple");
        if (c->exec) {
            ms__explain_num(st, "totalDataSizeSorted", 0);
            BSON_APPEND_BOOL(st, "usedDisk", false);
            ms__explain_num(st, "spills", 0);
        }
    } else if ((l == L_LATE_FETCH || l == L_SORT_FETCH) && c->exec) {
        ms__explain_num(st, "docsExamined", l == L_LATE_FETCH ? p->late_docs : p->sort_fetch_docs);
        ms__explain_num(st, "alreadyHasObj", 0);
    }
}

static void
emit(const ctx_t *c, level_t l, bson_t *parent, const char *key)
{
    bson_t st;
    if (l >= L_ACCESS) {
        ms__explain_access(c->p, c->exec, parent, key);
        return;
    }
    common_t cm = level_common(c, l);
    ms__explain_open(c->exec, parent, key, level_name(c, l), NULL, &cm, &st);
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
    ms__explain_num(&stats, "nReturned", root.advanced);
    ms__explain_num(&stats, "executionTimeMillis", 0);
    ms__explain_num(&stats, "totalKeysExamined", plan->keys_examined);
    ms__explain_num(&stats, "totalDocsExamined", plan->docs_examined);
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

/*
 * explain's access stages (query_explain.c draws the stages above them): COLLSCAN; IXSCAN, under
 * a FETCH with the predicates its bounds leave; COUNT_SCAN with its start and end keys; IDHACK;
 * an OR of index scans (under a FETCH); a SORT_MERGE of the scans of a point prefix. Their
 * counters follow the classic stages' doWork (src/mongo/db/exec/index_scan.cpp, fetch.cpp,
 * count_scan.cpp, or.cpp, merge_sort.cpp, collection_scan.cpp, idhack.cpp): a key or a document
 * per work, a NEED_TIME for a seek or a rejected document, a work for the end.
 */
#include "query-private.h"

#include <string.h>

static ms_stage_stats_t
ixscan_common(const ms_scan_t *s)
{
    ms_stage_stats_t c = {0, s->advanced, s->need_time, s->eof};
    c.works = s->advanced + s->need_time + (s->eof ? 1 : 0);
    return c;
}

/* The IXSCAN, or the FETCH with its filter above it. */
static ms_stage_stats_t
scan_top_common(const ms_scan_t *s)
{
    ms_stage_stats_t c = ixscan_common(s);
    if (s->info.exact) {
        return c;
    }
    c.need_time += s->fetch_docs - s->fetch_advanced;
    c.advanced = s->fetch_advanced;
    return c;
}

static ms_stage_stats_t
or_common(const ms_qplan_t *p)
{
    ms_stage_stats_t c = {0, p->or_tested - p->or_dropped, 0, p->access_eof};
    for (size_t i = 0; i < p->nbranches; i++) {
        c.works += scan_top_common(&p->branches[i]).works;
    }
    c.need_time = c.works - c.advanced - (c.eof ? 1 : 0);
    return c;
}

static ms_stage_stats_t
merge_common(const ms_qplan_t *p)
{
    ms_stage_stats_t c = {1, p->merge_out, 0, p->access_eof};
    for (size_t i = 0; i < p->nbranches; i++) {
        c.works += ixscan_common(&p->branches[i]).works;
    }
    c.need_time = c.works - c.advanced - (c.eof ? 1 : 0);
    return c;
}

ms_stage_stats_t
ms__access_stats(const ms_qplan_t *p)
{
    ms_stage_stats_t c = {0, 0, 0, p->access_eof};
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


void
ms__explain_open(bool exec, bson_t *parent, const char *key, const char *stage,
                 const bson_t *filter, const ms_stage_stats_t *cm, bson_t *child)
{
    bson_append_document_begin(parent, key, -1, child);
    BSON_APPEND_UTF8(child, "stage", stage);
    if (filter && !bson_empty(filter)) {
        BSON_APPEND_DOCUMENT(child, "filter", filter);
    }
    if (exec) {
        ms__explain_num(child, "nReturned", cm->advanced);
        ms__explain_num(child, "executionTimeMillisEstimate", 0);
        ms__explain_num(child, "works", cm->works);
        ms__explain_num(child, "advanced", cm->advanced);
        ms__explain_num(child, "needTime", cm->need_time);
        ms__explain_num(child, "needYield", 0);
        ms__explain_num(child, "saveState", 0);
        ms__explain_num(child, "restoreState", 0);
        ms__explain_num(child, "isEOF", cm->eof ? 1 : 0);
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
emit_ixscan(bool exec, const ms_scan_t *s, bson_t *parent, const char *key)
{
    bson_t st;
    ms_stage_stats_t cm = ixscan_common(s);
    ms__explain_open(exec, parent, key, "IXSCAN", NULL, &cm, &st);
    append_index(&st, s->ix);
    BSON_APPEND_UTF8(&st, "direction", s->backward ? "backward" : "forward");
    ms__bounds_append(&s->bounds, s->ix, &st, "indexBounds");
    if (exec) {
        ms__explain_num(&st, "keysExamined", s->keys);
        ms__explain_num(&st, "seeks", s->seeks);
        ms__explain_num(&st, "dupsTested", 0);
        ms__explain_num(&st, "dupsDropped", 0);
    }
    bson_append_document_end(parent, &st);
}

/* FETCH with the filter the bounds leave over the IXSCAN, or the IXSCAN alone. */
static void
emit_scan(bool exec, const ms_scan_t *s, bson_t *parent, const char *key)
{
    bson_t st;
    if (s->info.exact) {
        emit_ixscan(exec, s, parent, key);
        return;
    }
    ms_stage_stats_t cm = scan_top_common(s);
    ms__explain_open(exec, parent, key, "FETCH", s->residual, &cm, &st);
    if (exec) {
        ms__explain_num(&st, "docsExamined", s->fetch_docs);
        ms__explain_num(&st, "alreadyHasObj", 0);
    }
    emit_ixscan(exec, s, &st, "inputStage");
    bson_append_document_end(parent, &st);
}

static void
emit_count_scan(const ms_qplan_t *p, bool exec, bson_t *parent, const char *key)
{
    const ms_scan_t *s = &p->scan;
    bson_value_t start[MS_QUERY_MAX_FIELDS], end[MS_QUERY_MAX_FIELDS];
    bool start_inc = true, end_inc = true;
    bson_t st, b;
    ms_stage_stats_t cm = ms__access_stats(p);
    ms__bounds_single(&s->bounds, start, &start_inc, end, &end_inc);
    ms__explain_open(exec, parent, key, "COUNT_SCAN", NULL, &cm, &st);
    if (exec) {
        ms__explain_num(&st, "keysExamined", s->keys);
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
emit_or(const ms_qplan_t *p, bool exec, bson_t *parent, const char *key)
{
    bson_t st, inputs;
    ms_stage_stats_t cm = or_common(p);
    ms__explain_open(exec, parent, key, "OR", NULL, &cm, &st);
    if (exec) {
        ms__explain_num(&st, "dupsTested", p->or_tested);
        ms__explain_num(&st, "dupsDropped", p->or_dropped);
    }
    BSON_APPEND_ARRAY_BEGIN(&st, "inputStages", &inputs);
    for (size_t i = 0; i < p->nbranches; i++) {
        char idx[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
        emit_scan(exec, &p->branches[i], &inputs, k);
    }
    bson_append_array_end(&st, &inputs);
    bson_append_document_end(parent, &st);
}

static void
emit_merge(const ms_qplan_t *p, bool exec, bson_t *parent, const char *key)
{
    bson_t st, inputs;
    ms_stage_stats_t cm = merge_common(p);
    ms__explain_open(exec, parent, key, "SORT_MERGE", NULL, &cm, &st);
    BSON_APPEND_DOCUMENT(&st, "sortPattern", p->sort);
    if (exec) {
        ms__explain_num(&st, "dupsTested", 0);
        ms__explain_num(&st, "dupsDropped", 0);
    }
    BSON_APPEND_ARRAY_BEGIN(&st, "inputStages", &inputs);
    for (size_t i = 0; i < p->nbranches; i++) {
        char idx[16];
        const char *k;
        bson_uint32_to_string((uint32_t)i, &k, idx, sizeof idx);
        emit_ixscan(exec, &p->branches[i], &inputs, k);
    }
    bson_append_array_end(&st, &inputs);
    bson_append_document_end(parent, &st);
}

void
ms__explain_access(const ms_qplan_t *p, bool exec, bson_t *parent, const char *key)
{
    bson_t st, normalized;
    ms_stage_stats_t cm = ms__access_stats(p);
    switch (p->access) {
    case MS_ACCESS_IXSCAN:
        emit_scan(exec, &p->scan, parent, key);
        return;
    case MS_ACCESS_COUNT_SCAN:
        emit_count_scan(p, exec, parent, key);
        return;
    case MS_ACCESS_SORT_MERGE:
        if (p->scan.info.exact) {
            emit_merge(p, exec, parent, key);
            return;
        }
        ms__explain_open(exec, parent, key, "FETCH", p->scan.residual, &cm, &st);
        if (exec) {
            ms__explain_num(&st, "docsExamined", p->merge_fetch_docs);
            ms__explain_num(&st, "alreadyHasObj", 0);
        }
        emit_merge(p, exec, &st, "inputStage");
        break;
    case MS_ACCESS_OR:
        if (!p->or_fetch) {
            emit_or(p, exec, parent, key);
            return;
        }
        ms__filter_normalized(p->or_rooted ? NULL : p->filter, &normalized);
        ms__explain_open(exec, parent, key, "FETCH", &normalized, &cm, &st);
        bson_destroy(&normalized);
        if (exec) {
            ms__explain_num(&st, "docsExamined", p->or_fetch_docs);
            ms__explain_num(&st, "alreadyHasObj", p->or_fetch_already);
        }
        emit_or(p, exec, &st, "inputStage");
        break;
    case MS_ACCESS_COLLSCAN:
        ms__filter_normalized(p->filter, &normalized);
        ms__explain_open(exec, parent, key, "COLLSCAN", &normalized, &cm, &st);
        bson_destroy(&normalized);
        BSON_APPEND_UTF8(&st, "direction", p->natural_backward ? "backward" : "forward");
        if (exec) {
            ms__explain_num(&st, "docsExamined", p->coll_docs);
        }
        break;
    case MS_ACCESS_FAST_COUNT:
        ms__explain_open(exec, parent, key, "RECORD_STORE_FAST_COUNT", NULL, &cm, &st);
        if (exec) {
            ms__explain_num(&st, "nCounted", p->out);
            ms__explain_num(&st, "nSkipped", p->skipped);
        }
        break;
    case MS_ACCESS_IDHACK:
        ms__explain_open(exec, parent, key, "IDHACK", NULL, &cm, &st);
        if (exec) {
            ms__explain_num(&st, "keysExamined", p->id_keys);
            ms__explain_num(&st, "docsExamined", p->id_docs);
        }
        break;
    default:
        ms__explain_open(exec, parent, key, "EOF", NULL, &cm, &st);
        break;
    }
    bson_append_document_end(parent, &st);
}

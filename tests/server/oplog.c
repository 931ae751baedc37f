/*
 * The oplog: every committed op gets a cluster time and is kept, as a BSON record, in a ring of
 * the latest ops, sized as mongod sizes its oplog: in bytes (--history-bytes; by default 5% of
 * the free space of the filesystem of --dbpath, or of the working directory, at least 990 MB
 * and at most 50 GB: mongod's default oplogSizeMB), and by count when --history N asks for a
 * small window. The oldest entries go first. Change streams read the ring and wait on one condition
 * variable; commits broadcast it. The storage layer calls ms_oplog_commit under its own lock,
 * and nothing here ever takes the storage lock, so the lock order is always storage -> oplog.
 *
 * Cluster times: seconds = the wall clock, increment counting up within a second; strictly
 * increasing even when the clock steps back or the server restarts on a journal.
 */
#include "oplog-private.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include <sys/statvfs.h>

#define MB (1024.0 * 1024.0)
#define RING_INITIAL 1024

static pthread_mutex_t oplog_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t oplog_cv;
static ms__entry_t *ring; /* ring[(head + k) % cap] is the k-th oldest entry */
static size_t ring_cap;
static size_t ring_head;
static size_t ring_len;
static size_t ring_bytes;     /* the records' sizes */
static size_t history_count;  /* --history N: at most N entries (0: no count limit) */
static uint64_t history_bytes; /* at most this many bytes of records */
static ms__oplog_state_t state;
static bool journaled; /* --dbpath given: every commit must reach the journal */
static bool shut_down; /* no getMore waits any more */
static ms_pos_t clock_floor; /* the newest $clusterTime gossiped to the server */

int64_t
ms__mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static ms__entry_t *
ring_at(size_t k)
{
    return &ring[(ring_head + k) % ring_cap];
}

/* Drops the oldest entry. Caller holds oplog_mu. */
static void
ring_drop_oldest(void)
{
    ms__entry_t *oldest = ring_at(0);
    /* Anything at or before the dropped entry can no longer be resumed from. */
    state.floor = oldest->pos + 1;
    ring_bytes -= oldest->rec->len;
    bson_destroy(oldest->rec);
    ring_head = (ring_head + 1) % ring_cap;
    ring_len--;
}

/* Doubles the ring, the entries in order from index 0. Caller holds oplog_mu. */
static void
ring_grow(void)
{
    size_t cap = ring_cap ? ring_cap * 2 : RING_INITIAL;
    ms__entry_t *grown = bson_malloc0(cap * sizeof *grown);
    for (size_t k = 0; k < ring_len; k++) {
        grown[k] = *ring_at(k);
    }
    bson_free(ring);
    ring = grown;
    ring_cap = cap;
    ring_head = 0;
}

/* Appends an entry (taking rec), dropping the oldest beyond the count or the bytes allowed.
 * Caller holds oplog_mu. */
static void
ring_push(ms_pos_t pos, bson_t *rec)
{
    while (ring_len > 0 && ((history_count && ring_len >= history_count) ||
                            ring_bytes + rec->len > history_bytes)) {
        ring_drop_oldest();
    }
    if (ring_len == ring_cap) {
        ring_grow();
    }
    ring_bytes += rec->len;
    ms__entry_t *e = ring_at(ring_len);
    e->pos = pos;
    e->rec = rec;
    ring_len++;
    state.latest = pos;
}

/* Index of the first entry with pos >= from (ring_len when none). Caller holds oplog_mu. */
static size_t
ring_lower_bound(ms_pos_t from)
{
    size_t lo = 0;
    size_t hi = ring_len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring_at(mid)->pos < from) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static bool
sub_doc(bson_iter_t *it, bson_t *out)
{
    uint32_t len;
    const uint8_t *data;
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return false;
    }
    bson_iter_document(it, &len, &data);
    return bson_init_static(out, data, len);
}

static bool
opview_field(ms__opview_t *v, bson_iter_t *it)
{
    const char *key = bson_iter_key(it);
    if (strcmp(key, "ts") == 0 && BSON_ITER_HOLDS_TIMESTAMP(it)) {
        bson_iter_timestamp(it, &v->ts.t, &v->ts.i);
    } else if (strcmp(key, "wall") == 0 && BSON_ITER_HOLDS_DATE_TIME(it)) {
        v->wall_ms = bson_iter_date_time(it);
    } else if (strcmp(key, "op") == 0 && BSON_ITER_HOLDS_INT32(it)) {
        v->op.type = (ms_op_type_t)bson_iter_int32(it);
    } else if (strcmp(key, "db") == 0 && BSON_ITER_HOLDS_UTF8(it)) {
        v->op.db = bson_iter_utf8(it, NULL);
    } else if (strcmp(key, "coll") == 0 && BSON_ITER_HOLDS_UTF8(it)) {
        v->op.coll = bson_iter_utf8(it, NULL);
    } else if (strcmp(key, "key") == 0 && sub_doc(it, &v->key)) {
        v->op.document_key = &v->key;
    } else if (strcmp(key, "doc") == 0 && sub_doc(it, &v->doc)) {
        v->op.full_document = &v->doc;
    } else if (strcmp(key, "upd") == 0 && sub_doc(it, &v->upd)) {
        v->op.update_description = &v->upd;
    } else if (strcmp(key, "pre") == 0 && sub_doc(it, &v->pre)) {
        v->op.pre_image = &v->pre;
    } else if (strcmp(key, "spec") == 0 && sub_doc(it, &v->spec)) {
        v->op.spec = &v->spec;
    } else if (strcmp(key, "lsid") == 0 && sub_doc(it, &v->lsid)) {
        v->op.lsid = &v->lsid;
    } else if (strcmp(key, "txn") == 0 && BSON_ITER_HOLDS_INT64(it)) {
        v->op.txn_number = bson_iter_int64(it);
    } else {
        return false;
    }
    return true;
}

bool
ms__opview_init(ms__opview_t *v, const bson_t *rec, bson_error_t *error)
{
    bson_iter_t it;
    memset(v, 0, sizeof *v);
    v->op.type = (ms_op_type_t)-1;
    if (!bson_iter_init(&it, rec)) {
        return ms_set_error(error, MS_ERR_INTERNAL_ERROR, "malformed oplog record");
    }
    while (bson_iter_next(&it)) {
        if (!opview_field(v, &it)) {
            return ms_set_error(error, MS_ERR_INTERNAL_ERROR, "malformed oplog record field '%s'",
                                bson_iter_key(&it));
        }
    }
    if (!v->op.db || (int)v->op.type < MS_OP_INSERT || v->op.type > MS_OP_RENAME) {
        return ms_set_error(error, MS_ERR_INTERNAL_ERROR, "malformed oplog record");
    }
    return true;
}

static bson_t *
record_build(const ms_op_t *op, ms_optime_t ts, int64_t wall_ms)
{
    bson_t *rec = bson_new();
    BSON_APPEND_TIMESTAMP(rec, "ts", ts.t, ts.i);
    BSON_APPEND_DATE_TIME(rec, "wall", wall_ms);
    BSON_APPEND_INT32(rec, "op", (int32_t)op->type);
    BSON_APPEND_UTF8(rec, "db", op->db);
    if (op->coll) {
        BSON_APPEND_UTF8(rec, "coll", op->coll);
    }
    if (op->document_key) {
        BSON_APPEND_DOCUMENT(rec, "key", op->document_key);
    }
    if (op->full_document) {
        BSON_APPEND_DOCUMENT(rec, "doc", op->full_document);
    }
    if (op->update_description) {
        BSON_APPEND_DOCUMENT(rec, "upd", op->update_description);
    }
    if (op->spec) {
        BSON_APPEND_DOCUMENT(rec, "spec", op->spec);
    }
    if (op->pre_image) {
        BSON_APPEND_DOCUMENT(rec, "pre", op->pre_image);
    }
    if (op->lsid) {
        BSON_APPEND_DOCUMENT(rec, "lsid", op->lsid);
        BSON_APPEND_INT64(rec, "txn", op->txn_number);
    }
    return rec;
}

/* The next cluster time after state.latest. Caller holds oplog_mu. */
static ms_optime_t
next_optime(ms_pos_t after)
{
    ms_optime_t last = ms__optime(after > clock_floor ? after : clock_floor);
    ms_optime_t ts;
    uint32_t now = (uint32_t)(ms_cluster_clock_ms() / 1000);
    if (now > last.t) {
        ts.t = now;
        ts.i = 1;
    } else if (last.i == UINT32_MAX) {
        ts.t = last.t + 1;
        ts.i = 1;
    } else {
        ts.t = last.t;
        ts.i = last.i + 1;
    }
    return ts;
}

static bool
replay_record(const bson_t *rec, void *ctx, bson_error_t *error)
{
    ms__opview_t v;
    (void)ctx;
    if (!ms__opview_init(&v, rec, error)) {
        return false;
    }
    if (!ms_store_replay(&v.op, error)) {
        return false;
    }
    if (v.op.type == MS_OP_RETRY_RESULT) {
        return true; /* shares its write's cluster time; not in the history */
    }
    ms_pos_t pos = ms__pos(v.ts);
    if (pos <= state.latest) {
        return ms_set_error(error, MS_ERR_INTERNAL_ERROR, "journal records out of order at %u.%u",
                            v.ts.t, v.ts.i);
    }
    ring_push(pos, bson_copy(rec));
    return true;
}

static void
cond_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&oplog_cv, &attr);
    pthread_condattr_destroy(&attr);
}

/* mongod's default oplog size (src/mongo/db/repl/oplog.cpp, getNewOplogSizeBytes; manual:
 * core/replica-set-oplog, "Oplog Size"): 5% of the free disk space, at least 990 MB, at most
 * 50 GB. */
static uint64_t
default_history_bytes(const char *dbpath)
{
    struct statvfs st;
    double bytes = 990 * MB;
    if (statvfs(dbpath ? dbpath : ".", &st) == 0) {
        double five_percent = (double)st.f_bavail * (double)st.f_frsize * 0.05;
        bytes = five_percent < 990 * MB ? 990 * MB : five_percent > 50 * 1024 * MB ? 50 * 1024 * MB
                                                                                : five_percent;
    }
    return (uint64_t)bytes;
}

bool
ms_oplog_init(const char *dbpath, size_t history, uint64_t bytes, bson_error_t *error)
{
    bool ok = false;
    cond_init();
    pthread_mutex_lock(&oplog_mu);
    history_count = history;
    history_bytes = bytes ? bytes : default_history_bytes(dbpath);
    ring_grow();
    ms_optime_t start = {(uint32_t)(ms_cluster_clock_ms() / 1000), 0};
    if (dbpath) {
        /* The journal holds every op since it was created: its history has no floor. */
        state.floor = 0;
        if (!ms__journal_open(dbpath, replay_record, NULL, error)) {
            goto done;
        }
        journaled = true;
    } else {
        /* Nothing from before this start can be resumed from. */
        state.floor = ms__pos(start);
    }
    if (state.latest == 0) {
        /* Before the first write, operationTime and high-water marks are "now", never 0. */
        state.latest = ms__pos(start);
    }
    ok = true;
done:
    pthread_mutex_unlock(&oplog_mu);
    return ok;
}

void
ms_oplog_shutdown(void)
{
    pthread_mutex_lock(&oplog_mu);
    ms__journal_close();
    shut_down = true;
    state.wake_gen++;
    pthread_cond_broadcast(&oplog_cv);
    pthread_mutex_unlock(&oplog_mu);
}

/* A document's length from its bytes: heap bson_t are under-aligned for direct field access. */
static uint32_t
doc_len(const bson_t *doc)
{
    uint32_t n;
    memcpy(&n, bson_get_data(doc), sizeof n);
    return BSON_UINT32_FROM_LE(n);
}

/* Builds the records and their journal bytes (*bytes: bson_malloc). Caller holds oplog_mu. */
static void
commit_prepare(const ms_op_t *ops, size_t n, bson_t **recs, ms_pos_t *positions, uint8_t **bytes,
               size_t *len)
{
    int64_t wall_ms = ms_now_ms();
    ms_pos_t last = state.latest;
    *len = 0;
    for (size_t k = 0; k < n; k++) {
        ms_optime_t ts = ms__optime(last);
        if (ops[k].type != MS_OP_RETRY_RESULT) {
            ts = next_optime(last);
            last = ms__pos(ts);
        }
        positions[k] = last;
        recs[k] = record_build(&ops[k], ts, wall_ms);
        *len += doc_len(recs[k]);
    }
    *bytes = bson_malloc(*len ? *len : 1);
    for (size_t k = 0, off = 0; k < n; off += doc_len(recs[k]), k++) {
        memcpy(*bytes + off, bson_get_data(recs[k]), doc_len(recs[k]));
    }
}

bool
ms_oplog_commit(const ms_op_t *ops, size_t n, ms_optime_t *optime, bson_error_t *error)
{
    BSON_ASSERT_PARAM(ops);
    BSON_ASSERT(n >= 1);
    bool ok = false;
    bson_t **recs = bson_malloc0(n * sizeof *recs);
    ms_pos_t *positions = bson_malloc(n * sizeof *positions);
    uint8_t *bytes = NULL;
    size_t len = 0;
    pthread_mutex_lock(&oplog_mu);
    commit_prepare(ops, n, recs, positions, &bytes, &len);
    if (journaled && !ms__journal_append(bytes, len, error)) {
        goto done;
    }
    for (size_t k = 0; k < n; k++) {
        if (ops[k].type != MS_OP_RETRY_RESULT) {
            ring_push(positions[k], recs[k]);
            recs[k] = NULL;
        }
    }
    if (optime) {
        *optime = ms__optime(positions[n - 1]);
    }
    state.commit_gen++;
    pthread_cond_broadcast(&oplog_cv);
    ok = true;
done:
    pthread_mutex_unlock(&oplog_mu);
    for (size_t k = 0; k < n; k++) {
        bson_destroy(recs[k]);
    }
    bson_free(bytes);
    bson_free(positions);
    bson_free(recs);
    return ok;
}

bool
ms_oplog_noop_if_idle(uint64_t *seen_gen)
{
    bool wrote = false;
    pthread_mutex_lock(&oplog_mu);
    if (state.commit_gen == *seen_gen && !shut_down) {
        /* mongod's no-op ("n") entry matches no stream: only the position moves. */
        state.latest = ms__pos(next_optime(state.latest));
        state.commit_gen++;
        pthread_cond_broadcast(&oplog_cv);
        wrote = true;
    }
    *seen_gen = state.commit_gen;
    pthread_mutex_unlock(&oplog_mu);
    return wrote;
}

void
ms_oplog_advance_cluster_time(ms_optime_t seen)
{
    pthread_mutex_lock(&oplog_mu);
    if (ms__pos(seen) > clock_floor) {
        clock_floor = ms__pos(seen); /* the clock, not the history: streams' marks stay put */
    }
    pthread_mutex_unlock(&oplog_mu);
}

ms_optime_t
ms_oplog_last_optime(void)
{
    pthread_mutex_lock(&oplog_mu);
    ms_optime_t ts = ms__optime(state.latest);
    pthread_mutex_unlock(&oplog_mu);
    return ts;
}

size_t
ms__oplog_read(ms_pos_t from, ms__entry_t *out, size_t max, ms__oplog_state_t *st)
{
    size_t n = 0;
    pthread_mutex_lock(&oplog_mu);
    for (size_t k = ring_lower_bound(from); k < ring_len && n < max; k++, n++) {
        out[n].pos = ring_at(k)->pos;
        out[n].rec = bson_copy(ring_at(k)->rec);
    }
    *st = state;
    pthread_mutex_unlock(&oplog_mu);
    return n;
}

bool
ms__oplog_has(ms_pos_t pos)
{
    pthread_mutex_lock(&oplog_mu);
    size_t k = ring_lower_bound(pos);
    bool found = k < ring_len && ring_at(k)->pos == pos;
    pthread_mutex_unlock(&oplog_mu);
    return found;
}

bool
ms__oplog_wait(ms__oplog_state_t *seen, int64_t deadline_ms)
{
    struct timespec until = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000};
    pthread_mutex_lock(&oplog_mu);
    /* Bounded: each pass either sees a change or reaches the deadline (spurious wake-ups loop). */
    while (!shut_down && state.commit_gen == seen->commit_gen && state.wake_gen == seen->wake_gen &&
           ms__mono_ms() < deadline_ms) {
        if (pthread_cond_timedwait(&oplog_cv, &oplog_mu, &until) != 0) {
            break;
        }
    }
    bool answer_now = shut_down || state.wake_gen != seen->wake_gen;
    *seen = state;
    pthread_mutex_unlock(&oplog_mu);
    return answer_now;
}

void
ms_changestream_wake_all(void)
{
    pthread_mutex_lock(&oplog_mu);
    state.wake_gen++;
    pthread_cond_broadcast(&oplog_cv);
    pthread_mutex_unlock(&oplog_mu);
}

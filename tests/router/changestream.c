/*
 * Change streams through the router, as mongos merges them (s/query/async_results_merger.cpp,
 * pipeline/document_source_merge_cursors.cpp, the "minimum promised sort key"): one stream on
 * every shard; an event is returned only when no shard can still produce an earlier one, i.e.
 * when its (cluster time, shard) is below every other shard's promise: its first buffered event,
 * or, with nothing buffered, its postBatchResumeToken (its high-water mark). An idle shard's
 * high-water mark moves only with its periodic no-op (--noop-interval, mongod's
 * periodicNoopIntervalSecs), so an event on one shard waits for the others' next no-op: the lag
 * of SERVER-80427.
 *
 * Resume tokens: the router hands out its own, {_data: "82" + 16 hex digits of the cluster time
 * (t << 32 | i) + 2 of the kind (00 high-water mark, 80 event, 81 invalidate) + 2 of the shard}.
 * Resuming after (P, kind, s) resumes shard s after its own token, shards after s at P and
 * shards before s at P + 1, which is exactly the merged order's "after".
 */
#include "router.h"
#include "write-private.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DEFAULT_AWAIT_MS 1000
#define POLL_SLICE_MS 100
#define KIND_HWM 0x00
#define KIND_INVALIDATE 0x81

typedef struct {
    int64_t id;
    ms_docvec_t buf;
    size_t pos;
    uint64_t hwm; /* no event below (hwm, this shard) can still come */
} cs_remote_t;

struct mr_cstream {
    cs_remote_t r[MR_MAX_SHARDS];
    char *coll; /* getMore's collection: the collection or "$cmd.aggregate" */
    char *db;
    bool closed;
};

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
mr_is_change_stream(const bson_t *cmd)
{
    bson_t pipeline, stage;
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!mr__get_doc(cmd, "pipeline", &pipeline) || !bson_iter_init(&it, &pipeline) ||
        !bson_iter_next(&it) || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return false;
    }
    bson_iter_document(&it, &len, &data);
    bson_init_static(&stage, data, len);
    return bson_has_field(&stage, "$changeStream");
}

/* ---- tokens ----------------------------------------------------------------------------------- */

static bool
token_parse(const bson_t *token, size_t want_len, uint64_t *pos, int *kind, int *shard)
{
    bson_iter_t it;
    uint32_t len;
    if (!bson_iter_init_find(&it, token, "_data") || !BSON_ITER_HOLDS_UTF8(&it)) {
        return false;
    }
    const char *hex = bson_iter_utf8(&it, &len);
    unsigned long long p;
    unsigned k, s = 0;
    if (len != want_len || strncmp(hex, "82", 2) != 0 || sscanf(hex + 2, "%16llx", &p) != 1 ||
        sscanf(hex + 18, "%2x", &k) != 1 || (want_len == 22 && sscanf(hex + 20, "%2x", &s) != 1)) {
        return false;
    }
    *pos = p;
    *kind = (int)k;
    *shard = (int)s;
    return true;
}

static void
token_append(bson_t *parent, const char *key, uint64_t pos, int kind, int shard)
{
    char hex[32];
    bson_t child;
    if (shard >= 0) {
        snprintf(hex, sizeof hex, "82%016" PRIX64 "%02X%02X", pos, (unsigned)kind, (unsigned)shard);
    } else {
        snprintf(hex, sizeof hex, "82%016" PRIX64 "%02X", pos, (unsigned)kind);
    }
    BSON_APPEND_DOCUMENT_BEGIN(parent, key, &child);
    BSON_APPEND_UTF8(&child, "_data", hex);
    bson_append_document_end(parent, &child);
}

/* ---- opening ---------------------------------------------------------------------------------- */

/* The $changeStream spec for shard s: the client's, its router token turned into the shard's. */
static bool
shard_spec(const bson_t *spec, int s, bson_t *out, bson_error_t *error)
{
    static const char *const drop[] = {"resumeAfter", "startAfter", NULL};
    bson_t token;
    uint64_t pos;
    int kind, shard;
    mr_cmd_copy_without(spec, drop, out);
    bool after = mr__get_doc(spec, "startAfter", &token);
    if (!after && !mr__get_doc(spec, "resumeAfter", &token)) {
        return true;
    }
    if (!token_parse(&token, 22, &pos, &kind, &shard)) {
        return ms_set_error(error, 50811, "KeyString format error: not a mongoq-test-router "
                                          "resume token");
    }
    if (s == shard && kind != KIND_HWM) {
        token_append(out, after ? "startAfter" : "resumeAfter", pos, kind, -1);
    } else {
        token_append(out, "resumeAfter", s < shard ? pos + 1 : pos, KIND_HWM, -1);
    }
    return true;
}

/* Takes a shard reply's batch and high-water mark. */
static bool
take(cs_remote_t *r, const bson_t *reply, bson_error_t *error)
{
    bson_t cursor, batch, pbrt;
    bson_iter_t it;
    uint64_t pos;
    int kind, shard;
    if (!mr_reply_ok(reply, error) || !mr__get_doc(reply, "cursor", &cursor)) {
        return false;
    }
    if ((mr__get_doc(&cursor, "firstBatch", &batch) || mr__get_doc(&cursor, "nextBatch", &batch)) &&
        bson_iter_init(&it, &batch)) {
        while (bson_iter_next(&it)) {
            bson_t ev;
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&ev, data, len);
            ms_docvec_push_copy(&r->buf, &ev);
        }
    }
    if (mr__get_doc(&cursor, "postBatchResumeToken", &pbrt) &&
        token_parse(&pbrt, 20, &pos, &kind, &shard) && pos > r->hwm) {
        r->hwm = pos;
    }
    r->id = bson_iter_init_find(&it, &cursor, "id") ? bson_iter_as_int64(&it) : 0;
    return true;
}

static bool
open_on_shard(mr_cmd_t *c, mr_cstream_t *cs, int s, const bson_t *pipeline, bson_error_t *error)
{
    static const char *const drop[] = {"pipeline", "cursor", NULL};
    bson_t cmd, arr, first, spec, sspec, cursor;
    bson_t reply = BSON_INITIALIZER;
    bson_iter_t it;
    char key[24];
    uint32_t n = 0;
    mr_cmd_copy_without(c->cmd, drop, &cmd);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "pipeline", &arr);
    bson_iter_init(&it, pipeline);
    bool ok = true;
    while (ok && bson_iter_next(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t stage;
        bson_iter_document(&it, &len, &data);
        bson_init_static(&stage, data, len);
        snprintf(key, sizeof key, "%u", n);
        if (n++ == 0) {
            mr__get_doc(&stage, "$changeStream", &spec);
            ok = shard_spec(&spec, s, &sspec, error);
            BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &first);
            BSON_APPEND_DOCUMENT(&first, "$changeStream", &sspec);
            bson_append_document_end(&arr, &first);
            bson_destroy(&sspec);
        } else {
            BSON_APPEND_DOCUMENT(&arr, key, &stage);
        }
    }
    bson_append_array_end(&cmd, &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "cursor", &cursor);
    bson_append_document_end(&cmd, &cursor);
    ok = ok && mr_shard_run(c->client, s, &cmd, &reply, error) && take(&cs->r[s], &reply, error);
    if (ok && !cs->coll) {
        bson_t cur;
        bson_iter_t ns;
        const char *name = "$cmd.aggregate";
        if (mr__get_doc(&reply, "cursor", &cur) && bson_iter_init_find(&ns, &cur, "ns") &&
            strchr(bson_iter_utf8(&ns, NULL), '.')) {
            name = strchr(bson_iter_utf8(&ns, NULL), '.') + 1;
        }
        cs->coll = bson_strdup(name);
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return ok;
}

/* ---- merging ---------------------------------------------------------------------------------- */

typedef struct {
    uint64_t pos;
    int shard;
    int kind;
    bool event; /* a buffered event, else the shard's high-water mark */
} promise_t;

static bool
promise_of(const mr_cstream_t *cs, int s, promise_t *p)
{
    const cs_remote_t *r = &cs->r[s];
    bson_t token;
    int shard;
    p->shard = s;
    if (r->pos < r->buf.len && mr__get_doc(r->buf.docs[r->pos], "_id", &token) &&
        token_parse(&token, 20, &p->pos, &p->kind, &shard)) {
        p->event = true;
        return true;
    }
    p->pos = r->hwm;
    p->kind = KIND_HWM;
    p->event = false;
    return r->id != 0; /* a closed shard with nothing buffered promises nothing */
}

static bool
promise_less(const promise_t *a, const promise_t *b)
{
    if (a->pos != b->pos) {
        return a->pos < b->pos;
    }
    if (a->shard != b->shard) {
        return a->shard < b->shard;
    }
    return a->kind < b->kind;
}

/* The smallest promise over the shards; false when every shard is closed and empty. */
static bool
min_promise(const mr_cstream_t *cs, promise_t *out)
{
    bool any = false;
    for (int s = 0; s < mr_config.nshards; s++) {
        promise_t p;
        if (promise_of(cs, s, &p) && (!any || promise_less(&p, out))) {
            *out = p;
            any = true;
        }
    }
    return any;
}

/* The event with its _id as the router's token. */
static void
append_event(bson_t *arr, const char *key, const bson_t *ev, const promise_t *p)
{
    bson_t out;
    bson_iter_t it;
    BSON_APPEND_DOCUMENT_BEGIN(arr, key, &out);
    token_append(&out, "_id", p->pos, p->kind, p->shard);
    bson_iter_init(&it, ev);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "_id") != 0) {
            bson_append_value(&out, bson_iter_key(&it), -1, bson_iter_value(&it));
        }
    }
    bson_append_document_end(arr, &out);
}

/* Releases events while the smallest promise is an event; *last is the resume point. */
static size_t
release(mr_cstream_t *cs, bson_t *arr, size_t n, int64_t limit, promise_t *last)
{
    char key[24];
    promise_t p;
    /* Bounded by the buffered events. */
    while ((limit <= 0 || (int64_t)n < limit) && !cs->closed && min_promise(cs, &p) && p.event) {
        cs_remote_t *r = &cs->r[p.shard];
        snprintf(key, sizeof key, "%zu", n++);
        append_event(arr, key, r->buf.docs[r->pos], &p);
        r->pos++;
        *last = p;
        cs->closed = p.kind == KIND_INVALIDATE;
    }
    if (!cs->closed && min_promise(cs, &p) && !p.event) {
        *last = p; /* everything below the smallest high-water mark has been returned */
    }
    return n;
}

static bool
poll_shard(mr_client_t *client, mr_cstream_t *cs, int s, int64_t wait_ms, bson_error_t *error)
{
    cs_remote_t *r = &cs->r[s];
    bson_t cmd = BSON_INITIALIZER, reply;
    if (r->buf.len > 0 && r->pos == r->buf.len) {
        ms_docvec_destroy(&r->buf);
        ms_docvec_init(&r->buf);
        r->pos = 0;
    }
    BSON_APPEND_INT64(&cmd, "getMore", r->id);
    BSON_APPEND_UTF8(&cmd, "collection", cs->coll);
    BSON_APPEND_INT64(&cmd, "maxTimeMS", wait_ms);
    BSON_APPEND_UTF8(&cmd, "$db", cs->db);
    bool ok = mr_shard_run(client, s, &cmd, &reply, error) && take(r, &reply, error);
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return ok;
}

/* Fills the batch: release, and until the deadline ask the shards that hold it back. */
static bool
fill(mr_cmd_t *c, mr_cstream_t *cs, bson_t *arr, int64_t limit, int64_t await_ms,
     promise_t *last, bson_error_t *error)
{
    int64_t deadline = mono_ms() + await_ms;
    size_t n = release(cs, arr, 0, limit, last);
    for (int round = 0; n == 0 && !cs->closed && !mr_net_stopping(); round++) {
        int64_t left = deadline - mono_ms();
        if (round > 0 && left <= 0) {
            break;
        }
        promise_t p;
        for (int s = 0; s < mr_config.nshards; s++) {
            bool empty = cs->r[s].pos >= cs->r[s].buf.len && cs->r[s].id != 0;
            bool holding = min_promise(cs, &p) && p.shard == s;
            /* First every idle shard at once (no wait), then the one holding the batch back. */
            if (empty && (round == 0 || holding) &&
                !poll_shard(c->client, cs, s, round == 0 ? 0 : (left < POLL_SLICE_MS ? left : POLL_SLICE_MS),
                            error)) {
                return false;
            }
        }
        n = release(cs, arr, n, limit, last);
    }
    return true;
}

static bool
reply_batch(mr_cmd_t *c, mr_cursor_t *cur, bool first, int64_t limit, int64_t await_ms,
            bson_error_t *error)
{
    mr_cstream_t *cs = cur->cs;
    bson_t cursor, arr;
    promise_t last = {0};
    promise_of(cs, 0, &last);
    BSON_APPEND_DOCUMENT_BEGIN(c->reply, "cursor", &cursor);
    BSON_APPEND_ARRAY_BEGIN(&cursor, first ? "firstBatch" : "nextBatch", &arr);
    bool ok = fill(c, cs, &arr, limit, await_ms, &last, error);
    bson_append_array_end(&cursor, &arr);
    token_append(&cursor, "postBatchResumeToken", last.pos, last.kind, last.shard);
    BSON_APPEND_INT64(&cursor, "id", ok && !cs->closed ? cur->id : 0);
    BSON_APPEND_UTF8(&cursor, "ns", cur->ns);
    bson_append_document_end(c->reply, &cursor);
    if (ok && !cs->closed) {
        mr_cursor_register(cur);
    } else {
        mr_cursor_destroy(c->client, cur);
    }
    return ok;
}

bool
mr_changestream_open(mr_cmd_t *c, bson_error_t *error)
{
    bson_t pipeline;
    bson_iter_t it;
    char *ns = c->coll ? bson_strdup_printf("%s.%s", c->db, c->coll)
                       : bson_strdup_printf("%s.$cmd.aggregate", c->db);
    mr_cursor_t *cur = mr_cursor_new(c->db, ns);
    bson_free(ns);
    cur->cs = bson_malloc0(sizeof *cur->cs);
    cur->cs->db = bson_strdup(c->db);
    mr__get_doc(c->cmd, "pipeline", &pipeline);
    for (int s = 0; s < mr_config.nshards; s++) {
        ms_docvec_init(&cur->cs->r[s].buf);
    }
    for (int s = 0; s < mr_config.nshards; s++) {
        if (!open_on_shard(c, cur->cs, s, &pipeline, error)) {
            mr_cursor_destroy(c->client, cur);
            return false;
        }
    }
    int64_t limit = -1;
    if (bson_iter_init_find(&it, c->cmd, "cursor") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &it) && bson_iter_find(&it, "batchSize")) {
        limit = bson_iter_as_int64(&it);
    }
    if (limit == 0) {
        bson_t cursor, arr;
        promise_t p = {0};
        min_promise(cur->cs, &p);
        BSON_APPEND_DOCUMENT_BEGIN(c->reply, "cursor", &cursor);
        BSON_APPEND_ARRAY_BEGIN(&cursor, "firstBatch", &arr);
        bson_append_array_end(&cursor, &arr);
        token_append(&cursor, "postBatchResumeToken", p.pos, KIND_HWM, p.shard);
        BSON_APPEND_INT64(&cursor, "id", cur->id);
        BSON_APPEND_UTF8(&cursor, "ns", cur->ns);
        bson_append_document_end(c->reply, &cursor);
        mr_cursor_register(cur);
        return true;
    }
    return reply_batch(c, cur, true, limit, 0, error);
}

bool
mr_changestream_get_more(mr_cmd_t *c, mr_cursor_t *cur, bson_error_t *error)
{
    bson_iter_t it;
    int64_t limit = bson_iter_init_find(&it, c->cmd, "batchSize") ? bson_iter_as_int64(&it) : 0;
    int64_t await_ms = bson_iter_init_find(&it, c->cmd, "maxTimeMS") ? bson_iter_as_int64(&it)
                                                                     : DEFAULT_AWAIT_MS;
    return reply_batch(c, cur, false, limit, await_ms, error);
}

void
mr_changestream_destroy(mr_client_t *client, mr_cstream_t *cs)
{
    if (!cs) {
        return;
    }
    for (int s = 0; s < mr_config.nshards; s++) {
        if (client && cs->r[s].id != 0 && cs->coll) {
            bson_t cmd = BSON_INITIALIZER, reply, ids;
            bson_error_t ignored;
            BSON_APPEND_UTF8(&cmd, "killCursors", cs->coll);
            BSON_APPEND_ARRAY_BEGIN(&cmd, "cursors", &ids);
            BSON_APPEND_INT64(&ids, "0", cs->r[s].id);
            bson_append_array_end(&cmd, &ids);
            BSON_APPEND_UTF8(&cmd, "$db", cs->db);
            mr_shard_run(client, s, &cmd, &reply, &ignored);
            bson_destroy(&cmd);
            bson_destroy(&reply);
        }
        ms_docvec_destroy(&cs->r[s].buf);
    }
    bson_free(cs->coll);
    bson_free(cs->db);
    bson_free(cs);
}

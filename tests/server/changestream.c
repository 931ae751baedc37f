/*
 * Change streams: aggregate with a first stage $changeStream, then getMore.
 *
 * A stream is a position in the oplog's history (`next`: the first position it has not fully
 * processed) plus a filter on namespaces and the user's later stages. Reading copies entries
 * out of the history under the oplog's lock, then turns them into events without any lock
 * (updateLookup takes the storage lock briefly through ms_store_lookup).
 *
 * Here: opening, batches and getMore. The aggregate command's parsing is in
 * changestream_parse.c, events in changestream_event.c, resume tokens in resume_token.c; they
 * share changestream-private.h.
 */
#include "changestream-private.h"

#include <inttypes.h>
#include <string.h>

#define DEFAULT_AWAIT_MS 1000
#define DEFAULT_FIRST_BATCH 101
#define READ_CHUNK 64
/* A batch stops growing past this; one event can still take it to the 16 MiB reply limit. */
#define BATCH_SOFT_BYTES (4 * 1024 * 1024)

/* One reply's worth of events and what the reply says about them. */
typedef struct {
    ms_docvec_t docs;
    size_t bytes;
    int64_t limit; /* < 0: no count limit */
    bson_t pbrt;   /* postBatchResumeToken */
    bool closed;
    bool exhausted; /* read everything committed so far */
    ms__oplog_state_t seen;
} batch_t;

/* ---- batches ------------------------------------------------------------------------------ */

static void
batch_init(batch_t *b, int64_t limit)
{
    memset(b, 0, sizeof *b);
    ms_docvec_init(&b->docs);
    bson_init(&b->pbrt);
    b->limit = limit;
}

static void
batch_destroy(batch_t *b)
{
    ms_docvec_destroy(&b->docs);
    bson_destroy(&b->pbrt);
}

static bool
batch_full(const batch_t *b)
{
    return (b->limit >= 0 && (int64_t)b->docs.len >= b->limit) || b->bytes >= BATCH_SOFT_BYTES;
}

static void
batch_set_pbrt(batch_t *b, ms_pos_t pos, ms_token_kind_t kind)
{
    bson_reinit(&b->pbrt);
    ms__token_build(&b->pbrt, pos, kind);
}

/*
 * Turns one entry into events for the batch. Sets *stop when the batch is full or the stream
 * ended; cs->next then says where the next batch starts.
 */
static bool
process_entry(ms_changestream_t *cs, const ms__entry_t *e, batch_t *b, bool *stop,
              bson_error_t *error)
{
    ms__opview_t v;
    ms_cs_event_t kinds[2];
    if (!ms__opview_init(&v, e->rec, error)) {
        return false;
    }
    int n = ms__changestream_entry_events(cs, &v.op, kinds);
    int first = 0;
    if (cs->next_partly_done && e->pos == cs->next) {
        /* Only an invalidate that followed the already delivered event is left. */
        first = (n > 1 && kinds[n - 1] == EV_INVALIDATE) ? n - 1 : n;
    }
    for (int k = first; k < n; k++) {
        bson_t ev;
        bool keep;
        if (!ms__changestream_build_event(cs, &v, kinds[k], &ev, error) ||
            !ms__changestream_apply_stages(cs, &ev, &keep, error)) {
            bson_destroy(&ev);
            return false;
        }
        if (keep) {
            b->bytes += ev.len;
            ms_docvec_push_copy(&b->docs, &ev);
        }
        bson_destroy(&ev);
        if (kinds[k] == EV_INVALIDATE) {
            /* The stream ends here, whether or not the user's stages kept the event. */
            batch_set_pbrt(b, e->pos, TOKEN_INVALIDATE);
            b->closed = true;
            cs->next = e->pos + 1;
            cs->next_partly_done = false;
            *stop = true;
            return true;
        }
        if (keep && batch_full(b)) {
            batch_set_pbrt(b, e->pos, TOKEN_EVENT);
            cs->next = k + 1 < n ? e->pos : e->pos + 1;
            cs->next_partly_done = k + 1 < n;
            *stop = true;
            return true;
        }
    }
    cs->next = e->pos + 1;
    cs->next_partly_done = false;
    return true;
}

static bool
history_lost(bson_error_t *error)
{
    return ms_set_error(error, MS_ERR_CHANGE_STREAM_HISTORY_LOST,
                        "Resume of change stream was not possible, as the resume point may no "
                        "longer be in the oplog.");
}

/* Fills the batch from the history without waiting. */
static bool
collect(ms_changestream_t *cs, batch_t *b, bson_error_t *error)
{
    ms__entry_t chunk[READ_CHUNK];
    if (b->limit == 0) {
        batch_set_pbrt(b, cs->next, cs->next_partly_done ? TOKEN_EVENT : TOKEN_HWM);
        return true;
    }
    /* Bounded: every pass moves cs->next past up to READ_CHUNK entries of a finite history. */
    for (;;) {
        size_t n = ms__oplog_read(cs->next, chunk, READ_CHUNK, &b->seen);
        bool stop = false;
        bool ok = cs->next >= b->seen.floor || history_lost(error);
        for (size_t k = 0; ok && !stop && k < n; k++) {
            ok = process_entry(cs, &chunk[k], b, &stop, error);
        }
        for (size_t k = 0; k < n; k++) {
            bson_destroy(chunk[k].rec);
        }
        if (!ok || stop) {
            return ok;
        }
        if (n == 0) {
            /* Caught up: everything before cs->next has been seen, and every later commit will
             * be after the newest position (which a no-op may have moved past the last entry). */
            if (b->seen.latest + 1 > cs->next) {
                cs->next = b->seen.latest + 1;
                cs->next_partly_done = false;
            }
            b->exhausted = true;
            batch_set_pbrt(b, cs->next, TOKEN_HWM);
            return true;
        }
    }
}

static void
reply_build(bson_t *reply, const char *batch_key, const batch_t *b, int64_t id, const char *ns)
{
    bson_t cursor;
    bson_t docs;
    char buf[16];
    const char *key;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "cursor", &cursor);
    BSON_APPEND_ARRAY_BEGIN(&cursor, batch_key, &docs);
    for (size_t k = 0; k < b->docs.len; k++) {
        bson_uint32_to_string((uint32_t)k, &key, buf, sizeof buf);
        bson_append_document(&docs, key, -1, b->docs.docs[k]);
    }
    bson_append_array_end(&cursor, &docs);
    BSON_APPEND_DOCUMENT(&cursor, "postBatchResumeToken", &b->pbrt);
    BSON_APPEND_INT64(&cursor, "id", id);
    BSON_APPEND_UTF8(&cursor, "ns", ns);
    bson_append_document_end(reply, &cursor);
    BSON_APPEND_DOUBLE(reply, "ok", 1.0);
}

/* ---- opening ------------------------------------------------------------------------------ */

/* Where the stream starts, checked against the history (286 lost, 280 token not found). */
static bool
resolve_start(ms_changestream_t *cs, const ms_cs_start_t *start, bson_error_t *error)
{
    ms__oplog_state_t st;
    ms__oplog_read(0, NULL, 0, &st);
    if (start->has_token) {
        cs->next = start->token_pos;
        if (start->token_kind == TOKEN_INVALIDATE) {
            cs->next = start->token_pos + 1; /* startAfter: past the drop and its invalidate */
        } else if (start->token_kind == TOKEN_EVENT) {
            cs->next_partly_done = true; /* the event itself was seen; a following invalidate not */
        }
    } else if (start->has_time) {
        cs->next = start->time_pos;
    } else {
        /* One tick beyond the most recent op, as mongod: the stream never returns it. */
        cs->next = st.latest + 1;
    }
    if (start->has_token && start->token_pos < st.floor) {
        return history_lost(error);
    }
    if (cs->next < st.floor) {
        return history_lost(error);
    }
    if (start->has_token && start->token_kind != TOKEN_HWM && !ms__oplog_has(start->token_pos)) {
        return ms_set_error(error, MS_ERR_CHANGE_STREAM_FATAL_ERROR,
                            "cannot resume stream; the resume token was not found. {_data: "
                            "\"82%016" PRIX64 "%02X\"}",
                            start->token_pos, (unsigned)start->token_kind);
    }
    return true;
}

static ms_changestream_t *
stream_new(const char *db, const char *coll, int64_t cursor_id)
{
    ms_changestream_t *cs = bson_malloc0(sizeof *cs);
    cs->db = bson_strdup(db);
    cs->coll = coll ? bson_strdup(coll) : NULL;
    cs->cursor_id = cursor_id;
    cs->stages = bson_new();
    return cs;
}

static bool
first_batch_size(const bson_t *cmd, int64_t *limit, bson_error_t *error)
{
    bson_iter_t it;
    *limit = DEFAULT_FIRST_BATCH;
    if (bson_iter_init_find(&it, cmd, "cursor") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &it) && bson_iter_find(&it, "batchSize")) {
        return ms__changestream_batch_size(&it, limit, error);
    }
    return true;
}

bool
ms_changestream_open(const char *db, const char *coll, const bson_t *cmd, int64_t cursor_id,
                     bool standalone, ms_changestream_t **out, bson_t *reply, bson_error_t *error)
{
    BSON_ASSERT_PARAM(db);
    BSON_ASSERT_PARAM(cmd);
    ms_cs_start_t start = {0};
    int64_t limit;
    batch_t b;
    bool ok = false;
    ms_changestream_t *cs = stream_new(db, coll, cursor_id);
    bson_init(reply);
    *out = NULL;
    batch_init(&b, 0);
    if (!ms__changestream_parse(cmd, cs, &start, error) ||
        !first_batch_size(cmd, &limit, error)) {
        goto done;
    }
    if (standalone) {
        ms_set_error(error, MS_ERR_LOCATION40573,
                     "The $changeStream stage is only supported on replica sets");
        goto done;
    }
    if (!ms__changestream_check_namespace(cs, error) || !resolve_start(cs, &start, error)) {
        goto done;
    }
    cs->ns =
        coll ? bson_strdup_printf("%s.%s", db, coll) : bson_strdup_printf("%s.$cmd.aggregate", db);
    b.limit = limit;
    if (!collect(cs, &b, error)) {
        goto done;
    }
    reply_build(reply, "firstBatch", &b, b.closed ? 0 : cursor_id, cs->ns);
    if (!b.closed) {
        *out = cs;
        cs = NULL;
    }
    ok = true;
done:
    batch_destroy(&b);
    ms_changestream_destroy(cs);
    return ok;
}

/* ---- getMore ------------------------------------------------------------------------------ */

static bool
getmore_options(const bson_t *cmd, int64_t *limit, int64_t *await_ms, bson_error_t *error)
{
    bson_iter_t it;
    *limit = -1;
    *await_ms = DEFAULT_AWAIT_MS;
    if (bson_iter_init_find(&it, cmd, "batchSize")) {
        if (!ms__changestream_batch_size(&it, limit, error)) {
            return false;
        }
        if (*limit == 0) {
            *limit = -1; /* getMore's batchSize 0 means the default */
        }
    }
    if (bson_iter_init_find(&it, cmd, "maxTimeMS")) {
        if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) < 0) {
            return ms_set_error(error, MS_ERR_BAD_VALUE,
                                "maxTimeMS must be a non-negative integer");
        }
        *await_ms = bson_iter_as_int64(&it);
    }
    return true;
}

bool
ms_changestream_getmore(ms_changestream_t *cs, const bson_t *cmd, bson_t *reply, bool *closed,
                        bson_error_t *error)
{
    BSON_ASSERT_PARAM(cs);
    int64_t limit;
    int64_t await_ms;
    batch_t b;
    bool ok = false;
    bson_init(reply);
    *closed = false;
    batch_init(&b, -1);
    if (!getmore_options(cmd, &limit, &await_ms, error)) {
        goto done;
    }
    b.limit = limit;
    int64_t deadline = ms__mono_ms() + await_ms;
    /* Bounded by the deadline: each pass either returns or waits for a commit or the time. */
    for (;;) {
        if (!collect(cs, &b, error)) {
            goto done;
        }
        if (b.docs.len > 0 || b.closed || !b.exhausted || ms__mono_ms() >= deadline) {
            break;
        }
        if (ms__oplog_wait(&b.seen, deadline)) {
            break; /* killCursors or shutdown: answer now with what there is */
        }
    }
    *closed = b.closed;
    reply_build(reply, "nextBatch", &b, b.closed ? 0 : cs->cursor_id, cs->ns);
    ok = true;
done:
    batch_destroy(&b);
    return ok;
}

void
ms_changestream_destroy(ms_changestream_t *cs)
{
    if (!cs) {
        return;
    }
    bson_free(cs->db);
    bson_free(cs->coll);
    bson_free(cs->ns);
    bson_destroy(cs->stages);
    bson_free(cs);
}

/*
 * Router cursors, as mongos's ClusterCursorManager and AsyncResultsMerger keep them
 * (s/query/cluster_cursor_manager.cpp, s/query/async_results_merger.cpp): one router cursor id
 * per client cursor, holding each shard's cursor and buffered batch. The next document is the
 * smallest by the sort across every shard that still has documents (a shard whose buffer is empty
 * is asked for its next batch first, so nothing smaller can come later), or any buffered one
 * when no sort was asked. skip and limit apply after the merge (the shards got limit + skip).
 * getMore and killCursors take the router's ids; killCursors kills the shards' cursors too.
 */
#include "router.h"

#include <string.h>

#define DEFAULT_FIRST_BATCH 101
#define BATCH_BYTES (8 * 1024 * 1024)

static pthread_mutex_t cursors_mu = PTHREAD_MUTEX_INITIALIZER;
static mr_cursor_t **cursors;
static size_t ncursors;

mr_cursor_t *
mr_cursor_new(const char *db, const char *ns)
{
    mr_cursor_t *cur = bson_malloc0(sizeof *cur);
    cur->db = bson_strdup(db);
    cur->ns = bson_strdup(ns);
    cur->limit = -1;
    cur->mongos = mr_mongos_current();
    ms_docvec_init(&cur->local);
    /* 53 random bits, never 0: drivers keep ids as int64 */
    int64_t id = 0;
    while (id == 0) {
        id = (int64_t)(((uint64_t)rand() << 22 ^ (uint64_t)rand()) & ((1ull << 53) - 1));
    }
    cur->id = id;
    return cur;
}

static bool
batch_of(const bson_t *reply, bson_t *cursor, bson_iter_t *batch)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, reply, "cursor") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return false;
    }
    bson_iter_document(&it, &len, &data);
    bson_init_static(cursor, data, len);
    if (!bson_iter_init(batch, cursor)) {
        return false;
    }
    bson_iter_t probe;
    return (bson_iter_init_find(&probe, cursor, "firstBatch") ||
            bson_iter_init_find(&probe, cursor, "nextBatch")) &&
           bson_iter_recurse(&probe, batch);
}

/* Takes a shard reply's batch into the remote's buffer and its cursor id. */
static bool
take_batch(mr_remote_t *r, const bson_t *reply, bson_error_t *error)
{
    bson_t cursor;
    bson_iter_t batch, it;
    if (!mr_reply_ok(reply, error)) {
        return false;
    }
    if (!batch_of(reply, &cursor, &batch)) {
        return ms_set_error(error, 8, "a shard's reply has no cursor");
    }
    ms_docvec_destroy(&r->buf);
    ms_docvec_init(&r->buf);
    r->pos = 0;
    while (bson_iter_next(&batch)) {
        uint32_t len;
        const uint8_t *data;
        bson_t doc;
        bson_iter_document(&batch, &len, &data);
        bson_init_static(&doc, data, len);
        ms_docvec_push_copy(&r->buf, &doc);
    }
    r->id = bson_iter_init_find(&it, &cursor, "id") ? bson_iter_as_int64(&it) : 0;
    return true;
}

bool
mr_cursor_add_remote(mr_cursor_t *cur, int shard, const bson_t *reply, bson_error_t *error)
{
    mr_remote_t *r = &cur->remote[cur->nremote];
    memset(r, 0, sizeof *r);
    ms_docvec_init(&r->buf);
    r->shard = shard;
    cur->nremote++;
    return take_batch(r, reply, error);
}

static bool
remote_get_more(mr_client_t *client, mr_cursor_t *cur, mr_remote_t *r, bson_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    const char *dot = strchr(cur->ns, '.');
    BSON_APPEND_INT64(&cmd, "getMore", r->id);
    BSON_APPEND_UTF8(&cmd, "collection", dot ? dot + 1 : cur->ns);
    BSON_APPEND_UTF8(&cmd, "$db", cur->db);
    bool ok = mr_shard_run(client, r->shard, &cmd, &reply, error) && take_batch(r, &reply, error);
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return ok;
}

static bool
has_buffered(const mr_remote_t *r)
{
    return r->pos < r->buf.len;
}

/* The next merged document (borrowed until the next call), or NULL when every shard is done. */
static bool
next_doc(mr_client_t *client, mr_cursor_t *cur, const bson_t **out, bson_error_t *error)
{
    *out = NULL;
    if (cur->use_local) {
        *out = cur->local_pos < cur->local.len ? cur->local.docs[cur->local_pos++] : NULL;
        return true;
    }
    mr_remote_t *best = NULL;
    for (int k = 0; k < cur->nremote; k++) {
        mr_remote_t *r = &cur->remote[k];
        /* Bounded: a shard cursor ends; each getMore either returns documents or closes. */
        while (!has_buffered(r) && r->id != 0) {
            if (!remote_get_more(client, cur, r, error)) {
                return false;
            }
        }
        if (!has_buffered(r)) {
            continue;
        }
        if (!best || (cur->sort && ms_sort_cmp(cur->sort, r->buf.docs[r->pos],
                                               best->buf.docs[best->pos]) < 0)) {
            best = r;
        }
        if (!cur->sort) {
            break;
        }
    }
    if (best) {
        *out = best->buf.docs[best->pos++];
    }
    return true;
}

static bool
exhausted(const mr_cursor_t *cur)
{
    if (cur->limit == 0) {
        return true;
    }
    if (cur->use_local) {
        return cur->local_pos >= cur->local.len;
    }
    for (int k = 0; k < cur->nremote; k++) {
        if (has_buffered(&cur->remote[k]) || cur->remote[k].id != 0) {
            return false;
        }
    }
    return true;
}

static void
registry_add(mr_cursor_t *cur)
{
    pthread_mutex_lock(&cursors_mu);
    cursors = bson_realloc(cursors, (ncursors + 1) * sizeof *cursors);
    cursors[ncursors++] = cur;
    pthread_mutex_unlock(&cursors_mu);
}

/* Takes the cursor out of the registry (the caller then owns it). */
static mr_cursor_t *
registry_take(int64_t id)
{
    mr_cursor_t *found = NULL;
    pthread_mutex_lock(&cursors_mu);
    for (size_t k = 0; k < ncursors; k++) {
        /* A cursor lives on the mongos that opened it: another one does not know its id. */
        if (cursors[k]->id == id && cursors[k]->mongos == mr_mongos_current()) {
            found = cursors[k];
            cursors[k] = cursors[--ncursors];
            break;
        }
    }
    pthread_mutex_unlock(&cursors_mu);
    return found;
}

bool
mr_cursor_reply(mr_cmd_t *c, mr_cursor_t *cur, int64_t batch, bool first, bson_error_t *error)
{
    bson_t cursor, docs;
    char key[24];
    size_t n = 0;
    size_t bytes = 0;
    BSON_APPEND_DOCUMENT_BEGIN(c->reply, "cursor", &cursor);
    BSON_APPEND_ARRAY_BEGIN(&cursor, first ? "firstBatch" : "nextBatch", &docs);
    bool ok = true;
    /* Bounded by batch, the byte budget and the shards' results. */
    while ((batch <= 0 || (int64_t)n < batch) && bytes < BATCH_BYTES && cur->limit != 0) {
        const bson_t *doc = NULL;
        ok = next_doc(c->client, cur, &doc, error);
        if (!ok || !doc) {
            break;
        }
        if (cur->skip > 0) {
            cur->skip--;
            continue;
        }
        snprintf(key, sizeof key, "%zu", n++);
        BSON_APPEND_DOCUMENT(&docs, key, doc);
        bytes += doc->len;
        if (cur->limit > 0) {
            cur->limit--;
        }
    }
    bson_append_array_end(&cursor, &docs);
    bool done = !ok || exhausted(cur);
    BSON_APPEND_INT64(&cursor, "id", done ? 0 : cur->id);
    BSON_APPEND_UTF8(&cursor, "ns", cur->ns);
    bson_append_document_end(c->reply, &cursor);
    if (done) {
        mr_cursor_destroy(c->client, cur);
    } else {
        registry_add(cur);
    }
    return ok;
}

static void
kill_remotes(mr_client_t *client, mr_cursor_t *cur)
{
    const char *dot = strchr(cur->ns, '.');
    for (int k = 0; k < cur->nremote; k++) {
        bson_t cmd = BSON_INITIALIZER, reply, ids;
        bson_error_t ignored;
        if (cur->remote[k].id == 0) {
            continue;
        }
        BSON_APPEND_UTF8(&cmd, "killCursors", dot ? dot + 1 : cur->ns);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "cursors", &ids);
        BSON_APPEND_INT64(&ids, "0", cur->remote[k].id);
        bson_append_array_end(&cmd, &ids);
        BSON_APPEND_UTF8(&cmd, "$db", cur->db);
        mr_shard_run(client, cur->remote[k].shard, &cmd, &reply, &ignored);
        bson_destroy(&cmd);
        bson_destroy(&reply);
        cur->remote[k].id = 0;
    }
}

void
mr_cursor_destroy(mr_client_t *client, mr_cursor_t *cur)
{
    if (!cur) {
        return;
    }
    if (client) {
        kill_remotes(client, cur);
    }
    mr_changestream_destroy(client, cur->cs);
    for (int k = 0; k < cur->nremote; k++) {
        ms_docvec_destroy(&cur->remote[k].buf);
    }
    ms_docvec_destroy(&cur->local);
    if (cur->sort) {
        bson_destroy(cur->sort);
    }
    bson_free(cur->db);
    bson_free(cur->ns);
    bson_free(cur);
}

bool
mr_cmd_get_more(mr_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->cmd, "getMore") || !BSON_ITER_HOLDS_INT64(&it)) {
        return ms_set_error(error, 14, "Field 'getMore' must be of type long in: getMore");
    }
    int64_t id = bson_iter_int64(&it);
    int64_t batch = bson_iter_init_find(&it, c->cmd, "batchSize") ? bson_iter_as_int64(&it) : 0;
    mr_cursor_t *cur = registry_take(id);
    if (!cur) {
        return ms_set_error(error, 43, "cursor id %lld not found", (long long)id);
    }
    if (cur->cs) {
        return mr_changestream_get_more(c, cur, error);
    }
    return mr_cursor_reply(c, cur, batch, false, error);
}

bool
mr_cursor_drain(mr_client_t *client, mr_cursor_t *cur, ms_docvec_t *out, bson_error_t *error)
{
    ms_docvec_init(out);
    /* Bounded by the shards' results (and the limit). */
    while (cur->limit != 0) {
        const bson_t *doc = NULL;
        if (!next_doc(client, cur, &doc, error)) {
            return false;
        }
        if (!doc) {
            break;
        }
        ms_docvec_push_copy(out, doc);
        if (cur->limit > 0) {
            cur->limit--;
        }
    }
    return true;
}

void
mr_cursor_register(mr_cursor_t *cur)
{
    registry_add(cur);
}

bool
mr_cmd_kill_cursors(mr_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it, ids;
    bson_t killed, not_found;
    char key[24];
    uint32_t nk = 0, nn = 0;
    if (!bson_iter_init_find(&it, c->cmd, "cursors") || !BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, 40414,
                            "BSON field 'killCursors.cursors' is missing but a required field");
    }
    bson_iter_recurse(&it, &ids);
    bson_init(&killed);
    bson_init(&not_found);
    while (bson_iter_next(&ids)) {
        int64_t id = bson_iter_as_int64(&ids);
        mr_cursor_t *cur = registry_take(id);
        snprintf(key, sizeof key, "%u", cur ? nk++ : nn++);
        BSON_APPEND_INT64(cur ? &killed : &not_found, key, id);
        mr_cursor_destroy(c->client, cur);
    }
    bson_append_array(c->reply, "cursorsKilled", -1, &killed);
    bson_append_array(c->reply, "cursorsNotFound", -1, &not_found);
    bson_destroy(&killed);
    bson_destroy(&not_found);
    bson_init(&killed);
    bson_append_array(c->reply, "cursorsAlive", -1, &killed);
    bson_append_array(c->reply, "cursorsUnknown", -1, &killed);
    bson_destroy(&killed);
    return true;
}

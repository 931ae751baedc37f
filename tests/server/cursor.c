/*
 * Cursors: materialised results served in batches (getMore), and change streams (whose getMore
 * waits in changestream.c without the storage lock). Idle cursors die after 10 minutes.
 */
#include "store-private.h"

#include <stdlib.h>
#include <string.h>

#define CURSOR_TIMEOUT_MS (10 * 60 * 1000)
#define BATCH_BYTES_MAX (MS_MAX_BSON_BYTES - 64 * 1024)

typedef struct cursor_t {
    int64_t id;
    char *ns;
    ms_docvec_t results;
    size_t pos;
    ms_changestream_t *cs;
    int64_t last_used_ms;
    bool busy;
    bool killed;
    bool has_session;
    uint8_t session[16]; /* lsid.id of the command that opened it */
    struct cursor_t *next;
} cursor_t;

static pthread_mutex_t cursor_mu = PTHREAD_MUTEX_INITIALIZER;
static cursor_t *cursors;
static uint64_t rng_state;

static void
cursor_free(cursor_t *cur)
{
    ms_docvec_destroy(&cur->results);
    if (cur->cs) {
        ms_changestream_destroy(cur->cs);
    }
    bson_free(cur->ns);
    bson_free(cur);
}

/* A fresh non-zero positive id (caller holds cursor_mu). */
static int64_t
fresh_id(void)
{
    if (!rng_state) {
        rng_state = (uint64_t)ms_now_ms() * 6364136223846793005ull + 1442695040888963407ull;
    }
    for (;;) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        int64_t id = (int64_t)(rng_state & 0x7FFFFFFFFFFFFFFFull);
        bool used = id == 0;
        for (cursor_t *c = cursors; c && !used; c = c->next) {
            used = c->id == id;
        }
        if (!used) {
            return id;
        }
    }
}

int64_t
ms_cursor_new_id(void)
{
    pthread_mutex_lock(&cursor_mu);
    int64_t id = fresh_id();
    pthread_mutex_unlock(&cursor_mu);
    return id;
}

static void
link_cursor(cursor_t *cur)
{
    pthread_mutex_lock(&cursor_mu);
    cur->last_used_ms = ms_now_ms();
    if (!cur->id) {
        cur->id = fresh_id();
    }
    cur->next = cursors;
    cursors = cur;
    pthread_mutex_unlock(&cursor_mu);
}

int64_t
ms_cursor_add(const char *ns, ms_docvec_t *results, size_t pos, const bson_value_t *lsid)
{
    (void)lsid;
    cursor_t *cur = bson_malloc0(sizeof *cur);
    cur->ns = bson_strdup(ns);
    cur->results = *results;
    cur->pos = pos;
    ms_docvec_init(results);
    link_cursor(cur);
    return cur->id;
}

void
ms_cursor_add_changestream(int64_t id, const char *ns, ms_changestream_t *cs)
{
    cursor_t *cur = bson_malloc0(sizeof *cur);
    cur->ns = bson_strdup(ns);
    ms_docvec_init(&cur->results);
    cur->cs = cs;
    cur->id = id;
    link_cursor(cur);
}

size_t
ms_cursor_batch_end(const ms_docvec_t *results, size_t pos, int64_t batch_size)
{
    size_t bytes = 0;
    int64_t n = 0;
    while (pos < results->len && (batch_size <= 0 || n < batch_size)) {
        uint32_t len = results->docs[pos]->len;
        if (n > 0 && bytes + len > BATCH_BYTES_MAX) {
            break;
        }
        bytes += len;
        n++;
        pos++;
    }
    return pos;
}

void
ms_cursor_append_batch(bson_t *reply, int64_t id, const char *ns, const char *field,
                       const ms_docvec_t *results, size_t from, size_t to)
{
    bson_t cursor, arr;
    ms_metrics_add(MS_METRIC_RETURNED, (int64_t)(to - from));
    BSON_APPEND_DOCUMENT_BEGIN(reply, "cursor", &cursor);
    bson_append_array_begin(&cursor, field, -1, &arr);
    for (size_t i = from; i < to; i++) {
        char key[16];
        const char *k;
        size_t klen = bson_uint32_to_string((uint32_t)(i - from), &k, key, sizeof key);
        bson_append_document(&arr, k, (int)klen, results->docs[i]);
    }
    bson_append_array_end(&cursor, &arr);
    BSON_APPEND_INT64(&cursor, "id", id);
    BSON_APPEND_UTF8(&cursor, "ns", ns);
    bson_append_document_end(reply, &cursor);
}

void
ms_cursor_reply(const ms_cmd_t *c, bson_t *reply, const char *ns, ms_docvec_t *results,
                int64_t batch_size)
{
    /* A first batch of size 0 is empty (only opens the cursor); later ones 0 means default. */
    size_t to = batch_size == 0 ? 0 : ms_cursor_batch_end(results, 0, batch_size);
    int64_t id = 0;
    if (to < results->len) {
        /* The cursor takes the whole vector; the first batch is served from it. */
        cursor_t *cur = bson_malloc0(sizeof *cur);
        cur->ns = bson_strdup(ns);
        cur->results = *results;
        cur->pos = to;
        ms_docvec_init(results);
        pthread_mutex_lock(&cursor_mu);
        cur->id = id = fresh_id();
        if (c && c->has_lsid && c->lsid_id.value_type == BSON_TYPE_BINARY &&
            c->lsid_id.value.v_binary.data_len == 16) {
            cur->has_session = true;
            memcpy(cur->session, c->lsid_id.value.v_binary.data, 16);
        }
        ms_cursor_append_batch(reply, id, ns, "firstBatch", &cur->results, 0, to);
        cur->last_used_ms = ms_now_ms();
        cur->next = cursors;
        cursors = cur;
        pthread_mutex_unlock(&cursor_mu);
        return;
    }
    ms_cursor_append_batch(reply, id, ns, "firstBatch", results, 0, to);
}

/* Finds and marks busy; NULL when unknown or already busy (*busy set). */
static cursor_t *
acquire(int64_t id, bool *busy)
{
    *busy = false;
    pthread_mutex_lock(&cursor_mu);
    cursor_t *cur = cursors;
    while (cur && cur->id != id) {
        cur = cur->next;
    }
    if (cur && (cur->busy || cur->killed)) {
        *busy = cur->busy;
        cur = NULL;
    }
    if (cur) {
        cur->busy = true;
    }
    pthread_mutex_unlock(&cursor_mu);
    return cur;
}

static void
unlink_locked(cursor_t *cur)
{
    for (cursor_t **p = &cursors; *p; p = &(*p)->next) {
        if (*p == cur) {
            *p = cur->next;
            return;
        }
    }
}

/* Releases a busy cursor; drops it when done or killed meanwhile. */
static void
release(cursor_t *cur, bool done)
{
    pthread_mutex_lock(&cursor_mu);
    cur->busy = false;
    cur->last_used_ms = ms_now_ms();
    bool drop = done || cur->killed;
    if (drop) {
        unlink_locked(cur);
    }
    pthread_mutex_unlock(&cursor_mu);
    if (drop) {
        cursor_free(cur);
    }
}

static bool
parse_get_more(ms_cmd_t *c, int64_t *id, const char **coll, int64_t *batch_size,
               bson_error_t *error)
{
    static const char *const allowed[] = {"collection", "batchSize", "term",
                                          "lastKnownCommittedOpTime", NULL};
    bson_iter_t it;
    if (!ms_check_fields(c, allowed, error)) {
        return false;
    }
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_INT64(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'getMore.getMore' is the wrong type '%s', "
                            "expected type 'long'",
                            BSON_ITER_HOLDS_INT32(&it) ? "int" : "other");
    }
    *id = bson_iter_int64(&it);
    if (!bson_iter_init_find(&it, c->cmd, "collection") || !BSON_ITER_HOLDS_UTF8(&it)) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'getMore.collection' is missing but a "
                            "required field");
    }
    *coll = bson_iter_utf8(&it, NULL);
    *batch_size = 0;
    if (bson_iter_init_find(&it, c->cmd, "batchSize")) {
        if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) < 0) {
            return ms_set_error(error, MS_ERR_BAD_VALUE,
                                "Batch size for getMore must be non-negative, but "
                                "received: %lld",
                                (long long)bson_iter_as_int64(&it));
        }
        *batch_size = bson_iter_as_int64(&it);
    }
    /* Checked before the cursor is checked out, as mongod's generic arguments: it survives. */
    if (bson_iter_init_find(&it, c->cmd, "maxTimeMS") &&
        (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) < 0)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "maxTimeMS must be a non-negative integer");
    }
    return true;
}

/* A change stream's next batch; *closed when the cursor is done (invalidated). */
static bool
change_stream_batch(ms_cmd_t *c, cursor_t *cur, bson_t *reply, bool *closed,
                    bson_error_t *error)
{
    bson_t tmp;
    bson_iter_t it;
    bool ok = ms_changestream_getmore(cur->cs, c->cmd, &tmp, closed, error);
    /* The dispatcher adds its own "ok". */
    if (ok && bson_iter_init(&it, &tmp)) {
        while (bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), "ok") != 0) {
                bson_append_iter(reply, NULL, 0, &it);
            }
        }
    }
    bson_destroy(&tmp);
    return ok;
}

/*
 * Everything after the checks that leave a cursor alive (mongod's cursorFreer): from here on a
 * failed getMore kills its cursor, and the error is labelled by the cursor's kind.
 */
static bool
get_more_checked_out(ms_cmd_t *c, cursor_t *cur, int64_t batch_size, bson_t *reply,
                     bson_error_t *error)
{
    ms_failpoint_hit_t hit;
    bool closed = false;
    c->change_stream_cursor = cur->cs != NULL;
    if (ms_failpoint_check(MS_FP_FAIL_GET_MORE_AFTER_CURSOR_CHECKOUT, c->command, c->conn,
                           cur->ns, &hit)) {
        ms_set_error(error, hit.error_code, "Hit the 'failGetMoreAfterCursorCheckout' failpoint");
        ms_failpoint_hit_destroy(&hit);
        release(cur, true);
        return false;
    }
    if (cur->cs) {
        bool ok = change_stream_batch(c, cur, reply, &closed, error);
        release(cur, closed || !ok);
        return ok;
    }
    size_t to = ms_cursor_batch_end(&cur->results, cur->pos, batch_size);
    bool exhausted_after = to >= cur->results.len;
    ms_cursor_append_batch(reply, exhausted_after ? 0 : cur->id, cur->ns, "nextBatch",
                           &cur->results, cur->pos, to);
    cur->pos = to;
    release(cur, exhausted_after);
    return true;
}

MS_HANDLER(get_more)
{
    int64_t id = 0, batch_size = 0;
    const char *coll = NULL;
    bool busy;
    if (!parse_get_more(c, &id, &coll, &batch_size, error)) {
        return false;
    }
    char *ns = bson_strdup_printf("%s.%s", c->db, coll);
    bool ok = false;
    cursor_t *cur = acquire(id, &busy);
    if (!cur) {
        /* mongod's CursorManager::pinCursor */
        ms_set_error(error, busy ? MS_ERR_CURSOR_IN_USE : MS_ERR_CURSOR_NOT_FOUND,
                     busy ? "cursor id %lld is already in use" : "cursor id %lld not found",
                     (long long)id);
        goto done;
    }
    if (strcmp(cur->ns, ns) != 0) {
        ms_set_error(error, MS_ERR_UNAUTHORIZED,
                     "Requested getMore on namespace '%s', but cursor belongs to a "
                     "different namespace %s",
                     ns, cur->ns);
        release(cur, false);
        goto done;
    }
    if (!cur->cs && bson_has_field(c->cmd, "maxTimeMS")) {
        ms_set_error(error, MS_ERR_BAD_VALUE,
                     "cannot set maxTimeMS on getMore command for a non-awaitData "
                     "cursor");
        release(cur, false);
        goto done;
    }
    ok = get_more_checked_out(c, cur, batch_size, reply, error);
done:
    bson_free(ns);
    return ok;
}

MS_HANDLER(kill_cursors)
{
    static const char *const allowed[] = {"cursors", NULL};
    bson_iter_t it, child;
    bson_t killed, not_found, empty;
    if (!ms_check_fields(c, allowed, error)) {
        return false;
    }
    if (!bson_iter_init_find(&it, c->cmd, "cursors") || !BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'killCursors.cursors' is missing but a "
                            "required field");
    }
    bson_iter_recurse(&it, &child);
    BSON_APPEND_ARRAY_BEGIN(reply, "cursorsKilled", &killed);
    bson_t nf_tmp = BSON_INITIALIZER;
    uint32_t nk = 0, nn = 0;
    bool woke = false;
    while (bson_iter_next(&child)) {
        int64_t id = bson_iter_as_int64(&child);
        cursor_t *found = NULL;
        pthread_mutex_lock(&cursor_mu);
        for (cursor_t *cur = cursors; cur; cur = cur->next) {
            if (cur->id == id && !cur->killed) {
                found = cur;
                break;
            }
        }
        if (found && found->busy) {
            found->killed = true; /* the getMore in progress frees it */
            woke = true;
            found = NULL;
            pthread_mutex_unlock(&cursor_mu);
            char key[16];
            const char *k;
            bson_uint32_to_string(nk++, &k, key, sizeof key);
            BSON_APPEND_INT64(&killed, k, id);
            continue;
        }
        if (found) {
            unlink_locked(found);
        }
        pthread_mutex_unlock(&cursor_mu);
        char key[16];
        const char *k;
        if (found) {
            cursor_free(found);
            bson_uint32_to_string(nk++, &k, key, sizeof key);
            BSON_APPEND_INT64(&killed, k, id);
        } else {
            bson_uint32_to_string(nn++, &k, key, sizeof key);
            BSON_APPEND_INT64(&nf_tmp, k, id);
        }
    }
    bson_append_array_end(reply, &killed);
    BSON_APPEND_ARRAY(reply, "cursorsNotFound", &nf_tmp);
    bson_destroy(&nf_tmp);
    BSON_APPEND_ARRAY_BEGIN(reply, "cursorsAlive", &empty);
    bson_append_array_end(reply, &empty);
    BSON_APPEND_ARRAY_BEGIN(reply, "cursorsUnknown", &not_found);
    bson_append_array_end(reply, &not_found);
    if (woke) {
        ms_changestream_wake_all();
    }
    return true;
}

void
ms_cursor_set_session(int64_t id, const ms_cmd_t *c)
{
    if (!c->has_lsid || c->lsid_id.value_type != BSON_TYPE_BINARY ||
        c->lsid_id.value.v_binary.data_len != 16) {
        return;
    }
    pthread_mutex_lock(&cursor_mu);
    for (cursor_t *cur = cursors; cur; cur = cur->next) {
        if (cur->id == id) {
            cur->has_session = true;
            memcpy(cur->session, c->lsid_id.value.v_binary.data, 16);
        }
    }
    pthread_mutex_unlock(&cursor_mu);
}

void
ms_cursor_kill_session(const uint8_t *id)
{
    cursor_t *dead = NULL;
    bool woke = false;
    pthread_mutex_lock(&cursor_mu);
    for (cursor_t **p = &cursors; *p;) {
        cursor_t *cur = *p;
        if (!cur->has_session || cur->killed || (id && memcmp(cur->session, id, 16) != 0)) {
            p = &cur->next;
        } else if (cur->busy) {
            cur->killed = true; /* the getMore in progress frees it */
            woke = true;
            p = &cur->next;
        } else {
            *p = cur->next;
            cur->next = dead;
            dead = cur;
        }
    }
    pthread_mutex_unlock(&cursor_mu);
    while (dead) {
        cursor_t *next = dead->next;
        cursor_free(dead);
        dead = next;
    }
    if (woke) {
        ms_changestream_wake_all();
    }
}

void
ms_cursor_reap(int64_t now_ms)
{
    cursor_t *dead = NULL;
    pthread_mutex_lock(&cursor_mu);
    for (cursor_t **p = &cursors; *p;) {
        cursor_t *cur = *p;
        if (!cur->busy && now_ms - cur->last_used_ms > CURSOR_TIMEOUT_MS) {
            *p = cur->next;
            cur->next = dead;
            dead = cur;
        } else {
            p = &cur->next;
        }
    }
    pthread_mutex_unlock(&cursor_mu);
    while (dead) {
        cursor_t *next = dead->next;
        cursor_free(dead);
        dead = next;
    }
}

void
ms_cursor_shutdown(void)
{
    ms_cursor_reap(INT64_MAX / 2);
}

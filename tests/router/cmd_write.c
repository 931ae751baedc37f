/*
 * insert, update, delete and findAndModify through the router: the statements planned by
 * write_plan.c are sent in runs, and the shards' replies merged into one (n, nModified, upserted
 * and writeErrors with the client's statement indexes, the first writeConcernError), as mongos's
 * BatchWriteExec does (s/write_ops/batch_write_exec.cpp).
 *
 * Runs: an ordered batch without a txnNumber goes statement run by statement run in order
 * (consecutive statements for the same single shard share a command) and stops at the first
 * error. A retryable batch (txnNumber) sends each shard one command with all its statements:
 * the test server keeps one reply per (session, txnNumber), so a second command with the same
 * txnNumber would be answered as a retry. When all statements go to one shard, the command goes
 * there unchanged and its reply is the client's.
 */
#include "write-private.h"

#include <string.h>

typedef struct {
    int64_t n;
    int64_t n_modified;
    ms_docvec_t upserted;     /* {index, _id} */
    ms_docvec_t write_errors; /* {index, code, errmsg, ...} */
    bson_t wce;
    bool has_wce;
    bool stop;
} merged_t;

static void
add_indexed(ms_docvec_t *out, const bson_t *entry, size_t index)
{
    bson_t *d = bson_new();
    bson_iter_t it;
    BSON_APPEND_INT32(d, "index", (int32_t)index);
    bson_iter_init(&it, entry);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "index") != 0) {
            bson_append_value(d, bson_iter_key(&it), -1, bson_iter_value(&it));
        }
    }
    ms_docvec_push_owned(out, d);
}

/* Adds a shard's reply for the statements idx[0..n) (its index k is statement idx[k]). */
static void
merge_reply(merged_t *m, const bson_t *reply, const size_t *idx, size_t n, bool ordered)
{
    bson_iter_t it;
    bson_error_t error;
    if (!mr_reply_ok(reply, &error)) {
        /* The shard refused the whole command: every statement of it (the first when ordered)
         * gets that error, as mongos reports a failed child batch. */
        bson_t e = BSON_INITIALIZER;
        BSON_APPEND_INT32(&e, "code", (int32_t)error.code);
        BSON_APPEND_UTF8(&e, "errmsg", error.message);
        for (size_t k = 0; k < (ordered ? 1 : n); k++) {
            add_indexed(&m->write_errors, &e, idx[k]);
        }
        bson_destroy(&e);
        m->stop = ordered;
        return;
    }
    if (bson_iter_init_find(&it, reply, "n")) {
        m->n += bson_iter_as_int64(&it);
    }
    if (bson_iter_init_find(&it, reply, "nModified")) {
        m->n_modified += bson_iter_as_int64(&it);
    }
    const char *lists[] = {"upserted", "writeErrors"};
    for (int l = 0; l < 2; l++) {
        bson_t arr;
        bson_iter_t e;
        if (!mr__get_doc(reply, lists[l], &arr)) {
            continue;
        }
        bson_iter_init(&e, &arr);
        while (bson_iter_next(&e)) {
            bson_t doc;
            bson_iter_t ix;
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&e, &len, &data);
            bson_init_static(&doc, data, len);
            size_t k = bson_iter_init_find(&ix, &doc, "index") ? (size_t)bson_iter_as_int64(&ix) : 0;
            add_indexed(l == 0 ? &m->upserted : &m->write_errors, &doc, k < n ? idx[k] : 0);
            m->stop = m->stop || (l == 1 && ordered);
        }
    }
    bson_t wce;
    if (!m->has_wce && mr__get_doc(reply, "writeConcernError", &wce)) {
        bson_copy_to(&wce, &m->wce);
        m->has_wce = true;
    }
}

static void
add_router_error(merged_t *m, const bson_t *err, size_t index, bool ordered)
{
    add_indexed(&m->write_errors, err, index);
    m->stop = ordered;
}

/* Sends statements idx[0..n) to shard s as one command. */
static bool
send_run(mr_cmd_t *c, mr_write_t *w, int s, const size_t *idx, size_t n, merged_t *m,
         bson_error_t *error)
{
    static const char *const drop_one[] = {"documents", "updates", "deletes", "stmtIds", NULL};
    bson_t cmd, arr, reply;
    char key[24];
    mr_cmd_copy_without(c->cmd, drop_one, &cmd);
    BSON_APPEND_ARRAY_BEGIN(&cmd, w->array, &arr);
    for (size_t k = 0; k < n; k++) {
        snprintf(key, sizeof key, "%zu", k);
        BSON_APPEND_DOCUMENT(&arr, key, w->stmts[idx[k]]);
    }
    bson_append_array_end(&cmd, &arr);
    bool ok = mr_shard_run(c->client, s, &cmd, &reply, error);
    if (ok) {
        merge_reply(m, &reply, idx, n, w->ordered);
    }
    bson_destroy(&cmd);
    bson_destroy(&reply);
    return ok;
}

/* One command per shard with every statement that goes there (unordered or retryable). */
static bool
send_per_shard(mr_cmd_t *c, mr_write_t *w, merged_t *m, bson_error_t *error)
{
    size_t *idx = bson_malloc0((w->n + 1) * sizeof *idx);
    bool ok = true;
    for (size_t k = 0; k < w->n; k++) {
        if (w->errors[k]) {
            add_router_error(m, w->errors[k], k, false);
        }
    }
    for (int s = 0; ok && s < mr_config.nshards; s++) {
        size_t n = 0;
        for (size_t k = 0; k < w->n; k++) {
            if (!w->errors[k] && (w->masks[k] & (1u << s))) {
                idx[n++] = k;
            }
        }
        ok = n == 0 || send_run(c, w, s, idx, n, m, error);
    }
    bson_free(idx);
    return ok;
}

/* Ordered: runs of consecutive statements for one shard, in order, stopping at an error. */
static bool
send_ordered(mr_cmd_t *c, mr_write_t *w, merged_t *m, bson_error_t *error)
{
    size_t *idx = bson_malloc0((w->n + 1) * sizeof *idx);
    bool ok = true;
    for (size_t k = 0; ok && !m->stop && k < w->n;) {
        if (w->errors[k]) {
            add_router_error(m, w->errors[k], k, true);
            break;
        }
        size_t n = 0;
        uint32_t mask = w->masks[k];
        bool single = __builtin_popcount(mask) == 1;
        while (k < w->n && !w->errors[k] && w->masks[k] == mask && (single || n == 0)) {
            idx[n++] = k++;
        }
        for (int s = 0; ok && s < mr_config.nshards; s++) {
            if (mask & (1u << s)) {
                ok = send_run(c, w, s, idx, n, m, error);
            }
        }
    }
    bson_free(idx);
    return ok;
}

static int
by_index(const void *a, const void *b)
{
    bson_iter_t ia, ib;
    const bson_t *da = *(bson_t *const *)a;
    const bson_t *db = *(bson_t *const *)b;
    bson_iter_init_find(&ia, da, "index");
    bson_iter_init_find(&ib, db, "index");
    return bson_iter_int32(&ia) - bson_iter_int32(&ib);
}

static void
append_list(bson_t *reply, const char *name, ms_docvec_t *v)
{
    bson_t arr;
    char key[24];
    if (v->len == 0) {
        return;
    }
    qsort(v->docs, v->len, sizeof *v->docs, by_index);
    BSON_APPEND_ARRAY_BEGIN(reply, name, &arr);
    for (size_t k = 0; k < v->len; k++) {
        snprintf(key, sizeof key, "%zu", k);
        BSON_APPEND_DOCUMENT(&arr, key, v->docs[k]);
    }
    bson_append_array_end(reply, &arr);
}

static uint32_t
union_mask(const mr_write_t *w, bool *any_error)
{
    uint32_t mask = 0;
    *any_error = false;
    for (size_t k = 0; k < w->n; k++) {
        mask |= w->masks[k];
        *any_error = *any_error || w->errors[k];
    }
    return mask;
}

static bool
run_write(mr_cmd_t *c, mr_write_kind_t kind, const char *array, bson_error_t *error)
{
    mr_write_t w = {.kind = kind, .array = array};
    merged_t m;
    bool ok = false;
    bool any_error = false;
    memset(&m, 0, sizeof m);
    ms_docvec_init(&m.upserted);
    ms_docvec_init(&m.write_errors);
    if (!mr__write_plan(c, &w, error)) {
        goto done;
    }
    uint32_t mask = union_mask(&w, &any_error);
    if (!mr_txn_pin(c->cmd, mask, error)) {
        goto done;
    }
    if (!any_error && __builtin_popcount(mask) == 1 && !w.rewritten) {
        ok = mr_forward(c, __builtin_ctz(mask), error);
        goto done;
    }
    ok = (w.retryable || !w.ordered) ? send_per_shard(c, &w, &m, error)
                                     : send_ordered(c, &w, &m, error);
    if (!ok) {
        goto done;
    }
    BSON_APPEND_INT32(c->reply, "n", (int32_t)m.n);
    if (kind == MR_W_UPDATE) {
        BSON_APPEND_INT32(c->reply, "nModified", (int32_t)m.n_modified);
    }
    append_list(c->reply, "upserted", &m.upserted);
    append_list(c->reply, "writeErrors", &m.write_errors);
    if (m.has_wce) {
        BSON_APPEND_DOCUMENT(c->reply, "writeConcernError", &m.wce);
    }
done:
    if (m.has_wce) {
        bson_destroy(&m.wce);
    }
    ms_docvec_destroy(&m.upserted);
    ms_docvec_destroy(&m.write_errors);
    mr__write_destroy(&w);
    return ok;
}

bool
mr_cmd_insert(mr_cmd_t *c, bson_error_t *error)
{
    return run_write(c, MR_W_INSERT, "documents", error);
}

bool
mr_cmd_update(mr_cmd_t *c, bson_error_t *error)
{
    return run_write(c, MR_W_UPDATE, "updates", error);
}

bool
mr_cmd_delete(mr_cmd_t *c, bson_error_t *error)
{
    return run_write(c, MR_W_DELETE, "deletes", error);
}

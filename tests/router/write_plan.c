/*
 * Which shards each write statement goes to, with mongos 6.0's rules
 * (src/mongo/s/chunk_manager_targeter.cpp, targetInsert / targetUpdate / targetDelete):
 *  - an insert goes to the chunk of its shard key (missing fields are null);
 *  - a multi update or delete goes to every shard the filter can reach;
 *  - an upsert needs an equality on the full shard key (ShardKeyNotFound 61, "Failed to target
 *    upsert by query :: could not extract exact shard key");
 *  - a single update must target one shard by its filter (or, as a replacement, by the
 *    replacement's shard key), or be an exact match on _id (then it is broadcast); else
 *    InvalidOptions 72 "A {multi:false} update on a sharded collection must contain an exact
 *    match on _id ...";
 *  - a single delete needs the full shard key or an exact _id; else ShardKeyNotFound 61
 *    "A single delete on a sharded collection must contain an exact match on _id ...".
 * With --shardkeyless-writes, 7.1's two-phase write (s/write_without_shard_key_util.cpp) takes
 * the place of the last two errors: find one matching document's _id, then write it by _id.
 * A multi update that would change a document's shard key fails (update_stage.cpp,
 * InvalidOptions 72 "Multi-update operations are not allowed when updating the shard key
 * field."): checked before anything is written, where mongod fails at the first such document.
 */
#include "write-private.h"

#include <string.h>

bool
mr__get_doc(const bson_t *doc, const char *key, bson_t *out)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, doc, key) ||
        !(BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it))) {
        return false;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_document(&it, &len, &data);
    } else {
        bson_iter_array(&it, &len, &data);
    }
    return bson_init_static(out, data, len);
}

static bson_t *
stmt_error(int code, const char *fmt_msg)
{
    bson_t *e = bson_new();
    BSON_APPEND_INT32(e, "code", code);
    BSON_APPEND_UTF8(e, "errmsg", fmt_msg);
    return e;
}

static char *
json_of(const bson_t *b)
{
    char *j = bson_as_relaxed_extended_json(b, NULL);
    return j ? j : bson_strdup("{}");
}

/* Whether an update may write a shard key field (an operator on it or a path through it). */
static bool
touches_key(const mr_coll_t *coll, const bson_t *stmt)
{
    bson_iter_t it, ops, fields;
    if (!bson_iter_init_find(&it, stmt, "u") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return true; /* a pipeline */
    }
    bson_iter_recurse(&it, &ops);
    while (bson_iter_next(&ops)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&ops)) {
            continue;
        }
        bson_iter_recurse(&ops, &fields);
        while (bson_iter_next(&fields)) {
            const char *f = bson_iter_key(&fields);
            for (int k = 0; k < coll->nfields; k++) {
                size_t a = strlen(f);
                size_t b = strlen(coll->fields[k]);
                size_t m = a < b ? a : b;
                if (strncmp(f, coll->fields[k], m) == 0 &&
                    (a == b || (a < b ? coll->fields[k][a] : f[b]) == '.')) {
                    return true;
                }
            }
        }
    }
    return false;
}

/* Would the multi update change some matching document's shard key? Reads the documents. */
static bool
multi_changes_key(mr_cmd_t *c, const mr_coll_t *coll, const char *coll_name, const bson_t *stmt,
                  uint32_t mask, bool *changes, bson_error_t *error)
{
    bson_t q = BSON_INITIALIZER;
    bson_iter_t it;
    *changes = false;
    mr__get_doc(stmt, "q", &q);
    bson_iter_init_find(&it, stmt, "u");
    bson_value_t u = *bson_iter_value(&it);
    ms_ctx_t ctx = {.now_ms = mr_now_ms()};
    for (int s = 0; s < mr_config.nshards && !*changes; s++) {
        bson_t cmd = BSON_INITIALIZER, reply, cursor, batch;
        if (!(mask & (1u << s))) {
            continue;
        }
        BSON_APPEND_UTF8(&cmd, "find", coll_name);
        BSON_APPEND_DOCUMENT(&cmd, "filter", &q);
        BSON_APPEND_UTF8(&cmd, "$db", c->db);
        bool ok = mr_shard_run(c->client, s, &cmd, &reply, error) && mr_reply_ok(&reply, error);
        bson_destroy(&cmd);
        if (ok && mr__get_doc(&reply, "cursor", &cursor) &&
            mr__get_doc(&cursor, "firstBatch", &batch)) {
            bson_iter_t d;
            bson_iter_init(&d, &batch);
            while (!*changes && bson_iter_next(&d)) {
                bson_t doc, after, k1, k2;
                uint32_t len;
                const uint8_t *data;
                bool changed = false;
                bson_iter_document(&d, &len, &data);
                bson_init_static(&doc, data, len);
                if (ms_update_apply(&u, &doc, false, &ctx, &after, &changed, NULL)) {
                    mr_extract_key(coll, &doc, &k1);
                    mr_extract_key(coll, &after, &k2);
                    *changes = !bson_equal(&k1, &k2);
                    bson_destroy(&k1);
                    bson_destroy(&k2);
                }
                bson_destroy(&after);
            }
        }
        bson_destroy(&reply);
        if (!ok) {
            return false;
        }
    }
    return true;
}

/* A single update or delete the router cannot place: 7.1's two-phase write, or 6.0's error. */
static bool
keyless_single(mr_cmd_t *c, mr_write_t *w, size_t k, const char *coll_name, uint32_t mask,
               bson_error_t *error)
{
    bson_t q = BSON_INITIALIZER, narrowed, and_arr, id_doc;
    bson_value_t id;
    int shard = 0;
    bool found = false;
    mr__get_doc(w->stmts[k], "q", &q);
    if (!mr__find_one_id(c, coll_name, mask, &q, NULL, &id, &shard, &found, error)) {
        return false;
    }
    /* Nothing matches: any one shard answers "0 matched". */
    w->masks[k] = 1u << (found ? shard : __builtin_ctz(mask));
    if (!found) {
        return true;
    }
    bson_init(&narrowed);
    BSON_APPEND_ARRAY_BEGIN(&narrowed, "$and", &and_arr);
    BSON_APPEND_DOCUMENT(&and_arr, "0", &q);
    BSON_APPEND_DOCUMENT_BEGIN(&and_arr, "1", &id_doc);
    BSON_APPEND_VALUE(&id_doc, "_id", &id);
    bson_append_document_end(&and_arr, &id_doc);
    bson_append_array_end(&narrowed, &and_arr);
    bson_value_destroy(&id);
    static const char *const drop[] = {"q", NULL};
    bson_t *stmt = bson_new();
    mr_cmd_copy_without(w->stmts[k], drop, stmt);
    BSON_APPEND_DOCUMENT(stmt, "q", &narrowed);
    bson_destroy(&narrowed);
    bson_destroy(w->stmts[k]);
    w->stmts[k] = stmt;
    w->rewritten = true;
    return true;
}

/* Plans one statement against a sharded collection (catalog locked while reading coll). */
static bool
plan_sharded(mr_cmd_t *c, mr_write_t *w, size_t k, const mr_coll_t *coll, bool *keyless,
             bool *check_multi)
{
    bson_t q = BSON_INITIALIZER;
    bson_iter_t it;
    const bson_t *s = w->stmts[k];
    if (w->kind == MR_W_INSERT) {
        w->masks[k] = 1u << mr_target_doc(coll, s);
        return true;
    }
    mr__get_doc(s, "q", &q);
    bool multi = w->kind == MR_W_UPDATE
                     ? bson_iter_init_find(&it, s, "multi") && bson_iter_as_bool(&it)
                     : !(bson_iter_init_find(&it, s, "limit") && bson_iter_as_int64(&it) == 1);
    bool upsert = bson_iter_init_find(&it, s, "upsert") && bson_iter_as_bool(&it);
    bool full = mr_query_has_full_key(coll, &q);
    w->masks[k] = mr_target_query(coll, &q);
    bool one = __builtin_popcount(w->masks[k]) == 1;
    char *pattern = json_of(coll->key);
    char *stmt_json = json_of(s);
    char msg[1024];
    (void)c;
    if (w->kind == MR_W_UPDATE && upsert && !full) {
        w->errors[k] = stmt_error(MR_SHARD_KEY_NOT_FOUND,
                                  "Failed to target upsert by query :: could not extract exact "
                                  "shard key");
    } else if (w->kind == MR_W_UPDATE && !multi && !one && !mr_query_is_exact_id(&q)) {
        bson_t u;
        bool replacement = mr__get_doc(s, "u", &u) && bson_iter_init(&it, &u) &&
                           bson_iter_next(&it) && bson_iter_key(&it)[0] != '$';
        if (replacement) {
            w->masks[k] = 1u << mr_target_doc(coll, &u);
        } else if (mr_config.shardkeyless_writes) {
            *keyless = true;
        } else {
            snprintf(msg, sizeof msg,
                     "A {multi:false} update on a sharded collection must contain an exact match "
                     "on _id (and have the collection default collation) or target a single "
                     "shard (and have the simple collation), but this update targeted %d shards. "
                     "Update request: %s, shard key pattern: %s",
                     __builtin_popcount(w->masks[k]), stmt_json, pattern);
            w->errors[k] = stmt_error(72, msg);
        }
    } else if (w->kind == MR_W_DELETE && !multi && !full && !mr_query_is_exact_id(&q)) {
        if (mr_config.shardkeyless_writes) {
            *keyless = !one;
        } else {
            snprintf(msg, sizeof msg,
                     "A single delete on a sharded collection must contain an exact match on _id "
                     "(and have the collection default collation) or contain the shard key (and "
                     "have the simple collation). Delete request: %s, shard key pattern: %s",
                     stmt_json, pattern);
            w->errors[k] = stmt_error(MR_SHARD_KEY_NOT_FOUND, msg);
        }
    } else if (w->kind == MR_W_UPDATE && multi && touches_key(coll, s)) {
        *check_multi = true;
    }
    bson_free(pattern);
    bson_free(stmt_json);
    return true;
}

static bool
read_statements(mr_cmd_t *c, mr_write_t *w, bson_error_t *error)
{
    bson_t arr;
    bson_iter_t it;
    if (!mr__get_doc(c->cmd, w->array, &arr)) {
        return ms_set_error(error, 40414, "BSON field '%s.%s' is missing but a required field",
                            c->name, w->array);
    }
    w->n = bson_count_keys(&arr);
    w->stmts = bson_malloc0((w->n + 1) * sizeof *w->stmts);
    w->masks = bson_malloc0((w->n + 1) * sizeof *w->masks);
    w->errors = bson_malloc0((w->n + 1) * sizeof *w->errors);
    bson_iter_init(&it, &arr);
    for (size_t k = 0; k < w->n && bson_iter_next(&it); k++) {
        uint32_t len;
        const uint8_t *data;
        bson_t doc;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return ms_set_error(error, 14, "BSON field '%s.%s' is the wrong type", c->name,
                                w->array);
        }
        bson_iter_document(&it, &len, &data);
        bson_init_static(&doc, data, len);
        w->stmts[k] = bson_copy(&doc);
    }
    w->ordered = !(bson_iter_init_find(&it, c->cmd, "ordered") && !bson_iter_as_bool(&it));
    w->retryable = bson_has_field(c->cmd, "txnNumber") && !bson_has_field(c->cmd, "autocommit");
    return true;
}

bool
mr__write_plan(mr_cmd_t *c, mr_write_t *w, bson_error_t *error)
{
    if (!c->coll) {
        return ms_set_error(error, 73, "collection name has invalid type");
    }
    w->db = bson_strdup(c->db);
    w->ns = bson_strdup_printf("%s.%s", c->db, c->coll);
    if (!read_statements(c, w, error)) {
        return false;
    }
    bool *keyless = bson_malloc0((w->n + 1) * sizeof *keyless);
    bool *check = bson_malloc0((w->n + 1) * sizeof *check);
    int primary = mr_catalog_primary(c->db);
    mr_catalog_lock();
    mr_coll_t *coll = mr_catalog_coll(w->ns);
    for (size_t k = 0; k < w->n; k++) {
        if (coll) {
            plan_sharded(c, w, k, coll, &keyless[k], &check[k]);
        } else {
            w->masks[k] = 1u << primary;
        }
    }
    mr_coll_t copy = coll ? *coll : (mr_coll_t){0};
    mr_catalog_unlock();
    bool ok = true;
    for (size_t k = 0; ok && k < w->n; k++) {
        bool changes = false;
        if (keyless[k]) {
            ok = keyless_single(c, w, k, c->coll, w->masks[k], error);
        } else if (check[k]) {
            /* the catalog entry is read again under the lock for the key's fields */
            mr_catalog_lock();
            coll = mr_catalog_coll(w->ns);
            copy = coll ? *coll : copy;
            mr_catalog_unlock();
            ok = !coll || multi_changes_key(c, &copy, c->coll, w->stmts[k], w->masks[k], &changes,
                                            error);
            if (ok && changes) {
                w->errors[k] = stmt_error(72, "Multi-update operations are not allowed when "
                                              "updating the shard key field.");
            }
        }
    }
    bson_free(keyless);
    bson_free(check);
    return ok;
}

void
mr__write_destroy(mr_write_t *w)
{
    for (size_t k = 0; k < w->n; k++) {
        if (w->stmts[k]) {
            bson_destroy(w->stmts[k]);
        }
        if (w->errors[k]) {
            bson_destroy(w->errors[k]);
        }
    }
    bson_free(w->stmts);
    bson_free(w->masks);
    bson_free(w->errors);
    bson_free(w->db);
    bson_free(w->ns);
}

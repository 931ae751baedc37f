/*
 * Commands that go to the primary shard or to every shard (indexes, collMod, drops, sessions,
 * fail points), the unique index rule, listDatabases, and transactions.
 *
 * Unique indexes: a unique index on a sharded collection must have the shard key as its prefix
 * (or be on _id): ShardKeyPattern::isUniqueIndexCompatible (s/shard_key_pattern.cpp), failing
 * with CannotCreateIndex 67 "cannot create unique index over <key> with shard key pattern <sk>"
 * (db/s/shard_key_index_util / the createIndexes command's checkUniqueIndexConstraints).
 *
 * Transactions: a transaction runs on the first shard a statement of it targets; a statement
 * that targets another shard or several is refused (OperationNotSupportedInTransaction 263).
 * mongos would run a two-phase commit over several shards; the router does not.
 */
#include "router.h"
#include "write-private.h"

#include <string.h>

/* ---- broadcasting -------------------------------------------------------------------------- */

static bool
always_everywhere(const char *name)
{
    return !strcmp(name, "endSessions") || !strcmp(name, "killSessions") ||
           !strcmp(name, "killAllSessions") || !strcmp(name, "configureFailPoint") ||
           !strcmp(name, "dropDatabase");
}

static uint32_t
broadcast_mask(const mr_cmd_t *c)
{
    uint32_t all = (1u << mr_config.nshards) - 1;
    if (always_everywhere(c->name) || !c->coll) {
        return all;
    }
    char *ns = bson_strdup_printf("%s.%s", c->db, c->coll);
    mr_catalog_lock();
    bool sharded = mr_catalog_coll(ns) != NULL;
    mr_catalog_unlock();
    bson_free(ns);
    return sharded ? all : 1u << mr_catalog_primary(c->db);
}

/* Sends the command to every shard in mask: {raw: {shard: reply}}, failing with the first
 * shard's error (as mongos's createIndexes, dropIndexes, collMod replies). */
static bool
send_to(mr_cmd_t *c, uint32_t mask, const bson_t *cmd, bson_error_t *error)
{
    bson_t raw;
    bson_error_t first = {0};
    bool failed = false;
    if (__builtin_popcount(mask) == 1 && cmd == c->cmd) {
        return mr_forward(c, __builtin_ctz(mask), error);
    }
    BSON_APPEND_DOCUMENT_BEGIN(c->reply, "raw", &raw);
    for (int s = 0; s < mr_config.nshards; s++) {
        bson_t reply;
        char name[160];
        if (!(mask & (1u << s))) {
            continue;
        }
        if (!mr_shard_run(c->client, s, cmd, &reply, error)) {
            bson_destroy(&reply);
            bson_append_document_end(c->reply, &raw);
            return false;
        }
        snprintf(name, sizeof name, "%s/%s", mr_config.shard_set[s], mr_config.shard_host[s]);
        static const char *const drop[] = {"$clusterTime", "operationTime", NULL};
        bson_t clean;
        mr_cmd_copy_without(&reply, drop, &clean);
        BSON_APPEND_DOCUMENT(&raw, name, &clean);
        bson_destroy(&clean);
        if (!failed && !mr_reply_ok(&reply, &first)) {
            failed = true;
        }
        bson_destroy(&reply);
    }
    bson_append_document_end(c->reply, &raw);
    if (failed) {
        *error = first;
        return false;
    }
    return true;
}

bool
mr_cmd_broadcast(mr_cmd_t *c, bson_error_t *error)
{
    return send_to(c, broadcast_mask(c), c->cmd, error);
}

bool
mr_cmd_to_primary(mr_cmd_t *c, bson_error_t *error)
{
    return mr_forward(c, mr_catalog_primary(c->db), error);
}

/* ---- createIndexes ------------------------------------------------------------------------- */

/* isUniqueIndexCompatible: _id first, or the shard key's fields a prefix of the index's. */
static bool
unique_compatible(const mr_coll_t *coll, const bson_t *key)
{
    bson_iter_t it;
    int k = 0;
    bson_iter_init(&it, key);
    while (bson_iter_next(&it)) {
        if (k == 0 && strcmp(bson_iter_key(&it), "_id") == 0) {
            return true;
        }
        if (k < coll->nfields && strcmp(bson_iter_key(&it), coll->fields[k]) != 0) {
            return false;
        }
        k++;
    }
    return k >= coll->nfields;
}

static bool
check_unique(const mr_coll_t *coll, const bson_t *indexes, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, indexes);
    while (bson_iter_next(&it)) {
        bson_t spec, key;
        bson_iter_t u;
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            continue;
        }
        bson_iter_document(&it, &len, &data);
        bson_init_static(&spec, data, len);
        bool unique = bson_iter_init_find(&u, &spec, "unique") && bson_iter_as_bool(&u);
        if (unique && mr__get_doc(&spec, "key", &key) && !unique_compatible(coll, &key)) {
            char *k = bson_as_relaxed_extended_json(&key, NULL);
            char *sk = bson_as_relaxed_extended_json(coll->key, NULL);
            ms_set_error(error, 67, "cannot create unique index over %s with shard key pattern %s",
                         k, sk);
            bson_free(k);
            bson_free(sk);
            return false;
        }
    }
    return true;
}

bool
mr_cmd_create_indexes(mr_cmd_t *c, bson_error_t *error)
{
    bson_t indexes = BSON_INITIALIZER;
    bool ok = true;
    if (c->coll) {
        char *ns = bson_strdup_printf("%s.%s", c->db, c->coll);
        mr__get_doc(c->cmd, "indexes", &indexes);
        mr_catalog_lock();
        mr_coll_t *coll = mr_catalog_coll(ns);
        ok = !coll || check_unique(coll, &indexes, error);
        mr_catalog_unlock();
        bson_free(ns);
    }
    return ok && mr_cmd_broadcast(c, error);
}

/* ---- drop, dropDatabase, listDatabases ---------------------------------------------------- */

/* Every shard drops; the primary's reply is the client's (other shards may lack the
 * collection). */
static bool
drop_everywhere(mr_cmd_t *c, bson_error_t *error)
{
    int primary = mr_catalog_primary(c->db);
    for (int s = 0; s < mr_config.nshards; s++) {
        bson_t reply;
        if (s == primary) {
            continue;
        }
        bool ok = mr_shard_run(c->client, s, c->cmd, &reply, error);
        bson_destroy(&reply);
        if (!ok) {
            return false;
        }
    }
    return mr_forward(c, primary, error);
}

bool
mr_cmd_drop(mr_cmd_t *c, bson_error_t *error)
{
    if (!c->coll || !drop_everywhere(c, error)) {
        return c->coll ? false : ms_set_error(error, 73, "collection name has invalid type");
    }
    char *ns = bson_strdup_printf("%s.%s", c->db, c->coll);
    mr_catalog_drop_coll(ns);
    bson_free(ns);
    return true;
}

bool
mr_cmd_drop_database(mr_cmd_t *c, bson_error_t *error)
{
    if (!drop_everywhere(c, error)) {
        return false;
    }
    mr_catalog_drop_db(c->db);
    return true;
}

bool
mr_cmd_list_databases(mr_cmd_t *c, bson_error_t *error)
{
    ms_docvec_t dbs;
    bson_t arr;
    char key[24];
    ms_docvec_init(&dbs);
    for (int s = 0; s < mr_config.nshards; s++) {
        bson_t reply, list;
        bson_iter_t it, name;
        bool ok = mr_shard_run(c->client, s, c->cmd, &reply, error) && mr_reply_ok(&reply, error);
        if (ok && mr__get_doc(&reply, "databases", &list) && bson_iter_init(&it, &list)) {
            while (bson_iter_next(&it)) {
                bson_t d;
                uint32_t len;
                const uint8_t *data;
                bool seen = false;
                bson_iter_document(&it, &len, &data);
                bson_init_static(&d, data, len);
                bson_iter_init_find(&name, &d, "name");
                for (size_t k = 0; k < dbs.len && !seen; k++) {
                    bson_iter_t other;
                    bson_iter_init_find(&other, dbs.docs[k], "name");
                    seen = strcmp(bson_iter_utf8(&other, NULL), bson_iter_utf8(&name, NULL)) == 0;
                }
                if (!seen) {
                    ms_docvec_push_copy(&dbs, &d);
                }
            }
        }
        bson_destroy(&reply);
        if (!ok) {
            ms_docvec_destroy(&dbs);
            return false;
        }
    }
    BSON_APPEND_ARRAY_BEGIN(c->reply, "databases", &arr);
    for (size_t k = 0; k < dbs.len; k++) {
        snprintf(key, sizeof key, "%zu", k);
        BSON_APPEND_DOCUMENT(&arr, key, dbs.docs[k]);
    }
    bson_append_array_end(c->reply, &arr);
    ms_docvec_destroy(&dbs);
    return true;
}

/* ---- transactions ---------------------------------------------------------------------------- */

typedef struct {
    uint8_t lsid[16];
    int64_t txn_number;
    int shard;
} txn_entry_t;

static pthread_mutex_t txn_mu = PTHREAD_MUTEX_INITIALIZER;
static txn_entry_t *txns;
static size_t ntxns;

static bool
txn_key(const bson_t *cmd, uint8_t lsid[16], int64_t *txn_number)
{
    bson_iter_t it;
    bson_t l;
    const uint8_t *bytes;
    uint32_t len;
    bson_subtype_t sub;
    if (!bson_has_field(cmd, "autocommit") || !mr__get_doc(cmd, "lsid", &l) ||
        !bson_iter_init_find(&it, &l, "id") || !BSON_ITER_HOLDS_BINARY(&it)) {
        return false;
    }
    bson_iter_binary(&it, &sub, &len, &bytes);
    memset(lsid, 0, 16);
    memcpy(lsid, bytes, len < 16 ? len : 16);
    *txn_number = bson_iter_init_find(&it, cmd, "txnNumber") ? bson_iter_as_int64(&it) : 0;
    return true;
}

static txn_entry_t *
txn_find(const uint8_t lsid[16])
{
    for (size_t k = 0; k < ntxns; k++) {
        if (memcmp(txns[k].lsid, lsid, 16) == 0) {
            return &txns[k];
        }
    }
    txns = bson_realloc(txns, (ntxns + 1) * sizeof *txns);
    memset(&txns[ntxns], 0, sizeof *txns);
    memcpy(txns[ntxns].lsid, lsid, 16);
    txns[ntxns].shard = -1;
    return &txns[ntxns++];
}

bool
mr_txn_pin(const bson_t *cmd, uint32_t mask, bson_error_t *error)
{
    uint8_t lsid[16];
    int64_t number;
    if (!txn_key(cmd, lsid, &number)) {
        return true;
    }
    pthread_mutex_lock(&txn_mu);
    txn_entry_t *t = txn_find(lsid);
    if (t->txn_number != number) {
        t->txn_number = number;
        t->shard = -1;
    }
    bool ok = __builtin_popcount(mask) == 1 && (t->shard < 0 || mask == (1u << t->shard));
    if (ok) {
        t->shard = __builtin_ctz(mask);
    }
    pthread_mutex_unlock(&txn_mu);
    if (!ok) {
        return ms_set_error(error, 263, "mongoq-test-router runs a transaction on one shard only: "
                                        "this statement targets %d shard(s) outside it",
                            __builtin_popcount(mask));
    }
    return true;
}

bool
mr_cmd_end_txn(mr_cmd_t *c, bson_error_t *error)
{
    uint8_t lsid[16];
    int64_t number = 0;
    int shard = -1;
    if (txn_key(c->cmd, lsid, &number)) {
        pthread_mutex_lock(&txn_mu);
        txn_entry_t *t = txn_find(lsid);
        shard = t->txn_number == number ? t->shard : -1;
        pthread_mutex_unlock(&txn_mu);
    }
    if (shard >= 0) {
        return mr_forward(c, shard, error);
    }
    if (strcmp(c->name, "commitTransaction") == 0) {
        return true; /* a transaction that touched no shard commits trivially */
    }
    return ms_set_error(error, 251, "Transaction %lld has been aborted.", (long long)number);
}

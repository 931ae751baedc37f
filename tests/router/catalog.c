/*
 * The routing table: databases (each with a primary shard, shard0 unless enableSharding names
 * another), sharded collections (shard key, chunks), and the commands that change or read it:
 * enableSharding, shardCollection, listShards, balancerStatus, and finds on
 * config.databases / collections / chunks / shards. shardCollection puts the collection and its
 * indexes on every shard through shard_indexes.c; split and moveChunk are in chunks.c. The
 * balancer is off: a chunk stays on the shard shardCollection gave it until a moveChunk (empty
 * chunks only) names another.
 */
#include "router.h"

#include <string.h>

static pthread_mutex_t catalog_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
    char *name;
    int primary;
    bool partitioned;
} db_entry_t;

static db_entry_t *dbs;
static size_t ndbs;
static mr_coll_t **colls;
static size_t ncolls;

void
mr_catalog_init(void)
{
}

void
mr_catalog_lock(void)
{
    pthread_mutex_lock(&catalog_mu);
}

void
mr_catalog_unlock(void)
{
    pthread_mutex_unlock(&catalog_mu);
}

mr_coll_t *
mr_catalog_coll(const char *ns)
{
    for (size_t k = 0; k < ncolls; k++) {
        if (strcmp(colls[k]->ns, ns) == 0) {
            return colls[k];
        }
    }
    return NULL;
}

static db_entry_t *
db_entry(const char *db)
{
    for (size_t k = 0; k < ndbs; k++) {
        if (strcmp(dbs[k].name, db) == 0) {
            return &dbs[k];
        }
    }
    dbs = bson_realloc(dbs, (ndbs + 1) * sizeof *dbs);
    dbs[ndbs] = (db_entry_t){.name = bson_strdup(db), .primary = 0};
    return &dbs[ndbs++];
}

int
mr_catalog_primary(const char *db)
{
    mr_catalog_lock();
    int p = db_entry(db)->primary;
    mr_catalog_unlock();
    return p;
}

static void
coll_free(mr_coll_t *coll)
{
    for (size_t k = 0; k < coll->nchunks; k++) {
        bson_destroy(coll->chunks[k].min);
        bson_destroy(coll->chunks[k].max);
    }
    for (int k = 0; k < coll->nfields; k++) {
        bson_free(coll->fields[k]);
    }
    bson_free(coll->fields);
    bson_free(coll->chunks);
    bson_destroy(coll->key);
    bson_free(coll->ns);
    bson_free(coll);
}

void
mr_catalog_drop_coll(const char *ns)
{
    mr_catalog_lock();
    for (size_t k = 0; k < ncolls; k++) {
        if (strcmp(colls[k]->ns, ns) == 0) {
            coll_free(colls[k]);
            colls[k] = colls[--ncolls];
            break;
        }
    }
    mr_catalog_unlock();
}

void
mr_catalog_drop_db(const char *db)
{
    size_t len = strlen(db);
    mr_catalog_lock();
    for (size_t k = ncolls; k-- > 0;) {
        if (strncmp(colls[k]->ns, db, len) == 0 && colls[k]->ns[len] == '.') {
            coll_free(colls[k]);
            colls[k] = colls[--ncolls];
        }
    }
    mr_catalog_unlock();
}

uint32_t
mr_coll_shards(const mr_coll_t *coll)
{
    uint32_t mask = 0;
    for (size_t k = 0; k < coll->nchunks; k++) {
        mask |= 1u << coll->chunks[k].shard;
    }
    return mask;
}

/* ---- enableSharding / shardCollection ------------------------------------------------------ */

static bool
admin_only(const mr_cmd_t *c, bson_error_t *error)
{
    if (strcmp(c->db, "admin") != 0) {
        return ms_set_error(error, 13, "%s may only be run against the admin database.", c->name);
    }
    return true;
}

static int
shard_by_name(const char *name)
{
    for (int k = 0; k < mr_config.nshards; k++) {
        if (strcmp(mr_config.shard_set[k], name) == 0) {
            return k;
        }
    }
    return -1;
}

bool
mr_cmd_enable_sharding(mr_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    if (!admin_only(c, error)) {
        return false;
    }
    if (!c->coll || !*c->coll || strchr(c->coll, '.')) {
        return ms_set_error(error, 73, "invalid db name specified: %s", c->coll ? c->coll : "");
    }
    int primary = -1;
    if (bson_iter_init_find(&it, c->cmd, "primaryShard") && BSON_ITER_HOLDS_UTF8(&it)) {
        primary = shard_by_name(bson_iter_utf8(&it, NULL));
        if (primary < 0) {
            return ms_set_error(error, 70, "Shard %s not found", bson_iter_utf8(&it, NULL));
        }
    }
    mr_catalog_lock();
    db_entry_t *d = db_entry(c->coll);
    d->partitioned = true;
    if (primary >= 0) {
        d->primary = primary;
    }
    mr_catalog_unlock();
    return true;
}

/* The shard key pattern: every value 1 or "hashed" (at most one), as ShardKeyPattern checks. */
static bool
parse_key(const bson_t *key, mr_coll_t *coll, bson_error_t *error)
{
    bson_iter_t it;
    coll->hashed_field = -1;
    coll->fields = bson_malloc0((bson_count_keys(key) + 1) * sizeof *coll->fields);
    bson_iter_init(&it, key);
    while (bson_iter_next(&it)) {
        bool hashed = BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "hashed") == 0;
        bool one = BSON_ITER_HOLDS_NUMBER(&it) && bson_iter_as_double(&it) == 1.0;
        if ((!hashed && !one) || (hashed && coll->hashed_field >= 0)) {
            char *json = bson_as_relaxed_extended_json(key, NULL);
            ms_set_error(error, 2, "Unsupported shard key pattern %s. Pattern must either be a "
                                   "single hashed field, or a list of ascending fields", json);
            bson_free(json);
            return false;
        }
        if (hashed) {
            coll->hashed_field = coll->nfields;
        }
        coll->fields[coll->nfields++] = bson_strdup(bson_iter_key(&it));
    }
    if (coll->nfields == 0) {
        return ms_set_error(error, 2, "Shard key cannot be empty");
    }
    coll->key = bson_copy(key);
    return true;
}

/* A bound {f1: v, f2: MinKey, ...}: v for the hashed first field, MinKey/MaxKey elsewhere. */
static bson_t *
bound_doc(const mr_coll_t *coll, int end, const int64_t *hash)
{
    bson_t *out = bson_new();
    for (int k = 0; k < coll->nfields; k++) {
        if (k == 0 && hash) {
            BSON_APPEND_INT64(out, coll->fields[k], *hash);
        } else if (end < 0 || (k > 0 && hash)) {
            BSON_APPEND_MINKEY(out, coll->fields[k]);
        } else {
            BSON_APPEND_MAXKEY(out, coll->fields[k]);
        }
    }
    return out;
}

/*
 * Initial chunks: a hashed first field is presplit into numInitialChunks (default two per shard,
 * as 6.0's InitialSplitPolicy does for an empty collection) even hash ranges, spread over the
 * shards in order; a ranged key gets one chunk on the primary shard.
 */
static void
initial_chunks(mr_coll_t *coll, int64_t nchunks, int primary)
{
    if (coll->hashed_field != 0) {
        nchunks = 1;
    }
    coll->chunks = bson_malloc0((size_t)nchunks * sizeof *coll->chunks);
    coll->nchunks = (size_t)nchunks;
    uint64_t step = nchunks > 1 ? UINT64_MAX / (uint64_t)nchunks + 1 : 0;
    for (int64_t k = 0; k < nchunks; k++) {
        mr_chunk_t *ch = &coll->chunks[k];
        int64_t lo = (int64_t)((uint64_t)INT64_MIN + step * (uint64_t)k);
        int64_t hi = (int64_t)((uint64_t)INT64_MIN + step * (uint64_t)(k + 1));
        ch->min = bound_doc(coll, -1, k == 0 || nchunks == 1 ? NULL : &lo);
        ch->max = bound_doc(coll, 1, k == nchunks - 1 || nchunks == 1 ? NULL : &hi);
        ch->shard = nchunks == 1 ? primary : (int)(k * mr_config.nshards / nchunks);
    }
}

static bool
shard_collection_options(const mr_cmd_t *c, mr_coll_t *coll, int64_t *nchunks, bson_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->cmd, "key") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, 40414,
                            "BSON field 'shardCollection.key' is missing but a required field");
    }
    uint32_t len;
    const uint8_t *data;
    bson_t key;
    bson_iter_document(&it, &len, &data);
    if (!bson_init_static(&key, data, len) || !parse_key(&key, coll, error)) {
        return false;
    }
    coll->unique = bson_iter_init_find(&it, c->cmd, "unique") && bson_iter_as_bool(&it);
    if (coll->unique && coll->hashed_field >= 0) {
        return ms_set_error(error, 72, "Hashed shard keys cannot be declared unique. It's possible "
                                       "to ensure uniqueness on the hashed field by declaring an "
                                       "additional (non-hashed) unique index on the field.");
    }
    *nchunks = 2 * mr_config.nshards;
    if (bson_iter_init_find(&it, c->cmd, "numInitialChunks") && BSON_ITER_HOLDS_NUMBER(&it) &&
        bson_iter_as_int64(&it) > 0) {
        if (coll->hashed_field < 0) {
            return ms_set_error(error, 72, "numInitialChunks is only supported when the collection "
                                           "is empty and has a hashed field in the shard key "
                                           "pattern");
        }
        *nchunks = bson_iter_as_int64(&it) > 8192 ? 8192 : bson_iter_as_int64(&it);
    }
    return true;
}

bool
mr_cmd_shard_collection(mr_cmd_t *c, bson_error_t *error)
{
    int64_t nchunks = 1;
    mr_coll_t *coll = bson_malloc0(sizeof *coll);
    const char *dot = c->coll ? strchr(c->coll, '.') : NULL;
    bool ok = false;
    char *db = NULL;
    if (!admin_only(c, error)) {
        goto done;
    }
    if (!dot || dot == c->coll || !dot[1]) {
        ms_set_error(error, 73, "Invalid namespace specified '%s'", c->coll ? c->coll : "");
        goto done;
    }
    if (!shard_collection_options(c, coll, &nchunks, error)) {
        goto done;
    }
    db = bson_strndup(c->coll, (size_t)(dot - c->coll));
    coll->ns = bson_strdup(c->coll);
    bson_oid_init(&coll->epoch, NULL);
    for (int k = 0; k < 16; k++) {
        coll->uuid[k] = (uint8_t)(rand() & 0xff);
    }
    coll->uuid[6] = (uint8_t)((coll->uuid[6] & 0x0f) | 0x40);
    coll->uuid[8] = (uint8_t)((coll->uuid[8] & 0x3f) | 0x80);
    coll->created_ms = mr_now_ms();
    mr_catalog_lock();
    mr_coll_t *existing = mr_catalog_coll(c->coll);
    bool same = existing && bson_equal(existing->key, coll->key);
    int primary = db_entry(db)->primary;
    db_entry(db)->partitioned = true;
    mr_catalog_unlock();
    if (existing) {
        ok = same || ms_set_error(error, 23, "sharding already enabled for collection %s", c->coll);
        goto done;
    }
    if (!mr_create_on_shards(c, db, dot + 1, coll, primary, error)) {
        goto done;
    }
    initial_chunks(coll, nchunks, primary);
    mr_catalog_lock();
    colls = bson_realloc(colls, (ncolls + 1) * sizeof *colls);
    colls[ncolls++] = coll;
    coll = NULL;
    mr_catalog_unlock();
    BSON_APPEND_UTF8(c->reply, "collectionsharded", c->coll);
    ok = true;
done:
    if (coll) {
        coll_free(coll);
    }
    bson_free(db);
    return ok;
}

/* ---- listShards, balancerStatus ------------------------------------------------------------ */

static void
shard_doc(int k, bson_t *out)
{
    char host[160];
    snprintf(host, sizeof host, "%s/%s", mr_config.shard_set[k], mr_config.shard_host[k]);
    BSON_APPEND_UTF8(out, "_id", mr_config.shard_set[k]);
    BSON_APPEND_UTF8(out, "host", host);
    BSON_APPEND_INT32(out, "state", 1);
}

bool
mr_cmd_list_shards(mr_cmd_t *c, bson_error_t *error)
{
    bson_t arr, doc;
    char key[24];
    if (!admin_only(c, error)) {
        return false;
    }
    BSON_APPEND_ARRAY_BEGIN(c->reply, "shards", &arr);
    for (int k = 0; k < mr_config.nshards; k++) {
        snprintf(key, sizeof key, "%d", k);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, key, &doc);
        shard_doc(k, &doc);
        bson_append_document_end(&arr, &doc);
    }
    bson_append_array_end(c->reply, &arr);
    return true;
}

bool
mr_cmd_balancer_status(mr_cmd_t *c, bson_error_t *error)
{
    if (!admin_only(c, error)) {
        return false;
    }
    BSON_APPEND_UTF8(c->reply, "mode", "off");
    BSON_APPEND_BOOL(c->reply, "inBalancerRound", false);
    BSON_APPEND_INT64(c->reply, "numBalancerRounds", 0);
    return true;
}

/* ---- config reads ------------------------------------------------------------------------------ */

static void
collection_doc(const mr_coll_t *coll, bson_t *out)
{
    BSON_APPEND_UTF8(out, "_id", coll->ns);
    BSON_APPEND_OID(out, "lastmodEpoch", &coll->epoch);
    BSON_APPEND_DATE_TIME(out, "lastmod", coll->created_ms);
    BSON_APPEND_TIMESTAMP(out, "timestamp", (uint32_t)(coll->created_ms / 1000), 1);
    BSON_APPEND_BINARY(out, "uuid", BSON_SUBTYPE_UUID, coll->uuid, 16);
    BSON_APPEND_DOCUMENT(out, "key", coll->key);
    BSON_APPEND_BOOL(out, "unique", coll->unique);
    BSON_APPEND_BOOL(out, "noBalance", false);
}

static void
chunk_doc(const mr_coll_t *coll, size_t k, bson_t *out)
{
    bson_oid_t id;
    bson_oid_init(&id, NULL);
    BSON_APPEND_OID(out, "_id", &id);
    BSON_APPEND_BINARY(out, "uuid", BSON_SUBTYPE_UUID, coll->uuid, 16);
    BSON_APPEND_DOCUMENT(out, "min", coll->chunks[k].min);
    BSON_APPEND_DOCUMENT(out, "max", coll->chunks[k].max);
    BSON_APPEND_UTF8(out, "shard", mr_config.shard_set[coll->chunks[k].shard]);
    BSON_APPEND_TIMESTAMP(out, "lastmod", 1, (uint32_t)k);
}

/* Every document of config.<name>, under the catalog lock. */
static void
config_docs(const char *name, ms_docvec_t *out)
{
    for (size_t k = 0; strcmp(name, "collections") == 0 && k < ncolls; k++) {
        bson_t *d = bson_new();
        collection_doc(colls[k], d);
        ms_docvec_push_owned(out, d);
    }
    for (size_t k = 0; strcmp(name, "chunks") == 0 && k < ncolls; k++) {
        for (size_t j = 0; j < colls[k]->nchunks; j++) {
            bson_t *d = bson_new();
            chunk_doc(colls[k], j, d);
            ms_docvec_push_owned(out, d);
        }
    }
    for (size_t k = 0; strcmp(name, "databases") == 0 && k < ndbs; k++) {
        bson_t *d = bson_new();
        BSON_APPEND_UTF8(d, "_id", dbs[k].name);
        BSON_APPEND_UTF8(d, "primary", mr_config.shard_set[dbs[k].primary]);
        BSON_APPEND_BOOL(d, "partitioned", dbs[k].partitioned);
        ms_docvec_push_owned(out, d);
    }
    for (int k = 0; strcmp(name, "shards") == 0 && k < mr_config.nshards; k++) {
        bson_t *d = bson_new();
        shard_doc(k, d);
        ms_docvec_push_owned(out, d);
    }
}

/* {cursor: {firstBatch: docs, id: 0, ns: "config.<coll>"}} */
static void
reply_all(mr_cmd_t *c, const ms_docvec_t *docs)
{
    bson_t cursor, batch;
    char key[24];
    char *ns = bson_strdup_printf("config.%s", c->coll);
    BSON_APPEND_DOCUMENT_BEGIN(c->reply, "cursor", &cursor);
    BSON_APPEND_ARRAY_BEGIN(&cursor, "firstBatch", &batch);
    for (size_t k = 0; k < docs->len; k++) {
        snprintf(key, sizeof key, "%zu", k);
        BSON_APPEND_DOCUMENT(&batch, key, docs->docs[k]);
    }
    bson_append_array_end(&cursor, &batch);
    BSON_APPEND_INT64(&cursor, "id", 0);
    BSON_APPEND_UTF8(&cursor, "ns", ns);
    bson_append_document_end(c->reply, &cursor);
    bson_free(ns);
}

static bool
sub_doc(const bson_t *doc, const char *key, bson_t *out)
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

/* find (filter only) or aggregate (the whole pipeline, run here) on a config collection. */
bool
mr_catalog_config_find(mr_cmd_t *c, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, pipeline = BSON_INITIALIZER;
    ms_docvec_t docs, out;
    bool aggregate = strcmp(c->name, "aggregate") == 0;
    bool ok = false;
    ms_matcher_t *m = NULL;
    ms_docvec_init(&docs);
    ms_docvec_init(&out);
    if (aggregate ? (sub_doc(c->cmd, "pipeline", &pipeline),
                     !ms_pipeline_validate(&pipeline, error))
                  : (sub_doc(c->cmd, "filter", &filter),
                     !(m = ms_matcher_new(&filter, error)))) {
        goto done;
    }
    mr_catalog_lock();
    config_docs(c->coll, &docs);
    mr_catalog_unlock();
    ms_ctx_t ctx = {.now_ms = mr_now_ms()};
    if (aggregate) {
        ms_docvec_destroy(&out);
        if (!ms_pipeline_run(&pipeline, &docs, &ctx, &out, error)) {
            goto done;
        }
    } else {
        for (size_t k = 0; k < docs.len; k++) {
            if (ms_matcher_matches(m, docs.docs[k], &ctx)) {
                ms_docvec_push_copy(&out, docs.docs[k]);
            }
        }
    }
    reply_all(c, &out);
    ok = true;
done:
    ms_docvec_destroy(&docs);
    ms_docvec_destroy(&out);
    ms_matcher_destroy(m);
    return ok;
}

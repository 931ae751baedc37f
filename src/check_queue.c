/*
 * The doctor's checks of the queue's collection: its indexes against the table
 * mongoq_queue_ensure_indexes creates from (queue.c), the claim's plan, the partitions and the
 * shard key, the write concern, and
 * the pause state, the backlog and dead letters from mongoq_queue_stats.
 */
#include <inttypes.h>
#include <string.h>

#include "check-private.h"
#include "clock-private.h"
#include "document-private.h"
#include "error-private.h"
#include "fields.h"
#include "queue-private.h"

/* mongod's NamespaceNotFound. */
#define NAMESPACE_NOT_FOUND 26

/* ---- indexes ------------------------------------------------------------------------------ */

/* Whether two key patterns have the same fields in the same order and directions. */
static bool
same_keys(const bson_t *a, const bson_t *b)
{
    bson_iter_t ia, ib;
    if (!bson_iter_init(&ia, a) || !bson_iter_init(&ib, b)) {
        return false;
    }
    while (bson_iter_next(&ia)) {
        if (!bson_iter_next(&ib) || strcmp(bson_iter_key(&ia), bson_iter_key(&ib)) != 0 ||
            bson_iter_as_int64(&ia) != bson_iter_as_int64(&ib)) {
            return false;
        }
    }
    return !bson_iter_next(&ib);
}

/* Field `name` of doc as a document view into out; false when absent. */
static bool
get_doc(const bson_t *doc, const char *name, bson_t *out)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, doc, name) || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return false;
    }
    bson_iter_document(&it, &len, &data);
    return bson_init_static(out, data, len);
}

static bool
get_bool(const bson_t *doc, const char *name)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, name) && bson_iter_as_bool(&it);
}

static int64_t
get_int(const bson_t *doc, const char *name)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, name) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : -1;
}

/* What differs between the expected index and the one found (NULL: nothing). */
static const char *
index_difference(const bson_t *want, const bson_t *have)
{
    bson_t wk, hk, wp, hp;
    if (!get_doc(want, "key", &wk) || !get_doc(have, "key", &hk) || !same_keys(&wk, &hk)) {
        return "other keys";
    }
    if (get_bool(want, "unique") != get_bool(have, "unique")) {
        return "unique differs";
    }
    bool want_partial = get_doc(want, "partialFilterExpression", &wp);
    bool have_partial = get_doc(have, "partialFilterExpression", &hp);
    if (want_partial != have_partial || (want_partial && !bson_equal(&wp, &hp))) {
        return "partial filter differs";
    }
    if (get_int(want, "expireAfterSeconds") != get_int(have, "expireAfterSeconds")) {
        return "expireAfterSeconds differs";
    }
    return NULL;
}

/* The index named name among the listed ones (copied into out); false when absent. */
static bool
find_index(mongoc_collection_t *coll, const char *name, bson_t *out, bson_error_t *error)
{
    const bson_t *doc;
    bson_iter_t it;
    bool found = false;
    mongoc_cursor_t *cursor = mongoc_collection_find_indexes_with_opts(coll, NULL);
    while (!found && mongoc_cursor_next(cursor, &doc)) {
        if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), name) == 0) {
            bson_copy_to(doc, out);
            found = true;
        }
    }
    if (mongoc_cursor_error(cursor, error)) {
        found = false;
    } else if (!found) {
        bson_init(out);
        memset(error, 0, sizeof *error);
    }
    mongoc_cursor_destroy(cursor);
    return found;
}

/* Adds name to the problems, with what is wrong with it; counts it. */
static void
note_problem(bson_string_t *problems, int *n, const char *name, const char *what)
{
    bson_string_append_printf(problems, "%s%s (%s)", (*n)++ ? ", " : "", name, what);
}

void
mongoq__check_indexes(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    bson_t expected = BSON_INITIALIZER, have, want;
    bson_t missing = BSON_INITIALIZER, differ = BSON_INITIALIZER;
    bson_iter_t it, name;
    bson_error_t error = {0};
    int problems_n = 0, checked = 0, n_missing = 0, n_differ = 0;
    char key[16];
    const char *k;
    bool failed = false;
    bson_string_t *problems = bson_string_new(NULL);
    mongoq__queue_index_specs(ctx->queue, &expected);
    for (bool more = bson_iter_init(&it, &expected); more && bson_iter_next(&it) && !failed;) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        BSON_ASSERT(bson_init_static(&want, data, len));
        BSON_ASSERT(bson_iter_init_find(&name, &want, "name"));
        const char *index = bson_iter_utf8(&name, NULL);
        checked++;
        if (!find_index(ctx->coll, index, &have, &error)) {
            failed = error.code != 0;
            if (!failed) {
                bson_uint32_to_string((uint32_t)n_missing++, &k, key, sizeof key);
                BSON_APPEND_UTF8(&missing, k, index);
                note_problem(problems, &problems_n, index, "missing");
            }
        } else {
            const char *what = index_difference(&want, &have);
            if (what) {
                bson_uint32_to_string((uint32_t)n_differ++, &k, key, sizeof key);
                BSON_APPEND_UTF8(&differ, k, index);
                note_problem(problems, &problems_n, index, what);
            }
        }
        bson_destroy(&have);
    }
    BSON_APPEND_ARRAY(&item->details, "missing", &missing);
    BSON_APPEND_ARRAY(&item->details, "different", &differ);
    bson_destroy(&missing);
    bson_destroy(&differ);
    if (failed && mongoq__error_is_server(&error, NAMESPACE_NOT_FOUND)) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR,
                               "open the queue once (mongoq_queue_new creates the collection's "
                               "indexes)",
                               "the queue's collection %s.%s does not exist", ctx->queue->db,
                               ctx->queue->name);
    } else if (failed) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR, "grant the listIndexes action",
                               "listIndexes failed: %s", error.message);
    } else if (problems_n > 0) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR,
                               "run mongoq_queue_ensure_indexes (opening the queue without "
                               "skip_ensure_indexes does); drop an index of a name mongoq uses "
                               "but other keys first",
                               "%d of %d indexes missing or different: %s", problems_n, checked,
                               problems->str);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL, "all %d indexes present as expected",
                               checked);
    }
    bson_string_free(problems, true);
    bson_destroy(&expected);
}

/* ---- the claim's plan ------------------------------------------------------------------- */

typedef struct {
    char index[128]; /* the first IXSCAN's indexName, "" when none */
    bool collscan;
} plan_t;

/* Walks an explain's plan tree for IXSCAN and COLLSCAN stages (any nesting, SBE included). */
static void
walk_plan(bson_iter_t *it, plan_t *plan, int depth)
{
    bson_iter_t child;
    while (depth < 32 && bson_iter_next(it)) {
        if (BSON_ITER_HOLDS_UTF8(it) && strcmp(bson_iter_key(it), "stage") == 0) {
            const char *stage = bson_iter_utf8(it, NULL);
            plan->collscan = plan->collscan || strcmp(stage, "COLLSCAN") == 0;
        } else if (BSON_ITER_HOLDS_UTF8(it) && strcmp(bson_iter_key(it), "indexName") == 0 &&
                   plan->index[0] == '\0') {
            bson_strncpy(plan->index, bson_iter_utf8(it, NULL), sizeof plan->index);
        } else if ((BSON_ITER_HOLDS_DOCUMENT(it) || BSON_ITER_HOLDS_ARRAY(it)) &&
                   bson_iter_recurse(it, &child)) {
            walk_plan(&child, plan, depth + 1);
        }
    }
}

/* {explain: {find, filter: the claim's (partition 0's when partitioned), sort: the claim's,
 * limit: 1}, verbosity}. */
static void
build_explain(mongoq__check_ctx_t *ctx, bson_t *cmd)
{
    bson_t find, filter, sort;
    BSON_APPEND_DOCUMENT_BEGIN(cmd, "explain", &find);
    BSON_APPEND_UTF8(&find, "find", ctx->queue->name);
    BSON_APPEND_DOCUMENT_BEGIN(&find, "filter", &filter);
    if (ctx->queue->opts.partitions > 1) {
        /* A partitioned claim names its partition first (the claim index's first key, and the
         * shard key: through mongos the explain then reaches the shard holding partition 0). */
        BSON_APPEND_INT32(&filter, MONGOQ__F_PARTITION, 0);
    }
    mongoq__document_append_due(&filter, mongoq__clock_server_now_ms(ctx->queue->clock));
    bson_append_document_end(&find, &filter);
    BSON_APPEND_DOCUMENT_BEGIN(&find, "sort", &sort);
    BSON_APPEND_INT32(&sort, MONGOQ__F_PRIORITY, -1);
    BSON_APPEND_INT32(&sort, MONGOQ__F_RUN_AT, 1);
    BSON_APPEND_INT32(&sort, MONGOQ__F_ID, 1);
    bson_append_document_end(&find, &sort);
    BSON_APPEND_INT64(&find, "limit", 1);
    bson_append_document_end(cmd, &find);
    BSON_APPEND_UTF8(cmd, "verbosity", "executionStats");
}

void
mongoq__check_claim_plan(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t error;
    bson_iter_t it, sub;
    plan_t plan = {{0}, false};
    build_explain(ctx, &cmd);
    bool ok = mongoc_client_read_command_with_opts(ctx->client, ctx->queue->db, &cmd, NULL, NULL,
                                                   &reply, &error);
    int64_t keys = -1, docs = -1;
    if (ok && bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "queryPlanner.winningPlan", &sub) &&
        bson_iter_recurse(&sub, &it)) {
        walk_plan(&it, &plan, 0);
    }
    if (ok && bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "executionStats.totalKeysExamined", &sub)) {
        keys = bson_iter_as_int64(&sub);
    }
    if (ok && bson_iter_init(&it, &reply) &&
        bson_iter_find_descendant(&it, "executionStats.totalDocsExamined", &sub)) {
        docs = bson_iter_as_int64(&sub);
    }
    BSON_APPEND_UTF8(&item->details, "index", plan.index);
    BSON_APPEND_BOOL(&item->details, "collscan", plan.collscan);
    BSON_APPEND_INT64(&item->details, "keys_examined", keys);
    BSON_APPEND_INT64(&item->details, "docs_examined", docs);
    if (!ok) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING, "grant the explain action",
                               "explain of the claim failed: %s", error.message);
    } else if (plan.collscan || strcmp(plan.index, "mongoq_claim") != 0) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR,
                               "create the claim index (mongoq_queue_ensure_indexes)",
                               "the claim does not use the claim index (%s): every claim scans",
                               plan.collscan ? "collection scan" : plan.index);
    } else if (keys > ctx->opts.keys_warn) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "fewer distinct priorities, or fewer ready messages not yet due",
                               "the claim uses mongoq_claim but examines %" PRId64 " keys", keys);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                               "the claim uses mongoq_claim: %" PRId64 " keys, %" PRId64
                               " documents examined",
                               keys, docs);
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
}

/* ---- partitions ----------------------------------------------------------------------------- */

/* Whether ctx's server is a mongos (hello's msg "isdbgrid"). */
static bool
on_mongos(const mongoq__check_ctx_t *ctx)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, &ctx->hello, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
           strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0;
}

/* config.collections' entry for the queue's collection (not dropped) into *key (a copy, or NULL
 * when the collection is not sharded). */
static bool
shard_key_of(mongoq__check_ctx_t *ctx, bson_t **key, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, found_key;
    const bson_t *doc;
    char *ns = bson_strdup_printf("%s.%s", ctx->queue->db, ctx->queue->name);
    BSON_APPEND_UTF8(&filter, "_id", ns);
    mongoc_collection_t *coll = mongoc_client_get_collection(ctx->client, "config", "collections");
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    *key = NULL;
    if (mongoc_cursor_next(cursor, &doc) && !get_bool(doc, "dropped") &&
        get_doc(doc, "key", &found_key)) {
        *key = bson_copy(&found_key);
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&filter);
    bson_free(ns);
    return ok;
}

/* {partition: 1} or {partition: "hashed"}: the keys mongoq_queue_shard shards on. */
static bool
expected_key(const bson_t *key)
{
    bson_iter_t it;
    return bson_iter_init(&it, key) && bson_iter_next(&it) &&
           strcmp(bson_iter_key(&it), MONGOQ__F_PARTITION) == 0 &&
           ((BSON_ITER_HOLDS_NUMBER(&it) && bson_iter_as_int64(&it) == 1) ||
            (BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "hashed") == 0)) &&
           !bson_iter_next(&it);
}

void
mongoq__check_partitions(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    int32_t p = ctx->queue->opts.partitions;
    bson_error_t error;
    bson_t *key = NULL;
    BSON_APPEND_INT32(&item->details, "partitions", p);
    if (!on_mongos(ctx)) {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                               p > 1 ? "%" PRId32 " partitions (not sharded: not a mongos)"
                                     : "%" PRId32 " partition",
                               p);
        return;
    }
    if (!shard_key_of(ctx, &key, &error)) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING, "grant find on config.collections",
                               "reading config.collections failed: %s", error.message);
        return;
    }
    bool expected = key && expected_key(key);
    BSON_APPEND_BOOL(&item->details, "sharded", key != NULL);
    if (key) {
        BSON_APPEND_DOCUMENT(&item->details, "shard_key", key);
    }
    if (key && (p <= 1 || !expected)) {
        char *json = bson_as_relaxed_extended_json(key, NULL);
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR,
                               p <= 1 ? "open the queue with partitions > 1 (a new collection) "
                                        "and shard it with mongoq_queue_shard"
                                      : "reshard on {partition: 1} (docs/scaling.md)",
                               "%" PRId32 " partition(s), sharded on %s: claims and acks need "
                               "{partition: 1} (mongos refuses them without the shard key)",
                               p, json);
        bson_free(json);
    } else if (key) {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                               "%" PRId32 " partitions, sharded on the partition", p);
    } else if (p > 1) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "shard it with mongoq_queue_shard (once, through mongos)",
                               "%" PRId32 " partitions, the collection is not sharded: every "
                               "message on the database's primary shard",
                               p);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                               "1 partition, not sharded (on the database's primary shard)");
    }
    bson_destroy(key);
}

/* ---- write concern ------------------------------------------------------------------------ */

void
mongoq__check_write_concern(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    const mongoc_write_concern_t *wc = ctx->queue->wc;
    int32_t w = mongoc_write_concern_get_w(wc);
    bool majority = mongoc_write_concern_get_wmajority(wc);
    bool journal = mongoc_write_concern_journal_is_set(wc) && mongoc_write_concern_get_journal(wc);
    char w_text[32];
    if (majority) {
        bson_strncpy(w_text, "majority", sizeof w_text);
    } else if (w == MONGOC_WRITE_CONCERN_W_DEFAULT) {
        bson_strncpy(w_text, "server default", sizeof w_text);
    } else {
        bson_snprintf(w_text, sizeof w_text, "%" PRId32, w);
    }
    BSON_APPEND_UTF8(&item->details, "w", w_text);
    BSON_APPEND_BOOL(&item->details, "j", journal);
    BSON_APPEND_INT64(&item->details, "wtimeout_ms", mongoc_write_concern_get_wtimeout_int64(wc));
    if (w == MONGOC_WRITE_CONCERN_W_UNACKNOWLEDGED) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "use w: majority (the default): unacknowledged writes can be lost "
                               "unseen",
                               "w: 0, writes are not acknowledged");
    } else if (!majority && w == 1 && !journal) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "use w: majority, j: true (the default) for messages that survive "
                               "a crash or failover",
                               "w: 1 without j: an acknowledged message can be lost on a crash");
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL, "w: %s, j: %s", w_text,
                               journal ? "true" : "false");
    }
}

/* ---- pause state, backlog and dead letters --------------------------------------------------- */

/* The stats, read once for both checks (after the checks' client went back to the pool). */
static bool
read_stats(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item, mongoq_stats_t *stats)
{
    if (!ctx->stats_read) {
        ctx->stats_read = true;
        ctx->stats_ok = mongoq_queue_stats(ctx->queue, &ctx->stats, &ctx->stats_error);
    }
    if (!ctx->stats_ok) {
        mongoq__check_item_set(item, MONGOQ_CHECK_ERROR, NULL, "stats failed: %s",
                               ctx->stats_error.message);
        return false;
    }
    *stats = ctx->stats;
    return true;
}

/* A pause is deliberate, but a forgotten one looks like a dead queue: a warning. */
void
mongoq__check_paused(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    if (!read_stats(ctx, item, &stats)) {
        return;
    }
    BSON_APPEND_BOOL(&item->details, "paused", stats.paused);
    if (stats.paused) {
        char *advice = bson_strdup_printf("when claims should go on: mongoq --db %s --queue %s "
                                          "resume (or mongoq_queue_resume)",
                                          ctx->queue->db, ctx->queue->name);
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING, advice,
                               "the queue is paused: nothing is claimed (%" PRId64 " ready wait)",
                               stats.ready);
        bson_free(advice);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL, "not paused");
    }
}

void
mongoq__check_backlog(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    if (!read_stats(ctx, item, &stats)) {
        return;
    }
    BSON_APPEND_INT64(&item->details, "ready", stats.ready);
    BSON_APPEND_INT64(&item->details, "delayed", stats.delayed);
    BSON_APPEND_INT64(&item->details, "processing", stats.processing);
    BSON_APPEND_INT64(&item->details, "oldest_due_age_ms", stats.oldest_ready_age_ms);
    if (stats.oldest_ready_age_ms > ctx->opts.oldest_due_warn_ms) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "add consumers or workers, or look for a stuck handler",
                               "the oldest due message has waited %" PRId64 " s (%" PRId64
                               " ready)",
                               stats.oldest_ready_age_ms / 1000, stats.ready - stats.delayed);
    } else if (stats.oldest_ready_age_ms < 0) {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                               "nothing due (%" PRId64 " delayed, %" PRId64 " processing)",
                               stats.delayed, stats.processing);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL,
                               "%" PRId64 " due, the oldest for %" PRId64 " ms",
                               stats.ready - stats.delayed, stats.oldest_ready_age_ms);
    }
}

void
mongoq__check_dead_letters(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item)
{
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    if (!read_stats(ctx, item, &stats)) {
        return;
    }
    BSON_APPEND_INT64(&item->details, "dead", stats.dead);
    if (stats.dead > 0) {
        mongoq__check_item_set(item, MONGOQ_CHECK_WARNING,
                               "inspect them (mongoq ls --status dead), then redrive or purge",
                               "%" PRId64 " dead messages", stats.dead);
    } else {
        mongoq__check_item_set(item, MONGOQ_CHECK_OK, NULL, "no dead messages");
    }
}

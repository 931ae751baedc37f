/*
 * Message groups: the transaction helper and admission at enqueue (the release of a place when a
 * message finishes is group_finish.c's). See group-private.h and docs/design.md (Groups) for
 * the invariant and why it holds.
 */
#include "group-private.h"

#include <inttypes.h>
#include <string.h>

#include "error-private.h"
#include "fields.h"
#include "partition-private.h"
#include "service-private.h"

#define DUPLICATE_KEY 11000

/* ---- transactions ------------------------------------------------------------------------- */

typedef struct {
    mongoq__txn_t txn;
    mongoq__txn_body_fn body;
    void *ctx;
} txn_call_t;

static bool
txn_callback(mongoc_client_session_t *session, void *ctx, bson_t **reply, bson_error_t *error)
{
    txn_call_t *call = ctx;
    call->txn.session = session;
    bson_destroy(call->txn.reply);
    call->txn.reply = NULL;
    bool ok = call->body(&call->txn, call->ctx, error);
    if (!ok && call->txn.reply) {
        *reply = bson_copy(call->txn.reply); /* its labels decide whether to run it again */
    }
    return ok;
}

bool
mongoq__txn_run(mongoq_queue_t *queue, mongoc_client_t *client, mongoq__txn_body_fn body, void *ctx,
                bson_error_t *error)
{
    bson_t reply;
    bool from_pool = client == NULL, ok = false;
    if (from_pool && !(client = mongoq__pool_pop(queue->pool, error))) {
        return false;
    }
    txn_call_t call = {.txn = {.queue = queue}, .body = body, .ctx = ctx};
    call.txn.coll = mongoc_client_get_collection(client, queue->db, queue->name);
    mongoc_client_session_t *session = mongoc_client_start_session(client, NULL, error);
    if (session) {
        mongoc_transaction_opt_t *topts = mongoc_transaction_opts_new();
        mongoc_transaction_opts_set_write_concern(topts, queue->wc);
        ok = mongoc_client_session_with_transaction(session, txn_callback, topts, &call, &reply,
                                                    error);
        if (!ok && mongoc_error_has_label(&reply, "UnknownTransactionCommitResult")) {
            mongoq__error_set(error, MONGOQ_ERROR_UNKNOWN_OUTCOME,
                              "group transaction: the commit's outcome is unknown: %s",
                              error->message);
        }
        bson_destroy(&reply);
        mongoc_transaction_opts_destroy(topts);
        mongoc_client_session_destroy(session);
    }
    bson_destroy(call.txn.reply);
    mongoc_collection_destroy(call.txn.coll);
    if (from_pool) {
        mongoc_client_pool_push(queue->pool, client);
    }
    return ok;
}

/* The session's options for one command of the transaction. */
bool
mongoq__txn_opts(mongoq__txn_t *txn, bson_t *opts, bson_error_t *error)
{
    return mongoc_client_session_append(txn->session, opts, error);
}

void
mongoq__txn_keep_reply(mongoq__txn_t *txn, const bson_t *reply)
{
    bson_destroy(txn->reply);
    txn->reply = bson_copy(reply);
}

/*
 * findAndModify in the transaction; *value_out (when not NULL) gets a copy of the document it
 * returned, or NULL when there was none.
 */
bool
mongoq__txn_fam(mongoq__txn_t *txn, const bson_t *filter, const bson_t *sort, const bson_t *update,
                mongoc_find_and_modify_flags_t flags, bson_t **value_out, bson_error_t *error)
{
    bson_t extra = BSON_INITIALIZER, reply;
    bson_iter_t it;
    bool ok = false;
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    if (value_out) {
        *value_out = NULL;
    }
    if (mongoq__txn_opts(txn, &extra, error)) {
        if (sort) {
            mongoc_find_and_modify_opts_set_sort(fam, sort);
        }
        mongoc_find_and_modify_opts_set_update(fam, update);
        mongoc_find_and_modify_opts_set_flags(fam, flags);
        mongoc_find_and_modify_opts_append(fam, &extra);
        ok = mongoc_collection_find_and_modify_with_opts(txn->coll, filter, fam, &reply, error);
        if (!ok) {
            mongoq__txn_keep_reply(txn, &reply);
        } else if (value_out && bson_iter_init_find(&it, &reply, "value") &&
                   BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            *value_out = bson_new_from_data(data, len);
        }
        bson_destroy(&reply);
    }
    mongoc_find_and_modify_opts_destroy(fam);
    bson_destroy(&extra);
    return ok;
}

/* updateOne (update not NULL) or deleteOne in the transaction; *n: matched or deleted. */
bool
mongoq__txn_write_one(mongoq__txn_t *txn, const bson_t *filter, const bson_t *update, int64_t *n,
                      bson_error_t *error)
{
    bson_t opts = BSON_INITIALIZER, reply;
    bool ok = false;
    *n = 0;
    if (mongoq__txn_opts(txn, &opts, error)) {
        ok = update ? mongoc_collection_update_one(txn->coll, filter, update, &opts, &reply, error)
                    : mongoc_collection_delete_one(txn->coll, filter, &opts, &reply, error);
        if (ok) {
            *n = mongoq__reply_count(&reply, update ? "matchedCount" : "deletedCount");
        } else {
            mongoq__txn_keep_reply(txn, &reply);
        }
        bson_destroy(&reply);
    }
    bson_destroy(&opts);
    return ok;
}

int64_t
mongoq__int_field(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return doc && bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : 0;
}

/* ---- the group document ------------------------------------------------------------------- */

char *
mongoq__group_doc_id(const char *group)
{
    return bson_strdup_printf("%s%s", MONGOQ__GROUP_ID_PREFIX, group);
}

int32_t
mongoq__group_partition(const mongoq_queue_t *queue, const char *group)
{
    /* As a dedup key is placed: every message of a group, and its document, in one partition. */
    return mongoq__partition_of(queue->opts.partitions, NULL, group);
}

void
mongoq__group_doc_filter(const mongoq_queue_t *queue, const char *group, bson_t *filter)
{
    char *id = mongoq__group_doc_id(group);
    mongoq__partition_append(filter, queue->opts.partitions, mongoq__group_partition(queue, group));
    BSON_APPEND_UTF8(filter, MONGOQ__F_ID, id);
    bson_free(id);
}

/* {$ifNull: ["$field", 0]} */
void
mongoq__group_append_or_zero(bson_t *parent, const char *key, const char *path)
{
    bson_t doc, args;
    BSON_APPEND_DOCUMENT_BEGIN(parent, key, &doc);
    BSON_APPEND_ARRAY_BEGIN(&doc, "$ifNull", &args);
    BSON_APPEND_UTF8(&args, "0", path);
    BSON_APPEND_INT64(&args, "1", 0);
    bson_append_array_end(&doc, &args);
    bson_append_document_end(parent, &doc);
}

/*
 * How many of n new messages the group admits: none while any waits (they are ahead in line),
 * else as many as its free places:
 * {$cond: [{$gt: [W, 0]}, 0, {$max: [0, {$min: [n, {$subtract: [limit, A]}]}]}]}
 */
void
mongoq__group_append_admit(bson_t *parent, const char *key, int64_t limit, int64_t n)
{
    bson_t cond, args, gt, gt_args, max, max_args, min, min_args, sub, sub_args;
    BSON_APPEND_DOCUMENT_BEGIN(parent, key, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$cond", &args);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "0", &gt);
    BSON_APPEND_ARRAY_BEGIN(&gt, "$gt", &gt_args);
    mongoq__group_append_or_zero(&gt_args, "0", "$" MONGOQ__F_G_WAITING);
    BSON_APPEND_INT64(&gt_args, "1", 0);
    bson_append_array_end(&gt, &gt_args);
    bson_append_document_end(&args, &gt);
    BSON_APPEND_INT64(&args, "1", 0);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "2", &max);
    BSON_APPEND_ARRAY_BEGIN(&max, "$max", &max_args);
    BSON_APPEND_INT64(&max_args, "0", 0);
    BSON_APPEND_DOCUMENT_BEGIN(&max_args, "1", &min);
    BSON_APPEND_ARRAY_BEGIN(&min, "$min", &min_args);
    BSON_APPEND_INT64(&min_args, "0", n);
    BSON_APPEND_DOCUMENT_BEGIN(&min_args, "1", &sub);
    BSON_APPEND_ARRAY_BEGIN(&sub, "$subtract", &sub_args);
    BSON_APPEND_INT64(&sub_args, "0", limit);
    mongoq__group_append_or_zero(&sub_args, "1", "$" MONGOQ__F_G_ACTIVE);
    bson_append_array_end(&sub, &sub_args);
    bson_append_document_end(&min_args, &sub);
    bson_append_array_end(&min, &min_args);
    bson_append_document_end(&max_args, &min);
    bson_append_array_end(&max, &max_args);
    bson_append_document_end(&args, &max);
    bson_append_array_end(&cond, &args);
    bson_append_document_end(parent, &cond);
}

/* {$add: [{$ifNull: ["$field", 0]}, add, <"$admitted" times sign, when sign != 0>]} */
static void
append_count(bson_t *set, const char *field, int64_t add, int sign)
{
    bson_t doc, args, mul, mul_args;
    char path[32];
    bson_snprintf(path, sizeof path, "$%s", field);
    BSON_APPEND_DOCUMENT_BEGIN(set, field, &doc);
    BSON_APPEND_ARRAY_BEGIN(&doc, "$add", &args);
    mongoq__group_append_or_zero(&args, "0", path);
    BSON_APPEND_INT64(&args, "1", add);
    if (sign != 0) {
        BSON_APPEND_DOCUMENT_BEGIN(&args, "2", &mul);
        BSON_APPEND_ARRAY_BEGIN(&mul, "$multiply", &mul_args);
        BSON_APPEND_UTF8(&mul_args, "0", "$" MONGOQ__F_G_ADMITTED);
        BSON_APPEND_INT64(&mul_args, "1", sign);
        bson_append_array_end(&mul, &mul_args);
        bson_append_document_end(&args, &mul);
    }
    bson_append_array_end(&doc, &args);
    bson_append_document_end(set, &doc);
}

/*
 * The enqueue's group update, computed on the server from the document as it is:
 *   stage 0: admitted = (the rule above), name, limit
 *   stage 1: seq += n, active += admitted, waiting += n - admitted
 *   stages 2-3 (per-group rate limit): admitted tokens from the group's bucket
 * The document is returned as updated: admitted and seq - n tell the caller what it got.
 */
static void
build_take_places(const mongoq_queue_t *queue, const char *group, int64_t limit, int64_t n,
                  bson_t *pipeline)
{
    bson_t stage, set, lit;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_G_NAME, &lit);
    BSON_APPEND_UTF8(&lit, "$literal", group);
    bson_append_document_end(&set, &lit);
    BSON_APPEND_INT64(&set, MONGOQ__F_G_LIMIT, limit);
    mongoq__group_append_admit(&set, MONGOQ__F_G_ADMITTED, limit, n);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "1", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    append_count(&set, MONGOQ__F_G_SEQ, n, 0);
    append_count(&set, MONGOQ__F_G_ACTIVE, 0, 1);
    append_count(&set, MONGOQ__F_G_WAITING, n, -1);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
    if (mongoq__group_rate_on(queue)) {
        mongoq__group_rate_append(queue, pipeline, 2);
    }
}

/* ---- enqueue ------------------------------------------------------------------------------ */

bool
mongoq__group_check_opts(const mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts,
                         bson_error_t *error)
{
    if (!opts->group) {
        return true;
    }
    if (queue->opts.group_concurrency == 0) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "enqueue opts: a group needs a queue with groups (queue opts "
                          "group_concurrency > 0)");
        return false;
    }
    if (opts->dedup_key && queue->opts.partitions > 1) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "enqueue opts: a partitioned queue takes a group or a dedup_key, not "
                          "both (the group places the message, the key could not be checked)");
        return false;
    }
    if (opts->session && !mongoc_client_session_in_transaction(opts->session)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "enqueue opts: a grouped enqueue with a session needs the session's "
                          "transaction started");
        return false;
    }
    return true;
}

typedef struct {
    const bson_t *docs;
    size_t n;
    const mongoq_enqueue_opts_t *opts;
    bool duplicate;
    bson_oid_t holder;
    size_t stored;
} enqueue_ctx_t;

/* The dedup key's holder, looked up in the transaction (its unique index must never see a key
 * the transaction can see: mongod aborts the transaction on 11000). */
static bool
find_holder(mongoq__txn_t *txn, const char *key, bool *found, bson_oid_t *holder,
            bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    const bson_t *doc;
    bson_iter_t it;
    bool ok = false;
    *found = false;
    BSON_APPEND_UTF8(&filter, MONGOQ__F_DEDUP_KEY, key);
    BSON_APPEND_INT64(&opts, "limit", 1);
    if (mongoq__txn_opts(txn, &opts, error)) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(txn->coll, &filter, &opts, NULL);
        if (mongoc_cursor_next(cursor, &doc) && bson_iter_init_find(&it, doc, MONGOQ__F_ID) &&
            BSON_ITER_HOLDS_OID(&it)) {
            *found = true;
            bson_oid_copy(bson_iter_oid(&it), holder);
        }
        const bson_t *err_doc = NULL;
        ok = !mongoc_cursor_error_document(cursor, error, &err_doc);
        if (!ok && err_doc) {
            mongoq__txn_keep_reply(txn, err_doc);
        }
        mongoc_cursor_destroy(cursor);
    }
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/*
 * docs[i] as stored: status ready (the first `admit`) or waiting, group_seq, partition; an
 * admitted message's run_at raised to due_ms (its token's due time; 0: none).
 */
static void
build_stored(const mongoq_queue_t *queue, const bson_t *doc, const char *group, bool admit,
             int64_t seq, int64_t due_ms, bson_t *out)
{
    bson_iter_t it;
    bson_init(out);
    bson_copy_to_excluding_noinit(doc, out, MONGOQ__F_STATUS, MONGOQ__F_RUN_AT, NULL);
    int64_t run_at =
        bson_iter_init_find(&it, doc, MONGOQ__F_RUN_AT) && BSON_ITER_HOLDS_DATE_TIME(&it)
            ? bson_iter_date_time(&it)
            : due_ms;
    BSON_APPEND_DATE_TIME(out, MONGOQ__F_RUN_AT, admit && due_ms > run_at ? due_ms : run_at);
    BSON_APPEND_UTF8(out, MONGOQ__F_STATUS, admit ? MONGOQ__S_READY : MONGOQ__S_WAITING);
    BSON_APPEND_UTF8(out, MONGOQ__F_GROUP, group);
    BSON_APPEND_INT64(out, MONGOQ__F_GROUP_SEQ, seq);
    mongoq__partition_append(out, queue->opts.partitions, mongoq__group_partition(queue, group));
}

static bool
insert_stored(mongoq__txn_t *txn, bson_t *stored, size_t n, bson_error_t *error)
{
    bson_t opts = BSON_INITIALIZER, reply;
    const bson_t **ptrs = bson_malloc(n * sizeof *ptrs);
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = &stored[i];
    }
    bool ok = mongoq__txn_opts(txn, &opts, error);
    if (ok) {
        ok = mongoc_collection_insert_many(txn->coll, ptrs, n, &opts, &reply, error);
        if (!ok) {
            mongoq__txn_keep_reply(txn, &reply);
        }
        bson_destroy(&reply);
    }
    bson_free(ptrs);
    bson_destroy(&opts);
    return ok;
}

static bool
enqueue_body(mongoq__txn_t *txn, void *arg, bson_error_t *error)
{
    enqueue_ctx_t *c = arg;
    const char *group = c->opts->group;
    int64_t limit = txn->queue->opts.group_concurrency, n = (int64_t)c->n;
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, *doc = NULL;
    c->duplicate = false;
    c->stored = 0;
    if (c->opts->dedup_key &&
        !find_holder(txn, c->opts->dedup_key, &c->duplicate, &c->holder, error)) {
        return false;
    }
    if (c->duplicate) {
        return true; /* nothing written: the commit is empty */
    }
    mongoq__group_doc_filter(txn->queue, group, &filter);
    build_take_places(txn->queue, group, limit, n, &update);
    bool ok = mongoq__txn_fam(txn, &filter, NULL, &update,
                              MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                              &doc, error);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (!ok) {
        return false;
    }
    int64_t admit = mongoq__int_field(doc, MONGOQ__F_G_ADMITTED);
    int64_t seq = mongoq__int_field(doc, MONGOQ__F_G_SEQ) - n;
    bson_t *stored = bson_aligned_alloc(BSON_ALIGNOF(bson_t), c->n * sizeof *stored);
    for (size_t i = 0; i < c->n; i++) {
        bool in = (int64_t)i < admit;
        build_stored(txn->queue, &c->docs[i], group, in, seq + 1 + (int64_t)i,
                     in ? mongoq__group_rate_due(txn->queue, doc, (int64_t)i) : 0, &stored[i]);
    }
    bson_destroy(doc);
    ok = insert_stored(txn, stored, c->n, error);
    for (size_t i = 0; i < c->n; i++) {
        bson_destroy(&stored[i]);
    }
    bson_free(stored);
    c->stored = ok ? c->n : 0;
    return ok;
}

bool
mongoq__group_enqueue(mongoq_queue_t *queue, const bson_t *docs, size_t n,
                      const mongoq_enqueue_opts_t *opts, size_t *stored, bool *duplicate,
                      bson_oid_t *holder, bson_error_t *error)
{
    enqueue_ctx_t c = {.docs = docs, .n = n, .opts = opts};
    bool ok;
    if (opts->session) {
        /* The caller's transaction: its commit is the caller's, and so is a retry. */
        mongoq__txn_t txn = {.queue = queue, .session = opts->session};
        txn.coll = mongoc_client_get_collection(mongoc_client_session_get_client(opts->session),
                                                queue->db, queue->name);
        ok = enqueue_body(&txn, &c, error);
        if (opts->reply && txn.reply) {
            bson_destroy(opts->reply);
            bson_copy_to(txn.reply, opts->reply);
        }
        bson_destroy(txn.reply);
        mongoc_collection_destroy(txn.coll);
    } else {
        ok = mongoq__txn_run(queue, NULL, enqueue_body, &c, error);
    }
    *stored = ok ? c.stored : 0;
    *duplicate = c.duplicate;
    if (c.duplicate) {
        bson_oid_copy(&c.holder, holder);
        mongoq__error_set(error, MONGOQ_ERROR_DUPLICATE,
                          "an unfinished message already holds dedup_key \"%s\"", opts->dedup_key);
        return false;
    }
    if (!ok && mongoq__error_is_server(error, DUPLICATE_KEY)) {
        mongoq__error_set(error, MONGOQ_ERROR_DUPLICATE,
                          "a unique key of this enqueue is already held (its dedup_key, taken "
                          "meanwhile by another message, or a caller-chosen _id already stored); "
                          "nothing of this enqueue was written");
    }
    return ok;
}

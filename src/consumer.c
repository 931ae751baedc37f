/*
 * Claiming. One claim is one findAndModify that filters ready messages due on the server's
 * clock, sorts by priority, run_at, _id (served by the claim index) and, in the same atomic
 * step, writes status processing, attempts + 1, a fresh lease_token, claimed_by and
 * lease_expires_at = $$NOW + lease. Two consumers can never get the same message: the second
 * findAndModify no longer sees it as ready.
 */
#include <string.h>
#include <unistd.h>

#include "fields.h"
#include "message-private.h"
#include "mongoq/consumer.h"
#include "mongoq/error.h"
#include "queue-private.h"

/* Damaged documents buried per claim attempt before giving up for this round. */
#define MAX_BURIALS 32
#define MAX_CLAIM_MANY 1000
#define MAX_WAIT_MS ((int64_t)1 << 40)

struct mongoq_consumer_t {
    mongoq_queue_t *queue;
    char *name;
    int64_t lease_ms;
};

static char *
default_name(void)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0) {
        bson_strncpy(host, "localhost", sizeof host);
    }
    host[sizeof host - 1] = '\0';
    return bson_strdup_printf("%s:%d:%" PRIu64, host, (int)getpid(), mongoq__queue_next_serial());
}

mongoq_consumer_t *
mongoq_consumer_new(mongoq_queue_t *queue, const mongoq_consumer_opts_t *opts, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    if (opts && opts->version != MONGOQ_CONSUMER_OPTS_VERSION) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "consumer opts: unknown version (use MONGOQ_CONSUMER_OPTS_INIT)");
        return NULL;
    }
    if (opts && (opts->lease_ms < 0 ||
                 (opts->name &&
                  (!*opts->name || !bson_utf8_validate(opts->name, strlen(opts->name), false))))) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "consumer opts: lease_ms is negative or name is empty or not UTF-8");
        return NULL;
    }
    mongoq_consumer_t *consumer = bson_malloc0(sizeof *consumer);
    consumer->queue = queue;
    consumer->name = opts && opts->name ? bson_strdup(opts->name) : default_name();
    consumer->lease_ms = opts && opts->lease_ms > 0 ? opts->lease_ms : queue->opts.lease_ms;
    return consumer;
}

void
mongoq_consumer_destroy(mongoq_consumer_t *consumer)
{
    if (!consumer) {
        return;
    }
    bson_free(consumer->name);
    bson_free(consumer);
}

const char *
mongoq_consumer_name(const mongoq_consumer_t *consumer)
{
    BSON_ASSERT_PARAM(consumer);
    return consumer->name;
}

/* ---- the claim query ---------------------------------------------------------------------- */

/*
 * {status: ready, run_at: {$lte: estimate + slack}, $expr: {$lte: ["$run_at", "$$NOW"]}}.
 * The range lets the claim index serve the filter; the $expr decides on the server's clock.
 */
static void
build_due_filter(int64_t server_now, bson_t *filter)
{
    bson_t range, expr, args;
    BSON_APPEND_UTF8(filter, MONGOQ__F_STATUS, MONGOQ__S_READY);
    BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_RUN_AT, &range);
    BSON_APPEND_DATE_TIME(&range, "$lte", server_now + MONGOQ__CLOCK_SLACK_MS);
    bson_append_document_end(filter, &range);
    BSON_APPEND_DOCUMENT_BEGIN(filter, "$expr", &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, "$lte", &args);
    BSON_APPEND_UTF8(&args, "0", MONGOQ__P_RUN_AT);
    BSON_APPEND_UTF8(&args, "1", "$$NOW");
    bson_append_array_end(&expr, &args);
    bson_append_document_end(filter, &expr);
}

static void
build_claim_sort(bson_t *sort)
{
    BSON_APPEND_INT32(sort, MONGOQ__F_PRIORITY, -1);
    BSON_APPEND_INT32(sort, MONGOQ__F_RUN_AT, 1);
    BSON_APPEND_INT32(sort, MONGOQ__F_ID, 1);
}

/*
 * attempts + 1, but only when attempts is a number (it sorts between null and strings): a
 * damaged value must not make the claim itself fail, or one bad document would block the
 * queue's head forever. A damaged value is left as it is and the document is buried.
 */
static void
append_attempts_inc(bson_t *set)
{
    static const char *json = "{\"$cond\": [{\"$and\": ["
                              "{\"$gt\": [\"" MONGOQ__P_ATTEMPTS "\", null]}, "
                              "{\"$lt\": [\"" MONGOQ__P_ATTEMPTS "\", \"\"]}]}, "
                              "{\"$add\": [\"" MONGOQ__P_ATTEMPTS "\", 1]}, "
                              "\"" MONGOQ__P_ATTEMPTS "\"]}";
    bson_t *expr = bson_new_from_json((const uint8_t *)json, -1, NULL);
    BSON_ASSERT(expr);
    BSON_APPEND_DOCUMENT(set, MONGOQ__F_ATTEMPTS, expr);
    bson_destroy(expr);
}

/* [{$set: {status: processing, attempts: +1, lease_token, claimed_by, lease_expires_at, ...}}] */
static void
build_claim_update(const mongoq_consumer_t *consumer, const bson_oid_t *token, bson_t *pipeline)
{
    bson_t stage, set, doc;
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_UTF8(&set, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    append_attempts_inc(&set);
    BSON_APPEND_OID(&set, MONGOQ__F_LEASE_TOKEN, token);
    BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_CLAIMED_BY, &doc);
    BSON_APPEND_UTF8(&doc, "$literal", consumer->name);
    bson_append_document_end(&set, &doc);
    mongoq__document_append_now_plus(&set, MONGOQ__F_LEASE_EXPIRES_AT, consumer->lease_ms);
    BSON_APPEND_UTF8(&set, MONGOQ__F_UPDATED_AT, "$$NOW");
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
}

/*
 * Turns a claimed document into a message, or buries it when damaged. Takes doc (heap);
 * returns false only on a driver error while burying.
 */
static bool
adopt(mongoq_consumer_t *consumer, bson_t *doc, mongoq_message_t **msg_out, bson_error_t *error)
{
    char reason[256];
    mongoq_queue_t *queue = consumer->queue;
    *msg_out = mongoq__message_new(queue, doc, reason, sizeof reason);
    if (*msg_out) {
        mongoq__counter_add(&queue->counters.claimed, 1);
        return true;
    }
    mongoq__queue_log(queue, MONGOQ_LOG_WARNING, "mongoq: %s.%s: burying a message: %s", queue->db,
                      queue->name, reason);
    bool ok = mongoq__message_bury(queue, doc, reason, error);
    bson_destroy(doc);
    return ok;
}

/* ---- claim one ---------------------------------------------------------------------------- */

/* One findAndModify. *doc_out is the claimed document (heap) or NULL when none is due. */
static bool
find_and_claim(mongoq_consumer_t *consumer, bson_t **doc_out, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t filter = BSON_INITIALIZER, sort = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bson_t extra = BSON_INITIALIZER, reply;
    bson_iter_t it;
    bson_oid_t token;
    int64_t now = mongoq__clock_server_now_ms(queue->clock);
    bson_oid_init(&token, NULL);
    build_due_filter(now, &filter);
    build_claim_sort(&sort);
    build_claim_update(consumer, &token, &update);
    mongoq__queue_append_write_concern(queue, &extra);
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_sort(fam, &sort);
    mongoc_find_and_modify_opts_set_update(fam, &update);
    mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    mongoc_find_and_modify_opts_append(fam, &extra);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    bool ok = mongoc_collection_find_and_modify_with_opts(coll, &filter, fam, &reply, error);
    mongoq__queue_release(queue, client, coll);
    *doc_out = NULL;
    if (ok && bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        *doc_out = bson_new_from_data(data, len);
    }
    mongoc_find_and_modify_opts_destroy(fam);
    bson_destroy(&reply);
    bson_destroy(&extra);
    bson_destroy(&update);
    bson_destroy(&sort);
    bson_destroy(&filter);
    return ok;
}

/* Claims at most one message; buries damaged ones on the way. *got = 0 or 1. */
static bool
attempt_one(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs, size_t *got,
            bson_error_t *error)
{
    (void)max;
    *got = 0;
    for (int i = 0; i < MAX_BURIALS; i++) {
        bson_t *doc;
        if (!find_and_claim(consumer, &doc, error)) {
            return false;
        }
        if (!doc) {
            return true;
        }
        if (!adopt(consumer, doc, &msgs[0], error)) {
            return false;
        }
        if (msgs[0]) {
            *got = 1;
            return true;
        }
    }
    return true;
}

/* ---- claim many --------------------------------------------------------------------------- */

static void
append_in(bson_t *filter, const char *field, const bson_t *values)
{
    bson_t cond;
    BSON_APPEND_DOCUMENT_BEGIN(filter, field, &cond);
    BSON_APPEND_ARRAY(&cond, "$in", values);
    bson_append_document_end(filter, &cond);
}

/* Round trip 1: the _ids of up to max due messages, in claim order, as a BSON array. */
static bool
find_candidates(mongoq_consumer_t *consumer, size_t max, bson_t *ids, size_t *n_ids,
                bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, doc;
    const bson_t *found;
    bson_iter_t it;
    char key[16];
    const char *k;
    build_due_filter(mongoq__clock_server_now_ms(queue->clock), &filter);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &doc);
    build_claim_sort(&doc);
    bson_append_document_end(&opts, &doc);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &doc);
    BSON_APPEND_INT32(&doc, MONGOQ__F_ID, 1);
    bson_append_document_end(&opts, &doc);
    BSON_APPEND_INT64(&opts, "limit", (int64_t)max);
    BSON_APPEND_INT64(&opts, "batchSize", (int64_t)max);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    *n_ids = 0;
    while (*n_ids < max && mongoc_cursor_next(cursor, &found)) {
        if (bson_iter_init_find(&it, found, MONGOQ__F_ID)) {
            bson_uint32_to_string((uint32_t)*n_ids, &k, key, sizeof key);
            bson_append_value(ids, k, -1, bson_iter_value(&it));
            (*n_ids)++;
        }
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* Round trip 2: one updateMany claims those still ready and due, all with one token. */
static bool
claim_candidates(mongoq_consumer_t *consumer, const bson_t *ids, const bson_oid_t *token,
                 int64_t *claimed, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, opts = BSON_INITIALIZER, reply;
    append_in(&filter, MONGOQ__F_ID, ids);
    build_due_filter(mongoq__clock_server_now_ms(queue->clock), &filter);
    build_claim_update(consumer, token, &update);
    mongoq__queue_append_write_concern(queue, &opts);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    bool ok = mongoc_collection_update_many(coll, &filter, &update, &opts, &reply, error);
    mongoq__queue_release(queue, client, coll);
    *claimed = ok ? mongoq__reply_count(&reply, "modifiedCount") : 0;
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

/* Round trip 3: read back what this token holds, in claim order; adopt or bury each. */
static bool
read_claimed(mongoq_consumer_t *consumer, const bson_t *ids, const bson_oid_t *token, size_t max,
             mongoq_message_t **msgs, size_t *got, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
    const bson_t *doc;
    bool ok = true;
    append_in(&filter, MONGOQ__F_ID, ids);
    BSON_APPEND_OID(&filter, MONGOQ__F_LEASE_TOKEN, token);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    build_claim_sort(&sort);
    bson_append_document_end(&opts, &sort);
    mongoc_client_t *client;
    mongoc_collection_t *coll = mongoq__queue_collection(queue, &client);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    while (ok && *got < max && mongoc_cursor_next(cursor, &doc)) {
        mongoq_message_t *msg = NULL;
        ok = adopt(consumer, bson_copy(doc), &msg, error);
        if (msg) {
            msgs[(*got)++] = msg;
        }
    }
    ok = ok && !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/*
 * Three round trips whatever max is: find candidate _ids, claim them with one updateMany (which
 * re-checks status and run_at per document, so a message another consumer took in between is
 * skipped, never shared), read back the documents that carry this call's token.
 */
static bool
attempt_many(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs, size_t *got,
             bson_error_t *error)
{
    bson_t ids = BSON_INITIALIZER;
    bson_oid_t token;
    size_t n_ids = 0;
    int64_t claimed = 0;
    *got = 0;
    bson_oid_init(&token, NULL);
    bool ok = find_candidates(consumer, max, &ids, &n_ids, error);
    if (ok && n_ids > 0) {
        ok = claim_candidates(consumer, &ids, &token, &claimed, error);
    }
    if (ok && claimed > 0) {
        ok = read_claimed(consumer, &ids, &token, max, msgs, got, error);
    }
    if (!ok) {
        /* Messages already adopted stay valid but the call fails: free them, leases expire. */
        for (size_t i = 0; i < *got; i++) {
            mongoq_message_destroy(msgs[i]);
            msgs[i] = NULL;
        }
        *got = 0;
    }
    bson_destroy(&ids);
    return ok;
}

/* ---- waiting ------------------------------------------------------------------------------ */

typedef bool (*attempt_fn)(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs,
                           size_t *got, bson_error_t *error);


/*
 * Tries, then sleeps on the waker until something may have changed or the deadline passes. The
 * generation is read before each attempt, so a wake-up between attempt and wait is not lost.
 * A wake-up that led to a successful claim is counted by its cause.
 */
static bool
claim_loop(mongoq_consumer_t *consumer, int64_t wait_ms, attempt_fn attempt, size_t max,
           mongoq_message_t **msgs, size_t *got, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    mongoq__queue_start_reaper(queue);
    int64_t deadline = mongoq__now_mono_ms() + (wait_ms < MAX_WAIT_MS ? wait_ms : MAX_WAIT_MS);
    uint64_t seen = mongoq__waker_generation(queue->waker);
    mongoq__wake_t why = MONGOQ__WAKE_TIMEOUT;
    for (;;) {
        if (!attempt(consumer, max, msgs, got, error)) {
            return false;
        }
        if (*got > 0) {
            mongoq__waker_count(&queue->counters, why);
            return true;
        }
        if (mongoq__now_mono_ms() >= deadline) {
            return true;
        }
        why = mongoq__waker_wait(queue->waker, &seen, deadline);
        if (why == MONGOQ__WAKE_STOP) {
            return true;
        }
    }
}

bool
mongoq_consumer_claim(mongoq_consumer_t *consumer, int64_t wait_ms, mongoq_message_t **msg_out,
                      bson_error_t *error)
{
    BSON_ASSERT_PARAM(consumer);
    BSON_ASSERT_PARAM(msg_out);
    size_t got = 0;
    *msg_out = NULL;
    if (wait_ms < 0) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "claim: wait_ms is negative");
        return false;
    }
    return claim_loop(consumer, wait_ms, attempt_one, 1, msg_out, &got, error);
}

bool
mongoq_consumer_claim_many(mongoq_consumer_t *consumer, size_t max, int64_t wait_ms,
                           mongoq_message_t **msgs_out, size_t *n_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(consumer);
    BSON_ASSERT_PARAM(msgs_out);
    BSON_ASSERT_PARAM(n_out);
    *n_out = 0;
    if (max < 1 || max > MAX_CLAIM_MANY || wait_ms < 0) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "claim_many: max must be 1..%d and wait_ms not negative", MAX_CLAIM_MANY);
        return false;
    }
    return claim_loop(consumer, wait_ms, attempt_many, max, msgs_out, n_out, error);
}

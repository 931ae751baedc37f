/*
 * The claim commands. One claim is one findAndModify that filters ready messages due on the
 * server's clock, sorts by priority, run_at, _id (served by the claim index) and, in the same
 * atomic step, writes status processing, attempts + 1, a fresh lease_token, claimed_by and
 * lease_expires_at = $$NOW + lease. Two consumers can never get the same message: the second
 * findAndModify no longer sees it as ready.
 *
 * No poison message: when the server refuses a claim because of the document it would claim
 * (the result would pass 16 MiB, a validator refuses it, arithmetic on its values overflows),
 * the claim pins the head of the line by _id and tries again; refused again, that one document
 * is buried as "dead" with the server's error as its reason and the claim goes on to the next.
 * A code not known to be the document's (mongoq__error_maybe_document) needs proof: the same
 * claim without the head succeeds; else the error is returned and nothing buried.
 * A document the server will not even let us bury is skipped by this consumer from then on.
 */
#include <inttypes.h>
#include <string.h>

#include "claim-private.h"
#include "error-private.h"
#include "fields.h"
#include "partition-private.h"
#include "queue-private.h"

/* Documents buried (damaged or poison) per claim attempt before giving up for this round. */
#define MAX_BURIALS 32

/* ---- the claim query ---------------------------------------------------------------------- */

/* {partition: k} while a partitioned queue's claim aims at partition k (partition_claim.c). */
static void
append_partition(const mongoq_consumer_t *consumer, bson_t *filter)
{
    mongoq__partition_append(filter, consumer->queue->opts.partitions, consumer->partition);
}

/*
 * {[partition: k,] status: ready, run_at: {$lte: estimate + slack}, $expr: {$lte: ["$run_at", "$$NOW"]}}, plus
 * _id: pin when pinned (without: _id: {$ne: pin} too), and _id: {$nin: skipped} when this
 * consumer skips poison documents. The range lets the claim index serve the filter; the $expr
 * decides on the server's clock.
 */
static void
build_due_filter(const mongoq_consumer_t *consumer, int64_t server_now, const bson_value_t *pin,
                 bool without, bson_t *filter)
{
    bson_t cond;
    append_partition(consumer, filter);
    mongoq__document_append_due(filter, server_now);
    if (pin && !without) {
        BSON_APPEND_VALUE(filter, MONGOQ__F_ID, pin);
    } else if (consumer->n_skipped > 0 || pin) {
        BSON_APPEND_DOCUMENT_BEGIN(filter, MONGOQ__F_ID, &cond);
        if (consumer->n_skipped > 0) {
            BSON_APPEND_ARRAY(&cond, "$nin", consumer->skipped);
        }
        if (pin) {
            BSON_APPEND_VALUE(&cond, "$ne", pin);
        }
        bson_append_document_end(filter, &cond);
    }
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
 * damaged value must not make the claim itself fail. A damaged value is left as it is and the
 * document is buried.
 * {$cond: [{$and: [{$gt: ["$attempts", null]}, {$lt: ["$attempts", ""]}]},
 *          {$add: ["$attempts", 1]}, "$attempts"]}
 */
static void
append_attempts_inc(bson_t *set)
{
    bson_t cond, args, and, cmp, cmp_args, add, add_args;
    BSON_APPEND_DOCUMENT_BEGIN(set, MONGOQ__F_ATTEMPTS, &cond);
    BSON_APPEND_ARRAY_BEGIN(&cond, "$cond", &args);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "0", &and);
    BSON_APPEND_ARRAY_BEGIN(&and, "$and", &cmp);
    BSON_APPEND_DOCUMENT_BEGIN(&cmp, "0", &cmp_args);
    bson_t list;
    BSON_APPEND_ARRAY_BEGIN(&cmp_args, "$gt", &list);
    BSON_APPEND_UTF8(&list, "0", MONGOQ__P_ATTEMPTS);
    BSON_APPEND_NULL(&list, "1");
    bson_append_array_end(&cmp_args, &list);
    bson_append_document_end(&cmp, &cmp_args);
    BSON_APPEND_DOCUMENT_BEGIN(&cmp, "1", &cmp_args);
    BSON_APPEND_ARRAY_BEGIN(&cmp_args, "$lt", &list);
    BSON_APPEND_UTF8(&list, "0", MONGOQ__P_ATTEMPTS);
    BSON_APPEND_UTF8(&list, "1", "");
    bson_append_array_end(&cmp_args, &list);
    bson_append_document_end(&cmp, &cmp_args);
    bson_append_array_end(&and, &cmp);
    bson_append_document_end(&args, &and);
    BSON_APPEND_DOCUMENT_BEGIN(&args, "1", &add);
    BSON_APPEND_ARRAY_BEGIN(&add, "$add", &add_args);
    BSON_APPEND_UTF8(&add_args, "0", MONGOQ__P_ATTEMPTS);
    BSON_APPEND_INT32(&add_args, "1", 1);
    bson_append_array_end(&add, &add_args);
    bson_append_document_end(&args, &add);
    BSON_APPEND_UTF8(&args, "2", MONGOQ__P_ATTEMPTS);
    bson_append_array_end(&cond, &args);
    bson_append_document_end(set, &cond);
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
    bool ok = mongoq__message_bury(queue, doc, MONGOQ__S_PROCESSING, reason, error);
    bson_destroy(doc);
    return ok;
}

/* ---- poison messages ---------------------------------------------------------------------- */

static bool find_candidates(mongoq_consumer_t *consumer, size_t max, size_t skip, bson_t *ids,
                            size_t *n_ids, bson_error_t *error);

/* The _id of the message a claim would take next (*found false when none is due). */
static bool
find_head(mongoq_consumer_t *consumer, bson_value_t *id, bool *found, bson_error_t *error)
{
    bson_t ids = BSON_INITIALIZER;
    bson_iter_t it;
    size_t n = 0;
    bool ok = find_candidates(consumer, 1, 0, &ids, &n, error);
    *found = ok && n == 1 && bson_iter_init_find(&it, &ids, "0");
    if (*found) {
        bson_value_copy(bson_iter_value(&it), id);
    }
    bson_destroy(&ids);
    return ok;
}

static void
skip(mongoq_consumer_t *consumer, const bson_value_t *id)
{
    char key[16];
    const char *k;
    if (consumer->n_skipped >= MONGOQ__MAX_SKIPPED) {
        return; /* the claim may meet it again; it is logged each time */
    }
    if (!consumer->skipped) {
        consumer->skipped = bson_new();
    }
    bson_uint32_to_string(consumer->n_skipped++, &k, key, sizeof key);
    bson_append_value(consumer->skipped, k, -1, id);
}

/* The server refused to claim the document with _id id because of the document: bury it. */
static void
poison(mongoq_consumer_t *consumer, const bson_value_t *id, const bson_error_t *refusal)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t doc = BSON_INITIALIZER;
    bson_error_t error;
    char reason[640];
    bson_snprintf(reason, sizeof reason, "the server refused to claim this message (error %" PRIu32
                  "): %s", refusal->code, refusal->message);
    BSON_APPEND_VALUE(&doc, MONGOQ__F_ID, id);
    append_partition(consumer, &doc); /* the bury is an updateOne: it names the partition */
    mongoq__queue_log(queue, MONGOQ_LOG_WARNING, "mongoq: %s.%s: burying a poison message: %s",
                      queue->db, queue->name, reason);
    if (!mongoq__message_bury(queue, &doc, MONGOQ__S_READY, reason, &error)) {
        mongoq__queue_log(queue, MONGOQ_LOG_ERROR,
                          "mongoq: %s.%s: cannot bury a poison message (this consumer skips it "
                          "from now on): %s",
                          queue->db, queue->name, error.message);
        skip(consumer, id);
    }
    bson_destroy(&doc);
}

/* ---- claim one ---------------------------------------------------------------------------- */

/* One findAndModify (pinned to _id pin, without it, or neither). *doc_out: claimed or NULL. */
static bool
find_and_claim(mongoq_consumer_t *consumer, const bson_value_t *pin, bool without,
               bson_t **doc_out, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t filter = BSON_INITIALIZER, sort = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bson_t extra = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    bson_iter_t it;
    bson_oid_t token;
    mongoc_client_t *client;
    bool ok = false;
    *doc_out = NULL;
    bson_oid_init(&token, NULL);
    build_due_filter(consumer, mongoq__clock_server_latest_ms(queue->clock), pin, without, &filter);
    build_claim_sort(&sort);
    build_claim_update(consumer, &token, &update);
    mongoq__queue_append_write_concern(queue, &extra);
    mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_sort(fam, &sort);
    mongoc_find_and_modify_opts_set_update(fam, &update);
    mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    mongoc_find_and_modify_opts_append(fam, &extra);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (coll) {
        bson_destroy(&reply);
        ok = mongoc_collection_find_and_modify_with_opts(coll, &filter, fam, &reply, error);
        if (!ok) {
            mongoq__error_classify_write("claim", &reply, error);
        }
    }
    mongoq__queue_release(queue, client, coll);
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

/* Proof that a refusal of a code not on the list is the pinned head's: the claim without the
 * head takes another message (*doc). None due, or refused too: no proof. */
static bool
others_claimable(mongoq_consumer_t *consumer, const bson_value_t *pin, bson_t **doc)
{
    bson_error_t ignored;
    return find_and_claim(consumer, pin, true, doc, &ignored) && *doc;
}

/*
 * Claims at most one message; buries damaged and poison ones on the way. *got = 0 or 1. A claim
 * the server refuses because of a document pins the head by _id: refused again, the head is
 * poison; claimed, the refusal was about another document and the next round finds it.
 */
bool
mongoq__claim_one(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs, size_t *got,
                  bson_error_t *error)
{
    bson_value_t pin;
    bool pinned = false, ok = true;
    (void)max;
    *got = 0;
    for (int i = 0; ok && *got == 0 && i < MAX_BURIALS; i++) {
        bson_t *doc = NULL;
        bson_error_t refusal;
        if (!find_and_claim(consumer, pinned ? &pin : NULL, false, &doc, &refusal)) {
            if (!mongoq__error_maybe_document(&refusal) ||
                (pinned && !mongoq__error_document_dependent(&refusal) &&
                 !others_claimable(consumer, &pin, &doc))) {
                if (error) {
                    *error = refusal; /* not proved to be the document's: bury nothing */
                }
                ok = false;
            } else if (pinned) {
                poison(consumer, &pin, &refusal);
                bson_value_destroy(&pin);
                pinned = false;
                if (doc) {
                    ok = adopt(consumer, doc, &msgs[0], error); /* the proof's claim */
                    *got = ok && msgs[0] ? 1 : 0;
                }
            } else {
                ok = find_head(consumer, &pin, &pinned, error);
                if (ok && !pinned) {
                    break; /* nothing due any more */
                }
            }
            continue;
        }
        if (pinned) {
            bson_value_destroy(&pin);
            pinned = false;
        }
        if (!doc) {
            break;
        }
        ok = adopt(consumer, doc, &msgs[0], error);
        *got = ok && msgs[0] ? 1 : 0;
    }
    if (pinned) {
        bson_value_destroy(&pin);
    }
    return ok;
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

/*
 * Lanes: concurrent claim_many calls of one process search disjoint stretches of the queue
 * (lane k skips k batches, at most CLAIM_SKIP_MAX messages), so they do not all find, and then
 * fight over, the same head.
 */
#define CLAIM_LANES 16
/* A skipped message costs the server a document read (the due test is a $expr): lanes skip at
 * most this many, so a batch of max uses 1 + CLAIM_SKIP_MAX / max lanes (none at 512 and up). */
#define CLAIM_SKIP_MAX 512

static unsigned
take_lane(mongoq_queue_t *queue, size_t max)
{
    size_t usable = max >= CLAIM_SKIP_MAX ? 1 : 1 + CLAIM_SKIP_MAX / max;
    unsigned lanes = usable < CLAIM_LANES ? (unsigned)usable : CLAIM_LANES;
    unsigned cur = atomic_load(&queue->claim_lanes);
    for (int tries = 0; tries < 64; tries++) {
        unsigned lane = 0;
        while (lane < lanes && (cur & (1u << lane))) {
            lane++;
        }
        if (lane == lanes) {
            return CLAIM_LANES; /* all taken: search from the head, holding no lane */
        }
        if (atomic_compare_exchange_weak(&queue->claim_lanes, &cur, cur | (1u << lane))) {
            return lane;
        }
    }
    return CLAIM_LANES;
}

static void
release_lane(mongoq_queue_t *queue, unsigned lane)
{
    if (lane < CLAIM_LANES) {
        atomic_fetch_and(&queue->claim_lanes, ~(1u << lane));
    }
}

/* Round trip 1: the _ids of up to max due messages, in claim order after skipping `skip` of
 * them, as a BSON array. */
static bool
find_candidates(mongoq_consumer_t *consumer, size_t max, size_t skip, bson_t *ids,
                size_t *n_ids, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, doc;
    const bson_t *found;
    bson_iter_t it;
    char key[16];
    const char *k;
    mongoc_client_t *client;
    bool ok = false;
    *n_ids = 0;
    build_due_filter(consumer, mongoq__clock_server_latest_ms(queue->clock), NULL, false, &filter);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &doc);
    build_claim_sort(&doc);
    bson_append_document_end(&opts, &doc);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &doc);
    BSON_APPEND_INT32(&doc, MONGOQ__F_ID, 1);
    bson_append_document_end(&opts, &doc);
    if (skip > 0) {
        BSON_APPEND_INT64(&opts, "skip", (int64_t)skip);
    }
    BSON_APPEND_INT64(&opts, "limit", (int64_t)max);
    BSON_APPEND_INT64(&opts, "batchSize", (int64_t)max);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (coll) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        while (*n_ids < max && mongoc_cursor_next(cursor, &found)) {
            if (bson_iter_init_find(&it, found, MONGOQ__F_ID)) {
                bson_uint32_to_string((uint32_t)*n_ids, &k, key, sizeof key);
                bson_append_value(ids, k, -1, bson_iter_value(&it));
                (*n_ids)++;
            }
        }
        ok = !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
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
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    append_in(&filter, MONGOQ__F_ID, ids);
    build_due_filter(consumer, mongoq__clock_server_latest_ms(queue->clock), NULL, false, &filter);
    build_claim_update(consumer, token, &update);
    bool ok = mongoq__queue_write_many(queue, "claim_many", &filter, &update, claimed, error);
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

/*
 * Round trip 3: read back what this token holds among the candidates, in claim order; adopt or
 * bury each. The candidates' _ids bound the read to their index keys, whatever else is leased.
 */
static bool
read_claimed(mongoq_consumer_t *consumer, const bson_t *ids, const bson_oid_t *token, size_t max,
             mongoq_message_t **msgs, size_t *got, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
    const bson_t *doc;
    mongoc_client_t *client;
    bool ok = false;
    append_partition(consumer, &filter);
    append_in(&filter, MONGOQ__F_ID, ids);
    BSON_APPEND_OID(&filter, MONGOQ__F_LEASE_TOKEN, token);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    build_claim_sort(&sort);
    bson_append_document_end(&opts, &sort);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (coll) {
        mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
        ok = true;
        while (ok && *got < max && mongoc_cursor_next(cursor, &doc)) {
            mongoq_message_t *msg = NULL;
            ok = adopt(consumer, bson_copy(doc), &msg, error);
            if (msg) {
                msgs[(*got)++] = msg;
            }
        }
        ok = ok && !mongoc_cursor_error(cursor, error);
        mongoc_cursor_destroy(cursor);
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/*
 * Hands back every message still held under token: ready again, the attempt given back, lease
 * fields removed. Safe to repeat (a message handed back no longer carries the token).
 */
static void
release_token(mongoq_consumer_t *consumer, const bson_t *ids, const bson_oid_t *token)
{
    mongoq_queue_t *queue = consumer->queue;
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER;
    bson_error_t error = {0};
    int64_t n = 0;
    append_partition(consumer, &filter);
    append_in(&filter, MONGOQ__F_ID, ids);
    BSON_APPEND_OID(&filter, MONGOQ__F_LEASE_TOKEN, token);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_PROCESSING);
    mongoq__message_release_update(&update);
    if (mongoq__queue_write_many(queue, "claim_many release", &filter, &update, &n, &error) && n > 0) {
        mongoq__waker_notify_partition(queue->waker, consumer->partition);
    } else if (n == 0 && error.code != 0) {
        mongoq__queue_log(queue, MONGOQ_LOG_WARNING,
                          "mongoq: %s.%s: handing back an interrupted claim_many failed (its "
                          "messages return when their leases expire): %s",
                          queue->db, queue->name, error.message);
    }
    bson_destroy(&update);
    bson_destroy(&filter);
}

static void
free_msgs(mongoq_message_t **msgs, size_t *got)
{
    for (size_t i = 0; i < *got; i++) {
        mongoq_message_destroy(msgs[i]);
        msgs[i] = NULL;
    }
    *got = 0;
}

/*
 * After the updateMany failed: what it may have leased carries token. A lost reply: read those
 * back and keep them (the claim happened); a document that refused the update (mongod stops a
 * multi-update there): keep what was claimed before it and let a single claim bury the poison.
 */
static bool
recover(mongoq_consumer_t *consumer, const bson_t *ids, const bson_oid_t *token, size_t max,
        mongoq_message_t **msgs, size_t *got, bson_error_t *failure, bson_error_t *error)
{
    bson_error_t read_error;
    if (!read_claimed(consumer, ids, token, max, msgs, got, &read_error)) {
        free_msgs(msgs, got);
        release_token(consumer, ids, token);
        if (error) {
            *error = *failure;
        }
        return false;
    }
    if (mongoq__error_maybe_document(failure) && *got < max) {
        size_t one = 0;
        if (!mongoq__claim_one(consumer, 1, &msgs[*got], &one, error)) {
            free_msgs(msgs, got);
            release_token(consumer, ids, token);
            return false;
        }
        *got += one;
    }
    return true;
}

bool
mongoq__claim_many(mongoq_consumer_t *consumer, size_t max, mongoq_message_t **msgs, size_t *got,
                   bson_error_t *error)
{
    bson_t ids = BSON_INITIALIZER;
    bson_oid_t token;
    bson_error_t failure;
    size_t n_ids = 0;
    int64_t claimed = 0;
    bool ok, retried = false;
    *got = 0;
    bson_oid_init(&token, NULL);
    unsigned lane = take_lane(consumer->queue, max);
    size_t skip = lane < CLAIM_LANES ? lane * max : 0;
    ok = find_candidates(consumer, max, skip, &ids, &n_ids, error);
    if (ok && n_ids == 0 && skip > 0) {
        ok = find_candidates(consumer, max, 0, &ids, &n_ids, error); /* little is due: the head */
    }
    if (!ok || n_ids == 0) {
        /* the search failed, or nothing is due */
    } else if (!claim_candidates(consumer, &ids, &token, &claimed, &failure) &&
               !(mongoq__error_retryable(&failure) && (retried = true) &&
                 claim_candidates(consumer, &ids, &token, &claimed, &failure))) {
        /* Sending the same updateMany again is safe: a message the first one claimed is no
         * longer ready, so it is never claimed twice, and both carry this call's token. */
        bool recoverable =
            mongoq__error_retryable(&failure) || mongoq__error_maybe_document(&failure);
        if (recoverable) {
            ok = recover(consumer, &ids, &token, max, msgs, got, &failure, error);
        } else {
            ok = false;
            if (error) {
                *error = failure;
            }
        }
    } else if (claimed == 0 && !retried) {
        /* Another claimer took every candidate first. Answering "none" would send a waiting
         * claimer to sleep while messages are due; one findAndModify cannot lose that race: it
         * takes the next message due, if there is one. */
        ok = mongoq__claim_one(consumer, 1, msgs, got, error);
    } else {
        /* After a retry, read by token whatever the count: a first attempt whose reply was
         * lost may have claimed too. */
        ok = read_claimed(consumer, &ids, &token, max, msgs, got, error);
        if (!ok) {
            /* Claimed but not read: hand them back now rather than at lease expiry. */
            free_msgs(msgs, got);
            release_token(consumer, &ids, &token);
        }
    }
    release_lane(consumer->queue, lane); /* held from the search to the claim: the race window */
    bson_destroy(&ids);
    return ok;
}

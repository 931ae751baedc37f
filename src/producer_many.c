/*
 * Enqueueing many messages at once (mongoq_enqueue_many): every document built before any is
 * written, one insert command, and with caller ids a retry after an unknown outcome that counts
 * the messages already stored instead of storing them twice. The helpers it shares with the
 * single enqueue are in producer.c (producer-private.h).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "document-private.h"
#include "error-private.h"
#include "fields.h"
#include "group-private.h"
#include "hooks-private.h"
#include "mongoq/limits.h"
#include "mongoq/producer.h"
#include "partition-private.h"
#include "producer-private.h"
#include "queue-private.h"

/* Builds all n documents first, so that nothing is written when one is invalid. */
static bool
build_all(mongoq_queue_t *queue, const bson_t *const *payloads, size_t n,
          const mongoq_enqueue_opts_t *opts, int64_t now, bson_t *docs, bson_oid_t *ids,
          bson_error_t *error)
{
    for (size_t i = 0; i < n; i++) {
        if (!opts->caller_ids) {
            bson_oid_init(&ids[i], NULL);
        }
        bool built = mongoq__document_build(payloads[i], opts, queue->opts.max_attempts, now,
                                            &ids[i], &docs[i], error);
        if (built && !opts->group) { /* a grouped one's partition is its group's (group.c) */
            mongoq__partition_append(&docs[i], queue->opts.partitions,
                                     mongoq__partition_of(queue->opts.partitions, &ids[i], NULL));
        } else if (!built) {
            for (size_t j = 0; j <= i; j++) {
                bson_destroy(&docs[j]);
            }
            char msg[sizeof error->message];
            if (error) {
                bson_snprintf(msg, sizeof msg, "enqueue_many: message %zu: %s", i, error->message);
                bson_strncpy(error->message, msg, sizeof error->message);
            }
            return false;
        }
    }
    return true;
}

/*
 * With caller ids (an unordered insert): write errors that only say "this _id is stored" count
 * as stored when the stored message is this one (the same payload; see
 * mongoq__enqueue_settle_dup_id). Returns how many, or -1 when another error is among them (the
 * call fails with the driver's error) or -2 when a taken _id holds another message (*error is then
 * DUPLICATE).
 */
static int64_t
count_already_stored(mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts, const bson_t **docs,
                     size_t n_docs, const bson_t *reply, bool *already, bson_error_t *error)
{
    bson_iter_t it, errs;
    int64_t n = 0;
    if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &errs)) {
        return -1;
    }
    while (bson_iter_next(&errs)) {
        bson_t write_error;
        bson_iter_t code, index, id;
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_DOCUMENT(&errs)) {
            return -1;
        }
        bson_iter_document(&errs, &len, &data);
        if (!bson_init_static(&write_error, data, len) ||
            !bson_iter_init_find(&code, &write_error, "code") ||
            bson_iter_as_int64(&code) != MONGOQ__DUPLICATE_KEY ||
            !mongoq__enqueue_duplicate_on_id(&write_error) ||
            !bson_iter_init_find(&index, &write_error, "index") || bson_iter_as_int64(&index) < 0 ||
            (size_t)bson_iter_as_int64(&index) >= n_docs) {
            return -1;
        }
        const bson_t *doc = docs[bson_iter_as_int64(&index)];
        bson_error_t look;
        bool same = false;
        if (!bson_iter_init_find(&id, doc, MONGOQ__F_ID) || !BSON_ITER_HOLDS_OID(&id) ||
            !mongoq__enqueue_same_message_stored(queue, opts, bson_iter_oid(&id), doc, &same,
                                                 &look)) {
            return -1;
        }
        if (!same) {
            char hex[25];
            bson_oid_to_string(bson_iter_oid(&id), hex);
            mongoq__error_set(error, MONGOQ_ERROR_DUPLICATE,
                              "enqueue_many: another message (a different payload) already has "
                              "_id %s",
                              hex);
            return -2;
        }
        already[bson_iter_as_int64(&index)] = true;
        n++;
    }
    return n;
}

/* Says how many went in before a failing insert; domain and code stay the driver's. */
static void
note_partial(bson_error_t *error, int64_t stored, size_t n)
{
    if (error) {
        char msg[sizeof error->message];
        bson_snprintf(msg, sizeof msg, "enqueue_many: %" PRId64 " of %zu enqueued, then: %s",
                      stored, n, error->message);
        bson_strncpy(error->message, msg, sizeof error->message);
    }
}

/* *stored: inserted plus already stored (caller ids; marked in already[], n entries). */
static bool
insert_all(mongoq_queue_t *queue, const bson_t **docs, size_t n, const mongoq_enqueue_opts_t *opts,
           int64_t *stored, bool *already_at, bson_error_t *error)
{
    bson_t cmd_opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    mongoc_client_t *client;
    bool ok = false;
    *stored = 0;
    mongoc_collection_t *coll = mongoq__enqueue_collection(queue, opts->session, &client, error);
    if (coll && mongoq__enqueue_command_opts(queue, opts->session, true, &cmd_opts, error)) {
        BSON_APPEND_BOOL(&cmd_opts, "ordered", !opts->caller_ids);
        bson_destroy(&reply);
        ok = mongoc_collection_insert_many(coll, docs, n, &cmd_opts, &reply, error);
        *stored = mongoq__reply_count(&reply, "insertedCount");
        int64_t already = ok || !opts->caller_ids ? 0
                                                  : count_already_stored(queue, opts, docs, n,
                                                                         &reply, already_at, error);
        if (already > 0 && *stored + already == (int64_t)n) {
            ok = true;
        }
        *stored += already > 0 ? already : 0;
        if (!ok && already != -2) {
            mongoq__error_classify_write("enqueue_many", &reply, error);
            if (mongoq__error_is(error, MONGOQ_ERROR_UNKNOWN_OUTCOME)) {
                *stored = 0;
            } else {
                note_partial(error, *stored, n);
            }
        }
    }
    mongoq__enqueue_end_insert(queue, opts, client, coll, &reply, &cmd_opts);
    return ok;
}

static int
compare_oids(const void *a, const void *b)
{
    return bson_oid_compare(a, b);
}

/* Caller ids must be distinct: a repeated one would read as "already stored". */
static bool
check_distinct(const bson_oid_t *ids, size_t n, bson_error_t *error)
{
    bson_oid_t *sorted = bson_malloc(n * sizeof *sorted);
    bool ok = true;
    memcpy(sorted, ids, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, compare_oids);
    for (size_t i = 1; ok && i < n; i++) {
        if (bson_oid_equal(&sorted[i - 1], &sorted[i])) {
            char hex[25];
            bson_oid_to_string(&sorted[i], hex);
            mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                              "enqueue_many: caller_ids: _id %s is given twice", hex);
            ok = false;
        }
    }
    bson_free(sorted);
    return ok;
}

static bool
check_many(mongoq_queue_t *queue, const bson_t *const *payloads, size_t n,
           const mongoq_enqueue_opts_t *opts_in, const mongoq_enqueue_opts_t *opts,
           const bson_oid_t *ids, bson_error_t *error)
{
    if (!payloads || n > MONGOQ_MAX_ENQUEUE_MANY) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "enqueue_many: payloads is NULL, or n %zu is over "
                          "MONGOQ_MAX_ENQUEUE_MANY (%d)",
                          n, MONGOQ_MAX_ENQUEUE_MANY);
        return false;
    }
    if (!mongoq__enqueue_opts_check(opts_in, true, error) ||
        !mongoq__enqueue_check_ids_given(opts, ids, error) ||
        !mongoq__group_check_opts(queue, opts, error)) {
        return false;
    }
    return !opts->caller_ids || check_distinct(ids, n, error);
}

bool
mongoq_enqueue_many(mongoq_queue_t *queue, const bson_t *const *payloads, size_t n,
                    const mongoq_enqueue_opts_t *opts_in, bson_oid_t *ids_out, size_t *enqueued_out,
                    bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    mongoq_enqueue_opts_t opts;
    mongoq__enqueue_normalize_opts(opts_in, &opts);
    if (opts.reply) {
        bson_init(opts.reply);
    }
    if (enqueued_out) {
        *enqueued_out = 0;
    }
    if (n == 0) {
        return true;
    }
    if (!check_many(queue, payloads, n, opts_in, &opts, ids_out, error)) {
        return false;
    }
    int64_t now = mongoq__clock_server_now_ms(queue->clock);
    int64_t stored = 0, earlier = 0;
    bool *already = bson_malloc0(n * sizeof *already); /* stored by an earlier call */
    /* bson_t asks for 128-byte alignment, which plain bson_malloc does not give. */
    bson_t *docs = bson_aligned_alloc(BSON_ALIGNOF(bson_t), n * sizeof *docs);
    const bson_t **ptrs = bson_malloc(n * sizeof *ptrs);
    bson_oid_t *ids = ids_out ? ids_out : bson_malloc(n * sizeof *ids);
    bool ok = false;
    if (build_all(queue, payloads, n, &opts, now, docs, ids, error)) {
        for (size_t i = 0; i < n; i++) {
            ptrs[i] = &docs[i];
        }
        if (opts.group) {
            size_t in = 0;
            bool dup = false;
            bson_oid_t unused;
            ok = mongoq__group_enqueue(queue, docs, n, &opts, &in, &dup, &unused, error);
            stored = (int64_t)in;
        } else {
            ok = insert_all(queue, ptrs, n, &opts, &stored, already, error);
        }
        for (size_t i = 0; i < n; i++) {
            bson_destroy(&docs[i]);
        }
    }
    /* One stored by an earlier call (caller ids) was counted and told by that call. */
    for (size_t i = 0; i < n; i++) {
        earlier += already[i] ? 1 : 0;
        if (ok && !already[i]) {
            mongoq__hook_enqueued(queue, &ids[i], now, mongoq__document_run_at(&opts, now));
        }
    }
    if (stored - earlier > 0) {
        mongoq__counter_add(&queue->counters.enqueued, stored - earlier);
        mongoq__enqueue_wake_for(queue, mongoq__document_run_at(&opts, now), now,
                                 opts.group ? mongoq__group_partition(queue, opts.group)
                                            : MONGOQ__ALL_PARTITIONS);
    }
    if (enqueued_out) {
        *enqueued_out = (size_t)stored;
    }
    if (ids != ids_out) {
        bson_free(ids);
    }
    bson_free(already);
    bson_free(ptrs);
    bson_free(docs);
    return ok;
}

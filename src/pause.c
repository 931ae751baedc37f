/* Pausing and resuming a queue (see pause-private.h for the control document). */
#include "pause-private.h"

#include <string.h>

#include "error-private.h"
#include "clock-private.h"
#include "fields.h"
#include "mongoq/error.h"
#include "partition-private.h"
#include "queue-private.h"

#define F_PAUSED "paused"

static void
append_control_filter(bson_t *filter)
{
    BSON_APPEND_UTF8(filter, MONGOQ__F_ID, MONGOQ__CONTROL_ID);
}

/*
 * The write's filter: in a partitioned queue the control document lives in partition 0, named
 * so that its upsert targets one shard of a sharded queue (an upsert must name the whole shard
 * key); reads find it by _id alone.
 */
static void
append_control_write_filter(const mongoq_queue_t *queue, bson_t *filter)
{
    mongoq__partition_append(filter, queue->opts.partitions, 0);
    append_control_filter(filter);
}

bool
mongoq__pause_read(mongoc_collection_t *coll, bool *paused, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, proj;
    const bson_t *doc;
    bson_iter_t it;
    append_control_filter(&filter);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, F_PAUSED, 1);
    bson_append_document_end(&opts, &proj);
    BSON_APPEND_INT64(&opts, "limit", 1);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    *paused = mongoc_cursor_next(cursor, &doc) && bson_iter_init_find(&it, doc, F_PAUSED) &&
              bson_iter_as_bool(&it);
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

bool
mongoq__pause_record(mongoq__counters_t *counters, bool paused)
{
    atomic_store(&counters->pause_seen_mono, mongoq__now_mono_ms());
    int was = atomic_exchange(&counters->pause_state,
                              paused ? MONGOQ__PAUSE_PAUSED : MONGOQ__PAUSE_RUNNING);
    return !paused && was == MONGOQ__PAUSE_PAUSED;
}

void
mongoq__pause_append_stream_clause(bson_t *or, const char *key)
{
    bson_t clause;
    BSON_APPEND_DOCUMENT_BEGIN(or, key, &clause);
    BSON_APPEND_UTF8(&clause, "documentKey." MONGOQ__F_ID, MONGOQ__CONTROL_ID);
    bson_append_document_end(or, &clause);
}

void
mongoq__pause_append_stream_projection(bson_t *project)
{
    BSON_APPEND_INT32(project, "documentKey", 1);
    BSON_APPEND_INT32(project, "fullDocument." F_PAUSED, 1);
    BSON_APPEND_INT32(project, "updateDescription.updatedFields." F_PAUSED, 1);
}

bool
mongoq__pause_from_event(const bson_t *event, bool *paused)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, event) || !bson_iter_find_descendant(&it, "documentKey._id", &it) ||
        !BSON_ITER_HOLDS_UTF8(&it) || strcmp(bson_iter_utf8(&it, NULL), MONGOQ__CONTROL_ID) != 0) {
        return false;
    }
    bson_iter_t op;
    if (bson_iter_init_find(&op, event, "operationType") && BSON_ITER_HOLDS_UTF8(&op) &&
        strcmp(bson_iter_utf8(&op, NULL), "delete") == 0) {
        *paused = false; /* no control document: running */
        return true;
    }
    if ((bson_iter_init(&it, event) &&
         bson_iter_find_descendant(&it, "fullDocument." F_PAUSED, &it)) ||
        (bson_iter_init(&it, event) &&
         bson_iter_find_descendant(&it, "updateDescription.updatedFields." F_PAUSED, &it))) {
        *paused = bson_iter_as_bool(&it);
        return true;
    }
    return false;
}

void
mongoq__pause_seen(mongoq_queue_t *queue, bool paused)
{
    if (mongoq__pause_record(&queue->counters, paused)) {
        mongoq__waker_notify(queue->waker); /* this process's waiters need no event */
    }
}

/*
 * The state is read when the queue opens, and kept current by the waker's thread (started by
 * the first claim): the change stream carries every change of the control document, the poller
 * reads it every poll interval. Only while no read has succeeded yet does a claim read it
 * itself, one thread at a time, at most every poll interval.
 */
void
mongoq__pause_load(mongoq_queue_t *queue)
{
    mongoc_client_t *client;
    bool paused;
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, NULL);
    if (coll && mongoq__pause_read(coll, &paused, NULL)) {
        (void)mongoq__pause_record(&queue->counters, paused);
    }
    mongoq__queue_release(queue, client, coll);
}

bool
mongoq__pause_blocks(mongoq_queue_t *queue)
{
    mongoq__counters_t *c = &queue->counters;
    int state = atomic_load(&c->pause_state);
    int64_t seen = atomic_load(&c->pause_seen_mono), now = mongoq__now_mono_ms();
    bool current = state != MONGOQ__PAUSE_UNKNOWN || now - seen < queue->opts.poll_interval_ms;
    if (!current && atomic_compare_exchange_strong(&c->pause_seen_mono, &seen, now)) {
        /* A failed read lets the claim try: it reports the server's trouble itself. */
        mongoc_client_t *client;
        bool paused;
        mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, NULL);
        if (coll && mongoq__pause_read(coll, &paused, NULL)) {
            mongoq__pause_seen(queue, paused);
        }
        mongoq__queue_release(queue, client, coll);
        state = atomic_load(&c->pause_state);
    }
    return state == MONGOQ__PAUSE_PAUSED;
}

/* {_id: control} <- {$set: {paused}, $currentDate: {updated_at: true}}, upserted. */
static bool
write_state(mongoq_queue_t *queue, bool paused, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, opts = BSON_INITIALIZER, doc;
    bson_t reply = BSON_INITIALIZER;
    mongoc_client_t *client;
    bool ok = false;
    append_control_write_filter(queue, &filter);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &doc);
    BSON_APPEND_BOOL(&doc, F_PAUSED, paused);
    bson_append_document_end(&update, &doc);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$currentDate", &doc);
    BSON_APPEND_BOOL(&doc, MONGOQ__F_UPDATED_AT, true);
    bson_append_document_end(&update, &doc);
    BSON_APPEND_BOOL(&opts, "upsert", true);
    mongoq__queue_append_write_concern(queue, &opts);
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (coll) {
        bson_destroy(&reply);
        ok = mongoc_collection_update_one(coll, &filter, &update, &opts, &reply, error);
        if (!ok) {
            mongoq__error_classify_write(paused ? "pause" : "resume", &reply, error);
        }
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&update);
    bson_destroy(&filter);
    if (ok) {
        mongoq__pause_seen(queue, paused);
    }
    return ok;
}

bool
mongoq_queue_pause(mongoq_queue_t *queue, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    return write_state(queue, true, error);
}

bool
mongoq_queue_resume(mongoq_queue_t *queue, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    return write_state(queue, false, error);
}

bool
mongoq_queue_is_paused(mongoq_queue_t *queue, bool *paused, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(paused);
    mongoc_client_t *client;
    *paused = false;
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    bool ok = coll && mongoq__pause_read(coll, paused, error);
    mongoq__queue_release(queue, client, coll);
    if (ok) {
        mongoq__pause_seen(queue, *paused);
    }
    return ok;
}

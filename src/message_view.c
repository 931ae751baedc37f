/*
 * Messages read rather than claimed (mongoq_queue_get, browse): any stored message, whatever its
 * status, wrapped for the accessors; and the accessors of fields only a reader needs (status,
 * last_error, the errors history, the whole document).
 *
 * A browsed message holds no lease: every write on a message is fenced by the claim's token, so
 * ack, retry, fail and extend refuse it up front (mongoq__message_check_claimed) with a clear
 * error rather than fail on the server with a confusing LEASE_LOST.
 */
#include <string.h>

#include "error-private.h"
#include "fields.h"
#include "message-private.h"
#include "mongoq/browse.h"

static int64_t
date_or_zero(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME(&it)
               ? bson_iter_date_time(&it)
               : 0;
}

static int32_t
int32_or_zero(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_NUMBER(&it)
               ? (int32_t)bson_iter_as_int64(&it)
               : 0;
}

static const char *
utf8_or_null(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_UTF8(&it)
               ? bson_iter_utf8(&it, NULL)
               : NULL;
}

/* Lenient: only _id (ObjectId) and payload (document) are required. */
static bool
parse_view(const bson_t *doc, mongoq__parsed_t *p)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, MONGOQ__F_ID) || !BSON_ITER_HOLDS_OID(&it)) {
        return false;
    }
    bson_oid_copy(bson_iter_oid(&it), &p->id);
    if (!mongoq__document_subdoc(doc, MONGOQ__F_PAYLOAD, false, &p->payload)) {
        return false;
    }
    p->attempts = int32_or_zero(doc, MONGOQ__F_ATTEMPTS);
    p->max_attempts = int32_or_zero(doc, MONGOQ__F_MAX_ATTEMPTS);
    p->priority = int32_or_zero(doc, MONGOQ__F_PRIORITY);
    p->enqueued_at = date_or_zero(doc, MONGOQ__F_ENQUEUED_AT);
    p->run_at = date_or_zero(doc, MONGOQ__F_RUN_AT);
    p->lease_expires_at = date_or_zero(doc, MONGOQ__F_LEASE_EXPIRES_AT);
    if (bson_iter_init_find(&it, doc, MONGOQ__F_LEASE_TOKEN) && BSON_ITER_HOLDS_OID(&it)) {
        bson_oid_copy(bson_iter_oid(&it), &p->lease_token);
    }
    p->dedup_key = utf8_or_null(doc, MONGOQ__F_DEDUP_KEY);
    p->claimed_by = utf8_or_null(doc, MONGOQ__F_CLAIMED_BY);
    p->has_errors = mongoq__document_subdoc(doc, MONGOQ__F_ERRORS, true, &p->errors);
    return true;
}

mongoq_message_t *
mongoq__message_new_browsed(mongoq_queue_t *queue, bson_t *doc, bson_error_t *error)
{
    /* Aligned and parsed in place, as mongoq__message_new explains. */
    mongoq_message_t *msg = BSON_ALIGNED_ALLOC0(mongoq_message_t);
    if (!bson_validate(doc, BSON_VALIDATE_NONE, NULL) || !parse_view(doc, &msg->parsed)) {
        bson_free(msg);
        mongoq__error_set(error, MONGOQ_ERROR_SERVER,
                          "the stored document is not a message (its _id is not an ObjectId or "
                          "it has no payload document)");
        return NULL;
    }
    msg->queue = queue;
    msg->doc = doc;
    msg->browsed = true;
    atomic_init(&msg->lease_lost, false);
    atomic_init(&msg->lease_expires_at, msg->parsed.lease_expires_at);
    return msg;
}

bool
mongoq__message_check_claimed(const mongoq_message_t *msg, const char *what, bson_error_t *error)
{
    if (!msg->browsed) {
        return true;
    }
    char id[25];
    bson_oid_to_string(&msg->parsed.id, id);
    mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                      "%s: message %s was read by mongoq_queue_get or a browse, not claimed: "
                      "only its claimer can %s it (use mongoq_queue_retry_now, _redrive or "
                      "_purge to steer it)",
                      what, id, what);
    return false;
}

/* ---- accessors ------------------------------------------------------------------------------ */

const char *
mongoq_message_status(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return utf8_or_null(msg->doc, MONGOQ__F_STATUS);
}

int64_t
mongoq_message_run_at(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.run_at;
}

const char *
mongoq_message_last_error(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return utf8_or_null(msg->doc, MONGOQ__F_LAST_ERROR);
}

const bson_t *
mongoq_message_errors(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->parsed.has_errors ? &msg->parsed.errors : NULL;
}

const bson_t *
mongoq_message_document(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->doc;
}

bool
mongoq_message_is_browsed(const mongoq_message_t *msg)
{
    BSON_ASSERT_PARAM(msg);
    return msg->browsed;
}

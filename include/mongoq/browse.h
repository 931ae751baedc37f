/*
 * mongoq/browse.h - reading messages without claiming them: one by id, or a listing filtered
 * by status and paged by a resume point.
 *
 * A message read here is a snapshot of its document. It is readable with every accessor of
 * mongoq/message.h and the ones below, but it is not claimed: mongoq_message_ack, _ack_many,
 * _retry, _fail and _extend refuse it with MONGOQ_ERROR_INVALID_ARG and change nothing (only its
 * claimer may settle a message; to steer one from outside use mongoq_queue_retry_now,
 * mongoq_queue_redrive or mongoq_queue_purge). Fields a message in its status does not have
 * read as zero or NULL (mongoq_message_lease_expires_at of a ready message is 0,
 * mongoq_message_lease_token is the zero ObjectId).
 *
 * Thread safety: mongoq_queue_get is thread-safe; a mongoq_browse_t is not (one per thread);
 * several may run on one queue at once.
 */
#ifndef MONGOQ_BROWSE_H
#define MONGOQ_BROWSE_H

#include "message.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Reads the message with _id *id into *msg_out (owned by the caller: mongoq_message_destroy),
 * whatever its status. One find by _id. Returns false with MONGOQ_ERROR_NOT_FOUND when no
 * message has this id (*msg_out NULL); MONGOQ_ERROR_SERVER when the stored document is not a
 * message (its _id is not an ObjectId, no payload document); driver errors. Read-only: repeat
 * it freely.
 */
MONGOQ_EXPORT bool
mongoq_queue_get(mongoq_queue_t *queue, const bson_oid_t *id, mongoq_message_t **msg_out,
                 bson_error_t *error);

/* ---- more accessors: for browsed messages, and valid on claimed ones too ------------------ */

/* "ready", "processing", "done" or "dead" as stored when the message was read. Borrowed. */
MONGOQ_EXPORT const char *
mongoq_message_status(const mongoq_message_t *msg);
/* When the message is (or was) due: ms since the epoch, server clock. */
MONGOQ_EXPORT int64_t
mongoq_message_run_at(const mongoq_message_t *msg);
/* The last failure's reason (the document's last_error), or NULL. Borrowed. */
MONGOQ_EXPORT const char *
mongoq_message_last_error(const mongoq_message_t *msg);
/*
 * The failure history: an array of the last few failures, each {at: date, error: string},
 * oldest first, or NULL when there is none. Borrowed.
 */
MONGOQ_EXPORT const bson_t *
mongoq_message_errors(const mongoq_message_t *msg);
/* The whole stored document as read (every field of src/fields.h that it has). Borrowed. */
MONGOQ_EXPORT const bson_t *
mongoq_message_document(const mongoq_message_t *msg);
/* Whether msg came from mongoq_queue_get or a browse (true) rather than a claim. */
MONGOQ_EXPORT bool
mongoq_message_is_browsed(const mongoq_message_t *msg);

/* ---- listing -------------------------------------------------------------------------------- */

typedef struct mongoq_browse_t mongoq_browse_t;

/* Which ready messages a listing shows by run_at (on the server's clock, as estimated). */
typedef enum {
    MONGOQ_BROWSE_DUE_ANY = 0, /* all */
    MONGOQ_BROWSE_DUE_ONLY = 1, /* run_at has come */
    MONGOQ_BROWSE_NOT_DUE = 2   /* run_at still ahead (delayed, or waiting for a retry) */
} mongoq_browse_due_t;

/*
 * The order of a listing, each served by one of the queue's indexes (status first):
 *  - CLAIM: priority descending, then run_at, then _id: the order claims take ready messages
 *    (the claim index {status, priority -1, run_at, _id}).
 *  - RUN_AT: run_at, then _id (the due index {status, run_at}); messages sharing one run_at
 *    (an enqueue_many) are ordered by _id in the server's memory.
 *  - LEASE: lease_expires_at, then _id (the lease index {status, lease_expires_at}); status
 *    "processing" only, since other messages hold no lease. A claim_many leases its messages
 *    until one lease_expires_at: they too are ordered by _id in the server's memory.
 * RUN_AT and LEASE list the messages whose run_at (lease_expires_at) is a date: every message
 * mongoq wrote.
 */
typedef enum {
    MONGOQ_BROWSE_ORDER_CLAIM = 0,
    MONGOQ_BROWSE_ORDER_RUN_AT = 1,
    MONGOQ_BROWSE_ORDER_LEASE = 2
} mongoq_browse_order_t;

#define MONGOQ_BROWSE_OPTS_VERSION 1

/* The page size when opts leave it 0. */
#define MONGOQ_BROWSE_DEFAULT_PAGE 100

/* The longest error_contains accepted, in bytes. */
#define MONGOQ_BROWSE_MAX_TEXT_BYTES 1024

/* Options of a listing; zero means the default for every field. Strings are copied by _new. */
typedef struct {
    uint32_t version;      /* MONGOQ_BROWSE_OPTS_VERSION */
    const char *status;    /* "ready", "processing", "done", "dead"; NULL: every status */
    mongoq_browse_due_t due;
    mongoq_browse_order_t order;
    /* Optional filters (NULL: none). */
    const char *dedup_key;      /* this key (served by the dedup index: at most one message) */
    const char *claimed_by;     /* last claimed by this consumer (exact) */
    const char *error_contains; /* last_error contains this text (literally, case-sensitive) */
    int32_t page_size;          /* messages per round trip: 1 to MONGOQ_MAX_BATCH, default 100 */
    /*
     * NULL: from the start. Otherwise a token from mongoq_browse_token of an earlier listing
     * with the same status and order: the listing resumes right after the message it names
     * (which need not exist any more).
     */
    const char *page_token;
} mongoq_browse_opts_t;

#define MONGOQ_BROWSE_OPTS_INIT {.version = MONGOQ_BROWSE_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_BROWSE_OPTS_INIT does, for the given version (bindings that cannot
 * use the macro): every field zero (its default) and the version set. Returns false, writing
 * nothing, for a version this library does not know (0 or newer than MONGOQ_BROWSE_OPTS_VERSION).
 * Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_browse_opts_init(mongoq_browse_opts_t *opts, uint32_t version);

/*
 * A listing of queue's messages (queue borrowed: it must outlive the listing). opts may be NULL
 * (every message in claim order). Nothing is read until the first mongoq_browse_next.
 *
 * Paging never skips: each page is read from the last message's sort key onwards, so a page
 * costs the same on the first page and the millionth. CLAIM: at most one index range scan per
 * sort field (three: the rest of the last priority and run_at, the rest of its priority, the
 * lower priorities). RUN_AT and LEASE, whose indexes hold no _id: the rest of the messages tied
 * on the last run_at (lease_expires_at), then the next page's last value read from the index
 * alone, then the messages up to that value; the server sorts at most the page plus the
 * messages tied on one value (a page of 100 at an enqueue_many of 500 reads about 600), one
 * status at a time when the listing spans every status. claimed_by and error_contains are
 * tested on the documents the range holds: a page reads past the messages that do not match,
 * so a rare match in a long range costs a long scan. A listing is not a snapshot: messages that
 * change status while it runs may be missed or shown twice.
 *
 * Returns NULL and fills error: MONGOQ_ERROR_INVALID_ARG for an unknown status, order, due or
 * version, ORDER_LEASE without status "processing", a page_size out of range, strings that are
 * not UTF-8 or too long, a token that is damaged or from another status or order. Nothing is
 * sent then.
 */
MONGOQ_EXPORT mongoq_browse_t *
mongoq_browse_new(mongoq_queue_t *queue, const mongoq_browse_opts_t *opts, bson_error_t *error);

/*
 * The next message of the listing into *msg_out (owned by the caller), or NULL when the
 * listing has ended. Reads the next page when the current one is used up. Returns false and
 * fills error on a driver error (*msg_out NULL); calling it again retries the same page. A
 * stored document that is not a message is skipped. Read-only.
 */
MONGOQ_EXPORT bool
mongoq_browse_next(mongoq_browse_t *browse, mongoq_message_t **msg_out, bson_error_t *error);

/*
 * A token resuming right after the last message _next returned (opts.page_token before any),
 * or NULL when there is no such point. Printable (hex), opaque. Borrowed until the next call on
 * browse.
 */
MONGOQ_EXPORT const char *
mongoq_browse_token(const mongoq_browse_t *browse);

/* Frees the listing; messages it returned stay valid. NULL is a no-op. */
MONGOQ_EXPORT void
mongoq_browse_destroy(mongoq_browse_t *browse);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_BROWSE_H */

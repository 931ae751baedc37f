/*
 * mongoq/producer.h - putting messages on a queue.
 *
 * Thread safety: every function here is thread-safe on a shared queue.
 */
#ifndef MONGOQ_PRODUCER_H
#define MONGOQ_PRODUCER_H

#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MONGOQ_ENQUEUE_OPTS_VERSION 1

/* Options of one enqueue. Zero means "the default" for every field. */
typedef struct {
    uint32_t version;     /* MONGOQ_ENQUEUE_OPTS_VERSION */
    int32_t priority;     /* higher is claimed first; default 0 */
    int64_t delay_ms;     /* ready this long after now (server clock); negative: error */
    int64_t run_at_ms;    /* ready at this time (ms since the epoch); exclusive with delay_ms */
    int32_t max_attempts; /* default: the queue's; negative: error */
    const char *dedup_key; /* NULL: none. At most one unfinished message holds a key. Copied. */
    /*
     * NULL, or the caller's session: the insert runs in it, so inside a transaction the
     * message exists only if the transaction commits. Borrowed for the call. The session must
     * come from a client of the queue's pool.
     */
    mongoc_client_session_t *session;
} mongoq_enqueue_opts_t;

#define MONGOQ_ENQUEUE_OPTS_INIT {.version = MONGOQ_ENQUEUE_OPTS_VERSION}

/*
 * Enqueues one message whose payload is a copy of `payload` (borrowed for the call). opts may be
 * NULL. *id_out (may be NULL) receives the new message's _id.
 *
 * Errors: MONGOQ_ERROR_INVALID_ARG (NULL payload, a message that would pass the 16 MiB document
 * limit, bad options); MONGOQ_ERROR_DUPLICATE when an unfinished message already holds
 * opts->dedup_key: nothing is written and *id_out receives that message's _id; driver and
 * server errors unchanged. On any error the queue is unchanged.
 */
MONGOQ_EXPORT bool
mongoq_enqueue(mongoq_queue_t *queue, const bson_t *payload, const mongoq_enqueue_opts_t *opts,
               bson_oid_t *id_out, bson_error_t *error);

/*
 * Enqueues n messages in one round trip (one insert command; libmongoc splits only past the
 * server's batch limits). payloads[i] are borrowed. ids_out (may be NULL) has room for n ids.
 * The same opts apply to each; a dedup_key is refused here (INVALID_ARG) since one key cannot
 * name n messages. Validation happens before anything is written: on INVALID_ARG nothing is.
 * The insert is ordered; on a server error the messages before the failing one are enqueued
 * and error->message says how many.
 */
MONGOQ_EXPORT bool
mongoq_enqueue_many(mongoq_queue_t *queue, const bson_t *const *payloads, size_t n,
                    const mongoq_enqueue_opts_t *opts, bson_oid_t *ids_out, bson_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_PRODUCER_H */

/*
 * mongoq/admin.h - an operator's writes on one message found by browsing (mongoq/browse.h).
 * The writes over many messages, mongoq_queue_redrive and mongoq_queue_purge, are in
 * mongoq/queue.h.
 *
 * Thread safety: thread-safe on a shared queue.
 */
#ifndef MONGOQ_ADMIN_H
#define MONGOQ_ADMIN_H

#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Makes the message with _id *id ready now (run_at = now on the server's clock): a dead message
 * goes back to ready with attempts reset to 0 (as mongoq_queue_redrive does for one id); a
 * ready one whose run_at is still ahead (delayed, or waiting for a retry's backoff) becomes due
 * at once, keeping its attempts; a ready one already due is left as it is (it keeps its place).
 * last_error and errors stay as history; a dedup_key released when the message died is not
 * restored. Idle consumers of this process are woken. One updateOne, a retryable write; in a
 * partitioned queue one find by _id first, to name the message's partition in the update.
 *
 * Errors: MONGOQ_ERROR_NOT_FOUND when no message has this id, or it is "processing" (its
 * claimer holds it: only it, or its lease expiring, can give it back) or "done" (the message
 * says which); nothing changed. MONGOQ_ERROR_UNKNOWN_OUTCOME: the write was sent and its reply
 * lost; calling again is safe (a message made ready is made ready again, or left due).
 * MONGOQ_ERROR_NO_CLIENT, driver errors: nothing changed; a retry is safe.
 */
MONGOQ_EXPORT bool
mongoq_queue_retry_now(mongoq_queue_t *queue, const bson_oid_t *id, bson_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_ADMIN_H */

/* The queue's internals, shared by producer, consumer, message, reaper, stats and worker. */
#ifndef MONGOQ_QUEUE_PRIVATE_H
#define MONGOQ_QUEUE_PRIVATE_H

#include <pthread.h>
#include <stdatomic.h>

#include "clock-private.h"
#include "counters-private.h"
#include "timings-private.h"
#include "mongoq/queue.h"
#include "waker-private.h"

#define MONGOQ__DEFAULT_LEASE_MS 30000
#define MONGOQ__DEFAULT_MAX_ATTEMPTS 5
#define MONGOQ__DEFAULT_BACKOFF_BASE_MS 1000
#define MONGOQ__DEFAULT_BACKOFF_CAP_MS 300000
#define MONGOQ__DEFAULT_BACKOFF_JITTER 0.2
#define MONGOQ__DEFAULT_RETENTION_S 86400

/* The longest "db.collection" namespace mongod accepts. */
#define MONGOQ__MAX_NAMESPACE_BYTES 255
#define MONGOQ__MAX_DB_NAME_BYTES 63

struct mongoq_queue_t {
    mongoc_client_pool_t *pool; /* borrowed */
    char *db;
    char *name;
    mongoq_queue_opts_t opts; /* defaults resolved; write_concern points at wc */
    mongoc_write_concern_t *wc;
    mongoq__counters_t counters;
    mongoq__timings_t timings; /* wait and handling histograms (metrics.c) */
    mongoq__clock_t *clock;
    mongoq__waker_t *waker;
    atomic_uint claim_lanes; /* bit k: a claim_many searching k batches down is under way */
    atomic_int_least64_t hook_reaped_pending; /* background reapings not yet told (hooks.c) */

    /* The background reaper: started on the first claim, stopped by _destroy. */
    pthread_mutex_t reaper_mu;
    pthread_cond_t reaper_cond;
    pthread_t reaper_thread;
    bool reaper_started;
    bool reaper_stopping;
    bool reaper_failed; /* pthread_create failed: do not try on every claim */
};

/* Checks queue options and fills `out` with defaults resolved. INVALID_ARG on a bad one. */
bool mongoq__queue_opts_resolve(const mongoq_queue_opts_t *opts, mongoq_queue_opts_t *out,
                                bson_error_t *error);

/* Checks a database and collection name as mongod would. INVALID_ARG with the reason. */
bool mongoq__queue_validate_names(const char *db, const char *name, bson_error_t *error);

/*
 * Takes a client from the pool and returns the queue's collection on it; release both after.
 * NULL + MONGOQ_ERROR_NO_CLIENT when the pool's wait queue timed out (*client_out NULL then).
 */
mongoc_collection_t *mongoq__queue_checkout(mongoq_queue_t *queue, mongoc_client_t **client_out,
                                            bson_error_t *error);

/* As mongoq__queue_checkout without an error: NULL when the pool gave no client. */
mongoc_collection_t *mongoq__queue_collection(mongoq_queue_t *queue, mongoc_client_t **client_out);

void mongoq__queue_release(mongoq_queue_t *queue, mongoc_client_t *client,
                           mongoc_collection_t *coll);

/*
 * One write over many documents with the queue's write concern: updateMany(filter, update) or,
 * when update is NULL, deleteMany(filter). *n: modified or deleted count. Errors after sending
 * are classified (MONGOQ_ERROR_UNKNOWN_OUTCOME, with `what` naming the call); NO_CLIENT.
 */
bool mongoq__queue_write_many(mongoq_queue_t *queue, const char *what, const bson_t *filter,
                              const bson_t *update, int64_t *n, bson_error_t *error);

/* Appends the queue's writeConcern to a write's options. */
void mongoq__queue_append_write_concern(const mongoq_queue_t *queue, bson_t *opts);

/* A count from a write's reply ("matchedCount", "insertedCount", ...), 0 when absent. */
int64_t mongoq__reply_count(const bson_t *reply, const char *field);

/* Logs through the user's callback, if any. Never call with a mongoq lock held. */
void mongoq__queue_log(const mongoq_queue_t *queue, mongoq_log_level_t level, const char *format,
                       ...) BSON_GNUC_PRINTF(3, 4);

/* Starts the background reaper unless it runs already or is turned off. Thread-safe. */
void mongoq__queue_start_reaper(mongoq_queue_t *queue);

/*
 * The background reaper's lifetime (reaper.c): init with the queue, stop (signal_stop asks
 * without waiting, so the waker can be stopped at the same time), then destroy.
 */
void mongoq__reaper_init(mongoq_queue_t *queue);
void mongoq__reaper_signal_stop(mongoq_queue_t *queue);
void mongoq__reaper_stop(mongoq_queue_t *queue);
void mongoq__reaper_destroy(mongoq_queue_t *queue);

/*
 * Reads the pause state once (pause.c; mongoq_queue_new calls it after the indexes); on failure
 * it stays unknown for a claim to read.
 */
void mongoq__pause_load(mongoq_queue_t *queue);

/*
 * Appends to `indexes` (an array being built) the index documents mongoq_queue_ensure_indexes
 * creates for this queue, {key, name, options...} as createIndexes takes them: the table the
 * doctor (check.c) compares listIndexes with.
 */
void mongoq__queue_index_specs(const mongoq_queue_t *queue, bson_t *indexes);

/* A fresh process-unique number (consumer names). */
uint64_t mongoq__queue_next_serial(void);

#endif

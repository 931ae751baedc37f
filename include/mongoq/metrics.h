/*
 * mongoq/metrics.h - the queue's counters, stats and timings as Prometheus text exposition
 * (format 0.0.4, served as "text/plain; version=0.0.4").
 *
 * Metric names are stable; every series carries queue="<db>.<collection>". From the database
 * (mongoq_queue_stats, the same for every process):
 *
 *   mongoq_messages{queue,status}           gauge   messages by status: ready, processing,
 *                                                   done (kept by MONGOQ_ACK_KEEP), dead
 *   mongoq_messages_delayed{queue}          gauge   of the ready, those not due yet
 *   mongoq_oldest_due_age_seconds{queue}    gauge   how long the longest-due ready message has
 *                                                   been due; 0 when none is due
 *   mongoq_paused{queue}                    gauge   1 while the queue is paused
 *                                                   (mongoq_queue_pause), else 0
 *
 * From this process (mongoq_queue_counters, since the queue was opened; left out with
 * stats_only):
 *
 *   mongoq_enqueued_total, mongoq_claimed_total, mongoq_acked_total, mongoq_retried_total,
 *   mongoq_failed_total, mongoq_lease_lost_total, mongoq_reaped_total,
 *   mongoq_stream_rescans_total                           counters (as mongoq_counters_t)
 *   mongoq_wakeups_total{queue,source}      counter source: change_stream, timer, poll
 *   mongoq_idle_consumers{queue}            gauge
 *   mongoq_change_stream_active{queue}      gauge   1 while the waker's change stream is open
 *   mongoq_polling_fallback{queue}          gauge   1 when the server refused change streams
 *   mongoq_wait_seconds{queue}              histogram  due (run_at) to claim, per claimed
 *                                                   message, on the server's clock
 *   mongoq_handling_seconds{queue}          histogram  claim to ack, per acknowledged message,
 *                                                   on this process's clock
 *
 * Histogram buckets (le, seconds): 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 300 900
 * 3600 +Inf. The histograms count messages claimed and acknowledged through this process
 * (consumers and workers alike); retried and failed messages are not in handling.
 *
 * Thread safety: thread-safe; the counters are read without a lock.
 */
#ifndef MONGOQ_METRICS_H
#define MONGOQ_METRICS_H

#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MONGOQ_METRICS_OPTS_VERSION 1

typedef struct {
    uint32_t version; /* MONGOQ_METRICS_OPTS_VERSION */
    /*
     * true: only the series read from the database (mongoq_messages, _delayed, _oldest_due_age,
     * mongoq_paused):
     * for a process that only watches the queue (the mongoq tool), whose own counters say
     * nothing.
     */
    bool stats_only;
} mongoq_metrics_opts_t;

#define MONGOQ_METRICS_OPTS_INIT {.version = MONGOQ_METRICS_OPTS_VERSION}

/*
 * Initialises opts as MONGOQ_METRICS_OPTS_INIT does, for the given version (bindings that cannot
 * use the macro): every field zero (its default) and the version set. Returns false, writing
 * nothing, for a version this library does not know (0 or newer than MONGOQ_METRICS_OPTS_VERSION).
 * Thread-safe.
 */
MONGOQ_EXPORT bool
mongoq_metrics_opts_init(mongoq_metrics_opts_t *opts, uint32_t version);

/*
 * Renders the metrics of queues[0 .. n) (1 to 64 queues of distinct collections, which may be
 * of different databases; two handles on one collection would give duplicate series) into *text_out: a NUL-terminated string owned by the caller (bson_free), one
 * # HELP and # TYPE per metric, then its series for every queue. opts may be NULL. Reads
 * mongoq_queue_stats of each queue (its six index reads).
 *
 * Returns false with *text_out NULL: MONGOQ_ERROR_INVALID_ARG (n out of range, unknown opts
 * version); a stats error of any queue (driver errors; the message names the queue). Read-only:
 * repeat it freely (each call is one scrape).
 */
MONGOQ_EXPORT bool
mongoq_metrics_render(mongoq_queue_t *const *queues, size_t n, const mongoq_metrics_opts_t *opts,
                      char **text_out, bson_error_t *error);

/* mongoq_metrics_render of one queue. */
MONGOQ_EXPORT bool
mongoq_queue_metrics(mongoq_queue_t *queue, const mongoq_metrics_opts_t *opts, char **text_out,
                     bson_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_METRICS_H */

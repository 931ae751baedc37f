/*
 * Prometheus text exposition of queues (mongoq/metrics.h). One table row per metric family:
 * its name, type, help and a function writing its series for one queue from a snapshot taken
 * before rendering (stats from the database, counters and histograms from this process). A new
 * metric is a row here and a line in the header's list.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "error-private.h"
#include "mongoq/metrics.h"
#include "queue-private.h"

#define MAX_QUEUES 64

typedef struct {
    char label[300]; /* queue="db.coll", escaped */
    mongoq_stats_t stats;
    mongoq_counters_t counters;
    int64_t wait[MONGOQ__TIMING_BUCKETS + 1], wait_sum_ms, wait_count;
    int64_t handling[MONGOQ__TIMING_BUCKETS + 1], handling_sum_ms, handling_count;
} snapshot_t;

typedef void (*series_fn)(bson_string_t *out, const char *name, const snapshot_t *s);

/* ---- label values: backslash, double quote and newline escaped ------------------------------ */

static void
make_label(const mongoq_queue_t *queue, char *out, size_t size)
{
    size_t n = 0;
    char ns[300];
    bson_snprintf(ns, sizeof ns, "%s.%s", queue->db, queue->name);
    for (const char *c = ns; *c && n + 3 < size; c++) {
        if (*c == '\\' || *c == '"' || *c == '\n') {
            out[n++] = '\\';
            out[n++] = *c == '\n' ? 'n' : *c;
        } else {
            out[n++] = *c;
        }
    }
    out[n] = '\0';
}

/* ---- series --------------------------------------------------------------------------------- */

static void
line(bson_string_t *out, const char *name, const snapshot_t *s, const char *extra, int64_t value)
{
    bson_string_append_printf(out, "%s{queue=\"%s\"%s} %" PRId64 "\n", name, s->label,
                              extra ? extra : "", value);
}

static void
messages(bson_string_t *out, const char *name, const snapshot_t *s)
{
    line(out, name, s, ",status=\"ready\"", s->stats.ready);
    line(out, name, s, ",status=\"processing\"", s->stats.processing);
    line(out, name, s, ",status=\"done\"", s->stats.done);
    line(out, name, s, ",status=\"dead\"", s->stats.dead);
}

static void
paused(bson_string_t *out, const char *name, const snapshot_t *s)
{
    line(out, name, s, NULL, s->stats.paused ? 1 : 0);
}

static void
delayed(bson_string_t *out, const char *name, const snapshot_t *s)
{
    line(out, name, s, NULL, s->stats.delayed);
}

static void
oldest_due(bson_string_t *out, const char *name, const snapshot_t *s)
{
    int64_t ms = s->stats.oldest_ready_age_ms > 0 ? s->stats.oldest_ready_age_ms : 0;
    bson_string_append_printf(out, "%s{queue=\"%s\"} %" PRId64 ".%03" PRId64 "\n", name,
                              s->label, ms / 1000, ms % 1000);
}

#define COUNTER_FN(field)                                                                          \
    static void field##_series(bson_string_t *out, const char *name, const snapshot_t *s)         \
    {                                                                                              \
        line(out, name, s, NULL, s->counters.field);                                               \
    }
COUNTER_FN(enqueued)
COUNTER_FN(claimed)
COUNTER_FN(acked)
COUNTER_FN(retried)
COUNTER_FN(failed)
COUNTER_FN(lease_lost)
COUNTER_FN(reaped)
COUNTER_FN(stream_rescans)
COUNTER_FN(idle_consumers)
#undef COUNTER_FN

static void
wakeups(bson_string_t *out, const char *name, const snapshot_t *s)
{
    line(out, name, s, ",source=\"change_stream\"", s->counters.wakeups_change_stream);
    line(out, name, s, ",source=\"timer\"", s->counters.wakeups_timer);
    line(out, name, s, ",source=\"poll\"", s->counters.wakeups_poll);
}

static void
stream_active(bson_string_t *out, const char *name, const snapshot_t *s)
{
    line(out, name, s, NULL, s->counters.change_stream_active ? 1 : 0);
}

static void
polling_fallback(bson_string_t *out, const char *name, const snapshot_t *s)
{
    line(out, name, s, NULL, s->counters.polling_fallback ? 1 : 0);
}

/* name_bucket{le=...} (cumulative), name_sum (seconds), name_count. */
static void
histogram(bson_string_t *out, const char *name, const snapshot_t *s, const int64_t *buckets,
          int64_t sum_ms, int64_t count)
{
    const int64_t *bounds = mongoq__timing_bounds_ms();
    int64_t cumulative = 0;
    for (size_t i = 0; i <= MONGOQ__TIMING_BUCKETS; i++) {
        cumulative += buckets[i];
        if (i < MONGOQ__TIMING_BUCKETS) {
            bson_string_append_printf(out, "%s_bucket{queue=\"%s\",le=\"%" PRId64 ".%03" PRId64
                                           "\"} %" PRId64 "\n",
                                      name, s->label, bounds[i] / 1000, bounds[i] % 1000,
                                      cumulative);
        } else {
            bson_string_append_printf(out, "%s_bucket{queue=\"%s\",le=\"+Inf\"} %" PRId64 "\n",
                                      name, s->label, cumulative);
        }
    }
    bson_string_append_printf(out, "%s_sum{queue=\"%s\"} %" PRId64 ".%03" PRId64 "\n", name,
                              s->label, sum_ms / 1000, sum_ms % 1000);
    bson_string_append_printf(out, "%s_count{queue=\"%s\"} %" PRId64 "\n", name, s->label,
                              count);
}

static void
wait_histogram(bson_string_t *out, const char *name, const snapshot_t *s)
{
    histogram(out, name, s, s->wait, s->wait_sum_ms, s->wait_count);
}

static void
handling_histogram(bson_string_t *out, const char *name, const snapshot_t *s)
{
    histogram(out, name, s, s->handling, s->handling_sum_ms, s->handling_count);
}

/* ---- the table ------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    const char *type;
    const char *help;
    bool from_process; /* left out with stats_only */
    series_fn series;
} FAMILIES[] = {
    {"mongoq_messages", "gauge", "Messages in the queue by status.", false, messages},
    {"mongoq_messages_delayed", "gauge", "Ready messages not due yet.", false, delayed},
    {"mongoq_oldest_due_age_seconds", "gauge",
     "How long the longest-due ready message has been due (0 when none is).", false, oldest_due},
    {"mongoq_paused", "gauge", "1 while the queue is paused (nothing is claimed), else 0.", false,
     paused},
    {"mongoq_enqueued_total", "counter", "Messages enqueued by this process.", true,
     enqueued_series},
    {"mongoq_claimed_total", "counter", "Messages claimed by this process.", true,
     claimed_series},
    {"mongoq_acked_total", "counter", "Messages acknowledged by this process.", true,
     acked_series},
    {"mongoq_retried_total", "counter", "Messages given back for another attempt.", true,
     retried_series},
    {"mongoq_failed_total", "counter", "Messages moved to dead by this process.", true,
     failed_series},
    {"mongoq_lease_lost_total", "counter", "Operations that found their lease lost.", true,
     lease_lost_series},
    {"mongoq_reaped_total", "counter", "Messages returned or buried by reaping.", true,
     reaped_series},
    {"mongoq_stream_rescans_total", "counter",
     "Change streams opened without a resume token (idle consumers rescan).", true,
     stream_rescans_series},
    {"mongoq_wakeups_total", "counter", "Idle consumers woken, by source.", true, wakeups},
    {"mongoq_idle_consumers", "gauge", "Consumers and worker threads waiting for work.", true,
     idle_consumers_series},
    {"mongoq_change_stream_active", "gauge", "1 while the waker's change stream is open.", true,
     stream_active},
    {"mongoq_polling_fallback", "gauge", "1 when the server refused change streams.", true,
     polling_fallback},
    {"mongoq_wait_seconds", "histogram", "From due (run_at) to claim, per claimed message.",
     true, wait_histogram},
    {"mongoq_handling_seconds", "histogram", "From claim to acknowledgement, per message.", true,
     handling_histogram},
};

/* ---- rendering ------------------------------------------------------------------------------ */

static void
copy_histogram(const mongoq__histogram_t *h, int64_t *buckets, int64_t *sum_ms, int64_t *count)
{
    for (size_t i = 0; i <= MONGOQ__TIMING_BUCKETS; i++) {
        buckets[i] = atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    }
    *sum_ms = atomic_load_explicit(&h->sum_ms, memory_order_relaxed);
    *count = atomic_load_explicit(&h->count, memory_order_relaxed);
}

static bool
take_snapshot(mongoq_queue_t *queue, snapshot_t *s, bson_error_t *error)
{
    s->stats = (mongoq_stats_t)MONGOQ_STATS_INIT;
    s->counters = (mongoq_counters_t)MONGOQ_COUNTERS_INIT;
    make_label(queue, s->label, sizeof s->label);
    if (!mongoq_queue_stats(queue, &s->stats, error)) {
        char copy[sizeof error->message];
        bson_strncpy(copy, error->message, sizeof copy);
        bson_snprintf(error->message, sizeof error->message, "metrics: stats of %s.%s: %s",
                      queue->db, queue->name, copy);
        return false;
    }
    mongoq_queue_counters(queue, &s->counters);
    copy_histogram(&queue->timings.wait, s->wait, &s->wait_sum_ms, &s->wait_count);
    copy_histogram(&queue->timings.handling, s->handling, &s->handling_sum_ms,
                   &s->handling_count);
    return true;
}

bool
mongoq_metrics_render(mongoq_queue_t *const *queues, size_t n, const mongoq_metrics_opts_t *opts,
                      char **text_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(text_out);
    *text_out = NULL;
    if (n == 0 || n > MAX_QUEUES || !queues ||
        (opts && (opts->version == 0 || opts->version > MONGOQ_METRICS_OPTS_VERSION))) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "metrics: 1 to %d queues, and a known opts version", MAX_QUEUES);
        return false;
    }
    bool stats_only = opts && opts->stats_only;
    snapshot_t *snaps = bson_malloc0(n * sizeof *snaps);
    bool ok = true;
    bson_error_t scratch;
    for (size_t q = 0; ok && q < n; q++) {
        BSON_ASSERT_PARAM(queues[q]);
        ok = take_snapshot(queues[q], &snaps[q], error ? error : &scratch);
    }
    if (ok) {
        bson_string_t *out = bson_string_new(NULL);
        for (size_t f = 0; f < sizeof FAMILIES / sizeof FAMILIES[0]; f++) {
            if (stats_only && FAMILIES[f].from_process) {
                continue;
            }
            bson_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", FAMILIES[f].name,
                                      FAMILIES[f].help, FAMILIES[f].name, FAMILIES[f].type);
            for (size_t q = 0; q < n; q++) {
                FAMILIES[f].series(out, FAMILIES[f].name, &snaps[q]);
            }
        }
        *text_out = bson_string_free(out, false);
    }
    bson_free(snaps);
    return ok;
}

bool
mongoq_queue_metrics(mongoq_queue_t *queue, const mongoq_metrics_opts_t *opts, char **text_out,
                     bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    return mongoq_metrics_render(&queue, 1, opts, text_out, error);
}

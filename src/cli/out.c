/* The tool's output helpers: JSON, times, durations, and a message as a document. */
#include <inttypes.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

void
cli_print_json(FILE *out, const bson_t *doc)
{
    char *json = bson_as_relaxed_extended_json(doc, NULL);
    fprintf(out, "%s\n", json ? json : "{}");
    bson_free(json);
}

const char *
cli_time(int64_t ms, char *buf, size_t size)
{
    if (ms == 0) {
        bson_snprintf(buf, size, "-");
        return buf;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    bson_snprintf(buf, size, "%s.%03dZ", day, (int)(ms % 1000));
    return buf;
}

const char *
cli_duration(int64_t ms, char *buf, size_t size)
{
    if (ms < 0) {
        bson_snprintf(buf, size, "-");
    } else if (ms < 1000) {
        bson_snprintf(buf, size, "%" PRId64 "ms", ms);
    } else if (ms < 60000) {
        bson_snprintf(buf, size, "%" PRId64 ".%" PRId64 "s", ms / 1000, ms % 1000 / 100);
    } else if (ms < 3600000) {
        bson_snprintf(buf, size, "%" PRId64 "m%02" PRId64 "s", ms / 60000, ms % 60000 / 1000);
    } else if (ms < 86400000) {
        bson_snprintf(buf, size, "%" PRId64 "h%02" PRId64 "m", ms / 3600000, ms % 3600000 / 60000);
    } else {
        bson_snprintf(buf, size, "%" PRId64 "d%02" PRId64 "h", ms / 86400000,
                      ms % 86400000 / 3600000);
    }
    return buf;
}

static void
append_opt_date(bson_t *doc, const char *key, int64_t ms)
{
    if (ms != 0) {
        BSON_APPEND_DATE_TIME(doc, key, ms);
    } else {
        BSON_APPEND_NULL(doc, key);
    }
}

static void
append_opt_utf8(bson_t *doc, const char *key, const char *value)
{
    if (value) {
        BSON_APPEND_UTF8(doc, key, value);
    } else {
        BSON_APPEND_NULL(doc, key);
    }
}

void
cli_stats_doc(const mongoq_stats_t *s, bson_t *doc)
{
    BSON_APPEND_INT64(doc, "ready", s->ready);
    BSON_APPEND_INT64(doc, "delayed", s->delayed);
    BSON_APPEND_INT64(doc, "processing", s->processing);
    BSON_APPEND_INT64(doc, "done", s->done);
    BSON_APPEND_INT64(doc, "dead", s->dead);
    BSON_APPEND_INT64(doc, "waiting", s->waiting);
    BSON_APPEND_INT64(doc, "oldest_due_age_ms", s->oldest_ready_age_ms);
    if (s->next_run_at_ms >= 0) {
        BSON_APPEND_DATE_TIME(doc, "next_run_at", s->next_run_at_ms);
    } else {
        BSON_APPEND_NULL(doc, "next_run_at");
    }
    BSON_APPEND_BOOL(doc, "paused", s->paused);
}

void
cli_message_doc(const mongoq_message_t *msg, bool full, bson_t *out)
{
    char hex[25];
    bson_oid_to_string(mongoq_message_id(msg), hex);
    BSON_APPEND_UTF8(out, "id", hex);
    append_opt_utf8(out, "status", mongoq_message_status(msg));
    BSON_APPEND_INT32(out, "priority", mongoq_message_priority(msg));
    BSON_APPEND_INT32(out, "attempts", mongoq_message_attempts(msg));
    BSON_APPEND_INT32(out, "max_attempts", mongoq_message_max_attempts(msg));
    append_opt_date(out, "enqueued_at", mongoq_message_enqueued_at(msg));
    append_opt_date(out, "run_at", mongoq_message_run_at(msg));
    append_opt_date(out, "lease_expires_at", mongoq_message_lease_expires_at(msg));
    append_opt_utf8(out, "claimed_by", mongoq_message_claimed_by(msg));
    append_opt_utf8(out, "dedup_key", mongoq_message_dedup_key(msg));
    append_opt_utf8(out, "last_error", mongoq_message_last_error(msg));
    if (full) {
        const bson_t *errors = mongoq_message_errors(msg);
        bson_t empty = BSON_INITIALIZER;
        BSON_APPEND_ARRAY(out, "errors", errors ? errors : &empty);
        bson_destroy(&empty);
    }
    BSON_APPEND_DOCUMENT(out, "payload", mongoq_message_payload(msg));
}

int64_t
cli_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
cli_stdout_tty(void)
{
    return isatty(STDOUT_FILENO) == 1;
}

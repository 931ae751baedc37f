/*
 * `mongoq schedules`: the queue's periodic schedules (mongoq/schedule.h, mongoq_schedule_list)
 * with their cron expression, zone, next run in UTC and in the schedule's zone (ISO 8601),
 * catch-up policy and counts.
 *
 * The local time of the next run comes from the C library (TZ set to ":<zone>", localtime_r),
 * which reads the same tz database as mongoq; the tool is single-threaded here, so setting TZ
 * is safe, and it is put back afterwards. A zone mongoq cannot read (a document edited by
 * hand) shows no local time rather than the C library's silent fallback to UTC.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar (H. Hinnant's). */
static int64_t
days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "2024-06-03T06:00:00Z" of ms since the epoch (slots are whole minutes: no fraction). */
static const char *
utc_iso(int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* "2024-06-03T08:00:00+02:00": ms as wall-clock time in zone tz, with its UTC offset. */
static const char *
zone_iso(const char *tz, int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    if (strcmp(tz, "UTC") == 0) {
        gmtime_r(&secs, &tm);
    } else {
        char *spec = bson_strdup_printf(":%s", tz);
        setenv("TZ", spec, 1);
        bson_free(spec);
        tzset();
        localtime_r(&secs, &tm);
    }
    int64_t wall = days_from_civil(tm.tm_year + 1900LL, tm.tm_mon + 1LL, tm.tm_mday) * 86400 +
                   tm.tm_hour * 3600LL + tm.tm_min * 60LL + tm.tm_sec;
    int64_t offset = wall - (int64_t)secs, mag = offset < 0 ? -offset : offset;
    bson_snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d%c%02" PRId64 ":%02" PRId64,
                  tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  offset < 0 ? '-' : '+', mag / 3600, mag % 3600 / 60);
    return buf;
}

/* Whether mongoq itself reads the schedule's zone (and expression). */
static bool
zone_readable(const mongoq_schedule_info_t *info)
{
    int64_t next;
    return mongoq_cron_next(info->cron, info->tz, 0, &next, NULL);
}

static const char *
catch_up_name(mongoq_catch_up_t policy)
{
    switch (policy) {
    case MONGOQ_CATCH_UP_LATEST:
        return "latest";
    case MONGOQ_CATCH_UP_SKIP:
        return "skip";
    case MONGOQ_CATCH_UP_ALL:
        return "all";
    }
    return "?";
}

/* "latest", "skip:1m00s" (the grace), "all:10" (the limit). */
static const char *
catch_up_text(const mongoq_schedule_info_t *info, char *buf, size_t size)
{
    char grace[32];
    if (info->catch_up == MONGOQ_CATCH_UP_SKIP) {
        bson_snprintf(buf, size, "skip:%s", cli_duration(info->grace_ms, grace, sizeof grace));
    } else if (info->catch_up == MONGOQ_CATCH_UP_ALL) {
        bson_snprintf(buf, size, "all:%" PRId32, info->catch_up_limit);
    } else {
        bson_snprintf(buf, size, "%s", catch_up_name(info->catch_up));
    }
    return buf;
}

static void
append_date_or_null(bson_t *doc, const char *key, int64_t ms)
{
    if (ms >= 0) {
        BSON_APPEND_DATE_TIME(doc, key, ms);
    } else {
        BSON_APPEND_NULL(doc, key);
    }
}

static void
append_utf8_or_null(bson_t *doc, const char *key, const char *value)
{
    if (value) {
        BSON_APPEND_UTF8(doc, key, value);
    } else {
        BSON_APPEND_NULL(doc, key);
    }
}

static void
schedule_doc(const mongoq_schedule_info_t *info, bson_t *doc)
{
    char utc[40], local[48];
    bool has_next = info->next_slot_ms >= 0;
    BSON_APPEND_UTF8(doc, "name", info->name);
    BSON_APPEND_UTF8(doc, "cron", info->cron);
    BSON_APPEND_UTF8(doc, "tz", info->tz);
    append_date_or_null(doc, "next_run", info->next_slot_ms);
    append_utf8_or_null(doc, "next_run_utc",
                        has_next ? utc_iso(info->next_slot_ms, utc, sizeof utc) : NULL);
    append_utf8_or_null(doc, "next_run_local",
                        has_next && zone_readable(info)
                            ? zone_iso(info->tz, info->next_slot_ms, local, sizeof local)
                            : NULL);
    BSON_APPEND_UTF8(doc, "catch_up", catch_up_name(info->catch_up));
    BSON_APPEND_INT32(doc, "catch_up_limit", info->catch_up_limit);
    BSON_APPEND_INT64(doc, "grace_ms", info->grace_ms);
    BSON_APPEND_INT64(doc, "enqueued", info->enqueued);
    BSON_APPEND_INT64(doc, "skipped", info->skipped);
    append_date_or_null(doc, "last_slot", info->last_slot_ms);
    append_date_or_null(doc, "last_run_at", info->last_run_at_ms);
    BSON_APPEND_INT32(doc, "priority", info->priority);
    BSON_APPEND_INT32(doc, "max_attempts", info->max_attempts);
    append_utf8_or_null(doc, "dedup_key", info->dedup_key);
    append_date_or_null(doc, "updated_at", info->updated_at_ms);
    BSON_APPEND_DOCUMENT(doc, "payload", info->payload);
}

static void
print_json(cli_t *cli, mongoq_queue_t *queue, mongoq_schedule_info_t **infos, size_t n)
{
    bson_t doc = BSON_INITIALIZER, list, one;
    char key[16];
    const char *k;
    BSON_APPEND_UTF8(&doc, "db", mongoq_queue_db(queue));
    BSON_APPEND_UTF8(&doc, "queue", mongoq_queue_name(queue));
    BSON_APPEND_ARRAY_BEGIN(&doc, "schedules", &list);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&list, k, &one);
        schedule_doc(infos[i], &one);
        bson_append_document_end(&list, &one);
    }
    bson_append_array_end(&doc, &list);
    cli_print_json(cli->out, &doc);
    bson_destroy(&doc);
}

/* Widths of the name, cron and tz columns: the widest value or header, at most 40. */
static void
widths(mongoq_schedule_info_t **infos, size_t n, int w[3])
{
    size_t wide[3] = {strlen("NAME"), strlen("CRON"), strlen("TZ")};
    for (size_t i = 0; i < n; i++) {
        wide[0] = BSON_MAX(wide[0], strlen(infos[i]->name));
        wide[1] = BSON_MAX(wide[1], strlen(infos[i]->cron));
        wide[2] = BSON_MAX(wide[2], strlen(infos[i]->tz));
    }
    for (int c = 0; c < 3; c++) {
        w[c] = (int)BSON_MIN(wide[c], (size_t)40);
    }
}

static void
print_table(cli_t *cli, mongoq_queue_t *queue, mongoq_schedule_info_t **infos, size_t n)
{
    if (n == 0) {
        fprintf(cli->out, "%s.%s: no schedules\n", mongoq_queue_db(queue),
                mongoq_queue_name(queue));
        return;
    }
    int w[3];
    widths(infos, n, w);
    fprintf(cli->out, "%-*s  %-*s  %-*s  %-20s  %-25s  %-12s  %8s  %8s  %s\n", w[0], "NAME", w[1],
            "CRON", w[2], "TZ", "NEXT_UTC", "NEXT_LOCAL", "CATCH_UP", "ENQUEUED", "SKIPPED",
            "LAST_SLOT");
    for (size_t i = 0; i < n; i++) {
        const mongoq_schedule_info_t *s = infos[i];
        char utc[40], local[48], policy[48], last[40];
        bool has_next = s->next_slot_ms >= 0;
        fprintf(cli->out,
                "%-*.40s  %-*.40s  %-*.40s  %-20s  %-25s  %-12s  %8" PRId64 "  %8" PRId64 "  %s\n",
                w[0], s->name, w[1], s->cron, w[2], s->tz,
                has_next ? utc_iso(s->next_slot_ms, utc, sizeof utc) : "-",
                has_next && zone_readable(s) ? zone_iso(s->tz, s->next_slot_ms, local, sizeof local)
                                             : "-",
                catch_up_text(s, policy, sizeof policy), s->enqueued, s->skipped,
                s->last_slot_ms >= 0 ? utc_iso(s->last_slot_ms, last, sizeof last) : "-");
    }
}

int
cli_cmd_schedules(cli_t *cli)
{
    if (cli->args.npositional > 1) {
        return cli_fail(cli, CLI_USAGE, "takes no arguments");
    }
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    mongoq_schedule_info_t **infos = NULL;
    size_t n = 0;
    bson_error_t error;
    if (!mongoq_schedule_list(queue, &infos, &n, &error)) {
        return cli_fail_error(cli, "list the schedules", &error);
    }
    const char *tz = getenv("TZ");
    char *saved_tz = tz ? bson_strdup(tz) : NULL;
    if (cli->args.json) {
        print_json(cli, queue, infos, n);
    } else {
        print_table(cli, queue, infos, n);
    }
    if (saved_tz) {
        setenv("TZ", saved_tz, 1);
    } else {
        unsetenv("TZ");
    }
    tzset();
    bson_free(saved_tz);
    mongoq_schedule_infos_destroy(infos, n);
    return CLI_OK;
}

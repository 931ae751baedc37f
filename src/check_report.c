/* The doctor's report: items with a level, a message, an advice and details. */
#include <stdarg.h>

#include "check-private.h"

const char *
mongoq_check_level_name(mongoq_check_level_t level)
{
    switch (level) {
    case MONGOQ_CHECK_OK:
        return "ok";
    case MONGOQ_CHECK_WARNING:
        return "warning";
    case MONGOQ_CHECK_ERROR:
        return "error";
    }
    return "unknown";
}

mongoq_report_t *
mongoq__report_new(void)
{
    return bson_malloc0(sizeof(mongoq_report_t));
}

mongoq__check_item_t *
mongoq__report_add(mongoq_report_t *report, const char *name)
{
    BSON_ASSERT(report->n < MONGOQ__CHECK_MAX_ITEMS);
    mongoq__check_item_t *item = &report->items[report->n++];
    item->name = name;
    item->level = MONGOQ_CHECK_OK;
    item->message = bson_strdup("");
    item->advice = bson_strdup("");
    bson_init(&item->details);
    return item;
}

void
mongoq__check_item_set(mongoq__check_item_t *item, mongoq_check_level_t level, const char *advice,
                       const char *format, ...)
{
    va_list args;
    va_start(args, format);
    bson_free(item->message);
    item->message = bson_strdupv_printf(format, args);
    va_end(args);
    bson_free(item->advice);
    item->advice = bson_strdup(advice ? advice : "");
    item->level = level;
}

size_t
mongoq_report_count(const mongoq_report_t *report)
{
    BSON_ASSERT_PARAM(report);
    return report->n;
}

mongoq_check_level_t
mongoq_report_level(const mongoq_report_t *report)
{
    BSON_ASSERT_PARAM(report);
    mongoq_check_level_t worst = MONGOQ_CHECK_OK;
    for (size_t i = 0; i < report->n; i++) {
        if (report->items[i].level > worst) {
            worst = report->items[i].level;
        }
    }
    return worst;
}

static const mongoq__check_item_t *
item_at(const mongoq_report_t *report, size_t i)
{
    BSON_ASSERT_PARAM(report);
    BSON_ASSERT(i < report->n);
    return &report->items[i];
}

const char *
mongoq_report_name(const mongoq_report_t *report, size_t i)
{
    return item_at(report, i)->name;
}

mongoq_check_level_t
mongoq_report_item_level(const mongoq_report_t *report, size_t i)
{
    return item_at(report, i)->level;
}

const char *
mongoq_report_message(const mongoq_report_t *report, size_t i)
{
    return item_at(report, i)->message;
}

const char *
mongoq_report_advice(const mongoq_report_t *report, size_t i)
{
    return item_at(report, i)->advice;
}

const bson_t *
mongoq_report_details(const mongoq_report_t *report, size_t i)
{
    return &item_at(report, i)->details;
}

void
mongoq_report_to_bson(const mongoq_report_t *report, bson_t *out)
{
    BSON_ASSERT_PARAM(report);
    BSON_ASSERT_PARAM(out);
    bson_t items, item;
    char key[16];
    const char *k;
    bson_init(out);
    BSON_APPEND_UTF8(out, "level", mongoq_check_level_name(mongoq_report_level(report)));
    BSON_APPEND_ARRAY_BEGIN(out, "items", &items);
    for (size_t i = 0; i < report->n; i++) {
        const mongoq__check_item_t *it = &report->items[i];
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&items, k, &item);
        BSON_APPEND_UTF8(&item, "name", it->name);
        BSON_APPEND_UTF8(&item, "level", mongoq_check_level_name(it->level));
        BSON_APPEND_UTF8(&item, "message", it->message);
        BSON_APPEND_UTF8(&item, "advice", it->advice);
        BSON_APPEND_DOCUMENT(&item, "details", &it->details);
        bson_append_document_end(&items, &item);
    }
    bson_append_array_end(out, &items);
}

void
mongoq_report_destroy(mongoq_report_t *report)
{
    if (!report) {
        return;
    }
    for (size_t i = 0; i < report->n; i++) {
        bson_free(report->items[i].message);
        bson_free(report->items[i].advice);
        bson_destroy(&report->items[i].details);
    }
    bson_free(report);
}

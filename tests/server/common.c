#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

const char *
ms_code_name(int code)
{
    switch (code) {
#define MS_NAME_CASE_(num, id, name)                                                               \
    case num:                                                                                      \
        return #name;
        MS_CODES(MS_NAME_CASE_)
#undef MS_NAME_CASE_
    default: {
        /* ErrorCodes::errorString: "Location<code>" for a code without a name (Location40324) */
        static _Thread_local char name[32];
        snprintf(name, sizeof name, "Location%d", code);
        return name;
    }
    }
}

int
ms_error_code(const bson_error_t *error)
{
    return error->domain == MS_ERROR_DOMAIN ? (int)error->code : MS_ERR_UNKNOWN_ERROR;
}

bool
ms_set_error(bson_error_t *error, int code, const char *fmt, ...)
{
    if (error) {
        va_list ap;
        va_start(ap, fmt);
        error->domain = MS_ERROR_DOMAIN;
        error->code = (uint32_t)code;
        vsnprintf(error->message, sizeof error->message, fmt, ap);
        va_end(ap);
    }
    return false;
}

int64_t ms_clock_offset_ms;

int64_t
ms_cluster_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
ms_now_ms(void)
{
    return ms_cluster_clock_ms() + ms_clock_offset_ms;
}

void
ms_log(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[mongoq-test-server %lld] %s\n", (long long)ms_now_ms(), buf);
}

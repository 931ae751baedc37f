#include "mongoq/error.h"

const char *
mongoq_error_name(int code)
{
    switch (code) {
#define NAME_CASE_(name, value, desc)                                                              \
    case value:                                                                                    \
        return #name;
        MONGOQ_ERROR_MAP(NAME_CASE_)
#undef NAME_CASE_
    default:
        return "UNKNOWN";
    }
}

const char *
mongoq_error_description(int code)
{
    switch (code) {
#define DESC_CASE_(name, value, desc)                                                              \
    case value:                                                                                    \
        return desc;
        MONGOQ_ERROR_MAP(DESC_CASE_)
#undef DESC_CASE_
    default:
        return "unknown error";
    }
}

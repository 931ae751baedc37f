#include "mongoq/version.h"

const char *
mongoq_version_string(void)
{
    return MONGOQ_VERSION_STRING;
}

int
mongoq_version_number(void)
{
    return MONGOQ_VERSION_MAJOR * 10000 + MONGOQ_VERSION_MINOR * 100 + MONGOQ_VERSION_PATCH;
}

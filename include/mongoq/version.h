/*
 * mongoq/version.h - compile-time and run-time version of mongoq.
 */
#ifndef MONGOQ_VERSION_H
#define MONGOQ_VERSION_H

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MONGOQ_VERSION_MAJOR 0
#define MONGOQ_VERSION_MINOR 1
#define MONGOQ_VERSION_PATCH 0
#define MONGOQ_VERSION_STRING "0.1.0"

/* Returns the version of the linked library, "MAJOR.MINOR.PATCH". Static string. Thread-safe. */
MONGOQ_EXPORT const char *
mongoq_version_string(void);

/* Returns the linked library's version as MAJOR * 10000 + MINOR * 100 + PATCH. Thread-safe. */
MONGOQ_EXPORT int
mongoq_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_VERSION_H */

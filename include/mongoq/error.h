/*
 * mongoq/error.h - the error domain and codes of mongoq.
 *
 * Every fallible mongoq function takes a nullable `bson_error_t *error` as its last argument.
 * Errors that mongoq itself detects carry `domain == MONGOQ_ERROR_DOMAIN` and one of the codes
 * below. Errors from the driver or the server (network, server error replies, write concern) are
 * passed through unchanged with libmongoc's domains, so `error->domain` tells where an error
 * came from and `error->code` what it was.
 *
 * Two exceptions to "passed through unchanged":
 *  - MONGOQ_ERROR_UNKNOWN_OUTCOME replaces a driver error after which a write may or may not
 *    have been applied: the connection failed after the command was sent (and libmongoc's one
 *    retry, where it makes one, failed too), the server answered with an error labelled
 *    RetryableWriteError, or the write concern could not be confirmed (writeConcernError). The
 *    driver's domain, code and message are kept in error->message. Each function's header says
 *    what a retry after this code does.
 *  - MONGOQ_ERROR_NO_CLIENT replaces libmongoc's silent NULL when the pool's wait queue timed out
 *    (waitQueueTimeoutMS): nothing was sent.
 */
#ifndef MONGOQ_ERROR_H
#define MONGOQ_ERROR_H

#include <bson/bson.h>

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Clear of libbson's (1-2) and libmongoc's (1-30ish) domains. */
#define MONGOQ_ERROR_DOMAIN 0x6d71 /* 'm' 'q' */

/* The one list of mongoq error codes: X(NAME, value, description). */
#define MONGOQ_ERROR_MAP(X)                                                                        \
    X(INVALID_ARG, 1, "an argument or option is invalid")                                          \
    X(DUPLICATE, 2, "an unfinished message already holds this dedup_key")                          \
    X(LEASE_LOST, 3, "the lease on this message expired or was taken by another consumer")        \
    X(NOT_FOUND, 4, "no such message")                                                             \
    X(SERVER, 5, "the server answered with something mongoq cannot use")                          \
    X(STOPPED, 6, "the object was stopped or is shutting down")                                   \
    X(UNKNOWN_OUTCOME, 7, "the write was sent but its reply was lost: it may have been applied")   \
    X(NO_CLIENT, 8, "the connection pool gave no client (its wait queue timed out)")              \
    X(SYSTEM, 9, "the operating system refused a resource (a thread, a pipe)")

typedef enum {
#define MONGOQ_ERROR_ENUM_(name, value, desc) MONGOQ_ERROR_##name = value,
    MONGOQ_ERROR_MAP(MONGOQ_ERROR_ENUM_)
#undef MONGOQ_ERROR_ENUM_
} mongoq_error_code_t;

/*
 * Returns the name of a mongoq error code ("LEASE_LOST") or "UNKNOWN" for a value that is not
 * one of them. The string is static: never free it. Thread-safe.
 */
MONGOQ_EXPORT const char *
mongoq_error_name(int code);

/*
 * Returns a one-line description of a mongoq error code, or "unknown error". Static string.
 * Thread-safe.
 */
MONGOQ_EXPORT const char *
mongoq_error_description(int code);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_ERROR_H */

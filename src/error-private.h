/* Turning driver errors into mongoq's where the caller needs to know more (see error.h). */
#ifndef MONGOQ_ERROR_PRIVATE_H
#define MONGOQ_ERROR_PRIVATE_H

#include <stdbool.h>

#include <mongoc/mongoc.h>

#include "mongoq/error.h"

/*
 * After a failed write: when the write may have been applied (the connection failed after the
 * command was sent, an error labelled RetryableWriteError, a write concern error), rewrites
 * *error as MONGOQ_ERROR_UNKNOWN_OUTCOME, keeping the driver's domain, code and message in the
 * text after `what`. Leaves any other error unchanged. reply (may be NULL) is the write's reply.
 */
void mongoq__error_classify_write(const char *what, const bson_t *reply, bson_error_t *error);

/* Whether error is MONGOQ_ERROR_UNKNOWN_OUTCOME, or a driver error that would become it. */
bool mongoq__error_outcome_unknown(const bson_error_t *error, const bson_t *reply);

/*
 * Whether a server error depends on the document a write touched rather than on the command or
 * the connection: the result would pass 16 MiB, a validator refused it, arithmetic overflowed
 * on its values, a path in it cannot hold the field. The same write on another document would
 * succeed, so a claim that meets one buries that document and goes on (no poison message).
 */
bool mongoq__error_document_dependent(const bson_error_t *error);

/*
 * Whether a claim's refusal may be the document's doing: a code of the list above, or any other
 * server error that is none of a network, server selection, client or write-concern error, an
 * UNKNOWN_OUTCOME, a retryable state (NotWritablePrimary class, shutdown, interrupted at a step
 * down), an interruption, a time limit, a write conflict, auth or routing. For a code not on the
 * list the claim proves it before burying (claim.c: the same claim succeeds on another document
 * while it keeps failing on this one).
 */
bool mongoq__error_maybe_document(const bson_error_t *error);

/*
 * Whether a failed write is worth one more try: its outcome is unknown, or the server refused it
 * for a passing state (a failover, a shutdown, a network error on its side: the codes of the
 * retryable writes specification). libmongoc retries only single-document writes; the
 * multi-document writes mongoq fences by token retry themselves on these.
 */
bool mongoq__error_retryable(const bson_error_t *error);

/*
 * Whether error is the server's answer with this code: libmongoc reports server errors in
 * MONGOC_ERROR_SERVER with error API 2 and in MONGOC_ERROR_QUERY / MONGOC_ERROR_COLLECTION /
 * MONGOC_ERROR_COMMAND with the legacy API 1, whichever the caller's pool uses.
 */
bool mongoq__error_is_server(const bson_error_t *error, uint32_t code);

/* Whether error is a mongoq error with this code (domain checked). */
bool mongoq__error_is(const bson_error_t *error, mongoq_error_code_t code);

/* A limit's value as a string literal, so messages name the constant their check uses. */
#define MONGOQ__STR_(x) #x
#define MONGOQ__STR(x) MONGOQ__STR_(x)

/* Fills error with a mongoq error. */
#define mongoq__error_set(error, code, ...)                                                        \
    bson_set_error((error), MONGOQ_ERROR_DOMAIN, (code), __VA_ARGS__)

#endif

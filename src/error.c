/* Error names and descriptions; classifying driver errors (error-private.h). */
#include "error-private.h"

#include <inttypes.h>

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

/* ---- driver errors whose outcome is unknown ------------------------------------------------- */

bool
mongoq__error_is(const bson_error_t *error, mongoq_error_code_t code)
{
    return error && error->domain == MONGOQ_ERROR_DOMAIN && error->code == (uint32_t)code;
}

bool
mongoq__error_outcome_unknown(const bson_error_t *error, const bson_t *reply)
{
    if (mongoq__error_is(error, MONGOQ_ERROR_UNKNOWN_OUTCOME)) {
        return true;
    }
    /* A socket that failed while sending or reading; a failed connect sent nothing. */
    if (error->domain == MONGOC_ERROR_STREAM && error->code == MONGOC_ERROR_STREAM_SOCKET) {
        return true;
    }
    if (error->domain == MONGOC_ERROR_WRITE_CONCERN) {
        return true; /* applied on the primary, not confirmed by the write concern */
    }
    return reply && mongoc_error_has_label(reply, "RetryableWriteError");
}

void
mongoq__error_classify_write(const char *what, const bson_t *reply, bson_error_t *error)
{
    if (!error || !mongoq__error_outcome_unknown(error, reply) ||
        mongoq__error_is(error, MONGOQ_ERROR_UNKNOWN_OUTCOME)) {
        return;
    }
    bson_error_t driver = *error;
    bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_UNKNOWN_OUTCOME,
                   "%s: outcome unknown, the write may have been applied (driver error %" PRIu32
                   ".%" PRIu32 ": %s)",
                   what, driver.domain, driver.code, driver.message);
}

bool
mongoq__error_document_dependent(const bson_error_t *error)
{
    if (!error || error->domain == MONGOQ_ERROR_DOMAIN || error->domain == MONGOC_ERROR_STREAM ||
        error->domain == MONGOC_ERROR_SERVER_SELECTION || error->domain == MONGOC_ERROR_CLIENT ||
        error->domain == MONGOC_ERROR_WRITE_CONCERN) {
        return false;
    }
    switch (error->code) {
    case 15:    /* Overflow: date or number arithmetic on the document's values */
    case 16:    /* InvalidLength */
    case 28:    /* PathNotViable: a field path runs through a non-document */
    case 52:    /* DollarPrefixedFieldName */
    case 121:   /* DocumentValidationFailure */
    case 10334: /* BSONObjectTooLarge */
    case 17419: /* "Resulting document after update is larger than 16777216" */
    case 17280: /* key too large to index (before 4.2) */
        return true;
    default:
        return false;
    }
}

/* Server codes that say nothing about a document: auth, time limits, interruptions, write
 * conflicts, routing (not retryable in the sense of mongoq__error_retryable, never poison). */
static bool
never_document(uint32_t code)
{
    static const uint32_t codes[] = {
        11,    /* UserNotFound */          13,    /* Unauthorized */
        18,    /* AuthenticationFailed */  24,    /* LockTimeout */
        46,    /* LockBusy */              50,    /* MaxTimeMSExpired */
        63,    /* StaleShardVersion */     112,   /* WriteConflict */
        150,   /* StaleEpoch */            251,   /* NoSuchTransaction */
        279,   /* ClientDisconnect */      11601, /* Interrupted */
        13388, /* StaleConfig */
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (codes[i] == code) {
            return true;
        }
    }
    return false;
}

bool
mongoq__error_maybe_document(const bson_error_t *error)
{
    if (mongoq__error_document_dependent(error)) {
        return true;
    }
    if (!error || error->code == 0 ||
        (error->domain != MONGOC_ERROR_SERVER && error->domain != MONGOC_ERROR_QUERY &&
         error->domain != MONGOC_ERROR_COLLECTION && error->domain != MONGOC_ERROR_COMMAND)) {
        return false; /* network, server selection, client, write concern, our own (UNKNOWN_OUTCOME) */
    }
    return !mongoq__error_retryable(error) && !never_document(error->code);
}

bool
mongoq__error_retryable(const bson_error_t *error)
{
    if (!error) {
        return false;
    }
    if (mongoq__error_is(error, MONGOQ_ERROR_UNKNOWN_OUTCOME)) {
        return true;
    }
    if (error->domain == MONGOQ_ERROR_DOMAIN || error->domain == MONGOC_ERROR_WRITE_CONCERN) {
        return false;
    }
    switch (error->code) {
    case 6:     /* HostUnreachable */
    case 7:     /* HostNotFound */
    case 89:    /* NetworkTimeout */
    case 91:    /* ShutdownInProgress */
    case 189:   /* PrimarySteppedDown */
    case 262:   /* ExceededTimeLimit */
    case 9001:  /* SocketException */
    case 10107: /* NotWritablePrimary */
    case 11600: /* InterruptedAtShutdown */
    case 11602: /* InterruptedDueToReplStateChange */
    case 13435: /* NotPrimaryNoSecondaryOk */
    case 13436: /* NotPrimaryOrSecondary */
        return error->domain != MONGOC_ERROR_STREAM;
    default:
        return false;
    }
}

bool
mongoq__error_is_server(const bson_error_t *error, uint32_t code)
{
    return error && error->code == code &&
           (error->domain == MONGOC_ERROR_SERVER || error->domain == MONGOC_ERROR_QUERY ||
            error->domain == MONGOC_ERROR_COLLECTION || error->domain == MONGOC_ERROR_COMMAND);
}

/*
 * mongoq-test-server: shared definitions. Test infrastructure only; never installed.
 *
 * Errors inside the server are bson_error_t with domain MS_ERROR_DOMAIN, code = the MongoDB
 * error code (2 BadValue, 11000 DuplicateKey, ...) and message = the errmsg mongod would send.
 * The command layer turns them into {ok: 0, errmsg, code, codeName}.
 */
#ifndef MS_COMMON_H
#define MS_COMMON_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#define MS_ERROR_DOMAIN 1000

/* MongoDB error codes used by the server (names as mongod's codeName). */
#define MS_CODES(X)                                                                                \
    X(1, InternalError)                                                                            \
    X(2, BadValue)                                                                                 \
    X(9, FailedToParse)                                                                            \
    X(6, HostUnreachable)                                                                          \
    X(7, HostNotFound)                                                                             \
    X(13, Unauthorized)                                                                            \
    X(14, TypeMismatch)                                                                            \
    X(15, Overflow)                                                                                \
    X(20, IllegalOperation)                                                                        \
    X(26, NamespaceNotFound)                                                                       \
    X(27, IndexNotFound)                                                                           \
    X(28, PathNotViable)                                                                           \
    X(40, ConflictingUpdateOperators)                                                              \
    X(43, CursorNotFound)                                                                          \
    X(48, NamespaceExists)                                                                         \
    X(50, MaxTimeMSExpired)                                                                        \
    X(52, DollarPrefixedFieldName)                                                                 \
    X(53, InvalidIdField)                                                                          \
    X(54, NotSingleValueField)                                                                     \
    X(56, EmptyFieldName)                                                                          \
    X(59, CommandNotFound)                                                                         \
    X(64, WriteConcernFailed)                                                                      \
    X(66, ImmutableField)                                                                          \
    X(67, CannotCreateIndex)                                                                       \
    X(72, InvalidOptions)                                                                          \
    X(73, InvalidNamespace)                                                                        \
    X(79, UnknownReplWriteConcern)                                                                 \
    X(85, IndexOptionsConflict)                                                                    \
    X(89, NetworkTimeout)                                                                          \
    X(86, IndexKeySpecsConflict)                                                                   \
    X(91, ShutdownInProgress)                                                                      \
    X(100, UnsatisfiableWriteConcern)                                                              \
    X(112, WriteConflict)                                                                          \
    X(115, CommandNotSupported)                                                                    \
    X(117, ConflictingOperationInProgress)                                                         \
    X(121, DocumentValidationFailure)                                                              \
    X(133, FailedToSatisfyReadPreference)                                                          \
    X(134, ReadConcernMajorityNotAvailableYet)                                                     \
    X(150, StaleEpoch)                                                                             \
    X(168, InvalidPipelineOperator)                                                                \
    X(181, AmbiguousIndexKeyPattern)                                                               \
    X(171, CannotIndexParallelArrays)                                                              \
    X(197, InvalidIndexSpecificationOption)                                                        \
    X(189, PrimarySteppedDown)                                                                     \
    X(224, QueryFeatureNotAllowed)                                                                 \
    X(225, TransactionTooOld)                                                                      \
    X(234, RetryChangeStream)                                                                      \
    X(238, NotImplemented)                                                                         \
    X(241, ConversionFailure)                                                                      \
    X(244, TransactionAborted)                                                                     \
    X(251, NoSuchTransaction)                                                                      \
    X(256, TransactionCommitted)                                                                   \
    X(260, InvalidResumeToken)                                                                     \
    X(262, ExceededTimeLimit)                                                                      \
    X(263, OperationNotSupportedInTransaction)                                                     \
    X(280, ChangeStreamFatalError)                                                                 \
    X(286, ChangeStreamHistoryLost)                                                                \
    X(352, UnsupportedOpQueryCommand)                                                              \
    X(9001, SocketException)                                                                       \
    X(10334, BSONObjectTooLarge)                                                                   \
    X(10107, NotWritablePrimary)                                                                   \
    X(11000, DuplicateKey)                                                                         \
    X(11600, InterruptedAtShutdown)                                                                \
    X(11602, InterruptedDueToReplStateChange)                                                      \
    X(13388, StaleConfig)                                                                          \
    X(13435, NotPrimaryNoSecondaryOk)                                                              \
    X(13436, NotPrimaryOrSecondary)                                                                \
    X(17124, Location17124)                                                                        \
    X(40324, Location40324)                                                                        \
    X(40573, Location40573)

/* codeName for a code ("BadValue"); "Location<code>" style names for unnamed ones; never NULL. */
const char *
ms_code_name(int code);

/* Fills error (if not NULL) with MS_ERROR_DOMAIN, code and a printf-style message. Returns false. */
bool
ms_set_error(bson_error_t *error, int code, const char *fmt, ...) BSON_GNUC_PRINTF(3, 4);

/* Milliseconds since the Unix epoch on the server's (wall) clock. */
int64_t
ms_now_ms(void);

/* Logs a line to stderr with a timestamp, printf-style. */
void
ms_log(const char *fmt, ...) BSON_GNUC_PRINTF(1, 2);

#endif

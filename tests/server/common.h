/*
 * mongoq-test-server: shared definitions. Test infrastructure only; never installed.
 *
 * Errors inside the server are bson_error_t with domain MS_ERROR_DOMAIN, code = the MongoDB
 * error code (MS_ERR_BAD_VALUE, MS_ERR_DUPLICATE_KEY, ...) and message = the errmsg mongod would
 * send.
 * The command layer turns them into {ok: 0, errmsg, code, codeName}.
 */
#ifndef MS_COMMON_H
#define MS_COMMON_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#define MS_ERROR_DOMAIN 1000

/*
 * The MongoDB error codes the server sends, one row each: X(code, ENUM, codeName) gives
 * MS_ERR_<ENUM> = code and the codeName mongod 6.0 sends for it (src/mongo/base/error_codes.yml).
 * Location codes, which mongod has no name for (uassert(40415, ...)), are MS_LOCATION_CODES:
 * X(code) gives MS_ERR_LOCATION<code>, and mongod names them "Location<code>". A new code is a
 * row in one list or the other; call sites use the enum, never the number.
 */
#define MS_CODES(X)                                                                                \
    X(1, INTERNAL_ERROR, InternalError)                                                            \
    X(2, BAD_VALUE, BadValue)                                                                      \
    X(6, HOST_UNREACHABLE, HostUnreachable)                                                        \
    X(7, HOST_NOT_FOUND, HostNotFound)                                                             \
    X(8, UNKNOWN_ERROR, UnknownError)                                                              \
    X(9, FAILED_TO_PARSE, FailedToParse)                                                           \
    X(13, UNAUTHORIZED, Unauthorized)                                                              \
    X(14, TYPE_MISMATCH, TypeMismatch)                                                             \
    X(15, OVERFLOW, Overflow)                                                                      \
    X(16, INVALID_LENGTH, InvalidLength)                                                           \
    X(20, ILLEGAL_OPERATION, IllegalOperation)                                                     \
    X(24, LOCK_TIMEOUT, LockTimeout)                                                               \
    X(26, NAMESPACE_NOT_FOUND, NamespaceNotFound)                                                  \
    X(27, INDEX_NOT_FOUND, IndexNotFound)                                                          \
    X(28, PATH_NOT_VIABLE, PathNotViable)                                                          \
    X(40, CONFLICTING_UPDATE_OPERATORS, ConflictingUpdateOperators)                                \
    X(43, CURSOR_NOT_FOUND, CursorNotFound)                                                        \
    X(47, NO_MATCHING_DOCUMENT, NoMatchingDocument)                                                \
    X(48, NAMESPACE_EXISTS, NamespaceExists)                                                       \
    X(50, MAX_TIME_MS_EXPIRED, MaxTimeMSExpired)                                                   \
    X(52, DOLLAR_PREFIXED_FIELD_NAME, DollarPrefixedFieldName)                                     \
    X(53, INVALID_ID_FIELD, InvalidIdField)                                                        \
    X(54, NOT_SINGLE_VALUE_FIELD, NotSingleValueField)                                             \
    X(56, EMPTY_FIELD_NAME, EmptyFieldName)                                                        \
    X(59, COMMAND_NOT_FOUND, CommandNotFound)                                                      \
    X(63, OBSOLETE_STALE_SHARD_VERSION, OBSOLETE_StaleShardVersion)                                \
    X(64, WRITE_CONCERN_FAILED, WriteConcernFailed)                                                \
    X(66, IMMUTABLE_FIELD, ImmutableField)                                                         \
    X(67, CANNOT_CREATE_INDEX, CannotCreateIndex)                                                  \
    X(72, INVALID_OPTIONS, InvalidOptions)                                                         \
    X(73, INVALID_NAMESPACE, InvalidNamespace)                                                     \
    X(79, UNKNOWN_REPL_WRITE_CONCERN, UnknownReplWriteConcern)                                     \
    X(85, INDEX_OPTIONS_CONFLICT, IndexOptionsConflict)                                            \
    X(86, INDEX_KEY_SPECS_CONFLICT, IndexKeySpecsConflict)                                         \
    X(89, NETWORK_TIMEOUT, NetworkTimeout)                                                         \
    X(91, SHUTDOWN_IN_PROGRESS, ShutdownInProgress)                                                \
    X(100, UNSATISFIABLE_WRITE_CONCERN, UnsatisfiableWriteConcern)                                 \
    X(112, WRITE_CONFLICT, WriteConflict)                                                          \
    X(115, COMMAND_NOT_SUPPORTED, CommandNotSupported)                                             \
    X(117, CONFLICTING_OPERATION_IN_PROGRESS, ConflictingOperationInProgress)                      \
    X(121, DOCUMENT_VALIDATION_FAILURE, DocumentValidationFailure)                                 \
    X(133, FAILED_TO_SATISFY_READ_PREFERENCE, FailedToSatisfyReadPreference)                       \
    X(134, READ_CONCERN_MAJORITY_NOT_AVAILABLE_YET, ReadConcernMajorityNotAvailableYet)            \
    X(140, GRAPH_CONTAINS_CYCLE, GraphContainsCycle)                                               \
    X(143, CURSOR_IN_USE, CursorInUse)                                                             \
    X(149, VIEW_DEPTH_LIMIT_EXCEEDED, ViewDepthLimitExceeded)                                      \
    X(150, STALE_EPOCH, StaleEpoch)                                                                \
    X(157, OPTION_NOT_SUPPORTED_ON_VIEW, OptionNotSupportedOnView)                                 \
    X(166, COMMAND_NOT_SUPPORTED_ON_VIEW, CommandNotSupportedOnView)                               \
    X(168, INVALID_PIPELINE_OPERATOR, InvalidPipelineOperator)                                     \
    X(171, CANNOT_INDEX_PARALLEL_ARRAYS, CannotIndexParallelArrays)                                \
    X(181, AMBIGUOUS_INDEX_KEY_PATTERN, AmbiguousIndexKeyPattern)                                  \
    X(189, PRIMARY_STEPPED_DOWN, PrimarySteppedDown)                                               \
    X(197, INVALID_INDEX_SPECIFICATION_OPTION, InvalidIndexSpecificationOption)                    \
    X(224, QUERY_FEATURE_NOT_ALLOWED, QueryFeatureNotAllowed)                                      \
    X(225, TRANSACTION_TOO_OLD, TransactionTooOld)                                                 \
    X(234, RETRY_CHANGE_STREAM, RetryChangeStream)                                                 \
    X(238, NOT_IMPLEMENTED, NotImplemented)                                                        \
    X(239, SNAPSHOT_TOO_OLD, SnapshotTooOld)                                                       \
    X(241, CONVERSION_FAILURE, ConversionFailure)                                                  \
    X(244, NOT_YET_AVAILABLE_TRANSACTION_ABORTED, NOT_YET_AVAILABLE_TransactionAborted)            \
    X(246, SNAPSHOT_UNAVAILABLE, SnapshotUnavailable)                                              \
    X(251, NO_SUCH_TRANSACTION, NoSuchTransaction)                                                 \
    X(256, TRANSACTION_COMMITTED, TransactionCommitted)                                            \
    X(260, INVALID_RESUME_TOKEN, InvalidResumeToken)                                               \
    X(262, EXCEEDED_TIME_LIMIT, ExceededTimeLimit)                                                 \
    X(263, OPERATION_NOT_SUPPORTED_IN_TRANSACTION, OperationNotSupportedInTransaction)             \
    X(280, CHANGE_STREAM_FATAL_ERROR, ChangeStreamFatalError)                                      \
    X(286, CHANGE_STREAM_HISTORY_LOST, ChangeStreamHistoryLost)                                    \
    X(317, CONNECTION_POOL_EXPIRED, ConnectionPoolExpired)                                         \
    X(322, API_VERSION_ERROR, APIVersionError)                                                     \
    X(352, UNSUPPORTED_OP_QUERY_COMMAND, UnsupportedOpQueryCommand)                                \
    X(9001, SOCKET_EXCEPTION, SocketException)                                                     \
    X(10058, LEGACY_NOT_PRIMARY, LegacyNotPrimary)                                                 \
    X(10107, NOT_WRITABLE_PRIMARY, NotWritablePrimary)                                             \
    X(10334, BSON_OBJECT_TOO_LARGE, BSONObjectTooLarge)                                            \
    X(11000, DUPLICATE_KEY, DuplicateKey)                                                          \
    X(11600, INTERRUPTED_AT_SHUTDOWN, InterruptedAtShutdown)                                       \
    X(11601, INTERRUPTED, Interrupted)                                                             \
    X(11602, INTERRUPTED_DUE_TO_REPL_STATE_CHANGE, InterruptedDueToReplStateChange)                \
    X(13388, STALE_CONFIG, StaleConfig)                                                            \
    X(13435, NOT_PRIMARY_NO_SECONDARY_OK, NotPrimaryNoSecondaryOk)                                 \
    X(13436, NOT_PRIMARY_OR_SECONDARY, NotPrimaryOrSecondary)

/* clang-format off */
#define MS_LOCATION_CODES(X)                                                                       \
    X(13113) X(15947) X(15952) X(15955) X(15956) X(15957) X(15958) X(15959)                        \
    X(15969) X(15972) X(15973) X(15974) X(15975) X(15976) X(15983) X(16007)                        \
    X(16020) X(16410) X(16555) X(16609) X(16610) X(16611) X(16612) X(16702)                        \
    X(16866) X(16867) X(16868) X(16882) X(16883) X(16990) X(17080) X(17081)                        \
    X(17082) X(17124) X(17276) X(17312) X(17419) X(17420) X(28648) X(28651)                        \
    X(28664) X(28680) X(28689) X(28691) X(28765) X(31002) X(31109) X(31120)                        \
    X(31249) X(31250) X(31252) X(31253) X(31254) X(31325) X(40061) X(40064)                        \
    X(40066) X(40081) X(40156) X(40158) X(40160) X(40228) X(40231) X(40234)                        \
    X(40235) X(40236) X(40237) X(40238) X(40272) X(40323) X(40324) X(40352)                        \
    X(40400) X(40414) X(40415) X(40571) X(40573) X(40601) X(40602) X(40647)                        \
    X(40649) X(40674) X(50768) X(50808) X(50811) X(50865) X(50911) X(51024)                        \
    X(51057) X(51091) X(51132) X(51134) X(51183) X(51186) X(51187) X(51189)                        \
    X(51199) X(51270) X(51272) X(1257300) X(3040500) X(3041701) X(3041702) X(3041703)              \
    X(3041705) X(4161100) X(4161101) X(4161102) X(4161103) X(4161105) X(4161106) X(4161107)        \
    X(4161108) X(4161109) X(5654600) X(5654601) X(5654602)

typedef enum {
#define MS_ERR_ENUM_(code, id, name) MS_ERR_##id = code,
    MS_CODES(MS_ERR_ENUM_)
#undef MS_ERR_ENUM_
#define MS_ERR_LOCATION_ENUM_(code) MS_ERR_LOCATION##code = code,
    MS_LOCATION_CODES(MS_ERR_LOCATION_ENUM_)
#undef MS_ERR_LOCATION_ENUM_
} ms_error_code_t;
/* clang-format on */

/*
 * codeName for a code: its name in MS_CODES ("BadValue"), else "Location<code>", as mongod's
 * ErrorCodes::errorString names every code without a name (location codes, and any other a
 * failCommand fail point sends). Never NULL.
 */
const char *
ms_code_name(int code);

/* The MongoDB code of error: its code when the server set it, else UnknownError. */
int
ms_error_code(const bson_error_t *error);

/* Fills error (if not NULL) with MS_ERROR_DOMAIN, code and a printf-style message. Returns false. */
bool
ms_set_error(bson_error_t *error, int code, const char *fmt, ...) BSON_GNUC_PRINTF(3, 4);

/* Milliseconds since the Unix epoch on the server's (wall) clock: the host's clock plus
 * ms_clock_offset_ms (--clock-offset-ms, set by main.c), as $$NOW, localTime and wallTime see
 * it. */
int64_t
ms_now_ms(void);

/* The host's clock without the offset: cluster times (oplog.c) follow it, as a cluster's
 * gossiped logical clock keeps members' cluster times together whatever their wall clocks say. */
int64_t
ms_cluster_clock_ms(void);

/* --clock-offset-ms N: added to every wall-clock reading (0 by default). */
extern int64_t ms_clock_offset_ms;

/* Logs a line to stderr with a timestamp, printf-style. */
void
ms_log(const char *fmt, ...) BSON_GNUC_PRINTF(1, 2);

#endif

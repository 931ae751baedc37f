/*
 * The generic arguments every command may carry (mongod's generic_argument.idl): the list of
 * their names, the checks of a command's own fields against it (unknown fields fail as mongod's
 * IDL does), and the parsing of the session fields (lsid, txnNumber, autocommit,
 * startTransaction), writeConcern, readConcern and apiVersion into the command being run.
 */
#include "crud-private.h"
#include "server-private.h"

#include <stdio.h>
#include <string.h>

static const char *const generic_fields[] = {
    "$db", "lsid", "txnNumber", "autocommit", "startTransaction", "$clusterTime",
    "$readPreference", "readConcern", "writeConcern", "maxTimeMS", "comment", "apiVersion",
    "apiStrict", "apiDeprecationErrors", "$audit", "$client", "$configServerState",
    "allowImplicitCollectionCreation", "$oplogQueryData", "$queryOptions", "$replData",
    "shardVersion", "databaseVersion", "clientOperationKey", "stmtId", "$configTime",
    "$topologyTime", "help", "mayBypassWriteConcern", NULL};

static bool
in_list(const char *const *list, const char *s)
{
    for (int i = 0; list && list[i]; i++) {
        if (strcmp(list[i], s) == 0) {
            return true;
        }
    }
    return false;
}

bool
ms_is_generic_field(const char *field)
{
    return in_list(generic_fields, field);
}

bool
ms_check_doc_fields(const bson_t *doc, const char *const *allowed, const char *where,
                    bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        if (!in_list(allowed, bson_iter_key(&it))) {
            return ms_set_error(error, MS_ERR_LOCATION40415,
                                "BSON field '%s.%s' is an unknown field.", where,
                                bson_iter_key(&it));
        }
    }
    return true;
}

bool
ms_check_fields(const ms_cmd_t *c, const char *const *allowed, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it); /* the command name */
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!in_list(allowed, k) && !in_list(generic_fields, k)) {
            return ms_set_error(error, MS_ERR_LOCATION40415,
                                "BSON field '%s.%s' is an unknown field.", c->name, k);
        }
    }
    return true;
}

static bool
parse_session_fields(ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it, child;
    if (bson_iter_init_find(&it, c->cmd, "lsid")) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &child) ||
            !bson_iter_find(&child, "id") || !BSON_ITER_HOLDS_BINARY(&child)) {
            return ms_set_error(error, MS_ERR_LOCATION40414,
                                "BSON field 'OperationSessionInfo.lsid.id' is "
                                "missing but a required field");
        }
        c->has_lsid = true;
        c->lsid_id = *bson_iter_value(&child);
    }
    if (bson_iter_init_find(&it, c->cmd, "txnNumber")) {
        if (!BSON_ITER_HOLDS_INT64(&it) && !BSON_ITER_HOLDS_INT32(&it)) {
            return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                "BSON field 'OperationSessionInfo.txnNumber' is the "
                                "wrong type, expected type 'long'");
        }
        c->has_txn_number = true;
        c->txn_number = bson_iter_as_int64(&it);
    }
    if (bson_iter_init_find(&it, c->cmd, "autocommit")) {
        if (!BSON_ITER_HOLDS_BOOL(&it) || bson_iter_bool(&it)) {
            return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                                "autocommit must be false when present");
        }
        c->in_txn = true;
    }
    if (bson_iter_init_find(&it, c->cmd, "startTransaction")) {
        if (!BSON_ITER_HOLDS_BOOL(&it) || !bson_iter_bool(&it)) {
            return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                                "startTransaction must be true when present");
        }
        c->start_txn = true;
    }
    if ((c->in_txn || c->start_txn) && !c->has_txn_number) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "'autocommit' and 'startTransaction' require a "
                            "txnNumber");
    }
    if (c->start_txn && !c->in_txn) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "'startTransaction' requires 'autocommit: false'");
    }
    if (c->has_txn_number && !c->has_lsid) {
        return ms_set_error(error, MS_ERR_LOCATION50768,
                            "Transaction number requires a session ID to also be "
                            "specified");
    }
    return true;
}

/* What a writeConcern asked for, beyond what ms_cmd_t keeps. */
typedef struct {
    bool has_w;    /* w given (else the default applies) */
    bool majority; /* w: "majority" */
    bool j;        /* j: true */
    bool fsync;    /* fsync: true, which a journaling mongod serves as j: true */
} wc_seen_t;

static bool
read_write_concern(ms_cmd_t *c, unsigned flags, wc_seen_t *seen, bson_error_t *error)
{
    bson_iter_t it, wc;
    if (!bson_iter_init_find(&it, c->cmd, "writeConcern")) {
        return true;
    }
    /* aggregate takes one whether or not it writes (a read-only pipeline does not wait for it:
     * jstests/core/aggregation_accepts_write_concern.js, replsets/aggregation_write_concern.js) */
    if (!(flags & MS_CMD_WC) && c->command->fn != ms_cmd_aggregate) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS, "Command does not support writeConcern");
    }
    if (c->in_txn && !(flags & MS_CMD_TXN_END)) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "Cannot set write concern after starting a transaction.");
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &wc)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'writeConcern' is the wrong type");
    }
    while (bson_iter_next(&wc)) {
        const char *k = bson_iter_key(&wc);
        if (strcmp(k, "j") == 0 || strcmp(k, "fsync") == 0) {
            bool on = ms_true_value(bson_iter_value(&wc));
            seen->j |= on && k[0] == 'j';
            seen->fsync |= on && k[0] == 'f';
        } else if (strcmp(k, "w") == 0) {
            seen->has_w = true;
            if (BSON_ITER_HOLDS_NUMBER(&wc)) {
                int64_t w = bson_iter_as_int64(&wc);
                if (w < 0 || w > 50) {
                    return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                        "w has to be a non-negative number and not "
                                        "greater than 50; found: %lld",
                                        (long long)w);
                }
                c->wc_unacknowledged = w == 0;
                if (w > 1) {
                    c->wc_error_code = MS_ERR_UNSATISFIABLE_WRITE_CONCERN;
                    snprintf(c->wc_error_msg, sizeof c->wc_error_msg,
                             "Not enough data-bearing nodes");
                }
            } else if (BSON_ITER_HOLDS_UTF8(&wc)) {
                const char *mode = bson_iter_utf8(&wc, NULL);
                seen->majority = strcmp(mode, "majority") == 0;
                if (!seen->majority) {
                    c->wc_error_code = MS_ERR_UNKNOWN_REPL_WRITE_CONCERN;
                    snprintf(c->wc_error_msg, sizeof c->wc_error_msg,
                             "No write concern mode named '%.60s' found in replica set "
                             "configuration", mode);
                }
            } else {
                return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                    "w has to be a number or string");
            }
        } else if (strcmp(k, "wtimeout") && strcmp(k, "wtimeoutMS") && strcmp(k, "provenance") &&
                   strcmp(k, "getLastError")) {
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                "unrecognized write concern field: %s", k);
        }
    }
    return true;
}

/*
 * Whether the command answers only once the journal holds its writes. mongod (write_concern.cpp,
 * extractWriteConcern and waitForWriteConcern): a replica set member applies the implicit
 * default {w: "majority"} when the command gives no w (a standalone: {w: 1}); j: true (or
 * fsync: true) waits for the journal; w: "majority" does too while
 * writeConcernMajorityJournalDefault is true, the default (its commit point follows the
 * durable optime); w: 1 with j unset does not. Statements inside a transaction take no write
 * concern: only its commit or abort waits.
 */
static bool
wants_journal(const ms_cmd_t *c, unsigned flags, const wc_seen_t *seen)
{
    if (!(flags & MS_CMD_WC) && !ms_agg_writes(c->cmd)) {
        return false;
    }
    if (c->in_txn && !(flags & MS_CMD_TXN_END)) {
        return false;
    }
    if (seen->j || seen->fsync) {
        return true;
    }
    return seen->has_w ? seen->majority : !ms_config.standalone;
}

static bool
parse_write_concern(ms_cmd_t *c, unsigned flags, bson_error_t *error)
{
    wc_seen_t seen = {0};
    if (!read_write_concern(c, flags, &seen, error)) {
        return false;
    }
    c->wc_journal = wants_journal(c, flags, &seen);
    return true;
}

static bool
parse_read_concern(ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it, rc;
    if (!bson_iter_init_find(&it, c->cmd, "readConcern")) {
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &rc)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'readConcern' is the wrong type");
    }
    if (c->in_txn && !c->start_txn) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "Only the first command in a transaction may specify a "
                            "readConcern");
    }
    while (bson_iter_next(&rc)) {
        const char *k = bson_iter_key(&rc);
        if (strcmp(k, "level") == 0) {
            const char *l = BSON_ITER_HOLDS_UTF8(&rc) ? bson_iter_utf8(&rc, NULL) : "";
            if (strcmp(l, "local") && strcmp(l, "majority") && strcmp(l, "available") &&
                strcmp(l, "linearizable") && strcmp(l, "snapshot")) {
                return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                    "BSON field 'readConcern.level' has an invalid "
                                    "value '%s'",
                                    l);
            }
        } else if (strcmp(k, "afterClusterTime") && strcmp(k, "atClusterTime") &&
                   strcmp(k, "provenance") && strcmp(k, "afterOpTime")) {
            return ms_set_error(error, MS_ERR_LOCATION40415,
                                "BSON field 'readConcern.%s' is an unknown field.", k);
        }
    }
    return true;
}

static bool
parse_api_version(ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, c->cmd, "apiVersion") &&
        (!BSON_ITER_HOLDS_UTF8(&it) || strcmp(bson_iter_utf8(&it, NULL), "1") != 0)) {
        return ms_set_error(error, MS_ERR_API_VERSION_ERROR, "API version must be \"1\"");
    }
    return true;
}

bool
ms_parse_generic_args(ms_cmd_t *c, unsigned flags, bson_error_t *error)
{
    return parse_session_fields(c, error) && parse_write_concern(c, flags, error) &&
           parse_read_concern(c, error) && parse_api_version(c, error);
}

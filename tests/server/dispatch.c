/*
 * Command dispatch: finds the command (commands.c's table), applies the failCommand fail point,
 * checks the generic arguments (generic_args.c), handles sessions, retryable writes and
 * transactions under the storage lock, and shapes the reply ({ok, errmsg, code, codeName,
 * errorLabels, writeConcernError, $clusterTime, operationTime}).
 */
#include "crud-private.h"
#include "store-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
ms_append_error(bson_t *reply, const bson_error_t *error)
{
    int code = ms_error_code(error);
    BSON_APPEND_DOUBLE(reply, "ok", 0.0);
    BSON_APPEND_UTF8(reply, "errmsg", error->message);
    BSON_APPEND_INT32(reply, "code", code);
    BSON_APPEND_UTF8(reply, "codeName", ms_code_name(code));
}

bool
ms_code_is_retryable(int code)
{
    static const int codes[] = {MS_ERR_HOST_UNREACHABLE,
                                MS_ERR_HOST_NOT_FOUND,
                                MS_ERR_NETWORK_TIMEOUT,
                                MS_ERR_SHUTDOWN_IN_PROGRESS,
                                MS_ERR_READ_CONCERN_MAJORITY_NOT_AVAILABLE_YET,
                                MS_ERR_PRIMARY_STEPPED_DOWN,
                                MS_ERR_EXCEEDED_TIME_LIMIT,
                                MS_ERR_SOCKET_EXCEPTION,
                                MS_ERR_NOT_WRITABLE_PRIMARY,
                                MS_ERR_INTERRUPTED_AT_SHUTDOWN,
                                MS_ERR_INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
                                MS_ERR_NOT_PRIMARY_NO_SECONDARY_OK,
                                MS_ERR_NOT_PRIMARY_OR_SECONDARY};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (codes[i] == code) {
            return true;
        }
    }
    return false;
}

static bool
is_transient_txn_error(int code, bool txn_end, bool has_wce)
{
    if (code == MS_ERR_WRITE_CONFLICT || code == MS_ERR_LOCK_TIMEOUT ||
        code == MS_ERR_SNAPSHOT_TOO_OLD || code == MS_ERR_SNAPSHOT_UNAVAILABLE) {
        return true;
    }
    return code == MS_ERR_NO_SUCH_TRANSACTION && !(txn_end && has_wce);
}

/* ---- running ------------------------------------------------------------------------------ */

static void
append_cluster_time(bson_t *reply)
{
    if (ms_config.standalone) {
        return;
    }
    ms_optime_t t = ms_oplog_last_optime();
    bson_t ct, sig;
    uint8_t zeros[20] = {0};
    BSON_APPEND_DOCUMENT_BEGIN(reply, "$clusterTime", &ct);
    BSON_APPEND_TIMESTAMP(&ct, "clusterTime", t.t, t.i);
    BSON_APPEND_DOCUMENT_BEGIN(&ct, "signature", &sig);
    BSON_APPEND_BINARY(&sig, "hash", BSON_SUBTYPE_BINARY, zeros, sizeof zeros);
    BSON_APPEND_INT64(&sig, "keyId", 0);
    bson_append_document_end(&ct, &sig);
    bson_append_document_end(reply, &ct);
    BSON_APPEND_TIMESTAMP(reply, "operationTime", t.t, t.i);
}

static void
sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

typedef struct {
    const ms_command_t *def;
    ms_failpoint_hit_t hit;
    bool fp;
    int error_code;
    bool has_wce_code;
    int wce_code;
} run_state_t;

static bool
session_checks(ms_cmd_t *c, const ms_command_t *def, bson_error_t *error)
{
    if (c->has_txn_number && ms_config.standalone) {
        return ms_set_error(error, MS_ERR_ILLEGAL_OPERATION,
                            "Transaction numbers are only allowed on a replica set "
                            "member or mongos");
    }
    if (c->in_txn && !(def->flags & MS_CMD_IN_TXN)) {
        return ms_set_error(error, MS_ERR_OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
                            "Cannot run '%s' in a multi-document transaction.", c->name);
    }
    if (c->has_txn_number && !c->in_txn && !(def->flags & MS_CMD_RETRYABLE)) {
        return ms_set_error(error, MS_ERR_LOCATION50768,
                            "txnNumber may only be provided for multi-document "
                            "transactions and retryable write commands. autocommit:false was not "
                            "provided, and %s is not a retryable write command.",
                            c->name);
    }
    return true;
}

/* A change stream must not hold the storage lock: it takes it briefly itself. */
static bool
needs_lock(const ms_cmd_t *c, const ms_command_t *def)
{
    bson_iter_t it, stages, stage;
    if (!(def->flags & MS_CMD_LOCK)) {
        return false;
    }
    if (def->fn != ms_cmd_aggregate) {
        return true;
    }
    if (bson_iter_init_find(&it, c->cmd, "pipeline") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &stages) && bson_iter_next(&stages) &&
        BSON_ITER_HOLDS_DOCUMENT(&stages) && bson_iter_recurse(&stages, &stage) &&
        bson_iter_next(&stage) && strcmp(bson_iter_key(&stage), "$changeStream") == 0) {
        return false;
    }
    return true;
}

/* Runs the handler with locking and session bookkeeping; body receives the handler's fields. */
static bool
run_handler(ms_cmd_t *c, const ms_command_t *def, bson_t *body, bson_error_t *error)
{
    bool ok = false;
    bool locked = false;
    bool replayed = false;
    if (!session_checks(c, def, error)) {
        return false;
    }
    if (needs_lock(c, def)) {
        ms_store_lock();
        locked = true;
    }
    if ((def->flags & MS_CMD_SESSION) && locked) {
        if (!ms_session_begin(c, &replayed, body, error)) {
            goto done;
        }
    }
    if (replayed) {
        ok = true;
        goto done;
    }
    ok = (!locked || ms_view_refuse(c, error)) && def->fn(c, body, error);
    ms_view_release(c);
    if ((def->flags & MS_CMD_SESSION) && locked) {
        ms_session_end(c, ok, body);
    }
done:
    if (locked) {
        ms_store_unlock();
    }
    return ok;
}

/*
 * mongod's ResumableChangeStreamError rule (error_labels.cpp): an aggregate or getMore of a
 * change stream failing with a retriable, network or retargeting error, RetryChangeStream or
 * FailedToSatisfyReadPreference, without a write concern error. A getMore only knows its cursor
 * once checked out: when failCommand stops it before that, there is no label.
 */
static bool
is_resumable_change_stream_error(const ms_cmd_t *c, const run_state_t *st, int code)
{
    static const int codes[] = {MS_ERR_HOST_UNREACHABLE,
                                MS_ERR_HOST_NOT_FOUND,
                                MS_ERR_OBSOLETE_STALE_SHARD_VERSION,
                                MS_ERR_NETWORK_TIMEOUT,
                                MS_ERR_SHUTDOWN_IN_PROGRESS,
                                MS_ERR_FAILED_TO_SATISFY_READ_PREFERENCE,
                                MS_ERR_READ_CONCERN_MAJORITY_NOT_AVAILABLE_YET,
                                MS_ERR_STALE_EPOCH,
                                MS_ERR_PRIMARY_STEPPED_DOWN,
                                MS_ERR_RETRY_CHANGE_STREAM,
                                MS_ERR_EXCEEDED_TIME_LIMIT,
                                MS_ERR_CONNECTION_POOL_EXPIRED,
                                MS_ERR_SOCKET_EXCEPTION,
                                MS_ERR_NOT_WRITABLE_PRIMARY,
                                MS_ERR_INTERRUPTED_AT_SHUTDOWN,
                                MS_ERR_INTERRUPTED_DUE_TO_REPL_STATE_CHANGE,
                                MS_ERR_STALE_CONFIG,
                                MS_ERR_NOT_PRIMARY_NO_SECONDARY_OK,
                                MS_ERR_NOT_PRIMARY_OR_SECONDARY};
    bool is_stream = (st->def->fn == ms_cmd_aggregate && !needs_lock(c, st->def)) ||
                     (st->def->fn == ms_cmd_get_more && c->change_stream_cursor);
    if (!is_stream || st->has_wce_code) {
        return false;
    }
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (codes[i] == code) {
            return true;
        }
    }
    return false;
}

/* Change stream errors no resume can get past (mongod's NonResumableChangeStreamError). */
static bool
is_non_resumable_change_stream_error(int code)
{
    return code == MS_ERR_CHANGE_STREAM_FATAL_ERROR || code == MS_ERR_CHANGE_STREAM_HISTORY_LOST;
}

static void
append_labels(bson_t *reply, const ms_cmd_t *c, const run_state_t *st, int code)
{
    bson_t labels;
    int n = 0;
    if (st->fp && st->hit.has_labels) {
        /* failCommand's errorLabels replace every label; an empty list means none at all. */
        if (!bson_empty(&st->hit.error_labels)) {
            BSON_APPEND_ARRAY(reply, "errorLabels", &st->hit.error_labels);
        }
        return;
    }
    bool txn_end = (st->def->flags & MS_CMD_TXN_END) != 0;
    bool transient = code && c->has_txn_number && c->in_txn &&
                     is_transient_txn_error(code, txn_end, st->has_wce_code);
    bool retryable_ctx = c->has_txn_number &&
                         ((!c->in_txn && (st->def->flags & MS_CMD_RETRYABLE)) || (c->in_txn && txn_end));
    bool retryable = retryable_ctx && ((code && ms_code_is_retryable(code)) ||
                                       (st->has_wce_code && ms_code_is_retryable(st->wce_code)));
    /* Change streams run neither in a transaction nor as a retryable write. */
    const char *stream_label = NULL;
    if (!transient && !retryable && code) {
        stream_label = is_resumable_change_stream_error(c, st, code) ? "ResumableChangeStreamError"
                       : is_non_resumable_change_stream_error(code) ? "NonResumableChangeStreamError"
                                                                     : NULL;
    }
    if (!transient && !retryable && !stream_label) {
        return;
    }
    BSON_APPEND_ARRAY_BEGIN(reply, "errorLabels", &labels);
    if (transient) {
        BSON_APPEND_UTF8(&labels, "0", "TransientTransactionError");
        n++;
    }
    if (retryable) {
        BSON_APPEND_UTF8(&labels, n ? "1" : "0", "RetryableWriteError");
    }
    if (stream_label) {
        BSON_APPEND_UTF8(&labels, "0", stream_label);
    }
    bson_append_array_end(reply, &labels);
}

static void
append_wce(bson_t *reply, const ms_cmd_t *c, run_state_t *st)
{
    if (st->fp && st->hit.has_wce) {
        bson_iter_t it;
        BSON_APPEND_DOCUMENT(reply, "writeConcernError", &st->hit.write_concern_error);
        if (bson_iter_init_find(&it, &st->hit.write_concern_error, "code")) {
            st->has_wce_code = true;
            st->wce_code = (int)bson_iter_as_int64(&it);
        }
        return;
    }
    if (c->wc_error_code) {
        bson_t wce;
        BSON_APPEND_DOCUMENT_BEGIN(reply, "writeConcernError", &wce);
        BSON_APPEND_INT32(&wce, "code", c->wc_error_code);
        BSON_APPEND_UTF8(&wce, "codeName", ms_code_name(c->wc_error_code));
        BSON_APPEND_UTF8(&wce, "errmsg", c->wc_error_msg);
        bson_append_document_end(reply, &wce);
        st->has_wce_code = true;
        st->wce_code = c->wc_error_code;
    }
}

static bool
prepare(ms_cmd_t *c, ms_request_t *req, const ms_command_t **def_out, bson_error_t *error)
{
    bson_iter_t it;
    const char *name = bson_iter_init(&it, &req->cmd) && bson_iter_next(&it) ? bson_iter_key(&it)
                                                                            : "";
    const ms_command_t *def = ms_command_find(name);
    *def_out = def;
    c->command = def;
    c->name = def ? def->name : name;
    if (req->opcode == 2004) {
        c->db = req->query_db;
    } else if (bson_iter_init_find(&it, &req->cmd, "$db") && BSON_ITER_HOLDS_UTF8(&it)) {
        c->db = bson_iter_utf8(&it, NULL);
    } else {
        return ms_set_error(error, MS_ERR_LOCATION40571, "OP_MSG requests require a $db argument");
    }
    if (!def) {
        return ms_set_error(error, MS_ERR_COMMAND_NOT_FOUND, "no such command: '%s'", name);
    }
    if (req->opcode == 2004 && !(def->flags & MS_CMD_HANDSHAKE)) {
        return ms_set_error(error, MS_ERR_UNSUPPORTED_OP_QUERY_COMMAND,
                            "Unsupported OP_QUERY command: %s. The client driver "
                            "may require an upgrade.",
                            name);
    }
    if ((def->flags & MS_CMD_ADMIN) && strcmp(c->db, "admin") != 0) {
        return ms_set_error(error, MS_ERR_UNAUTHORIZED,
                            "%s may only be run against the admin database.", name);
    }
    return ms_parse_generic_args(c, def->flags, error);
}

/*
 * A write concern asking for the journal (generic_args.c) is served after the command, outside
 * the storage lock, as mongod's waitForWriteConcern: also when the command failed, since it may
 * have written before failing. A failed sync is a writeConcernError (mongod would stop).
 */
static void
wait_for_journal(ms_cmd_t *c)
{
    bson_error_t error;
    if (!c->wc_journal || ms_journal_wait_durable(&error)) {
        return;
    }
    ms_log("journal: %s", error.message);
    if (!c->wc_error_code) {
        c->wc_error_code = MS_ERR_WRITE_CONCERN_FAILED;
        snprintf(c->wc_error_msg, sizeof c->wc_error_msg, "%.120s", error.message);
    }
}

/* failCommand: true when the command must not run (closed or failed). */
static bool
apply_fail_point(ms_cmd_t *c, const char *raw_name, run_state_t *st, bson_error_t *error,
                 bool *close_conn)
{
    st->fp = ms_failpoint_check(MS_FP_FAIL_COMMAND, st->def, c->conn, NULL, &st->hit);
    if (!st->fp) {
        return false;
    }
    if (st->hit.block_ms > 0) {
        sleep_ms(st->hit.block_ms);
    }
    if (st->hit.close_connection) {
        ms_log("conn%lld: failCommand closes the connection on '%s'", (long long)c->conn->id,
               raw_name);
        *close_conn = true;
        return true;
    }
    if (st->hit.error_code) {
        ms_set_error(error, st->hit.error_code, "Failing command via 'failCommand' failpoint");
        return true;
    }
    return false;
}

/* MONGOQ_TEST_SERVER_TRACE=1 logs every command and reply (debugging aid). Read once, by
 * whichever connection thread comes first; pthread_once orders it before every later read. */
static pthread_once_t trace_once = PTHREAD_ONCE_INIT;
static bool trace_enabled;

static void
trace_init(void)
{
    const char *v = getenv("MONGOQ_TEST_SERVER_TRACE");
    trace_enabled = v && *v && strcmp(v, "0") != 0;
}

static void
trace(const bson_t *cmd, const bson_t *reply)
{
    pthread_once(&trace_once, trace_init);
    if (!trace_enabled) {
        return;
    }
    char *a = bson_as_relaxed_extended_json(cmd, NULL);
    char *b = bson_as_relaxed_extended_json(reply, NULL);
    ms_log("cmd %.1500s", a ? a : "?");
    ms_log("reply %.1500s", b ? b : "?");
    bson_free(a);
    bson_free(b);
}

void
ms_dispatch(ms_conn_t *conn, ms_request_t *req, bson_t *reply, bool *close_conn)
{
    ms_cmd_t c;
    run_state_t st;
    bson_error_t error = {0};
    bson_t body = BSON_INITIALIZER;
    bool ok = false;
    memset(&c, 0, sizeof c);
    memset(&st, 0, sizeof st);
    c.conn = conn;
    c.cmd = &req->cmd;
    c.lang.now_ms = ms_now_ms();
    ms_cluster_time_gossip(&req->cmd);
    ms_optime_t t = ms_oplog_last_optime();
    c.lang.cluster_time_t = t.t;
    c.lang.cluster_time_i = t.i;
    bson_init(reply);
    bson_iter_t it;
    const char *raw_name = bson_iter_init(&it, &req->cmd) && bson_iter_next(&it)
                               ? bson_iter_key(&it)
                               : "";
    bool prepared = prepare(&c, req, &st.def, &error);
    if (prepared && apply_fail_point(&c, raw_name, &st, &error, close_conn)) {
        goto reply;
    }
    if (prepared) {
        ok = ms_deadline_begin(&c, &error) && run_handler(&c, st.def, &body, &error);
        ms_deadline_end();
        wait_for_journal(&c);
    }
    if (c.close_connection) {
        *close_conn = true;
    }
reply:
    if (ok) {
        bson_concat(reply, &body);
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
        if ((st.def->flags & MS_CMD_WC) ||
            (st.def->fn == ms_cmd_aggregate && ms_agg_writes(c.cmd))) {
            append_wce(reply, &c, &st);
        }
        if (st.has_wce_code || (st.fp && st.hit.has_labels)) {
            append_labels(reply, &c, &st, 0);
        }
    } else {
        int code = ms_error_code(&error);
        ms_append_error(reply, &error);
        if (ms_error_has_info(code)) {
            bson_concat(reply, ms_error_info());
        }
        if (st.def) {
            append_labels(reply, &c, &st, code);
        }
    }
    append_cluster_time(reply);
    trace(&req->cmd, reply);
    if (st.fp) {
        ms_failpoint_hit_destroy(&st.hit);
    }
    bson_destroy(&body);
    ms_error_info_reset();
}

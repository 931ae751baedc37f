/*
 * Fail points, as mongod with enableTestCommands, from a registry (failpoints[]: a row per fail
 * point with the command it applies to, what firing does, and its state); configureFailPoint
 * sets modes alwaysOn, off, {times: N}, {skip: N} and data, and ms_failpoint_check fires them
 * where mongod would. Command names and aliases come from the command table (commands.c).
 *
 * failCommand: data failCommands (any name of a command) or failAllCommands, errorCode,
 * errorLabels, closeConnection, blockConnection + blockTimeMS, writeConcernError, appName; fired
 * by dispatch.c before the command runs.
 *
 * failGetMoreAfterCursorCheckout: fails a getMore with data.errorCode (default InternalError)
 * once the cursor is checked out (cursor.c), so mongod kills the cursor and labels the error as
 * it would a real one; appName and namespace as failCommand. Drivers' change stream tests use
 * it because failCommand fires before the command runs: no cursor is touched and no
 * ResumableChangeStreamError label is computed.
 *
 * maxTimeAlwaysTimeOut: a command with maxTimeMS fails with MaxTimeMSExpired (deadline.c).
 * hangDuringBatchInsert: an insert statement pauses while it is set (write.c). waitForFailPoint
 * waits until a fail point has been entered a number of times (failpoint_test_cmds.cpp).
 *
 * onPrimaryTransactionalWrite: fired by write.c for each document a retryable write (outside a
 * transaction) writes on the primary, as mongod's TransactionParticipant fires it once the write
 * is logged and before it commits. data.closeConnection (default true) closes the connection
 * once the command has finished (the write commits and its result is recorded, so a retry gets
 * it); data.failBeforeCommitExceptionCode fails that statement with the code, the write not made.
 */
#include "server-private.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef enum { MODE_OFF, MODE_ALWAYS, MODE_TIMES, MODE_SKIP } mode_t_;

/* One fail point: what it applies to, what it does when it fires, and its state (fp_mu). */
typedef struct {
    const char *name;
    const char *command; /* the one command it applies to (any of its names); NULL: the
                            commands data.failCommands names, or all with failAllCommands */
    const char *exempt;  /* a command it never applies to (NULL: none) */
    void (*fill)(const bson_t *data, ms_failpoint_hit_t *hit); /* what firing does */
    mode_t_ mode;
    int64_t times; /* remaining activations (MODE_TIMES) */
    int64_t skip;  /* activations still to skip (MODE_SKIP) */
    int64_t count; /* times entered */
    bson_t data;
} failpoint_t;

static void
fill_fail_command(const bson_t *data, ms_failpoint_hit_t *hit);
static void
fill_error_code(const bson_t *data, ms_failpoint_hit_t *hit);
static void
fill_transactional_write(const bson_t *data, ms_failpoint_hit_t *hit);
static void
fill_nothing(const bson_t *data, ms_failpoint_hit_t *hit);

static pthread_mutex_t fp_mu = PTHREAD_MUTEX_INITIALIZER;

/* The registry, one row per fail point (ids in server-private.h). */
static failpoint_t failpoints[MS_FP_COUNT] = {
    /* mongod bans configureFailPoint from failCommand even when listed */
    [MS_FP_FAIL_COMMAND] = {.name = "failCommand",
                            .exempt = "configureFailPoint",
                            .fill = fill_fail_command,
                            .data = BSON_INITIALIZER},
    /* evaluated by mongod as failCommand with failCommands: ["getMore"] on the cursor's ns */
    [MS_FP_FAIL_GET_MORE_AFTER_CURSOR_CHECKOUT] = {.name = "failGetMoreAfterCursorCheckout",
                                                   .command = "getMore",
                                                   .fill = fill_error_code,
                                                   .data = BSON_INITIALIZER},
    /* transaction_participant.cpp: any retryable write; no failCommands, appName or namespace */
    [MS_FP_ON_PRIMARY_TRANSACTIONAL_WRITE] = {.name = "onPrimaryTransactionalWrite",
                                              .command = "",
                                              .fill = fill_transactional_write,
                                              .data = BSON_INITIALIZER},
    /* operation_context.cpp: an operation with a deadline fails its interrupt checks with
     * MaxTimeMSExpired (deadline.c) */
    [MS_FP_MAX_TIME_ALWAYS_TIME_OUT] = {.name = "maxTimeAlwaysTimeOut",
                                        .command = "",
                                        .fill = fill_nothing,
                                        .data = BSON_INITIALIZER},
    /* write_ops_exec.cpp: an insert pauses while it is set (write.c), its session checked out
     * (here: holding the storage lock, so every other locked command waits too) */
    [MS_FP_HANG_DURING_BATCH_INSERT] = {.name = "hangDuringBatchInsert",
                                        .command = "",
                                        .fill = fill_nothing,
                                        .data = BSON_INITIALIZER},
};

/* data.failCommands names cmd by its name or an alias (mongod's Command::hasAlias). */
static bool
listed(const bson_t *data, const ms_command_t *cmd)
{
    bson_iter_t it, child;
    if (!bson_iter_init_find(&it, data, "failCommands") || !bson_iter_recurse(&it, &child)) {
        return false;
    }
    while (bson_iter_next(&child)) {
        if (BSON_ITER_HOLDS_UTF8(&child) &&
            ms_command_has_alias(cmd, bson_iter_utf8(&child, NULL))) {
            return true;
        }
    }
    return false;
}

/* data.appName and data.namespace (ns NULL: not known before the command runs, not checked). */
static bool
client_matches(const bson_t *data, const ms_conn_t *conn, const char *ns)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, data, "appName") &&
        (!BSON_ITER_HOLDS_UTF8(&it) || strcmp(bson_iter_utf8(&it, NULL), conn->appname) != 0)) {
        return false;
    }
    return !ns || !bson_iter_init_find(&it, data, "namespace") ||
           (BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), ns) == 0);
}

static bool
applies(const failpoint_t *fp, const ms_command_t *cmd, const ms_conn_t *conn, const char *ns)
{
    bson_iter_t it;
    if (fp->exempt && ms_command_has_alias(cmd, fp->exempt)) {
        return false;
    }
    if (!client_matches(&fp->data, conn, ns)) {
        return false;
    }
    if (fp->command) {
        return !fp->command[0] || ms_command_has_alias(cmd, fp->command);
    }
    if (bson_iter_init_find(&it, &fp->data, "failAllCommands") && bson_iter_as_bool(&it)) {
        return true;
    }
    return listed(&fp->data, cmd);
}

/* A document or array field of data copied straight into place (a copied bson_t may point
 * into itself: no struct assignment). */
static bool
copy_field(const bson_t *data, const char *field, bool array, bson_t *out)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *d;
    bson_t view;
    if (!bson_iter_init_find(&it, data, field) ||
        !(array ? BSON_ITER_HOLDS_ARRAY(&it) : BSON_ITER_HOLDS_DOCUMENT(&it))) {
        return false;
    }
    if (array) {
        bson_iter_array(&it, &len, &d);
    } else {
        bson_iter_document(&it, &len, &d);
    }
    bson_init_static(&view, d, len);
    bson_copy_to(&view, out);
    return true;
}

/* failCommand: errorCode, errorLabels, closeConnection, blockConnection + blockTimeMS,
 * writeConcernError. */
static void
fill_fail_command(const bson_t *data, ms_failpoint_hit_t *hit)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, data, "closeConnection")) {
        hit->close_connection = bson_iter_as_bool(&it);
    }
    if (bson_iter_init_find(&it, data, "blockConnection") && bson_iter_as_bool(&it) &&
        bson_iter_init_find(&it, data, "blockTimeMS")) {
        hit->block_ms = bson_iter_as_int64(&it);
    }
    if (bson_iter_init_find(&it, data, "errorCode") && BSON_ITER_HOLDS_NUMBER(&it)) {
        hit->error_code = (int)bson_iter_as_int64(&it);
    }
    hit->has_labels = copy_field(data, "errorLabels", true, &hit->error_labels);
    hit->has_wce = copy_field(data, "writeConcernError", false, &hit->write_concern_error);
}

/* Fails with data.errorCode, InternalError when none. */
static void
fill_error_code(const bson_t *data, ms_failpoint_hit_t *hit)
{
    bson_iter_t it;
    hit->error_code = MS_ERR_INTERNAL_ERROR;
    if (bson_iter_init_find(&it, data, "errorCode") && BSON_ITER_HOLDS_NUMBER(&it)) {
        hit->error_code = (int)bson_iter_as_int64(&it);
    }
}

/* closeConnection (default true) and failBeforeCommitExceptionCode. */
static void
fill_transactional_write(const bson_t *data, ms_failpoint_hit_t *hit)
{
    bson_iter_t it;
    hit->close_connection = !bson_iter_init_find(&it, data, "closeConnection") ||
                            bson_iter_as_bool(&it);
    if (bson_iter_init_find(&it, data, "failBeforeCommitExceptionCode") &&
        BSON_ITER_HOLDS_NUMBER(&it)) {
        hit->error_code = (int)bson_iter_as_int64(&it);
    }
}

/* A fail point whose firing is the whole effect (maxTimeAlwaysTimeOut, the hangs). */
static void
fill_nothing(const bson_t *data, ms_failpoint_hit_t *hit)
{
    (void)data;
    (void)hit;
}

/* Counts an activation that applies (caller holds fp_mu); false while still skipping. */
static bool
activate(failpoint_t *fp)
{
    if (fp->mode == MODE_SKIP && fp->skip > 0) {
        fp->skip--;
        return false;
    }
    fp->count++;
    if (fp->mode == MODE_TIMES && --fp->times <= 0) {
        fp->mode = MODE_OFF;
    }
    return true;
}

bool
ms_failpoint_check(ms_failpoint_id_t id, const ms_command_t *cmd, const ms_conn_t *conn,
                   const char *ns, ms_failpoint_hit_t *hit)
{
    bool fire = false;
    failpoint_t *fp = &failpoints[id];
    memset(hit, 0, sizeof *hit);
    pthread_mutex_lock(&fp_mu);
    if (fp->mode != MODE_OFF && applies(fp, cmd, conn, ns) && activate(fp)) {
        fp->fill(&fp->data, hit);
        fire = true;
    }
    pthread_mutex_unlock(&fp_mu);
    return fire;
}

bool
ms_failpoint_is_on(ms_failpoint_id_t id)
{
    pthread_mutex_lock(&fp_mu);
    bool on = failpoints[id].mode != MODE_OFF;
    pthread_mutex_unlock(&fp_mu);
    return on;
}

void
ms_failpoint_hit_destroy(ms_failpoint_hit_t *hit)
{
    if (hit->has_labels) {
        bson_destroy(&hit->error_labels);
    }
    if (hit->has_wce) {
        bson_destroy(&hit->write_concern_error);
    }
    memset(hit, 0, sizeof *hit);
}

static bool
parse_mode(const bson_iter_t *it, mode_t_ *mode, int64_t *n, bson_error_t *error)
{
    bson_iter_t child;
    if (BSON_ITER_HOLDS_UTF8(it)) {
        const char *s = bson_iter_utf8(it, NULL);
        if (strcmp(s, "alwaysOn") == 0) {
            *mode = MODE_ALWAYS;
        } else if (strcmp(s, "off") == 0) {
            *mode = MODE_OFF;
        } else {
            return ms_set_error(error, MS_ERR_BAD_VALUE, "unknown mode: %s", s);
        }
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &child) ||
        !bson_iter_next(&child)) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "'mode' must be a string or JSON object");
    }
    const char *k = bson_iter_key(&child);
    if (!BSON_ITER_HOLDS_NUMBER(&child) || bson_iter_as_int64(&child) < 0) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "'%s' must be a non-negative number", k);
    }
    *n = bson_iter_as_int64(&child);
    if (strcmp(k, "times") == 0) {
        *mode = *n > 0 ? MODE_TIMES : MODE_OFF;
    } else if (strcmp(k, "skip") == 0) {
        *mode = MODE_SKIP;
    } else if (strcmp(k, "activationProbability") == 0) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "activationProbability is not supported by "
                            "mongoq-test-server");
    } else {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "'mode' must be one of 'off', 'alwaysOn', 'times', and "
                            "'activationProbability'");
    }
    return true;
}

static failpoint_t *
find_failpoint(const char *name)
{
    for (size_t i = 0; i < MS_FP_COUNT; i++) {
        if (strcmp(failpoints[i].name, name) == 0) {
            return &failpoints[i];
        }
    }
    return NULL;
}

/* "a, b and c": the registry's names, for the message refusing any other. */
static const char *
registry_names(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < MS_FP_COUNT && used < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == MS_FP_COUNT ? " and " : ", ";
        used += (size_t)snprintf(buf + used, len - used, "%s%s", sep, failpoints[i].name);
    }
    return buf;
}

MS_HANDLER(configure_fail_point)
{
    static const char *const allowed[] = {"mode", "data", NULL};
    bson_iter_t it;
    mode_t_ mode = MODE_OFF;
    int64_t n = 0;
    if (!ms_check_fields(c, allowed, error)) {
        return false;
    }
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "configureFailPoint takes a fail point name");
    }
    const char *name = bson_iter_utf8(&it, NULL);
    failpoint_t *fp = find_failpoint(name);
    if (!fp) {
        char names[256];
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "Cannot find failPoint named '%s' (mongoq-test-server "
                            "implements %s)",
                            name, registry_names(names, sizeof names));
    }
    if (!bson_iter_init_find(&it, c->cmd, "mode")) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE, "Missing mode argument");
    }
    if (!parse_mode(&it, &mode, &n, error)) {
        return false;
    }
    bson_t data = BSON_INITIALIZER;
    if (bson_iter_init_find(&it, c->cmd, "data")) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_destroy(&data);
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                "the 'data' field must be a document");
        }
        uint32_t len;
        const uint8_t *d;
        bson_iter_document(&it, &len, &d);
        bson_t view;
        bson_init_static(&view, d, len);
        bson_concat(&data, &view);
    }
    pthread_mutex_lock(&fp_mu);
    BSON_APPEND_INT64(reply, "count", fp->count);
    bson_destroy(&fp->data);
    bson_steal(&fp->data, &data);
    fp->mode = mode;
    fp->times = mode == MODE_TIMES ? n : 0;
    fp->skip = mode == MODE_SKIP ? n : 0;
    bson_iter_init_find(&it, c->cmd, "mode");
    bson_append_iter(reply, "mode", 4, &it);
    BSON_APPEND_DOCUMENT(reply, "data", &fp->data);
    pthread_mutex_unlock(&fp_mu);
    return true;
}

/* Sleeps ms milliseconds (short waits of the bounded polls below). */
static void
nap_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* hangDuringBatchInsert: pauses while the fail point is set, as mongod's pauseWhileSet (entered
 * once); bounded at 10 minutes so a forgotten fail point cannot hang the server for good. */
void
ms_failpoint_pause_while_set(ms_failpoint_id_t id, const ms_command_t *cmd, const ms_conn_t *conn)
{
    ms_failpoint_hit_t hit;
    if (!ms_failpoint_check(id, cmd, conn, NULL, &hit)) {
        return;
    }
    ms_failpoint_hit_destroy(&hit);
    for (int i = 0; i < 60000 && ms_failpoint_is_on(id); i++) {
        nap_ms(10);
    }
}

/* {waitForFailPoint: name, timesEntered: n, maxTimeMS: ms} (mongod 4.4+): waits until the fail
 * point has been entered n times in all, or fails with MaxTimeMSExpired. */
MS_HANDLER(wait_for_fail_point)
{
    static const char *const allowed[] = {"timesEntered", "maxTimeMS", NULL};
    bson_iter_t it;
    (void)reply;
    if (!ms_check_fields(c, allowed, error)) {
        return false;
    }
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    failpoint_t *fp = BSON_ITER_HOLDS_UTF8(&it) ? find_failpoint(bson_iter_utf8(&it, NULL)) : NULL;
    if (!fp) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "Failpoint not found");
    }
    if (!bson_iter_init_find(&it, c->cmd, "timesEntered") || !BSON_ITER_HOLDS_NUMBER(&it)) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'waitForFailPoint.timesEntered' is missing but a "
                            "required field");
    }
    int64_t want = bson_iter_as_int64(&it);
    if (!bson_iter_init_find(&it, c->cmd, "maxTimeMS") || !BSON_ITER_HOLDS_NUMBER(&it)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "maxTimeMS must be specified for waitForFailPoint");
    }
    int64_t deadline = ms_mono_ms() + bson_iter_as_int64(&it);
    for (;;) {
        pthread_mutex_lock(&fp_mu);
        bool reached = fp->count >= want;
        pthread_mutex_unlock(&fp_mu);
        if (reached) {
            return true;
        }
        if (ms_mono_ms() >= deadline) {
            return ms_set_error(error, MS_ERR_MAX_TIME_MS_EXPIRED, "operation exceeded time limit");
        }
        nap_ms(5);
    }
}

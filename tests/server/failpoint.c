/*
 * The failCommand fail point, as mongod with enableTestCommands: modes alwaysOn, off,
 * {times: N}, {skip: N}; data failCommands, errorCode, errorLabels, closeConnection,
 * blockConnection + blockTimeMS, writeConcernError, appName, namespace.
 *
 * And failGetMoreAfterCursorCheckout (same modes): fails a getMore with data.errorCode (default
 * InternalError) once the cursor is checked out, so mongod kills the cursor and labels the error
 * as it would a real one. Drivers' change stream tests use it because failCommand fires before
 * the command runs: no cursor is touched and no ResumableChangeStreamError label is computed.
 */
#include "server-private.h"

#include <string.h>

typedef enum { MODE_OFF, MODE_ALWAYS, MODE_TIMES, MODE_SKIP } mode_t_;

typedef struct {
    const char *name;
    mode_t_ mode;
    int64_t times; /* remaining activations (MODE_TIMES) */
    int64_t skip;  /* activations still to skip (MODE_SKIP) */
    int64_t count; /* times entered */
    bson_t data;
} failpoint_t;

static pthread_mutex_t fp_mu = PTHREAD_MUTEX_INITIALIZER;
static failpoint_t fail_command = {"failCommand", MODE_OFF, 0, 0, 0, BSON_INITIALIZER};
static failpoint_t fail_get_more = {"failGetMoreAfterCursorCheckout", MODE_OFF, 0, 0, 0,
                                    BSON_INITIALIZER};

static bool
listed(const bson_t *data, const char *name, const char *raw)
{
    bson_iter_t it, child;
    if (!bson_iter_init_find(&it, data, "failCommands") || !bson_iter_recurse(&it, &child)) {
        return false;
    }
    while (bson_iter_next(&child)) {
        if (!BSON_ITER_HOLDS_UTF8(&child)) {
            continue;
        }
        const char *s = bson_iter_utf8(&child, NULL);
        /* mongod matches any alias of the command (hello ~ isMaster ~ ismaster). */
        if (strcmp(s, name) == 0 || strcmp(s, raw) == 0 ||
            (strcmp(name, "hello") == 0 &&
             (strcmp(s, "isMaster") == 0 || strcmp(s, "ismaster") == 0)) ||
            (strcmp(name, "findAndModify") == 0 && strcmp(s, "findandmodify") == 0)) {
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
applies(const bson_t *data, const char *name, const char *raw, const ms_conn_t *conn)
{
    bson_iter_t it;
    if (!client_matches(data, conn, NULL)) {
        return false;
    }
    if (bson_iter_init_find(&it, data, "failAllCommands") && bson_iter_as_bool(&it)) {
        return true;
    }
    return listed(data, name, raw);
}

static void
fill_hit(const bson_t *data, ms_failpoint_hit_t *hit)
{
    bson_iter_t it;
    memset(hit, 0, sizeof *hit);
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
    if (bson_iter_init_find(&it, data, "errorLabels") && BSON_ITER_HOLDS_ARRAY(&it)) {
        uint32_t len;
        const uint8_t *d;
        bson_iter_array(&it, &len, &d);
        bson_t view;
        bson_init_static(&view, d, len);
        /* Straight into place: a copied bson_t may point into itself (no struct assignment). */
        bson_copy_to(&view, &hit->error_labels);
        hit->has_labels = true;
    }
    if (bson_iter_init_find(&it, data, "writeConcernError") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *d;
        bson_iter_document(&it, &len, &d);
        bson_t view;
        bson_init_static(&view, d, len);
        bson_copy_to(&view, &hit->write_concern_error);
        hit->has_wce = true;
    }
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
ms_failpoint_check(const char *cmd_name, const char *alias, const ms_conn_t *conn,
                   ms_failpoint_hit_t *hit)
{
    bool fire = false;
    pthread_mutex_lock(&fp_mu);
    if (fail_command.mode != MODE_OFF && applies(&fail_command.data, cmd_name, alias, conn) &&
        activate(&fail_command)) {
        fill_hit(&fail_command.data, hit);
        fire = true;
    }
    pthread_mutex_unlock(&fp_mu);
    return fire;
}

bool
ms_failpoint_get_more(const ms_conn_t *conn, const char *ns, int *error_code)
{
    bool fire = false;
    bson_iter_t it;
    pthread_mutex_lock(&fp_mu);
    /* mongod evaluates it as failCommand with failCommands: ["getMore"] on the cursor's ns. */
    if (fail_get_more.mode != MODE_OFF && client_matches(&fail_get_more.data, conn, ns) &&
        activate(&fail_get_more)) {
        *error_code = 1;
        if (bson_iter_init_find(&it, &fail_get_more.data, "errorCode") &&
            BSON_ITER_HOLDS_NUMBER(&it)) {
            *error_code = (int)bson_iter_as_int64(&it);
        }
        fire = true;
    }
    pthread_mutex_unlock(&fp_mu);
    return fire;
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
            return ms_set_error(error, 2, "unknown mode: %s", s);
        }
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &child) ||
        !bson_iter_next(&child)) {
        return ms_set_error(error, 9, "'mode' must be a string or JSON object");
    }
    const char *k = bson_iter_key(&child);
    if (!BSON_ITER_HOLDS_NUMBER(&child) || bson_iter_as_int64(&child) < 0) {
        return ms_set_error(error, 2, "'%s' must be a non-negative number", k);
    }
    *n = bson_iter_as_int64(&child);
    if (strcmp(k, "times") == 0) {
        *mode = *n > 0 ? MODE_TIMES : MODE_OFF;
    } else if (strcmp(k, "skip") == 0) {
        *mode = MODE_SKIP;
    } else if (strcmp(k, "activationProbability") == 0) {
        return ms_set_error(error, 2, "activationProbability is not supported by "
                            "mongoq-test-server");
    } else {
        return ms_set_error(error, 9, "'mode' must be one of 'off', 'alwaysOn', 'times', and "
                            "'activationProbability'");
    }
    return true;
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
        return ms_set_error(error, 2, "configureFailPoint takes a fail point name");
    }
    const char *name = bson_iter_utf8(&it, NULL);
    failpoint_t *fp = strcmp(name, fail_command.name) == 0     ? &fail_command
                      : strcmp(name, fail_get_more.name) == 0 ? &fail_get_more
                                                               : NULL;
    if (!fp) {
        return ms_set_error(error, 2, "Cannot find failPoint named '%s' (mongoq-test-server "
                            "implements failCommand and failGetMoreAfterCursorCheckout)", name);
    }
    if (!bson_iter_init_find(&it, c->cmd, "mode")) {
        return ms_set_error(error, 9, "Missing mode argument");
    }
    if (!parse_mode(&it, &mode, &n, error)) {
        return false;
    }
    bson_t data = BSON_INITIALIZER;
    if (bson_iter_init_find(&it, c->cmd, "data")) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_destroy(&data);
            return ms_set_error(error, 9, "the 'data' field must be a document");
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

/*
 * Administrative commands about sessions and server parameters: killSessions and
 * killAllSessions (mongod's src/mongo/db/commands/kill_sessions_command.cpp,
 * kill_all_sessions_command.cpp: the sessions' transactions are aborted and their cursors
 * killed), getParameter (src/mongo/db/commands/parameters.cpp) over a table of the parameters
 * drivers and their tests ask for, with the values of a mongod 6.0 replica set started with
 * enableTestCommands.
 */
#include "commands.h"
#include "store-private.h"

#include <string.h>

/* The command's first value as an array of documents, or false with mongod's TypeMismatch. */
static bool
array_argument(const ms_cmd_t *c, bson_t *out, bson_error_t *error)
{
    bson_iter_t it, child;
    uint32_t len;
    const uint8_t *data;
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '%s.%s' is the wrong type '%s', expected type 'array'",
                            c->name, c->name, ms_type_name(bson_iter_type(&it)));
    }
    bson_iter_array(&it, &len, &data);
    bson_init_static(out, data, len);
    bson_iter_init(&child, out);
    while (bson_iter_next(&child)) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&child)) {
            return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                "BSON field '%s.%s' is the wrong type '%s', expected type "
                                "'object'",
                                c->name, c->name, ms_type_name(bson_iter_type(&child)));
        }
    }
    return true;
}

/* {killSessions: [{id: UUID}, ...]}; an empty array kills every session (no authentication:
 * every session belongs to the one unauthenticated user). */
MS_HANDLER(kill_sessions)
{
    static const char *const allowed[] = {NULL};
    bson_t ids;
    (void)reply;
    if (!ms_check_fields(c, allowed, error) || !array_argument(c, &ids, error)) {
        return false;
    }
    ms_session_kill(bson_count_keys(&ids) == 0 ? NULL : &ids);
    return true;
}

/* {killAllSessions: [{user, db}, ...]}: an empty array kills every session; a list of users
 * kills theirs, and without authentication no session has one. */
MS_HANDLER(kill_all_sessions)
{
    static const char *const allowed[] = {NULL};
    bson_t users;
    (void)reply;
    if (!ms_check_fields(c, allowed, error) || !array_argument(c, &users, error)) {
        return false;
    }
    if (bson_count_keys(&users) == 0) {
        ms_session_kill(NULL);
    }
    return true;
}

/* ---- getParameter ------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *json; /* {"v": <value>} */
    bool runtime;     /* settableAtRuntime */
    bool startup;     /* settableAtStartup */
} parameter_t;

static const parameter_t parameters[] = {
    {"acceptApiVersion2", "{\"v\": false}", true, true},
    {"enableTestCommands", "{\"v\": true}", false, true},
    {"featureCompatibilityVersion", "{\"v\": {\"version\": \"6.0\"}}", false, false},
    {"logicalSessionTimeoutMinutes", "{\"v\": 30}", false, true},
    {"maxTransactionLockRequestTimeoutMillis", "{\"v\": 5}", true, true},
    {"requireApiVersion", "{\"v\": false}", true, true},
    {"transactionLifetimeLimitSeconds", "{\"v\": 60}", true, true},
};

static void
append_parameter(bson_t *reply, const parameter_t *p, bool details)
{
    bson_error_t err;
    bson_t *doc = bson_new_from_json((const uint8_t *)p->json, -1, &err);
    bson_iter_t it;
    BSON_ASSERT(doc && bson_iter_init_find(&it, doc, "v"));
    if (!details) {
        bson_append_value(reply, p->name, -1, bson_iter_value(&it));
    } else {
        bson_t d;
        bson_append_document_begin(reply, p->name, -1, &d);
        bson_append_value(&d, "value", 5, bson_iter_value(&it));
        BSON_APPEND_BOOL(&d, "settableAtRuntime", p->runtime);
        BSON_APPEND_BOOL(&d, "settableAtStartup", p->startup);
        bson_append_document_end(reply, &d);
    }
    bson_destroy(doc);
}

/* {getParameter: 1 | "*" | {showDetails, allParameters}, <name>: <any>, ...}; none found is
 * InvalidOptions "no option found to get". */
MS_HANDLER(get_parameter)
{
    bson_iter_t it, opt;
    bool all = false, details = false;
    size_t found = 0;
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        all = strcmp(bson_iter_utf8(&it, NULL), "*") == 0;
    } else if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &opt)) {
        while (bson_iter_next(&opt)) {
            if (strcmp(bson_iter_key(&opt), "showDetails") == 0) {
                details = bson_iter_as_bool(&opt);
            } else if (strcmp(bson_iter_key(&opt), "allParameters") == 0) {
                all = bson_iter_as_bool(&opt);
            } else {
                return ms_set_error(error, MS_ERR_LOCATION40415,
                                    "BSON field 'getParameter.%s' is an unknown field.",
                                    bson_iter_key(&opt));
            }
        }
    }
    for (size_t i = 0; i < sizeof parameters / sizeof parameters[0]; i++) {
        if (all || bson_has_field(c->cmd, parameters[i].name)) {
            append_parameter(reply, &parameters[i], details);
            found++;
        }
    }
    if (!found) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS, "no option found to get");
    }
    return true;
}

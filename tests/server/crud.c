/*
 * What every document command shares (crud-private.h): the collection a command names, its
 * document fields, _id first in inserted documents, write statements and "ordered", writeErrors
 * entries, arrayFilters and `let` (evaluated into the command's ms_ctx_t), and the refusal of
 * collations other than simple.
 */
#include "crud-private.h"

#include <string.h>

const char *
ms_crud_coll_name(const ms_cmd_t *c, bson_error_t *error)
{
    const char *name = ms_admin_coll_name(c, error);
    if (!name) {
        return NULL;
    }
    if (!ms_valid_db_name(c->db, error)) {
        return NULL;
    }
    if (!*name) {
        ms_set_error(error, MS_ERR_INVALID_NAMESPACE, "Invalid namespace specified '%s.'", c->db);
        return NULL;
    }
    return name;
}

bool
ms_crud_get_doc(const bson_t *cmd, const char *field, bool required, bson_t *out,
                const char *cmd_name, bson_error_t *error)
{
    bson_iter_t it;
    bson_init(out);
    if (!bson_iter_init_find(&it, cmd, field)) {
        if (required) {
            return ms_set_error(error, MS_ERR_LOCATION40414,
                                "BSON field '%s.%s' is missing but a required "
                                "field",
                                cmd_name, field);
        }
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        if (BSON_ITER_HOLDS_NULL(&it) && !required) {
            return true;
        }
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '%s.%s' is the wrong type '%s', expected type "
                            "'object'",
                            cmd_name, field, ms_crud_type_name(bson_iter_type(&it)));
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_init_static(out, data, len);
    return true;
}

const char *
ms_crud_type_name(bson_type_t t)
{
    switch (t) {
    case BSON_TYPE_DOUBLE:
        return "double";
    case BSON_TYPE_UTF8:
        return "string";
    case BSON_TYPE_DOCUMENT:
        return "object";
    case BSON_TYPE_ARRAY:
        return "array";
    case BSON_TYPE_BOOL:
        return "bool";
    case BSON_TYPE_INT32:
        return "int";
    case BSON_TYPE_INT64:
        return "long";
    case BSON_TYPE_NULL:
        return "null";
    default:
        return "other";
    }
}

bool
ms_crud_id_first(const bson_t *in, bson_t *out, bson_error_t *error)
{
    bson_iter_t it;
    bson_init(out);
    if (bson_iter_init_find(&it, in, "_id")) {
        bson_type_t t = bson_iter_type(&it);
        if (t == BSON_TYPE_ARRAY || t == BSON_TYPE_REGEX || t == BSON_TYPE_UNDEFINED) {
            return ms_set_error(error, MS_ERR_INVALID_ID_FIELD, "can't use an %s for _id",
                                t == BSON_TYPE_ARRAY   ? "array"
                                : t == BSON_TYPE_REGEX ? "regex"
                                                       : "undefined");
        }
        bson_append_iter(out, "_id", 3, &it);
    } else {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(out, "_id", &oid);
    }
    bson_iter_init(&it, in);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "_id") != 0) {
            bson_append_iter(out, NULL, 0, &it);
        }
    }
    if (out->len > MS_MAX_BSON_BYTES) {
        return ms_set_error(error, MS_ERR_BSON_OBJECT_TOO_LARGE,
                            "object to insert too large. size in bytes: %u, max "
                            "size: %d",
                            out->len, MS_MAX_BSON_BYTES);
    }
    return true;
}

void
ms_crud_write_error(bson_t *arr, uint32_t *n, int32_t index, const bson_error_t *error)
{
    char key[16];
    const char *k;
    bson_t we;
    int code = ms_error_code(error);
    bson_uint32_to_string((*n)++, &k, key, sizeof key);
    bson_append_document_begin(arr, k, -1, &we);
    BSON_APPEND_INT32(&we, "index", index);
    BSON_APPEND_INT32(&we, "code", code);
    if (ms_error_has_info(code)) {
        bson_concat(&we, ms_error_info());
    }
    BSON_APPEND_UTF8(&we, "errmsg", error->message);
    bson_append_document_end(arr, &we);
}

ms_stmt_after_t
ms_crud_stmt_failed(bson_t *errors, uint32_t *nerr, int32_t i, bool ordered,
                    const bson_error_t *werr, bson_error_t *error)
{
    /* An interruption (maxTimeMS) fails the whole command, as write_ops_exec.cpp's handleError
     * rethrows it; the statements before it stay written. */
    if (werr->code == MS_ERR_WRITE_CONFLICT || werr->code == MS_ERR_MAX_TIME_MS_EXPIRED) {
        *error = *werr;
        return MS_STMT_FATAL;
    }
    ms_crud_write_error(errors, nerr, i, werr);
    return ordered ? MS_STMT_STOP : MS_STMT_NEXT;
}

/* The statements of a write command: documents/updates/deletes, 1..100000 of them. */
bool
ms_crud_statements(const ms_cmd_t *c, const char *field, bson_iter_t *out, bson_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, c->cmd, field)) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field '%s.%s' is missing but a required field", c->name, field);
    }
    if (!BSON_ITER_HOLDS_ARRAY(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '%s.%s' is the wrong type '%s', expected type "
                            "'array'",
                            c->name, field, ms_crud_type_name(bson_iter_type(&it)));
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_array(&it, &len, &data);
    bson_t arr;
    bson_init_static(&arr, data, len);
    uint32_t n = bson_count_keys(&arr);
    if (n == 0 || n > 100000) {
        return ms_set_error(error, MS_ERR_INVALID_LENGTH,
                            "Write batch sizes must be between 1 and 100000. Got %u "
                            "operations.",
                            n);
    }
    bson_iter_recurse(&it, out);
    return true;
}

bool
ms_crud_ordered(const bson_t *cmd)
{
    bson_iter_t it;
    return !bson_iter_init_find(&it, cmd, "ordered") || bson_iter_as_bool(&it);
}

/*
 * Refuses options this server does not implement instead of ignoring them: collations other
 * than simple (the written exclusion, README.md). NotImplemented 238: mongod accepts the option,
 * so no code of mongod's for a bad request would be honest; the client sent nothing wrong.
 */
bool
ms_crud_refuse_unsupported(const bson_t *doc, const char *where, bson_error_t *error)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "collation") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t loc;
        if (!bson_iter_recurse(&it, &loc) || !bson_iter_find(&loc, "locale") ||
            !BSON_ITER_HOLDS_UTF8(&loc) || strcmp(bson_iter_utf8(&loc, NULL), "simple") != 0) {
            return ms_set_error(error, MS_ERR_NOT_IMPLEMENTED,
                                "%s: collations other than 'simple' are not supported "
                                "by mongoq-test-server",
                                where);
        }
    }
    return true;
}

bool
ms_crud_array_filters(const bson_t *stmt, const bson_value_t *update, bson_t *filters,
                      bool *has, const char *where, bson_error_t *error)
{
    bson_iter_t it;
    *has = bson_iter_init_find(&it, stmt, "arrayFilters");
    if (*has) {
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_ARRAY(&it)) {
            return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                "BSON field '%s.arrayFilters' is the wrong type '%s', expected "
                                "type 'array'",
                                where, ms_crud_type_name(bson_iter_type(&it)));
        }
        bson_iter_array(&it, &len, &data);
        bson_init_static(filters, data, len);
    }
    return ms_update_check_array_filters(update, *has ? filters : NULL, error);
}

/* variableValidation::validateNameForUserWrite (src/mongo/db/pipeline/variables.cpp): a
 * lowercase letter or a non-ASCII byte first, then letters, digits, '_' or non-ASCII bytes. */
static bool
let_name_ok(const char *name, bson_error_t *error)
{
    const unsigned char *p = (const unsigned char *)name;
    if (!*p) {
        return ms_set_error(error, MS_ERR_LOCATION16866, "empty variable names are not allowed");
    }
    if (!((*p >= 'a' && *p <= 'z') || *p >= 0x80)) {
        return ms_set_error(error, MS_ERR_LOCATION16867,
                            "'%s' starts with an invalid character for a user variable name",
                            name);
    }
    for (p++; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p >= 0x80)) {
            return ms_set_error(error, MS_ERR_LOCATION16868,
                                "'%s' contains an invalid character for a variable name: '%c'",
                                name, *p);
        }
    }
    return true;
}

bool
ms_crud_let(ms_cmd_t *c, bson_t *vars, bson_error_t *error)
{
    bson_iter_t it, v;
    bson_init(vars);
    if (!bson_iter_init_find(&it, c->cmd, "let")) {
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'let' is the wrong type '%s', expected type 'object'",
                            ms_crud_type_name(bson_iter_type(&it)));
    }
    bson_t empty = BSON_INITIALIZER;
    bson_iter_recurse(&it, &v);
    while (bson_iter_next(&v)) {
        bson_value_t out;
        bool missing;
        if (!let_name_ok(bson_iter_key(&v), error) ||
            !ms_expr_eval(bson_iter_value(&v), &empty, &c->lang, &out, &missing, error)) {
            return false;
        }
        if (!missing) {
            bson_append_value(vars, bson_iter_key(&v), -1, &out);
        }
        bson_value_destroy(&out);
    }
    c->lang.let = vars;
    return true;
}

/*
 * runtimeConstants {localNow, clusterTime}: the values of $$NOW and $$CLUSTER_TIME a mongos
 * chose for the command (s/commands/cluster_find_and_modify_cmd.cpp,
 * appendLegacyRuntimeConstantsToCommandObject; s/commands/cluster_write_cmd.h, the update
 * command's parse). mongod adopts them instead of its own clock
 * (db/commands/find_and_modify.cpp makeUpdateRequest: getLegacyRuntimeConstants().value_or(
 * Variables::generateRuntimeConstants(opCtx)); db/ops/write_ops_exec.cpp performUpdates).
 */
static bool
adopt_runtime_constants(ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it, now, ct;
    if (!bson_iter_init_find(&it, c->cmd, "runtimeConstants")) {
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'runtimeConstants' is the wrong type '%s', expected type "
                            "'object'",
                            ms_crud_type_name(bson_iter_type(&it)));
    }
    bson_iter_recurse(&it, &now);
    bson_iter_recurse(&it, &ct);
    bool has_now = bson_iter_find(&now, "localNow");
    if (!has_now || !bson_iter_find(&ct, "clusterTime")) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field 'runtimeConstants.%s' is missing but a required field",
                            has_now ? "clusterTime" : "localNow");
    }
    if (!BSON_ITER_HOLDS_DATE_TIME(&now) || !BSON_ITER_HOLDS_TIMESTAMP(&ct)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'runtimeConstants.%s' is the wrong type",
                            BSON_ITER_HOLDS_DATE_TIME(&now) ? "clusterTime" : "localNow");
    }
    c->lang.now_ms = bson_iter_date_time(&now);
    bson_iter_timestamp(&ct, &c->lang.cluster_time_t, &c->lang.cluster_time_i);
    return true;
}

bool
ms_crud_with_let(ms_cmd_t *c, bson_t *reply, bson_error_t *error,
                 bool (*run)(ms_cmd_t *c, bson_t *reply, bson_error_t *error))
{
    bson_t vars;
    bool ok = adopt_runtime_constants(c, error) && ms_crud_let(c, &vars, error) &&
              run(c, reply, error);
    c->lang.let = NULL;
    bson_destroy(&vars);
    return ok;
}

/*
 * Collection validators, as mongod 6.0 keeps and applies them (manual: "Schema Validation",
 * "Specify Validation Level for Existing Documents", "Choose How to Handle Invalid Documents";
 * src/mongo/db/catalog/collection_impl.cpp, checkValidation and parseValidator):
 *  - validator: a query filter (parsed as a find filter; $where, $text and geo operators and
 *    $jsonSchema are refused here), validationLevel strict | moderate | off, validationAction
 *    error | warn, set by create and collMod and shown by listCollections in options;
 *  - strict checks every insert and update; moderate checks inserts and updates of documents
 *    that pass the validator (an update to a document that already fails is not checked); off
 *    checks nothing; warn logs instead of failing;
 *  - a failing write is DocumentValidationFailure 121 "Document failed validation" with errInfo
 *    {failingDocumentId, details} (validation_error.c), unless bypassDocumentValidation.
 */
#include "crud-private.h"

#include <string.h>

typedef enum { LEVEL_STRICT, LEVEL_MODERATE, LEVEL_OFF } level_t;

struct ms_validation_t {
    bson_t *validator;
    ms_matcher_t *matcher;
    level_t level;
    bool warn;
};

static const char *const fields[] = {"validator", "validationLevel", "validationAction", NULL};

bool
ms_validation_field(const char *name)
{
    for (int i = 0; fields[i]; i++) {
        if (strcmp(fields[i], name) == 0) {
            return true;
        }
    }
    return false;
}

/* An IDL enum field: a string among values, else TypeMismatch 14 or BadValue 2 as mongod's IDL. */
static bool
check_enum(const ms_cmd_t *c, const bson_iter_t *it, const char *const *values,
           bson_error_t *error)
{
    const char *k = bson_iter_key(it);
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '%s.%s' is the wrong type '%s', expected type "
                            "'string'",
                            c->name, k, ms_crud_type_name(bson_iter_type(it)));
    }
    const char *v = bson_iter_utf8(it, NULL);
    for (int i = 0; values[i]; i++) {
        if (strcmp(values[i], v) == 0) {
            return true;
        }
    }
    return ms_set_error(error, MS_ERR_BAD_VALUE,
                        "Enumeration value '%s' for field '%s.%s' is not a valid value.", v,
                        c->name, k);
}

/* CollectionImpl::parseValidator: not on the internal databases, and it must parse. */
static bool
check_validator(const char *db, const char *coll, const bson_t *validator, bson_error_t *error)
{
    bson_error_t why;
    if (bson_empty(validator)) {
        return true;
    }
    if (strcmp(db, "admin") == 0 || strcmp(db, "local") == 0 || strcmp(db, "config") == 0) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "Document validators are not allowed on collection %s.%s "
                            "in the %s internal database",
                            db, coll, db);
    }
    ms_matcher_t *m = ms_matcher_new(validator, &why);
    if (!m) {
        return ms_set_error(error, (int)why.code, "Parsing of collection validator failed :: "
                            "caused by :: %s", why.message);
    }
    ms_matcher_destroy(m);
    return true;
}

bool
ms_validation_parse(const ms_cmd_t *c, const char *coll, bson_t *out, bson_error_t *error)
{
    static const char *const levels[] = {"off", "strict", "moderate", NULL};
    static const char *const actions[] = {"error", "warn", NULL};
    bson_iter_t it;
    bson_init(out);
    bson_iter_init(&it, c->cmd);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "validator") == 0) {
            bson_t validator;
            uint32_t len;
            const uint8_t *data;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                    "BSON field '%s.validator' is the wrong type '%s', "
                                    "expected type 'object'",
                                    c->name, ms_crud_type_name(bson_iter_type(&it)));
            }
            bson_iter_document(&it, &len, &data);
            bson_init_static(&validator, data, len);
            if (!check_validator(c->db, coll, &validator, error)) {
                return false;
            }
        } else if (strcmp(k, "validationLevel") == 0 && !check_enum(c, &it, levels, error)) {
            return false;
        } else if (strcmp(k, "validationAction") == 0 && !check_enum(c, &it, actions, error)) {
            return false;
        }
        if (ms_validation_field(k)) {
            bson_append_iter(out, NULL, 0, &it);
        }
    }
    return true;
}

void
ms_validation_merge(const bson_t *options, const bson_t *changes, bson_t *out)
{
    bson_iter_t it;
    bson_init(out);
    /* CollectionOptions::toBSON: validator, validationLevel, validationAction in that order; an
     * empty validator is no validator. */
    for (int i = 0; fields[i]; i++) {
        if ((changes && bson_iter_init_find(&it, changes, fields[i])) ||
            (options && bson_iter_init_find(&it, options, fields[i]))) {
            bool empty = BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_value(&it)->value.v_doc.data_len <= 5;
            if (!(i == 0 && empty)) {
                bson_append_iter(out, fields[i], -1, &it);
            }
        }
    }
    if (options && bson_iter_init(&it, options)) {
        while (bson_iter_next(&it)) {
            if (!ms_validation_field(bson_iter_key(&it))) {
                bson_append_iter(out, NULL, 0, &it);
            }
        }
    }
}

void
ms_coll_validation_free(ms_coll_t *c)
{
    if (c->validation) {
        ms_matcher_destroy(c->validation->matcher);
        bson_destroy(c->validation->validator);
        bson_free(c->validation);
        c->validation = NULL;
    }
}

void
ms_coll_validation_init(ms_coll_t *c)
{
    bson_iter_t it;
    bson_t validator;
    uint32_t len;
    const uint8_t *data;
    ms_coll_validation_free(c);
    if (!c->options || !bson_iter_init_find(&it, c->options, "validator") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return;
    }
    bson_iter_document(&it, &len, &data);
    bson_init_static(&validator, data, len);
    ms_matcher_t *m = ms_matcher_new(&validator, NULL);
    if (!m) {
        return; /* refused at create / collMod: cannot happen for stored options */
    }
    ms_validation_t *v = bson_malloc0(sizeof *v);
    v->validator = bson_copy(&validator);
    v->matcher = m;
    if (bson_iter_init_find(&it, c->options, "validationLevel") && BSON_ITER_HOLDS_UTF8(&it)) {
        const char *l = bson_iter_utf8(&it, NULL);
        v->level = strcmp(l, "off") == 0 ? LEVEL_OFF : strcmp(l, "moderate") == 0 ? LEVEL_MODERATE
                                                                                 : LEVEL_STRICT;
    }
    v->warn = bson_iter_init_find(&it, c->options, "validationAction") &&
              BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "warn") == 0;
    c->validation = v;
}

bool
ms_validation_check(const ms_coll_t *c, const bson_t *old, const bson_t *doc, bson_error_t *error)
{
    const ms_validation_t *v = c->validation;
    ms_ctx_t ctx = {.now_ms = ms_now_ms()};
    if (!v || v->level == LEVEL_OFF) {
        return true;
    }
    if (old && v->level == LEVEL_MODERATE && !ms_matcher_matches(v->matcher, old, &ctx)) {
        return true; /* moderate: a document that already fails is not checked */
    }
    if (ms_matcher_matches(v->matcher, doc, &ctx)) {
        return true;
    }
    if (v->warn) {
        ms_log("Document would fail validation (collection %s); validationAction is warn", c->ns);
        return true;
    }
    bson_t info = BSON_INITIALIZER, err;
    bson_iter_t it;
    BSON_APPEND_DOCUMENT_BEGIN(&info, "errInfo", &err);
    if (bson_iter_init_find(&it, doc, "_id")) {
        bson_append_iter(&err, "failingDocumentId", -1, &it);
    }
    bson_t details;
    ms_validation_details(v->validator, doc, &ctx, &details);
    BSON_APPEND_DOCUMENT(&err, "details", &details);
    bson_destroy(&details);
    bson_append_document_end(&info, &err);
    ms_error_info_set(&info);
    bson_destroy(&info);
    return ms_set_error(error, MS_ERR_DOCUMENT_VALIDATION_FAILURE, "Document failed validation");
}

/*
 * The aggregate command that opens a change stream: its $changeStream stage (fullDocument,
 * fullDocumentBeforeChange, resumeAfter, startAfter, startAtOperationTime,
 * showExpandedEvents, allChangesForCluster) and the stages allowed after it, checked as
 * mongod 6.0's IDL and DocumentSourceChangeStream do; the namespace it may watch; batchSize.
 */
#include "changestream-private.h"

#include <inttypes.h>
#include <string.h>

static bool
type_error(const char *field, const char *expected, bson_error_t *error)
{
    return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                        "BSON field '$changeStream.%s' is the wrong type, expected type '%s'",
                        field, expected);
}

static bool
parse_full(bson_iter_t *it, ms_changestream_t *cs, bson_error_t *error)
{
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        return type_error("fullDocument", "string", error);
    }
    const char *v = bson_iter_utf8(it, NULL);
    if (strcmp(v, "default") == 0) {
        cs->full = FULL_DEFAULT;
    } else if (strcmp(v, "updateLookup") == 0) {
        cs->full = FULL_UPDATE_LOOKUP;
    } else if (strcmp(v, "whenAvailable") == 0) {
        cs->full = FULL_WHEN_AVAILABLE;
    } else if (strcmp(v, "required") == 0) {
        cs->full = FULL_REQUIRED;
    } else {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "Enumeration value '%s' for field '$changeStream.fullDocument' is not "
                            "a valid value.",
                            v);
    }
    return true;
}

static bool
parse_before(bson_iter_t *it, ms_changestream_t *cs, bson_error_t *error)
{
    if (!BSON_ITER_HOLDS_UTF8(it)) {
        return type_error("fullDocumentBeforeChange", "string", error);
    }
    const char *v = bson_iter_utf8(it, NULL);
    if (strcmp(v, "off") == 0) {
        cs->before = BEFORE_OFF;
    } else if (strcmp(v, "whenAvailable") == 0) {
        cs->before = BEFORE_WHEN_AVAILABLE;
    } else if (strcmp(v, "required") == 0) {
        cs->before = BEFORE_REQUIRED;
    } else {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "Enumeration value '%s' for field "
                            "'$changeStream.fullDocumentBeforeChange' is not a valid value.",
                            v);
    }
    return true;
}

static bool
parse_option(bson_iter_t *it, ms_changestream_t *cs, ms_cs_start_t *start, bson_error_t *error)
{
    const char *key = bson_iter_key(it);
    if (strcmp(key, "fullDocument") == 0) {
        return parse_full(it, cs, error);
    }
    if (strcmp(key, "fullDocumentBeforeChange") == 0) {
        return parse_before(it, cs, error);
    }
    if (strcmp(key, "resumeAfter") == 0 || strcmp(key, "startAfter") == 0) {
        bool after = strcmp(key, "startAfter") == 0;
        if (start->has_token) {
            return ms_set_error(error, MS_ERR_LOCATION50865,
                                "Do not specify both 'resumeAfter' and 'startAfter' in a "
                                "$changeStream stage");
        }
        start->has_token = true;
        start->start_after = after;
        return ms__token_parse(it, key, &start->token_pos, &start->token_kind, error);
    }
    if (strcmp(key, "startAtOperationTime") == 0) {
        ms_optime_t ts;
        if (!BSON_ITER_HOLDS_TIMESTAMP(it)) {
            return type_error(key, "timestamp", error);
        }
        bson_iter_timestamp(it, &ts.t, &ts.i);
        start->has_time = true;
        start->time_pos = ms__pos(ts);
        return true;
    }
    if (strcmp(key, "allChangesForCluster") == 0 || strcmp(key, "showExpandedEvents") == 0) {
        if (!BSON_ITER_HOLDS_BOOL(it)) {
            return type_error(key, "bool", error);
        }
        *(strcmp(key, "showExpandedEvents") == 0 ? &cs->expanded : &cs->cluster) =
            bson_iter_bool(it);
        return true;
    }
    return ms_set_error(error, MS_ERR_LOCATION40415,
                        "BSON field '$changeStream.%s' is an unknown field.", key);
}

static bool
parse_spec(bson_iter_t *stage, ms_changestream_t *cs, ms_cs_start_t *start, bson_error_t *error)
{
    bson_iter_t it;
    if (!BSON_ITER_HOLDS_DOCUMENT(stage) || !bson_iter_recurse(stage, &it)) {
        return ms_set_error(error, MS_ERR_LOCATION50808,
                            "$changeStream stage expects a document as argument");
    }
    while (bson_iter_next(&it)) {
        if (!parse_option(&it, cs, start, error)) {
            return false;
        }
    }
    if (start->has_token && start->has_time) {
        return ms_set_error(error, MS_ERR_LOCATION40674,
                            "Only one type of resume option is allowed, but multiple were found");
    }
    if (start->has_token && !start->start_after && start->token_kind == TOKEN_INVALIDATE) {
        return ms_set_error(error, MS_ERR_INVALID_RESUME_TOKEN,
                            "Attempting to resume a change stream using 'resumeAfter' is not "
                            "allowed from an invalidate notification");
    }
    return true;
}

bool
ms__changestream_internal_db(const char *db)
{
    return strcmp(db, "admin") == 0 || strcmp(db, "config") == 0 || strcmp(db, "local") == 0;
}

bool
ms__changestream_check_namespace(const ms_changestream_t *cs, bson_error_t *error)
{
    if (cs->cluster) {
        if (strcmp(cs->db, "admin") != 0 || cs->coll) {
            return ms_set_error(error, MS_ERR_INVALID_NAMESPACE,
                                "A $changeStream with 'allChangesForCluster:true' may only be "
                                "opened on the 'admin' database, and with no collection name");
        }
        return true;
    }
    if (ms__changestream_internal_db(cs->db)) {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE,
                            "$changeStream may not be opened on the internal %s database", cs->db);
    }
    if (cs->coll && strncmp(cs->coll, "system.", 7) == 0) {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE,
                            "$changeStream may not be opened on the internal %s.%s collection",
                            cs->db, cs->coll);
    }
    return true;
}

static bool
stage_allowed(const char *name)
{
    static const char *const allowed[] = {"$match", "$project",     "$addFields",   "$set",
                                          "$unset", "$replaceRoot", "$replaceWith", "$redact"};
    for (size_t k = 0; k < sizeof allowed / sizeof allowed[0]; k++) {
        if (strcmp(name, allowed[k]) == 0) {
            return true;
        }
    }
    return false;
}

/* Copies the stages after the first into cs->stages, checking them as mongod does. */
static bool
parse_stages(bson_iter_t *pipeline, ms_changestream_t *cs, bson_error_t *error)
{
    uint32_t n = 0;
    char buf[16];
    const char *key;
    bson_iter_t stage;
    while (bson_iter_next(pipeline)) {
        if (BSON_ITER_HOLDS_DOCUMENT(pipeline) && bson_iter_recurse(pipeline, &stage) &&
            bson_iter_next(&stage) && strcmp(bson_iter_key(&stage), "$changeStream") == 0) {
            return ms_set_error(error, MS_ERR_LOCATION40602,
                                "$changeStream is only valid as the first stage in a pipeline");
        }
        bson_uint32_to_string(n++, &key, buf, sizeof buf);
        bson_append_iter(cs->stages, key, -1, pipeline);
    }
    cs->has_stages = n > 0;
    if (!cs->has_stages) {
        return true;
    }
    /* events are matched without let; mongod resolves $match's variables when it opens */
    if (!ms_pipeline_validate(cs->stages, error) ||
        !ms_pipeline_check_vars(cs->stages, NULL, error)) {
        return false;
    }
    bson_iter_t it;
    bson_iter_init(&it, cs->stages);
    while (bson_iter_next(&it)) {
        if (bson_iter_recurse(&it, &stage) && bson_iter_next(&stage) &&
            !stage_allowed(bson_iter_key(&stage))) {
            return ms_set_error(error, MS_ERR_ILLEGAL_OPERATION,
                                "%s is not permitted in a $changeStream pipeline",
                                bson_iter_key(&stage));
        }
    }
    return true;
}

/* Reads cmd.pipeline: the $changeStream spec, then the later stages. */
bool
ms__changestream_parse(const bson_t *cmd, ms_changestream_t *cs, ms_cs_start_t *start,
                       bson_error_t *error)
{
    bson_iter_t pipeline;
    bson_iter_t stage;
    if (!bson_iter_init_find(&pipeline, cmd, "pipeline") || !BSON_ITER_HOLDS_ARRAY(&pipeline) ||
        !bson_iter_recurse(&pipeline, &pipeline)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "'pipeline' option must be specified as an array");
    }
    if (!bson_iter_next(&pipeline) || !BSON_ITER_HOLDS_DOCUMENT(&pipeline) ||
        !bson_iter_recurse(&pipeline, &stage) || !bson_iter_next(&stage) ||
        strcmp(bson_iter_key(&stage), "$changeStream") != 0) {
        return ms_set_error(error, MS_ERR_LOCATION40602,
                            "$changeStream is only valid as the first stage in a pipeline");
    }
    if (!parse_spec(&stage, cs, start, error)) {
        return false;
    }
    return parse_stages(&pipeline, cs, error);
}

/* A batchSize: a non-negative integral number. */
bool
ms__changestream_batch_size(bson_iter_t *it, int64_t *out, bson_error_t *error)
{
    if (!BSON_ITER_HOLDS_NUMBER(it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'batchSize' is the wrong type, expected a number");
    }
    int64_t n = bson_iter_as_int64(it);
    if (n < 0) {
        return ms_set_error(error, MS_ERR_LOCATION51024,
                            "BSON field 'batchSize' value must be >= 0, actual value '%" PRId64 "'",
                            n);
    }
    *out = n;
    return true;
}

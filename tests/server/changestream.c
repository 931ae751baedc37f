/*
 * Change streams: aggregate with a first stage $changeStream, then getMore.
 *
 * A stream is a position in the oplog's history (`next`: the first position it has not fully
 * processed) plus a filter on namespaces and the user's later stages. Reading copies entries
 * out of the history under the oplog's lock, then turns them into events without any lock
 * (updateLookup takes the storage lock briefly through ms_store_lookup).
 *
 * Resume tokens: {_data: "82" + 16 hex digits of the position (cluster time t << 32 | i) + 2
 * hex digits of the kind}. Kinds order as mongod's: a high-water mark at P (00: "resume at P")
 * sorts before the event at P (80: "resume after P"), which sorts before the invalidate that
 * the same drop caused (81). Equal-length uppercase hex, so tokens also order as strings.
 */
#include "lang.h"
#include "oplog-private.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_AWAIT_MS 1000
#define DEFAULT_FIRST_BATCH 101
#define READ_CHUNK 64
/* A batch stops growing past this; one event can still take it to the 16 MiB reply limit. */
#define BATCH_SOFT_BYTES (4 * 1024 * 1024)

typedef enum { FULL_DEFAULT, FULL_UPDATE_LOOKUP, FULL_WHEN_AVAILABLE, FULL_REQUIRED } full_mode_t;
typedef enum { BEFORE_OFF, BEFORE_WHEN_AVAILABLE, BEFORE_REQUIRED } before_mode_t;
typedef enum { TOKEN_HWM = 0x00, TOKEN_EVENT = 0x80, TOKEN_INVALIDATE = 0x81 } token_kind_t;
typedef enum {
    EV_DOC, /* insert, update, replace, delete */
    EV_DROP,
    EV_DROP_DATABASE,
    EV_INVALIDATE,
    EV_EXPANDED /* create, createIndexes, dropIndexes (showExpandedEvents) */
} event_kind_t;

struct ms_changestream_t {
    char *db;
    char *coll;   /* NULL: a whole-database (or whole-cluster) stream */
    bool cluster; /* allChangesForCluster */
    char *ns;     /* the cursor's namespace in replies */
    int64_t cursor_id;
    full_mode_t full;
    before_mode_t before;
    bool expanded;
    bson_t *stages; /* the stages after $changeStream, as an array (a pointer: heap bson_t
                       are under-aligned for embedding) */
    bool has_stages;
    ms_pos_t next;         /* the first position not yet fully processed */
    bool next_partly_done; /* the entry at `next` gave its event; only its invalidate is left */
};

/* The $changeStream options that choose where a stream starts. */
typedef struct {
    bool has_token;
    bool start_after;
    ms_pos_t token_pos;
    token_kind_t token_kind;
    bool has_time;
    ms_pos_t time_pos;
} start_opts_t;

/* One reply's worth of events and what the reply says about them. */
typedef struct {
    ms_docvec_t docs;
    size_t bytes;
    int64_t limit; /* < 0: no count limit */
    bson_t pbrt;   /* postBatchResumeToken */
    bool closed;
    bool exhausted; /* read everything committed so far */
    ms__oplog_state_t seen;
} batch_t;

/* ---- resume tokens ------------------------------------------------------------------------ */

static void
token_build(bson_t *out, ms_pos_t pos, token_kind_t kind)
{
    char hex[24];
    snprintf(hex, sizeof hex, "82%016" PRIX64 "%02X", pos, (unsigned)kind);
    BSON_APPEND_UTF8(out, "_data", hex);
}

static void
token_append(bson_t *parent, const char *key, ms_pos_t pos, token_kind_t kind)
{
    bson_t child;
    BSON_APPEND_DOCUMENT_BEGIN(parent, key, &child);
    token_build(&child, pos, kind);
    bson_append_document_end(parent, &child);
}

static int
hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Decodes _data (mongod's checks and codes: 9 not hex, 40649 empty, 50811 not a token). */
static bool
token_decode(const char *data, size_t len, ms_pos_t *pos, token_kind_t *kind, bson_error_t *error)
{
    uint64_t value = 0;
    if (len % 2 != 0) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "resume token string was not a valid hex string");
    }
    for (size_t k = 0; k < len; k++) {
        if (hex_digit(data[k]) < 0) {
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                "resume token string was not a valid hex string");
        }
    }
    if (len == 0) {
        return ms_set_error(error, MS_ERR_LOCATION40649, "invalid empty resume token");
    }
    if (len != 20 || data[0] != '8' || data[1] != '2') {
        return ms_set_error(error, MS_ERR_LOCATION50811, "KeyString format error: Unknown type: %d",
                            hex_digit(data[0]) * 16 + hex_digit(data[1]));
    }
    for (size_t k = 2; k < 18; k++) {
        value = value * 16 + (uint64_t)hex_digit(data[k]);
    }
    int k = hex_digit(data[18]) * 16 + hex_digit(data[19]);
    if (k != TOKEN_HWM && k != TOKEN_EVENT && k != TOKEN_INVALIDATE) {
        return ms_set_error(error, MS_ERR_LOCATION51057, "Token type %d not recognized", k);
    }
    *pos = value;
    *kind = (token_kind_t)k;
    return true;
}

static bool
token_parse(bson_iter_t *it, const char *field, ms_pos_t *pos, token_kind_t *kind,
            bson_error_t *error)
{
    bson_t doc;
    bson_iter_t data;
    uint32_t len;
    const uint8_t *raw;
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '$changeStream.%s' is the wrong type '%s', expected type "
                            "'object'",
                            field, "non-object");
    }
    bson_iter_document(it, &len, &raw);
    if (!bson_init_static(&doc, raw, len)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "malformed resume token");
    }
    if (!bson_iter_init_find(&data, &doc, "_data") || !BSON_ITER_HOLDS_UTF8(&data)) {
        char *json = bson_as_relaxed_extended_json(&doc, NULL);
        ms_set_error(error, MS_ERR_LOCATION40647,
                     "Bad resume token: _data of missing or of wrong type. Expected string, got %s",
                     json ? json : "{}");
        bson_free(json);
        return false;
    }
    const char *hex = bson_iter_utf8(&data, &len);
    return token_decode(hex, len, pos, kind, error);
}

/* ---- parsing the aggregate command -------------------------------------------------------- */

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
parse_option(bson_iter_t *it, ms_changestream_t *cs, start_opts_t *start, bson_error_t *error)
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
        return token_parse(it, key, &start->token_pos, &start->token_kind, error);
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
parse_spec(bson_iter_t *stage, ms_changestream_t *cs, start_opts_t *start, bson_error_t *error)
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

static bool
is_internal_db(const char *db)
{
    return strcmp(db, "admin") == 0 || strcmp(db, "config") == 0 || strcmp(db, "local") == 0;
}

static bool
check_namespace(const ms_changestream_t *cs, bson_error_t *error)
{
    if (cs->cluster) {
        if (strcmp(cs->db, "admin") != 0 || cs->coll) {
            return ms_set_error(error, MS_ERR_INVALID_NAMESPACE,
                                "A $changeStream with 'allChangesForCluster:true' may only be "
                                "opened on the 'admin' database, and with no collection name");
        }
        return true;
    }
    if (is_internal_db(cs->db)) {
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
    if (!ms_pipeline_validate(cs->stages, error)) {
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
static bool
parse_pipeline(const bson_t *cmd, ms_changestream_t *cs, start_opts_t *start, bson_error_t *error)
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
static bool
parse_batch_size(bson_iter_t *it, int64_t *out, bson_error_t *error)
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

/* ---- turning history entries into events ------------------------------------------------- */

static bool
ns_watched(const ms_changestream_t *cs, const char *db, const char *coll)
{
    if (coll && strncmp(coll, "system.", 7) == 0) {
        return false;
    }
    if (cs->cluster) {
        return !is_internal_db(db);
    }
    if (strcmp(db, cs->db) != 0) {
        return false;
    }
    return !cs->coll || (coll && strcmp(coll, cs->coll) == 0);
}

/* The events an op gives this stream, in order (at most 2). Returns how many. */
static int
entry_events(const ms_changestream_t *cs, const ms_op_t *op, event_kind_t kinds[2])
{
    switch (op->type) {
    case MS_OP_INSERT:
    case MS_OP_UPDATE:
    case MS_OP_REPLACE:
    case MS_OP_DELETE:
        kinds[0] = EV_DOC;
        return ns_watched(cs, op->db, op->coll) ? 1 : 0;
    case MS_OP_DROP:
        if (!ns_watched(cs, op->db, op->coll)) {
            return 0;
        }
        kinds[0] = EV_DROP;
        kinds[1] = EV_INVALIDATE;
        return cs->coll ? 2 : 1;
    case MS_OP_DROP_DATABASE:
        if (cs->cluster) {
            kinds[0] = EV_DROP_DATABASE;
            return is_internal_db(op->db) ? 0 : 1;
        }
        if (strcmp(op->db, cs->db) != 0) {
            return 0;
        }
        /* A collection stream is invalidated by its database's drop, without an event of it. */
        kinds[0] = cs->coll ? EV_INVALIDATE : EV_DROP_DATABASE;
        kinds[1] = EV_INVALIDATE;
        return cs->coll ? 1 : 2;
    case MS_OP_CREATE:
    case MS_OP_CREATE_INDEX:
    case MS_OP_DROP_INDEX:
    default:
        kinds[0] = EV_EXPANDED;
        return cs->expanded && ns_watched(cs, op->db, op->coll) ? 1 : 0;
    }
}

static const char *
op_type_name(const ms_op_t *op, event_kind_t kind)
{
    static const char *const names[] = {"insert",       "update",        "replace",
                                        "delete",       "create",        "drop",
                                        "dropDatabase", "createIndexes", "dropIndexes",
                                        "modify"};
    static const ms_op_type_t order[] = {MS_OP_INSERT,        MS_OP_UPDATE,       MS_OP_REPLACE,
                                         MS_OP_DELETE,        MS_OP_CREATE,       MS_OP_DROP,
                                         MS_OP_DROP_DATABASE, MS_OP_CREATE_INDEX, MS_OP_DROP_INDEX,
                                         MS_OP_COLL_MOD};
    if (kind == EV_INVALIDATE) {
        return "invalidate";
    }
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        if (order[k] == op->type) {
            return names[k];
        }
    }
    return "unknown";
}

static void
append_ns(bson_t *ev, const ms_op_t *op)
{
    bson_t ns;
    BSON_APPEND_DOCUMENT_BEGIN(ev, "ns", &ns);
    BSON_APPEND_UTF8(&ns, "db", op->db);
    if (op->coll) {
        BSON_APPEND_UTF8(&ns, "coll", op->coll);
    }
    bson_append_document_end(ev, &ns);
}

/* fullDocument of an update event under the stream's fullDocument mode. */
static bool
append_update_full(const ms_changestream_t *cs, const ms_op_t *op, bson_t *ev, bson_error_t *error)
{
    bson_iter_t id;
    bson_t found;
    switch (cs->full) {
    case FULL_DEFAULT:
        return true;
    case FULL_UPDATE_LOOKUP:
        bson_init(&found);
        if (op->document_key && bson_iter_init_find(&id, op->document_key, "_id") &&
            ms_store_lookup(op->db, op->coll, bson_iter_value(&id), &found)) {
            BSON_APPEND_DOCUMENT(ev, "fullDocument", &found);
        } else {
            BSON_APPEND_NULL(ev, "fullDocument");
        }
        bson_destroy(&found);
        return true;
    case FULL_WHEN_AVAILABLE:
        /* Post-images need changeStreamPreAndPostImages, which no collection here has. */
        BSON_APPEND_NULL(ev, "fullDocument");
        return true;
    case FULL_REQUIRED:
    default:
        return ms_set_error(error, MS_ERR_NO_MATCHING_DOCUMENT,
                            "Change stream was configured to require a post-image for all update "
                            "events, but the post-image was not found for event");
    }
}

static bool
append_doc_fields(const ms_changestream_t *cs, const ms_op_t *op, bson_t *ev, bson_error_t *error)
{
    if (op->type == MS_OP_INSERT || op->type == MS_OP_REPLACE) {
        if (op->full_document) {
            BSON_APPEND_DOCUMENT(ev, "fullDocument", op->full_document);
        } else {
            BSON_APPEND_NULL(ev, "fullDocument");
        }
    } else if (op->type == MS_OP_UPDATE && !append_update_full(cs, op, ev, error)) {
        return false;
    }
    append_ns(ev, op);
    if (op->document_key) {
        BSON_APPEND_DOCUMENT(ev, "documentKey", op->document_key);
    }
    if (op->type == MS_OP_UPDATE) {
        bson_t empty = BSON_INITIALIZER;
        BSON_APPEND_DOCUMENT(ev, "updateDescription",
                             op->update_description ? op->update_description : &empty);
    }
    if (op->type != MS_OP_INSERT && cs->before != BEFORE_OFF) {
        if (cs->before == BEFORE_REQUIRED) {
            return ms_set_error(error, MS_ERR_NO_MATCHING_DOCUMENT,
                                "Change stream was configured to require a pre-image for all "
                                "update, delete and replace events, but the pre-image was not "
                                "found for event");
        }
        BSON_APPEND_NULL(ev, "fullDocumentBeforeChange");
    }
    return true;
}

static void
append_expanded_fields(const ms_op_t *op, bson_t *ev)
{
    bson_t desc;
    bson_t indexes;
    bson_t empty = BSON_INITIALIZER;
    append_ns(ev, op);
    if (op->type == MS_OP_CREATE || op->type == MS_OP_COLL_MOD) {
        /* create: the options; modify: the collMod command without its name, as mongod. */
        BSON_APPEND_DOCUMENT(ev, "operationDescription", op->spec ? op->spec : &empty);
        return;
    }
    BSON_APPEND_DOCUMENT_BEGIN(ev, "operationDescription", &desc);
    BSON_APPEND_ARRAY_BEGIN(&desc, "indexes", &indexes);
    BSON_APPEND_DOCUMENT(&indexes, "0", op->spec ? op->spec : &empty);
    bson_append_array_end(&desc, &indexes);
    bson_append_document_end(ev, &desc);
}

/* Builds the event (initialising ev) that an op gives as `kind`. */
static bool
build_event(const ms_changestream_t *cs, const ms__opview_t *v, event_kind_t kind, bson_t *ev,
            bson_error_t *error)
{
    const ms_op_t *op = &v->op;
    bson_init(ev);
    token_append(ev, "_id", ms__pos(v->ts), kind == EV_INVALIDATE ? TOKEN_INVALIDATE : TOKEN_EVENT);
    BSON_APPEND_UTF8(ev, "operationType", op_type_name(op, kind));
    BSON_APPEND_TIMESTAMP(ev, "clusterTime", v->ts.t, v->ts.i);
    BSON_APPEND_DATE_TIME(ev, "wallTime", v->wall_ms);
    switch (kind) {
    case EV_DOC:
        if (!append_doc_fields(cs, op, ev, error)) {
            return false;
        }
        break;
    case EV_DROP:
    case EV_DROP_DATABASE:
        append_ns(ev, op);
        break;
    case EV_EXPANDED:
        append_expanded_fields(op, ev);
        break;
    case EV_INVALIDATE:
    default:
        break;
    }
    if (op->lsid && kind != EV_INVALIDATE) {
        BSON_APPEND_INT64(ev, "txnNumber", op->txn_number);
        BSON_APPEND_DOCUMENT(ev, "lsid", op->lsid);
    }
    return true;
}

static bool
same_id(const bson_t *a, const bson_t *b)
{
    bson_iter_t ia;
    bson_iter_t ib;
    if (!bson_iter_init_find(&ia, a, "_id") || !bson_iter_init_find(&ib, b, "_id") ||
        bson_iter_type(&ia) != bson_iter_type(&ib) || !BSON_ITER_HOLDS_DOCUMENT(&ia)) {
        return false;
    }
    uint32_t la;
    uint32_t lb;
    const uint8_t *da;
    const uint8_t *db;
    bson_iter_document(&ia, &la, &da);
    bson_iter_document(&ib, &lb, &db);
    return la == lb && memcmp(da, db, la) == 0;
}

/* Runs the user's stages on ev; *keep false when they filtered it out. ev may be replaced. */
static bool
apply_stages(const ms_changestream_t *cs, bson_t *ev, bool *keep, bson_error_t *error)
{
    ms_docvec_t in;
    ms_docvec_t out;
    bool ok = false;
    ms_optime_t now_ct = ms_oplog_last_optime();
    ms_ctx_t ctx = {ms_now_ms(), now_ct.t, now_ct.i};
    *keep = true;
    if (!cs->has_stages) {
        return true;
    }
    ms_docvec_init(&in);
    ms_docvec_init(&out);
    ms_docvec_push_copy(&in, ev);
    if (!ms_pipeline_run(cs->stages, &in, &ctx, &out, error)) {
        goto done;
    }
    *keep = out.len > 0;
    if (*keep && !same_id(ev, out.docs[0])) {
        ms_set_error(error, MS_ERR_CHANGE_STREAM_FATAL_ERROR,
                     "Encountered an event whose _id field, which contains the resume token, was "
                     "modified by the pipeline. Modifying the _id field of an event makes it "
                     "impossible to resume the stream from that point. Only transformations that "
                     "retain the unmodified _id field are allowed.");
        goto done;
    }
    if (*keep) {
        bson_destroy(ev);
        bson_copy_to(out.docs[0], ev);
    }
    ok = true;
done:
    ms_docvec_destroy(&out);
    ms_docvec_destroy(&in);
    return ok;
}

/* ---- batches ------------------------------------------------------------------------------ */

static void
batch_init(batch_t *b, int64_t limit)
{
    memset(b, 0, sizeof *b);
    ms_docvec_init(&b->docs);
    bson_init(&b->pbrt);
    b->limit = limit;
}

static void
batch_destroy(batch_t *b)
{
    ms_docvec_destroy(&b->docs);
    bson_destroy(&b->pbrt);
}

static bool
batch_full(const batch_t *b)
{
    return (b->limit >= 0 && (int64_t)b->docs.len >= b->limit) || b->bytes >= BATCH_SOFT_BYTES;
}

static void
batch_set_pbrt(batch_t *b, ms_pos_t pos, token_kind_t kind)
{
    bson_reinit(&b->pbrt);
    token_build(&b->pbrt, pos, kind);
}

/*
 * Turns one entry into events for the batch. Sets *stop when the batch is full or the stream
 * ended; cs->next then says where the next batch starts.
 */
static bool
process_entry(ms_changestream_t *cs, const ms__entry_t *e, batch_t *b, bool *stop,
              bson_error_t *error)
{
    ms__opview_t v;
    event_kind_t kinds[2];
    if (!ms__opview_init(&v, e->rec, error)) {
        return false;
    }
    int n = entry_events(cs, &v.op, kinds);
    int first = 0;
    if (cs->next_partly_done && e->pos == cs->next) {
        /* Only an invalidate that followed the already delivered event is left. */
        first = (n > 1 && kinds[n - 1] == EV_INVALIDATE) ? n - 1 : n;
    }
    for (int k = first; k < n; k++) {
        bson_t ev;
        bool keep;
        if (!build_event(cs, &v, kinds[k], &ev, error) || !apply_stages(cs, &ev, &keep, error)) {
            bson_destroy(&ev);
            return false;
        }
        if (keep) {
            b->bytes += ev.len;
            ms_docvec_push_copy(&b->docs, &ev);
        }
        bson_destroy(&ev);
        if (kinds[k] == EV_INVALIDATE) {
            /* The stream ends here, whether or not the user's stages kept the event. */
            batch_set_pbrt(b, e->pos, TOKEN_INVALIDATE);
            b->closed = true;
            cs->next = e->pos + 1;
            cs->next_partly_done = false;
            *stop = true;
            return true;
        }
        if (keep && batch_full(b)) {
            batch_set_pbrt(b, e->pos, TOKEN_EVENT);
            cs->next = k + 1 < n ? e->pos : e->pos + 1;
            cs->next_partly_done = k + 1 < n;
            *stop = true;
            return true;
        }
    }
    cs->next = e->pos + 1;
    cs->next_partly_done = false;
    return true;
}

static bool
history_lost(bson_error_t *error)
{
    return ms_set_error(error, MS_ERR_CHANGE_STREAM_HISTORY_LOST,
                        "Resume of change stream was not possible, as the resume point may no "
                        "longer be in the oplog.");
}

/* Fills the batch from the history without waiting. */
static bool
collect(ms_changestream_t *cs, batch_t *b, bson_error_t *error)
{
    ms__entry_t chunk[READ_CHUNK];
    if (b->limit == 0) {
        batch_set_pbrt(b, cs->next, cs->next_partly_done ? TOKEN_EVENT : TOKEN_HWM);
        return true;
    }
    /* Bounded: every pass moves cs->next past up to READ_CHUNK entries of a finite history. */
    for (;;) {
        size_t n = ms__oplog_read(cs->next, chunk, READ_CHUNK, &b->seen);
        bool stop = false;
        bool ok = cs->next >= b->seen.floor || history_lost(error);
        for (size_t k = 0; ok && !stop && k < n; k++) {
            ok = process_entry(cs, &chunk[k], b, &stop, error);
        }
        for (size_t k = 0; k < n; k++) {
            bson_destroy(chunk[k].rec);
        }
        if (!ok || stop) {
            return ok;
        }
        if (n == 0) {
            /* Caught up: everything before cs->next has been seen. */
            b->exhausted = true;
            batch_set_pbrt(b, cs->next, TOKEN_HWM);
            return true;
        }
    }
}

static void
reply_build(bson_t *reply, const char *batch_key, const batch_t *b, int64_t id, const char *ns)
{
    bson_t cursor;
    bson_t docs;
    char buf[16];
    const char *key;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "cursor", &cursor);
    BSON_APPEND_ARRAY_BEGIN(&cursor, batch_key, &docs);
    for (size_t k = 0; k < b->docs.len; k++) {
        bson_uint32_to_string((uint32_t)k, &key, buf, sizeof buf);
        bson_append_document(&docs, key, -1, b->docs.docs[k]);
    }
    bson_append_array_end(&cursor, &docs);
    BSON_APPEND_DOCUMENT(&cursor, "postBatchResumeToken", &b->pbrt);
    BSON_APPEND_INT64(&cursor, "id", id);
    BSON_APPEND_UTF8(&cursor, "ns", ns);
    bson_append_document_end(reply, &cursor);
    BSON_APPEND_DOUBLE(reply, "ok", 1.0);
}

/* ---- opening ------------------------------------------------------------------------------ */

/* Where the stream starts, checked against the history (286 lost, 280 token not found). */
static bool
resolve_start(ms_changestream_t *cs, const start_opts_t *start, bson_error_t *error)
{
    ms__oplog_state_t st;
    ms__oplog_read(0, NULL, 0, &st);
    if (start->has_token) {
        cs->next = start->token_pos;
        if (start->token_kind == TOKEN_INVALIDATE) {
            cs->next = start->token_pos + 1; /* startAfter: past the drop and its invalidate */
        } else if (start->token_kind == TOKEN_EVENT) {
            cs->next_partly_done = true; /* the event itself was seen; a following invalidate not */
        }
    } else if (start->has_time) {
        cs->next = start->time_pos;
    } else {
        /* One tick beyond the most recent op, as mongod: the stream never returns it. */
        cs->next = st.latest + 1;
    }
    if (start->has_token && start->token_pos < st.floor) {
        return history_lost(error);
    }
    if (cs->next < st.floor) {
        return history_lost(error);
    }
    if (start->has_token && start->token_kind != TOKEN_HWM && !ms__oplog_has(start->token_pos)) {
        return ms_set_error(error, MS_ERR_CHANGE_STREAM_FATAL_ERROR,
                            "cannot resume stream; the resume token was not found. {_data: "
                            "\"82%016" PRIX64 "%02X\"}",
                            start->token_pos, (unsigned)start->token_kind);
    }
    return true;
}

static ms_changestream_t *
stream_new(const char *db, const char *coll, int64_t cursor_id)
{
    ms_changestream_t *cs = bson_malloc0(sizeof *cs);
    cs->db = bson_strdup(db);
    cs->coll = coll ? bson_strdup(coll) : NULL;
    cs->cursor_id = cursor_id;
    cs->stages = bson_new();
    return cs;
}

static bool
first_batch_size(const bson_t *cmd, int64_t *limit, bson_error_t *error)
{
    bson_iter_t it;
    *limit = DEFAULT_FIRST_BATCH;
    if (bson_iter_init_find(&it, cmd, "cursor") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &it) && bson_iter_find(&it, "batchSize")) {
        return parse_batch_size(&it, limit, error);
    }
    return true;
}

bool
ms_changestream_open(const char *db, const char *coll, const bson_t *cmd, int64_t cursor_id,
                     bool standalone, ms_changestream_t **out, bson_t *reply, bson_error_t *error)
{
    BSON_ASSERT_PARAM(db);
    BSON_ASSERT_PARAM(cmd);
    start_opts_t start = {0};
    int64_t limit;
    batch_t b;
    bool ok = false;
    ms_changestream_t *cs = stream_new(db, coll, cursor_id);
    bson_init(reply);
    *out = NULL;
    batch_init(&b, 0);
    if (!parse_pipeline(cmd, cs, &start, error) || !first_batch_size(cmd, &limit, error)) {
        goto done;
    }
    if (standalone) {
        ms_set_error(error, MS_ERR_LOCATION40573,
                     "The $changeStream stage is only supported on replica sets");
        goto done;
    }
    if (!check_namespace(cs, error) || !resolve_start(cs, &start, error)) {
        goto done;
    }
    cs->ns =
        coll ? bson_strdup_printf("%s.%s", db, coll) : bson_strdup_printf("%s.$cmd.aggregate", db);
    b.limit = limit;
    if (!collect(cs, &b, error)) {
        goto done;
    }
    reply_build(reply, "firstBatch", &b, b.closed ? 0 : cursor_id, cs->ns);
    if (!b.closed) {
        *out = cs;
        cs = NULL;
    }
    ok = true;
done:
    batch_destroy(&b);
    ms_changestream_destroy(cs);
    return ok;
}

/* ---- getMore ------------------------------------------------------------------------------ */

static bool
getmore_options(const bson_t *cmd, int64_t *limit, int64_t *await_ms, bson_error_t *error)
{
    bson_iter_t it;
    *limit = -1;
    *await_ms = DEFAULT_AWAIT_MS;
    if (bson_iter_init_find(&it, cmd, "batchSize")) {
        if (!parse_batch_size(&it, limit, error)) {
            return false;
        }
        if (*limit == 0) {
            *limit = -1; /* getMore's batchSize 0 means the default */
        }
    }
    if (bson_iter_init_find(&it, cmd, "maxTimeMS")) {
        if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) < 0) {
            return ms_set_error(error, MS_ERR_BAD_VALUE,
                                "maxTimeMS must be a non-negative integer");
        }
        *await_ms = bson_iter_as_int64(&it);
    }
    return true;
}

bool
ms_changestream_getmore(ms_changestream_t *cs, const bson_t *cmd, bson_t *reply, bool *closed,
                        bson_error_t *error)
{
    BSON_ASSERT_PARAM(cs);
    int64_t limit;
    int64_t await_ms;
    batch_t b;
    bool ok = false;
    bson_init(reply);
    *closed = false;
    batch_init(&b, -1);
    if (!getmore_options(cmd, &limit, &await_ms, error)) {
        goto done;
    }
    b.limit = limit;
    int64_t deadline = ms__mono_ms() + await_ms;
    /* Bounded by the deadline: each pass either returns or waits for a commit or the time. */
    for (;;) {
        if (!collect(cs, &b, error)) {
            goto done;
        }
        if (b.docs.len > 0 || b.closed || !b.exhausted || ms__mono_ms() >= deadline) {
            break;
        }
        if (ms__oplog_wait(&b.seen, deadline)) {
            break; /* killCursors or shutdown: answer now with what there is */
        }
    }
    *closed = b.closed;
    reply_build(reply, "nextBatch", &b, b.closed ? 0 : cs->cursor_id, cs->ns);
    ok = true;
done:
    batch_destroy(&b);
    return ok;
}

void
ms_changestream_destroy(ms_changestream_t *cs)
{
    if (!cs) {
        return;
    }
    bson_free(cs->db);
    bson_free(cs->coll);
    bson_free(cs->ns);
    bson_destroy(cs->stages);
    bson_free(cs);
}

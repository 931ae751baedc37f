/*
 * Change events from history entries: which events an entry gives a stream (none outside its
 * namespaces; a drop or a rename also invalidates a collection stream), each event's fields as mongod 6.0
 * builds them (_id resume token, operationType, clusterTime, wallTime, ns, documentKey,
 * fullDocument per fullDocument mode with updateLookup through ms_store_lookup,
 * updateDescription, fullDocumentBeforeChange, expanded events), then the user's stages.
 */
#include "changestream-private.h"

#include <string.h>

static bool
ns_watched(const ms_changestream_t *cs, const char *db, const char *coll)
{
    if (coll && strncmp(coll, "system.", 7) == 0) {
        return false;
    }
    if (cs->cluster) {
        return !ms__changestream_internal_db(db);
    }
    if (strcmp(db, cs->db) != 0) {
        return false;
    }
    return !cs->coll || (coll && strcmp(coll, cs->coll) == 0);
}

/* The target collection of a rename (its spec's "to"). */
static const char *
rename_target(const ms_op_t *op)
{
    bson_iter_t it;
    if (op->spec && bson_iter_init_find(&it, op->spec, "to") && BSON_ITER_HOLDS_UTF8(&it)) {
        return bson_iter_utf8(&it, NULL);
    }
    return NULL;
}

/* The events an op gives this stream, in order (at most 2). Returns how many. */
int
ms__changestream_entry_events(const ms_changestream_t *cs, const ms_op_t *op,
                              ms_cs_event_t kinds[2])
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
    case MS_OP_RENAME:
        /* change_stream_filter_helpers.cpp: a rename from or to the namespace; a collection
         * stream is invalidated after it (DocumentSourceCheckInvalidate) */
        if (!ns_watched(cs, op->db, op->coll) && !ns_watched(cs, op->db, rename_target(op))) {
            return 0;
        }
        kinds[0] = EV_RENAME;
        kinds[1] = EV_INVALIDATE;
        return cs->coll ? 2 : 1;
    case MS_OP_DROP_DATABASE:
        if (cs->cluster) {
            kinds[0] = EV_DROP_DATABASE;
            return ms__changestream_internal_db(op->db) ? 0 : 1;
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
op_type_name(const ms_op_t *op, ms_cs_event_t kind)
{
    static const char *const names[] = {"insert",       "update",        "replace",
                                        "delete",       "create",        "drop",
                                        "dropDatabase", "createIndexes", "dropIndexes",
                                        "modify",       "rename"};
    static const ms_op_type_t order[] = {MS_OP_INSERT,        MS_OP_UPDATE,       MS_OP_REPLACE,
                                         MS_OP_DELETE,        MS_OP_CREATE,       MS_OP_DROP,
                                         MS_OP_DROP_DATABASE, MS_OP_CREATE_INDEX, MS_OP_DROP_INDEX,
                                         MS_OP_COLL_MOD,      MS_OP_RENAME};
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
    case FULL_REQUIRED:
    default:
        /* A post-image exists when the collection recorded the pre-image of the update
         * (changeStreamPreAndPostImages enabled at the time of the write): mongod computes it
         * from the pre-image and the update, which gives the document after the update. */
        if (op->pre_image && op->full_document) {
            BSON_APPEND_DOCUMENT(ev, "fullDocument", op->full_document);
            return true;
        }
        if (cs->full == FULL_WHEN_AVAILABLE) {
            BSON_APPEND_NULL(ev, "fullDocument");
            return true;
        }
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
    if (op->type != MS_OP_INSERT && cs->before != BEFORE_OFF && op->pre_image) {
        BSON_APPEND_DOCUMENT(ev, "fullDocumentBeforeChange", op->pre_image);
    } else if (op->type != MS_OP_INSERT && cs->before != BEFORE_OFF) {
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

/* A rename event: ns (the source) and to; with showExpandedEvents also operationDescription
 * {to} (change_stream_event_transform.cpp). */
static void
append_rename_fields(const ms_changestream_t *cs, const ms_op_t *op, bson_t *ev)
{
    bson_t to;
    bson_t desc;
    append_ns(ev, op);
    BSON_APPEND_DOCUMENT_BEGIN(ev, "to", &to);
    BSON_APPEND_UTF8(&to, "db", op->db);
    BSON_APPEND_UTF8(&to, "coll", rename_target(op) ? rename_target(op) : "");
    bson_append_document_end(ev, &to);
    if (cs->expanded) {
        BSON_APPEND_DOCUMENT_BEGIN(ev, "operationDescription", &desc);
        BSON_APPEND_DOCUMENT_BEGIN(&desc, "to", &to);
        BSON_APPEND_UTF8(&to, "db", op->db);
        BSON_APPEND_UTF8(&to, "coll", rename_target(op) ? rename_target(op) : "");
        bson_append_document_end(&desc, &to);
        bson_append_document_end(ev, &desc);
    }
}

/* Builds the event (initialising ev) that an op gives as `kind`. */
bool
ms__changestream_build_event(const ms_changestream_t *cs, const ms__opview_t *v, ms_cs_event_t kind,
                             bson_t *ev, bson_error_t *error)
{
    const ms_op_t *op = &v->op;
    bson_init(ev);
    ms__token_append(ev, "_id", ms__pos(v->ts),
                     kind == EV_INVALIDATE ? TOKEN_INVALIDATE : TOKEN_EVENT);
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
    case EV_RENAME:
        append_rename_fields(cs, op, ev);
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
bool
ms__changestream_apply_stages(const ms_changestream_t *cs, bson_t *ev, bool *keep,
                              bson_error_t *error)
{
    ms_docvec_t in;
    ms_docvec_t out;
    bool ok = false;
    ms_optime_t now_ct = ms_oplog_last_optime();
    ms_ctx_t ctx = {.now_ms = ms_now_ms(), .cluster_time_t = now_ct.t, .cluster_time_i = now_ct.i};
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

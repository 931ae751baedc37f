/*
 * Read-only views (manual: core/views; src/mongo/db/views/view_catalog.cpp): a view is a
 * collection entry whose options are {viewOn, pipeline}. A read of it (find, count, distinct,
 * aggregate) runs the view's pipeline over what it is defined on (a collection, or another view,
 * resolved in turn) and reads the result as a collection of its own: a temporary one the command
 * owns (freed by ms_view_release after the reply). Commands that write, or work on indexes, are
 * CommandNotSupportedOnView 166 (dispatch.c asks ms_view_refuse).
 */
#include "server-private.h"
#include "store-private.h"

#include <string.h>

#define VIEW_DEPTH_MAX 20

bool
ms_view_is(const ms_coll_t *c)
{
    return c && c->options && bson_has_field(c->options, "viewOn");
}

static const char *
view_on(const bson_t *options)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, options, "viewOn") && BSON_ITER_HOLDS_UTF8(&it)
               ? bson_iter_utf8(&it, NULL)
               : NULL;
}

/* The pipeline of options, a view into options. */
static void
view_pipeline(const bson_t *options, bson_t *out)
{
    bson_iter_t it;
    uint32_t len = 0;
    const uint8_t *data = NULL;
    if (bson_iter_init_find(&it, options, "pipeline") && BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_array(&it, &len, &data);
        bson_init_static(out, data, len);
    } else {
        bson_init(out);
    }
}

bool
ms_view_check_definition(const char *db, const char *name, const bson_t *options,
                         bson_error_t *error)
{
    static const char *const banned[] = {"$out", "$merge", "$changeStream", NULL};
    bson_t pipeline;
    bson_iter_t it, stage;
    view_pipeline(options, &pipeline);
    bson_iter_init(&it, &pipeline);
    while (bson_iter_next(&it)) {
        if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &stage) &&
            bson_iter_next(&stage)) {
            for (int i = 0; banned[i]; i++) {
                if (strcmp(bson_iter_key(&stage), banned[i]) == 0) {
                    return ms_set_error(error, MS_ERR_OPTION_NOT_SUPPORTED_ON_VIEW,
                                        "%s cannot be used in a view definition", banned[i]);
                }
            }
        }
    }
    if (!ms_pipeline_validate(&pipeline, error)) {
        return false;
    }
    /* ViewGraph: the chain of viewOn must not come back to the new view. */
    const char *next = view_on(options);
    for (int depth = 0; next; depth++) {
        if (strcmp(next, name) == 0) {
            return ms_set_error(error, MS_ERR_GRAPH_CONTAINS_CYCLE,
                                "View cycle detected: %s.%s", db, name);
        }
        if (depth >= VIEW_DEPTH_MAX) {
            return ms_set_error(error, MS_ERR_VIEW_DEPTH_LIMIT_EXCEEDED,
                                "View depth too deep or view cycle detected. Maximum depth is "
                                "%d",
                                VIEW_DEPTH_MAX);
        }
        ms_coll_t *c = ms_store_coll(db, next);
        next = ms_view_is(c) ? view_on(c->options) : NULL;
    }
    return true;
}

/* The documents of what the view is defined on (depth: views resolved so far). */
static bool
source_docs(ms_wctx_t *w, const ms_coll_t *view, int depth, ms_docvec_t *out,
            bson_error_t *error);

static bool
view_docs(ms_wctx_t *w, const ms_coll_t *view, int depth, ms_docvec_t *out, bson_error_t *error)
{
    ms_docvec_t in;
    bson_t pipeline;
    ms_docvec_init(&in);
    if (!source_docs(w, view, depth, &in, error)) {
        ms_docvec_destroy(&in);
        ms_docvec_init(out);
        return false;
    }
    view_pipeline(view->options, &pipeline);
    bool ok = ms_pipeline_run(&pipeline, &in, &w->cmd->lang, out, error);
    ms_docvec_destroy(&in);
    return ok;
}

static bool
source_docs(ms_wctx_t *w, const ms_coll_t *view, int depth, ms_docvec_t *out,
            bson_error_t *error)
{
    const char *on = view_on(view->options);
    ms_coll_t *src = w->txn ? ms_txn_view(w->txn, w->db, on, false, NULL)
                            : ms_store_coll(w->db, on);
    if (ms_view_is(src)) {
        if (depth >= VIEW_DEPTH_MAX) {
            ms_docvec_init(out);
            return ms_set_error(error, MS_ERR_VIEW_DEPTH_LIMIT_EXCEEDED,
                                "View depth too deep or view cycle detected. Maximum depth is "
                                "%d",
                                VIEW_DEPTH_MAX);
        }
        return view_docs(w, src, depth + 1, out, error);
    }
    ms_docvec_init(out);
    for (ms_rec_t *r = src ? src->head : NULL; r; r = r->next) {
        bson_t doc;
        ms_doc_view(r->doc, &doc);
        ms_docvec_push_copy(out, &doc);
    }
    return true;
}

ms_coll_t *
ms_view_materialize(ms_wctx_t *w, const ms_coll_t *view, bson_error_t *error)
{
    ms_docvec_t docs;
    bson_error_t local;
    bson_error_t *e = error ? error : &local;
    if (!w->cmd) {
        ms_set_error(e, MS_ERR_COMMAND_NOT_SUPPORTED_ON_VIEW,
                     "Namespace %s is a view, not a collection", view->ns);
        return NULL;
    }
    if (!view_docs(w, view, 0, &docs, e)) {
        ms_docvec_destroy(&docs);
        return NULL;
    }
    /* A collection without indexes: a view's documents need not have unique _ids, or any. */
    ms_coll_t *tmp = ms_coll_new(view->db, view->name, NULL);
    for (size_t i = 0; i < tmp->nindexes; i++) {
        ms_index_destroy(tmp->indexes[i]);
    }
    tmp->nindexes = 0;
    for (size_t i = 0; i < docs.len; i++) {
        ms_doc_t *d = ms_doc_new(docs.docs[i]);
        ms_coll_insert(tmp, d, NULL, e);
        ms_doc_unref(d);
    }
    ms_docvec_destroy(&docs);
    tmp->next = w->cmd->view_colls;
    w->cmd->view_colls = tmp;
    return tmp;
}

void
ms_view_release(ms_cmd_t *c)
{
    while (c->view_colls) {
        ms_coll_t *next = c->view_colls->next;
        ms_coll_destroy(c->view_colls);
        c->view_colls = next;
    }
}

/* Commands that never run on a view (the rest read it through ms_wctx_coll), and change
 * streams. */
static const char *const refused[] = {"insert",      "update",        "delete",
                                      "findAndModify", "createIndexes", "dropIndexes",
                                      "listIndexes", "collMod",       NULL};

/* An aggregate opening a change stream ($changeStream first). */
static bool
opens_change_stream(const ms_cmd_t *c)
{
    bson_iter_t it, stage;
    return ms_command_has_alias(c->command, "aggregate") &&
           bson_iter_init_find(&it, c->cmd, "pipeline") && BSON_ITER_HOLDS_ARRAY(&it) &&
           bson_iter_recurse(&it, &stage) && bson_iter_next(&stage) &&
           BSON_ITER_HOLDS_DOCUMENT(&stage) && bson_iter_recurse(&stage, &it) &&
           bson_iter_next(&it) && strcmp(bson_iter_key(&it), "$changeStream") == 0;
}

bool
ms_view_refuse(const ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    bool applies = false;
    if (!c->command || !c->db) {
        return true;
    }
    for (int i = 0; refused[i] && !applies; i++) {
        applies = ms_command_has_alias(c->command, refused[i]);
    }
    if (!applies && !opens_change_stream(c)) {
        return true;
    }
    bson_iter_init(&it, c->cmd);
    if (!bson_iter_next(&it) || !BSON_ITER_HOLDS_UTF8(&it)) {
        return true;
    }
    ms_coll_t *coll = ms_store_coll(c->db, bson_iter_utf8(&it, NULL));
    if (ms_view_is(coll)) {
        return ms_set_error(error, MS_ERR_COMMAND_NOT_SUPPORTED_ON_VIEW,
                            "Namespace %s is a view, not a collection", coll->ns);
    }
    return true;
}

/*
 * Database-level aggregate ({aggregate: 1}), for the first stages mongod 6.0 runs without a
 * collection that this server has: $documents (src/mongo/db/pipeline/document_source_documents.cpp:
 * an expression evaluating to an array of documents) and $listLocalSessions
 * (document_source_list_local_sessions.cpp: the sessions this server knows). Any other first
 * stage is InvalidNamespace 73, as mongod answers for a stage that needs a collection. The rest
 * of the pipeline runs as a collection's does, $out and $merge last included (cmd_agg_write.c).
 */
#include "crud-private.h"

#include <string.h>

/* The first stage's name and value; false when the pipeline is empty. */
static bool
first_stage(const bson_t *pipeline, const char **name, bson_iter_t *value)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, pipeline) || !bson_iter_next(&it) ||
        !BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, value) ||
        !bson_iter_next(value)) {
        return false;
    }
    *name = bson_iter_key(value);
    return true;
}

/* The pipeline without its first stage, into rest (initialised here). */
static void
without_first(const bson_t *pipeline, bson_t *rest)
{
    bson_iter_t it;
    uint32_t n = 0;
    bson_init(rest);
    bson_iter_init(&it, pipeline);
    bson_iter_next(&it);
    while (bson_iter_next(&it)) {
        char key[16];
        const char *k;
        size_t len = bson_uint32_to_string(n++, &k, key, sizeof key);
        bson_append_iter(rest, k, (int)len, &it);
    }
}

/* $documents: <expression> evaluated once, an array of documents. */
static bool
documents_input(ms_cmd_t *c, const bson_iter_t *value, ms_docvec_t *input, bson_error_t *error)
{
    bson_value_t out;
    bool missing = false;
    bson_t empty = BSON_INITIALIZER;
    bson_iter_t it;
    if (!ms_expr_eval(bson_iter_value((bson_iter_t *)value), &empty, &c->lang, &out, &missing,
                      error)) {
        return false;
    }
    bool ok = out.value_type == BSON_TYPE_ARRAY;
    if (ok) {
        bson_iter_init_from_data(&it, out.value.v_doc.data, out.value.v_doc.data_len);
        while (ok && bson_iter_next(&it)) {
            ok = BSON_ITER_HOLDS_DOCUMENT(&it);
            if (ok) {
                bson_t doc;
                bson_init_static(&doc, bson_iter_value(&it)->value.v_doc.data,
                                 bson_iter_value(&it)->value.v_doc.data_len);
                ms_docvec_push_copy(input, &doc);
            }
        }
    }
    if (!missing) {
        bson_value_destroy(&out);
    }
    if (!ok) {
        return ms_set_error(error, MS_ERR_LOCATION40228,
                            "'replacement document' must evaluate to an object: $documents "
                            "takes an array of documents");
    }
    return true;
}

/* $listLocalSessions: {} | {allUsers: bool} | {users: [{user, db}]}. Without authentication
 * every session is the one unauthenticated user's: {} and allUsers list them all, a list of
 * users none. */
static bool
local_sessions_input(const bson_iter_t *value, ms_docvec_t *input, bson_error_t *error)
{
    bson_iter_t child;
    bool all = true;
    if (!BSON_ITER_HOLDS_DOCUMENT(value)) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "$listLocalSessions options must be specified in an object, but "
                            "found: %s",
                            ms_type_name(bson_iter_type(value)));
    }
    bson_iter_recurse(value, &child);
    while (bson_iter_next(&child)) {
        const char *k = bson_iter_key(&child);
        if (strcmp(k, "users") == 0 && BSON_ITER_HOLDS_ARRAY(&child)) {
            all = bson_iter_value(&child)->value.v_doc.data_len <= 5;
        } else if (strcmp(k, "allUsers") != 0 || !BSON_ITER_HOLDS_BOOL(&child)) {
            return ms_set_error(error, MS_ERR_LOCATION40415,
                                "BSON field 'ListSessionsSpec.%s' is an unknown field.", k);
        }
    }
    if (all) {
        ms_session_list(input);
    }
    return true;
}

bool
ms_agg_db(ms_cmd_t *c, const bson_t *pipeline, int64_t batch_size, bool explain, bson_t *reply,
          bson_error_t *error)
{
    const char *stage = NULL;
    bson_iter_t value;
    ms_docvec_t input, results;
    bson_t rest, *tail = bson_new();
    const char *write_stage = NULL;
    bson_value_t write_spec;
    bool ok = false;
    bool known = first_stage(pipeline, &stage, &value) &&
                 (strcmp(stage, "$documents") == 0 || strcmp(stage, "$listLocalSessions") == 0);
    if (!known) {
        bson_destroy(tail);
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE,
                            "{aggregate: 1} is not valid for '%s'; a collection is required.",
                            stage ? stage : "$match");
    }
    if (explain) {
        bson_destroy(tail);
        return ms_set_error(error, MS_ERR_NOT_IMPLEMENTED,
                            "explain of {aggregate: 1} is not supported by mongoq-test-server");
    }
    ms_docvec_init(&input);
    ms_docvec_init(&results);
    without_first(pipeline, &rest);
    /* ms_pipeline_run initialises its output: results is empty until then */
    if (!ms_agg_split_write_stage(&rest, &write_stage, &write_spec, tail, error) ||
        !ms_pipeline_validate(tail, error)) {
        goto done;
    }
    ok = strcmp(stage, "$documents") == 0 ? documents_input(c, &value, &input, error)
                                          : local_sessions_input(&value, &input, error);
    if (ok) {
        ms_docvec_destroy(&results);
        ok = ms_pipeline_run(tail, &input, &c->lang, &results, error);
    }
    if (ok && write_stage) { /* $out, $merge: written, none returned */
        ok = ms_agg_write_stage(c, write_stage, &write_spec, &results, error);
        ms_docvec_destroy(&results);
        ms_docvec_init(&results);
    }
    if (ok) {
        char *ns = bson_strdup_printf("%s.$cmd.aggregate", c->db);
        ms_cursor_reply(c, reply, ns, &results, batch_size);
        bson_free(ns);
    }
done:
    ms_docvec_destroy(&input);
    ms_docvec_destroy(&results);
    bson_destroy(&rest);
    bson_destroy(tail);
    return ok;
}

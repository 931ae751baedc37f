/*
 * mongoq-test-server: $out and $merge, the aggregation stages that write (manual:
 * reference/operator/aggregation/out and merge; mongod 6.0: src/mongo/db/pipeline/
 * document_source_out.cpp, document_source_merge.cpp, document_source_merge.idl). Either is the
 * last stage: the rest of the pipeline runs first, so $merge may read and write one collection,
 * then its documents go through a write context and the aggregate answers an empty cursor.
 *
 * $out replaces the target's documents and keeps its indexes and options, all or nothing: the
 * documents are first tried on a private copy of the target (unique keys, validation), where
 * mongod writes a temporary collection and renames it over the target.
 */
#include "crud-private.h"

#include <string.h>

typedef enum { WM_REPLACE, WM_KEEP, WM_MERGE, WM_FAIL, WM_PIPELINE } when_matched_t;
typedef enum { WN_INSERT, WN_DISCARD, WN_FAIL } when_not_matched_t;

static const char *const matched_names[] = {"replace", "keepExisting", "merge", "fail", NULL};
static const char *const not_matched_names[] = {"insert", "discard", "fail", NULL};

typedef struct {
    const char *db, *coll; /* the target, borrowed */
    const char *on[16];
    size_t non;
    when_matched_t matched;
    bson_value_t pipeline; /* whenMatched as a pipeline */
    when_not_matched_t not_matched;
    bool has_let;
    bson_t let;
} merge_spec_t;

static bool
is_write_stage(const char *name)
{
    return strcmp(name, "$out") == 0 || strcmp(name, "$merge") == 0;
}

static const char *
stage_name(bson_iter_t *it)
{
    bson_iter_t stage;
    if (BSON_ITER_HOLDS_DOCUMENT(it) && bson_iter_recurse(it, &stage) && bson_iter_next(&stage)) {
        return bson_iter_key(&stage);
    }
    return "";
}

bool
ms_agg_split_write_stage(const bson_t *pipeline, const char **stage, bson_value_t *spec,
                         bson_t *rest, bson_error_t *error)
{
    bson_iter_t it;
    uint32_t n = bson_count_keys(pipeline), i = 0;
    *stage = NULL;
    bson_iter_init(&it, pipeline);
    for (; bson_iter_next(&it); i++) {
        const char *name = stage_name(&it);
        if (is_write_stage(name) && i + 1 < n) {
            return ms_set_error(error, MS_ERR_LOCATION40601,
                                "%s can only be the final stage in the pipeline", name);
        }
        if (is_write_stage(name)) {
            bson_iter_t s;
            bson_iter_recurse(&it, &s);
            bson_iter_next(&s);
            *stage = name;
            *spec = *bson_iter_value(&s);
        } else {
            char key[16];
            const char *k;
            size_t klen = bson_uint32_to_string(i, &k, key, sizeof key);
            bson_append_iter(rest, k, (int)klen, &it);
        }
    }
    return true;
}

bool
ms_agg_writes(const bson_t *cmd)
{
    bson_iter_t it, stages;
    const char *last = "";
    if (!bson_iter_init_find(&it, cmd, "pipeline") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &stages)) {
        return false;
    }
    while (bson_iter_next(&stages)) {
        last = stage_name(&stages);
    }
    return is_write_stage(last);
}

/* ---- specs ------------------------------------------------------------------------------- */

/* "coll" or {db, coll}: the target namespace ($out, $merge's into). */
static bool
parse_target(ms_cmd_t *c, const char *field, const bson_value_t *v, const char **db,
             const char **coll, bson_error_t *error)
{
    bson_iter_t it;
    *db = c->db;
    *coll = NULL;
    if (v->value_type == BSON_TYPE_UTF8) {
        *coll = v->value.v_utf8.str;
    } else if (v->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            bool is_db = strcmp(k, "db") == 0;
            if (!is_db && strcmp(k, "coll") != 0) {
                return ms_set_error(error, MS_ERR_LOCATION40415,
                                    "BSON field '%s.%s' is an unknown field.", field, k);
            }
            if (!BSON_ITER_HOLDS_UTF8(&it)) {
                return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                    "BSON field '%s.%s' is the wrong type '%s', expected type "
                                    "'string'",
                                    field, k, ms_crud_type_name(bson_iter_type(&it)));
            }
            *(is_db ? db : coll) = bson_iter_utf8(&it, NULL);
        }
        if (!*coll) {
            return ms_set_error(error, MS_ERR_LOCATION40414,
                                "BSON field '%s.coll' is missing but a required field", field);
        }
    } else {
        return ms_set_error(error, MS_ERR_LOCATION16990,
                            "%s only supports a string or object argument, but found %s", field,
                            ms_crud_type_name(v->value_type));
    }
    return ms_valid_coll_name(*db, *coll, error);
}

static bool
parse_on(merge_spec_t *m, const bson_value_t *v, bson_error_t *error)
{
    bson_iter_t it;
    if (v->value_type == BSON_TYPE_UTF8) {
        m->on[0] = v->value.v_utf8.str;
        m->non = 1;
        return true;
    }
    if (v->value_type != BSON_TYPE_ARRAY) {
        return ms_set_error(error, MS_ERR_LOCATION51186,
                            "$merge 'on' field  must be either a string or an array of strings, "
                            "but found %s",
                            ms_crud_type_name(v->value_type));
    }
    m->non = 0;
    bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (!BSON_ITER_HOLDS_UTF8(&it)) {
            return ms_set_error(error, MS_ERR_LOCATION51134,
                                "Array passed to $merge 'on' field must only contain strings, but "
                                "found %s",
                                ms_crud_type_name(bson_iter_type(&it)));
        }
        if (m->non == sizeof m->on / sizeof m->on[0]) {
            return ms_set_error(error, MS_ERR_NOT_IMPLEMENTED,
                                "$merge 'on' with more than 16 fields is not supported by "
                                "mongoq-test-server");
        }
        m->on[m->non++] = bson_iter_utf8(&it, NULL);
    }
    if (m->non == 0) {
        return ms_set_error(error, MS_ERR_LOCATION51187,
                            "If explicitly specifying $merge 'on', must include at least one "
                            "field");
    }
    return true;
}

static bool
parse_mode(const char *field, const bson_iter_t *it, const char *const *names, int *mode,
           bson_error_t *error)
{
    const char *s = BSON_ITER_HOLDS_UTF8(it) ? bson_iter_utf8(it, NULL) : NULL;
    for (int i = 0; s && names[i]; i++) {
        if (strcmp(s, names[i]) == 0) {
            *mode = i;
            return true;
        }
    }
    if (!s) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '$merge.%s' is the wrong type '%s', expected type "
                            "'string'",
                            field, ms_crud_type_name(bson_iter_type(it)));
    }
    return ms_set_error(error, MS_ERR_BAD_VALUE,
                        "Enumeration value '%s' for field '$merge.%s' is not a valid value.", s,
                        field);
}

/* The combinations mongod's MergeStrategyDescriptors list. */
static bool
supported_modes(const merge_spec_t *m, bson_error_t *error)
{
    bool ok = m->not_matched == WN_INSERT || m->matched == WM_REPLACE ||
              m->matched == WM_MERGE || m->matched == WM_PIPELINE;
    if (!ok) {
        return ms_set_error(error, MS_ERR_LOCATION51189,
                            "Combination of $merge modes 'whenMatched: %s' and 'whenNotMatched: "
                            "%s' is not supported",
                            matched_names[m->matched], not_matched_names[m->not_matched]);
    }
    return true;
}

static bool
parse_merge(ms_cmd_t *c, const bson_value_t *spec, merge_spec_t *m, bson_error_t *error)
{
    bson_iter_t it;
    bool has_into = false;
    memset(m, 0, sizeof *m);
    m->on[0] = "_id";
    m->non = 1;
    m->matched = WM_MERGE;
    if (spec->value_type != BSON_TYPE_DOCUMENT) {
        return parse_target(c, "$merge", spec, &m->db, &m->coll, error);
    }
    bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        int mode = 0;
        bool ok = true;
        if (strcmp(k, "into") == 0) {
            has_into = true;
            ok = parse_target(c, "$merge.into", bson_iter_value(&it), &m->db, &m->coll, error);
        } else if (strcmp(k, "on") == 0) {
            ok = parse_on(m, bson_iter_value(&it), error);
        } else if (strcmp(k, "whenMatched") == 0 && BSON_ITER_HOLDS_ARRAY(&it)) {
            m->matched = WM_PIPELINE;
            m->pipeline = *bson_iter_value(&it);
        } else if (strcmp(k, "whenMatched") == 0) {
            ok = parse_mode(k, &it, matched_names, &mode, error);
            m->matched = (when_matched_t)mode;
        } else if (strcmp(k, "whenNotMatched") == 0) {
            ok = parse_mode(k, &it, not_matched_names, &mode, error);
            m->not_matched = (when_not_matched_t)mode;
        } else if (strcmp(k, "let") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&m->let, data, len);
            m->has_let = true;
        } else {
            return ms_set_error(error, MS_ERR_LOCATION40415,
                                "BSON field '$merge.%s' is an unknown field.", k);
        }
        if (!ok) {
            return false;
        }
    }
    if (!has_into) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field '$merge.into' is missing but a required field");
    }
    if (m->has_let && m->matched != WM_PIPELINE) {
        return ms_set_error(error, MS_ERR_LOCATION51199,
                            "Cannot use 'let' variables with 'whenMatched: %s' mode",
                            matched_names[m->matched]);
    }
    return supported_modes(m, error);
}

/* ---- $out ---------------------------------------------------------------------------------- */

/* The documents with _id first (an ObjectId where missing). */
static bool
with_ids(const ms_docvec_t *docs, ms_docvec_t *out, bson_error_t *error)
{
    ms_docvec_init(out);
    for (size_t i = 0; i < docs->len; i++) {
        bson_t doc;
        if (!ms_crud_id_first(docs->docs[i], &doc, error)) {
            bson_destroy(&doc);
            return false;
        }
        ms_docvec_push_copy(out, &doc);
        bson_destroy(&doc);
    }
    return true;
}

/* Tries the documents on a private copy of target (or an empty collection): unique keys and
 * validation, so the live write below cannot fail half-way. */
static bool
out_trial(const ms_wctx_t *w, ms_coll_t *target, const char *db, const char *coll,
          const ms_docvec_t *docs, bson_error_t *error)
{
    ms_coll_t *trial = target ? ms_coll_clone(target) : ms_coll_new(db, coll, NULL);
    bool ok = true;
    while (trial->head) {
        ms_coll_remove(trial, trial->head);
    }
    for (size_t i = 0; i < docs->len && ok; i++) {
        ms_rec_t *rec;
        if (target && !w->bypass_validation &&
            !ms_validation_check(target, NULL, docs->docs[i], error)) {
            ok = false;
            break;
        }
        ms_doc_t *d = ms_doc_new(docs->docs[i]);
        ok = ms_coll_insert(trial, d, &rec, error);
        ms_doc_unref(d);
    }
    ms_coll_destroy(trial);
    return ok;
}

static bool
run_out(ms_cmd_t *c, const bson_value_t *spec, const ms_docvec_t *results, bson_error_t *error)
{
    const char *db, *coll;
    ms_docvec_t docs;
    ms_wctx_t w;
    bool ok = false;
    ms_docvec_init(&docs);
    if (!parse_target(c, "$out", spec, &db, &coll, error) || !with_ids(results, &docs, error)) {
        ms_docvec_destroy(&docs);
        return false;
    }
    ms_wctx_init(&w, c);
    w.db = db;
    ms_coll_t *target = ms_wctx_coll(&w, coll, false, NULL);
    if (!out_trial(&w, target, db, coll, &docs, error) ||
        !(target = target ? target : ms_wctx_coll(&w, coll, true, error))) {
        goto done;
    }
    w.bypass_validation = true; /* checked by the trial */
    while (target->head) {
        if (!ms_wctx_delete(&w, target, target->head, error)) {
            goto done;
        }
    }
    for (size_t i = 0; i < docs.len; i++) {
        if (!ms_wctx_insert(&w, target, docs.docs[i], error)) {
            goto done;
        }
    }
    ok = true;
done:
    if (!ms_wctx_commit(&w, ok ? error : NULL)) {
        ok = false;
    }
    ms_wctx_destroy(&w);
    ms_docvec_destroy(&docs);
    return ok;
}

/* ---- $merge -------------------------------------------------------------------------------- */

/* A unique index on exactly the 'on' fields (any order), as mongod requires for them. */
static bool
on_is_unique(const merge_spec_t *m, const ms_coll_t *target, bson_error_t *error)
{
    if (m->non == 1 && strcmp(m->on[0], "_id") == 0) {
        return true;
    }
    for (size_t i = 0; target && i < target->nindexes; i++) {
        const ms_index_t *ix = target->indexes[i];
        size_t found = 0;
        for (size_t j = 0; ix->unique && !ix->partial && ix->nfields == m->non && j < m->non; j++) {
            for (size_t k = 0; k < ix->nfields; k++) {
                found += strcmp(ix->paths[k], m->on[j]) == 0;
            }
        }
        if (ix->unique && !ix->partial && ix->nfields == m->non && found == m->non) {
            return true;
        }
    }
    return ms_set_error(error, MS_ERR_LOCATION51183,
                        "Cannot find index to verify that join fields will be unique");
}

/* {on1: {$eq: v1}, ...} from the document; 51132 for a missing, null or array value. */
static bool
on_filter(const merge_spec_t *m, const bson_t *doc, bson_t *filter, bson_error_t *error)
{
    bson_init(filter);
    for (size_t i = 0; i < m->non; i++) {
        bson_value_t v;
        bson_t eq;
        if (!ms_path_get(doc, m->on[i], &v) || v.value_type == BSON_TYPE_NULL ||
            v.value_type == BSON_TYPE_UNDEFINED || v.value_type == BSON_TYPE_ARRAY) {
            return ms_set_error(error, MS_ERR_LOCATION51132,
                                "$merge write error: 'on' field cannot be missing, null, "
                                "undefined or an array");
        }
        bson_append_document_begin(filter, m->on[i], -1, &eq);
        BSON_APPEND_VALUE(&eq, "$eq", &v);
        bson_append_document_end(filter, &eq);
    }
    return true;
}

/* whenMatched: "merge": the target's fields, each replaced by the source's, then the source's
 * new fields ($set of every top-level field). */
static void
merged_doc(const bson_t *target, const bson_t *src, bson_t *out)
{
    bson_iter_t it, s;
    bson_init(out);
    bson_iter_init(&it, target);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (bson_iter_init_find(&s, src, k)) {
            bson_append_iter(out, k, -1, &s);
        } else {
            bson_append_iter(out, k, -1, &it);
        }
    }
    bson_iter_init(&it, src);
    while (bson_iter_next(&it)) {
        if (!bson_has_field(target, bson_iter_key(&it))) {
            bson_append_iter(out, bson_iter_key(&it), -1, &it);
        }
    }
}

/* whenMatched: a pipeline, with $$new the source document (or the spec's let over it). */
static bool
pipeline_doc(ms_cmd_t *c, const merge_spec_t *m, const bson_t *target, const bson_t *src,
             bson_t *out, bson_error_t *error)
{
    bson_t vars = BSON_INITIALIZER;
    const bson_t *saved = c->lang.let;
    bool changed, ok = true;
    bson_init(out);
    if (!m->has_let) {
        BSON_APPEND_DOCUMENT(&vars, "new", src);
    } else {
        bson_iter_t it;
        bson_iter_init(&it, &m->let);
        while (ok && bson_iter_next(&it)) {
            bson_value_t v;
            bool missing;
            ok = ms_expr_eval(bson_iter_value(&it), src, &c->lang, &v, &missing, error);
            if (ok && !missing) {
                BSON_APPEND_VALUE(&vars, bson_iter_key(&it), &v);
            }
            bson_value_destroy(&v);
        }
    }
    c->lang.let = &vars;
    if (ok) {
        bson_destroy(out);
        ok = ms_update_apply(&m->pipeline, target, false, &c->lang, out, &changed, error);
    }
    c->lang.let = saved;
    bson_destroy(&vars);
    return ok;
}

/* {keyPattern: {on...: 1}, keyValue: {on...: src's values}} as the error's extra info. */
static void
merge_dup_info(const merge_spec_t *m, const bson_t *src)
{
    bson_t info = BSON_INITIALIZER, pattern, value;
    bson_iter_t it;
    BSON_APPEND_DOCUMENT_BEGIN(&info, "keyPattern", &pattern);
    for (size_t i = 0; i < m->non; i++) {
        BSON_APPEND_INT32(&pattern, m->on[i], 1);
    }
    bson_append_document_end(&info, &pattern);
    BSON_APPEND_DOCUMENT_BEGIN(&info, "keyValue", &value);
    for (size_t i = 0; i < m->non; i++) {
        if (bson_iter_init(&it, src) && bson_iter_find_descendant(&it, m->on[i], &it)) {
            BSON_APPEND_VALUE(&value, m->on[i], bson_iter_value(&it));
        } else {
            BSON_APPEND_NULL(&value, m->on[i]);
        }
    }
    bson_append_document_end(&info, &value);
    ms_error_info_set(&info);
    bson_destroy(&info);
}

static bool
merge_matched(ms_cmd_t *c, ms_wctx_t *w, const merge_spec_t *m, ms_coll_t *target, ms_rec_t *rec,
              const bson_t *src, bson_error_t *error)
{
    bson_t view, out;
    bool changed, ok;
    ms_doc_view(rec->doc, &view);
    if (m->matched == WM_KEEP) {
        return true;
    }
    if (m->matched == WM_FAIL) {
        /* mongod's DuplicateKey carries keyPattern and keyValue of the `on` fields
         * (crud spec aggregate-merge-errorResponse; DuplicateKeyErrorInfo). */
        merge_dup_info(m, src);
        return ms_set_error(error, MS_ERR_DUPLICATE_KEY,
                            "E11000 duplicate key error collection: %s.%s: $merge found a "
                            "matching document and whenMatched is 'fail'",
                            m->db, m->coll);
    }
    if (m->matched == WM_PIPELINE) {
        ok = pipeline_doc(c, m, &view, src, &out, error);
    } else {
        bson_t repl;
        bson_value_t u = {.value_type = BSON_TYPE_DOCUMENT};
        if (m->matched == WM_MERGE) {
            merged_doc(&view, src, &repl);
        } else {
            bson_init(&repl);
            bson_concat(&repl, src);
        }
        u.value.v_doc.data = (uint8_t *)bson_get_data(&repl);
        u.value.v_doc.data_len = repl.len;
        ok = ms_update_apply(&u, &view, false, &c->lang, &out, &changed, error);
        bson_destroy(&repl);
    }
    ok = ok && ms_wctx_replace(w, target, rec, &out, m->matched == WM_REPLACE, error);
    bson_destroy(&out);
    return ok;
}

static bool
merge_one(ms_cmd_t *c, ms_wctx_t *w, const merge_spec_t *m, ms_coll_t **target, const bson_t *src,
          bson_error_t *error)
{
    bson_t filter;
    ms_recvec_t recs = {0};
    ms_plan_t plan;
    bool ok = on_filter(m, src, &filter, error);
    ms_query_t q = {.filter = &filter, .limit = 1, .ctx = &c->lang};
    if (ok && *target) {
        ok = ms_query_exec(*target, &q, &recs, &plan, error);
    }
    if (!ok) {
        /* nothing to do */
    } else if (recs.len > 0) {
        ok = merge_matched(c, w, m, *target, recs.recs[0], src, error);
    } else if (m->not_matched == WN_FAIL) {
        ok = ms_set_error(error, MS_ERR_LOCATION13113,
                          "$merge could not find a matching document in the target collection "
                          "for at least one document in the source collection");
    } else if (m->not_matched == WN_INSERT) {
        ok = (*target || (*target = ms_wctx_coll(w, m->coll, true, error))) &&
             ms_wctx_insert(w, *target, src, error);
    }
    ms_recvec_destroy(&recs);
    bson_destroy(&filter);
    return ok;
}

static bool
run_merge(ms_cmd_t *c, const bson_value_t *spec, const ms_docvec_t *results, bson_error_t *error)
{
    merge_spec_t m;
    ms_docvec_t docs;
    ms_wctx_t w;
    bool ok = false;
    ms_docvec_init(&docs);
    if (!parse_merge(c, spec, &m, error) || !with_ids(results, &docs, error)) {
        ms_docvec_destroy(&docs);
        return false;
    }
    ms_wctx_init(&w, c);
    w.db = m.db;
    ms_coll_t *target = ms_wctx_coll(&w, m.coll, false, NULL);
    if (!on_is_unique(&m, target, error)) {
        goto done;
    }
    for (size_t i = 0; i < docs.len; i++) {
        if (!merge_one(c, &w, &m, &target, docs.docs[i], error)) {
            goto done;
        }
    }
    ok = true;
done:
    if (!ms_wctx_commit(&w, ok ? error : NULL)) {
        ok = false;
    }
    ms_wctx_destroy(&w);
    ms_docvec_destroy(&docs);
    return ok;
}

bool
ms_agg_write_stage(ms_cmd_t *c, const char *stage, const bson_value_t *spec,
                   const ms_docvec_t *results, bson_error_t *error)
{
    if (c->in_txn) {
        return ms_set_error(error, MS_ERR_OPERATION_NOT_SUPPORTED_IN_TRANSACTION,
                            "%s cannot be used in a transaction", stage);
    }
    bson_iter_t it;
    if (bson_iter_init(&it, c->cmd) && bson_iter_find_descendant(&it, "readConcern.level", &it) &&
        BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "linearizable") == 0) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "%s cannot be used with a 'linearizable' read concern level", stage);
    }
    return strcmp(stage, "$out") == 0 ? run_out(c, spec, results, error)
                                       : run_merge(c, spec, results, error);
}

/*
 * mongoq-test-server: updates. Operator updates are parsed into (operator, path, argument)
 * modifications, checked for conflicting paths, sorted by path (mongod applies them in field
 * order, so new fields appear in lexicographic order) and applied to a mutable copy of the
 * document. Replacements and pipelines produce a whole new document; _id may never change.
 * The operators themselves are rows of update_ops[] in update_ops.c.
 */
#include "update-private.h"

#include <string.h>

typedef struct {
    ms_mod_t *mods;
    size_t n;
} mods_t;

static void
mods_destroy(mods_t *m)
{
    for (size_t i = 0; i < m->n; i++) {
        ms__path_destroy(&m->mods[i].path);
    }
    bson_free(m->mods);
    m->mods = NULL;
    m->n = 0;
}

static bool
mod_add(mods_t *m, const ms_update_op_t *op, const char *field, const bson_value_t *arg,
        bool rename_target, bson_error_t *error)
{
    ms_mod_t *mod;
    m->mods = bson_realloc(m->mods, (m->n + 1) * sizeof *m->mods);
    mod = &m->mods[m->n++];
    memset(mod, 0, sizeof *mod);
    mod->op = op;
    mod->field = field;
    mod->argv = *arg;
    mod->arg = &mod->argv;
    mod->is_rename_target = rename_target;
    if (*field == '\0') {
        return ms_set_error(error, MS_ERR_EMPTY_FIELD_NAME, "An empty update path is not valid.");
    }
    if (!ms__path_init(&mod->path, field)) {
        return ms_set_error(error, MS_ERR_EMPTY_FIELD_NAME,
                            "The update path '%s' contains an empty field name, which is not "
                            "allowed.",
                            field);
    }
    for (size_t i = 0; i < mod->path.n; i++) {
        const char *id;
        size_t len;
        if (ms__update_is_positional(mod->path.parts[i], &id, &len) && !(op->flags & UOP_MOVES)) {
            continue;
        }
        if (mod->path.parts[i][0] == '$' && !(op->flags & UOP_DOLLAR_FIELDS)) {
            return ms_set_error(error, MS_ERR_DOLLAR_PREFIXED_FIELD_NAME,
                                "The dollar ($) prefixed field '%s' in '%s' is not valid for "
                                "storage.",
                                mod->path.parts[i], field);
        }
    }
    return true;
}

/* ---- parsing --------------------------------------------------------------------------- */

static int
component_cmp(const char *a, const char *b)
{
    uint32_t x, y;
    if (ms__is_index(a, strlen(a), &x) && ms__is_index(b, strlen(b), &y)) {
        return (x > y) - (x < y);
    }
    return strcmp(a, b);
}

static int
mod_cmp(const void *pa, const void *pb, void *ctx)
{
    const ms_mod_t *a = pa, *b = pb;
    (void)ctx;
    for (size_t i = 0; i < a->path.n && i < b->path.n; i++) {
        int r = component_cmp(a->path.parts[i], b->path.parts[i]);
        if (r != 0) {
            return r;
        }
    }
    return (a->path.n > b->path.n) - (a->path.n < b->path.n);
}

static bool
is_prefix(const ms_path_t *a, const ms_path_t *b)
{
    if (a->n > b->n) {
        return false;
    }
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->parts[i], b->parts[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* Sorts the modifications by path and rejects two that touch the same path or a prefix. */
static bool
sort_and_check(mods_t *m, ms_mod_t **order, bson_error_t *error)
{
    for (size_t i = 0; i < m->n; i++) {
        order[i] = &m->mods[i];
    }
    ms__stable_sort((void **)order, m->n, mod_cmp, NULL);
    for (size_t i = 1; i < m->n; i++) {
        if (is_prefix(&order[i - 1]->path, &order[i]->path)) {
            const ms_mod_t *shorter = order[i - 1], *longer = order[i];
            const ms_mod_t *later = shorter < longer ? longer : shorter;
            return ms_set_error(error, MS_ERR_CONFLICTING_UPDATE_OPERATORS,
                                "Updating the path '%s' would create a conflict at '%s'",
                                later->field, shorter->field);
        }
    }
    return true;
}

static bool
parse_operators(const bson_value_t *update, mods_t *m, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, update->value.v_doc.data, update->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *op = bson_iter_key(&it);
        const bson_value_t *fields = bson_iter_value(&it);
        const ms_update_op_t *uop = ms__update_op(op);
        bson_iter_t f;
        if (!uop) {
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                "Unknown modifier: %s. Expected a valid update modifier or "
                                "pipeline-style update specified as an array",
                                op);
        }
        if (fields->value_type != BSON_TYPE_DOCUMENT) {
            char *json = ms__value_json(fields);
            ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                         "Modifiers operate on fields but we found type %s instead. For example: "
                         "{$mod: {<field>: ...}} not {%s: %s}",
                         ms__type_name(fields->value_type), op, json);
            bson_free(json);
            return false;
        }
        bson_iter_init_from_data(&f, fields->value.v_doc.data, fields->value.v_doc.data_len);
        while (bson_iter_next(&f)) {
            const char *field = bson_iter_key(&f);
            const bson_value_t *arg = bson_iter_value(&f);
            if (!mod_add(m, uop, field, arg, false, error) ||
                (uop->validate && !uop->validate(&m->mods[m->n - 1], error))) {
                return false;
            }
            if ((uop->flags & UOP_MOVES) &&
                !mod_add(m, uop, arg->value.v_utf8.str, arg, true, error)) {
                return false;
            }
        }
    }
    for (size_t i = 0; i < m->n; i++) {
        m->mods[i].arg = &m->mods[i].argv; /* the array moved while it grew */
    }
    return true;
}

static bool
check_replacement(const bson_value_t *update, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, update->value.v_doc.data, update->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$') {
            return ms_set_error(error, MS_ERR_DOLLAR_PREFIXED_FIELD_NAME,
                                "The dollar ($) prefixed field '%s' in '%s' is not allowed in the "
                                "context of an update's replacement document. Consider using an "
                                "aggregation pipeline with $replaceWith.",
                                k, k);
        }
    }
    return true;
}

bool
ms_update_classify(const bson_value_t *update, ms_update_kind_t *kind, bson_error_t *error)
{
    bson_iter_t it;
    if (update->value_type == BSON_TYPE_ARRAY) {
        bson_t pipeline;
        *kind = MS_UPDATE_PIPELINE;
        bson_init_static(&pipeline, update->value.v_doc.data, update->value.v_doc.data_len);
        return ms__update_pipeline_validate(&pipeline, error);
    }
    if (update->value_type != BSON_TYPE_DOCUMENT) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "Update argument must be either an object or an array");
    }
    bson_iter_init_from_data(&it, update->value.v_doc.data, update->value.v_doc.data_len);
    if (!bson_iter_next(&it) || bson_iter_key(&it)[0] != '$') {
        *kind = MS_UPDATE_REPLACEMENT;
        return check_replacement(update, error);
    }
    *kind = MS_UPDATE_OPERATORS;
    mods_t m = {0};
    bool ok = parse_operators(update, &m, error);
    if (ok && m.n > 0) {
        ms_mod_t **order = bson_malloc(m.n * sizeof *order);
        ok = sort_and_check(&m, order, error);
        bson_free(order);
    }
    mods_destroy(&m);
    return ok;
}

/* ---- navigation ------------------------------------------------------------------------ */

static bool
not_viable(bson_error_t *error, const char *comp, const char *parent_key, const ms_node_t *parent)
{
    bson_value_t v;
    ms__node_to_value(parent, &v);
    char *json = ms__value_json(&v);
    ms_set_error(error, MS_ERR_PATH_NOT_VIABLE, "Cannot create field '%s' in element {%s: %s}",
                 comp, parent_key, json);
    bson_free(json);
    bson_value_destroy(&v);
    return false;
}

ms_node_t *
ms__update_null_node(void)
{
    bson_value_t v = {.value_type = BSON_TYPE_NULL};
    return ms__node_from_value(&v);
}

void
ms__update_set_child(ms_node_t *parent, const char *key, ms_node_t *val)
{
    uint32_t idx;
    if (parent->type == BSON_TYPE_ARRAY && ms__is_index(key, strlen(key), &idx)) {
        while (parent->len <= idx) {
            ms__node_push(parent, NULL, 0, ms__update_null_node());
        }
        ms__node_destroy(parent->kids[idx]);
        parent->kids[idx] = val;
        return;
    }
    ms__node_put(parent, key, strlen(key), val);
}

ms_node_t *
ms__update_resolve_parent(ms_node_t *doc, const ms_path_t *p, bool create, bool *failed,
                          bson_error_t *error)
{
    ms_node_t *cur = doc;
    const char *cur_key = "";
    *failed = false;
    for (size_t i = 0; i + 1 <= p->n; i++) {
        const char *comp = p->parts[i];
        uint32_t idx;
        bool arr_ok = cur->type != BSON_TYPE_ARRAY || ms__is_index(comp, strlen(comp), &idx);
        if ((cur->type != BSON_TYPE_DOCUMENT && cur->type != BSON_TYPE_ARRAY) || !arr_ok) {
            if (create) {
                *failed = true;
                not_viable(error, comp, cur_key, cur);
            }
            return NULL;
        }
        if (i + 1 == p->n) {
            break;
        }
        long at = ms__node_find(cur, comp, strlen(comp));
        if (at < 0) {
            if (!create) {
                return NULL;
            }
            ms__update_set_child(cur, comp, ms__node_new(BSON_TYPE_DOCUMENT));
            at = ms__node_find(cur, comp, strlen(comp));
        }
        cur = cur->kids[at];
        cur_key = comp;
    }
    return cur;
}

ms_node_t *
ms__update_child(ms_node_t *parent, const char *key)
{
    long at = ms__node_find(parent, key, strlen(key));
    return at < 0 ? NULL : parent->kids[at];
}

char *
ms__update_id_json(const ms_update_doc_t *ud)
{
    if (!ud->id) {
        return bson_strdup("{}");
    }
    char *v = ms__value_json(ud->id);
    char *s = bson_strdup_printf("{_id: %s}", v);
    bson_free(v);
    return s;
}

/* ---- applying --------------------------------------------------------------------------- */

static bool
apply_mod(const ms_update_doc_t *ud, const ms_mod_t *mod, bool is_upsert_insert,
          bson_error_t *error)
{
    const ms_update_op_t *op = mod->op;
    bool failed;
    if (mod->is_rename_target || ((op->flags & UOP_INSERT_ONLY) && !is_upsert_insert)) {
        return true;
    }
    if (op->flags & UOP_MOVES) {
        return op->apply(ud, mod, NULL, NULL, error);
    }
    if (ms__update_has_positional(mod)) {
        return ms__update_apply_positional(ud, mod, (op->flags & UOP_CREATES_PATH) != 0, error);
    }
    ms_node_t *parent = ms__update_resolve_parent(ud->doc, &mod->path,
                                                  (op->flags & UOP_CREATES_PATH) != 0, &failed,
                                                  error);
    if (!parent) {
        return !failed;
    }
    return op->apply(ud, mod, parent, mod->path.parts[mod->path.n - 1], error);
}

/* ---- whole updates --------------------------------------------------------------------- */

static bool
id_unchanged(const bson_t *before, const bson_t *after, bool *had_id)
{
    bson_value_t a, b;
    *had_id = ms__find_field(bson_get_data(before), before->len, "_id", 3, &a);
    if (!*had_id) {
        return true;
    }
    if (!ms__find_field(bson_get_data(after), after->len, "_id", 3, &b)) {
        return false;
    }
    return a.value_type == b.value_type && ms_value_cmp(&a, &b) == 0;
}

static bool
apply_operators(const bson_value_t *update, const bson_t *doc, bool is_upsert_insert,
                const ms_ctx_t *ctx, bson_t *out, bson_error_t *error)
{
    mods_t m = {0};
    ms_mod_t **order = NULL;
    bool ok = false, had_id;
    bson_value_t id;
    ms_update_doc_t ap = {.ctx = ctx, .doc = ms__node_from_bson(doc)};
    if (ms__find_field(bson_get_data(doc), doc->len, "_id", 3, &id)) {
        ap.id = &id;
    }
    if (!parse_operators(update, &m, error)) {
        goto done;
    }
    order = bson_malloc((m.n ? m.n : 1) * sizeof *order);
    if (!sort_and_check(&m, order, error)) {
        goto done;
    }
    for (size_t i = 0; i < m.n; i++) {
        if (!apply_mod(&ap, order[i], is_upsert_insert, error)) {
            goto done;
        }
    }
    bson_destroy(out);
    ms__node_to_bson(ap.doc, out);
    if (!id_unchanged(doc, out, &had_id)) {
        ms_set_error(error, MS_ERR_IMMUTABLE_FIELD,
                     "Performing an update on the path '_id' would modify the immutable field "
                     "'_id'");
        goto done;
    }
    ok = true;
done:
    bson_free(order);
    mods_destroy(&m);
    ms__node_destroy(ap.doc);
    return ok;
}

/* The new document keeps the old _id (first); a different _id is an ImmutableField error. */
static bool
finish_whole_document(const bson_t *doc, ms_node_t *repl, bson_t *out, bson_error_t *error)
{
    bson_value_t old_id;
    long at = ms__node_find(repl, "_id", 3);
    if (ms__find_field(bson_get_data(doc), doc->len, "_id", 3, &old_id)) {
        if (at < 0) {
            ms__node_push(repl, "_id", 3, ms__node_from_value(&old_id));
            at = (long)repl->len - 1;
        } else {
            bson_value_t new_id;
            ms__node_to_value(repl->kids[at], &new_id);
            bool same =
                new_id.value_type == old_id.value_type && ms_value_cmp(&new_id, &old_id) == 0;
            if (!same) {
                char *json = ms__value_json(&new_id);
                ms_set_error(error, MS_ERR_IMMUTABLE_FIELD,
                             "After applying the update, the (immutable) field '_id' was found "
                             "to have been altered to _id: %s",
                             json);
                bson_free(json);
            }
            bson_value_destroy(&new_id);
            if (!same) {
                return false;
            }
        }
    }
    if (at >= 0) {
        ms__node_move_first(repl, (size_t)at);
    }
    bson_destroy(out);
    ms__node_to_bson(repl, out);
    return true;
}

bool
ms_update_apply(const bson_value_t *update, const bson_t *doc, bool is_upsert_insert,
                const ms_ctx_t *ctx, bson_t *out, bool *changed, bson_error_t *error)
{
    ms_update_kind_t kind;
    bool ok = false;
    ms_node_t *repl = NULL;
    bson_init(out);
    *changed = false;
    if (!ms_update_classify(update, &kind, error)) {
        return false;
    }
    if (kind == MS_UPDATE_OPERATORS) {
        ok = apply_operators(update, doc, is_upsert_insert, ctx, out, error);
    } else if (kind == MS_UPDATE_REPLACEMENT) {
        repl = ms__node_from_value(update);
        ok = finish_whole_document(doc, repl, out, error);
    } else {
        bson_t pipeline, result;
        bson_init_static(&pipeline, update->value.v_doc.data, update->value.v_doc.data_len);
        if (ms__update_pipeline_apply(&pipeline, doc, ctx, &result, error)) {
            repl = ms__node_from_bson(&result);
            ok = finish_whole_document(doc, repl, out, error);
        }
        bson_destroy(&result);
    }
    ms__node_destroy(repl);
    if (!ok) {
        bson_reinit(out);
        return false;
    }
    *changed =
        out->len != doc->len || memcmp(bson_get_data(out), bson_get_data(doc), doc->len) != 0;
    return true;
}

/*
 * mongoq-test-server: the all-positional operator $[] and filtered positional operators
 * $[<identifier>] with the update's arrayFilters (manual: reference/operator/update/
 * positional-all, positional-filtered; mongod 6.0: src/mongo/db/update/update_array_node.cpp,
 * src/mongo/db/matcher/expression_with_placeholder.cpp, ParsedUpdate::parseArrayFilters in
 * src/mongo/db/ops/parsed_update.cpp).
 *
 * An element matches the filter of identifier x when the document {x: <element>} matches it, as
 * mongod's ExpressionWithPlaceholder does. The filters are checked when the statement is parsed
 * (ms_update_check_array_filters): every filter names one identifier, once, and is used; every
 * identifier in the update has a filter.
 */
#include "update-private.h"

#include <string.h>

bool
ms__update_is_positional(const char *comp, const char **id, size_t *len)
{
    size_t n = strlen(comp);
    if (n < 3 || comp[0] != '$' || comp[1] != '[' || comp[n - 1] != ']') {
        return false;
    }
    *id = comp + 2;
    *len = n - 3;
    return true;
}

/* ---- the identifier of a filter ------------------------------------------------------------ */

static bool
placeholder_of(const uint8_t *data, uint32_t len, const char **found, size_t *found_len,
               bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, data, len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$') {
            bool logical = strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 ||
                           strcmp(k, "$nor") == 0;
            bson_iter_t arr;
            if (!logical || !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &arr)) {
                continue;
            }
            while (bson_iter_next(&arr)) {
                uint32_t l;
                const uint8_t *d;
                if (BSON_ITER_HOLDS_DOCUMENT(&arr)) {
                    bson_iter_document(&arr, &l, &d);
                    if (!placeholder_of(d, l, found, found_len, error)) {
                        return false;
                    }
                }
            }
            continue;
        }
        const char *dot = strchr(k, '.');
        size_t n = dot ? (size_t)(dot - k) : strlen(k);
        if (*found && (*found_len != n || strncmp(*found, k, n) != 0)) {
            return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                "Error parsing array filter :: caused by :: Expected a single "
                                "top-level field name, found '%.*s' and '%.*s'",
                                (int)*found_len, *found, (int)n, k);
        }
        *found = k;
        *found_len = n;
    }
    return true;
}

static bool
valid_identifier(const char *id, size_t n)
{
    if (n == 0 || id[0] < 'a' || id[0] > 'z') {
        return false;
    }
    for (size_t i = 1; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))) {
            return false;
        }
    }
    return true;
}

/* The identifier filter i names (borrowed from filter). */
static bool
filter_identifier(const bson_t *filter, const char **id, size_t *n, bson_error_t *error)
{
    *id = NULL;
    *n = 0;
    if (!placeholder_of(bson_get_data(filter), filter->len, id, n, error)) {
        return false;
    }
    if (!*id) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "Cannot use an expression without a top-level field name in "
                            "arrayFilters");
    }
    if (!valid_identifier(*id, *n)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "Error parsing array filter :: caused by :: The top-level field name "
                            "must be an alphanumeric string beginning with a lowercase letter, "
                            "found '%.*s'",
                            (int)*n, *id);
    }
    return true;
}

/* ---- the filters of an update ---------------------------------------------------------------- */

typedef struct {
    const char *id; /* into filter's first key, len bytes */
    size_t len;
    char *name;     /* the identifier, NUL-terminated */
    bson_t filter;
    ms_matcher_t *matcher;
    bool used;
} array_filter_t;

typedef struct {
    array_filter_t *items;
    size_t n;
} array_filters_t;

static void
filters_destroy(array_filters_t *f)
{
    for (size_t i = 0; i < f->n; i++) {
        ms_matcher_destroy(f->items[i].matcher);
        bson_free(f->items[i].name);
    }
    bson_free(f->items);
}

static bool
filters_parse(const bson_t *raw, array_filters_t *f, bson_error_t *error)
{
    bson_iter_t it;
    memset(f, 0, sizeof *f);
    f->items = bson_malloc0((bson_count_keys(raw) + 1) * sizeof *f->items);
    bson_iter_init(&it, raw);
    while (bson_iter_next(&it)) {
        array_filter_t *af = &f->items[f->n];
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
            return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                "BSON field 'arrayFilters.%s' is the wrong type '%s', expected "
                                "type 'object'",
                                bson_iter_key(&it), ms__type_name(bson_iter_type(&it)));
        }
        bson_iter_document(&it, &len, &data);
        bson_init_static(&af->filter, data, len);
        if (!filter_identifier(&af->filter, &af->id, &af->len, error) ||
            !(af->matcher = ms_matcher_new(&af->filter, error))) {
            ms_matcher_destroy(af->matcher);
            af->matcher = NULL;
            return false;
        }
        af->name = bson_strndup(af->id, af->len);
        f->n++;
        for (size_t i = 0; i + 1 < f->n; i++) {
            if (f->items[i].len == af->len && strncmp(f->items[i].id, af->id, af->len) == 0) {
                return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                                    "Found multiple array filters with the same top-level field "
                                    "name %.*s",
                                    (int)af->len, af->id);
            }
        }
    }
    return true;
}

static array_filter_t *
filters_find(array_filters_t *f, const char *id, size_t len)
{
    for (size_t i = 0; i < f->n; i++) {
        if (f->items[i].len == len && strncmp(f->items[i].id, id, len) == 0) {
            return &f->items[i];
        }
    }
    return NULL;
}

/* Marks the filters a path uses; an identifier without a filter is BadValue. */
static bool
path_uses(array_filters_t *f, const char *path, bson_error_t *error)
{
    ms_path_t p;
    bool ok = true;
    if (!ms__path_init(&p, path)) {
        return true; /* the update's own parse reports it */
    }
    for (size_t i = 0; i < p.n && ok; i++) {
        const char *id;
        size_t len;
        array_filter_t *af;
        if (!ms__update_is_positional(p.parts[i], &id, &len) || len == 0) {
            continue;
        }
        if (!(af = filters_find(f, id, len))) {
            ok = ms_set_error(error, MS_ERR_BAD_VALUE,
                              "No array filter found for identifier '%.*s' in path '%s'",
                              (int)len, id, path);
        } else {
            af->used = true;
        }
    }
    ms__path_destroy(&p);
    return ok;
}

static bool
update_uses(array_filters_t *f, const bson_value_t *update, bson_error_t *error)
{
    bson_iter_t ops, fields;
    if (update->value_type != BSON_TYPE_DOCUMENT) {
        return true;
    }
    bson_iter_init_from_data(&ops, update->value.v_doc.data, update->value.v_doc.data_len);
    while (bson_iter_next(&ops)) {
        if (bson_iter_key(&ops)[0] != '$' || !BSON_ITER_HOLDS_DOCUMENT(&ops) ||
            !bson_iter_recurse(&ops, &fields)) {
            continue;
        }
        while (bson_iter_next(&fields)) {
            if (!path_uses(f, bson_iter_key(&fields), error)) {
                return false;
            }
        }
    }
    return true;
}

bool
ms_update_check_array_filters(const bson_value_t *update, const bson_t *array_filters,
                              bson_error_t *error)
{
    array_filters_t f;
    bool ok = false;
    if (update->value_type == BSON_TYPE_ARRAY && array_filters) {
        return ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                            "arrayFilters may not be specified for pipeline-style updates");
    }
    if (!array_filters) {
        array_filters_t none = {0};
        return update_uses(&none, update, error);
    }
    if (!filters_parse(array_filters, &f, error) || !update_uses(&f, update, error)) {
        goto done;
    }
    for (size_t i = 0; i < f.n; i++) {
        if (!f.items[i].used) {
            char *json = ms__value_json(update);
            ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                         "The array filter for identifier '%.*s' was not used in the update %s",
                         (int)f.items[i].len, f.items[i].id, json);
            bson_free(json);
            goto done;
        }
    }
    ok = true;
done:
    filters_destroy(&f);
    return ok;
}

/* ---- applying ----------------------------------------------------------------------------- */

typedef struct {
    const ms_update_doc_t *ud;
    const ms_mod_t *mod;
    array_filters_t *filters;
    bool create;
} walk_t;

static bool
element_matches(const array_filter_t *af, const ms_node_t *elem, const ms_ctx_t *ctx)
{
    bson_t doc = BSON_INITIALIZER;
    ms__node_append_to(&doc, af->name, elem);
    bool yes = ms_matcher_matches(af->matcher, &doc, ctx);
    bson_destroy(&doc);
    return yes;
}

/* The node as mongod prints it in messages; caller frees (bson_free). */
static char *
node_json(const ms_node_t *n)
{
    bson_value_t v;
    ms__node_to_value(n, &v);
    char *json = ms__value_json(&v);
    bson_value_destroy(&v);
    return json;
}

static bool walk(walk_t *w, ms_node_t *cur, size_t i, const char *cur_key, bson_error_t *error);

/* Every element of the array cur (those its filter matches) for positional component i. */
static bool
walk_elements(walk_t *w, ms_node_t *cur, size_t i, const char *id, size_t len,
              const char *cur_key, bson_error_t *error)
{
    array_filter_t *af = len ? filters_find(w->filters, id, len) : NULL;
    if (cur->type != BSON_TYPE_ARRAY) {
        char *json = node_json(cur);
        ms_set_error(error, MS_ERR_BAD_VALUE,
                     "Cannot apply array updates to non-array element %s: %s", cur_key, json);
        bson_free(json);
        return false;
    }
    for (size_t k = 0; k < cur->len; k++) {
        char buf[16];
        const char *key;
        if (len && (!af || !element_matches(af, cur->kids[k], w->ud->ctx))) {
            continue;
        }
        bson_uint32_to_string((uint32_t)k, &key, buf, sizeof buf);
        bool ok = i + 1 == w->mod->path.n ? w->mod->op->apply(w->ud, w->mod, cur, key, error)
                                          : walk(w, cur->kids[k], i + 1, key, error);
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool
must_exist(walk_t *w, size_t i, bson_error_t *error)
{
    bson_string_t *prefix = bson_string_new(NULL);
    for (size_t k = 0; k <= i; k++) {
        bson_string_append_printf(prefix, "%s%s", k ? "." : "", w->mod->path.parts[k]);
    }
    ms_set_error(error, MS_ERR_BAD_VALUE,
                 "The path '%s' must exist in the document in order to apply array updates.",
                 prefix->str);
    bson_string_free(prefix, true);
    return false;
}

static bool
walk(walk_t *w, ms_node_t *cur, size_t i, const char *cur_key, bson_error_t *error)
{
    const ms_path_t *p = &w->mod->path;
    const char *comp = p->parts[i];
    const char *id;
    size_t len;
    uint32_t idx;
    if (ms__update_is_positional(comp, &id, &len)) {
        return walk_elements(w, cur, i, id, len, cur_key, error);
    }
    bool container = cur->type == BSON_TYPE_DOCUMENT ||
                     (cur->type == BSON_TYPE_ARRAY && ms__is_index(comp, strlen(comp), &idx));
    if (!container) {
        if (!w->create) {
            return true;
        }
        char *json = node_json(cur);
        ms_set_error(error, MS_ERR_PATH_NOT_VIABLE, "Cannot create field '%s' in element {%s: %s}",
                     comp, cur_key, json);
        bson_free(json);
        return false;
    }
    if (i + 1 == p->n) {
        return w->mod->op->apply(w->ud, w->mod, cur, comp, error);
    }
    ms_node_t *child = ms__update_child(cur, comp);
    if (!child) {
        if (ms__update_is_positional(p->parts[i + 1], &id, &len)) {
            return must_exist(w, i, error);
        }
        if (!w->create) {
            return true;
        }
        ms__update_set_child(cur, comp, ms__node_new(BSON_TYPE_DOCUMENT));
        child = ms__update_child(cur, comp);
    }
    return walk(w, child, i + 1, comp, error);
}

bool
ms__update_has_positional(const ms_mod_t *mod)
{
    const char *id;
    size_t len;
    for (size_t i = 0; i < mod->path.n; i++) {
        if (ms__update_is_positional(mod->path.parts[i], &id, &len)) {
            return true;
        }
    }
    return false;
}

bool
ms__update_apply_positional(const ms_update_doc_t *ud, const ms_mod_t *mod, bool create,
                            bson_error_t *error)
{
    array_filters_t f = {0};
    walk_t w = {.ud = ud, .mod = mod, .filters = &f, .create = create};
    bool ok = (!ud->ctx->array_filters || filters_parse(ud->ctx->array_filters, &f, error)) &&
              walk(&w, ud->doc, 0, "", error);
    filters_destroy(&f);
    return ok;
}

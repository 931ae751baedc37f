/*
 * mongoq-test-server: find projections and $project/$unset/$addFields (sort order is in
 * sort.c).
 * A projection spec is parsed into a tree of fields (dotted paths and nested documents become
 * subtrees) whose leaves include, exclude or compute a value.
 */
#include "lang-private.h"

#include <math.h>
#include <string.h>

typedef enum { P_TREE, P_INCLUDE, P_EXCLUDE, P_EXPR } pkind_t;

typedef struct pnode_t pnode_t;
struct pnode_t {
    pkind_t kind;
    bson_value_t expr; /* P_EXPR, borrowed from the spec */
    size_t n;
    char **names;
    pnode_t **kids;
};

typedef struct {
    pnode_t *root;
    bool inclusion;  /* else exclusion */
    bool decided;
    bool id_excluded;
    bool id_seen;
} proj_t;

static void
pnode_destroy(pnode_t *p)
{
    if (!p) {
        return;
    }
    for (size_t i = 0; i < p->n; i++) {
        bson_free(p->names[i]);
        pnode_destroy(p->kids[i]);
    }
    bson_free(p->names);
    bson_free(p->kids);
    bson_free(p);
}

static pnode_t *
pnode_new(pkind_t kind)
{
    pnode_t *p = bson_malloc0(sizeof *p);
    p->kind = kind;
    return p;
}

static pnode_t *
pnode_child(const pnode_t *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->names[i], name) == 0) {
            return p->kids[i];
        }
    }
    return NULL;
}

static void
pnode_add(pnode_t *p, const char *name, pnode_t *kid)
{
    p->names = bson_realloc(p->names, (p->n + 1) * sizeof *p->names);
    p->kids = bson_realloc(p->kids, (p->n + 1) * sizeof *p->kids);
    p->names[p->n] = bson_strdup(name);
    p->kids[p->n++] = kid;
}

static bool
is_operator_doc(const bson_value_t *v, const char **op)
{
    bson_iter_t it;
    if (v->value_type != BSON_TYPE_DOCUMENT ||
        !bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) ||
        !bson_iter_next(&it)) {
        return false;
    }
    *op = bson_iter_key(&it);
    return (*op)[0] == '$';
}

/* Inserts leaf at the dotted path below root, reporting path collisions as mongod. */
static bool
insert_path(pnode_t *root, const char *full, pnode_t *leaf, bson_error_t *error)
{
    ms_path_t p;
    pnode_t *cur = root;
    bool ok = false;
    if (!ms__path_init(&p, full)) {
        ms_set_error(error, MS_ERR_LOCATION40352,
                     "FieldPath cannot be constructed with empty string");
        goto done;
    }
    for (size_t i = 0; i < p.n; i++) {
        pnode_t *next = pnode_child(cur, p.parts[i]);
        bool last = i + 1 == p.n;
        if (last) {
            if (next) {
                ms_set_error(error, MS_ERR_LOCATION31250, "Path collision at %s", full);
                goto done;
            }
            pnode_add(cur, p.parts[i], leaf);
            leaf = NULL;
            break;
        }
        if (next && next->kind != P_TREE) {
            ms_set_error(error, MS_ERR_LOCATION31249, "Path collision at %s remaining portion %s",
                         full, full + (p.parts[i + 1] - p.buf));
            goto done;
        }
        if (!next) {
            next = pnode_new(P_TREE);
            pnode_add(cur, p.parts[i], next);
        }
        cur = next;
    }
    ok = true;
done:
    pnode_destroy(leaf);
    ms__path_destroy(&p);
    return ok;
}

static bool parse_spec(proj_t *pj, pnode_t *into, const char *prefix, const bson_value_t *spec,
                       ms_proj_mode_t mode, bson_error_t *error);

static bool
decide(proj_t *pj, bool inclusion, const char *path, bson_error_t *error)
{
    if (!pj->decided) {
        pj->decided = true;
        pj->inclusion = inclusion;
        return true;
    }
    if (pj->inclusion == inclusion) {
        return true;
    }
    return inclusion
               ? ms_set_error(error, MS_ERR_LOCATION31253,
                              "Cannot do inclusion on field %s in exclusion projection", path)
               : ms_set_error(error, MS_ERR_LOCATION31254,
                              "Cannot do exclusion on field %s in inclusion projection", path);
}

static bool
parse_field(proj_t *pj, pnode_t *into, const char *path, const bson_value_t *v,
            ms_proj_mode_t mode, bson_error_t *error)
{
    const char *op;
    bool is_id = strcmp(path, "_id") == 0;
    size_t plen = strlen(path);
    if (plen >= 2 && strcmp(path + plen - 2, ".$") == 0) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "positional projection (%s) is not supported by the test server", path);
    }
    if (v->value_type == BSON_TYPE_BOOL || ms__is_number(v->value_type)) {
        bool include = ms__value_truthy(v);
        if (is_id) {
            pj->id_seen = true;
            pj->id_excluded = !include;
        } else if (!decide(pj, include, path, error)) {
            return false;
        }
        return insert_path(into, path, pnode_new(include ? P_INCLUDE : P_EXCLUDE), error);
    }
    if (is_operator_doc(v, &op)) {
        if (mode == MS_PROJ_FIND && (strcmp(op, "$slice") == 0 || strcmp(op, "$elemMatch") == 0 ||
                                     strcmp(op, "$meta") == 0)) {
            return ms_set_error(error, MS_ERR_BAD_VALUE,
                                "projection operator %s is not supported by the test server", op);
        }
        if (!ms__expr_validate(v, error)) {
            return false;
        }
    } else if (v->value_type == BSON_TYPE_DOCUMENT) {
        if (v->value.v_doc.data_len <= 5) {
            return ms_set_error(
                error, MS_ERR_LOCATION51270,
                "An empty sub-projection is not a valid value. Found empty object at path");
        }
        return parse_spec(pj, into, path, v, mode, error);
    } else if (!ms__expr_validate(v, error)) {
        return false;
    }
    if (pj->decided && !pj->inclusion) {
        return ms_set_error(error, MS_ERR_LOCATION31252,
                            "Cannot use expression other than $meta in exclusion projection");
    }
    if (!decide(pj, true, path, error)) {
        return false;
    }
    pnode_t *leaf = pnode_new(P_EXPR);
    leaf->expr = *v;
    if (is_id) {
        pj->id_seen = true;
        pj->id_excluded = false;
    }
    return insert_path(into, path, leaf, error);
}

static bool
parse_spec(proj_t *pj, pnode_t *into, const char *prefix, const bson_value_t *spec,
           ms_proj_mode_t mode, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        char *path = prefix ? bson_strdup_printf("%s.%s", prefix, key) : bson_strdup(key);
        bool ok;
        if (key[0] == '$') {
            ok = ms_set_error(error, MS_ERR_LOCATION31325, "Unknown projection operator %s", key);
        } else {
            ok = parse_field(pj, into, path, bson_iter_value(&it), mode, error);
        }
        bson_free(path);
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool
proj_parse(proj_t *pj, const bson_t *projection, ms_proj_mode_t mode, bson_error_t *error)
{
    bson_value_t spec = {.value_type = BSON_TYPE_DOCUMENT};
    memset(pj, 0, sizeof *pj);
    pj->root = pnode_new(P_TREE);
    spec.value.v_doc.data = (uint8_t *)bson_get_data(projection);
    spec.value.v_doc.data_len = projection->len;
    if (!parse_spec(pj, pj->root, NULL, &spec, mode, error)) {
        return false;
    }
    if (!pj->decided) {
        /* only _id (or nothing): {_id: 0} is an exclusion, {_id: 1} an inclusion */
        pj->inclusion = pj->id_seen && !pj->id_excluded;
    }
    if (pj->inclusion && !pj->id_seen) {
        pnode_t *id = pnode_new(P_INCLUDE);
        pnode_add(pj->root, "_id", id);
    }
    return true;
}

bool
ms__project_validate(const bson_t *projection, ms_proj_mode_t mode, bson_error_t *error)
{
    proj_t pj;
    if (mode == MS_PROJ_STAGE_PROJECT && bson_empty(projection)) {
        return ms_set_error(error, MS_ERR_LOCATION51272,
                            "projection specification must have at least one field");
    }
    bool ok = proj_parse(&pj, projection, mode, error);
    pnode_destroy(pj.root);
    return ok;
}

/* ---- applying -------------------------------------------------------------------------- */

typedef struct {
    const bson_t *root;
    const ms_ctx_t *ctx;
    bson_error_t *error;
    bool failed;
} papply_t;

static ms_node_t *apply_include(papply_t *pa, const pnode_t *spec, const ms_node_t *doc);
static void apply_exclude(const pnode_t *spec, ms_node_t *doc);

/* An included subtree over a value: documents recurse, arrays map, scalars vanish. */
static ms_node_t *
include_value(papply_t *pa, const pnode_t *spec, const ms_node_t *v)
{
    if (v->type == BSON_TYPE_DOCUMENT) {
        return apply_include(pa, spec, v);
    }
    if (v->type != BSON_TYPE_ARRAY) {
        return NULL;
    }
    ms_node_t *arr = ms__node_new(BSON_TYPE_ARRAY);
    for (size_t i = 0; i < v->len; i++) {
        ms_node_t *e = include_value(pa, spec, v->kids[i]);
        if (e) {
            ms__node_push(arr, NULL, 0, e);
        }
    }
    return arr;
}

static bool
has_expr(const pnode_t *spec)
{
    for (size_t i = 0; i < spec->n; i++) {
        if (spec->kids[i]->kind == P_EXPR ||
            (spec->kids[i]->kind == P_TREE && has_expr(spec->kids[i]))) {
            return true;
        }
    }
    return false;
}

static void
add_computed(papply_t *pa, const pnode_t *spec, ms_node_t *out)
{
    for (size_t i = 0; i < spec->n && !pa->failed; i++) {
        const pnode_t *kid = spec->kids[i];
        const char *name = spec->names[i];
        if (kid->kind == P_EXPR) {
            bson_value_t v;
            if (!ms__expr_eval(&kid->expr, pa->root, pa->root, pa->ctx, &v, pa->error)) {
                pa->failed = true;
                return;
            }
            if (v.value_type != BSON_TYPE_EOD) {
                ms__node_put(out, name, strlen(name), ms__node_from_value(&v));
            }
            bson_value_destroy(&v);
        } else if (kid->kind == P_TREE && has_expr(kid) &&
                   ms__node_find(out, name, strlen(name)) < 0) {
            /* a computed field below a path the document lacks creates the documents */
            ms_node_t *sub = ms__node_new(BSON_TYPE_DOCUMENT);
            add_computed(pa, kid, sub);
            ms__node_put(out, name, strlen(name), sub);
        }
    }
}

static ms_node_t *
apply_include(papply_t *pa, const pnode_t *spec, const ms_node_t *doc)
{
    ms_node_t *out = ms__node_new(BSON_TYPE_DOCUMENT);
    for (size_t i = 0; i < doc->len; i++) {
        const pnode_t *kid = pnode_child(spec, doc->keys[i]);
        ms_node_t *v = NULL;
        if (!kid || kid->kind == P_EXCLUDE) {
            continue;
        }
        if (kid->kind == P_INCLUDE) {
            v = ms__node_copy(doc->kids[i]);
        } else if (kid->kind == P_TREE) {
            v = include_value(pa, kid, doc->kids[i]);
            if (v && v->type == BSON_TYPE_DOCUMENT) {
                add_computed(pa, kid, v);
            }
        }
        if (v) {
            ms__node_push(out, doc->keys[i], strlen(doc->keys[i]), v);
        }
    }
    add_computed(pa, spec, out);
    return out;
}

static void
apply_exclude(const pnode_t *spec, ms_node_t *doc)
{
    if (doc->type == BSON_TYPE_ARRAY) {
        for (size_t i = 0; i < doc->len; i++) {
            apply_exclude(spec, doc->kids[i]);
        }
        return;
    }
    if (doc->type != BSON_TYPE_DOCUMENT) {
        return;
    }
    for (size_t i = doc->len; i-- > 0;) {
        const pnode_t *kid = pnode_child(spec, doc->keys[i]);
        if (!kid) {
            continue;
        }
        if (kid->kind == P_EXCLUDE) {
            ms__node_remove_at(doc, i);
        } else if (kid->kind == P_TREE) {
            apply_exclude(kid, doc->kids[i]);
        }
    }
}

bool
ms__project_apply(const bson_t *projection, ms_proj_mode_t mode, const bson_t *doc,
                  const ms_ctx_t *ctx, bson_t *out, bson_error_t *error)
{
    proj_t pj;
    bool ok = false;
    ms_node_t *tree = NULL, *result = NULL;
    papply_t pa = {.root = doc, .ctx = ctx, .error = error};
    if (!proj_parse(&pj, projection, mode, error)) {
        bson_init(out);
        goto done;
    }
    tree = ms__node_from_bson(doc);
    if (pj.inclusion) {
        result = apply_include(&pa, pj.root, tree);
    } else {
        apply_exclude(pj.root, tree);
        result = tree;
        tree = NULL;
    }
    if (pa.failed) {
        bson_init(out);
        goto done;
    }
    ms__node_to_bson(result, out);
    ok = true;
done:
    ms__node_destroy(tree);
    ms__node_destroy(result);
    pnode_destroy(pj.root);
    return ok;
}

bool
ms_project_validate(const bson_t *projection, bson_error_t *error)
{
    return ms__project_validate(projection, MS_PROJ_FIND, error);
}

bool
ms_project(const bson_t *projection, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
           bson_error_t *error)
{
    if (!projection || bson_empty(projection)) {
        bson_copy_to(doc, out);
        return true;
    }
    return ms__project_apply(projection, MS_PROJ_FIND, doc, ctx, out, error);
}

/* ---- $addFields / $set ----------------------------------------------------------------- */

static bool
add_fields_spec_validate(const bson_value_t *spec, int depth, bson_error_t *error)
{
    bson_iter_t it;
    const char *op;
    bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        ms_path_t p;
        bool path_ok = ms__path_init(&p, key);
        ms__path_destroy(&p);
        if (!path_ok || key[0] == '$') {
            return ms_set_error(error, key[0] == '$' ? MS_ERR_LOCATION16410 : MS_ERR_LOCATION40352,
                                "Invalid $addFields :: caused by :: FieldPath field names may not "
                                "start with '$' or be empty: '%s'",
                                key);
        }
        bool nested = v->value_type == BSON_TYPE_DOCUMENT && !is_operator_doc(v, &op);
        if (nested && depth < 50 && !add_fields_spec_validate(v, depth + 1, error)) {
            return false;
        }
        if (!nested && !ms__expr_validate(v, error)) {
            return false;
        }
    }
    return true;
}

bool
ms__add_fields_validate(const bson_t *spec, bson_error_t *error)
{
    bson_value_t v = {.value_type = BSON_TYPE_DOCUMENT};
    v.value.v_doc.data = (uint8_t *)bson_get_data(spec);
    v.value.v_doc.data_len = spec->len;
    return add_fields_spec_validate(&v, 0, error);
}

/* Sets path (from component i) in target to val; arrays map over their elements. */
static void
set_path(ms_node_t *target, const ms_path_t *p, size_t i, const ms_node_t *val)
{
    const char *key = p->parts[i];
    size_t klen = strlen(key);
    if (i + 1 == p->n) {
        ms__node_put(target, key, klen, val ? ms__node_copy(val) : ms__node_new(BSON_TYPE_DOCUMENT));
        if (!val) {
            ms__node_remove_at(target, (size_t)ms__node_find(target, key, klen));
        }
        return;
    }
    long at = ms__node_find(target, key, klen);
    ms_node_t *next = at >= 0 ? target->kids[at] : NULL;
    if (next && next->type == BSON_TYPE_ARRAY) {
        for (size_t e = 0; e < next->len; e++) {
            if (next->kids[e]->type != BSON_TYPE_DOCUMENT) {
                ms__node_destroy(next->kids[e]);
                next->kids[e] = ms__node_new(BSON_TYPE_DOCUMENT);
            }
            set_path(next->kids[e], p, i + 1, val);
        }
        return;
    }
    if (!next || next->type != BSON_TYPE_DOCUMENT) {
        if (!val) {
            return;
        }
        ms__node_put(target, key, klen, ms__node_new(BSON_TYPE_DOCUMENT));
        next = target->kids[ms__node_find(target, key, klen)];
    }
    set_path(next, p, i + 1, val);
}

static bool
add_fields_into(ms_node_t *tree, const char *prefix, const bson_value_t *spec, const bson_t *doc,
                const ms_ctx_t *ctx, bson_error_t *error)
{
    bson_iter_t it;
    const char *op;
    bson_iter_init_from_data(&it, spec->value.v_doc.data, spec->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        char *path = prefix ? bson_strdup_printf("%s.%s", prefix, bson_iter_key(&it))
                            : bson_strdup(bson_iter_key(&it));
        bool ok = true;
        if (v->value_type == BSON_TYPE_DOCUMENT && !is_operator_doc(v, &op) &&
            v->value.v_doc.data_len > 5) {
            ok = add_fields_into(tree, path, v, doc, ctx, error);
        } else {
            bson_value_t result;
            ms_path_t p;
            ok = ms__expr_eval(v, doc, doc, ctx, &result, error);
            if (ok) {
                ms_node_t *val = result.value_type == BSON_TYPE_EOD ? NULL
                                                                    : ms__node_from_value(&result);
                ms__path_init(&p, path);
                set_path(tree, &p, 0, val);
                ms__path_destroy(&p);
                ms__node_destroy(val);
                bson_value_destroy(&result);
            }
        }
        bson_free(path);
        if (!ok) {
            return false;
        }
    }
    return true;
}

bool
ms__add_fields_apply(const bson_t *spec, const bson_t *doc, const ms_ctx_t *ctx, bson_t *out,
                     bson_error_t *error)
{
    ms_node_t *tree = ms__node_from_bson(doc);
    bson_value_t v = {.value_type = BSON_TYPE_DOCUMENT};
    bool ok;
    v.value.v_doc.data = (uint8_t *)bson_get_data(spec);
    v.value.v_doc.data_len = spec->len;
    ok = add_fields_into(tree, NULL, &v, doc, ctx, error);
    if (ok) {
        ms__node_to_bson(tree, out);
    } else {
        bson_init(out);
    }
    ms__node_destroy(tree);
    return ok;
}

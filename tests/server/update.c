/*
 * mongoq-test-server: updates. Operator updates are parsed into (operator, path, argument)
 * modifications, checked for conflicting paths, sorted by path (mongod applies them in field
 * order, so new fields appear in lexicographic order) and applied to a mutable copy of the
 * document. Replacements and pipelines produce a whole new document; _id may never change.
 */
#include "lang-private.h"

#include <math.h>
#include <string.h>

typedef enum {
    M_SET,
    M_SET_ON_INSERT,
    M_UNSET,
    M_INC,
    M_MUL,
    M_MIN,
    M_MAX,
    M_CURRENT_DATE,
    M_RENAME,
    M_PUSH,
    M_ADD_TO_SET,
    M_PULL,
    M_PULL_ALL,
    M_POP
} mod_kind_t;

static const struct {
    const char *name;
    mod_kind_t kind;
} modifiers[] = {
    {"$set", M_SET},          {"$setOnInsert", M_SET_ON_INSERT}, {"$unset", M_UNSET},
    {"$inc", M_INC},          {"$mul", M_MUL},                   {"$min", M_MIN},
    {"$max", M_MAX},          {"$currentDate", M_CURRENT_DATE},  {"$rename", M_RENAME},
    {"$push", M_PUSH},        {"$addToSet", M_ADD_TO_SET},       {"$pull", M_PULL},
    {"$pullAll", M_PULL_ALL}, {"$pop", M_POP},
};

typedef struct {
    mod_kind_t kind;
    const char *op;
    const char *field;       /* the path as written */
    const bson_value_t *arg; /* points at argv once parsing is done */
    bson_value_t argv;       /* borrowed from the update */
    ms_path_t path;
    bool is_rename_target;   /* the second path of a $rename */
} mod_t;

typedef struct {
    mod_t *mods;
    size_t n;
} mods_t;

typedef struct {
    const ms_ctx_t *ctx;
    const bson_value_t *id; /* the document's _id for messages, or NULL */
    ms_node_t *doc;
} apply_t;

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
lookup_modifier(const char *name, mod_kind_t *kind)
{
    for (size_t i = 0; i < sizeof modifiers / sizeof modifiers[0]; i++) {
        if (strcmp(modifiers[i].name, name) == 0) {
            *kind = modifiers[i].kind;
            return true;
        }
    }
    return false;
}

static bool
mod_add(mods_t *m, mod_kind_t kind, const char *op, const char *field, const bson_value_t *arg,
        bool rename_target, bson_error_t *error)
{
    mod_t *mod;
    m->mods = bson_realloc(m->mods, (m->n + 1) * sizeof *m->mods);
    mod = &m->mods[m->n++];
    memset(mod, 0, sizeof *mod);
    mod->kind = kind;
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
        if (mod->path.parts[i][0] == '$' && kind != M_UNSET) {
            return ms_set_error(error, MS_ERR_DOLLAR_PREFIXED_FIELD_NAME,
                                "The dollar ($) prefixed field '%s' in '%s' is not valid for "
                                "storage.",
                                mod->path.parts[i], field);
        }
    }
    return true;
}

/* ---- argument validation --------------------------------------------------------------- */

static bool
field_error(bson_error_t *error, int code, const char *prefix, const char *field,
            const bson_value_t *arg)
{
    char *json = ms__value_json(arg);
    ms_set_error(error, code, "%s{%s: %s}", prefix, field, json);
    bson_free(json);
    return false;
}

static bool
validate_each(const char *op, const char *field, const bson_value_t *arg, bson_error_t *error)
{
    bson_iter_t it;
    bool has_each = false;
    bson_iter_init_from_data(&it, arg->value.v_doc.data, arg->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        if (strcmp(k, "$each") == 0) {
            has_each = true;
            if (v->value_type != BSON_TYPE_ARRAY) {
                return ms_set_error(
                    error, MS_ERR_BAD_VALUE,
                    "The argument to $each in %s must be an array but it was of type: %s", op,
                    ms__type_name(v->value_type));
            }
        } else if (strcmp(op, "$push") == 0 && strcmp(k, "$slice") == 0) {
            if (!ms__is_number(v->value_type)) {
                return ms_set_error(
                    error, MS_ERR_BAD_VALUE,
                    "The value for $slice must be an integer value but was given type: %s",
                    ms__type_name(v->value_type));
            }
        } else if (strcmp(op, "$push") == 0 && strcmp(k, "$position") == 0) {
            if (!ms__is_number(v->value_type)) {
                return ms_set_error(
                    error, MS_ERR_BAD_VALUE,
                    "The value for $position must be an integer value, not of type: %s",
                    ms__type_name(v->value_type));
            }
        } else if (strcmp(op, "$push") == 0 && strcmp(k, "$sort") == 0) {
            bool ok = v->value_type == BSON_TYPE_DOCUMENT ||
                      (ms__is_number(v->value_type) && fabs(ms__num_as_double(v)) == 1);
            if (!ok) {
                return ms_set_error(error, MS_ERR_BAD_VALUE,
                                    "The $sort is invalid: use 1/-1 to sort the whole element, or "
                                    "{field:1/-1} to sort embedded fields");
            }
            if (v->value_type == BSON_TYPE_DOCUMENT) {
                bson_t spec;
                bson_init_static(&spec, v->value.v_doc.data, v->value.v_doc.data_len);
                if (!ms_sort_validate(&spec, error)) {
                    return false;
                }
            }
        } else {
            return ms_set_error(error, MS_ERR_BAD_VALUE, "Unrecognized clause in %s: %s", op, k);
        }
    }
    (void)field;
    return has_each || ms_set_error(error, MS_ERR_BAD_VALUE, "%s modifiers need $each", op);
}

static bool
uses_each(const bson_value_t *arg)
{
    bson_value_t v;
    return arg->value_type == BSON_TYPE_DOCUMENT &&
           ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$each", 5, &v);
}

static bool
validate_arg(const mod_t *mod, bson_error_t *error)
{
    const bson_value_t *arg = mod->arg;
    switch (mod->kind) {
    case M_INC:
    case M_MUL:
        if (!ms__is_number(arg->value_type)) {
            return field_error(error, MS_ERR_TYPE_MISMATCH,
                               mod->kind == M_INC ? "Cannot increment with non-numeric argument: "
                                                  : "Cannot multiply with non-numeric argument: ",
                               mod->field, arg);
        }
        return true;
    case M_CURRENT_DATE:
        if (arg->value_type == BSON_TYPE_BOOL) {
            return true;
        }
        if (arg->value_type == BSON_TYPE_DOCUMENT) {
            bson_value_t t;
            if (ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$type", 5, &t) &&
                t.value_type == BSON_TYPE_UTF8 &&
                (strcmp(t.value.v_utf8.str, "date") == 0 ||
                 strcmp(t.value.v_utf8.str, "timestamp") == 0)) {
                return true;
            }
            return ms_set_error(error, MS_ERR_BAD_VALUE,
                                "The '$type' string field is required to be 'date' or 'timestamp': "
                                "{$currentDate: {field : {$type: 'date'}}}");
        }
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "%s is not valid type for $currentDate. Please use a boolean ('true') "
                            "or a $type expression ({$type: 'timestamp/date'}).",
                            ms__type_name(arg->value_type));
    case M_RENAME:
        if (arg->value_type != BSON_TYPE_UTF8) {
            return field_error(error, MS_ERR_BAD_VALUE,
                               "The 'to' field for $rename must be a string: ", mod->field, arg);
        }
        if (strcmp(arg->value.v_utf8.str, mod->field) == 0) {
            return field_error(error, MS_ERR_BAD_VALUE,
                               "The source and target field for $rename must differ: ", mod->field,
                               arg);
        }
        return true;
    case M_PUSH:
    case M_ADD_TO_SET:
        return !uses_each(arg) || validate_each(mod->op, mod->field, arg, error);
    case M_PULL_ALL:
        if (arg->value_type != BSON_TYPE_ARRAY) {
            return ms_set_error(error, MS_ERR_BAD_VALUE,
                                "$pullAll requires an array argument but was given a %s",
                                ms__type_name(arg->value_type));
        }
        return true;
    case M_POP: {
        double d = ms__num_as_double(arg);
        if (!ms__is_number(arg->value_type) || (d != 1 && d != -1)) {
            char *json = ms__value_json(arg);
            ms_set_error(error, MS_ERR_FAILED_TO_PARSE, "$pop expects 1 or -1, found: %s", json);
            bson_free(json);
            return false;
        }
        return true;
    }
    case M_PULL:
        if (arg->value_type == BSON_TYPE_DOCUMENT) {
            bson_error_t err;
            ms_matcher_t *m;
            bson_t q;
            bson_init_static(&q, arg->value.v_doc.data, arg->value.v_doc.data_len);
            bson_iter_t it;
            bool ops = bson_iter_init(&it, &q) && bson_iter_next(&it) && bson_iter_key(&it)[0] == '$';
            m = ops ? ms__matcher_new_value(arg, &err) : ms_matcher_new(&q, &err);
            if (!m) {
                if (error) {
                    *error = err;
                }
                return false;
            }
            ms_matcher_destroy(m);
        }
        return true;
    default:
        return true;
    }
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
    const mod_t *a = pa, *b = pb;
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
sort_and_check(mods_t *m, mod_t **order, bson_error_t *error)
{
    for (size_t i = 0; i < m->n; i++) {
        order[i] = &m->mods[i];
    }
    ms__stable_sort((void **)order, m->n, mod_cmp, NULL);
    for (size_t i = 1; i < m->n; i++) {
        if (is_prefix(&order[i - 1]->path, &order[i]->path)) {
            const mod_t *shorter = order[i - 1], *longer = order[i];
            const mod_t *later = shorter < longer ? longer : shorter;
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
        mod_kind_t kind;
        bson_iter_t f;
        if (!lookup_modifier(op, &kind)) {
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
            if (!mod_add(m, kind, op, field, arg, false, error) ||
                !validate_arg(&m->mods[m->n - 1], error)) {
                return false;
            }
            if (kind == M_RENAME &&
                !mod_add(m, kind, op, arg->value.v_utf8.str, arg, true, error)) {
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
        mod_t **order = bson_malloc(m.n * sizeof *order);
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

static ms_node_t *
null_node(void)
{
    bson_value_t v = {.value_type = BSON_TYPE_NULL};
    return ms__node_from_value(&v);
}

/* Sets child `key` of a document or array (padding arrays with nulls), taking val. */
static void
set_child(ms_node_t *parent, const char *key, ms_node_t *val)
{
    uint32_t idx;
    if (parent->type == BSON_TYPE_ARRAY && ms__is_index(key, strlen(key), &idx)) {
        while (parent->len <= idx) {
            ms__node_push(parent, NULL, 0, null_node());
        }
        ms__node_destroy(parent->kids[idx]);
        parent->kids[idx] = val;
        return;
    }
    ms__node_put(parent, key, strlen(key), val);
}

/*
 * The container holding the last component of path. With create, missing intermediate
 * documents are made (and arrays padded); without it a missing step yields NULL (a no-op).
 * *failed is set with error when the path cannot exist (a scalar in the way).
 */
static ms_node_t *
resolve_parent(ms_node_t *doc, const ms_path_t *p, bool create, bool *failed,
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
            set_child(cur, comp, ms__node_new(BSON_TYPE_DOCUMENT));
            at = ms__node_find(cur, comp, strlen(comp));
        }
        cur = cur->kids[at];
        cur_key = comp;
    }
    return cur;
}

static ms_node_t *
child_of(ms_node_t *parent, const char *key)
{
    long at = ms__node_find(parent, key, strlen(key));
    return at < 0 ? NULL : parent->kids[at];
}

static char *
id_json(const apply_t *ap)
{
    if (!ap->id) {
        return bson_strdup("{}");
    }
    char *v = ms__value_json(ap->id);
    char *s = bson_strdup_printf("{_id: %s}", v);
    bson_free(v);
    return s;
}

/* ---- arithmetic ------------------------------------------------------------------------ */

static void
multiply(const bson_value_t *a, const bson_value_t *b, bson_value_t *out)
{
    bool a_int = a->value_type == BSON_TYPE_INT32 || a->value_type == BSON_TYPE_INT64;
    bool b_int = b->value_type == BSON_TYPE_INT32 || b->value_type == BSON_TYPE_INT64;
    bool dec = a->value_type == BSON_TYPE_DECIMAL128 || b->value_type == BSON_TYPE_DECIMAL128;
    if (a_int && b_int) {
        int64_t x = a->value_type == BSON_TYPE_INT32 ? a->value.v_int32 : a->value.v_int64;
        int64_t y = b->value_type == BSON_TYPE_INT32 ? b->value.v_int32 : b->value.v_int64;
        long double p = (long double)x * (long double)y;
        if (p <= (long double)INT64_MAX && p >= (long double)INT64_MIN) {
            ms_sum_t s = {.kind = a->value_type == BSON_TYPE_INT64 || b->value_type == BSON_TYPE_INT64,
                          .i = x * y};
            ms__sum_value(&s, out);
            return;
        }
    }
    ms__double_value(ms__num_as_double(a) * ms__num_as_double(b), dec, out);
}

static bool
apply_arith(const apply_t *ap, const mod_t *mod, ms_node_t *parent, const char *key,
            bson_error_t *error)
{
    ms_node_t *cur = child_of(parent, key);
    bson_value_t result;
    if (cur && !ms__is_number(cur->type)) {
        char *id = id_json(ap);
        ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                     "Cannot apply %s to a value of non-numeric type. %s has the field '%s' of "
                     "non-numeric type %s",
                     mod->op, id, key, ms__type_name(cur->type));
        bson_free(id);
        return false;
    }
    if (mod->kind == M_INC) {
        ms_sum_t s = {0};
        if (cur) {
            ms__sum_add(&s, &cur->value);
        }
        ms__sum_add(&s, mod->arg);
        ms__sum_value(&s, &result);
    } else {
        bson_value_t zero = {.value_type = BSON_TYPE_INT32};
        multiply(cur ? &cur->value : &zero, mod->arg, &result);
        if (!cur && mod->arg->value_type != BSON_TYPE_INT32) {
            /* a missing field multiplies to zero of the argument's type */
            bson_value_destroy(&result);
            multiply(mod->arg, &zero, &result);
        }
    }
    set_child(parent, key, ms__node_from_value(&result));
    bson_value_destroy(&result);
    return true;
}

/* ---- arrays ---------------------------------------------------------------------------- */

static bool
array_or_missing(const apply_t *ap, const mod_t *mod, ms_node_t *parent, const char *key,
                 ms_node_t **arr, bson_error_t *error)
{
    ms_node_t *cur = child_of(parent, key);
    *arr = cur;
    if (!cur || cur->type == BSON_TYPE_ARRAY) {
        return true;
    }
    char *id = id_json(ap);
    if (mod->kind == M_PUSH) {
        ms_set_error(error, MS_ERR_BAD_VALUE,
                     "The field '%s' must be an array but is of type %s in document %s", key,
                     ms__type_name(cur->type), id);
    } else if (mod->kind == M_ADD_TO_SET) {
        ms_set_error(error, MS_ERR_BAD_VALUE,
                     "Cannot apply $addToSet to non-array field. Field named '%s' has non-array "
                     "type %s",
                     key, ms__type_name(cur->type));
    } else if (mod->kind == M_POP) {
        ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                     "Path '%s' contains an element of non-array type '%s'", mod->field,
                     ms__type_name(cur->type));
    } else {
        ms_set_error(error, MS_ERR_BAD_VALUE, "Cannot apply %s to a non-array value", mod->op);
    }
    bson_free(id);
    return false;
}

typedef struct {
    const bson_t *spec;
    int direction; /* 0: by the spec document */
} push_sort_t;

static int
push_sort_cmp(const void *pa, const void *pb, void *ctx)
{
    const ms_node_t *a = pa, *b = pb;
    const push_sort_t *ps = ctx;
    if (ps->direction != 0) {
        return ps->direction * ms__node_cmp(a, b);
    }
    bson_t da = BSON_INITIALIZER, db = BSON_INITIALIZER;
    if (a->type == BSON_TYPE_DOCUMENT) {
        bson_destroy(&da);
        ms__node_to_bson(a, &da);
    }
    if (b->type == BSON_TYPE_DOCUMENT) {
        bson_destroy(&db);
        ms__node_to_bson(b, &db);
    }
    int r = ms_sort_cmp(ps->spec, &da, &db);
    bson_destroy(&da);
    bson_destroy(&db);
    return r;
}

/* $push's $each, $position, $sort and $slice, in that order of effect. */
static void
push_each(ms_node_t *arr, const bson_value_t *arg)
{
    bson_value_t each, slice, position, sort;
    bool has_slice = ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$slice", 6, &slice);
    bool has_pos = ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$position", 9, &position);
    bool has_sort = ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$sort", 5, &sort);
    ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$each", 5, &each);
    ms_node_t *items = ms__node_from_value(&each);
    int64_t pos = (int64_t)arr->len;
    if (has_pos) {
        int64_t p = ms__clamp_i64(ms__num_as_double(&position));
        pos = p < 0 ? (int64_t)arr->len + p : p;
        pos = pos < 0 ? 0 : pos > (int64_t)arr->len ? (int64_t)arr->len : pos;
    }
    for (size_t i = 0; i < items->len; i++) {
        ms__node_push(arr, NULL, 0, items->kids[i]);
        /* rotate the new element into place */
        size_t at = (size_t)pos + i;
        ms_node_t *kid = arr->kids[arr->len - 1];
        memmove(arr->kids + at + 1, arr->kids + at, (arr->len - 1 - at) * sizeof *arr->kids);
        arr->kids[at] = kid;
    }
    items->len = 0;
    ms__node_destroy(items);
    if (has_sort) {
        bson_t spec = BSON_INITIALIZER;
        push_sort_t ps = {.spec = &spec, .direction = 0};
        if (sort.value_type == BSON_TYPE_DOCUMENT) {
            bson_destroy(&spec);
            bson_init_static(&spec, sort.value.v_doc.data, sort.value.v_doc.data_len);
        } else {
            ps.direction = ms__num_as_double(&sort) < 0 ? -1 : 1;
        }
        ms__stable_sort((void **)arr->kids, arr->len, push_sort_cmp, &ps);
        bson_destroy(&spec);
    }
    if (has_slice) {
        int64_t s = ms__clamp_i64(ms__num_as_double(&slice));
        size_t keep = (size_t)(s < 0 ? -s : s);
        while (arr->len > keep) {
            ms__node_remove_at(arr, s < 0 ? 0 : arr->len - 1);
        }
    }
}

static bool
contains(const ms_node_t *arr, const bson_value_t *v)
{
    ms_node_t *n = ms__node_from_value(v);
    bool found = false;
    for (size_t i = 0; i < arr->len && !found; i++) {
        found = ms_type_rank(arr->kids[i]->type) == ms_type_rank(n->type) &&
                ms__node_cmp(arr->kids[i], n) == 0;
    }
    ms__node_destroy(n);
    return found;
}

static void
add_to_set(ms_node_t *arr, const bson_value_t *arg)
{
    bson_value_t each;
    if (!uses_each(arg)) {
        if (!contains(arr, arg)) {
            ms__node_push(arr, NULL, 0, ms__node_from_value(arg));
        }
        return;
    }
    bson_iter_t it;
    ms__find_field(arg->value.v_doc.data, arg->value.v_doc.data_len, "$each", 5, &each);
    bson_iter_init_from_data(&it, each.value.v_doc.data, each.value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        if (!contains(arr, bson_iter_value(&it))) {
            ms__node_push(arr, NULL, 0, ms__node_from_value(bson_iter_value(&it)));
        }
    }
}

static bool
pull_matches(const bson_value_t *cond, const ms_matcher_t *m, const ms_node_t *e,
             const ms_ctx_t *ctx)
{
    bson_value_t v;
    bool r;
    ms__node_to_value(e, &v);
    if (!m) {
        r = ms_type_rank(v.value_type) == ms_type_rank(cond->value_type) &&
            ms_value_cmp(&v, cond) == 0;
    } else if (cond->value_type == BSON_TYPE_DOCUMENT && !ms__matcher_is_value(m)) {
        bson_t doc;
        r = v.value_type == BSON_TYPE_DOCUMENT &&
            bson_init_static(&doc, v.value.v_doc.data, v.value.v_doc.data_len) &&
            ms_matcher_matches(m, &doc, ctx);
    } else {
        r = ms__matcher_matches_value(m, &v, ctx);
    }
    bson_value_destroy(&v);
    return r;
}

static void
pull(ms_node_t *arr, const mod_t *mod, const ms_ctx_t *ctx)
{
    ms_matcher_t *m = NULL;
    const bson_value_t *cond = mod->arg;
    if (mod->kind == M_PULL && cond->value_type == BSON_TYPE_DOCUMENT) {
        bson_iter_t it;
        bson_t q;
        bson_init_static(&q, cond->value.v_doc.data, cond->value.v_doc.data_len);
        bool ops = bson_iter_init(&it, &q) && bson_iter_next(&it) && bson_iter_key(&it)[0] == '$';
        m = ops ? ms__matcher_new_value(cond, NULL) : ms_matcher_new(&q, NULL);
    }
    for (size_t i = arr->len; i-- > 0;) {
        bool remove = false;
        if (mod->kind == M_PULL) {
            remove = pull_matches(cond, m, arr->kids[i], ctx);
        } else {
            bson_iter_t it;
            bson_iter_init_from_data(&it, cond->value.v_doc.data, cond->value.v_doc.data_len);
            while (!remove && bson_iter_next(&it)) {
                remove = pull_matches(bson_iter_value(&it), NULL, arr->kids[i], ctx);
            }
        }
        if (remove) {
            ms__node_remove_at(arr, i);
        }
    }
    ms_matcher_destroy(m);
}

static bool
apply_array(const apply_t *ap, const mod_t *mod, ms_node_t *parent, const char *key,
            bson_error_t *error)
{
    ms_node_t *arr;
    if (!array_or_missing(ap, mod, parent, key, &arr, error)) {
        return false;
    }
    if (!arr) {
        if (mod->kind != M_PUSH && mod->kind != M_ADD_TO_SET) {
            return true; /* pulling or popping from nothing is a no-op */
        }
        set_child(parent, key, ms__node_new(BSON_TYPE_ARRAY));
        arr = child_of(parent, key);
    }
    switch (mod->kind) {
    case M_PUSH:
        if (uses_each(mod->arg)) {
            push_each(arr, mod->arg);
        } else {
            ms__node_push(arr, NULL, 0, ms__node_from_value(mod->arg));
        }
        break;
    case M_ADD_TO_SET:
        add_to_set(arr, mod->arg);
        break;
    case M_POP:
        if (arr->len > 0) {
            ms__node_remove_at(arr, ms__num_as_double(mod->arg) > 0 ? arr->len - 1 : 0);
        }
        break;
    default:
        pull(arr, mod, ap->ctx);
        break;
    }
    return true;
}

/* ---- applying one modification --------------------------------------------------------- */

static void
current_date(const apply_t *ap, const mod_t *mod, ms_node_t *parent, const char *key)
{
    bson_value_t v = {.value_type = BSON_TYPE_DATE_TIME};
    bson_value_t t;
    v.value.v_datetime = ap->ctx->now_ms;
    if (mod->arg->value_type == BSON_TYPE_DOCUMENT &&
        ms__find_field(mod->arg->value.v_doc.data, mod->arg->value.v_doc.data_len, "$type", 5, &t) &&
        strcmp(t.value.v_utf8.str, "timestamp") == 0) {
        v.value_type = BSON_TYPE_TIMESTAMP;
        v.value.v_timestamp.timestamp =
            ap->ctx->cluster_time_t ? ap->ctx->cluster_time_t : (uint32_t)(ap->ctx->now_ms / 1000);
        v.value.v_timestamp.increment = ap->ctx->cluster_time_t ? ap->ctx->cluster_time_i : 1;
    }
    set_child(parent, key, ms__node_from_value(&v));
}

static bool
apply_min_max(const mod_t *mod, ms_node_t *parent, const char *key)
{
    ms_node_t *cur = child_of(parent, key);
    ms_node_t *arg = ms__node_from_value(mod->arg);
    int c = cur ? ms__node_cmp(arg, cur) : 0;
    if (!cur || (mod->kind == M_MIN ? c < 0 : c > 0)) {
        set_child(parent, key, arg);
    } else {
        ms__node_destroy(arg);
    }
    return true;
}

static bool
apply_rename(const apply_t *ap, const mod_t *mod, bson_error_t *error)
{
    ms_path_t target;
    bool failed, ok = false;
    ms_node_t *src_parent = resolve_parent(ap->doc, &mod->path, false, &failed, error);
    const char *src_key = mod->path.parts[mod->path.n - 1];
    long at = src_parent && src_parent->type == BSON_TYPE_DOCUMENT
                  ? ms__node_find(src_parent, src_key, strlen(src_key))
                  : -1;
    if (at < 0) {
        return true; /* renaming a missing field does nothing */
    }
    ms_node_t *moved = src_parent->kids[at];
    src_parent->kids[at] = null_node();
    ms__node_remove_at(src_parent, (size_t)at);
    ms__path_init(&target, mod->arg->value.v_utf8.str);
    ms_node_t *dst_parent = resolve_parent(ap->doc, &target, true, &failed, error);
    if (dst_parent) {
        set_child(dst_parent, target.parts[target.n - 1], moved);
        moved = NULL;
        ok = true;
    }
    ms__node_destroy(moved);
    ms__path_destroy(&target);
    return ok;
}

static bool
apply_mod(const apply_t *ap, const mod_t *mod, bool is_upsert_insert, bson_error_t *error)
{
    bool failed;
    if (mod->kind == M_RENAME) {
        return mod->is_rename_target || apply_rename(ap, mod, error);
    }
    if (mod->kind == M_SET_ON_INSERT && !is_upsert_insert) {
        return true;
    }
    bool create = mod->kind != M_UNSET && mod->kind != M_PULL && mod->kind != M_PULL_ALL &&
                  mod->kind != M_POP;
    ms_node_t *parent = resolve_parent(ap->doc, &mod->path, create, &failed, error);
    const char *key = mod->path.parts[mod->path.n - 1];
    if (!parent) {
        return !failed;
    }
    switch (mod->kind) {
    case M_SET:
    case M_SET_ON_INSERT:
        set_child(parent, key, ms__node_from_value(mod->arg));
        return true;
    case M_UNSET: {
        long at = ms__node_find(parent, key, strlen(key));
        if (at >= 0 && parent->type == BSON_TYPE_DOCUMENT) {
            ms__node_remove_at(parent, (size_t)at);
        } else if (at >= 0) {
            set_child(parent, key, null_node()); /* array elements become null */
        }
        return true;
    }
    case M_INC:
    case M_MUL:
        return apply_arith(ap, mod, parent, key, error);
    case M_MIN:
    case M_MAX:
        return apply_min_max(mod, parent, key);
    case M_CURRENT_DATE:
        current_date(ap, mod, parent, key);
        return true;
    default:
        return apply_array(ap, mod, parent, key, error);
    }
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
    mod_t **order = NULL;
    bool ok = false, had_id;
    bson_value_t id;
    apply_t ap = {.ctx = ctx, .doc = ms__node_from_bson(doc)};
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
            bool same = new_id.value_type == old_id.value_type && ms_value_cmp(&new_id, &old_id) == 0;
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
    *changed = out->len != doc->len || memcmp(bson_get_data(out), bson_get_data(doc), doc->len) != 0;
    return true;
}

/* ---- upsert seed ----------------------------------------------------------------------- */

static bool
seed_field(ms_node_t *seed, const char *path, const bson_value_t *v, bson_error_t *error)
{
    ms_path_t p;
    bool failed, ok = false;
    if (!ms__path_init(&p, path)) {
        ms__path_destroy(&p);
        return true;
    }
    ms_node_t *parent = resolve_parent(seed, &p, true, &failed, error);
    if (!parent) {
        ms_set_error(error, MS_ERR_NOT_SINGLE_VALUE_FIELD,
                     "cannot infer query fields to set, path '%s' is matched twice", path);
        goto done;
    }
    const char *key = p.parts[p.n - 1];
    if (ms__node_find(parent, key, strlen(key)) >= 0) {
        ms_set_error(error, MS_ERR_NOT_SINGLE_VALUE_FIELD,
                     "cannot infer query fields to set, path '%s' is matched twice", path);
        goto done;
    }
    set_child(parent, key, ms__node_from_value(v));
    ok = true;
done:
    ms__path_destroy(&p);
    return ok;
}

static bool
seed_from(ms_node_t *seed, const bson_value_t *query, int depth, bson_error_t *error)
{
    bson_iter_t it;
    if (depth > 20) {
        return true;
    }
    bson_iter_init_from_data(&it, query->value.v_doc.data, query->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        const bson_value_t *v = bson_iter_value(&it);
        bson_value_t eq;
        if (strcmp(key, "$and") == 0 && v->value_type == BSON_TYPE_ARRAY) {
            bson_iter_t ai;
            bson_iter_init_from_data(&ai, v->value.v_doc.data, v->value.v_doc.data_len);
            while (bson_iter_next(&ai)) {
                if (bson_iter_value(&ai)->value_type == BSON_TYPE_DOCUMENT &&
                    !seed_from(seed, bson_iter_value(&ai), depth + 1, error)) {
                    return false;
                }
            }
            continue;
        }
        if (key[0] == '$' || v->value_type == BSON_TYPE_REGEX) {
            continue;
        }
        bson_iter_t first;
        bool ops = v->value_type == BSON_TYPE_DOCUMENT &&
                   bson_iter_init_from_data(&first, v->value.v_doc.data, v->value.v_doc.data_len) &&
                   bson_iter_next(&first) && bson_iter_key(&first)[0] == '$';
        if (!ops) {
            eq = *v;
        } else if (!ms__find_field(v->value.v_doc.data, v->value.v_doc.data_len, "$eq", 3, &eq)) {
            continue;
        }
        if (!seed_field(seed, key, &eq, error)) {
            return false;
        }
    }
    return true;
}

bool
ms_update_upsert_seed(const bson_t *query, bson_t *out, bson_error_t *error)
{
    ms_node_t *seed = ms__node_new(BSON_TYPE_DOCUMENT);
    bson_value_t q = {.value_type = BSON_TYPE_DOCUMENT};
    bool ok;
    q.value.v_doc.data = (uint8_t *)bson_get_data(query);
    q.value.v_doc.data_len = query->len;
    ok = seed_from(seed, &q, 0, error);
    long at = ms__node_find(seed, "_id", 3);
    if (at > 0) {
        ms__node_move_first(seed, (size_t)at);
    }
    if (ok) {
        ms__node_to_bson(seed, out);
    } else {
        bson_init(out);
    }
    ms__node_destroy(seed);
    return ok;
}

/* ---- update description ---------------------------------------------------------------- */

static void
describe(const bson_value_t *before, const bson_value_t *after, const char *prefix,
         bson_t *updated, bson_t *removed, uint32_t *nremoved)
{
    bson_iter_t it;
    bson_iter_init_from_data(&it, after->value.v_doc.data, after->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const bson_value_t *nv = bson_iter_value(&it);
        bson_value_t ov;
        char *path = *prefix ? bson_strdup_printf("%s.%s", prefix, k) : bson_strdup(k);
        bool had = ms__find_field(before->value.v_doc.data, before->value.v_doc.data_len, k,
                                  strlen(k), &ov);
        if (had && ov.value_type == BSON_TYPE_DOCUMENT && nv->value_type == BSON_TYPE_DOCUMENT) {
            describe(&ov, nv, path, updated, removed, nremoved);
        } else if (!had || ov.value_type != nv->value_type || ms_value_cmp(&ov, nv) != 0) {
            bson_append_value(updated, path, -1, nv);
        }
        bson_free(path);
    }
    bson_iter_init_from_data(&it, before->value.v_doc.data, before->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bson_value_t nv;
        if (!ms__find_field(after->value.v_doc.data, after->value.v_doc.data_len, k, strlen(k),
                            &nv)) {
            char buf[16];
            const char *key;
            char *path = *prefix ? bson_strdup_printf("%s.%s", prefix, k) : bson_strdup(k);
            bson_uint32_to_string((*nremoved)++, &key, buf, sizeof buf);
            bson_append_utf8(removed, key, -1, path, -1);
            bson_free(path);
        }
    }
}

void
ms_update_description(const bson_t *before, const bson_t *after, bson_t *out)
{
    bson_t updated = BSON_INITIALIZER, removed = BSON_INITIALIZER, truncated = BSON_INITIALIZER;
    bson_value_t b = {.value_type = BSON_TYPE_DOCUMENT}, a = {.value_type = BSON_TYPE_DOCUMENT};
    uint32_t nremoved = 0;
    b.value.v_doc.data = (uint8_t *)bson_get_data(before);
    b.value.v_doc.data_len = before->len;
    a.value.v_doc.data = (uint8_t *)bson_get_data(after);
    a.value.v_doc.data_len = after->len;
    describe(&b, &a, "", &updated, &removed, &nremoved);
    bson_init(out);
    bson_append_document(out, "updatedFields", -1, &updated);
    bson_append_array(out, "removedFields", -1, &removed);
    bson_append_array(out, "truncatedArrays", -1, &truncated);
    bson_destroy(&updated);
    bson_destroy(&removed);
    bson_destroy(&truncated);
}

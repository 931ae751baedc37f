/*
 * Index specifications: parsing and validating a createIndexes spec into an empty index, the
 * spec as listIndexes shows it, and how a requested index compares with an existing one
 * (mongod 6.0's IndexCatalogImpl::_isSpecOk / _fixIndexSpec in
 * src/mongo/db/catalog/index_catalog_impl.cpp and IndexDescriptor::compareIndexOptions in
 * src/mongo/db/index/index_descriptor.cpp).
 */
#include "crud-private.h"
#include "store-private.h"

#include <math.h>
#include <string.h>

static const char *const spec_fields[] = {
    "v", "key", "name", "unique", "sparse", "partialFilterExpression", "expireAfterSeconds",
    "background", "ns", "hidden", "collation", NULL};

static bool
known_spec_field(const char *f)
{
    for (int i = 0; spec_fields[i]; i++) {
        if (strcmp(spec_fields[i], f) == 0) {
            return true;
        }
    }
    return false;
}

static char *
key_value_name(const bson_iter_t *it)
{
    if (BSON_ITER_HOLDS_UTF8(it)) {
        return bson_strdup(bson_iter_utf8(it, NULL));
    }
    double d = bson_iter_as_double(it);
    if (d == floor(d) && fabs(d) < 1e15) {
        return bson_strdup_printf("%lld", (long long)d);
    }
    return bson_strdup_printf("%g", d);
}

char *
ms_index_default_name(const bson_t *key)
{
    char *acc = bson_strdup("");
    bson_iter_t it;
    if (bson_iter_init(&it, key)) {
        while (bson_iter_next(&it)) {
            char *part = key_value_name(&it);
            char *s = bson_strdup_printf("%s%s%s_%s", acc, *acc ? "_" : "", bson_iter_key(&it),
                                         part);
            bson_free(part);
            bson_free(acc);
            acc = s;
        }
    }
    return acc;
}

static bool
parse_key(ms_index_t *ix, const bson_t *key, bson_error_t *error)
{
    bson_iter_t it;
    size_t n = bson_count_keys(key);
    if (n == 0 || n > 32) {
        return ms_set_error(error, MS_ERR_CANNOT_CREATE_INDEX,
                            "Index keys cannot be an empty field.");
    }
    ix->paths = bson_malloc0(sizeof *ix->paths * n);
    ix->dirs = bson_malloc0(sizeof *ix->dirs * n);
    bson_iter_init(&it, key);
    while (bson_iter_next(&it)) {
        const char *path = bson_iter_key(&it);
        if (!*path || path[0] == '$' || strstr(path, "..") || path[strlen(path) - 1] == '.') {
            return ms_set_error(error, MS_ERR_CANNOT_CREATE_INDEX,
                                "Index key contains an illegal field name: '%s'", path);
        }
        if (BSON_ITER_HOLDS_UTF8(&it)) {
            return ms_set_error(error, MS_ERR_CANNOT_CREATE_INDEX,
                                "Unknown index plugin '%s' (mongoq-test-server only "
                                "supports ascending and descending keys)",
                                bson_iter_utf8(&it, NULL));
        }
        if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_double(&it) == 0 ||
            isnan(bson_iter_as_double(&it))) {
            return ms_set_error(error, MS_ERR_CANNOT_CREATE_INDEX,
                                "Values in the index key pattern can't be 0 and must "
                                "be numbers; bad key: '%s'",
                                path);
        }
        ix->paths[ix->nfields] = bson_strdup(path);
        ix->dirs[ix->nfields] = bson_iter_as_double(&it) > 0 ? 1 : -1;
        ix->nfields++;
    }
    return true;
}

/* What parse_options collected that is checked once every field is known. */
typedef struct {
    bool has_partial;
    bson_iter_t partial; /* the partialFilterExpression element */
} spec_extra_t;

static bool
parse_ttl(ms_index_t *ix, const bson_iter_t *it, bson_error_t *error)
{
    if (!BSON_ITER_HOLDS_NUMBER(it) || bson_iter_as_double(it) < 0 ||
        bson_iter_as_double(it) > 2147483647.0) {
        return ms_set_error(error, MS_ERR_CANNOT_CREATE_INDEX,
                            "TTL index 'expireAfterSeconds' option must be numeric "
                            "and between 0 and 2147483647");
    }
    ix->has_ttl = true;
    ix->expire_after_secs = bson_iter_as_int64(it);
    return true;
}

static bool
parse_options(ms_index_t *ix, const bson_t *spec, spec_extra_t *extra, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *f = bson_iter_key(&it);
        if (!known_spec_field(f)) {
            return ms_set_error(error, MS_ERR_INVALID_INDEX_SPECIFICATION_OPTION,
                                "The field '%s' is not valid for an index "
                                "specification.",
                                f);
        }
        if (strcmp(f, "collation") == 0 && !ms_crud_refuse_unsupported(spec, "index", error)) {
            return false;
        }
        if (strcmp(f, "unique") == 0) {
            ix->unique = ix->unique || bson_iter_as_bool(&it);
        } else if (strcmp(f, "sparse") == 0) {
            ix->sparse = bson_iter_as_bool(&it);
        } else if (strcmp(f, "hidden") == 0 && bson_iter_as_bool(&it)) {
            return ms_set_error(error, MS_ERR_NOT_IMPLEMENTED,
                                "hidden indexes are not supported by "
                                "mongoq-test-server");
        } else if (strcmp(f, "expireAfterSeconds") == 0 && !parse_ttl(ix, &it, error)) {
            return false;
        } else if (strcmp(f, "partialFilterExpression") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                    "The field 'partialFilterExpression' must be an "
                                    "object");
            }
            extra->has_partial = true;
            extra->partial = it;
        }
    }
    return true;
}

/*
 * mongod's IndexCatalogImpl::_isSpecOk for a partial filter
 * (src/mongo/db/catalog/index_catalog_impl.cpp): not with sparse, parsed without $expr and
 * friends, then only the expressions a partial index may hold. The reason is wrapped as
 * prepareSpecForCreate does: "Error in specification <spec> :: caused by :: <reason>".
 */
static bool
parse_partial(ms_index_t *ix, const bson_t *spec, spec_extra_t *extra, bson_error_t *error)
{
    bson_error_t why;
    bson_t filter;
    uint32_t len;
    const uint8_t *data;
    if (!extra->has_partial) {
        return true;
    }
    bson_iter_document(&extra->partial, &len, &data);
    bson_init_static(&filter, data, len);
    if (ix->sparse) {
        ms_set_error(&why, MS_ERR_CANNOT_CREATE_INDEX,
                     "cannot mix \"partialFilterExpression\" and \"sparse\" options");
    } else if (ms_partial_filter_check(&filter, &why) &&
               (ix->partial = ms_matcher_new(&filter, &why)) != NULL) {
        return true;
    }
    /* The original spec as mongod prints it: as given, with the index version appended. */
    bson_t *original = bson_copy(spec);
    if (!bson_has_field(original, "v")) {
        BSON_APPEND_INT32(original, "v", 2);
    }
    char *text = ms_render_doc(original);
    ms_set_error(error, (int)why.code, "Error in specification %s :: caused by :: %s", text,
                 why.message);
    bson_free(text);
    bson_destroy(original);
    return false;
}

/* {_id: 1} or {_id: -1}: mongod's IndexDescriptor::isIdIndexPattern. */
static bool
is_id_pattern(const bson_t *key)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, key) || !bson_iter_next(&it) || strcmp(bson_iter_key(&it), "_id") ||
        !BSON_ITER_HOLDS_NUMBER(&it)) {
        return false;
    }
    double d = bson_iter_as_double(&it);
    return (d == 1 || d == -1) && !bson_iter_next(&it);
}

/*
 * The spec as mongod stores and lists it (IndexCatalogImpl::_fixIndexSpec): v, unique (only
 * when true), key, name, then the other options as given, without ns and dropDups, nor the
 * simple collation (the only one taken here; mongod lists no collation for it).
 */
static void
build_listed_spec(ms_index_t *ix, const bson_t *spec)
{
    bson_iter_t it;
    ix->spec = bson_new();
    BSON_APPEND_INT32(ix->spec, "v", 2);
    if (ix->unique && !is_id_pattern(ix->key)) {
        BSON_APPEND_BOOL(ix->spec, "unique", true);
    }
    BSON_APPEND_DOCUMENT(ix->spec, "key", ix->key);
    BSON_APPEND_UTF8(ix->spec, "name", ix->name);
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *f = bson_iter_key(&it);
        if (strcmp(f, "v") && strcmp(f, "key") && strcmp(f, "name") && strcmp(f, "ns") &&
            strcmp(f, "background") && strcmp(f, "unique") && strcmp(f, "dropDups") &&
            strcmp(f, "collation")) {
            bson_append_iter(ix->spec, NULL, 0, &it);
        }
    }
}

ms_index_t *
ms_index_new(const bson_t *spec, bson_error_t *error)
{
    ms_index_t *ix = ms__index_alloc();
    spec_extra_t extra = {0};
    bson_iter_t it;
    if (!bson_iter_init_find(&it, spec, "key") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        ms_set_error(error, MS_ERR_FAILED_TO_PARSE,
                     "The 'key' field is a required property of an index "
                     "specification");
        goto fail;
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    ix->key = bson_new_from_data(data, len);
    ix->unique = is_id_pattern(ix->key);
    if (!parse_key(ix, ix->key, error) || !parse_options(ix, spec, &extra, error) ||
        !parse_partial(ix, spec, &extra, error)) {
        goto fail;
    }
    if (is_id_pattern(ix->key)) {
        ix->name = bson_strdup("_id_");
    } else if (bson_iter_init_find(&it, spec, "name") && BSON_ITER_HOLDS_UTF8(&it)) {
        ix->name = bson_strdup(bson_iter_utf8(&it, NULL));
    } else {
        ix->name = ms_index_default_name(ix->key);
    }
    if (!*ix->name) {
        ms_set_error(error, MS_ERR_CANNOT_CREATE_INDEX, "The index name cannot be empty");
        goto fail;
    }
    build_listed_spec(ix, spec);
    return ix;
fail:
    ms_index_destroy(ix);
    return NULL;
}

void
ms_index_set_ttl(ms_index_t *ix, int64_t expire_after_secs)
{
    /* As mongod's catalog: the old field goes, the new value is appended as a long. */
    bson_t *spec = bson_new();
    bson_iter_t it;
    bson_iter_init(&it, ix->spec);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "expireAfterSeconds") != 0) {
            bson_append_iter(spec, NULL, 0, &it);
        }
    }
    BSON_APPEND_INT64(spec, "expireAfterSeconds", expire_after_secs);
    bson_destroy(ix->spec);
    ix->spec = spec;
    ix->has_ttl = true;
    ix->expire_after_secs = expire_after_secs;
}

/* ---- equivalence ------------------------------------------------------------------------- */

/*
 * A valid partial filter normalises (MatchExpression::optimize, sortTree) to a flat $and of
 * atoms: path, operator, operand. Two filters are equivalent when their atoms are the same
 * multiset; operands compare as BSON values (numbers by value); $type compares type sets.
 */
typedef struct {
    const char *path;
    const char *op;
    bson_value_t v;
} atom_t;

typedef struct {
    atom_t *atoms;
    size_t n;
    size_t cap;
} atoms_t;

static void
atom_push(atoms_t *a, const char *path, const char *op, const bson_value_t *v)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 8;
        a->atoms = bson_realloc(a->atoms, sizeof *a->atoms * a->cap);
    }
    a->atoms[a->n].path = path;
    a->atoms[a->n].op = strcmp(op, "$exists") == 0 ? "$exists" : op;
    a->atoms[a->n].v = *v;
    a->n++;
}

static void collect_doc(const uint8_t *data, uint32_t len, atoms_t *a);

static void
collect_field(const char *path, const bson_value_t *v, atoms_t *a)
{
    bson_iter_t it, el;
    if (v->value_type == BSON_TYPE_DOCUMENT &&
        bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len) &&
        bson_iter_next(&it) && bson_iter_key(&it)[0] == '$') {
        do {
            if (strcmp(bson_iter_key(&it), "$all") == 0 && BSON_ITER_HOLDS_ARRAY(&it) &&
                bson_iter_recurse(&it, &el)) {
                while (bson_iter_next(&el)) {
                    atom_push(a, path, "$eq", bson_iter_value(&el));
                }
            } else {
                atom_push(a, path, bson_iter_key(&it), bson_iter_value(&it));
            }
        } while (bson_iter_next(&it));
        return;
    }
    atom_push(a, path, "$eq", v);
}

static void
collect_doc(const uint8_t *data, uint32_t len, atoms_t *a)
{
    bson_iter_t it, el;
    if (!bson_iter_init_from_data(&it, data, len)) {
        return;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "$and") == 0 && BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &el)) {
            while (bson_iter_next(&el)) {
                if (BSON_ITER_HOLDS_DOCUMENT(&el)) {
                    const bson_value_t *sub = bson_iter_value(&el);
                    collect_doc(sub->value.v_doc.data, sub->value.v_doc.data_len, a);
                }
            }
        } else if (strcmp(k, "$comment") != 0) {
            collect_field(k, bson_iter_value(&it), a);
        }
    }
}

/* A $type operand as a bit set of BSON type codes (aliases as mongod's typeFromName). */
static uint64_t
type_bits_one(const bson_value_t *v)
{
    static const struct {
        const char *name;
        int code;
    } names[] = {{"double", 1},    {"string", 2},     {"object", 3},     {"array", 4},
                 {"binData", 5},   {"undefined", 6},  {"objectId", 7},   {"bool", 8},
                 {"date", 9},      {"null", 10},      {"regex", 11},     {"dbPointer", 12},
                 {"javascript", 13}, {"symbol", 14}, {"javascriptWithScope", 15}, {"int", 16},
                 {"timestamp", 17}, {"long", 18},     {"decimal", 19},   {"minKey", 20},
                 {"maxKey", 21},   {"number", 22}};
    if (v->value_type == BSON_TYPE_UTF8) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            if (strcmp(names[i].name, v->value.v_utf8.str) == 0) {
                return UINT64_C(1) << names[i].code;
            }
        }
        return 0;
    }
    double d = v->value_type == BSON_TYPE_INT32   ? v->value.v_int32
               : v->value_type == BSON_TYPE_INT64 ? (double)v->value.v_int64
               : v->value_type == BSON_TYPE_DOUBLE ? v->value.v_double
                                                   : 0;
    int code = d == -1 ? 20 : d == 127 ? 21 : (int)d;
    return code > 0 && code < 64 ? UINT64_C(1) << code : 0;
}

static uint64_t
type_bits(const bson_value_t *v)
{
    bson_iter_t it;
    uint64_t bits = 0;
    if (v->value_type != BSON_TYPE_ARRAY) {
        return type_bits_one(v);
    }
    if (bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len)) {
        while (bson_iter_next(&it)) {
            bits |= type_bits_one(bson_iter_value(&it));
        }
    }
    return bits;
}

static bool
atom_equal(const atom_t *x, const atom_t *y)
{
    if (strcmp(x->path, y->path) != 0 || strcmp(x->op, y->op) != 0) {
        return false;
    }
    if (strcmp(x->op, "$exists") == 0) {
        return true;
    }
    if (strcmp(x->op, "$type") == 0) {
        return type_bits(&x->v) == type_bits(&y->v);
    }
    return ms_type_rank(x->v.value_type) == ms_type_rank(y->v.value_type) &&
           ms_value_cmp(&x->v, &y->v) == 0;
}

bool
ms_partial_filter_equivalent(const bson_t *a, const bson_t *b)
{
    atoms_t x = {0}, y = {0};
    bool same;
    collect_doc(bson_get_data(a), a->len, &x);
    collect_doc(bson_get_data(b), b->len, &y);
    same = x.n == y.n;
    bool *used = bson_malloc0(sizeof *used * (y.n + 1));
    for (size_t i = 0; same && i < x.n; i++) {
        bool found = false;
        for (size_t j = 0; j < y.n && !found; j++) {
            if (!used[j] && atom_equal(&x.atoms[i], &y.atoms[j])) {
                used[j] = found = true;
            }
        }
        same = found;
    }
    bson_free(used);
    bson_free(x.atoms);
    bson_free(y.atoms);
    return same;
}

/* ---- comparing a requested index with an existing one ---------------------------------- */

/* Options outside the index signature that decide "identical" versus "equivalent". */
static bool
is_signature_or_ignored(const char *f)
{
    static const char *const fields[] = {"key", "ns", "name", "v", "textIndexVersion",
                                         "2dsphereIndexVersion", "background", "dropDups",
                                         "hidden", "collation", "partialFilterExpression",
                                         "unique", "sparse", "wildcardProjection", NULL};
    for (int i = 0; fields[i]; i++) {
        if (strcmp(fields[i], f) == 0) {
            return true;
        }
    }
    return false;
}

/* Every other option of a is in b with an equal value (numbers by value, as BSON compares). */
static bool
options_contained(const bson_t *a, const bson_t *b)
{
    bson_iter_t ia, ib;
    bson_iter_init(&ia, a);
    while (bson_iter_next(&ia)) {
        const char *f = bson_iter_key(&ia);
        if (is_signature_or_ignored(f)) {
            continue;
        }
        if (!bson_iter_init_find(&ib, b, f) ||
            ms_type_rank(bson_iter_type(&ia)) != ms_type_rank(bson_iter_type(&ib)) ||
            ms_value_cmp(bson_iter_value(&ia), bson_iter_value(&ib)) != 0) {
            return false;
        }
    }
    return true;
}

static bool
partial_filter_of(const ms_index_t *ix, bson_t *out)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!bson_iter_init_find(&it, ix->spec, "partialFilterExpression") ||
        !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return false;
    }
    bson_iter_document(&it, &len, &data);
    return bson_init_static(out, data, len);
}

ms_index_cmp_t
ms_index_compare(const ms_index_t *requested, const ms_index_t *existing)
{
    bson_t pa, pb;
    if (!ms_key_pattern_equal(requested->key, existing->key) ||
        requested->unique != existing->unique || requested->sparse != existing->sparse) {
        return MS_INDEX_DIFFERENT;
    }
    bool has_a = partial_filter_of(requested, &pa);
    bool has_b = partial_filter_of(existing, &pb);
    if (has_a != has_b || (has_a && !ms_partial_filter_equivalent(&pa, &pb))) {
        return MS_INDEX_DIFFERENT;
    }
    return options_contained(requested->spec, existing->spec) &&
                   options_contained(existing->spec, requested->spec)
               ? MS_INDEX_IDENTICAL
               : MS_INDEX_EQUIVALENT;
}

/*
 * Indexes: a skip list of entries ordered by the compound key (each component by ms_value_cmp,
 * its direction applied) and then the record id, so equal keys stay in insertion order. Key
 * values are borrowed from the record's immutable document.
 *
 * Arrays make an index multikey (one entry per element, as mongod); such indexes still enforce
 * uniqueness but the planner does not use them.
 */
#include "store-private.h"

#include <math.h>
#include <string.h>

#define MAX_LEVEL 24
#define MAX_KEYS_PER_DOC 10000

struct ms_ientry_t {
    ms_rec_t *rec;
    bson_value_t *keys;
    ms_ientry_t *prev;
    int level;
    ms_ientry_t *next[];
};

static _Thread_local bson_t dup_info;
static _Thread_local bool dup_info_init;

void
ms_dup_key_info_reset(void)
{
    if (dup_info_init) {
        /* Back to inline storage: nothing stays allocated when the thread ends. */
        bson_destroy(&dup_info);
        bson_init(&dup_info);
    }
}

const bson_t *
ms_dup_key_info(void)
{
    if (!dup_info_init) {
        bson_init(&dup_info);
        dup_info_init = true;
    }
    return &dup_info;
}

/* ---- spec parsing ------------------------------------------------------------------------ */

static const char *const spec_fields[] = {
    "v", "key", "name", "unique", "sparse", "partialFilterExpression", "expireAfterSeconds",
    "background", "ns", "hidden", NULL};

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
        return ms_set_error(error, 67, "Index keys cannot be an empty field.");
    }
    ix->paths = bson_malloc0(sizeof *ix->paths * n);
    ix->dirs = bson_malloc0(sizeof *ix->dirs * n);
    bson_iter_init(&it, key);
    while (bson_iter_next(&it)) {
        const char *path = bson_iter_key(&it);
        if (!*path || path[0] == '$' || strstr(path, "..") || path[strlen(path) - 1] == '.') {
            return ms_set_error(error, 67, "Index key contains an illegal field name: '%s'", path);
        }
        if (BSON_ITER_HOLDS_UTF8(&it)) {
            return ms_set_error(error, 67, "Unknown index plugin '%s' (mongoq-test-server only "
                                "supports ascending and descending keys)",
                                bson_iter_utf8(&it, NULL));
        }
        if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_double(&it) == 0 ||
            isnan(bson_iter_as_double(&it))) {
            return ms_set_error(error, 67, "Values in the index key pattern can't be 0 and must "
                                "be numbers; bad key: '%s'", path);
        }
        ix->paths[ix->nfields] = bson_strdup(path);
        ix->dirs[ix->nfields] = bson_iter_as_double(&it) > 0 ? 1 : -1;
        ix->nfields++;
    }
    return true;
}

static bool
parse_options(ms_index_t *ix, const bson_t *spec, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *f = bson_iter_key(&it);
        if (!known_spec_field(f)) {
            return ms_set_error(error, 197, "The field '%s' is not valid for an index "
                                "specification.", f);
        }
        if (strcmp(f, "unique") == 0) {
            ix->unique = bson_iter_as_bool(&it);
        } else if (strcmp(f, "sparse") == 0) {
            ix->sparse = bson_iter_as_bool(&it);
        } else if (strcmp(f, "hidden") == 0 && bson_iter_as_bool(&it)) {
            return ms_set_error(error, 238, "hidden indexes are not supported by "
                                "mongoq-test-server");
        } else if (strcmp(f, "expireAfterSeconds") == 0) {
            if (!BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_double(&it) < 0 ||
                bson_iter_as_double(&it) > 2147483647.0) {
                return ms_set_error(error, 67, "TTL index 'expireAfterSeconds' option must be "
                                    "numeric and between 0 and 2147483647");
            }
            ix->has_ttl = true;
            ix->expire_after_secs = bson_iter_as_int64(&it);
        } else if (strcmp(f, "partialFilterExpression") == 0) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
                return ms_set_error(error, 14, "The field 'partialFilterExpression' must be an "
                                    "object");
            }
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_t filter;
            bson_init_static(&filter, data, len);
            ix->partial = ms_matcher_new(&filter, error);
            if (!ix->partial) {
                return false;
            }
        }
    }
    return true;
}

ms_index_t *
ms_index_new(const bson_t *spec, bson_error_t *error)
{
    ms_index_t *ix = bson_malloc0(sizeof *ix);
    bson_iter_t it;
    ix->rng = 0x9E3779B97F4A7C15ull;
    ix->level = 1;
    ix->head = bson_malloc0(sizeof *ix->head + sizeof(ms_ientry_t *) * MAX_LEVEL);
    ix->head->level = MAX_LEVEL;
    if (!bson_iter_init_find(&it, spec, "key") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
        ms_set_error(error, 9, "The 'key' field is a required property of an index "
                     "specification");
        goto fail;
    }
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    ix->key = bson_new_from_data(data, len);
    if (!parse_key(ix, ix->key, error) || !parse_options(ix, spec, error)) {
        goto fail;
    }
    if (bson_iter_init_find(&it, spec, "name") && BSON_ITER_HOLDS_UTF8(&it)) {
        ix->name = bson_strdup(bson_iter_utf8(&it, NULL));
    } else {
        ix->name = ms_index_default_name(ix->key);
    }
    if (!*ix->name) {
        ms_set_error(error, 67, "The index name cannot be empty");
        goto fail;
    }
    /* The spec as listIndexes shows it: v, key, name first, then the options. */
    ix->spec = bson_new();
    BSON_APPEND_INT32(ix->spec, "v", 2);
    BSON_APPEND_DOCUMENT(ix->spec, "key", ix->key);
    BSON_APPEND_UTF8(ix->spec, "name", ix->name);
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *f = bson_iter_key(&it);
        if (strcmp(f, "v") && strcmp(f, "key") && strcmp(f, "name") && strcmp(f, "ns") &&
            strcmp(f, "background")) {
            bson_append_iter(ix->spec, NULL, 0, &it);
        }
    }
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

void
ms_index_destroy(ms_index_t *ix)
{
    if (!ix) {
        return;
    }
    for (ms_ientry_t *e = ix->head->next[0], *next; e; e = next) {
        next = e->next[0];
        bson_free(e);
    }
    bson_free(ix->head);
    for (size_t i = 0; i < ix->nfields; i++) {
        bson_free(ix->paths[i]);
    }
    bson_free(ix->paths);
    bson_free(ix->dirs);
    ms_matcher_destroy(ix->partial);
    if (ix->spec) {
        bson_destroy(ix->spec);
    }
    if (ix->key) {
        bson_destroy(ix->key);
    }
    bson_free(ix->name);
    bson_free(ix);
}

/* Options compared when the same name or key is created again (85/86 when they differ). */
bool
ms_index_same_options(const ms_index_t *a, const ms_index_t *b)
{
    bson_iter_t ia, ib;
    bool pa = bson_iter_init_find(&ia, a->spec, "partialFilterExpression");
    bool pb = bson_iter_init_find(&ib, b->spec, "partialFilterExpression");
    if (pa != pb) {
        return false;
    }
    if (pa) {
        uint32_t la, lb;
        const uint8_t *da, *db;
        bson_iter_document(&ia, &la, &da);
        bson_iter_document(&ib, &lb, &db);
        if (la != lb || memcmp(da, db, la) != 0) {
            return false;
        }
    }
    return a->unique == b->unique && a->sparse == b->sparse && a->has_ttl == b->has_ttl &&
           (!a->has_ttl || a->expire_after_secs == b->expire_after_secs);
}

/* ---- keys ------------------------------------------------------------------------------ */

typedef struct {
    bson_value_t *vals;
    size_t n;
    size_t cap;
} vlist_t;

static void
vpush(vlist_t *l, const bson_value_t *v)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->vals = bson_realloc(l->vals, sizeof *l->vals * l->cap);
    }
    l->vals[l->n++] = *v;
}

static void collect(const uint8_t *data, uint32_t len, const char *path, vlist_t *out,
                    bool *array_seen, int depth);

static void
collect_array(const bson_iter_t *arr_it, const char *rest, vlist_t *out, bool *array_seen,
              int depth)
{
    bson_iter_t child;
    bson_value_t undef = {.value_type = BSON_TYPE_UNDEFINED};
    size_t before = out->n;
    *array_seen = true;
    if (!bson_iter_recurse(arr_it, &child)) {
        return;
    }
    while (bson_iter_next(&child)) {
        if (!rest) {
            vpush(out, bson_iter_value(&child));
        } else if (BSON_ITER_HOLDS_DOCUMENT(&child)) {
            uint32_t l;
            const uint8_t *d;
            bson_iter_document(&child, &l, &d);
            collect(d, l, rest, out, array_seen, depth + 1);
        }
    }
    if (!rest && out->n == before) {
        vpush(out, &undef);
    }
}

static void
collect(const uint8_t *data, uint32_t len, const char *path, vlist_t *out, bool *array_seen,
        int depth)
{
    bson_t doc;
    bson_iter_t it;
    const char *dot = strchr(path, '.');
    size_t clen = dot ? (size_t)(dot - path) : strlen(path);
    if (depth > 100 || out->n > MAX_KEYS_PER_DOC || !bson_init_static(&doc, data, len) ||
        !bson_iter_init_find_w_len(&it, &doc, path, (int)clen)) {
        return;
    }
    const char *rest = dot ? dot + 1 : NULL;
    if (BSON_ITER_HOLDS_ARRAY(&it)) {
        collect_array(&it, rest, out, array_seen, depth);
    } else if (!rest) {
        vpush(out, bson_iter_value(&it));
    } else if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t l;
        const uint8_t *d;
        bson_iter_document(&it, &l, &d);
        collect(d, l, rest, out, array_seen, depth + 1);
    }
}

static int
keys_cmp(const ms_index_t *ix, const bson_value_t *a, const bson_value_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int c = ms_value_cmp(&a[i], &b[i]);
        if (c) {
            return ix->dirs[i] < 0 ? -c : c;
        }
    }
    return 0;
}

/*
 * The key tuples of doc for ix (nfields values each, concatenated in *keys), deduplicated.
 * Returns false with 171 for parallel arrays. *count 0: the document is not indexed (sparse with
 * every field missing, or outside the partial filter).
 */
static bool
doc_keys(const ms_index_t *ix, const ms_doc_t *doc, bson_value_t **keys, size_t *count,
         bool *multikey, bson_error_t *error)
{
    vlist_t lists[32];
    size_t missing = 0;
    int array_field = -1;
    bool ok = true;
    *keys = NULL;
    *count = 0;
    *multikey = false;
    memset(lists, 0, sizeof lists);
    if (ix->partial) {
        bson_t view;
        ms_doc_view(doc, &view);
        ms_ctx_t ctx = {.now_ms = ms_now_ms()};
        if (!ms_matcher_matches(ix->partial, &view, &ctx)) {
            return true;
        }
    }
    for (size_t i = 0; i < ix->nfields; i++) {
        bool arr = false;
        bson_value_t null_v = {.value_type = BSON_TYPE_NULL};
        collect(doc->data, doc->len, ix->paths[i], &lists[i], &arr, 0);
        if (lists[i].n == 0) {
            vpush(&lists[i], &null_v);
            missing++;
        }
        if (arr) {
            if (array_field >= 0) {
                ok = ms_set_error(error, 171, "cannot index parallel arrays [%s] [%s]",
                                  ix->paths[i], ix->paths[array_field]);
                goto done;
            }
            array_field = (int)i;
            *multikey = true;
        }
    }
    if (ix->sparse && missing == ix->nfields) {
        goto done;
    }
    /* At most one list has more than one value: the tuples are that list's values. */
    size_t n = array_field >= 0 ? lists[array_field].n : 1;
    *keys = bson_malloc(sizeof **keys * ix->nfields * n);
    for (size_t t = 0; t < n; t++) {
        bson_value_t *tuple = *keys + t * ix->nfields;
        for (size_t i = 0; i < ix->nfields; i++) {
            tuple[i] = lists[i].vals[(int)i == array_field ? t : 0];
        }
        bool dup = false;
        for (size_t u = 0; u < *count && !dup; u++) {
            dup = keys_cmp(ix, *keys + u * ix->nfields, tuple, ix->nfields) == 0;
        }
        if (!dup) {
            if (*count != t) {
                memmove(*keys + *count * ix->nfields, tuple, sizeof *tuple * ix->nfields);
            }
            (*count)++;
        }
    }
done:
    for (size_t i = 0; i < ix->nfields; i++) {
        bson_free(lists[i].vals);
    }
    return ok;
}

/* ---- skip list ------------------------------------------------------------------------- */

static int
entry_cmp(const ms_index_t *ix, const ms_ientry_t *e, const bson_value_t *keys, int64_t recid)
{
    int c = keys_cmp(ix, e->keys, keys, ix->nfields);
    if (c) {
        return c;
    }
    return e->rec->recid < recid ? -1 : e->rec->recid > recid ? 1 : 0;
}

static int
random_level(ms_index_t *ix)
{
    int level = 1;
    for (;;) {
        ix->rng ^= ix->rng << 13;
        ix->rng ^= ix->rng >> 7;
        ix->rng ^= ix->rng << 17;
        if ((ix->rng & 3) != 0 || level >= MAX_LEVEL) {
            return level;
        }
        level++;
    }
}

static void
find_preds(const ms_index_t *ix, const bson_value_t *keys, int64_t recid,
           ms_ientry_t **update)
{
    ms_ientry_t *x = ix->head;
    for (int lvl = MAX_LEVEL - 1; lvl >= 0; lvl--) {
        while (lvl < ix->level && x->next[lvl] && entry_cmp(ix, x->next[lvl], keys, recid) < 0) {
            x = x->next[lvl];
        }
        update[lvl] = x;
    }
}

static void
skip_insert(ms_index_t *ix, ms_rec_t *rec, const bson_value_t *keys)
{
    ms_ientry_t *update[MAX_LEVEL];
    find_preds(ix, keys, rec->recid, update);
    int level = random_level(ix);
    if (level > ix->level) {
        ix->level = level;
    }
    ms_ientry_t *e = bson_malloc(sizeof *e + sizeof(ms_ientry_t *) * (size_t)level +
                                 sizeof(bson_value_t) * ix->nfields);
    e->rec = rec;
    e->level = level;
    e->keys = (bson_value_t *)(void *)((char *)e + sizeof *e + sizeof(ms_ientry_t *) *
                                                                   (size_t)level);
    memcpy(e->keys, keys, sizeof *keys * ix->nfields);
    for (int i = 0; i < level; i++) {
        e->next[i] = update[i]->next[i];
        update[i]->next[i] = e;
    }
    e->prev = update[0] == ix->head ? NULL : update[0];
    if (e->next[0]) {
        e->next[0]->prev = e;
    }
    ix->len++;
}

static void
skip_remove(ms_index_t *ix, ms_rec_t *rec, const bson_value_t *keys)
{
    ms_ientry_t *update[MAX_LEVEL];
    find_preds(ix, keys, rec->recid, update);
    ms_ientry_t *e = update[0]->next[0];
    if (!e || e->rec != rec) {
        return;
    }
    for (int i = 0; i < e->level; i++) {
        if (update[i]->next[i] == e) {
            update[i]->next[i] = e->next[i];
        }
    }
    if (e->next[0]) {
        e->next[0]->prev = e->prev;
    }
    bson_free(e);
    ix->len--;
}

/* First entry whose first n key values are >= bound (> bound when after). */
static ms_ientry_t *
seek(const ms_index_t *ix, const bson_value_t *bound, size_t n, bool after)
{
    ms_ientry_t *x = ix->head;
    for (int lvl = ix->level - 1; lvl >= 0; lvl--) {
        for (;;) {
            ms_ientry_t *nx = x->next[lvl];
            if (!nx) {
                break;
            }
            int c = keys_cmp(ix, nx->keys, bound, n);
            if (after ? c > 0 : c >= 0) {
                break;
            }
            x = nx;
        }
    }
    return x->next[0];
}

/* ---- public ------------------------------------------------------------------------------ */

static void
append_key_value_doc(const ms_index_t *ix, const bson_value_t *keys, bson_t *out)
{
    for (size_t i = 0; i < ix->nfields; i++) {
        bson_append_value(out, ix->paths[i], -1, &keys[i]);
    }
}

/* mongod's rendering of a key value in "dup key: { a: 1 }". */
static char *
render_value(const bson_value_t *v)
{
    char oid[25];
    switch (v->value_type) {
    case BSON_TYPE_UTF8:
        return bson_strdup_printf("\"%s\"", v->value.v_utf8.str);
    case BSON_TYPE_INT32:
        return bson_strdup_printf("%d", v->value.v_int32);
    case BSON_TYPE_INT64:
        return bson_strdup_printf("%lld", (long long)v->value.v_int64);
    case BSON_TYPE_DOUBLE:
        if (v->value.v_double == floor(v->value.v_double) && fabs(v->value.v_double) < 1e15) {
            return bson_strdup_printf("%.1f", v->value.v_double);
        }
        return bson_strdup_printf("%g", v->value.v_double);
    case BSON_TYPE_OID:
        bson_oid_to_string(&v->value.v_oid, oid);
        return bson_strdup_printf("ObjectId('%s')", oid);
    case BSON_TYPE_NULL:
        return bson_strdup("null");
    case BSON_TYPE_UNDEFINED:
        return bson_strdup("undefined");
    case BSON_TYPE_BOOL:
        return bson_strdup(v->value.v_bool ? "true" : "false");
    case BSON_TYPE_DATE_TIME:
        return bson_strdup_printf("new Date(%lld)", (long long)v->value.v_datetime);
    default: {
        bson_t tmp = BSON_INITIALIZER;
        bson_append_value(&tmp, "v", 1, v);
        char *json = bson_as_relaxed_extended_json(&tmp, NULL);
        bson_destroy(&tmp);
        char *out = bson_strdup(json ? json : "?");
        bson_free(json);
        return out;
    }
    }
}

static bool
dup_error(const ms_index_t *ix, const ms_coll_t *c, const bson_value_t *keys,
          bson_error_t *error)
{
    char *msg = bson_strdup("");
    for (size_t i = 0; i < ix->nfields; i++) {
        char *v = render_value(&keys[i]);
        char *s = bson_strdup_printf("%s%s%s: %s", msg, i ? ", " : "", ix->paths[i], v);
        bson_free(v);
        bson_free(msg);
        msg = s;
    }
    ms_set_error(error, 11000, "E11000 duplicate key error collection: %s index: %s dup key: "
                 "{ %s }", c->ns, ix->name, msg);
    bson_free(msg);
    ms_dup_key_info();
    bson_reinit(&dup_info);
    BSON_APPEND_DOCUMENT(&dup_info, "keyPattern", ix->key);
    bson_t kv;
    BSON_APPEND_DOCUMENT_BEGIN(&dup_info, "keyValue", &kv);
    append_key_value_doc(ix, keys, &kv);
    bson_append_document_end(&dup_info, &kv);
    return false;
}

bool
ms_index_check(ms_index_t *ix, const ms_coll_t *c, const ms_doc_t *doc, const ms_rec_t *self,
               bson_error_t *error)
{
    bson_value_t *keys;
    size_t count;
    bool multikey;
    bool ok = doc_keys(ix, doc, &keys, &count, &multikey, error);
    for (size_t t = 0; ok && ix->unique && t < count; t++) {
        const bson_value_t *tuple = keys + t * ix->nfields;
        for (ms_ientry_t *e = seek(ix, tuple, ix->nfields, false);
             e && keys_cmp(ix, e->keys, tuple, ix->nfields) == 0; e = e->next[0]) {
            if (e->rec != self) {
                ok = dup_error(ix, c, tuple, error);
                break;
            }
        }
    }
    bson_free(keys);
    return ok;
}

bool
ms_index_add(ms_index_t *ix, ms_rec_t *rec, bson_error_t *error)
{
    bson_value_t *keys;
    size_t count;
    bool multikey;
    if (!doc_keys(ix, rec->doc, &keys, &count, &multikey, error)) {
        return false;
    }
    ix->multikey = ix->multikey || multikey;
    for (size_t t = 0; t < count; t++) {
        skip_insert(ix, rec, keys + t * ix->nfields);
    }
    bson_free(keys);
    return true;
}

void
ms_index_remove(ms_index_t *ix, ms_rec_t *rec)
{
    bson_value_t *keys;
    size_t count;
    bool multikey;
    if (!doc_keys(ix, rec->doc, &keys, &count, &multikey, NULL)) {
        return;
    }
    for (size_t t = 0; t < count; t++) {
        skip_remove(ix, rec, keys + t * ix->nfields);
    }
    bson_free(keys);
}

ms_rec_t *
ms_index_find_exact(const ms_index_t *ix, const bson_value_t *keys)
{
    ms_ientry_t *e = seek(ix, keys, ix->nfields, false);
    if (e && keys_cmp(ix, e->keys, keys, ix->nfields) == 0) {
        return e->rec;
    }
    return NULL;
}

/* ---- scans for the planner (query.c) ----------------------------------------------------- */

ms_ientry_t *
ms_index_seek(const ms_index_t *ix, const bson_value_t *bound, size_t n, bool after)
{
    if (n == 0) {
        return after ? NULL : ix->head->next[0];
    }
    return seek(ix, bound, n, after);
}

ms_ientry_t *
ms_index_last(const ms_index_t *ix)
{
    ms_ientry_t *x = ix->head;
    for (int lvl = ix->level - 1; lvl >= 0; lvl--) {
        while (x->next[lvl]) {
            x = x->next[lvl];
        }
    }
    return x == ix->head ? NULL : x;
}

ms_ientry_t *
ms_ientry_next(const ms_ientry_t *e, bool backward)
{
    return backward ? e->prev : e->next[0];
}

const bson_value_t *
ms_ientry_keys(const ms_ientry_t *e)
{
    return e->keys;
}

ms_rec_t *
ms_ientry_rec(const ms_ientry_t *e)
{
    return e->rec;
}

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

ms_index_t *
ms__index_alloc(void)
{
    ms_index_t *ix = bson_malloc0(sizeof *ix);
    ix->rng = 0x9E3779B97F4A7C15ull;
    ix->level = 1;
    ix->head = bson_malloc0(sizeof *ix->head + sizeof(ms_ientry_t *) * MAX_LEVEL);
    ix->head->level = MAX_LEVEL;
    return ix;
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
                ok = ms_set_error(error, MS_ERR_CANNOT_INDEX_PARALLEL_ARRAYS,
                                  "cannot index parallel arrays [%s] [%s]", ix->paths[i],
                                  ix->paths[array_field]);
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

/* Appends an entry after every other (its keys sort last): a copy in order needs no comparison. */
static void
skip_append(ms_index_t *ix, ms_ientry_t **tails, ms_rec_t *rec, const bson_value_t *keys)
{
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
    e->prev = tails[0] == ix->head ? NULL : tails[0];
    for (int i = 0; i < level; i++) {
        e->next[i] = NULL;
        tails[i]->next[i] = e;
        tails[i] = e;
    }
    ix->len++;
}

ms_index_t *
ms_index_clone(const ms_index_t *src, ms_rec_t *(*map)(ms_rec_t *rec))
{
    ms_index_t *ix = ms_index_new(src->spec, NULL);
    BSON_ASSERT(ix);
    ms_ientry_t *tails[MAX_LEVEL];
    ix->unique = src->unique;
    ix->multikey = src->multikey;
    for (int i = 0; i < MAX_LEVEL; i++) {
        tails[i] = ix->head;
    }
    /* The same entries in the same order; keys are borrowed from the documents, which the
     * clone shares. */
    for (ms_ientry_t *e = src->head->next[0]; e; e = e->next[0]) {
        skip_append(ix, tails, map(e->rec), e->keys);
    }
    return ix;
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

static bool
dup_error(const ms_index_t *ix, const ms_coll_t *c, const bson_value_t *keys,
          bson_error_t *error)
{
    char *msg = bson_strdup("");
    for (size_t i = 0; i < ix->nfields; i++) {
        char *v = ms_render_value(&keys[i]);
        char *s = bson_strdup_printf("%s%s%s: %s", msg, i ? ", " : "", ix->paths[i], v);
        bson_free(v);
        bson_free(msg);
        msg = s;
    }
    ms_set_error(error, MS_ERR_DUPLICATE_KEY,
                 "E11000 duplicate key error collection: %s index: %s dup key: "
                 "{ %s }",
                 c->ns, ix->name, msg);
    bson_free(msg);
    bson_t info = BSON_INITIALIZER, kv;
    BSON_APPEND_DOCUMENT(&info, "keyPattern", ix->key);
    BSON_APPEND_DOCUMENT_BEGIN(&info, "keyValue", &kv);
    append_key_value_doc(ix, keys, &kv);
    bson_append_document_end(&info, &kv);
    ms_error_info_set(&info);
    bson_destroy(&info);
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

bool
ms_index_doc_keys(const ms_index_t *ix, const ms_doc_t *doc, bson_value_t **keys, size_t *count)
{
    bool multikey;
    return doc_keys(ix, doc, keys, count, &multikey, NULL);
}

ms_rec_t *
ms_index_find_key(const ms_index_t *ix, const bson_value_t *tuple, const ms_rec_t *self)
{
    for (ms_ientry_t *e = seek(ix, tuple, ix->nfields, false);
         e && keys_cmp(ix, e->keys, tuple, ix->nfields) == 0; e = e->next[0]) {
        if (e->rec != self) {
            return e->rec;
        }
    }
    return NULL;
}

/* ---- scans for the planner (query_scan.c) ------------------------------------------------ */

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

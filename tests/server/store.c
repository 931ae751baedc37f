/*
 * Databases, collections and records. One global mutex makes every command atomic; documents
 * are immutable, reference-counted byte strings so snapshots can share them.
 */
#include "store-private.h"

#include <stdlib.h>
#include <string.h>

static pthread_mutex_t store_mu = PTHREAD_MUTEX_INITIALIZER;
static ms_db_t *dbs;
static uint64_t commit_seq;

void
ms_store_init(void)
{
}

void
ms_store_lock(void)
{
    pthread_mutex_lock(&store_mu);
}

void
ms_store_unlock(void)
{
    pthread_mutex_unlock(&store_mu);
}

uint64_t
ms_store_next_seq(void)
{
    return ++commit_seq;
}

uint64_t
ms_store_current_seq(void)
{
    return commit_seq;
}

/* ---- documents --------------------------------------------------------------------------- */

ms_doc_t *
ms_doc_new(const bson_t *b)
{
    ms_doc_t *d = bson_malloc(sizeof *d + b->len);
    d->refs = 1;
    d->len = b->len;
    memcpy(d->data, bson_get_data(b), b->len);
    return d;
}

ms_doc_t *
ms_doc_ref(ms_doc_t *d)
{
    d->refs++;
    return d;
}

void
ms_doc_unref(ms_doc_t *d)
{
    if (d && --d->refs == 0) {
        bson_free(d);
    }
}

void
ms_doc_view(const ms_doc_t *d, bson_t *out)
{
    bson_init_static(out, d->data, d->len);
}

/* ---- names ------------------------------------------------------------------------------ */

bool
ms_valid_db_name(const char *db, bson_error_t *error)
{
    if (!*db || strlen(db) >= 64 || strpbrk(db, "/\\. \"$*<>:|?")) {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE, "Invalid database name: '%s'", db);
    }
    return true;
}

bool
ms_valid_coll_name(const char *db, const char *coll, bson_error_t *error)
{
    if (!ms_valid_db_name(db, error)) {
        return false;
    }
    if (!*coll || strchr(coll, '$') || coll[0] == '.') {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE, "Invalid collection name: %s", coll);
    }
    if (strncmp(coll, "system.", 7) == 0) {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE, "Invalid system namespace: %s.%s", db,
                            coll);
    }
    if (strlen(db) + 1 + strlen(coll) > 255) {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE,
                            "Fully qualified namespace is too long. Namespace: %s.%s "
                            "Max: 255",
                            db, coll);
    }
    return true;
}

/* ---- collections ------------------------------------------------------------------------ */

static ms_index_t *
id_index(void)
{
    bson_t spec = BSON_INITIALIZER;
    bson_t key;
    BSON_APPEND_INT32(&spec, "v", 2);
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &key);
    BSON_APPEND_INT32(&key, "_id", 1);
    bson_append_document_end(&spec, &key);
    BSON_APPEND_UTF8(&spec, "name", "_id_");
    ms_index_t *ix = ms_index_new(&spec, NULL);
    BSON_ASSERT(ix);
    ix->unique = true;
    bson_destroy(&spec);
    return ix;
}

static ms_coll_t *
coll_alloc(const char *db, const char *name, const bson_t *options)
{
    ms_coll_t *c = bson_malloc0(sizeof *c);
    c->db = bson_strdup(db);
    c->name = bson_strdup(name);
    c->ns = bson_strdup_printf("%s.%s", db, name);
    c->options = options ? bson_copy(options) : bson_new();
    ms_coll_validation_init(c);
    for (size_t i = 0; i < sizeof c->uuid; i++) {
        c->uuid[i] = (uint8_t)(rand() & 0xFF);
    }
    c->uuid[6] = (uint8_t)((c->uuid[6] & 0x0F) | 0x40);
    c->uuid[8] = (uint8_t)((c->uuid[8] & 0x3F) | 0x80);
    return c;
}

ms_coll_t *
ms_coll_new(const char *db, const char *name, const bson_t *options)
{
    ms_coll_t *c = coll_alloc(db, name, options);
    c->indexes = bson_malloc(sizeof *c->indexes);
    c->indexes[0] = id_index();
    c->nindexes = 1;
    return c;
}

void
ms_coll_destroy(ms_coll_t *c)
{
    if (!c) {
        return;
    }
    for (size_t i = 0; i < c->nindexes; i++) {
        ms_index_destroy(c->indexes[i]);
    }
    bson_free(c->indexes);
    for (ms_rec_t *r = c->head, *next; r; r = next) {
        next = r->next;
        ms_doc_unref(r->doc);
        bson_free(r);
    }
    ms_coll_validation_free(c);
    bson_destroy(c->options);
    bson_free(c->db);
    bson_free(c->name);
    bson_free(c->ns);
    bson_free(c);
}

static ms_rec_t *
append_rec(ms_coll_t *c, ms_doc_t *doc, int64_t recid, uint64_t seq)
{
    ms_rec_t *r = bson_malloc0(sizeof *r);
    r->doc = doc;
    r->recid = recid;
    r->seq = seq;
    r->prev = c->tail;
    if (c->tail) {
        c->tail->next = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    c->count++;
    return r;
}

static ms_rec_t *
clone_of(ms_rec_t *rec)
{
    return rec->clone;
}

ms_coll_t *
ms_coll_clone(const ms_coll_t *src)
{
    ms_coll_t *c = coll_alloc(src->db, src->name, src->options);
    memcpy(c->uuid, src->uuid, sizeof c->uuid);
    c->next_recid = src->next_recid;
    c->indexes = bson_malloc(sizeof *c->indexes * (src->nindexes ? src->nindexes : 1));
    for (ms_rec_t *r = src->head; r; r = r->next) {
        r->clone = append_rec(c, ms_doc_ref(r->doc), r->recid, r->seq);
    }
    /* Each index copied entry by entry in its order (a transaction's snapshot takes one of
     * every collection it touches: adding every record again cost n log n key comparisons). */
    for (size_t i = 0; i < src->nindexes; i++) {
        c->indexes[i] = ms_index_clone(src->indexes[i], clone_of);
    }
    c->nindexes = src->nindexes;
    return c;
}

static void
unlink_rec(ms_coll_t *c, ms_rec_t *r)
{
    if (r->prev) {
        r->prev->next = r->next;
    } else {
        c->head = r->next;
    }
    if (r->next) {
        r->next->prev = r->prev;
    } else {
        c->tail = r->prev;
    }
    c->count--;
}

bool
ms_coll_insert(ms_coll_t *c, ms_doc_t *doc, ms_rec_t **out, bson_error_t *error)
{
    for (size_t i = 0; i < c->nindexes; i++) {
        if (!ms_index_check(c->indexes[i], c, doc, NULL, error)) {
            return false;
        }
    }
    ms_rec_t *r = append_rec(c, ms_doc_ref(doc), ++c->next_recid, 0);
    for (size_t i = 0; i < c->nindexes; i++) {
        if (!ms_index_add(c->indexes[i], r, error)) {
            /* Only parallel arrays can fail here: undo what was added. */
            for (size_t j = 0; j < i; j++) {
                ms_index_remove(c->indexes[j], r);
            }
            unlink_rec(c, r);
            ms_doc_unref(r->doc);
            bson_free(r);
            return false;
        }
    }
    if (out) {
        *out = r;
    }
    return true;
}

bool
ms_coll_replace(ms_coll_t *c, ms_rec_t *rec, ms_doc_t *doc, bson_error_t *error)
{
    for (size_t i = 0; i < c->nindexes; i++) {
        if (!ms_index_check(c->indexes[i], c, doc, rec, error)) {
            return false;
        }
    }
    for (size_t i = 0; i < c->nindexes; i++) {
        ms_index_remove(c->indexes[i], rec);
    }
    ms_doc_t *old = rec->doc;
    rec->doc = ms_doc_ref(doc);
    size_t added = 0;
    bool ok = true;
    for (; added < c->nindexes && ok; added++) {
        ok = ms_index_add(c->indexes[added], rec, error);
    }
    if (!ok) {
        /* Put the old document back exactly as it was. */
        for (size_t j = 0; j + 1 < added; j++) {
            ms_index_remove(c->indexes[j], rec);
        }
        ms_doc_unref(rec->doc);
        rec->doc = old;
        for (size_t j = 0; j < c->nindexes; j++) {
            ms_index_add(c->indexes[j], rec, NULL);
        }
        return false;
    }
    ms_doc_unref(old);
    return true;
}

void
ms_coll_remove(ms_coll_t *c, ms_rec_t *rec)
{
    for (size_t i = 0; i < c->nindexes; i++) {
        ms_index_remove(c->indexes[i], rec);
    }
    unlink_rec(c, rec);
    ms_doc_unref(rec->doc);
    bson_free(rec);
}

ms_rec_t *
ms_coll_find_id(const ms_coll_t *c, const bson_value_t *id)
{
    return c->nindexes ? ms_index_find_exact(c->indexes[0], id) : NULL;
}

ms_index_t *
ms_coll_index_by_name(const ms_coll_t *c, const char *name)
{
    for (size_t i = 0; i < c->nindexes; i++) {
        if (strcmp(c->indexes[i]->name, name) == 0) {
            return c->indexes[i];
        }
    }
    return NULL;
}

bool
ms_key_pattern_equal(const bson_t *a, const bson_t *b)
{
    bson_iter_t ia, ib;
    if (!bson_iter_init(&ia, a) || !bson_iter_init(&ib, b)) {
        return false;
    }
    for (;;) {
        bool more_a = bson_iter_next(&ia);
        bool more_b = bson_iter_next(&ib);
        if (!more_a || !more_b) {
            return more_a == more_b;
        }
        if (strcmp(bson_iter_key(&ia), bson_iter_key(&ib)) != 0) {
            return false;
        }
        if (BSON_ITER_HOLDS_NUMBER(&ia) && BSON_ITER_HOLDS_NUMBER(&ib)) {
            if (bson_iter_as_double(&ia) != bson_iter_as_double(&ib)) {
                return false;
            }
        } else if (!BSON_ITER_HOLDS_UTF8(&ia) || !BSON_ITER_HOLDS_UTF8(&ib) ||
                   strcmp(bson_iter_utf8(&ia, NULL), bson_iter_utf8(&ib, NULL)) != 0) {
            return false;
        }
    }
}

ms_index_t *
ms_coll_index_by_key(const ms_coll_t *c, const bson_t *key, size_t *count)
{
    ms_index_t *found = NULL;
    *count = 0;
    for (size_t i = 0; i < c->nindexes; i++) {
        if (ms_key_pattern_equal(c->indexes[i]->key, key)) {
            found = found ? found : c->indexes[i];
            (*count)++;
        }
    }
    return found;
}

bool
ms_coll_add_index(ms_coll_t *c, ms_index_t *ix, bson_error_t *error)
{
    for (ms_rec_t *r = c->head; r; r = r->next) {
        if (!ms_index_check(ix, c, r->doc, r, error) || !ms_index_add(ix, r, error)) {
            return false;
        }
    }
    c->indexes = bson_realloc(c->indexes, sizeof *c->indexes * (c->nindexes + 1));
    c->indexes[c->nindexes++] = ix;
    return true;
}

void
ms_coll_drop_index(ms_coll_t *c, ms_index_t *ix)
{
    for (size_t i = 0; i < c->nindexes; i++) {
        if (c->indexes[i] == ix) {
            memmove(&c->indexes[i], &c->indexes[i + 1],
                    sizeof *c->indexes * (c->nindexes - i - 1));
            c->nindexes--;
            break;
        }
    }
    ms_index_destroy(ix);
}

/* ---- databases --------------------------------------------------------------------------- */

ms_db_t *
ms_store_dbs(void)
{
    return dbs;
}

static ms_db_t *
find_db(const char *name)
{
    for (ms_db_t *d = dbs; d; d = d->next) {
        if (strcmp(d->name, name) == 0) {
            return d;
        }
    }
    return NULL;
}

ms_coll_t *
ms_store_coll(const char *db, const char *coll)
{
    ms_db_t *d = find_db(db);
    for (ms_coll_t *c = d ? d->colls : NULL; c; c = c->next) {
        if (strcmp(c->name, coll) == 0) {
            return c;
        }
    }
    return NULL;
}

ms_coll_t *
ms_store_create_coll(const char *db, const char *coll, const bson_t *options)
{
    ms_db_t *d = find_db(db);
    if (!d) {
        d = bson_malloc0(sizeof *d);
        d->name = bson_strdup(db);
        d->next = dbs;
        dbs = d;
    }
    ms_coll_t *c = ms_coll_new(db, coll, options);
    /* Append so listCollections shows creation order. */
    ms_coll_t **tail = &d->colls;
    while (*tail) {
        tail = &(*tail)->next;
    }
    *tail = c;
    return c;
}

static void
remove_db_if_empty(const char *db)
{
    for (ms_db_t **p = &dbs; *p; p = &(*p)->next) {
        if (strcmp((*p)->name, db) == 0) {
            if (!(*p)->colls) {
                ms_db_t *d = *p;
                *p = d->next;
                bson_free(d->name);
                bson_free(d);
            }
            return;
        }
    }
}

bool
ms_coll_pre_post_images(const ms_coll_t *c)
{
    bson_iter_t it, child;
    return bson_iter_init_find(&it, c->options, "changeStreamPreAndPostImages") &&
           bson_iter_recurse(&it, &child) && bson_iter_find(&child, "enabled") &&
           bson_iter_as_bool(&child);
}

void
ms_coll_set_pre_post_images(ms_coll_t *c, bool enabled)
{
    bson_t *options = bson_new();
    bson_iter_t it;
    bson_iter_init(&it, c->options);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "changeStreamPreAndPostImages") != 0) {
            bson_append_iter(options, NULL, 0, &it);
        }
    }
    /* CollectionOptions::toBSON writes it only when enabled */
    if (enabled) {
        bson_t sub;
        BSON_APPEND_DOCUMENT_BEGIN(options, "changeStreamPreAndPostImages", &sub);
        BSON_APPEND_BOOL(&sub, "enabled", true);
        bson_append_document_end(options, &sub);
    }
    bson_destroy(c->options);
    c->options = options;
}

void
ms_store_rename_coll(ms_coll_t *c, const char *to)
{
    bson_free(c->name);
    bson_free(c->ns);
    c->name = bson_strdup(to);
    c->ns = bson_strdup_printf("%s.%s", c->db, to);
}

void
ms_store_drop_coll(ms_coll_t *c)
{
    ms_db_t *d = find_db(c->db);
    if (!d) {
        return;
    }
    for (ms_coll_t **p = &d->colls; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    char *db = bson_strdup(c->db);
    ms_coll_destroy(c);
    remove_db_if_empty(db);
    bson_free(db);
}

void
ms_store_drop_db(const char *db)
{
    ms_db_t *d = find_db(db);
    while (d && d->colls) {
        ms_coll_t *c = d->colls;
        d->colls = c->next;
        ms_coll_destroy(c);
    }
    remove_db_if_empty(db);
}

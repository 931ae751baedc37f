/*
 * mongoq-test-server: sort specifications ({a: 1, b: -1}) and the order they give documents,
 * as mongod 6.0 sorts: a missing field sorts as null, an array by its smallest (ascending) or
 * largest (descending) element (an empty one before null), dotted paths through arrays of
 * documents.
 */
#include "lang-private.h"

#include <math.h>
#include <string.h>

bool
ms_sort_validate(const bson_t *sort, bson_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, sort)) {
        return ms_set_error(error, MS_ERR_BAD_VALUE, "invalid sort specification");
    }
    while (bson_iter_next(&it)) {
        const bson_value_t *v = bson_iter_value(&it);
        const char *key = bson_iter_key(&it);
        double d = ms__num_as_double(v);
        ms_path_t p;
        bool path_ok = ms__path_init(&p, key);
        ms__path_destroy(&p);
        if (strcmp(key, "$natural") == 0 && ms__is_number(v->value_type) && fabs(d) == 1) {
            continue; /* natural order: the command layer's scan order decides */
        }
        if (!path_ok || key[0] == '$') {
            return ms_set_error(error, MS_ERR_LOCATION40352,
                                "FieldPath field names may not start with '$' or be empty: '%s'",
                                key);
        }
        if (v->value_type == BSON_TYPE_DOCUMENT) {
            return ms_set_error(error, MS_ERR_LOCATION17312,
                                "$meta sort is not supported by the test server");
        }
        if (!ms__is_number(v->value_type)) {
            char *json = ms__value_json(v);
            ms_set_error(error, MS_ERR_LOCATION15974, "Illegal key in $sort specification: %s: %s",
                         key, json);
            bson_free(json);
            return false;
        }
        /* mongod truncates the number to an int first (numberInt), so 1.5 means 1 */
        if (isnan(d) || fabs(d) < 1 || fabs(d) >= 2) {
            return ms_set_error(error, MS_ERR_LOCATION15975,
                                "$sort key ordering must be 1 (for ascending) or -1 (for "
                                "descending)");
        }
    }
    return true;
}

typedef struct {
    bson_value_t best; /* a struct copy; its bytes stay in the document */
    bool have;
    int dir;
} sort_key_t;

static void
key_offer(sort_key_t *k, const bson_value_t *v)
{
    static const bson_value_t null_value = {.value_type = BSON_TYPE_NULL};
    if (!v) {
        v = &null_value;
    }
    if (!k->have || k->dir * ms_value_cmp(v, &k->best) < 0) {
        k->best = *v;
        k->have = true;
    }
}

static void key_walk(sort_key_t *k, const bson_value_t *v, const char *rest);

/* Sort keys walk the dotted path in place: this runs per comparison, so no allocation. */
static void
key_walk_doc(sort_key_t *k, const bson_value_t *doc, const char *path)
{
    bson_value_t v;
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    if (!ms__find_field(doc->value.v_doc.data, doc->value.v_doc.data_len, path, n, &v)) {
        key_offer(k, NULL);
        return;
    }
    key_walk(k, &v, dot ? dot + 1 : NULL);
}

/* Offers the candidate sort values of v to k; rest is the path below v (NULL at the end). */
static void
key_walk(sort_key_t *k, const bson_value_t *v, const char *rest)
{
    static const bson_value_t empty_array_key = {.value_type = BSON_TYPE_UNDEFINED};
    bson_iter_t it;
    if (!rest) {
        if (v->value_type != BSON_TYPE_ARRAY) {
            key_offer(k, v);
            return;
        }
        if (v->value.v_doc.data_len <= 5) {
            key_offer(k, &empty_array_key); /* an empty array sorts before null */
            return;
        }
        bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            key_offer(k, bson_iter_value(&it));
        }
        return;
    }
    if (v->value_type == BSON_TYPE_DOCUMENT) {
        key_walk_doc(k, v, rest);
    } else if (v->value_type == BSON_TYPE_ARRAY) {
        bool any = false;
        bson_iter_init_from_data(&it, v->value.v_doc.data, v->value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            const bson_value_t *e = bson_iter_value(&it);
            if (e->value_type == BSON_TYPE_DOCUMENT) {
                key_walk_doc(k, e, rest);
                any = true;
            }
        }
        if (!any) {
            key_offer(k, NULL);
        }
    } else {
        key_offer(k, NULL);
    }
}

int
ms_sort_cmp(const bson_t *sort, const bson_t *a, const bson_t *b)
{
    bson_iter_t it;
    bson_value_t da = {.value_type = BSON_TYPE_DOCUMENT}, db = {.value_type = BSON_TYPE_DOCUMENT};
    da.value.v_doc.data = (uint8_t *)bson_get_data(a);
    da.value.v_doc.data_len = a->len;
    db.value.v_doc.data = (uint8_t *)bson_get_data(b);
    db.value.v_doc.data_len = b->len;
    if (!bson_iter_init(&it, sort)) {
        return 0;
    }
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "$natural") == 0) {
            continue;
        }
        int dir = ms__num_as_double(bson_iter_value(&it)) < 0 ? -1 : 1; /* validated: +-1 */
        sort_key_t ka = {.dir = dir}, kb = {.dir = dir};
        key_walk_doc(&ka, &da, bson_iter_key(&it));
        key_walk_doc(&kb, &db, bson_iter_key(&it));
        int c = ms_value_cmp(ka.have ? &ka.best : NULL, kb.have ? &kb.best : NULL);
        if (c != 0) {
            return dir * c;
        }
    }
    return 0;
}

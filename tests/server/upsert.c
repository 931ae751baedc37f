/*
 * mongoq-test-server: the starting document of an upsert, from the equality fields of its query
 * as mongod 6.0 takes them (src/mongo/db/update/update_driver.cpp,
 * populateDocumentWithQueryFields): {a: 1, "b.c": 2, $and: [{d: 3}], e: {$eq: 4}} seeds
 * {a: 1, b: {c: 2}, d: 3, e: 4}; a path matched twice is NotSingleValueField; operators other
 * than $eq, regexes and other top-level operators add nothing; _id goes first.
 */
#include "update-private.h"

#include <string.h>

static bool
seed_field(ms_node_t *seed, const char *path, const bson_value_t *v, bson_error_t *error)
{
    ms_path_t p;
    bool failed, ok = false;
    if (!ms__path_init(&p, path)) {
        ms__path_destroy(&p);
        return true;
    }
    ms_node_t *parent = ms__update_resolve_parent(seed, &p, true, &failed, error);
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
    ms__update_set_child(parent, key, ms__node_from_value(v));
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
        if (!ms__is_operator_doc(v)) {
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

/*
 * Targeting, after mongos's ChunkManager and ShardKeyPattern (src/mongo/s/chunk_manager.cpp
 * getShardIdsForQuery, src/mongo/s/shard_key_pattern.cpp extractShardKeyFromDoc /
 * extractShardKeyFromQuery): a document goes to the chunk holding its shard key (a missing field
 * counts as null, as the manual's "Missing Shard Key Fields" says); a filter goes to the shards
 * whose chunks its bounds on the shard key's first field can reach, and to every shard owning
 * chunks when it has none. The commands that change chunks (split, moveChunk) are in chunks.c.
 *
 * Hashing: a hashed field's value is hashed to an int64 (FNV-1a over the value's canonical bytes,
 * numbers of equal value alike); mongod uses MD5 (BSONElementHasher), so documents land on
 * different shards than on a real cluster, with the same rules.
 */
#include "router.h"

#include <string.h>

/* ---- hashing ------------------------------------------------------------------------------- */

static uint64_t
fnv(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t k = 0; k < len; k++) {
        h = (h ^ p[k]) * 1099511628211ull;
    }
    return h;
}

int64_t
mr_hash_value(const bson_value_t *v)
{
    uint64_t h = 14695981039346656037ull;
    uint8_t rank = (uint8_t)ms_type_rank(v ? v->value_type : BSON_TYPE_NULL);
    h = fnv(h, &rank, 1);
    if (!v || v->value_type == BSON_TYPE_NULL || v->value_type == BSON_TYPE_UNDEFINED) {
        return (int64_t)h;
    }
    double d = v->value_type == BSON_TYPE_DOUBLE ? v->value.v_double
               : v->value_type == BSON_TYPE_INT32 ? v->value.v_int32
               : v->value_type == BSON_TYPE_INT64 ? (double)v->value.v_int64
                                                  : 0.0;
    if (v->value_type == BSON_TYPE_INT32 || v->value_type == BSON_TYPE_INT64 ||
        (v->value_type == BSON_TYPE_DOUBLE && d == (double)(int64_t)d)) {
        int64_t i = v->value_type == BSON_TYPE_INT64 ? v->value.v_int64 : (int64_t)d;
        return (int64_t)fnv(h, &i, sizeof i);
    }
    if (v->value_type == BSON_TYPE_DOUBLE) {
        return (int64_t)fnv(h, &d, sizeof d);
    }
    if (v->value_type == BSON_TYPE_UTF8) {
        return (int64_t)fnv(h, v->value.v_utf8.str, v->value.v_utf8.len);
    }
    bson_t tmp = BSON_INITIALIZER;
    bson_append_value(&tmp, "", 0, v);
    h = fnv(h, bson_get_data(&tmp), tmp.len);
    bson_destroy(&tmp);
    return (int64_t)h;
}

/* ---- shard key values and chunks ---------------------------------------------------------- */

void
mr_extract_key(const mr_coll_t *coll, const bson_t *doc, bson_t *out)
{
    bson_init(out);
    for (int k = 0; k < coll->nfields; k++) {
        bson_value_t v;
        bool found = ms_path_get(doc, coll->fields[k], &v);
        if (k == coll->hashed_field) {
            BSON_APPEND_INT64(out, coll->fields[k], mr_hash_value(found ? &v : NULL));
        } else if (found) {
            bson_append_value(out, coll->fields[k], -1, &v);
        } else {
            BSON_APPEND_NULL(out, coll->fields[k]);
        }
    }
}

/* Compares two shard key documents field by field (same fields, same order). */
int
mr_key_cmp(const bson_t *a, const bson_t *b)
{
    bson_iter_t ia, ib;
    bson_iter_init(&ia, a);
    bson_iter_init(&ib, b);
    while (bson_iter_next(&ia) && bson_iter_next(&ib)) {
        int c = ms_value_cmp(bson_iter_value(&ia), bson_iter_value(&ib));
        if (c != 0) {
            return c;
        }
    }
    return 0;
}

size_t
mr_chunk_for_key(const mr_coll_t *coll, const bson_t *key)
{
    for (size_t k = 0; k + 1 < coll->nchunks; k++) {
        if (mr_key_cmp(key, coll->chunks[k].max) < 0) {
            return k;
        }
    }
    return coll->nchunks - 1;
}

int
mr_target_doc(const mr_coll_t *coll, const bson_t *doc)
{
    bson_t key;
    mr_extract_key(coll, doc, &key);
    int shard = coll->chunks[mr_chunk_for_key(coll, &key)].shard;
    bson_destroy(&key);
    return shard;
}

/* ---- reading a filter --------------------------------------------------------------------- */

/* An equality usable for targeting: not an array, regex or operator document. */
static bool
equality_value(bson_iter_t *it, bson_value_t *out)
{
    bson_type_t t = bson_iter_type(it);
    if (t == BSON_TYPE_ARRAY || t == BSON_TYPE_REGEX) {
        return false;
    }
    if (t == BSON_TYPE_DOCUMENT) {
        bson_iter_t in;
        if (!bson_iter_recurse(it, &in) || !bson_iter_next(&in)) {
            *out = *bson_iter_value(it);
            return true;
        }
        if (bson_iter_key(&in)[0] != '$') {
            *out = *bson_iter_value(it);
            return true;
        }
        if (strcmp(bson_iter_key(&in), "$eq") == 0) {
            bson_iter_t eq = in;
            if (!bson_iter_next(&in)) {
                return equality_value(&eq, out);
            }
        }
        return false;
    }
    *out = *bson_iter_value(it);
    return true;
}

/* Finds an equality on field at the top level of filter or inside its $and. */
bool
mr_find_equality(const bson_t *filter, const char *field, bson_value_t *out)
{
    bson_iter_t it;
    bson_iter_init(&it, filter);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), field) == 0 && equality_value(&it, out)) {
            return true;
        }
        if (strcmp(bson_iter_key(&it), "$and") == 0 && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_t arr;
            bson_iter_recurse(&it, &arr);
            while (bson_iter_next(&arr)) {
                uint32_t len;
                const uint8_t *data;
                bson_t sub;
                if (BSON_ITER_HOLDS_DOCUMENT(&arr)) {
                    bson_iter_document(&arr, &len, &data);
                    if (bson_init_static(&sub, data, len) && mr_find_equality(&sub, field, out)) {
                        return true;
                    }
                }
            }
        }
    }
    return false;
}

bool
mr_query_has_full_key(const mr_coll_t *coll, const bson_t *filter)
{
    bson_value_t v;
    for (int k = 0; k < coll->nfields; k++) {
        if (!mr_find_equality(filter, coll->fields[k], &v)) {
            return false;
        }
    }
    return true;
}

bool
mr_query_is_exact_id(const bson_t *filter)
{
    bson_value_t v;
    return mr_find_equality(filter, "_id", &v);
}

/* ---- which shards a filter reaches ---------------------------------------------------------- */

/* What a filter says about the first shard key field: points ($eq, $in) or a range. */
typedef struct {
    ms_docvec_t points; /* each {"": value} */
    bool has_points;
    bool empty;
    bson_value_t lo, hi; /* EOD: unbounded */
} bounds_t;

static void
add_point(bounds_t *b, const bson_value_t *v)
{
    bson_t *d = bson_new();
    bson_append_value(d, "", 0, v);
    ms_docvec_push_owned(&b->points, d);
}

static void
read_ops(bounds_t *b, bson_iter_t *it)
{
    bson_iter_t op;
    bson_value_t v;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &op) || !bson_iter_next(&op) ||
        bson_iter_key(&op)[0] != '$') {
        if (equality_value(it, &v) && !b->has_points) {
            add_point(b, &v);
            b->has_points = true;
        }
        return;
    }
    do {
        const char *name = bson_iter_key(&op);
        if (strcmp(name, "$eq") == 0 && equality_value(&op, &v) && !b->has_points) {
            add_point(b, &v);
            b->has_points = true;
        } else if (strcmp(name, "$in") == 0 && BSON_ITER_HOLDS_ARRAY(&op) && !b->has_points) {
            bson_iter_t in;
            bson_iter_recurse(&op, &in);
            b->has_points = true;
            while (bson_iter_next(&in)) {
                if (!equality_value(&in, &v)) {
                    b->has_points = false; /* an array or regex: no point set */
                    break;
                }
                add_point(b, &v);
            }
        } else if (!strcmp(name, "$gt") || !strcmp(name, "$gte")) {
            v = *bson_iter_value(&op);
            if (b->lo.value_type == BSON_TYPE_EOD || ms_value_cmp(&v, &b->lo) > 0) {
                b->lo = v;
            }
        } else if (!strcmp(name, "$lt") || !strcmp(name, "$lte")) {
            v = *bson_iter_value(&op);
            if (b->hi.value_type == BSON_TYPE_EOD || ms_value_cmp(&v, &b->hi) < 0) {
                b->hi = v;
            }
        }
    } while (bson_iter_next(&op));
}

static void
read_bounds(bounds_t *b, const bson_t *filter, const char *field)
{
    bson_iter_t it;
    bson_iter_init(&it, filter);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), field) == 0) {
            read_ops(b, &it);
        } else if (strcmp(bson_iter_key(&it), "$and") == 0 && BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_t arr;
            bson_iter_recurse(&it, &arr);
            while (bson_iter_next(&arr)) {
                uint32_t len;
                const uint8_t *data;
                bson_t sub;
                if (BSON_ITER_HOLDS_DOCUMENT(&arr)) {
                    bson_iter_document(&arr, &len, &data);
                    if (bson_init_static(&sub, data, len)) {
                        read_bounds(b, &sub, field);
                    }
                }
            }
        }
    }
}

/* The first field's value of a chunk bound. */
static bson_value_t
first_of(const bson_t *bound)
{
    bson_iter_t it;
    bson_iter_init(&it, bound);
    bson_iter_next(&it);
    return *bson_iter_value(&it);
}

/* Chunks whose first-field range [min, max] can hold a value in [lo, hi] (EOD: unbounded). */
static uint32_t
shards_in_range(const mr_coll_t *coll, const bson_value_t *lo, const bson_value_t *hi)
{
    uint32_t mask = 0;
    for (size_t k = 0; k < coll->nchunks; k++) {
        bson_value_t min = first_of(coll->chunks[k].min);
        bson_value_t max = first_of(coll->chunks[k].max);
        bool single = coll->nfields == 1;
        bool below = hi->value_type != BSON_TYPE_EOD && ms_value_cmp(hi, &min) < 0;
        bool above = lo->value_type != BSON_TYPE_EOD &&
                     (single ? ms_value_cmp(lo, &max) >= 0 : ms_value_cmp(lo, &max) > 0);
        if (!below && !above) {
            mask |= 1u << coll->chunks[k].shard;
        }
    }
    return mask;
}

static uint32_t
shards_for_points(const mr_coll_t *coll, const bounds_t *b)
{
    uint32_t mask = 0;
    for (size_t k = 0; k < b->points.len; k++) {
        bson_iter_t it;
        bson_iter_init(&it, b->points.docs[k]);
        bson_iter_next(&it);
        bson_value_t v = *bson_iter_value(&it);
        bson_value_t h = {.value_type = BSON_TYPE_INT64};
        if (coll->hashed_field == 0) {
            h.value.v_int64 = mr_hash_value(&v);
            v = h;
        }
        mask |= shards_in_range(coll, &v, &v);
    }
    return mask;
}

static uint32_t
target_or(const mr_coll_t *coll, const bson_t *filter)
{
    bson_iter_t it, arr;
    uint32_t mask = 0;
    if (!bson_iter_init_find(&it, filter, "$or") || !BSON_ITER_HOLDS_ARRAY(&it) ||
        bson_count_keys(filter) != 1) {
        return 0;
    }
    bson_iter_recurse(&it, &arr);
    while (bson_iter_next(&arr)) {
        uint32_t len;
        const uint8_t *data;
        bson_t sub;
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
            return 0;
        }
        bson_iter_document(&arr, &len, &data);
        if (!bson_init_static(&sub, data, len)) {
            return 0;
        }
        mask |= mr_target_query(coll, &sub);
    }
    return mask;
}

uint32_t
mr_target_query(const mr_coll_t *coll, const bson_t *filter)
{
    bounds_t b;
    uint32_t all = mr_coll_shards(coll);
    uint32_t mask = all;
    if (mr_query_has_full_key(coll, filter)) {
        bson_t doc = BSON_INITIALIZER;
        for (int k = 0; k < coll->nfields; k++) {
            bson_value_t v;
            mr_find_equality(filter, coll->fields[k], &v);
            bson_append_value(&doc, coll->fields[k], -1, &v);
        }
        mask = 1u << mr_target_doc(coll, &doc);
        bson_destroy(&doc);
        return mask;
    }
    memset(&b, 0, sizeof b);
    ms_docvec_init(&b.points);
    read_bounds(&b, filter, coll->fields[0]);
    if (b.has_points) {
        mask = shards_for_points(coll, &b);
    } else if (coll->hashed_field != 0 &&
               (b.lo.value_type != BSON_TYPE_EOD || b.hi.value_type != BSON_TYPE_EOD)) {
        mask = shards_in_range(coll, &b.lo, &b.hi);
    } else {
        uint32_t or_mask = target_or(coll, filter);
        mask = or_mask ? or_mask : all;
    }
    ms_docvec_destroy(&b.points);
    /* An empty set ($in: []) still runs somewhere, as mongos sends it to one shard. */
    return mask ? mask : (1u << coll->chunks[0].shard);
}

/*
 * mongoq-test-server: a change event's updateDescription, from the document before and after an
 * update: {updatedFields, removedFields, truncatedArrays}, documents compared field by field
 * (dotted paths), anything else replaced whole; for a pipeline update, arrays too element by
 * element, as mongod's delta (src/mongo/db/update/document_diff_calculator.cpp). write.c records
 * it with each update for the oplog.
 */
#include "lang-private.h"

#include <string.h>

typedef struct {
    bson_t updated;
    bson_t removed;
    uint32_t nremoved;
    bson_t truncated;
    uint32_t ntruncated;
    bool arrays; /* compare arrays element by element (a pipeline update's delta) */
} desc_t;

static void
describe(const bson_value_t *before, const bson_value_t *after, const char *prefix, desc_t *d);

static uint32_t
array_len(const bson_value_t *a)
{
    bson_iter_t it;
    uint32_t n = 0;
    bson_iter_init_from_data(&it, a->value.v_doc.data, a->value.v_doc.data_len);
    while (bson_iter_next(&it)) {
        n++;
    }
    return n;
}

/* One changed value at path: documents (and arrays, in a delta) described inside. */
static void
describe_value(const bson_value_t *ov, const bson_value_t *nv, const char *path, desc_t *d);

/* Arrays element by element: a shorter one is truncated, changed or added elements updated. */
static void
describe_array(const bson_value_t *before, const bson_value_t *after, const char *path,
               desc_t *d)
{
    bson_iter_t ai, bi;
    uint32_t nb = array_len(before), na = array_len(after);
    bson_iter_init_from_data(&ai, after->value.v_doc.data, after->value.v_doc.data_len);
    bson_iter_init_from_data(&bi, before->value.v_doc.data, before->value.v_doc.data_len);
    if (na < nb) {
        char buf[16];
        const char *key;
        bson_t entry;
        bson_uint32_to_string(d->ntruncated++, &key, buf, sizeof buf);
        bson_append_document_begin(&d->truncated, key, -1, &entry);
        BSON_APPEND_UTF8(&entry, "field", path);
        BSON_APPEND_INT32(&entry, "newSize", (int32_t)na);
        bson_append_document_end(&d->truncated, &entry);
    }
    for (uint32_t i = 0; bson_iter_next(&ai); i++) {
        char *p = bson_strdup_printf("%s.%u", path, i);
        if (i < nb && bson_iter_next(&bi)) {
            describe_value(bson_iter_value(&bi), bson_iter_value(&ai), p, d);
        } else {
            bson_append_value(&d->updated, p, -1, bson_iter_value(&ai));
        }
        bson_free(p);
    }
}

static void
describe_value(const bson_value_t *ov, const bson_value_t *nv, const char *path, desc_t *d)
{
    if (ov->value_type == BSON_TYPE_DOCUMENT && nv->value_type == BSON_TYPE_DOCUMENT) {
        describe(ov, nv, path, d);
    } else if (d->arrays && ov->value_type == BSON_TYPE_ARRAY &&
               nv->value_type == BSON_TYPE_ARRAY) {
        describe_array(ov, nv, path, d);
    } else if (ov->value_type != nv->value_type || ms_value_cmp(ov, nv) != 0) {
        bson_append_value(&d->updated, path, -1, nv);
    }
}

static void
describe(const bson_value_t *before, const bson_value_t *after, const char *prefix, desc_t *d)
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
        if (had) {
            describe_value(&ov, nv, path, d);
        } else {
            bson_append_value(&d->updated, path, -1, nv);
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
            bson_uint32_to_string(d->nremoved++, &key, buf, sizeof buf);
            bson_append_utf8(&d->removed, key, -1, path, -1);
            bson_free(path);
        }
    }
}

static void
update_description(const bson_t *before, const bson_t *after, bool arrays, bson_t *out)
{
    desc_t d = {.arrays = arrays};
    bson_value_t b = {.value_type = BSON_TYPE_DOCUMENT}, a = {.value_type = BSON_TYPE_DOCUMENT};
    bson_init(&d.updated);
    bson_init(&d.removed);
    bson_init(&d.truncated);
    b.value.v_doc.data = (uint8_t *)bson_get_data(before);
    b.value.v_doc.data_len = before->len;
    a.value.v_doc.data = (uint8_t *)bson_get_data(after);
    a.value.v_doc.data_len = after->len;
    describe(&b, &a, "", &d);
    bson_init(out);
    bson_append_document(out, "updatedFields", -1, &d.updated);
    bson_append_array(out, "removedFields", -1, &d.removed);
    bson_append_array(out, "truncatedArrays", -1, &d.truncated);
    bson_destroy(&d.updated);
    bson_destroy(&d.removed);
    bson_destroy(&d.truncated);
}

void
ms_update_description(const bson_t *before, const bson_t *after, bson_t *out)
{
    update_description(before, after, false, out);
}

void
ms_update_description_delta(const bson_t *before, const bson_t *after, bson_t *out)
{
    update_description(before, after, true, out);
}

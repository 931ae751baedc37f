/*
 * mongoq-test-server: a change event's updateDescription, from the document before and after an
 * update: {updatedFields, removedFields, truncatedArrays: []}, documents compared field by field
 * (dotted paths), anything else replaced whole. write.c records it with each update for the
 * oplog.
 */
#include "lang-private.h"

#include <string.h>

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

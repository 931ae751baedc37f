/*
 * mongoq-test-server: object expression operators ($mergeObjects), rows of expr.c's ops[].
 */
#include "expr-private.h"

#include <string.h>

bool
ms__op_merge_objects(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                 bson_error_t *error)
{
    ms_node_t *merged = ms__node_new(BSON_TYPE_DOCUMENT);
    (void)name;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        if (nullish(&args[i])) {
            continue;
        }
        if (args[i].value_type != BSON_TYPE_DOCUMENT) {
            ms__node_destroy(merged);
            return ms_set_error(error, MS_ERR_LOCATION40400,
                                "$mergeObjects requires object inputs, but input is of type %s",
                                ms__type_name(args[i].value_type));
        }
        bson_iter_init_from_data(&it, args[i].value.v_doc.data, args[i].value.v_doc.data_len);
        while (bson_iter_next(&it)) {
            const char *k = bson_iter_key(&it);
            ms__node_put(merged, k, strlen(k), ms__node_from_value(bson_iter_value(&it)));
        }
    }
    ms__node_to_value(merged, out);
    ms__node_destroy(merged);
    return true;
}

/*
 * mongoq-test-server: string expression operators ($concat $toLower $toUpper), rows of expr.c's
 * ops[]; ASCII case mapping, as mongod's.
 */
#include "expr-private.h"

#include <string.h>

bool
ms__op_concat(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
              bson_error_t *error)
{
    size_t total = 0;
    (void)name;
    for (size_t i = 0; i < n; i++) {
        if (nullish(&args[i])) {
            set_null(out);
            return true;
        }
        if (args[i].value_type != BSON_TYPE_UTF8) {
            return ms_set_error(error, MS_ERR_LOCATION16702,
                                "$concat only supports strings, not %s",
                                ms__type_name(args[i].value_type));
        }
        total += args[i].value.v_utf8.len;
    }
    char *buf = bson_malloc(total + 1);
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(buf + pos, args[i].value.v_utf8.str, args[i].value.v_utf8.len);
        pos += args[i].value.v_utf8.len;
    }
    buf[pos] = '\0';
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_UTF8;
    out->value.v_utf8.str = buf;
    out->value.v_utf8.len = (uint32_t)total;
    return true;
}

bool
ms__op_case(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    (void)n;
    if (nullish(&args[0])) {
        set_string(out, "", 0);
        return true;
    }
    if (args[0].value_type != BSON_TYPE_UTF8) {
        return ms_set_error(error, MS_ERR_LOCATION16007,
                            "can't convert from BSON type %s to String",
                            ms__type_name(args[0].value_type));
    }
    set_string(out, args[0].value.v_utf8.str, args[0].value.v_utf8.len);
    bool upper = strcmp(name, "$toUpper") == 0;
    for (char *c = out->value.v_utf8.str; *c; c++) {
        if (upper && *c >= 'a' && *c <= 'z') {
            *c = (char)(*c - 'a' + 'A');
        } else if (!upper && *c >= 'A' && *c <= 'Z') {
            *c = (char)(*c - 'A' + 'a');
        }
    }
    return true;
}

/*
 * Reading explain replies for the plan conformance files (test_explain_*.c, test_index_seek.c):
 * running an explain, finding stages in the plan tree (inputStage / inputStages at any depth),
 * comparing a stage's indexBounds with the strings mongod prints. Header-only like cf_util.h.
 */
#ifndef MONGOQ_CF_EXPLAIN_H
#define MONGOQ_CF_EXPLAIN_H

#include "cf_util.h"

#include <string.h>

/* Explains cmd_json (a command document) at verbosity; the reply in *reply (caller destroys). */
static inline void
cfx_explain(mongoc_client_t *client, const char *db, const char *cmd_json, const char *verbosity,
            bson_t *reply)
{
    char *json = bson_strdup_printf("{\"explain\": %s, \"verbosity\": \"%s\"}", cmd_json,
                                    verbosity);
    cf_run_ok_reply(client, db, json, reply);
    bson_free(json);
}

/* A sub-document or array of doc at a dotted path, as a view into doc. */
static inline bool
cfx_doc_at(const bson_t *doc, const char *path, bson_t *out)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;
    if (!cf_find(doc, path, &it) || !(BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it))) {
        return false;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_document(&it, &len, &data);
    } else {
        bson_iter_array(&it, &len, &data);
    }
    return bson_init_static(out, data, len);
}

/* The first stage named stage under doc, depth first (a view into doc in *out). */
static inline bool
cfx_find_stage(const bson_t *doc, const char *stage, bson_t *out)
{
    bson_iter_t it;
    if (cf_str_at(doc, "stage") && strcmp(cf_str_at(doc, "stage"), stage) == 0) {
        return bson_init_static(out, bson_get_data(doc), doc->len);
    }
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        bson_t sub;
        uint32_t len;
        const uint8_t *data;
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_document(&it, &len, &data);
        } else if (BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_array(&it, &len, &data);
        } else {
            continue;
        }
        if (bson_init_static(&sub, data, len) && cfx_find_stage(&sub, stage, out)) {
            return true;
        }
    }
    return false;
}

/* How many stages named stage doc holds at any depth. */
static inline int
cfx_count_stages(const bson_t *doc, const char *stage)
{
    bson_iter_t it;
    int n = 0;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        bson_t sub;
        uint32_t len;
        const uint8_t *data;
        if (strcmp(bson_iter_key(&it), "stage") == 0 && BSON_ITER_HOLDS_UTF8(&it)) {
            n += strcmp(bson_iter_utf8(&it, NULL), stage) == 0;
            continue;
        }
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_document(&it, &len, &data);
        } else if (BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_array(&it, &len, &data);
        } else {
            continue;
        }
        if (bson_init_static(&sub, data, len)) {
            n += cfx_count_stages(&sub, stage);
        }
    }
    return n;
}

/* Asserts that stage's indexBounds.<field> is exactly the n interval strings given. */
static inline void
cfx_assert_bounds(const bson_t *stage, const char *field, const char *const *expected, size_t n)
{
    bson_t bounds, list;
    bson_iter_t it;
    size_t i = 0;
    cr_assert(cfx_doc_at(stage, "indexBounds", &bounds), "no indexBounds in %s",
              bson_as_relaxed_extended_json(stage, NULL));
    cr_assert(cfx_doc_at(&bounds, field, &list), "no bounds for %s in %s", field,
              bson_as_relaxed_extended_json(&bounds, NULL));
    bson_iter_init(&it, &list);
    while (bson_iter_next(&it)) {
        cr_assert_lt(i, n, "more bounds for %s than expected: %s", field,
                     bson_as_relaxed_extended_json(&list, NULL));
        cr_assert(BSON_ITER_HOLDS_UTF8(&it));
        cr_expect_str_eq(bson_iter_utf8(&it, NULL), expected[i], "bounds of %s, interval %zu",
                         field, i);
        i++;
    }
    cr_assert_eq(i, n, "%zu bounds for %s, expected %zu: %s", i, field, n,
                 bson_as_relaxed_extended_json(&list, NULL));
}

#endif

/*
 * Helpers for the language unit tests: documents from relaxed JSON with single quotes, kept in
 * a pool freed after each test so the sanitizer build sees no leaks.
 */
#ifndef MS_LANG_TEST_UTIL_H
#define MS_LANG_TEST_UTIL_H

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "lang.h"

#define POOL_MAX 256
static bson_t *pool[POOL_MAX];
static size_t pool_len;

static inline void
pool_free(void)
{
    for (size_t i = 0; i < pool_len; i++) {
        bson_destroy(pool[i]);
    }
    pool_len = 0;
}

static inline bson_t *
keep(bson_t *b)
{
    cr_assert(pool_len < POOL_MAX, "test pool full");
    pool[pool_len++] = b;
    return b;
}

/* A document from JSON where ' stands for " (extended JSON allowed). */
static inline bson_t *
J(const char *json)
{
    bson_error_t err;
    char *s = strdup(json);
    for (char *c = s; *c; c++) {
        if (*c == '\'') {
            *c = '"';
        }
    }
    bson_t *b = bson_new_from_json((const uint8_t *)s, -1, &err);
    cr_assert(b, "bad JSON in test: %s (%s)", json, err.message);
    free(s);
    return keep(b);
}

/* The value of field "v" in J(json), e.g. V("{'v': [1, 2]}"). */
static inline bson_value_t
V(const char *json)
{
    bson_value_t v;
    cr_assert(ms_path_get(J(json), "v", &v), "no v in %s", json);
    return v;
}

/* $$NOW is 2023-11-14T22:13:20Z in every test. */
#define TEST_NOW_MS 1700000000000LL
static inline const ms_ctx_t *
tctx(void)
{
    static const ms_ctx_t c = {.now_ms = TEST_NOW_MS, .cluster_time_t = 1700000000, .cluster_time_i = 7};
    return &c;
}

static inline bool
docs_equal(const bson_t *a, const bson_t *b)
{
    return a->len == b->len && memcmp(bson_get_data(a), bson_get_data(b), a->len) == 0;
}

static inline char *
json_of(const bson_t *b)
{
    return bson_as_relaxed_extended_json(b, NULL);
}

#define assert_doc_eq(actual, expected_json)                                                       \
    do {                                                                                           \
        const bson_t *act_ = (actual);                                                             \
        bson_t *exp_ = J(expected_json);                                                           \
        char *a_ = json_of(act_), *e_ = json_of(exp_);                                             \
        bool eq_ = docs_equal(act_, exp_);                                                         \
        if (!eq_) {                                                                                \
            cr_log_error("got      %s", a_);                                                       \
            cr_log_error("expected %s", e_);                                                       \
        }                                                                                          \
        bson_free(a_);                                                                             \
        bson_free(e_);                                                                             \
        cr_assert(eq_, "documents differ");                                                        \
    } while (0)

#endif

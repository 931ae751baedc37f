/*
 * Small helpers shared by the conformance files added for the test server's mongod 6.0 rules
 * (date arithmetic, partial indexes, index conflicts, validators, document size, retryable
 * writes, transactions). Commands are written as relaxed extended JSON; replies are read by
 * dotted path. Header-only so each test file stays one concern.
 */
#ifndef MONGOQ_CF_UTIL_H
#define MONGOQ_CF_UTIL_H

#include "testutil.h"

#include <criterion/criterion.h>
#include <string.h>

/* A document from relaxed extended JSON; asserts it parses. Caller destroys. */
static inline bson_t *
cf_json(const char *json)
{
    bson_error_t error;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &error);
    cr_assert(b, "bad JSON %s: %s", json, error.message);
    return b;
}

/* Runs a command; reply (if not NULL) is always initialised. */
static inline bool
cf_run(mongoc_client_t *client, const char *db, const char *json, bson_t *reply,
       bson_error_t *error)
{
    return mtest_command(client, db, json, reply, error);
}

/* Runs a command that must succeed (ok: 1). */
static inline void
cf_run_ok(mongoc_client_t *client, const char *db, const char *json)
{
    bson_t reply;
    bson_error_t error;
    cr_assert(cf_run(client, db, json, &reply, &error), "%s: %s", json, error.message);
    bson_destroy(&reply);
}

/* Runs a command that must fail (ok: 0); returns its code, the reply left in *reply. */
static inline uint32_t
cf_run_fail(mongoc_client_t *client, const char *db, const char *json, bson_t *reply,
            bson_error_t *error)
{
    cr_assert_not(cf_run(client, db, json, reply, error), "%s succeeded", json);
    return error->code;
}

static inline bool
cf_find(const bson_t *doc, const char *path, bson_iter_t *it)
{
    return bson_iter_init(it, doc) && bson_iter_find_descendant(it, path, it);
}

/* A string at path, or NULL. */
static inline const char *
cf_str_at(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    return cf_find(doc, path, &it) && BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : NULL;
}

/* A number at path (asserts it is there). */
static inline int64_t
cf_int_at(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    cr_assert(cf_find(doc, path, &it) && BSON_ITER_HOLDS_NUMBER(&it), "no number %s in %s", path,
              bson_as_relaxed_extended_json(doc, NULL));
    return bson_iter_as_int64(&it);
}

/* Whether a reply carries an error label. */
static inline bool
cf_has_label(const bson_t *reply, const char *label)
{
    bson_iter_t it, child;
    if (!bson_iter_init_find(&it, reply, "errorLabels") || !bson_iter_recurse(&it, &child)) {
        return false;
    }
    while (bson_iter_next(&child)) {
        if (BSON_ITER_HOLDS_UTF8(&child) && strcmp(bson_iter_utf8(&child, NULL), label) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether the message contains part; a readable assertion message either way. */
static inline void
cf_assert_contains(const char *message, const char *part)
{
    cr_assert(message && strstr(message, part), "\"%s\" does not contain \"%s\"",
              message ? message : "(null)", part);
}

#endif

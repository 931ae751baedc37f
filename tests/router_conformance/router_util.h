/*
 * Helpers for the router conformance tests: they talk to a mongos named by
 * MONGOQ_TEST_MONGOS_URI (mongoq-test-router, or a real mongos 6.0+ with at least two shards)
 * and skip without it. Each test shards its own database's collections and drops the database.
 */
#ifndef MONGOQ_ROUTER_UTIL_H
#define MONGOQ_ROUTER_UTIL_H

#include "testutil.h"

#include <criterion/criterion.h>

/* $MONGOQ_TEST_MONGOS_URI; skips the test when unset. */
const char *rtest_uri(void);

/* A client on rtest_uri() (skips without it). Caller destroys it. */
mongoc_client_t *rtest_client(void);

/* Runs a command given as JSON on db; asserts it succeeds unless reply/error are wanted:
 * returns whether it succeeded, reply (may be NULL) always initialised when not NULL. */
bool rtest_cmd(mongoc_client_t *client, const char *db, const char *json, bson_t *reply,
               bson_error_t *error);

/* Shards db.coll on key (JSON), e.g. "{\"p\": \"hashed\"}"; asserts success. */
void rtest_shard(mongoc_client_t *client, const char *db, const char *coll, const char *key_json);

/* The no-op interval of the shards in milliseconds when the run says (MONGOQ_TEST_NOOP_INTERVAL_MS;
 * the ctest wrapper sets it), else 0. */
int64_t rtest_noop_interval_ms(void);

#endif

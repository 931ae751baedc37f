/*
 * Helpers for the API tests (test_api_*.c): one queue per test on its own database, direct reads
 * of the collection, and the server's clock. Everything here uses only what real mongod offers.
 */
#ifndef MONGOQ_TEST_API_UTIL_H
#define MONGOQ_TEST_API_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <mongoq/mongoq.h>

#include "testutil.h"

typedef struct {
    char *db;                   /* unique to the test; dropped by api_teardown */
    mongoc_client_pool_t *pool; /* the queue's pool; commands counted by `counter` */
    mongoc_client_t *client;    /* a separate client for direct reads and writes */
    mongoc_collection_t *coll;  /* db.jobs on `client` */
    mongoq_queue_t *queue;      /* on db.jobs; NULL when api_setup was told not to open it */
    mtest_counter_t *counter;   /* commands sent through `pool` */
} api_t;

/* mongoc_init, a fresh database and, when open_queue, the queue (opts may be NULL). */
void api_setup(api_t *t, const mongoq_queue_opts_t *opts, bool open_queue);

/* Destroys the queue, drops the database, frees everything, mongoc_cleanup. */
void api_teardown(api_t *t);

/* Documents of db.jobs matching the JSON filter. */
int64_t api_count(api_t *t, const char *filter_json);

/* Reads one document by _id into *doc (always initialised); false when absent. */
bool api_get(api_t *t, const bson_oid_t *id, bson_t *doc);

/* Enqueues {n: i} for i in 0..n-1 with the given options; asserts success. */
void api_enqueue_n(api_t *t, int n, const mongoq_enqueue_opts_t *opts, bson_oid_t *ids);

/* A consumer on t's queue; name NULL and lease_ms 0 mean the defaults. Asserts success. */
mongoq_consumer_t *api_consumer(api_t *t, const char *name, int64_t lease_ms);

/* Claims with wait_ms; asserts the call succeeds (the message may be NULL). */
mongoq_message_t *api_claim(mongoq_consumer_t *consumer, int64_t wait_ms);

/* The server's clock (hello.localTime). */
int64_t api_server_now(api_t *t);

/* Waits (up to timeout_ms) until the server's clock passes `server_ms`. */
bool api_wait_server_past(api_t *t, int64_t server_ms, int64_t timeout_ms);

/* The payload's "n", or -1. */
int64_t api_payload_n(const mongoq_message_t *msg);

#endif

/*
 * Queue option and name validation through the public API. Validation happens before any
 * round trip, so a pool on a port where nothing listens is enough: no server is needed.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include <mongoq/mongoq.h>

static mongoc_client_pool_t *pool;

static void
setup(void)
{
    mongoc_init();
    mongoc_uri_t *uri = mongoc_uri_new("mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200");
    pool = mongoc_client_pool_new(uri);
    mongoc_uri_destroy(uri);
}

static void
teardown(void)
{
    mongoc_client_pool_destroy(pool);
    mongoc_cleanup();
}

TestSuite(queue_opts, .init = setup, .fini = teardown);

static void
assert_refused(const char *db, const char *name, const mongoq_queue_opts_t *opts,
               const char *needle)
{
    bson_error_t error;
    mongoq_queue_t *queue = mongoq_queue_new(pool, db, name, opts, &error);
    cr_assert_null(queue);
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN, "%s", error.message);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "%s", error.message);
    cr_assert(strstr(error.message, needle), "\"%s\" lacks \"%s\"", error.message, needle);
}

Test(queue_opts, collection_names)
{
    assert_refused("db", "", NULL, "collection name");
    assert_refused("db", NULL, NULL, "collection name");
    assert_refused("db", "a$b", NULL, "collection name");
    assert_refused("db", "system.jobs", NULL, "system.");
    char longname[300];
    memset(longname, 'c', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_refused("db", longname, NULL, "255");
}

Test(queue_opts, database_names)
{
    assert_refused("", "jobs", NULL, "database name");
    assert_refused(NULL, "jobs", NULL, "database name");
    assert_refused("a.b", "jobs", NULL, "database name");
    assert_refused("a$b", "jobs", NULL, "database name");
    assert_refused("a b", "jobs", NULL, "database name");
    assert_refused("a/b", "jobs", NULL, "database name");
    char longname[80];
    memset(longname, 'd', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_refused(longname, "jobs", NULL, "database name");
}

Test(queue_opts, negative_numbers)
{
    mongoq_queue_opts_t opts;
#define CASE_(field, value)                                                                        \
    opts = (mongoq_queue_opts_t)MONGOQ_QUEUE_OPTS_INIT;                                            \
    opts.field = (value);                                                                          \
    assert_refused("db", "jobs", &opts, #field " must be 0 (the default) to");
    CASE_(lease_ms, -1)
    CASE_(max_attempts, -1)
    CASE_(backoff_base_ms, -1)
    CASE_(backoff_cap_ms, -1)
    CASE_(retention_s, -1)
    CASE_(poll_interval_ms, -1)
    CASE_(reap_interval_ms, -1)
#undef CASE_
}

Test(queue_opts, other_bad_options)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.backoff_jitter = 1.5;
    assert_refused("db", "jobs", &opts, "backoff_jitter");
    opts.backoff_jitter = NAN;
    assert_refused("db", "jobs", &opts, "backoff_jitter");
    opts = (mongoq_queue_opts_t)MONGOQ_QUEUE_OPTS_INIT;
    opts.ack_mode = (mongoq_ack_mode_t)7;
    assert_refused("db", "jobs", &opts, "ack_mode");
    memset(&opts, 0, sizeof opts);
    assert_refused("db", "jobs", &opts, "version");
}

/* Valid options get past validation and fail only when the server cannot be reached. */
Test(queue_opts, valid_options_reach_the_server)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.backoff_jitter = -1; /* no jitter: allowed */
    opts.ack_mode = MONGOQ_ACK_KEEP;
    bson_error_t error;
    mongoq_queue_t *queue = mongoq_queue_new(pool, "db", "jobs", &opts, &error);
    cr_assert_null(queue);
    cr_assert_neq(error.domain, MONGOQ_ERROR_DOMAIN, "%s", error.message);
}

/* Version 4: groups and rate limits, each refused out of range with its name. */
Test(queue_opts, group_and_rate_options)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.group_concurrency = -1;
    assert_refused("db", "jobs", &opts, "group_concurrency");
    opts.group_concurrency = MONGOQ_MAX_GROUP_CONCURRENCY + 1;
    assert_refused("db", "jobs", &opts, "group_concurrency");
    opts = (mongoq_queue_opts_t)MONGOQ_QUEUE_OPTS_INIT;
    opts.group_dead = (mongoq_group_dead_t)9;
    assert_refused("db", "jobs", &opts, "group_dead");
    opts = (mongoq_queue_opts_t)MONGOQ_QUEUE_OPTS_INIT;
    opts.rate_limit = NAN;
    assert_refused("db", "jobs", &opts, "rate_limit");
    opts.rate_limit = -1;
    assert_refused("db", "jobs", &opts, "rate_limit");
    opts.rate_limit = 0;
    opts.rate_burst = 10;
    assert_refused("db", "jobs", &opts, "rate_burst");
}

/*
 * A version 3 caller's struct ends before group_concurrency: it is never read past (an
 * allocation of exactly that size, so ASan sees any read beyond; and garbage there would be
 * refused if it were read).
 */
Test(queue_opts, a_version_3_struct_is_not_read_past_partitions)
{
    size_t size = offsetof(mongoq_queue_opts_t, group_concurrency);
    mongoq_queue_opts_t full = MONGOQ_QUEUE_OPTS_INIT;
    full.version = 3;
    full.partitions = 2;
    full.group_concurrency = -7; /* would be refused if read */
    mongoq_queue_opts_t *v3 = bson_malloc(size);
    memcpy(v3, &full, size);
    bson_error_t error;
    mongoq_queue_t *queue = mongoq_queue_new(pool, "db", "jobs", v3, &error);
    cr_assert_null(queue, "no server listens");
    cr_assert_neq(error.code, MONGOQ_ERROR_INVALID_ARG, "got past validation: %s", error.message);
    bson_free(v3);
}

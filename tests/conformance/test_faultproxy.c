/*
 * The fault proxy (tests/tools/faultproxy) between libmongoc and the server of MONGOQ_TEST_URI:
 * traffic passes unchanged, and each fault does to the driver what it should (a lost reply
 * retried by retryable writes, a hang tripping socketTimeoutMS, a partition failing server
 * selection until healed). Each fault test asserts from the proxy's counters that the fault
 * fired, so a proxy that did nothing would fail it. A direct client tells what was stored.
 */
#include "faultproxy.h"
#include "fp_util.h"
#include "testutil.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static mongoq_faultproxy_t *proxy;
static mongoc_client_t *direct;
static char *dbname;

static void
setup(void)
{
    bson_error_t error;
    proxy = mongoq_faultproxy_start(mtest_uri(), NULL, &error);
    cr_assert(proxy, "start: %s", error.message);
    direct = mtest_client_new("fp-direct");
    dbname = mtest_db_name("fp");
}

static void
teardown(void)
{
    mongoq_faultproxy_stop(proxy);
    mtest_db_drop(direct, dbname);
    mongoc_client_destroy(direct);
    bson_free(dbname);
}

TestSuite(faultproxy, .init = setup, .fini = teardown, .timeout = 60);

/* A pool that connects through the proxy; extra_options ("&k=v...") are added to the URI. */
static mongoc_client_pool_t *
proxied_pool(const char *appname, const char *extra_options)
{
    bson_error_t error;
    char *uri = mongoq_faultproxy_uri(mtest_uri(), mongoq_faultproxy_port(proxy), &error);
    cr_assert(uri, "proxied URI: %s", error.message);
    char *full = bson_strdup_printf("%s%s", uri, extra_options);
    mongoc_client_pool_t *pool = mtest_pool_for(full, appname);
    bson_free(full);
    bson_free(uri);
    return pool;
}

static int64_t
stored(const char *filter_json)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(direct, dbname, "c");
    int64_t n = mtest_count(coll, filter_json);
    mongoc_collection_destroy(coll);
    return n;
}

static bool
insert_id(mongoc_client_t *client, int id, bson_error_t *error)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_INT32(&doc, "_id", id);
    bool ok = mongoc_collection_insert_one(coll, &doc, NULL, NULL, error);
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    return ok;
}

/* A document larger than the proxy's 64 KiB reads, so it crosses several of them. */
static void
big_document(bson_t *doc)
{
    size_t len = 300 * 1024;
    char *text = bson_malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        text[i] = (char)('a' + i % 26);
    }
    text[len] = '\0';
    bson_init(doc);
    BSON_APPEND_INT32(doc, "_id", 1);
    BSON_APPEND_UTF8(doc, "text", text);
    BSON_APPEND_UTF8(doc, "accent", "h\xc3\xa9llo");
    bson_free(text);
}

static void
crud_through_proxy(mongoc_collection_t *coll, const bson_t *doc)
{
    bson_error_t error;
    bson_t *filter = BCON_NEW("_id", BCON_INT32(1));
    bson_t *update = BCON_NEW("$set", "{", "n", BCON_INT32(2), "}");
    const bson_t *found = NULL;
    cr_assert(mongoc_collection_insert_one(coll, doc, NULL, NULL, &error), "%s", error.message);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    cr_assert(mongoc_cursor_next(cursor, &found), "find through the proxy");
    cr_assert(bson_equal(found, doc), "the document came back changed");
    mongoc_cursor_destroy(cursor);
    cr_assert(mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error), "%s",
              error.message);
    cr_assert_eq(stored("{\"n\": 2}"), 1);
    cr_assert(mongoc_collection_delete_one(coll, filter, NULL, NULL, &error), "%s", error.message);
    cr_assert_eq(stored("{}"), 0);
    bson_destroy(update);
    bson_destroy(filter);
}

/* Opens a change stream through the proxy, inserts directly, reads the event (a getMore). */
static void
change_stream_through_proxy(mongoc_collection_t *coll)
{
    bson_error_t error;
    const bson_t *event = NULL;
    bson_t pipeline = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("maxAwaitTimeMS", BCON_INT64(200));
    mongoc_change_stream_t *stream = mongoc_collection_watch(coll, &pipeline, opts);
    cr_assert_not(mongoc_change_stream_error_document(stream, &error, NULL), "%s", error.message);
    cr_assert(insert_id(direct, 5, &error), "%s", error.message);
    int64_t deadline = mtest_now_ms() + 10000;
    while (!event && mtest_now_ms() < deadline &&
           !mongoc_change_stream_error_document(stream, &error, NULL)) {
        mongoc_change_stream_next(stream, &event);
    }
    cr_assert(event, "no change event through the proxy: %s", error.message);
    bson_iter_t it, id;
    cr_assert(bson_iter_init(&it, event) &&
              bson_iter_find_descendant(&it, "documentKey._id", &id) &&
              BSON_ITER_HOLDS_INT32(&id) && bson_iter_int32(&id) == 5);
    cr_assert_str_eq(mtest_doc_str(event, "operationType"), "insert");
    mongoc_change_stream_destroy(stream);
    bson_destroy(opts);
    bson_destroy(&pipeline);
}

Test(faultproxy, traffic_passes_unchanged)
{
    mongoc_client_pool_t *pool = proxied_pool("fp-plain", "");
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, dbname, "c");
    bson_t doc;
    big_document(&doc);
    crud_through_proxy(coll, &doc);
    change_stream_through_proxy(coll);
    mongoq_faultproxy_stats_t stats = fp_stats(proxy);
    cr_assert_geq(mongoq_faultproxy_command_count(proxy, "getMore"), 1);
    cr_assert_geq(mongoq_faultproxy_command_count(proxy, "aggregate"), 1);
    cr_assert_eq(mongoq_faultproxy_command_count(proxy, "insert"), 1);
    cr_assert_geq(stats.requests_forwarded, 6);
    cr_assert_eq(stats.replies_forwarded, stats.requests_forwarded);
    cr_assert_eq(stats.connections_closed + stats.rule_hits + stats.replies_dropped, 0);
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(pool, client);
    mongoc_client_pool_destroy(pool);
}

Test(faultproxy, lost_reply_on_insert_is_retried_and_stored_once)
{
    mongoc_client_pool_t *pool = proxied_pool("fp-lost-once", "&retryWrites=true");
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bson_error_t error;
    int32_t rule = fp_add_rule(proxy, MONGOQ_FAULT_DROP_REPLY, "insert", NULL, 1, 0);
    cr_assert(insert_id(client, 7, &error), "the retry should succeed: %s", error.message);
    mongoq_faultproxy_stats_t stats = fp_stats(proxy);
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 1);
    cr_assert_eq(stats.replies_dropped, 1, "the server's reply was never read and dropped");
    cr_assert_eq(mongoq_faultproxy_command_count(proxy, "insert"), 2, "the driver retried");
    cr_assert_eq(stored("{\"_id\": 7}"), 1);
    cr_assert_eq(stored("{}"), 1);
    mongoc_client_pool_push(pool, client);
    mongoc_client_pool_destroy(pool);
}

Test(faultproxy, lost_reply_twice_is_a_network_error_and_stored_once)
{
    mongoc_client_pool_t *pool = proxied_pool("fp-lost-twice", "&retryWrites=true");
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bson_error_t error;
    int32_t rule = fp_add_rule(proxy, MONGOQ_FAULT_DROP_REPLY, "insert", NULL, 2, 0);
    cr_assert_not(insert_id(client, 8, &error), "both replies were lost");
    cr_assert_eq(error.domain, MONGOC_ERROR_STREAM, "%u.%u %s", error.domain, error.code,
                 error.message);
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 2);
    cr_assert_eq(fp_stats(proxy).replies_dropped, 2);
    cr_assert_eq(mongoq_faultproxy_command_count(proxy, "insert"), 2);
    cr_assert_eq(stored("{\"_id\": 8}"), 1, "applied once: the retry found the retry record");
    cr_assert_eq(stored("{}"), 1);
    mongoc_client_pool_push(pool, client);
    mongoc_client_pool_destroy(pool);
}

Test(faultproxy, hang_trips_socket_timeout)
{
    mongoc_client_pool_t *pool = proxied_pool("fp-hang", "&socketTimeoutMS=500&retryReads=false");
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bson_error_t error;
    bson_t reply;
    int32_t rule = fp_add_rule(proxy, MONGOQ_FAULT_HANG, "find", NULL, 1, 0);
    int64_t t0 = mtest_now_ms();
    cr_assert_not(mtest_command(client, dbname, "{\"find\": \"c\"}", &reply, &error));
    int64_t elapsed = mtest_now_ms() - t0;
    bson_destroy(&reply);
    cr_assert_eq(error.domain, MONGOC_ERROR_STREAM, "%s", error.message);
    cr_assert(elapsed >= 450 && elapsed < 3000, "failed after %lld ms", (long long)elapsed);
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 1);
    cr_assert_eq(fp_stats(proxy).requests_held, 1);
    cr_assert(mtest_command(client, dbname, "{\"find\": \"c\"}", &reply, &error),
              "the next find (rule spent) should pass: %s", error.message);
    bson_destroy(&reply);
    mongoc_client_pool_push(pool, client);
    mongoc_client_pool_destroy(pool);
}

Test(faultproxy, timed_hang_delays_then_forwards)
{
    mongoc_client_pool_t *pool = proxied_pool("fp-delay", "");
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bson_error_t error;
    int32_t rule = fp_add_rule(proxy, MONGOQ_FAULT_HANG, "insert", NULL, 1, 300);
    int64_t t0 = mtest_now_ms();
    cr_assert(insert_id(client, 9, &error), "%s", error.message);
    int64_t elapsed = mtest_now_ms() - t0;
    cr_assert(elapsed >= 290 && elapsed < 5000, "took %lld ms", (long long)elapsed);
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 1);
    cr_assert_eq(mongoq_faultproxy_command_count(proxy, "insert"), 1, "no retry: only late");
    cr_assert_eq(stored("{\"_id\": 9}"), 1);
    mongoc_client_pool_push(pool, client);
    mongoc_client_pool_destroy(pool);
}

typedef struct {
    mongoc_client_pool_t *pool;
    bool ok;
    bson_error_t error;
} insert_job_t;

static void *
insert_ten(void *arg)
{
    insert_job_t *job = arg;
    mongoc_client_t *client = mongoc_client_pool_pop(job->pool);
    job->ok = insert_id(client, 10, &job->error);
    mongoc_client_pool_push(job->pool, client);
    return NULL;
}

static bool
one_request_held(void *ctx)
{
    (void)ctx;
    return fp_stats(proxy).requests_held == 1;
}

Test(faultproxy, hang_until_cleared_is_released_by_clear)
{
    insert_job_t job = {.pool = proxied_pool("fp-held", "")};
    pthread_t thread;
    bson_error_t error;
    fp_add_rule(proxy, MONGOQ_FAULT_HANG, "insert", NULL, 1, 0);
    cr_assert_eq(pthread_create(&thread, NULL, insert_ten, &job), 0);
    cr_assert(mtest_wait_until(one_request_held, NULL, 10000), "the insert was never held");
    cr_assert_eq(stored("{\"_id\": 10}"), 0, "held: not forwarded yet");
    cr_assert(mongoq_faultproxy_clear(proxy, &error), "%s", error.message);
    pthread_join(thread, NULL);
    cr_assert(job.ok, "released insert: %s", job.error.message);
    cr_assert_eq(stored("{\"_id\": 10}"), 1);
    mongoc_client_pool_destroy(job.pool);
}

static void
assert_ping(mongoc_client_pool_t *pool, bool expect_ok, bson_error_t *error)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bson_t reply;
    bool ok = mtest_command(client, "admin", "{\"ping\": 1}", &reply, error);
    bson_destroy(&reply);
    mongoc_client_pool_push(pool, client);
    cr_assert_eq(ok, expect_ok, "ping %s: %s", ok ? "passed" : "failed", error->message);
}

static const char partition_options[] =
    "&serverSelectionTimeoutMS=1500&heartbeatFrequencyMS=500&connectTimeoutMS=1000";

/* Whether a ping through the pool (client pool, cast) passes: each try waits for server
 * selection, at most its 1500 ms. */
static bool
ping_passes(void *pool)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bson_error_t error;
    bool ok = mtest_command(client, "admin", "{\"ping\": 1}", NULL, &error);
    mongoc_client_pool_push(pool, client);
    return ok;
}

Test(faultproxy, partition_fails_commands_until_healed)
{
    mongoc_client_pool_t *pool = proxied_pool("fp-partition", partition_options);
    bson_error_t error;
    assert_ping(pool, true, &error);
    cr_assert(mongoq_faultproxy_partition(proxy, MONGOQ_PARTITION_CLOSE, &error), "%s",
              error.message);
    mongoq_faultproxy_stats_t stats = fp_stats(proxy);
    cr_assert_eq(stats.connections_open, 0);
    cr_assert_geq(stats.connections_closed, 1, "the pool's connections were closed");
    /* The pooled connection is gone (a network error), or selection already waits. */
    assert_ping(pool, false, &error);
    cr_assert(error.domain == MONGOC_ERROR_SERVER_SELECTION || error.domain == MONGOC_ERROR_STREAM,
              "%u: %s", error.domain, error.message);
    /* Then no new connection gets through: server selection times out. */
    int64_t t0 = mtest_now_ms();
    assert_ping(pool, false, &error);
    cr_assert_eq(error.domain, MONGOC_ERROR_SERVER_SELECTION, "%s", error.message);
    cr_assert_lt(mtest_now_ms() - t0, 5000);
    cr_assert_geq(fp_stats(proxy).connections_refused, 1, "reconnections were reset");
    cr_assert(mongoq_faultproxy_heal(proxy, &error), "%s", error.message);
    /* Healed: the pool's monitor reconnects within a heartbeat or two, which a slow run
     * (sanitizers, a busy box) can stretch past one server selection; retry, bounded. */
    cr_assert(mtest_wait_until(ping_passes, pool, 10000), "ping fails 10 s after the heal");
    mongoc_client_pool_destroy(pool);
}

/* Whether a plain connect() to the proxy's port is accepted. */
static bool
port_accepts(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons(mongoq_faultproxy_port(proxy))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0);
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    int err = errno;
    close(fd);
    cr_assert(rc == 0 || err == ECONNREFUSED, "connect: %s", strerror(err));
    return rc == 0;
}

Test(faultproxy, refusing_partition_refuses_then_listens_on_the_same_port)
{
    mongoc_client_pool_t *pool = proxied_pool("fp-refuse", partition_options);
    bson_error_t error;
    assert_ping(pool, true, &error);
    cr_assert(mongoq_faultproxy_partition(proxy, MONGOQ_PARTITION_REFUSE, &error), "%s",
              error.message);
    cr_assert_not(port_accepts(), "connect() should be refused");
    assert_ping(pool, false, &error);
    cr_assert(mongoq_faultproxy_partition(proxy, MONGOQ_PARTITION_OFF, &error), "%s",
              error.message);
    cr_assert(port_accepts());
    assert_ping(pool, true, &error);
    mongoc_client_pool_destroy(pool);
}

Test(faultproxy, reset_closes_every_connection_and_retries_recover)
{
    mongoc_client_pool_t *pool = proxied_pool("fp-reset", "&retryWrites=true");
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bson_error_t error;
    cr_assert(insert_id(client, 11, &error), "%s", error.message);
    int64_t open_before = fp_stats(proxy).connections_open;
    cr_assert_geq(open_before, 1);
    cr_assert(mongoq_faultproxy_reset(proxy, &error), "%s", error.message);
    mongoq_faultproxy_stats_t stats = fp_stats(proxy);
    cr_assert_eq(stats.connections_closed, open_before);
    cr_assert(insert_id(client, 12, &error), "retried on a new connection: %s", error.message);
    cr_assert_eq(stored("{}"), 2);
    mongoc_client_pool_push(pool, client);
    mongoc_client_pool_destroy(pool);
}

Test(faultproxy, app_name_rule_hits_only_that_client)
{
    mongoc_client_pool_t *pool_a = proxied_pool("fp-app-a", "&retryWrites=true");
    mongoc_client_pool_t *pool_b = proxied_pool("fp-app-b", "&retryWrites=true");
    mongoc_client_t *a = mongoc_client_pool_pop(pool_a);
    mongoc_client_t *b = mongoc_client_pool_pop(pool_b);
    bson_error_t error;
    int32_t rule = fp_add_rule(proxy, MONGOQ_FAULT_DROP_REPLY, "insert", "fp-app-a", 1, 0);
    cr_assert(insert_id(b, 21, &error), "%s", error.message);
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 0, "b is not fp-app-a");
    cr_assert_eq(fp_stats(proxy).replies_dropped, 0);
    cr_assert(insert_id(a, 22, &error), "%s", error.message);
    cr_assert_eq(mongoq_faultproxy_rule_hits(proxy, rule), 1);
    cr_assert_eq(fp_stats(proxy).replies_dropped, 1);
    cr_assert_eq(mongoq_faultproxy_command_count(proxy, "insert"), 3, "b once, a twice");
    cr_assert_eq(stored("{}"), 2);
    mongoc_client_pool_push(pool_b, b);
    mongoc_client_pool_push(pool_a, a);
    mongoc_client_pool_destroy(pool_b);
    mongoc_client_pool_destroy(pool_a);
}

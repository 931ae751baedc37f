/* The integration tests' world: a database, a queue and checks straight to the server (world.h). */
#include "world.h"

#include "fp_util.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The queue's pool: straight to uri, or through a new fault proxy in front of it. */
static mongoc_client_pool_t *
open_pool(world_t *w, const char *uri, bool through_proxy)
{
    bson_error_t error;
    if (!through_proxy) {
        return mtest_pool_for(uri, w->db);
    }
    w->proxy = mongoq_faultproxy_start(uri, NULL, &error);
    cr_assert(w->proxy, "proxy: %s", error.message);
    char *proxied = mongoq_faultproxy_uri(uri, mongoq_faultproxy_port(w->proxy), &error);
    cr_assert(proxied, "proxy uri: %s", error.message);
    mongoc_client_pool_t *pool = mtest_pool_for(proxied, w->db);
    bson_free(proxied);
    return pool;
}

/* ---- partitioned mode -------------------------------------------------------------------- */

int32_t
world_partitions(void)
{
    const char *v = getenv("MONGOQ_TEST_PARTITIONS");
    long p = v && *v ? strtol(v, NULL, 10) : 1;
    return p > 1 && p <= MONGOQ_MAX_PARTITIONS ? (int32_t)p : 1;
}

bool
world_uri_is_mongos(const char *uri)
{
    static int cached = -1; /* per test process: one server under test */
    if (cached < 0) {
        bson_t reply;
        bson_iter_t it;
        mongoc_init();
        mongoc_client_t *client = mtest_client_for(uri, NULL);
        cached = mtest_command(client, "admin", "{\"hello\": 1}", &reply, NULL) &&
                 bson_iter_init_find(&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
                 strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0;
        bson_destroy(&reply);
        mongoc_client_destroy(client);
    }
    return cached == 1;
}

void
world_skip_sharded(const char *reason)
{
    if (world_partitions() > 1) {
        cr_skip_test("partitioned mode (MONGOQ_TEST_PARTITIONS=%d): %s", world_partitions(),
                     reason);
    }
    if (world_uri_is_mongos(mtest_uri())) {
        cr_skip_test("the server under test is a mongos: %s", reason);
    }
}

/* The test's options with MONGOQ_TEST_PARTITIONS where the test chose no partitions itself. */
static mongoq_queue_opts_t
effective_opts(const mongoq_queue_opts_t *opts)
{
    mongoq_queue_opts_t o = MONGOQ_QUEUE_OPTS_INIT;
    if (opts) {
        o = *opts;
    }
    if (o.version == MONGOQ_QUEUE_OPTS_VERSION && o.partitions == 0) {
        o.partitions = world_partitions();
    }
    return o;
}

/* On a mongos, shards db.jobs of a partitioned queue through a pool of its own (so a command
 * counter on the world's pool sees none of it), as an operator does once before use. */
static void
shard_on_mongos(world_t *w, const mongoq_queue_opts_t *opts)
{
    bson_error_t error;
    if (opts->partitions <= 1 || !world_uri_is_mongos(w->uri)) {
        return;
    }
    char *appname = bson_strdup_printf("%s-shard", w->db);
    mongoc_client_pool_t *pool = mtest_pool_for(w->uri, appname);
    mongoq_queue_opts_t shard_opts = MONGOQ_QUEUE_OPTS_INIT; /* the test's write concern aside */
    shard_opts.partitions = opts->partitions;
    shard_opts.no_reaper = true;
    mongoq_queue_t *queue = mongoq_queue_new(pool, w->db, "jobs", &shard_opts, &error);
    cr_assert(queue, "mongoq_queue_new (to shard it): %s", error.message);
    cr_assert(mongoq_queue_shard(queue, NULL, &error), "mongoq_queue_shard: %s", error.message);
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    bson_free(appname);
}

void
world_open_on(world_t *w, const char *uri, const mongoq_queue_opts_t *opts, unsigned flags)
{
    bson_error_t error;
    mongoq_queue_opts_t o = effective_opts(opts);
    mongoc_init();
    memset(w, 0, sizeof *w);
    w->uri = uri;
    w->db = mtest_db_name("world");
    w->pool = open_pool(w, uri, flags & WORLD_PROXY);
    if (flags & WORLD_COUNTER) {
        w->counter = mtest_counter_new();
        mtest_counter_attach_pool(w->counter, w->pool);
    }
    w->client = mtest_client_for(uri, NULL);
    w->coll = mongoc_client_get_collection(w->client, w->db, "jobs");
    if (!(flags & WORLD_NO_QUEUE)) {
        shard_on_mongos(w, &o);
        w->queue = mongoq_queue_new(w->pool, w->db, "jobs", &o, &error);
        cr_assert(w->queue, "mongoq_queue_new: %s", error.message);
    }
}

void
world_open(world_t *w, const mongoq_queue_opts_t *opts, unsigned flags)
{
    world_open_on(w, mtest_uri(), opts, flags);
}

void
world_open_producer(world_t *w, const mongoq_queue_opts_t *opts)
{
    bson_error_t error;
    char *appname = bson_strdup_printf("%s-producer", w->db);
    w->producer_pool = mtest_pool_for(w->uri, appname);
    bson_free(appname);
    mongoq_queue_opts_t o = effective_opts(opts);
    w->producer = mongoq_queue_new(w->producer_pool, w->db, "jobs", &o, &error);
    cr_assert(w->producer, "mongoq_queue_new (producer): %s", error.message);
}

void
world_close(world_t *w)
{
    bson_error_t error;
    /* Only this test's connections are targeted, but never leave a fail point armed. */
    if (w->fail_point_set) {
        mtest_fail_point(w->client, "\"off\"", NULL);
    }
    if (w->proxy) {
        mongoq_faultproxy_heal(w->proxy, &error);
    }
    mongoq_queue_destroy(w->producer);
    mongoq_queue_destroy(w->queue);
    if (w->producer_pool) {
        mongoc_client_pool_destroy(w->producer_pool);
    }
    mongoc_client_pool_destroy(w->pool);
    mongoq_faultproxy_stop(w->proxy);
    mtest_counter_destroy(w->counter);
    mongoc_collection_destroy(w->coll);
    mtest_db_drop(w->client, w->db);
    mongoc_client_destroy(w->client);
    bson_free(w->db);
    memset(w, 0, sizeof *w);
    mongoc_cleanup();
}

/* ---- payloads and the queue ----------------------------------------------------------------- */

void
world_payload(bson_t *payload, int64_t seq)
{
    bson_init(payload);
    BSON_APPEND_INT64(payload, "seq", seq);
}

int64_t
world_seq(const mongoq_message_t *msg)
{
    bson_iter_t it;
    const bson_t *payload = mongoq_message_payload(msg);
    if (payload && bson_iter_init_find(&it, payload, "seq") && BSON_ITER_HOLDS_NUMBER(&it)) {
        return bson_iter_as_int64(&it);
    }
    return -1;
}

void
world_enqueue(mongoq_queue_t *queue, int64_t seq, const mongoq_enqueue_opts_t *opts, bson_oid_t *id)
{
    bson_t payload;
    bson_error_t error;
    world_payload(&payload, seq);
    bool ok = mongoq_enqueue(queue, &payload, opts, id, &error);
    bson_destroy(&payload);
    cr_assert(ok, "enqueue %" PRId64 ": %s", seq, error.message);
}

void
world_enqueue_n(world_t *w, int n, const mongoq_enqueue_opts_t *opts, bson_oid_t *ids)
{
    for (int i = 0; i < n; i++) {
        world_enqueue(w->queue, i, opts, ids ? &ids[i] : NULL);
    }
}

mongoq_consumer_t *
world_consumer(world_t *w, const char *name, int64_t lease_ms)
{
    bson_error_t error;
    mongoq_consumer_opts_t opts = MONGOQ_CONSUMER_OPTS_INIT;
    opts.name = name;
    opts.lease_ms = lease_ms;
    mongoq_consumer_t *consumer = mongoq_consumer_new(w->queue, &opts, &error);
    cr_assert(consumer, "mongoq_consumer_new: %s", error.message);
    return consumer;
}

mongoq_message_t *
world_claim(mongoq_consumer_t *consumer, int64_t wait_ms)
{
    mongoq_message_t *msg = NULL;
    bson_error_t error;
    cr_assert(mongoq_consumer_claim(consumer, wait_ms, &msg, &error), "claim: %s", error.message);
    return msg;
}

int64_t
world_browse_pages(world_t *w, mongoq_browse_opts_t o, int page, int max_pages,
                   void (*each)(const mongoq_message_t *msg, bool opens_page, void *ctx),
                   void *ctx)
{
    bson_error_t error;
    char *token = NULL;
    int64_t listed = 0;
    for (int pages = 0; pages < max_pages; pages++) {
        o.page_size = page;
        o.page_token = token;
        mongoq_browse_t *b = mongoq_browse_new(w->queue, &o, &error);
        cr_assert(b, "browse_new: %s", error.message);
        int got = 0;
        mongoq_message_t *msg;
        while (got < page) {
            cr_assert(mongoq_browse_next(b, &msg, &error), "next: %s", error.message);
            if (!msg) {
                break;
            }
            each(msg, got == 0, ctx);
            got++;
            listed++;
            mongoq_message_destroy(msg);
        }
        bson_free(token);
        token = mongoq_browse_token(b) ? bson_strdup(mongoq_browse_token(b)) : NULL;
        mongoq_browse_destroy(b);
        if (got < page) {
            break;
        }
    }
    bson_free(token);
    return listed;
}

/* ---- checks, straight to the server --------------------------------------------------------- */

int64_t
world_count(world_t *w, const char *filter_json)
{
    return mtest_count(w->coll, filter_json);
}

bool
world_find(world_t *w, const bson_oid_t *id, bson_t *doc)
{
    return mtest_find_by_id(w->coll, id, doc);
}

int64_t
world_server_now(world_t *w)
{
    return mtest_server_now_ms(w->client);
}

typedef struct {
    world_t *w;
    int64_t server_ms;
} server_past_t;

static bool
server_past(void *ctx)
{
    server_past_t *p = ctx;
    return world_server_now(p->w) > p->server_ms;
}

bool
world_wait_server_past(world_t *w, int64_t server_ms, int64_t timeout_ms)
{
    server_past_t past = {w, server_ms};
    return mtest_wait_until(server_past, &past, timeout_ms);
}

void
world_assert_empty(world_t *w)
{
    mongoq_stats_t st = MONGOQ_STATS_INIT;
    bson_error_t error;
    cr_assert(mongoq_queue_stats(w->queue, &st, &error), "stats: %s", error.message);
    cr_assert(st.ready == 0 && st.delayed == 0 && st.processing == 0 && st.done == 0 &&
                  st.dead == 0,
              "queue not empty: ready %" PRId64 " delayed %" PRId64 " processing %" PRId64
              " done %" PRId64 " dead %" PRId64,
              st.ready, st.delayed, st.processing, st.done, st.dead);
    int64_t n = world_count(w, "{}");
    cr_assert(n == 0, "%" PRId64 " documents left in the collection", n);
}

/* ---- faults ---------------------------------------------------------------------------------- */

int64_t
world_fail_point_app(world_t *w, const char *appname, const char *mode_json,
                     const char *data_fields_json)
{
    w->fail_point_set = true;
    return mtest_fail_point_app(w->client, appname, mode_json, data_fields_json);
}

int64_t
world_fail_point(world_t *w, const char *mode_json, const char *data_fields_json)
{
    return world_fail_point_app(w, w->db, mode_json, data_fields_json);
}

int64_t
world_fail_point_off(world_t *w, int64_t count)
{
    w->fail_point_set = false;
    return mtest_fail_point(w->client, "\"off\"", NULL) - count;
}

int32_t
world_proxy_rule(world_t *w, mongoq_fault_kind_t kind, const char *commands, int32_t times)
{
    cr_assert(w->proxy, "the world has no proxy (WORLD_PROXY)");
    return fp_add_rule(w->proxy, kind, commands, w->db, times, 0);
}

/* ---- draining and reaping -------------------------------------------------------------------- */

void
world_drain(world_t *w, mongoq_consumer_t *consumer, int n, world_drained_t *out,
            int64_t timeout_ms)
{
    bson_error_t error;
    int done = 0;
    int64_t deadline = mtest_now_ms() + timeout_ms;
    cr_assert(n <= WORLD_DRAIN_MAX, "drain at most %d messages", WORLD_DRAIN_MAX);
    while (done < n && mtest_now_ms() < deadline) {
        mongoq_message_t *msg = NULL;
        cr_assert(mongoq_consumer_claim(consumer, 200, &msg, &error), "claim: %s", error.message);
        if (!msg) {
            cr_assert(mongoq_queue_reap(w->queue, NULL, &error), "reap: %s", error.message);
            continue;
        }
        int64_t seq = world_seq(msg);
        cr_assert(seq >= 0 && seq < n, "unexpected seq %" PRId64, seq);
        cr_assert(mongoq_message_ack(msg, &error), "ack: %s", error.message);
        out->acks[seq]++;
        out->attempts[seq] = mongoq_message_attempts(msg);
        mongoq_message_destroy(msg);
        done++;
    }
    cr_assert(done == n, "only %d of %d messages came back within %" PRId64 " ms", done, n,
              timeout_ms);
    for (int i = 0; i < n; i++) {
        cr_expect(out->acks[i] == 1, "seq %d acked %d times", i, out->acks[i]);
    }
}

int64_t
world_reap_until(world_t *w, int64_t expected, int64_t timeout_ms)
{
    int64_t total = 0;
    int64_t deadline = mtest_now_ms() + timeout_ms;
    for (;;) {
        int64_t n = 0;
        bson_error_t error;
        cr_assert(mongoq_queue_reap(w->queue, &n, &error), "reap: %s", error.message);
        total += n;
        if (total >= expected || mtest_now_ms() >= deadline) {
            return total;
        }
        /* poll interval of an awaited condition (lease expiry on the server) */
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* ---- claimers on threads of their own ------------------------------------------------------ */

void *
world_claim_two(void *arg)
{
    world_claimer_t *c = arg;
    c->ok = mongoq_consumer_claim_many(c->consumer, 2, 0, c->msgs, &c->n, &c->error);
    return NULL;
}

void
world_claimer_start(world_claimer_t *c)
{
    cr_assert_eq(pthread_create(&c->thread, NULL, world_claim_two, c), 0);
}

void
world_claimer_join(world_claimer_t *c)
{
    pthread_join(c->thread, NULL);
}

bool
world_update_sent(void *counter)
{
    return mtest_counter_get(counter, "update") >= 1;
}

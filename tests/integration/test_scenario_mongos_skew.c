/*
 * Scenario: two mongos routers whose clocks are 4 s apart (one 2 s behind the host, one 2 s
 * ahead: the skew bound docs/scaling.md states, "Clocks on a cluster"), over the same shards.
 * Skips unless MONGOQ_TEST_SKEW_URI lists two such mongos (run_sharded_tests.sh starts the test
 * router with those endpoints; a real cluster's routers are within milliseconds of each other).
 *
 * mongos evaluates $$NOW for a findAndModify and an update itself and hands it to the shard as
 * runtimeConstants (mongodb/mongo s/commands/cluster_find_and_modify_cmd.cpp,
 * appendLegacyRuntimeConstantsToCommandObject; s/commands/cluster_write_cmd.h), so a claim's due
 * test and lease and the reaper's expiry test run on the clock of the router that routes them.
 * Asserted, each premise first:
 *  - each router stamps $$NOW with its own clock, and the two differ by the skew;
 *  - the client's estimate is the slowest router's clock: a message enqueued "now" through both
 *    is due on the slow router at once (run_at is not ahead of its clock);
 *  - a delayed message is not claimed through the slow router before its run_at on the slow
 *    router's clock; through the fast one it may be claimed at most the spread earlier by the
 *    slow clock's reckoning (the stated bound), never before its run_at on the claiming router;
 *  - a lease taken through the slow router is not reaped through the slow router before it
 *    expires on that clock; through the fast router it is reaped only once the fast clock is past
 *    lease_expires_at, so it lasted at least lease_ms - spread (the stated bound), and the late
 *    ack is refused (LEASE_LOST: fencing);
 *  - a client of both routers (the world's queue) reaps that lease only once the slow clock is
 *    past it too: it measures the spread and holds its reaper's $$NOW back by it.
 * No sleeps synchronise: each step polls for its condition within a bounded deadline.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "world.h"

#define SKEW_MIN_MS 3000 /* the premise: the routers really are this far apart */
#define LEASE_MS 6000
#define DELAY_MS 3000

typedef struct {
    char uri[2][128];             /* "mongodb://host:port/" of the slow and the fast router */
    mongoc_client_t *client[2];   /* straight to each */
    mongoc_client_pool_t *pool[2];
    mongoq_queue_t *queue[2];     /* db.jobs through one router only */
    int64_t spread_ms;
} routers_t;

enum { SLOW = 0, FAST = 1 };

/* The router's clock minus the host's, from its hello (within a loopback round trip). */
static int64_t
offset_of(mongoc_client_t *client)
{
    int64_t before = mtest_wall_ms();
    int64_t now = mtest_server_now_ms(client);
    return now - (before + mtest_wall_ms()) / 2;
}

/* Splits MONGOQ_TEST_SKEW_URI's two hosts and orders them slow, fast. */
static void
routers_open(routers_t *r, world_t *w)
{
    const char *uri = getenv("MONGOQ_TEST_SKEW_URI");
    char hosts[2][96];
    const char *p = uri + strlen("mongodb://");
    size_t a = strcspn(p, ",");
    cr_assert(p[a] == ',', "MONGOQ_TEST_SKEW_URI lists two mongos: %s", uri);
    size_t b = strcspn(p + a + 1, ",/?");
    cr_assert(a < sizeof hosts[0] && b < sizeof hosts[1]);
    snprintf(hosts[0], sizeof hosts[0], "%.*s", (int)a, p);
    snprintf(hosts[1], sizeof hosts[1], "%.*s", (int)b, p + a + 1);
    int64_t off[2];
    for (int k = 0; k < 2; k++) {
        snprintf(r->uri[k], sizeof r->uri[k], "mongodb://%.95s/", hosts[k]);
        r->client[k] = mtest_client_for(r->uri[k], NULL);
        off[k] = offset_of(r->client[k]);
    }
    if (off[0] > off[1]) { /* order them slow, fast */
        char tmp[128];
        mongoc_client_t *c = r->client[0];
        snprintf(tmp, sizeof tmp, "%s", r->uri[0]);
        snprintf(r->uri[0], sizeof r->uri[0], "%s", r->uri[1]);
        snprintf(r->uri[1], sizeof r->uri[1], "%s", tmp);
        r->client[0] = r->client[1];
        r->client[1] = c;
    }
    r->spread_ms = llabs(off[1] - off[0]);
    cr_assert(r->spread_ms >= SKEW_MIN_MS, "the routers' clocks are %" PRId64 " ms apart; the "
              "test needs at least %d", r->spread_ms, SKEW_MIN_MS);
    for (int k = 0; k < 2; k++) {
        bson_error_t error;
        mongoq_queue_opts_t o = MONGOQ_QUEUE_OPTS_INIT;
        o.partitions = world_partitions();
        o.no_reaper = true;
        o.lease_ms = LEASE_MS;
        r->pool[k] = mtest_pool_for(r->uri[k], NULL);
        r->queue[k] = mongoq_queue_new(r->pool[k], w->db, "jobs", &o, &error);
        cr_assert(r->queue[k], "queue through router %d: %s", k, error.message);
    }
}

static void
routers_close(routers_t *r)
{
    for (int k = 0; k < 2; k++) {
        mongoq_queue_destroy(r->queue[k]);
        mongoc_client_pool_destroy(r->pool[k]);
        mongoc_client_destroy(r->client[k]);
    }
}

static void
open_world(world_t *w, routers_t *r)
{
    const char *uri = getenv("MONGOQ_TEST_SKEW_URI");
    if (!uri || !*uri) {
        cr_skip_test("no MONGOQ_TEST_SKEW_URI (two mongos with skewed clocks; "
                     "queue-tests-sharded sets it)");
    }
    mongoq_queue_opts_t o = MONGOQ_QUEUE_OPTS_INIT;
    o.no_reaper = true;
    o.lease_ms = LEASE_MS;
    world_open_on(w, uri, &o, 0);
    memset(r, 0, sizeof *r);
    routers_open(r, w);
}

/* $$NOW of an update routed through client (an upsert on a probe document, read back). */
static int64_t
now_of_update(mongoc_client_t *client, const char *db)
{
    bson_error_t error;
    bson_t reply, doc;
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "probe");
    bson_t *filter = BCON_NEW("_id", BCON_INT32(1));
    bson_t *update = BCON_NEW("0", "{", "$set", "{", "t", "$$NOW", "}", "}");
    bson_t *opts = BCON_NEW("upsert", BCON_BOOL(true));
    cr_assert(mongoc_collection_update_one(coll, filter, update, opts, &reply, &error), "%s",
              error.message);
    bson_destroy(&reply);
    bson_t *id = BCON_NEW("_id", BCON_INT32(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, id, NULL, NULL);
    const bson_t *found;
    cr_assert(mongoc_cursor_next(cur, &found), "the probe document");
    bson_copy_to(found, &doc);
    int64_t t = mtest_doc_date(&doc, "t");
    bson_destroy(&doc);
    mongoc_cursor_destroy(cur);
    bson_destroy(id);
    bson_destroy(opts);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return t;
}

/* Claims on queue until a message comes or deadline_ms (local wall clock) passes. */
static mongoq_message_t *
claim_until(mongoq_consumer_t *c, int64_t deadline_ms)
{
    mongoq_message_t *msg = NULL;
    /* Bounded by the deadline: each claim waits at most 200 ms. */
    while (!msg && mtest_wall_ms() < deadline_ms) {
        msg = world_claim(c, 200);
    }
    return msg;
}

/* Enqueues message seq through w's queue with opts; returns the run_at it was given. */
static int64_t
enqueue_run_at(world_t *w, int64_t seq, const mongoq_enqueue_opts_t *opts)
{
    bson_oid_t id;
    bson_t doc;
    world_enqueue(w->queue, seq, opts, &id);
    cr_assert(world_find(w, &id, &doc));
    int64_t run_at = mtest_doc_date(&doc, "run_at");
    bson_destroy(&doc);
    return run_at;
}

/* A lease taken through the slow router on the one message enqueued, and its expiry. */
typedef struct {
    mongoq_consumer_t *consumer; /* through the slow router */
    mongoq_message_t *msg;
    int64_t claimed_wall; /* mtest_wall_ms() once claimed */
    int64_t expires;      /* lease_expires_at, stamped by the slow router */
} slow_lease_t;

static void
slow_lease_take(world_t *w, routers_t *r, slow_lease_t *l)
{
    bson_t doc;
    world_enqueue(w->queue, 1, NULL, NULL);
    l->consumer = mongoq_consumer_new(r->queue[SLOW], NULL, NULL);
    cr_assert(l->consumer);
    l->msg = claim_until(l->consumer, mtest_wall_ms() + 5000);
    cr_assert(l->msg, "claimed through the slow router");
    l->claimed_wall = mtest_wall_ms();
    cr_assert(world_find(w, mongoq_message_id(l->msg), &doc));
    l->expires = mtest_doc_date(&doc, "lease_expires_at");
    bson_destroy(&doc);
}

/* Once the lease was reaped: the late ack is refused (fencing); frees the lease. */
static void
slow_lease_lost(slow_lease_t *l)
{
    bson_error_t error;
    cr_expect(!mongoq_message_ack(l->msg, &error) && error.code == MONGOQ_ERROR_LEASE_LOST,
              "the late ack is refused: %s", error.message);
    mongoq_message_destroy(l->msg);
    mongoq_consumer_destroy(l->consumer);
}

Test(scenario_mongos_skew, each_router_stamps_now_with_its_own_clock)
{
    world_t w;
    routers_t r;
    open_world(&w, &r);
    for (int k = 0; k < 2; k++) {
        int64_t before = mtest_server_now_ms(r.client[k]);
        int64_t t = now_of_update(r.client[k], w.db);
        int64_t after = mtest_server_now_ms(r.client[k]);
        cr_expect(t >= before - 5 && t <= after + 5,
                  "router %d: $$NOW %" PRId64 " is not its clock [%" PRId64 ", %" PRId64 "]", k,
                  t, before, after);
    }
    int64_t slow = now_of_update(r.client[SLOW], w.db);
    int64_t fast = now_of_update(r.client[FAST], w.db);
    cr_expect(fast - slow >= SKEW_MIN_MS, "$$NOW through the fast router is only %" PRId64
              " ms ahead", fast - slow);
    routers_close(&r);
    world_close(&w);
}

Test(scenario_mongos_skew, the_estimate_is_the_slowest_clock_and_delays_hold_on_it)
{
    world_t w;
    routers_t r;
    bson_oid_t id;
    bson_t doc;
    open_world(&w, &r);
    /* Enqueued through both routers: run_at comes from the client's estimate. */
    world_enqueue(w.queue, 1, NULL, &id);
    int64_t slow_now = mtest_server_now_ms(r.client[SLOW]);
    cr_assert(world_find(&w, &id, &doc));
    int64_t run_at = mtest_doc_date(&doc, "run_at");
    bson_destroy(&doc);
    cr_expect(run_at <= slow_now, "run_at %" PRId64 " is ahead of the slow router's clock %" PRId64
              ": the estimate must be the slowest clock", run_at, slow_now);
    mongoq_consumer_t *slow_c = mongoq_consumer_new(r.queue[SLOW], NULL, NULL);
    mongoq_consumer_t *fast_c = mongoq_consumer_new(r.queue[FAST], NULL, NULL);
    cr_assert(slow_c && fast_c);
    mongoq_message_t *m = claim_until(slow_c, mtest_wall_ms() + r.spread_ms / 2);
    cr_assert(m, "a message enqueued now is due at once on the slow router");
    mongoq_message_destroy(m); /* (its lease runs out; nothing else here claims it) */

    /* A delayed message through the slow router: never before run_at on its clock. */
    mongoq_enqueue_opts_t eo = MONGOQ_ENQUEUE_OPTS_INIT;
    eo.delay_ms = DELAY_MS;
    run_at = enqueue_run_at(&w, 2, &eo);
    m = claim_until(slow_c, mtest_wall_ms() + DELAY_MS + r.spread_ms + 5000);
    int64_t slow_after = mtest_server_now_ms(r.client[SLOW]);
    cr_assert(m && world_seq(m) == 2, "the delayed message through the slow router");
    cr_expect(slow_after >= run_at, "claimed through the slow router %" PRId64 " ms before "
              "run_at on its clock", run_at - slow_after);
    mongoq_message_destroy(m);

    /* Through the fast router: due on its clock, so early by at most the spread on the slow. */
    run_at = enqueue_run_at(&w, 3, &eo);
    m = claim_until(fast_c, mtest_wall_ms() + DELAY_MS + r.spread_ms + 5000);
    int64_t fast_after = mtest_server_now_ms(r.client[FAST]);
    slow_after = mtest_server_now_ms(r.client[SLOW]);
    cr_assert(m && world_seq(m) == 3, "the delayed message through the fast router");
    cr_expect(fast_after >= run_at, "claimed before run_at on the claiming router's clock");
    cr_expect(slow_after >= run_at - r.spread_ms - 100, "claimed %" PRId64 " ms early on the "
              "slow clock: more than the spread", run_at - slow_after);
    mongoq_message_destroy(m);
    mongoq_consumer_destroy(slow_c);
    mongoq_consumer_destroy(fast_c);
    routers_close(&r);
    world_close(&w);
}

Test(scenario_mongos_skew, a_lease_lasts_its_length_less_the_spread_at_most)
{
    world_t w;
    routers_t r;
    slow_lease_t l;
    bson_error_t error;
    int64_t reaped = 0;
    open_world(&w, &r);
    slow_lease_take(&w, &r, &l);
    int64_t slow_now = mtest_server_now_ms(r.client[SLOW]);
    cr_assert(llabs(l.expires - (slow_now + LEASE_MS)) < 1000,
              "the lease is stamped by the slow router: expires %" PRId64 ", its clock %" PRId64,
              l.expires, slow_now);

    /* Through the slow router, nothing is reaped while its clock is before the expiry. */
    cr_assert(mongoq_queue_reap(r.queue[SLOW], &reaped, &error), "%s", error.message);
    cr_expect(reaped == 0 || mtest_server_now_ms(r.client[SLOW]) >= l.expires,
              "reaped through the slow router before the lease expired on its clock");

    /* Through the fast router: reaped once its clock passes the expiry, never before. */
    int64_t deadline = l.claimed_wall + LEASE_MS + 5000;
    int64_t fast_after = 0;
    /* Bounded by the deadline; each pass is one reap (two updateMany). */
    while (reaped == 0 && mtest_wall_ms() < deadline) {
        cr_assert(mongoq_queue_reap(r.queue[FAST], &reaped, &error), "%s", error.message);
        fast_after = mtest_server_now_ms(r.client[FAST]);
    }
    int64_t lasted = mtest_wall_ms() - l.claimed_wall;
    cr_assert_eq(reaped, 1, "reaped through the fast router within the deadline");
    cr_expect(fast_after >= l.expires, "reaped before the fast router's clock reached the expiry");
    cr_expect(lasted >= LEASE_MS - r.spread_ms - 250,
              "the lease lasted %" PRId64 " ms of %d with routers %" PRId64 " ms apart", lasted,
              LEASE_MS, r.spread_ms);
    cr_log_info("lease of %d ms reaped through the fast router after %" PRId64 " ms (spread %"
                PRId64 " ms)", LEASE_MS, lasted, r.spread_ms);
    slow_lease_lost(&l);
    routers_close(&r);
    world_close(&w);
}

/*
 * A client whose URI lists both routers measures the spread between their clocks and holds its
 * reaper's $$NOW back by it (src/reaper.c), so a lease stamped by the slow router is reaped only
 * once the slow clock, too, is past it, whichever router libmongoc picks for each pass (it picks
 * among the mongos within localThresholdMS at random, so the passes reach the fast one).
 */
Test(scenario_mongos_skew, a_client_of_both_routers_reaps_only_after_every_clock)
{
    world_t w;
    routers_t r;
    slow_lease_t l;
    bson_error_t error;
    int64_t reaped = 0, slow_after = 0;
    open_world(&w, &r);
    slow_lease_take(&w, &r, &l);

    int64_t deadline = l.claimed_wall + LEASE_MS + r.spread_ms + 5000;
    int passes = 0;
    /* Bounded by the deadline; a pass every 20 ms (three commands, each on any router). */
    while (reaped == 0 && mtest_wall_ms() < deadline) {
        cr_assert(mongoq_queue_reap(w.queue, &reaped, &error), "%s", error.message);
        slow_after = mtest_server_now_ms(r.client[SLOW]);
        passes++;
        if (reaped == 0) {
            usleep(20 * 1000);
        }
    }
    int64_t lasted = mtest_wall_ms() - l.claimed_wall;
    cr_assert_eq(reaped, 1, "reaped within the deadline (%d passes)", passes);
    cr_expect(slow_after >= l.expires, "reaped %" PRId64 " ms before the slow router's clock "
              "reached the expiry it stamped", l.expires - slow_after);
    cr_expect(lasted >= LEASE_MS - 100, "the lease lasted %" PRId64 " ms of %d", lasted, LEASE_MS);
    cr_log_info("lease of %d ms reaped through both routers after %" PRId64 " ms (%d passes, "
                "spread %" PRId64 " ms)", LEASE_MS, lasted, passes, r.spread_ms);
    slow_lease_lost(&l);
    routers_close(&r);
    world_close(&w);
}

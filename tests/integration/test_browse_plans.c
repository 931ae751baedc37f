/*
 * Plans of browse listings (mongoq/browse.h: a page costs the same on the first page and the
 * millionth), as test_plans.c does for claims: every command a page sends is run again through
 * explain with executionStats, and the keys and documents it examined must stay within the page
 * plus the messages tied on one sort value, however deep the page is.
 *
 * The RUN_AT and LEASE orders sort {run_at | lease_expires_at, _id} over indexes without _id
 * ({status, run_at}, {status, lease_expires_at}); a page that asks the server for that sort
 * over the whole rest of the range makes it read and sort every message of the range.
 *
 * A crowd is inserted straight to the server: messages with distinct sort values one second
 * apart but for a block of `ties` sharing one value (as an enqueue_many writes them), ids
 * ascending with seq. Pages are resumed from tokens made here in the documented format (hex of
 * {o: order, s: status | null, k: [the sort key]}), so a page far into the listing is reached
 * without reading everything before it; page_within checks the library's tokens are the same.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

#define PAGE 100
#define STEP_MS 1000
#define P 4 /* partitions, in the partitioned test */

TestSuite(browse_plans, .timeout = 300);

typedef struct {
    const char *status;
    const char *field;    /* run_at or lease_expires_at */
    int64_t n, seq0;      /* messages, and the payload seq of the first */
    int64_t tie_at, ties; /* messages tie_at .. tie_at + ties - 1 share one value */
    int32_t partitions;   /* 0: no partition field */
    int64_t now;          /* the server's clock when inserted */
    int64_t base;         /* message i's value: base + i * STEP_MS (tie block: of tie_at) */
    bson_oid_t *ids;      /* of message i */
} crowd_t;

static int64_t
crowd_value(const crowd_t *c, int64_t i)
{
    bool tied = i >= c->tie_at && i < c->tie_at + c->ties;
    return c->base + (tied ? c->tie_at : i) * STEP_MS;
}

/* Message i of the crowd *ctx, in the shape mongoq writes (src/fields.h). */
static void
crowd_doc(bson_t *doc, int64_t i, void *ctx)
{
    const crowd_t *c = ctx;
    int64_t now = c->now;
    BCON_APPEND(doc, "_id", BCON_OID(&c->ids[i]), "payload", "{", "seq", BCON_INT64(c->seq0 + i),
                "}", "status", BCON_UTF8(c->status), "priority", BCON_INT32(0), "attempts",
                BCON_INT32(0), "max_attempts", BCON_INT32(5), "enqueued_at", BCON_DATE_TIME(now),
                "updated_at", BCON_DATE_TIME(now));
    if (c->partitions > 0) {
        BSON_APPEND_INT32(doc, "partition", (int32_t)(i % c->partitions));
    }
    if (strcmp(c->field, "run_at") == 0) {
        BSON_APPEND_DATE_TIME(doc, "run_at", crowd_value(c, i));
    } else {
        bson_oid_t token;
        bson_oid_init(&token, NULL);
        BSON_APPEND_DATE_TIME(doc, "run_at", now - 60000);
        BSON_APPEND_DATE_TIME(doc, c->field, crowd_value(c, i));
        BSON_APPEND_OID(doc, "lease_token", &token);
        BSON_APPEND_UTF8(doc, "claimed_by", "crowd");
    }
}

/* Inserts the crowd straight to the server, its values from a day ahead of the server's clock. */
static void
crowd_insert(world_t *w, crowd_t *c)
{
    c->now = world_server_now(w);
    c->base = c->now + 86400000;
    c->ids = bson_malloc(sizeof *c->ids * (size_t)c->n);
    for (int64_t i = 0; i < c->n; i++) {
        bson_oid_init(&c->ids[i], NULL);
    }
    world_insert_many(w, c->n, crowd_doc, c);
}

/* The token resuming right after crowd message i: hex of {o, s, k: [(status), value, _id]}. */
static char *
token_after(const crowd_t *c, mongoq_browse_order_t order, bool every_status, int64_t i)
{
    bson_t doc = BSON_INITIALIZER, key;
    BSON_APPEND_INT32(&doc, "o", (int32_t)order);
    if (every_status) {
        BSON_APPEND_NULL(&doc, "s");
    } else {
        BSON_APPEND_UTF8(&doc, "s", c->status);
    }
    BSON_APPEND_ARRAY_BEGIN(&doc, "k", &key);
    if (every_status) {
        BSON_APPEND_UTF8(&key, "0", c->status);
    }
    BSON_APPEND_DATE_TIME(&key, every_status ? "1" : "0", crowd_value(c, i));
    BSON_APPEND_OID(&key, every_status ? "2" : "1", &c->ids[i]);
    bson_append_array_end(&doc, &key);
    char *hex = bson_malloc(doc.len * 2 + 1);
    for (uint32_t k = 0; k < doc.len; k++) {
        bson_snprintf(hex + 2 * k, 3, "%02x", bson_get_data(&doc)[k]);
    }
    bson_destroy(&doc);
    return hex;
}

typedef struct {
    mongoq_browse_order_t order;
    bool every_status;
    int64_t max_keys, max_docs; /* per command */
} listing_t;

/*
 * Reads one page of PAGE after message i of crowd c (-1: the first page of the listing): it must
 * hold the payload seqs following c's message i, and every command it sent must stay within l's
 * bounds. The library's token after the page's last message, when that is one of `last`'s
 * messages (NULL: do not check), must be the one token_after makes.
 */
static void
page_within(world_t *w, const listing_t *l, const crowd_t *c, int64_t i, const crowd_t *last)
{
    bson_error_t error;
    char what[96];
    char *token = i >= 0 ? token_after(c, l->order, l->every_status, i) : NULL;
    int64_t seq = (i >= 0 ? c->seq0 + i : c->seq0 - 1) + 1;
    mongoq_browse_opts_t o = MONGOQ_BROWSE_OPTS_INIT;
    o.status = l->every_status ? NULL : c->status;
    o.order = l->order;
    o.page_size = PAGE;
    o.page_token = token;
    mtest_counter_reset(w->counter);
    mongoq_browse_t *b = mongoq_browse_new(w->queue, &o, &error);
    cr_assert(b, "browse_new: %s", error.message);
    for (int64_t k = 0; k < PAGE; k++, seq++) {
        mongoq_message_t *msg;
        cr_assert(mongoq_browse_next(b, &msg, &error), "next: %s", error.message);
        cr_assert(msg, "the page after %lld ends early", (long long)i);
        cr_assert_eq(world_seq(msg), seq, "after %lld: seq %lld where %lld belongs", (long long)i,
                     (long long)world_seq(msg), (long long)seq);
        mongoq_message_destroy(msg);
    }
    bson_snprintf(what, sizeof what, "%s page after message %lld of the %s", c->field, (long long)i,
                  c->status);
    cr_assert_geq(world_assert_sent_within(w, what, l->max_keys, l->max_docs), 1);
    if (last) {
        char *want = token_after(last, l->order, l->every_status, seq - 1 - last->seq0);
        cr_assert_str_eq(mongoq_browse_token(b), want, "the token format changed");
        bson_free(want);
    }
    mongoq_browse_destroy(b);
    bson_free(token);
}

static void
browse_open(world_t *w, int32_t partitions)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true;
    opts.partitions = partitions;
    world_open(w, &opts, WORLD_COUNTER);
}

/* ---- the tests ---------------------------------------------------------------------------- */

/*
 * 100,000 ready messages, 500 of them on one run_at: pages anywhere, across the tie block's
 * edges and inside it, each command within the page (distinct values) or the page and the tie
 * block (a page that meets it).
 */
Test(browse_plans, run_at_pages_cost_the_page_and_its_ties_at_any_depth)
{
    world_skip_sharded("plans of one server, messages inserted without a partition");
    world_t w;
    crowd_t c = {.status = "ready", .field = "run_at", .n = 100000, .tie_at = 60000, .ties = 500};
    browse_open(&w, 0);
    crowd_insert(&w, &c);
    mtest_counter_keep_commands(w.counter);
    listing_t plain = {MONGOQ_BROWSE_ORDER_RUN_AT, false, PAGE + 2, PAGE + 1};
    listing_t tied = {MONGOQ_BROWSE_ORDER_RUN_AT, false, PAGE + c.ties + 2, PAGE + c.ties + 1};
    page_within(&w, &plain, &c, -1, &c);
    page_within(&w, &plain, &c, 30000, &c);
    page_within(&w, &plain, &c, 99000, &c);
    page_within(&w, &tied, &c, c.tie_at - 50, &c);
    page_within(&w, &tied, &c, c.tie_at + 200, &c);
    page_within(&w, &tied, &c, c.tie_at + c.ties - 50, &c);
    world_close(&w);
    bson_free(c.ids);
}

/* Every status in RUN_AT order: {status, run_at, _id}; a page crossing from one status into the
 * next costs no more than one inside a status. */
Test(browse_plans, every_status_pages_cost_the_page_and_its_ties)
{
    world_skip_sharded("plans of one server, messages inserted without a partition");
    world_t w;
    crowd_t dead = {.status = "dead", .field = "run_at", .n = 20000, .seq0 = -20000};
    crowd_t ready = {
        .status = "ready", .field = "run_at", .n = 100000, .tie_at = 60000, .ties = 500};
    browse_open(&w, 0);
    crowd_insert(&w, &dead);
    crowd_insert(&w, &ready);
    mtest_counter_keep_commands(w.counter);
    listing_t plain = {MONGOQ_BROWSE_ORDER_RUN_AT, true, PAGE + 2, PAGE + 1};
    listing_t tied = {MONGOQ_BROWSE_ORDER_RUN_AT, true, PAGE + ready.ties + 2,
                      PAGE + ready.ties + 1};
    page_within(&w, &plain, &dead, -1, &dead);
    page_within(&w, &plain, &dead, dead.n - 50, &ready);
    page_within(&w, &plain, &ready, 30000, &ready);
    page_within(&w, &tied, &ready, ready.tie_at + 420, &ready);
    world_close(&w);
    bson_free(dead.ids);
    bson_free(ready.ids);
}

/* The LEASE order: {lease_expires_at, _id} over the lease index {status, lease_expires_at}. */
Test(browse_plans, lease_pages_cost_the_page_and_its_ties_at_any_depth)
{
    world_skip_sharded("plans of one server, messages inserted without a partition");
    world_t w;
    crowd_t c = {.status = "processing",
                 .field = "lease_expires_at",
                 .n = 50000,
                 .tie_at = 30000,
                 .ties = 500};
    browse_open(&w, 0);
    crowd_insert(&w, &c);
    mtest_counter_keep_commands(w.counter);
    listing_t plain = {MONGOQ_BROWSE_ORDER_LEASE, false, PAGE + 2, PAGE + 1};
    listing_t tied = {MONGOQ_BROWSE_ORDER_LEASE, false, PAGE + c.ties + 2, PAGE + c.ties + 1};
    page_within(&w, &plain, &c, -1, &c);
    page_within(&w, &plain, &c, 20000, &c);
    page_within(&w, &tied, &c, c.tie_at - 50, &c);
    page_within(&w, &tied, &c, c.tie_at + c.ties - 50, &c);
    world_close(&w);
    bson_free(c.ids);
}

/* A queue of P partitions: each command reads every partition's stretch, merged in order (a
 * key or two more per partition). */
Test(browse_plans, partitioned_run_at_pages_cost_the_page_and_its_ties)
{
    world_skip_sharded("plans of one server");
    world_t w;
    crowd_t c = {.status = "ready",
                 .field = "run_at",
                 .n = 20000,
                 .tie_at = 10000,
                 .ties = 500,
                 .partitions = P};
    browse_open(&w, P);
    crowd_insert(&w, &c);
    mtest_counter_keep_commands(w.counter);
    listing_t plain = {MONGOQ_BROWSE_ORDER_RUN_AT, false, PAGE + 2 * P, PAGE + P};
    listing_t tied = {MONGOQ_BROWSE_ORDER_RUN_AT, false, PAGE + c.ties + 2 * P, PAGE + c.ties + P};
    page_within(&w, &plain, &c, -1, &c);
    page_within(&w, &plain, &c, 5000, &c);
    page_within(&w, &tied, &c, c.tie_at - 50, &c);
    world_close(&w);
    bson_free(c.ids);
}

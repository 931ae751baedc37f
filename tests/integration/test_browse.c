/* mongoq_queue_get, browse listings, browsed messages refusing writes, mongoq_queue_retry_now. */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

static mongoq_message_t *
get(world_t *t, const bson_oid_t *id)
{
    mongoq_message_t *msg = NULL;
    bson_error_t error;
    cr_assert(mongoq_queue_get(t->queue, id, &msg, &error), "get: %s", error.message);
    cr_assert_not_null(msg);
    return msg;
}

/* Claims one message (any) and fails it with reason: it is dead then. */
static void
claim_and_fail(world_t *t, const char *reason)
{
    bson_error_t error;
    mongoq_consumer_t *c = world_consumer(t, "browse-test", 0);
    mongoq_message_t *msg = world_claim(c, 1000);
    cr_assert_not_null(msg);
    cr_assert(mongoq_message_fail(msg, reason, &error), "fail: %s", error.message);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
}

Test(browse, get_reads_any_status_and_refuses_writes)
{
    world_t t;
    bson_error_t error;
    bson_oid_t id;
    world_open(&t, NULL, 0);
    mongoq_enqueue_opts_t o = MONGOQ_ENQUEUE_OPTS_INIT;
    o.priority = 7;
    o.dedup_key = "k";
    world_enqueue(t.queue, 42, &o, &id);
    mongoq_message_t *msg = get(&t, &id);
    cr_assert(mongoq_message_is_browsed(msg));
    cr_assert_str_eq(mongoq_message_status(msg), "ready");
    cr_assert_eq(world_seq(msg), 42);
    cr_assert_eq(mongoq_message_priority(msg), 7);
    cr_assert_eq(mongoq_message_attempts(msg), 0);
    cr_assert_str_eq(mongoq_message_dedup_key(msg), "k");
    cr_assert_gt(mongoq_message_run_at(msg), 0);
    cr_assert_eq(mongoq_message_lease_expires_at(msg), 0);
    cr_assert_null(mongoq_message_errors(msg));
    cr_assert_not_null(mongoq_message_document(msg));

    /* Not claimed: every write refuses it up front, and the document is untouched. */
    cr_assert_not(mongoq_message_ack(msg, &error));
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert(strstr(error.message, "not claimed"), "%s", error.message);
    cr_assert_not(mongoq_message_ack_many(&msg, 1, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_not(mongoq_message_retry(msg, 0, "x", &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_not(mongoq_message_fail(msg, "x", &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_not(mongoq_message_extend(msg, 1000, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert_eq(world_count(&t, "{\"status\": \"ready\", \"attempts\": 0}"), 1);
    mongoq_message_destroy(msg);

    bson_oid_t missing;
    bson_oid_init(&missing, NULL);
    msg = (mongoq_message_t *)&t; /* must be reset to NULL */
    cr_assert_not(mongoq_queue_get(t.queue, &missing, &msg, &error));
    cr_assert_null(msg);
    cr_assert_eq(error.code, MONGOQ_ERROR_NOT_FOUND);
    world_close(&t);
}

Test(browse, a_dead_message_shows_its_history)
{
    world_t t;
    bson_oid_t id;
    world_open(&t, NULL, 0);
    world_enqueue(t.queue, 1, NULL, &id);
    claim_and_fail(&t, "boom");
    mongoq_message_t *msg = get(&t, &id);
    cr_assert_str_eq(mongoq_message_status(msg), "dead");
    cr_assert_str_eq(mongoq_message_last_error(msg), "boom");
    cr_assert_str_eq(mongoq_message_claimed_by(msg), "browse-test");
    cr_assert_not_null(mongoq_message_errors(msg));
    cr_assert_eq(bson_count_keys(mongoq_message_errors(msg)), 1);
    mongoq_message_destroy(msg);
    world_close(&t);
}

/* The payload seqs read so far (at most max). */
typedef struct {
    int64_t *seqs;
    int n, max;
} seqs_t;

static void
take_seq(const mongoq_message_t *msg, bool opens_page, void *ctx)
{
    seqs_t *s = ctx;
    (void)opens_page;
    cr_assert(s->n < s->max);
    s->seqs[s->n++] = world_seq(msg);
}

/* Reads the whole listing in pages of `page`, each page by a new browse from the last token. */
static int
read_by_pages(world_t *t, mongoq_browse_opts_t *o, int page, int64_t *seqs, int max)
{
    seqs_t s = {seqs, 0, max};
    world_browse_pages(t, *o, page, 100, take_seq, &s);
    return s.n;
}

Test(browse, pages_follow_the_claim_order_without_gaps_or_repeats)
{
    world_t t;
    world_open(&t, NULL, 0);
    /* seq i at priority i % 3: claim order is priority 2, 1, 0, each in enqueue order. */
    for (int i = 0; i < 25; i++) {
        mongoq_enqueue_opts_t o = MONGOQ_ENQUEUE_OPTS_INIT;
        o.priority = i % 3;
        world_enqueue(t.queue, i, &o, NULL);
    }
    int64_t seqs[32];
    mongoq_browse_opts_t o = MONGOQ_BROWSE_OPTS_INIT;
    o.status = "ready";
    int n = read_by_pages(&t, &o, 4, seqs, 32);
    cr_assert_eq(n, 25);
    int k = 0;
    for (int p = 2; p >= 0; p--) {
        for (int i = p; i < 25; i += 3) {
            cr_assert_eq(seqs[k], i, "position %d: seq %lld, expected %d", k, (long long)seqs[k],
                         i);
            k++;
        }
    }
    /* Every status, and the run_at order, list the same 25 once each. */
    mongoq_browse_opts_t all = MONGOQ_BROWSE_OPTS_INIT;
    cr_assert_eq(read_by_pages(&t, &all, 7, seqs, 32), 25);
    mongoq_browse_opts_t by_run_at = MONGOQ_BROWSE_OPTS_INIT;
    by_run_at.order = MONGOQ_BROWSE_ORDER_RUN_AT;
    by_run_at.status = "ready";
    cr_assert_eq(read_by_pages(&t, &by_run_at, 3, seqs, 32), 25);
    for (int i = 0; i < 25; i++) {
        cr_assert_eq(seqs[i], i, "run_at order: position %d holds seq %lld", i,
                     (long long)seqs[i]);
    }
    world_close(&t);
}

static int
count_listing(world_t *t, const mongoq_browse_opts_t *o)
{
    bson_error_t error;
    mongoq_browse_t *b = mongoq_browse_new(t->queue, o, &error);
    cr_assert(b, "browse_new: %s", error.message);
    int n = 0;
    mongoq_message_t *msg;
    for (int i = 0; i < 1000; i++) {
        cr_assert(mongoq_browse_next(b, &msg, &error), "next: %s", error.message);
        if (!msg) {
            break;
        }
        n++;
        mongoq_message_destroy(msg);
    }
    mongoq_browse_destroy(b);
    return n;
}

Test(browse, filters)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue(t.queue, 0, NULL, NULL);
    claim_and_fail(&t, "can't parse a.b(c* [x]"); /* regex metacharacters, taken literally */
    mongoq_enqueue_opts_t later = MONGOQ_ENQUEUE_OPTS_INIT;
    later.delay_ms = 600000;
    later.dedup_key = "the-key";
    world_enqueue(t.queue, 1, &later, NULL);
    world_enqueue(t.queue, 2, NULL, NULL);

    mongoq_browse_opts_t o = MONGOQ_BROWSE_OPTS_INIT;
    o.status = "dead";
    cr_assert_eq(count_listing(&t, &o), 1);
    o.error_contains = "a.b(c* [x]";
    cr_assert_eq(count_listing(&t, &o), 1);
    o.error_contains = "aXb(c";
    cr_assert_eq(count_listing(&t, &o), 0, "the text must match literally, not as a pattern");
    o.error_contains = NULL;
    o.claimed_by = "browse-test";
    cr_assert_eq(count_listing(&t, &o), 1);
    o.claimed_by = "someone-else";
    cr_assert_eq(count_listing(&t, &o), 0);

    mongoq_browse_opts_t r = MONGOQ_BROWSE_OPTS_INIT;
    r.status = "ready";
    cr_assert_eq(count_listing(&t, &r), 2);
    r.due = MONGOQ_BROWSE_DUE_ONLY;
    cr_assert_eq(count_listing(&t, &r), 1);
    r.due = MONGOQ_BROWSE_NOT_DUE;
    cr_assert_eq(count_listing(&t, &r), 1);
    r.due = MONGOQ_BROWSE_DUE_ANY;
    r.dedup_key = "the-key";
    cr_assert_eq(count_listing(&t, &r), 1);
    world_close(&t);
}

Test(browse, bad_options_and_tokens_are_refused)
{
    world_t t;
    bson_error_t error;
    world_open(&t, NULL, 0);
    mongoq_browse_opts_t o = MONGOQ_BROWSE_OPTS_INIT;
    o.status = "pending";
    cr_assert_null(mongoq_browse_new(t.queue, &o, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    o.status = "ready";
    o.order = MONGOQ_BROWSE_ORDER_LEASE;
    cr_assert_null(mongoq_browse_new(t.queue, &o, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    o.order = MONGOQ_BROWSE_ORDER_CLAIM;
    o.page_size = MONGOQ_MAX_BATCH + 1;
    cr_assert_null(mongoq_browse_new(t.queue, &o, &error));
    o.page_size = 0;
    o.page_token = "not-hex!";
    cr_assert_null(mongoq_browse_new(t.queue, &o, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);

    /* A token of one listing does not resume another. */
    world_enqueue(t.queue, 1, NULL, NULL);
    o.page_token = NULL;
    mongoq_browse_t *b = mongoq_browse_new(t.queue, &o, &error);
    mongoq_message_t *msg;
    cr_assert(mongoq_browse_next(b, &msg, &error));
    char *token = bson_strdup(mongoq_browse_token(b));
    mongoq_message_destroy(msg);
    mongoq_browse_destroy(b);
    mongoq_browse_opts_t other = MONGOQ_BROWSE_OPTS_INIT;
    other.status = "dead";
    other.page_token = token;
    cr_assert_null(mongoq_browse_new(t.queue, &other, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    other.status = "ready";
    other.order = MONGOQ_BROWSE_ORDER_RUN_AT;
    cr_assert_null(mongoq_browse_new(t.queue, &other, &error));
    other.order = MONGOQ_BROWSE_ORDER_CLAIM;
    b = mongoq_browse_new(t.queue, &other, &error);
    cr_assert(b, "the same listing resumes: %s", error.message);
    cr_assert(mongoq_browse_next(b, &msg, &error));
    cr_assert_null(msg, "nothing after the only message");
    mongoq_browse_destroy(b);
    bson_free(token);
    world_close(&t);
}

Test(browse, retry_now_of_dead_delayed_and_held_messages)
{
    world_t t;
    bson_error_t error;
    bson_oid_t dead, delayed, held;
    world_open(&t, NULL, 0);
    world_enqueue(t.queue, 0, NULL, &dead);
    claim_and_fail(&t, "boom");
    cr_assert(mongoq_queue_retry_now(t.queue, &dead, &error), "%s", error.message);
    mongoq_message_t *msg = get(&t, &dead);
    cr_assert_str_eq(mongoq_message_status(msg), "ready");
    cr_assert_eq(mongoq_message_attempts(msg), 0);
    cr_assert_str_eq(mongoq_message_last_error(msg), "boom", "history stays");
    mongoq_message_destroy(msg);

    mongoq_enqueue_opts_t later = MONGOQ_ENQUEUE_OPTS_INIT;
    later.delay_ms = 3600000;
    world_enqueue(t.queue, 1, &later, &delayed);
    cr_assert(mongoq_queue_retry_now(t.queue, &delayed, &error), "%s", error.message);
    msg = get(&t, &delayed);
    cr_assert_leq(mongoq_message_run_at(msg), world_server_now(&t));
    mongoq_message_destroy(msg);

    /* Both are due: a claim takes one; the held one is refused and left alone. */
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *claimed = world_claim(c, 1000);
    cr_assert_not_null(claimed);
    held = *mongoq_message_id(claimed);
    cr_assert_not(mongoq_queue_retry_now(t.queue, &held, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_NOT_FOUND);
    cr_assert(strstr(error.message, "processing"), "%s", error.message);
    cr_assert(mongoq_message_ack(claimed, &error), "the claimer still holds it: %s",
              error.message);
    mongoq_message_destroy(claimed);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/*
 * Bounds at the API (include/mongoq/limits.h): every size and time a caller passes is checked
 * where it is passed, the call fails with MONGOQ_ERROR_INVALID_ARG and nothing is written. The
 * largest payload accepted can live a whole life (claimed, retried with the longest reasons,
 * failed) without its document passing the server's 16 MiB limit.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

static void
assert_invalid(const bson_error_t *error)
{
    cr_assert_eq(error->domain, MONGOQ_ERROR_DOMAIN, "%s", error->message);
    cr_assert_eq(error->code, MONGOQ_ERROR_INVALID_ARG, "%s", error->message);
}

/* A payload whose BSON is exactly `size` bytes: one binary field filling it. */
static bson_t *
payload_of_size(uint32_t size)
{
    bson_t *p = bson_new();
    /* document: 4 (length) + 1 (terminator); element: 1 (type) + 2 ("b\0") + 4 (len) + 1 (subtype) */
    uint32_t data = size - 5 - 8;
    uint8_t *bytes = bson_malloc0(data);
    BSON_APPEND_BINARY(p, "b", BSON_SUBTYPE_BINARY, bytes, data);
    bson_free(bytes);
    cr_assert_eq(p->len, size);
    return p;
}

Test(hardening_bounds, enqueue_options_out_of_range_write_nothing)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_t *payload = BCON_NEW("seq", BCON_INT64(1));
    bson_error_t error;
    bson_oid_t id;
    const struct {
        int64_t delay_ms, run_at_ms;
        int32_t max_attempts;
    } bad[] = {
        {MONGOQ_MAX_DURATION_MS + 1, 0, 0},
        {INT64_MAX - 1000, 0, 0},
        {-1, 0, 0},
        {0, MONGOQ_MAX_RUN_AT_MS + 1, 0},
        {0, INT64_MAX, 0},
        {0, 0, MONGOQ_MAX_ATTEMPTS + 1},
        {0, 0, -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
        opts.delay_ms = bad[i].delay_ms;
        opts.run_at_ms = bad[i].run_at_ms;
        opts.max_attempts = bad[i].max_attempts;
        cr_assert_not(mongoq_enqueue(t.queue, payload, &opts, &id, &error), "case %zu", i);
        assert_invalid(&error);
        cr_assert_not(mongoq_enqueue_many(t.queue, (const bson_t *const *)&payload, 1, &opts, NULL,
                                          NULL, &error),
                      "case %zu (many)", i);
        assert_invalid(&error);
    }
    /* The largest of each is accepted. */
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.delay_ms = MONGOQ_MAX_DURATION_MS;
    opts.max_attempts = MONGOQ_MAX_ATTEMPTS;
    cr_assert(mongoq_enqueue(t.queue, payload, &opts, &id, &error), "%s", error.message);
    opts.delay_ms = 0;
    opts.run_at_ms = MONGOQ_MAX_RUN_AT_MS;
    cr_assert(mongoq_enqueue(t.queue, payload, &opts, &id, &error), "%s", error.message);
    cr_assert_eq(world_count(&t, "{}"), 2, "only the two valid messages were written");
    bson_destroy(payload);
    world_close(&t);
}

Test(hardening_bounds, dedup_key_and_names_are_bounded)
{
    world_t t;
    world_open(&t, NULL, 0);
    bson_t *payload = BCON_NEW("seq", BCON_INT64(1));
    bson_error_t error;
    char key[MONGOQ_MAX_DEDUP_KEY_BYTES + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = key;
    cr_assert_not(mongoq_enqueue(t.queue, payload, &opts, NULL, &error));
    assert_invalid(&error);
    key[MONGOQ_MAX_DEDUP_KEY_BYTES] = '\0';
    cr_assert(mongoq_enqueue(t.queue, payload, &opts, NULL, &error), "%s", error.message);

    char name[MONGOQ_MAX_NAME_BYTES + 2];
    memset(name, 'c', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    mongoq_consumer_opts_t copts = MONGOQ_CONSUMER_OPTS_INIT;
    copts.name = name;
    cr_assert_null(mongoq_consumer_new(t.queue, &copts, &error));
    assert_invalid(&error);
    copts.name = NULL;
    copts.lease_ms = MONGOQ_MAX_DURATION_MS + 1;
    cr_assert_null(mongoq_consumer_new(t.queue, &copts, &error));
    assert_invalid(&error);
    cr_assert_eq(world_count(&t, "{}"), 1);
    bson_destroy(payload);
    world_close(&t);
}

Test(hardening_bounds, queue_options_out_of_range_are_refused)
{
    world_t t;
    world_open(&t, NULL, WORLD_NO_QUEUE);
    bson_error_t error;
    for (int i = 0; i < 7; i++) {
        mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
        switch (i) {
        case 0: opts.lease_ms = MONGOQ_MAX_DURATION_MS + 1; break;
        case 1: opts.backoff_base_ms = INT64_MAX; break;
        case 2: opts.backoff_cap_ms = MONGOQ_MAX_DURATION_MS + 1; break;
        case 3: opts.retention_s = MONGOQ_MAX_DURATION_MS / 1000 + 1; break;
        case 4: opts.poll_interval_ms = INT64_MAX; break;
        case 5: opts.reap_interval_ms = MONGOQ_MAX_DURATION_MS + 1; break;
        default: opts.max_attempts = MONGOQ_MAX_ATTEMPTS + 1; break;
        }
        cr_assert_null(mongoq_queue_new(t.pool, t.db, "jobs", &opts, &error), "case %d", i);
        assert_invalid(&error);
    }
    mongoq_queue_opts_t future = MONGOQ_QUEUE_OPTS_INIT;
    future.version = MONGOQ_QUEUE_OPTS_VERSION + 1;
    cr_assert_null(mongoq_queue_new(t.pool, t.db, "jobs", &future, &error));
    assert_invalid(&error);
    world_close(&t);
}

Test(hardening_bounds, retry_and_extend_times_are_bounded)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(msg);
    bson_error_t error;
    cr_assert_not(mongoq_message_retry(msg, INT64_MAX - 1000, "r", &error));
    assert_invalid(&error);
    cr_assert_not(mongoq_message_extend(msg, MONGOQ_MAX_DURATION_MS + 1, &error));
    assert_invalid(&error);
    cr_assert_eq(world_count(&t, "{\"status\": \"processing\"}"), 1, "nothing changed");
    /* The longest delay is accepted and lands in the future, not wrapped into the past. */
    int64_t now = world_server_now(&t);
    cr_assert(mongoq_message_retry(msg, MONGOQ_MAX_DURATION_MS, "later", &error), "%s",
              error.message);
    bson_t doc;
    cr_assert(world_find(&t, mongoq_message_id(msg), &doc));
    cr_assert_geq(mtest_doc_date(&doc, "run_at"), now + MONGOQ_MAX_DURATION_MS);
    bson_destroy(&doc);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/*
 * The largest payload lives a whole life: claimed, retried MONGOQ__MAX_ERRORS times with the
 * longest reasons (the history is capped), then failed. Every step succeeds: the document never
 * passes 16 MiB. One byte more is refused with nothing written.
 */
Test(hardening_bounds, the_largest_payload_lives_a_whole_life, .timeout = 120)
{
    world_t t;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.max_attempts = 8;
    world_open(&t, &qopts, 0);
    bson_error_t error;
    bson_t *too_big = payload_of_size(MONGOQ_MAX_PAYLOAD_BYTES + 1);
    cr_assert_not(mongoq_enqueue(t.queue, too_big, NULL, NULL, &error));
    assert_invalid(&error);
    cr_assert_eq(world_count(&t, "{}"), 0);
    bson_destroy(too_big);

    bson_t *payload = payload_of_size(MONGOQ_MAX_PAYLOAD_BYTES);
    char key[MONGOQ_MAX_DEDUP_KEY_BYTES + 1];
    memset(key, 'd', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = key;
    cr_assert(mongoq_enqueue(t.queue, payload, &opts, NULL, &error), "%s", error.message);
    bson_destroy(payload);
    char reason[MONGOQ_MAX_REASON_BYTES * 2];
    memset(reason, 'r', sizeof reason - 1);
    reason[sizeof reason - 1] = '\0';
    char name[MONGOQ_MAX_NAME_BYTES + 1];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    mongoq_consumer_t *c = world_consumer(&t, name, 0);
    for (int attempt = 1; attempt <= 7; attempt++) {
        mongoq_message_t *msg = world_claim(c, 5000);
        cr_assert(msg, "attempt %d: claimed", attempt);
        cr_assert_eq(mongoq_message_attempts(msg), attempt);
        bool ok = attempt < 7 ? mongoq_message_retry(msg, 0, reason, &error)
                              : mongoq_message_fail(msg, reason, &error);
        cr_assert(ok, "attempt %d: %s", attempt, error.message);
        mongoq_message_destroy(msg);
    }
    cr_assert_eq(world_count(&t, "{\"status\": \"dead\"}"), 1);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/* A reason longer than MONGOQ_MAX_REASON_BYTES is cut at a character boundary, not refused. */
Test(hardening_bounds, long_reasons_are_cut_at_a_character)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 1, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    /* "é" is two bytes: an odd limit would split one; the cut keeps whole characters. */
    char reason[MONGOQ_MAX_REASON_BYTES + 64];
    size_t len = 1;
    reason[0] = 'x';
    while (len + 2 < sizeof reason) {
        reason[len++] = (char)0xC3;
        reason[len++] = (char)0xA9;
    }
    reason[len] = '\0';
    bson_error_t error;
    cr_assert(mongoq_message_fail(msg, reason, &error), "%s", error.message);
    bson_t doc;
    cr_assert(world_find(&t, mongoq_message_id(msg), &doc));
    const char *stored = mtest_doc_str(&doc, "last_error");
    cr_assert(stored);
    cr_assert_leq(strlen(stored), MONGOQ_MAX_REASON_BYTES);
    cr_assert_geq(strlen(stored), MONGOQ_MAX_REASON_BYTES - 1);
    cr_assert(bson_utf8_validate(stored, strlen(stored), false), "whole characters only");
    cr_assert_eq(strncmp(stored, reason, strlen(stored)), 0);
    bson_destroy(&doc);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/*
 * The message document: enqueue option checks, building, and parsing what a claim returns
 * (including damaged documents). Pure code, compiled in directly (internal symbols are hidden
 * in the shared library).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../src/document.c"

static bson_t *
json(const char *text)
{
    bson_error_t error;
    bson_t *doc = bson_new_from_json((const uint8_t *)text, -1, &error);
    cr_assert(doc, "bad test JSON: %s", error.message);
    return doc;
}

/* ---- enqueue options ---- */

static void
assert_invalid(const mongoq_enqueue_opts_t *opts, bool many, const char *needle)
{
    bson_error_t error;
    cr_assert_not(mongoq__enqueue_opts_check(opts, many, &error));
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert(strstr(error.message, needle), "message \"%s\" lacks \"%s\"", error.message, needle);
}

Test(enqueue_opts, null_and_defaults_are_fine)
{
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    cr_assert(mongoq__enqueue_opts_check(NULL, false, NULL));
    cr_assert(mongoq__enqueue_opts_check(&opts, true, NULL));
}

Test(enqueue_opts, bad_values_are_refused)
{
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.delay_ms = -1;
    assert_invalid(&opts, false, "delay_ms");
    opts = (mongoq_enqueue_opts_t)MONGOQ_ENQUEUE_OPTS_INIT;
    opts.delay_ms = 5;
    opts.run_at_ms = 1000;
    assert_invalid(&opts, false, "exclusive");
    opts = (mongoq_enqueue_opts_t)MONGOQ_ENQUEUE_OPTS_INIT;
    opts.max_attempts = -2;
    assert_invalid(&opts, false, "max_attempts");
    opts = (mongoq_enqueue_opts_t)MONGOQ_ENQUEUE_OPTS_INIT;
    opts.run_at_ms = -5;
    assert_invalid(&opts, false, "run_at_ms");
    opts = (mongoq_enqueue_opts_t)MONGOQ_ENQUEUE_OPTS_INIT;
    opts.dedup_key = "k";
    assert_invalid(&opts, true, "dedup_key");
    opts.dedup_key = "";
    assert_invalid(&opts, false, "dedup_key");
    opts.dedup_key = "\xff\xfe";
    assert_invalid(&opts, false, "UTF-8");
    mongoq_enqueue_opts_t zero;
    memset(&zero, 0, sizeof zero);
    assert_invalid(&zero, false, "version");
}

Test(enqueue_opts, run_at_choices)
{
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    cr_assert_eq(mongoq__document_run_at(NULL, 5000), 5000);
    opts.delay_ms = 250;
    cr_assert_eq(mongoq__document_run_at(&opts, 5000), 5250);
    opts.delay_ms = INT64_MAX;
    cr_assert_eq(mongoq__document_run_at(&opts, 5000), INT64_MAX, "saturates");
    opts.delay_ms = 0;
    opts.run_at_ms = 42;
    cr_assert_eq(mongoq__document_run_at(&opts, 5000), 42);
}

/* ---- building ---- */

Test(document_build, has_every_field)
{
    bson_t *payload = json("{\"job\": 7}");
    bson_t doc;
    bson_oid_t id;
    bson_error_t error;
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.priority = 3;
    opts.delay_ms = 100;
    opts.dedup_key = "key-1";
    bson_oid_init(&id, NULL);
    cr_assert(mongoq__document_build(payload, &opts, 5, 1000, &id, &doc, &error), "%s",
              error.message);
    bson_t *expected = json("{\"payload\": {\"job\": 7}, \"status\": \"ready\", \"priority\": 3, "
                            "\"run_at\": {\"$date\": {\"$numberLong\": \"1100\"}}, "
                            "\"attempts\": 0, \"max_attempts\": 5, "
                            "\"enqueued_at\": {\"$date\": {\"$numberLong\": \"1000\"}}, "
                            "\"updated_at\": {\"$date\": {\"$numberLong\": \"1000\"}}, "
                            "\"dedup_key\": \"key-1\"}");
    bson_t without_id = BSON_INITIALIZER;
    bson_copy_to_excluding_noinit(&doc, &without_id, "_id", NULL);
    char *got = bson_as_canonical_extended_json(&without_id, NULL);
    char *want = bson_as_canonical_extended_json(expected, NULL);
    cr_assert_str_eq(got, want);
    bson_free(got);
    bson_free(want);
    bson_destroy(&without_id);
    bson_destroy(expected);
    bson_destroy(&doc);
    bson_destroy(payload);
}

Test(document_build, no_dedup_key_means_no_field)
{
    bson_t payload = BSON_INITIALIZER, doc;
    bson_oid_t id;
    bson_oid_init(&id, NULL);
    cr_assert(mongoq__document_build(&payload, NULL, 4, 1, &id, &doc, NULL));
    cr_assert_not(bson_has_field(&doc, "dedup_key"));
    bson_iter_t it;
    cr_assert(bson_iter_init_find(&it, &doc, "max_attempts"));
    cr_assert_eq(bson_iter_int32(&it), 4);
    bson_destroy(&doc);
}

Test(document_build, null_payload_and_oversize_are_refused)
{
    bson_t doc;
    bson_oid_t id;
    bson_error_t error;
    bson_oid_init(&id, NULL);
    cr_assert_not(mongoq__document_build(NULL, NULL, 5, 1, &id, &doc, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    bson_destroy(&doc);

    size_t big = 16 * 1024 * 1024;
    char *text = bson_malloc(big);
    memset(text, 'x', big - 1);
    text[big - 1] = '\0';
    bson_t payload = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&payload, "blob", text);
    bson_free(text);
    cr_assert_not(mongoq__document_build(&payload, NULL, 5, 1, &id, &doc, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert(strstr(error.message, "MONGOQ_MAX_PAYLOAD_BYTES"), "%s", error.message);
    cr_assert_eq(doc.len, 5, "out is left empty");
    bson_destroy(&doc);
    bson_destroy(&payload);
}

/* ---- parsing ---- */

#define GOOD_FIELDS                                                                                \
    "\"_id\": {\"$oid\": \"65a000000000000000000001\"}, \"payload\": {\"n\": 1}, "                 \
    "\"status\": \"processing\", \"priority\": 2, "                                                \
    "\"run_at\": {\"$date\": {\"$numberLong\": \"1000\"}}, \"attempts\": 1, "                      \
    "\"max_attempts\": 5, \"enqueued_at\": {\"$date\": {\"$numberLong\": \"900\"}}, "              \
    "\"lease_expires_at\": {\"$date\": {\"$numberLong\": \"31000\"}}, "                            \
    "\"lease_token\": {\"$oid\": \"65a0000000000000000000ff\"}, \"claimed_by\": \"me\""
#define GOOD_DOC "{" GOOD_FIELDS

Test(document_parse, good_document)
{
    bson_t *doc = json(GOOD_DOC ", \"dedup_key\": \"d\", \"errors\": [{\"at\": 1}]}");
    mongoq__parsed_t p;
    char reason[128];
    cr_assert(mongoq__document_parse(doc, &p, reason, sizeof reason), "%s", reason);
    cr_assert_eq(p.attempts, 1);
    cr_assert_eq(p.max_attempts, 5);
    cr_assert_eq(p.priority, 2);
    cr_assert_eq(p.enqueued_at, 900);
    cr_assert_eq(p.lease_expires_at, 31000);
    cr_assert_str_eq(p.dedup_key, "d");
    cr_assert_str_eq(p.claimed_by, "me");
    cr_assert(p.has_errors);
    cr_assert(bson_has_field(&p.payload, "n"));
    bson_destroy(doc);
}

Test(document_parse, widened_numbers_are_accepted)
{
    bson_t *doc = json("{\"_id\": {\"$oid\": \"65a000000000000000000001\"}, \"payload\": {}, "
                       "\"priority\": 0.0, \"run_at\": {\"$date\": {\"$numberLong\": \"1\"}}, "
                       "\"attempts\": {\"$numberLong\": \"2\"}, \"max_attempts\": 3.0, "
                       "\"enqueued_at\": {\"$date\": {\"$numberLong\": \"1\"}}, "
                       "\"lease_expires_at\": {\"$date\": {\"$numberLong\": \"2\"}}, "
                       "\"lease_token\": {\"$oid\": \"65a0000000000000000000ff\"}}");
    mongoq__parsed_t p;
    char reason[128];
    cr_assert(mongoq__document_parse(doc, &p, reason, sizeof reason), "%s", reason);
    cr_assert_eq(p.attempts, 2);
    cr_assert_eq(p.max_attempts, 3);
    cr_assert_null(p.dedup_key);
    cr_assert_not(p.has_errors);
    bson_destroy(doc);
}

static void
assert_damaged(const char *text, const char *field)
{
    bson_t *doc = json(text);
    mongoq__parsed_t p;
    char reason[128];
    cr_assert_not(mongoq__document_parse(doc, &p, reason, sizeof reason), "%s", text);
    cr_assert(strstr(reason, field), "reason \"%s\" lacks \"%s\"", reason, field);
    bson_destroy(doc);
}

/* GOOD_DOC with one field replaced: the replacement comes first, so the parser sees it. */
Test(document_parse, damaged_documents_say_why)
{
    assert_damaged("{\"_id\": \"text\", \"payload\": {}}", "_id");
    assert_damaged("{\"_id\": {\"$oid\": \"65a000000000000000000001\"}}", "payload");
    assert_damaged("{\"payload\": 5, \"_id\": {\"$oid\": \"65a000000000000000000001\"}}",
                   "payload");
    assert_damaged("{\"attempts\": \"one\", " GOOD_FIELDS "}", "attempts");
    assert_damaged("{\"attempts\": 0, " GOOD_FIELDS "}", "attempts");
    assert_damaged("{\"attempts\": 1.5, " GOOD_FIELDS "}", "attempts");
    assert_damaged("{\"attempts\": {\"$numberLong\": \"9999999999\"}, " GOOD_FIELDS "}",
                   "attempts");
    assert_damaged("{\"attempts\": {\"$numberDouble\": \"NaN\"}, " GOOD_FIELDS "}", "attempts");
    assert_damaged("{\"max_attempts\": null, " GOOD_FIELDS "}", "max_attempts");
    assert_damaged("{\"priority\": \"high\", " GOOD_FIELDS "}", "priority");
    assert_damaged("{\"enqueued_at\": 5, " GOOD_FIELDS "}", "enqueued_at");
    assert_damaged("{\"run_at\": \"soon\", " GOOD_FIELDS "}", "run_at");
    assert_damaged("{\"lease_expires_at\": 1, " GOOD_FIELDS "}", "lease_expires_at");
    assert_damaged("{\"lease_token\": 1, " GOOD_FIELDS "}", "lease_token");
    assert_damaged("{\"dedup_key\": 17, " GOOD_FIELDS "}", "dedup_key");
}

Test(document_parse, damaged_history_is_ignored_not_fatal)
{
    bson_t *doc = json("{\"errors\": \"oops\", \"claimed_by\": 5, " GOOD_FIELDS "}");
    mongoq__parsed_t p;
    char reason[128];
    cr_assert(mongoq__document_parse(doc, &p, reason, sizeof reason), "%s", reason);
    cr_assert_not(p.has_errors);
    cr_assert_null(p.claimed_by);
    bson_destroy(doc);
}

/* Every truncation and byte flip of a good document parses or is refused; none crashes. */
Test(document_parse, mangled_bytes_never_crash)
{
    bson_t *good = json(GOOD_DOC "}");
    const uint8_t *data = bson_get_data(good);
    uint8_t *copy = bson_malloc(good->len);
    char reason[128];
    mongoq__parsed_t p;
    for (uint32_t i = 0; i < good->len; i++) {
        for (int flip = 1; flip < 256; flip *= 3) {
            memcpy(copy, data, good->len);
            copy[i] ^= (uint8_t)flip;
            bson_t mangled;
            if (bson_init_static(&mangled, copy, good->len)) {
                (void)mongoq__document_parse(&mangled, &p, reason, sizeof reason);
            }
        }
    }
    bson_free(copy);
    bson_destroy(good);
}

/* ---- failure history ---- */

static char *
errors_json(const char *old_json, const char *reason)
{
    bson_t set = BSON_INITIALIZER;
    bson_t *wrapper = old_json ? json(old_json) : NULL;
    bson_t old;
    bson_iter_t it;
    const bson_t *oldp = NULL;
    if (wrapper) {
        uint32_t len;
        const uint8_t *d;
        cr_assert(bson_iter_init_find(&it, wrapper, "e"));
        bson_iter_array(&it, &len, &d);
        bson_init_static(&old, d, len);
        oldp = &old;
    }
    mongoq__document_append_errors(&set, oldp, reason);
    char *s = bson_as_relaxed_extended_json(&set, NULL);
    bson_destroy(&set);
    if (wrapper) {
        bson_destroy(wrapper);
    }
    return s;
}

Test(document_errors, first_failure)
{
    char *s = errors_json(NULL, "boom");
    cr_assert_str_eq(s, "{ \"errors\" : [ { \"at\" : \"$$NOW\", \"error\" : { \"$literal\" : "
                        "\"boom\" } } ] }");
    bson_free(s);
    s = errors_json(NULL, NULL);
    cr_assert_str_eq(s, "{ \"errors\" : [ { \"at\" : \"$$NOW\", \"error\" : null } ] }");
    bson_free(s);
}

Test(document_errors, keeps_the_last_five)
{
    char *s = errors_json("{\"e\": [1, 2, 3, 4, 5, 6]}", "$x");
    cr_assert_str_eq(s, "{ \"errors\" : [ { \"$literal\" : 3 }, { \"$literal\" : 4 }, "
                        "{ \"$literal\" : 5 }, { \"$literal\" : 6 }, { \"at\" : \"$$NOW\", "
                        "\"error\" : { \"$literal\" : \"$x\" } } ] }");
    bson_free(s);
    s = errors_json("{\"e\": [1]}", "r");
    cr_assert(strstr(s, "[ { \"$literal\" : 1 }, { \"at\""), "%s", s);
    bson_free(s);
}

Test(document_now_plus, adds_to_the_server_clock)
{
    bson_t set = BSON_INITIALIZER;
    mongoq__document_append_now_plus(&set, "lease_expires_at", 30000);
    char *s = bson_as_relaxed_extended_json(&set, NULL);
    cr_assert_str_eq(s, "{ \"lease_expires_at\" : { \"$add\" : [ \"$$NOW\", 30000 ] } }");
    bson_free(s);
    bson_destroy(&set);
}

/* ---- reasons are cut to MONGOQ_MAX_REASON_BYTES at a character boundary ---- */

Test(reason_length, short_reasons_are_kept_whole)
{
    cr_assert_eq(mongoq__reason_length(""), 0);
    cr_assert_eq(mongoq__reason_length("timeout"), 7);
    cr_assert_eq(mongoq__reason_length("caf\xc3\xa9"), 5);
}

Test(reason_length, long_reasons_stop_at_the_limit_on_a_character)
{
    char ascii[MONGOQ_MAX_REASON_BYTES * 2];
    memset(ascii, 'a', sizeof ascii - 1);
    ascii[sizeof ascii - 1] = '\0';
    cr_assert_eq(mongoq__reason_length(ascii), MONGOQ_MAX_REASON_BYTES);
    /* 'x' then three-byte characters: 1 + 3k <= limit, the next would cross it. */
    char wide[MONGOQ_MAX_REASON_BYTES + 16];
    size_t len = 1;
    wide[0] = 'x';
    while (len + 3 < sizeof wide) {
        memcpy(wide + len, "\xe2\x82\xac", 3); /* the euro sign */
        len += 3;
    }
    wide[len] = '\0';
    size_t cut = mongoq__reason_length(wide);
    cr_assert_leq(cut, MONGOQ_MAX_REASON_BYTES);
    cr_assert_eq((cut - 1) % 3, 0, "whole characters only (%zu)", cut);
    cr_assert_gt(cut + 3, MONGOQ_MAX_REASON_BYTES);
}

Test(reason_length, invalid_bytes_end_the_reason)
{
    cr_assert_eq(mongoq__reason_length("ok\xff rest"), 2);
    cr_assert_eq(mongoq__reason_length("ok\xc3"), 2, "a character cut by the terminator");
    cr_assert_eq(mongoq__reason_length("ok\xc0\xaf"), 2, "an overlong encoding");
}

Test(enqueue_opts, times_and_sizes_past_their_limits_are_refused)
{
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.delay_ms = MONGOQ_MAX_DURATION_MS + 1;
    assert_invalid(&opts, false, "MONGOQ_MAX_DURATION_MS");
    opts.delay_ms = 0;
    opts.run_at_ms = MONGOQ_MAX_RUN_AT_MS + 1;
    assert_invalid(&opts, false, "MONGOQ_MAX_RUN_AT_MS");
    opts.run_at_ms = 0;
    opts.max_attempts = MONGOQ_MAX_ATTEMPTS + 1;
    assert_invalid(&opts, false, "MONGOQ_MAX_ATTEMPTS");
    opts.max_attempts = 0;
    opts.version = MONGOQ_ENQUEUE_OPTS_VERSION + 1;
    assert_invalid(&opts, false, "version");
    opts.version = 1; /* an older caller's struct is accepted */
    bson_error_t error;
    cr_assert(mongoq__enqueue_opts_check(&opts, false, &error), "%s", error.message);
}

Test(document_build, a_payload_past_the_limit_is_refused)
{
    bson_t *payload = bson_new();
    uint32_t size = MONGOQ_MAX_PAYLOAD_BYTES + 1 - 5 - 8;
    uint8_t *bytes = bson_malloc0(size);
    BSON_APPEND_BINARY(payload, "b", BSON_SUBTYPE_BINARY, bytes, size);
    bson_free(bytes);
    cr_assert_eq(payload->len, MONGOQ_MAX_PAYLOAD_BYTES + 1);
    bson_t out;
    bson_oid_t id;
    bson_error_t error;
    bson_oid_init(&id, NULL);
    cr_assert_not(mongoq__document_build(payload, NULL, 5, 0, &id, &out, &error));
    cr_assert(strstr(error.message, "MONGOQ_MAX_PAYLOAD_BYTES"), "%s", error.message);
    bson_destroy(&out);
    bson_destroy(payload);
}

/*
 * mongoq_queue_check: a healthy queue, a missing index, dead letters, a paused queue, standalone,
 * unreachable.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

static mongoq_report_t *
check(mongoq_queue_t *queue)
{
    mongoq_report_t *report = NULL;
    bson_error_t error;
    cr_assert(mongoq_queue_check(queue, NULL, &report, &error), "check: %s", error.message);
    cr_assert_not_null(report);
    return report;
}

/* The level of the item named name; asserts it is in the report. */
static mongoq_check_level_t
level_of(const mongoq_report_t *r, const char *name)
{
    for (size_t i = 0; i < mongoq_report_count(r); i++) {
        if (strcmp(mongoq_report_name(r, i), name) == 0) {
            return mongoq_report_item_level(r, i);
        }
    }
    cr_assert_fail("no item %s in the report", name);
    return MONGOQ_CHECK_ERROR;
}

static const char *
advice_of(const mongoq_report_t *r, const char *name)
{
    for (size_t i = 0; i < mongoq_report_count(r); i++) {
        if (strcmp(mongoq_report_name(r, i), name) == 0) {
            return mongoq_report_advice(r, i);
        }
    }
    return "";
}

static const char *
message_of(const mongoq_report_t *r, const char *name)
{
    for (size_t i = 0; i < mongoq_report_count(r); i++) {
        if (strcmp(mongoq_report_name(r, i), name) == 0) {
            return mongoq_report_message(r, i);
        }
    }
    return "";
}

Test(check, a_healthy_queue_is_ok)
{
    world_t t;
    world_open(&t, NULL, 0);
    world_enqueue(t.queue, 1, NULL, NULL);
    mongoq_report_t *r = check(t.queue);
    static const char *const names[] = {"server", "topology", "change_streams", "pipeline_update",
                                        "now", "clock_skew", "indexes", "claim_plan",
                                        "partitions", "write_concern", "paused", "backlog",
                                        "dead_letters"};
    cr_assert_eq(mongoq_report_count(r), sizeof names / sizeof names[0]);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        cr_assert_str_eq(mongoq_report_name(r, i), names[i]);
        cr_assert_eq(mongoq_report_item_level(r, i), MONGOQ_CHECK_OK, "%s: %s", names[i],
                     mongoq_report_message(r, i));
        cr_assert_gt(strlen(mongoq_report_message(r, i)), 0);
    }
    cr_assert_eq(mongoq_report_level(r), MONGOQ_CHECK_OK);
    cr_assert(strstr(message_of(r, "claim_plan"), "mongoq_claim"));
    bson_t doc;
    mongoq_report_to_bson(r, &doc);
    cr_assert_str_eq(mtest_doc_str(&doc, "level"), "ok");
    bson_destroy(&doc);
    mongoq_report_destroy(r);
    /* The probe wrote nothing. */
    cr_assert_eq(world_count(&t, "{}"), 1);
    world_close(&t);
}

Test(check, a_missing_index_is_an_error)
{
    world_t t;
    bson_error_t error;
    world_open(&t, NULL, 0);
    cr_assert(mongoc_collection_drop_index(t.coll, "mongoq_claim", &error), "%s", error.message);
    mongoq_report_t *r = check(t.queue);
    cr_assert_eq(level_of(r, "indexes"), MONGOQ_CHECK_ERROR);
    cr_assert(strstr(message_of(r, "indexes"), "mongoq_claim (missing)"), "%s",
              message_of(r, "indexes"));
    cr_assert_eq(level_of(r, "claim_plan"), MONGOQ_CHECK_ERROR);
    cr_assert_eq(mongoq_report_level(r), MONGOQ_CHECK_ERROR);
    mongoq_report_destroy(r);
    /* ensure_indexes puts it back; the report is clean again. */
    cr_assert(mongoq_queue_ensure_indexes(t.queue, &error), "%s", error.message);
    r = check(t.queue);
    cr_assert_eq(level_of(r, "indexes"), MONGOQ_CHECK_OK);
    mongoq_report_destroy(r);
    world_close(&t);
}

Test(check, dead_letters_and_a_weak_write_concern_are_warnings)
{
    world_t t;
    bson_error_t error;
    mongoq_queue_opts_t o = MONGOQ_QUEUE_OPTS_INIT;
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, 1);
    o.write_concern = wc;
    world_open(&t, &o, 0);
    world_enqueue(t.queue, 1, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 1000);
    cr_assert(mongoq_message_fail(msg, "no", &error));
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    mongoq_report_t *r = check(t.queue);
    cr_assert_eq(level_of(r, "dead_letters"), MONGOQ_CHECK_WARNING);
    cr_assert_eq(level_of(r, "write_concern"), MONGOQ_CHECK_WARNING);
    cr_assert_eq(mongoq_report_level(r), MONGOQ_CHECK_WARNING);
    mongoq_report_destroy(r);
    mongoq_check_opts_t bad = MONGOQ_CHECK_OPTS_INIT;
    bad.keys_warn = -1;
    cr_assert_not(mongoq_queue_check(t.queue, &bad, &r, &error));
    cr_assert_null(r);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    mongoc_write_concern_destroy(wc);
    world_close(&t);
}

Test(check, a_paused_queue_is_a_warning_until_resumed)
{
    world_t t;
    bson_error_t error;
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 2, NULL, NULL);
    /* Paused by another handle, as an operator's tool would: the report reads the database. */
    mongoq_queue_opts_t other_opts = MONGOQ_QUEUE_OPTS_INIT;
    other_opts.partitions = world_partitions(); /* the same queue */
    mongoq_queue_t *other = mongoq_queue_new(t.pool, t.db, "jobs", &other_opts, &error);
    cr_assert(other, "%s", error.message);
    cr_assert(mongoq_queue_pause(other, &error), "%s", error.message);
    mongoq_report_t *r = check(t.queue);
    cr_assert_eq(level_of(r, "paused"), MONGOQ_CHECK_WARNING);
    cr_assert(strstr(message_of(r, "paused"), "paused"), "%s", message_of(r, "paused"));
    cr_assert(strstr(message_of(r, "paused"), "2 ready"), "%s", message_of(r, "paused"));
    char want[256];
    snprintf(want, sizeof want, "mongoq --db %s --queue jobs resume", t.db);
    cr_assert(strstr(advice_of(r, "paused"), want), "%s", advice_of(r, "paused"));
    cr_assert_eq(mongoq_report_level(r), MONGOQ_CHECK_WARNING);
    bson_t doc;
    mongoq_report_to_bson(r, &doc);
    bson_iter_t it;
    cr_assert(bson_iter_init(&it, &doc) && bson_iter_find_descendant(&it, "items.10.details.paused",
                                                                      &it));
    cr_assert(bson_iter_as_bool(&it));
    bson_destroy(&doc);
    mongoq_report_destroy(r);

    cr_assert(mongoq_queue_resume(other, &error), "%s", error.message);
    r = check(t.queue);
    cr_assert_eq(level_of(r, "paused"), MONGOQ_CHECK_OK);
    cr_assert_str_eq(advice_of(r, "paused"), "");
    cr_assert_eq(mongoq_report_level(r), MONGOQ_CHECK_OK);
    mongoq_report_destroy(r);
    mongoq_queue_destroy(other);
    world_close(&t);
}

Test(check, standalone_and_unreachable_servers)
{
    if (!mtest_can_spawn()) {
        cr_skip_test("MONGOQ_TEST_NO_SPAWN: no private servers");
    }
    mtest_server_t server;
    const char *args[] = {"--standalone", NULL};
    cr_assert(mtest_server_start(&server, args, 0));
    /* A short server selection: the unreachable case below waits for it. */
    mongoc_uri_t *uri = mongoc_uri_new(server.uri);
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 1000);
    world_t t;
    world_open_on(&t, mongoc_uri_get_string(uri), NULL, 0);
    mongoq_report_t *r = check(t.queue);
    cr_assert_eq(level_of(r, "topology"), MONGOQ_CHECK_WARNING);
    cr_assert(strstr(message_of(r, "topology"), "standalone"));
    cr_assert_eq(level_of(r, "change_streams"), MONGOQ_CHECK_WARNING);
    cr_assert_eq(level_of(r, "indexes"), MONGOQ_CHECK_OK);
    mongoq_report_destroy(r);

    /* The server goes away: one error item, within the pool's server selection time. */
    mtest_server_stop(&server, true);
    int64_t start = mtest_now_ms();
    r = check(t.queue);
    cr_assert_lt(mtest_now_ms() - start, 10000);
    cr_assert_eq(mongoq_report_count(r), 1);
    cr_assert_str_eq(mongoq_report_name(r, 0), "server");
    cr_assert_eq(mongoq_report_item_level(r, 0), MONGOQ_CHECK_ERROR);
    mongoq_report_destroy(r);
    mongoq_queue_destroy(t.queue);
    t.queue = NULL;
    /* world_close drops the database: on a stopped server that would fail; clean up by hand. */
    mongoc_collection_destroy(t.coll);
    mongoc_client_destroy(t.client);
    mongoc_client_pool_destroy(t.pool);
    bson_free(t.db);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
}

/* The details' integer or boolean field name of the item named item (-1 when absent). */
static int64_t
detail_of(const mongoq_report_t *r, const char *item, const char *name)
{
    bson_iter_t it;
    for (size_t i = 0; i < mongoq_report_count(r); i++) {
        if (strcmp(mongoq_report_name(r, i), item) == 0 &&
            bson_iter_init_find(&it, mongoq_report_details(r, i), name)) {
            return BSON_ITER_HOLDS_BOOL(&it) ? bson_iter_bool(&it) : bson_iter_as_int64(&it);
        }
    }
    return -1;
}

/* A partitioned queue: the claim's explain names partition 0 and uses the claim index; the
 * partitions item gives P and, on a mongos, that the collection is sharded on the partition. */
Test(check, a_partitioned_queue_is_checked_in_partition_zero)
{
    world_t t;
    mongoq_queue_opts_t o = MONGOQ_QUEUE_OPTS_INIT;
    o.partitions = 4;
    world_open(&t, &o, 0); /* sharded first on a mongos */
    for (int i = 0; i < 12; i++) {
        world_enqueue(t.queue, i, NULL, NULL);
    }
    mongoq_report_t *r = check(t.queue);
    cr_assert_eq(level_of(r, "claim_plan"), MONGOQ_CHECK_OK, "%s", message_of(r, "claim_plan"));
    cr_assert(strstr(message_of(r, "claim_plan"), "mongoq_claim"), "%s",
              message_of(r, "claim_plan"));
    cr_assert_eq(level_of(r, "partitions"), MONGOQ_CHECK_OK, "%s", message_of(r, "partitions"));
    cr_assert_eq(detail_of(r, "partitions", "partitions"), 4);
    bool mongos = world_uri_is_mongos(t.uri);
    cr_assert_eq(detail_of(r, "partitions", "sharded"), mongos ? 1 : -1,
                 "sharded is reported on a mongos only: %s", message_of(r, "partitions"));
    cr_assert_eq(level_of(r, "topology"), mongos ? MONGOQ_CHECK_OK : level_of(r, "topology"));
    mongoq_report_destroy(r);
    world_close(&t);
}

/* On a mongos: a partitioned queue whose collection is not sharded is a warning (every message
 * on one shard), and one sharded on another key an error (claims need {partition}). */
Test(check, on_a_mongos_the_shard_key_is_checked)
{
    world_t t;
    mongoq_queue_opts_t o = MONGOQ_QUEUE_OPTS_INIT;
    world_open(&t, NULL, WORLD_NO_QUEUE);
    if (!world_uri_is_mongos(t.uri)) {
        world_close(&t);
        cr_skip_test("needs a mongos (queue-tests-sharded, or MONGOQ_TEST_URI naming one)");
    }
    bson_error_t error;
    o.partitions = 4;
    mongoq_queue_t *q = mongoq_queue_new(t.pool, t.db, "unsharded", &o, &error);
    cr_assert(q, "%s", error.message);
    mongoq_report_t *r = check(q);
    cr_assert_eq(level_of(r, "partitions"), MONGOQ_CHECK_WARNING, "%s",
                 message_of(r, "partitions"));
    cr_assert(strstr(advice_of(r, "partitions"), "mongoq_queue_shard"), "%s",
              advice_of(r, "partitions"));
    mongoq_report_destroy(r);
    mongoq_queue_destroy(q);
    q = mongoq_queue_new(t.pool, t.db, "other_key", &o, &error);
    cr_assert(q, "%s", error.message);
    char *cmd = bson_strdup_printf("{\"shardCollection\": \"%s.other_key\", \"key\": {\"_id\": 1}}",
                                   t.db);
    cr_assert(mtest_command(t.client, "admin", cmd, NULL, &error), "%s", error.message);
    bson_free(cmd);
    r = check(q);
    cr_assert_eq(level_of(r, "partitions"), MONGOQ_CHECK_ERROR, "%s", message_of(r, "partitions"));
    mongoq_report_destroy(r);
    mongoq_queue_destroy(q);
    world_close(&t);
}

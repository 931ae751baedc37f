/*
 * No poison message: a document the server refuses to claim (mongod's per-document errors)
 * never blocks the queue's head. The claim buries that one document as "dead" with the server's
 * error as its reason and goes on to the next message. The poison documents are written with
 * plain libmongoc, in forms mongoq itself would refuse to enqueue.
 *
 * mongod's errors used here: 17419 "Resulting document after update is larger than 16777216"
 * (src/mongo/db/update/update_driver.cpp / UpdateStage, BSONObjMaxUserSize) and 121
 * DocumentValidationFailure (https://www.mongodb.com/docs/manual/core/schema-validation/).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

static void build_raw(bson_t *doc, int64_t now, int32_t priority, uint32_t filler, const char *kind,
                      const bson_oid_t *id);

/*
 * A well-formed ready message document, of exactly `size` bytes when size > 0 (the payload
 * padded with a binary filler).
 */
static void
insert_raw(world_t *t, int32_t priority, uint32_t size, const char *kind, bson_oid_t *id)
{
    bson_t doc = BSON_INITIALIZER;
    bson_error_t error;
    int64_t now = world_server_now(t) - 1000;
    uint32_t filler = 0;
    bson_oid_init(id, NULL);
    if (size > 0) {
        build_raw(&doc, now, priority, 1, kind, id);
        filler = size - (doc.len - 1);
        bson_reinit(&doc);
    }
    build_raw(&doc, now, priority, filler, kind, id);
    cr_assert(size == 0 || doc.len == size, "%u bytes, not %u", doc.len, size);
    cr_assert(mongoc_collection_insert_one(t->coll, &doc, NULL, NULL, &error), "%s",
              error.message);
    bson_destroy(&doc);
}

static void
build_raw(bson_t *doc, int64_t now, int32_t priority, uint32_t size, const char *kind,
          const bson_oid_t *id)
{
    bson_t payload;
    BSON_APPEND_OID(doc, "_id", id);
    BSON_APPEND_DOCUMENT_BEGIN(doc, "payload", &payload);
    BSON_APPEND_UTF8(&payload, "kind", kind);
    if (size > 0) {
        uint8_t *filler = bson_malloc0(size);
        BSON_APPEND_BINARY(&payload, "filler", BSON_SUBTYPE_BINARY, filler, size);
        bson_free(filler);
    }
    bson_append_document_end(doc, &payload);
    BSON_APPEND_UTF8(doc, "status", "ready");
    BSON_APPEND_INT32(doc, "priority", priority);
    BSON_APPEND_DATE_TIME(doc, "run_at", now);
    BSON_APPEND_INT32(doc, "attempts", 0);
    BSON_APPEND_INT32(doc, "max_attempts", 5);
    BSON_APPEND_DATE_TIME(doc, "enqueued_at", now);
    BSON_APPEND_DATE_TIME(doc, "updated_at", now);
}

/* A document 8 bytes under 16 MiB: any claim's $set passes the limit. */
#define NEAR_LIMIT_FILLER (16 * 1024 * 1024 - 8)

static void
assert_buried(world_t *t, const bson_oid_t *id, const char *why)
{
    bson_t doc;
    cr_assert(world_find(t, id, &doc), "the poison message is kept");
    const char *status = mtest_doc_str(&doc, "status");
    cr_assert(status && strcmp(status, "dead") == 0, "the poison message is dead, not %s",
              status ? status : "(none)");
    const char *reason = mtest_doc_str(&doc, "last_error");
    if (reason) {
        cr_assert(strstr(reason, why), "reason names the server's error: %s", reason);
    }
    bson_destroy(&doc);
}

Test(scenario_poison, a_document_too_large_to_claim_is_buried, .timeout = 60)
{
    world_skip_sharded("expects claims to meet messages in one partition's order (a partitioned consumer moves to the next partition after each claim)");
    world_t t;
    world_open(&t, NULL, 0);
    bson_oid_t poison, good;
    insert_raw(&t, 5, NEAR_LIMIT_FILLER, "poison", &poison);
    insert_raw(&t, 0, 0, "good", &good);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(msg, "the message behind the poison one is claimed");
    cr_assert(bson_oid_equal(mongoq_message_id(msg), &good));
    /* Too large to grow: buried by status alone, so no reason is stored. */
    assert_buried(&t, &poison, "17419");
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(t.queue, &counters);
    cr_assert_eq(counters.failed, 1);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/* Validator: a "poison" payload may be ready or dead but never processing. */
static void
set_validator(world_t *t, const char *level)
{
    char *cmd = bson_strdup_printf(
        "{\"collMod\": \"jobs\", \"validationLevel\": \"%s\", \"validator\": {\"$or\": ["
        "{\"payload.kind\": {\"$ne\": \"poison\"}}, {\"status\": {\"$in\": [\"ready\", \"dead\"]}}]}}",
        level);
    bson_error_t error;
    cr_assert(mtest_command(t->client, t->db, cmd, NULL, &error), "collMod: %s", error.message);
    bson_free(cmd);
}

Test(scenario_poison, a_document_a_validator_refuses_is_buried, .timeout = 60)
{
    world_skip_sharded("expects claims to meet messages in one partition's order (a partitioned consumer moves to the next partition after each claim)");
    world_t t;
    world_open(&t, NULL, 0);
    set_validator(&t, "strict");
    bson_oid_t poison, good;
    insert_raw(&t, 5, 0, "poison", &poison);
    insert_raw(&t, 0, 0, "good", &good);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(msg, "the message behind the poison one is claimed");
    cr_assert(bson_oid_equal(mongoq_message_id(msg), &good));
    assert_buried(&t, &poison, "121");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/* claim_many meets the poison among its candidates: every good message is still delivered. */
Test(scenario_poison, claim_many_buries_the_poison_among_its_batch, .timeout = 60)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t t;
    world_open(&t, NULL, 0);
    set_validator(&t, "strict");
    bson_oid_t ids[5];
    for (int i = 0; i < 5; i++) {
        insert_raw(&t, 0, 0, i == 2 ? "poison" : "good", &ids[i]);
    }
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    bson_error_t error;
    int delivered = 0;
    for (int round = 0; round < 5 && delivered < 4; round++) {
        mongoq_message_t *msgs[5];
        size_t n = 0;
        cr_assert(mongoq_consumer_claim_many(c, 5, 1000, msgs, &n, &error), "%s", error.message);
        for (size_t i = 0; i < n; i++) {
            cr_assert_not(bson_oid_equal(mongoq_message_id(msgs[i]), &ids[2]));
            cr_assert(mongoq_message_ack(msgs[i], &error), "%s", error.message);
            mongoq_message_destroy(msgs[i]);
            delivered++;
        }
    }
    cr_assert_eq(delivered, 4, "every good message was delivered");
    assert_buried(&t, &ids[2], "121");
    cr_assert_eq(world_count(&t, "{}"), 1, "only the poison one is left");
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/*
 * A validator that refuses any change to the document, even burying it: the claim buries it
 * past document validation (bypassDocumentValidation), status alone.
 */
Test(scenario_poison, a_document_no_update_may_touch_is_buried_past_validation, .timeout = 60)
{
    world_skip_sharded("expects claims to meet messages in one partition's order (a partitioned consumer moves to the next partition after each claim)");
    world_t t;
    world_open(&t, NULL, 0);
    bson_error_t error;
    cr_assert(mtest_command(t.client, t.db,
                            "{\"collMod\": \"jobs\", \"validator\": {\"$or\": ["
                            "{\"payload.kind\": {\"$ne\": \"poison\"}}, {\"status\": \"ready\"}]}}",
                            NULL, &error),
              "collMod: %s", error.message);
    bson_oid_t poison, good;
    insert_raw(&t, 5, 0, "poison", &poison);
    insert_raw(&t, 0, 0, "good", &good);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(msg && bson_oid_equal(mongoq_message_id(msg), &good));
    assert_buried(&t, &poison, "121");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

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

/* ---- a refusal whose code is not on the list (error.c): proved before anything is buried ---- */

/*
 * A user's unique index the claim's $set breaks for one document: {claimed_by: 1}, unique over
 * the documents with a tag. A finished document tagged and claimed by "c1" stands in the way of
 * any other tagged document that "c1" claims: DuplicateKey 11000, a code not on the list.
 */
static void
block_tagged_claims_by_c1(world_t *t, bson_oid_t *poison)
{
    bson_error_t error;
    cr_assert(mtest_command(t->client, t->db,
                            "{\"createIndexes\": \"jobs\", \"indexes\": [{\"key\": {\"claimed_by\": 1}, "
                            "\"name\": \"user_unique\", \"unique\": true, \"partialFilterExpression\": "
                            "{\"tag\": {\"$exists\": true}}}]}",
                            NULL, &error),
              "createIndexes: %s", error.message);
    bson_t *done = BCON_NEW("tag", "t", "claimed_by", "c1", "status", "done", "payload", "{", "}");
    cr_assert(mongoc_collection_insert_one(t->coll, done, NULL, NULL, &error), "%s", error.message);
    bson_destroy(done);
    insert_raw(t, 5, 0, "poison", poison);
    bson_t *filter = BCON_NEW("_id", BCON_OID(poison));
    bson_t *update = BCON_NEW("$set", "{", "tag", "t", "}");
    cr_assert(mongoc_collection_update_one(t->coll, filter, update, NULL, NULL, &error), "%s",
              error.message);
    bson_destroy(update);
    bson_destroy(filter);
}

Test(scenario_poison, a_refusal_off_the_list_buries_only_once_another_message_is_claimable,
     .timeout = 60)
{
    world_skip_sharded("expects claims to meet messages in one partition's order (a partitioned consumer moves to the next partition after each claim)");
    world_t t;
    bson_error_t error;
    world_open(&t, NULL, 0);
    bson_oid_t poison, good;
    block_tagged_claims_by_c1(&t, &poison);
    mongoq_consumer_t *c = world_consumer(&t, "c1", 0);
    mongoq_message_t *msg = NULL;
    /* Alone: nothing proves the refusal is the document's, so nothing is buried. */
    cr_assert_not(mongoq_consumer_claim(c, 0, &msg, &error), "the head is refused");
    cr_assert_eq(error.code, 11000, "the server's error comes back: %s", error.message);
    cr_assert_eq(world_count(&t, "{\"status\": \"ready\", \"attempts\": 0}"), 1, "not buried");
    /* With a message behind it, the claim without the head succeeds: the head alone is refused,
     * it is buried with the server's error and the other message is claimed. */
    insert_raw(&t, 0, 0, "good", &good);
    msg = world_claim(c, 0);
    cr_assert(msg, "the message behind the poison one is claimed");
    cr_assert(bson_oid_equal(mongoq_message_id(msg), &good));
    assert_buried(&t, &poison, "11000");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(scenario_poison, claim_many_proves_a_refusal_off_the_list_too, .timeout = 60)
{
    world_skip_sharded("claim_many takes from one partition per call; the test expects one batch over the whole queue");
    world_t t;
    bson_error_t error;
    world_open(&t, NULL, 0);
    bson_oid_t poison, good[2];
    block_tagged_claims_by_c1(&t, &poison);
    insert_raw(&t, 0, 0, "good", &good[0]);
    insert_raw(&t, 0, 0, "good", &good[1]);
    mongoq_consumer_t *c = world_consumer(&t, "c1", 0);
    mongoq_message_t *msgs[3] = {NULL, NULL, NULL};
    size_t n = 0, total = 0;
    for (int round = 0; round < 3 && total < 2; round++) {
        cr_assert(mongoq_consumer_claim_many(c, 3, 0, msgs, &n, &error), "%s", error.message);
        for (size_t i = 0; i < n; i++) {
            cr_assert_neq(bson_oid_equal(mongoq_message_id(msgs[i]), &poison), true);
            mongoq_message_destroy(msgs[i]);
        }
        total += n;
    }
    cr_assert_eq(total, 2, "both good messages delivered");
    assert_buried(&t, &poison, "11000");
    mongoq_consumer_destroy(c);
    world_close(&t);
}

/*
 * Errors that are never the document's, or that the proof shows are not: every claim fails the
 * same way (failCommand on every findAndModify), nothing is buried, the error comes back.
 * 2 BadValue is a code off the list that the proof rejects (the claim without the head fails
 * too); 10107, 11600 and 13 are never candidates.
 */
Test(scenario_poison, a_refusal_of_every_claim_buries_nothing, .timeout = 60)
{
    world_skip_sharded("failCommand fail points: configureFailPoint is broadcast and fires on the shards a command reaches, not on the router");
    static const int codes[] = {2, 10107, 11600, 13};
    world_t t;
    bson_error_t error;
    world_open(&t, NULL, 0);
    bson_oid_t ids[2];
    insert_raw(&t, 5, 0, "first", &ids[0]);
    insert_raw(&t, 0, 0, "second", &ids[1]);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    for (size_t k = 0; k < sizeof codes / sizeof codes[0]; k++) {
        char data[128];
        bson_snprintf(data, sizeof data, "\"failCommands\": [\"findAndModify\"], \"errorCode\": %d",
                      codes[k]);
        int64_t before = world_fail_point(&t, "\"alwaysOn\"", data);
        mongoq_message_t *msg = NULL;
        bool ok = mongoq_consumer_claim(c, 0, &msg, &error);
        cr_assert_geq(world_fail_point_off(&t, before), 1, "the fault fired");
        cr_assert_not(ok, "code %d: the claim fails", codes[k]);
        cr_assert(error.code == (uint32_t)codes[k] || error.code == MONGOQ_ERROR_UNKNOWN_OUTCOME,
                  "code %d: the server's error (or UNKNOWN_OUTCOME) comes back: %s", codes[k],
                  error.message);
        cr_assert_eq(world_count(&t, "{\"status\": \"ready\", \"attempts\": 0}"), 2,
                     "code %d: nothing buried", codes[k]);
    }
    mongoq_consumer_destroy(c);
    world_close(&t);
}

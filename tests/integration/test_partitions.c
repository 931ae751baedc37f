/*
 * Partitioned queues (mongoq_queue_opts_t.partitions, docs/scaling.md) with P = 4: every
 * operation, placement by hash (dedup keys and caller ids land where FNV-1a says), fairness
 * across partitions, empty partitions skipped without a round trip, and every single-document
 * write naming its partition (what a sharded cluster's mongos needs to target one shard).
 *
 * They run against the ordinary test server, a replica set, where every rule but routing is
 * exercised; against a mongos (MONGOQ_TEST_URI naming a router) each test shards its queue
 * first with mongoq_queue_shard, and the same assertions hold.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

#define P 4

TestSuite(partitions, .timeout = 120);

/* ---- helpers ------------------------------------------------------------------------------- */

/* 32-bit FNV-1a written again here: the placement the library promises, checked independently. */
static int32_t
fnv_partition(const void *data, size_t len, int32_t partitions)
{
    const uint8_t *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return (int32_t)(h % (uint32_t)partitions);
}

static bool
on_mongos(world_t *w)
{
    bson_t reply;
    bson_iter_t it;
    bool mongos = mtest_command(w->client, "admin", "{\"hello\": 1}", &reply, NULL) &&
                  bson_iter_init_find(&it, &reply, "msg") && BSON_ITER_HOLDS_UTF8(&it) &&
                  strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0;
    bson_destroy(&reply);
    return mongos;
}

/* The world with a queue of P partitions (opts may be NULL), sharded when on a mongos. */
static void
part_open(world_t *w, mongoq_queue_opts_t *opts, unsigned flags)
{
    mongoq_queue_opts_t defaults = MONGOQ_QUEUE_OPTS_INIT;
    bson_error_t error;
    if (!opts) {
        opts = &defaults;
    }
    opts->partitions = P;
    world_open(w, opts, flags);
    if (on_mongos(w)) {
        cr_assert(mongoq_queue_shard(w->queue, NULL, &error), "%s", error.message);
    }
}

/* The partition of the stored message id (-1 when it has none). */
static int32_t
stored_partition(world_t *w, const bson_oid_t *id)
{
    bson_t doc;
    cr_assert(world_find(w, id, &doc), "message stored");
    int64_t p = mtest_doc_int(&doc, "partition");
    bson_destroy(&doc);
    return p == INT64_MIN ? -1 : (int32_t)p;
}

/* The int32 partition in a filter document, or -1. */
static int32_t
filter_partition(const bson_t *filter)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, filter, "partition") && BSON_ITER_HOLDS_INT32(&it)
               ? bson_iter_int32(&it)
               : -1;
}

/* Each statement of an update or delete command ("updates", "deletes"): its q when the statement
 * touches one document (update without multi, delete with limit 1). Returns how many were. */
static int
single_statements_checked(const bson_t *cmd, const char *array, const char *name)
{
    bson_iter_t it, stmts, field;
    int checked = 0;
    if (!bson_iter_init_find(&it, cmd, array) || !bson_iter_recurse(&it, &stmts)) {
        return 0;
    }
    while (bson_iter_next(&stmts)) {
        uint32_t len;
        const uint8_t *data;
        bson_t stmt, q;
        bson_iter_document(&stmts, &len, &data);
        bson_init_static(&stmt, data, len);
        bool single = strcmp(array, "updates") == 0
                          ? !(bson_iter_init_find(&field, &stmt, "multi") && bson_iter_as_bool(&field))
                          : bson_iter_init_find(&field, &stmt, "limit") &&
                                bson_iter_as_int64(&field) == 1;
        if (!single) {
            continue;
        }
        cr_assert(bson_iter_init_find(&field, &stmt, "q") && BSON_ITER_HOLDS_DOCUMENT(&field));
        bson_iter_document(&field, &len, &data);
        bson_init_static(&q, data, len);
        char *json = bson_as_relaxed_extended_json(&q, NULL);
        cr_assert_geq(filter_partition(&q), 0, "%s without partition: %s", name, json);
        cr_assert_lt(filter_partition(&q), P);
        bson_free(json);
        checked++;
    }
    return checked;
}

/*
 * Every single-document write the pool sent since the counter kept commands names a partition:
 * findAndModify's query, update statements without multi, delete statements with limit 1.
 * Returns how many writes were checked.
 */
static int
assert_single_writes_name_partition(world_t *w)
{
    bson_t *cmds[512];
    size_t n = mtest_counter_commands(w->counter, NULL, cmds, 512);
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        bson_iter_init(&it, cmds[i]);
        bson_iter_next(&it);
        const char *name = bson_iter_key(&it);
        if (strcmp(name, "findAndModify") == 0 || strcmp(name, "findandmodify") == 0) {
            cr_assert(bson_iter_init_find(&it, cmds[i], "query") && BSON_ITER_HOLDS_DOCUMENT(&it));
            uint32_t len;
            const uint8_t *data;
            bson_t q;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&q, data, len);
            cr_assert_geq(filter_partition(&q), 0, "findAndModify without partition");
            checked++;
        } else if (strcmp(name, "update") == 0) {
            checked += single_statements_checked(cmds[i], "updates", name);
        } else if (strcmp(name, "delete") == 0) {
            checked += single_statements_checked(cmds[i], "deletes", name);
        }
        bson_destroy(cmds[i]);
    }
    cr_assert_lt(n, 512, "more commands than the check holds");
    return checked;
}

/* Claims one message (waiting up to wait_ms) and checks it; NULL when none. */
static mongoq_message_t *
claim(mongoq_consumer_t *c, int64_t wait_ms)
{
    mongoq_message_t *msg = world_claim(c, wait_ms);
    if (msg) {
        cr_assert_geq(mongoq_message_partition(msg), 0);
        cr_assert_lt(mongoq_message_partition(msg), P);
    }
    return msg;
}

/* ---- placement ----------------------------------------------------------------------------- */

Test(partitions, placement_follows_the_hash_of_the_dedup_key_or_the_id)
{
    world_t w;
    bson_error_t error;
    part_open(&w, NULL, 0);
    /* Random ids: the hash of the ObjectId's 12 bytes. */
    bson_oid_t ids[40];
    world_enqueue_n(&w, 40, NULL, ids);
    int per[P] = {0};
    for (int i = 0; i < 40; i++) {
        int32_t p = stored_partition(&w, &ids[i]);
        cr_assert_eq(p, fnv_partition(ids[i].bytes, 12, P), "message %d in partition %d", i, p);
        per[p]++;
    }
    for (int p = 0; p < P; p++) {
        cr_assert_gt(per[p], 0, "40 messages reach every one of %d partitions", P);
    }
    /* Caller ids: the same rule, so a retry of one enqueue meets the stored message. */
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.caller_ids = true;
    bson_oid_t mine;
    bson_oid_init(&mine, NULL);
    world_enqueue(w.queue, 100, &opts, &mine);
    world_enqueue(w.queue, 100, &opts, &mine); /* "already queued" */
    cr_assert_eq(stored_partition(&w, &mine), fnv_partition(mine.bytes, 12, P));
    cr_assert_eq(world_count(&w, "{\"payload.seq\": 100}"), 1);
    /* Dedup keys: the hash of the key, so one key always meets its holder's partition. */
    static const char *const keys[] = {"a", "foobar", "order-17", "k1"};
    for (size_t i = 0; i < 4; i++) {
        mongoq_enqueue_opts_t d = MONGOQ_ENQUEUE_OPTS_INIT;
        bson_oid_t id, again;
        d.dedup_key = keys[i];
        world_enqueue(w.queue, 200 + (int64_t)i, &d, &id);
        cr_assert_eq(stored_partition(&w, &id), fnv_partition(keys[i], strlen(keys[i]), P),
                     "key %s", keys[i]);
        bson_t payload;
        world_payload(&payload, 300 + (int64_t)i);
        cr_assert_not(mongoq_enqueue(w.queue, &payload, &d, &again, &error));
        cr_assert_eq(error.code, MONGOQ_ERROR_DUPLICATE, "dedup is global: %s", error.message);
        cr_assert(bson_oid_equal(&id, &again), "the holder's id is returned");
        bson_destroy(&payload);
    }
    /* Pinned values: the hash must never change across versions (FNV-1a test vectors). */
    cr_assert_eq(fnv_partition("a", 1, 7), 0xe40c292cu % 7);
    cr_assert_eq(fnv_partition("foobar", 6, 7), 0xbf9cf968u % 7);
    world_close(&w);
}

/* ---- every operation ------------------------------------------------------------------------- */

Test(partitions, every_operation_with_four_partitions)
{
    world_t w;
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true;
    part_open(&w, &opts, WORLD_COUNTER);
    mtest_counter_keep_commands(w.counter);
    world_enqueue_n(&w, 30, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);

    mongoq_message_t *msg = claim(c, 0);
    cr_assert(msg);
    cr_assert(mongoq_message_ack(msg, &error), "ack: %s", error.message);
    mongoq_message_destroy(msg);

    /* claim_many: one partition per call, all of what it holds up to max. */
    mongoq_message_t *batch[30];
    size_t got = 0;
    cr_assert(mongoq_consumer_claim_many(c, 30, 0, batch, &got, &error), "%s", error.message);
    cr_assert_gt(got, 0);
    int32_t p0 = mongoq_message_partition(batch[0]);
    for (size_t i = 0; i < got; i++) {
        cr_assert_eq(mongoq_message_partition(batch[i]), p0, "claim_many stays in one partition");
    }
    cr_assert_eq((int64_t)got, world_count(&w, "{\"status\": \"processing\"}"));
    cr_assert(mongoq_message_ack_many(batch, got, &error), "ack_many: %s", error.message);
    for (size_t i = 0; i < got; i++) {
        mongoq_message_destroy(batch[i]);
    }

    /* retry, extend, fail, redrive, retry_now */
    msg = claim(c, 0);
    cr_assert(mongoq_message_extend(msg, 60000, &error), "extend: %s", error.message);
    cr_assert(mongoq_message_retry(msg, 0, "again", &error), "retry: %s", error.message);
    mongoq_message_destroy(msg);
    msg = claim(c, 0);
    bson_oid_t dead_id;
    bson_oid_copy(mongoq_message_id(msg), &dead_id);
    cr_assert(mongoq_message_fail(msg, "broken", &error), "fail: %s", error.message);
    mongoq_message_destroy(msg);
    cr_assert(mongoq_queue_retry_now(w.queue, &dead_id, &error), "retry_now: %s", error.message);
    msg = claim(c, 0);
    cr_assert(mongoq_message_fail(msg, "broken again", &error), "%s", error.message);
    mongoq_message_destroy(msg);
    int64_t moved = 0;
    cr_assert(mongoq_queue_redrive(w.queue, NULL, &moved, &error), "%s", error.message);
    cr_assert_eq(moved, 1);

    /* reap: leases of 1 ms come back on the server's clock. */
    mongoq_consumer_t *brief = world_consumer(&w, "brief", 1);
    mongoq_message_t *held[3];
    for (int i = 0; i < 3; i++) {
        held[i] = claim(brief, 0);
        cr_assert(held[i]);
    }
    cr_assert_eq(world_reap_until(&w, 3, 10000), 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_not(mongoq_message_ack(held[i], &error), "the lease was reaped");
        cr_assert_eq(error.code, MONGOQ_ERROR_LEASE_LOST);
        mongoq_message_destroy(held[i]);
    }

    /* stats sum every partition */
    mongoq_stats_t stats = MONGOQ_STATS_INIT;
    cr_assert(mongoq_queue_stats(w.queue, &stats, &error), "%s", error.message);
    cr_assert_eq(stats.ready, world_count(&w, "{\"status\": \"ready\"}"));
    cr_assert_eq(stats.ready, 30 - 1 - (int64_t)got);
    cr_assert_eq(stats.processing, 0);
    cr_assert_eq(stats.dead, 0);

    /* pause: no claim, no command */
    cr_assert(mongoq_queue_pause(w.queue, &error), "pause: %s", error.message);
    int64_t before = mtest_counter_get(w.counter, "findAndModify");
    cr_assert_null(claim(c, 0));
    cr_assert_eq(mtest_counter_get(w.counter, "findAndModify"), before);
    cr_assert(mongoq_queue_resume(w.queue, &error), "resume: %s", error.message);
    msg = claim(c, 0);
    cr_assert(msg, "claims go on after resume");
    mongoq_message_destroy(msg);

    /* purge every partition */
    int64_t purged = 0;
    cr_assert(mongoq_queue_purge(w.queue, NULL, &purged, &error), "%s", error.message);
    cr_assert_eq(purged, stats.ready);
    cr_assert_eq(world_count(&w, "{\"payload\": {\"$exists\": true}}"), 0);

    cr_assert_gt(assert_single_writes_name_partition(&w), 10);
    mongoq_consumer_destroy(brief);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* A document someone else damaged is buried with an updateOne that names its partition. */
Test(partitions, a_damaged_message_is_buried_in_its_partition)
{
    world_t w;
    part_open(&w, NULL, WORLD_COUNTER);
    mtest_counter_keep_commands(w.counter);
    bson_oid_t id;
    bson_oid_init(&id, NULL);
    int64_t now = world_server_now(&w);
    bson_t *doc = BCON_NEW("_id", BCON_OID(&id), "partition", BCON_INT32(2), "status",
                           BCON_UTF8("ready"), "priority", BCON_INT32(0), "run_at",
                           BCON_DATE_TIME(now - 1000), "attempts", BCON_INT32(0), "max_attempts",
                           BCON_INT32(5));
    bson_error_t error;
    cr_assert(mongoc_collection_insert_one(w.coll, doc, NULL, NULL, &error), "%s", error.message);
    bson_destroy(doc);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    cr_assert_null(claim(c, 0), "a message without payload is never handed out");
    cr_assert_eq(world_count(&w, "{\"status\": \"dead\", \"partition\": 2}"), 1);
    cr_assert_geq(assert_single_writes_name_partition(&w), 2);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* ---- fairness and skipping -------------------------------------------------------------------- */

/* How many findAndModify kept since the last reset aimed at another partition than want
 * (asserts there was at least one claim). */
static int
count_aimed_elsewhere(world_t *w, int32_t want, int32_t also)
{
    bson_t *cmds[64];
    size_t n = mtest_counter_commands(w->counter, "findAndModify", cmds, 64);
    int elsewhere = 0;
    cr_assert_geq(n, 1);
    for (size_t i = 0; i < n; i++) {
        bson_iter_t it;
        uint32_t len;
        const uint8_t *data;
        bson_t q;
        cr_assert(bson_iter_init_find(&it, cmds[i], "query"));
        bson_iter_document(&it, &len, &data);
        bson_init_static(&q, data, len);
        if (filter_partition(&q) != want && filter_partition(&q) != also) {
            cr_log_info("findAndModify aimed at partition %d, not %d", filter_partition(&q), want);
            elsewhere++;
        }
        bson_destroy(cmds[i]);
    }
    return elsewhere;
}

/* With messages in every partition, consecutive claims visit the partitions in turn: each is
 * served within every P claims, whatever the priorities in the others. */
Test(partitions, claims_take_the_partitions_in_turn)
{
    world_t w;
    part_open(&w, NULL, 0);
    mongoq_enqueue_opts_t high = MONGOQ_ENQUEUE_OPTS_INIT;
    high.priority = 9;
    bson_oid_t ids[80];
    world_enqueue_n(&w, 80, NULL, ids);
    int per[P] = {0};
    for (int i = 0; i < 80; i++) {
        per[fnv_partition(ids[i].bytes, 12, P)]++;
    }
    int least = 80;
    for (int p = 0; p < P; p++) {
        least = per[p] < least ? per[p] : least;
    }
    cr_assert_gt(least, 0);
    /* High-priority messages somewhere: priorities hold within a partition only. */
    for (int i = 0; i < 20; i++) {
        world_enqueue(w.queue, 1000 + i, &high, NULL);
    }
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    int32_t first = -1;
    for (int i = 0; i < least * P; i++) {
        mongoq_message_t *msg = claim(c, 0);
        cr_assert(msg);
        int32_t p = mongoq_message_partition(msg);
        if (first < 0) {
            first = p;
        }
        cr_assert_eq(p, (first + i) % P, "claim %d took partition %d, not %d", i, p,
                     (first + i) % P);
        mongoq_message_destroy(msg);
    }
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* Two consumers start at random partitions; each goes round. Together they serve every
 * partition within a bound of 2P claims, whatever the others hold. */
Test(partitions, no_partition_starves_under_two_consumers)
{
    world_t w;
    part_open(&w, NULL, 0);
    world_enqueue_n(&w, 200, NULL, NULL);
    mongoq_consumer_t *a = world_consumer(&w, "a", 0), *b = world_consumer(&w, "b", 0);
    int last_seen[P];
    for (int p = 0; p < P; p++) {
        last_seen[p] = -1;
    }
    for (int i = 0; i < 100; i++) {
        mongoq_message_t *msg = claim(i % 2 ? b : a, 0);
        cr_assert(msg);
        last_seen[mongoq_message_partition(msg)] = i;
        mongoq_message_destroy(msg);
        for (int p = 0; p < P && i >= 2 * P; p++) {
            cr_assert_gt(last_seen[p], i - 2 * P, "partition %d not served in claims %d..%d", p,
                         i - 2 * P + 1, i);
        }
    }
    mongoq_consumer_destroy(a);
    mongoq_consumer_destroy(b);
    world_close(&w);
}

/* A partition found empty is not asked again until something says it may hold work. */
Test(partitions, empty_partitions_are_skipped_without_a_round_trip)
{
    world_t w;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.poll_interval_ms = 600000; /* no safety-net recheck during the test */
    opts.no_reaper = true;
    part_open(&w, &opts, WORLD_COUNTER);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    /* The first claim starts the waker; its stream's opening makes everyone look again. */
    cr_assert_null(claim(c, 0));
    cr_assert(mtest_wait_until(world_stream_active, w.queue, 10000), "change stream open");
    /* A look asks each partition once at most (those found empty before the rescan). */
    mtest_counter_reset(w.counter);
    cr_assert_null(claim(c, 0));
    int64_t looked = mtest_counter_get(w.counter, "findAndModify");
    cr_assert_leq(looked, P);
    /* Known empty now: no command at all. */
    for (int i = 0; i < 5; i++) {
        cr_assert_null(claim(c, 0));
    }
    cr_assert_eq(mtest_counter_get(w.counter, "findAndModify"), looked);
    /* An enqueue here wakes its own partition only: one findAndModify finds it. */
    bson_oid_t id;
    world_enqueue(w.queue, 1, NULL, &id);
    mtest_counter_reset(w.counter);
    mongoq_message_t *msg = claim(c, 0);
    cr_assert(msg);
    cr_assert(bson_oid_equal(mongoq_message_id(msg), &id));
    cr_assert_eq(mtest_counter_get(w.counter, "findAndModify"), 1);
    int32_t local = mongoq_message_partition(msg);
    mongoq_message_destroy(msg);
    /* Another process's enqueue reaches us through the change stream, which names the
     * partition: only that partition is asked. */
    world_open_producer(&w, &opts);
    mtest_counter_keep_commands(w.counter);
    mtest_counter_reset(w.counter);
    world_enqueue(w.producer, 2, NULL, &id);
    int32_t want = fnv_partition(id.bytes, 12, P);
    msg = claim(c, 10000);
    cr_assert(msg, "woken by the change event");
    cr_assert_eq(world_seq(msg), 2);
    /* The local enqueue's own change event may come meanwhile: its partition may be asked. */
    cr_assert_eq(count_aimed_elsewhere(&w, want, local), 0, "only the events' partitions");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* A delayed message's timer names its partition: when it falls due, only that one is asked. */
Test(partitions, a_delayed_message_wakes_its_partition_when_due)
{
    world_t w;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.poll_interval_ms = 600000;
    opts.no_reaper = true;
    part_open(&w, &opts, WORLD_COUNTER);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    cr_assert_null(claim(c, 0)); /* starts the waker */
    cr_assert(mtest_wait_until(world_stream_active, w.queue, 10000), "change stream open");
    cr_assert_null(claim(c, 0)); /* every partition known empty */
    mtest_counter_keep_commands(w.counter);
    mtest_counter_reset(w.counter);
    mongoq_enqueue_opts_t later = MONGOQ_ENQUEUE_OPTS_INIT;
    later.delay_ms = 300;
    bson_oid_t id;
    world_enqueue(w.queue, 7, &later, &id);
    int32_t want = fnv_partition(id.bytes, 12, P);
    mongoq_message_t *msg = claim(c, 10000);
    cr_assert(msg, "claimed when due");
    cr_assert(bson_oid_equal(mongoq_message_id(msg), &id));
    /* The enqueue's own wake-up, its change event and the timer are about one partition. */
    cr_assert_eq(count_aimed_elsewhere(&w, want, want), 0);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
}

/* ---- options ------------------------------------------------------------------------------ */

Test(partitions, options_are_checked_and_sharding_needs_a_mongos)
{
    world_t w;
    bson_error_t error;
    world_open(&w, NULL, WORLD_NO_QUEUE);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.partitions = MONGOQ_MAX_PARTITIONS + 1;
    cr_assert_null(mongoq_queue_new(w.pool, w.db, "jobs", &opts, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    opts.partitions = -1;
    cr_assert_null(mongoq_queue_new(w.pool, w.db, "jobs", &opts, &error));
    /* One partition: nothing to shard on. */
    opts.partitions = 1;
    mongoq_queue_t *one = mongoq_queue_new(w.pool, w.db, "one", &opts, &error);
    cr_assert(one, "%s", error.message);
    cr_assert_not(mongoq_queue_shard(one, NULL, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    mongoq_queue_destroy(one);
    /* A layout cannot change in place: the indexes of P = 1 refuse P = 4. */
    opts.partitions = P;
    cr_assert_null(mongoq_queue_new(w.pool, w.db, "one", &opts, &error));
    cr_assert_eq(error.code, 86, "IndexKeySpecsConflict: %s", error.message);
    if (!on_mongos(&w)) {
        mongoq_queue_t *four = mongoq_queue_new(w.pool, w.db, "four", &opts, &error);
        cr_assert(four, "%s", error.message);
        cr_assert_not(mongoq_queue_shard(four, NULL, &error), "a replica set is not a mongos");
        cr_assert_eq(error.code, MONGOQ_ERROR_SERVER, "%s", error.message);
        cr_assert(strstr(error.message, "mongos"), "%s", error.message);
        mongoq_queue_destroy(four);
    }
    world_close(&w);
}

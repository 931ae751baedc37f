/*
 * A scheduler inside a worker (mongoq_worker_opts_t.scheduler): the worker creates, starts,
 * stops and destroys it with its threads. A schedule due every minute, its next slot wound back
 * a minute so a slot is due now, is enqueued by the worker's scheduler and handled by the same
 * worker; the worker stops within its bound; bad scheduler options fail mongoq_worker_new.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "world.h"

TestSuite(schedule_worker, .timeout = 120);

/* Sets next_slot of schedule `name` of db.jobs straight on the server. */
static void
wind_back(world_t *w, const char *name, int64_t slot_ms)
{
    bson_error_t error;
    mongoc_collection_t *coll = mongoc_client_get_collection(w->client, w->db, "jobs.schedules");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(name));
    bson_t *update = BCON_NEW("$set", "{", "next_slot", BCON_DATE_TIME(slot_ms), "}");
    cr_assert(mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error), "%s",
              error.message);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
}

Test(schedule_worker, the_workers_scheduler_enqueues_a_due_slot_and_the_worker_handles_it)
{
    /* Its scheduler's pass is a transaction over two collections (test_schedule.c). */
    world_skip_sharded("a schedule pass is a transaction over two collections that a cluster may "
                       "place on two shards; the test router runs one-shard transactions only");
    world_skip_sharded("a scheduler's pass is a transaction over the schedules and the queue's "
                       "collections, which the test router runs on one shard only");
    world_t w;
    world_open(&w, NULL, 0);
    bson_error_t error;
    mongoq_schedule_opts_t sched = MONGOQ_SCHEDULE_OPTS_INIT;
    bson_t *payload = BCON_NEW("seq", BCON_INT64(0));
    sched.cron = "* * * * *";
    sched.payload = payload;
    cr_assert(mongoq_schedule_set(w.queue, "minutely", &sched, &error), "%s", error.message);
    bson_destroy(payload);
    int64_t now = world_server_now(&w);
    int64_t slot = now - now % 60000 - 60000; /* last minute's slot: due now */
    wind_back(&w, "minutely", slot);

    world_rec_t rec;
    world_rec_init(&rec);
    mongoq_scheduler_opts_t sopts = MONGOQ_SCHEDULER_OPTS_INIT;
    sopts.poll_ms = 50;
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = world_record;
    opts.user_data = &rec;
    opts.scheduler = &sopts;
    mongoq_worker_t *worker = world_worker_run(w.queue, &opts);
    cr_assert(world_await_started(&rec, 0, 20000), "the worker handled the scheduled message");
    world_acked_t acked = {worker, 1};
    cr_assert(mtest_wait_until(world_acked_reached, &acked, 10000), "and acked it");

    mongoq_schedule_info_t *info = NULL;
    cr_assert(mongoq_schedule_get(w.queue, "minutely", &info, &error), "%s", error.message);
    cr_assert_geq(info->enqueued, 1);
    cr_assert_geq(info->last_slot_ms, slot, "a slot from the wound-back one on was enqueued");
    cr_assert_gt(info->next_slot_ms, info->last_slot_ms);
    mongoq_schedule_info_destroy(info);

    int64_t t0 = mtest_now_ms();
    cr_assert(mongoq_worker_stop(worker, 5000, &error), "%s", error.message);
    cr_assert_lt(mtest_now_ms() - t0, 6000, "within timeout_ms + 1 s");
    mongoq_worker_destroy(worker);
    world_rec_destroy(&rec);
    world_close(&w);
}

Test(schedule_worker, bad_scheduler_options_fail_worker_new)
{
    world_t w;
    world_open(&w, NULL, 0);
    bson_error_t error;
    world_rec_t rec;
    world_rec_init(&rec);
    mongoq_scheduler_opts_t sopts = MONGOQ_SCHEDULER_OPTS_INIT;
    sopts.poll_ms = 5; /* below the minimum of 10 */
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = world_record;
    opts.user_data = &rec;
    opts.scheduler = &sopts;
    cr_assert_null(mongoq_worker_new(w.queue, &opts, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    cr_assert(strstr(error.message, "poll_ms"), "%s", error.message);

    /* A version 2 struct has no scheduler field: none is read, and none runs. */
    opts.version = 2;
    mongoq_worker_t *worker = mongoq_worker_new(w.queue, &opts, &error);
    cr_assert_not_null(worker, "%s", error.message);
    mongoq_worker_destroy(worker);
    world_rec_destroy(&rec);
    world_close(&w);
}

Test(schedule_worker, stop_takes_any_timeout)
{
    world_t w;
    world_open(&w, NULL, 0);
    bson_error_t error;
    world_rec_t rec;
    world_rec_init(&rec);
    mongoq_scheduler_opts_t sopts = MONGOQ_SCHEDULER_OPTS_INIT;
    sopts.poll_ms = MONGOQ_MAX_DURATION_MS; /* idles longer than poll(2) can be asked to wait */
    mongoq_scheduler_t *s = mongoq_scheduler_new(w.queue, &sopts, &error);
    cr_assert_not_null(s, "%s", error.message);
    cr_assert(mongoq_scheduler_start(s, &error), "%s", error.message);
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = world_record;
    opts.user_data = &rec;
    opts.scheduler = &sopts;
    mongoq_worker_t *worker = world_worker_run(w.queue, &opts);
    int64_t t0 = mtest_now_ms();
    cr_assert(mongoq_scheduler_stop(s, INT64_MAX, &error), "%s", error.message);
    cr_assert(mongoq_worker_stop(worker, INT64_MAX, &error), "%s", error.message);
    cr_assert_lt(mtest_now_ms() - t0, 10000, "a stop does not wait out the timeout");
    mongoq_worker_destroy(worker);
    mongoq_scheduler_destroy(s);
    world_rec_destroy(&rec);
    world_close(&w);
}

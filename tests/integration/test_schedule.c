/*
 * Schedules (mongoq/schedule.h): definitions stored, listed, replaced and removed; bad cron
 * expressions and zones refused before anything is written; catch-up policies after downtime
 * (a schedule whose next slot lies years back, so the due slots are known exactly); and two
 * schedulers on separate pools (standing for two processes) racing over the same slots, which
 * must yield exactly one message per slot.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "world.h"

TestSuite(schedule, .timeout = 120);

static const char *
schedules_name(void)
{
    return "jobs.schedules";
}

static void
set_schedule(mongoq_queue_t *queue, const char *name, const char *cron, mongoq_catch_up_t policy,
             int32_t limit)
{
    bson_error_t error;
    mongoq_schedule_opts_t opts = MONGOQ_SCHEDULE_OPTS_INIT;
    bson_t *payload = BCON_NEW("job", BCON_UTF8(name));
    opts.cron = cron;
    opts.payload = payload;
    opts.catch_up = policy;
    opts.catch_up_limit = limit;
    cr_assert(mongoq_schedule_set(queue, name, &opts, &error), "set %s: %s", name, error.message);
    bson_destroy(payload);
}

/* Sets the stored next_slot of `name` straight on the server (downtime, as if no scheduler ran). */
static void
rewind_to(world_t *w, const char *name, int64_t slot_ms)
{
    bson_error_t error;
    mongoc_collection_t *coll = mongoc_client_get_collection(w->client, w->db, schedules_name());
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(name));
    bson_t *update = BCON_NEW("$set", "{", "next_slot", BCON_DATE_TIME(slot_ms), "}");
    cr_assert(mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error), "%s",
              error.message);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
}

static int64_t
jan1(int64_t year)
{
    /* days from civil, for January 1st */
    int64_t y = year - 1;
    int64_t days = 365 * (y - 1969) + (y / 4 - 1969 / 4) - (y / 100 - 1969 / 100) + (y / 400 - 1969 / 400);
    return days * 86400000;
}

static int64_t
current_year(int64_t now_ms)
{
    int64_t year = 1970;
    while (jan1(year + 1) <= now_ms) {
        year++;
    }
    return year;
}

/* Messages of schedule `name` whose slot is slot_ms. */
static int64_t
count_slot(world_t *w, const char *name, int64_t slot_ms)
{
    char filter[256];
    bson_snprintf(filter, sizeof filter,
                  "{\"payload.mongoq_schedule.name\": \"%s\", \"payload.mongoq_schedule.slot\": "
                  "{\"$date\": {\"$numberLong\": \"%lld\"}}}",
                  name, (long long)slot_ms);
    return world_count(w, filter);
}

static int64_t
count_schedule(world_t *w, const char *name)
{
    char filter[128];
    bson_snprintf(filter, sizeof filter, "{\"payload.mongoq_schedule.name\": \"%s\"}", name);
    return world_count(w, filter);
}

static mongoq_schedule_info_t *
get(mongoq_queue_t *queue, const char *name)
{
    bson_error_t error;
    mongoq_schedule_info_t *info = NULL;
    cr_assert(mongoq_schedule_get(queue, name, &info, &error), "get %s: %s", name, error.message);
    return info;
}

static void
pass(mongoq_queue_t *queue, mongoq_scheduler_pass_t *out)
{
    bson_error_t error;
    *out = (mongoq_scheduler_pass_t)MONGOQ_SCHEDULER_PASS_INIT;
    cr_assert(mongoq_scheduler_run_pass(queue, NULL, out, &error), "pass: %s", error.message);
}

/* A schedule pass is one transaction over <queue>.schedules (unsharded, on the database's primary
 * shard) and the slot message's partition (any shard): mongos runs it across shards with
 * two-phase commit, while mongoq-test-router runs one-shard transactions only (tests/router/
 * README.md). The tests that fire a slot skip there; setting, listing and refusing run. */
#define SKIP_FIRING_ON_A_CLUSTER()                                                                 \
    world_skip_sharded("a schedule pass is a transaction over two collections that a cluster may "  \
                       "place on two shards; the test router runs one-shard transactions only")

Test(schedule, set_list_replace_remove)
{
    world_t w;
    world_open(&w, NULL, 0);
    bson_error_t error;
    set_schedule(w.queue, "weekly", "0 8 * * MON", MONGOQ_CATCH_UP_LATEST, 0);
    set_schedule(w.queue, "hourly", "@hourly", MONGOQ_CATCH_UP_ALL, 3);
    mongoq_schedule_info_t **infos = NULL;
    size_t n = 0;
    cr_assert(mongoq_schedule_list(w.queue, &infos, &n, &error), "%s", error.message);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(infos[0]->name, "hourly");
    cr_assert_str_eq(infos[1]->name, "weekly");
    cr_assert_str_eq(infos[1]->tz, "UTC");
    cr_assert_eq(infos[0]->catch_up, MONGOQ_CATCH_UP_ALL);
    cr_assert_eq(infos[0]->catch_up_limit, 3);
    int64_t now = world_server_now(&w), expected;
    cr_assert(mongoq_cron_next("@hourly", NULL, now - 5000, &expected, &error));
    cr_assert(infos[0]->next_slot_ms > now - 5000 && infos[0]->next_slot_ms % 3600000 == 0);
    cr_assert_eq(infos[0]->last_slot_ms, -1);
    int64_t weekly_next = infos[1]->next_slot_ms;
    mongoq_schedule_infos_destroy(infos, n);

    /* same cron: next slot kept; new cron: recomputed */
    mongoq_schedule_opts_t opts = MONGOQ_SCHEDULE_OPTS_INIT;
    opts.cron = "0 8 * * MON";
    opts.priority = 7;
    cr_assert(mongoq_schedule_set(w.queue, "weekly", &opts, &error), "%s", error.message);
    mongoq_schedule_info_t *info = get(w.queue, "weekly");
    cr_assert_eq(info->next_slot_ms, weekly_next);
    cr_assert_eq(info->priority, 7);
    mongoq_schedule_info_destroy(info);
    opts.cron = "0 10 * * MON";
    opts.tz = "Europe/Berlin";
    cr_assert(mongoq_schedule_set(w.queue, "weekly", &opts, &error), "%s", error.message);
    info = get(w.queue, "weekly");
    cr_assert_neq(info->next_slot_ms, weekly_next);
    cr_assert_str_eq(info->tz, "Europe/Berlin");
    mongoq_schedule_info_destroy(info);

    cr_assert(mongoq_schedule_remove(w.queue, "weekly", &error), "%s", error.message);
    cr_assert_not(mongoq_schedule_remove(w.queue, "weekly", &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_NOT_FOUND);
    cr_assert_not(mongoq_schedule_get(w.queue, "weekly", &info, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_NOT_FOUND);
    cr_assert_null(info);
    world_close(&w);
}

static void
assert_refused(mongoq_queue_t *queue, const char *cron, const char *tz, const char *needle)
{
    bson_error_t error;
    mongoq_schedule_opts_t opts = MONGOQ_SCHEDULE_OPTS_INIT;
    opts.cron = cron;
    opts.tz = tz;
    cr_assert_not(mongoq_schedule_set(queue, "bad", &opts, &error), "%s / %s accepted", cron, tz);
    cr_assert_eq(error.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "%s", error.message);
    cr_assert(strstr(error.message, needle), "message \"%s\" lacks \"%s\"", error.message, needle);
}

Test(schedule, bad_expressions_and_zones_are_invalid_arguments)
{
    world_t w;
    world_open(&w, NULL, 0);
    assert_refused(w.queue, "0 25 * * *", NULL, "field 2 (hour) \"25\": out of range 0-23");
    assert_refused(w.queue, "0 8 * *", NULL, "has 4 fields");
    assert_refused(w.queue, NULL, NULL, "cron");
    assert_refused(w.queue, "@fortnightly", NULL, "unknown macro");
    assert_refused(w.queue, "0 8 * * MON", "Europe/Atlantis", "time zone \"Europe/Atlantis\": unknown");
    assert_refused(w.queue, "0 8 * * MON", "../../etc/passwd", "not a zone name");
    bson_error_t error;
    int64_t next;
    cr_assert_not(mongoq_cron_next("* * * * 9", NULL, 0, &next, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    mongoq_schedule_info_t **infos;
    size_t n;
    cr_assert(mongoq_schedule_list(w.queue, &infos, &n, &error));
    cr_assert_eq(n, 0, "nothing was written");
    world_close(&w);
}

/* Downtime since 2010: yearly slots 2010 .. this year are all due. */
static int64_t
downtime(world_t *w, const char *name, mongoq_catch_up_t policy, int32_t limit)
{
    set_schedule(w->queue, name, "0 0 1 1 *", policy, limit);
    rewind_to(w, name, jan1(2010));
    return current_year(world_server_now(w)) - 2010 + 1;
}

Test(schedule, catch_up_latest_runs_the_latest_missed_slot_once)
{
    SKIP_FIRING_ON_A_CLUSTER();
    world_t w;
    world_open(&w, NULL, 0);
    int64_t due = downtime(&w, "yearly", MONGOQ_CATCH_UP_LATEST, 0);
    int64_t year = 2010 + due - 1;
    mongoq_scheduler_pass_t p;
    pass(w.queue, &p);
    cr_assert_eq(p.enqueued, 1);
    cr_assert_eq(p.skipped, due - 1);
    cr_assert_eq(count_schedule(&w, "yearly"), 1);
    cr_assert_eq(count_slot(&w, "yearly", jan1(year)), 1);
    mongoq_schedule_info_t *info = get(w.queue, "yearly");
    cr_assert_eq(info->next_slot_ms, jan1(year + 1));
    cr_assert_eq(info->last_slot_ms, jan1(year));
    cr_assert_eq(info->enqueued, 1);
    cr_assert_eq(info->skipped, due - 1);
    mongoq_schedule_info_destroy(info);
    /* the message is due at once (run_at = the slot, in the past) and its _id is the slot's */
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 5000);
    cr_assert(msg);
    cr_assert_eq(bson_oid_get_time_t(mongoq_message_id(msg)), (time_t)(jan1(year) / 1000));
    bson_error_t error;
    cr_assert(mongoq_message_ack(msg, &error));
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    pass(w.queue, &p);
    cr_assert_eq(p.enqueued, 0, "acknowledged and deleted, the slot is still not run again");
    world_close(&w);
}

Test(schedule, catch_up_all_runs_the_latest_limit_slots_in_order)
{
    SKIP_FIRING_ON_A_CLUSTER();
    world_t w;
    world_open(&w, NULL, 0);
    int64_t due = downtime(&w, "yearly", MONGOQ_CATCH_UP_ALL, 5);
    int64_t year = 2010 + due - 1;
    mongoq_scheduler_pass_t p;
    pass(w.queue, &p);
    cr_assert_eq(p.enqueued, 5);
    cr_assert_eq(p.skipped, due - 5);
    for (int64_t y = year - 4; y <= year; y++) {
        cr_assert_eq(count_slot(&w, "yearly", jan1(y)), 1, "slot %lld", (long long)y);
    }
    cr_assert_eq(count_slot(&w, "yearly", jan1(year - 5)), 0);
    /* oldest first: the claim order (run_at) follows the slots */
    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    for (int64_t y = year - 4; y <= year; y++) {
        mongoq_message_t *msg = world_claim(c, 5000);
        cr_assert(msg);
        bson_iter_t it;
        cr_assert(bson_iter_init(&it, mongoq_message_payload(msg)) &&
                  bson_iter_find_descendant(&it, "mongoq_schedule.slot", &it) &&
                  BSON_ITER_HOLDS_DATE_TIME(&it));
        cr_assert_eq(bson_iter_date_time(&it), jan1(y));
        mongoq_message_destroy(msg);
    }
    mongoq_consumer_destroy(c);
    world_close(&w);
}

Test(schedule, catch_up_skip_runs_nothing_late)
{
    world_t w;
    world_open(&w, NULL, 0);
    int64_t due = downtime(&w, "yearly", MONGOQ_CATCH_UP_SKIP, 0);
    mongoq_scheduler_pass_t p;
    pass(w.queue, &p);
    cr_assert_eq(p.enqueued, 0);
    cr_assert_eq(p.skipped, due);
    cr_assert_eq(count_schedule(&w, "yearly"), 0);
    mongoq_schedule_info_t *info = get(w.queue, "yearly");
    cr_assert_eq(info->next_slot_ms, jan1(2010 + due));
    mongoq_schedule_info_destroy(info);
    world_close(&w);
}

Test(schedule, dedup_key_skips_a_slot_while_the_previous_run_is_unfinished)
{
    SKIP_FIRING_ON_A_CLUSTER();
    world_t w;
    world_open(&w, NULL, 0);
    bson_error_t error;
    mongoq_schedule_opts_t opts = MONGOQ_SCHEDULE_OPTS_INIT;
    opts.cron = "0 0 1 1 *";
    opts.dedup_key = "yearly-report";
    opts.catch_up = MONGOQ_CATCH_UP_ALL;
    opts.catch_up_limit = 3;
    cr_assert(mongoq_schedule_set(w.queue, "yearly", &opts, &error), "%s", error.message);
    rewind_to(&w, "yearly", jan1(2010));
    mongoq_scheduler_pass_t p;
    pass(w.queue, &p);
    cr_assert_eq(p.enqueued, 1, "the first of the three holds the key");
    cr_assert_eq(count_schedule(&w, "yearly"), 1);
    world_close(&w);
}

/* ---- two schedulers ---------------------------------------------------------------------------- */

#define RACE_SCHEDULES 12
#define RACE_ROUNDS 6

typedef struct {
    mongoq_queue_t *queue;
    pthread_barrier_t *barrier;
    mongoq_scheduler_pass_t total;
    bool failed;
    bson_error_t error;
} racer_t;

static void *
racer_main(void *arg)
{
    racer_t *r = arg;
    for (int round = 0; round < RACE_ROUNDS; round++) {
        pthread_barrier_wait(r->barrier);
        mongoq_scheduler_pass_t p = MONGOQ_SCHEDULER_PASS_INIT;
        if (!mongoq_scheduler_run_pass(r->queue, NULL, &p, &r->error)) {
            r->failed = true;
        }
        r->total.enqueued += p.enqueued;
        r->total.lost_races += p.lost_races;
        pthread_barrier_wait(r->barrier);
    }
    return NULL;
}

Test(schedule, two_schedulers_on_separate_pools_enqueue_each_slot_once)
{
    SKIP_FIRING_ON_A_CLUSTER();
    world_t w;
    world_open(&w, NULL, 0);
    world_open_producer(&w, NULL);
    char names[RACE_SCHEDULES][16];
    for (int i = 0; i < RACE_SCHEDULES; i++) {
        bson_snprintf(names[i], sizeof names[i], "s%02d", i);
        set_schedule(w.queue, names[i], "0 0 1 * *", MONGOQ_CATCH_UP_ALL, 1000);
        rewind_to(&w, names[i], jan1(2020)); /* monthly since 2020: dozens of slots each */
    }
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    racer_t a = {.queue = w.queue, .barrier = &barrier}, b = {.queue = w.producer, .barrier = &barrier};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, racer_main, &a);
    pthread_create(&tb, NULL, racer_main, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&barrier);
    cr_assert_not(a.failed, "%s", a.error.message);
    cr_assert_not(b.failed, "%s", b.error.message);
    int64_t expected = 0;
    for (int i = 0; i < RACE_SCHEDULES; i++) {
        mongoq_schedule_info_t *info = get(w.queue, names[i]);
        int64_t slots = 0;
        for (int64_t s = jan1(2020); s < info->next_slot_ms;) {
            bson_error_t error;
            cr_assert_eq(count_slot(&w, names[i], s), 1, "%s: slot %lld", names[i], (long long)s);
            slots++;
            cr_assert(mongoq_cron_next("0 0 1 * *", NULL, s, &s, &error));
        }
        cr_assert_eq(info->enqueued, slots);
        cr_assert_eq(count_schedule(&w, names[i]), slots);
        expected += slots;
        mongoq_schedule_info_destroy(info);
    }
    cr_assert_eq(a.total.enqueued + b.total.enqueued, expected);
    cr_assert_eq(world_count(&w, "{}"), expected);
    cr_log_info("two schedulers: %lld messages, %lld + %lld enqueued, %lld + %lld lost races",
                (long long)expected, (long long)a.total.enqueued, (long long)b.total.enqueued,
                (long long)a.total.lost_races, (long long)b.total.lost_races);
    world_close(&w);
}

Test(schedule, scheduler_threads_start_and_stop_within_a_bound)
{
    SKIP_FIRING_ON_A_CLUSTER();
    world_t w;
    world_open(&w, NULL, 0);
    world_open_producer(&w, NULL);
    bson_error_t error;
    set_schedule(w.queue, "yearly", "0 0 1 1 *", MONGOQ_CATCH_UP_ALL, 1000);
    rewind_to(&w, "yearly", jan1(1990));
    mongoq_scheduler_opts_t opts = MONGOQ_SCHEDULER_OPTS_INIT;
    opts.poll_ms = 20;
    mongoq_scheduler_t *s1 = mongoq_scheduler_new(w.queue, &opts, &error);
    mongoq_scheduler_t *s2 = mongoq_scheduler_new(w.producer, &opts, &error);
    cr_assert(s1 && s2, "%s", error.message);
    cr_assert(mongoq_scheduler_start(s1, &error) && mongoq_scheduler_start(s2, &error));
    cr_assert_not(mongoq_scheduler_start(s1, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_STOPPED);
    int64_t due = current_year(world_server_now(&w)) - 1990 + 1;
    int64_t deadline = mtest_now_ms() + 30000;
    while (count_schedule(&w, "yearly") < due && mtest_now_ms() < deadline) {
        mongoq_consumer_t *c = world_consumer(&w, NULL, 0); /* a claim waits for the insert */
        mongoq_message_destroy(world_claim(c, 200));
        mongoq_consumer_destroy(c);
        rewind_to(&w, "yearly", jan1(1990)); /* a set-back schedule must not enqueue twice */
    }
    cr_assert_eq(count_schedule(&w, "yearly"), due);
    int64_t t0 = mtest_now_ms();
    cr_assert(mongoq_scheduler_stop(s1, 10000, &error), "%s", error.message);
    cr_assert(mongoq_scheduler_stop(s2, 10000, &error), "%s", error.message);
    cr_assert_lt(mtest_now_ms() - t0, 10000);
    cr_assert_eq(count_schedule(&w, "yearly"), due, "set back, the slots were not enqueued again");
    mongoq_scheduler_pass_t c1 = MONGOQ_SCHEDULER_PASS_INIT, c2 = MONGOQ_SCHEDULER_PASS_INIT;
    cr_assert(mongoq_scheduler_counters(s1, &c1) && mongoq_scheduler_counters(s2, &c2));
    cr_log_info("scheduler threads: %lld + %lld enqueued, %lld + %lld lost races",
                (long long)c1.enqueued, (long long)c2.enqueued, (long long)c1.lost_races,
                (long long)c2.lost_races);
    mongoq_scheduler_destroy(s1);
    mongoq_scheduler_destroy(s2);
    world_close(&w);
}

/*
 * mongoq-stress, part 6: schedulers racing. Two scheduler threads on separate pools and a
 * worker running a scheduler of its own (mongoq_worker_opts_t.scheduler) enqueue the slots of
 * P6_MONTHLY monthly schedules wound back to 1990 (catch-up all: hundreds of slots each) and
 * of a minutely one in Europe/Berlin, while other threads run passes on their own thread,
 * replace another schedule's definition, list and read schedules, compute cron slots in several
 * zones, read the schedulers' counters and pause and resume the queue from the other handle.
 * The worker handles what they enqueue: every monthly slot exactly once; the queue's hook is
 * told of every ack, on the worker's threads.
 */

#include "stress.h"

#define P6_FIRST_YEAR 1990
#define P6_MONTHLY 4
#define P6_MAX_MONTHS (12 * 100)
#define P6_AUX_ITERATIONS 100000 /* bound of each side thread's loop (it stops on a flag) */

typedef struct {
    part_t *part;
    env_t *e;
    mongoq_queue_t *qa, *qb;
    mongoq_scheduler_t *s1;
    atomic_int months[P6_MONTHLY][P6_MAX_MONTHS]; /* handler runs per slot, from 1990-01 */
    atomic_int minutely;                          /* handler runs of the Berlin schedule */
    atomic_int churn; /* of the one whose definition changes (if a slot comes) */
    atomic_int other; /* of no schedule of the part's: none */
    atomic_int hook_acked, hook_claimed, hook_wrong; /* what the hook of qa was told */
    atomic_int pauses;
    atomic_bool stop;
    int due; /* slots of each monthly schedule due now */
} p6_t;

static int64_t
p6_jan1(int year)
{
    struct tm tm = {.tm_year = year - 1900, .tm_mon = 0, .tm_mday = 1};
    return (int64_t)timegm(&tm) * 1000;
}

/* Months from 1990-01 to the month of ms. */
static int
p6_month_of(int64_t ms)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    return (tm.tm_year + 1900 - P6_FIRST_YEAR) * 12 + tm.tm_mon;
}

static mongoq_result_t
p6_handler(mongoq_message_t *msg, void *user_data)
{
    p6_t *p = user_data;
    bson_iter_t it, name, slot;
    const bson_t *payload = mongoq_message_payload(msg);
    bool ok = bson_iter_init(&it, payload) &&
              bson_iter_find_descendant(&it, "mongoq_schedule.name", &name) &&
              BSON_ITER_HOLDS_UTF8(&name) && bson_iter_init(&it, payload) &&
              bson_iter_find_descendant(&it, "mongoq_schedule.slot", &slot) &&
              BSON_ITER_HOLDS_DATE_TIME(&slot);
    if (!CHECK(p->part, ok, "a message without mongoq_schedule {name, slot}")) {
        return MONGOQ_ACK;
    }
    const char *n = bson_iter_utf8(&name, NULL);
    int k = -1;
    if (strncmp(n, "monthly-", 8) == 0 && n[8] >= '0' && n[8] < '0' + P6_MONTHLY && !n[9]) {
        k = n[8] - '0';
    }
    if (k >= 0) {
        int i = p6_month_of(bson_iter_date_time(&slot));
        if (CHECK(p->part, i >= 0 && i < p->due, "%s: slot index %d", n, i)) {
            atomic_fetch_add(&p->months[k][i], 1);
        }
    } else if (strcmp(n, "minutely") == 0) {
        atomic_fetch_add(&p->minutely, 1);
    } else if (strcmp(n, "churn") == 0) {
        atomic_fetch_add(&p->churn, 1);
    } else {
        atomic_fetch_add(&p->other, 1);
    }
    return MONGOQ_ACK;
}

static int
p6_handled(p6_t *p)
{
    int n = atomic_load(&p->minutely) + atomic_load(&p->churn) + atomic_load(&p->other);
    for (int k = 0; k < P6_MONTHLY; k++) {
        for (int i = 0; i < p->due; i++) {
            n += atomic_load(&p->months[k][i]);
        }
    }
    return n;
}

static void
p6_hook(const mongoq_event_t *event, void *user_data)
{
    p6_t *p = user_data;
    if (event->version < 1 || strcmp(event->queue, "q") != 0) {
        atomic_fetch_add(&p->hook_wrong, 1);
    } else if (event->kind == MONGOQ_EVENT_ACKED) {
        atomic_fetch_add(&p->hook_acked, (int)event->count);
    } else if (event->kind == MONGOQ_EVENT_CLAIMED) {
        atomic_fetch_add(&p->hook_claimed, (int)event->count);
    }
}

static bool
p6_set(p6_t *p, const char *name, const char *cron, const char *tz, mongoq_catch_up_t policy)
{
    bson_error_t error;
    mongoq_schedule_opts_t opts = MONGOQ_SCHEDULE_OPTS_INIT;
    bson_t *payload = BCON_NEW("job", BCON_UTF8(name));
    opts.cron = cron;
    opts.tz = tz;
    opts.payload = payload;
    opts.catch_up = policy;
    opts.catch_up_limit = policy == MONGOQ_CATCH_UP_ALL ? MONGOQ_MAX_CATCH_UP : 0;
    bool ok = mongoq_schedule_set(p->qa, name, &opts, &error);
    CHECK(p->part, ok, "schedule_set %s: %s", name, error.message);
    bson_destroy(payload);
    return ok;
}

/* Sets next_slot of `name` straight on the server (as if no scheduler had run since). */
static bool
p6_wind_back(p6_t *p, const char *name, int64_t slot_ms)
{
    bson_error_t error;
    mongoc_collection_t *coll = mongoc_client_get_collection(p->e->client, p->e->db, "q.schedules");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(name));
    bson_t *update = BCON_NEW("$set", "{", "next_slot", BCON_DATE_TIME(slot_ms), "}");
    bool ok = mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error);
    CHECK(p->part, ok, "wind back %s: %s", name, error.message);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return ok;
}

/* ---- side threads ------------------------------------------------------------------------------
 */

/* Passes on this thread, on the second handle: a third scheduler, without a thread of its own. */
static void *
p6_passes(void *arg)
{
    p6_t *p = arg;
    for (int i = 0; i < P6_AUX_ITERATIONS && !atomic_load(&p->stop); i++) {
        bson_error_t error;
        mongoq_scheduler_pass_t pass = MONGOQ_SCHEDULER_PASS_INIT;
        CHECK(p->part, mongoq_scheduler_run_pass(p->qb, NULL, &pass, &error), "run_pass: %s",
              error.message);
        stress_sleep_ms(2);
    }
    return NULL;
}

/* Replaces the "churn" schedule's definition back and forth, and lists and reads schedules. */
static void *
p6_definitions(void *arg)
{
    p6_t *p = arg;
    static const char *const crons[] = {"0 * * * *", "30 */2 * * *"};
    static const char *const zones[] = {"Europe/Berlin", "America/New_York"};
    for (int i = 0; i < P6_AUX_ITERATIONS && !atomic_load(&p->stop); i++) {
        bson_error_t error;
        p6_set(p, "churn", crons[i % 2], zones[i / 2 % 2], MONGOQ_CATCH_UP_SKIP);
        mongoq_schedule_info_t **infos = NULL, *info = NULL;
        size_t n = 0;
        CHECK(p->part, mongoq_schedule_list(p->qb, &infos, &n, &error) && n == P6_MONTHLY + 2,
              "list: %zu schedules (%s)", n, error.message);
        mongoq_schedule_infos_destroy(infos, n);
        CHECK(p->part, mongoq_schedule_get(p->qa, "monthly-0", &info, &error), "get: %s",
              error.message);
        mongoq_schedule_info_destroy(info);
    }
    return NULL;
}

/* Pauses the queue from the other handle and resumes it, again and again; leaves it resumed. */
static void *
p6_pauser(void *arg)
{
    p6_t *p = arg;
    bson_error_t error;
    for (int i = 0; i < P6_AUX_ITERATIONS && !atomic_load(&p->stop); i++) {
        bool pause = i % 2 == 0;
        CHECK(p->part,
              pause ? mongoq_queue_pause(p->qb, &error) : mongoq_queue_resume(p->qb, &error),
              "%s: %s", pause ? "pause" : "resume", error.message);
        atomic_fetch_add(&p->pauses, pause);
        stress_sleep_ms(pause ? 5 : 40);
    }
    CHECK(p->part, mongoq_queue_resume(p->qb, &error), "resume: %s", error.message);
    return NULL;
}

/* Slots in several zones, computed on many threads at once, against the main thread's. */
typedef struct {
    const char *cron, *tz;
    int64_t after, expected;
} p6_slot_t;

static p6_slot_t p6_slots[] = {
    {"30 2 * * *", "Europe/Berlin", 1711846800000LL, 0},    /* 2024-03-31, the gap */
    {"30 1 * * *", "America/New_York", 1730610000000LL, 0}, /* 2024-11-03, the repeat */
    {"0 8 * * MON", "Europe/Berlin", 1717200000000LL, 0},
    {"@hourly", "Australia/Lord_Howe", 1712412000000LL, 0},
    {"*/15 9-17 * * 1-5", "Asia/Kolkata", 1717200000000LL, 0},
};
#define P6_N_SLOTS (sizeof p6_slots / sizeof p6_slots[0])

static void *
p6_cron(void *arg)
{
    p6_t *p = arg;
    for (int i = 0; i < P6_AUX_ITERATIONS && !atomic_load(&p->stop); i++) {
        const p6_slot_t *s = &p6_slots[(size_t)i % P6_N_SLOTS];
        bson_error_t error;
        int64_t next = -1;
        CHECK(p->part,
              mongoq_cron_next(s->cron, s->tz, s->after, &next, &error) && next == s->expected,
              "%s in %s: %" PRId64 ", wanted %" PRId64, s->cron, s->tz, next, s->expected);
        mongoq_scheduler_pass_t c = MONGOQ_SCHEDULER_PASS_INIT;
        CHECK(p->part, mongoq_scheduler_counters(p->s1, &c) && c.enqueued >= 0, "counters");
    }
    return NULL;
}

/* ---- the part ----------------------------------------------------------------------------------
 */

static bool
p6_all_slots(void *arg)
{
    p6_t *p = arg;
    for (int k = 0; k < P6_MONTHLY; k++) {
        for (int i = 0; i < p->due; i++) {
            if (atomic_load(&p->months[k][i]) == 0) {
                return false;
            }
        }
    }
    return atomic_load(&p->minutely) > 0;
}

static void
p6_race(p6_t *p, mongoq_scheduler_t *s2, mongoq_worker_t *w)
{
    bson_error_t error;
    enum { SIDE = 4 };
    pthread_t side[SIDE];
    void *(*const mains[SIDE])(void *) = {p6_passes, p6_definitions, p6_cron, p6_pauser};
    int64_t t0 = stress_now_ms();
    CHECK(p->part, mongoq_scheduler_start(p->s1, &error), "start s1: %s", error.message);
    CHECK(p->part, mongoq_scheduler_start(s2, &error), "start s2: %s", error.message);
    CHECK(p->part, mongoq_worker_start(w, &error), "start the worker: %s", error.message);
    for (int i = 0; i < SIDE; i++) {
        BSON_ASSERT(pthread_create(&side[i], NULL, mains[i], p) == 0);
    }
    CHECK(p->part, stress_wait_until(p6_all_slots, p, 120000),
          "not every monthly slot (or no minutely one) was handled within 120 s");
    atomic_store(&p->stop, true);
    for (int i = 0; i < SIDE; i++) {
        pthread_join(side[i], NULL);
    }
    mongoq_scheduler_request_stop(s2); /* from another thread than stop's, as a signal would */
    int64_t t1 = stress_now_ms();
    CHECK(p->part, mongoq_worker_stop(w, 5000, &error), "worker_stop: %s", error.message);
    CHECK(p->part, mongoq_scheduler_stop(p->s1, 5000, &error), "stop s1: %s", error.message);
    CHECK(p->part, mongoq_scheduler_stop(s2, 5000, &error), "stop s2: %s", error.message);
    int64_t took = stress_now_ms() - t1;
    CHECK(p->part, took < 8000, "stopping took %" PRId64 " ms", took);
    mongoq_scheduler_pass_t c1 = MONGOQ_SCHEDULER_PASS_INIT, c2 = MONGOQ_SCHEDULER_PASS_INIT;
    mongoq_scheduler_counters(p->s1, &c1);
    mongoq_scheduler_counters(s2, &c2);
    printf("stress: %s: %d monthly slots handled in %.1f s (schedulers: %" PRId64 " + %" PRId64
           " enqueued, %" PRId64 " + %" PRId64 " lost races; %d pauses), stop took %" PRId64
           " ms\n",
           p->part->name, P6_MONTHLY * p->due, (double)(t1 - t0) / 1000.0, c1.enqueued, c2.enqueued,
           c1.lost_races, c2.lost_races, atomic_load(&p->pauses), took);
}

static void
p6_check(p6_t *p)
{
    bson_error_t error;
    mongoq_schedule_info_t *info = NULL;
    for (int k = 0; k < P6_MONTHLY; k++) {
        char name[16];
        for (int i = 0; i < p->due; i++) {
            CHECK(p->part, atomic_load(&p->months[k][i]) == 1,
                  "monthly-%d: the slot of %d-%02d was handled %d times", k, P6_FIRST_YEAR + i / 12,
                  i % 12 + 1, atomic_load(&p->months[k][i]));
        }
        bson_snprintf(name, sizeof name, "monthly-%d", k);
        if (CHECK(p->part, mongoq_schedule_get(p->qa, name, &info, &error), "get: %s",
                  error.message)) {
            CHECK(p->part, info->enqueued == p->due && info->skipped == 0,
                  "%s: %" PRId64 " enqueued, %" PRId64 " skipped, wanted %d and 0", name,
                  info->enqueued, info->skipped, p->due);
        }
        mongoq_schedule_info_destroy(info);
        info = NULL;
    }
    CHECK(p->part, atomic_load(&p->other) == 0, "%d messages of another schedule",
          atomic_load(&p->other));
    int handled = p6_handled(p);
    CHECK(p->part, atomic_load(&p->hook_acked) == handled && atomic_load(&p->hook_wrong) == 0,
          "the hook was told of %d acks (%d malformed events) for %d handled",
          atomic_load(&p->hook_acked), atomic_load(&p->hook_wrong), handled);
    CHECK(p->part, atomic_load(&p->hook_claimed) >= handled, "the hook was told of %d claims",
          atomic_load(&p->hook_claimed));
}

static void
p6_run(p6_t *p, mongoq_queue_t *qa, mongoq_queue_t *qb)
{
    bson_error_t error;
    p->qa = qa;
    p->qb = qb;
    for (size_t i = 0; i < P6_N_SLOTS; i++) {
        CHECK(p->part,
              mongoq_cron_next(p6_slots[i].cron, p6_slots[i].tz, p6_slots[i].after,
                               &p6_slots[i].expected, &error),
              "cron_next: %s", error.message);
    }
    int64_t now = (int64_t)time(NULL) * 1000;
    p->due = p6_month_of(now) + 1;
    BSON_ASSERT(p->due <= P6_MAX_MONTHS && p->due <= MONGOQ_MAX_CATCH_UP);
    for (int k = 0; k < P6_MONTHLY; k++) {
        char name[16];
        bson_snprintf(name, sizeof name, "monthly-%d", k);
        if (!p6_set(p, name, "0 0 1 * *", "UTC", MONGOQ_CATCH_UP_ALL) ||
            !p6_wind_back(p, name, p6_jan1(P6_FIRST_YEAR))) {
            return;
        }
    }
    if (!p6_set(p, "minutely", "* * * * *", "Europe/Berlin", MONGOQ_CATCH_UP_LATEST) ||
        !p6_set(p, "churn", "0 * * * *", "Europe/Berlin", MONGOQ_CATCH_UP_SKIP) ||
        !p6_wind_back(p, "minutely", now - now % 60000 - 60000)) {
        return;
    }
    mongoq_scheduler_opts_t sopts = MONGOQ_SCHEDULER_OPTS_INIT;
    sopts.poll_ms = 20;
    mongoq_worker_opts_t wopts = MONGOQ_WORKER_OPTS_INIT;
    wopts.handler = p6_handler;
    wopts.user_data = p;
    wopts.threads = 3;
    wopts.batch = 4;
    wopts.scheduler = &sopts;
    p->s1 = mongoq_scheduler_new(qa, &sopts, &error);
    mongoq_scheduler_t *s2 = p->s1 ? mongoq_scheduler_new(qb, &sopts, &error) : NULL;
    mongoq_worker_t *w = s2 ? mongoq_worker_new(qa, &wopts, &error) : NULL;
    if (CHECK(p->part, w != NULL, "scheduler_new / worker_new: %s", error.message)) {
        p6_race(p, s2, w);
        p6_check(p);
    }
    mongoq_worker_destroy(w);
    mongoq_scheduler_destroy(s2);
    mongoq_scheduler_destroy(p->s1);
}

void
stress_part_schedules(part_t *part)
{
    env_t e;
    p6_t *p = bson_malloc0(sizeof *p);
    p->part = part;
    p->e = &e;
    for (int k = 0; k < P6_MONTHLY; k++) {
        for (int i = 0; i < P6_MAX_MONTHS; i++) {
            atomic_init(&p->months[k][i], 0);
        }
    }
    atomic_init(&p->minutely, 0);
    atomic_init(&p->churn, 0);
    atomic_init(&p->other, 0);
    atomic_init(&p->hook_acked, 0);
    atomic_init(&p->hook_claimed, 0);
    atomic_init(&p->hook_wrong, 0);
    atomic_init(&p->pauses, 0);
    atomic_init(&p->stop, false);
    stress_env_open(&e, part);
    mongoc_client_pool_t *pool_b = stress_pool_new("stress-b");
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT, opts_b = MONGOQ_QUEUE_OPTS_INIT;
    opts.hook = p6_hook;
    opts.hook_user_data = p;
    mongoq_queue_t *qa = stress_queue_open(&e, e.pool, &opts);
    mongoq_queue_t *qb = qa ? stress_queue_open(&e, pool_b, &opts_b) : NULL;
    if (qb) {
        p6_run(p, qa, qb);
    }
    mongoq_queue_destroy(qb);
    mongoq_queue_destroy(qa);
    bson_free(p);
    mongoc_client_pool_destroy(pool_b);
    stress_env_close(&e);
}

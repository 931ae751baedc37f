/* Lifecycle hooks (mongoq/hooks.h): each event told once, with its times, on the right thread. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "world.h"

#define REC_MAX 64

typedef struct {
    pthread_mutex_t mu;
    int n;
    mongoq_event_t events[REC_MAX];
    bson_oid_t ids[REC_MAX];
    char reasons[REC_MAX][32];
    pthread_t threads[REC_MAX];
    mongoq_queue_t *queue; /* called back from the hook when set */
    int64_t callbacks_ok;
} hook_rec_t;

static void
record(const mongoq_event_t *e, void *user_data)
{
    hook_rec_t *r = user_data;
    if (r->queue) {
        mongoq_counters_t c = MONGOQ_COUNTERS_INIT; /* calling back in must not deadlock */
        if (mongoq_queue_counters(r->queue, &c)) {
            r->callbacks_ok++;
        }
    }
    pthread_mutex_lock(&r->mu);
    if (r->n < REC_MAX) {
        r->events[r->n] = *e;
        if (e->id) {
            bson_oid_copy(e->id, &r->ids[r->n]);
        }
        bson_strncpy(r->reasons[r->n], e->reason ? e->reason : "", sizeof r->reasons[0]);
        r->threads[r->n] = pthread_self();
        r->n++;
    }
    pthread_mutex_unlock(&r->mu);
}

static int
count_kind(hook_rec_t *r, mongoq_event_kind_t kind)
{
    int n = 0;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        n += r->events[i].kind == kind;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* The last event of that kind (asserts there is one). */
static int
last_of(hook_rec_t *r, mongoq_event_kind_t kind)
{
    int found = -1;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n; i++) {
        if (r->events[i].kind == kind) {
            found = i;
        }
    }
    pthread_mutex_unlock(&r->mu);
    cr_assert_geq(found, 0, "an event of kind %d was told", (int)kind);
    return found;
}

static void
open_with_hook(world_t *w, hook_rec_t *r, bool reaper)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.hook = record;
    opts.hook_user_data = r;
    opts.no_reaper = !reaper;
    opts.reap_interval_ms = 50;
    world_open(w, &opts, 0);
}

Test(api_hooks, every_event_is_told_once_with_its_times)
{
    world_t w;
    hook_rec_t r;
    bson_error_t error;
    open_with_hook(&w, &r, false);
    r.queue = w.queue;
    bson_oid_t ids[3];
    int64_t before = world_server_now(&w);
    world_enqueue_n(&w, 3, NULL, ids);
    cr_assert_eq(count_kind(&r, MONGOQ_EVENT_ENQUEUED), 3);
    cr_assert(bson_oid_equal(&r.ids[0], &ids[0]));
    cr_assert_str_eq(r.events[0].queue, "jobs");
    cr_assert_geq(r.events[0].enqueued_at_ms, before - 1000);
    cr_assert_eq(r.events[0].run_at_ms, r.events[0].enqueued_at_ms, "due at once");
    cr_assert_eq(r.events[0].attempt, 0);

    mongoq_consumer_t *c = world_consumer(&w, NULL, 0);
    mongoq_message_t *msg = world_claim(c, 0);
    int i = last_of(&r, MONGOQ_EVENT_CLAIMED);
    cr_assert(bson_oid_equal(&r.ids[i], mongoq_message_id(msg)));
    cr_assert_eq(r.events[i].attempt, 1);
    cr_assert_geq(r.events[i].waited_ms, 0);
    cr_assert_eq(r.events[i].handled_ms, -1, "not handled yet");
    cr_assert(mongoq_message_ack(msg, &error), "%s", error.message);
    i = last_of(&r, MONGOQ_EVENT_ACKED);
    cr_assert(bson_oid_equal(&r.ids[i], mongoq_message_id(msg)));
    cr_assert_geq(r.events[i].handled_ms, 0);
    cr_assert(pthread_equal(r.threads[i], pthread_self()), "told on the caller's thread");
    mongoq_message_destroy(msg);

    msg = world_claim(c, 0);
    cr_assert(mongoq_message_retry(msg, 60000, "later", &error), "%s", error.message);
    i = last_of(&r, MONGOQ_EVENT_RETRIED);
    cr_assert_str_eq(r.reasons[i], "later");
    mongoq_message_destroy(msg);
    msg = world_claim(c, 0);
    cr_assert(mongoq_message_fail(msg, "broken", &error), "%s", error.message);
    i = last_of(&r, MONGOQ_EVENT_FAILED);
    cr_assert_str_eq(r.reasons[i], "broken");
    cr_assert(bson_oid_equal(&r.ids[i], mongoq_message_id(msg)));
    mongoq_message_destroy(msg);

    cr_assert_eq(count_kind(&r, MONGOQ_EVENT_CLAIMED), 3);
    cr_assert_eq(count_kind(&r, MONGOQ_EVENT_ACKED), 1);
    cr_assert_eq(count_kind(&r, MONGOQ_EVENT_RETRIED), 1);
    cr_assert_eq(count_kind(&r, MONGOQ_EVENT_FAILED), 1);
    cr_assert_eq(r.callbacks_ok, r.n, "the hook called back into mongoq every time");
    mongoq_consumer_destroy(c);
    world_close(&w);
    pthread_mutex_destroy(&r.mu);
}

Test(api_hooks, reaping_and_a_lost_lease_are_told)
{
    world_t w;
    hook_rec_t r;
    bson_error_t error;
    open_with_hook(&w, &r, false);
    world_enqueue_n(&w, 1, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 100);
    mongoq_message_t *msg = world_claim(c, 0);
    cr_assert(world_wait_server_past(&w, mongoq_message_lease_expires_at(msg), 5000));
    cr_assert_eq(world_reap_until(&w, 1, 5000), 1);
    int i = last_of(&r, MONGOQ_EVENT_REAPED);
    cr_assert_eq(r.events[i].count, 1);
    cr_assert_null(r.events[i].id, "a reaping is a count");
    cr_assert_not(mongoq_message_ack(msg, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_LEASE_LOST);
    i = last_of(&r, MONGOQ_EVENT_LEASE_LOST);
    cr_assert(bson_oid_equal(&r.ids[i], mongoq_message_id(msg)));
    cr_assert_eq(count_kind(&r, MONGOQ_EVENT_LEASE_LOST), 1, "told once");
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
    pthread_mutex_destroy(&r.mu);
}

static bool
reaped_one(void *queue)
{
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_queue_counters(queue, &c);
    return c.reaped >= 1;
}

/* The background reaper never calls the hook: its reapings are told by the next claim. */
Test(api_hooks, background_reapings_are_told_on_a_claimers_thread)
{
    world_t w;
    hook_rec_t r;
    open_with_hook(&w, &r, true);
    world_enqueue_n(&w, 1, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&w, NULL, 100);
    mongoq_message_t *msg = world_claim(c, 0); /* starts the reaper */
    cr_assert(mtest_wait_until(reaped_one, w.queue, 10000), "the reaper returned it");
    cr_assert_eq(count_kind(&r, MONGOQ_EVENT_REAPED), 0, "not from the reaper's thread");
    mongoq_message_t *again = world_claim(c, 0);
    cr_assert(again);
    int i = last_of(&r, MONGOQ_EVENT_REAPED);
    cr_assert_eq(r.events[i].count, 1);
    cr_assert(pthread_equal(r.threads[i], pthread_self()), "told on the claimer's thread");
    cr_assert_eq(r.events[last_of(&r, MONGOQ_EVENT_CLAIMED)].attempt, 2);
    mongoq_message_destroy(again);
    mongoq_message_destroy(msg);
    mongoq_consumer_destroy(c);
    world_close(&w);
    pthread_mutex_destroy(&r.mu);
}

/* Options of version 1 end before the hook: a hook there is never read, let alone called. */
Test(api_hooks, version_1_options_have_no_hook)
{
    world_t w;
    hook_rec_t r;
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&r.mu, NULL);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.version = 1;
    opts.hook = record;
    opts.hook_user_data = &r;
    world_open(&w, &opts, 0);
    world_enqueue_n(&w, 1, NULL, NULL);
    cr_assert_eq(r.n, 0);
    world_close(&w);
    pthread_mutex_destroy(&r.mu);
}

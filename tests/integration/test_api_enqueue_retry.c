/*
 * An idempotent enqueue retry (caller_ids) that finds its message already queued is not a new
 * message: counters.enqueued and the ENQUEUED hook count it once, for enqueue and enqueue_many.
 * enqueue_many's bounds: n = 0 writes nothing and succeeds; n over MONGOQ_MAX_ENQUEUE_MANY is
 * INVALID_ARG with nothing written.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>

#include "world.h"

static atomic_int enqueued_told;

static void
count_enqueued(const mongoq_event_t *event, void *user_data)
{
    (void)user_data;
    if (event->kind == MONGOQ_EVENT_ENQUEUED) {
        atomic_fetch_add(&enqueued_told, 1);
    }
}

static int64_t
enqueued_counted(world_t *w)
{
    mongoq_counters_t counters = MONGOQ_COUNTERS_INIT;
    cr_assert(mongoq_queue_counters(w->queue, &counters));
    return counters.enqueued;
}

static void
open_hooked(world_t *w)
{
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.hook = count_enqueued;
    atomic_store(&enqueued_told, 0);
    world_open(w, &opts, 0);
}

Test(api_enqueue_retry, an_enqueue_retried_with_its_id_is_counted_and_told_once, .timeout = 60)
{
    world_t w;
    bson_error_t error;
    open_hooked(&w);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.caller_ids = true;
    bson_oid_t id;
    bson_oid_init(&id, NULL);
    bson_t *payload = BCON_NEW("seq", BCON_INT64(1));
    for (int i = 0; i < 3; i++) {
        cr_assert(mongoq_enqueue(w.queue, payload, &opts, &id, &error), "%s", error.message);
    }
    cr_assert_eq(world_count(&w, "{}"), 1, "stored once");
    cr_assert_eq(enqueued_counted(&w), 1, "counted once");
    cr_assert_eq(atomic_load(&enqueued_told), 1, "told once");
    bson_destroy(payload);
    world_close(&w);
}

Test(api_enqueue_retry, an_enqueue_many_retried_with_its_ids_is_counted_and_told_once,
     .timeout = 60)
{
    world_t w;
    bson_error_t error;
    open_hooked(&w);
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.caller_ids = true;
    bson_t *payloads[4];
    bson_oid_t ids[4];
    for (int i = 0; i < 4; i++) {
        payloads[i] = BCON_NEW("seq", BCON_INT64(i));
        bson_oid_init(&ids[i], NULL);
    }
    size_t stored = 0;
    /* Three first; then all four, as a retry that had stored three would. */
    cr_assert(mongoq_enqueue_many(w.queue, (const bson_t *const *)payloads, 3, &opts, ids, &stored,
                                  &error), "%s", error.message);
    cr_assert(mongoq_enqueue_many(w.queue, (const bson_t *const *)payloads, 4, &opts, ids, &stored,
                                  &error), "%s", error.message);
    cr_assert_eq(stored, 4, "the retry says all four are queued");
    cr_assert_eq(world_count(&w, "{}"), 4);
    cr_assert_eq(enqueued_counted(&w), 4, "each counted once");
    cr_assert_eq(atomic_load(&enqueued_told), 4, "each told once");
    for (int i = 0; i < 4; i++) {
        bson_destroy(payloads[i]);
    }
    world_close(&w);
}

Test(api_enqueue_retry, enqueue_many_takes_zero_to_its_maximum, .timeout = 60)
{
    world_t w;
    bson_error_t error;
    open_hooked(&w);
    bson_t *payload = BCON_NEW("seq", BCON_INT64(1));
    const bson_t *one[1] = {payload};
    size_t stored = 99;
    cr_assert(mongoq_enqueue_many(w.queue, one, 0, NULL, NULL, &stored, &error), "%s",
              error.message);
    cr_assert_eq(stored, 0);
    /* Refused before any payload is read: one real payload stands for MAX + 1. */
    cr_assert_not(mongoq_enqueue_many(w.queue, one, (size_t)MONGOQ_MAX_ENQUEUE_MANY + 1, NULL, NULL,
                                      &stored, &error));
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG, "%s", error.message);
    cr_assert_eq(world_count(&w, "{}"), 0, "nothing written");
    cr_assert_eq(atomic_load(&enqueued_told), 0);
    bson_destroy(payload);
    world_close(&w);
}

/*
 * The driver's children's command lines: the options every child gets, a worker's and a
 * producer's own, and the libfaketime environment of the skewed worker slots; then the spawn.
 */
#include "driver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- children's command lines ------------------------------------------------------------------ */

typedef struct {
    char *argv[48];
    char store[48][600];
    int n;
} args_t;

static void
add_arg(args_t *a, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

static void
add_arg(args_t *a, const char *fmt, ...)
{
    if (a->n >= 47) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->store[a->n], sizeof a->store[a->n], fmt, ap);
    va_end(ap);
    a->argv[a->n] = a->store[a->n];
    a->argv[++a->n] = NULL;
}

static void
add_common(driver_t *d, args_t *a, const char *role, const char *name, bool via_proxy)
{
    add_arg(a, "%s", d->self);
    add_arg(a, "--role");
    add_arg(a, "%s", role);
    add_arg(a, "--uri");
    add_arg(a, "%s", via_proxy ? d->proxy_uri : d->direct_uri);
    add_arg(a, "--db");
    add_arg(a, CHAOS_DB);
    add_arg(a, "--coll");
    add_arg(a, CHAOS_COLL);
    add_arg(a, "--name");
    add_arg(a, "%s", name);
    add_arg(a, "--log");
    add_arg(a, "%s/%s.log", d->workdir, name);
    add_arg(a, "--seed");
    add_arg(a, "%" PRId64, (int64_t)(chaos_rng_next(&d->rng) >> 2));
}

static void
add_int(args_t *a, const char *key, int64_t value)
{
    add_arg(a, "--%s", key);
    add_arg(a, "%" PRId64, value);
}

/*
 * LD_PRELOAD of libfaketime for a skewed worker (ASan must then not insist on coming first).
 * libfaketime 0.9.10's "monotonic fix" makes pthread_cond_timedwait on a CLOCK_MONOTONIC
 * condition variable time out at once (even with FAKETIME_DONT_FAKE_MONOTONIC), which would
 * turn every timed wait of the library into a spin: FAKETIME_FORCE_MONOTONIC_FIX=0 turns it off.
 */
static void
skew_env(driver_t *d, const char *skew, args_t *env)
{
    const char *asan = getenv("ASAN_OPTIONS");
    add_arg(env, "LD_PRELOAD=%s", d->faketime_lib);
    add_arg(env, "FAKETIME=%s", skew);
    add_arg(env, "FAKETIME_DONT_FAKE_MONOTONIC=1");
    add_arg(env, "FAKETIME_FORCE_MONOTONIC_FIX=0");
    add_arg(env, "ASAN_OPTIONS=verify_asan_link_order=0%s%s", asan ? ":" : "", asan ? asan : "");
}

bool
driver_start_worker(driver_t *d, int slot)
{
    worker_slot_t *w = &d->workers[slot];
    args_t a = {.n = 0}, env = {.n = 0};
    char name[32];
    if (procs_alive(d, w->child) || d->final_stop) {
        return true;
    }
    bool via_proxy = w->via_proxy && d->proxy.available;
    snprintf(name, sizeof name, "w%d.%d", slot, w->gen++);
    add_common(d, &a, "worker", name, via_proxy);
    add_int(&a, "threads", w->threads);
    add_int(&a, "batch", w->batch);
    add_int(&a, "lease-ms", w->lease_ms);
    add_int(&a, "retry-pct", w->retry_pct);
    add_int(&a, "work-max-ms", w->work_max_ms);
    add_int(&a, "long-pct", w->long_pct);
    add_int(&a, "stop-timeout-ms", w->stop_timeout_ms);
    add_int(&a, "max-seconds", d->seconds + d->drain_s + 120);
    if (w->faketime && d->faketime_lib) {
        skew_env(d, w->faketime, &env);
    }
    int child = procs_spawn(d, CHILD_WORKER, slot, name, a.argv, env.n ? env.argv : NULL);
    if (child < 0) {
        return false;
    }
    d->children[child].via_proxy = via_proxy;
    w->child = child;
    return true;
}

bool
driver_start_producer(driver_t *d, int slot)
{
    producer_slot_t *p = &d->producers[slot];
    args_t a = {.n = 0};
    char name[32];
    if (procs_alive(d, p->child) || d->producers_stopping) {
        return true;
    }
    bool via_proxy = p->via_proxy && d->proxy.available;
    snprintf(name, sizeof name, "p%d.%d", slot, p->gen++);
    add_common(d, &a, "producer", name, via_proxy);
    add_int(&a, "seq-base", d->next_seq_base);
    add_int(&a, "rate", p->rate);
    add_int(&a, "batch-pct", p->batch_pct);
    add_int(&a, "batch-max", 16);
    add_int(&a, "size-max", 4096);
    add_int(&a, "max-seconds", d->seconds + d->drain_s + 60);
    d->next_seq_base += 10000000; /* each producer process numbers from a range of its own */
    int child = procs_spawn(d, CHILD_PRODUCER, slot, name, a.argv, NULL);
    if (child < 0) {
        return false;
    }
    d->children[child].via_proxy = via_proxy;
    p->child = child;
    return true;
}

/* mongoq-stress, part 4: mongoq_worker_request_stop from a signal handler. */

#include "stress.h"

/* ---- part 4: request_stop from a signal handler ------------------------------------------------ */

#define P4_N 10
#define P4_THREADS 2
#define P4_BATCH 5

/* Set before the signal can be sent (the threads that send it are created afterwards). */
static mongoq_worker_t *g_sig_worker;
/* Written by the handler, read by the thread it interrupted (and after joining it). */
static volatile sig_atomic_t g_sig_handled;

static void
on_sigusr1(int sig)
{
    (void)sig;
    mongoq_worker_request_stop(g_sig_worker);
    g_sig_handled = 1;
}

typedef struct {
    part_t *part;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool gate_open;   /* handlers block until then */
    int started;      /* handlers that began */
    pthread_t target; /* the thread that takes the signal */
    atomic_bool target_ready;
} p4_t;

/* Holds every handler until the test opens the gate (at most 15 s). */
static mongoq_result_t
p4_handler(mongoq_message_t *msg, void *user_data)
{
    p4_t *p = user_data;
    struct timespec until;
    (void)msg;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 15;
    pthread_mutex_lock(&p->mu);
    p->started++;
    pthread_cond_broadcast(&p->cond);
    for (int i = 0; i < 100000 && !p->gate_open; i++) {
        if (pthread_cond_timedwait(&p->cond, &p->mu, &until) != 0) {
            break;
        }
    }
    CHECK(p->part, p->gate_open, "a handler waited 15 s for the gate");
    pthread_mutex_unlock(&p->mu);
    return MONGOQ_ACK;
}

/* The only thread with SIGUSR1 unblocked: it waits (bounded) for the signal to arrive. */
static void *
p4_target(void *arg)
{
    p4_t *p = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    atomic_store(&p->target_ready, true);
    for (int i = 0; i < 2000 && !g_sig_handled; i++) {
        stress_sleep_ms(5); /* interrupted by the signal */
    }
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    return NULL;
}

static bool
p4_target_ready(void *arg)
{
    return atomic_load(&((p4_t *)arg)->target_ready);
}

static void *
p4_killer(void *arg)
{
    p4_t *p = arg;
    if (CHECK(p->part, stress_wait_until(p4_target_ready, p, 10000), "the target thread never ran")) {
        CHECK(p->part, pthread_kill(p->target, SIGUSR1) == 0, "pthread_kill failed");
    }
    return NULL;
}

static bool
p4_all_started(void *arg)
{
    p4_t *p = arg;
    pthread_mutex_lock(&p->mu);
    bool all = p->started == P4_THREADS;
    pthread_mutex_unlock(&p->mu);
    return all;
}

/* The keeper handed back what the two blocked threads claimed but did not start. */
static bool
p4_handed_back(void *arg)
{
    env_t *e = arg;
    return stress_count_docs(e, "{\"status\": \"ready\", \"attempts\": 0}") == P4_N - P4_THREADS &&
           stress_count_docs(e, "{\"status\": \"processing\"}") == P4_THREADS;
}

static void
p4_signal_and_stop(p4_t *p, env_t *e, mongoq_worker_t *w)
{
    pthread_t killer;
    bson_error_t error;
    CHECK(p->part, stress_wait_until(p4_all_started, p, 10000), "both handler threads did not start");
    BSON_ASSERT(pthread_create(&p->target, NULL, p4_target, p) == 0);
    BSON_ASSERT(pthread_create(&killer, NULL, p4_killer, p) == 0);
    pthread_join(killer, NULL);
    pthread_join(p->target, NULL);
    CHECK(p->part, g_sig_handled, "the SIGUSR1 handler did not run");
    CHECK(p->part, stress_wait_until(p4_handed_back, e, 10000),
          "after the signal, unstarted messages were not handed back");
    pthread_mutex_lock(&p->mu);
    p->gate_open = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    int64_t t0 = stress_now_ms();
    CHECK(p->part, mongoq_worker_stop(w, 5000, &error), "worker_stop: %s", error.message);
    int64_t took = stress_now_ms() - t0;
    CHECK(p->part, took < 3000, "worker_stop took %" PRId64 " ms", took);
    mongoq_counters_t c = MONGOQ_COUNTERS_INIT;
    mongoq_worker_counters(w, &c);
    CHECK(p->part, c.claimed >= P4_THREADS && c.acked == P4_THREADS && c.lease_lost == 0,
          "claimed %" PRId64 ", acked %" PRId64 ", lease_lost %" PRId64, c.claimed, c.acked,
          c.lease_lost);
    int64_t ready = stress_count_docs(e, "{\"status\": \"ready\"}"), all = stress_count_docs(e, "{}");
    CHECK(p->part, ready == P4_N - P4_THREADS && all == ready,
          "%" PRId64 " ready of %" PRId64 " left", ready, all);
    printf("stress: %s: SIGUSR1 handled, %" PRId64 " handed back, stop took %" PRId64 " ms\n",
           p->part->name, ready, took);
}

static void
p4_run(p4_t *p, env_t *e, mongoq_queue_t *q)
{
    bson_error_t error;
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = p4_handler;
    opts.user_data = p;
    opts.threads = P4_THREADS;
    opts.batch = P4_BATCH;
    if (!stress_enqueue_seqs(p->part, q, 0, P4_N)) {
        return;
    }
    mongoq_worker_t *w = mongoq_worker_new(q, &opts, &error);
    if (!CHECK(p->part, w != NULL, "worker_new: %s", error.message)) {
        return;
    }
    g_sig_worker = w;
    if (CHECK(p->part, mongoq_worker_start(w, &error), "worker_start: %s", error.message)) {
        p4_signal_and_stop(p, e, w);
    }
    pthread_mutex_lock(&p->mu);
    p->gate_open = true; /* whatever failed, no handler stays blocked */
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
    mongoq_worker_destroy(w);
    g_sig_worker = NULL;
}

void
stress_part_signal(part_t *part)
{
    env_t e;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    BSON_ASSERT(sigaction(SIGUSR1, &sa, &old) == 0);
    stress_env_open(&e, part);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    mongoq_queue_t *q = stress_queue_open(&e, e.pool, &opts);
    p4_t p = {.part = part};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cond, NULL);
    g_sig_handled = 0;
    if (q) {
        p4_run(&p, &e, q);
    }
    mongoq_queue_destroy(q);
    pthread_cond_destroy(&p.cond);
    pthread_mutex_destroy(&p.mu);
    stress_env_close(&e);
    sigaction(SIGUSR1, &old, NULL);
}

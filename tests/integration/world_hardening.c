/* The worker hardening tests' helpers (world_hardening.h says what each does). */
#include "world_hardening.h"

#include <criterion/criterion.h>
#include <string.h>

/* A world whose pool's commands are counted. */
void
wh_open(world_t *e, const mongoq_queue_opts_t *opts)
{
    world_open(e, opts, WORLD_COUNTER);
}

/* A queue whose leases are left alone: no background reaper, no "update" of its own. */
void
wh_open_quiet(world_t *e)
{
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.no_reaper = true;
    wh_open(e, &qopts);
}

void
wh_ctx_init(wh_ctx_t *c, world_t *env)
{
    memset(c, 0, sizeof *c);
    c->env = env;
    c->handler_client = mtest_client_for(env->uri, NULL);
    pthread_mutex_init(&c->mu, NULL);
    mtest_cond_init(&c->cond);
}

void
wh_ctx_destroy(wh_ctx_t *c)
{
    mongoc_client_destroy(c->handler_client);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->mu);
}

static int
wh_attempt(const mongoq_message_t *msg)
{
    int a = mongoq_message_attempts(msg);
    return a >= 0 && a <= WH_ATTEMPTS ? a : 0;
}

/* Records a handler call; returns the payload's i (or -1) and whether it is the first call. */
int
wh_enter(wh_ctx_t *c, mongoq_message_t *msg, bool *first)
{
    int i = (int)world_seq(msg);
    pthread_mutex_lock(&c->mu);
    *first = c->entered++ == 0;
    if (i >= 0 && i < WH_MAX) {
        c->runs[i]++;
        c->started_ms[i] = mtest_now_ms();
        c->ran_on[i][wh_attempt(msg)] = pthread_self();
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    return i;
}

void
wh_on_outcome(const mongoq_message_t *msg, const mongoq_outcome_t *o, void *user_data)
{
    wh_ctx_t *c = user_data;
    int i = (int)world_seq(msg), a = wh_attempt(msg);
    bool malformed = o->version != MONGOQ_OUTCOME_VERSION || (o->ok && o->error.code != 0) ||
                     (!o->ok && o->error.code == 0);
    pthread_mutex_lock(&c->mu);
    c->outcomes++;
    c->malformed += malformed;
    if (i >= 0 && i < WH_MAX) {
        c->count[i][a]++;
        c->last[i][a] = *o;
        if (o->handled && !pthread_equal(c->ran_on[i][a], pthread_self())) {
            c->wrong_thread++;
        }
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}


bool
wh_outcomes_reached(void *arg)
{
    wh_outcomes_t *w = arg;
    pthread_mutex_lock(&w->ctx->mu);
    bool reached = w->ctx->outcomes >= w->outcomes;
    pthread_mutex_unlock(&w->ctx->mu);
    return reached;
}

bool
wh_entered(void *arg)
{
    wh_ctx_t *c = arg;
    pthread_mutex_lock(&c->mu);
    bool in = c->entered > 0;
    pthread_mutex_unlock(&c->mu);
    return in;
}

void
wh_gate_open(wh_ctx_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->gate_open = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

/* The first call waits until the test opens the gate (at most 30 s); later ones pass. */
mongoq_result_t
wh_gated(mongoq_message_t *msg, void *user_data)
{
    wh_ctx_t *c = user_data;
    struct timespec ts;
    bool first;
    wh_enter(c, msg, &first);
    mtest_deadline(30000, &ts);
    pthread_mutex_lock(&c->mu);
    while (first && !c->gate_open && pthread_cond_timedwait(&c->cond, &c->mu, &ts) == 0) {
    }
    pthread_mutex_unlock(&c->mu);
    return MONGOQ_ACK;
}

mongoq_worker_t *
wh_worker(wh_ctx_t *c, mongoq_handler_fn handler, int32_t batch, int64_t lease_ms,
          int64_t heartbeat_ms)
{
    mongoq_worker_opts_t opts = MONGOQ_WORKER_OPTS_INIT;
    opts.handler = handler;
    opts.on_outcome = wh_on_outcome;
    opts.user_data = c;
    opts.batch = batch;
    opts.lease_ms = lease_ms;
    opts.heartbeat_ms = heartbeat_ms;
    return world_worker_run(c->env->queue, &opts);
}

void
wh_assert_outcome(wh_ctx_t *c, int i, int attempt, mongoq_outcome_action_t action, bool ok)
{
    const mongoq_outcome_t *o = &c->last[i][attempt];
    cr_assert_eq(c->count[i][attempt], 1, "message %d attempt %d: %d outcomes", i, attempt,
                 c->count[i][attempt]);
    cr_assert_eq(o->action, action, "message %d attempt %d: %s, want %s", i, attempt,
                 mongoq_outcome_action_name((int)o->action), mongoq_outcome_action_name((int)action));
    cr_assert_eq(o->ok, ok, "message %d attempt %d: ok %d: %s", i, attempt, o->ok,
                 o->error.message);
}

/* Which message of the batch the handler got (the one that ran). */
int
wh_only_run(wh_ctx_t *c, int n)
{
    int ran = -1;
    for (int i = 0; i < n; i++) {
        if (c->runs[i] > 0) {
            cr_assert_eq(ran, -1, "message %d also reached the handler", i);
            ran = i;
        }
    }
    cr_assert_neq(ran, -1, "no message reached the handler");
    return ran;
}

/*
 * The worker hardening tests' helpers (world_hardening.c), shared by test_worker_outcomes.c and
 * test_worker_stop.c: a context that records what the handler and the outcome callback saw per
 * message and attempt, a gated handler, and a worker wired to both.
 */
#ifndef MONGOQ_TEST_WORLD_HARDENING_H
#define MONGOQ_TEST_WORLD_HARDENING_H

#include "world.h"

#define WH_MAX 64
#define WH_ATTEMPTS 4

/* What the handler and the outcome callback saw, per message (payload i) and attempt. */
typedef struct {
    world_t *env;
    mongoc_client_t *handler_client; /* for the handler's own reads (one handler thread) */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool gate_open;
    int entered;                          /* handler calls */
    int runs[WH_MAX];                     /* handler calls per message */
    int64_t started_ms[WH_MAX];           /* mtest_now_ms() at the last start per message */
    pthread_t ran_on[WH_MAX][WH_ATTEMPTS + 1];
    int outcomes;                         /* on_outcome calls */
    int count[WH_MAX][WH_ATTEMPTS + 1];   /* on_outcome calls per message and attempt */
    mongoq_outcome_t last[WH_MAX][WH_ATTEMPTS + 1];
    int wrong_thread;                     /* handled outcomes off the handler's thread */
    int malformed;                        /* bad version, or ok and error disagree */
    /* wh_watch_expiry */
    int64_t expiry_first, expiry_later, expiry_on_server;
    bool lost_seen;
} wh_ctx_t;

typedef struct {
    wh_ctx_t *ctx;
    int outcomes;
} wh_outcomes_t;

/* A world whose pool's commands are counted. */
void wh_open(world_t *e, const mongoq_queue_opts_t *opts);

/* A queue whose leases are left alone: no background reaper, no "update" of its own. */
void wh_open_quiet(world_t *e);

void wh_ctx_init(wh_ctx_t *c, world_t *env);
void wh_ctx_destroy(wh_ctx_t *c);

/* Records a handler call; returns the payload's i (or -1) and whether it is the first call. */
int wh_enter(wh_ctx_t *c, mongoq_message_t *msg, bool *first);

/* The worker's on_outcome: counts and keeps each outcome per message and attempt. */
void wh_on_outcome(const mongoq_message_t *msg, const mongoq_outcome_t *o, void *user_data);

/* wait_until conditions: ctx->outcomes reached w->outcomes; the handler was entered. */
bool wh_outcomes_reached(void *arg);
bool wh_entered(void *arg);

void wh_gate_open(wh_ctx_t *c);

/* The first call waits until the test opens the gate (at most 30 s); later ones pass. */
mongoq_result_t wh_gated(mongoq_message_t *msg, void *user_data);

/* A worker on c->env's queue with wh_on_outcome and c as user data. */
mongoq_worker_t *wh_worker(wh_ctx_t *c, mongoq_handler_fn handler, int32_t batch,
                           int64_t lease_ms, int64_t heartbeat_ms);

/* Exactly one outcome for message i's attempt, with this action and ok. */
void wh_assert_outcome(wh_ctx_t *c, int i, int attempt, mongoq_outcome_action_t action, bool ok);

/* Which message of the batch the handler got (the one that ran); asserts it was exactly one. */
int wh_only_run(wh_ctx_t *c, int n);

#endif

/* Invariant 4 of the chaos run: every redelivery is explained (RETRY, a hand-back, a killed or
 * stopped consumer, a failed ack, a lease run out while cut off); none claimed while a lease
 * held, no attempt claimed twice. */
#include "check.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* ---- 4. redeliveries explained ------------------------------------------------------------------ */

/* An event of that kind on that process overlapping [from, to]. */
bool
check_proc_event(const driver_t *d, event_kind_t kind, int proc, int64_t from, int64_t to)
{
    for (int i = 0; i < d->n_events; i++) {
        const event_t *e = &d->events[i];
        if (e->kind == kind && e->child == proc && e->from_real <= to && e->until_real >= from) {
            return true;
        }
    }
    return false;
}

/* A fault between proc (-1: any process) and the server overlapping [from, to]: the server
 * down, a fail point, a proxy fault (for proxied processes), or a failure the process logged. */
static bool
cut_off(const facts_t *f, int proc, int64_t from, int64_t to)
{
    const driver_t *d = f->d;
    bool proxied = proc < 0 || d->children[proc].via_proxy;
    for (int i = 0; i < d->n_events; i++) {
        const event_t *e = &d->events[i];
        bool applies = e->kind == EV_SERVER_DOWN || e->kind == EV_FAIL_COMMAND ||
                       (e->kind == EV_PROXY && proxied);
        if (applies && e->from_real <= to && e->until_real >= from) {
            return true;
        }
    }
    for (size_t i = 0; i < f->n_records; i++) {
        const proc_record_t *r = &f->records[i];
        if ((proc < 0 || r->proc == proc) && r->real >= from && r->real <= to) {
            return true;
        }
    }
    return false;
}

static bool
stop_timed_out(const driver_t *d, int proc, int64_t from, int64_t to)
{
    const child_t *c = &d->children[proc];
    int64_t exit_real = driver_real_of_mono(d, c->exit_mono);
    return c->exited && c->termed && WIFEXITED(c->status) && WEXITSTATUS(c->status) == 3 &&
           exit_real >= from && exit_real <= to;
}

/*
 * Why claim p's process lost the message before `to` (the next claim); NULL: nothing says.
 * The cause lies between p's claim (less a lease: a heartbeat may have moved the lease_exp p
 * saw) and one lease after the process stopped holding it: heartbeats go on after the handler
 * returned while its ack waits for the batch's ack_many, until the outcome's write.
 */
static const char *
lost_by(const facts_t *f, const delivery_t *p, int64_t to)
{
    const driver_t *d = f->d;
    int64_t from = p->claim_real - p->lease_ms;
    int64_t held_until = p->outcome_real > p->end_real ? p->outcome_real : p->end_real;
    const child_t *c = &d->children[p->proc];
    if (p->action == 0 && c->exited) {
        /* No outcome: the process ended first, its ack (or retry) still waiting for the batch's
         * write while the keeper's heartbeats held the lease: held until the exit. */
        int64_t exit_real = driver_real_of_mono(d, c->exit_mono);
        held_until = exit_real > held_until ? exit_real : held_until;
    }
    if (held_until > 0 && held_until + p->lease_ms < to) {
        to = held_until + p->lease_ms;
    }
    if (check_proc_event(d, EV_WORKER_KILL, p->proc, from, to)) {
        return "consumer killed (SIGKILL)";
    }
    if (check_proc_event(d, EV_WORKER_STOP, p->proc, from, to)) {
        return "consumer stopped (SIGSTOP) past its lease";
    }
    if (stop_timed_out(d, p->proc, from, to)) {
        return "graceful stop timed out, lease expired";
    }
    if (cut_off(f, p->proc, from, to)) {
        return "lease expired while cut off from the server";
    }
    if (driver_clock_jumped(d, from, to)) {
        return "lease expired as the wall clock stepped forward (machine paused)";
    }
    return NULL;
}

/* Why the claim `next` followed claim p of the same message; NULL when nothing explains it. */
static const char *
explain_after(const facts_t *f, const delivery_t *p, const delivery_t *next)
{
    if (p->action == 'A' && p->ok) {
        return NULL; /* acknowledged: nothing may claim it again */
    }
    if (p->action == 'H') {
        return p->ok ? "handed back on stop" : "hand-back incomplete, lease expired";
    }
    if (p->action == 'R' && p->ok) {
        return "handler answered RETRY";
    }
    const char *why = lost_by(f, p, next->claim_real);
    if (why) {
        return why;
    }
    if (p->action == 'A' || p->action == 'R') { /* not ok: the write failed */
        return p->action == 'A' ? "ack failed, lease expired" : "retry failed, lease expired";
    }
    return NULL;
}

/* Why a claim nobody recorded (attempt n-1) came before claim `next`; from: the last known
 * moment before it (an earlier claim, or the enqueue). */
static const char *
explain_unlogged(const facts_t *f, int64_t from, const delivery_t *next)
{
    const driver_t *d = f->d;
    int64_t to = next->claim_real;
    if (to - from < f->min_lease_ms) {
        return NULL; /* a lease must have run out in between */
    }
    for (int i = 0; i < d->n_children; i++) {
        if (d->children[i].kind == CHILD_WORKER &&
            (check_proc_event(d, EV_WORKER_KILL, i, from, to) ||
             check_proc_event(d, EV_WORKER_STOP, i, from, to) || stop_timed_out(d, i, from, to))) {
            return "unrecorded claim: a consumer was killed or stopped, lease expired";
        }
    }
    if (cut_off(f, -1, from, to)) {
        return "unrecorded claim: its answer was lost, lease expired";
    }
    if (driver_clock_jumped(d, from, to)) {
        return "unrecorded claim: lease expired as the wall clock stepped forward";
    }
    return NULL;
}

typedef struct {
    const char *causes[16];
    int64_t counts[16];
    int n_causes;
    int64_t redeliveries, unexplained, early, twice, shown;
} redelivery_figures_t;

static void
count_cause(redelivery_figures_t *r, const char *cause)
{
    int i = 0;
    while (i < r->n_causes && strcmp(r->causes[i], cause) != 0) {
        i++;
    }
    if (i == r->n_causes && r->n_causes < 16) {
        r->causes[r->n_causes++] = cause;
    }
    if (i < 16) {
        r->counts[i]++;
    }
}

/* A claim taken while the previous claim's lease (as its holder last saw it) still held. */
static void
check_early(const delivery_t *p, const delivery_t *dl, int64_t seq, redelivery_figures_t *r)
{
    bool returned_early = p->action == 'H' || (p->action == 'R' && p->ok) ||
                          (p->result == 'R' && p->action == 0);
    if (!returned_early && dl->claim_real <= p->lease_exp) {
        r->early++;
        check_violation(&r->shown, "seq %" PRId64 " attempt %d claimed by %s at %" PRId64 ", while "
                  "attempt %d held by %s had its lease until %" PRId64, seq, dl->attempt,
                  dl->claimed_by, dl->claim_real, p->attempt, p->claimed_by, p->lease_exp);
    }
}

static void
explain_message(const facts_t *f, const message_t *m, redelivery_figures_t *r)
{
    for (size_t k = 0; k < m->n; k++) {
        const delivery_t *dl = &f->deliveries[m->first + k];
        const delivery_t *p = k > 0 ? &f->deliveries[m->first + k - 1] : NULL;
        const char *cause = NULL;
        if (p && p->attempt == dl->attempt && p->action != 'H') {
            r->twice++;
            check_violation(&r->shown, "seq %" PRId64 " attempt %d claimed by %s and by %s", m->seq,
                      dl->attempt, p->claimed_by, dl->claimed_by);
            continue;
        }
        if (!p && dl->attempt <= 1) {
            continue;
        }
        r->redeliveries++;
        if (p && (p->attempt == dl->attempt - 1 || p->attempt == dl->attempt)) {
            cause = explain_after(f, p, dl);
            check_early(p, dl, m->seq, r);
        } else {
            cause = explain_unlogged(f, p ? p->claim_real : m->produced_real, dl);
        }
        if (!cause) {
            r->unexplained++;
            check_violation(&r->shown, "seq %" PRId64 " attempt %d (%s, claimed at %" PRId64 "): "
                      "nothing explains it; before: attempt %d by %s (answer %c, outcome %c%s)",
                      m->seq, dl->attempt, dl->claimed_by, dl->claim_real, p ? p->attempt : 0,
                      p ? p->claimed_by : "-", p && p->result ? p->result : '-',
                      p && p->action ? p->action : '-', p && p->ok ? " ok" : "");
            cause = "UNEXPLAINED";
        }
        count_cause(r, cause);
    }
}

bool
check_redeliveries(facts_t *f)
{
    redelivery_figures_t r = {0};
    int64_t handled = 0;
    for (size_t i = 0; i < f->n_deliveries; i++) {
        handled += f->deliveries[i].handled;
    }
    for (size_t i = 0; i < f->cap; i++) {
        if (f->msgs[i].seq >= 0 && f->msgs[i].n > 0) {
            explain_message(f, &f->msgs[i], &r);
        }
    }
    bool pass = check_verdict(r.unexplained == 0 && r.early == 0 && r.twice == 0,
                        "4. every redelivery explained: claims recorded %zu (handled %" PRId64
                        "), redeliveries %" PRId64 ", unexplained %" PRId64
                        ", claimed while a lease held %" PRId64 ", one attempt claimed twice %" PRId64,
                        f->n_deliveries, handled, r.redeliveries, r.unexplained, r.early, r.twice);
    for (int i = 0; i < r.n_causes; i++) {
        printf("       %7" PRId64 "  %s\n", r.counts[i], r.causes[i]);
    }
    return pass;
}

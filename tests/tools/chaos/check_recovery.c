/* Invariant 6 of the chaos run: every consumer claims again within the bound after each server
 * restart (or after its handler's end). */
#include "check.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* ---- 6. consumers back after each server restart ---------------------------------------------- */

/* The first claim of proc (-1: anyone) at or after t; INT64_MAX if none. */
static int64_t
first_claim_after(const facts_t *f, int proc, int64_t t)
{
    int64_t first = INT64_MAX;
    for (size_t i = 0; i < f->n_deliveries; i++) {
        const delivery_t *dl = &f->deliveries[i];
        if (dl->handled && (proc < 0 || dl->proc == proc) && dl->claim_real >= t &&
            dl->claim_real < first) {
            first = dl->claim_real;
        }
    }
    return first;
}

/* A worker counts for a restart when it was up before the kill and nothing hit it in the window. */
static bool
undisturbed(const driver_t *d, int proc, const restart_t *r, int64_t until_real)
{
    const child_t *c = &d->children[proc];
    int64_t exit_real = driver_real_of_mono(d, c->exit_mono);
    return c->kind == CHILD_WORKER && c->ready && c->ready_mono < r->kill_mono &&
           (!c->exited || exit_real > until_real) &&
           !check_proc_event(d, EV_WORKER_STOP, proc, r->kill_real, until_real) &&
           !check_proc_event(d, EV_WORKER_KILL, proc, r->kill_real, until_real) &&
           !check_proc_event(d, EV_WORKER_TERM, proc, r->kill_real, until_real);
}

/*
 * When proc could claim again after t: t when one of its handler threads was free then, else
 * when the first of their running handlers ended (a handler pretending to work 1.5 leases keeps
 * its thread away from claims; that is not the server's doing). Threads are told apart by the
 * consumer name they claim with.
 */
static int64_t
free_at(const facts_t *f, int proc, int64_t t)
{
    const char *thread[MAX_THREADS_SEEN];
    int64_t busy_until[MAX_THREADS_SEEN];
    int n = 0;
    for (size_t i = 0; i < f->n_deliveries; i++) {
        const delivery_t *dl = &f->deliveries[i];
        if (dl->proc != proc || !dl->handled || dl->begin_real >= t ||
            (dl->end_real != 0 && dl->end_real <= t)) {
            continue;
        }
        int k = 0;
        while (k < n && strcmp(thread[k], dl->claimed_by) != 0) {
            k++;
        }
        if (k == n && n < MAX_THREADS_SEEN) {
            thread[n] = dl->claimed_by;
            busy_until[n++] = 0;
        }
        int64_t until = dl->end_real ? dl->end_real : INT64_MAX;
        busy_until[k] = until > busy_until[k] ? until : busy_until[k];
    }
    const child_t *c = &f->d->children[proc];
    if (n < f->d->workers[c->slot].threads) {
        return t;
    }
    int64_t first = INT64_MAX;
    for (int k = 0; k < n; k++) {
        first = busy_until[k] < first ? busy_until[k] : first;
    }
    return first;
}

/*
 * Whether something other than restart r kept proc from claiming in [from, to]: a later server
 * kill, a fail point, a proxy fault (proxied workers), or a signal to proc. A worker freed from
 * a long handler late in r's quiet window can meet the faults that resume after it; its
 * recovery is then not r's to judge (the next restart's check sees it).
 */
static bool
disturbed_between(const driver_t *d, int proc, const restart_t *r, int64_t from, int64_t to)
{
    bool proxied = d->children[proc].via_proxy;
    for (int i = 0; i < d->n_events; i++) {
        const event_t *e = &d->events[i];
        bool applies = (e->kind == EV_SERVER_DOWN && e->from_real > r->kill_real) ||
                       e->kind == EV_FAIL_COMMAND || (e->kind == EV_PROXY && proxied) ||
                       ((e->kind == EV_WORKER_STOP || e->kind == EV_WORKER_KILL ||
                         e->kind == EV_WORKER_TERM) && e->child == proc);
        if (applies && e->from_real <= to && e->until_real > from) {
            return true;
        }
    }
    return false;
}

typedef struct {
    int proc;
    int64_t took;
    int64_t from_ms;  /* when it could claim, after the restart's ready time */
    int64_t first_ms; /* its first claim after that, after the ready time (-1: none) */
} late_t;

/* The slowest undisturbed worker's first claim after restart r (*worst_proc: which); late ones
 * go to late[]; late ones that met another fault before they could claim are only counted. */
static int64_t
recovery_of(const facts_t *f, const restart_t *r, late_t *late, int *n_late, int *worst_proc,
            int64_t *n_disturbed)
{
    const driver_t *d = f->d;
    int64_t until = r->ready_real + d->recovery_bound_ms, worst = -1;
    for (int i = 0; i < d->n_children; i++) {
        if (!undisturbed(d, i, r, until)) {
            continue;
        }
        int64_t from = free_at(f, i, r->ready_real);
        if (from == INT64_MAX || from > until) {
            continue; /* busy in its handlers past the window */
        }
        int64_t first = first_claim_after(f, i, from);
        int64_t took = first == INT64_MAX ? INT64_MAX : first - from;
        if (took > d->recovery_bound_ms &&
            disturbed_between(d, i, r, from, from + d->recovery_bound_ms)) {
            (*n_disturbed)++;
            continue;
        }
        if (took > worst) {
            worst = took;
            *worst_proc = i;
        }
        if (took > d->recovery_bound_ms && *n_late < MAX_CHILDREN) {
            late[(*n_late)++] = (late_t){i, took, from - r->ready_real,
                                         first == INT64_MAX ? -1 : first - r->ready_real};
        }
    }
    return worst;
}

bool
check_recovery(facts_t *f)
{
    const driver_t *d = f->d;
    int64_t checked = 0, slow = 0, worst_any = -1, worst_each = -1, shown = 0, disturbed = 0;
    static late_t late[MAX_CHILDREN];
    printf("       server restarts: %d\n", d->n_restarts);
    for (int k = 0; k < d->n_restarts; k++) {
        const restart_t *r = &d->restarts[k];
        int64_t any = r->ready ? first_claim_after(f, -1, r->ready_real) - r->ready_real : -1;
        printf("       restart %d: down %" PRId64 " ms, first claim after %s%" PRId64 " ms", k + 1,
               r->ready ? r->ready_mono - r->kill_mono : -1, any < 0 ? "(none) " : "", any);
        if (!r->ready || r->ready_mono + d->recovery_bound_ms > d->chaos_end_mono) {
            printf(" (not checked: the chaos ended within the window)\n");
            continue;
        }
        checked++;
        worst_any = any > worst_any ? any : worst_any;
        int n_late = 0, worst_proc = -1;
        int64_t worst = recovery_of(f, r, late, &n_late, &worst_proc, &disturbed);
        worst_each = worst > worst_each ? worst : worst_each;
        printf(", slowest worker %" PRId64 " ms (%s)\n", worst,
               worst_proc >= 0 ? d->children[worst_proc].name : "-");
        for (int i = 0; i < n_late; i++) {
            const child_t *c = &d->children[late[i].proc];
            const char *clock = d->workers[c->slot].faketime;
            slow++;
            check_violation(&shown, "after restart %d, %s (clock %s, %s) claimed nothing for %s%" PRId64
                      " ms (free %+" PRId64 " ms after the ready time, first claim %+" PRId64
                      " ms; down %" PRId64 " ms)", k + 1, c->name,
                      clock && d->faketime_lib ? clock : "real",
                      c->via_proxy ? "via the proxy" : "direct",
                      late[i].took == INT64_MAX ? "more than " : "",
                      late[i].took == INT64_MAX ? d->recovery_bound_ms : late[i].took,
                      late[i].from_ms, late[i].first_ms, r->ready_mono - r->kill_mono);
        }
    }
    return check_verdict(slow == 0, "6. every consumer claims again within %" PRId64
                   " ms of a server restart (or of its handler's end): restarts checked %" PRId64
                   " of %d, late %" PRId64 "; slowest first claim by anyone %" PRId64
                   " ms, by each undisturbed worker %" PRId64 " ms; not judged (freed late, then"
                   " met the next fault) %" PRId64,
                   d->recovery_bound_ms, checked, d->n_restarts, slow, worst_any, worst_each,
                   disturbed);
}

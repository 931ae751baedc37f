/*
 * The invariants, checked after the drain from three sources: the producers' records (what they
 * believe they enqueued), the workers' records (every delivery, its answer, its ack's outcome)
 * and the collection itself (ack mode KEEP: done messages stay). Each invariant is one row of
 * the table at the bottom: a function that prints a PASS/FAIL line with its figures.
 *
 * To add an invariant: write check_x(facts_t *) returning true for PASS, printing its line
 * through verdict() and any violations through violation(); then add a row.
 */
#include "facts.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define MAX_SHOWN 10        /* violations printed in full per invariant */
#define MAX_THREADS_SEEN 64 /* handler threads told apart per worker (at most 4 are started) */

/* ---- printing --------------------------------------------------------------------------------- */

static bool
verdict(bool pass, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

static bool
verdict(bool pass, const char *fmt, ...)
{
    va_list ap;
    printf("%s ", pass ? "PASS" : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    return pass;
}

static void
violation(int64_t *shown, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

static void
violation(int64_t *shown, const char *fmt, ...)
{
    if ((*shown)++ >= MAX_SHOWN) {
        return;
    }
    va_list ap;
    printf("       ! ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

/* ---- 1. stored exactly once ------------------------------------------------------------------- */

static bool
check_stored_once(facts_t *f)
{
    int64_t n_state[3] = {0}, stored_state[3] = {0}; /* o, u, n */
    int64_t stored = 0, dups = 0, lost = 0, phantom = 0, denied = 0, shown = 0;
    for (size_t i = 0; i < f->cap; i++) {
        const message_t *m = &f->msgs[i];
        if (m->seq < 0) {
            continue;
        }
        int k = m->produced == 'o' ? 0 : m->produced == 'u' ? 1 : 2;
        n_state[k] += m->produced != 0;
        stored_state[k] += m->produced != 0 && m->stored > 0;
        stored += m->stored;
        if (m->stored > 1) {
            dups++;
            violation(&shown, "seq %" PRId64 " is stored %d times", m->seq, m->stored);
        }
        if (m->produced == 'o' && m->stored == 0) {
            lost++;
            violation(&shown, "seq %" PRId64 ": its enqueue succeeded, it is not in the collection",
                      m->seq);
        }
        if (m->produced == 'n' && m->stored > 0) {
            denied++;
            violation(&shown, "seq %" PRId64 ": every enqueue of it failed with an error that says "
                      "nothing was stored, yet it is stored", m->seq);
        }
        if (!m->produced && m->stored > 0) {
            phantom++;
            violation(&shown, "seq %" PRId64 " is stored but no producer sent it", m->seq);
        }
    }
    return verdict(dups == 0 && lost == 0 && phantom == 0 && denied == 0 && f->unparsed_docs == 0,
                   "1. every message stored exactly once: produced %" PRId64 ", stored %" PRId64
                   " | enqueue ok %" PRId64 " (stored %" PRId64 "), outcome unknown %" PRId64
                   " (stored %" PRId64 "), failed with nothing stored %" PRId64 " (stored %" PRId64
                   ") | duplicates %" PRId64 ", lost %" PRId64 ", phantom %" PRId64
                   ", unreadable documents %" PRId64 " | enqueue calls %" PRId64 ", errors %" PRId64
                   " (UNKNOWN_OUTCOME %" PRId64 ")",
                   n_state[0] + n_state[1] + n_state[2], stored, n_state[0], stored_state[0],
                   n_state[1], stored_state[1], n_state[2], stored_state[2], dups, lost, phantom,
                   f->unparsed_docs, f->enqueue_calls, f->enqueue_errors, f->enqueue_unknown);
}

/* ---- 2. done, intact ---------------------------------------------------------------------------- */

static bool
check_done_intact(facts_t *f)
{
    int64_t by_status[4] = {0}; /* ready, processing, done, dead or other */
    int64_t corrupt = 0, bad_delivered = 0, shown = 0;
    for (size_t i = 0; i < f->cap; i++) {
        const message_t *m = &f->msgs[i];
        if (m->seq < 0 || m->stored == 0) {
            continue;
        }
        int k = m->status == 'r' ? 0 : m->status == 'p' ? 1 : m->status == 'd' ? 2 : 3;
        by_status[k]++;
        if (m->status != 'd') {
            violation(&shown, "seq %" PRId64 " ended %s (attempts %d, %zu deliveries logged)",
                      m->seq, k == 0 ? "ready" : k == 1 ? "processing" : "dead or unknown",
                      m->attempts, m->n);
        }
        if (!m->sum_ok) {
            corrupt++;
            violation(&shown, "seq %" PRId64 ": stored payload fails its checksum", m->seq);
        }
    }
    for (size_t i = 0; i < f->n_deliveries; i++) {
        if (!f->deliveries[i].sum_ok) {
            bad_delivered++;
            violation(&shown, "seq %" PRId64 " attempt %d delivered to %s with a bad checksum",
                      f->deliveries[i].seq, f->deliveries[i].attempt,
                      f->deliveries[i].claimed_by);
        }
    }
    int64_t total = by_status[0] + by_status[1] + by_status[2] + by_status[3];
    return verdict(by_status[2] == total && corrupt == 0 && bad_delivered == 0,
                   "2. every stored message ended done, payload intact: done %" PRId64 " of %" PRId64
                   " (ready %" PRId64 ", processing %" PRId64 ", dead/other %" PRId64
                   "); bad checksums stored %" PRId64 ", delivered %" PRId64,
                   by_status[2], total, by_status[0], by_status[1], by_status[3], corrupt,
                   bad_delivered);
}

/* ---- 3. at most one successful ack -------------------------------------------------------------- */

typedef struct {
    int64_t confirmed, failed, failed_lease_lost, failed_unknown, unknown, multi, after_ack,
        mismatched, failed_but_applied, lease_lost_but_applied, done_without_ack, shown;
} ack_figures_t;

static bool
is_error(const delivery_t *dl, uint32_t code)
{
    return dl->error_domain == MONGOQ_ERROR_DOMAIN && dl->error_code == code;
}

/* The handled claim whose ACK made the message done: the one at the document's attempts. */
static const delivery_t *
final_ack(const facts_t *f, const message_t *m)
{
    const delivery_t *found = NULL;
    for (size_t k = 0; k < m->n; k++) {
        const delivery_t *dl = &f->deliveries[m->first + k];
        if (dl->handled && dl->result == 'A' && dl->attempt == m->attempts) {
            found = dl;
        }
    }
    return found;
}

static void
count_ack(const delivery_t *dl, ack_figures_t *a)
{
    if (dl->result != 'A') {
        return;
    }
    bool acked = dl->action == 'A' && dl->ok;
    a->confirmed += acked;
    a->unknown += dl->action == 0;
    if (dl->action != 0 && !acked) {
        a->failed++;
        a->failed_lease_lost += is_error(dl, MONGOQ_ERROR_LEASE_LOST);
        a->failed_unknown += is_error(dl, MONGOQ_ERROR_UNKNOWN_OUTCOME);
    }
}

static void
check_acks_of(facts_t *f, const message_t *m, ack_figures_t *a)
{
    int n_ok = 0;
    const delivery_t *acked = NULL;
    for (size_t k = 0; k < m->n; k++) {
        const delivery_t *dl = &f->deliveries[m->first + k];
        count_ack(dl, a);
        if (acked && dl->attempt > acked->attempt) {
            a->after_ack++;
            violation(&a->shown, "seq %" PRId64 " claimed again (attempt %d by %s) after the ack "
                      "of attempt %d returned ok", m->seq, dl->attempt, dl->claimed_by,
                      acked->attempt);
        }
        if (dl->result == 'A' && dl->action == 'A' && dl->ok) {
            n_ok++;
            acked = dl;
            if (m->status != 'd' || m->attempts != dl->attempt) {
                a->mismatched++;
                violation(&a->shown, "seq %" PRId64 ": the ack of attempt %d returned ok, the "
                          "message is '%c' at attempts %d", m->seq, dl->attempt, m->status,
                          m->attempts);
            }
        }
    }
    if (n_ok > 1) {
        a->multi++;
        violation(&a->shown, "seq %" PRId64 " acked successfully %d times", m->seq, n_ok);
    }
    const delivery_t *final = m->status == 'd' ? final_ack(f, m) : NULL;
    if (m->status == 'd' && !final) {
        a->done_without_ack++;
        violation(&a->shown, "seq %" PRId64 " is done at attempt %d, but no handler answered ACK "
                  "to that attempt", m->seq, m->attempts);
    } else if (final && (final->action == 'L' || (final->action == 'A' && !final->ok))) {
        a->failed_but_applied++;
        if (is_error(final, MONGOQ_ERROR_LEASE_LOST)) {
            a->lease_lost_but_applied++;
            violation(&a->shown, "seq %" PRId64 ": the ack of attempt %d by %s failed with "
                      "LEASE_LOST (\"nothing changed\"), yet the message is done at that attempt",
                      m->seq, final->attempt, final->claimed_by);
        }
    }
}

static bool
check_one_ack(facts_t *f)
{
    ack_figures_t a = {0};
    for (size_t i = 0; i < f->cap; i++) {
        if (f->msgs[i].seq >= 0 && f->msgs[i].stored > 0) {
            check_acks_of(f, &f->msgs[i], &a);
        }
    }
    return verdict(a.multi == 0 && a.after_ack == 0 && a.mismatched == 0 &&
                       a.done_without_ack == 0 && a.lease_lost_but_applied == 0,
                   "3. at most one successful ack per message: ACK answers whose ack returned ok %" PRId64
                   ", failed %" PRId64 " (LEASE_LOST %" PRId64 ", UNKNOWN_OUTCOME %" PRId64
                   "; applied anyway %" PRId64 ", of them after LEASE_LOST %" PRId64
                   "), process died before the outcome %" PRId64 " | acked twice %" PRId64
                   ", claimed after an ok ack %" PRId64 ", ok ack not applied %" PRId64
                   ", done without an ACK answer %" PRId64,
                   a.confirmed, a.failed, a.failed_lease_lost, a.failed_unknown,
                   a.failed_but_applied, a.lease_lost_but_applied, a.unknown, a.multi,
                   a.after_ack, a.mismatched, a.done_without_ack);
}

/* ---- 4. redeliveries explained ------------------------------------------------------------------ */

/* An event of that kind on that process overlapping [from, to]. */
static bool
proc_event(const driver_t *d, event_kind_t kind, int proc, int64_t from, int64_t to)
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
 * saw) and, once p's handler returned, one lease after that: heartbeats stop there.
 */
static const char *
lost_by(const facts_t *f, const delivery_t *p, int64_t to)
{
    const driver_t *d = f->d;
    int64_t from = p->claim_real - p->lease_ms;
    if (p->end_real > 0 && p->end_real + p->lease_ms < to) {
        to = p->end_real + p->lease_ms;
    }
    if (proc_event(d, EV_WORKER_KILL, p->proc, from, to)) {
        return "consumer killed (SIGKILL)";
    }
    if (proc_event(d, EV_WORKER_STOP, p->proc, from, to)) {
        return "consumer stopped (SIGSTOP) past its lease";
    }
    if (stop_timed_out(d, p->proc, from, to)) {
        return "graceful stop timed out, lease expired";
    }
    if (cut_off(f, p->proc, from, to)) {
        return "lease expired while cut off from the server";
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
            (proc_event(d, EV_WORKER_KILL, i, from, to) ||
             proc_event(d, EV_WORKER_STOP, i, from, to) || stop_timed_out(d, i, from, to))) {
            return "unrecorded claim: a consumer was killed or stopped, lease expired";
        }
    }
    if (cut_off(f, -1, from, to)) {
        return "unrecorded claim: its answer was lost, lease expired";
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
        violation(&r->shown, "seq %" PRId64 " attempt %d claimed by %s at %" PRId64 ", while "
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
            violation(&r->shown, "seq %" PRId64 " attempt %d claimed by %s and by %s", m->seq,
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
            violation(&r->shown, "seq %" PRId64 " attempt %d (%s, claimed at %" PRId64 "): "
                      "nothing explains it; before: attempt %d by %s (answer %c, outcome %c%s)",
                      m->seq, dl->attempt, dl->claimed_by, dl->claim_real, p ? p->attempt : 0,
                      p ? p->claimed_by : "-", p && p->result ? p->result : '-',
                      p && p->action ? p->action : '-', p && p->ok ? " ok" : "");
            cause = "UNEXPLAINED";
        }
        count_cause(r, cause);
    }
}

static bool
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
    bool pass = verdict(r.unexplained == 0 && r.early == 0 && r.twice == 0,
                        "4. every redelivery explained: claims recorded %zu (handled %" PRId64
                        "), redeliveries %" PRId64 ", unexplained %" PRId64
                        ", claimed while a lease held %" PRId64 ", one attempt claimed twice %" PRId64,
                        f->n_deliveries, handled, r.redeliveries, r.unexplained, r.early, r.twice);
    for (int i = 0; i < r.n_causes; i++) {
        printf("       %7" PRId64 "  %s\n", r.counts[i], r.causes[i]);
    }
    return pass;
}

/* ---- 5. graceful stops within their bound ----------------------------------------------------- */

static bool
check_graceful_stops(facts_t *f)
{
    const driver_t *d = f->d;
    int64_t n = 0, over = 0, timeouts = 0, longest = -1, shown = 0;
    const char *longest_name = "-";
    int64_t longest_bound = 0;
    for (int i = 0; i < d->n_children; i++) {
        const child_t *c = &d->children[i];
        if (c->kind != CHILD_WORKER || !c->termed) {
            continue;
        }
        n++;
        int64_t took = c->exited && !c->sigkilled ? c->exit_mono - c->term_mono : INT64_MAX;
        int64_t bound = driver_stop_bound(d, i);
        timeouts += c->exited && WIFEXITED(c->status) && WEXITSTATUS(c->status) == 3;
        if (took > bound) {
            over++;
            violation(&shown, "%s took %s%" PRId64 " ms to stop (bound %" PRId64 " ms)", c->name,
                      took == INT64_MAX ? "more than " : "", took == INT64_MAX ? bound : took,
                      bound);
        }
        if (took != INT64_MAX && took > longest) {
            longest = took;
            longest_name = c->name;
            longest_bound = bound;
        }
    }
    return verdict(over == 0, "5. graceful stops within stop timeout + 1 s + %" PRId64
                   " ms: %" PRId64 " stops, over the bound %" PRId64 ", stop timeouts (handlers still running, exit 3) %" PRId64
                   "; longest %" PRId64 " ms (%s, bound %" PRId64 " ms)",
                   d->stop_margin_ms, n, over, timeouts, longest, longest_name, longest_bound);
}

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
           !proc_event(d, EV_WORKER_STOP, proc, r->kill_real, until_real) &&
           !proc_event(d, EV_WORKER_KILL, proc, r->kill_real, until_real) &&
           !proc_event(d, EV_WORKER_TERM, proc, r->kill_real, until_real);
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

typedef struct {
    int proc;
    int64_t took;
} late_t;

/* The slowest undisturbed worker's first claim after restart r (*worst_proc: which); late ones
 * go to late[]. */
static int64_t
recovery_of(const facts_t *f, const restart_t *r, late_t *late, int *n_late, int *worst_proc)
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
        if (took > worst) {
            worst = took;
            *worst_proc = i;
        }
        if (took > d->recovery_bound_ms && *n_late < MAX_CHILDREN) {
            late[(*n_late)++] = (late_t){i, took};
        }
    }
    return worst;
}

static bool
check_recovery(facts_t *f)
{
    const driver_t *d = f->d;
    int64_t checked = 0, slow = 0, worst_any = -1, worst_each = -1, shown = 0;
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
        int64_t worst = recovery_of(f, r, late, &n_late, &worst_proc);
        worst_each = worst > worst_each ? worst : worst_each;
        printf(", slowest worker %" PRId64 " ms (%s)\n", worst,
               worst_proc >= 0 ? d->children[worst_proc].name : "-");
        for (int i = 0; i < n_late; i++) {
            const child_t *c = &d->children[late[i].proc];
            const char *clock = d->workers[c->slot].faketime;
            slow++;
            violation(&shown, "after restart %d, %s (clock %s, %s) claimed nothing for %s%" PRId64
                      " ms", k + 1, c->name, clock && d->faketime_lib ? clock : "real",
                      c->via_proxy ? "via the proxy" : "direct",
                      late[i].took == INT64_MAX ? "more than " : "",
                      late[i].took == INT64_MAX ? d->recovery_bound_ms : late[i].took);
        }
    }
    return verdict(slow == 0, "6. every consumer claims again within %" PRId64
                   " ms of a server restart (or of its handler's end): restarts checked %" PRId64
                   " of %d, late %" PRId64 "; slowest first claim by anyone %" PRId64
                   " ms, by each undisturbed worker %" PRId64 " ms",
                   d->recovery_bound_ms, checked, d->n_restarts, slow, worst_any, worst_each);
}

/* ---- 7. no process died on its own ------------------------------------------------------------- */

static bool
check_exits(facts_t *f)
{
    const driver_t *d = f->d;
    int64_t killed = 0, clean = 0, stop_timeouts = 0, own = 0, shown = 0;
    for (int i = 0; i < d->n_children; i++) {
        const child_t *c = &d->children[i];
        if (!c->exited) {
            continue; /* the server, still serving the check */
        }
        bool by_sigkill = WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGKILL;
        bool code0 = WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
        bool timeout = c->termed && WIFEXITED(c->status) && WEXITSTATUS(c->status) == 3;
        if (c->never_ready) {
            own++;
            violation(&shown, "%s did not become ready in time (see %s/%s.err)", c->name,
                      d->workdir, c->name);
        } else if (c->sigkilled && by_sigkill) {
            killed++;
        } else if (code0) {
            clean++;
        } else if (timeout) {
            stop_timeouts++;
        } else {
            own++;
            violation(&shown, "%s died on its own: %s %d (see %s/%s.err)", c->name,
                      WIFSIGNALED(c->status) ? "signal" : "exit status",
                      WIFSIGNALED(c->status) ? WTERMSIG(c->status) : WEXITSTATUS(c->status),
                      d->workdir, c->name);
        }
    }
    return verdict(own == 0, "7. no process died on its own: processes %d, killed by us %" PRId64
                   ", clean exits %" PRId64 ", stop timeouts %" PRId64 ", died on their own %" PRId64,
                   d->n_children, killed, clean, stop_timeouts, own);
}

/* ---- the table -------------------------------------------------------------------------------- */

typedef struct {
    bool (*check)(facts_t *f);
} invariant_t;

static const invariant_t invariants[] = {
    {check_stored_once}, {check_done_intact},  {check_one_ack},  {check_redeliveries},
    {check_graceful_stops}, {check_recovery}, {check_exits},
};

int
check_run(driver_t *d, int *n_passed)
{
    facts_t f;
    int failed = 0;
    *n_passed = 0;
    const int n = (int)(sizeof invariants / sizeof invariants[0]);
    if (!facts_load(&f, d)) {
        facts_free(&f);
        return n;
    }
    if (f.unparsed_lines > 0) {
        printf("chaos: %" PRId64 " record lines could not be read\n", f.unparsed_lines);
    }
    for (int i = 0; i < n; i++) {
        if (invariants[i].check(&f)) {
            (*n_passed)++;
        } else {
            failed++;
        }
    }
    facts_free(&f);
    return failed;
}

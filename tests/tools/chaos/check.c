/*
 * The invariants, checked after the drain from three sources: the producers' records (what they
 * believe they enqueued), the workers' records (every delivery, its answer, its ack's outcome)
 * and the collection itself (ack mode KEEP: done messages stay). Each invariant is one row of
 * the table at the bottom of this file: a function that prints a PASS/FAIL line with its figures.
 *
 * Invariants 4 and 6 have files of their own (check_redelivery.c, check_recovery.c); check.h
 * declares what the three share.
 *
 * To add an invariant: write check_x(facts_t *) returning true for PASS, printing its line
 * through check_verdict() and any violations through check_violation(); then add a row.
 */
#include "check.h"

#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define MAX_SHOWN 10        /* violations printed in full per invariant */

/* ---- printing --------------------------------------------------------------------------------- */

bool
check_verdict(bool pass, const char *fmt, ...)
{
    va_list ap;
    printf("%s ", pass ? "PASS" : "FAIL");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    return pass;
}

void
check_violation(int64_t *shown, const char *fmt, ...)
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
            check_violation(&shown, "seq %" PRId64 " is stored %d times", m->seq, m->stored);
        }
        if (m->produced == 'o' && m->stored == 0) {
            lost++;
            check_violation(&shown, "seq %" PRId64 ": its enqueue succeeded, it is not in the collection",
                      m->seq);
        }
        if (m->produced == 'n' && m->stored > 0) {
            denied++;
            check_violation(&shown, "seq %" PRId64 ": every enqueue of it failed with an error that says "
                      "nothing was stored, yet it is stored", m->seq);
        }
        if (!m->produced && m->stored > 0) {
            phantom++;
            check_violation(&shown, "seq %" PRId64 " is stored but no producer sent it", m->seq);
        }
    }
    return check_verdict(dups == 0 && lost == 0 && phantom == 0 && denied == 0 && f->unparsed_docs == 0,
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
            check_violation(&shown, "seq %" PRId64 " ended %s (attempts %d, %zu deliveries logged)",
                      m->seq, k == 0 ? "ready" : k == 1 ? "processing" : "dead or unknown",
                      m->attempts, m->n);
        }
        if (!m->sum_ok) {
            corrupt++;
            check_violation(&shown, "seq %" PRId64 ": stored payload fails its checksum", m->seq);
        }
    }
    for (size_t i = 0; i < f->n_deliveries; i++) {
        if (!f->deliveries[i].sum_ok) {
            bad_delivered++;
            check_violation(&shown, "seq %" PRId64 " attempt %d delivered to %s with a bad checksum",
                      f->deliveries[i].seq, f->deliveries[i].attempt,
                      f->deliveries[i].claimed_by);
        }
    }
    int64_t total = by_status[0] + by_status[1] + by_status[2] + by_status[3];
    return check_verdict(by_status[2] == total && corrupt == 0 && bad_delivered == 0,
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
            check_violation(&a->shown, "seq %" PRId64 " claimed again (attempt %d by %s) after the ack "
                      "of attempt %d returned ok", m->seq, dl->attempt, dl->claimed_by,
                      acked->attempt);
        }
        if (dl->result == 'A' && dl->action == 'A' && dl->ok) {
            n_ok++;
            acked = dl;
            if (m->status != 'd' || m->attempts != dl->attempt) {
                a->mismatched++;
                check_violation(&a->shown, "seq %" PRId64 ": the ack of attempt %d returned ok, the "
                          "message is '%c' at attempts %d", m->seq, dl->attempt, m->status,
                          m->attempts);
            }
        }
    }
    if (n_ok > 1) {
        a->multi++;
        check_violation(&a->shown, "seq %" PRId64 " acked successfully %d times", m->seq, n_ok);
    }
    const delivery_t *final = m->status == 'd' ? final_ack(f, m) : NULL;
    if (m->status == 'd' && !final) {
        a->done_without_ack++;
        check_violation(&a->shown, "seq %" PRId64 " is done at attempt %d, but no handler answered ACK "
                  "to that attempt", m->seq, m->attempts);
    } else if (final && (final->action == 'L' || (final->action == 'A' && !final->ok))) {
        a->failed_but_applied++;
        if (is_error(final, MONGOQ_ERROR_LEASE_LOST)) {
            a->lease_lost_but_applied++;
            check_violation(&a->shown, "seq %" PRId64 ": the ack of attempt %d by %s failed with "
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
    return check_verdict(a.multi == 0 && a.after_ack == 0 && a.mismatched == 0 &&
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
            check_violation(&shown, "%s took %s%" PRId64 " ms to stop (bound %" PRId64 " ms)", c->name,
                      took == INT64_MAX ? "more than " : "", took == INT64_MAX ? bound : took,
                      bound);
        }
        if (took != INT64_MAX && took > longest) {
            longest = took;
            longest_name = c->name;
            longest_bound = bound;
        }
    }
    return check_verdict(over == 0, "5. graceful stops within stop timeout + 1 s + %" PRId64
                   " ms: %" PRId64 " stops, over the bound %" PRId64 ", stop timeouts (handlers still running, exit 3) %" PRId64
                   "; longest %" PRId64 " ms (%s, bound %" PRId64 " ms)",
                   d->stop_margin_ms, n, over, timeouts, longest, longest_name, longest_bound);
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
            check_violation(&shown, "%s did not become ready in time (see %s/%s.err)", c->name,
                      d->workdir, c->name);
        } else if (c->sigkilled && by_sigkill) {
            killed++;
        } else if (code0) {
            clean++;
        } else if (timeout) {
            stop_timeouts++;
        } else {
            own++;
            check_violation(&shown, "%s died on its own: %s %d (see %s/%s.err)", c->name,
                      WIFSIGNALED(c->status) ? "signal" : "exit status",
                      WIFSIGNALED(c->status) ? WTERMSIG(c->status) : WEXITSTATUS(c->status),
                      d->workdir, c->name);
        }
    }
    return check_verdict(own == 0, "7. no process died on its own: processes %d, killed by us %" PRId64
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

/*
 * The driver's run: the chaos phase (children brought back when they end, scheduled actions,
 * fault draws, server kills on their own clock), then the drain and the final graceful stops.
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

/* ---- the run ------------------------------------------------------------------------------------ */

/* A child ended: bring it back unless we are stopping, and say so when it ended on its own. */
static void
on_child_exit(driver_t *d, int child)
{
    const child_t *c = &d->children[child];
    if (!c->sigkilled && !c->termed) {
        printf("chaos: %s (pid %d) ended on its own: status 0x%x\n", c->name, (int)c->pid,
               (unsigned)c->status);
    }
    if (d->final_stop) {
        return;
    }
    if (c->kind == CHILD_WORKER && !c->sigkilled) {
        driver_schedule(d, ACT_WORKER_START, d->chaos_on ? chaos_rng_range(&d->rng, 200, 1500) : 0,
                        c->slot);
    } else if (c->kind == CHILD_PRODUCER && !c->sigkilled && !d->producers_stopping) {
        driver_schedule(d, ACT_PRODUCER_START, 500, c->slot);
    } else if (c->kind == CHILD_SERVER && !c->sigkilled) {
        d->server_up = false;
        driver_schedule(d, ACT_SERVER_START, 0, 0);
    } else if (c->kind == CHILD_PROXY) {
        d->proxy.available = false;
    }
}

static void
restart_server(driver_t *d)
{
    if (d->server_up) {
        return;
    }
    if (server_start(d)) {
        d->quiet_until_mono = chaos_mono_ms() + d->recovery_bound_ms;
        printf("chaos: server restart %d: down %" PRId64 " ms\n", d->n_restarts,
               d->restarts[d->n_restarts - 1].ready_mono - d->restarts[d->n_restarts - 1].kill_mono);
    } else {
        driver_count(d, "server start failures", 1);
        driver_schedule(d, ACT_SERVER_START, 1000, 0);
    }
}

static void
run_action(driver_t *d, const action_t *a)
{
    switch (a->kind) {
    case ACT_SERVER_START:
        restart_server(d);
        break;
    case ACT_WORKER_CONT:
        procs_signal(d, a->arg, SIGCONT);
        driver_event_end(d, EV_WORKER_STOP, a->arg); /* late when a restart held the driver */
        break;
    case ACT_WORKER_START:
        driver_start_worker(d, a->arg);
        break;
    case ACT_PRODUCER_START:
        driver_start_producer(d, a->arg);
        break;
    case ACT_PROXY_HEAL:
        proxy_heal(d, false);
        break;
    }
}

/* Runs the actions that are due (all of them with all_now; the server's start first). */
static void
run_actions(driver_t *d, bool all_now)
{
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < MAX_ACTIONS; i++) {
            action_t a = d->actions[i];
            bool first_pass_kind = a.kind == ACT_SERVER_START;
            if (!a.pending || (!all_now && a.due_mono > chaos_mono_ms()) ||
                (pass == 0) != first_pass_kind) {
                continue;
            }
            d->actions[i].pending = false;
            run_action(d, &a);
        }
    }
}

/* Children that did not say "ready" in time are killed and reported. */
static void
enforce_ready_deadlines(driver_t *d)
{
    int64_t now = chaos_mono_ms();
    for (int i = 0; i < d->n_children; i++) {
        child_t *c = &d->children[i];
        if (procs_alive(d, i) && !c->ready && !c->sigkilled && now > c->ready_deadline &&
            (c->kind == CHILD_WORKER || c->kind == CHILD_PRODUCER)) {
            printf("chaos: %s was not ready after %" PRId64 " ms: killed\n", c->name,
                   now - c->started_mono);
            c->never_ready = true;
            procs_signal(d, i, SIGKILL);
        }
    }
}

/* Waits up to timeout_ms for a signal or a readiness line; then reaps and reads. */
static void
wait_events(driver_t *d, int64_t timeout_ms)
{
    static struct pollfd pfds[MAX_CHILDREN + 1];
    static int owner[MAX_CHILDREN + 1];
    nfds_t n = 0;
    pfds[n++] = (struct pollfd){.fd = d->sig_fd, .events = POLLIN};
    for (int i = 0; i < d->n_children; i++) {
        const child_t *c = &d->children[i];
        if (procs_alive(d, i) && !c->ready && c->out_fd >= 0) {
            owner[n] = i;
            pfds[n++] = (struct pollfd){.fd = c->out_fd, .events = POLLIN};
        }
    }
    if (poll(pfds, n, (int)(timeout_ms < 0 ? 0 : timeout_ms)) > 0 && pfds[0].revents) {
        char buf[64];
        while (read(d->sig_fd, buf, sizeof buf) > 0) {
        }
    }
    for (nfds_t k = 1; k < n; k++) {
        if (pfds[k].revents) {
            procs_read_ready(d, owner[k]);
        }
    }
    procs_reap(d, on_child_exit);
    enforce_ready_deadlines(d);
    driver_clock_sample(d); /* at least twice a second: no wait is longer than 500 ms */
    d->interrupted = driver_sig_interrupted != 0;
}

/* How long the loop may sleep: until the next due action or deadline, at most 500 ms. */
static int64_t
next_wake(const driver_t *d, int64_t until)
{
    int64_t next = chaos_mono_ms() + 500;
    next = until < next ? until : next;
    for (int i = 0; i < MAX_ACTIONS; i++) {
        if (d->actions[i].pending && d->actions[i].due_mono < next) {
            next = d->actions[i].due_mono;
        }
    }
    return next - chaos_mono_ms();
}

static void
kill_server_now(driver_t *d)
{
    server_kill(d);
    driver_count(d, "server SIGKILL + restart", 1);
    driver_schedule(d, ACT_SERVER_START, chaos_rng_range(&d->rng, 200, 2500), 0);
}

void
driver_chaos_phase(driver_t *d)
{
    int64_t now = chaos_mono_ms();
    int64_t next_fault = now + chaos_rng_range(&d->rng, 1000, 2500);
    int64_t next_kill = now + chaos_rng_range(&d->rng, 6000, 15000);
    int64_t next_hits_poll = now + 1000;
    int64_t sabotage_at = now + (d->chaos_end_mono - now) / 2;
    d->chaos_on = true;
    for (int iter = 0; iter < 10000000 && !d->interrupted; iter++) {
        now = chaos_mono_ms();
        if (now >= d->chaos_end_mono) {
            break;
        }
        bool quiet = now < d->quiet_until_mono; /* a restart's recovery is being measured */
        /* No kill so late that the restart's recovery could not be watched to its bound. */
        bool late = now + 3000 + d->recovery_bound_ms > d->chaos_end_mono;
        if (now >= next_kill && d->server_up && !quiet && !late) {
            kill_server_now(d);
            next_kill = now + chaos_rng_range(&d->rng, 10000, 22000);
        }
        if (now >= next_fault) {
            if (!quiet) {
                faults_inject_one(d);
            }
            next_fault = now + chaos_rng_range(&d->rng, 500, 3000);
        }
        if (sabotage_at > 0 && now >= sabotage_at) {
            sabotage_apply(d, true);
            sabotage_at = 0;
        }
        if (now >= next_hits_poll) {
            proxy_poll_hits(d); /* when did the armed proxy rules strike? */
            next_hits_poll = now + 1000;
        }
        run_actions(d, false);
        int64_t wake = next_wake(d, next_fault < next_kill ? next_fault : next_kill);
        wait_events(d, wake);
    }
}

/* ---- the drain and the final stops --------------------------------------------------------- */

static void
faults_off(driver_t *d)
{
    d->chaos_on = false;
    proxy_poll_hits(d);
    run_actions(d, true); /* the server back, SIGCONTs, partitions healed, processes restarted */
    for (int i = 0; i < 5 && d->server_up && !server_fail_command_off(d); i++) {
    }
    driver_end_fail_command(d);
    proxy_heal(d, true);
}

/* Whether every live child of kind said "ready" (its signal handlers are in place by then). */
static bool
all_ready(driver_t *d, child_kind_t kind)
{
    for (int i = 0; i < d->n_children; i++) {
        if (d->children[i].kind == kind && procs_alive(d, i) && !d->children[i].ready) {
            return false;
        }
    }
    return true;
}

static void
stop_producers(driver_t *d)
{
    d->producers_stopping = true;
    /* One restarted by faults_off may be starting: a SIGTERM before its handler is installed
     * would kill it (seen once as "died on its own: signal 15"). */
    int64_t deadline = chaos_mono_ms() + 30000;
    for (int i = 0; i < 1000 && !all_ready(d, CHILD_PRODUCER) && chaos_mono_ms() < deadline; i++) {
        wait_events(d, 100);
    }
    for (int i = 0; i < d->n_children; i++) {
        if (d->children[i].kind == CHILD_PRODUCER && procs_alive(d, i)) {
            procs_signal(d, i, SIGTERM);
        }
    }
    for (int i = 0; i < d->n_children; i++) {
        if (d->children[i].kind == CHILD_PRODUCER && !procs_wait_exit(d, i, 30000, on_child_exit)) {
            printf("chaos: %s did not stop within 30 s\n", d->children[i].name);
        }
    }
}

/* Runs until no message is ready or processing, or the drain's time is up. */
int64_t
driver_drain(driver_t *d)
{
    bson_error_t error;
    int64_t start = chaos_mono_ms(), deadline = start + d->drain_s * 1000, left = -1;
    const char *unfinished = "{\"status\": {\"$in\": [\"ready\", \"processing\"]}}";
    printf("chaos: drain: faults off, producers stopped, workers run until the queue is empty\n");
    fflush(stdout);
    faults_off(d);
    stop_producers(d);
    for (int s = 0; s < d->n_workers; s++) {
        driver_start_worker(d, s);
    }
    for (int iter = 0; iter < 1000000 && !d->interrupted; iter++) {
        left = server_count(d, unfinished, &error);
        if (left == 0 || chaos_mono_ms() >= deadline) {
            break;
        }
        run_actions(d, false);
        wait_events(d, 250); /* the count is the condition: re-read it 4 times a second */
    }
    printf("chaos: drain took %" PRId64 " ms; unfinished messages left: %" PRId64 "%s%s\n",
           chaos_mono_ms() - start, left, left < 0 ? " (count failed: " : "",
           left < 0 ? error.message : "");
    return left;
}

/* SIGTERM to every worker at once; each must be gone within its bound (check.c judges). */
void
driver_stop_workers(driver_t *d)
{
    int64_t deadline = chaos_mono_ms() + 30000;
    for (int i = 0; i < 1000 && !all_ready(d, CHILD_WORKER) && chaos_mono_ms() < deadline; i++) {
        wait_events(d, 100); /* a worker starting now must say ready before it can stop */
    }
    d->final_stop = true;
    for (int i = 0; i < d->n_children; i++) {
        if (d->children[i].kind == CHILD_WORKER && procs_alive(d, i)) {
            procs_signal(d, i, SIGTERM);
        }
    }
    for (int i = 0; i < d->n_children; i++) {
        child_t *c = &d->children[i];
        if (c->kind == CHILD_WORKER && procs_alive(d, i) &&
            !procs_wait_exit(d, i, driver_stop_bound(d, i) + 10000, on_child_exit)) {
            procs_signal(d, i, SIGKILL);
            procs_wait_exit(d, i, 5000, on_child_exit);
        }
    }
    if (d->proxy.available) {
        procs_signal(d, d->proxy.child, SIGTERM);
        procs_wait_exit(d, d->proxy.child, 5000, on_child_exit);
    }
}

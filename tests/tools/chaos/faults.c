/*
 * The faults, one row each: a name, a weight (how often it is drawn) and the function that
 * injects it. A row's function returns false when the fault cannot apply now (no ready worker,
 * server down, no proxy); the driver then draws again. Server kills are scheduled on their own
 * clock in driver.c ("a few per minute"), not drawn from this table.
 *
 * To add a fault: write inject_x(driver_t *) that injects it, counts it with driver_count,
 * records an event with driver_event (so redeliveries it causes are explained) and schedules
 * its healing with driver_schedule; then add a row.
 */
#include "driver.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static bool
inject_worker_kill(driver_t *d)
{
    int child = procs_pick(d, CHILD_WORKER, true);
    if (child < 0) {
        return false;
    }
    procs_signal(d, child, SIGKILL);
    driver_event(d, EV_WORKER_KILL, child, chaos_real_ms());
    driver_schedule(d, ACT_WORKER_START, chaos_rng_range(&d->rng, 200, 2000),
                    d->children[child].slot);
    driver_count(d, "worker SIGKILL", 1);
    return true;
}

/* SIGSTOP for longer than the worker's lease, then SIGCONT. */
static bool
inject_worker_stop(driver_t *d)
{
    int child = procs_pick(d, CHILD_WORKER, false);
    if (child < 0) {
        return false;
    }
    int64_t lease = d->workers[d->children[child].slot].lease_ms;
    int64_t pause = lease + chaos_rng_range(&d->rng, 500, 2500);
    procs_signal(d, child, SIGSTOP);
    driver_event(d, EV_WORKER_STOP, child, chaos_real_ms() + pause);
    driver_schedule(d, ACT_WORKER_CONT, pause, child);
    driver_count(d, "worker SIGSTOP > lease", 1);
    return true;
}

/* A graceful stop; the driver restarts the slot once the process is gone (driver.c). */
static bool
inject_worker_term(driver_t *d)
{
    int child = procs_pick(d, CHILD_WORKER, false);
    if (child < 0) {
        return false;
    }
    procs_signal(d, child, SIGTERM);
    driver_event(d, EV_WORKER_TERM, child, chaos_real_ms());
    driver_count(d, "worker SIGTERM", 1);
    return true;
}

static bool
inject_producer_kill(driver_t *d)
{
    int child = procs_pick(d, CHILD_PRODUCER, false);
    if (child < 0) {
        return false;
    }
    procs_signal(d, child, SIGKILL);
    driver_event(d, EV_PRODUCER_KILL, child, chaos_real_ms());
    driver_schedule(d, ACT_PRODUCER_START, chaos_rng_range(&d->rng, 200, 1500),
                    d->children[child].slot);
    driver_count(d, "producer SIGKILL", 1);
    return true;
}

/* failCommand on 1..3 of the commands mongoq sends: a closed connection or an error code. */
static bool
inject_fail_command(driver_t *d)
{
    static const char *const commands[] = {"insert",  "update", "delete",
                                           "findAndModify", "getMore", "find"};
    static const struct {
        const char *mode;
        int code;
        const char *label;
    } kinds[] = {{"close", 0, "failCommand closeConnection"},
                 {"error", 10107, "failCommand 10107 NotWritablePrimary"},
                 {"error", 91, "failCommand 91 ShutdownInProgress"}};
    const size_t n_commands = sizeof commands / sizeof commands[0];
    if (!d->server_up) {
        return false;
    }
    const char *chosen[3];
    size_t n = (size_t)chaos_rng_range(&d->rng, 1, 3);
    size_t first = (size_t)chaos_rng_range(&d->rng, 0, (int64_t)n_commands - 1);
    for (size_t i = 0; i < n; i++) {
        chosen[i] = commands[(first + i) % n_commands];
    }
    size_t k = (size_t)chaos_rng_range(&d->rng, 0, 2);
    int times = (int)chaos_rng_range(&d->rng, 1, 5);
    if (!server_fail_command(d, chosen, n, kinds[k].mode, kinds[k].code, times)) {
        return false;
    }
    driver_end_fail_command(d); /* one failCommand at a time: the new one replaces it */
    /* Every listed command but delete runs many times a second: 10 s bound when it strikes. */
    d->fail_command_event = driver_event(d, EV_FAIL_COMMAND, -1, chaos_real_ms() + 10000);
    driver_count(d, kinds[k].label, 1);
    return true;
}

/* One proxy fault: a lost reply (applied), a lost request (not), a hung connection, a
 * partition (healed later) or a reset of every connection. */
static bool
inject_proxy(driver_t *d)
{
    static const char *const command_sets[] = {"insert", "update", "findAndModify",
                                               "insert,update", "find", "getMore", "aggregate",
                                               "update,findAndModify"};
    const int64_t n_sets = (int64_t)(sizeof command_sets / sizeof command_sets[0]);
    char line[128], reply[256];
    const char *label;
    int64_t until = chaos_real_ms(), heal_in = 0;
    if (!d->proxy.available || !procs_alive(d, d->proxy.child)) {
        return false;
    }
    const char *commands = command_sets[chaos_rng_range(&d->rng, 0, n_sets - 1)];
    int times = (int)chaos_rng_range(&d->rng, 1, 3);
    switch (chaos_rng_range(&d->rng, 0, 5)) {
    case 0:
    case 1:
        snprintf(line, sizeof line, "drop-reply %s %d", commands, times);
        label = "proxy drop-reply";
        break;
    case 2:
        snprintf(line, sizeof line, "drop-request %s %d", commands, times);
        label = "proxy drop-request";
        break;
    case 3:
        snprintf(line, sizeof line, "hang getMore 1 2000");
        label = "proxy hang getMore 2 s";
        break;
    case 4:
        heal_in = chaos_rng_range(&d->rng, 500, 2500);
        snprintf(line, sizeof line, "partition on");
        label = "proxy partition";
        until = chaos_real_ms() + heal_in;
        break;
    default:
        snprintf(line, sizeof line, "reset");
        label = "proxy reset";
        break;
    }
    if (!proxy_command(d, line, reply, sizeof reply)) {
        return false;
    }
    if (heal_in > 0) {
        driver_schedule(d, ACT_PROXY_HEAL, heal_in, 0);
    }
    if (strncmp(reply, "ok rule=", 8) == 0) {
        proxy_track_rule(d, reply); /* its events come when it strikes (proxy_poll_hits) */
    } else {
        driver_event(d, EV_PROXY, -1, until);
    }
    driver_count(d, label, 1);
    return true;
}

typedef struct {
    const char *name;
    int weight;
    bool (*inject)(driver_t *d);
} fault_t;

static const fault_t faults[] = {
    {"worker SIGKILL", 3, inject_worker_kill},
    {"worker SIGSTOP", 2, inject_worker_stop},
    {"worker SIGTERM", 2, inject_worker_term},
    {"producer SIGKILL", 1, inject_producer_kill},
    {"failCommand", 4, inject_fail_command},
    {"proxy", 4, inject_proxy},
};

/* Draws faults by weight until one applies (a few draws at most). */
void
faults_inject_one(driver_t *d)
{
    const size_t n = sizeof faults / sizeof faults[0];
    int total = 0;
    for (size_t i = 0; i < n; i++) {
        total += faults[i].weight;
    }
    for (int draw = 0; draw < 8; draw++) {
        int64_t r = chaos_rng_range(&d->rng, 0, total - 1);
        size_t i = 0;
        while (i + 1 < n && r >= faults[i].weight) {
            r -= faults[i].weight;
            i++;
        }
        if (faults[i].inject(d)) {
            return;
        }
    }
}

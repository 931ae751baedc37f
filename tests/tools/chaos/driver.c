/*
 * The driver: options, the work folder, the children's command lines, the chaos phase (faults
 * drawn from faults.c, server kills on their own clock), the drain, the final graceful stops,
 * the check (check.c) and the cleanup. Single-threaded: it waits in poll() on a self-pipe that
 * its signal handlers (SIGCHLD, SIGINT, SIGTERM, SIGHUP) write to, and on the stdout pipes of
 * children that have not said "ready" yet.
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

#ifndef CHAOS_SERVER_BIN
#define CHAOS_SERVER_BIN ""
#endif
#ifndef CHAOS_PROXY_BIN
#define CHAOS_PROXY_BIN ""
#endif

static int sig_write_fd = -1;
static volatile sig_atomic_t interrupted;

static void
on_signal(int sig)
{
    int saved = errno;
    if (sig != SIGCHLD) {
        interrupted = 1;
    }
    ssize_t r = write(sig_write_fd, "s", 1);
    (void)r;
    errno = saved;
}

static bool
install_signals(driver_t *d)
{
    int fds[2];
    if (pipe(fds) != 0) {
        return false;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
    }
    sig_write_fd = fds[1];
    d->sig_fd = fds[0];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = {SIGCHLD, SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        sigaction(sigs[i], &sa, NULL);
    }
    signal(SIGPIPE, SIG_IGN);
    return true;
}

/* ---- bookkeeping shared with the other files ------------------------------------------------ */

void
driver_count(driver_t *d, const char *name, int64_t n)
{
    int i = 0;
    while (i < MAX_COUNTERS && d->counters[i].name[0] && strcmp(d->counters[i].name, name) != 0) {
        i++;
    }
    if (i < MAX_COUNTERS) {
        snprintf(d->counters[i].name, sizeof d->counters[i].name, "%s", name);
        d->counters[i].n += n;
    }
}

int
driver_event(driver_t *d, event_kind_t kind, int child, int64_t until_real)
{
    if (d->n_events >= MAX_EVENTS) {
        return -1;
    }
    event_t *e = &d->events[d->n_events];
    e->kind = kind;
    e->child = child;
    e->from_real = chaos_real_ms();
    e->until_real = until_real;
    return d->n_events++;
}

void
driver_schedule(driver_t *d, action_kind_t kind, int64_t in_ms, int arg)
{
    for (int i = 0; i < MAX_ACTIONS; i++) {
        if (!d->actions[i].pending) {
            d->actions[i] = (action_t){kind, chaos_mono_ms() + in_ms, arg, true};
            return;
        }
    }
    fprintf(stderr, "chaos: too many pending actions\n");
}

/* The fail point set last is gone (replaced, turned off, or its server died). */
void
driver_end_fail_command(driver_t *d)
{
    if (d->fail_command_event >= 0) {
        event_t *e = &d->events[d->fail_command_event];
        int64_t now = chaos_real_ms();
        e->until_real = e->until_real < now ? e->until_real : now;
        d->fail_command_event = -1;
    }
}

int64_t
driver_real_of_mono(const driver_t *d, int64_t mono)
{
    return mono + d->real_minus_mono;
}

/* How long a worker's graceful stop may take: its stop timeout + 1 s + --stop-margin-ms. */
int64_t
driver_stop_bound(const driver_t *d, int child)
{
    return d->workers[d->children[child].slot].stop_timeout_ms + 1000 + d->stop_margin_ms;
}

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
    d->interrupted = interrupted != 0;
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

static void
chaos_phase(driver_t *d)
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

static void
stop_producers(driver_t *d)
{
    d->producers_stopping = true;
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
static int64_t
drain(driver_t *d)
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

static bool
all_workers_ready(driver_t *d)
{
    for (int i = 0; i < d->n_children; i++) {
        if (d->children[i].kind == CHILD_WORKER && procs_alive(d, i) && !d->children[i].ready) {
            return false;
        }
    }
    return true;
}

/* SIGTERM to every worker at once; each must be gone within its bound (check.c judges). */
static void
stop_workers(driver_t *d)
{
    int64_t deadline = chaos_mono_ms() + 30000;
    for (int i = 0; i < 1000 && !all_workers_ready(d) && chaos_mono_ms() < deadline; i++) {
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

/* ---- setup and teardown ------------------------------------------------------------------------ */

static bool
parse_options(driver_t *d, int argc, char **argv)
{
    const char *seed_str = NULL;
    const chaos_opt_t opts[] = {
        {"seconds", CHAOS_OPT_INT, &d->seconds},
        {"seed", CHAOS_OPT_STR, &seed_str},
        {"workers", CHAOS_OPT_INT, &d->n_workers},
        {"producers", CHAOS_OPT_INT, &d->n_producers},
        {"drain-seconds", CHAOS_OPT_INT, &d->drain_s},
        {"recovery-bound-ms", CHAOS_OPT_INT, &d->recovery_bound_ms},
        {"stop-margin-ms", CHAOS_OPT_INT, &d->stop_margin_ms},
        {"keep", CHAOS_OPT_INT, &d->keep},
        {"server", CHAOS_OPT_STR, &d->server_bin},
        {"proxy", CHAOS_OPT_STR, &d->proxy_bin},
        {"faketime-lib", CHAOS_OPT_STR, &d->faketime_lib},
        {"workdir", CHAOS_OPT_STR, &d->workdir_opt},
        {"sabotage", CHAOS_OPT_STR, &d->sabotage},
    };
    d->seconds = 60;
    d->n_workers = 4;
    d->n_producers = 2;
    d->drain_s = 40;
    d->recovery_bound_ms = 5000;
    d->stop_margin_ms = 1000;
    d->server_bin = CHAOS_SERVER_BIN;
    d->proxy_bin = CHAOS_PROXY_BIN[0] ? CHAOS_PROXY_BIN : NULL;
    if (!chaos_parse_opts(argc, argv, 1, opts, sizeof opts / sizeof opts[0])) {
        return false;
    }
    d->seed = seed_str ? strtoll(seed_str, NULL, 0)
                       : (int64_t)(((uint64_t)chaos_real_ms() * 2654435761u) ^ (uint64_t)getpid()) %
                             1000000000;
    d->n_workers = d->n_workers < 1 ? 1 : d->n_workers > MAX_WORKERS ? MAX_WORKERS : d->n_workers;
    d->n_producers = d->n_producers < 1 ? 1
                     : d->n_producers > MAX_PRODUCERS ? MAX_PRODUCERS
                                                      : d->n_producers;
    if (!d->server_bin[0] || access(d->server_bin, X_OK) != 0) {
        fprintf(stderr, "chaos: no test server at '%s' (--server PATH)\n", d->server_bin);
        return false;
    }
    return true;
}

static void
find_faketime(driver_t *d)
{
    static char path[PATH_MAX];
    const char *patterns[] = {"/usr/lib/*/faketime/libfaketimeMT.so.1",
                              "/usr/lib/*/faketime/libfaketime.so.1"};
    for (size_t i = 0; i < 2 && !d->faketime_lib; i++) {
        glob_t g;
        if (glob(patterns[i], 0, NULL, &g) == 0 && g.gl_pathc > 0) {
            snprintf(path, sizeof path, "%s", g.gl_pathv[0]);
            d->faketime_lib = path;
        }
        globfree(&g);
    }
    if (!d->faketime_lib) {
        printf("chaos: NOTICE: libfaketime not found (apt-get install faketime): skewed workers "
               "run with the real clock\n");
    }
}

static bool
make_workdir(driver_t *d)
{
    static char self[PATH_MAX];
    const char *base = d->workdir_opt ? d->workdir_opt : getenv("TMPDIR");
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        return false;
    }
    self[n] = '\0';
    d->self = self;
    if (d->workdir_opt) {
        mkdir(d->workdir_opt, 0755);
    }
    snprintf(d->workdir, sizeof d->workdir, "%s/chaos-%" PRId64 "-XXXXXX", base ? base : "/tmp",
             d->seed);
    if (!mkdtemp(d->workdir)) {
        fprintf(stderr, "chaos: cannot create %s: %s\n", d->workdir, strerror(errno));
        return false;
    }
    snprintf(d->dbpath, sizeof d->dbpath, "%s/db", d->workdir);
    return mkdir(d->dbpath, 0755) == 0;
}

/* Removes the work folder: files in db/, db/, files, the folder. */
static void
remove_workdir(const driver_t *d)
{
    const char *dirs[] = {d->dbpath, d->workdir};
    for (size_t k = 0; k < 2; k++) {
        DIR *dir = opendir(dirs[k]);
        struct dirent *e;
        for (int i = 0; dir && i < 100000 && (e = readdir(dir)); i++) {
            char path[PATH_MAX * 2];
            snprintf(path, sizeof path, "%s/%s", dirs[k], e->d_name);
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                unlink(path);
            }
        }
        if (dir) {
            closedir(dir);
        }
        rmdir(dirs[k]);
    }
}

/* Worker slots: slot 0 plain, odd slots batch > 1, slots 1 and 2 with the clock 10 min off,
 * the rest random; about half through the proxy. */
static void
configure(driver_t *d)
{
    for (int s = 0; s < d->n_workers; s++) {
        worker_slot_t *w = &d->workers[s];
        w->threads = chaos_rng_range(&d->rng, 1, 4);
        w->batch = s % 2 == 1 ? chaos_rng_range(&d->rng, 2, 8) : 1;
        w->lease_ms = chaos_rng_range(&d->rng, 1500, 6000);
        w->retry_pct = chaos_rng_range(&d->rng, 0, 15);
        w->work_max_ms = chaos_rng_range(&d->rng, 5, 60);
        w->long_pct = chaos_rng_range(&d->rng, 0, 2);
        w->stop_timeout_ms = chaos_rng_range(&d->rng, 1000, 3000);
        w->faketime = s == 1 ? "+10m" : s == 2 ? "-10m" : NULL;
        w->via_proxy = s == 0 ? false : s == 3 ? true : chaos_rng_percent(&d->rng, 50);
        w->child = -1;
    }
    for (int s = 0; s < d->n_producers; s++) {
        producer_slot_t *p = &d->producers[s];
        p->rate = chaos_rng_range(&d->rng, 15, 35);
        p->batch_pct = chaos_rng_range(&d->rng, 20, 60);
        p->via_proxy = s % 2 == 1;
        p->child = -1;
    }
}

static void
print_configuration(const driver_t *d)
{
    for (int s = 0; s < d->n_workers; s++) {
        const worker_slot_t *w = &d->workers[s];
        printf("chaos: worker slot %d: %" PRId64 " threads, batch %" PRId64 ", lease %" PRId64
               " ms, RETRY %" PRId64 "%%, work 0-%" PRId64 " ms (%" PRId64 "%% 1.5 leases), stop "
               "timeout %" PRId64 " ms, clock %s, %s\n",
               s, w->threads, w->batch, w->lease_ms, w->retry_pct, w->work_max_ms, w->long_pct,
               w->stop_timeout_ms, w->faketime && d->faketime_lib ? w->faketime : "real",
               w->via_proxy && d->proxy.available ? "via the proxy" : "direct");
    }
    for (int s = 0; s < d->n_producers; s++) {
        const producer_slot_t *p = &d->producers[s];
        printf("chaos: producer slot %d: %" PRId64 " msg/s, %" PRId64 "%% batched, %s\n", s,
               p->rate, p->batch_pct, p->via_proxy && d->proxy.available ? "via the proxy" : "direct");
    }
}

static bool
start_all(driver_t *d)
{
    if (!server_start(d)) {
        return false;
    }
    proxy_start(d);
    print_configuration(d);
    fflush(stdout);
    for (int s = 0; s < d->n_producers; s++) {
        driver_start_producer(d, s);
    }
    for (int s = 0; s < d->n_workers; s++) {
        driver_start_worker(d, s);
    }
    return true;
}

static void
print_faults(const driver_t *d)
{
    printf("chaos: faults injected:\n");
    for (int i = 0; i < MAX_COUNTERS && d->counters[i].name[0]; i++) {
        printf("       %5" PRId64 "  %s\n", d->counters[i].n, d->counters[i].name);
    }
}

/* The run after setup: chaos, drain, stops, check. Returns the number of failed invariants. */
static int
run(driver_t *d, int *passed)
{
    chaos_phase(d);
    if (d->interrupted) {
        return -1;
    }
    printf("chaos: chaos phase over after %" PRId64 " s\n",
           (chaos_mono_ms() - d->start_mono) / 1000);
    drain(d);
    stop_workers(d);
    if (d->interrupted) {
        return -1;
    }
    print_faults(d);
    sabotage_apply(d, false);
    return check_run(d, passed);
}

static void
teardown(driver_t *d)
{
    mongoc_client_destroy(d->client); /* while the server still answers its endSessions */
    d->client = NULL;
    if (procs_alive(d, d->server_child)) {
        procs_signal(d, d->server_child, SIGTERM);
        procs_wait_exit(d, d->server_child, 10000, NULL);
    }
    procs_kill_all(d);
}

int
chaos_driver_main(int argc, char **argv)
{
    const char *no_spawn = getenv("MONGOQ_TEST_NO_SPAWN");
    if (no_spawn && strcmp(no_spawn, "1") == 0) {
        printf("chaos: skipped: MONGOQ_TEST_NO_SPAWN=1 (the run starts test servers of its own)\n");
        return 77; /* ctest's SKIP_RETURN_CODE */
    }
    driver_t *d = bson_malloc0(sizeof *d);
    int failed = -1, passed = 0, rc = 2;
    d->server_child = d->proxy.child = d->fail_command_event = -1;
    if (!parse_options(d, argc, argv) || !install_signals(d) || !make_workdir(d)) {
        bson_free(d);
        return 2;
    }
    chaos_rng_seed(&d->rng, (uint64_t)d->seed);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("chaos: seed %" PRId64 " (replay: --seed %" PRId64 " --seconds %" PRId64
           "), records in %s\n",
           d->seed, d->seed, d->seconds, d->workdir);
    find_faketime(d);
    chaos_mongoc_init();
    d->start_mono = chaos_mono_ms();
    d->real_minus_mono = chaos_real_ms() - d->start_mono;
    d->chaos_end_mono = d->start_mono + d->seconds * 1000;
    configure(d);
    if (start_all(d)) {
        failed = run(d, &passed);
    }
    teardown(d);
    mongoc_cleanup();
    if (failed < 0) {
        printf("chaos: %s\n", d->interrupted ? "interrupted" : "setup failed");
        rc = d->interrupted ? 130 : 2;
    } else {
        printf("%d passed, %d failed\n", passed, failed);
        rc = failed == 0 ? 0 : 1;
    }
    if (rc == 0 && !d->keep) {
        remove_workdir(d);
    } else {
        printf("chaos: records kept in %s\n", d->workdir);
    }
    close(d->sig_fd);
    bson_free(d);
    return rc;
}

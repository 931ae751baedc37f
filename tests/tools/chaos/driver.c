/*
 * The driver: options, the work folder, the signals, the bookkeeping the other files share
 * (counts, events, scheduled actions), setup, the run in order (the chaos phase, the drain and
 * the final stops in run.c; the children's command lines in children.c; the check in check.c)
 * and the cleanup. Single-threaded: it waits in poll() on a self-pipe that its signal handlers
 * (SIGCHLD, SIGINT, SIGTERM, SIGHUP) write to, and on the stdout pipes of children that have
 * not said "ready" yet.
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
volatile sig_atomic_t driver_sig_interrupted;

static void
on_signal(int sig)
{
    int saved = errno;
    if (sig != SIGCHLD) {
        driver_sig_interrupted = 1;
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

/* The latest event of kind on child ends now, if it was planned to end earlier. */
void
driver_event_end(driver_t *d, event_kind_t kind, int child)
{
    int64_t now = chaos_real_ms();
    for (int i = d->n_events - 1; i >= 0; i--) {
        event_t *e = &d->events[i];
        if (e->kind == kind && e->child == child) {
            e->until_real = e->until_real < now ? now : e->until_real;
            return;
        }
    }
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

void
driver_clock_sample(driver_t *d)
{
    int64_t mono = chaos_mono_ms();
    int64_t offset = chaos_real_ms() - mono;
    int64_t last = d->n_clock > 0 ? d->clock_offset[d->n_clock - 1] : 0;
    bool moved = d->n_clock == 0 || offset - last >= CLOCK_STEP_MS || last - offset >= CLOCK_STEP_MS;
    if (moved && d->n_clock < MAX_CLOCK_STEPS) {
        d->clock_mono[d->n_clock] = mono;
        d->clock_offset[d->n_clock] = offset;
        d->n_clock++;
    }
}

bool
driver_clock_jumped(const driver_t *d, int64_t from, int64_t to)
{
    for (int i = 1; i < d->n_clock; i++) {
        int64_t at = d->clock_mono[i] + d->clock_offset[i];
        if (d->clock_offset[i] - d->clock_offset[i - 1] >= CLOCK_JUMP_MS && at >= from &&
            at <= to) {
            return true;
        }
    }
    return false;
}

int64_t
driver_real_of_mono(const driver_t *d, int64_t mono)
{
    /* The last note at or before mono (the first one for earlier times). */
    int lo = 0, hi = d->n_clock - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (d->clock_mono[mid] <= mono) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    return mono + (d->n_clock > 0 ? d->clock_offset[lo] : chaos_real_ms() - chaos_mono_ms());
}

/* How long a worker's graceful stop may take: its stop timeout + 1 s + --stop-margin-ms. */
int64_t
driver_stop_bound(const driver_t *d, int child)
{
    return d->workers[d->children[child].slot].stop_timeout_ms + 1000 + d->stop_margin_ms;
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
    driver_chaos_phase(d);
    if (d->interrupted) {
        return -1;
    }
    printf("chaos: chaos phase over after %" PRId64 " s\n",
           (chaos_mono_ms() - d->start_mono) / 1000);
    driver_drain(d);
    driver_stop_workers(d);
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
    driver_clock_sample(d);
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

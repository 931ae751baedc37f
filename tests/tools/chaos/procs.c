/*
 * The driver's children: spawned with PR_SET_PDEATHSIG so none outlives the driver (even one
 * killed with SIGKILL), signalled only by the PID we got from fork and only while we have not
 * reaped it (so a recycled PID is never hit), reaped with waitpid.
 */
#include "driver.h"
#include "faketime_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child, between fork and exec: only async-signal-safe calls, plus setenv (the driver
 * is single-threaded). */
static void
exec_child(const driver_t *d, const char *name, int out_fd, pid_t parent, char *const argv[],
           char *const env[])
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(126); /* the driver died before prctl took effect */
    }
    char err_path[PATH_MAX + 64];
    snprintf(err_path, sizeof err_path, "%s/%s.err", d->workdir, name);
    int err_fd = open(err_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(out_fd, STDOUT_FILENO);
    if (err_fd >= 0) {
        dup2(err_fd, STDERR_FILENO);
    }
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) {
        dup2(null_fd, STDIN_FILENO);
    }
    for (size_t i = 0; env && env[i]; i++) {
        char *eq = strchr(env[i], '=');
        if (eq) {
            *eq = '\0';
            setenv(env[i], eq + 1, 1);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    mtest_clear_faketime_shm(getpid()); /* skewed workers run under libfaketime */
    execv(argv[0], argv);
    _exit(127);
}

int
procs_spawn(driver_t *d, child_kind_t kind, int slot, const char *name, char *const argv[],
            char *const env[])
{
    int fds[2];
    if (d->n_children >= MAX_CHILDREN || pipe(fds) != 0) {
        fprintf(stderr, "chaos: cannot start %s (children: %d)\n", name, d->n_children);
        return -1;
    }
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        exec_child(d, name, fds[1], parent, argv, env);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    int i = d->n_children++;
    child_t *c = &d->children[i];
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->slot = slot;
    snprintf(c->name, sizeof c->name, "%s", name);
    c->pid = pid;
    c->out_fd = fds[0];
    c->started_mono = chaos_mono_ms();
    c->ready_deadline = c->started_mono + 45000;
    return i;
}

/* Reads what the child wrote; true once a whole first line is there. */
static bool
read_out(child_t *c)
{
    for (int i = 0; i < 64 && c->out_fd >= 0; i++) {
        if (c->out_len + 1 >= sizeof c->out_buf) {
            break;
        }
        ssize_t n = read(c->out_fd, c->out_buf + c->out_len, sizeof c->out_buf - 1 - c->out_len);
        if (n <= 0) {
            break;
        }
        c->out_len += (size_t)n;
    }
    c->out_buf[c->out_len] = '\0';
    return strchr(c->out_buf, '\n') != NULL;
}

static void
close_out(child_t *c)
{
    if (c->out_fd >= 0) {
        close(c->out_fd);
        c->out_fd = -1;
    }
}

static int collect_exits(driver_t *d);

/* Waits (poll, bounded) for lines from the child; returns the first line, keeps the rest. */
bool
procs_await_line(driver_t *d, int child, int64_t timeout_ms, char *line, size_t line_len)
{
    child_t *c = &d->children[child];
    int64_t deadline = chaos_mono_ms() + timeout_ms;
    for (int i = 0; i < 10000 && c->out_fd >= 0; i++) {
        if (read_out(c)) {
            size_t n = (size_t)(strchr(c->out_buf, '\n') - c->out_buf);
            snprintf(line, line_len, "%.*s", (int)n, c->out_buf);
            memmove(c->out_buf, c->out_buf + n + 1, c->out_len - n);
            c->out_len -= n + 1;
            return true;
        }
        int64_t left = deadline - chaos_mono_ms();
        if (left <= 0) {
            break;
        }
        /* SIGCHLD wakes this too: other children's exits are collected (timed) meanwhile. */
        struct pollfd pfd[2] = {{.fd = c->out_fd, .events = POLLIN},
                                {.fd = d->sig_fd, .events = POLLIN}};
        int ready = poll(pfd, 2, (int)(left < 500 ? left : 500));
        if (ready > 0 && pfd[1].revents) {
            char buf[64];
            while (read(d->sig_fd, buf, sizeof buf) > 0) {
            }
        }
        collect_exits(d);
        if (ready > 0 && (pfd[0].revents & POLLHUP) && !(pfd[0].revents & POLLIN)) {
            break; /* the child closed its stdout (exited) without a line */
        }
    }
    return false;
}

/* A child's readiness line ("ready <pid>"); the pipe is closed once it came. */
void
procs_read_ready(driver_t *d, int child)
{
    child_t *c = &d->children[child];
    if (c->ready || c->out_fd < 0) {
        return;
    }
    if (read_out(c) && strncmp(c->out_buf, "ready ", 6) == 0) {
        c->ready = true;
        c->ready_mono = chaos_mono_ms();
        close_out(c);
    }
}

bool
procs_alive(const driver_t *d, int child)
{
    return child >= 0 && child < d->n_children && !d->children[child].exited;
}

/* Signals a child we have not reaped yet: its PID cannot have been given to anyone else. */
void
procs_signal(driver_t *d, int child, int sig)
{
    if (!procs_alive(d, child)) {
        return;
    }
    child_t *c = &d->children[child];
    if (sig == SIGKILL) {
        c->sigkilled = true;
    } else if (sig == SIGTERM && !c->termed) {
        c->termed = true;
        c->term_mono = chaos_mono_ms();
    } else if (sig == SIGSTOP) {
        c->stopped = true;
    } else if (sig == SIGCONT) {
        c->stopped = false;
    }
    kill(c->pid, sig);
}

static int
find_pid(const driver_t *d, pid_t pid)
{
    for (int i = d->n_children - 1; i >= 0; i--) {
        if (d->children[i].pid == pid && !d->children[i].exited) {
            return i;
        }
    }
    return -1;
}

/*
 * Collects every child that ended (waitpid, WNOHANG): its status, and its exit time taken now,
 * so a stop is measured to the exit even while the driver waits for something else (the
 * server's restart line). Returns how many.
 */
static int
collect_exits(driver_t *d)
{
    int n = 0;
    for (int i = 0; i < MAX_CHILDREN; i++) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            break;
        }
        int child = find_pid(d, pid);
        if (child < 0) {
            continue;
        }
        child_t *c = &d->children[child];
        if (WIFSIGNALED(status)) {
            mtest_clear_faketime_shm(pid); /* killed: libfaketime could not clean up */
        }
        c->exited = true;
        c->status = status;
        c->exit_mono = chaos_mono_ms();
        c->stopped = false;
        close_out(c);
        n++;
    }
    return n;
}

/*
 * Reaps every child that ended; on_exit (when not NULL) is called once for each, also for
 * those collected earlier without one. Returns how many were collected by this call.
 */
int
procs_reap(driver_t *d, void (*on_exit)(driver_t *d, int child))
{
    int n = collect_exits(d);
    for (int i = 0; on_exit && i < d->n_children; i++) {
        child_t *c = &d->children[i];
        if (c->exited && !c->exit_told) {
            c->exit_told = true;
            on_exit(d, i);
        }
    }
    return n;
}

/* Sleeps until a signal (SIGCHLD above all) arrives or timeout_ms passes. */
void
procs_wait_signal(driver_t *d, int64_t timeout_ms)
{
    struct pollfd pfd = {.fd = d->sig_fd, .events = POLLIN};
    if (poll(&pfd, 1, (int)(timeout_ms < 0 ? 0 : timeout_ms)) > 0) {
        char buf[64];
        while (read(d->sig_fd, buf, sizeof buf) > 0) {
        }
    }
}

/* Waits (bounded) for one child to end, reaping others on the way. */
bool
procs_wait_exit(driver_t *d, int child, int64_t timeout_ms,
                void (*on_exit)(driver_t *d, int child))
{
    int64_t deadline = chaos_mono_ms() + timeout_ms;
    for (int i = 0; i < 100000 && procs_alive(d, child); i++) {
        if (procs_reap(d, on_exit) == 0) {
            int64_t left = deadline - chaos_mono_ms();
            if (left <= 0) {
                break;
            }
            procs_wait_signal(d, left < 200 ? left : 200); /* SIGCHLD ends the wait */
        }
    }
    return !procs_alive(d, child);
}

/* Every exit path: SIGKILL what is still running (by the PID we own) and reap it. */
void
procs_kill_all(driver_t *d)
{
    for (int i = 0; i < d->n_children; i++) {
        if (procs_alive(d, i)) {
            procs_signal(d, i, SIGKILL);
        }
    }
    for (int i = 0; i < d->n_children; i++) {
        procs_wait_exit(d, i, 5000, NULL);
    }
}

/* A random ready, live child of that kind (not stopped unless may_be_stopped); -1 if none. */
int
procs_pick(driver_t *d, child_kind_t kind, bool may_be_stopped)
{
    int candidates[MAX_CHILDREN];
    int n = 0;
    for (int i = 0; i < d->n_children; i++) {
        const child_t *c = &d->children[i];
        if (c->kind == kind && procs_alive(d, i) && c->ready && !c->termed &&
            (may_be_stopped || !c->stopped)) {
            candidates[n++] = i;
        }
    }
    return n ? candidates[chaos_rng_range(&d->rng, 0, n - 1)] : -1;
}

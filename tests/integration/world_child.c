/* A consumer in a process of its own, driven line by line through pipes (world.h). */
#include "world.h"

#include "faketime_shm.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void
pause_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *
world_child_program(void)
{
#ifdef MONGOQ_CHILD_CONSUMER_BIN
    const char *path = MONGOQ_CHILD_CONSUMER_BIN;
#else
    const char *path = MONGOQ_TEST_BIN_DIR "/tests/mongoq-child-consumer";
#endif
    return access(path, X_OK) == 0 ? path : NULL;
}

/* environ plus extra entries; the array is freed with bson_free, the strings are borrowed. */
static char **
child_env(const char *const *extra)
{
    size_t n = 0, k = 0;
    while (environ[n]) {
        n++;
    }
    while (extra && extra[k]) {
        k++;
    }
    char **env = bson_malloc0((n + k + 1) * sizeof *env);
    size_t out = 0;
    for (size_t i = 0; i < k; i++) {
        env[out++] = (char *)extra[i];
    }
    for (size_t i = 0; i < n; i++) {
        env[out++] = environ[i]; /* later duplicates lose: getenv returns the first */
    }
    return env;
}

void
world_child_start(world_child_t *child, world_t *w, const char *const *args, const char *const *env)
{
    const char *prog = world_child_program();
    cr_assert(prog != NULL, "the child consumer program was not built");
    const char *argv[32];
    int argc = 0;
    argv[argc++] = prog;
    argv[argc++] = w->uri;
    argv[argc++] = w->db;
    argv[argc++] = "jobs";
    for (int i = 0; args && args[i] && argc < 31; i++) {
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;
    char **envp = child_env(env);
    int in[2], out[2];
    cr_assert(pipe(in) == 0 && pipe(out) == 0);
    signal(SIGPIPE, SIG_IGN); /* a dead child must fail a test, not kill it */
    memset(child, 0, sizeof *child);
    child->pid = fork();
    cr_assert(child->pid >= 0);
    if (child->pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        close(in[0]);
        close(in[1]);
        close(out[0]);
        close(out[1]);
        mtest_clear_faketime_shm(getpid()); /* a skewed child runs under libfaketime */
        execve(prog, (char *const *)argv, envp);
        _exit(127);
    }
    bson_free(envp);
    close(in[0]);
    close(out[1]);
    child->to_child = in[1];
    child->from_child = out[0];
    const char *line = world_child_read(child, 15000);
    cr_assert(line != NULL && strncmp(line, "ready", 5) == 0, "child consumer did not start: %s",
              line ? line : "(no answer)");
}

const char *
world_child_read(world_child_t *child, int64_t timeout_ms)
{
    int64_t deadline = mtest_now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(child->buf, '\n', child->len);
        if (nl) {
            size_t n = (size_t)(nl - child->buf);
            size_t copy = n < sizeof child->line - 1 ? n : sizeof child->line - 1;
            memcpy(child->line, child->buf, copy);
            child->line[copy] = '\0';
            memmove(child->buf, nl + 1, child->len - n - 1);
            child->len -= n + 1;
            return child->line;
        }
        int64_t left = deadline - mtest_now_ms();
        if (left <= 0 || child->len == sizeof child->buf) {
            return NULL;
        }
        struct pollfd pfd = {.fd = child->from_child, .events = POLLIN};
        int r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return NULL;
        }
        ssize_t got =
            read(child->from_child, child->buf + child->len, sizeof child->buf - child->len);
        if (got <= 0) {
            return NULL;
        }
        child->len += (size_t)got;
    }
}

const char *
world_child_cmd(world_child_t *child, const char *cmd, int64_t timeout_ms)
{
    size_t n = strlen(cmd);
    cr_assert(write(child->to_child, cmd, n) == (ssize_t)n && write(child->to_child, "\n", 1) == 1,
              "cannot write to the child consumer");
    const char *line = world_child_read(child, timeout_ms);
    cr_assert(line != NULL, "no answer from the child consumer to \"%s\" in %" PRId64 " ms", cmd,
              timeout_ms);
    return line;
}

void
world_child_stop(world_child_t *child, bool hard)
{
    if (child->pid > 0 && !hard) {
        (void)!write(child->to_child, "quit\n", 5);
        /* Bounded: give it 10 s to shut down cleanly, then kill it. */
        int64_t deadline = mtest_now_ms() + 10000;
        while (child->pid > 0 && mtest_now_ms() < deadline) {
            if (waitpid(child->pid, NULL, WNOHANG) != 0) {
                child->pid = 0;
            } else {
                pause_ms(10);
            }
        }
    }
    if (child->pid > 0) {
        kill(child->pid, SIGKILL);
        waitpid(child->pid, NULL, 0);
        mtest_clear_faketime_shm(child->pid); /* killed: libfaketime could not clean up */
        child->pid = 0;
    }
    if (child->to_child >= 0) {
        close(child->to_child);
        child->to_child = -1;
    }
    if (child->from_child >= 0) {
        close(child->from_child);
        child->from_child = -1;
    }
}

bool
world_child_parse_msg(const char *line, world_child_msg_t *out)
{
    char hex[25];
    long long attempts, expires, seq;
    if (sscanf(line, "msg %24s %lld %lld %lld", hex, &attempts, &expires, &seq) != 4 ||
        !bson_oid_is_valid(hex, strlen(hex))) {
        return false;
    }
    bson_oid_init_from_string(&out->id, hex);
    out->attempts = (int32_t)attempts;
    out->lease_expires_at = expires;
    out->seq = seq;
    return true;
}

/*
 * The shard processes: with --shards N the router starts N mongoq-test-server processes itself,
 * each a one-member replica set named shard<k> on a free loopback port, with the no-op interval
 * and its own clock offset; it reads each one's URI from its first line of output. Whatever it
 * started it stops on every way out (mr_shards_stop from main, atexit and the signal path).
 */
#include "router.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t children[MR_MAX_SHARDS];
static int nchildren;

/* Reads the first line of fd within deadline_s seconds (a spawned server prints its URI). */
static bool
read_first_line(int fd, char *line, size_t cap)
{
    size_t len = 0;
    /* Bounded: at most cap bytes, and each read waits for the child (which exits on failure). */
    while (len + 1 < cap) {
        ssize_t n = read(fd, line + len, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        if (line[len] == '\n') {
            break;
        }
        len++;
    }
    line[len] = '\0';
    return len > 0;
}

/* "mongodb://127.0.0.1:PORT/?replicaSet=NAME" -> "127.0.0.1:PORT" */
static bool
host_from_uri(const char *uri, char *host, size_t cap)
{
    const char *p = strstr(uri, "://");
    if (!p) {
        return false;
    }
    p += 3;
    size_t n = strcspn(p, "/?,");
    if (n == 0 || n >= cap) {
        return false;
    }
    memcpy(host, p, n);
    host[n] = '\0';
    return true;
}

static bool
spawn_one(int k, bson_error_t *error)
{
    int out[2];
    char noop[16];
    char offset[32];
    char line[256];
    snprintf(mr_config.shard_set[k], sizeof mr_config.shard_set[k], "shard%d", k);
    snprintf(noop, sizeof noop, "%d", mr_config.noop_interval_secs);
    snprintf(offset, sizeof offset, "%lld", (long long)mr_config.shard_clock_offset_ms[k]);
    if (pipe(out) != 0) {
        return ms_set_error(error, 1, "pipe: %s", strerror(errno));
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(out[0]);
        close(out[1]);
        return ms_set_error(error, 1, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        /* A router killed with SIGKILL still takes its shards with it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        dup2(out[1], 1);
        close(out[0]);
        close(out[1]);
        execl(mr_config.server_bin, mr_config.server_bin, "--port", "0", "--bind", "127.0.0.1",
              "--replica-set", mr_config.shard_set[k], "--noop-interval", noop,
              "--clock-offset-ms", offset, (char *)NULL);
        _exit(127);
    }
    children[nchildren++] = pid;
    close(out[1]);
    bool ok = read_first_line(out[0], line, sizeof line) &&
              host_from_uri(line, mr_config.shard_host[k], sizeof mr_config.shard_host[k]);
    close(out[0]);
    if (!ok) {
        return ms_set_error(error, 1, "shard %d (%s) did not start", k, mr_config.server_bin);
    }
    return true;
}

bool
mr_shards_spawn(bson_error_t *error)
{
    for (int k = 0; k < mr_config.nshards; k++) {
        if (!spawn_one(k, error)) {
            return false;
        }
    }
    return true;
}

static void
sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void
mr_shards_stop(void)
{
    for (int k = 0; k < nchildren; k++) {
        kill(children[k], SIGTERM);
    }
    /* Bounded: 50 polls of 100 ms, then SIGKILL for whatever is left. */
    for (int round = 0; round < 50; round++) {
        bool alive = false;
        for (int k = 0; k < nchildren; k++) {
            if (children[k] > 0 && waitpid(children[k], NULL, WNOHANG) == 0) {
                alive = true;
            } else {
                children[k] = 0;
            }
        }
        if (!alive) {
            break;
        }
        sleep_ms(100);
    }
    for (int k = 0; k < nchildren; k++) {
        if (children[k] > 0) {
            kill(children[k], SIGKILL);
            waitpid(children[k], NULL, 0);
            children[k] = 0;
        }
    }
    nchildren = 0;
}

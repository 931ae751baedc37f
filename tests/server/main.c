/*
 * mongoq-test-server: a one-member MongoDB replica set for tests.
 *
 *   mongoq-test-server [--port N] [--bind ADDR] [--replica-set NAME] [--standalone]
 *                      [--dbpath DIR] [--history N] [--history-bytes N]
 *                      [--ttl-monitor-sleep-secs N]
 *                      [--pipeline-updates-as-replace]
 *                      [--noop-interval SECS] [--clock-offset-ms N]
 *
 * --noop-interval SECS: a no-op that advances change streams' postBatchResumeToken every SECS
 * seconds while nothing is written (mongod's periodicNoopIntervalSecs; noop.c). Off by default.
 * --clock-offset-ms N: this server's wall clock runs N ms ahead (negative: behind) of the
 * host's: $$NOW, localTime, wallTime and TTL expiry read it; cluster times do not (common.h).
 * A sharded test cluster (tests/router) gives each shard its own clock with it.
 *
 * --pipeline-updates-as-replace: every pipeline-style update is logged as a full replacement,
 * so change streams report it as a replace event with fullDocument. mongod 6.0 logs most
 * pipeline updates as deltas (update events) but may log one as a replacement when the delta
 * would be no smaller; this flag lets tests exercise a consumer's replace path.
 *
 * Once listening it prints its URI as the first line on stdout; logs go to stderr.
 * SIGTERM/SIGINT shut it down cleanly.
 */
#include "server-private.h"
#include "wire_frame.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

ms_config_t ms_config;

const char *
ms_host_and_port(void)
{
    return ms_config.host_port;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: mongoq-test-server [--port N] [--bind ADDR] [--replica-set NAME] "
            "[--standalone] [--dbpath DIR] [--history N] [--history-bytes N] "
            "[--ttl-monitor-sleep-secs N] [--pipeline-updates-as-replace] [--noop-interval SECS] "
            "[--clock-offset-ms N]\n"
            "  --history N        keep at most N operations of change-stream history (default: "
            "no count limit)\n"
            "  --history-bytes N  keep at most N bytes of history (default: as mongod sizes its "
            "oplog, 5%% of the free disk space of --dbpath or the working directory, at least "
            "990 MB, at most 50 GB)\n"
            "  --pipeline-updates-as-replace  report every pipeline-style update as a replace "
            "change event (with fullDocument), as mongod does when it logs an update as a full "
            "replacement\n");
}

static bool
parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || v < lo || v > hi) {
        return false;
    }
    *out = v;
    return true;
}

static bool
parse_args(int argc, char **argv)
{
    snprintf(ms_config.bind, sizeof ms_config.bind, "127.0.0.1");
    snprintf(ms_config.set_name, sizeof ms_config.set_name, "rs0");
    ms_config.ttl_sleep_secs = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n = 0;
        if (strcmp(a, "--standalone") == 0) {
            ms_config.standalone = true;
            continue;
        }
        if (strcmp(a, "--pipeline-updates-as-replace") == 0) {
            ms_config.pipeline_updates_as_replace = true;
            continue;
        }
        if (!v) {
            return false;
        }
        i++;
        if (strcmp(a, "--port") == 0 && parse_int(v, 0, 65535, &n)) {
            ms_config.port = (int)n;
        } else if (strcmp(a, "--bind") == 0 && strlen(v) < sizeof ms_config.bind) {
            snprintf(ms_config.bind, sizeof ms_config.bind, "%s", v);
        } else if (strcmp(a, "--replica-set") == 0 && *v && strlen(v) < sizeof ms_config.set_name) {
            snprintf(ms_config.set_name, sizeof ms_config.set_name, "%s", v);
        } else if (strcmp(a, "--dbpath") == 0 && *v) {
            ms_config.dbpath = v;
        } else if (strcmp(a, "--history") == 0 && parse_int(v, 0, 100000000, &n)) {
            ms_config.history = (size_t)n;
        } else if (strcmp(a, "--history-bytes") == 0 && parse_int(v, 1, (long long)1 << 50, &n)) {
            ms_config.history_bytes = (uint64_t)n;
        } else if (strcmp(a, "--ttl-monitor-sleep-secs") == 0 && parse_int(v, 1, 86400, &n)) {
            ms_config.ttl_sleep_secs = (int)n;
        } else if (strcmp(a, "--noop-interval") == 0 && parse_int(v, 0, 86400, &n)) {
            ms_config.noop_interval_secs = (int)n;
        } else if (strcmp(a, "--clock-offset-ms") == 0 &&
                   parse_int(v, -86400000LL * 365, 86400000LL * 365, &n)) {
            ms_clock_offset_ms = n;
        } else {
            return false;
        }
    }
    return true;
}

/* The term saved in dbpath by an earlier start, or 0 when there is none (or it is torn). */
static int64_t
read_saved_term(const char *dbpath)
{
    uint8_t be[8];
    int64_t term = 0;
    char *path = bson_strdup_printf("%s/term", dbpath);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && read(fd, be, sizeof be) == (ssize_t)sizeof be) {
        for (size_t i = 0; i < sizeof be; i++) {
            term = (int64_t)(((uint64_t)term << 8) | be[i]);
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    bson_free(path);
    return term > 0 ? term : 0;
}

/* Replaces dbpath/term atomically (write a temporary file, then rename it over). */
static bool
save_term(const char *dbpath, int64_t term, bson_error_t *error)
{
    bool ok = false;
    uint8_t be[8];
    char *tmp = bson_strdup_printf("%s/term.tmp", dbpath);
    char *path = bson_strdup_printf("%s/term", dbpath);
    for (size_t i = 0; i < sizeof be; i++) {
        be[i] = (uint8_t)((uint64_t)term >> (56 - 8 * i));
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, be, sizeof be) != (ssize_t)sizeof be || fsync(fd) != 0) {
        ms_set_error(error, MS_ERR_INTERNAL_ERROR, "cannot write %s", tmp);
        goto done;
    }
    if (rename(tmp, path) != 0) {
        ms_set_error(error, MS_ERR_INTERNAL_ERROR, "cannot rename %s", tmp);
        goto done;
    }
    ok = true;
done:
    if (fd >= 0) {
        close(fd);
    }
    bson_free(tmp);
    bson_free(path);
    return ok;
}

/*
 * Drivers (SDAM) ignore a primary whose electionId is lower than one they have seen: it must
 * grow across restarts, as mongod's does with every election. The term is the start time in
 * milliseconds, and with --dbpath at least one more than the term of the previous start (so a
 * clock stepping back cannot make it shrink). electionId is mongod's OID::fromTerm: 7fffffff,
 * then the term as a big-endian 64-bit integer.
 */
static bool
start_new_term(bson_error_t *error)
{
    int64_t term = ms_config.start_ms;
    if (ms_config.dbpath) {
        int64_t saved = read_saved_term(ms_config.dbpath);
        if (saved >= term) {
            term = saved + 1;
        }
        if (!save_term(ms_config.dbpath, term, error)) {
            return false;
        }
    }
    ms_config.term = term;
    uint8_t *b = ms_config.election_id.bytes;
    b[0] = 0x7f;
    b[1] = b[2] = b[3] = 0xff;
    for (int i = 0; i < 8; i++) {
        b[4 + i] = (uint8_t)((uint64_t)term >> (56 - 8 * i));
    }
    return true;
}

static void
on_signal(int sig)
{
    (void)sig;
    ms_net_stop();
}

static void
install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int
main(int argc, char **argv)
{
    bson_error_t error;
    if (!parse_args(argc, argv)) {
        usage();
        return 2;
    }
    ms_config.start_ms = ms_now_ms();
    install_signals();
    ms_store_init();
    if (!ms_oplog_init(ms_config.dbpath, ms_config.history, ms_config.history_bytes, &error)) {
        ms_log("cannot open the journal: %s", error.message);
        return 1;
    }
    /* After the journal's lock on dbpath: a second server must not move the term. */
    if (!start_new_term(&error)) {
        ms_log("cannot save the term: %s", error.message);
        return 1;
    }
    if (!ms_net_listen(&error)) {
        ms_log("%s", error.message);
        return 1;
    }
    snprintf(ms_config.host_port, sizeof ms_config.host_port, "%s:%d", ms_config.bind,
             ms_config.port);
    mtw_announce_uri(ms_host_and_port(), ms_config.standalone ? NULL : ms_config.set_name);
    ms_log("listening on %s%s", ms_host_and_port(), ms_config.standalone ? " (standalone)" : "");
    ms_ttl_start();
    ms_noop_start(ms_config.noop_interval_secs);
    ms_net_serve();
    ms_log("shutting down");
    ms_noop_stop();
    ms_ttl_stop();
    ms_changestream_wake_all();
    /* No write may be half-journaled: take the storage lock for good before closing. */
    ms_store_lock();
    ms_oplog_shutdown();
    ms_log("bye");
    return 0;
}

/*
 * mongoq-test-router: a mongos in front of mongoq-test-server shards, for tests (README.md).
 *
 *   mongoq-test-router --shards N --server-bin PATH [--noop-interval SECS]
 *                      [--shard-clock-offset-ms K=MS]... | --shard URI...
 *                      [--port N] [--bind ADDR] [--clock-offset-ms MS]... [--shardkeyless-writes]
 *
 * Each --clock-offset-ms is one mongos endpoint (its own port and clock) over the same shards
 * and routing table; without one, a single endpoint on the host's clock. Prints its URI ("mongodb://127.0.0.1:PORT[,127.0.0.1:PORT2...]/")
 * as the first line on stdout once it listens; SIGTERM/SIGINT stop it, and it stops the shards
 * it started on every way out.
 */
#include "router.h"
#include "wire_frame.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

mr_config_t mr_config;

static _Thread_local int current_mongos;

int
mr_mongos_current(void)
{
    return current_mongos;
}

void
mr_mongos_set_current(int mongos)
{
    current_mongos = mongos;
}

int64_t
mr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
           mr_config.mongos_clock_offset_ms[current_mongos];
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: mongoq-test-router (--shards N --server-bin PATH | --shard URI...)\n"
            "  [--port N] [--bind ADDR] [--noop-interval SECS] [--clock-offset-ms MS]...\n"
            "  [--shard-clock-offset-ms K=MS] [--shardkeyless-writes]\n");
}

static bool
parse_ll(const char *s, long long lo, long long hi, long long *out)
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
add_shard_uri(const char *uri)
{
    int k = mr_config.nshards;
    const char *p = strstr(uri, "://");
    if (k >= MR_MAX_SHARDS || !p) {
        return false;
    }
    p += 3;
    size_t n = strcspn(p, "/?,");
    const char *set = strstr(uri, "replicaSet=");
    if (n == 0 || n >= sizeof mr_config.shard_host[k]) {
        return false;
    }
    memcpy(mr_config.shard_host[k], p, n);
    snprintf(mr_config.shard_set[k], sizeof mr_config.shard_set[k], "%.*s",
             set ? (int)strcspn(set + 11, "&") : 0, set ? set + 11 : "");
    if (!set) {
        snprintf(mr_config.shard_set[k], sizeof mr_config.shard_set[k], "shard%d", k);
    }
    mr_config.nshards++;
    return true;
}

static bool
parse_shard_offset(const char *v)
{
    long long k = 0;
    long long ms = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", v);
    char *eq = strchr(buf, '=');
    if (!eq) {
        return false;
    }
    *eq = '\0';
    if (!parse_ll(buf, 0, MR_MAX_SHARDS - 1, &k) || !parse_ll(eq + 1, -86400000, 86400000, &ms)) {
        return false;
    }
    mr_config.shard_clock_offset_ms[k] = ms;
    return true;
}

static bool
parse_args(int argc, char **argv, int *spawn)
{
    long long n = 0;
    snprintf(mr_config.bind, sizeof mr_config.bind, "127.0.0.1");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--shardkeyless-writes") == 0) {
            mr_config.shardkeyless_writes = true;
            continue;
        }
        if (!v) {
            return false;
        }
        i++;
        if (strcmp(a, "--shards") == 0 && parse_ll(v, 1, MR_MAX_SHARDS, &n)) {
            *spawn = (int)n;
        } else if (strcmp(a, "--server-bin") == 0) {
            mr_config.server_bin = v;
        } else if (strcmp(a, "--shard") == 0 && add_shard_uri(v)) {
        } else if (strcmp(a, "--port") == 0 && parse_ll(v, 0, 65535, &n)) {
            mr_config.port = (int)n;
        } else if (strcmp(a, "--bind") == 0 && strlen(v) < sizeof mr_config.bind) {
            snprintf(mr_config.bind, sizeof mr_config.bind, "%s", v);
        } else if (strcmp(a, "--noop-interval") == 0 && parse_ll(v, 0, 86400, &n)) {
            mr_config.noop_interval_secs = (int)n;
        } else if (strcmp(a, "--clock-offset-ms") == 0 && mr_config.nmongos < MR_MAX_MONGOS &&
                   parse_ll(v, -86400000, 86400000, &n)) {
            mr_config.mongos_clock_offset_ms[mr_config.nmongos++] = n;
        } else if (strcmp(a, "--shard-clock-offset-ms") == 0 && parse_shard_offset(v)) {
        } else {
            return false;
        }
    }
    if (*spawn && (mr_config.nshards || !mr_config.server_bin)) {
        return false;
    }
    if (mr_config.nmongos == 0) {
        mr_config.nmongos = 1;
    }
    return *spawn || mr_config.nshards > 0;
}

static void
on_signal(int sig)
{
    (void)sig;
    mr_net_request_stop();
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
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int
main(int argc, char **argv)
{
    bson_error_t error;
    int spawn = 0;
    if (!parse_args(argc, argv, &spawn)) {
        usage();
        return 2;
    }
    install_signals();
    /* Every exit from here on stops the shards this process started (none when given URIs). */
    atexit(mr_shards_stop);
    if (spawn) {
        mr_config.nshards = spawn;
        if (!mr_shards_spawn(&error)) {
            fprintf(stderr, "mongoq-test-router: %s\n", error.message);
            return 1;
        }
    }
    mr_catalog_init();
    if (!mr_net_listen(&error)) {
        fprintf(stderr, "mongoq-test-router: %s\n", error.message);
        return 1;
    }
    mtw_announce_uri(mr_config.host_port, NULL);
    mr_net_serve();
    mr_net_close_clients();
    mr_shards_stop();
    return 0;
}

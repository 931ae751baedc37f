/* Random numbers, clocks, checksums, record files and options shared by the chaos roles. */
#include "chaos.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- random numbers --------------------------------------------------------------------------- */

static uint64_t
splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void
chaos_rng_seed(chaos_rng_t *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        rng->s[i] = splitmix64(&seed);
    }
}

static uint64_t
rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t
chaos_rng_next(chaos_rng_t *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

int64_t
chaos_rng_range(chaos_rng_t *rng, int64_t lo, int64_t hi)
{
    if (hi <= lo) {
        return lo;
    }
    uint64_t span = (uint64_t)(hi - lo) + 1;
    return lo + (int64_t)(chaos_rng_next(rng) % span);
}

bool
chaos_rng_percent(chaos_rng_t *rng, int percent)
{
    return chaos_rng_range(rng, 0, 99) < percent;
}

/* ---- clocks ----------------------------------------------------------------------------------- */

static int64_t
clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
chaos_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t
chaos_real_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

void
chaos_sleep_ms(int64_t ms)
{
    if (ms <= 0) {
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

uint64_t
chaos_checksum(const uint8_t *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ data[i]) * 0x100000001b3ULL;
    }
    return h;
}

/* ---- record files ----------------------------------------------------------------------------- */

bool
chaos_log_open(chaos_log_t *log, const char *path)
{
    log->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log->fd < 0) {
        fprintf(stderr, "chaos: cannot open %s: %s\n", path, strerror(errno));
        return false;
    }
    return true;
}

void
chaos_log_close(chaos_log_t *log)
{
    if (log->fd >= 0) {
        close(log->fd);
        log->fd = -1;
    }
}

/* One line, one write(2): lines of concurrent writers never interleave on an O_APPEND file. */
void
chaos_log_line(chaos_log_t *log, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 2;
    for (size_t i = 0; i < len; i++) {
        if (line[i] == '\n' || line[i] == '\r') {
            line[i] = ' '; /* error texts must not split a record */
        }
    }
    line[len++] = '\n';
    for (int tries = 0; tries < 100; tries++) {
        ssize_t w = write(log->fd, line, len);
        if (w >= 0 || errno != EINTR) {
            break;
        }
    }
}

/* ---- options ---------------------------------------------------------------------------------- */

static bool
parse_one(const chaos_opt_t *opt, const char *value)
{
    if (opt->type == CHAOS_OPT_STR) {
        *(const char **)opt->out = value;
        return true;
    }
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || !*value || *end) {
        return false;
    }
    *(int64_t *)opt->out = (int64_t)v;
    return true;
}

bool
chaos_parse_opts(int argc, char **argv, int first, const chaos_opt_t *opts, size_t n_opts)
{
    for (int i = first; i < argc; i += 2) {
        const char *arg = argv[i];
        const chaos_opt_t *found = NULL;
        for (size_t k = 0; k < n_opts && strncmp(arg, "--", 2) == 0; k++) {
            if (strcmp(arg + 2, opts[k].name) == 0) {
                found = &opts[k];
            }
        }
        if (!found || i + 1 >= argc || !parse_one(found, argv[i + 1])) {
            fprintf(stderr, "chaos: bad option %s%s%s\n", arg, i + 1 < argc ? " " : "",
                    i + 1 < argc ? argv[i + 1] : "");
            return false;
        }
    }
    return true;
}

/* ---- payloads, queues, pools ------------------------------------------------------------------ */

bool
chaos_payload_check(const bson_t *payload, int64_t *seq, bool *sum_ok)
{
    bson_iter_t it;
    int64_t sum = 0;
    *seq = -1;
    *sum_ok = false;
    if (!payload || !bson_iter_init_find(&it, payload, CHAOS_F_SEQ) ||
        !BSON_ITER_HOLDS_INT64(&it)) {
        return false;
    }
    *seq = bson_iter_int64(&it);
    if (!bson_iter_init_find(&it, payload, CHAOS_F_SUM) || !BSON_ITER_HOLDS_INT64(&it)) {
        return false;
    }
    sum = bson_iter_int64(&it);
    if (!bson_iter_init_find(&it, payload, CHAOS_F_DATA) || !BSON_ITER_HOLDS_BINARY(&it)) {
        return false;
    }
    bson_subtype_t subtype;
    uint32_t len = 0;
    const uint8_t *data = NULL;
    bson_iter_binary(&it, &subtype, &len, &data);
    *sum_ok = (uint64_t)sum == chaos_checksum(data, len);
    return true;
}

void
chaos_queue_opts(mongoq_queue_opts_t *opts, int64_t lease_ms)
{
    opts->ack_mode = MONGOQ_ACK_KEEP;
    opts->retention_s = 7 * 86400; /* the TTL monitor must not remove what the check reads */
    opts->lease_ms = lease_ms;
    opts->max_attempts = 1000; /* retries and lost leases must never bury a message */
    opts->backoff_base_ms = 20;
    opts->backoff_cap_ms = 500;
}

mongoc_client_pool_t *
chaos_pool_new(const char *uri_str, const char *appname)
{
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &error);
    if (!uri) {
        fprintf(stderr, "chaos: bad URI %s: %s\n", uri_str, error.message);
        return NULL;
    }
    mongoc_uri_set_appname(uri, appname);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_uri_destroy(uri);
    return pool;
}

mongoq_queue_t *
chaos_queue_open(mongoc_client_pool_t *pool, const char *db, const char *coll,
                 const mongoq_queue_opts_t *opts, int64_t timeout_ms, bson_error_t *error)
{
    int64_t deadline = chaos_mono_ms() + timeout_ms;
    mongoq_queue_t *queue = NULL;
    for (int i = 0; i < 1000 && !queue; i++) {
        queue = mongoq_queue_new(pool, db, coll, opts, error);
        if (!queue && ((error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_INVALID_ARG) ||
                       chaos_mono_ms() >= deadline)) {
            break; /* a bad argument will not get better; the server had its chance */
        }
        if (!queue) {
            chaos_sleep_ms(200); /* the server restarts or a fault is active: try again */
        }
    }
    return queue;
}

void
chaos_announce_ready(void)
{
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    int null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd >= 0) {
        dup2(null_fd, STDOUT_FILENO);
        close(null_fd);
    }
}

static void
quiet_log(mongoc_log_level_t level, const char *domain, const char *message, void *user_data)
{
    if (level <= MONGOC_LOG_LEVEL_WARNING) {
        mongoc_log_default_handler(level, domain, message, user_data);
    }
}

void
chaos_mongoc_init(void)
{
    mongoc_init();
    mongoc_log_set_handler(quiet_log, NULL); /* the monitors' debug lines would drown the rest */
}

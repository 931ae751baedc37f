/*
 * mongoq-rate-minute URI [--seconds S] [--rate R] [--burst B] [--group-rate R --groups G]
 *
 * The rate-limit accuracy run of issue 14: "the limit is met within 10% over a minute with 8
 * consumers in 3 processes". Opens a fresh database on URI (loopback), fills one queue, starts 3
 * consumer processes (this program again, --child) of 3, 3 and 2 threads that claim and ack
 * for S seconds (default 60), then reads the claims' times on the server's clock (each claim's
 * $$NOW, lease_expires_at - lease_ms, written by the children to files) and prints the achieved
 * rate over the S seconds from the first claim and the worst 10-second window, against the
 * limit. Queue-wide (--rate, default 50/s, --burst default 10) or per group (--group-rate R
 * --groups G: G FIFO groups, each limited to R/s, no queue-wide limit). Exit status 0 when the
 * achieved rate is within 10% of the limit, 1 otherwise, 2 on a usage or server error.
 */
#include <mongoq/mongoq.h>

#include <inttypes.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define LEASE_MS 60000
#define PROCESSES 3
#define MAX_GROUPS 100
#define WINDOW_MS 10000

static const int THREADS[PROCESSES] = {3, 3, 2};

typedef struct {
    const char *uri;
    char db[64];
    int seconds;
    double rate;
    int burst;
    double group_rate;
    int groups;
} run_t;

typedef struct {
    mongoq_queue_t *queue;
    int64_t stop_ms; /* this process's monotonic clock */
    FILE *out;
    pthread_mutex_t *mu;
} thread_arg_t;

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
die(const char *what, const bson_error_t *error)
{
    fprintf(stderr, "mongoq-rate-minute: %s: %s\n", what, error ? error->message : "");
    exit(2);
}

static mongoq_queue_t *
open_queue(const run_t *r, mongoc_client_pool_t **pool_out)
{
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(r->uri, &error);
    if (!uri) {
        die("uri", &error);
    }
    *pool_out = mongoc_client_pool_new(uri);
    mongoc_uri_destroy(uri);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.lease_ms = LEASE_MS;
    if (r->groups > 0) {
        opts.group_concurrency = 1;
        opts.group_rate_limit = r->group_rate;
        opts.group_rate_burst = r->burst;
    } else {
        opts.rate_limit = r->rate;
        opts.rate_burst = r->burst;
    }
    mongoq_queue_t *q = mongoq_queue_new(*pool_out, r->db, "jobs", &opts, &error);
    if (!q) {
        die("mongoq_queue_new", &error);
    }
    return q;
}

static void *
consume(void *p)
{
    thread_arg_t *a = p;
    bson_error_t error;
    mongoq_consumer_t *c = mongoq_consumer_new(a->queue, NULL, &error);
    if (!c) {
        die("consumer", &error);
    }
    while (mono_ms() < a->stop_ms) {
        mongoq_message_t *msg = NULL;
        if (!mongoq_consumer_claim(c, 200, &msg, &error)) {
            die("claim", &error);
        }
        if (!msg) {
            continue;
        }
        const char *group = mongoq_message_group(msg);
        pthread_mutex_lock(a->mu);
        fprintf(a->out, "%" PRId64 " %s\n", mongoq_message_lease_expires_at(msg) - LEASE_MS,
                group ? group : "-");
        pthread_mutex_unlock(a->mu);
        if (!mongoq_message_ack(msg, &error)) {
            die("ack", &error);
        }
        mongoq_message_destroy(msg);
    }
    mongoq_consumer_destroy(c);
    return NULL;
}

/* --child: THREADS threads claiming and acking for `ms`, claims written to path. */
static int
child_main(run_t *r, int threads, int64_t ms, const char *path)
{
    mongoc_client_pool_t *pool;
    mongoq_queue_t *q = open_queue(r, &pool);
    FILE *out = fopen(path, "w");
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_t tids[8];
    thread_arg_t args[8];
    if (!out || threads < 1 || threads > 8) {
        die("child arguments", NULL);
    }
    int64_t stop = mono_ms() + ms;
    for (int i = 0; i < threads; i++) {
        args[i] = (thread_arg_t){.queue = q, .stop_ms = stop, .out = out, .mu = &mu};
        pthread_create(&tids[i], NULL, consume, &args[i]);
    }
    for (int i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
    }
    fclose(out);
    mongoq_queue_destroy(q);
    mongoc_client_pool_destroy(pool);
    return 0;
}

/* Fills the queue: as many messages as the limit lets through in the run, plus a fifth. */
static void
fill(const run_t *r, mongoq_queue_t *q)
{
    bson_error_t error;
    double total_rate = r->groups > 0 ? r->group_rate * r->groups : r->rate;
    int64_t n = (int64_t)(total_rate * r->seconds * 1.2) + r->burst * (r->groups + 1);
    int groups = r->groups > 0 ? r->groups : 1;
    int64_t per = n / groups + 1;
    bson_t payloads[100];
    const bson_t *ptrs[100];
    for (int i = 0; i < 100; i++) {
        bson_init(&payloads[i]);
        BSON_APPEND_INT32(&payloads[i], "i", i);
        ptrs[i] = &payloads[i];
    }
    for (int g = 0; g < groups; g++) {
        char name[32];
        snprintf(name, sizeof name, "g%03d", g);
        mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
        eopts.group = r->groups > 0 ? name : NULL;
        for (int64_t done = 0; done < per; done += 100) {
            size_t k = per - done < 100 ? (size_t)(per - done) : 100;
            if (!mongoq_enqueue_many(q, ptrs, k, &eopts, NULL, NULL, &error)) {
                die("enqueue", &error);
            }
        }
    }
    for (int i = 0; i < 100; i++) {
        bson_destroy(&payloads[i]);
    }
}

typedef struct {
    int64_t at;
    int group; /* -1: none */
} claim_t;

static int
cmp_claim(const void *a, const void *b)
{
    int64_t x = ((const claim_t *)a)->at, y = ((const claim_t *)b)->at;
    return (x > y) - (x < y);
}

/* Claims of group g (-2: all) in [t0, t0 + span): count, and the worst WINDOW_MS window. */
static void
measure(const claim_t *c, size_t n, int g, int64_t t0, int64_t span, int64_t *count, int64_t *worst)
{
    *count = 0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        if ((g != -2 && c[i].group != g) || c[i].at < t0 || c[i].at >= t0 + span) {
            continue;
        }
        ++*count;
        int64_t in = 0;
        for (size_t j = i; j < n && c[j].at < c[i].at + WINDOW_MS; j++) {
            in += g == -2 || c[j].group == g;
        }
        if (c[i].at + WINDOW_MS <= t0 + span && in > *worst) {
            *worst = in;
        }
    }
}

static size_t
read_claims(const char *paths[PROCESSES], claim_t **out)
{
    size_t n = 0, cap = 1024;
    claim_t *c = malloc(cap * sizeof *c);
    for (int p = 0; p < PROCESSES; p++) {
        FILE *f = fopen(paths[p], "r");
        char group[64];
        long long at;
        while (f && fscanf(f, "%lld %63s", &at, group) == 2) {
            if (n == cap) {
                cap *= 2;
                c = realloc(c, cap * sizeof *c);
            }
            c[n].at = at;
            c[n].group = group[0] == 'g' ? atoi(group + 1) : -1;
            n++;
        }
        if (f) {
            fclose(f);
        }
        unlink(paths[p]);
    }
    qsort(c, n, sizeof *c, cmp_claim);
    *out = c;
    return n;
}

static int
report(const run_t *r, claim_t *c, size_t n)
{
    int64_t span = (int64_t)r->seconds * 1000, count, worst;
    if (n == 0) {
        die("no claims", NULL);
    }
    int64_t t0 = c[0].at;
    bool per_group = r->groups > 0;
    double limit = per_group ? r->group_rate : r->rate;
    double worst_ratio = 0, low_ratio = 1e9;
    int groups = per_group ? r->groups : 1;
    printf("%s limit %.1f/s, burst %d, %d s from the first claim (server clock), 8 consumers in "
           "3 processes (3+3+2 threads)\n",
           per_group ? "per-group" : "queue-wide", limit, r->burst, r->seconds);
    for (int g = 0; g < groups; g++) {
        measure(c, n, per_group ? g : -2, t0, span, &count, &worst);
        double achieved = (double)count * 1000.0 / (double)span;
        double window_rate = (double)worst / (WINDOW_MS / 1000.0);
        if (achieved / limit > worst_ratio) {
            worst_ratio = achieved / limit;
        }
        if (achieved / limit < low_ratio) {
            low_ratio = achieved / limit;
        }
        if (!per_group || g < 3 || g == groups - 1) {
            char name[16];
            snprintf(name, sizeof name, per_group ? "group g%03d" : "all", g);
            printf("  %s: %" PRId64 " claims, %.2f/s (%+.1f%% of the limit); worst 10 s "
                   "window %" PRId64 " claims = %.1f/s (%+.1f%%; bound burst + 10 s x limit = "
                   "%.0f)\n",
                   name, count, achieved, (achieved / limit - 1) * 100, worst, window_rate,
                   (window_rate / limit - 1) * 100, r->burst + limit * WINDOW_MS / 1000.0);
        }
    }
    if (per_group) {
        measure(c, n, -2, t0, span, &count, &worst);
        printf("  all %d groups: %" PRId64 " claims, %.2f/s (limit %d x %.1f = %.1f/s)\n", groups,
               count, (double)count * 1000.0 / (double)span, groups, limit, limit * groups);
    }
    bool ok = worst_ratio <= 1.10 && low_ratio >= 0.90;
    printf("achieved / limit: %.3f to %.3f: %s\n", low_ratio, worst_ratio,
           ok ? "within 10%" : "NOT within 10%");
    return ok ? 0 : 1;
}

static int
parent_main(run_t *r, const char *self)
{
    mongoc_client_pool_t *pool;
    mongoq_queue_t *q = open_queue(r, &pool);
    fill(r, q);
    char paths[PROCESSES][128], threads[8], ms[32], seconds[16], rate[32], burst[16], grate[32],
        groups[16];
    const char *path_ptrs[PROCESSES];
    pid_t pids[PROCESSES];
    snprintf(ms, sizeof ms, "%d", (r->seconds + 4) * 1000);
    snprintf(seconds, sizeof seconds, "%d", r->seconds);
    snprintf(rate, sizeof rate, "%.6f", r->rate);
    snprintf(burst, sizeof burst, "%d", r->burst);
    snprintf(grate, sizeof grate, "%.6f", r->group_rate);
    snprintf(groups, sizeof groups, "%d", r->groups);
    for (int p = 0; p < PROCESSES; p++) {
        snprintf(paths[p], sizeof paths[p], "/tmp/mongoq-rate-minute-%d-%d.txt", (int)getpid(), p);
        path_ptrs[p] = paths[p];
        snprintf(threads, sizeof threads, "%d", THREADS[p]);
        char *argv[] = {
            (char *)self, "--child",      (char *)r->uri, r->db,      threads, ms,
            paths[p],     "--seconds",    seconds,        "--rate",   rate,    "--burst",
            burst,        "--group-rate", grate,          "--groups", groups,  NULL};
        if (posix_spawn(&pids[p], self, NULL, NULL, argv, environ) != 0) {
            die("posix_spawn", NULL);
        }
    }
    int failed = 0;
    for (int p = 0; p < PROCESSES; p++) {
        int status = 0;
        waitpid(pids[p], &status, 0);
        failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    if (failed) {
        die("a consumer process failed", NULL);
    }
    claim_t *claims;
    size_t n = read_claims(path_ptrs, &claims);
    int rc = report(r, claims, n);
    free(claims);
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_database_t *db = mongoc_client_get_database(client, r->db);
    mongoc_database_drop(db, NULL);
    mongoc_database_destroy(db);
    mongoc_client_pool_push(pool, client);
    mongoq_queue_destroy(q);
    mongoc_client_pool_destroy(pool);
    return rc;
}

int
main(int argc, char **argv)
{
    run_t r = {.seconds = 60, .rate = 50, .burst = 10};
    int first = 1, child_threads = 0;
    int64_t child_ms = 0;
    const char *child_path = NULL;
    if (argc > 6 && !strcmp(argv[1], "--child")) {
        r.uri = argv[2];
        snprintf(r.db, sizeof r.db, "%s", argv[3]);
        child_threads = atoi(argv[4]);
        child_ms = atoll(argv[5]);
        child_path = argv[6];
        first = 7;
    } else if (argc > 1) {
        r.uri = argv[1];
        first = 2;
        snprintf(r.db, sizeof r.db, "rate_minute_%d", (int)getpid());
    } else {
        fprintf(stderr,
                "usage: %s URI [--seconds S] [--rate R] [--burst B] [--group-rate R "
                "--groups G]\n",
                argv[0]);
        return 2;
    }
    for (int i = first; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seconds")) {
            r.seconds = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--rate")) {
            r.rate = atof(argv[i + 1]);
        } else if (!strcmp(argv[i], "--burst")) {
            r.burst = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--group-rate")) {
            r.group_rate = atof(argv[i + 1]);
        } else if (!strcmp(argv[i], "--groups")) {
            r.groups = atoi(argv[i + 1]);
        }
    }
    if (r.seconds < 10 || r.seconds > 3600 || r.groups < 0 || r.groups > MAX_GROUPS ||
        (r.groups > 0 && r.group_rate <= 0) || (r.groups == 0 && r.rate <= 0)) {
        fprintf(stderr, "mongoq-rate-minute: bad arguments\n");
        return 2;
    }
    mongoc_init();
    int rc = child_path ? child_main(&r, child_threads, child_ms, child_path)
                        : parent_main(&r, "/proc/self/exe");
    mongoc_cleanup();
    return rc;
}

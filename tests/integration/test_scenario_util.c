#include "test_scenario_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

void
scen_setup(scen_t *s, const char *prefix, const mongoq_queue_opts_t *opts, bool with_counter)
{
    memset(s, 0, sizeof *s);
    s->db = mtest_db_name(prefix);
    s->pool = mtest_pool_new(s->db);
    if (with_counter) {
        s->counter = mtest_counter_new();
        mtest_counter_attach_pool(s->counter, s->pool);
    }
    s->client = mtest_client_new(NULL);
    bson_error_t error;
    s->queue = mongoq_queue_new(s->pool, s->db, "jobs", opts, &error);
    cr_assert(s->queue != NULL, "mongoq_queue_new: %s", error.message);
}

void
scen_teardown(scen_t *s)
{
    /* Only this test's connections are targeted, but never leave a fail point armed. */
    if (s->fail_point_set) {
        mtest_fail_point(s->client, "\"off\"", NULL);
    }
    mongoq_queue_destroy(s->queue);
    mongoc_client_pool_destroy(s->pool);
    mtest_counter_destroy(s->counter);
    mtest_db_drop(s->client, s->db);
    mongoc_client_destroy(s->client);
    bson_free(s->db);
    memset(s, 0, sizeof *s);
}

int64_t
scen_fail_point(scen_t *s, const char *mode_json, const char *data_fields_json)
{
    s->fail_point_set = true;
    return mtest_fail_point_app(s->client, s->db, mode_json, data_fields_json);
}

int64_t
scen_fail_point_off(scen_t *s, int64_t count)
{
    s->fail_point_set = false;
    return mtest_fail_point(s->client, "\"off\"", NULL) - count;
}

void
scen_payload(bson_t *payload, int64_t seq)
{
    bson_init(payload);
    BSON_APPEND_INT64(payload, "seq", seq);
}

int64_t
scen_payload_seq(const bson_t *payload)
{
    bson_iter_t it;
    if (payload && bson_iter_init_find(&it, payload, "seq") && BSON_ITER_HOLDS_NUMBER(&it)) {
        return bson_iter_as_int64(&it);
    }
    return -1;
}

void
scen_enqueue_seq(scen_t *s, int64_t seq)
{
    bson_t payload;
    bson_error_t error;
    scen_payload(&payload, seq);
    bool ok = mongoq_enqueue(s->queue, &payload, NULL, NULL, &error);
    bson_destroy(&payload);
    cr_assert(ok, "enqueue: %s", error.message);
}

void
scen_enqueue_n(scen_t *s, int n)
{
    for (int i = 0; i < n; i++) {
        scen_enqueue_seq(s, i);
    }
}

mongoq_consumer_t *
scen_consumer(scen_t *s, int64_t lease_ms)
{
    bson_error_t error;
    mongoq_consumer_opts_t opts = MONGOQ_CONSUMER_OPTS_INIT;
    opts.lease_ms = lease_ms;
    mongoq_consumer_t *consumer = mongoq_consumer_new(s->queue, &opts, &error);
    cr_assert(consumer != NULL, "consumer: %s", error.message);
    return consumer;
}

void
scen_assert_empty(scen_t *s)
{
    mongoq_stats_t st = MONGOQ_STATS_INIT;
    bson_error_t error;
    cr_assert(mongoq_queue_stats(s->queue, &st, &error), "stats: %s", error.message);
    cr_assert(st.ready == 0 && st.delayed == 0 && st.processing == 0 && st.done == 0 &&
                  st.dead == 0,
              "queue not empty: ready %" PRId64 " delayed %" PRId64 " processing %" PRId64
              " done %" PRId64 " dead %" PRId64,
              st.ready, st.delayed, st.processing, st.done, st.dead);
    mongoc_collection_t *coll = mongoc_client_get_collection(s->client, s->db, "jobs");
    int64_t n = mtest_count(coll, "{}");
    mongoc_collection_destroy(coll);
    cr_assert(n == 0, "%" PRId64 " documents left in the collection", n);
}

static void
pause_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int64_t
scen_reap_until(scen_t *s, int64_t expected, int64_t timeout_ms)
{
    int64_t total = 0;
    int64_t deadline = mtest_now_ms() + timeout_ms;
    for (;;) {
        int64_t n = 0;
        bson_error_t error;
        cr_assert(mongoq_queue_reap(s->queue, &n, &error), "reap: %s", error.message);
        total += n;
        if (total >= expected || mtest_now_ms() >= deadline) {
            return total;
        }
        pause_ms(50); /* poll interval of an awaited condition (lease expiry on the server) */
    }
}

bool
scen_find_doc(scen_t *s, const bson_oid_t *id, bson_t *doc)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(s->client, s->db, "jobs");
    bool got = mtest_find_by_id(coll, id, doc);
    mongoc_collection_destroy(coll);
    return got;
}

/* ---- child consumer ----------------------------------------------------------------------- */

const char *
scen_child_program(void)
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
scen_child_start(scen_child_t *child, scen_t *s, const char *const *args, const char *const *env)
{
    const char *prog = scen_child_program();
    cr_assert(prog != NULL, "the child consumer program was not built");
    const char *argv[32];
    int argc = 0;
    argv[argc++] = prog;
    argv[argc++] = mtest_uri();
    argv[argc++] = s->db;
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
        execve(prog, (char *const *)argv, envp);
        _exit(127);
    }
    bson_free(envp);
    close(in[0]);
    close(out[1]);
    child->to_child = in[1];
    child->from_child = out[0];
    const char *line = scen_child_read(child, 15000);
    cr_assert(line != NULL && strncmp(line, "ready", 5) == 0, "child consumer did not start: %s",
              line ? line : "(no answer)");
}

const char *
scen_child_read(scen_child_t *child, int64_t timeout_ms)
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
scen_child_cmd(scen_child_t *child, const char *cmd, int64_t timeout_ms)
{
    size_t n = strlen(cmd);
    cr_assert(write(child->to_child, cmd, n) == (ssize_t)n && write(child->to_child, "\n", 1) == 1,
              "cannot write to the child consumer");
    const char *line = scen_child_read(child, timeout_ms);
    cr_assert(line != NULL, "no answer from the child consumer to \"%s\" in %" PRId64 " ms", cmd,
              timeout_ms);
    return line;
}

void
scen_child_stop(scen_child_t *child, bool hard)
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
scen_parse_msg(const char *line, scen_child_msg_t *out)
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

#include "testutil.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

/* uri_str with appname (may be NULL) set; asserts it parses. */
static mongoc_uri_t *
parse_uri(const char *uri_str, const char *appname)
{
    bson_error_t error;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_str, &error);
    cr_assert(uri != NULL, "bad URI %s: %s", uri_str, error.message);
    if (appname) {
        mongoc_uri_set_appname(uri, appname);
    }
    return uri;
}

mongoc_client_pool_t *
mtest_pool_for(const char *uri_str, const char *appname)
{
    mongoc_uri_t *uri = parse_uri(uri_str, appname);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    cr_assert(pool != NULL);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_uri_destroy(uri);
    return pool;
}

mongoc_client_pool_t *
mtest_pool_new(const char *appname)
{
    return mtest_pool_for(mtest_uri(), appname);
}

mongoc_client_t *
mtest_client_for(const char *uri_str, const char *appname)
{
    mongoc_uri_t *uri = parse_uri(uri_str, appname);
    mongoc_client_t *client = mongoc_client_new_from_uri(uri);
    cr_assert(client != NULL);
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_uri_destroy(uri);
    return client;
}

mongoc_client_t *
mtest_client_new(const char *appname)
{
    return mtest_client_for(mtest_uri(), appname);
}

char *
mtest_db_name(const char *prefix)
{
    static atomic_int counter;
    return bson_strdup_printf("%s_%d_%d", prefix, (int)getpid(), atomic_fetch_add(&counter, 1));
}

void
mtest_db_drop(mongoc_client_t *client, const char *db)
{
    bson_error_t error;
    mongoc_database_t *database = mongoc_client_get_database(client, db);
    bool ok = mongoc_database_drop(database, &error);
    mongoc_database_destroy(database);
    cr_assert(ok, "dropDatabase %s: %s", db, error.message);
}

static int64_t
clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mtest_now_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

int64_t
mtest_wall_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

void
mtest_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
}

void
mtest_deadline(int64_t timeout_ms, struct timespec *ts)
{
    int64_t at = mtest_now_ms() + timeout_ms;
    ts->tv_sec = (time_t)(at / 1000);
    ts->tv_nsec = (long)(at % 1000) * 1000000L;
}

bool
mtest_wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms)
{
    int64_t deadline = mtest_now_ms() + timeout_ms;
    for (;;) {
        if (cond(ctx)) {
            return true;
        }
        if (mtest_now_ms() >= deadline) {
            return cond(ctx);
        }
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

bool
mtest_command(mongoc_client_t *client, const char *db, const char *cmd_json, bson_t *reply,
              bson_error_t *error)
{
    bson_t *cmd = bson_new_from_json((const uint8_t *)cmd_json, -1, error);
    if (!cmd) {
        if (reply) {
            bson_init(reply);
        }
        return false;
    }
    bool ok = mongoc_client_command_simple(client, db, cmd, NULL, reply, error);
    bson_destroy(cmd);
    return ok;
}

int64_t
mtest_server_now_ms(mongoc_client_t *client)
{
    bson_t reply;
    bson_error_t error;
    bool ok = mtest_command(client, "admin", "{\"hello\": 1}", &reply, &error);
    cr_assert(ok, "hello: %s", error.message);
    int64_t now = mtest_doc_date(&reply, "localTime");
    bson_destroy(&reply);
    cr_assert(now != INT64_MIN, "hello has no localTime");
    return now;
}

int64_t
mtest_count(mongoc_collection_t *coll, const char *filter_json)
{
    bson_error_t error;
    bson_t *filter = bson_new_from_json((const uint8_t *)filter_json, -1, &error);
    cr_assert(filter, "bad filter %s: %s", filter_json, error.message);
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    cr_assert(n >= 0, "count: %s", error.message);
    bson_destroy(filter);
    return n;
}

bool
mtest_find_by_id(mongoc_collection_t *coll, const bson_oid_t *id, bson_t *doc)
{
    bson_t filter = BSON_INITIALIZER;
    const bson_t *found;
    bson_error_t error;
    BSON_APPEND_OID(&filter, "_id", id);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    bool got = mongoc_cursor_next(cursor, &found);
    if (got) {
        bson_copy_to(found, doc);
    } else {
        bson_init(doc);
    }
    cr_assert_not(mongoc_cursor_error(cursor, &error), "find: %s", error.message);
    mongoc_cursor_destroy(cursor);
    bson_destroy(&filter);
    return got;
}

const char *
mtest_doc_str(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_UTF8(&it)
               ? bson_iter_utf8(&it, NULL)
               : NULL;
}

int64_t
mtest_doc_date(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME(&it)
               ? bson_iter_date_time(&it)
               : INT64_MIN;
}

int64_t
mtest_doc_int(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : INT64_MIN;
}

#define MTEST_MAX_NAMES 64
struct mtest_counter_t {
    pthread_mutex_t mu;
    int64_t total;
    int n;
    char *names[MTEST_MAX_NAMES];
    int64_t counts[MTEST_MAX_NAMES];
    bool keep;          /* mtest_counter_keep_commands */
    bson_t **commands;  /* copies, oldest first */
    size_t ncommands, cap;
};

static void
keep_command(mtest_counter_t *c, const bson_t *command)
{
    if (c->ncommands == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->commands = bson_realloc(c->commands, sizeof *c->commands * c->cap);
    }
    c->commands[c->ncommands++] = bson_copy(command);
}

static void
drop_commands(mtest_counter_t *c)
{
    for (size_t i = 0; i < c->ncommands; i++) {
        bson_destroy(c->commands[i]);
    }
    bson_free(c->commands);
    c->commands = NULL;
    c->ncommands = c->cap = 0;
}

static void
on_started(const mongoc_apm_command_started_t *event)
{
    mtest_counter_t *c = mongoc_apm_command_started_get_context(event);
    const char *name = mongoc_apm_command_started_get_command_name(event);
    pthread_mutex_lock(&c->mu);
    c->total++;
    int i;
    for (i = 0; i < c->n; i++) {
        if (strcmp(c->names[i], name) == 0) {
            break;
        }
    }
    if (i == c->n && c->n < MTEST_MAX_NAMES) {
        c->names[c->n++] = bson_strdup(name);
    }
    if (i < c->n) {
        c->counts[i]++;
    }
    if (c->keep) {
        keep_command(c, mongoc_apm_command_started_get_command(event));
    }
    pthread_mutex_unlock(&c->mu);
}

mtest_counter_t *
mtest_counter_new(void)
{
    mtest_counter_t *c = bson_malloc0(sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    return c;
}

static mongoc_apm_callbacks_t *
counter_callbacks(void)
{
    mongoc_apm_callbacks_t *cbs = mongoc_apm_callbacks_new();
    mongoc_apm_set_command_started_cb(cbs, on_started);
    return cbs;
}

void
mtest_counter_attach_pool(mtest_counter_t *counter, mongoc_client_pool_t *pool)
{
    mongoc_apm_callbacks_t *cbs = counter_callbacks();
    cr_assert(mongoc_client_pool_set_apm_callbacks(pool, cbs, counter));
    mongoc_apm_callbacks_destroy(cbs);
}

void
mtest_counter_attach_client(mtest_counter_t *counter, mongoc_client_t *client)
{
    mongoc_apm_callbacks_t *cbs = counter_callbacks();
    cr_assert(mongoc_client_set_apm_callbacks(client, cbs, counter));
    mongoc_apm_callbacks_destroy(cbs);
}

int64_t
mtest_counter_get(mtest_counter_t *c, const char *name)
{
    int64_t n = 0;
    pthread_mutex_lock(&c->mu);
    if (!name) {
        n = c->total;
    } else {
        for (int i = 0; i < c->n; i++) {
            if (strcmp(c->names[i], name) == 0) {
                n = c->counts[i];
            }
        }
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

void
mtest_counter_reset(mtest_counter_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->total = 0;
    memset(c->counts, 0, sizeof c->counts);
    drop_commands(c);
    pthread_mutex_unlock(&c->mu);
}

void
mtest_counter_keep_commands(mtest_counter_t *c)
{
    pthread_mutex_lock(&c->mu);
    c->keep = true;
    pthread_mutex_unlock(&c->mu);
}

size_t
mtest_counter_commands(mtest_counter_t *c, const char *name, bson_t **out, size_t max)
{
    size_t n = 0;
    bson_iter_t it;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->ncommands && n < max; i++) {
        if (!name || (bson_iter_init(&it, c->commands[i]) && bson_iter_next(&it) &&
                      strcmp(bson_iter_key(&it), name) == 0)) {
            out[n++] = bson_copy(c->commands[i]);
        }
    }
    pthread_mutex_unlock(&c->mu);
    return n;
}

void
mtest_counter_destroy(mtest_counter_t *c)
{
    if (!c) {
        return;
    }
    for (int i = 0; i < c->n; i++) {
        bson_free(c->names[i]);
    }
    drop_commands(c);
    pthread_mutex_destroy(&c->mu);
    bson_free(c);
}

#include <signal.h>
#include <stdio.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#ifndef MONGOQ_TEST_SERVER_BIN
#define MONGOQ_TEST_SERVER_BIN "mongoq-test-server"
#endif

bool
mtest_can_spawn(void)
{
    const char *no = getenv("MONGOQ_TEST_NO_SPAWN");
    return !(no && *no && strcmp(no, "0") != 0) && access(MONGOQ_TEST_SERVER_BIN, X_OK) == 0;
}

static bool
answers_hello(const char *uri_str)
{
    mongoc_uri_t *uri = mongoc_uri_new(uri_str);
    if (!uri) {
        return false;
    }
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 200);
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 200);
    mongoc_client_t *client = mongoc_client_new_from_uri(uri);
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    bool ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, NULL, NULL);
    bson_destroy(&cmd);
    mongoc_client_destroy(client);
    mongoc_uri_destroy(uri);
    return ok;
}

bool
mtest_server_start(mtest_server_t *server, const char *const *extra_args, int port)
{
    int fds[2];
    cr_assert(pipe(fds) == 0);
    const char *argv[32];
    char port_str[16];
    int argc = 0;
    snprintf(port_str, sizeof port_str, "%d", port);
    argv[argc++] = MONGOQ_TEST_SERVER_BIN;
    argv[argc++] = "--port";
    argv[argc++] = port_str;
    for (int i = 0; extra_args && extra_args[i] && argc < 30; i++) {
        argv[argc++] = extra_args[i];
    }
    argv[argc] = NULL;
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* The server must not outlive the test (a timed-out test is killed by Criterion), and
         * must not hold the test runner's pipes open: log to a file, keep no inherited fds. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fds[1], STDOUT_FILENO);
        int log = open("/tmp/mongoq-test-server-private.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (log >= 0) {
            dup2(log, STDERR_FILENO);
        }
        for (int fd = 3; fd < 1024; fd++) {
            close(fd);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    memset(server, 0, sizeof *server);
    server->pid = pid;
    /* The server prints its URI as the first line on stdout once it listens. */
    FILE *out = fdopen(fds[0], "r");
    bool got = out && fgets(server->uri, sizeof server->uri, out) != NULL;
    if (out) {
        fclose(out);
    }
    if (!got) {
        mtest_server_stop(server, true);
        return false;
    }
    server->uri[strcspn(server->uri, "\r\n")] = '\0';
    const char *colon = strrchr(server->uri, ':');
    server->port = colon ? atoi(colon + 1) : 0;
    int64_t deadline = mtest_now_ms() + 10000;
    while (!answers_hello(server->uri)) {
        if (mtest_now_ms() > deadline) {
            mtest_server_stop(server, true);
            return false;
        }
    }
    return true;
}

void
mtest_server_stop(mtest_server_t *server, bool hard)
{
    if (server->pid > 0) {
        kill(server->pid, hard ? SIGKILL : SIGTERM);
        waitpid(server->pid, NULL, 0);
        server->pid = 0;
    }
}

char *
mtest_tmpdir(const char *prefix)
{
    char *tmpl = bson_strdup_printf("/tmp/mongoq-%s-XXXXXX", prefix);
    cr_assert(mkdtemp(tmpl) != NULL, "mkdtemp %s", tmpl);
    return tmpl;
}

void
mtest_tmpdir_remove(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    while (d && (ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") != 0 && strcmp(ent->d_name, "..") != 0) {
            char *path = bson_strdup_printf("%s/%s", dir, ent->d_name);
            unlink(path);
            bson_free(path);
        }
    }
    if (d) {
        closedir(d);
    }
    rmdir(dir);
    bson_free(dir);
}

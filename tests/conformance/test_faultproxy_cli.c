/*
 * mongoq-fault-proxy, the standalone binary: its ready line, its control port driving a lost
 * reply and a partition for a libmongoc client in front of MONGOQ_TEST_URI, several control
 * connections, bad arguments, and the ways it stops (shutdown, SIGTERM, end of stdin).
 * $MONGOQ_FAULT_PROXY_BIN overrides the binary, e.g. with one built under ThreadSanitizer
 * (which Criterion itself cannot run under): a sanitizer report makes it exit non-zero.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MONGOQ_FAULT_PROXY_BIN
#error "MONGOQ_FAULT_PROXY_BIN must name the mongoq-fault-proxy binary"
#endif

#define WAIT_MS 5000

typedef struct {
    pid_t pid;
    int stdin_fd;
    int stdout_fd;
    unsigned port;
    unsigned control_port;
    char uri[512];
    int status;
} cli_t;

/* Reads one line (without '\n') from fd within WAIT_MS; false on end of file or timeout. */
static bool
read_line(int fd, char *line, size_t size)
{
    size_t len = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int64_t deadline = mtest_now_ms() + WAIT_MS;
    while (len + 1 < size && mtest_now_ms() < deadline) {
        if (poll(&pfd, 1, (int)(deadline - mtest_now_ms())) != 1 || read(fd, line + len, 1) != 1) {
            break;
        }
        if (line[len] == '\n') {
            line[len] = '\0';
            return true;
        }
        len++;
    }
    line[len] = '\0';
    return false;
}

static const char *
proxy_bin(void)
{
    const char *bin = getenv("MONGOQ_FAULT_PROXY_BIN");
    return bin && *bin ? bin : MONGOQ_FAULT_PROXY_BIN;
}

/* Spawns the binary with args (NULL-terminated) and stdin/stdout on pipes. */
static void
cli_spawn(cli_t *cli, const char *const *args)
{
    const char *argv[16] = {proxy_bin()};
    int in[2], out[2];
    for (size_t i = 0; args[i] && i < 14; i++) {
        argv[i + 1] = args[i];
    }
    cr_assert(pipe(in) == 0 && pipe(out) == 0);
    memset(cli, 0, sizeof *cli);
    cli->pid = fork();
    cr_assert(cli->pid >= 0);
    if (cli->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    cli->stdin_fd = in[1];
    cli->stdout_fd = out[0];
}

/* Spawns it in front of upstream and reads its ready line. */
static void
cli_start(cli_t *cli, const char *upstream)
{
    const char *args[] = {"--upstream", upstream, "--exit-on-stdin-eof", NULL};
    char line[700];
    cli_spawn(cli, args);
    cr_assert(read_line(cli->stdout_fd, line, sizeof line), "no ready line: '%s'", line);
    int n =
        sscanf(line, "port=%u control_port=%u uri=%511s", &cli->port, &cli->control_port, cli->uri);
    cr_assert(n >= 2 && cli->port > 0 && cli->control_port > 0, "ready line '%s'", line);
}

static bool
exited(void *ctx)
{
    cli_t *cli = ctx;
    return waitpid(cli->pid, &cli->status, WNOHANG) == cli->pid;
}

/* Waits for the process to end by itself; returns its exit code. */
static int
cli_wait(cli_t *cli)
{
    bool gone = mtest_wait_until(exited, cli, WAIT_MS);
    if (!gone) {
        kill(cli->pid, SIGKILL);
        waitpid(cli->pid, &cli->status, 0);
    }
    if (cli->stdin_fd >= 0) {
        close(cli->stdin_fd);
    }
    close(cli->stdout_fd);
    cr_assert(gone, "mongoq-fault-proxy did not exit");
    return WIFEXITED(cli->status) ? WEXITSTATUS(cli->status) : 128 + WTERMSIG(cli->status);
}

static int
control_connect(const cli_t *cli)
{
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)cli->control_port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert(fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0, "%s",
              strerror(errno));
    return fd;
}

/* Sends a command line, reads the reply line, asserts it starts with expected_prefix. */
static void
control(int fd, const char *command, const char *expected_prefix)
{
    char *line = bson_strdup_printf("%s\n", command);
    char reply[1024];
    cr_assert_eq(send(fd, line, strlen(line), MSG_NOSIGNAL), (ssize_t)strlen(line));
    cr_assert(read_line(fd, reply, sizeof reply), "no reply to '%s'", command);
    cr_assert(strncmp(reply, expected_prefix, strlen(expected_prefix)) == 0,
              "'%s' answered '%s', expected '%s...'", command, reply, expected_prefix);
    bson_free(line);
}

static bool
ping(mongoc_client_pool_t *pool, bson_error_t *error)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    bool ok = mtest_command(client, "admin", "{\"ping\": 1}", NULL, error);
    mongoc_client_pool_push(pool, client);
    return ok;
}

static bool
insert_one(mongoc_client_pool_t *pool, const char *db, bson_error_t *error)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, "c");
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_INT32(&doc, "_id", 1);
    bool ok = mongoc_collection_insert_one(coll, &doc, NULL, NULL, error);
    bson_destroy(&doc);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(pool, client);
    return ok;
}

TestSuite(faultproxy_cli, .timeout = 60);

Test(faultproxy_cli, control_port_drives_a_lost_reply_and_a_partition)
{
    cli_t cli;
    bson_error_t error;
    char *db = mtest_db_name("fp_cli");
    cli_start(&cli, mtest_uri());
    cr_assert_str_neq(cli.uri, "", "a URI upstream prints the proxied URI");
    char *uri = bson_strdup_printf("%s&retryWrites=true&serverSelectionTimeoutMS=1000"
                                   "&heartbeatFrequencyMS=500",
                                   cli.uri);
    mongoc_client_pool_t *pool = mtest_pool_for(uri, "fp-cli");
    int fd = control_connect(&cli);
    control(fd, "drop-reply insert 1", "ok rule=1");
    cr_assert(insert_one(pool, db, &error), "retried after the lost reply: %s", error.message);
    control(fd, "hits 1", "ok hits=1");
    control(fd, "count insert", "ok count=2");
    control(fd, "partition on", "ok");
    cr_assert_not(ping(pool, &error), "partitioned: the pooled connection was reset");
    cr_assert_not(ping(pool, &error), "partitioned: no new connection");
    control(fd, "partition off", "ok");
    cr_assert(ping(pool, &error), "healed: %s", error.message);
    control(fd, "stats", "ok accepted=");
    control(fd, "shutdown", "ok");
    cr_assert_eq(cli_wait(&cli), 0);
    close(fd);
    mongoc_client_pool_destroy(pool);
    mongoc_client_t *direct = mtest_client_new("fp-cli-direct");
    mongoc_collection_t *coll = mongoc_client_get_collection(direct, db, "c");
    cr_assert_eq(mtest_count(coll, "{}"), 1, "stored once");
    mongoc_collection_destroy(coll);
    mtest_db_drop(direct, db);
    mongoc_client_destroy(direct);
    bson_free(uri);
    bson_free(db);
}

Test(faultproxy_cli, several_control_connections_and_quit)
{
    cli_t cli;
    char long_line[1024];
    cli_start(&cli, "127.0.0.1:1");
    cr_assert_str_eq(cli.uri, "", "no URI upstream, no uri=");
    int a = control_connect(&cli);
    int b = control_connect(&cli);
    control(a, "hang find 1 100", "ok rule=1");
    control(b, "hits 1", "ok hits=0");
    control(a, "quit", "ok");
    control(b, "bogus", "error unknown command");
    /* Exactly a full buffer and no newline: all of it read, so the close is not a reset. */
    memset(long_line, 'x', sizeof long_line);
    cr_assert_eq(send(b, long_line, sizeof long_line, MSG_NOSIGNAL), (ssize_t)sizeof long_line);
    cr_assert(read_line(b, long_line, sizeof long_line));
    cr_assert_str_eq(long_line, "error line too long");
    int c = control_connect(&cli);
    control(c, "stats", "ok ");
    close(a);
    close(b);
    close(c);
    close(cli.stdin_fd); /* --exit-on-stdin-eof */
    cli.stdin_fd = -1;
    cr_assert_eq(cli_wait(&cli), 0);
}

Test(faultproxy_cli, sigterm_stops_it)
{
    cli_t cli;
    cli_start(&cli, "localhost:1");
    cr_assert_eq(kill(cli.pid, SIGTERM), 0);
    cr_assert_eq(cli_wait(&cli), 0);
}

Test(faultproxy_cli, bad_arguments_are_refused)
{
    const char *usage_errors[][4] = {{"--listen", "127.0.0.1:0", NULL},
                                     {"--upstream", "127.0.0.1:1", "--listen", "10.0.0.1:0"},
                                     {"--upstream", "127.0.0.1:1", "--control", "0.0.0.0:0"},
                                     {"--upstream", NULL}};
    for (size_t i = 0; i < sizeof usage_errors / sizeof usage_errors[0]; i++) {
        const char *args[5] = {0};
        memcpy(args, usage_errors[i], sizeof usage_errors[i]);
        cli_t cli;
        cli_spawn(&cli, args);
        cr_assert_eq(cli_wait(&cli), 2, "usage error %zu", i);
    }
    const char *not_loopback[] = {"--upstream", "10.0.0.1:27017", NULL};
    cli_t cli;
    cli_spawn(&cli, not_loopback);
    cr_assert_eq(cli_wait(&cli), 1);
}

/*
 * mongoq: the command-line tool. `mongoq [--uri URI] [--db DB] --queue NAME COMMAND [ARGS]`.
 * This file holds the command table, the help texts, the connection and the dispatch; each
 * command group has a file of its own (README.md in this folder).
 */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define DEFAULT_URI "mongodb://127.0.0.1:27017"
#define DEFAULT_DB "mongoq"
#define DEFAULT_TIMEOUT_MS 2000

/* The commands, one row each (README.md: adding a command). */
static const cli_command_t COMMANDS[] = {
    {"stats", "counts per status, the oldest due message's age, paused or not", "", "json",
     "Reads the queue's counts from its indexes and its pause state (mongoq_queue_stats).", true,
     cli_cmd_stats},
    {"ls", "list messages by status, paged", "",
     "json status limit sort page due not-due dedup claimed-by error",
     "Lists messages without claiming them, in pages read from where the last page ended.\n"
     "  --status S      ready, processing, done, dead or all (default all)\n"
     "  --limit N       messages to show, 1 to 1000 (default 20)\n"
     "  --sort ORDER    claim (priority, run_at; default), run_at, or lease (processing only)\n"
     "  --page TOKEN    continue after the page that printed TOKEN\n"
     "  --due, --not-due   only ready messages whose run_at has come / is still ahead\n"
     "  --dedup KEY, --claimed-by NAME, --error TEXT (last_error contains TEXT)",
     true, cli_cmd_ls},
    {"show", "one message: payload, attempts, lease, errors history", "ID", "json",
     "Prints every field of the message with _id ID (24 hex digits).", true, cli_cmd_show},
    {"enqueue", "add messages: a JSON payload, or one per line on stdin", "[JSON | -]",
     "json priority delay dedup id",
     "Enqueues the JSON document given, or one document per line read from stdin (no\n"
     "argument, or -). Every line is parsed before anything is written.\n"
     "  --priority N    higher is claimed first (default 0)\n"
     "  --delay MS      due MS milliseconds from now\n"
     "  --dedup KEY     dedup key (one payload only)\n"
     "  --id HEX        the message's _id (one payload only; enqueueing it again is a no-op)",
     true, cli_cmd_enqueue},
    {"redrive", "dead messages back to ready", "[ID]", "json all dry-run batch",
     "Moves the dead message ID, or every dead message with --all, back to ready with its\n"
     "attempts reset. --dry-run counts what would move and writes nothing.\n"
     "  --batch N       --all in batches of N ids (1 to 1000), each message redriven by id;\n"
     "                  on a terminal this is the default (N 1000) and shows\n"
     "                  \"redrove 12000/100000\"; elsewhere one call unless --batch is given.\n"
     "                  Stopped part way (Ctrl-C, an error), what moved is counted and\n"
     "                  running it again moves the rest; at most the count found at the start.",
     true, cli_cmd_redrive},
    {"retry", "make a dead or delayed message ready now", "ID", "json",
     "A dead message goes back to ready (attempts reset); a delayed one becomes due now.", true,
     cli_cmd_retry},
    {"purge", "delete messages by status", "STATUS", "json yes batch",
     "Deletes every message of STATUS (ready, processing, done, dead or all). Asks on a\n"
     "terminal; elsewhere --yes is required. A pause stays.\n"
     "  --batch N       in batches of N ids (1 to 1000), each deleted by id and status; on a\n"
     "                  terminal this is the default (N 1000) and shows \"purged 12000/100000\";\n"
     "                  elsewhere one deleteMany unless --batch is given. Stopped part way\n"
     "                  (Ctrl-C, an error), what was deleted is counted and running it again\n"
     "                  deletes the rest; at most the count found at the start.",
     true, cli_cmd_purge},
    {"pause", "stop every consumer and worker from claiming", "", "json",
     "Pauses the queue for every process (mongoq_queue_pause): within their wake-up latency\n"
     "no consumer or worker claims anything; messages already claimed are still acked,\n"
     "retried, failed and extended, and expired leases are still reaped. The state is kept in\n"
     "the database: it outlives restarts and purges. Idempotent. A collection without\n"
     "mongoq's claim index is refused (exit 4), so a mistyped --queue changes nothing.",
     true, cli_cmd_pause},
    {"resume", "let a paused queue's consumers and workers claim again", "", "json",
     "Resumes the queue (mongoq_queue_resume): waiting consumers and workers wake within their\n"
     "wake-up latency. Idempotent; a collection that is not a queue is refused (exit 4).",
     true, cli_cmd_resume},
    {"watch", "live view: depth, rates, oldest due, consumers, paused", "", "json count interval",
     "Refreshes every --interval MS (default 1000) until interrupted or --count N refreshes.\n"
     "On a terminal the view is redrawn; otherwise one timestamped line per refresh (--json:\n"
     "one JSON document per line). Rates come from the queue's change stream.\n"
     "consumers: the distinct claimed_by of processing messages (from an index).\n"
     "seen_1m: those and the claimed_by of messages of any status updated in the last 60 s\n"
     "  (acked messages are deleted unless the queue keeps them, MONGOQ_ACK_KEEP, so a\n"
     "  consumer that only acks is seen while it holds a message).\n"
     "  updated_at has no index, so this one is a collection scan, bounded: at most 10000\n"
     "  matching messages and 500 ms of server time, read at most every 5 s (\"-\" when cut\n"
     "  off or refused).",
     true, cli_cmd_watch},
    {"doctor", "check the server and the queue; exit 0 ok, 1 warnings, 2 errors", "", "json",
     "Runs mongoq_queue_check: server version and topology, change streams, pipeline updates\n"
     "and $$NOW, clock skew, indexes, the claim's plan, write concern, paused, backlog, dead\n"
     "letters.",
     true, cli_cmd_doctor},
    {"metrics", "Prometheus text: once, or served on --listen HOST:PORT", "", "listen count",
     "Prints the queue's metrics (mongoq/metrics.h, the series read from the database) once,\n"
     "or with --listen HOST:PORT serves GET /metrics (HTTP/1.0) until interrupted or --count\n"
     "N requests were answered. Port 0 picks a free port; the first line printed names it.",
     true, cli_cmd_metrics},
    {"schedules", "periodic schedules: cron, zone, next run, catch-up, counts", "", "json",
     "Lists the queue's schedules (mongoq/schedule.h, mongoq_schedule_list) by name: the cron\n"
     "expression and its time zone, the next run in ISO 8601 in UTC and in the schedule's zone\n"
     "(with its UTC offset: the wall-clock time the slot names), the catch-up policy after\n"
     "downtime (latest; skip:GRACE, slots later than GRACE are skipped; all:LIMIT, at most\n"
     "LIMIT missed slots), the slots enqueued and skipped so far, and the latest slot enqueued.\n"
     "Read-only: schedules are set with the library, and enqueued by a scheduler.",
     true, cli_cmd_schedules},
    {"groups", "message groups: places held, in flight and waiting per group", "",
     "json limit page",
     "Lists the queue's message groups (mongoq/group.h, mongoq_queue_groups) in name order: the\n"
     "messages holding a place (ACTIVE: admitted, claimed, or dead and blocking the group), those\n"
     "claimed now (IN_FLIGHT), those waiting for a place in enqueue order (WAITING), the group's\n"
     "concurrency limit and its partition. A group exists while it has such messages.\n"
     "  --limit N       groups to show, 1 to 1000 (default 100)\n"
     "  --page NAME     continue after the group NAME (the last line of a page names it)",
     true, cli_cmd_groups},
    {"serve", "a web dashboard of the database's queues, with a JSON API", "",
     "listen listen-any allow-actions token count",
     "Serves a dashboard (one page, polled every 2 s) and its JSON API (/api/...) on --listen\n"
     "HOST:PORT (default 127.0.0.1:8080) until interrupted, or until --count N requests were\n"
     "answered. Port 0 picks a free port; the first line printed names the address.\n"
     "  --listen-any     allow an address that is not loopback (the dashboard shows payloads)\n"
     "  --allow-actions  allow redrive, retry, delete, purge, pause and resume (POST); each needs\n"
     "                   --token T in the header X-Mongoq-Token and no foreign Origin, and is\n"
     "                   logged on stderr. Without it the dashboard is read-only.",
     false, cli_cmd_serve},
    {"queues", "the queues of a database (collections with mongoq's claim index)", "", "json",
     "Lists the collections of --db that carry the index mongoq_claim, with their counts.", false,
     cli_cmd_queues},
};
#define N_COMMANDS (sizeof COMMANDS / sizeof COMMANDS[0])

static volatile sig_atomic_t stopping;

static void
on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

bool
cli_stopping(void)
{
    return stopping != 0;
}

/* ---- errors ------------------------------------------------------------------------------- */

int
cli_fail(const cli_t *cli, int code, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fprintf(stderr, "mongoq: %s%s", cli && cli->command ? cli->command : "",
            cli && cli->command ? ": " : "");
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    return code;
}

int
cli_code_of(const bson_error_t *error)
{
    if (error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_NOT_FOUND) {
        return CLI_NOT_FOUND;
    }
    if (error->domain == MONGOQ_ERROR_DOMAIN && error->code == MONGOQ_ERROR_INVALID_ARG) {
        return CLI_USAGE;
    }
    return CLI_FAILED;
}

int
cli_fail_error(const cli_t *cli, const char *what, const bson_error_t *error)
{
    /* One line: the driver's message may hold newlines. */
    char message[sizeof error->message];
    bson_strncpy(message, error->message, sizeof message);
    for (char *c = message; *c; c++) {
        if (*c == '\n' || *c == '\r') {
            *c = ' ';
        }
    }
    /* No "ls: ls: browse: ...": what is said once, and the library's own prefix is dropped. */
    const char *text = message, *colon = strstr(message, ": ");
    if (colon && colon - message < 24 && !memchr(message, ' ', (size_t)(colon - message))) {
        text = colon + 2;
    }
    bool same = cli && cli->command && strcmp(what, cli->command) == 0;
    if (error->domain == MONGOQ_ERROR_DOMAIN) {
        return cli_fail(cli, cli_code_of(error), "%s%s%s (%s)", same ? "" : what,
                        same ? "" : ": ", text, mongoq_error_name((int)error->code));
    }
    return cli_fail(cli, cli_code_of(error), "%s%s%s", same ? "" : what, same ? "" : ": ", text);
}

/* ---- connection ----------------------------------------------------------------------------- */

/* The URI with short timeouts unless it sets them: an unreachable server never hangs a command. */
static bool
make_uri(cli_t *cli)
{
    bson_error_t error;
    const char *text = cli->args.uri ? cli->args.uri : getenv("MONGOQ_URI");
    cli->uri = mongoc_uri_new_with_error(text && *text ? text : DEFAULT_URI, &error);
    if (!cli->uri) {
        cli_fail(cli, CLI_USAGE, "bad URI: %s", error.message);
        return false;
    }
    int32_t timeout = cli->args.timeout_ms > 0 ? (int32_t)cli->args.timeout_ms : DEFAULT_TIMEOUT_MS;
    const char *keys[] = {MONGOC_URI_SERVERSELECTIONTIMEOUTMS, MONGOC_URI_CONNECTTIMEOUTMS};
    for (size_t i = 0; i < 2; i++) {
        if (cli->args.timeout_ms > 0 || !mongoc_uri_has_option(cli->uri, keys[i])) {
            mongoc_uri_set_option_as_int32(cli->uri, keys[i], timeout);
        }
    }
    if (!mongoc_uri_has_option(cli->uri, MONGOC_URI_APPNAME)) {
        mongoc_uri_set_appname(cli->uri, "mongoq-cli");
    }
    return true;
}

bool
cli_connect(cli_t *cli)
{
    if (cli->pool) {
        return true;
    }
    if (!cli->uri && !make_uri(cli)) {
        return false;
    }
    cli->pool = mongoc_client_pool_new(cli->uri);
    if (!cli->pool) {
        cli_fail(cli, CLI_USAGE, "the URI's options are invalid");
        return false;
    }
    mongoc_client_pool_set_error_api(cli->pool, MONGOC_ERROR_API_VERSION_2);
    return true;
}

mongoc_client_t *
cli_pop(const cli_t *cli, bson_error_t *error)
{
    mongoc_client_t *client = mongoc_client_pool_pop(cli->pool);
    if (!client) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_NO_CLIENT,
                       "no connection from the pool: all maxPoolSize connections are in use and "
                       "none came back within waitQueueTimeoutMS (raise them in the URI)");
    }
    return client;
}

mongoc_client_t *
cli_own_client(const cli_t *cli, bson_error_t *error)
{
    mongoc_client_t *client = mongoc_client_new_from_uri_with_error(cli->uri, error);
    if (client) {
        mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    }
    return client;
}

static const char *
db_name(cli_t *cli)
{
    if (cli->args.db) {
        return cli->args.db;
    }
    const char *from_uri = cli->uri ? mongoc_uri_get_database(cli->uri) : NULL;
    return from_uri && *from_uri ? from_uri : DEFAULT_DB;
}

mongoq_queue_t *
cli_queue(cli_t *cli)
{
    if (cli->queue) {
        return cli->queue;
    }
    if (!cli_connect(cli)) {
        return NULL;
    }
    bson_error_t error;
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.skip_ensure_indexes = true; /* the tool never changes a queue's indexes */
    opts.no_reaper = true;
    opts.no_change_stream = true;
    cli->queue = mongoq_queue_new(cli->pool, db_name(cli), cli->args.queue, &opts, &error);
    if (!cli->queue) {
        cli_fail_error(cli, "cannot open the queue", &error);
    }
    return cli->queue;
}

/* ---- help --------------------------------------------------------------------------------- */

static void
usage(FILE *out)
{
    fprintf(out, "usage: mongoq [--uri URI] [--db DB] --queue NAME COMMAND [ARGS] [--json]\n\n"
                 "Inspect and steer a mongoq queue (a MongoDB collection).\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        fprintf(out, "  %-9s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    }
    fprintf(out,
            "\nglobal options:\n"
            "  --uri URI         server (default $MONGOQ_URI, else " DEFAULT_URI ")\n"
            "  --db DB           database (default the URI's, else " DEFAULT_DB ")\n"
            "  --queue NAME      the queue's collection\n"
            "  --timeout-ms MS   server selection and connect timeout (default 2000)\n"
            "  --help            this text; `mongoq COMMAND --help` for a command's\n"
            "\nexit codes: 0 ok, 1 doctor warnings, 2 doctor errors, 3 failed (server\n"
            "unreachable, server error, interrupted), 4 no such message or queue, 5 purge\n"
            "declined, 64 usage (unknown option, bad JSON, bad id, unknown status).\n"
            "See mongoq(1).\n");
}

static void
command_help(const cli_command_t *cmd)
{
    printf("usage: mongoq [--uri URI] [--db DB] %s%s%s%s\n\n%s\n\n%s\n", 
           cmd->needs_queue ? "--queue NAME " : "", cmd->name, *cmd->usage ? " " : "",
           cmd->usage, cmd->summary, cmd->help);
    if (*cmd->options) {
        printf("\noptions: ");
        const char *o = cmd->options;
        while (*o) {
            size_t n = strcspn(o, " ");
            printf("--%.*s%s", (int)n, o, o[n] ? " " : "");
            o += n + (o[n] ? 1 : 0);
        }
        printf("\n");
    }
}

static const cli_command_t *
find_command(const char *name)
{
    for (size_t i = 0; name && i < N_COMMANDS; i++) {
        if (strcmp(COMMANDS[i].name, name) == 0) {
            return &COMMANDS[i];
        }
    }
    return NULL;
}

/* ---- main ----------------------------------------------------------------------------------- */

static int
run(cli_t *cli, int argc, char **argv)
{
    const char *name = NULL;
    int rc = cli_parse(argc, argv, &cli->args, &name);
    if (rc != CLI_OK) {
        return rc;
    }
    const cli_command_t *cmd = find_command(name);
    if (!name) {
        usage(cli->args.help ? stdout : stderr);
        return cli->args.help ? CLI_OK : CLI_USAGE;
    }
    if (!cmd) {
        usage(stderr);
        return cli_fail(NULL, CLI_USAGE, "unknown command \"%s\"", name);
    }
    cli->command = cmd->name;
    if (cli->args.help) {
        command_help(cmd);
        return CLI_OK;
    }
    if ((rc = cli_check_options(argc, argv, cmd)) != CLI_OK) {
        return rc;
    }
    if (cmd->needs_queue && !cli->args.queue) {
        return cli_fail(cli, CLI_USAGE, "--queue NAME is required");
    }
    if (!make_uri(cli)) {
        return CLI_USAGE;
    }
    /* positional[0] is the command itself. */
    return cmd->run(cli);
}

/*
 * libmongoc's own log lines (warnings such as a failed endSessions at exit) would break the
 * tool's one-line errors on stderr: only its errors pass, unless MONGOQ_DRIVER_LOG is set, which
 * passes everything to libmongoc's default handler. (A warning libmongoc prints while it loads,
 * before main, such as "Falling back to malloc for counters" when /dev/shm/mongoc-PID is left
 * from a killed process of the same pid, is out of reach; MONGOC_DISABLE_SHM=1 avoids it.)
 */
static void
driver_log(mongoc_log_level_t level, const char *domain, const char *message, void *user_data)
{
    bool all = *(const bool *)user_data;
    if (all || level <= MONGOC_LOG_LEVEL_ERROR) {
        mongoc_log_default_handler(level, domain, message, NULL);
    }
}

int
main(int argc, char **argv)
{
    static bool all_driver_logs;
    cli_t cli = {.out = stdout};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    all_driver_logs = getenv("MONGOQ_DRIVER_LOG") != NULL;
    mongoc_log_set_handler(driver_log, &all_driver_logs);
    mongoc_init();
    int rc = run(&cli, argc, argv);
    mongoq_queue_destroy(cli.queue);
    mongoc_client_pool_destroy(cli.pool);
    mongoc_uri_destroy(cli.uri);
    mongoc_cleanup();
    fflush(stdout);
    return rc;
}

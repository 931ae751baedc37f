/*
 * The mongoq tool: what every command file shares. See README.md in this folder for how the
 * pieces fit and how to add a command.
 */
#ifndef MONGOQ_CLI_H
#define MONGOQ_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <mongoq/mongoq.h>

/* Exit codes (also in mongoq.1 and `mongoq --help`). */
enum {
    CLI_OK = 0,        /* success; doctor: every check ok */
    CLI_WARNINGS = 1,  /* doctor: warnings, no errors */
    CLI_ERRORS = 2,    /* doctor: errors */
    CLI_FAILED = 3,    /* the operation failed: unreachable server, server or driver error */
    CLI_NOT_FOUND = 4, /* no such message (show, retry, redrive ID) or queue (pause, resume) */
    CLI_DECLINED = 5,  /* purge not confirmed */
    CLI_USAGE = 64     /* bad command line: unknown option, bad JSON, bad id, unknown status */
};

#define CLI_MAX_POSITIONAL 8

/* Every option of every command; a command accepts the ones its row names. */
typedef struct {
    /* global */
    const char *uri, *db, *queue;
    int64_t timeout_ms;
    bool help;
    /* per command */
    bool json, all, dry_run, yes, due, not_due, allow_actions, listen_any;
    int64_t limit, priority, delay_ms, count, interval_ms, batch;
    bool has_priority, has_delay, has_count, has_interval, has_limit, has_batch;
    const char *status, *sort, *page, *dedup, *id, *claimed_by, *error_text, *listen, *token;
    const char *positional[CLI_MAX_POSITIONAL];
    int npositional;
} cli_args_t;

/* What a command runs with: its arguments and the connection, opened on first use. */
typedef struct {
    const char *command;
    cli_args_t args;
    mongoc_uri_t *uri;
    mongoc_client_pool_t *pool;
    mongoq_queue_t *queue;
    FILE *out;
} cli_t;

/* One command: a row of the table in main.c. */
typedef struct {
    const char *name;
    const char *summary; /* one line for `mongoq --help` */
    const char *usage;   /* the arguments after the command name */
    const char *options; /* accepted options, space-separated, without the dashes */
    const char *help;    /* what `mongoq COMMAND --help` prints after the usage line */
    bool needs_queue;    /* --queue is required */
    int (*run)(cli_t *cli);
} cli_command_t;

/* ---- main.c ------------------------------------------------------------------------------- */

/* Prints "mongoq: <command>: <message>" on stderr (one line). Returns code. */
int cli_fail(const cli_t *cli, int code, const char *format, ...) BSON_GNUC_PRINTF(3, 4);

/* The same for a bson_error_t, with mongoq's error name when it is one of mongoq's. */
int cli_fail_error(const cli_t *cli, const char *what, const bson_error_t *error);

/* The exit code a library error maps to (NOT_FOUND, INVALID_ARG -> usage, else FAILED). */
int cli_code_of(const bson_error_t *error);

/* Opens the pool (first call only). false after printing the error. */
bool cli_connect(cli_t *cli);

/*
 * A client from the pool, or NULL with error set (MONGOQ_ERROR_NO_CLIENT, exit code CLI_FAILED)
 * when the pool gave none: every connection in use and none came back within the URI's
 * waitQueueTimeoutMS. Push it back with mongoc_client_pool_push.
 */
mongoc_client_t *cli_pop(const cli_t *cli, bson_error_t *error);

/* A client of its own (not the pool's) on the URI, for a change stream held for a whole run so
 * that it takes no connection from the pool; NULL with error set. mongoc_client_destroy it. */
mongoc_client_t *cli_own_client(const cli_t *cli, bson_error_t *error);

/* Opens the queue named by --queue (first call only): no index creation, no background thread. */
mongoq_queue_t *cli_queue(cli_t *cli);

/* Set by SIGINT/SIGTERM: long-running commands (watch, metrics --listen) stop at once. */
bool cli_stopping(void);

/* ---- args.c --------------------------------------------------------------------------------- */

/* Parses argv into args; the first positional is the command. CLI_OK or CLI_USAGE (printed). */
int cli_parse(int argc, char **argv, cli_args_t *args, const char **command);

/* Checks that only options of cmd were given. CLI_OK or CLI_USAGE (printed). */
int cli_check_options(int argc, char **argv, const cli_command_t *cmd);

/* Parses a 24-hex-digit ObjectId; false after printing a usage error. */
bool cli_parse_id(const cli_t *cli, const char *text, bson_oid_t *id);

/* Whether status is one of ready, processing, done, dead (and "all" when all_ok). */
bool cli_known_status(const char *status, bool all_ok);

/* ---- out.c ---------------------------------------------------------------------------------- */

/* Prints doc as relaxed Extended JSON and a newline. */
void cli_print_json(FILE *out, const bson_t *doc);

/* "2024-06-01T12:00:00.123Z" of ms since the epoch, into buf; "-" for 0. */
const char *cli_time(int64_t ms, char *buf, size_t size);

/* A duration: "850ms", "12.3s", "4m05s", "2h03m", "3d04h"; "-" when negative. */
const char *cli_duration(int64_t ms, char *buf, size_t size);

/*
 * Appends a queue's counts to doc, the one shape of every --json and API output that shows them:
 * ready, delayed, processing, done, dead, waiting, oldest_due_age_ms, next_run_at (a date, or
 * null when nothing is delayed) and paused.
 */
void cli_stats_doc(const mongoq_stats_t *s, bson_t *doc);

/* The message as a document for --json: id as hex, times as dates, payload, history. */
void cli_message_doc(const mongoq_message_t *msg, bool full, bson_t *out);

/* The client's wall clock, ms since the epoch. */
int64_t cli_wall_ms(void);

/* Whether stdout is a terminal. */
bool cli_stdout_tty(void);

/* ---- cmd_stats.c ---------------------------------------------------------------------------- */

/* Whether coll has the index mongoq_claim into *has (false for no collection); false on error. */
bool cli_has_claim_index(mongoc_collection_t *coll, bool *has, bson_error_t *error);

/* ---- batch.c -------------------------------------------------------------------------------- */

/*
 * Purges (purge) or redrives the messages of status (NULL: every status) in batches of `batch`
 * ids read through a browse cursor, with progress on a terminal; *written gets how many were
 * deleted or moved, also on failure. CLI_OK, or the code of the error printed (interrupted:
 * CLI_FAILED).
 */
int cli_batch_write(cli_t *cli, mongoq_queue_t *queue, const char *status, bool purge,
                    int64_t batch, int64_t *written);

/* ---- commands (one file per group) ---------------------------------------------------------- */

int cli_cmd_stats(cli_t *cli);
int cli_cmd_queues(cli_t *cli);
int cli_cmd_ls(cli_t *cli);
int cli_cmd_show(cli_t *cli);
int cli_cmd_enqueue(cli_t *cli);
int cli_cmd_redrive(cli_t *cli);
int cli_cmd_retry(cli_t *cli);
int cli_cmd_purge(cli_t *cli);
int cli_cmd_pause(cli_t *cli);
int cli_cmd_resume(cli_t *cli);
int cli_cmd_watch(cli_t *cli);
int cli_cmd_doctor(cli_t *cli);
int cli_cmd_metrics(cli_t *cli);
int cli_cmd_schedules(cli_t *cli);
int cli_cmd_groups(cli_t *cli);
int cli_cmd_serve(cli_t *cli);

/* http.c: "HOST:PORT" (an IPv4 literal) into *addr for --listen (metrics, serve); false after
 * printing a usage error. */
struct sockaddr_in;
bool cli_parse_listen(cli_t *cli, const char *text, struct sockaddr_in *addr);

/* http.c: serves GET /metrics on addr ("HOST:PORT", IPv4) until stopped or max requests
 * (0: no limit) were answered. Prints "listening on http://HOST:PORT/metrics" once bound. */
int cli_serve_metrics(cli_t *cli, const char *addr, int64_t max_requests);

#endif

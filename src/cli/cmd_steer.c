/*
 * `mongoq redrive`, `mongoq retry`, `mongoq purge`: an operator's writes. Purge and redrive
 * --all are one library call, or on a terminal (or with --batch N) batches with progress
 * (batch.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fields.h"

/* {count: <queue>, query: filter} on the queue's collection; -1 after printing an error. */
static int64_t
count(cli_t *cli, mongoq_queue_t *queue, const bson_t *filter)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t error;
    bson_iter_t it;
    int64_t n = -1;
    mongoc_client_t *client = cli_pop(cli, &error);
    if (!client) {
        cli_fail_error(cli, "pool", &error);
        return -1;
    }
    BSON_APPEND_UTF8(&cmd, "count", mongoq_queue_name(queue));
    BSON_APPEND_DOCUMENT(&cmd, "query", filter);
    if (mongoc_client_read_command_with_opts(client, mongoq_queue_db(queue), &cmd, NULL, NULL,
                                             &reply, &error)) {
        n = bson_iter_init_find(&it, &reply, "n") ? bson_iter_as_int64(&it) : 0;
    } else {
        cli_fail_error(cli, "count", &error);
    }
    mongoc_client_pool_push(cli->pool, client);
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return n;
}

#define TERMINAL_BATCH 1000

/* Ids per batch: --batch N, else 1000 when progress can show, else 0 (one call). */
static int64_t
batch_size(const cli_t *cli)
{
    if (cli->args.has_batch) {
        return cli->args.batch;
    }
    return !cli->args.json && cli_stdout_tty() ? TERMINAL_BATCH : 0;
}

/* Whether --batch, when given, is 1 to MONGOQ_MAX_BATCH; prints a usage error when not. */
static bool
batch_ok(const cli_t *cli)
{
    if (cli->args.has_batch && (cli->args.batch < 1 || cli->args.batch > MONGOQ_MAX_BATCH)) {
        cli_fail(cli, CLI_USAGE, "--batch must be 1 to %d", MONGOQ_MAX_BATCH);
        return false;
    }
    return true;
}

static void
print_count(cli_t *cli, const char *key, int64_t n, const char *human)
{
    if (cli->args.json) {
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_INT64(&doc, key, n);
        BSON_APPEND_BOOL(&doc, "dry_run", cli->args.dry_run);
        cli_print_json(cli->out, &doc);
        bson_destroy(&doc);
    } else {
        fprintf(cli->out, "%s %" PRId64 " message%s\n", human, n, n == 1 ? "" : "s");
    }
}

int
cli_cmd_redrive(cli_t *cli)
{
    bson_oid_t id;
    bson_error_t error;
    bool one = cli->args.npositional == 2;
    if (cli->args.npositional > 2 || one == cli->args.all) {
        return cli_fail(cli, CLI_USAGE, "give one ID or --all");
    }
    if (one && !cli_parse_id(cli, cli->args.positional[1], &id)) {
        return CLI_USAGE;
    }
    if (one && cli->args.has_batch) {
        return cli_fail(cli, CLI_USAGE, "--batch goes with --all");
    }
    if (!batch_ok(cli)) {
        return CLI_USAGE;
    }
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    int64_t moved = 0;
    if (cli->args.dry_run) {
        bson_t filter = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, MONGOQ__S_DEAD);
        if (one) {
            BSON_APPEND_OID(&filter, MONGOQ__F_ID, &id);
        }
        moved = count(cli, queue, &filter);
        bson_destroy(&filter);
        if (moved < 0) {
            return CLI_FAILED;
        }
        print_count(cli, "would_move", moved, "would redrive");
        return one && moved == 0 ? cli_fail(cli, CLI_NOT_FOUND, "no dead message with that id")
                                 : CLI_OK;
    }
    int64_t batch = one ? 0 : batch_size(cli);
    if (batch > 0) {
        int rc = cli_batch_write(cli, queue, MONGOQ__S_DEAD, false, batch, &moved);
        if (rc != CLI_OK) {
            return rc;
        }
    } else if (!mongoq_queue_redrive(queue, one ? &id : NULL, &moved, &error)) {
        return cli_fail_error(cli, "redrive", &error);
    }
    print_count(cli, "moved", moved, "redrove");
    return CLI_OK;
}

int
cli_cmd_retry(cli_t *cli)
{
    bson_oid_t id;
    bson_error_t error;
    if (cli->args.npositional != 2) {
        return cli_fail(cli, CLI_USAGE, "needs one ID");
    }
    if (!cli_parse_id(cli, cli->args.positional[1], &id)) {
        return CLI_USAGE;
    }
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    if (!mongoq_queue_retry_now(queue, &id, &error)) {
        return cli_fail_error(cli, "retry", &error);
    }
    if (cli->args.json) {
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "id", cli->args.positional[1]);
        BSON_APPEND_UTF8(&doc, "status", "ready");
        cli_print_json(cli->out, &doc);
        bson_destroy(&doc);
    } else {
        fprintf(cli->out, "%s is ready now\n", cli->args.positional[1]);
    }
    return CLI_OK;
}

/* Asks on the terminal; true for y or yes. */
static bool
confirm(const char *question)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty) {
        return false;
    }
    char answer[16] = "";
    fprintf(tty, "%s [y/N] ", question);
    fflush(tty);
    bool yes = fgets(answer, sizeof answer, tty) &&
               (strcmp(answer, "y\n") == 0 || strcmp(answer, "yes\n") == 0);
    fclose(tty);
    return yes;
}

int
cli_cmd_purge(cli_t *cli)
{
    bson_error_t error;
    if (cli->args.npositional != 2) {
        return cli_fail(cli, CLI_USAGE, "needs a STATUS (ready, processing, done, dead, all)");
    }
    const char *status = cli->args.positional[1];
    if (!cli_known_status(status, true)) {
        return cli_fail(cli, CLI_USAGE, "unknown status \"%s\" (ready, processing, done, dead, all)",
                        status);
    }
    if (!batch_ok(cli)) {
        return CLI_USAGE;
    }
    bool interactive = isatty(STDIN_FILENO) == 1;
    if (!cli->args.yes && !interactive) {
        return cli_fail(cli, CLI_USAGE, "not on a terminal: confirm with --yes");
    }
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    const char *which = strcmp(status, "all") == 0 ? NULL : status;
    if (!cli->args.yes) {
        bson_t filter = BSON_INITIALIZER;
        if (which) {
            BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, which);
        }
        int64_t n = count(cli, queue, &filter);
        bson_destroy(&filter);
        if (n < 0) {
            return CLI_FAILED;
        }
        char question[512];
        bson_snprintf(question, sizeof question, "delete %" PRId64 " %s message%s from %s.%s?", n,
                      which ? which : "(every status)", n == 1 ? "" : "s", mongoq_queue_db(queue),
                      mongoq_queue_name(queue));
        if (!confirm(question)) {
            return cli_fail(cli, CLI_DECLINED, "not confirmed: nothing deleted");
        }
    }
    int64_t deleted = 0, batch = batch_size(cli);
    if (batch > 0) {
        int rc = cli_batch_write(cli, queue, which, true, batch, &deleted);
        if (rc != CLI_OK) {
            return rc;
        }
    } else if (!mongoq_queue_purge(queue, which, &deleted, &error)) {
        return cli_fail_error(cli, "purge", &error);
    }
    print_count(cli, "deleted", deleted, "deleted");
    return CLI_OK;
}

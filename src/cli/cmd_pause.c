/*
 * `mongoq pause` and `mongoq resume`: the queue-wide state every process follows
 * (mongoq_queue_pause / mongoq_queue_resume). Both refuse a collection that is not a queue
 * (no claim index), so a mistyped --queue fails instead of creating a paused collection.
 */
#include "cli.h"

/* Whether db.name carries mongoq's claim index; false after printing why not (code in *rc). */
static bool
is_a_queue(cli_t *cli, mongoq_queue_t *queue, int *rc)
{
    bson_error_t error;
    bool has = false;
    mongoc_client_t *client = cli_pop(cli, &error);
    bool ok = false;
    if (client) {
        mongoc_collection_t *coll =
            mongoc_client_get_collection(client, mongoq_queue_db(queue), mongoq_queue_name(queue));
        ok = cli_has_claim_index(coll, &has, &error);
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(cli->pool, client);
    }
    if (!ok) {
        *rc = cli_fail_error(cli, client ? "listIndexes" : "pool", &error);
    } else if (!has) {
        *rc = cli_fail(cli, CLI_NOT_FOUND, "%s.%s is not a queue (no index mongoq_claim)",
                       mongoq_queue_db(queue), mongoq_queue_name(queue));
    }
    return ok && has;
}

static int
set_paused(cli_t *cli, bool pause)
{
    bson_error_t error;
    bool was = false;
    int rc = CLI_OK;
    if (cli->args.npositional > 1) {
        return cli_fail(cli, CLI_USAGE, "takes no arguments");
    }
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    if (!is_a_queue(cli, queue, &rc)) {
        return rc;
    }
    /* Read first only to say whether anything changed; the write is what counts. */
    if (!mongoq_queue_is_paused(queue, &was, &error)) {
        return cli_fail_error(cli, "read the pause state", &error);
    }
    if (!(pause ? mongoq_queue_pause(queue, &error) : mongoq_queue_resume(queue, &error))) {
        return cli_fail_error(cli, cli->command, &error);
    }
    if (cli->args.json) {
        bson_t doc = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&doc, "db", mongoq_queue_db(queue));
        BSON_APPEND_UTF8(&doc, "queue", mongoq_queue_name(queue));
        BSON_APPEND_BOOL(&doc, "paused", pause);
        BSON_APPEND_BOOL(&doc, "was_paused", was);
        cli_print_json(cli->out, &doc);
        bson_destroy(&doc);
    } else if (pause) {
        fprintf(cli->out,
                "%s.%s %s: no consumer or worker claims until resumed (messages "
                "already claimed go on)\n",
                mongoq_queue_db(queue), mongoq_queue_name(queue),
                was ? "was already paused" : "paused");
    } else {
        fprintf(cli->out, "%s.%s %s\n", mongoq_queue_db(queue), mongoq_queue_name(queue),
                was ? "resumed: consumers and workers claim again" : "was not paused");
    }
    return CLI_OK;
}

int
cli_cmd_pause(cli_t *cli)
{
    return set_paused(cli, true);
}

int
cli_cmd_resume(cli_t *cli)
{
    return set_paused(cli, false);
}

/* `mongoq ls` and `mongoq show`: messages read without claiming them (mongoq/browse.h). */
#include <inttypes.h>
#include <string.h>

#include "cli.h"

#define DEFAULT_LIMIT 20

/* Fills browse options from the command line; false after printing a usage error. */
static bool
ls_options(cli_t *cli, mongoq_browse_opts_t *o)
{
    const cli_args_t *a = &cli->args;
    if (a->npositional > 1) {
        cli_fail(cli, CLI_USAGE, "takes no arguments (filters are options: --status ...)");
        return false;
    }
    if (a->status && !cli_known_status(a->status, true)) {
        cli_fail(cli, CLI_USAGE, "unknown status \"%s\" (ready, processing, done, dead, all)",
                 a->status);
        return false;
    }
    o->status = a->status && strcmp(a->status, "all") != 0 ? a->status : NULL;
    if (a->has_limit && (a->limit < 1 || a->limit >= MONGOQ_MAX_BATCH)) {
        cli_fail(cli, CLI_USAGE, "--limit must be 1 to %d", MONGOQ_MAX_BATCH - 1);
        return false;
    }
    if (!a->sort || strcmp(a->sort, "claim") == 0) {
        o->order = MONGOQ_BROWSE_ORDER_CLAIM;
    } else if (strcmp(a->sort, "run_at") == 0) {
        o->order = MONGOQ_BROWSE_ORDER_RUN_AT;
    } else if (strcmp(a->sort, "lease") == 0) {
        o->order = MONGOQ_BROWSE_ORDER_LEASE;
    } else {
        cli_fail(cli, CLI_USAGE, "unknown sort \"%s\" (claim, run_at, lease)", a->sort);
        return false;
    }
    if (a->due && a->not_due) {
        cli_fail(cli, CLI_USAGE, "--due and --not-due exclude each other");
        return false;
    }
    o->due = a->due ? MONGOQ_BROWSE_DUE_ONLY : a->not_due ? MONGOQ_BROWSE_NOT_DUE
                                                          : MONGOQ_BROWSE_DUE_ANY;
    o->dedup_key = a->dedup;
    o->claimed_by = a->claimed_by;
    o->error_contains = a->error_text;
    o->page_token = a->page;
    /* One more than shown: whether it exists says if there is a next page. */
    o->page_size = (int32_t)(a->has_limit ? a->limit : DEFAULT_LIMIT) + 1;
    return true;
}

static void
print_row(cli_t *cli, const mongoq_message_t *msg)
{
    char hex[25], run_at[40];
    const char *err = mongoq_message_last_error(msg);
    bson_oid_to_string(mongoq_message_id(msg), hex);
    fprintf(cli->out, "%-24s %-10s %8" PRId32 " %5" PRId32 "/%-5" PRId32 " %-24s %.40s\n", hex,
            mongoq_message_status(msg) ? mongoq_message_status(msg) : "?",
            mongoq_message_priority(msg), mongoq_message_attempts(msg),
            mongoq_message_max_attempts(msg),
            cli_time(mongoq_message_run_at(msg), run_at, sizeof run_at), err ? err : "");
}

int
cli_cmd_ls(cli_t *cli)
{
    mongoq_browse_opts_t o = MONGOQ_BROWSE_OPTS_INIT;
    bson_error_t error;
    if (!ls_options(cli, &o)) {
        return CLI_USAGE;
    }
    int64_t limit = o.page_size - 1;
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    mongoq_browse_t *b = mongoq_browse_new(queue, &o, &error);
    if (!b) {
        return cli_fail_error(cli, "ls", &error);
    }
    bson_t doc = BSON_INITIALIZER, arr, item;
    char *next = NULL; /* the token after the last message shown */
    bool more = false; /* a message exists past the last one shown */
    int rc = CLI_OK;
    BSON_APPEND_ARRAY_BEGIN(&doc, "messages", &arr);
    if (!cli->args.json) {
        fprintf(cli->out, "%-24s %-10s %8s %11s %-24s %s\n", "ID", "STATUS", "PRIORITY",
                "ATTEMPTS", "RUN_AT", "LAST_ERROR");
    }
    for (int64_t shown = 0; shown <= limit; shown++) {
        mongoq_message_t *msg;
        if (!mongoq_browse_next(b, &msg, &error)) {
            rc = cli_fail_error(cli, "ls", &error);
            break;
        }
        if (!msg || shown == limit) {
            more = msg != NULL;
            mongoq_message_destroy(msg);
            break;
        }
        bson_free(next);
        next = bson_strdup(mongoq_browse_token(b));
        if (cli->args.json) {
            char key[16];
            const char *k;
            bson_uint32_to_string((uint32_t)shown, &k, key, sizeof key);
            BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &item);
            cli_message_doc(msg, false, &item);
            bson_append_document_end(&arr, &item);
        } else {
            print_row(cli, msg);
        }
        mongoq_message_destroy(msg);
    }
    bson_append_array_end(&doc, &arr);
    if (rc == CLI_OK && cli->args.json) {
        if (more) {
            BSON_APPEND_UTF8(&doc, "next_page", next);
        } else {
            BSON_APPEND_NULL(&doc, "next_page");
        }
        cli_print_json(cli->out, &doc);
    } else if (rc == CLI_OK && more) {
        fprintf(cli->out, "next page: --page %s\n", next);
    }
    bson_free(next);
    bson_destroy(&doc);
    mongoq_browse_destroy(b);
    return rc;
}

/* ---- show --------------------------------------------------------------------------------- */

static void
print_errors(cli_t *cli, const bson_t *errors)
{
    bson_iter_t it, entry;
    char at[40];
    if (!errors || !bson_iter_init(&it, errors)) {
        fprintf(cli->out, "errors            (none)\n");
        return;
    }
    fprintf(cli->out, "errors\n");
    while (bson_iter_next(&it)) {
        int64_t when = 0;
        const char *text = NULL;
        if (BSON_ITER_HOLDS_DOCUMENT(&it) && bson_iter_recurse(&it, &entry)) {
            while (bson_iter_next(&entry)) {
                if (strcmp(bson_iter_key(&entry), "at") == 0 && BSON_ITER_HOLDS_DATE_TIME(&entry)) {
                    when = bson_iter_date_time(&entry);
                } else if (strcmp(bson_iter_key(&entry), "error") == 0 &&
                           BSON_ITER_HOLDS_UTF8(&entry)) {
                    text = bson_iter_utf8(&entry, NULL);
                }
            }
        }
        fprintf(cli->out, "  %s  %s\n", cli_time(when, at, sizeof at), text ? text : "(null)");
    }
}

static void
print_message(cli_t *cli, const mongoq_message_t *msg)
{
    char hex[25], t1[40], t2[40], t3[40];
    const char *v;
    bson_oid_to_string(mongoq_message_id(msg), hex);
    fprintf(cli->out, "id                %s\n", hex);
    fprintf(cli->out, "status            %s\n", (v = mongoq_message_status(msg)) ? v : "?");
    fprintf(cli->out, "priority          %" PRId32 "\n", mongoq_message_priority(msg));
    fprintf(cli->out, "attempts          %" PRId32 " of %" PRId32 "\n",
            mongoq_message_attempts(msg), mongoq_message_max_attempts(msg));
    fprintf(cli->out, "enqueued_at       %s\n",
            cli_time(mongoq_message_enqueued_at(msg), t1, sizeof t1));
    fprintf(cli->out, "run_at            %s\n", cli_time(mongoq_message_run_at(msg), t2, sizeof t2));
    fprintf(cli->out, "lease_expires_at  %s\n",
            cli_time(mongoq_message_lease_expires_at(msg), t3, sizeof t3));
    fprintf(cli->out, "claimed_by        %s\n", (v = mongoq_message_claimed_by(msg)) ? v : "-");
    fprintf(cli->out, "dedup_key         %s\n", (v = mongoq_message_dedup_key(msg)) ? v : "-");
    fprintf(cli->out, "last_error        %s\n", (v = mongoq_message_last_error(msg)) ? v : "-");
    print_errors(cli, mongoq_message_errors(msg));
    char *json = bson_as_relaxed_extended_json(mongoq_message_payload(msg), NULL);
    fprintf(cli->out, "payload           %s\n", json);
    bson_free(json);
}

int
cli_cmd_show(cli_t *cli)
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
    mongoq_message_t *msg = NULL;
    if (!mongoq_queue_get(queue, &id, &msg, &error)) {
        return cli_fail_error(cli, "show", &error);
    }
    if (cli->args.json) {
        bson_t doc = BSON_INITIALIZER;
        cli_message_doc(msg, true, &doc);
        cli_print_json(cli->out, &doc);
        bson_destroy(&doc);
    } else {
        print_message(cli, msg);
    }
    mongoq_message_destroy(msg);
    return CLI_OK;
}

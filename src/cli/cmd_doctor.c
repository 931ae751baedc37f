/*
 * `mongoq doctor`: mongoq_queue_check's report as a table or JSON; the exit code is the worst
 * level (0 ok, 1 warnings, 2 errors). A server that cannot be reached is an error item of its
 * own (the queue cannot even be opened), so the report still prints.
 */
#include <string.h>

#include "cli.h"

static int
exit_code(mongoq_check_level_t level)
{
    return level == MONGOQ_CHECK_ERROR ? CLI_ERRORS
           : level == MONGOQ_CHECK_WARNING ? CLI_WARNINGS
                                           : CLI_OK;
}

/* The report of a server that could not be reached: one error item, like the library's. */
static int
unreachable(cli_t *cli, const char *message)
{
    const char *advice = "check the URI, the network and that the server runs";
    if (cli->args.json) {
        bson_t doc = BSON_INITIALIZER, items, item;
        BSON_APPEND_UTF8(&doc, "level", "error");
        BSON_APPEND_ARRAY_BEGIN(&doc, "items", &items);
        BSON_APPEND_DOCUMENT_BEGIN(&items, "0", &item);
        BSON_APPEND_UTF8(&item, "name", "server");
        BSON_APPEND_UTF8(&item, "level", "error");
        BSON_APPEND_UTF8(&item, "message", message);
        BSON_APPEND_UTF8(&item, "advice", advice);
        bson_append_document_end(&items, &item);
        bson_append_array_end(&doc, &items);
        cli_print_json(cli->out, &doc);
        bson_destroy(&doc);
    } else {
        fprintf(cli->out, "%-16s %-8s %s\n%-16s %-8s -> %s\n", "server", "error", message, "",
                "", advice);
    }
    return CLI_ERRORS;
}

static void
print_table(cli_t *cli, const mongoq_report_t *r)
{
    for (size_t i = 0; i < mongoq_report_count(r); i++) {
        const char *advice = mongoq_report_advice(r, i);
        fprintf(cli->out, "%-16s %-8s %s\n", mongoq_report_name(r, i),
                mongoq_check_level_name(mongoq_report_item_level(r, i)),
                mongoq_report_message(r, i));
        if (*advice) {
            fprintf(cli->out, "%-16s %-8s -> %s\n", "", "", advice);
        }
    }
    fprintf(cli->out, "\nresult: %s\n", mongoq_check_level_name(mongoq_report_level(r)));
}

int
cli_cmd_doctor(cli_t *cli)
{
    if (cli->args.npositional > 1) {
        return cli_fail(cli, CLI_USAGE, "takes no arguments");
    }
    if (!cli_connect(cli)) {
        return CLI_FAILED;
    }
    mongoq_queue_t *queue = cli_queue(cli); /* prints why it could not be opened */
    if (!queue) {
        return unreachable(cli, "cannot open the queue: the server cannot be reached or refused");
    }
    mongoq_report_t *report = NULL;
    bson_error_t error;
    if (!mongoq_queue_check(queue, NULL, &report, &error)) {
        return cli_fail_error(cli, "check", &error);
    }
    if (cli->args.json) {
        bson_t doc;
        mongoq_report_to_bson(report, &doc);
        cli_print_json(cli->out, &doc);
        bson_destroy(&doc);
    } else {
        print_table(cli, report);
    }
    int rc = exit_code(mongoq_report_level(report));
    mongoq_report_destroy(report);
    return rc;
}

/*
 * `mongoq metrics`: the queue's Prometheus text (mongoq/metrics.h) once, or served on
 * --listen HOST:PORT (http.c). Only the series read from the database: this process's own
 * counters would say nothing about the queue's consumers.
 */
#include "cli.h"

int
cli_cmd_metrics(cli_t *cli)
{
    const cli_args_t *a = &cli->args;
    if (a->npositional > 1 || (a->has_count && a->count < 1) || (a->has_count && !a->listen)) {
        return cli_fail(cli, CLI_USAGE, "takes no arguments; --count N needs --listen");
    }
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    if (a->listen) {
        return cli_serve_metrics(cli, a->listen, a->has_count ? a->count : 0);
    }
    mongoq_metrics_opts_t opts = MONGOQ_METRICS_OPTS_INIT;
    opts.stats_only = true;
    char *text = NULL;
    bson_error_t error;
    if (!mongoq_queue_metrics(queue, &opts, &text, &error)) {
        return cli_fail_error(cli, "metrics", &error);
    }
    fputs(text, cli->out);
    bson_free(text);
    return CLI_OK;
}

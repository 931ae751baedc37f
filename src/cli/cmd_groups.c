/*
 * `mongoq groups`: the queue's message groups (mongoq/group.h, mongoq_queue_groups) in name
 * order with the messages holding a place, those in flight (claimed now) and those waiting,
 * the group's concurrency limit and its partition; paged with --limit and --page NAME.
 */
#include <inttypes.h>
#include <string.h>

#include "cli.h"

#define DEFAULT_LIMIT 100

static void
group_doc(const mongoq_group_info_t *g, bson_t *doc)
{
    BSON_APPEND_UTF8(doc, "name", g->name);
    BSON_APPEND_INT64(doc, "active", g->active);
    BSON_APPEND_INT64(doc, "in_flight", g->in_flight);
    BSON_APPEND_INT64(doc, "waiting", g->waiting);
    BSON_APPEND_INT32(doc, "limit", g->limit);
    BSON_APPEND_INT32(doc, "partition", g->partition);
}

static void
print_json(cli_t *cli, mongoq_queue_t *queue, const mongoq_group_info_t *groups, size_t n,
           const char *next)
{
    bson_t doc = BSON_INITIALIZER, list, one;
    char key[16];
    const char *k;
    BSON_APPEND_UTF8(&doc, "db", mongoq_queue_db(queue));
    BSON_APPEND_UTF8(&doc, "queue", mongoq_queue_name(queue));
    BSON_APPEND_ARRAY_BEGIN(&doc, "groups", &list);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_DOCUMENT_BEGIN(&list, k, &one);
        group_doc(&groups[i], &one);
        bson_append_document_end(&list, &one);
    }
    bson_append_array_end(&doc, &list);
    if (next) {
        BSON_APPEND_UTF8(&doc, "next_page", next);
    } else {
        BSON_APPEND_NULL(&doc, "next_page");
    }
    cli_print_json(cli->out, &doc);
    bson_destroy(&doc);
}

static void
print_table(cli_t *cli, mongoq_queue_t *queue, const mongoq_group_info_t *groups, size_t n,
            const char *next)
{
    if (n == 0) {
        fprintf(cli->out, "%s.%s: no groups\n", mongoq_queue_db(queue), mongoq_queue_name(queue));
        return;
    }
    int width = (int)strlen("GROUP");
    for (size_t i = 0; i < n; i++) {
        width = BSON_MAX(width, (int)BSON_MIN(strlen(groups[i].name), (size_t)40));
    }
    fprintf(cli->out, "%-*s  %8s  %9s  %8s  %6s  %9s\n", width, "GROUP", "ACTIVE", "IN_FLIGHT",
            "WAITING", "LIMIT", "PARTITION");
    for (size_t i = 0; i < n; i++) {
        const mongoq_group_info_t *g = &groups[i];
        fprintf(cli->out,
                "%-*.40s  %8" PRId64 "  %9" PRId64 "  %8" PRId64 "  %6" PRId32 "  %9" PRId32 "\n",
                width, g->name, g->active, g->in_flight, g->waiting, g->limit, g->partition);
    }
    if (next) {
        fprintf(cli->out, "more: --page '%s'\n", next);
    }
}

int
cli_cmd_groups(cli_t *cli)
{
    if (cli->args.npositional > 1) {
        return cli_fail(cli, CLI_USAGE, "takes no arguments");
    }
    int64_t limit = cli->args.has_limit ? cli->args.limit : DEFAULT_LIMIT;
    if (limit < 1 || limit > MONGOQ_MAX_BATCH) {
        return cli_fail(cli, CLI_USAGE, "--limit must be 1 to %d", MONGOQ_MAX_BATCH);
    }
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    /* One more than shown: whether another page follows. */
    size_t max = (size_t)limit + 1 <= MONGOQ_MAX_BATCH ? (size_t)limit + 1 : (size_t)limit;
    mongoq_group_info_t *groups = bson_malloc(max * sizeof *groups);
    for (size_t i = 0; i < max; i++) {
        groups[i] = (mongoq_group_info_t)MONGOQ_GROUP_INFO_INIT;
    }
    size_t n = 0;
    bson_error_t error;
    if (!mongoq_queue_groups(queue, cli->args.page, groups, max, &n, &error)) {
        bson_free(groups);
        return cli_fail_error(cli, "list the groups", &error);
    }
    size_t shown = n > (size_t)limit ? (size_t)limit : n;
    const char *next = n > shown && shown > 0 ? groups[shown - 1].name : NULL;
    if (cli->args.json) {
        print_json(cli, queue, groups, shown, next);
    } else {
        print_table(cli, queue, groups, shown, next);
    }
    bson_free(groups);
    return CLI_OK;
}

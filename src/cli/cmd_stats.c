/* `mongoq stats` and `mongoq queues`: counts read from the queues' indexes, and the pause state. */
#include <inttypes.h>
#include <string.h>

#include "cli.h"

static void
stats_doc(const char *db, const char *name, const mongoq_stats_t *s, bson_t *doc)
{
    BSON_APPEND_UTF8(doc, "db", db);
    BSON_APPEND_UTF8(doc, "queue", name);
    cli_stats_doc(s, doc);
}

int
cli_cmd_stats(cli_t *cli)
{
    if (cli->args.npositional > 1) {
        return cli_fail(cli, CLI_USAGE, "takes no arguments");
    }
    mongoq_queue_t *queue = cli_queue(cli);
    if (!queue) {
        return CLI_FAILED;
    }
    mongoq_stats_t s = MONGOQ_STATS_INIT;
    bson_error_t error;
    if (!mongoq_queue_stats(queue, &s, &error)) {
        return cli_fail_error(cli, "stats", &error);
    }
    if (cli->args.json) {
        bson_t doc = BSON_INITIALIZER;
        stats_doc(mongoq_queue_db(queue), mongoq_queue_name(queue), &s, &doc);
        cli_print_json(cli->out, &doc);
        bson_destroy(&doc);
        return CLI_OK;
    }
    char age[32], next[40];
    fprintf(cli->out, "queue       %s.%s\n", mongoq_queue_db(queue), mongoq_queue_name(queue));
    fprintf(cli->out, "ready       %" PRId64 " (%" PRId64 " due, %" PRId64 " delayed)\n", s.ready,
            s.ready - s.delayed, s.delayed);
    fprintf(cli->out, "processing  %" PRId64 "\n", s.processing);
    fprintf(cli->out, "done        %" PRId64 "\n", s.done);
    fprintf(cli->out, "dead        %" PRId64 "\n", s.dead);
    fprintf(cli->out, "oldest due  %s\n", cli_duration(s.oldest_ready_age_ms, age, sizeof age));
    fprintf(cli->out, "next run    %s\n",
            s.next_run_at_ms >= 0 ? cli_time(s.next_run_at_ms, next, sizeof next) : "-");
    fprintf(cli->out, "paused      %s\n",
            s.paused ? "yes (nothing is claimed until resumed)" : "no");
    return CLI_OK;
}

/* ---- queues ------------------------------------------------------------------------------- */

/* mongod's NamespaceNotFound: listIndexes of a collection that does not exist. */
#define NAMESPACE_NOT_FOUND 26

bool
cli_has_claim_index(mongoc_collection_t *coll, bool *has, bson_error_t *error)
{
    const bson_t *index;
    bson_iter_t it;
    *has = false;
    mongoc_cursor_t *cursor = mongoc_collection_find_indexes_with_opts(coll, NULL);
    while (!*has && mongoc_cursor_next(cursor, &index)) {
        *has = bson_iter_init_find(&it, index, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
               strcmp(bson_iter_utf8(&it, NULL), "mongoq_claim") == 0;
    }
    bool failed = mongoc_cursor_error(cursor, error) &&
                  !(error->domain == MONGOC_ERROR_SERVER && error->code == NAMESPACE_NOT_FOUND);
    mongoc_cursor_destroy(cursor);
    return !failed;
}

/* Whether coll carries mongoq's claim index (an error reads as no). */
static bool
is_queue(mongoc_collection_t *coll)
{
    bool has = false;
    bson_error_t error;
    return cli_has_claim_index(coll, &has, &error) && has;
}

/* The names of db's collections that are queues; false after printing an error. */
static bool
list_queues(cli_t *cli, mongoc_client_t *client, const char *db, char ***names, size_t *n)
{
    bson_error_t error;
    mongoc_database_t *database = mongoc_client_get_database(client, db);
    char **all = mongoc_database_get_collection_names_with_opts(database, NULL, &error);
    *names = NULL;
    *n = 0;
    if (!all) {
        mongoc_database_destroy(database);
        cli_fail_error(cli, "listCollections", &error);
        return false;
    }
    size_t total = 0;
    while (all[total]) {
        total++;
    }
    *names = bson_malloc0((total + 1) * sizeof **names);
    for (size_t i = 0; i < total; i++) {
        mongoc_collection_t *coll = mongoc_database_get_collection(database, all[i]);
        if (strncmp(all[i], "system.", 7) != 0 && is_queue(coll)) {
            (*names)[(*n)++] = bson_strdup(all[i]);
        }
        mongoc_collection_destroy(coll);
    }
    bson_strfreev(all);
    mongoc_database_destroy(database);
    return true;
}

static int
print_queues(cli_t *cli, const char *db, char **names, size_t n)
{
    bson_t doc = BSON_INITIALIZER, arr, item;
    BSON_APPEND_UTF8(&doc, "db", db);
    BSON_APPEND_ARRAY_BEGIN(&doc, "queues", &arr);
    if (!cli->args.json) {
        fprintf(cli->out, "%-32s %10s %10s %10s %10s %10s %6s\n", "QUEUE", "READY", "DELAYED",
                "PROCESSING", "DONE", "DEAD", "PAUSED");
    }
    int rc = CLI_OK;
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        bson_error_t error;
        mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
        opts.skip_ensure_indexes = opts.no_reaper = opts.no_change_stream = true;
        mongoq_queue_t *q = mongoq_queue_new(cli->pool, db, names[i], &opts, &error);
        mongoq_stats_t s = MONGOQ_STATS_INIT;
        if (!q || !mongoq_queue_stats(q, &s, &error)) {
            rc = cli_fail_error(cli, names[i], &error);
        } else if (cli->args.json) {
            char key[16];
            const char *k;
            bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
            BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &item);
            stats_doc(db, names[i], &s, &item);
            bson_append_document_end(&arr, &item);
        } else {
            fprintf(cli->out, "%-32s %10" PRId64 " %10" PRId64 " %10" PRId64 " %10" PRId64
                              " %10" PRId64 " %6s\n",
                    names[i], s.ready, s.delayed, s.processing, s.done, s.dead,
                    s.paused ? "yes" : "no");
        }
        mongoq_queue_destroy(q);
    }
    bson_append_array_end(&doc, &arr);
    if (rc == CLI_OK && cli->args.json) {
        cli_print_json(cli->out, &doc);
    }
    bson_destroy(&doc);
    return rc;
}

int
cli_cmd_queues(cli_t *cli)
{
    if (cli->args.npositional > 1) {
        return cli_fail(cli, CLI_USAGE, "takes no arguments");
    }
    if (!cli_connect(cli)) {
        return CLI_FAILED;
    }
    const char *db = cli->args.db;
    if (!db) {
        db = mongoc_uri_get_database(cli->uri);
    }
    if (!db || !*db) {
        db = "mongoq";
    }
    bson_error_t error;
    mongoc_client_t *client = cli_pop(cli, &error);
    if (!client) {
        return cli_fail_error(cli, "pool", &error);
    }
    char **names = NULL;
    size_t n = 0;
    bool listed = list_queues(cli, client, db, &names, &n);
    mongoc_client_pool_push(cli->pool, client);
    int rc = listed ? print_queues(cli, db, names, n) : CLI_FAILED;
    if (names) {
        bson_strfreev(names);
    }
    return rc;
}

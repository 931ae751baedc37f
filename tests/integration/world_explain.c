/*
 * Plans, not times (world.h): the commands the pool sent, run again through explain with
 * executionStats (https://www.mongodb.com/docs/manual/reference/explain-results/), so a test can
 * bound the keys and documents each examined, and the crowds they are measured against. Used by
 * test_plans.c, test_partitions_plans.c and test_browse_plans.c.
 */
#include "world.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <string.h>

#define WORLD_MAX_EXPLAINED 32

static const char *
command_name(const bson_t *cmd)
{
    bson_iter_t it;
    return bson_iter_init(&it, cmd) && bson_iter_next(&it) ? bson_iter_key(&it) : "";
}

bool
world_explainable(const bson_t *cmd)
{
    static const char *const names[] = {"find", "findAndModify", "update", "delete", "count",
                                        "aggregate", "distinct", NULL};
    for (int i = 0; names[i]; i++) {
        if (strcmp(command_name(cmd), names[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* The command without the fields libmongoc adds around it (session, $db, concerns...). */
static void
inner_command(const bson_t *cmd, bson_t *inner)
{
    static const char *const generic[] = {"lsid", "txnNumber", "readConcern", "writeConcern",
                                          "autocommit", "startTransaction", "apiVersion",
                                          "apiStrict", "apiDeprecationErrors", "maxTimeMS",
                                          NULL};
    bson_iter_t it;
    bson_init(inner);
    bson_iter_init(&it, cmd);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool skip = k[0] == '$';
        for (int i = 0; !skip && generic[i]; i++) {
            skip = strcmp(k, generic[i]) == 0;
        }
        if (!skip) {
            bson_append_value(inner, k, -1, bson_iter_value(&it));
        }
    }
}

static int64_t
stat_of(const bson_t *reply, const char *path)
{
    bson_iter_t it, v;
    cr_assert(bson_iter_init(&it, reply) && bson_iter_find_descendant(&it, path, &v) &&
                  BSON_ITER_HOLDS_NUMBER(&v),
              "explain has no %s", path);
    return bson_iter_as_int64(&v);
}

world_cost_t
world_explain(world_t *w, const bson_t *cmd)
{
    bson_t inner, explain = BSON_INITIALIZER, reply;
    bson_error_t error;
    world_cost_t cost;
    memset(&cost, 0, sizeof cost);
    bson_strncpy(cost.name, command_name(cmd), sizeof cost.name);
    inner_command(cmd, &inner);
    BSON_APPEND_DOCUMENT(&explain, "explain", &inner);
    BSON_APPEND_UTF8(&explain, "verbosity", "executionStats");
    mongoc_database_t *db = mongoc_client_get_database(w->client, w->db);
    cr_assert(mongoc_database_command_simple(db, &explain, NULL, &reply, &error),
              "explain of %s: %s", cost.name, error.message);
    cost.keys = stat_of(&reply, "executionStats.totalKeysExamined");
    cost.docs = stat_of(&reply, "executionStats.totalDocsExamined");
    cost.returned = stat_of(&reply, "executionStats.nReturned");
    bson_destroy(&reply);
    mongoc_database_destroy(db);
    bson_destroy(&explain);
    bson_destroy(&inner);
    return cost;
}

bool
world_is_control_read(const bson_t *cmd)
{
    bson_iter_t id;
    return bson_iter_init(&id, cmd) && bson_iter_find_descendant(&id, "filter._id", &id) &&
           BSON_ITER_HOLDS_UTF8(&id) && strcmp(bson_iter_utf8(&id, NULL), "mongoq.control") == 0;
}

int
world_assert_sent_within(world_t *w, const char *op, int64_t max_keys, int64_t max_docs)
{
    bson_t *cmds[WORLD_MAX_EXPLAINED];
    size_t n = mtest_counter_commands(w->counter, NULL, cmds, WORLD_MAX_EXPLAINED);
    int explained = 0;
    for (size_t i = 0; i < n; i++) {
        if (world_explainable(cmds[i]) && !world_is_control_read(cmds[i])) {
            world_cost_t c = world_explain(w, cmds[i]);
            cr_log_info("%s: %s examined %lld keys, %lld documents", op, c.name,
                        (long long)c.keys, (long long)c.docs);
            cr_assert_leq(c.keys, max_keys, "%s: %s examined %lld keys (at most %lld)", op, c.name,
                          (long long)c.keys, (long long)max_keys);
            cr_assert_leq(c.docs, max_docs, "%s: %s examined %lld documents (at most %lld)", op,
                          c.name, (long long)c.docs, (long long)max_docs);
            explained++;
        }
        bson_destroy(cmds[i]);
    }
    mtest_counter_reset(w->counter);
    return explained;
}

void
world_insert_many(world_t *w, int64_t n, void (*fill)(bson_t *doc, int64_t i, void *ctx),
                  void *ctx)
{
    for (int64_t done = 0; done < n;) {
        bson_t opts = BSON_INITIALIZER;
        BSON_APPEND_BOOL(&opts, "ordered", false);
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(w->coll, &opts);
        int64_t batch = n - done < 10000 ? n - done : 10000;
        for (int64_t i = done; i < done + batch; i++) {
            bson_t doc = BSON_INITIALIZER;
            fill(&doc, i, ctx);
            mongoc_bulk_operation_insert(bulk, &doc);
            bson_destroy(&doc);
        }
        bson_t reply;
        bson_error_t error;
        cr_assert(mongoc_bulk_operation_execute(bulk, &reply, &error), "%s", error.message);
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(bulk);
        bson_destroy(&opts);
        done += batch;
    }
}

/*
 * Running a command: the command table (one row per command), the reply's envelope (ok, errors
 * with mongod's codes and names, $clusterTime and operationTime), talking to a shard (the router's
 * cluster time gossiped with every command, as mongos does), and the router's own small commands
 * (hello, ping).
 */
#include "router.h"

#include <string.h>
#include <strings.h>

static pthread_mutex_t clock_mu = PTHREAD_MUTEX_INITIALIZER;
static uint32_t cluster_t;
static uint32_t cluster_i;

typedef struct {
    const char *name;
    mr_handler_t handler;
} command_row_t;

static const command_row_t commands[] = {
    {"hello", mr_cmd_hello},
    {"isMaster", mr_cmd_hello},
    {"ismaster", mr_cmd_hello},
    {"ping", mr_cmd_ping},
    {"buildInfo", mr_cmd_to_primary},
    {"buildinfo", mr_cmd_to_primary},
    {"getParameter", mr_cmd_to_primary},
    {"serverStatus", mr_cmd_to_primary},
    {"connectionStatus", mr_cmd_to_primary},
    {"whatsmyuri", mr_cmd_to_primary},
    {"dbStats", mr_cmd_to_primary},
    {"collStats", mr_cmd_to_primary},
    {"validate", mr_cmd_to_primary},
    {"create", mr_cmd_to_primary},
    {"renameCollection", mr_cmd_to_primary},
    {"explain", mr_cmd_to_primary},
    {"enableSharding", mr_cmd_enable_sharding},
    {"enablesharding", mr_cmd_enable_sharding},
    {"shardCollection", mr_cmd_shard_collection},
    {"shardcollection", mr_cmd_shard_collection},
    {"listShards", mr_cmd_list_shards},
    {"listshards", mr_cmd_list_shards},
    {"balancerStatus", mr_cmd_balancer_status},
    {"split", mr_cmd_split},
    {"moveChunk", mr_cmd_move_chunk},
    {"movechunk", mr_cmd_move_chunk},
    {"insert", mr_cmd_insert},
    {"update", mr_cmd_update},
    {"delete", mr_cmd_delete},
    {"findAndModify", mr_cmd_find_and_modify},
    {"findandmodify", mr_cmd_find_and_modify},
    {"find", mr_cmd_find},
    {"aggregate", mr_cmd_aggregate},
    {"count", mr_cmd_count},
    {"distinct", mr_cmd_distinct},
    {"getMore", mr_cmd_get_more},
    {"killCursors", mr_cmd_kill_cursors},
    {"createIndexes", mr_cmd_create_indexes},
    {"dropIndexes", mr_cmd_broadcast},
    {"deleteIndexes", mr_cmd_broadcast},
    {"collMod", mr_cmd_broadcast},
    {"endSessions", mr_cmd_broadcast},
    {"killSessions", mr_cmd_broadcast},
    {"killAllSessions", mr_cmd_broadcast},
    {"configureFailPoint", mr_cmd_broadcast},
    {"listIndexes", mr_cmd_cursor_on_primary},
    {"listCollections", mr_cmd_cursor_on_primary},
    {"drop", mr_cmd_drop},
    {"dropDatabase", mr_cmd_drop_database},
    {"listDatabases", mr_cmd_list_databases},
    {"commitTransaction", mr_cmd_end_txn},
    {"abortTransaction", mr_cmd_end_txn},
};

const char *
mr_code_name(int code)
{
    switch (code) {
    case MR_SHARD_KEY_NOT_FOUND:
        return "ShardKeyNotFound";
    case 6:
        return "HostUnreachable";
    case 70:
        return "ShardNotFound";
    case 118:
        return "NamespaceNotSharded";
    default:
        return ms_code_name(code);
    }
}

void
mr_append_error(bson_t *reply, const bson_error_t *error)
{
    int code = error->code ? (int)error->code : 8;
    BSON_APPEND_DOUBLE(reply, "ok", 0.0);
    BSON_APPEND_UTF8(reply, "errmsg", error->message);
    BSON_APPEND_INT32(reply, "code", code);
    BSON_APPEND_UTF8(reply, "codeName", mr_code_name(code));
}

bool
mr_reply_ok(const bson_t *reply, bson_error_t *error)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, "ok") && bson_iter_as_bool(&it)) {
        return true;
    }
    int code = 8;
    const char *msg = "unknown error";
    if (bson_iter_init_find(&it, reply, "code") && BSON_ITER_HOLDS_NUMBER(&it)) {
        code = (int)bson_iter_as_int64(&it);
    }
    if (bson_iter_init_find(&it, reply, "errmsg") && BSON_ITER_HOLDS_UTF8(&it)) {
        msg = bson_iter_utf8(&it, NULL);
    }
    ms_set_error(error, code, "%s", msg);
    return false;
}

void
mr_cmd_copy_without(const bson_t *cmd, const char *const *drop, bson_t *out)
{
    bson_iter_t it;
    bson_init(out);
    bson_iter_init(&it, cmd);
    while (bson_iter_next(&it)) {
        bool skip = false;
        for (size_t k = 0; drop && drop[k]; k++) {
            skip = skip || strcmp(bson_iter_key(&it), drop[k]) == 0;
        }
        if (!skip) {
            bson_append_value(out, bson_iter_key(&it), -1, bson_iter_value(&it));
        }
    }
}

void
mr_cluster_time_note(const bson_t *reply)
{
    bson_iter_t it;
    uint32_t t = 0;
    uint32_t i = 0;
    if (bson_iter_init_find(&it, reply, "operationTime") && BSON_ITER_HOLDS_TIMESTAMP(&it)) {
        bson_iter_timestamp(&it, &t, &i);
    }
    pthread_mutex_lock(&clock_mu);
    if (t > cluster_t || (t == cluster_t && i > cluster_i)) {
        cluster_t = t;
        cluster_i = i;
    }
    pthread_mutex_unlock(&clock_mu);
}

static void
append_cluster_time_doc(bson_t *out, uint32_t t, uint32_t i)
{
    bson_t ct, sig;
    uint8_t zeros[20] = {0};
    BSON_APPEND_DOCUMENT_BEGIN(out, "$clusterTime", &ct);
    BSON_APPEND_TIMESTAMP(&ct, "clusterTime", t, i);
    BSON_APPEND_DOCUMENT_BEGIN(&ct, "signature", &sig);
    BSON_APPEND_BINARY(&sig, "hash", BSON_SUBTYPE_BINARY, zeros, sizeof zeros);
    BSON_APPEND_INT64(&sig, "keyId", 0);
    bson_append_document_end(&ct, &sig);
    bson_append_document_end(out, &ct);
}

void
mr_cluster_time_append(bson_t *reply)
{
    pthread_mutex_lock(&clock_mu);
    uint32_t t = cluster_t;
    uint32_t i = cluster_i;
    pthread_mutex_unlock(&clock_mu);
    if (t == 0) {
        t = (uint32_t)(mr_now_ms() / 1000);
    }
    append_cluster_time_doc(reply, t, i);
    BSON_APPEND_TIMESTAMP(reply, "operationTime", t, i);
}

bool
mr_shard_run(mr_client_t *client, int shard, const bson_t *cmd, bson_t *reply,
             bson_error_t *error)
{
    static const char *const drop[] = {"$clusterTime", NULL};
    bson_t out;
    mr_cmd_copy_without(cmd, drop, &out);
    pthread_mutex_lock(&clock_mu);
    uint32_t t = cluster_t;
    uint32_t i = cluster_i;
    pthread_mutex_unlock(&clock_mu);
    if (t) {
        append_cluster_time_doc(&out, t, i);
    }
    bool ok = mr_conn_run(&client->shards[shard], mr_config.shard_host[shard], &out, reply, error);
    bson_destroy(&out);
    if (ok) {
        mr_cluster_time_note(reply);
    }
    return ok;
}

bool
mr_forward(mr_cmd_t *c, int shard, bson_error_t *error)
{
    bson_t reply;
    if (!mr_shard_run(c->client, shard, c->cmd, &reply, error)) {
        bson_destroy(&reply);
        return false;
    }
    bson_concat(c->reply, &reply);
    c->reply_done = true;
    bson_destroy(&reply);
    return true;
}

/* ---- the router's own commands ------------------------------------------------------------- */

/* mongos answers hello itself (s/commands/cluster_hello_cmd.cpp): msg "isdbgrid", no setName,
 * no hosts; its own clock in localTime. */
bool
mr_cmd_hello(mr_cmd_t *c, bson_error_t *error)
{
    (void)error;
    bool legacy = strcmp(c->name, "hello") != 0;
    BSON_APPEND_BOOL(c->reply, legacy ? "ismaster" : "isWritablePrimary", true);
    BSON_APPEND_UTF8(c->reply, "msg", "isdbgrid");
    BSON_APPEND_INT32(c->reply, "maxBsonObjectSize", 16 * 1024 * 1024);
    BSON_APPEND_INT32(c->reply, "maxMessageSizeBytes", 48000000);
    BSON_APPEND_INT32(c->reply, "maxWriteBatchSize", 100000);
    BSON_APPEND_DATE_TIME(c->reply, "localTime", mr_now_ms());
    BSON_APPEND_INT32(c->reply, "logicalSessionTimeoutMinutes", 30);
    BSON_APPEND_INT64(c->reply, "connectionId", c->client->id);
    BSON_APPEND_INT32(c->reply, "minWireVersion", 0);
    BSON_APPEND_INT32(c->reply, "maxWireVersion", 17);
    BSON_APPEND_BOOL(c->reply, "readOnly", false);
    if (bson_has_field(c->cmd, "helloOk")) {
        BSON_APPEND_BOOL(c->reply, "helloOk", true);
    }
    return true;
}

bool
mr_cmd_ping(mr_cmd_t *c, bson_error_t *error)
{
    (void)c;
    (void)error;
    return true;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static mr_handler_t
lookup(const char *name)
{
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++) {
        if (strcmp(commands[k].name, name) == 0) {
            return commands[k].handler;
        }
    }
    return NULL;
}

/* Copies a finished reply without the envelope fields the router sets itself. */
static void
copy_body(const bson_t *body, bson_t *reply)
{
    static const char *const drop[] = {"$clusterTime", "operationTime", NULL};
    bson_t tmp;
    mr_cmd_copy_without(body, drop, &tmp);
    bson_concat(reply, &tmp);
    bson_destroy(&tmp);
}

/*
 * mongos evaluates $$NOW and $$CLUSTER_TIME of a findAndModify and an update itself and sends
 * them to the shards as runtimeConstants {localNow, clusterTime}, which the shard adopts: so
 * these commands run on the clock of the mongos that routes them. A client may not send its own
 * (51196, 51195). s/commands/cluster_find_and_modify_cmd.cpp,
 * appendLegacyRuntimeConstantsToCommandObject; s/commands/cluster_write_cmd.h,
 * ClusterUpdateCmdBase::parse; db/pipeline/variables.cpp, generateRuntimeConstants (Date_t::now()
 * of the process). Deletes, finds and aggregates are forwarded without them: their $$NOW is the
 * shard's. Returns the code of a refusal, 0 when stamped (or not one of these commands).
 */
static int
stamp_runtime_constants(const char *name, const bson_t *cmd, bson_t *out)
{
    bool fam = strcasecmp(name, "findAndModify") == 0;
    bson_t rc;
    if (!fam && strcmp(name, "update") != 0) {
        return 0;
    }
    if (bson_has_field(cmd, "runtimeConstants")) {
        return fam ? 51196 : 51195;
    }
    pthread_mutex_lock(&clock_mu);
    uint32_t t = cluster_t;
    uint32_t i = cluster_i;
    pthread_mutex_unlock(&clock_mu);
    bson_copy_to(cmd, out);
    BSON_APPEND_DOCUMENT_BEGIN(out, "runtimeConstants", &rc);
    BSON_APPEND_DATE_TIME(&rc, "localNow", mr_now_ms());
    BSON_APPEND_TIMESTAMP(&rc, "clusterTime", t ? t : (uint32_t)(mr_now_ms() / 1000), t ? i : 0);
    bson_append_document_end(out, &rc);
    return 0;
}

void
mr_dispatch(mr_client_t *client, const bson_t *cmd, bson_t *reply)
{
    bson_error_t error = {0};
    bson_t body = BSON_INITIALIZER;
    bson_iter_t it;
    mr_cmd_t c = {.client = client, .cmd = cmd, .reply = &body, .db = "admin", .name = ""};
    bson_init(reply);
    if (bson_iter_init(&it, cmd) && bson_iter_next(&it)) {
        c.name = bson_iter_key(&it);
        c.coll = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : NULL;
    }
    if (bson_iter_init_find(&it, cmd, "$db") && BSON_ITER_HOLDS_UTF8(&it)) {
        c.db = bson_iter_utf8(&it, NULL);
    }
    bson_t stamped = BSON_INITIALIZER;
    int refused = stamp_runtime_constants(c.name, cmd, &stamped);
    if (!bson_empty(&stamped)) {
        c.cmd = &stamped;
    }
    mr_handler_t handler = lookup(c.name);
    bool ok = refused ? ms_set_error(&error, refused,
                                     "Cannot specify runtime constants option to a mongos")
              : handler ? handler(&c, &error)
                        : ms_set_error(&error, 59, "no such command: '%s'", c.name);
    if (ok && c.reply_done) {
        copy_body(&body, reply);
    } else if (ok) {
        bson_concat(reply, &body);
        BSON_APPEND_DOUBLE(reply, "ok", 1.0);
    } else {
        mr_append_error(reply, &error);
    }
    mr_cluster_time_append(reply);
    bson_destroy(&body);
    bson_destroy(&stamped);
}

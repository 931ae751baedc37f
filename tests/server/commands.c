/*
 * The command table: one row per command the server knows, with its aliases, what it allows
 * (MS_CMD_* flags, enforced by dispatch.c) and its handler (declared in commands.h). A name not
 * here is CommandNotFound 59, as on mongod.
 */
#include "commands.h"

#include <string.h>

#define WRITE (MS_CMD_LOCK | MS_CMD_RETRYABLE | MS_CMD_IN_TXN | MS_CMD_WC | MS_CMD_SESSION)
#define DDL (MS_CMD_LOCK | MS_CMD_WC | MS_CMD_SESSION)
#define READ (MS_CMD_LOCK | MS_CMD_SESSION)
#define TXN_END (MS_CMD_LOCK | MS_CMD_IN_TXN | MS_CMD_WC | MS_CMD_ADMIN | MS_CMD_TXN_END | \
                 MS_CMD_SESSION)

static const ms_command_t commands[] = {
    {"hello", {"isMaster", "ismaster"}, ms_cmd_hello, MS_CMD_HANDSHAKE},
    {"ping", {NULL}, ms_cmd_ping, 0},
    {"buildInfo", {"buildinfo"}, ms_cmd_build_info, 0},
    {"serverStatus", {NULL}, ms_cmd_server_status, MS_CMD_LOCK},
    {"endSessions", {NULL}, ms_cmd_end_sessions, MS_CMD_LOCK},
    {"killSessions", {NULL}, ms_cmd_kill_sessions, MS_CMD_LOCK},
    {"killAllSessions", {NULL}, ms_cmd_kill_all_sessions, MS_CMD_LOCK},
    {"getParameter", {NULL}, ms_cmd_get_parameter, MS_CMD_ADMIN},
    {"whatsmyuri", {NULL}, ms_cmd_whats_my_uri, 0},
    {"listDatabases", {NULL}, ms_cmd_list_databases, MS_CMD_LOCK | MS_CMD_ADMIN},
    {"listCollections", {NULL}, ms_cmd_list_collections, READ},
    {"create", {NULL}, ms_cmd_create, DDL | MS_CMD_IN_TXN},
    {"drop", {NULL}, ms_cmd_drop, DDL},
    {"dropDatabase", {NULL}, ms_cmd_drop_database, DDL},
    {"createIndexes", {NULL}, ms_cmd_create_indexes, DDL | MS_CMD_IN_TXN},
    {"listIndexes", {NULL}, ms_cmd_list_indexes, READ},
    {"dropIndexes", {"deleteIndexes"}, ms_cmd_drop_indexes, DDL},
    {"collMod", {NULL}, ms_cmd_coll_mod, DDL},
    {"renameCollection", {NULL}, ms_cmd_rename_collection, DDL | MS_CMD_ADMIN},
    {"configureFailPoint", {NULL}, ms_cmd_configure_fail_point, MS_CMD_ADMIN},
    {"waitForFailPoint", {NULL}, ms_cmd_wait_for_fail_point, MS_CMD_ADMIN},
    {"getMore", {NULL}, ms_cmd_get_more, MS_CMD_IN_TXN},
    {"killCursors", {NULL}, ms_cmd_kill_cursors, MS_CMD_IN_TXN},
    {"insert", {NULL}, ms_cmd_insert, WRITE},
    {"update", {NULL}, ms_cmd_update, WRITE},
    {"delete", {NULL}, ms_cmd_delete, WRITE},
    {"findAndModify", {"findandmodify"}, ms_cmd_find_and_modify, WRITE},
    {"find", {NULL}, ms_cmd_find, READ | MS_CMD_IN_TXN},
    {"count", {NULL}, ms_cmd_count, READ},
    {"distinct", {NULL}, ms_cmd_distinct, READ | MS_CMD_IN_TXN},
    /* aggregate with $changeStream runs without the lock (dispatch.c, needs_lock) */
    {"aggregate", {NULL}, ms_cmd_aggregate, READ | MS_CMD_IN_TXN},
    {"explain", {NULL}, ms_cmd_explain, READ},
    {"commitTransaction", {NULL}, ms_cmd_commit_transaction, TXN_END},
    {"abortTransaction", {NULL}, ms_cmd_abort_transaction, TXN_END},
};

bool
ms_command_has_alias(const ms_command_t *cmd, const char *name)
{
    if (strcmp(cmd->name, name) == 0) {
        return true;
    }
    for (size_t i = 0; i < MS_COMMAND_MAX_ALIASES && cmd->aliases[i]; i++) {
        if (strcmp(cmd->aliases[i], name) == 0) {
            return true;
        }
    }
    return false;
}

const ms_command_t *
ms_command_find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (ms_command_has_alias(&commands[i], name)) {
            return &commands[i];
        }
    }
    return NULL;
}

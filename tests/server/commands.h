/*
 * mongoq-test-server: the commands. commands.c holds the table, one row per command (name,
 * aliases, flags, handler); this header declares every handler, grouped by the file that
 * defines it. Adding a command is a row there, a declaration here and the handler in its file.
 */
#ifndef MS_COMMANDS_H
#define MS_COMMANDS_H

#include "common.h"

typedef struct ms_cmd_t ms_cmd_t; /* one request being run (server-private.h) */

typedef bool (*ms_cmd_fn)(ms_cmd_t *c, bson_t *reply, bson_error_t *error);

/* What a command allows and needs; dispatch.c enforces each. */
enum {
    MS_CMD_LOCK = 1,        /* run under the storage lock */
    MS_CMD_RETRYABLE = 2,   /* a retryable write (txnNumber without autocommit) */
    MS_CMD_IN_TXN = 4,      /* allowed inside a multi-document transaction */
    MS_CMD_WC = 8,          /* supports writeConcern */
    MS_CMD_ADMIN = 16,      /* only on the admin database */
    MS_CMD_TXN_END = 32,    /* commitTransaction / abortTransaction */
    MS_CMD_HANDSHAKE = 64,  /* allowed over OP_QUERY */
    MS_CMD_SESSION = 128    /* needs the session machinery (lsid/txnNumber) */
};

#define MS_COMMAND_MAX_ALIASES 2

typedef struct {
    const char *name; /* canonical, as replies and failCommand name it */
    const char *aliases[MS_COMMAND_MAX_ALIASES]; /* other names it answers to; NULL: no more */
    ms_cmd_fn fn;
    unsigned flags;          /* MS_CMD_* */
} ms_command_t;

/* The command called name (its name or an alias, case-sensitive as mongod), or NULL. */
const ms_command_t *
ms_command_find(const char *name);

/* Whether name is the command's name or one of its aliases (mongod's Command::hasAlias). */
bool
ms_command_has_alias(const ms_command_t *cmd, const char *name);

#define MS_HANDLER(name) bool ms_cmd_##name(ms_cmd_t *c, bson_t *reply, bson_error_t *error)

/* cmd_admin.c: handshake, server state, sessions, databases and collections */
MS_HANDLER(hello);
MS_HANDLER(ping);
MS_HANDLER(whats_my_uri);
MS_HANDLER(build_info);
MS_HANDLER(server_status);
MS_HANDLER(end_sessions);
MS_HANDLER(list_databases);
MS_HANDLER(list_collections);
MS_HANDLER(create);
MS_HANDLER(drop);
MS_HANDLER(drop_database);

/* cmd_sessions.c: killing sessions, server parameters */
MS_HANDLER(kill_sessions);
MS_HANDLER(kill_all_sessions);
MS_HANDLER(get_parameter);

/* cmd_rename.c */
MS_HANDLER(rename_collection);

/* cmd_index.c */
MS_HANDLER(create_indexes);
MS_HANDLER(list_indexes);
MS_HANDLER(drop_indexes);

/* cmd_collmod.c */
MS_HANDLER(coll_mod);

/* cmd_crud.c: insert and the reads */
MS_HANDLER(insert);
MS_HANDLER(find);
MS_HANDLER(count);
MS_HANDLER(distinct);

/* cmd_write.c */
MS_HANDLER(update);
MS_HANDLER(find_and_modify);

/* cmd_delete.c */
MS_HANDLER(delete);

/* cmd_agg.c */
MS_HANDLER(aggregate);
MS_HANDLER(explain);

/* cursor.c */
MS_HANDLER(get_more);
MS_HANDLER(kill_cursors);

/* txn.c */
MS_HANDLER(commit_transaction);
MS_HANDLER(abort_transaction);

/* failpoint.c */
MS_HANDLER(configure_fail_point);
MS_HANDLER(wait_for_fail_point);

#endif

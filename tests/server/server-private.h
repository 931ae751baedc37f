/*
 * mongoq-test-server: internals shared by the command layer (the program's files outside the
 * language library: main.c, net.c, wire.c, dispatch.c, generic_args.c, cmd_*.c, cursor.c,
 * session.c, failpoint.c, ttl.c, ...). The command table is in commands.h. Test infrastructure
 * only.
 */
#ifndef MS_SERVER_PRIVATE_H
#define MS_SERVER_PRIVATE_H

#include "commands.h"
#include "common.h"
#include "lang.h"
#include "oplog.h"

#include <pthread.h>

/* ---- configuration (main.c) -------------------------------------------------------------- */

typedef struct {
    char bind[64];
    int port; /* the real port once listening */
    char set_name[64];
    bool standalone;
    const char *dbpath;
    size_t history;         /* --history N: change-stream history in operations (0: no limit) */
    uint64_t history_bytes; /* --history-bytes N (0: mongod's default oplog size) */
    int ttl_sleep_secs;
    int noop_interval_secs; /* --noop-interval N: periodic no-op (noop.c); 0: none */
    bool pipeline_updates_as_replace; /* log pipeline updates as replacements (replace events) */
    int64_t term;           /* grows across restarts (see main.c); electionId encodes it */
    bson_oid_t election_id; /* 7fffffff + term, big-endian, as mongod's OID::fromTerm */
    int64_t start_ms;
    char host_port[96]; /* set once listening */
} ms_config_t;

extern ms_config_t ms_config;

/* hello.setVersion: the replica set configuration never changes, so one value for every start. */
#define MS_SET_VERSION 1

/* "127.0.0.1:PORT", the host name drivers see in hello.hosts. */
const char *
ms_host_and_port(void);

/* ---- connections (net.c) ----------------------------------------------------------------- */

typedef struct {
    int fd;
    int64_t id;
    char appname[128]; /* client.application.name from the first hello, "" when none */
    char peer[64];
} ms_conn_t;

/* Listens on ms_config.bind/port (0: a free port; sets ms_config.port). */
bool
ms_net_listen(bson_error_t *error);
/* Accepts connections (a thread each) until ms_net_stop(). */
void
ms_net_serve(void);
/* Async-signal-safe: makes ms_net_serve return. */
void
ms_net_stop(void);
/* True once shutdown has begun. */
bool
ms_net_stopping(void);

/* ---- wire protocol (wire.c) -------------------------------------------------------------- */

#define MS_MAX_MESSAGE_BYTES 48000000
#define MS_MAX_BSON_BYTES 16777216

typedef struct {
    int32_t request_id;
    int32_t opcode;     /* 2013 OP_MSG or 2004 OP_QUERY */
    bool more_to_come;  /* OP_MSG flag bit 1: no reply wanted */
    bson_t cmd;         /* the command with document sequences merged in */
    char query_db[128]; /* OP_QUERY: the database of "<db>.$cmd" */
} ms_request_t;

/*
 * Reads and parses one message. Returns false when the connection must be closed (EOF, I/O
 * error or a malformed message; *reason says which, for the log). req->cmd is initialised on
 * success only.
 */
bool
ms_wire_read(int fd, ms_request_t *req, const char **reason);
/* Sends reply to req in the matching format (OP_MSG or OP_REPLY). */
bool
ms_wire_reply(int fd, const ms_request_t *req, const bson_t *reply);
/* CRC-32C (Castagnoli) of len bytes. */
uint32_t
ms_crc32c(const uint8_t *data, size_t len);

/* ---- command dispatch (dispatch.c) -------------------------------------------------------- */

typedef struct ms_session_t ms_session_t;
typedef struct ms_txn_t ms_txn_t;

/* Everything a command handler may need (ms_cmd_t is declared in commands.h). */
struct ms_cmd_t {
    ms_conn_t *conn;
    const bson_t *cmd;
    const ms_command_t *command; /* its row in the command table (NULL: none) */
    const char *name;            /* canonical command name */
    const char *db;
    ms_ctx_t lang; /* $$NOW and $$CLUSTER_TIME */
    /* session fields */
    bool has_lsid;
    bson_value_t lsid_id;
    bool has_txn_number;
    int64_t txn_number;
    bool in_txn;          /* autocommit: false */
    bool start_txn;       /* startTransaction: true */
    ms_session_t *session; /* when has_lsid (valid under the storage lock) */
    ms_txn_t *txn;         /* the transaction this command runs in, or NULL */
    /* write concern */
    bool wc_unacknowledged; /* w: 0 */
    bool wc_journal;        /* answer only once the journal is on disk (j: true, or w:
                               majority, given or the replica set's implicit default) */
    int wc_error_code;      /* UnsatisfiableWriteConcern or UnknownReplWriteConcern to report
                               as writeConcernError after a write (0: none) */
    char wc_error_msg[128];
    /* labels decided by the handler */
    bool close_connection;
    bool retry_unrecorded; /* onPrimaryTransactionalWrite failed a statement: no result kept */
    struct ms_coll_t *view_colls; /* views read by the command, materialised (view.c) */
    bool change_stream_cursor; /* getMore checked out a change stream's cursor */
};

/* Runs one command, always filling reply (initialised by the callee). */
void
ms_dispatch(ms_conn_t *conn, ms_request_t *req, bson_t *reply, bool *close_conn);

/* Appends {ok: 0, errmsg, code, codeName} for error. */
void
ms_append_error(bson_t *reply, const bson_error_t *error);

/* ---- generic arguments (generic_args.c) -------------------------------------------------- */

/* Reads the session fields, writeConcern, readConcern and apiVersion of c (flags: the
 * command's MS_CMD_* flags, which say whether it takes a write concern). */
bool
ms_parse_generic_args(ms_cmd_t *c, unsigned flags, bson_error_t *error);

/* Refuses fields of cmd not in allowed (NULL-terminated) nor generic: 40415 as mongod's IDL. */
bool
ms_check_fields(const ms_cmd_t *c, const char *const *allowed, bson_error_t *error);

/* Refuses a key of doc that is not in allowed (NULL-terminated) with 40415, naming it
 * "<where>.<key>" as mongod's IDL does. */
bool
ms_check_doc_fields(const bson_t *doc, const char *const *allowed, const char *where,
                    bson_error_t *error);

/* Whether a field is one of the generic command arguments ($db, lsid, writeConcern, ...). */
bool
ms_is_generic_field(const char *field);

/* ---- listing commands' helpers (cmd_admin.c) ---------------------------------------------- */

/* The collection named by a command's first field (a string), else InvalidNamespace 73. */
const char *
ms_admin_coll_name(const ms_cmd_t *c, bson_error_t *error);
/* cursor.batchSize of a listing command (101 when absent). */
bool
ms_admin_cursor_batch_size(const ms_cmd_t *c, int64_t *batch_size, bson_error_t *error);

/* ---- extra fields of an error (errinfo.c) ----------------------------------------------- */

/* Whether errors with this code carry extra fields (11000 keyPattern/keyValue, 121 errInfo). */
bool
ms_error_has_info(int code);
/* The extra fields of the last such error on this thread (empty when none). */
const bson_t *
ms_error_info(void);
/* Sets them (copied), replacing what the thread held. */
void
ms_error_info_set(const bson_t *fields);
/* Frees what the thread holds (end of each command). */
void
ms_error_info_reset(void);

/* Retryable write error codes (mongod's RetriableError category and shutdown errors). */
bool
ms_code_is_retryable(int code);

/* ---- values as mongod prints them in messages (render.c) --------------------------------- */

/* BSONElement::toString without the field name: 1, 1.0, "a", { a: 1 }, [ 1, 2 ], new Date(0).
 * Caller frees (bson_free). */
char *
ms_render_value(const bson_value_t *v);
/* BSONObj::toString: { key: { a: 1 }, name: "a_1" }. Caller frees (bson_free). */
char *
ms_render_doc(const bson_t *doc);
/* mongod's name of a BSON type: "double", "string", "object", "int", "long", ... */
const char *
ms_type_name(bson_type_t type);
/* BSONElement::trueValue: false, 0, null and undefined are false, anything else true. */
bool
ms_true_value(const bson_value_t *v);

/* ---- the storage lock (store.c) ---------------------------------------------------------- */

void
ms_store_lock(void);
void
ms_store_unlock(void);
void
ms_store_init(void);

/* ---- cursors (cursor.c) -------------------------------------------------------------------- */

/* Registers results (taken over) for a cursor; returns the new id. */
int64_t
ms_cursor_add(const char *ns, ms_docvec_t *results, size_t pos, const bson_value_t *lsid);
/* A new cursor id for a change stream, then attach it. */
int64_t
ms_cursor_new_id(void);
void
ms_cursor_add_changestream(int64_t id, const char *ns, ms_changestream_t *cs);
/* Where a batch from pos ends: at most batch_size documents (0: no count limit), 16 MiB. */
size_t
ms_cursor_batch_end(const ms_docvec_t *results, size_t pos, int64_t batch_size);
/* Appends "cursor": {<field>: results[from, to), id, ns} to reply. */
void
ms_cursor_append_batch(bson_t *reply, int64_t id, const char *ns, const char *field,
                       const ms_docvec_t *results, size_t from, size_t to);
/* Replies with a first batch of results and a cursor holding the rest (taking the vector). */
void
ms_cursor_reply(const ms_cmd_t *c, bson_t *reply, const char *ns, ms_docvec_t *results,
                int64_t batch_size);
/* Tags cursor id with the session of c (killSessions kills it with the session). */
void
ms_cursor_set_session(int64_t id, const ms_cmd_t *c);
/* Kills the cursors of session id (16 bytes), or every cursor opened in a session when NULL. */
void
ms_cursor_kill_session(const uint8_t *id);
/* Drops cursors idle for more than 10 minutes. */
void
ms_cursor_reap(int64_t now_ms);
/* Closes all cursors (shutdown). */
void
ms_cursor_shutdown(void);

/* ---- fail points (failpoint.c) ---------------------------------------------------------- */

typedef struct {
    bool close_connection;
    int64_t block_ms;
    int error_code; /* 0: none */
    bson_t error_labels; /* array, when has_labels */
    bool has_labels;
    bson_t write_concern_error; /* document, when has_wce */
    bool has_wce;
} ms_failpoint_hit_t;

/* The fail points of failpoint.c's registry, one id each. */
typedef enum {
    MS_FP_FAIL_COMMAND,
    MS_FP_FAIL_GET_MORE_AFTER_CURSOR_CHECKOUT,
    MS_FP_ON_PRIMARY_TRANSACTIONAL_WRITE,
    MS_FP_MAX_TIME_ALWAYS_TIME_OUT,
    MS_FP_HANG_DURING_BATCH_INSERT,
    MS_FP_COUNT
} ms_failpoint_id_t;

/*
 * True when fail point id fires for command cmd on conn (ns: the namespace when known, NULL
 * when not checked); hit is always filled, to be released with ms_failpoint_hit_destroy.
 */
bool
ms_failpoint_check(ms_failpoint_id_t id, const ms_command_t *cmd, const ms_conn_t *conn,
                   const char *ns, ms_failpoint_hit_t *hit);
void
ms_failpoint_hit_destroy(ms_failpoint_hit_t *hit);
/* Pauses the calling command while fail point id (a hang) is set, when it fires for cmd. */
void
ms_failpoint_pause_while_set(ms_failpoint_id_t id, const ms_command_t *cmd,
                             const ms_conn_t *conn);
/* Whether fail point id is on (any mode but off), without counting an activation. */
bool
ms_failpoint_is_on(ms_failpoint_id_t id);

/* ---- maxTimeMS (deadline.c) --------------------------------------------------------------- */

/* Starts the running thread's operation deadline from c's maxTimeMS (none for 0, for a command
 * without one, and for getMore, whose maxTimeMS is an await time); false (MaxTimeMSExpired)
 * when the maxTimeAlwaysTimeOut fail point fires for it. */
bool
ms_deadline_begin(const ms_cmd_t *c, bson_error_t *error);
void
ms_deadline_end(void);
/* A scan's periodic interrupt check: false (MaxTimeMSExpired) once the deadline has passed. */
bool
ms_deadline_check(bson_error_t *error);
/* The monotonic clock in milliseconds (deadlines and waits). */
int64_t
ms_mono_ms(void);

/* ---- TTL monitor (ttl.c) ----------------------------------------------------------------- */

void
ms_ttl_start(void);

/* noop.c: the periodic no-op writer (--noop-interval); start does nothing for 0. */
void
ms_noop_start(int interval_secs);
void
ms_noop_stop(void);
/* noop.c: a command's $clusterTime moves the server's cluster time on (mongod's gossip). */
void
ms_cluster_time_gossip(const bson_t *cmd);
void
ms_ttl_stop(void);

#endif

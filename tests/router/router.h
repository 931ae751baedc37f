/*
 * mongoq-test-router: a mongos for tests, in front of N mongoq-test-server shards (README.md).
 *
 * Files: main.c (flags, start, stop), shards.c (shard processes), wire.c (OP_MSG/OP_QUERY both
 * ways), net.c (connections), dispatch.c (the command table, errors, forwarding), catalog.c (the
 * routing table and config reads), shard_indexes.c (a sharded collection and its indexes on the
 * shards), target.c (shard keys, hashing, which shards a filter or a document goes to), chunks.c
 * (split, moveChunk), cmd_write.c (insert, update, delete, findAndModify), cmd_read.c (find,
 * aggregate, count, distinct), cursor.c (router cursors, merging), changestream.c (merged change
 * streams), cmd_admin.c (indexes, collections, sessions, transactions, broadcasts).
 *
 * The language library of the test server (lang.h) gives the router MongoDB's value order,
 * sort comparisons, filters for config reads and pipelines it runs itself.
 */
#ifndef MR_ROUTER_H
#define MR_ROUTER_H

#include "common.h"
#include "lang.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define MR_MAX_SHARDS 16
/* mongos endpoints one router process serves (--clock-offset-ms given several times). */
#define MR_MAX_MONGOS 8

/* ---- configuration (main.c) ------------------------------------------------------------- */

typedef struct {
    char bind[64];
    int port;
    int nshards;
    char shard_host[MR_MAX_SHARDS][96]; /* "127.0.0.1:port" */
    char shard_set[MR_MAX_SHARDS][32];  /* replica set name, also the shard's name */
    int64_t shard_clock_offset_ms[MR_MAX_SHARDS];
    const char *server_bin; /* --server-bin: spawn shards from here */
    int noop_interval_secs; /* given to spawned shards */
    /* Each --clock-offset-ms is one mongos endpoint (a port) with its own clock; none: one
     * endpoint on the host's clock. The endpoints share the routing table, as mongos routers
     * share the config servers. */
    int nmongos;
    int64_t mongos_clock_offset_ms[MR_MAX_MONGOS];
    int mongos_port[MR_MAX_MONGOS];
    bool shardkeyless_writes; /* 7.1's findAndModify/updateOne/deleteOne without shard key */
    char host_port[MR_MAX_MONGOS * 32]; /* "127.0.0.1:p1,127.0.0.1:p2" */
} mr_config_t;

extern mr_config_t mr_config;

/* The mongos endpoint the calling thread serves (0 outside a client connection's thread). */
int mr_mongos_current(void);
void mr_mongos_set_current(int mongos);

/* The clock of the calling thread's mongos: the host's plus its --clock-offset-ms. */
int64_t mr_now_ms(void);

/* ---- shard processes (shards.c) --------------------------------------------------------- */

/* Spawns mr_config.nshards test servers; fills shard_host/shard_set. */
bool mr_shards_spawn(bson_error_t *error);
/* Stops (SIGTERM, then SIGKILL after a grace period) every shard this process started. */
void mr_shards_stop(void);

/* ---- wire (wire.c) ---------------------------------------------------------------------- */

typedef struct {
    int32_t request_id;
    bool legacy; /* OP_QUERY: answer with OP_REPLY */
    bool more_to_come;
    bson_t cmd; /* the body, document sequences folded in as arrays */
} mr_request_t;

/* Reads one request. false on EOF or a malformed message (close the connection). */
bool mr_wire_read_request(int fd, mr_request_t *req);
void mr_request_destroy(mr_request_t *req);
bool mr_wire_send_reply(int fd, const mr_request_t *req, const bson_t *reply);

/* A connection to a shard. */
typedef struct {
    int fd; /* -1: not open */
    int32_t next_id;
} mr_conn_t;

/* Sends cmd as an OP_MSG and reads the reply (reply always initialised). false: network error. */
bool mr_conn_run(mr_conn_t *conn, const char *host_port, const bson_t *cmd, bson_t *reply,
                 bson_error_t *error);
void mr_conn_close(mr_conn_t *conn);

/* ---- connections (net.c) ---------------------------------------------------------------- */

bool mr_net_listen(bson_error_t *error);
/* Accepts connections until mr_net_request_stop (async-signal-safe). */
void mr_net_serve(void);
void mr_net_request_stop(void);
bool mr_net_stopping(void);
/* Shuts every client connection down and waits (at most 5 s) for their threads. */
void mr_net_close_clients(void);

/* ---- a client connection and a command (dispatch.c) ------------------------------------- */

typedef struct {
    int fd;
    int64_t id;
    int mongos; /* the endpoint it connected to */
    mr_conn_t shards[MR_MAX_SHARDS];
} mr_client_t;

typedef struct {
    mr_client_t *client;
    const bson_t *cmd;
    const char *name; /* the command name as sent */
    const char *db;
    const char *coll; /* the first field's value when a string, else NULL */
    bson_t *reply;    /* initialised; the handler appends, without "ok" on success */
    bool reply_done;  /* the handler put a whole reply (with ok) in reply */
} mr_cmd_t;

typedef bool (*mr_handler_t)(mr_cmd_t *c, bson_error_t *error);

/* Runs one request; reply (initialised here) is the whole answer. */
void mr_dispatch(mr_client_t *client, const bson_t *cmd, bson_t *reply);

/* Codes the router sends; names from the test server's table, and these it lacks. */
#define MR_SHARD_KEY_NOT_FOUND 61
const char *mr_code_name(int code);

/* Appends {ok: 0, errmsg, code, codeName}. */
void mr_append_error(bson_t *reply, const bson_error_t *error);

/*
 * Runs cmd on shard, gossiping the router's cluster time to it and learning the shard's.
 * reply is the shard's reply (ok may be 0). false only on a network error (HostUnreachable).
 */
bool mr_shard_run(mr_client_t *client, int shard, const bson_t *cmd, bson_t *reply,
                  bson_error_t *error);

/* The shard's reply ok? If not, *error gets its code and message. */
bool mr_reply_ok(const bson_t *reply, bson_error_t *error);

/* A copy of the command with the fields in drop[] (NULL-terminated) left out. */
void mr_cmd_copy_without(const bson_t *cmd, const char *const *drop, bson_t *out);

/* Forwards the command unchanged to one shard; its reply becomes the client's. */
bool mr_forward(mr_cmd_t *c, int shard, bson_error_t *error);

/* The newest cluster time seen from any shard (for replies and gossip). */
void mr_cluster_time_note(const bson_t *reply);
void mr_cluster_time_append(bson_t *reply);

/* ---- routing table (catalog.c) ---------------------------------------------------------- */

typedef struct {
    /* Pointers, never embedded: bson_t wants 128-byte alignment that bson_malloc'd arrays lack. */
    bson_t *min; /* {field: value, ...}; MinKey/MaxKey for the ends; hashed fields as int64 */
    bson_t *max;
    int shard;
} mr_chunk_t;

typedef struct {
    char *ns;
    bson_t *key; /* the shard key pattern */
    int nfields;
    char **fields;
    int hashed_field; /* index of the hashed field, -1: ranged */
    bool unique;
    mr_chunk_t *chunks; /* sorted by min, covering MinKey..MaxKey */
    size_t nchunks;
    bson_oid_t epoch;
    uint8_t uuid[16];
    int64_t created_ms;
} mr_coll_t;

void mr_catalog_init(void);
void mr_catalog_lock(void);
void mr_catalog_unlock(void);
/* With the catalog locked: the sharded collection ns, or NULL. */
mr_coll_t *mr_catalog_coll(const char *ns);
/* The database's primary shard (assigned on first use). */
int mr_catalog_primary(const char *db);
/* Forgets a dropped collection / database. */
void mr_catalog_drop_coll(const char *ns);
void mr_catalog_drop_db(const char *db);
/* Shards that own chunks of coll, as a bit mask. */
uint32_t mr_coll_shards(const mr_coll_t *coll);

/* A find on a config collection (databases, collections, chunks, shards), answered here. */
bool mr_catalog_config_find(mr_cmd_t *c, bson_error_t *error);

/* ---- a sharded collection on the shards (shard_indexes.c) -------------------------------- */

/* Creates on shard `to` the indexes db.coll_name has on shard `from` (moveChunk, shardCollection). */
bool mr_copy_indexes(mr_client_t *client, const char *db, const char *coll_name, int from, int to,
                     bson_error_t *error);
/* Creates coll on every shard, with its shard key's index and the primary shard's indexes. */
bool mr_create_on_shards(mr_cmd_t *c, const char *db, const char *coll_name, const mr_coll_t *coll,
                         int primary, bson_error_t *error);

/* ---- targeting (target.c) --------------------------------------------------------------- */

/* The hash of a hashed shard key field (not mongod's MD5-based one; see README.md). */
int64_t mr_hash_value(const bson_value_t *v);
/* The shard owning a document (missing shard key fields count as null). */
int mr_target_doc(const mr_coll_t *coll, const bson_t *doc);
/* The shards a filter can match documents on (a bit mask, never 0). */
uint32_t mr_target_query(const mr_coll_t *coll, const bson_t *filter);
/* Whether the filter has an equality on every shard key field (extractShardKeyFromQuery). */
bool mr_query_has_full_key(const mr_coll_t *coll, const bson_t *filter);
/* Whether the filter is an exact match on _id ({_id: v}, v not an object/array/regex). */
bool mr_query_is_exact_id(const bson_t *filter);
/* The shard key values of doc, as {field: value} (null where missing). */
void mr_extract_key(const mr_coll_t *coll, const bson_t *doc, bson_t *out);
/* Compares two shard key documents field by field (same fields, same order). */
int mr_key_cmp(const bson_t *a, const bson_t *b);
/* The index of the chunk of coll holding the shard key value key. */
size_t mr_chunk_for_key(const mr_coll_t *coll, const bson_t *key);
/* Finds an equality on field at the top level of filter or inside its $and. */
bool mr_find_equality(const bson_t *filter, const char *field, bson_value_t *out);

/* ---- cursors (cursor.c) ----------------------------------------------------------------- */

typedef struct mr_cursor mr_cursor_t;
typedef struct mr_cstream mr_cstream_t;

typedef struct {
    int shard;
    int64_t id; /* the shard's cursor; 0: exhausted */
    ms_docvec_t buf;
    size_t pos;
} mr_remote_t;

struct mr_cursor {
    int64_t id;
    char *ns;
    char *db;
    int nremote;
    mr_remote_t remote[MR_MAX_SHARDS];
    bson_t *sort;        /* a sorted merge, else NULL */
    int64_t skip;        /* still to skip */
    int64_t limit;       /* still to return; -1: no limit */
    ms_docvec_t local;   /* results the router computed itself (used when use_local) */
    size_t local_pos;
    bool use_local;
    mr_cstream_t *cs;    /* a change stream */
    bool busy;
    int64_t last_used_ms;
    int mongos; /* a cursor lives on the mongos that opened it */
};

/* A new cursor (id assigned, not yet registered). */
mr_cursor_t *mr_cursor_new(const char *db, const char *ns);
/* Adds a shard's first reply ({cursor: {id, firstBatch}}) as a remote. */
bool mr_cursor_add_remote(mr_cursor_t *cur, int shard, const bson_t *reply, bson_error_t *error);
/* Writes {cursor: {firstBatch | nextBatch, id, ns}} with up to batch docs (0: up to 16 MiB);
 * registers the cursor when it is not exhausted, else destroys it. */
bool mr_cursor_reply(mr_cmd_t *c, mr_cursor_t *cur, int64_t batch, bool first,
                     bson_error_t *error);
void mr_cursor_destroy(mr_client_t *client, mr_cursor_t *cur);
/* Every remaining merged document (up to the limit) into out (initialised here). */
bool mr_cursor_drain(mr_client_t *client, mr_cursor_t *cur, ms_docvec_t *out, bson_error_t *error);
/* Puts a cursor in the registry for getMore (mr_cursor_reply does it itself). */
void mr_cursor_register(mr_cursor_t *cur);

bool mr_cmd_get_more(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_kill_cursors(mr_cmd_t *c, bson_error_t *error);

/* ---- change streams (changestream.c) ---------------------------------------------------- */

/* Whether an aggregate's pipeline starts with $changeStream. */
bool mr_is_change_stream(const bson_t *cmd);
bool mr_changestream_open(mr_cmd_t *c, bson_error_t *error);
bool mr_changestream_get_more(mr_cmd_t *c, mr_cursor_t *cur, bson_error_t *error);
void mr_changestream_destroy(mr_client_t *client, mr_cstream_t *cs);

/* ---- transactions (cmd_admin.c) --------------------------------------------------------- */

/*
 * For a statement of a transaction (autocommit: false): pins the transaction to the one shard
 * in mask, or fails when mask holds several shards or another shard than the pinned one.
 * Does nothing (true, *shard untouched) outside a transaction.
 */
bool mr_txn_pin(const bson_t *cmd, uint32_t mask, bson_error_t *error);

/* ---- command handlers ------------------------------------------------------------------- */

bool mr_cmd_hello(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_ping(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_build_info(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_enable_sharding(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_shard_collection(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_list_shards(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_balancer_status(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_split(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_move_chunk(mr_cmd_t *c, bson_error_t *error);

bool mr_cmd_insert(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_update(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_delete(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_find_and_modify(mr_cmd_t *c, bson_error_t *error);

bool mr_cmd_find(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_aggregate(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_count(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_distinct(mr_cmd_t *c, bson_error_t *error);

bool mr_cmd_create_indexes(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_broadcast(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_to_primary(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_cursor_on_primary(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_drop(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_drop_database(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_list_databases(mr_cmd_t *c, bson_error_t *error);
bool mr_cmd_end_txn(mr_cmd_t *c, bson_error_t *error);

#endif

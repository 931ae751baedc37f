/*
 * Internals of the fault proxy shared between its files: wire framing (wire.c), rules
 * (rules.c), the fault table (faults.c), connection pairs (conn.c), the proxy object (proxy.c),
 * its thread (loop.c) and its sockets (sockets.c). Cross-file names start with fp_.
 *
 * Ownership: the proxy thread alone touches conns, pfds and the listening socket after start.
 * Everything under mu (rules, stats, command counts, requests from other threads) may be read
 * and written by any thread holding it; no socket call is ever made with mu held.
 */
#ifndef MONGOQ_FAULTPROXY_PRIVATE_H
#define MONGOQ_FAULTPROXY_PRIVATE_H

#include "faultproxy.h"

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>

/* --- wire.c: MongoDB framing ------------------------------------------------------------- */

#define FP_OP_REPLY 1
#define FP_OP_QUERY 2004
#define FP_OP_COMPRESSED 2012
#define FP_OP_MSG 2013
#define FP_MSG_CHECKSUM_PRESENT (1u << 0)
#define FP_MSG_MORE_TO_COME (1u << 1)
#define FP_MSG_EXHAUST_ALLOWED (1u << 16)
#define FP_HEADER_LEN 16
/* mongod's maxMessageSizeBytes: a longer messageLength is a framing error. */
#define FP_MAX_MESSAGE (48 * 1000 * 1000)
#define FP_NAME_MAX 64
#define FP_APP_MAX 128

typedef struct {
    int32_t length;
    int32_t request_id;
    int32_t response_to;
    int32_t opcode;
} fp_header_t;

typedef struct {
    fp_header_t header;
    uint32_t flags;              /* OP_MSG flagBits, 0 for other opcodes */
    char command[FP_NAME_MAX];   /* first key of the command document; "" for none */
    char app_name[FP_APP_MAX];   /* a handshake's client.application.name */
    bool has_app_name;
} fp_msg_t;

/* Reads the header at data (len >= FP_HEADER_LEN); false if its length is out of bounds. */
bool
fp_wire_header(const uint8_t *data, fp_header_t *header);

/* Fills msg from one complete message (header.length bytes). Never fails: unknown is "". */
void
fp_wire_inspect(const uint8_t *data, const fp_header_t *header, fp_msg_t *msg);

/* --- rules.c ---------------------------------------------------------------------------- */

#define FP_MAX_RULES 1024
#define FP_MAX_RULE_COMMANDS 32

typedef struct {
    int32_t id;
    mongoq_fault_kind_t kind;
    char *commands[FP_MAX_RULE_COMMANDS];
    size_t n_commands;
    bool any_command;  /* "*" */
    char *app_name;    /* NULL: any */
    int32_t remaining;
    int64_t hang_ms;
    int64_t hits;
} fp_rule_t;

/* What a request matched: copied out of the rule so it is used without the lock. */
typedef struct {
    int32_t rule_id;
    mongoq_fault_kind_t kind;
    int64_t hang_ms;
} fp_hit_t;

bool
fp_rule_init(fp_rule_t *rule, int32_t id, const mongoq_fault_rule_t *spec, bson_error_t *error);

void
fp_rule_cleanup(fp_rule_t *rule);

/* The first rule with hits left that takes (command, app_name); spends one hit. Under mu. */
bool
fp_rules_match(fp_rule_t *rules, size_t n_rules, const char *command, const char *app_name,
               fp_hit_t *hit);

/* --- conn.c: one client connection and its upstream connection ---------------------------- */

typedef struct {
    uint8_t *data;
    size_t cap;
    size_t len;   /* bytes buffered */
    size_t ready; /* [0, ready) are decided and wait to be written to the peer */
} fp_buf_t;

typedef struct {
    bool in_use;
    int client_fd;
    int server_fd;
    bool connecting;            /* upstream connect() in progress */
    fp_buf_t up;                /* client -> server */
    fp_buf_t down;              /* server -> client */
    char app_name[FP_APP_MAX];  /* from the handshake; "" until then */
    bool held;                  /* HANG: requests from up.ready on wait */
    int64_t held_until_ms;      /* INT64_MAX: until cleared */
    bool forward_next;          /* the held request is released: forward it unmatched */
    bool dropping;              /* DROP_REPLY: waiting for the reply to drop_reply_to */
    int32_t drop_reply_to;
    bool drop_expects_no_reply; /* the request had moreToCome: close once it is written */
    int64_t drop_deadline_ms;
} fp_conn_t;

typedef enum {
    FP_CLOSE_BY_PEER, /* a side closed or failed: not counted as the proxy's doing */
    FP_CLOSE_BY_PROXY /* a fault, reset, partition, bad framing, unreachable upstream */
} fp_close_why_t;

/* Takes client_fd (non-blocking) and starts connecting upstream; closes it on failure. */
void
fp_conn_open(mongoq_faultproxy_t *proxy, fp_conn_t *conn, int client_fd);

void
fp_conn_close(mongoq_faultproxy_t *proxy, fp_conn_t *conn, fp_close_why_t why);

/* poll() events wanted on each side. */
short
fp_conn_client_events(const fp_conn_t *conn);
short
fp_conn_server_events(const fp_conn_t *conn);

void
fp_conn_on_client(mongoq_faultproxy_t *proxy, fp_conn_t *conn, short revents);
void
fp_conn_on_server(mongoq_faultproxy_t *proxy, fp_conn_t *conn, short revents);

/* The next time the connection has something to do on its own, or INT64_MAX. */
int64_t
fp_conn_deadline(const fp_conn_t *conn);
void
fp_conn_on_time(mongoq_faultproxy_t *proxy, fp_conn_t *conn, int64_t now_ms);

/* Ends a hang now: the held requests are forwarded. */
void
fp_conn_release(mongoq_faultproxy_t *proxy, fp_conn_t *conn);

/* The request at conn->up.ready (header.length bytes) goes to the server. */
void
fp_conn_forward_request(mongoq_faultproxy_t *proxy, fp_conn_t *conn, const fp_msg_t *msg);

/* --- faults.c: what each fault kind does ------------------------------------------------- */

typedef void (*fp_fault_apply_fn)(mongoq_faultproxy_t *proxy, fp_conn_t *conn,
                                  const fp_msg_t *msg, const fp_hit_t *hit);

typedef struct {
    mongoq_fault_kind_t kind;
    const char *name;      /* in the control protocol */
    bool takes_duration;   /* the control protocol reads MS after the count */
    fp_fault_apply_fn apply;
} fp_fault_def_t;

/* The i-th row of the table, NULL past the end. */
const fp_fault_def_t *
fp_fault_at(size_t i);
const fp_fault_def_t *
fp_fault_by_kind(mongoq_fault_kind_t kind);
const fp_fault_def_t *
fp_fault_by_name(const char *name);

/* --- proxy.c ----------------------------------------------------------------------------- */

#define FP_MAX_COUNTED_COMMANDS 128

typedef struct {
    char name[FP_NAME_MAX];
    int64_t count;
} fp_command_count_t;

struct mongoq_faultproxy_t {
    /* Fixed once started. */
    struct sockaddr_in upstream;
    uint16_t port;
    size_t max_conns;
    int64_t drop_reply_wait_ms;
    int wake_read_fd;
    int wake_write_fd;
    pthread_t thread;

    /* The proxy thread's own. */
    int listen_fd;
    bool listening;
    mongoq_partition_t partition;
    fp_conn_t *conns;
    struct pollfd *pfds;

    /* Under mu. */
    pthread_mutex_t mu;
    pthread_cond_t applied_cond;
    fp_rule_t *rules;
    size_t n_rules;
    mongoq_faultproxy_stats_t stats;
    fp_command_count_t counted[FP_MAX_COUNTED_COMMANDS];
    size_t n_counted;
    uint64_t requested_seq;           /* bumped by every request to the thread */
    uint64_t applied_seq;             /* the last request the thread has applied */
    bool want_reset;
    bool want_release;
    bool want_stop;
    mongoq_partition_t want_partition;
    mongoq_partition_t partition_now; /* what the thread achieved */
    char partition_error[128];
};

/* Adds delta to one counter (a field of proxy->stats) under mu. */
void
fp_count(mongoq_faultproxy_t *proxy, int64_t *counter, int64_t delta);

/* Counts one request by command name and matches it against the rules, under mu. */
bool
fp_match_request(mongoq_faultproxy_t *proxy, const fp_msg_t *msg, const char *app_name,
                 fp_hit_t *hit);

/* Milliseconds on the monotonic clock. */
int64_t
fp_now_ms(void);

/* Fill error (the fault proxy's domain) and return false: with code and what; with
 * MONGOQ_FAULTPROXY_ERROR_SOCKET, the call and errno's text. */
bool
fp_fail(bson_error_t *error, mongoq_faultproxy_error_code_t code, const char *what);
bool
fp_fail_errno(bson_error_t *error, const char *call);

/* --- sockets.c ----------------------------------------------------------------------------- */

#define FP_LISTEN_BACKLOG 128

/* "HOST:PORT" (or a mongodb:// URI) on a loopback address. */
bool
fp_parse_upstream(const char *upstream, struct sockaddr_in *addr, bson_error_t *error);
bool
fp_open_listener(mongoq_faultproxy_t *proxy, uint16_t port, bson_error_t *error);
bool
fp_open_wake_pipe(mongoq_faultproxy_t *proxy, bson_error_t *error);
/* A byte on the wake-up pipe; fp_drain_wake_pipe (the proxy thread) reads them. */
void
fp_wake(mongoq_faultproxy_t *proxy);
void
fp_drain_wake_pipe(mongoq_faultproxy_t *proxy);

/* --- loop.c -------------------------------------------------------------------------------- */

/* The proxy thread: runs until asked to stop, then closes every connection. */
void *
fp_proxy_main(void *arg);

#endif /* MONGOQ_FAULTPROXY_PRIVATE_H */

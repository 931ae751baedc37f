/*
 * faultproxy.h - a loopback TCP proxy that injects the faults MongoDB's failCommand fail point
 * cannot express: a reply lost after the server applied the command, a hung socket, a partition,
 * a reset of every connection. Test infrastructure only (tests/tools/faultproxy/README.md).
 *
 * The proxy listens on 127.0.0.1 and forwards every connection to one upstream server on a
 * loopback address. It reads MongoDB's wire framing (OP_MSG, OP_QUERY/OP_REPLY) to match rules
 * to commands and to the appName of the connection's handshake, and forwards everything else,
 * exhaust streams included, byte for byte. Drivers connect with directConnection=true
 * (mongoq_faultproxy_uri) so they never learn the server's own address and bypass the proxy.
 *
 * Thread safety: every function may be called from any thread at any time between
 * mongoq_faultproxy_start and mongoq_faultproxy_stop; the proxy runs one thread of its own.
 * Errors are bson_error_t with domain MONGOQ_FAULTPROXY_ERROR_DOMAIN.
 */
#ifndef MONGOQ_FAULTPROXY_H
#define MONGOQ_FAULTPROXY_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#define MONGOQ_FAULTPROXY_ERROR_DOMAIN 0x6670 /* 'f' 'p'; clear of mongoq's 0x6d71 */

typedef enum {
    MONGOQ_FAULTPROXY_ERROR_INVALID_ARG = 1, /* a bad address, rule, URI or control line */
    MONGOQ_FAULTPROXY_ERROR_SOCKET = 2,      /* the operating system refused a socket call */
    MONGOQ_FAULTPROXY_ERROR_TIMEOUT = 3,     /* the proxy thread did not apply a change in time */
    MONGOQ_FAULTPROXY_ERROR_LIMIT = 4        /* too many rules */
} mongoq_faultproxy_error_code_t;

typedef struct mongoq_faultproxy_t mongoq_faultproxy_t;

typedef struct {
    uint32_t version;            /* MONGOQ_FAULTPROXY_OPTS_VERSION */
    uint16_t listen_port;        /* 0: any free port */
    int32_t max_connections;     /* 0: 256 client connections at once; more are refused */
    int64_t drop_reply_wait_ms;  /* 0: 30000; how long a lost reply waits for the server's */
} mongoq_faultproxy_opts_t;

#define MONGOQ_FAULTPROXY_OPTS_VERSION 1
#define MONGOQ_FAULTPROXY_OPTS_INIT {.version = MONGOQ_FAULTPROXY_OPTS_VERSION}

/*
 * Starts a proxy on 127.0.0.1 in front of upstream: "HOST:PORT" or a one-host mongodb:// URI
 * (as the test server prints), HOST being 127.x.x.x or localhost. NULL opts means defaults.
 * Returns NULL and fills error on failure. Stop it with mongoq_faultproxy_stop.
 */
mongoq_faultproxy_t *
mongoq_faultproxy_start(const char *upstream, const mongoq_faultproxy_opts_t *opts,
                        bson_error_t *error);

/* Closes every connection, stops the thread and frees the proxy. NULL is a no-op. */
void
mongoq_faultproxy_stop(mongoq_faultproxy_t *proxy);

/* The port the proxy listens on (127.0.0.1). */
uint16_t
mongoq_faultproxy_port(const mongoq_faultproxy_t *proxy);

/*
 * Faults a rule can inject into the requests it matches. Connections stay open unless said.
 *  DROP_REPLY:   forward the request, read and discard the server's reply, close the client
 *                connection (the command was applied; the driver sees a network error).
 *  DROP_REQUEST: close the client connection without forwarding the request (never applied).
 *  HANG:         hold the request and every later one on that connection: nothing is forwarded
 *                or answered for hang_ms (then they are forwarded, late) or, with hang_ms 0,
 *                until mongoq_faultproxy_clear/heal. A client that gives up and closes the
 *                connection discards the held requests: they never reach the server.
 */
typedef enum {
    MONGOQ_FAULT_DROP_REPLY = 1,
    MONGOQ_FAULT_DROP_REQUEST = 2,
    MONGOQ_FAULT_HANG = 3
} mongoq_fault_kind_t;

typedef struct {
    uint32_t version;          /* MONGOQ_FAULT_RULE_VERSION */
    mongoq_fault_kind_t kind;
    /*
     * Command names, comma-separated ("insert,update,findAndModify"), compared without case with
     * the first key of the command document. "*" means every command except the handshake and
     * monitoring ones (hello, isMaster, ping, endSessions), which are hit only when named.
     */
    const char *commands;
    const char *app_name;      /* NULL: every connection; else only those whose handshake
                                  carried client.application.name == app_name */
    int32_t times;             /* how many requests the rule hits; 0 means 1 */
    int64_t hang_ms;           /* HANG only: 0 means until cleared */
} mongoq_fault_rule_t;

#define MONGOQ_FAULT_RULE_VERSION 1
#define MONGOQ_FAULT_RULE_INIT {.version = MONGOQ_FAULT_RULE_VERSION}

/*
 * Adds a rule after the existing ones; a request takes the first rule it matches that has hits
 * left. The strings are copied. Returns the rule's id (1, 2, ...) or 0 and fills error.
 */
int32_t
mongoq_faultproxy_add_rule(mongoq_faultproxy_t *proxy, const mongoq_fault_rule_t *rule,
                           bson_error_t *error);

/* How many requests rule_id has hit so far; -1 for an id that was never returned. */
int64_t
mongoq_faultproxy_rule_hits(mongoq_faultproxy_t *proxy, int32_t rule_id);

typedef enum {
    MONGOQ_PARTITION_OFF = 0,
    MONGOQ_PARTITION_CLOSE = 1,  /* new connections are accepted and reset at once */
    MONGOQ_PARTITION_REFUSE = 2  /* the port stops listening: connect() is refused */
} mongoq_partition_t;

/*
 * Starts (CLOSE, REFUSE: every connection is closed first) or ends (OFF) a partition. Returns
 * once the proxy thread has applied it; false with error if it could not (listening again).
 */
bool
mongoq_faultproxy_partition(mongoq_faultproxy_t *proxy, mongoq_partition_t mode,
                            bson_error_t *error);

/* Closes every current connection (the client sees a reset); returns once they are closed. */
bool
mongoq_faultproxy_reset(mongoq_faultproxy_t *proxy, bson_error_t *error);

/* Spends every rule's remaining hits and forwards every held request. Returns once done. */
bool
mongoq_faultproxy_clear(mongoq_faultproxy_t *proxy, bson_error_t *error);

/* mongoq_faultproxy_clear plus the end of any partition. */
bool
mongoq_faultproxy_heal(mongoq_faultproxy_t *proxy, bson_error_t *error);

/*
 * The counters, one list: X(field, control-protocol key, description). Fields are only ever
 * appended, so a program built against an older header keeps working.
 */
#define MONGOQ_FAULTPROXY_STATS_MAP(X)                                                             \
    X(connections_accepted, "accepted", "client connections accepted")                            \
    X(connections_refused, "refused", "client connections reset at once (partition, too many)")   \
    X(connections_open, "open", "client connections open now")                                    \
    X(connections_closed, "closed", "connections the proxy closed (faults, reset, partition)")    \
    X(requests_forwarded, "forwarded", "requests forwarded to the server")                         \
    X(legacy_requests, "legacy", "OP_QUERY requests among them (old handshakes)")                  \
    X(replies_forwarded, "replies", "replies forwarded to the client")                             \
    X(exhaust_replies, "exhaust", "replies with moreToCome among them (exhaust streams)")          \
    X(replies_dropped, "replies_dropped", "server replies discarded by DROP_REPLY")                \
    X(requests_dropped, "requests_dropped", "requests discarded by DROP_REQUEST")                  \
    X(requests_held, "held", "requests held by HANG")                                              \
    X(rule_hits, "hits", "requests that matched a rule")

typedef struct {
    uint32_t version; /* MONGOQ_FAULTPROXY_STATS_VERSION */
#define MONGOQ_FAULTPROXY_STATS_FIELD_(field, key, desc) int64_t field;
    MONGOQ_FAULTPROXY_STATS_MAP(MONGOQ_FAULTPROXY_STATS_FIELD_)
#undef MONGOQ_FAULTPROXY_STATS_FIELD_
} mongoq_faultproxy_stats_t;

#define MONGOQ_FAULTPROXY_STATS_VERSION 1
#define MONGOQ_FAULTPROXY_STATS_INIT {.version = MONGOQ_FAULTPROXY_STATS_VERSION}

/* Copies the counters into stats (its version set by the caller). False for a bad version. */
bool
mongoq_faultproxy_stats(mongoq_faultproxy_t *proxy, mongoq_faultproxy_stats_t *stats,
                        bson_error_t *error);

/* Requests seen with this command name (compared without case), forwarded or not. */
int64_t
mongoq_faultproxy_command_count(mongoq_faultproxy_t *proxy, const char *command);

/*
 * Runs one line of the text control protocol (README.md), e.g. "drop-reply insert,update 1".
 * *reply gets one line without newline, "ok ..." or "error ...", owned by the caller
 * (bson_free). Returns true for "ok".
 */
bool
mongoq_faultproxy_control(mongoq_faultproxy_t *proxy, const char *line, char **reply);

/*
 * "HOST:PORT" of a one-host mongodb:// URI (port 27017 when it names none). Caller frees it with
 * bson_free. NULL and error for another scheme or several hosts.
 */
char *
mongoq_faultproxy_upstream_of(const char *server_uri, bson_error_t *error);

/*
 * server_uri pointed at the proxy: its host replaced by 127.0.0.1:proxy_port, directConnection
 * set to true, compressors removed (compressed messages hide the command name); credentials,
 * database and other options kept. Caller frees it with bson_free. NULL and error for a URI the
 * proxy cannot serve (mongodb+srv, several hosts, tls, loadBalanced).
 */
char *
mongoq_faultproxy_uri(const char *server_uri, uint16_t proxy_port, bson_error_t *error);

#endif /* MONGOQ_FAULTPROXY_H */

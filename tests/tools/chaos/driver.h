/*
 * The driver's state, shared by its files: driver.c (options, the run, the drain), procs.c
 * (children: spawn, readiness, reaping), server.c (the test server and its fail points),
 * proxy.c (the fault proxy), faults.c (the fault table), facts.c (reading the records and the
 * collection), check.c (the invariants) and sabotage.c (breaking them on purpose).
 */
#ifndef MONGOQ_CHAOS_DRIVER_H
#define MONGOQ_CHAOS_DRIVER_H

#include "chaos.h"

#include <limits.h>
#include <signal.h>
#include <sys/types.h>

#define MAX_CHILDREN 2048
#define MAX_WORKERS 8
#define MAX_PRODUCERS 4
#define MAX_ACTIONS 256
#define MAX_EVENTS 8192
#define MAX_RESTARTS 256
#define MAX_COUNTERS 64
#define MAX_CLOCK_STEPS 4096 /* moves of real - mono kept (at least CLOCK_STEP_MS each) */
#define CLOCK_STEP_MS 5
#define CLOCK_JUMP_MS 250 /* a forward step this large expires leases: a cause of its own */

#define CHAOS_DB "chaos"
#define CHAOS_COLL "q"

/* Client options of every URI: give up on an absent server in seconds, not in 30. */
#define CHAOS_URI_TIMEOUTS                                                                        \
    "serverSelectionTimeoutMS=5000&connectTimeoutMS=2000&socketTimeoutMS=15000"

typedef enum { CHILD_SERVER, CHILD_PROXY, CHILD_PRODUCER, CHILD_WORKER } child_kind_t;

/* One process the driver started, alive or not. */
typedef struct {
    child_kind_t kind;
    int slot; /* worker or producer slot; -1 for the server and the proxy */
    char name[32];
    pid_t pid;
    int out_fd;          /* its stdout until the readiness line arrived; then -1 */
    char out_buf[512];   /* what came so far */
    size_t out_len;
    bool ready;
    bool via_proxy;
    int64_t started_mono, ready_mono, ready_deadline;
    bool sigkilled, termed, stopped; /* what we did to it (stopped: right now) */
    int64_t term_mono;
    bool exited;
    int status;
    int64_t exit_mono; /* when waitpid collected it: promptly, also while awaiting a line */
    bool exit_told;    /* procs_reap's on_exit has been called for it */
    bool never_ready; /* killed because it did not become ready in time */
} child_t;

typedef struct {
    int64_t threads, batch, lease_ms, retry_pct, work_max_ms, long_pct, stop_timeout_ms;
    const char *faketime; /* NULL, "+10m" or "-10m" */
    bool via_proxy;
    int child; /* current child, -1 */
    int gen;
} worker_slot_t;

typedef struct {
    int64_t rate, batch_pct;
    bool via_proxy;
    int child;
    int gen;
} producer_slot_t;

/* Something to do later: heal a fault, bring a process back. */
typedef enum {
    ACT_SERVER_START,
    ACT_WORKER_CONT,
    ACT_WORKER_START,
    ACT_PRODUCER_START,
    ACT_PROXY_HEAL
} action_kind_t;

typedef struct {
    action_kind_t kind;
    int64_t due_mono;
    int arg; /* child (CONT) or slot (START) */
    bool pending;
} action_t;

/* What the driver did, for explaining redeliveries; times in real ms (the server's clock). */
typedef enum {
    EV_SERVER_DOWN, /* until: its restart */
    EV_WORKER_KILL,
    EV_WORKER_STOP, /* until: SIGCONT */
    EV_WORKER_TERM,
    EV_PRODUCER_KILL,
    EV_FAIL_COMMAND, /* until: replaced, or the server went down */
    EV_PROXY         /* until: healed (partition) or now + a bound */
} event_kind_t;

typedef struct {
    event_kind_t kind;
    int child; /* the process it hit, -1 for all */
    int64_t from_real, until_real;
} event_t;

typedef struct {
    int64_t kill_mono, kill_real, ready_mono, ready_real;
    bool ready;
} restart_t;

typedef struct {
    char name[48];
    int64_t n;
} counter_t;

#define MAX_PROXY_RULES 512

typedef struct {
    int id;
    int64_t hits;
    int64_t polled_real;
} proxy_rule_t;

typedef struct {
    bool available;
    int child;
    int port, control_port;
    proxy_rule_t rules[MAX_PROXY_RULES]; /* armed by drop-reply, drop-request, hang */
    int n_rules;
} proxy_t;

typedef struct {
    /* options */
    int64_t seconds, seed, n_workers, n_producers, drain_s, recovery_bound_ms, stop_margin_ms,
        keep;
    const char *server_bin, *proxy_bin, *faketime_lib, *workdir_opt, *self;
    const char *sabotage; /* --sabotage: invariants to break on purpose (sabotage.c) */
    chaos_rng_t rng;

    char workdir[PATH_MAX];
    char dbpath[PATH_MAX + 8];
    int server_port;
    char direct_uri[512], proxy_uri[512];
    int server_child;
    bool server_up;
    int fail_command_event; /* the event of the fail point set now, -1 */
    proxy_t proxy;
    mongoc_client_t *client; /* the driver's own, straight to the server */

    child_t children[MAX_CHILDREN];
    int n_children;
    worker_slot_t workers[MAX_WORKERS];
    producer_slot_t producers[MAX_PRODUCERS];
    action_t actions[MAX_ACTIONS];
    event_t events[MAX_EVENTS];
    int n_events;
    restart_t restarts[MAX_RESTARTS];
    int n_restarts;
    counter_t counters[MAX_COUNTERS];
    int64_t next_seq_base;

    int64_t start_mono, chaos_end_mono, quiet_until_mono;
    /* real - mono as it moved during the run (driver_clock_sample): the machine's wall clock
     * can step against the monotonic one (a virtual machine paused and resynced), so records
     * that carry monotonic times are mapped with the offset of their own moment. */
    int64_t clock_mono[MAX_CLOCK_STEPS], clock_offset[MAX_CLOCK_STEPS];
    int n_clock;
    bool chaos_on;           /* faults are injected (off in the drain) */
    bool producers_stopping; /* the drain stopped them: no restarts */
    bool final_stop;         /* the last SIGTERMs went out: no restarts at all */
    bool interrupted;
    int sig_fd; /* the read end of the self-pipe the signal handlers write to */
} driver_t;

/* driver.c */
void
driver_count(driver_t *d, const char *name, int64_t n);
int
driver_event(driver_t *d, event_kind_t kind, int child, int64_t until_real);
void
driver_event_end(driver_t *d, event_kind_t kind, int child);
void
driver_end_fail_command(driver_t *d);
void
driver_schedule(driver_t *d, action_kind_t kind, int64_t in_ms, int arg);
/* Notes real - mono now when it moved by CLOCK_STEP_MS or more since the last note. */
void
driver_clock_sample(driver_t *d);
/* Whether the wall clock stepped forward by CLOCK_JUMP_MS or more within [from, to] (real). */
bool
driver_clock_jumped(const driver_t *d, int64_t from, int64_t to);
/* The wall-clock time of a monotonic one, with the offset noted last at or before it. */
int64_t
driver_real_of_mono(const driver_t *d, int64_t mono);
int64_t
driver_stop_bound(const driver_t *d, int child);
/* Set by the signal handlers for SIGINT, SIGTERM and SIGHUP. */
extern volatile sig_atomic_t driver_sig_interrupted;

/* children.c */
bool
driver_start_worker(driver_t *d, int slot);
bool
driver_start_producer(driver_t *d, int slot);

/* run.c */
void
driver_chaos_phase(driver_t *d);
/* The unfinished messages left when the drain ended. */
int64_t
driver_drain(driver_t *d);
void
driver_stop_workers(driver_t *d);

/* procs.c */
int
procs_spawn(driver_t *d, child_kind_t kind, int slot, const char *name, char *const argv[],
            char *const env[]);
bool
procs_await_line(driver_t *d, int child, int64_t timeout_ms, char *line, size_t line_len);
void
procs_signal(driver_t *d, int child, int sig);
bool
procs_alive(const driver_t *d, int child);
void
procs_read_ready(driver_t *d, int child);
int
procs_reap(driver_t *d, void (*on_exit)(driver_t *d, int child));
void
procs_wait_signal(driver_t *d, int64_t timeout_ms);
bool
procs_wait_exit(driver_t *d, int child, int64_t timeout_ms,
                void (*on_exit)(driver_t *d, int child));
void
procs_kill_all(driver_t *d);
int
procs_pick(driver_t *d, child_kind_t kind, bool may_be_stopped);

/* server.c */
bool
server_start(driver_t *d);
void
server_kill(driver_t *d);
bool
server_fail_command(driver_t *d, const char *const *commands, size_t n, const char *mode,
                    int code, int times);
bool
server_fail_command_off(driver_t *d);
int64_t
server_count(driver_t *d, const char *filter_json, bson_error_t *error);

/* proxy.c */
void
proxy_start(driver_t *d);
bool
proxy_command(driver_t *d, const char *line, char *reply, size_t reply_len);
void
proxy_heal(driver_t *d, bool all);
void
proxy_track_rule(driver_t *d, const char *reply);
void
proxy_poll_hits(driver_t *d);

/* faults.c */
void
faults_inject_one(driver_t *d);

/* sabotage.c */
void
sabotage_apply(driver_t *d, bool during_chaos);

/* check.c: prints the figures and one PASS/FAIL line per invariant; the number failed. */
int
check_run(driver_t *d, int *n_passed);

#endif /* MONGOQ_CHAOS_DRIVER_H */

/*
 * mongoq-chaos: shared declarations of the chaos program (see README.md in this folder).
 *
 * One binary, three roles: the driver (no --role) starts the test server, the fault proxy,
 * producers and workers, injects faults, drains and checks; `--role producer` and
 * `--role worker` are its children. Children write what they did to one log file each (one
 * write(2) per line on an O_APPEND file, so a record exists before the next step is taken and
 * survives a SIGKILL); the driver reads those files at the end.
 *
 * Times: every record carries CLOCK_MONOTONIC milliseconds (libfaketime is run with
 * FAKETIME_DONT_FAKE_MONOTONIC=1, so that clock is the same in every process); lease times are
 * the server's clock, which is the machine's real clock.
 */
#ifndef MONGOQ_CHAOS_H
#define MONGOQ_CHAOS_H

#include <mongoq/mongoq.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- util.c: random numbers, clocks, checksums, log files, options ------------------------- */

/* xoshiro256** seeded through splitmix64: every random choice of a run comes from one seed. */
typedef struct {
    uint64_t s[4];
} chaos_rng_t;

void
chaos_rng_seed(chaos_rng_t *rng, uint64_t seed);
uint64_t
chaos_rng_next(chaos_rng_t *rng);
/* Uniform in [lo, hi] (hi >= lo). */
int64_t
chaos_rng_range(chaos_rng_t *rng, int64_t lo, int64_t hi);
/* True with probability percent / 100. */
bool
chaos_rng_percent(chaos_rng_t *rng, int percent);

int64_t
chaos_mono_ms(void);
int64_t
chaos_real_ms(void);
void
chaos_sleep_ms(int64_t ms);

/* FNV-1a 64 of data, the checksum a producer puts next to a payload's bytes. */
uint64_t
chaos_checksum(const uint8_t *data, size_t len);

/* A record file: one line per write(2) on an O_APPEND descriptor. Thread-safe. */
typedef struct {
    int fd;
} chaos_log_t;

bool
chaos_log_open(chaos_log_t *log, const char *path);
void
chaos_log_close(chaos_log_t *log);
void
chaos_log_line(chaos_log_t *log, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

/* "--key value" options: one row per option, parsed into typed fields. */
typedef enum { CHAOS_OPT_STR, CHAOS_OPT_INT } chaos_opt_type_t;

typedef struct {
    const char *name; /* without the leading "--" */
    chaos_opt_type_t type;
    void *out; /* const char ** or int64_t * */
} chaos_opt_t;

/* Parses argv[first ..] against opts; prints the offender and returns false on an unknown one. */
bool
chaos_parse_opts(int argc, char **argv, int first, const chaos_opt_t *opts, size_t n_opts);

/* The payload fields producers write and workers check. */
#define CHAOS_F_SEQ "seq"
#define CHAOS_F_SUM "sum"
#define CHAOS_F_DATA "data"

/* Reads seq, and whether the data's checksum matches sum. False when fields are missing. */
bool
chaos_payload_check(const bson_t *payload, int64_t *seq, bool *sum_ok);

/* Queue options every role uses: kept acks (the check reads done messages), many attempts. */
void
chaos_queue_opts(mongoq_queue_opts_t *opts, int64_t lease_ms);

/* A client pool for uri, named appname, with the error API v2. NULL on a bad URI. */
mongoc_client_pool_t *
chaos_pool_new(const char *uri, const char *appname);

/* mongoq_queue_new, tried again while the server is away (bounded by timeout_ms). */
mongoq_queue_t *
chaos_queue_open(mongoc_client_pool_t *pool, const char *db, const char *coll,
                 const mongoq_queue_opts_t *opts, int64_t timeout_ms, bson_error_t *error);

/* mongoc_init, and libmongoc's log lines below WARNING dropped. */
void
chaos_mongoc_init(void);

/* Prints "ready <pid>" on stdout, then points stdout at /dev/null (the driver closes its end). */
void
chaos_announce_ready(void);

/* ---- the child roles ------------------------------------------------------------------------ */

int
chaos_worker_main(int argc, char **argv);
int
chaos_producer_main(int argc, char **argv);

/* ---- the driver ----------------------------------------------------------------------------- */

int
chaos_driver_main(int argc, char **argv);

#endif /* MONGOQ_CHAOS_H */

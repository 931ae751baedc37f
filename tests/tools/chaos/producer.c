/*
 * The producer role: enqueues numbered messages, one at a time (mongoq_enqueue) or in batches
 * (mongoq_enqueue_many), each payload {seq, sum, data} with data of 16 B .. --size-max bytes and
 * sum its checksum. Sequence numbers run from --seq-base up; none is enqueued twice.
 *
 * Records: "P first n mono p|i try" before a call (p: plain, i: caller_ids, retried with the
 * same ids) and "R first n ok|err mono domain.code enqueued text" after it. A P without its R
 * means the process died during the call: those messages may or may not be stored.
 * SIGTERM/SIGINT end the loop after the call under way; --max-seconds bounds it anyway.
 */
#include "chaos.h"

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define MAX_BATCH 64

typedef struct {
    const char *uri, *db, *coll, *name, *log_path;
    int64_t seed, seq_base, rate, batch_pct, batch_max, size_max, max_seconds;
} producer_cfg_t;

static atomic_bool stop_asked;

static void
on_term(int sig)
{
    (void)sig;
    atomic_store(&stop_asked, true);
}

static bson_t *
payload_new(chaos_rng_t *rng, int64_t seq, int64_t size_max)
{
    size_t len = (size_t)chaos_rng_range(rng, 16, size_max);
    uint8_t *data = bson_malloc(len);
    for (size_t i = 0; i < len; i++) {
        data[i] = (uint8_t)chaos_rng_next(rng);
    }
    bson_t *payload = bson_new();
    BSON_APPEND_INT64(payload, CHAOS_F_SEQ, seq);
    BSON_APPEND_INT64(payload, CHAOS_F_SUM, (int64_t)chaos_checksum(data, len));
    BSON_APPEND_BINARY(payload, CHAOS_F_DATA, BSON_SUBTYPE_BINARY, data, (uint32_t)len);
    bson_free(data);
    return payload;
}

/* One call: mongoq_enqueue for one message, mongoq_enqueue_many for more. */
static bool
enqueue_call(mongoq_queue_t *queue, bson_t **payloads, int n, mongoq_enqueue_opts_t *opts,
             bson_oid_t *ids, size_t *enqueued, bson_error_t *error)
{
    if (n == 1) {
        bool ok = mongoq_enqueue(queue, payloads[0], opts, ids, error);
        *enqueued = ok ? 1 : 0;
        return ok;
    }
    return mongoq_enqueue_many(queue, (const bson_t *const *)payloads, (size_t)n, opts, ids,
                               enqueued, error);
}

/* Errors after which mongoq says a retry with the same ids is safe and may succeed. */
static bool
worth_retrying(const bson_error_t *error)
{
    return error->domain != MONGOQ_ERROR_DOMAIN || (error->code != MONGOQ_ERROR_INVALID_ARG &&
                                                    error->code != MONGOQ_ERROR_DUPLICATE);
}

/*
 * n messages from seq on, recorded before and after each call. Half the rounds are plain (new
 * ObjectIds, no retry); the other half choose their ids (caller_ids) and retry a failed call
 * with the same ids, up to 5 calls, as a producer that wants each message stored once would.
 */
static void
produce_round(const producer_cfg_t *cfg, chaos_log_t *log, chaos_rng_t *rng,
              mongoq_queue_t *queue, int64_t seq, int n)
{
    bson_t *payloads[MAX_BATCH];
    bson_oid_t ids[MAX_BATCH];
    mongoq_enqueue_opts_t opts = MONGOQ_ENQUEUE_OPTS_INIT;
    opts.caller_ids = chaos_rng_percent(rng, 50);
    for (int i = 0; i < n; i++) {
        payloads[i] = payload_new(rng, seq + i, cfg->size_max);
        bson_oid_init(&ids[i], NULL);
    }
    int tries = opts.caller_ids ? 5 : 1;
    for (int t = 0; t < tries; t++) {
        bson_error_t error = {0};
        size_t enqueued = 0;
        chaos_log_line(log, "P %" PRId64 " %d %" PRId64 " %c %d", seq, n, chaos_mono_ms(),
                       opts.caller_ids ? 'i' : 'p', t);
        bool ok = enqueue_call(queue, payloads, n, &opts, ids, &enqueued, &error);
        chaos_log_line(log, "R %" PRId64 " %d %s %" PRId64 " %u.%u %zu %s", seq, n,
                       ok ? "ok" : "err", chaos_mono_ms(), ok ? 0 : error.domain,
                       ok ? 0 : error.code, enqueued, ok ? "" : error.message);
        if (ok || !worth_retrying(&error) || atomic_load(&stop_asked)) {
            break;
        }
        chaos_sleep_ms(100 << t); /* back off before trying the same ids again */
    }
    for (int i = 0; i < n; i++) {
        bson_destroy(payloads[i]);
    }
}

static void
produce(const producer_cfg_t *cfg, chaos_log_t *log, mongoq_queue_t *queue)
{
    chaos_rng_t rng;
    chaos_rng_seed(&rng, (uint64_t)cfg->seed);
    int64_t seq = cfg->seq_base;
    int64_t start = chaos_mono_ms(), deadline = start + cfg->max_seconds * 1000;
    int64_t sent = 0;
    for (int round = 0; round < 10000000 && !atomic_load(&stop_asked); round++) {
        if (chaos_mono_ms() >= deadline) {
            break;
        }
        int n = 1;
        if (chaos_rng_percent(&rng, (int)cfg->batch_pct)) {
            n = (int)chaos_rng_range(&rng, 2, cfg->batch_max);
        }
        produce_round(cfg, log, &rng, queue, seq, n);
        seq += n;
        sent += n;
        /* Pace to --rate messages per second on average (a pace, not a synchronisation). */
        int64_t due = start + sent * 1000 / (cfg->rate > 0 ? cfg->rate : 1);
        chaos_sleep_ms(due - chaos_mono_ms());
    }
}

static bool
parse_cfg(int argc, char **argv, producer_cfg_t *cfg)
{
    const chaos_opt_t opts[] = {
        {"uri", CHAOS_OPT_STR, &cfg->uri},
        {"db", CHAOS_OPT_STR, &cfg->db},
        {"coll", CHAOS_OPT_STR, &cfg->coll},
        {"name", CHAOS_OPT_STR, &cfg->name},
        {"log", CHAOS_OPT_STR, &cfg->log_path},
        {"seed", CHAOS_OPT_INT, &cfg->seed},
        {"seq-base", CHAOS_OPT_INT, &cfg->seq_base},
        {"rate", CHAOS_OPT_INT, &cfg->rate},
        {"batch-pct", CHAOS_OPT_INT, &cfg->batch_pct},
        {"batch-max", CHAOS_OPT_INT, &cfg->batch_max},
        {"size-max", CHAOS_OPT_INT, &cfg->size_max},
        {"max-seconds", CHAOS_OPT_INT, &cfg->max_seconds},
    };
    memset(cfg, 0, sizeof *cfg);
    cfg->rate = 20;
    cfg->batch_pct = 30;
    cfg->batch_max = 16;
    cfg->size_max = 4096;
    cfg->max_seconds = 3600;
    if (!chaos_parse_opts(argc, argv, 3, opts, sizeof opts / sizeof opts[0])) {
        return false;
    }
    if (!cfg->uri || !cfg->db || !cfg->coll || !cfg->name || !cfg->log_path) {
        fprintf(stderr, "chaos producer: --uri, --db, --coll, --name and --log are required\n");
        return false;
    }
    cfg->batch_max = cfg->batch_max < 2 ? 2 : cfg->batch_max > MAX_BATCH ? MAX_BATCH : cfg->batch_max;
    cfg->size_max = cfg->size_max < 16 ? 16 : cfg->size_max;
    return true;
}

static void
install_term_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

int
chaos_producer_main(int argc, char **argv)
{
    producer_cfg_t cfg;
    chaos_log_t log = {-1};
    bson_error_t error = {0};
    mongoc_client_pool_t *pool = NULL;
    mongoq_queue_t *queue = NULL;
    int rc = 1;
    if (!parse_cfg(argc, argv, &cfg) || !chaos_log_open(&log, cfg.log_path)) {
        return 2;
    }
    install_term_handler();
    chaos_mongoc_init();
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    chaos_queue_opts(&qopts, 0);
    qopts.no_reaper = true;
    if (!(pool = chaos_pool_new(cfg.uri, cfg.name)) ||
        !(queue = chaos_queue_open(pool, cfg.db, cfg.coll, &qopts, 30000, &error))) {
        fprintf(stderr, "chaos producer %s: %s\n", cfg.name, error.message);
        goto done;
    }
    chaos_announce_ready();
    produce(&cfg, &log, queue);
    rc = 0;
done:
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    mongoc_cleanup();
    chaos_log_close(&log);
    return rc;
}

/* The queue handle: options, names, indexes, shared plumbing and the background reaper. */
#include "queue-private.h"

#include <inttypes.h>
#include <stddef.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "fields.h"
#include "mongoq/error.h"
#include "mongoq/limits.h"
#include "error-private.h"
#include "service-private.h"
#include "struct_init-private.h"

#define INDEX_CLAIM "mongoq_claim"
#define INDEX_LEASE "mongoq_lease"
#define INDEX_DUE "mongoq_due"
#define INDEX_DEDUP "mongoq_dedup"
#define INDEX_DONE_TTL "mongoq_done_ttl"
#define INDEX_GROUP "mongoq_group"

/* mongod's IndexOptionsConflict: an index of these keys exists with other options. */
#define INDEX_OPTIONS_CONFLICT 85

static bool
invalid(bson_error_t *error, const char *what)
{
    bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG, "%s", what);
    return false;
}

/* ---- options and names -------------------------------------------------------------------- */

/* A duration option: 0 (the default) to MONGOQ_MAX_DURATION_MS. */
static bool
check_duration(const char *name, int64_t value, int64_t max, bson_error_t *error)
{
    if (value < 0 || value > max) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "queue opts: %s must be 0 (the default) to %" PRId64 ", not %" PRId64, name,
                       max, value);
        return false;
    }
    return true;
}

/* Version 5: the per-group rate limit. */
static bool
check_group_rate(const mongoq_queue_opts_t *o, bson_error_t *error)
{
    if (isnan(o->group_rate_limit) || o->group_rate_limit < 0 ||
        o->group_rate_limit > MONGOQ_MAX_GROUP_RATE_LIMIT) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "queue opts: group_rate_limit must be 0 (none) to %.0f messages per "
                       "second per group", MONGOQ_MAX_GROUP_RATE_LIMIT);
        return false;
    }
    if (o->group_rate_limit > 0 && o->group_concurrency == 0) {
        return invalid(error, "queue opts: group_rate_limit needs a queue with groups "
                              "(group_concurrency > 0)");
    }
    if (o->group_rate_burst < 0 || o->group_rate_burst > MONGOQ_MAX_GROUP_RATE_BURST ||
        (o->group_rate_burst > 0 && o->group_rate_limit == 0)) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "queue opts: group_rate_burst must be 0 (one second's worth) to %d, and "
                       "needs a group_rate_limit; not %" PRId32, MONGOQ_MAX_GROUP_RATE_BURST,
                       o->group_rate_burst);
        return false;
    }
    return true;
}

/* Version 4: groups and rate limits. */
static bool
check_flow(const mongoq_queue_opts_t *o, bson_error_t *error)
{
    if (o->group_concurrency < 0 || o->group_concurrency > MONGOQ_MAX_GROUP_CONCURRENCY) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "queue opts: group_concurrency must be 0 (no groups) to %d, not %" PRId32,
                       MONGOQ_MAX_GROUP_CONCURRENCY, o->group_concurrency);
        return false;
    }
    if (o->group_dead != MONGOQ_GROUP_DEAD_RELEASE && o->group_dead != MONGOQ_GROUP_DEAD_BLOCK) {
        return invalid(error, "queue opts: unknown group_dead");
    }
    if (isnan(o->rate_limit) || o->rate_limit < 0 || o->rate_limit > MONGOQ_MAX_RATE_LIMIT) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "queue opts: rate_limit must be 0 (none) to %.0f claims per second",
                       MONGOQ_MAX_RATE_LIMIT);
        return false;
    }
    if (o->rate_burst < 0 || o->rate_burst > MONGOQ_MAX_RATE_BURST ||
        (o->rate_burst > 0 && o->rate_limit == 0)) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "queue opts: rate_burst must be 0 (one second's worth) to %d, and needs "
                       "a rate_limit; not %" PRId32, MONGOQ_MAX_RATE_BURST, o->rate_burst);
        return false;
    }
    return check_group_rate(o, error);
}

static bool
check_ranges(const mongoq_queue_opts_t *o, bson_error_t *error)
{
    if (o->version == 0 || o->version > MONGOQ_QUEUE_OPTS_VERSION) {
        return invalid(error, "queue opts: unknown version (use MONGOQ_QUEUE_OPTS_INIT)");
    }
    if (!check_duration("lease_ms", o->lease_ms, MONGOQ_MAX_DURATION_MS, error) ||
        !check_duration("backoff_base_ms", o->backoff_base_ms, MONGOQ_MAX_DURATION_MS, error) ||
        !check_duration("backoff_cap_ms", o->backoff_cap_ms, MONGOQ_MAX_DURATION_MS, error) ||
        !check_duration("retention_s", o->retention_s, MONGOQ_MAX_DURATION_MS / 1000, error) ||
        !check_duration("poll_interval_ms", o->poll_interval_ms, MONGOQ_MAX_DURATION_MS, error) ||
        !check_duration("reap_interval_ms", o->reap_interval_ms, MONGOQ_MAX_DURATION_MS, error) ||
        !check_duration("max_attempts", o->max_attempts, MONGOQ_MAX_ATTEMPTS, error)) {
        return false;
    }
    if (isnan(o->backoff_jitter) || o->backoff_jitter > 1) {
        return invalid(error, "queue opts: backoff_jitter must be in (0, 1], or negative");
    }
    if (o->ack_mode != MONGOQ_ACK_DELETE && o->ack_mode != MONGOQ_ACK_KEEP) {
        return invalid(error, "queue opts: unknown ack_mode");
    }
    if (o->partitions < 0 || o->partitions > MONGOQ_MAX_PARTITIONS) {
        bson_set_error(error, MONGOQ_ERROR_DOMAIN, MONGOQ_ERROR_INVALID_ARG,
                       "queue opts: partitions must be 0 or 1 (one partition) to %d, not %" PRId32,
                       MONGOQ_MAX_PARTITIONS, o->partitions);
        return false;
    }
    return check_flow(o, error);
}

bool
mongoq__queue_opts_resolve(const mongoq_queue_opts_t *opts, mongoq_queue_opts_t *out,
                           bson_error_t *error)
{
    mongoq_queue_opts_t defaults = MONGOQ_QUEUE_OPTS_INIT;
    if (opts && (opts->version == 0 || opts->version > MONGOQ_QUEUE_OPTS_VERSION)) {
        return invalid(error, "queue opts: unknown version (use MONGOQ_QUEUE_OPTS_INIT)");
    }
    /* An older caller's struct ends where the next version's fields begin: read no further. */
    *out = defaults;
    if (opts) {
        memcpy(out, opts, mongoq__queue_opts_size(opts->version));
    }
    if (!check_ranges(out, error)) {
        return false;
    }
#define DEFAULT_(field, value)                                                                     \
    if (out->field == 0) {                                                                         \
        out->field = (value);                                                                      \
    }
    DEFAULT_(lease_ms, MONGOQ__DEFAULT_LEASE_MS)
    DEFAULT_(max_attempts, MONGOQ__DEFAULT_MAX_ATTEMPTS)
    DEFAULT_(backoff_base_ms, MONGOQ__DEFAULT_BACKOFF_BASE_MS)
    DEFAULT_(backoff_cap_ms, MONGOQ__DEFAULT_BACKOFF_CAP_MS)
    DEFAULT_(backoff_jitter, MONGOQ__DEFAULT_BACKOFF_JITTER)
    DEFAULT_(retention_s, MONGOQ__DEFAULT_RETENTION_S)
    DEFAULT_(poll_interval_ms, MONGOQ__DEFAULT_POLL_INTERVAL_MS)
    DEFAULT_(reap_interval_ms, out->lease_ms / 2 > 0 ? out->lease_ms / 2 : 1)
    DEFAULT_(partitions, 1)
    /* One second's worth, rounded up, at least 1 (no ceil: no libm for one rounding). */
    DEFAULT_(rate_burst, out->rate_limit > 1 ? (int32_t)out->rate_limit +
                                                   ((double)(int32_t)out->rate_limit <
                                                    out->rate_limit)
                                             : 1)
    DEFAULT_(group_rate_burst, out->group_rate_limit > 1
                                   ? (int32_t)out->group_rate_limit +
                                         ((double)(int32_t)out->group_rate_limit <
                                          out->group_rate_limit)
                                   : 1)
#undef DEFAULT_
    if (out->rate_limit == 0) {
        out->rate_burst = 0;
    }
    if (out->group_rate_limit == 0) {
        out->group_rate_burst = 0;
    }
    return true;
}

bool
mongoq__queue_validate_names(const char *db, const char *name, bson_error_t *error)
{
    if (!db || !*db || strlen(db) > MONGOQ__MAX_DB_NAME_BYTES || strpbrk(db, "/\\. \"$")) {
        return invalid(error, "invalid database name: it must be 1 to " MONGOQ__STR(
                                  MONGOQ__MAX_DB_NAME_BYTES) " bytes without any of /\\. \"$");
    }
    if (!name || !*name || strchr(name, '$') || strncmp(name, "system.", 7) == 0) {
        return invalid(error, "invalid collection name: it must be non-empty, contain no '$' "
                              "and not start with \"system.\"");
    }
    if (strlen(db) + 1 + strlen(name) > MONGOQ__MAX_NAMESPACE_BYTES) {
        return invalid(error, "invalid collection name: the namespace \"db.collection\" "
                              "exceeds " MONGOQ__STR(MONGOQ__MAX_NAMESPACE_BYTES) " bytes");
    }
    return true;
}

/* ---- plumbing ----------------------------------------------------------------------------- */

mongoc_collection_t *
mongoq__queue_checkout(mongoq_queue_t *queue, mongoc_client_t **client_out, bson_error_t *error)
{
    *client_out = mongoq__pool_pop(queue->pool, error);
    if (!*client_out) {
        return NULL;
    }
    return mongoc_client_get_collection(*client_out, queue->db, queue->name);
}

mongoc_collection_t *
mongoq__queue_collection(mongoq_queue_t *queue, mongoc_client_t **client_out)
{
    return mongoq__queue_checkout(queue, client_out, NULL);
}

void
mongoq__queue_release(mongoq_queue_t *queue, mongoc_client_t *client, mongoc_collection_t *coll)
{
    mongoc_collection_destroy(coll);
    if (client) {
        mongoc_client_pool_push(queue->pool, client);
    }
}

bool
mongoq__queue_write_many(mongoq_queue_t *queue, const char *what, const bson_t *filter, const bson_t *update,
           int64_t *n, bson_error_t *error)
{
    bson_t opts = BSON_INITIALIZER, reply = BSON_INITIALIZER;
    mongoc_client_t *client;
    bool ok = false;
    *n = 0;
    mongoc_collection_t *coll = mongoq__queue_checkout(queue, &client, error);
    if (coll) {
        bson_destroy(&reply);
        mongoq__queue_append_write_concern(queue, &opts);
        ok = update ? mongoc_collection_update_many(coll, filter, update, &opts, &reply, error)
                    : mongoc_collection_delete_many(coll, filter, &opts, &reply, error);
        *n = ok ? mongoq__reply_count(&reply, update ? "modifiedCount" : "deletedCount") : 0;
        if (!ok) {
            mongoq__error_classify_write(what, &reply, error);
        }
    }
    mongoq__queue_release(queue, client, coll);
    bson_destroy(&reply);
    bson_destroy(&opts);
    return ok;
}

void
mongoq__queue_append_write_concern(const mongoq_queue_t *queue, bson_t *opts)
{
    BSON_ASSERT(mongoc_write_concern_append(queue->wc, opts));
}

int64_t
mongoq__reply_count(const bson_t *reply, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, field) ? bson_iter_as_int64(&it) : 0;
}

void
mongoq__queue_log(const mongoq_queue_t *queue, mongoq_log_level_t level, const char *format, ...)
{
    if (!queue->opts.log_fn) {
        return;
    }
    va_list args;
    va_start(args, format);
    char *message = bson_strdupv_printf(format, args);
    va_end(args);
    queue->opts.log_fn(level, message, queue->opts.log_user_data);
    bson_free(message);
}

uint64_t
mongoq__queue_next_serial(void)
{
    static atomic_uint_fast64_t serial;
    return atomic_fetch_add(&serial, 1) + 1;
}

/* ---- indexes ------------------------------------------------------------------------------ */

/*
 * One index: its name, key fields with directions, a function appending its options, and
 * whether a partitioned queue (partitions > 1) puts `partition` first in its keys. Every index
 * but the TTL one does (mongod's TTL indexes are single-field): so each query that names a
 * partition seeks within it, the unique dedup index is prefixed by the shard key {partition}
 * as a sharded collection requires, and queries over every partition name them all with $in.
 */
typedef struct {
    const char *name;
    const char *fields[4];
    int32_t directions[4];
    void (*options)(const mongoq_queue_t *queue, bson_t *index);
    bool partitioned;
} index_spec_t;

/* Only unfinished messages carry dedup_key (see fields.h for why not a status filter). */
static void
dedup_options(const mongoq_queue_t *queue, bson_t *index)
{
    bson_t partial, exists;
    (void)queue;
    BSON_APPEND_BOOL(index, "unique", true);
    BSON_APPEND_DOCUMENT_BEGIN(index, "partialFilterExpression", &partial);
    BSON_APPEND_DOCUMENT_BEGIN(&partial, MONGOQ__F_DEDUP_KEY, &exists);
    BSON_APPEND_BOOL(&exists, "$exists", true);
    bson_append_document_end(&partial, &exists);
    bson_append_document_end(index, &partial);
}

static void
done_ttl_options(const mongoq_queue_t *queue, bson_t *index)
{
    bson_t partial;
    BSON_APPEND_INT64(index, "expireAfterSeconds", queue->opts.retention_s);
    BSON_APPEND_DOCUMENT_BEGIN(index, "partialFilterExpression", &partial);
    BSON_APPEND_UTF8(&partial, MONGOQ__F_STATUS, MONGOQ__S_DONE);
    bson_append_document_end(index, &partial);
}

static const index_spec_t INDEXES[] = {
    /* Equality (status), sort (priority desc, run_at, _id), range (run_at): ESR order. */
    {INDEX_CLAIM,
     {MONGOQ__F_STATUS, MONGOQ__F_PRIORITY, MONGOQ__F_RUN_AT, MONGOQ__F_ID},
     {1, -1, 1, 1},
     NULL,
     true},
    {INDEX_LEASE, {MONGOQ__F_STATUS, MONGOQ__F_LEASE_EXPIRES_AT}, {1, 1}, NULL, true},
    /* The earliest run_at (the waker's timer, stats) and the delayed count, in one seek each. */
    {INDEX_DUE, {MONGOQ__F_STATUS, MONGOQ__F_RUN_AT}, {1, 1}, NULL, true},
    {INDEX_DEDUP, {MONGOQ__F_DEDUP_KEY}, {1}, dedup_options, true},
    /* Only with groups: a group's head among its waiting messages, and its counts, by seek. */
    {INDEX_GROUP,
     {MONGOQ__F_GROUP, MONGOQ__F_STATUS, MONGOQ__F_GROUP_SEQ},
     {1, 1, 1},
     NULL,
     true},
    /* Last: only with MONGOQ_ACK_KEEP. */
    {INDEX_DONE_TTL, {MONGOQ__F_DONE_AT}, {1}, done_ttl_options, false},
};

static void
append_index(const mongoq_queue_t *queue, bson_t *indexes, uint32_t i, const index_spec_t *spec)
{
    char key[16];
    const char *k;
    bson_t index, keys;
    bson_uint32_to_string(i, &k, key, sizeof key);
    BSON_APPEND_DOCUMENT_BEGIN(indexes, k, &index);
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &keys);
    if (spec->partitioned && queue->opts.partitions > 1) {
        BSON_APPEND_INT32(&keys, MONGOQ__F_PARTITION, 1);
    }
    for (size_t f = 0; f < 4 && spec->fields[f]; f++) {
        BSON_APPEND_INT32(&keys, spec->fields[f], spec->directions[f]);
    }
    bson_append_document_end(&index, &keys);
    BSON_APPEND_UTF8(&index, "name", spec->name);
    if (spec->options) {
        spec->options(queue, &index);
    }
    bson_append_document_end(indexes, &index);
}

void
mongoq__queue_index_specs(const mongoq_queue_t *queue, bson_t *indexes)
{
    size_t n = sizeof INDEXES / sizeof INDEXES[0];
    uint32_t used = 0;
    for (size_t i = 0; i < n; i++) {
        bool group = strcmp(INDEXES[i].name, INDEX_GROUP) == 0;
        bool ttl = strcmp(INDEXES[i].name, INDEX_DONE_TTL) == 0;
        if ((group && queue->opts.group_concurrency == 0) ||
            (ttl && queue->opts.ack_mode != MONGOQ_ACK_KEEP)) {
            continue; /* no groups: no group index; no done messages kept: no TTL index */
        }
        append_index(queue, indexes, used++, &INDEXES[i]);
    }
}

/* The createIndexes command; field names come from fields.h. */
static void
build_create_indexes(const mongoq_queue_t *queue, bson_t *cmd)
{
    bson_t indexes;
    BSON_APPEND_UTF8(cmd, "createIndexes", queue->name);
    BSON_APPEND_ARRAY_BEGIN(cmd, "indexes", &indexes);
    mongoq__queue_index_specs(queue, &indexes);
    bson_append_array_end(cmd, &indexes);
}

/*
 * A changed retention_s makes createIndexes fail with IndexOptionsConflict (85); collMod then
 * changes expireAfterSeconds in place, which is what a user who changed the option means.
 */
static bool
update_ttl(mongoq_queue_t *queue, mongoc_database_t *database, const bson_t *opts)
{
    bson_t cmd = BSON_INITIALIZER, index;
    BSON_APPEND_UTF8(&cmd, "collMod", queue->name);
    BSON_APPEND_DOCUMENT_BEGIN(&cmd, "index", &index);
    BSON_APPEND_UTF8(&index, "name", INDEX_DONE_TTL);
    BSON_APPEND_INT64(&index, "expireAfterSeconds", queue->opts.retention_s);
    bson_append_document_end(&cmd, &index);
    bool ok = mongoc_database_write_command_with_opts(database, &cmd, opts, NULL, NULL);
    bson_destroy(&cmd);
    return ok;
}

bool
mongoq_queue_ensure_indexes(mongoq_queue_t *queue, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    bson_t cmd = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    mongoc_client_t *client = mongoq__pool_pop(queue->pool, error);
    if (!client) {
        return false;
    }
    mongoc_database_t *database = mongoc_client_get_database(client, queue->db);
    build_create_indexes(queue, &cmd);
    mongoq__queue_append_write_concern(queue, &opts);
    bson_error_t err;
    bool ok = mongoc_database_write_command_with_opts(database, &cmd, &opts, NULL, &err);
    if (!ok && mongoq__error_is_server(&err, INDEX_OPTIONS_CONFLICT) &&
        queue->opts.ack_mode == MONGOQ_ACK_KEEP &&
        update_ttl(queue, database, &opts)) {
        ok = mongoc_database_write_command_with_opts(database, &cmd, &opts, NULL, &err);
    }
    if (!ok && error) {
        *error = err;
    }
    bson_destroy(&opts);
    bson_destroy(&cmd);
    mongoc_database_destroy(database);
    mongoc_client_pool_push(queue->pool, client);
    return ok;
}

/* ---- lifetime ----------------------------------------------------------------------------- */

static mongoc_write_concern_t *
write_concern_of(const mongoq_queue_opts_t *opts)
{
    if (opts->write_concern) {
        return mongoc_write_concern_copy(opts->write_concern);
    }
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_write_concern_set_journal(wc, true);
    return wc;
}

static void
start_waker(mongoq_queue_t *queue)
{
    mongoq__waker_config_t config = {
        .pool = queue->pool,
        .db = queue->db,
        .coll = queue->name,
        .no_change_stream = queue->opts.no_change_stream,
        .poll_interval_ms = queue->opts.poll_interval_ms,
        .log_fn = queue->opts.log_fn,
        .log_user_data = queue->opts.log_user_data,
        .counters = &queue->counters,
        .clock = queue->clock,
        .partitions = queue->opts.partitions,
    };
    queue->waker = mongoq__waker_new(&config);
}

mongoq_queue_t *
mongoq_queue_new(mongoc_client_pool_t *pool, const char *db, const char *name,
                 const mongoq_queue_opts_t *opts, bson_error_t *error)
{
    BSON_ASSERT_PARAM(pool);
    mongoq_queue_opts_t resolved;
    if (!mongoq__queue_opts_resolve(opts, &resolved, error) ||
        !mongoq__queue_validate_names(db, name, error)) {
        return NULL;
    }
    if (resolved.write_concern && !mongoc_write_concern_is_valid(resolved.write_concern)) {
        invalid(error, "queue opts: write_concern is invalid");
        return NULL;
    }
    mongoq__clock_t *clock = mongoq__clock_new(pool, error);
    if (!clock) {
        return NULL;
    }
    mongoq_queue_t *queue = bson_malloc0(sizeof *queue);
    queue->pool = pool;
    queue->db = bson_strdup(db);
    queue->name = bson_strdup(name);
    queue->opts = resolved;
    queue->wc = write_concern_of(&resolved);
    queue->opts.write_concern = queue->wc;
    queue->clock = clock;
    mongoq__reaper_init(queue);
    start_waker(queue);
    if (!resolved.skip_ensure_indexes && !mongoq_queue_ensure_indexes(queue, error)) {
        mongoq_queue_destroy(queue);
        return NULL;
    }
    mongoq__pause_load(queue);
    return queue;
}

void
mongoq_queue_destroy(mongoq_queue_t *queue)
{
    if (!queue) {
        return;
    }
    /* Both background threads stop at once: destroy waits for the slower, not the sum. */
    mongoq__reaper_signal_stop(queue);
    mongoq__waker_signal_stop(queue->waker);
    mongoq__reaper_stop(queue);
    mongoq__waker_destroy(queue->waker);
    mongoq__clock_destroy(queue->clock);
    mongoc_write_concern_destroy(queue->wc);
    mongoq__reaper_destroy(queue);
    bson_free(queue->db);
    bson_free(queue->name);
    bson_free(queue);
}

const char *
mongoq_queue_name(const mongoq_queue_t *queue)
{
    BSON_ASSERT_PARAM(queue);
    return queue->name;
}

const char *
mongoq_queue_db(const mongoq_queue_t *queue)
{
    BSON_ASSERT_PARAM(queue);
    return queue->db;
}

bool
mongoq_queue_counters(mongoq_queue_t *queue, mongoq_counters_t *counters)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(counters);
    mongoq_counters_t full;
    mongoq__counters_read(&queue->counters, &full);
    return mongoq__counters_copy_out(&full, counters);
}

/* mongoq-stress: the helpers every part uses: checks, time, a part's database and pool, queues
 * and consumers, messages carrying a sequence number. */

#include "stress.h"

#define MAX_PRINTED_FAILURES 20

/* Any thread may check; a failure is printed (the first few) and counted against the part. */
bool
stress_check(part_t *part, bool ok, const char *file, int line, const char *expr, const char *fmt,
             ...)
{
    if (ok) {
        return true;
    }
    if (atomic_fetch_add(&part->failures, 1) < MAX_PRINTED_FAILURES) {
        char what[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        const char *base = strrchr(file, '/');
        fprintf(stderr, "stress: %s: FAILED at %s:%d (%s): %s\n", part->name, base ? base + 1 : file,
                line, expr, what);
    }
    return false;
}

const char *stress_uri;


int64_t
stress_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
stress_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls cond every 5 ms until it holds or timeout_ms passes; returns its last value. */
bool
stress_wait_until(bool (*cond)(void *ctx), void *ctx, int64_t timeout_ms)
{
    int64_t deadline = stress_now_ms() + timeout_ms;
    for (int64_t i = 0; i <= timeout_ms / 5; i++) {
        if (cond(ctx)) {
            return true;
        }
        if (stress_now_ms() >= deadline) {
            break;
        }
        stress_sleep_ms(5);
    }
    return cond(ctx);
}

mongoc_client_pool_t *
stress_pool_new(const char *appname)
{
    mongoc_uri_t *uri = mongoc_uri_new(stress_uri);
    BSON_ASSERT(uri); /* validated in main */
    mongoc_uri_set_appname(uri, appname);
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    BSON_ASSERT(pool);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_uri_destroy(uri);
    return pool;
}

void
stress_env_open(env_t *e, part_t *part)
{
    memset(e, 0, sizeof *e);
    e->part = part;
    bson_snprintf(e->db, sizeof e->db, "stress_%d_%s", (int)getpid(), part->name);
    e->pool = stress_pool_new("stress");
    e->client = mongoc_client_new(stress_uri);
    BSON_ASSERT(e->client);
    mongoc_client_set_error_api(e->client, MONGOC_ERROR_API_VERSION_2);
}

void
stress_env_close(env_t *e)
{
    bson_error_t error;
    mongoc_database_t *db = mongoc_client_get_database(e->client, e->db);
    CHECK(e->part, mongoc_database_drop_with_opts(db, NULL, &error), "drop %s: %s", e->db,
          error.message);
    mongoc_database_destroy(db);
    mongoc_client_destroy(e->client);
    mongoc_client_pool_destroy(e->pool);
}

/* Documents of the queue collection matching a JSON filter; -1 on error (checked). */
int64_t
stress_count_docs(env_t *e, const char *filter_json)
{
    bson_error_t error;
    bson_t *filter = bson_new_from_json((const uint8_t *)filter_json, -1, &error);
    BSON_ASSERT(filter);
    mongoc_collection_t *coll = mongoc_client_get_collection(e->client, e->db, "q");
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, &error);
    CHECK(e->part, n >= 0, "count %s: %s", filter_json, error.message);
    mongoc_collection_destroy(coll);
    bson_destroy(filter);
    return n;
}

/* Warnings and errors the library logs are worth seeing next to a failure. */
static void
on_log(mongoq_log_level_t level, const char *message, void *user_data)
{
    if (level <= MONGOQ_LOG_WARNING) {
        fprintf(stderr, "stress: %s: log: %s\n", ((part_t *)user_data)->name, message);
    }
}

mongoq_queue_t *
stress_queue_open(env_t *e, mongoc_client_pool_t *pool, mongoq_queue_opts_t *opts)
{
    bson_error_t error;
    opts->log_fn = on_log;
    opts->log_user_data = e->part;
    mongoq_queue_t *q = mongoq_queue_new(pool, e->db, "q", opts, &error);
    CHECK(e->part, q != NULL, "queue_new: %s", error.message);
    return q;
}

/* ---- messages carry a sequence number ------------------------------------------------------- */

bool
stress_enqueue_seqs(part_t *part, mongoq_queue_t *q, int first, int n)
{
    bson_t *payloads[16];
    bson_error_t error;
    bool ok;
    BSON_ASSERT(n >= 1 && n <= 16);
    for (int i = 0; i < n; i++) {
        payloads[i] = BCON_NEW("seq", BCON_INT32(first + i));
    }
    if (n == 1) {
        ok = mongoq_enqueue(q, payloads[0], NULL, NULL, &error);
    } else {
        ok = mongoq_enqueue_many(q, (const bson_t *const *)payloads, (size_t)n, NULL, NULL, NULL, &error);
    }
    CHECK(part, ok, "enqueue of %d from %d: %s", n, first, error.message);
    for (int i = 0; i < n; i++) {
        bson_destroy(payloads[i]);
    }
    return ok;
}

/* The message's sequence number: -1 (poison) .. n-1; checked, INT32_MIN when absent. */
int
stress_seq_of(part_t *part, const mongoq_message_t *msg, int n)
{
    bson_iter_t it;
    int seq = INT32_MIN;
    if (bson_iter_init_find(&it, mongoq_message_payload(msg), "seq") &&
        BSON_ITER_HOLDS_INT32(&it)) {
        seq = bson_iter_int32(&it);
    }
    if (!CHECK(part, seq >= -1 && seq < n, "payload seq %d out of range", seq)) {
        return INT32_MIN;
    }
    return seq;
}

atomic_int *
stress_counts_new(int n)
{
    atomic_int *c = bson_malloc(sizeof *c * (size_t)n);
    for (int i = 0; i < n; i++) {
        atomic_init(&c[i], 0);
    }
    return c;
}

mongoq_consumer_t *
stress_consumer_new(part_t *part, mongoq_queue_t *q, const char *name, int index)
{
    char buf[64];
    bson_error_t error;
    mongoq_consumer_opts_t opts = MONGOQ_CONSUMER_OPTS_INIT;
    bson_snprintf(buf, sizeof buf, "stress-%s-%d", name, index);
    opts.name = buf;
    mongoq_consumer_t *c = mongoq_consumer_new(q, &opts, &error);
    CHECK(part, c != NULL, "consumer_new: %s", error.message);
    return c;
}

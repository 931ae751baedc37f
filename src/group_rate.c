/*
 * The per-group rate limit (mongoq_queue_opts_t.group_rate_limit; docs/design.md, Per-group rate
 * limits): a bucket in each group's document, kept as a virtual schedule (GCRA) on the server's
 * clock and advanced by the same pipeline update that admits the group's messages, inside the
 * admitting transaction. With T = 1000 / rate ms and tau = (burst - 1) * T, a write that admits
 * k messages at server time now ($$NOW, one value for the whole statement) records
 *
 *   rate_now  = now
 *   rate_base = max(rate_tat, now)          (rate_tat absent: 0)
 *   rate_tat  = rate_base + k * T
 *
 * and its i-th admitted message (i = 0 .. k-1) is due at max(now, rate_base + i * T - tau),
 * rounded up to the millisecond: its run_at is raised to that, so the ordinary claim passes it
 * over until then. Due times so assigned to one group are those of a GCRA with increment T and
 * limit tau, whatever the interleaving of transactions (they serialise on the group document):
 * over any interval [a, b] at most burst + rate * (b - a) of them fall in it.
 */
#include "group-private.h"

#include "error-private.h"
#include "fields.h"
#include "partition-private.h"
#include "service-private.h"

#define P_RATE_TAT "$" MONGOQ__F_G_RATE_TAT
#define P_RATE_BASE "$" MONGOQ__F_G_RATE_BASE
#define P_ADMITTED "$" MONGOQ__F_G_ADMITTED

bool
mongoq__group_rate_on(const mongoq_queue_t *queue)
{
    return queue->opts.group_rate_limit > 0;
}

/* ms between two tokens of one group */
static double
interval_ms(const mongoq_queue_t *queue)
{
    return 1000.0 / queue->opts.group_rate_limit;
}

/* {$toLong: "$$NOW"} */
static void
append_now_ms(bson_t *parent, const char *key)
{
    bson_t doc;
    BSON_APPEND_DOCUMENT_BEGIN(parent, key, &doc);
    BSON_APPEND_UTF8(&doc, "$toLong", "$$NOW");
    bson_append_document_end(parent, &doc);
}

/* The pair [{$ifNull: ["$rate_tat", 0]}, now ms] into args: the bucket's TAT against now. */
static void
append_tat_and_now(bson_t *args)
{
    bson_t if_null, if_args;
    BSON_APPEND_DOCUMENT_BEGIN(args, "0", &if_null);
    BSON_APPEND_ARRAY_BEGIN(&if_null, "$ifNull", &if_args);
    BSON_APPEND_UTF8(&if_args, "0", P_RATE_TAT);
    BSON_APPEND_DOUBLE(&if_args, "1", 0.0);
    bson_append_array_end(&if_null, &if_args);
    bson_append_document_end(args, &if_null);
    append_now_ms(args, "1");
}

void
mongoq__group_rate_append(const mongoq_queue_t *queue, bson_t *pipeline, uint32_t first)
{
    bson_t stage, set, max, args, add, add_args, mul, mul_args;
    char key[16];
    const char *k;
    bson_uint32_to_string(first, &k, key, sizeof key);
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, k, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    append_now_ms(&set, MONGOQ__F_G_RATE_NOW);
    BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_G_RATE_BASE, &max);
    BSON_APPEND_ARRAY_BEGIN(&max, "$max", &args);
    append_tat_and_now(&args);
    bson_append_array_end(&max, &args);
    bson_append_document_end(&set, &max);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);

    bson_uint32_to_string(first + 1, &k, key, sizeof key);
    BSON_APPEND_DOCUMENT_BEGIN(pipeline, k, &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_DOCUMENT_BEGIN(&set, MONGOQ__F_G_RATE_TAT, &add);
    BSON_APPEND_ARRAY_BEGIN(&add, "$add", &add_args);
    BSON_APPEND_UTF8(&add_args, "0", P_RATE_BASE);
    BSON_APPEND_DOCUMENT_BEGIN(&add_args, "1", &mul);
    BSON_APPEND_ARRAY_BEGIN(&mul, "$multiply", &mul_args);
    BSON_APPEND_UTF8(&mul_args, "0", P_ADMITTED);
    BSON_APPEND_DOUBLE(&mul_args, "1", interval_ms(queue));
    bson_append_array_end(&mul, &mul_args);
    bson_append_document_end(&add_args, &mul);
    bson_append_array_end(&add, &add_args);
    bson_append_document_end(&set, &add);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(pipeline, &stage);
}

static double
double_field(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return doc && bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_double(&it)
               : 0;
}

int64_t
mongoq__group_rate_due(const mongoq_queue_t *queue, const bson_t *doc, int64_t i)
{
    if (!mongoq__group_rate_on(queue)) {
        return 0;
    }
    double t = interval_ms(queue), tau = (double)(queue->opts.group_rate_burst - 1) * t;
    double now = double_field(doc, MONGOQ__F_G_RATE_NOW);
    double due = double_field(doc, MONGOQ__F_G_RATE_BASE) + (double)i * t - tau;
    if (due < now) {
        due = now;
    }
    /* Rounded up (no libm for one rounding): a message is never due before its token. */
    int64_t ms = (int64_t)due;
    return (double)ms < due ? ms + 1 : ms;
}

bool
mongoq__group_rate_take(mongoq__txn_t *txn, const char *group, int64_t k, bson_t **doc_out,
                        bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, stage, set;
    mongoq__group_doc_filter(txn->queue, group, &filter);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "0", &stage);
    BSON_APPEND_DOCUMENT_BEGIN(&stage, "$set", &set);
    BSON_APPEND_INT64(&set, MONGOQ__F_G_ADMITTED, k);
    bson_append_document_end(&stage, &set);
    bson_append_document_end(&update, &stage);
    mongoq__group_rate_append(txn->queue, &update, 1);
    bool ok = mongoq__txn_fam(txn, &filter, NULL, &update,
                              MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW,
                              doc_out, error);
    bson_destroy(&update);
    bson_destroy(&filter);
    return ok;
}

void
mongoq__group_rate_append_refilled(bson_t *filter)
{
    bson_t expr, args;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "$expr", &expr);
    BSON_APPEND_ARRAY_BEGIN(&expr, "$lte", &args);
    append_tat_and_now(&args);
    bson_append_array_end(&expr, &args);
    bson_append_document_end(filter, &expr);
}

/*
 * Deletes the documents of emptied groups (no place held, none waiting) whose bucket has
 * refilled: such a document is worth no more than none (a fresh bucket is a full one), and its
 * seq restarts with no message of the group in line. One deleteMany over the group documents'
 * _id range; a transaction admitting into one of them meanwhile conflicts with it and the
 * server settles the order (mongod retries a non-transactional write on conflict, re-reading
 * the filter).
 */
bool
mongoq__group_rate_sweep(mongoq_queue_t *queue, mongoc_client_t *client, int64_t *n,
                         bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, range, reply;
    *n = 0;
    if (!mongoq__group_rate_on(queue)) {
        return true;
    }
    mongoq__partition_append_all(&filter, queue->opts.partitions);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_ID, &range);
    BSON_APPEND_UTF8(&range, "$gte", MONGOQ__GROUP_ID_PREFIX);
    BSON_APPEND_UTF8(&range, "$lt", "mongoq.group;"); /* ';' follows ':' */
    bson_append_document_end(&filter, &range);
    BSON_APPEND_INT64(&filter, MONGOQ__F_G_ACTIVE, 0);
    BSON_APPEND_INT64(&filter, MONGOQ__F_G_WAITING, 0);
    mongoq__group_rate_append_refilled(&filter);
    mongoq__queue_append_write_concern(queue, &opts);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, queue->db, queue->name);
    bool ok = mongoc_collection_delete_many(coll, &filter, &opts, &reply, error);
    if (ok) {
        *n = mongoq__reply_count(&reply, "deletedCount");
    }
    bson_destroy(&reply);
    mongoc_collection_destroy(coll);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

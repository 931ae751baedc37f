/*
 * mongoq-bench's server-side figures: serverStatus deltas per message (keys and documents the
 * server examined, documents written), the check that the same-commands loops still send
 * mongoq's command shapes, and the burn-downs against a server that really waits for its journal
 * (the test server with --dbpath, where j: true is an fdatasync before the reply).
 *
 * serverStatus fields are read where mongod 6.0 reports them (the manual's serverStatus output
 * page): metrics.queryExecutor.scanned (index keys examined), metrics.queryExecutor.scannedObjects
 * (documents examined), metrics.document.{inserted, updated, deleted}, and
 * wiredTiger.log."log sync operations" (journal syncs). A field the server does not report is
 * printed as n/a.
 */
#include "bench.h"

bool
bench_status_number(const bson_t *status, const char *path, double *out)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, status) || !bson_iter_find_descendant(&it, path, &it) ||
        !BSON_ITER_HOLDS_NUMBER(&it)) {
        return false;
    }
    *out = (double)bson_iter_as_int64(&it);
    return true;
}

void
bench_server_status(mongoc_client_pool_t *pool, bson_t *status)
{
    bson_error_t error;
    bson_t cmd = BSON_INITIALIZER;
    BSON_APPEND_INT32(&cmd, "serverStatus", 1);
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    if (!mongoc_client_command_simple(client, "admin", &cmd, NULL, status, &error)) {
        bench_die("serverStatus", &error);
    }
    mongoc_client_pool_push(pool, client);
    bson_destroy(&cmd);
}

/* ---- command shapes ------------------------------------------------------------------------ */

/* The shapes of one claim + ack (or claim_many(4) + ack_many) by mongoq or by the same-commands
 * loop, on a fresh queue of 6 messages. Caller frees. */
static char *
capture(bool same, bool batched)
{
    bson_error_t error;
    mongoq_queue_t *q = bench_fresh_queue();
    bench_fill(q, 6, 100);
    mongoc_client_t *client = mongoc_client_pool_pop(bench_pool);
    mongoc_collection_t *coll = bench_get_collection(client);
    mongoc_write_concern_t *wc = bench_majority_journaled();
    bson_t wc_opts = BSON_INITIALIZER;
    mongoc_write_concern_append(wc, &wc_opts);
    mongoq_consumer_t *c = mongoq_consumer_new(q, NULL, &error);
    mongoq_message_t *msgs[4];
    size_t n = 0;
    bench_shape_start();
    if (same) {
        n = batched ? (size_t)bench_same_claim_ack_many(coll, &wc_opts, 4)
                    : (size_t)bench_same_claim_ack(coll, &wc_opts);
    } else if (batched) {
        if (!mongoq_consumer_claim_many(c, 4, 0, msgs, &n, &error) ||
            !mongoq_message_ack_many(msgs, n, &error)) {
            bench_die("shape check claim_many", &error);
        }
    } else {
        if (!mongoq_consumer_claim(c, 0, &msgs[0], &error) || !msgs[0] ||
            !mongoq_message_ack(msgs[0], &error)) {
            bench_die("shape check claim", &error);
        }
        n = 1;
    }
    char *shapes = bench_shape_stop();
    for (size_t i = 0; !same && i < n; i++) {
        mongoq_message_destroy(msgs[i]);
    }
    mongoq_consumer_destroy(c);
    bson_destroy(&wc_opts);
    mongoc_write_concern_destroy(wc);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(bench_pool, client);
    mongoq_queue_destroy(q);
    return shapes;
}

static bool
shapes_match(bool batched, const char *what)
{
    char *mongoq = capture(false, batched);
    char *same = capture(true, batched);
    bool match = !strcmp(mongoq, same);
    if (!match) {
        fprintf(bench_md, "\n**The same-commands loop no longer sends what mongoq sends for %s** "
                          "(update scripts/bench_same.c):\n\n```\nmongoq:\n%s\nsame-commands loop:"
                          "\n%s```\n",
                what, mongoq, same);
        fprintf(stderr, "mongoq-bench: %s: the same-commands loop differs from mongoq\n", what);
    }
    bson_free(mongoq);
    bson_free(same);
    return match;
}

void
bench_shapes(void)
{
    bool single = shapes_match(false, "claim + ack");
    bool batched = shapes_match(true, "claim_many + ack_many");
    fprintf(bench_md, "\nChecked in this run through libmongoc's command monitoring (every "
                      "command's keys and value types): the same-commands loop sends the commands "
                      "mongoq sends for claim + ack: %s; for claim_many + ack_many: %s.\n",
            single ? "yes" : "**no**", batched ? "yes" : "**no**");
}

/* ---- server work per message --------------------------------------------------------------- */

static const struct {
    const char *path, *title;
} work_fields[] = {{"metrics.queryExecutor.scanned", "index keys examined"},
                   {"metrics.queryExecutor.scannedObjects", "documents examined"},
                   {"metrics.document.inserted", "inserted"},
                   {"metrics.document.updated", "updated"},
                   {"metrics.document.deleted", "deleted"}};
#define N_WORK (sizeof work_fields / sizeof work_fields[0])

/* One burn-down of n messages in mode, one thread; per message deltas (negative: n/a). */
static void
work_of(burn_mode_t mode, int64_t n, double *per_msg)
{
    bench_drop_db();
    mongoq_queue_t *q = bench_open_queue(true, 0); /* no change stream: its reads are not ours */
    bench_fill(q, n, 100);
    bson_t before, after;
    bench_server_status(bench_pool, &before);
    int64_t moved = 0;
    bench_burn(q, mode, 1, 0, &moved);
    bench_server_status(bench_pool, &after);
    for (size_t f = 0; f < N_WORK; f++) {
        double a, b;
        per_msg[f] = bench_status_number(&before, work_fields[f].path, &a) &&
                             bench_status_number(&after, work_fields[f].path, &b) && moved > 0
                         ? (b - a) / (double)moved
                         : -1;
    }
    bson_destroy(&before);
    bson_destroy(&after);
    mongoq_queue_destroy(q);
}

void
bench_server_work(void)
{
    static const burn_mode_t modes[] = {MODE_RAW, MODE_SAME, MODE_SINGLE, MODE_SAME_BATCH,
                                        MODE_BATCH};
    static const char *const names[] = {"naive loop", "same-commands loop, single",
                                        "mongoq claim + ack", "same-commands loop, batches of 100",
                                        "mongoq claim_many(100) + ack_many"};
    int64_t n = bench_cfg.quick ? 300 : 2000;
    double work[5][N_WORK];
    bool missing = false;
    fprintf(bench_md, "\n## Server work per message\n\nOne consumer thread empties a queue of %lld "
                      "messages; serverStatus before and after (the claims and acks only; the "
                      "queue has no change stream and no reaper), deltas divided by the messages "
                      "moved. mongod's names: metrics.queryExecutor.scanned (index keys), "
                      ".scannedObjects (documents), metrics.document.*. Counts, not timings: one "
                      "run.\n\n| loop |",
            (long long)n);
    for (size_t f = 0; f < N_WORK; f++) {
        fprintf(bench_md, " %s |", work_fields[f].title);
    }
    fprintf(bench_md, "\n|---|---|---|---|---|---|\n");
    for (size_t m = 0; m < 5; m++) {
        work_of(modes[m], n, work[m]);
        fprintf(bench_md, "| %s |", names[m]);
        for (size_t f = 0; f < N_WORK; f++) {
            missing |= work[m][f] < 0;
            if (work[m][f] < 0) {
                fprintf(bench_md, " n/a |");
            } else {
                fprintf(bench_md, " %.2f |", work[m][f]);
            }
        }
        fprintf(bench_md, "\n");
        fprintf(stderr, "server work %s: %.2f keys, %.2f docs per message\n", names[m], work[m][0],
                work[m][1]);
    }
    if (missing) {
        fprintf(bench_md, "\nn/a: this server's serverStatus does not report the field.\n");
    }
    bench_key.keys_single_vs_raw = work[0][0] > 0 && work[2][0] >= 0 ? work[2][0] / work[0][0] : -1;
    bench_key.keys_batch_vs_raw = work[0][0] > 0 && work[4][0] >= 0 ? work[4][0] / work[0][0] : -1;
    fflush(bench_md);
}

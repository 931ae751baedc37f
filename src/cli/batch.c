/*
 * Long writes in batches: `purge` and `redrive --all` on a terminal (or with --batch N) read the
 * ids of the messages of a status through a browse cursor (mongoq/browse.h, claim order, served
 * by the claim index), N at a time, then delete them ({_id: {$in: ids}, status}: one deleteMany
 * per batch) or redrive them (mongoq_queue_redrive by id, one call each), and show
 * "purged 12000/100000" on the terminal between batches.
 *
 * Nothing is lost or done twice when it stops part way (Ctrl-C between batches, a server
 * error): every write names the ids and the status it read, so a message that has moved on
 * since is left alone, and what was written is counted from the server's replies. Running it
 * again does the rest. Each status is read at most as far as the count taken at the start, so
 * messages arriving (or dying again) meanwhile cannot keep it going.
 */
#include <inttypes.h>
#include <string.h>

#include "cli.h"
#include "fields.h"

typedef struct {
    cli_t *cli;
    mongoq_queue_t *queue;
    bool purge;      /* delete; else redrive */
    bool show;       /* progress lines on the terminal */
    int64_t batch;   /* ids per batch */
    int64_t total;   /* counted at the start, every status included */
    int64_t written; /* deleted or moved */
    bson_oid_t ids[MONGOQ_MAX_BATCH];
} batch_t;

static void
progress(const batch_t *b)
{
    if (b->show) {
        fprintf(b->cli->out, "\r\033[K%s %" PRId64 "/%" PRId64, b->purge ? "purged" : "redrove",
                b->written, b->total);
        fflush(b->cli->out);
    }
}

/* Up to b->batch ids of the listing into b->ids; *n how many (0: the listing ended). */
static bool
read_ids(batch_t *b, mongoq_browse_t *browse, int64_t most, int *n, bson_error_t *error)
{
    mongoq_message_t *msg = NULL;
    *n = 0;
    while (*n < b->batch && *n < most) {
        if (!mongoq_browse_next(browse, &msg, error)) {
            return false;
        }
        if (!msg) {
            break;
        }
        bson_oid_copy(mongoq_message_id(msg), &b->ids[(*n)++]);
        mongoq_message_destroy(msg);
    }
    return true;
}

/* deleteMany {_id: {$in: ids}, status}, with the library's default write concern. */
static bool
delete_ids(batch_t *b, const char *status, int n, bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER, in, list, opts = BSON_INITIALIZER, reply;
    bson_iter_t it;
    char key[16];
    const char *k;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, MONGOQ__F_ID, &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &list);
    for (int i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_OID(&list, k, &b->ids[i]);
    }
    bson_append_array_end(&in, &list);
    bson_append_document_end(&filter, &in);
    BSON_APPEND_UTF8(&filter, MONGOQ__F_STATUS, status);
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    mongoc_write_concern_set_journal(wc, true);
    BSON_ASSERT(mongoc_write_concern_append(wc, &opts));
    bool ok = false;
    bson_init(&reply);
    mongoc_client_t *client = cli_pop(b->cli, error);
    if (client) {
        mongoc_collection_t *coll = mongoc_client_get_collection(
            client, mongoq_queue_db(b->queue), mongoq_queue_name(b->queue));
        bson_destroy(&reply);
        ok = mongoc_collection_delete_many(coll, &filter, &opts, &reply, error);
        if (ok && bson_iter_init_find(&it, &reply, "deletedCount")) {
            b->written += bson_iter_as_int64(&it);
        }
        mongoc_collection_destroy(coll);
        mongoc_client_pool_push(b->cli->pool, client);
    }
    mongoc_write_concern_destroy(wc);
    bson_destroy(&reply);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* mongoq_queue_redrive of each id; one that is no longer dead is skipped. */
static bool
redrive_ids(batch_t *b, int n, bson_error_t *error)
{
    for (int i = 0; i < n; i++) {
        int64_t moved = 0;
        if (mongoq_queue_redrive(b->queue, &b->ids[i], &moved, error)) {
            b->written += moved;
        } else if (!(error->domain == MONGOQ_ERROR_DOMAIN &&
                     error->code == MONGOQ_ERROR_NOT_FOUND)) {
            return false;
        }
    }
    return true;
}

/* The messages of one status, at most `most` of them, batch by batch. */
static bool
run_status(batch_t *b, const char *status, int64_t most, bson_error_t *error)
{
    mongoq_browse_opts_t o = MONGOQ_BROWSE_OPTS_INIT;
    o.status = status;
    o.page_size = (int32_t)b->batch;
    mongoq_browse_t *browse = mongoq_browse_new(b->queue, &o, error);
    bool ok = browse != NULL;
    while (ok && most > 0 && !cli_stopping()) {
        int n = 0;
        ok = read_ids(b, browse, most, &n, error);
        if (!ok || n == 0) {
            break;
        }
        ok = b->purge ? delete_ids(b, status, n, error) : redrive_ids(b, n, error);
        most -= n;
        progress(b);
    }
    mongoq_browse_destroy(browse);
    return ok;
}

/* The exit code once the batches ended: ok, failed (error) or interrupted, with the counts. */
static int
outcome(const batch_t *b, bool ok, const bson_error_t *error)
{
    if (b->show) {
        fprintf(b->cli->out, "\r\033[K");
    }
    if (!ok) {
        char what[128];
        bson_snprintf(what, sizeof what,
                      "%s stopped after %" PRId64 " of %" PRId64 " (run it again for the rest)",
                      b->purge ? "purge" : "redrive", b->written, b->total);
        return cli_fail_error(b->cli, what, error);
    }
    if (cli_stopping()) {
        return cli_fail(b->cli, CLI_FAILED,
                        "interrupted after %" PRId64 " of %" PRId64 " (run it again for the rest)",
                        b->written, b->total);
    }
    return CLI_OK;
}

int
cli_batch_write(cli_t *cli, mongoq_queue_t *queue, const char *status, bool purge, int64_t batch,
                int64_t *written)
{
    static const char *const all[] = {MONGOQ__S_READY, MONGOQ__S_PROCESSING, MONGOQ__S_DONE,
                                      MONGOQ__S_DEAD};
    bson_error_t error;
    mongoq_stats_t s = MONGOQ_STATS_INIT;
    *written = 0;
    if (!mongoq_queue_stats(queue, &s, &error)) {
        return cli_fail_error(cli, "stats", &error);
    }
    const int64_t counts[] = {s.ready, s.processing, s.done, s.dead};
    batch_t *b = bson_malloc0(sizeof *b);
    b->cli = cli;
    b->queue = queue;
    b->purge = purge;
    b->batch = batch;
    b->show = !cli->args.json && cli_stdout_tty();
    for (size_t i = 0; i < 4; i++) {
        b->total += !status || strcmp(status, all[i]) == 0 ? counts[i] : 0;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < 4 && !cli_stopping(); i++) {
        if (!status || strcmp(status, all[i]) == 0) {
            ok = run_status(b, all[i], counts[i], &error);
        }
    }
    int rc = outcome(b, ok, &error);
    *written = b->written;
    bson_free(b);
    return rc;
}

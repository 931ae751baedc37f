/*
 * --sabotage NAME[,NAME...]: breaks what an invariant checks, on purpose, to prove that the
 * check fails when its premise is broken (a run with it must end "FAIL" on those lines). One row
 * per sabotage: its name, the invariant it breaks, and what it does. "crash" acts during the
 * chaos phase; the others between the final stops and the check.
 */
#include "driver.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

/* A copy of one stored message under a new _id: a sequence number stored twice. */
static bool
sabotage_duplicate(driver_t *d)
{
    bson_error_t error;
    const bson_t *doc;
    bool ok = false;
    mongoc_collection_t *coll = mongoc_client_get_collection(d->client, CHAOS_DB, CHAOS_COLL);
    bson_t filter = BSON_INITIALIZER;
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    if (mongoc_cursor_next(cursor, &doc)) {
        bson_t copy = BSON_INITIALIZER;
        bson_copy_to_excluding_noinit(doc, &copy, "_id", NULL);
        ok = mongoc_collection_insert_one(coll, &copy, NULL, NULL, &error);
        bson_destroy(&copy);
    }
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    return ok;
}

/* One done message back to "ready", its checksum off by one. */
static bool
sabotage_status(driver_t *d)
{
    bson_error_t error;
    mongoc_collection_t *coll = mongoc_client_get_collection(d->client, CHAOS_DB, CHAOS_COLL);
    bson_t *filter = BCON_NEW("status", "done");
    bson_t *update = BCON_NEW("$set", "{", "status", "ready", "}", "$inc", "{",
                              "payload." CHAOS_F_SUM, BCON_INT64(1), "}");
    bool ok = mongoc_collection_update_one(coll, filter, update, NULL, NULL, &error);
    bson_destroy(update);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    return ok;
}

/* A worker's records claim one more delivery, acked ok, of a message already done. */
static bool
sabotage_ack(driver_t *d)
{
    int worker = -1;
    for (int i = 0; i < d->n_children && worker < 0; i++) {
        worker = d->children[i].kind == CHILD_WORKER ? i : -1;
    }
    const bson_t *doc;
    bson_iter_t it, seq_it;
    int64_t seq = -1, attempts = 0;
    mongoc_collection_t *coll = mongoc_client_get_collection(d->client, CHAOS_DB, CHAOS_COLL);
    bson_t *filter = BCON_NEW("status", "done");
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    if (worker >= 0 && mongoc_cursor_next(cursor, &doc) && bson_iter_init(&it, doc) &&
        bson_iter_find_descendant(&it, "payload." CHAOS_F_SEQ, &seq_it)) {
        seq = bson_iter_as_int64(&seq_it);
        attempts = bson_iter_init_find(&it, doc, "attempts") ? bson_iter_as_int64(&it) : 0;
    }
    mongoc_cursor_destroy(cursor);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    if (seq < 0) {
        return false;
    }
    char path[PATH_MAX + 64];
    chaos_log_t log;
    snprintf(path, sizeof path, "%s/%s.log", d->workdir, d->children[worker].name);
    if (!chaos_log_open(&log, path)) {
        return false;
    }
    int64_t now = chaos_mono_ms(), lease_exp = chaos_real_ms() + 1000;
    const char *token = "0123456789abcdef01234567";
    chaos_log_line(&log, "B %" PRId64 " %" PRId64 " %s %s sabotage:0 %" PRId64 " 1000 %" PRId64
                   " 1 0", seq, attempts + 1, token, token, lease_exp, now);
    chaos_log_line(&log, "E %" PRId64 " %" PRId64 " A %" PRId64, seq, attempts + 1, now);
    chaos_log_line(&log, "O %" PRId64 " %" PRId64 " %s 1 ACKED 1 %" PRId64 " 1000 %" PRId64
                   " 0.0 ", seq, attempts + 1, token, lease_exp, now);
    chaos_log_close(&log);
    return true;
}

static bool
sabotage_stop_bound(driver_t *d)
{
    d->stop_margin_ms = -1000000; /* every graceful stop is now over its bound */
    return true;
}

static bool
sabotage_recovery(driver_t *d)
{
    d->recovery_bound_ms = 0; /* no worker claims within 0 ms of a restart */
    return d->n_restarts > 0;
}

/* SIGSEGV to a worker: a death that is not ours. */
static bool
sabotage_crash(driver_t *d)
{
    int child = procs_pick(d, CHILD_WORKER, false);
    if (child < 0) {
        return false;
    }
    kill(d->children[child].pid, SIGSEGV); /* a live child we have not reaped: our PID */
    return true;
}

typedef struct {
    const char *name;
    int breaks; /* the invariants it breaks, as digits */
    bool during_chaos;
    bool (*apply)(driver_t *d);
} sabotage_t;

static const sabotage_t sabotages[] = {
    {"dup", 1, false, sabotage_duplicate},     {"status", 2, false, sabotage_status},
    {"ack", 34, false, sabotage_ack},           {"stop", 5, false, sabotage_stop_bound},
    {"recovery", 6, false, sabotage_recovery}, {"crash", 7, true, sabotage_crash},
};

/* Applies the sabotages named in d->sabotage that act at this point of the run. */
void
sabotage_apply(driver_t *d, bool during_chaos)
{
    for (size_t i = 0; d->sabotage && i < sizeof sabotages / sizeof sabotages[0]; i++) {
        const sabotage_t *s = &sabotages[i];
        char with_commas[128];
        snprintf(with_commas, sizeof with_commas, ",%s,", d->sabotage);
        char name[32];
        snprintf(name, sizeof name, ",%s,", s->name);
        if (s->during_chaos != during_chaos ||
            (!strstr(with_commas, name) && strcmp(d->sabotage, "all") != 0)) {
            continue;
        }
        bool done = s->apply(d);
        printf("chaos: SABOTAGE %s (breaks invariants %d): %s\n", s->name, s->breaks,
               done ? "done" : "could not be applied");
    }
}

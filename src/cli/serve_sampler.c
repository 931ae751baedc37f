/*
 * `mongoq serve`: the sampler, one thread. Each second it reads every queue's stats into a ring
 * of 600 samples (10 minutes), and counts the database's change events per queue meanwhile
 * (inserts are enqueues; deletes and "done" are acks; "dead" is a failure), so the page gets
 * rates and a plot without the API reading history. Claims seen in the stream name their
 * consumer: a table of those feeds the consumers view (serve_scan.c).
 *
 * A pass over every queue's stats costs the server time that grows with the queues (seconds at
 * a million messages where counts scan the index). The sampler waits SLOWDOWN times its last
 * pass before the next one, at least a second and at most MAX_PERIOD_MS, so it never keeps the
 * server busy more than a fifth of the time; each sample's span_ms says what its counts cover,
 * and rates divide by it.
 */
#include <string.h>
#include <time.h>

#include "fields.h"
#include "serve.h"

#define RATE_WINDOW 10        /* seconds the rates are averaged over */
#define MIN_PERIOD_MS 1000    /* between samples, at least */
#define MAX_PERIOD_MS 30000   /* and at most */
#define SLOWDOWN 4            /* the wait after a pass, in passes */

int64_t
serve__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static serve_series_t *
series_of(serve_t *srv, const char *name, bool add)
{
    for (size_t i = 0; i < srv->nseries; i++) {
        if (strcmp(srv->series[i].name, name) == 0) {
            return &srv->series[i];
        }
    }
    if (!add || srv->nseries == SERVE_MAX_QUEUES) {
        return NULL;
    }
    serve_series_t *s = &srv->series[srv->nseries++];
    memset(s, 0, sizeof *s);
    bson_strncpy(s->name, name, sizeof s->name);
    return s;
}

typedef struct {
    char name[SERVE_NAME_MAX];
    int64_t enqueued, acked, failed;
} tally_t;

/*
 * A claim seen in the change stream: a claim's update names its claimer in claimed_by (absent
 * from updatedFields when the same consumer claims the same message again, so this counts most
 * claims, not all). The table keeps the consumers seen last: a full one forgets the oldest.
 */
static void
note_claimer(serve_t *srv, const char *queue, const char *name)
{
    int64_t now = serve__now_ms();
    size_t oldest = 0;
    pthread_mutex_lock(&srv->mu);
    serve_claimer_t *c = NULL;
    for (size_t i = 0; i < srv->nclaimers && !c; i++) {
        c = strcmp(srv->claimers[i].queue, queue) == 0 && strcmp(srv->claimers[i].name, name) == 0
                ? &srv->claimers[i]
                : NULL;
        oldest = srv->claimers[i].last_claim_ms < srv->claimers[oldest].last_claim_ms ? i : oldest;
    }
    if (!c) {
        c = srv->nclaimers < SERVE_MAX_CLAIMERS ? &srv->claimers[srv->nclaimers++]
                                                : &srv->claimers[oldest];
        memset(c, 0, sizeof *c);
        bson_strncpy(c->queue, queue, sizeof c->queue);
        bson_strncpy(c->name, name, sizeof c->name);
    }
    c->claims++;
    c->last_claim_ms = now;
    pthread_mutex_unlock(&srv->mu);
}

/* Counts one change event of the database into the tally of its collection. */
static void
count_event(serve_t *srv, const bson_t *event, tally_t *tally, size_t n)
{
    bson_iter_t it, sub;
    const char *coll = bson_iter_init(&it, event) &&
                               bson_iter_find_descendant(&it, "ns.coll", &sub) &&
                               BSON_ITER_HOLDS_UTF8(&sub)
                           ? bson_iter_utf8(&sub, NULL)
                           : "";
    const char *op = bson_iter_init_find(&it, event, "operationType") && BSON_ITER_HOLDS_UTF8(&it)
                         ? bson_iter_utf8(&it, NULL)
                         : "";
    tally_t *t = NULL;
    for (size_t i = 0; i < n && !t; i++) {
        t = strcmp(tally[i].name, coll) == 0 ? &tally[i] : NULL;
    }
    if (!t ||
        (bson_iter_init(&it, event) && bson_iter_find_descendant(&it, "documentKey._id", &sub) &&
         !BSON_ITER_HOLDS_OID(&sub))) {
        return; /* not a queue we show, or the control document */
    }
    if (bson_iter_init(&it, event) &&
        bson_iter_find_descendant(&it, "updateDescription.updatedFields." MONGOQ__F_CLAIMED_BY,
                                  &sub) &&
        BSON_ITER_HOLDS_UTF8(&sub)) {
        note_claimer(srv, coll, bson_iter_utf8(&sub, NULL));
    }
    if (strcmp(op, "insert") == 0) {
        t->enqueued++;
    } else if (strcmp(op, "delete") == 0) {
        t->acked++;
    } else if (bson_iter_init(&it, event) &&
               bson_iter_find_descendant(&it, "updateDescription.updatedFields." MONGOQ__F_STATUS,
                                         &sub) &&
               BSON_ITER_HOLDS_UTF8(&sub)) {
        const char *status = bson_iter_utf8(&sub, NULL);
        t->acked += strcmp(status, MONGOQ__S_DONE) == 0;
        t->failed += strcmp(status, MONGOQ__S_DEAD) == 0;
    }
}

static mongoc_change_stream_t *
open_stream(serve_t *srv, mongoc_client_t *client)
{
    bson_t pipeline = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    bson_error_t error;
    mongoc_database_t *database = mongoc_client_get_database(client, srv->db);
    BSON_APPEND_INT64(&opts, "maxAwaitTimeMS", 200);
    mongoc_change_stream_t *stream = mongoc_database_watch(database, &pipeline, &opts);
    if (mongoc_change_stream_error_document(stream, &error, NULL)) {
        mongoc_change_stream_destroy(stream);
        stream = NULL;
    }
    mongoc_database_destroy(database);
    bson_destroy(&opts);
    bson_destroy(&pipeline);
    return stream;
}

/* Reads every queue's stats and appends one sample per queue with the events counted. */
static void
take_samples(serve_t *srv, mongoc_client_t *client, const tally_t *tally, size_t ntally, bool rates,
             int64_t span_ms)
{
    bson_error_t error;
    char **names = serve__queue_names(srv, client, &error);
    for (size_t i = 0; names && names[i]; i++) {
        mongoq_stats_t st = MONGOQ_STATS_INIT;
        mongoq_queue_t *q = serve__open_queue(srv, names[i], &error);
        bool read = q && mongoq_queue_stats(q, &st, &error);
        mongoq_queue_destroy(q);
        if (!read) {
            continue;
        }
        serve_sample_t s = {.at_ms = serve__now_ms(),
                            .span_ms = span_ms,
                            .ready = st.ready,
                            .delayed = st.delayed,
                            .processing = st.processing,
                            .done = st.done,
                            .dead = st.dead,
                            .enqueued = -1,
                            .acked = -1,
                            .failed = -1};
        for (size_t k = 0; rates && k < ntally; k++) {
            if (strcmp(tally[k].name, names[i]) == 0) {
                s.enqueued = tally[k].enqueued, s.acked = tally[k].acked,
                s.failed = tally[k].failed;
            }
        }
        if (rates && s.enqueued < 0) {
            s.enqueued = s.acked = s.failed = 0;
        }
        pthread_mutex_lock(&srv->mu);
        serve_series_t *series = series_of(srv, names[i], true);
        if (series) {
            series->ring[series->next] = s;
            series->next = (series->next + 1) % SERVE_RING;
            series->count += series->count < SERVE_RING;
        }
        pthread_mutex_unlock(&srv->mu);
    }
    bson_strfreev(names);
}

static void *
sampler_main(void *arg)
{
    serve_t *srv = arg;
    bson_error_t error;
    /* A client of its own, not the pool's: the sampler holds its change stream for the whole
     * run, and the pool (maxPoolSize=1 included) stays free for the API's requests. */
    mongoc_client_t *client = cli_own_client(srv->cli, &error);
    if (!client) {
        fprintf(stderr, "mongoq: serve: no sampler (rates and history stay empty): %s\n",
                error.message);
        return NULL;
    }
    mongoc_change_stream_t *stream = NULL;
    tally_t tally[SERVE_MAX_QUEUES];
    int64_t period = MIN_PERIOD_MS;
    int64_t last = bson_get_monotonic_time() / 1000; /* when the counts began */
    while (!srv->stop) {
        size_t n = 0;
        pthread_mutex_lock(&srv->mu);
        for (; n < srv->nseries; n++) {
            memset(&tally[n], 0, sizeof tally[n]);
            bson_strncpy(tally[n].name, srv->series[n].name, sizeof tally[n].name);
        }
        pthread_mutex_unlock(&srv->mu);
        stream = stream ? stream : open_stream(srv, client);
        bool rates = stream != NULL;
        pthread_mutex_lock(&srv->mu);
        srv->watching = rates;
        pthread_mutex_unlock(&srv->mu);
        int64_t deadline = bson_get_monotonic_time() / 1000 + period;
        while (!srv->stop && bson_get_monotonic_time() / 1000 < deadline) {
            const bson_t *event;
            if (!stream) {
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
            } else if (mongoc_change_stream_next(stream, &event)) {
                count_event(srv, event, tally, n);
            } else if (mongoc_change_stream_error_document(stream, &error, NULL)) {
                mongoc_change_stream_destroy(stream); /* reopened next second */
                stream = NULL;
                rates = false;
            }
        }
        int64_t start = bson_get_monotonic_time() / 1000;
        take_samples(srv, client, tally, n, rates, start - last);
        last = start;
        int64_t pass = bson_get_monotonic_time() / 1000 - start;
        period = SLOWDOWN * pass < MIN_PERIOD_MS   ? MIN_PERIOD_MS
                 : SLOWDOWN * pass > MAX_PERIOD_MS ? MAX_PERIOD_MS
                                                   : SLOWDOWN * pass;
    }
    mongoc_change_stream_destroy(stream);
    mongoc_client_destroy(client);
    return NULL;
}

bool
serve__sampler_start(serve_t *srv)
{
    return pthread_create(&srv->sampler, NULL, sampler_main, srv) == 0;
}

void
serve__sampler_stop(serve_t *srv)
{
    srv->stop = true;
    pthread_join(srv->sampler, NULL);
}

/* Appends {enqueued, acked, failed} per second over the last RATE_WINDOW samples, or null. */
void
serve__append_rates(serve_t *srv, const char *name, bson_t *doc)
{
    int64_t sums[3] = {0, 0, 0}, span = 0;
    bool have = true;
    pthread_mutex_lock(&srv->mu);
    serve_series_t *s = series_of(srv, name, false);
    /* The newest samples covering RATE_WINDOW seconds (at least one, however long its span). */
    for (size_t i = 0; s && i < s->count && (i == 0 || span < RATE_WINDOW * 1000); i++) {
        const serve_sample_t *x = &s->ring[(s->next + SERVE_RING - 1 - i) % SERVE_RING];
        have = have && x->enqueued >= 0;
        sums[0] += x->enqueued, sums[1] += x->acked, sums[2] += x->failed;
        span += x->span_ms > 0 ? x->span_ms : 1;
    }
    pthread_mutex_unlock(&srv->mu);
    if (!have || span == 0) {
        BSON_APPEND_NULL(doc, "rates");
        return;
    }
    bson_t r;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "rates", &r);
    BSON_APPEND_DOUBLE(&r, "enqueued", (double)sums[0] * 1000.0 / (double)span);
    BSON_APPEND_DOUBLE(&r, "acked", (double)sums[1] * 1000.0 / (double)span);
    BSON_APPEND_DOUBLE(&r, "failed", (double)sums[2] * 1000.0 / (double)span);
    bson_append_document_end(doc, &r);
}

/* Appends the samples of the last `seconds` as parallel arrays (compact for the plot). */
void
serve__append_samples(serve_t *srv, const char *name, size_t seconds, bson_t *doc)
{
    static const char *keys[] = {"t", "ready", "processing", "dead", "enqueued", "acked", "failed"};
    bson_t arrays[7], samples;
    for (size_t k = 0; k < 7; k++) {
        bson_init(&arrays[k]);
    }
    pthread_mutex_lock(&srv->mu);
    serve_series_t *s = series_of(srv, name, false);
    /* The samples taken in the last `seconds` before the newest one. */
    size_t count = 0;
    if (s && s->count > 0) {
        int64_t newest = s->ring[(s->next + SERVE_RING - 1) % SERVE_RING].at_ms;
        while (count < s->count &&
               s->ring[(s->next + SERVE_RING - 1 - count) % SERVE_RING].at_ms >
                   newest - (int64_t)seconds * 1000) {
            count++;
        }
    }
    for (size_t i = 0; i < count; i++) {
        const serve_sample_t *x = &s->ring[(s->next + SERVE_RING - count + i) % SERVE_RING];
        int64_t depth[4] = {x->at_ms, x->ready, x->processing, x->dead};
        int64_t events[3] = {x->enqueued, x->acked, x->failed};
        double per_s = x->span_ms > 0 ? 1000.0 / (double)x->span_ms : 1.0;
        char key[16];
        const char *kp;
        bson_uint32_to_string((uint32_t)i, &kp, key, sizeof key);
        for (size_t k = 0; k < 4; k++) {
            BSON_APPEND_INT64(&arrays[k], kp, depth[k]);
        }
        for (size_t k = 0; k < 3; k++) { /* -1 (no change stream) stays -1 */
            BSON_APPEND_DOUBLE(&arrays[4 + k], kp, events[k] < 0 ? -1.0 : (double)events[k] * per_s);
        }
    }
    pthread_mutex_unlock(&srv->mu);
    /* Seven arrays side by side: each built apart (a bson_t has one open child at a time). */
    BSON_APPEND_DOCUMENT_BEGIN(doc, "samples", &samples);
    for (size_t k = 0; k < 7; k++) {
        BSON_APPEND_ARRAY(&samples, keys[k], &arrays[k]);
        bson_destroy(&arrays[k]);
    }
    bson_append_document_end(doc, &samples);
}

/*
 * The TTL monitor: every --ttl-monitor-sleep-secs (default 60, like mongod's
 * ttlMonitorSleepSecs) it deletes documents whose single-field TTL index value (a date, or an
 * array of dates: the earliest counts) is older than expireAfterSeconds. Deletes go through
 * the oplog like any other write. Also reaps idle cursors.
 */
#include "store-private.h"

#include <errno.h>
#include <time.h>

static pthread_t ttl_thread;
static pthread_mutex_t ttl_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ttl_cond = PTHREAD_COND_INITIALIZER;
static bool ttl_stop_flag;
static bool ttl_started;

/* The expiry instant of doc for ix, or false when it has no date there. */
static bool
expiry_of(const ms_index_t *ix, const bson_t *doc, int64_t *expires_ms)
{
    bson_value_t v;
    if (!ms_path_get(doc, ix->paths[0], &v)) {
        return false;
    }
    int64_t earliest = INT64_MAX;
    if (v.value_type == BSON_TYPE_DATE_TIME) {
        earliest = v.value.v_datetime;
    } else if (v.value_type == BSON_TYPE_ARRAY) {
        bson_t arr;
        bson_iter_t it;
        bson_init_static(&arr, v.value.v_doc.data, v.value.v_doc.data_len);
        bson_iter_init(&it, &arr);
        while (bson_iter_next(&it)) {
            if (BSON_ITER_HOLDS_DATE_TIME(&it) && bson_iter_date_time(&it) < earliest) {
                earliest = bson_iter_date_time(&it);
            }
        }
    }
    if (earliest == INT64_MAX) {
        return false;
    }
    *expires_ms = earliest + ix->expire_after_secs * 1000;
    return true;
}

static void
sweep_collection(ms_coll_t *c, const ms_index_t *ix, int64_t now, ms_wctx_t *w)
{
    for (ms_rec_t *r = c->head, *next; r; r = next) {
        bson_t view;
        int64_t expires;
        next = r->next;
        ms_doc_view(r->doc, &view);
        if (ix->partial) {
            ms_ctx_t ctx = {.now_ms = now};
            if (!ms_matcher_matches(ix->partial, &view, &ctx)) {
                continue;
            }
        }
        if (expiry_of(ix, &view, &expires) && expires <= now) {
            w->db = c->db;
            ms_wctx_delete(w, c, r, NULL);
        }
    }
}

static void
sweep(void)
{
    ms_wctx_t w;
    int64_t now = ms_now_ms();
    ms_store_lock();
    ms_wctx_init(&w, NULL);
    for (ms_db_t *d = ms_store_dbs(); d; d = d->next) {
        for (ms_coll_t *c = d->colls; c; c = c->next) {
            for (size_t i = 0; i < c->nindexes; i++) {
                if (c->indexes[i]->has_ttl && c->indexes[i]->nfields == 1) {
                    sweep_collection(c, c->indexes[i], now, &w);
                }
            }
        }
    }
    bson_error_t error;
    ms_wctx_commit(&w, &error);
    ms_wctx_destroy(&w);
    ms_store_unlock();
    ms_cursor_reap(now);
}

static void *
ttl_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&ttl_mu);
    while (!ttl_stop_flag) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += ms_config.ttl_sleep_secs;
        while (!ttl_stop_flag &&
               pthread_cond_timedwait(&ttl_cond, &ttl_mu, &deadline) != ETIMEDOUT) {
        }
        if (ttl_stop_flag) {
            break;
        }
        pthread_mutex_unlock(&ttl_mu);
        sweep();
        pthread_mutex_lock(&ttl_mu);
    }
    pthread_mutex_unlock(&ttl_mu);
    return NULL;
}

void
ms_ttl_start(void)
{
    ttl_started = pthread_create(&ttl_thread, NULL, ttl_main, NULL) == 0;
}

void
ms_ttl_stop(void)
{
    if (!ttl_started) {
        return;
    }
    pthread_mutex_lock(&ttl_mu);
    ttl_stop_flag = true;
    pthread_cond_signal(&ttl_cond);
    pthread_mutex_unlock(&ttl_mu);
    pthread_join(ttl_thread, NULL);
}

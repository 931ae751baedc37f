/*
 * --noop-interval N: mongod's periodic no-op writer (src/mongo/db/repl/noop_writer.cpp, the
 * periodicNoopIntervalSecs parameter, 10 s by default on a real replica set): every N seconds,
 * when nothing was written since the last tick, the newest cluster time moves on, so change
 * streams on an idle server still see their postBatchResumeToken advance. A router merging
 * streams from several shards needs that to release another shard's events (SERVER-80427).
 * Off (0) by default, as the server is a lone replica set that needs none.
 *
 * Also here: the $clusterTime a command gossips moves the server's cluster time on
 * (ms_cluster_time_gossip), as mongod's VectorClock does with every message it receives.
 */
#include "server-private.h"

#include <time.h>

static pthread_t noop_thread;
static pthread_mutex_t noop_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t noop_cv;
static bool noop_running;
static bool noop_stopping;
static int noop_interval_secs;

static void *
noop_main(void *arg)
{
    (void)arg;
    uint64_t seen_gen = 0;
    pthread_mutex_lock(&noop_mu);
    /* Bounded: each pass waits one interval; ms_noop_stop ends it. */
    while (!noop_stopping) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += noop_interval_secs;
        while (!noop_stopping && pthread_cond_timedwait(&noop_cv, &noop_mu, &until) == 0) {
        }
        if (noop_stopping) {
            break;
        }
        pthread_mutex_unlock(&noop_mu);
        ms_oplog_noop_if_idle(&seen_gen);
        pthread_mutex_lock(&noop_mu);
    }
    pthread_mutex_unlock(&noop_mu);
    return NULL;
}

void
ms_noop_start(int interval_secs)
{
    if (interval_secs <= 0) {
        return;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&noop_cv, &attr);
    pthread_condattr_destroy(&attr);
    noop_interval_secs = interval_secs;
    noop_running = pthread_create(&noop_thread, NULL, noop_main, NULL) == 0;
}

void
ms_noop_stop(void)
{
    if (!noop_running) {
        return;
    }
    pthread_mutex_lock(&noop_mu);
    noop_stopping = true;
    pthread_cond_broadcast(&noop_cv);
    pthread_mutex_unlock(&noop_mu);
    pthread_join(noop_thread, NULL);
    noop_running = false;
}

void
ms_cluster_time_gossip(const bson_t *cmd)
{
    bson_iter_t it;
    uint32_t t = 0;
    uint32_t i = 0;
    if (bson_iter_init_find(&it, cmd, "$clusterTime") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &it) && bson_iter_find(&it, "clusterTime") &&
        BSON_ITER_HOLDS_TIMESTAMP(&it)) {
        bson_iter_timestamp(&it, &t, &i);
        ms_optime_t seen = {t, i};
        ms_oplog_advance_cluster_time(seen);
    }
}

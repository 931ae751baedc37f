/*
 * mongoq-bench --only partitions: partitioned queues (docs/scaling.md).
 *
 *  1. One server: claim + ack one message at a time from a queue of 16 partitions against a
 *     queue of one, the same single-thread burn-down of the same number of messages, the two
 *     alternating within each repetition (target: P = 16 within 1.1x of P = 1 per message).
 *  2. With --mongos-uri (a mongos in front of shards; scripts/bench starts the test router with
 *     two): a queue of 16 partitions sharded with mongoq_queue_shard against a queue of one
 *     partition, unsharded (so on the database's primary shard), both through the same mongos,
 *     burned down by 1 and 4 threads. Each claimed message's partition, looked up in the chunk
 *     map (config.collections and config.chunks, as mongos routes), names the shard the claim
 *     and its ack went to: the claims per shard must be even within 10%.
 *
 * Each figure is the median of the repetitions (at least 5 for the per-message ratio), each on
 * a fresh queue in a database of its own.
 */
#include "bench.h"

#define PARTITIONED 16
#define MAX_SHARDS 8
#define MIN_REPS_PER_MESSAGE 5

/* msgs/s of `threads` consumers taking `limit` messages from q; adds the claims per partition
 * to per_partition (may be NULL). */
static double
run_loop(mongoq_queue_t *q, int threads, int64_t limit, int64_t *per_partition)
{
    int64_t total = 0;
    double rate = bench_claim_ack(q, threads, limit, per_partition, &total);
    if (total != limit) {
        fprintf(stderr, "partitions: took %lld of %lld messages\n", (long long)total,
                (long long)limit);
        exit(1);
    }
    return rate;
}

static void
drop_db(mongoc_client_pool_t *pool, const char *name)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_database_t *db = mongoc_client_get_database(client, name);
    mongoc_database_drop(db, NULL);
    mongoc_database_destroy(db);
    mongoc_client_pool_push(pool, client);
}

/* A fresh queue of `partitions` in database db (dropped first), sharded when asked, holding n
 * messages of 100 B. */
static mongoq_queue_t *
filled_queue(mongoc_client_pool_t *pool, const char *db, int partitions, bool shard, int64_t n)
{
    bson_error_t error;
    drop_db(pool, db);
    mongoq_queue_opts_t opts = MONGOQ_QUEUE_OPTS_INIT;
    opts.no_reaper = true;
    opts.partitions = partitions;
    mongoq_queue_t *q = mongoq_queue_new(pool, db, QUEUE_NAME, &opts, &error);
    if (!q) {
        bench_die("mongoq_queue_new", &error);
    }
    if (shard && !mongoq_queue_shard(q, NULL, &error)) {
        bench_die("mongoq_queue_shard", &error);
    }
    bench_fill(q, n, 100);
    return q;
}

/* ---- 1. one server ------------------------------------------------------------------------ */

static void
per_message(void)
{
    int reps = bench_cfg.reps < MIN_REPS_PER_MESSAGE ? MIN_REPS_PER_MESSAGE : bench_cfg.reps;
    int64_t n = bench_cfg.quick ? 1000 : 5000;
    static const int sizes[2] = {1, PARTITIONED};
    double v[2][MAX_REPS];
    for (int r = 0; r < reps; r++) {
        for (int j = 0; j < 2; j++) {
            int which = (r + j) % 2; /* alternate which goes first */
            mongoq_queue_t *q = filled_queue(bench_pool, bench_db_name, sizes[which], false, n);
            v[which][r] = run_loop(q, 1, n, NULL);
            mongoq_queue_destroy(q);
        }
    }
    summary_t s[2] = {bench_summarize(v[0], reps), bench_summarize(v[1], reps)};
    double ratio = s[0].median / s[1].median; /* time per message, P = 16 / P = 1 */
    fprintf(stderr, "partitions: one server, P = 1 %.0f msg/s, P = %d %.0f msg/s (%.3fx)\n",
            s[0].median, PARTITIONED, s[1].median, ratio);
    fprintf(bench_md,
            "\n## Partitions\n\n"
            "### One server: claim + ack per message, P = %d against P = 1\n\n"
            "A single thread claims and acks %lld messages (100 B) one at a time from a fresh "
            "queue, P = 1 and P = %d alternating within each repetition; median (min-max) of %d "
            "runs.\n\n"
            "| partitions | msg/s | us per claim + ack | time per message vs P = 1 |\n"
            "|---|---|---|---|\n",
            PARTITIONED, (long long)n, PARTITIONED, reps);
    for (int j = 0; j < 2; j++) {
        fprintf(bench_md, "| %d | %.0f (%.0f-%.0f) | %.0f | %.3fx |\n", sizes[j], s[j].median,
                s[j].min, s[j].max, 1e6 / s[j].median, s[0].median / s[j].median);
    }
    fprintf(bench_md, "\nTarget: P = %d within 1.1x of P = 1 per message: %.3fx, %s.\n",
            PARTITIONED, ratio, ratio <= 1.1 ? "met" : "**missed**");
}

/* ---- 2. through mongos ---------------------------------------------------------------------- */

typedef struct {
    int nshards;
    char names[MAX_SHARDS][64];
    int of_partition[MONGOQ_MAX_PARTITIONS]; /* index into names */
} chunk_map_t;

/* A chunk bound's partition: MinKey and MaxKey as far below and above any partition. */
static int64_t
bound_value(const bson_t *doc, const char *field)
{
    bson_iter_t it, sub;
    if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &sub) || !bson_iter_find(&sub, "partition")) {
        fprintf(stderr, "partitions: a chunk without %s.partition\n", field);
        exit(1);
    }
    if (BSON_ITER_HOLDS_MINKEY(&sub)) {
        return INT64_MIN;
    }
    if (BSON_ITER_HOLDS_MAXKEY(&sub)) {
        return INT64_MAX;
    }
    return bson_iter_as_int64(&sub);
}

static int
shard_index(chunk_map_t *map, const char *name)
{
    for (int i = 0; i < map->nshards; i++) {
        if (!strcmp(map->names[i], name)) {
            return i;
        }
    }
    if (map->nshards == MAX_SHARDS) {
        fprintf(stderr, "partitions: more than %d shards\n", MAX_SHARDS);
        exit(1);
    }
    snprintf(map->names[map->nshards], sizeof map->names[0], "%s", name);
    return map->nshards++;
}

/* Which shard holds each partition of db.QUEUE_NAME, from the mongos' config database. */
static void
read_chunk_map(mongoc_client_pool_t *pool, const char *db, chunk_map_t *map)
{
    char ns[128];
    bson_iter_t it;
    const bson_t *doc;
    snprintf(ns, sizeof ns, "%s.%s", db, QUEUE_NAME);
    memset(map, 0, sizeof *map);
    for (int k = 0; k < MONGOQ_MAX_PARTITIONS; k++) {
        map->of_partition[k] = -1;
    }
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    mongoc_collection_t *colls = mongoc_client_get_collection(client, "config", "collections");
    mongoc_collection_t *chunks = mongoc_client_get_collection(client, "config", "chunks");
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "_id", ns);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(colls, &filter, NULL, NULL);
    bson_t chunk_filter = BSON_INITIALIZER;
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "uuid")) {
        bson_append_iter(&chunk_filter, "uuid", -1, &it); /* 5.0 and later key chunks by uuid */
    } else {
        BSON_APPEND_UTF8(&chunk_filter, "ns", ns);
    }
    mongoc_cursor_destroy(cur);
    cur = mongoc_collection_find_with_opts(chunks, &chunk_filter, NULL, NULL);
    while (mongoc_cursor_next(cur, &doc)) {
        int64_t lo = bound_value(doc, "min"), hi = bound_value(doc, "max");
        if (!bson_iter_init_find(&it, doc, "shard") || !BSON_ITER_HOLDS_UTF8(&it)) {
            continue;
        }
        int s = shard_index(map, bson_iter_utf8(&it, NULL));
        for (int64_t k = 0; k < MONGOQ_MAX_PARTITIONS; k++) {
            if (lo <= k && k < hi) {
                map->of_partition[k] = s;
            }
        }
    }
    bson_error_t error;
    if (mongoc_cursor_error(cur, &error)) {
        bench_die("config.chunks", &error);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&chunk_filter);
    bson_destroy(&filter);
    mongoc_collection_destroy(chunks);
    mongoc_collection_destroy(colls);
    mongoc_client_pool_push(pool, client);
}

/* Median msg/s over reps of a fresh queue through pool; claims per partition added up. */
static summary_t
measure_mongos(mongoc_client_pool_t *pool, int partitions, int threads, int64_t n,
               int64_t *per_partition, chunk_map_t *map)
{
    double v[MAX_REPS];
    char db[96];
    for (int r = 0; r < bench_cfg.reps; r++) {
        snprintf(db, sizeof db, "%s_p%d_t%d_r%d", bench_db_name, partitions, threads, r);
        mongoq_queue_t *q = filled_queue(pool, db, partitions, partitions > 1, n);
        if (map) {
            read_chunk_map(pool, db, map);
        }
        v[r] = run_loop(q, threads, n, per_partition);
        mongoq_queue_destroy(q);
        drop_db(pool, db);
    }
    summary_t s = bench_summarize(v, bench_cfg.reps);
    fprintf(stderr, "partitions: mongos, P = %d, %d threads: %.0f msg/s\n", partitions, threads,
            s.median);
    return s;
}

static void
balance_line(const chunk_map_t *map, const int64_t *per_partition)
{
    int64_t per_shard[MAX_SHARDS] = {0}, total = 0;
    for (int k = 0; k < PARTITIONED; k++) {
        if (map->of_partition[k] < 0) {
            fprintf(stderr, "partitions: partition %d is in no chunk\n", k);
            exit(1);
        }
        per_shard[map->of_partition[k]] += per_partition[k];
        total += per_partition[k];
    }
    double even = (double)total / map->nshards, worst = 0;
    fprintf(bench_md, "\nClaims per shard (each claimed message's partition in the chunk map, "
                      "config.chunks; every run of P = %d above, %lld claims):",
            PARTITIONED, (long long)total);
    for (int s = 0; s < map->nshards; s++) {
        double off = fabs((double)per_shard[s] - even) / even;
        worst = off > worst ? off : worst;
        fprintf(bench_md, "%s %s %lld (%.1f%%)", s ? "," : "", map->names[s],
                (long long)per_shard[s], 100.0 * (double)per_shard[s] / (double)total);
    }
    fprintf(bench_md, ". The furthest shard is %.1f%% from an even share; target within 10%%: "
                      "%s.\n",
            100 * worst, worst <= 0.10 ? "met" : "**missed**");
    fprintf(stderr, "partitions: claims per shard at most %.1f%% from even\n", 100 * worst);
}

static void
through_mongos(void)
{
    bson_error_t error;
    static const int threads[2] = {1, 4};
    int64_t n = bench_cfg.quick ? 1000 : 4000;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(bench_cfg.mongos_uri, &error);
    if (!uri) {
        bench_die("--mongos-uri", &error);
    }
    mongoc_client_pool_t *pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(pool, 64);
    static int64_t per_partition[MONGOQ_MAX_PARTITIONS];
    chunk_map_t map;
    fprintf(bench_md,
            "\n### Through mongos: P = %d sharded against P = 1 on one shard\n\n"
            "%lld messages (100 B) claimed and acked one at a time through the mongos at %s: a "
            "queue of %d partitions sharded with mongoq_queue_shard (one chunk per partition, "
            "dealt to the shards in turn), and a queue of one partition, unsharded (on the "
            "database's primary shard), in the same run; median (min-max) of %d runs, msg/s.\n\n"
            "| threads | P = 1, one shard | P = %d, sharded | sharded / one shard |\n"
            "|---|---|---|---|\n",
            PARTITIONED, (long long)n, bench_cfg.mongos_uri, PARTITIONED, bench_cfg.reps,
            PARTITIONED);
    for (int t = 0; t < 2; t++) {
        summary_t one = measure_mongos(pool, 1, threads[t], n, NULL, NULL);
        summary_t sharded = measure_mongos(pool, PARTITIONED, threads[t], n, per_partition, &map);
        fprintf(bench_md, "| %d | %.0f (%.0f-%.0f) | %.0f (%.0f-%.0f) | %.2fx |\n", threads[t],
                one.median, one.min, one.max, sharded.median, sharded.min, sharded.max,
                sharded.median / one.median);
    }
    balance_line(&map, per_partition);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
}

void
bench_partitions(void)
{
    per_message();
    if (bench_cfg.mongos_uri) {
        through_mongos();
    } else {
        fprintf(bench_md, "\n(No `--mongos-uri`: the sharded comparison did not run.)\n");
    }
}

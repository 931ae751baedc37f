/* The doctor's report (check_report.c), filled by the checks (check.c). */
#ifndef MONGOQ_CHECK_PRIVATE_H
#define MONGOQ_CHECK_PRIVATE_H

#include "mongoq/check.h"

/* The most items a report holds (one per check). */
#define MONGOQ__CHECK_MAX_ITEMS 16

typedef struct {
    const char *name; /* static */
    mongoq_check_level_t level;
    char *message;
    char *advice;
    bson_t details;
} mongoq__check_item_t;

struct mongoq_report_t {
    mongoq__check_item_t items[MONGOQ__CHECK_MAX_ITEMS];
    size_t n;
};

/* What every check may use: one client for all of them, and the hello reply read first. */
typedef struct {
    mongoq_queue_t *queue;
    mongoq_check_opts_t opts; /* defaults resolved */
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_t hello;
    int64_t hello_sent_ms, hello_received_ms; /* this machine's wall clock */
    /* mongoq_queue_stats, read once by the first check that needs it, without ctx's client
     * held (any pool size works, one included). */
    bool stats_read, stats_ok;
    mongoq_stats_t stats;
    bson_error_t stats_error;
} mongoq__check_ctx_t;

/* The checks of the queue's collection (check_queue.c); each fills its item. */
void mongoq__check_indexes(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item);
void mongoq__check_claim_plan(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item);
void mongoq__check_partitions(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item);
void mongoq__check_write_concern(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item);
void mongoq__check_paused(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item);
void mongoq__check_backlog(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item);
void mongoq__check_dead_letters(mongoq__check_ctx_t *ctx, mongoq__check_item_t *item);

/* A new empty report. */
mongoq_report_t *mongoq__report_new(void);

/* Adds an item named name (static) at level OK with empty texts; returns it. */
mongoq__check_item_t *mongoq__report_add(mongoq_report_t *report, const char *name);

/* Sets an item's level, advice (may be NULL: none) and message (printf). */
void mongoq__check_item_set(mongoq__check_item_t *item, mongoq_check_level_t level,
                            const char *advice, const char *format, ...) BSON_GNUC_PRINTF(4, 5);

#endif

/*
 * `mongoq serve`: what its files share. serve.c is the HTTP glue (libmicrohttpd, routing, the
 * token and Origin checks), serve_api.c the JSON API's reads, serve_scan.c its bounded scans
 * (messages by text, consumers), serve_actions.c its writes, serve_sampler.c the sampler
 * thread; the page's assets (assets/) are compiled into the binary by assets/embed.cmake.
 */
#ifndef MONGOQ_CLI_SERVE_H
#define MONGOQ_CLI_SERVE_H

#include <pthread.h>

#include "cli.h"

/* Samples kept per queue: one a second for 10 minutes. */
#define SERVE_RING 600
#define SERVE_MAX_QUEUES 64
#define SERVE_NAME_MAX 128
/* Consumers remembered from the claims the change stream showed (serve_sampler.c). */
#define SERVE_MAX_CLAIMERS 256

/*
 * One sample of one queue: depth per status, and the change events counted since the one before
 * (span_ms: a second, or longer when the sampler slowed down, serve_sampler.c).
 */
typedef struct {
    int64_t at_ms; /* wall clock */
    int64_t span_ms;
    int64_t ready, delayed, processing, done, dead;
    int64_t enqueued, acked, failed; /* -1: no change stream, no rates */
} serve_sample_t;

typedef struct {
    char name[SERVE_NAME_MAX];
    serve_sample_t ring[SERVE_RING];
    size_t next, count;
} serve_series_t;

/* A consumer seen claiming in one queue since the dashboard started. */
typedef struct {
    char queue[SERVE_NAME_MAX];
    char name[MONGOQ_MAX_NAME_BYTES + 1];
    int64_t claims, last_claim_ms; /* wall clock */
} serve_claimer_t;

typedef struct {
    cli_t *cli;
    const char *db;
    bool allow_actions;
    const char *token;
    char host[96]; /* "HOST:PORT": the Host header accepted (DNS rebinding); Origin must match */
    bool any_host;
    /* The sampler (serve_api.c): one thread, series guarded by mu. */
    pthread_mutex_t mu;
    pthread_t sampler;
    volatile bool stop;
    serve_series_t series[SERVE_MAX_QUEUES];
    size_t nseries;
    serve_claimer_t claimers[SERVE_MAX_CLAIMERS];
    size_t nclaimers;
    bool watching;      /* the sampler's change stream is open */
    int64_t started_ms; /* wall clock, when serve started */
} serve_t;

/* An answer: HTTP status and a body owned by the reply (bson_free). */
typedef struct {
    unsigned status;
    char *body;
    const char *type;
} serve_reply_t;

/* How handlers read a query argument (NULL when absent). */
typedef const char *(*serve_arg_fn)(void *ctx, const char *name);

/* ---- serve_api.c ---------------------------------------------------------------------------- */

/* Answers GET path (the part after /api) with query arguments read through arg. */
void serve__api_get(serve_t *srv, const char *path, serve_arg_fn arg, void *ctx,
                    serve_reply_t *reply);

/* A queue handle that changes nothing (no index creation, reaper or change stream). */
mongoq_queue_t *serve__open_queue(serve_t *srv, const char *name, bson_error_t *error);

/* The db's queues (collections with mongoq's claim index), NULL-ended (bson_strfreev); NULL
 * and error filled when the database cannot be read. */
char **serve__queue_names(serve_t *srv, mongoc_client_t *client, bson_error_t *error);

/* The answer 200 with doc as JSON; a library or driver error as 404, 400 or 503. */
void serve__ok_json(serve_reply_t *reply, const bson_t *doc);
void serve__fail(serve_reply_t *reply, const bson_error_t *error);

/* ---- serve_scan.c -----------------------------------------------------------------------------
 */

/* GET /api/queues/NAME/messages: a page of a listing, or of a bounded search by text. */
void serve__get_messages(mongoq_queue_t *q, serve_arg_fn arg, void *ctx, serve_reply_t *reply);

/* GET /api/queues/NAME/consumers: the consumers seen recently. */
void serve__get_consumers(serve_t *srv, mongoq_queue_t *q, serve_reply_t *reply);

/* ---- serve_actions.c --------------------------------------------------------------------------
 */

/* Runs the action POST path names (token and Origin already checked). */
void serve__api_post(serve_t *srv, const char *path, serve_arg_fn arg, void *ctx,
                     serve_reply_t *reply);

/* ---- serve_sampler.c --------------------------------------------------------------------------
 */

/* Starts and stops the sampler thread. */
bool serve__sampler_start(serve_t *srv);
void serve__sampler_stop(serve_t *srv);

/* Appends "rates" ({enqueued, acked, failed} per second over the last 10 s, or null) and
 * "samples" (those of the last `seconds`, as parallel arrays: t, depths, and the events as
 * per-second rates over each sample's span) of queue name to doc. */
void serve__append_rates(serve_t *srv, const char *name, bson_t *doc);
void serve__append_samples(serve_t *srv, const char *name, size_t seconds, bson_t *doc);

/* The wall clock in ms since the epoch. */
int64_t serve__now_ms(void);

/* A JSON error reply: {"error": message}. */
void serve__error(serve_reply_t *reply, unsigned status, const char *message);

/* ---- generated from assets/ (assets/embed.cmake) --------------------------------------------- */

extern const unsigned char serve_asset_index_html[];
extern const size_t serve_asset_index_html_len;
extern const unsigned char serve_asset_app_js[];
extern const size_t serve_asset_app_js_len;
extern const unsigned char serve_asset_style_css[];
extern const size_t serve_asset_style_css_len;

#endif

/*
 * `mongoq serve`: what its three files share. serve.c is the HTTP glue (libmicrohttpd, routing,
 * the token and Origin checks), serve_api.c the JSON API and the sampler, and the page's assets
 * (assets/) are compiled into the binary by assets/embed.cmake.
 */
#ifndef MONGOQ_CLI_SERVE_H
#define MONGOQ_CLI_SERVE_H

#include <pthread.h>

#include "cli.h"

/* Samples kept per queue: one a second for 10 minutes. */
#define SERVE_RING 600
#define SERVE_MAX_QUEUES 64
#define SERVE_NAME_MAX 128

/* One second of one queue: depth per status, and the change events counted in it. */
typedef struct {
    int64_t at_ms; /* wall clock */
    int64_t ready, delayed, processing, done, dead;
    int64_t enqueued, acked, failed; /* -1: no change stream, no rates */
} serve_sample_t;

typedef struct {
    char name[SERVE_NAME_MAX];
    serve_sample_t ring[SERVE_RING];
    size_t next, count;
} serve_series_t;

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
} serve_t;

/* An answer: HTTP status and a body owned by the reply (bson_free). */
typedef struct {
    unsigned status;
    char *body;
    const char *type;
} serve_reply_t;

/* ---- serve_api.c ---------------------------------------------------------------------------- */

/* Answers GET path (the part after /api) with query arguments read through arg. */
void serve__api_get(serve_t *srv, const char *path, const char *(*arg)(void *, const char *),
                    void *ctx, serve_reply_t *reply);

/* Runs the action POST path names (token and Origin already checked). */
void serve__api_post(serve_t *srv, const char *path, const char *(*arg)(void *, const char *),
                     void *ctx, serve_reply_t *reply);

/* Starts and stops the sampler thread. */
bool serve__sampler_start(serve_t *srv);
void serve__sampler_stop(serve_t *srv);

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

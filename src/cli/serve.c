/*
 * `mongoq serve`: the dashboard's HTTP glue. libmicrohttpd answers on a small pool of threads;
 * each request is routed here to a static asset or to the JSON API (serve_api.c). Safety lives
 * here: loopback unless --listen-any, the Host header checked (a DNS-rebinding page cannot read
 * the API), and actions (POST) only with --allow-actions, the token in X-Mongoq-Token (a header
 * no cross-site form can send) and no Origin but our own.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve.h"

#ifdef MONGOQ_HAVE_MHD
#include <microhttpd.h>

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define THREADS 4

typedef struct {
    serve_t *srv;
    volatile int64_t answered, max;
} serve_run_t;

/* Compares without an early exit, so the time taken says nothing about the token. */
static bool
same_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++) {
        diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    }
    return diff == 0 && lb > 0;
}

static const char *
query_arg(void *ctx, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)ctx, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result
send_reply(struct MHD_Connection *conn, serve_reply_t *reply)
{
    size_t len = reply->body ? strlen(reply->body) : 0;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, reply->body ? reply->body : (char *)"", MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type",
                            reply->type ? reply->type : "application/json; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'");
    enum MHD_Result rc = MHD_queue_response(conn, reply->status, r);
    MHD_destroy_response(r);
    bson_free(reply->body);
    return rc;
}

static bool
static_asset(const char *url, serve_reply_t *reply)
{
    const unsigned char *data = NULL;
    size_t len = 0;
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0) {
        data = serve_asset_index_html, len = serve_asset_index_html_len;
        reply->type = "text/html; charset=utf-8";
    } else if (strcmp(url, "/app.js") == 0) {
        data = serve_asset_app_js, len = serve_asset_app_js_len;
        reply->type = "text/javascript; charset=utf-8";
    } else if (strcmp(url, "/style.css") == 0) {
        data = serve_asset_style_css, len = serve_asset_style_css_len;
        reply->type = "text/css; charset=utf-8";
    }
    if (!data) {
        return false;
    }
    reply->status = 200;
    reply->body = bson_malloc(len + 1);
    memcpy(reply->body, data, len);
    reply->body[len] = '\0';
    return true;
}

/* Whether Origin names this server as the browser reached it: "http://" and the Host header
 * (which is ours: checked before, unless --listen-any). */
static bool
same_origin(struct MHD_Connection *conn, const char *origin)
{
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    return host && strncmp(origin, "http://", 7) == 0 && strcmp(origin + 7, host) == 0;
}

/* Whether a POST may act; fills reply (403) when not. */
static bool
action_allowed(serve_t *srv, struct MHD_Connection *conn, serve_reply_t *reply)
{
    const char *token = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Mongoq-Token");
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (!srv->allow_actions) {
        serve__error(reply, 403, "read-only: start mongoq serve with --allow-actions");
    } else if (!token || !same_secret(token, srv->token)) {
        serve__error(reply, 403, "the header X-Mongoq-Token is missing or wrong");
    } else if (origin && !same_origin(conn, origin)) {
        serve__error(reply, 403, "cross-origin request refused");
    } else {
        return true;
    }
    return false;
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **state)
{
    static int started;
    serve_run_t *run = cls;
    serve_t *srv = run->srv;
    serve_reply_t reply = {0};
    (void)version, (void)upload_data;
    if (!*state) { /* the head: the body (ignored) follows in later calls */
        *state = &started;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    if (!srv->any_host && (!host || strcmp(host, srv->host) != 0)) {
        serve__error(&reply, 421, "unexpected Host header");
    } else if (strncmp(url, "/api/", 5) == 0 && is_get) {
        serve__api_get(srv, url + 4, query_arg, conn, &reply);
    } else if (strncmp(url, "/api/", 5) == 0 && strcmp(method, "POST") == 0) {
        if (action_allowed(srv, conn, &reply)) {
            serve__api_post(srv, url + 4, query_arg, conn, &reply);
        }
        fprintf(stderr, "mongoq serve: action %s%s%s -> %u\n", url,
                query_arg(conn, "id") ? " id=" : "",
                query_arg(conn, "id") ? query_arg(conn, "id") : "", reply.status);
    } else if (!is_get) {
        serve__error(&reply, 405, "method not allowed");
    } else if (!static_asset(url, &reply)) {
        serve__error(&reply, 404, "not found");
    }
    run->answered++;
    return send_reply(conn, &reply);
}

static bool
is_loopback(const struct sockaddr_in *addr)
{
    return (ntohl(addr->sin_addr.s_addr) >> 24) == 127;
}

static void
nap_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

static int
serve_until_stopped(cli_t *cli, serve_t *srv, struct sockaddr_in *addr)
{
    serve_run_t run = {.srv = srv, .max = cli->args.has_count ? cli->args.count : 0};
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, ntohs(addr->sin_port), NULL, NULL,
        on_request, &run, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)THREADS, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
        MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
    if (!d) {
        return cli_fail(cli, CLI_FAILED, "cannot listen on %s", cli->args.listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof ip);
    bson_snprintf(srv->host, sizeof srv->host, "%s:%u", ip, (unsigned)info->port);
    fprintf(cli->out, "listening on http://%s/ (db %s, %s)\n", srv->host, srv->db,
            srv->allow_actions ? "actions allowed with the token" : "read-only");
    fflush(cli->out);
    if (!serve__sampler_start(srv)) {
        MHD_stop_daemon(d);
        return cli_fail(cli, CLI_FAILED, "cannot start the sampler thread");
    }
    while (!cli_stopping() && (run.max == 0 || run.answered < run.max)) {
        nap_ms(50);
    }
    MHD_stop_daemon(d);
    serve__sampler_stop(srv);
    return CLI_OK;
}

int
cli_cmd_serve(cli_t *cli)
{
    const cli_args_t *a = &cli->args;
    struct sockaddr_in addr;
    if (a->npositional > 1 || (a->has_count && a->count < 1)) {
        return cli_fail(cli, CLI_USAGE, "takes no arguments; --count N wants N >= 1");
    }
    if (a->allow_actions && (!a->token || strlen(a->token) < 8)) {
        return cli_fail(cli, CLI_USAGE, "--allow-actions needs --token T (8 characters or more)");
    }
    if (a->token && !a->allow_actions) {
        return cli_fail(cli, CLI_USAGE, "--token is only used with --allow-actions");
    }
    if (!cli_parse_listen(cli, a->listen ? a->listen : DEFAULT_LISTEN, &addr)) {
        return CLI_USAGE;
    }
    if (!is_loopback(&addr) && !a->listen_any) {
        return cli_fail(cli, CLI_USAGE,
                        "%s is not a loopback address: the dashboard shows payloads; give "
                        "--listen-any to serve it there anyway",
                        a->listen);
    }
    if (!cli_connect(cli)) {
        return CLI_FAILED;
    }
    serve_t *srv = bson_malloc0(sizeof *srv);
    srv->cli = cli;
    srv->db = a->db ? a->db : mongoc_uri_get_database(cli->uri);
    srv->db = srv->db && *srv->db ? srv->db : "mongoq";
    srv->allow_actions = a->allow_actions;
    srv->token = a->token ? a->token : "";
    srv->any_host = a->listen_any;
    srv->started_ms = serve__now_ms();
    pthread_mutex_init(&srv->mu, NULL);
    int rc = serve_until_stopped(cli, srv, &addr);
    pthread_mutex_destroy(&srv->mu);
    bson_free(srv);
    return rc;
}

#else /* !MONGOQ_HAVE_MHD */

int
cli_cmd_serve(cli_t *cli)
{
    return cli_fail(cli, CLI_FAILED,
                    "serve is unavailable: this mongoq was built without "
                    "libmicrohttpd (Debian: libmicrohttpd-dev)");
}

#endif

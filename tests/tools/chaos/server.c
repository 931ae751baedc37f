/*
 * The test server: started by the driver with --dbpath in its work folder, killed with SIGKILL
 * and started again on the same port; its failCommand fail point; the driver's own client.
 */
#include "driver.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static bool
parse_port(const char *uri, int *port)
{
    const char *host = strstr(uri, "127.0.0.1:");
    return host && sscanf(host + strlen("127.0.0.1:"), "%d", port) == 1 && *port > 0;
}

/* Spawns the server on d->server_port (0 the first time) and reads its URI. */
static bool
spawn_server(driver_t *d, char *uri, size_t uri_len)
{
    char port[16], name[32];
    snprintf(port, sizeof port, "%d", d->server_port);
    snprintf(name, sizeof name, "server.%d", d->n_restarts);
    char *argv[] = {(char *)d->server_bin, "--port", port, "--dbpath", d->dbpath, NULL};
    int child = procs_spawn(d, CHILD_SERVER, -1, name, argv, NULL);
    if (child < 0) {
        return false;
    }
    d->server_child = child;
    if (!procs_await_line(d, child, 20000, uri, uri_len) || strncmp(uri, "mongodb://", 10) != 0) {
        fprintf(stderr, "chaos: the test server did not start (see %s/%s.err)\n", d->workdir,
                name);
        procs_signal(d, child, SIGKILL);
        procs_wait_exit(d, child, 5000, NULL);
        return false;
    }
    d->children[child].ready = true;
    d->children[child].ready_mono = chaos_mono_ms();
    return true;
}

static bool
first_start(driver_t *d, const char *uri)
{
    if (!parse_port(uri, &d->server_port)) {
        fprintf(stderr, "chaos: no port in the server's URI %s\n", uri);
        return false;
    }
    snprintf(d->direct_uri, sizeof d->direct_uri, "%s%s" CHAOS_URI_TIMEOUTS, uri,
             strchr(uri, '?') ? "&" : "/?");
    char client_uri[600];
    snprintf(client_uri, sizeof client_uri, "%s&serverSelectionTryOnce=false", d->direct_uri);
    d->client = mongoc_client_new(client_uri);
    if (!d->client) {
        return false;
    }
    mongoc_client_set_error_api(d->client, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_set_appname(d->client, "chaos-driver");
    printf("chaos: test server %s (dbpath %s)\n", uri, d->dbpath);
    return true;
}

/* Starts the server (again, on the same port after the first time). A few tries: a port may
 * be slow to come free. */
bool
server_start(driver_t *d)
{
    char uri[256];
    bool ok = false;
    for (int i = 0; i < 3 && !ok; i++) {
        ok = spawn_server(d, uri, sizeof uri);
    }
    if (!ok || (!d->client && !first_start(d, uri))) {
        return false;
    }
    d->server_up = true;
    if (d->n_restarts > 0 && !d->restarts[d->n_restarts - 1].ready) {
        restart_t *r = &d->restarts[d->n_restarts - 1];
        r->ready = true;
        r->ready_mono = chaos_mono_ms();
        r->ready_real = chaos_real_ms();
        for (int i = d->n_events - 1; i >= 0; i--) {
            if (d->events[i].kind == EV_SERVER_DOWN) {
                d->events[i].until_real = r->ready_real;
                break;
            }
        }
    }
    return true;
}

void
server_kill(driver_t *d)
{
    if (!d->server_up || d->n_restarts >= MAX_RESTARTS) {
        return;
    }
    restart_t *r = &d->restarts[d->n_restarts++];
    memset(r, 0, sizeof *r);
    r->kill_mono = chaos_mono_ms();
    r->kill_real = chaos_real_ms();
    procs_signal(d, d->server_child, SIGKILL);
    procs_wait_exit(d, d->server_child, 10000, NULL);
    d->server_up = false;
    driver_event(d, EV_SERVER_DOWN, -1, INT64_MAX);
    driver_end_fail_command(d); /* fail points die with the server */
}

static bool
run_admin(driver_t *d, bson_t *cmd, bson_error_t *error)
{
    bool ok = mongoc_client_command_simple(d->client, "admin", cmd, NULL, NULL, error);
    bson_destroy(cmd);
    return ok;
}

/*
 * failCommand with {times: n} on the listed commands: mode "close" (closeConnection) or
 * "error" (errorCode code). Replaces the fail point set before, as mongod does.
 */
bool
server_fail_command(driver_t *d, const char *const *commands, size_t n, const char *mode,
                    int code, int times)
{
    bson_error_t error;
    bson_t *cmd = BCON_NEW("configureFailPoint", "failCommand", "mode", "{", "times",
                           BCON_INT32(times), "}");
    bson_t data, list;
    char key[16];
    const char *k;
    BSON_APPEND_DOCUMENT_BEGIN(cmd, "data", &data);
    BSON_APPEND_ARRAY_BEGIN(&data, "failCommands", &list);
    for (size_t i = 0; i < n; i++) {
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        BSON_APPEND_UTF8(&list, k, commands[i]);
    }
    bson_append_array_end(&data, &list);
    if (strcmp(mode, "close") == 0) {
        BSON_APPEND_BOOL(&data, "closeConnection", true);
    } else {
        BSON_APPEND_INT32(&data, "errorCode", code);
    }
    bson_append_document_end(cmd, &data);
    if (!run_admin(d, cmd, &error)) {
        printf("chaos: configureFailPoint failed: %s\n", error.message);
        return false;
    }
    return true;
}

bool
server_fail_command_off(driver_t *d)
{
    bson_error_t error;
    bson_t *cmd = BCON_NEW("configureFailPoint", "failCommand", "mode", "off");
    if (!run_admin(d, cmd, &error)) {
        printf("chaos: configureFailPoint off failed: %s\n", error.message);
        return false;
    }
    return true;
}

/* Documents of the queue matching filter_json; -1 on error. */
int64_t
server_count(driver_t *d, const char *filter_json, bson_error_t *error)
{
    bson_t *filter = bson_new_from_json((const uint8_t *)filter_json, -1, error);
    if (!filter) {
        return -1;
    }
    mongoc_collection_t *coll = mongoc_client_get_collection(d->client, CHAOS_DB, CHAOS_COLL);
    int64_t n = mongoc_collection_count_documents(coll, filter, NULL, NULL, NULL, error);
    mongoc_collection_destroy(coll);
    bson_destroy(filter);
    return n;
}

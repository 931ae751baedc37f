/* mongoq-wait-hello URI TIMEOUT_MS: exits 0 once the server at URI answers hello, 1 on timeout. */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s URI TIMEOUT_MS\n", argv[0]);
        return 2;
    }
    mongoc_init();
    int64_t deadline = now_ms() + atoll(argv[2]);
    bson_error_t error = {0};
    bool ok = false;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &error);
    if (uri) {
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 250);
        mongoc_uri_set_option_as_int32(uri, MONGOC_URI_CONNECTTIMEOUTMS, 250);
    }
    while (uri && !ok && now_ms() < deadline) {
        mongoc_client_t *client = mongoc_client_new_from_uri(uri);
        bson_t cmd = BSON_INITIALIZER;
        BSON_APPEND_INT32(&cmd, "hello", 1);
        ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, NULL, &error);
        bson_destroy(&cmd);
        mongoc_client_destroy(client);
    }
    if (!ok) {
        fprintf(stderr, "no hello from %s: %s\n", argv[1], error.message);
    }
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return ok ? 0 : 1;
}

/* Service connections and taking clients from the pool (see service-private.h). */
#include "service-private.h"

#include <string.h>

#include "error-private.h"

mongoc_client_t *
mongoq__pool_pop(mongoc_client_pool_t *pool, bson_error_t *error)
{
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    if (!client) {
        mongoq__error_set(error, MONGOQ_ERROR_NO_CLIENT,
                          "the connection pool gave no client: its wait queue timed out "
                          "(waitQueueTimeoutMS); nothing was sent");
    }
    return client;
}

/* Caps a timeout option of uri at cap (0 or absent means the driver's default, above it). */
static void
cap_timeout(mongoc_uri_t *uri, const char *option, int32_t cap)
{
    int32_t now = mongoc_uri_get_option_as_int32(uri, option, 0);
    if (now <= 0 || now > cap) {
        mongoc_uri_set_option_as_int32(uri, option, cap);
    }
}

static void
name_app(mongoc_uri_t *uri, const char *role)
{
    const char *app = mongoc_uri_get_appname(uri);
    char name[128];
    /* The handshake limits appname to 128 bytes; cut the caller's part, keep ours. */
    bson_snprintf(name, sizeof name, "%.*s%s%s", app ? 100 : 0, app ? app : "", app ? "/" : "",
                  role);
    mongoc_uri_set_appname(uri, name);
}

mongoc_client_t *
mongoq__service_client_new(mongoc_client_pool_t *pool, const char *role, int32_t socket_timeout_ms,
                           bson_error_t *error)
{
    mongoc_client_t *pooled = mongoq__pool_pop(pool, error);
    if (!pooled) {
        return NULL;
    }
    mongoc_uri_t *uri = mongoc_uri_copy(mongoc_client_get_uri(pooled));
    mongoc_client_pool_push(pool, pooled);
    cap_timeout(uri, MONGOC_URI_CONNECTTIMEOUTMS, MONGOQ__SERVICE_CONNECT_TIMEOUT_MS);
    cap_timeout(uri, MONGOC_URI_SOCKETTIMEOUTMS, socket_timeout_ms);
    cap_timeout(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, MONGOQ__SERVICE_CONNECT_TIMEOUT_MS);
    name_app(uri, role);
    mongoc_client_t *client = mongoc_client_new_from_uri_with_error(uri, error);
    mongoc_uri_destroy(uri);
    if (client) {
        mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    }
    return client;
}

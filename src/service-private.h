/*
 * Service connections: the clients mongoq's own background threads (the waker, the reaper) use.
 *
 * They are single-threaded clients made from the pool's URI, not clients popped from the pool:
 *  - the pool is the caller's, sized for the caller's threads; a waker holding a pooled client
 *    for the queue's whole life made a pool of one hang every claim;
 *  - their connect and socket timeouts are capped (MONGOQ__SERVICE_CONNECT_TIMEOUT_MS and the
 *    caller's socket_timeout_ms) and a single-threaded client tries server selection once, so a
 *    background call ends within a second or two whatever the server does (down, or a socket
 *    that hangs), which is what bounds mongoq_queue_destroy. On a hung socket a thread may meet
 *    the timeout twice more as it stops (a change stream resumes once; ending the client sends
 *    endSessions), so a stop takes at most about three socket timeouts.
 * TLS and credentials therefore come from the URI; the pool's programmatic settings (e.g.
 * mongoc_client_pool_set_ssl_opts) are not seen by these connections (queue.h says so).
 */
#ifndef MONGOQ_SERVICE_PRIVATE_H
#define MONGOQ_SERVICE_PRIVATE_H

#include <mongoc/mongoc.h>

/* The longest a service connection waits to connect. */
#define MONGOQ__SERVICE_CONNECT_TIMEOUT_MS 2000

/*
 * A new single-threaded client on the pool's deployment, with timeouts capped as above (socket:
 * socket_timeout_ms) and the application name suffixed with role ("app/mongoq-waker"). Takes
 * one client from the pool briefly to read the URI. NULL + error when the pool gives no client
 * or the URI is refused. The caller destroys it with mongoc_client_destroy.
 */
mongoc_client_t *mongoq__service_client_new(mongoc_client_pool_t *pool, const char *role,
                                            int32_t socket_timeout_ms, bson_error_t *error);

/*
 * Takes a client from the pool: one at once if one is free, otherwise waits as
 * mongoc_client_pool_pop does (until one is pushed, or the pool's waitQueueTimeoutMS). NULL +
 * MONGOQ_ERROR_NO_CLIENT when the wait timed out.
 */
mongoc_client_t *mongoq__pool_pop(mongoc_client_pool_t *pool, bson_error_t *error);

#endif

/*
 * Connections: a listening socket per mongos endpoint on loopback, a thread per client
 * connection reading requests and answering them through the command table (dispatch.c), on its
 * endpoint's clock. Stopping shuts every connection down and waits (bounded) for the threads.
 */
#include "router.h"
#include "wire_frame.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 1024

static int listen_fds[MR_MAX_MONGOS];
static volatile sig_atomic_t stop_requested;
static pthread_mutex_t clients_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t clients_cv = PTHREAD_COND_INITIALIZER;
static int client_fds[MAX_CLIENTS];
static int nclients;
static int64_t next_client_id = 1;

bool
mr_net_stopping(void)
{
    return stop_requested != 0;
}

void
mr_net_request_stop(void)
{
    stop_requested = 1;
}

/* One listening socket per mongos endpoint: the first on --port, the others on free ports. */
bool
mr_net_listen(bson_error_t *error)
{
    char reason[128];
    size_t used = 0;
    for (int m = 0; m < mr_config.nmongos; m++) {
        int want = m == 0 ? mr_config.port : 0;
        if (!mtw_listen(mr_config.bind, want, &listen_fds[m], &mr_config.mongos_port[m], reason,
                        sizeof reason)) {
            return ms_set_error(error, 2, "cannot listen on %s:%d: %s", mr_config.bind, want,
                                reason);
        }
        used += (size_t)snprintf(mr_config.host_port + used, sizeof mr_config.host_port - used,
                                 "%s%s:%d", m ? "," : "", mr_config.bind,
                                 mr_config.mongos_port[m]);
    }
    mr_config.port = mr_config.mongos_port[0];
    return true;
}

static void
client_remove(int fd)
{
    pthread_mutex_lock(&clients_mu);
    for (int k = 0; k < nclients; k++) {
        if (client_fds[k] == fd) {
            client_fds[k] = client_fds[--nclients];
            break;
        }
    }
    pthread_cond_broadcast(&clients_cv);
    pthread_mutex_unlock(&clients_mu);
}

static void *
client_main(void *arg)
{
    mr_client_t *client = arg;
    mr_mongos_set_current(client->mongos);
    /* Bounded by the connection: each pass reads one request, EOF or a stop ends it. */
    while (!mr_net_stopping()) {
        mr_request_t req;
        bson_t reply;
        if (!mr_wire_read_request(client->fd, &req)) {
            mr_request_destroy(&req);
            break;
        }
        mr_dispatch(client, &req.cmd, &reply);
        bool sent = req.more_to_come || mr_wire_send_reply(client->fd, &req, &reply);
        bson_destroy(&reply);
        mr_request_destroy(&req);
        if (!sent) {
            break;
        }
    }
    for (int s = 0; s < MR_MAX_SHARDS; s++) {
        mr_conn_close(&client->shards[s]);
    }
    client_remove(client->fd);
    close(client->fd);
    bson_free(client);
    return NULL;
}

static void
accept_one(int mongos)
{
    int fd = accept(listen_fds[mongos], NULL, NULL);
    if (fd < 0) {
        return;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_mutex_lock(&clients_mu);
    if (nclients == MAX_CLIENTS) {
        pthread_mutex_unlock(&clients_mu);
        close(fd);
        return;
    }
    client_fds[nclients++] = fd;
    mr_client_t *client = bson_malloc0(sizeof *client);
    client->fd = fd;
    client->id = next_client_id++;
    client->mongos = mongos;
    pthread_mutex_unlock(&clients_mu);
    for (int s = 0; s < MR_MAX_SHARDS; s++) {
        client->shards[s].fd = -1;
    }
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, client_main, client) != 0) {
        client_remove(fd);
        close(fd);
        bson_free(client);
    }
    pthread_attr_destroy(&attr);
}

void
mr_net_serve(void)
{
    struct pollfd p[MR_MAX_MONGOS];
    for (int m = 0; m < mr_config.nmongos; m++) {
        p[m] = (struct pollfd){.fd = listen_fds[m], .events = POLLIN};
    }
    /* Bounded by the stop flag, checked every 200 ms. */
    while (!mr_net_stopping()) {
        if (poll(p, (nfds_t)mr_config.nmongos, 200) <= 0) {
            continue;
        }
        for (int m = 0; m < mr_config.nmongos; m++) {
            if (p[m].revents & POLLIN) {
                accept_one(m);
            }
        }
    }
    for (int m = 0; m < mr_config.nmongos; m++) {
        close(listen_fds[m]);
        listen_fds[m] = -1;
    }
}

void
mr_net_close_clients(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&clients_mu);
    for (int k = 0; k < nclients; k++) {
        shutdown(client_fds[k], SHUT_RDWR);
    }
    /* Bounded: five seconds at most for the connection threads to finish. */
    while (nclients > 0 && pthread_cond_timedwait(&clients_cv, &clients_mu, &until) == 0) {
    }
    pthread_mutex_unlock(&clients_mu);
}

/*
 * The fault table: one row per fault kind, with its name in the control protocol and what it
 * does to the request a rule matched. To add a fault: a value in mongoq_fault_kind_t
 * (faultproxy.h), an apply function here, a row in fault_table. conn.c calls the row's apply
 * with the matched request at conn->up.ready, undecided; apply decides its fate.
 */
#include "faultproxy-private.h"

#include <string.h>

/* Forward the request; its reply is read and discarded (conn.c), then the pair is closed. */
static void
apply_drop_reply(mongoq_faultproxy_t *proxy, fp_conn_t *conn, const fp_msg_t *msg,
                 const fp_hit_t *hit)
{
    (void)hit;
    fp_conn_forward_request(proxy, conn, msg);
    /* Later requests on this connection are never forwarded: the client is about to lose it. */
    conn->up.len = conn->up.ready;
    conn->dropping = true;
    conn->drop_reply_to = msg->header.request_id;
    conn->drop_expects_no_reply = (msg->flags & FP_MSG_MORE_TO_COME) != 0;
    conn->drop_deadline_ms = fp_now_ms() + proxy->drop_reply_wait_ms;
}

static void
apply_drop_request(mongoq_faultproxy_t *proxy, fp_conn_t *conn, const fp_msg_t *msg,
                   const fp_hit_t *hit)
{
    (void)msg;
    (void)hit;
    fp_count(proxy, &proxy->stats.requests_dropped, 1);
    fp_conn_close(proxy, conn, FP_CLOSE_BY_PROXY);
}

/* Leave the request undecided; conn.c forwards nothing more until the hang ends. */
static void
apply_hang(mongoq_faultproxy_t *proxy, fp_conn_t *conn, const fp_msg_t *msg, const fp_hit_t *hit)
{
    (void)msg;
    fp_count(proxy, &proxy->stats.requests_held, 1);
    conn->held = true;
    conn->held_until_ms = hit->hang_ms > 0 ? fp_now_ms() + hit->hang_ms : INT64_MAX;
}

static const fp_fault_def_t fault_table[] = {
    {MONGOQ_FAULT_DROP_REPLY, "drop-reply", false, apply_drop_reply},
    {MONGOQ_FAULT_DROP_REQUEST, "drop-request", false, apply_drop_request},
    {MONGOQ_FAULT_HANG, "hang", true, apply_hang},
};

#define N_FAULTS (sizeof fault_table / sizeof fault_table[0])

const fp_fault_def_t *
fp_fault_at(size_t i)
{
    return i < N_FAULTS ? &fault_table[i] : NULL;
}

const fp_fault_def_t *
fp_fault_by_kind(mongoq_fault_kind_t kind)
{
    for (size_t i = 0; i < N_FAULTS; i++) {
        if (fault_table[i].kind == kind) {
            return &fault_table[i];
        }
    }
    return NULL;
}

const fp_fault_def_t *
fp_fault_by_name(const char *name)
{
    for (size_t i = 0; i < N_FAULTS; i++) {
        if (strcmp(fault_table[i].name, name) == 0) {
            return &fault_table[i];
        }
    }
    return NULL;
}

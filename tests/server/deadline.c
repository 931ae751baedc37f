/*
 * maxTimeMS: a command's deadline, as mongod's OperationContext keeps it (the manual:
 * reference/method/cursor.maxTimeMS and the maxTimeMS option of each command). dispatch.c starts
 * it before the handler runs and ends it after; the scans (query_scan.c) check it every
 * CHECK_EVERY documents they examine, as mongod checks for interrupt when its plan yields, and
 * fail the command with MaxTimeMSExpired 50 "operation exceeded time limit". The
 * maxTimeAlwaysTimeOut fail point (operation_context.cpp) fails a command that has a deadline at
 * its first check, here when the deadline starts.
 *
 * The deadline belongs to the connection's thread (one command at a time per connection). A
 * cursor's query runs whole when the cursor opens, so its getMores never scan: their maxTimeMS
 * is an await time (change streams, cursor.c), never a deadline.
 */
#include "server-private.h"

#include <string.h>
#include <time.h>

static _Thread_local int64_t deadline_ms; /* monotonic; 0: none */

int64_t
ms_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
expired(bson_error_t *error)
{
    return ms_set_error(error, MS_ERR_MAX_TIME_MS_EXPIRED, "operation exceeded time limit");
}

bool
ms_deadline_begin(const ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    deadline_ms = 0;
    if (strcmp(c->name, "getMore") == 0 || !bson_iter_init_find(&it, c->cmd, "maxTimeMS") ||
        !BSON_ITER_HOLDS_NUMBER(&it) || bson_iter_as_int64(&it) <= 0) {
        return true;
    }
    deadline_ms = ms_mono_ms() + bson_iter_as_int64(&it);
    ms_failpoint_hit_t hit;
    if (ms_failpoint_check(MS_FP_MAX_TIME_ALWAYS_TIME_OUT, c->command, c->conn, NULL, &hit)) {
        ms_failpoint_hit_destroy(&hit);
        deadline_ms = 0;
        return expired(error);
    }
    return true;
}

void
ms_deadline_end(void)
{
    deadline_ms = 0;
}

bool
ms_deadline_check(bson_error_t *error)
{
    if (deadline_ms == 0 || ms_mono_ms() < deadline_ms) {
        return true;
    }
    return expired(error);
}

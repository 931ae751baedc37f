/*
 * mongoq-test-server: internals shared by oplog.c, journal.c and the change stream files
 * (changestream*.c).
 *
 * A committed op is kept as one BSON record, the same bytes in the journal and in the history:
 *   {ts: Timestamp, wall: Date, op: int32 (ms_op_type_t), db: string, coll?: string,
 *    key?: doc, doc?: doc, upd?: doc, spec?: doc, lsid?: doc, txn?: int64}
 */
#ifndef MS_OPLOG_PRIVATE_H
#define MS_OPLOG_PRIVATE_H

#include "oplog.h"

/* A cluster time as one ordered integer (t << 32 | i): the position of an op in the history. */
typedef uint64_t ms_pos_t;

static inline ms_pos_t
ms__pos(ms_optime_t ts)
{
    return ((uint64_t)ts.t << 32) | ts.i;
}

static inline ms_optime_t
ms__optime(ms_pos_t pos)
{
    ms_optime_t ts = {(uint32_t)(pos >> 32), (uint32_t)(pos & 0xffffffffu)};
    return ts;
}

/* A record seen as an ms_op_t; the pointers borrow from the record. */
typedef struct {
    ms_op_t op;
    ms_optime_t ts;
    int64_t wall_ms;
    bson_t key, doc, upd, spec, lsid, pre; /* static views; never destroyed */
} ms__opview_t;

/* Parses a record. Returns false (and fills error) for a malformed one. */
bool ms__opview_init(ms__opview_t *v, const bson_t *rec, bson_error_t *error);

/* An entry copied out of the history. */
typedef struct {
    ms_pos_t pos;
    bson_t *rec; /* owned by the reader: bson_destroy */
} ms__entry_t;

/* What a reader learns about the history along with the entries, all read under one lock. */
typedef struct {
    ms_pos_t floor;      /* positions below this are no longer (or never were) in the history */
    ms_pos_t latest;     /* newest committed position; 0 when nothing was committed */
    uint64_t commit_gen; /* bumped by every commit */
    uint64_t wake_gen;   /* bumped by ms_changestream_wake_all */
} ms__oplog_state_t;

/* Copies up to max entries with pos >= from, in order. Returns how many. */
size_t ms__oplog_read(ms_pos_t from, ms__entry_t *out, size_t max, ms__oplog_state_t *state);

/* Whether an entry with exactly this position is in the history. */
bool ms__oplog_has(ms_pos_t pos);

/*
 * Waits until a commit or a wake_all changes the generations in *seen, or until deadline_ms
 * (ms__mono_ms clock) passes. Updates *seen. Never holds any lock but the oplog's own.
 * Returns true when the waiter must answer now: a wake_all came, or the server shuts down.
 */
bool ms__oplog_wait(ms__oplog_state_t *seen, int64_t deadline_ms);

/* Milliseconds on the monotonic clock. */
int64_t ms__mono_ms(void);

/* ---- journal.c --------------------------------------------------------------------------- */

typedef bool (*ms__journal_record_cb)(const bson_t *rec, void *ctx, bson_error_t *error);

/*
 * Opens (creating) the journal in dbpath, locks it against a second server, and calls cb for
 * every complete record in order. A trailing partial record (a crash mid-write) is cut off.
 */
bool ms__journal_open(const char *dbpath, ms__journal_record_cb cb, void *ctx, bson_error_t *error);

/* Appends bytes with write(); on failure the file is cut back to where it was. */
bool ms__journal_append(const uint8_t *data, size_t len, bson_error_t *error);

/* Whether a journal is open. */
bool ms__journal_is_open(void);

void ms__journal_close(void);

#endif

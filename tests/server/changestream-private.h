/*
 * mongoq-test-server: what the change stream files share: changestream.c (opening, batches,
 * getMore), changestream_parse.c (the aggregate command), changestream_event.c (events from
 * history entries) and resume_token.c.
 */
#ifndef MS_CHANGESTREAM_PRIVATE_H
#define MS_CHANGESTREAM_PRIVATE_H

#include "lang.h"
#include "oplog-private.h"

typedef enum { FULL_DEFAULT, FULL_UPDATE_LOOKUP, FULL_WHEN_AVAILABLE, FULL_REQUIRED } ms_cs_full_t;
typedef enum { BEFORE_OFF, BEFORE_WHEN_AVAILABLE, BEFORE_REQUIRED } ms_cs_before_t;
typedef enum { TOKEN_HWM = 0x00, TOKEN_EVENT = 0x80, TOKEN_INVALIDATE = 0x81 } ms_token_kind_t;
typedef enum {
    EV_DOC, /* insert, update, replace, delete */
    EV_DROP,
    EV_RENAME,
    EV_DROP_DATABASE,
    EV_INVALIDATE,
    EV_EXPANDED /* create, createIndexes, dropIndexes (showExpandedEvents) */
} ms_cs_event_t;

struct ms_changestream_t {
    char *db;
    char *coll;   /* NULL: a whole-database (or whole-cluster) stream */
    bool cluster; /* allChangesForCluster */
    char *ns;     /* the cursor's namespace in replies */
    int64_t cursor_id;
    ms_cs_full_t full;
    ms_cs_before_t before;
    bool expanded;
    bson_t *stages; /* the stages after $changeStream, as an array (a pointer: heap bson_t
                       are under-aligned for embedding) */
    bool has_stages;
    ms_pos_t next;         /* the first position not yet fully processed */
    bool next_partly_done; /* the entry at `next` gave its event; only its invalidate is left */
};

/* The $changeStream options that choose where a stream starts. */
typedef struct {
    bool has_token;
    bool start_after;
    ms_pos_t token_pos;
    ms_token_kind_t token_kind;
    bool has_time;
    ms_pos_t time_pos;
} ms_cs_start_t;

/* ---- resume tokens (resume_token.c) ------------------------------------------------------- */

/* Appends _data for a token at pos of kind to out. */
void
ms__token_build(bson_t *out, ms_pos_t pos, ms_token_kind_t kind);
/* Appends {_data: ...} as parent.key. */
void
ms__token_append(bson_t *parent, const char *key, ms_pos_t pos, ms_token_kind_t kind);
/* Reads the token at it ($changeStream.field), failing as mongod does on a malformed one. */
bool
ms__token_parse(bson_iter_t *it, const char *field, ms_pos_t *pos, ms_token_kind_t *kind,
                bson_error_t *error);

/* ---- the aggregate command (changestream_parse.c) ----------------------------------------- */

/* Reads the $changeStream stage into cs and start, and keeps the stages after it. */
bool
ms__changestream_parse(const bson_t *cmd, ms_changestream_t *cs, ms_cs_start_t *start,
                       bson_error_t *error);
/* Refuses namespaces mongod does not watch (admin, config, local, system collections). */
bool
ms__changestream_check_namespace(const ms_changestream_t *cs, bson_error_t *error);
/* admin, config and local: never watched, even by a whole-cluster stream. */
bool
ms__changestream_internal_db(const char *db);
/* A batchSize: a non-negative number. */
bool
ms__changestream_batch_size(bson_iter_t *it, int64_t *out, bson_error_t *error);

/* ---- events (changestream_event.c) ------------------------------------------------------- */

/* The events op gives cs, in order (0, 1 or 2: a drop's event and its invalidate). */
int
ms__changestream_entry_events(const ms_changestream_t *cs, const ms_op_t *op,
                              ms_cs_event_t kinds[2]);
/* The event of kind for the op v (ev initialised by the callee). */
bool
ms__changestream_build_event(const ms_changestream_t *cs, const ms__opview_t *v,
                             ms_cs_event_t kind, bson_t *ev, bson_error_t *error);
/* Runs the user's stages on ev, which may change it; *keep false when they dropped it. */
bool
ms__changestream_apply_stages(const ms_changestream_t *cs, bson_t *ev, bool *keep,
                              bson_error_t *error);

#endif

/*
 * Shared by write_plan.c (which shards each statement of a write goes to, and mongod's rules for
 * single-document writes) and cmd_write.c (sending the statements and merging the replies).
 */
#ifndef MR_WRITE_PRIVATE_H
#define MR_WRITE_PRIVATE_H

#include "router.h"

typedef enum { MR_W_INSERT, MR_W_UPDATE, MR_W_DELETE } mr_write_kind_t;

typedef struct {
    mr_write_kind_t kind;
    const char *array; /* "documents", "updates", "deletes" */
    char *db;
    char *ns;
    size_t n;
    bson_t **stmts;   /* copies; a shard-key-less write's q is narrowed to the found _id */
    uint32_t *masks;  /* the shards each statement goes to */
    bson_t **errors;  /* a statement refused by the router: its writeError {code, errmsg} */
    bool ordered;
    bool retryable; /* txnNumber outside a transaction: one command per shard */
    bool rewritten; /* a statement was narrowed (shard-key-less write) */
} mr_write_t;

/* Reads the statements and plans their shards (errors per statement in w->errors). */
bool mr__write_plan(mr_cmd_t *c, mr_write_t *w, bson_error_t *error);
void mr__write_destroy(mr_write_t *w);

/* Shard-key-less single writes (7.1, --shardkeyless-writes): the _id of the first document
 * filter matches (in sort order when sort is given) on the shards in mask, and its shard.
 * false with *found unset when none matches. */
bool mr__find_one_id(mr_cmd_t *c, const char *coll, uint32_t mask, const bson_t *filter,
                     const bson_t *sort, bson_value_t *id, int *shard, bool *found,
                     bson_error_t *error);

/* A sub-document of doc (borrowed view), or false. */
bool mr__get_doc(const bson_t *doc, const char *key, bson_t *out);

#endif

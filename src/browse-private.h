/*
 * A browse listing's internals, shared by browse.c (options, tokens, the CLAIM order's pages)
 * and browse_range.c (the pages of the orders whose index has no _id: RUN_AT and LEASE).
 */
#ifndef MONGOQ_BROWSE_PRIVATE_H
#define MONGOQ_BROWSE_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "mongoq/browse.h"
#include "mongoq/limits.h"

#define MONGOQ__BROWSE_MAX_KEYS 4

typedef struct {
    const char *field;
    int32_t direction;
    bson_type_t type; /* what the field holds in a message */
} mongoq__sort_key_t;

struct mongoq_browse_t {
    mongoq_queue_t *queue;     /* borrowed */
    mongoq_browse_opts_t opts; /* strings point into the copies below */
    char *status, *dedup_key, *claimed_by, *error_contains;
    mongoq__sort_key_t keys[MONGOQ__BROWSE_MAX_KEYS]; /* [status,] the order's fields, _id */
    size_t nkeys;
    bson_t last; /* the sort key of the last document read ("0", "1", ...); empty: start */
    bool has_last;
    bson_t *page[MONGOQ_MAX_BATCH]; /* documents read and not yet returned */
    size_t page_len, page_pos;
    bool ended;
    char *token;          /* of the last message returned */
    bson_t returned_last; /* its sort key */
};

/* ---- browse.c ------------------------------------------------------------------------------ */

/* The filters that do not depend on the position: partitions, status, dedup_key, claimed_by,
 * last_error. */
void
mongoq__browse_base_filter(const mongoq_browse_t *b, bson_t *filter);

/* The last key's value for sort field i. */
bool
mongoq__browse_last_value(const mongoq_browse_t *b, size_t i, bson_iter_t *it);

/* Runs the page query of `level` (browse.c's top comment), appending what it finds. */
bool
mongoq__browse_read_level(mongoq_browse_t *b, mongoc_collection_t *coll, size_t level,
                          int64_t now, bson_error_t *error);

/* Runs a find with filter and opts, appending the documents to the page until it is full. */
bool
mongoq__browse_find(mongoq_browse_t *b, mongoc_collection_t *coll, const bson_t *filter,
                    const bson_t *opts, bson_error_t *error);

/* ---- browse_range.c ------------------------------------------------------------------------ */

/* Reads the next page of a RUN_AT or LEASE listing from the last key (browse_range.c's top
 * comment); the page is left as it is read, the caller sets the last key. */
bool
mongoq__browse_read_by_value(mongoq_browse_t *b, mongoc_collection_t *coll, int64_t now,
                             bson_error_t *error);

#endif /* MONGOQ_BROWSE_PRIVATE_H */

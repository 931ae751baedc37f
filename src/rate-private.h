/* The rate limit's token bucket (rate.c; docs/design.md, Rate limits). */
#ifndef MONGOQ_RATE_PRIVATE_H
#define MONGOQ_RATE_PRIVATE_H

#include "queue-private.h"

/*
 * Takes up to `want` tokens (one findAndModify on the server's clock): *granted of them (0 when
 * the bucket holds less than one), and when none, *wait_ms until the next token is due.
 */
bool mongoq__rate_take(mongoq_queue_t *queue, int64_t want, int64_t *granted, int64_t *wait_ms,
                       bson_error_t *error);

/* Gives n unused tokens back (capped at the burst); best effort, logged on failure. */
void mongoq__rate_give_back(mongoq_queue_t *queue, int64_t n);

#endif

/*
 * Pausing a queue: one control document in the queue's own collection, {_id: "mongoq.control",
 * paused: bool, updated_at}, whose _id (a string) no message can have (messages have ObjectIds).
 * Every process keeps the state it last saw in its counters (pause_state), so a claim asks the
 * server nothing while the state is known: the waker's change stream carries the control
 * document's changes (and the state is read again whenever a stream opens), the poller reads it
 * with each poll, and a claim reads it itself only while nothing has been seen yet.
 */
#ifndef MONGOQ_PAUSE_PRIVATE_H
#define MONGOQ_PAUSE_PRIVATE_H

#include <stdbool.h>

#include <mongoc/mongoc.h>

#include "counters-private.h"

#define MONGOQ__CONTROL_ID "mongoq.control"

/* pause_state values. */
enum { MONGOQ__PAUSE_UNKNOWN = 0, MONGOQ__PAUSE_RUNNING = 1, MONGOQ__PAUSE_PAUSED = 2 };

/* Reads the control document on coll: *paused (false when there is none). */
bool mongoq__pause_read(mongoc_collection_t *coll, bool *paused, bson_error_t *error);

/* Records a state seen on the server; true when it went from paused to running (wake all). */
bool mongoq__pause_record(mongoq__counters_t *counters, bool paused);

/* Records a state this process read or wrote, waking its waiters on a resume. */
void mongoq__pause_seen(mongoq_queue_t *queue, bool paused);

/* mongoq__pause_load, which mongoq_queue_new calls, is declared in queue-private.h. */

/* Whether claims must wait: the state last seen, read from the server once while unknown. */
bool mongoq__pause_blocks(mongoq_queue_t *queue);

/* Appends to a change stream's $or the clause for every change of the control document. */
void mongoq__pause_append_stream_clause(bson_t *or, const char *key);

/* Appends to the stream's $project what mongoq__pause_from_event reads. */
void mongoq__pause_append_stream_projection(bson_t *project);

/*
 * Whether event is about the control document; *paused then holds the state it sets (an event
 * that does not set `paused` leaves *paused untouched and returns false).
 */
bool mongoq__pause_from_event(const bson_t *event, bool *paused);

#endif

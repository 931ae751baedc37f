/*
 * What enqueueing one message (producer.c) and many (producer_many.c) share: option
 * normalisation, wake-ups, the collection and command options of a possibly transactional
 * write, and how a duplicate key on a caller-chosen _id is settled.
 */
#ifndef MONGOQ_PRODUCER_PRIVATE_H
#define MONGOQ_PRODUCER_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "mongoq/producer.h"

/* mongod's DuplicateKey. */
#define MONGOQ__DUPLICATE_KEY 11000

/* opts (NULL or any version) into out with every field of the current version. */
void mongoq__enqueue_normalize_opts(const mongoq_enqueue_opts_t *opts, mongoq_enqueue_opts_t *out);

/* After a successful enqueue: wakes local consumers of partition (MONGOQ__ALL_PARTITIONS: every
 * one) now, or when the message becomes due. */
void mongoq__enqueue_wake_for(mongoq_queue_t *queue, int64_t run_at, int64_t now,
                              int32_t partition);

/* The collection to use. With a session, the session's client (libmongoc refuses a session on
 * another client); otherwise one taken from the pool (*client_out, to push back). */
mongoc_collection_t *mongoq__enqueue_collection(mongoq_queue_t *queue,
                                                mongoc_client_session_t *session,
                                                mongoc_client_t **client_out, bson_error_t *error);

/* Command options: the session, and the write concern unless inside a transaction. */
bool mongoq__enqueue_command_opts(mongoq_queue_t *queue, mongoc_client_session_t *session,
                                  bool write, bson_t *opts, bson_error_t *error);

/* Whether a duplicate-key write error names the _id index (keyPattern, or the message). */
bool mongoq__enqueue_duplicate_on_id(const bson_t *write_error);

/* After an insert: the reply goes to opts->reply when the caller asked; everything is
 * released. */
void mongoq__enqueue_end_insert(mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts,
                                mongoc_client_t *client, mongoc_collection_t *coll, bson_t *reply,
                                bson_t *cmd_opts);

/* Whether the message stored under _id `id` is this one (same payload), or gone since. */
bool mongoq__enqueue_same_message_stored(mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts,
                                         const bson_oid_t *id, const bson_t *doc, bool *same,
                                         bson_error_t *error);

/* An insert that met the _id taken: "already queued" (*already) when it is this message, else
 * MONGOQ_ERROR_DUPLICATE (inside a transaction always: the server aborted it). */
bool mongoq__enqueue_settle_dup_id(mongoq_queue_t *queue, const mongoq_enqueue_opts_t *opts,
                                   const bson_oid_t *id, const bson_t *doc, bool *already,
                                   bson_error_t *error);

/* INVALID_ARG when opts->caller_ids is set without the ids (id_out / ids_out). */
bool mongoq__enqueue_check_ids_given(const mongoq_enqueue_opts_t *opts, const void *ids,
                                     bson_error_t *error);

#endif

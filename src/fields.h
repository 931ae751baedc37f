/*
 * The message document: the one file that spells its field names and status strings. Every
 * other file (library, waker, worker) uses these macros, so a rename happens here or nowhere.
 *
 * Field lifecycle (why some fields come and go):
 *   - lease_token, lease_expires_at: present only while a claim holds the message ("processing").
 *     Every claim writes a fresh lease_token (an ObjectId): the fencing token that ack, retry,
 *     fail and extend must match. A done message (ack mode KEEP) gets a token fresh for the
 *     acknowledgement, so ack_many can tell its own acks from lost leases.
 *   - claimed_by: the name of the last claimer; kept afterwards as history.
 *   - dedup_key: present only while the message is unfinished (ready or processing); it is
 *     removed when the message becomes done or dead. The unique dedup index is partial on
 *     {dedup_key: {$exists: true}} rather than {status: {$in: [...]}} because mongod accepts
 *     $in/$or in a partialFilterExpression only from 6.0 with the matching feature
 *     compatibility version, and other MongoDB-compatible servers not at all.
 *   - done_at: set only on done messages (ack mode KEEP); the TTL index removes them.
 *   - errors: the last MONGOQ__MAX_ERRORS failures, oldest first, each {at, error}.
 *   - partition: written at enqueue in queues of more than one partition and never changed (it
 *     is the shard key of a sharded queue, which a multi-document update may not change);
 *     absent in queues of one partition.
 */
#ifndef MONGOQ_FIELDS_H
#define MONGOQ_FIELDS_H

#define MONGOQ__F_ID "_id"
#define MONGOQ__F_PAYLOAD "payload"
#define MONGOQ__F_STATUS "status"
#define MONGOQ__F_PRIORITY "priority"
#define MONGOQ__F_RUN_AT "run_at"
#define MONGOQ__F_ATTEMPTS "attempts"
#define MONGOQ__F_MAX_ATTEMPTS "max_attempts"
#define MONGOQ__F_LEASE_EXPIRES_AT "lease_expires_at"
#define MONGOQ__F_LEASE_TOKEN "lease_token"
#define MONGOQ__F_CLAIMED_BY "claimed_by"
#define MONGOQ__F_ENQUEUED_AT "enqueued_at"
#define MONGOQ__F_UPDATED_AT "updated_at"
#define MONGOQ__F_DONE_AT "done_at"
#define MONGOQ__F_LAST_ERROR "last_error"
#define MONGOQ__F_ERRORS "errors"
#define MONGOQ__F_DEDUP_KEY "dedup_key"
/* int32 0 .. partitions-1; only in queues of more than one partition (partition-private.h). */
#define MONGOQ__F_PARTITION "partition"

/*
 * Message groups (group.c, docs/design.md Groups): present only on grouped messages. group is
 * the caller's group name; group_seq the message's place in its group (1, 2, ... from the
 * group document's seq at enqueue); group_blocking (true) marks a dead message that keeps its
 * group's place (MONGOQ_GROUP_DEAD_BLOCK), absent otherwise.
 */
#define MONGOQ__F_GROUP "group"
#define MONGOQ__F_GROUP_SEQ "group_seq"
#define MONGOQ__F_GROUP_BLOCKING "group_blocking"

/*
 * The group document: one per group with a message admitted or waiting, in the queue's own
 * collection (so it shares its messages' partition, and a transaction over both touches one
 * shard), _id MONGOQ__GROUP_ID_PREFIX + the group's name. It has no status, so no message
 * query, index scan on status or change-stream filter of mongoq ever meets it.
 *   active: messages of the group holding a place (ready or processing, and dead ones with
 *           group_blocking), at most limit; waiting: messages of status waiting; seq: the last
 *           group_seq given; limit: the group_concurrency of its last enqueue.
 */
#define MONGOQ__GROUP_ID_PREFIX "mongoq.group:"
#define MONGOQ__F_G_ACTIVE "active"
#define MONGOQ__F_G_WAITING "waiting"
#define MONGOQ__F_G_SEQ "seq"
#define MONGOQ__F_G_LIMIT "limit"
#define MONGOQ__F_G_NAME "name"
/*
 * admitted: how many messages the group's last write admitted (set by the pipelines of
 * group.c and group_finish.c, read back from the document they return). With a per-group rate
 * limit (group_rate.c), the bucket as a virtual schedule on the server's clock, in ms since the
 * epoch (doubles): rate_tat, when the next admission's token is due ("theoretical arrival
 * time"); rate_base and rate_now, max(previous rate_tat, $$NOW) and $$NOW of the last write that
 * took tokens, from which the due time of each message it admitted is computed.
 */
#define MONGOQ__F_G_ADMITTED "admitted"
#define MONGOQ__F_G_RATE_TAT "rate_tat"
#define MONGOQ__F_G_RATE_BASE "rate_base"
#define MONGOQ__F_G_RATE_NOW "rate_now"

/* The rate limit's token bucket (rate.c): one document, _id MONGOQ__RATE_ID. */
#define MONGOQ__RATE_ID "mongoq.rate"

/* Fields of one entry of `errors`. */
#define MONGOQ__F_ERROR_AT "at"
#define MONGOQ__F_ERROR_TEXT "error"

/* Field paths for aggregation expressions ("$attempts"). */
#define MONGOQ__P(field) "$" field
#define MONGOQ__P_STATUS "$" MONGOQ__F_STATUS
#define MONGOQ__P_RUN_AT "$" MONGOQ__F_RUN_AT
#define MONGOQ__P_ATTEMPTS "$" MONGOQ__F_ATTEMPTS
#define MONGOQ__P_MAX_ATTEMPTS "$" MONGOQ__F_MAX_ATTEMPTS
#define MONGOQ__P_ENQUEUED_AT "$" MONGOQ__F_ENQUEUED_AT
#define MONGOQ__P_LEASE_EXPIRES_AT "$" MONGOQ__F_LEASE_EXPIRES_AT

#define MONGOQ__S_READY "ready"
#define MONGOQ__S_PROCESSING "processing"
#define MONGOQ__S_DONE "done"
#define MONGOQ__S_DEAD "dead"
/* A grouped message not yet admitted by its group (never claimed; group.c promotes it). */
#define MONGOQ__S_WAITING "waiting"

/* How many failures `errors` keeps. */
#define MONGOQ__MAX_ERRORS 5

/* last_error of a message whose lease expired with no attempts left. */
#define MONGOQ__REASON_LEASE_EXPIRED "lease expired"

#endif

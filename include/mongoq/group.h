/*
 * mongoq/group.h - message groups: reading a queue's groups (docs/design.md, Groups).
 *
 * Groups are set up with mongoq_queue_opts_t.group_concurrency and used with
 * mongoq_enqueue_opts_t.group; a claimed message's group is mongoq_message_group(). A group
 * exists while one of its messages holds a place or waits for one.
 *
 * Thread safety: thread-safe on a shared queue.
 */
#ifndef MONGOQ_GROUP_H
#define MONGOQ_GROUP_H

#include "limits.h"
#include "queue.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MONGOQ_GROUP_INFO_VERSION 1

/* One group as mongoq_queue_groups reads it. */
typedef struct {
    uint32_t version;                      /* MONGOQ_GROUP_INFO_VERSION */
    char name[MONGOQ_MAX_GROUP_BYTES + 1]; /* the group, NUL-terminated */
    int64_t active;    /* messages holding a place: ready (admitted), in flight, and dead ones
                          that keep it (MONGOQ_GROUP_DEAD_BLOCK); at most limit */
    int64_t in_flight; /* of those, claimed now (status processing) */
    int64_t waiting;   /* messages waiting for a place, in enqueue order */
    int32_t limit;     /* the group_concurrency of its last enqueue */
    int32_t partition; /* the partition of its messages (0 with one partition) */
} mongoq_group_info_t;

#define MONGOQ_GROUP_INFO_INIT                                                                     \
    {                                                                                              \
        .version = MONGOQ_GROUP_INFO_VERSION                                                       \
    }

/*
 * Initialises info as MONGOQ_GROUP_INFO_INIT does, for the given version (bindings that cannot use
 * the macro): every field zero (its default) and the version set. Returns false, writing nothing,
 * for a version this library does not know (0 or newer than MONGOQ_GROUP_INFO_VERSION). Thread-
 * safe.
 */
MONGOQ_EXPORT bool
mongoq_group_info_init(mongoq_group_info_t *info, uint32_t version);

/*
 * Reads up to max groups (1 to MONGOQ_MAX_BATCH) in name order (bytewise), starting after the
 * group named `after` (NULL: from the first), into out[0 .. *n_out). Every out[i].version must
 * be set (MONGOQ_GROUP_INFO_INIT). One find of the group documents (an _id range: the _id
 * index), then one count per group of its claimed messages (one seek each on the group index).
 * Counts are read one after another, not as one snapshot. Read-only: repeat it freely.
 * INVALID_ARG for max out of range, an unknown version or `after` longer than a group name;
 * driver errors.
 */
MONGOQ_EXPORT bool mongoq_queue_groups(mongoq_queue_t *queue, const char *after,
                                       mongoq_group_info_t *out, size_t max, size_t *n_out,
                                       bson_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MONGOQ_GROUP_H */

/*
 * The _init functions of the versioned structs a caller fills (option structs) or lends for
 * mongoq to fill (mongoq_group_info_t, mongoq_scheduler_pass_t), for bindings that cannot use
 * the _INIT macros (libgit2's git_clone_options_init). mongoq_stats_init and
 * mongoq_counters_init are in counters.c.
 *
 * Each accepts 0 < version <= its CURRENT and writes only as far as that version's fields reach:
 * a program built against an older header has a shorter struct. Every field's zero is its
 * default, so the struct is zeroed and its version set, as the _INIT macro does.
 */
#include <stddef.h>
#include <string.h>

#include <bson/bson.h>

#include "mongoq/mongoq.h"
#include "struct_init-private.h"

/*
 * How many bytes a struct of `version` has: all of it (size) at `current`; for an older
 * version, where the fields of the next one begin (ends[version - 1]). 0 for a version this
 * library does not know, or an older one ends[] does not list (a struct that gets a new version
 * adds its previous version's end to ends[]; the unit test of every version catches a missing
 * one).
 */
static size_t
size_of_version(uint32_t version, uint32_t current, size_t size, const size_t *ends, size_t n_ends)
{
    if (version == current) {
        return size;
    }
    if (version == 0 || version > current || version > n_ends) {
        return 0;
    }
    return ends[version - 1];
}

/* Zeroes the first `size` bytes of s and sets *version_field; false when size is 0. */
static bool
init_fields(void *s, uint32_t *version_field, uint32_t version, size_t size)
{
    if (size == 0) {
        return false;
    }
    memset(s, 0, size);
    *version_field = version;
    return true;
}

/* For a struct of one version so far (no ends). */
#define INIT_ONE_VERSION(s, version, current)                                                      \
    init_fields((s), &(s)->version, (version),                                                     \
                size_of_version((version), (current), sizeof *(s), NULL, 0))

/* For a struct with older versions, whose ends are listed in the array `ends`. */
#define INIT_VERSIONS(s, version, current, ends)                                                   \
    init_fields((s), &(s)->version, (version),                                                     \
                size_of_version((version), (current), sizeof *(s), (ends),                         \
                                sizeof(ends) / sizeof(ends)[0]))

bool
mongoq_browse_opts_init(mongoq_browse_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return INIT_ONE_VERSION(opts, version, MONGOQ_BROWSE_OPTS_VERSION);
}

bool
mongoq_check_opts_init(mongoq_check_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return INIT_ONE_VERSION(opts, version, MONGOQ_CHECK_OPTS_VERSION);
}

bool
mongoq_consumer_opts_init(mongoq_consumer_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return INIT_ONE_VERSION(opts, version, MONGOQ_CONSUMER_OPTS_VERSION);
}

bool
mongoq_metrics_opts_init(mongoq_metrics_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return INIT_ONE_VERSION(opts, version, MONGOQ_METRICS_OPTS_VERSION);
}

/*
 * Where each older version ends: 2 added hook, 3 partitions, 4 groups and rate limits, 5
 * per-group rate limits. MONGOQ_QUEUE_OPTS_VERSION is the whole struct whatever its number; a
 * new version adds its predecessor's end here.
 */
static const size_t queue_opts_ends[] = {offsetof(mongoq_queue_opts_t, hook),
                                         offsetof(mongoq_queue_opts_t, partitions),
                                         offsetof(mongoq_queue_opts_t, group_concurrency),
                                         offsetof(mongoq_queue_opts_t, group_rate_limit)};

size_t
mongoq__queue_opts_size(uint32_t version)
{
    return size_of_version(version, MONGOQ_QUEUE_OPTS_VERSION, sizeof(mongoq_queue_opts_t),
                           queue_opts_ends, sizeof queue_opts_ends / sizeof queue_opts_ends[0]);
}

bool
mongoq_queue_opts_init(mongoq_queue_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return init_fields(opts, &opts->version, version, mongoq__queue_opts_size(version));
}

/* 2 added caller_ids, 3 group. */
static const size_t enqueue_opts_ends[] = {offsetof(mongoq_enqueue_opts_t, caller_ids),
                                           offsetof(mongoq_enqueue_opts_t, group)};

size_t
mongoq__enqueue_opts_size(uint32_t version)
{
    return size_of_version(version, MONGOQ_ENQUEUE_OPTS_VERSION, sizeof(mongoq_enqueue_opts_t),
                           enqueue_opts_ends,
                           sizeof enqueue_opts_ends / sizeof enqueue_opts_ends[0]);
}

bool
mongoq_enqueue_opts_init(mongoq_enqueue_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return init_fields(opts, &opts->version, version, mongoq__enqueue_opts_size(version));
}

bool
mongoq_schedule_opts_init(mongoq_schedule_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return INIT_ONE_VERSION(opts, version, MONGOQ_SCHEDULE_OPTS_VERSION);
}

bool
mongoq_scheduler_opts_init(mongoq_scheduler_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return INIT_ONE_VERSION(opts, version, MONGOQ_SCHEDULER_OPTS_VERSION);
}

bool
mongoq_scheduler_pass_init(mongoq_scheduler_pass_t *pass, uint32_t version)
{
    BSON_ASSERT_PARAM(pass);
    return INIT_ONE_VERSION(pass, version, MONGOQ_SCHEDULER_PASS_VERSION);
}

bool
mongoq_shard_opts_init(mongoq_shard_opts_t *opts, uint32_t version)
{
    BSON_ASSERT_PARAM(opts);
    return INIT_ONE_VERSION(opts, version, MONGOQ_SHARD_OPTS_VERSION);
}

bool
mongoq_worker_opts_init(mongoq_worker_opts_t *opts, uint32_t version)
{
    /* 2 added on_outcome, 3 scheduler. */
    static const size_t ends[] = {offsetof(mongoq_worker_opts_t, on_outcome),
                                  offsetof(mongoq_worker_opts_t, scheduler)};
    BSON_ASSERT_PARAM(opts);
    return INIT_VERSIONS(opts, version, MONGOQ_WORKER_OPTS_VERSION, ends);
}

bool
mongoq_group_info_init(mongoq_group_info_t *info, uint32_t version)
{
    BSON_ASSERT_PARAM(info);
    return INIT_ONE_VERSION(info, version, MONGOQ_GROUP_INFO_VERSION);
}

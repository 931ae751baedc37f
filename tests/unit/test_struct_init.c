/*
 * The _init functions of the versioned structs (src/struct_init.c, counters.c), one table row
 * each: every version 1 .. CURRENT is accepted and gets the _INIT macro's struct (every field
 * zero, the version set), 0 and CURRENT + 1 are refused with nothing written, and an older
 * version writes nothing past its own fields.
 */
#include <criterion/criterion.h>
#include <stddef.h>
#include <string.h>

#include <mongoq/mongoq.h>

#define FILL 0xAB

typedef bool (*init_fn)(void *s, uint32_t version);

typedef struct {
    const char *name;
    init_fn init;
    uint32_t current;
    size_t size;
} init_row_t;

#define WRAP(fn, T)                                                                                \
    static bool fn##_any(void *s, uint32_t version)                                                \
    {                                                                                              \
        return fn((T *)s, version);                                                                \
    }
#define ROW(fn, T, version)                                                                        \
    {                                                                                              \
        .name = #fn, .init = fn##_any, .current = (version), .size = sizeof(T)                     \
    }

WRAP(mongoq_queue_opts_init, mongoq_queue_opts_t)
WRAP(mongoq_browse_opts_init, mongoq_browse_opts_t)
WRAP(mongoq_check_opts_init, mongoq_check_opts_t)
WRAP(mongoq_consumer_opts_init, mongoq_consumer_opts_t)
WRAP(mongoq_metrics_opts_init, mongoq_metrics_opts_t)
WRAP(mongoq_enqueue_opts_init, mongoq_enqueue_opts_t)
WRAP(mongoq_schedule_opts_init, mongoq_schedule_opts_t)
WRAP(mongoq_scheduler_opts_init, mongoq_scheduler_opts_t)
WRAP(mongoq_scheduler_pass_init, mongoq_scheduler_pass_t)
WRAP(mongoq_shard_opts_init, mongoq_shard_opts_t)
WRAP(mongoq_worker_opts_init, mongoq_worker_opts_t)
WRAP(mongoq_group_info_init, mongoq_group_info_t)
WRAP(mongoq_stats_init, mongoq_stats_t)
WRAP(mongoq_counters_init, mongoq_counters_t)

static const init_row_t rows[] = {
    ROW(mongoq_queue_opts_init, mongoq_queue_opts_t, MONGOQ_QUEUE_OPTS_VERSION),
    ROW(mongoq_browse_opts_init, mongoq_browse_opts_t, MONGOQ_BROWSE_OPTS_VERSION),
    ROW(mongoq_check_opts_init, mongoq_check_opts_t, MONGOQ_CHECK_OPTS_VERSION),
    ROW(mongoq_consumer_opts_init, mongoq_consumer_opts_t, MONGOQ_CONSUMER_OPTS_VERSION),
    ROW(mongoq_metrics_opts_init, mongoq_metrics_opts_t, MONGOQ_METRICS_OPTS_VERSION),
    ROW(mongoq_enqueue_opts_init, mongoq_enqueue_opts_t, MONGOQ_ENQUEUE_OPTS_VERSION),
    ROW(mongoq_schedule_opts_init, mongoq_schedule_opts_t, MONGOQ_SCHEDULE_OPTS_VERSION),
    ROW(mongoq_scheduler_opts_init, mongoq_scheduler_opts_t, MONGOQ_SCHEDULER_OPTS_VERSION),
    ROW(mongoq_scheduler_pass_init, mongoq_scheduler_pass_t, MONGOQ_SCHEDULER_PASS_VERSION),
    ROW(mongoq_shard_opts_init, mongoq_shard_opts_t, MONGOQ_SHARD_OPTS_VERSION),
    ROW(mongoq_worker_opts_init, mongoq_worker_opts_t, MONGOQ_WORKER_OPTS_VERSION),
    ROW(mongoq_group_info_init, mongoq_group_info_t, MONGOQ_GROUP_INFO_VERSION),
    ROW(mongoq_stats_init, mongoq_stats_t, MONGOQ_STATS_VERSION),
    ROW(mongoq_counters_init, mongoq_counters_t, MONGOQ_COUNTERS_VERSION),
};

/* Room for any of the structs, aligned for each, filled with FILL before every call. */
typedef union {
    max_align_t align;
    unsigned char bytes[4096];
} buf_t;

static uint32_t
version_of(const buf_t *buf)
{
    uint32_t version;
    memcpy(&version, buf->bytes, sizeof version); /* every struct begins with its version */
    return version;
}

/* bytes[from .. to) all equal `value`. */
static bool
all_bytes(const buf_t *buf, size_t from, size_t to, unsigned char value)
{
    for (size_t i = from; i < to; i++) {
        if (buf->bytes[i] != value) {
            return false;
        }
    }
    return true;
}

Test(struct_init, every_known_version_is_accepted)
{
    buf_t buf;
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        const init_row_t *row = &rows[r];
        cr_assert_leq(row->size, sizeof buf.bytes, "%s: the buffer is too small", row->name);
        for (uint32_t v = 1; v <= row->current; v++) {
            memset(&buf, FILL, sizeof buf);
            cr_assert(row->init(&buf, v), "%s accepts version %u", row->name, v);
            cr_assert_eq(version_of(&buf), v, "%s sets version %u", row->name, v);
            cr_assert(all_bytes(&buf, row->size, sizeof buf.bytes, FILL),
                      "%s writes nothing past the struct", row->name);
        }
        /* The current version: the _INIT macro's struct, every field zero. */
        cr_assert(all_bytes(&buf, sizeof(uint32_t), row->size, 0), "%s zeroes every field",
                  row->name);
    }
}

Test(struct_init, zero_and_a_newer_version_are_refused)
{
    buf_t buf;
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        const init_row_t *row = &rows[r];
        uint32_t refused[] = {0, row->current + 1};
        for (size_t i = 0; i < 2; i++) {
            memset(&buf, FILL, sizeof buf);
            cr_assert_not(row->init(&buf, refused[i]), "%s refuses version %u", row->name,
                          refused[i]);
            cr_assert(all_bytes(&buf, 0, sizeof buf.bytes, FILL), "%s writes nothing", row->name);
        }
    }
}

/* A program built against an older header has a shorter struct: nothing past it is written. */
static void
assert_stops_at(init_fn init, const char *name, uint32_t version, size_t end)
{
    buf_t buf;
    memset(&buf, FILL, sizeof buf);
    cr_assert(init(&buf, version), "%s accepts version %u", name, version);
    cr_assert(all_bytes(&buf, sizeof(uint32_t), end, 0), "%s v%u zeroes its fields", name, version);
    cr_assert(all_bytes(&buf, end, sizeof buf.bytes, FILL), "%s v%u stops at byte %zu", name,
              version, end);
}

Test(struct_init, an_older_version_writes_only_its_fields)
{
    assert_stops_at(mongoq_queue_opts_init_any, "queue_opts", 1,
                    offsetof(mongoq_queue_opts_t, hook));
    assert_stops_at(mongoq_queue_opts_init_any, "queue_opts", MONGOQ_QUEUE_OPTS_VERSION - 1,
                    offsetof(mongoq_queue_opts_t, group_rate_limit));
    assert_stops_at(mongoq_enqueue_opts_init_any, "enqueue_opts", 1,
                    offsetof(mongoq_enqueue_opts_t, caller_ids));
    assert_stops_at(mongoq_enqueue_opts_init_any, "enqueue_opts", 2,
                    offsetof(mongoq_enqueue_opts_t, group));
    assert_stops_at(mongoq_worker_opts_init_any, "worker_opts", 1,
                    offsetof(mongoq_worker_opts_t, on_outcome));
    assert_stops_at(mongoq_worker_opts_init_any, "worker_opts", 2,
                    offsetof(mongoq_worker_opts_t, scheduler));
    assert_stops_at(mongoq_counters_init_any, "counters", 1,
                    offsetof(mongoq_counters_t, stream_rescans));
}

/*
 * Schedule definitions (mongoq/schedule.h): checking, storing, reading and removing the
 * documents of "<queue>.schedules". Claiming slots is schedule_fire.c's; the loop scheduler.c's.
 *
 * Every write to a schedule document moves its `rev` on, and every write but the first insert
 * matches the `rev` it read: a definition replaced while a scheduler claims a slot makes one
 * of the two match nothing (the scheduler then aborts its transaction; set retries from a
 * fresh read), so a claim never commits against a definition it did not read.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "cron-private.h"
#include "document-private.h"
#include "error-private.h"
#include "mongoq/producer.h"
#include "schedule-private.h"
#include "service-private.h"

#define SET_TRIES 5

static const char *const catch_up_names[] = {"latest", "skip", "all"};

const char *
mongoq__catch_up_name(mongoq_catch_up_t policy)
{
    return (unsigned)policy < 3 ? catch_up_names[policy] : NULL;
}

int
mongoq__catch_up_from_name(const char *name)
{
    for (int i = 0; name && i < 3; i++) {
        if (strcmp(name, catch_up_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

mongoc_collection_t *
mongoq__schedules_collection(const mongoq_queue_t *queue, mongoc_client_t *client)
{
    char *name = bson_strdup_printf("%s" MONGOQ__SCHEDULES_SUFFIX, queue->name);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, queue->db, name);
    bson_free(name);
    return coll;
}

bool
mongoq__schedules_ensure_index(const mongoq_queue_t *queue, mongoc_client_t *client,
                               bson_error_t *error)
{
    char *name = bson_strdup_printf("%s" MONGOQ__SCHEDULES_SUFFIX, queue->name);
    bson_t cmd = BSON_INITIALIZER, indexes, index, key;
    BSON_APPEND_UTF8(&cmd, "createIndexes", name);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &index);
    BSON_APPEND_DOCUMENT_BEGIN(&index, "key", &key);
    BSON_APPEND_INT32(&key, "next_slot", 1);
    bson_append_document_end(&index, &key);
    BSON_APPEND_UTF8(&index, "name", "next_slot");
    bson_append_document_end(&indexes, &index);
    bson_append_array_end(&cmd, &indexes);
    bool ok = mongoc_client_write_command_with_opts(client, queue->db, &cmd, NULL, NULL, error);
    bson_destroy(&cmd);
    bson_free(name);
    return ok;
}

/* FNV-1a 64 of the name: the last 8 bytes of every message _id of the schedule. */
void
mongoq__schedule_slot_id(const char *name, int64_t slot_ms, bson_oid_t *id)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h = (h ^ *p) * 1099511628211ULL;
    }
    uint32_t secs = (uint32_t)(slot_ms / 1000);
    for (int i = 0; i < 4; i++) {
        id->bytes[i] = (uint8_t)(secs >> (24 - 8 * i));
    }
    for (int i = 0; i < 8; i++) {
        id->bytes[4 + i] = (uint8_t)(h >> (56 - 8 * i));
    }
}

/* ---- checking ------------------------------------------------------------------------------- */

static bool BSON_GNUC_PRINTF(2, 3)
invalid(bson_error_t *error, const char *format, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, format);
    bson_vsnprintf(why, sizeof why, format, ap);
    va_end(ap);
    mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG, "schedule: %s", why);
    return false;
}

static bool
check_name(const char *name, bson_error_t *error)
{
    if (!name || !*name || strlen(name) > MONGOQ_MAX_NAME_BYTES ||
        !bson_utf8_validate(name, strlen(name), false)) {
        return invalid(error, "name must be valid UTF-8 of 1 to MONGOQ_MAX_NAME_BYTES (%d) bytes",
                       MONGOQ_MAX_NAME_BYTES);
    }
    return true;
}

static bool
check_policy(const mongoq_schedule_opts_t *opts, bson_error_t *error)
{
    if (!mongoq__catch_up_name(opts->catch_up)) {
        return invalid(error, "catch_up must be MONGOQ_CATCH_UP_LATEST, _SKIP or _ALL");
    }
    if (opts->catch_up_limit < 0 || opts->catch_up_limit > MONGOQ_MAX_CATCH_UP) {
        return invalid(error, "catch_up_limit must be 0 (default %d) to MONGOQ_MAX_CATCH_UP (%d)",
                       MONGOQ__DEFAULT_CATCH_UP_LIMIT, MONGOQ_MAX_CATCH_UP);
    }
    if (opts->grace_ms < 0 || opts->grace_ms > MONGOQ_MAX_DURATION_MS) {
        return invalid(error,
                       "grace_ms must be 0 (default %d) to MONGOQ_MAX_DURATION_MS (%" PRId64 ")",
                       MONGOQ__DEFAULT_GRACE_MS, MONGOQ_MAX_DURATION_MS);
    }
    return true;
}

/* Everything set() would store, checked before anything is sent. */
static bool
check_opts(const mongoq_schedule_opts_t *opts, bson_error_t *error)
{
    mongoq__cron_t cron;
    if (!opts || opts->version == 0 || opts->version > MONGOQ_SCHEDULE_OPTS_VERSION) {
        return invalid(error, "options are required (MONGOQ_SCHEDULE_OPTS_INIT)");
    }
    if (!mongoq__cron_parse(opts->cron, &cron, error)) {
        return false;
    }
    mongoq__tz_t *tz = mongoq__tz_load(opts->tz ? opts->tz : "UTC", NULL, error);
    if (!tz) {
        return false;
    }
    mongoq__tz_destroy(tz);
    if (opts->payload && opts->payload->len > MONGOQ_MAX_PAYLOAD_BYTES -
                                                  MONGOQ__SCHEDULE_PAYLOAD_ROOM) {
        return invalid(error, "payload is larger than MONGOQ_MAX_PAYLOAD_BYTES - %d (%d bytes)",
                       MONGOQ__SCHEDULE_PAYLOAD_ROOM,
                       MONGOQ_MAX_PAYLOAD_BYTES - MONGOQ__SCHEDULE_PAYLOAD_ROOM);
    }
    mongoq_enqueue_opts_t eopts = MONGOQ_ENQUEUE_OPTS_INIT;
    eopts.priority = opts->priority;
    eopts.max_attempts = opts->max_attempts;
    eopts.dedup_key = opts->dedup_key;
    return mongoq__enqueue_opts_check(&eopts, false, error) && check_policy(opts, error);
}

/* ---- reading -------------------------------------------------------------------------------- */

static char *
dup_utf8(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it)
               ? bson_strdup(bson_iter_utf8(&it, NULL))
               : NULL;
}

static int64_t
get_int(const bson_t *doc, const char *key, int64_t absent)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it)
               ? bson_iter_as_int64(&it)
               : absent;
}

static int64_t
get_date(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DATE_TIME(&it)
               ? bson_iter_date_time(&it)
               : -1;
}

bool
mongoq__schedule_doc_parse(const bson_t *doc, mongoq__schedule_doc_t *out, bson_error_t *error)
{
    bson_iter_t it;
    memset(out, 0, sizeof *out);
    out->name = dup_utf8(doc, "_id");
    out->cron = dup_utf8(doc, "cron");
    out->tz = dup_utf8(doc, "tz");
    out->dedup_key = dup_utf8(doc, "dedup_key");
    char *policy = dup_utf8(doc, "catch_up");
    int catch_up = mongoq__catch_up_from_name(policy);
    bson_free(policy);
    bson_t stored_payload;
    uint32_t len = 0;
    const uint8_t *data = NULL;
    if (bson_iter_init_find(&it, doc, "payload") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_document(&it, &len, &data);
    }
    if (data && bson_init_static(&stored_payload, data, len)) {
        bson_copy_to(&stored_payload, &out->payload); /* a bson_t is never copied by value */
    } else {
        bson_init(&out->payload);
    }
    out->priority = (int32_t)get_int(doc, "priority", 0);
    out->max_attempts = (int32_t)get_int(doc, "max_attempts", 0);
    out->catch_up = catch_up < 0 ? MONGOQ_CATCH_UP_LATEST : (mongoq_catch_up_t)catch_up;
    out->catch_up_limit = (int32_t)get_int(doc, "catch_up_limit", MONGOQ__DEFAULT_CATCH_UP_LIMIT);
    out->grace_ms = get_int(doc, "grace_ms", MONGOQ__DEFAULT_GRACE_MS);
    out->next_slot_ms = get_date(doc, "next_slot");
    out->rev = get_int(doc, "rev", -1);
    out->enqueued = get_int(doc, "enqueued", 0);
    out->skipped = get_int(doc, "skipped", 0);
    out->last_slot_ms = get_date(doc, "last_slot");
    out->last_run_at_ms = get_date(doc, "last_run_at");
    out->updated_at_ms = get_date(doc, "updated_at");
    if (!out->name || !out->cron || !out->tz || catch_up < 0 || out->rev < 0 ||
        out->catch_up_limit < 1 || out->catch_up_limit > MONGOQ_MAX_CATCH_UP) {
        mongoq__error_set(error, MONGOQ_ERROR_SERVER,
                          "schedule \"%s\": the stored document is damaged (a field is missing "
                          "or of the wrong type)",
                          out->name ? out->name : "?");
        return false;
    }
    return true;
}

void
mongoq__schedule_doc_destroy(mongoq__schedule_doc_t *doc)
{
    bson_free(doc->name);
    bson_free(doc->cron);
    bson_free(doc->tz);
    bson_free(doc->dedup_key);
    bson_destroy(&doc->payload);
    memset(doc, 0, sizeof *doc);
}

/* The stored document of `name` (NULL when none) read with client. */
static bool
read_doc(mongoq_queue_t *queue, mongoc_client_t *client, const char *name, bson_t **doc_out,
         bson_error_t *error)
{
    bson_t filter = BSON_INITIALIZER;
    const bson_t *doc;
    BSON_APPEND_UTF8(&filter, "_id", name);
    mongoc_collection_t *coll = mongoq__schedules_collection(queue, client);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    *doc_out = mongoc_cursor_next(cursor, &doc) ? bson_copy(doc) : NULL;
    bool ok = !mongoc_cursor_error(cursor, error);
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    bson_destroy(&filter);
    return ok;
}

/* ---- writing -------------------------------------------------------------------------------- */

/* The fields of the definition, as stored. */
static void
append_definition(bson_t *doc, const mongoq_schedule_opts_t *opts, int64_t now)
{
    bson_t empty = BSON_INITIALIZER;
    BSON_APPEND_UTF8(doc, "cron", opts->cron);
    BSON_APPEND_UTF8(doc, "tz", opts->tz ? opts->tz : "UTC");
    BSON_APPEND_DOCUMENT(doc, "payload", opts->payload ? opts->payload : &empty);
    BSON_APPEND_INT32(doc, "priority", opts->priority);
    BSON_APPEND_INT32(doc, "max_attempts", opts->max_attempts);
    if (opts->dedup_key) {
        BSON_APPEND_UTF8(doc, "dedup_key", opts->dedup_key);
    }
    BSON_APPEND_UTF8(doc, "catch_up", mongoq__catch_up_name(opts->catch_up));
    BSON_APPEND_INT32(doc, "catch_up_limit",
                      opts->catch_up_limit ? opts->catch_up_limit : MONGOQ__DEFAULT_CATCH_UP_LIMIT);
    BSON_APPEND_INT64(doc, "grace_ms", opts->grace_ms ? opts->grace_ms : MONGOQ__DEFAULT_GRACE_MS);
    BSON_APPEND_DATE_TIME(doc, "updated_at", now);
    bson_destroy(&empty);
}

/* The first slot after now, as a date or null. */
static void
append_next_slot(bson_t *doc, const mongoq_schedule_opts_t *opts, int64_t now)
{
    mongoq__cron_t cron;
    int64_t next = -1;
    mongoq__tz_t *tz = mongoq__tz_load(opts->tz ? opts->tz : "UTC", NULL, NULL);
    if (tz && mongoq__cron_parse(opts->cron, &cron, NULL) &&
        mongoq__cron_next(&cron, tz, now, &next)) {
        BSON_APPEND_DATE_TIME(doc, "next_slot", next);
    } else {
        BSON_APPEND_NULL(doc, "next_slot");
    }
    mongoq__tz_destroy(tz);
}

typedef enum { WRITTEN, CONFLICT, WRITE_FAILED } write_result_t;

static write_result_t
insert_new(mongoq_queue_t *queue, mongoc_collection_t *coll, const char *name,
           const mongoq_schedule_opts_t *opts, int64_t now, bson_error_t *error)
{
    bson_t doc = BSON_INITIALIZER, wopts = BSON_INITIALIZER, reply;
    BSON_APPEND_UTF8(&doc, "_id", name);
    append_definition(&doc, opts, now);
    append_next_slot(&doc, opts, now);
    BSON_APPEND_INT64(&doc, "rev", 1);
    BSON_APPEND_INT64(&doc, "enqueued", 0);
    BSON_APPEND_INT64(&doc, "skipped", 0);
    BSON_APPEND_DATE_TIME(&doc, "created_at", now);
    mongoq__queue_append_write_concern(queue, &wopts);
    write_result_t r = WRITTEN;
    if (!mongoc_collection_insert_one(coll, &doc, &wopts, &reply, error)) {
        r = mongoq__error_is_server(error, 11000) ? CONFLICT : WRITE_FAILED;
        mongoq__error_classify_write("schedule_set", &reply, error);
    }
    bson_destroy(&reply);
    bson_destroy(&wopts);
    bson_destroy(&doc);
    return r;
}

static write_result_t
update_existing(mongoq_queue_t *queue, mongoc_collection_t *coll, const bson_t *stored,
                const mongoq_schedule_opts_t *opts, int64_t now, bson_error_t *error)
{
    mongoq__schedule_doc_t old;
    bson_t filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set, inc, unset;
    bson_t wopts = BSON_INITIALIZER, reply;
    bool damaged = !mongoq__schedule_doc_parse(stored, &old, NULL);
    BSON_APPEND_UTF8(&filter, "_id", old.name ? old.name : "");
    BSON_APPEND_INT64(&filter, "rev", old.rev);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    append_definition(&set, opts, now);
    if (damaged || strcmp(old.cron, opts->cron) != 0 ||
        strcmp(old.tz, opts->tz ? opts->tz : "UTC") != 0) {
        append_next_slot(&set, opts, now); /* a new expression starts from now */
    }
    bson_append_document_end(&update, &set);
    BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
    BSON_APPEND_INT64(&inc, "rev", 1);
    bson_append_document_end(&update, &inc);
    if (!opts->dedup_key) {
        BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &unset);
        BSON_APPEND_UTF8(&unset, "dedup_key", "");
        bson_append_document_end(&update, &unset);
    }
    mongoq__queue_append_write_concern(queue, &wopts);
    write_result_t r = WRITE_FAILED;
    if (damaged && old.rev < 0) {
        mongoq__error_set(error, MONGOQ_ERROR_SERVER,
                          "schedule_set: the stored schedule has no rev; remove it first");
        bson_init(&reply);
    } else if (mongoc_collection_update_one(coll, &filter, &update, &wopts, &reply, error)) {
        r = mongoq__reply_count(&reply, "matchedCount") == 1 ? WRITTEN : CONFLICT;
    } else {
        mongoq__error_classify_write("schedule_set", &reply, error);
    }
    mongoq__schedule_doc_destroy(&old);
    bson_destroy(&reply);
    bson_destroy(&wopts);
    bson_destroy(&update);
    bson_destroy(&filter);
    return r;
}

bool
mongoq_schedule_set(mongoq_queue_t *queue, const char *name, const mongoq_schedule_opts_t *opts,
                    bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    if (!check_name(name, error) || !check_opts(opts, error)) {
        return false;
    }
    mongoc_client_t *client = mongoq__pool_pop(queue->pool, error);
    if (!client) {
        return false;
    }
    mongoc_collection_t *coll = mongoq__schedules_collection(queue, client);
    write_result_t r = mongoq__schedules_ensure_index(queue, client, error) ? CONFLICT : WRITE_FAILED;
    /* Bounded: each round loses only to another writer's change of this schedule. */
    for (int i = 0; r == CONFLICT && i < SET_TRIES; i++) {
        bson_t *stored = NULL;
        if (!read_doc(queue, client, name, &stored, error)) {
            r = WRITE_FAILED;
            break;
        }
        int64_t now = mongoq__clock_server_now_ms(queue->clock);
        r = stored ? update_existing(queue, coll, stored, opts, now, error)
                   : insert_new(queue, coll, name, opts, now, error);
        bson_destroy(stored);
    }
    if (r == CONFLICT) {
        mongoq__error_set(error, MONGOQ_ERROR_SERVER,
                          "schedule_set: \"%s\" changed under every one of %d attempts", name,
                          SET_TRIES);
    }
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(queue->pool, client);
    return r == WRITTEN;
}

bool
mongoq_schedule_remove(mongoq_queue_t *queue, const char *name, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    if (!check_name(name, error)) {
        return false;
    }
    mongoc_client_t *client = mongoq__pool_pop(queue->pool, error);
    if (!client) {
        return false;
    }
    bson_t filter = BSON_INITIALIZER, wopts = BSON_INITIALIZER, reply;
    BSON_APPEND_UTF8(&filter, "_id", name);
    mongoq__queue_append_write_concern(queue, &wopts);
    mongoc_collection_t *coll = mongoq__schedules_collection(queue, client);
    bool ok = mongoc_collection_delete_one(coll, &filter, &wopts, &reply, error);
    if (!ok) {
        mongoq__error_classify_write("schedule_remove", &reply, error);
    } else if (mongoq__reply_count(&reply, "deletedCount") == 0) {
        mongoq__error_set(error, MONGOQ_ERROR_NOT_FOUND, "no schedule \"%s\"", name);
        ok = false;
    }
    bson_destroy(&reply);
    bson_destroy(&wopts);
    bson_destroy(&filter);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(queue->pool, client);
    return ok;
}

/* ---- infos ---------------------------------------------------------------------------------- */

/* An info and the document its pointers borrow from (info first: the box is the info). */
typedef struct {
    mongoq_schedule_info_t info;
    mongoq__schedule_doc_t doc;
} info_box_t;

static mongoq_schedule_info_t *
info_new(const bson_t *stored, bson_error_t *error)
{
    info_box_t *box = bson_malloc0(sizeof *box);
    mongoq__schedule_doc_t *d = &box->doc;
    if (!mongoq__schedule_doc_parse(stored, d, error)) {
        mongoq__schedule_doc_destroy(d);
        bson_free(box);
        return NULL;
    }
    box->info = (mongoq_schedule_info_t){
        .version = MONGOQ_SCHEDULE_INFO_VERSION, .name = d->name, .cron = d->cron, .tz = d->tz,
        .payload = &d->payload, .priority = d->priority, .max_attempts = d->max_attempts,
        .dedup_key = d->dedup_key, .catch_up = d->catch_up, .catch_up_limit = d->catch_up_limit,
        .grace_ms = d->grace_ms, .next_slot_ms = d->next_slot_ms, .last_slot_ms = d->last_slot_ms,
        .last_run_at_ms = d->last_run_at_ms, .enqueued = d->enqueued, .skipped = d->skipped,
        .updated_at_ms = d->updated_at_ms};
    return &box->info;
}

void
mongoq_schedule_info_destroy(mongoq_schedule_info_t *info)
{
    if (info) {
        info_box_t *box = (info_box_t *)info;
        mongoq__schedule_doc_destroy(&box->doc);
        bson_free(box);
    }
}

void
mongoq_schedule_infos_destroy(mongoq_schedule_info_t **infos, size_t n)
{
    for (size_t i = 0; infos && i < n; i++) {
        mongoq_schedule_info_destroy(infos[i]);
    }
    bson_free(infos);
}

bool
mongoq_schedule_get(mongoq_queue_t *queue, const char *name, mongoq_schedule_info_t **info_out,
                    bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(info_out);
    *info_out = NULL;
    if (!check_name(name, error)) {
        return false;
    }
    mongoc_client_t *client = mongoq__pool_pop(queue->pool, error);
    if (!client) {
        return false;
    }
    bson_t *stored = NULL;
    bool ok = read_doc(queue, client, name, &stored, error);
    mongoc_client_pool_push(queue->pool, client);
    if (ok && !stored) {
        mongoq__error_set(error, MONGOQ_ERROR_NOT_FOUND, "no schedule \"%s\"", name);
        ok = false;
    }
    if (ok) {
        *info_out = info_new(stored, error);
        ok = *info_out != NULL;
    }
    bson_destroy(stored);
    return ok;
}

bool
mongoq_schedule_list(mongoq_queue_t *queue, mongoq_schedule_info_t ***infos_out, size_t *n_out,
                     bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    BSON_ASSERT_PARAM(infos_out);
    BSON_ASSERT_PARAM(n_out);
    *infos_out = NULL;
    *n_out = 0;
    mongoc_client_t *client = mongoq__pool_pop(queue->pool, error);
    if (!client) {
        return false;
    }
    bson_t filter = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort;
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    BSON_APPEND_INT32(&sort, "_id", 1);
    bson_append_document_end(&opts, &sort);
    const bson_t *doc;
    size_t cap = 0;
    mongoc_collection_t *coll = mongoq__schedules_collection(queue, client);
    mongoc_cursor_t *cursor = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    while (mongoc_cursor_next(cursor, &doc)) {
        bson_error_t bad;
        mongoq_schedule_info_t *info = info_new(doc, &bad);
        if (!info) {
            mongoq__queue_log(queue, MONGOQ_LOG_WARNING, "schedule list: %s", bad.message);
            continue;
        }
        if (*n_out == cap) {
            cap = cap ? cap * 2 : 8;
            *infos_out = bson_realloc(*infos_out, cap * sizeof **infos_out);
        }
        (*infos_out)[(*n_out)++] = info;
    }
    bool ok = !mongoc_cursor_error(cursor, error);
    if (!ok) {
        mongoq_schedule_infos_destroy(*infos_out, *n_out);
        *infos_out = NULL;
        *n_out = 0;
    }
    mongoc_cursor_destroy(cursor);
    mongoc_collection_destroy(coll);
    mongoc_client_pool_push(queue->pool, client);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

bool
mongoq_cron_next(const char *cron, const char *tz, int64_t after_ms, int64_t *next_ms,
                 bson_error_t *error)
{
    BSON_ASSERT_PARAM(next_ms);
    mongoq__cron_t parsed;
    *next_ms = -1;
    if (!mongoq__cron_parse(cron, &parsed, error)) {
        return false;
    }
    mongoq__tz_t *zone = mongoq__tz_load(tz ? tz : "UTC", NULL, error);
    if (!zone) {
        return false;
    }
    if (!mongoq__cron_next(&parsed, zone, after_ms, next_ms)) {
        *next_ms = -1;
    }
    mongoq__tz_destroy(zone);
    return true;
}

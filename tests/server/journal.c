/*
 * The journal (--dbpath DIR): DIR/journal.bson, every committed op appended as one BSON record
 * (BSON documents carry their own int32 length prefix). An op is written before it is
 * acknowledged, so kill -9 cannot lose it: the bytes are in the kernel's page cache. A crash in
 * the middle of a write leaves a partial last record, which start-up cuts off.
 *
 * Power loss is another matter: the page cache goes with it. A write whose write concern asks
 * for the journal (j: true, or w: "majority" with writeConcernMajorityJournalDefault, mongod's
 * default) is acknowledged only once fdatasync has covered its record, as mongod's JournalFlusher
 * makes it wait (write_concern.cpp, SyncMode::JOURNAL). Group commit, as mongod's: one sync
 * serves every waiter whose record was written before the sync began; waiters that arrive during
 * a sync wait for the next one, which one of them runs for all. Writes without it do not wait.
 * Syncs are counted for serverStatus as WiredTiger counts them ("log sync operations").
 *
 * A second server on the same directory would interleave records; flock() refuses it, and the
 * kernel drops the lock when the owner dies, so a restart after kill -9 just works.
 */
#include "oplog-private.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JOURNAL_NAME "journal.bson"
#define JOURNAL_MAX_RECORD (64 * 1024 * 1024)

static int journal_fd = -1;
static off_t journal_size;

/* Group commit (sync_mu; lock order: oplog_mu, then sync_mu; a sync holds neither). */
static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cv = PTHREAD_COND_INITIALIZER;
static uint64_t written;  /* bytes appended since the journal was opened */
static uint64_t synced;   /* of those, the bytes a completed sync covered */
static bool syncing;      /* a sync is under way (its thread holds no lock) */
static int64_t sync_count;
static int64_t sync_usecs;

static bool
io_error(bson_error_t *error, const char *what, const char *path)
{
    return ms_set_error(error, MS_ERR_INTERNAL_ERROR, "journal %s %s: %s", what, path ? path : "",
                        strerror(errno));
}

static bool
read_all(int fd, uint8_t **data, size_t *len, bson_error_t *error)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        return io_error(error, "stat", NULL);
    }
    *len = (size_t)st.st_size;
    *data = bson_malloc(*len ? *len : 1);
    size_t done = 0;
    while (done < *len) {
        ssize_t n = pread(fd, *data + done, *len - done, (off_t)done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            bson_free(*data);
            *data = NULL;
            return io_error(error, "read", NULL);
        }
        done += (size_t)n;
    }
    return true;
}

/* Length of the complete, valid record at data (len bytes left), or 0 when there is none. */
static size_t
record_len(const uint8_t *data, size_t len)
{
    if (len < 5) {
        return 0;
    }
    int32_t n;
    memcpy(&n, data, 4);
    n = BSON_UINT32_FROM_LE(n);
    if (n < 5 || n > JOURNAL_MAX_RECORD || (size_t)n > len || data[n - 1] != 0) {
        return 0;
    }
    bson_t rec;
    if (!bson_init_static(&rec, data, (size_t)n) ||
        !bson_validate(&rec, BSON_VALIDATE_NONE, NULL)) {
        return 0;
    }
    return (size_t)n;
}

static bool
replay(int fd, ms__journal_record_cb cb, void *ctx, bson_error_t *error)
{
    uint8_t *data = NULL;
    size_t len = 0;
    size_t off = 0;
    bool ok = false;
    if (!read_all(fd, &data, &len, error)) {
        goto done;
    }
    for (size_t n; off < len && (n = record_len(data + off, len - off)) > 0; off += n) {
        bson_t rec;
        bson_init_static(&rec, data + off, n);
        if (!cb(&rec, ctx, error)) {
            goto done;
        }
    }
    if (off < len) {
        ms_log("journal: cutting off %zu bytes of a partial record at offset %zu", len - off, off);
        if (ftruncate(fd, (off_t)off) != 0) {
            io_error(error, "truncate", NULL);
            goto done;
        }
    }
    journal_size = (off_t)off;
    ok = true;
done:
    bson_free(data);
    return ok;
}

bool
ms__journal_open(const char *dbpath, ms__journal_record_cb cb, void *ctx, bson_error_t *error)
{
    char *path = bson_strdup_printf("%s/%s", dbpath, JOURNAL_NAME);
    bool ok = false;
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        io_error(error, "open", path);
        goto done;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ms_set_error(error, MS_ERR_INTERNAL_ERROR, "journal %s is in use by another server", path);
        goto done;
    }
    if (!replay(fd, cb, ctx, error)) {
        goto done;
    }
    journal_fd = fd;
    fd = -1;
    ok = true;
done:
    if (fd >= 0) {
        close(fd);
    }
    bson_free(path);
    return ok;
}

bool
ms__journal_append(const uint8_t *data, size_t len, bson_error_t *error)
{
    size_t done = 0;
    if (journal_fd < 0) {
        return ms_set_error(error, MS_ERR_SHUTDOWN_IN_PROGRESS,
                            "The server is in quiesce mode and will shut down");
    }
    while (done < len) {
        ssize_t n = write(journal_fd, data + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            io_error(error, "write", NULL);
            /* Never leave half a record behind a failed, unacknowledged write. */
            if (ftruncate(journal_fd, journal_size) != 0) {
                ms_log("journal: cannot cut back a failed write: %s", strerror(errno));
            }
            return false;
        }
        done += (size_t)n;
    }
    journal_size += (off_t)len;
    pthread_mutex_lock(&sync_mu);
    written += len;
    pthread_mutex_unlock(&sync_mu);
    return true;
}

bool
ms__journal_is_open(void)
{
    return journal_fd >= 0;
}

void
ms__journal_close(void)
{
    pthread_mutex_lock(&sync_mu);
    /* Bounded: a sync under way ends and broadcasts. */
    while (syncing) {
        pthread_cond_wait(&sync_cv, &sync_mu);
    }
    if (journal_fd >= 0) {
        fsync(journal_fd);
        close(journal_fd);
        journal_fd = -1;
    }
    synced = written;
    pthread_cond_broadcast(&sync_cv);
    pthread_mutex_unlock(&sync_mu);
}

static int64_t
mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One fdatasync for everything written so far. Caller holds sync_mu and sets syncing. */
static bool
sync_once(bson_error_t *error)
{
    uint64_t upto = written;
    int fd = journal_fd;
    pthread_mutex_unlock(&sync_mu);
    int64_t t0 = mono_us();
    int rc = fdatasync(fd);
    int saved = errno;
    int64_t took = mono_us() - t0;
    pthread_mutex_lock(&sync_mu);
    if (rc != 0) {
        errno = saved;
        return io_error(error, "sync", NULL);
    }
    sync_count++;
    sync_usecs += took;
    if (upto > synced) {
        synced = upto;
    }
    return true;
}

bool
ms_journal_wait_durable(bson_error_t *error)
{
    bool ok = true;
    pthread_mutex_lock(&sync_mu);
    uint64_t target = written;
    /* Bounded: each pass either runs a sync covering target or waits for one that ends. */
    while (ok && synced < target && journal_fd >= 0) {
        if (syncing) {
            pthread_cond_wait(&sync_cv, &sync_mu);
            continue;
        }
        syncing = true;
        ok = sync_once(error);
        syncing = false;
        pthread_cond_broadcast(&sync_cv);
    }
    pthread_mutex_unlock(&sync_mu);
    return ok;
}

void
ms_journal_server_status(bson_t *reply)
{
    bson_t wt, log;
    pthread_mutex_lock(&sync_mu);
    bool open = journal_fd >= 0;
    int64_t count = sync_count;
    int64_t usecs = sync_usecs;
    pthread_mutex_unlock(&sync_mu);
    if (!open) {
        return;
    }
    BSON_APPEND_DOCUMENT_BEGIN(reply, "wiredTiger", &wt);
    BSON_APPEND_DOCUMENT_BEGIN(&wt, "log", &log);
    BSON_APPEND_INT64(&log, "log sync operations", count);
    BSON_APPEND_INT64(&log, "log sync time duration (usecs)", usecs);
    bson_append_document_end(&wt, &log);
    bson_append_document_end(reply, &wt);
}

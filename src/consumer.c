/*
 * The consumer: its name and lease, and the wait loop around the claim commands (claim.c):
 * try, then sleep on the queue's waker until something may have changed or the wait is over.
 */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "claim-private.h"
#include "hooks-private.h"
#include "partition_claim-private.h"
#include "pause-private.h"
#include "error-private.h"
#include "mongoq/limits.h"
#include "queue-private.h"
#include "rate-private.h"

#define MAX_WAIT_MS ((int64_t)1 << 40)

static char *
default_name(void)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0) {
        bson_strncpy(host, "localhost", sizeof host);
    }
    host[sizeof host - 1] = '\0';
    return bson_strdup_printf("%s:%d:%" PRIu64, host, (int)getpid(), mongoq__queue_next_serial());
}

mongoq_consumer_t *
mongoq_consumer_new(mongoq_queue_t *queue, const mongoq_consumer_opts_t *opts, bson_error_t *error)
{
    BSON_ASSERT_PARAM(queue);
    if (opts && (opts->version == 0 || opts->version > MONGOQ_CONSUMER_OPTS_VERSION)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "consumer opts: unknown version (use MONGOQ_CONSUMER_OPTS_INIT)");
        return NULL;
    }
    if (opts && (opts->lease_ms < 0 || opts->lease_ms > MONGOQ_MAX_DURATION_MS)) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "consumer opts: lease_ms must be 0 (the queue's) to "
                          "MONGOQ_MAX_DURATION_MS (%" PRId64 "), not %" PRId64,
                          MONGOQ_MAX_DURATION_MS, opts->lease_ms);
        return NULL;
    }
    if (opts && opts->name &&
        (!*opts->name || strlen(opts->name) > MONGOQ_MAX_NAME_BYTES ||
         !bson_utf8_validate(opts->name, strlen(opts->name), false))) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "consumer opts: name must be valid UTF-8 of 1 to MONGOQ_MAX_NAME_BYTES "
                          "(%d) bytes",
                          MONGOQ_MAX_NAME_BYTES);
        return NULL;
    }
    mongoq_consumer_t *consumer = bson_malloc0(sizeof *consumer);
    consumer->queue = queue;
    consumer->name = opts && opts->name ? bson_strdup(opts->name) : default_name();
    consumer->lease_ms = opts && opts->lease_ms > 0 ? opts->lease_ms : queue->opts.lease_ms;
    mongoq__partition_consumer_init(consumer);
    return consumer;
}

void
mongoq_consumer_destroy(mongoq_consumer_t *consumer)
{
    if (!consumer) {
        return;
    }
    bson_destroy(consumer->skipped);
    mongoq__partition_consumer_destroy(consumer);
    bson_free(consumer->name);
    bson_free(consumer);
}

const char *
mongoq_consumer_name(const mongoq_consumer_t *consumer)
{
    BSON_ASSERT_PARAM(consumer);
    return consumer->name;
}

/* ---- waiting ------------------------------------------------------------------------------ */


/*
 * One attempt under the rate limit: tokens first (one round trip), then a claim of at most as
 * many messages, and the unused tokens given back. *retry_at_mono: when no token was granted,
 * the monotonic time the next one is due (0 otherwise).
 */
static bool
limited_attempt(mongoq_consumer_t *consumer, mongoq__attempt_fn attempt, size_t max,
                mongoq_message_t **msgs, size_t *got, int64_t *retry_at_mono, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    int64_t granted = 0, wait_ms = 0;
    *retry_at_mono = 0;
    *got = 0;
    if (queue->opts.rate_limit <= 0) {
        return attempt(consumer, max, msgs, got, error);
    }
    if (!mongoq__rate_take(queue, (int64_t)max, &granted, &wait_ms, error)) {
        return false;
    }
    if (granted == 0) {
        *retry_at_mono = mongoq__now_mono_ms() + wait_ms;
        return true;
    }
    bool ok = attempt(consumer, (size_t)granted, msgs, got, error);
    if ((int64_t)*got < granted) {
        mongoq__rate_give_back(queue, granted - (int64_t)*got);
    }
    return ok;
}

/*
 * Tries, then sleeps on the waker until something may have changed or the deadline passes. The
 * generation is read before each attempt, so a wake-up between attempt and wait is not lost.
 * A wake-up that led to a successful claim is counted by its cause. Throttled by the rate
 * limit, it sleeps until the next token is due (or a wake-up) instead.
 */
static bool
claim_loop(mongoq_consumer_t *consumer, int64_t wait_ms, mongoq__attempt_fn attempt, size_t max,
           mongoq_message_t **msgs, size_t *got, bson_error_t *error)
{
    mongoq_queue_t *queue = consumer->queue;
    mongoq__queue_start_reaper(queue);
    mongoq__waker_start(queue->waker);
    int64_t deadline = mongoq__now_mono_ms() + (wait_ms < MAX_WAIT_MS ? wait_ms : MAX_WAIT_MS);
    uint64_t seen = mongoq__waker_generation(queue->waker);
    mongoq__wake_t why = MONGOQ__WAKE_TIMEOUT;
    for (;;) {
        int64_t retry_at = 0;
        /* Paused: no attempt (and no round trip) until a resume wakes us. */
        if (!mongoq__pause_blocks(queue) &&
            !limited_attempt(consumer, attempt, max, msgs, got, &retry_at, error)) {
            return false;
        }
        if (*got > 0) {
            mongoq__waker_count(&queue->counters, why);
            for (size_t i = 0; i < *got; i++) {
                mongoq__message_hook(queue, MONGOQ_EVENT_CLAIMED, msgs[i], NULL);
            }
            mongoq__hook_flush(queue);
            return true;
        }
        mongoq__hook_flush(queue);
        if (mongoq__now_mono_ms() >= deadline) {
            return true;
        }
        if (retry_at > 0) {
            /* Throttled: no token before retry_at whatever is enqueued meanwhile; only a stop
             * ends the wait early. */
            int64_t until = retry_at < deadline ? retry_at : deadline;
            do {
                why = mongoq__waker_wait(queue->waker, &seen, until);
            } while (why != MONGOQ__WAKE_STOP && mongoq__now_mono_ms() < until);
        } else {
            why = mongoq__waker_wait(queue->waker, &seen, deadline);
        }
        if (why == MONGOQ__WAKE_STOP) {
            return true;
        }
    }
}

bool
mongoq_consumer_claim(mongoq_consumer_t *consumer, int64_t wait_ms, mongoq_message_t **msg_out,
                      bson_error_t *error)
{
    BSON_ASSERT_PARAM(consumer);
    BSON_ASSERT_PARAM(msg_out);
    size_t got = 0;
    *msg_out = NULL;
    if (wait_ms < 0) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG, "claim: wait_ms is negative");
        return false;
    }
    return claim_loop(consumer, wait_ms,
                      consumer->marks ? mongoq__partition_claim_one : mongoq__claim_one, 1, msg_out,
                      &got, error);
}

bool
mongoq_consumer_claim_many(mongoq_consumer_t *consumer, size_t max, int64_t wait_ms,
                           mongoq_message_t **msgs_out, size_t *n_out, bson_error_t *error)
{
    BSON_ASSERT_PARAM(consumer);
    BSON_ASSERT_PARAM(msgs_out);
    BSON_ASSERT_PARAM(n_out);
    *n_out = 0;
    if (max < 1 || max > MONGOQ_MAX_BATCH || wait_ms < 0) {
        mongoq__error_set(error, MONGOQ_ERROR_INVALID_ARG,
                          "claim_many: max must be 1 to MONGOQ_MAX_BATCH (%d) and wait_ms not "
                          "negative",
                          MONGOQ_MAX_BATCH);
        return false;
    }
    return claim_loop(consumer, wait_ms,
                      consumer->marks ? mongoq__partition_claim_many : mongoq__claim_many, max,
                      msgs_out, n_out, error);
}

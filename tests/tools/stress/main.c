/*
 * mongoq-stress: every thread mongoq has, running at once, checked with real assertions.
 *
 *   MONGOQ_TEST_URI=mongodb://... mongoq-stress [part ...]
 *
 * Written for ThreadSanitizer, under which Criterion cannot start, so it uses no test framework:
 * a failed check prints where and what, and the program ends with "stress: N passed, M failed"
 * (exit status 1 on any failure). Parts (all by default; name them to run some):
 *   producers - enqueue/enqueue_many from 3 threads, claim/claim_many from 4 with ack, ack_many,
 *               retry (delay 0) and fail: every message ends acked or dead as its sequence number
 *               says, delivered exactly as often as expected;
 *   worker    - a worker (4 threads, batch 10, heartbeat) while producers enqueue, stopped
 *               mid-flight with a timeout, then a second worker drains the rest: every message
 *               handled exactly once, counters consistent;
 *   waker     - idle consumers blocked in claim woken through the change stream by enqueues on
 *               another handle, while the queue's reaper returns what consumers abandon;
 *   signal    - mongoq_worker_request_stop from a SIGUSR1 handler (pthread_kill from another
 *               thread), then mongoq_worker_stop;
 *   destroy   - mongoq_queue_destroy while the waker's thread waits (change stream or polling),
 *               idle or busy: it returns promptly;
 *   schedules - two scheduler threads on separate pools and a worker's own scheduler racing
 *               over a yearly schedule wound back to 1990 and a minutely one in Berlin, while
 *               passes run on another thread, a definition is replaced, schedules are listed
 *               and cron slots computed in several zones on several threads: the worker
 *               handles every yearly slot exactly once, and all of it stops within a bound.
 * Each part uses its own database stress_<pid>_<part> and drops it. Every loop is bounded.
 *
 * Under ThreadSanitizer (libmongoc/libbson are not instrumented; see the suppression file):
 *   cmake -S . -B build/stress-tsan -DMONGOQ_SANITIZE=thread && cmake --build build/stress-tsan
 *   TSAN_OPTIONS="suppressions=$PWD/tests/tools/tsan-libmongoc.supp halt_on_error=1" \
 *     setarch -R build/stress-tsan/tests/mongoq-stress
 *
 * This file: the list of parts and main. support.c holds the helpers, stress.h the shared
 * declarations, and each part has a file of its own (producers.c, worker.c, waker.c, signal.c,
 * destroy.c, schedules.c).
 */

#include "stress.h"

/* ---- main -------------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*run)(part_t *part);
} part_def_t;

static const part_def_t parts[] = {
    {"producers", stress_part_producers}, {"worker", stress_part_worker},   {"waker", stress_part_waker},
    {"signal", stress_part_signal},       {"destroy", stress_part_destroy},
    {"schedules", stress_part_schedules}, {"groups", stress_part_groups},
};
#define N_PARTS (sizeof parts / sizeof parts[0])

static bool
selected(int argc, char **argv, const char *name)
{
    if (argc < 2) {
        return true;
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], name)) {
            return true;
        }
    }
    return false;
}

int
main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    stress_uri = getenv("MONGOQ_TEST_URI");
    mongoc_uri_t *uri = stress_uri ? mongoc_uri_new(stress_uri) : NULL;
    if (!uri) {
        fprintf(stderr, "stress: MONGOQ_TEST_URI is unset or invalid: run scripts/test, or point "
                        "it at a replica set\n");
        return 1;
    }
    mongoc_uri_destroy(uri);
    /* Only part 4's target thread takes SIGUSR1: every other thread inherits it blocked. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    mongoc_init();
    for (size_t i = 0; i < N_PARTS; i++) {
        if (!selected(argc, argv, parts[i].name)) {
            continue;
        }
        part_t part = {.name = parts[i].name};
        atomic_init(&part.failures, 0);
        int64_t t0 = stress_now_ms();
        parts[i].run(&part);
        int failures = atomic_load(&part.failures);
        printf("stress: %s: %s (%d failed checks, %.1f s)\n", part.name,
               failures ? "FAILED" : "passed", failures, (double)(stress_now_ms() - t0) / 1000.0);
        fflush(stdout);
        if (failures) {
            failed++;
        } else {
            passed++;
        }
    }
    mongoc_cleanup();
    printf("stress: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/*
 * mongoq-set-schedule URI DB QUEUE NAME CRON [TZ [CATCH_UP [LIMIT_OR_GRACE_MS]]]: sets one
 * schedule through the library (mongoq_schedule_set), for the CLI tests. CATCH_UP is latest,
 * skip (the number is grace_ms) or all (the number is catch_up_limit). Exit 0 when it was set,
 * 1 on an error (printed).
 */
#include <mongoq/mongoq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main(int argc, char **argv)
{
    bson_error_t error = {0};
    int rc = 1;
    if (argc < 6 || argc > 9) {
        fprintf(stderr, "usage: %s URI DB QUEUE NAME CRON [TZ [CATCH_UP [N]]]\n", argv[0]);
        return 2;
    }
    mongoc_init();
    mongoq_schedule_opts_t opts = MONGOQ_SCHEDULE_OPTS_INIT;
    opts.cron = argv[5];
    opts.tz = argc > 6 ? argv[6] : NULL;
    const char *policy = argc > 7 ? argv[7] : "latest";
    long long n = argc > 8 ? strtoll(argv[8], NULL, 10) : 0;
    opts.catch_up = strcmp(policy, "skip") == 0  ? MONGOQ_CATCH_UP_SKIP
                    : strcmp(policy, "all") == 0 ? MONGOQ_CATCH_UP_ALL
                                                 : MONGOQ_CATCH_UP_LATEST;
    opts.grace_ms = opts.catch_up == MONGOQ_CATCH_UP_SKIP ? n : 0;
    opts.catch_up_limit = opts.catch_up == MONGOQ_CATCH_UP_ALL ? (int32_t)n : 0;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(argv[1], &error);
    mongoc_client_pool_t *pool = uri ? mongoc_client_pool_new(uri) : NULL;
    mongoq_queue_opts_t qopts = MONGOQ_QUEUE_OPTS_INIT;
    qopts.no_reaper = true;
    qopts.no_change_stream = true;
    mongoq_queue_t *queue = pool ? mongoq_queue_new(pool, argv[2], argv[3], &qopts, &error) : NULL;
    if (!queue) {
        fprintf(stderr, "cannot open the queue: %s\n", error.message);
    } else if (!mongoq_schedule_set(queue, argv[4], &opts, &error)) {
        fprintf(stderr, "set %s: %s\n", argv[4], error.message);
    } else {
        rc = 0;
    }
    mongoq_queue_destroy(queue);
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return rc;
}

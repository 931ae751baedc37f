/* mongoq_queue_metrics / mongoq_metrics_render: names, values, histograms, exposition format. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "promcheck.h"
#include "world.h"

static char *
render(world_t *t, bool stats_only)
{
    char *text = NULL;
    bson_error_t error;
    mongoq_metrics_opts_t o = MONGOQ_METRICS_OPTS_INIT;
    o.stats_only = stats_only;
    cr_assert(mongoq_queue_metrics(t->queue, &o, &text, &error), "metrics: %s", error.message);
    char why[512];
    cr_assert(promcheck(text, why, sizeof why), "not valid exposition: %s\n%s", why, text);
    return text;
}

/* Asserts text holds the line "<series> <value>". */
static void
has_line(const char *text, const char *series, const char *value)
{
    char line[512];
    snprintf(line, sizeof line, "\n%s %s\n", series, value);
    cr_assert(strstr(text, line), "no line \"%s %s\" in:\n%s", series, value, text);
}

Test(metrics, counts_counters_and_histograms)
{
    world_t t;
    bson_error_t error;
    char series[300];
    world_open(&t, NULL, 0);
    world_enqueue_n(&t, 3, NULL, NULL);
    mongoq_consumer_t *c = world_consumer(&t, NULL, 0);
    mongoq_message_t *a = world_claim(c, 1000), *b = world_claim(c, 1000);
    cr_assert(mongoq_message_ack(a, &error), "%s", error.message);
    cr_assert(mongoq_message_fail(b, "x", &error), "%s", error.message);
    mongoq_message_destroy(a);
    mongoq_message_destroy(b);

    char *text = render(&t, false);
    snprintf(series, sizeof series, "mongoq_messages{queue=\"%s.jobs\",status=\"ready\"}", t.db);
    has_line(text, series, "1");
    snprintf(series, sizeof series, "mongoq_messages{queue=\"%s.jobs\",status=\"dead\"}", t.db);
    has_line(text, series, "1");
    snprintf(series, sizeof series, "mongoq_enqueued_total{queue=\"%s.jobs\"}", t.db);
    has_line(text, series, "3");
    snprintf(series, sizeof series, "mongoq_claimed_total{queue=\"%s.jobs\"}", t.db);
    has_line(text, series, "2");
    snprintf(series, sizeof series, "mongoq_acked_total{queue=\"%s.jobs\"}", t.db);
    has_line(text, series, "1");
    snprintf(series, sizeof series, "mongoq_failed_total{queue=\"%s.jobs\"}", t.db);
    has_line(text, series, "1");
    /* Two claims waited, one ack was handled. */
    snprintf(series, sizeof series, "mongoq_wait_seconds_count{queue=\"%s.jobs\"}", t.db);
    has_line(text, series, "2");
    snprintf(series, sizeof series, "mongoq_handling_seconds_count{queue=\"%s.jobs\"}", t.db);
    has_line(text, series, "1");
    snprintf(series, sizeof series, "mongoq_handling_seconds_bucket{queue=\"%s.jobs\",le=\"+Inf\"}",
             t.db);
    has_line(text, series, "1");
    cr_assert(strstr(text, "# TYPE mongoq_wait_seconds histogram\n"));
    cr_assert(strstr(text, "# TYPE mongoq_enqueued_total counter\n"));
    bson_free(text);

    /* stats_only: the database's series alone. */
    text = render(&t, true);
    cr_assert(strstr(text, "mongoq_messages{"));
    cr_assert_null(strstr(text, "mongoq_enqueued_total"));
    cr_assert_null(strstr(text, "mongoq_wait_seconds"));
    bson_free(text);
    mongoq_consumer_destroy(c);
    world_close(&t);
}

Test(metrics, paused_is_a_gauge_read_from_the_database)
{
    world_skip_sharded("inspects the unpartitioned index layout or opens the collection with other options");
    world_t t;
    bson_error_t error;
    char series[300];
    world_open(&t, NULL, 0);
    snprintf(series, sizeof series, "mongoq_paused{queue=\"%s.jobs\"}", t.db);
    char *text = render(&t, true);
    has_line(text, series, "0");
    cr_assert(strstr(text, "# TYPE mongoq_paused gauge\n"));
    bson_free(text);
    /* Paused through another handle: the gauge follows the database, not this process. */
    mongoq_queue_t *other = mongoq_queue_new(t.pool, t.db, "jobs", NULL, &error);
    cr_assert(other, "%s", error.message);
    cr_assert(mongoq_queue_pause(other, &error), "%s", error.message);
    text = render(&t, true);
    has_line(text, series, "1");
    bson_free(text);
    text = render(&t, false);
    has_line(text, series, "1");
    bson_free(text);
    cr_assert(mongoq_queue_resume(other, &error), "%s", error.message);
    text = render(&t, false);
    has_line(text, series, "0");
    bson_free(text);
    mongoq_queue_destroy(other);
    world_close(&t);
}

Test(metrics, several_queues_share_one_family_block)
{
    world_t t;
    bson_error_t error;
    world_open(&t, NULL, 0);
    mongoq_queue_t *other = mongoq_queue_new(t.pool, t.db, "other", NULL, &error);
    cr_assert(other, "%s", error.message);
    mongoq_queue_t *queues[] = {t.queue, other};
    char *text = NULL;
    cr_assert(mongoq_metrics_render(queues, 2, NULL, &text, &error), "%s", error.message);
    char why[512];
    cr_assert(promcheck(text, why, sizeof why), "%s", why);
    const char *first = strstr(text, "# TYPE mongoq_messages gauge");
    cr_assert(first && !strstr(first + 1, "# TYPE mongoq_messages gauge"), "one TYPE per family");
    bson_free(text);
    cr_assert_not(mongoq_metrics_render(queues, 0, NULL, &text, &error));
    cr_assert_null(text);
    cr_assert_eq(error.code, MONGOQ_ERROR_INVALID_ARG);
    mongoq_queue_destroy(other);
    world_close(&t);
}

Test(metrics, the_checker_refuses_broken_text)
{
    char why[256];
    cr_assert_not(promcheck("x 1\ny 2\nx 3\n", why, sizeof why), "split family");
    cr_assert_not(promcheck("x{a=\"b\\q\"} 1\n", why, sizeof why), "bad escape");
    cr_assert_not(promcheck("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                            "h_sum 1\nh_count 1\n",
                            why, sizeof why),
                  "buckets not cumulative");
    cr_assert_not(promcheck("# TYPE c counter\nc -1\n", why, sizeof why), "negative counter");
    cr_assert_not(promcheck("x 1", why, sizeof why), "no final newline");
    cr_assert(promcheck("# HELP x a\n# TYPE x gauge\nx{a=\"\\\"q\\\\\"} 1.5\n", why, sizeof why),
              "%s", why);
}

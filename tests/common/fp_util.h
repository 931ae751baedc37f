/* Helpers for tests that drive the fault proxy (tests/tools/faultproxy): its counters, its rules. */
#ifndef MONGOQ_FP_UTIL_H
#define MONGOQ_FP_UTIL_H

#include <criterion/criterion.h>

#include "faultproxy.h"

/* The proxy's counters now; asserts the call succeeds. */
static inline mongoq_faultproxy_stats_t
fp_stats(mongoq_faultproxy_t *proxy)
{
    mongoq_faultproxy_stats_t stats = MONGOQ_FAULTPROXY_STATS_INIT;
    bson_error_t error;
    cr_assert(mongoq_faultproxy_stats(proxy, &stats, &error), "%s", error.message);
    return stats;
}

/* Adds a rule (app and hang_ms may be NULL and 0); asserts it is accepted; returns its id. */
static inline int32_t
fp_add_rule(mongoq_faultproxy_t *proxy, mongoq_fault_kind_t kind, const char *commands,
            const char *app, int32_t times, int64_t hang_ms)
{
    mongoq_fault_rule_t rule = MONGOQ_FAULT_RULE_INIT;
    bson_error_t error;
    rule.kind = kind;
    rule.commands = commands;
    rule.app_name = app;
    rule.times = times;
    rule.hang_ms = hang_ms;
    int32_t id = mongoq_faultproxy_add_rule(proxy, &rule, &error);
    cr_assert(id > 0, "add_rule: %s", error.message);
    return id;
}

#endif

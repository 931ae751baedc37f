/*
 * A small checker of the Prometheus text exposition format (version 0.0.4), for the tests of
 * mongoq's metrics: every line is a # HELP, a # TYPE, another comment, blank, or a sample
 * `name{label="value",...} number`; names and label names are valid; label values are quoted
 * with only \\, \" and \n escapes; a metric's # TYPE comes before its samples and at most once;
 * a family's samples are contiguous; counters and histogram parts are never negative; each
 * histogram has _bucket samples with ascending le ending in +Inf, cumulative counts that never
 * fall, and a _count equal to its +Inf bucket and a _sum.
 */
#ifndef MONGOQ_PROMCHECK_H
#define MONGOQ_PROMCHECK_H

#include <stdbool.h>
#include <stddef.h>

/* Checks text; on failure writes "line N: what" into why[why_size] and returns false. */
bool promcheck(const char *text, char *why, size_t why_size);

#endif

/* What the invariant checks (check.c, check_redelivery.c, check_recovery.c) share: the printing
 * of a verdict and its violations, and the invariants that live outside check.c. */
#ifndef MONGOQ_CHAOS_CHECK_H
#define MONGOQ_CHAOS_CHECK_H

#include "facts.h"

#define MAX_THREADS_SEEN 64 /* handler threads told apart per worker (at most 4 are started) */

/* Prints the invariant's PASS/FAIL line; returns pass. */
bool
check_verdict(bool pass, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

/* Prints one violation under it, the first few per invariant (*shown counts them). */
void
check_violation(int64_t *shown, const char *fmt, ...) BSON_GNUC_PRINTF(2, 3);

/* An event of that kind on that process overlapping [from, to]. */
bool
check_proc_event(const driver_t *d, event_kind_t kind, int proc, int64_t from, int64_t to);

/* 4. every redelivery explained (check_redelivery.c). */
bool
check_redeliveries(facts_t *f);

/* 6. consumers back after each server restart (check_recovery.c). */
bool
check_recovery(facts_t *f);

#endif /* MONGOQ_CHAOS_CHECK_H */

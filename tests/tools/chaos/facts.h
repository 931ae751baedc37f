/*
 * What the check knows after a run (facts.c loads it): every message by sequence number, from
 * the producers' records and the collection; every claim of it, from the workers' records; the
 * workers' records of trouble reaching the server. check.c judges the invariants on it.
 */
#ifndef MONGOQ_CHAOS_FACTS_H
#define MONGOQ_CHAOS_FACTS_H

#include "driver.h"

/* One claim of a message by a worker: from its B record (the handler ran) and/or its O record
 * (on_outcome: what the worker did with it). */
typedef struct {
    int64_t seq;
    int attempt;
    int proc; /* child index of the worker process */
    char token[25];
    char claimed_by[48];
    int64_t lease_exp, lease_ms, claim_real, begin_real, end_real; /* end_real 0: no E */
    int64_t outcome_real; /* when on_outcome was told (after the write); 0: no O record */
    bool handled;   /* the handler ran */
    char result;    /* its answer: 'A', 'R', or 0 (no E record: the process died first) */
    char action;    /* on_outcome: 'A'CKED 'R'ETRIED 'B'URIED 'F'AILED 'L'EASE_LOST
                       'H'ANDED_BACK 'S'KIPPED_LOST, or 0 (no O record) */
    bool ok;        /* the worker's write went through */
    uint32_t error_domain, error_code;
    bool sum_ok;
} delivery_t;

typedef struct {
    int64_t seq; /* -1: empty slot */
    /* What the producers' records say: 'o' stored, 'n' not stored (an error that says so),
     * 'u' unknown (UNKNOWN_OUTCOME, or the producer died in the call), 0 never sent */
    char produced;
    int64_t produced_real;
    int stored;
    char status; /* first letter of the stored status */
    int attempts;
    bool sum_ok;
    size_t first, n; /* its deliveries in facts_t.deliveries, sorted by attempt */
} message_t;

/* A worker's record of trouble reaching the server: CF, HB, HF or W (not OF: a failed ack or
 * retry is the consequence of a lost lease, never its cause). */
typedef struct {
    int proc;
    char kind[4];
    int64_t real;
} proc_record_t;

typedef struct {
    driver_t *d;
    message_t *msgs; /* open addressing on seq; cap is a power of two */
    size_t cap, n_msgs;
    delivery_t *deliveries;
    size_t n_deliveries, cap_deliveries;
    proc_record_t *records;
    size_t n_records, cap_records;
    int64_t unparsed_docs, unparsed_lines, enqueue_calls, enqueue_errors, enqueue_unknown;
    int64_t min_lease_ms;
} facts_t;

/* Loads everything; false (with a message printed) when the collection cannot be read. */
bool
facts_load(facts_t *f, driver_t *d);
void
facts_free(facts_t *f);

#endif /* MONGOQ_CHAOS_FACTS_H */

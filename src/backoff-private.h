/* Retry backoff: pure functions, no I/O, unit-tested without a server. */
#ifndef MONGOQ_BACKOFF_PRIVATE_H
#define MONGOQ_BACKOFF_PRIVATE_H

#include <stdint.h>

/*
 * The delay before attempt `attempts + 1` after `attempts` failed ones (attempts >= 1; values
 * below 1 count as 1): base_ms * 2^(attempts-1), capped at cap_ms, never negative and never
 * overflowing. Then jitter: a fraction `jitter` (0..1; <= 0 means none) of that delay is drawn
 * at random, so the result lies in [delay * (1 - jitter), delay]; rand01 is a number in [0, 1).
 * Jitter only ever shortens the delay, so the cap holds.
 */
int64_t mongoq__backoff_ms(int32_t attempts, int64_t base_ms, int64_t cap_ms, double jitter,
                           double rand01);

/* A random number in [0, 1). Thread-safe, lock-free; not for cryptography. */
double mongoq__random01(void);

#endif

/* Retry backoff (see backoff-private.h). */
#include "backoff-private.h"

#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

int64_t
mongoq__backoff_ms(int32_t attempts, int64_t base_ms, int64_t cap_ms, double jitter, double rand01)
{
    if (base_ms <= 0 || cap_ms <= 0) {
        return 0;
    }
    int64_t delay = base_ms < cap_ms ? base_ms : cap_ms;
    /* Double step by step: stops at the cap long before int64 could overflow. */
    for (int32_t i = 1; i < attempts && delay < cap_ms; i++) {
        delay = delay > cap_ms / 2 ? cap_ms : delay * 2;
    }
    if (!(jitter > 0)) { /* also catches NaN */
        return delay;
    }
    if (jitter > 1) {
        jitter = 1;
    }
    if (!(rand01 >= 0) || rand01 >= 1) {
        rand01 = 0;
    }
    double span = (double)delay * jitter;
    return delay - (int64_t)(span * (1.0 - rand01));
}

/* splitmix64 over an atomic counter: every call gets a distinct state, no lock needed. */
static atomic_uint_fast64_t rng_state;

static uint64_t
seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 32);
}

double
mongoq__random01(void)
{
    uint64_t z = atomic_fetch_add(&rng_state, 0x9E3779B97F4A7C15u);
    if (z == 0) {
        uint64_t expected = 0x9E3779B97F4A7C15u;
        uint64_t s = seed();
        atomic_compare_exchange_strong(&rng_state, &expected, s);
        z = s;
    }
    z += 0x9E3779B97F4A7C15u;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0; /* 53 bits / 2^53 */
}

/*
 * Backoff is pure logic: the source is compiled into this test directly, since the shared
 * library hides its internal (mongoq__) symbols.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>

#include "../../src/backoff.c"

Test(backoff, doubles_from_the_base)
{
    cr_assert_eq(mongoq__backoff_ms(1, 1000, 300000, 0, 0.5), 1000);
    cr_assert_eq(mongoq__backoff_ms(2, 1000, 300000, 0, 0.5), 2000);
    cr_assert_eq(mongoq__backoff_ms(3, 1000, 300000, 0, 0.5), 4000);
    cr_assert_eq(mongoq__backoff_ms(9, 1000, 300000, 0, 0.5), 256000);
}

Test(backoff, is_capped)
{
    cr_assert_eq(mongoq__backoff_ms(10, 1000, 300000, 0, 0), 300000);
    cr_assert_eq(mongoq__backoff_ms(INT32_MAX, 1000, 300000, 0, 0), 300000);
    cr_assert_eq(mongoq__backoff_ms(5, 1000, 500, 0, 0), 500, "a cap below the base wins");
    cr_assert_eq(mongoq__backoff_ms(100, INT64_MAX / 2, INT64_MAX, 0, 0), INT64_MAX,
                 "no overflow near the top");
}

Test(backoff, attempts_below_one_count_as_one)
{
    cr_assert_eq(mongoq__backoff_ms(0, 1000, 300000, 0, 0), 1000);
    cr_assert_eq(mongoq__backoff_ms(-5, 1000, 300000, 0, 0), 1000);
}

Test(backoff, zero_or_negative_base_means_no_delay)
{
    cr_assert_eq(mongoq__backoff_ms(3, 0, 300000, 0.2, 0.5), 0);
    cr_assert_eq(mongoq__backoff_ms(3, -1, 300000, 0.2, 0.5), 0);
    cr_assert_eq(mongoq__backoff_ms(3, 1000, 0, 0.2, 0.5), 0);
}

Test(backoff, jitter_only_shortens_within_its_fraction)
{
    cr_assert_eq(mongoq__backoff_ms(1, 1000, 300000, 0.2, 0.0), 800);
    cr_assert_eq(mongoq__backoff_ms(1, 1000, 300000, 0.2, 0.5), 900);
    int64_t top = mongoq__backoff_ms(1, 1000, 300000, 0.2, 0.999999);
    cr_assert(top >= 999 && top <= 1000);
    cr_assert_eq(mongoq__backoff_ms(20, 1000, 300000, 1.0, 0.0), 0, "full jitter may reach 0");
    cr_assert_eq(mongoq__backoff_ms(1, 1000, 300000, 5.0, 0.0), 0, "jitter above 1 acts as 1");
}

Test(backoff, negative_or_nan_jitter_means_none)
{
    cr_assert_eq(mongoq__backoff_ms(2, 1000, 300000, -1, 0.0), 2000);
    cr_assert_eq(mongoq__backoff_ms(2, 1000, 300000, NAN, 0.0), 2000);
}

Test(backoff, bad_random_values_are_tamed)
{
    cr_assert_eq(mongoq__backoff_ms(1, 1000, 300000, 0.2, -3), 800);
    cr_assert_eq(mongoq__backoff_ms(1, 1000, 300000, 0.2, 7), 800);
}

Test(backoff, random01_stays_in_range_and_varies)
{
    double first = mongoq__random01();
    bool varied = false;
    for (int i = 0; i < 10000; i++) {
        double r = mongoq__random01();
        cr_assert(r >= 0 && r < 1);
        varied = varied || r != first;
    }
    cr_assert(varied);
}

Test(backoff, jittered_delays_spread)
{
    int64_t lo = INT64_MAX, hi = 0;
    for (int i = 0; i < 1000; i++) {
        int64_t d = mongoq__backoff_ms(3, 1000, 300000, 0.2, mongoq__random01());
        cr_assert(d >= 3200 && d <= 4000, "%" PRId64, d);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    cr_assert(hi - lo > 400, "spread %" PRId64 "..%" PRId64, lo, hi);
}

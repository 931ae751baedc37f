#include <criterion/criterion.h>
#include <string.h>

#include <mongoq/mongoq.h>

Test(error, names_come_from_the_one_list)
{
    cr_assert_str_eq(mongoq_error_name(MONGOQ_ERROR_LEASE_LOST), "LEASE_LOST");
    cr_assert_str_eq(mongoq_error_name(MONGOQ_ERROR_INVALID_ARG), "INVALID_ARG");
    cr_assert_str_eq(mongoq_error_name(MONGOQ_ERROR_DUPLICATE), "DUPLICATE");
    cr_assert_str_eq(mongoq_error_name(12345), "UNKNOWN");
    cr_assert_str_eq(mongoq_error_description(-1), "unknown error");
    cr_assert(strlen(mongoq_error_description(MONGOQ_ERROR_NOT_FOUND)) > 0);
}

Test(version, string_matches_number)
{
    char buf[32];
    int n = mongoq_version_number();
    snprintf(buf, sizeof buf, "%d.%d.%d", n / 10000, n / 100 % 100, n % 100);
    cr_assert_str_eq(mongoq_version_string(), buf);
}

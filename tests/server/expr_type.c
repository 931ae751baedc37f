/*
 * mongoq-test-server: type expression operators ($type and the conversions $toString $toInt
 * $toLong $toDouble $toDecimal $toDate $toBool), rows of expr.c's ops[], failing as $convert
 * without onError does in mongod 6.0 (ConversionFailure 241).
 */
#include "expr-private.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool
ms__op_type(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    (void)name;
    (void)n;
    (void)error;
    const char *t = ms__type_name(args[0].value_type);
    set_string(out, t, strlen(t));
    return true;
}

/* Shortest decimal form that reads back as the same double, as mongod prints doubles. */
static void
format_double(double d, char *buf, size_t len)
{
    if (isnan(d)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, len, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) {
            return;
        }
    }
}

static void
format_date(int64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int millis = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
}

bool
ms__op_to_string(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
             bson_error_t *error)
{
    char buf[64];
    const bson_value_t *v = &args[0];
    (void)name;
    (void)n;
    switch (v->value_type) {
    case BSON_TYPE_EOD:
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
        set_null(out);
        return true;
    case BSON_TYPE_UTF8:
        bson_value_copy(v, out);
        return true;
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
        snprintf(buf, sizeof buf, "%" PRId64, as_i64(v));
        break;
    case BSON_TYPE_DOUBLE:
        format_double(v->value.v_double, buf, sizeof buf);
        break;
    case BSON_TYPE_DECIMAL128:
        bson_decimal128_to_string(&v->value.v_decimal128, buf);
        break;
    case BSON_TYPE_BOOL:
        snprintf(buf, sizeof buf, "%s", v->value.v_bool ? "true" : "false");
        break;
    case BSON_TYPE_OID:
        bson_oid_to_string(&v->value.v_oid, buf);
        break;
    case BSON_TYPE_DATE_TIME:
        format_date(v->value.v_datetime, buf, sizeof buf);
        break;
    default:
        return ms_set_error(
            error, MS_ERR_CONVERSION_FAILURE,
            "Unsupported conversion from %s to string in $convert with no onError value",
            ms__type_name(v->value_type));
    }
    set_string(out, buf, strlen(buf));
    return true;
}

bool
ms__op_to_number(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
             bson_error_t *error)
{
    const bson_value_t *v = &args[0];
    double d;
    (void)n;
    if (nullish(v)) {
        set_null(out);
        return true;
    }
    if (ms__is_number(v->value_type)) {
        d = ms__num_as_double(v);
    } else if (v->value_type == BSON_TYPE_BOOL) {
        d = v->value.v_bool;
    } else if (v->value_type == BSON_TYPE_DATE_TIME) {
        d = (double)v->value.v_datetime;
    } else if (v->value_type == BSON_TYPE_UTF8) {
        char *end;
        d = strtod(v->value.v_utf8.str, &end);
        if (end == v->value.v_utf8.str || *end) {
            return ms_set_error(error, MS_ERR_CONVERSION_FAILURE,
                                "Failed to parse number '%s' in $convert with no onError value",
                                v->value.v_utf8.str);
        }
    } else {
        return ms_set_error(error, MS_ERR_CONVERSION_FAILURE,
                            "Unsupported conversion from %s in $convert with no onError value",
                            ms__type_name(v->value_type));
    }
    if (isnan(d) && strcmp(name, "$toDouble") != 0 && strcmp(name, "$toDecimal") != 0) {
        return ms_set_error(error, MS_ERR_CONVERSION_FAILURE,
                            "Attempt to convert NaN value to integer type in $convert with no "
                            "onError value");
    }
    memset(out, 0, sizeof *out);
    if (strcmp(name, "$toDouble") == 0) {
        out->value_type = BSON_TYPE_DOUBLE;
        out->value.v_double = d;
    } else if (strcmp(name, "$toInt") == 0) {
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = (int32_t)(d > INT32_MAX ? INT32_MAX : d < INT32_MIN ? INT32_MIN : d);
    } else if (strcmp(name, "$toLong") == 0) {
        set_int64(out, is_int(v)                              ? as_i64(v)
                       : v->value_type == BSON_TYPE_DATE_TIME ? v->value.v_datetime
                                                              : ms__clamp_i64(d));
    } else if (strcmp(name, "$toDecimal") == 0) {
        ms__double_value(d, true, out);
    } else { /* $toDate */
        if (v->value_type == BSON_TYPE_UTF8 || v->value_type == BSON_TYPE_BOOL) {
            return ms_set_error(
                error, MS_ERR_CONVERSION_FAILURE,
                "Unsupported conversion from %s to date in $convert with no onError value",
                ms__type_name(v->value_type));
        }
        set_date(out, is_int(v)                              ? as_i64(v)
                      : v->value_type == BSON_TYPE_DATE_TIME ? v->value.v_datetime
                                                             : ms__clamp_i64(d));
    }
    return true;
}

bool
ms__op_to_bool(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
               bson_error_t *error)
{
    (void)name;
    (void)n;
    (void)error;
    if (nullish(&args[0])) {
        set_null(out);
    } else {
        set_bool(out, ms__value_truthy(&args[0]));
    }
    return true;
}

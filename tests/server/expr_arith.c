/*
 * mongoq-test-server: arithmetic in aggregation expressions ($add, $subtract, $multiply,
 * $divide, $mod, $abs, $ceil, $floor), $sum $avg $min $max over arguments or one array, and the
 * number widening they share with $group's $sum. Types and
 * overflows as mongod 6.0's src/mongo/db/pipeline/expression.cpp: int32 -> int64 -> double,
 * decimal approximated through double.
 */
#include "expr-private.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

/* ---- numbers --------------------------------------------------------------------------- */

void
ms__double_value(double d, bool decimal, bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    if (!decimal) {
        out->value_type = BSON_TYPE_DOUBLE;
        out->value.v_double = d;
        return;
    }
    /* decimal128 arithmetic is approximated through double */
    char buf[64];
    if (isnan(d)) {
        snprintf(buf, sizeof buf, "NaN");
    } else if (isinf(d)) {
        snprintf(buf, sizeof buf, d > 0 ? "Infinity" : "-Infinity");
    } else {
        snprintf(buf, sizeof buf, "%.15g", d);
    }
    out->value_type = BSON_TYPE_DECIMAL128;
    bson_decimal128_from_string(buf, &out->value.v_decimal128);
}

void
ms__sum_add(ms_sum_t *s, const bson_value_t *v)
{
    int kind = num_kind(v->value_type);
    if (kind <= 1 && s->kind <= 1) {
        int64_t x = as_i64(v);
        if ((x > 0 && s->i > INT64_MAX - x) || (x < 0 && s->i < INT64_MIN - x)) {
            s->d = (double)s->i + (double)x;
            s->kind = 2;
            return;
        }
        s->i += x;
        s->kind = kind > s->kind ? kind : s->kind;
        return;
    }
    if (s->kind <= 1) {
        s->d = (double)s->i;
        s->kind = 2;
    }
    s->d += ms__num_as_double(v);
    s->kind = kind > s->kind ? kind : s->kind;
}

void
ms__sum_value(const ms_sum_t *s, bson_value_t *out)
{
    memset(out, 0, sizeof *out);
    if (s->kind == 0 && s->i >= INT32_MIN && s->i <= INT32_MAX) {
        out->value_type = BSON_TYPE_INT32;
        out->value.v_int32 = (int32_t)s->i;
    } else if (s->kind <= 1) {
        set_int64(out, s->i);
    } else {
        ms__double_value(s->d, s->kind == 3, out);
    }
}

/*
 * Adds a date's milliseconds as mongod's AddState does: like a long that does not widen the
 * result's type (int stays int), and a long overflow moves the sum to double.
 */
static void
sum_add_millis(ms_sum_t *s, int64_t ms)
{
    bson_value_t v;
    int kind = s->kind;
    set_int64(&v, ms);
    ms__sum_add(s, &v);
    if (kind == 0 && s->kind == 1) {
        s->kind = 0;
    }
}

/*
 * The date a sum holding one date comes to (mongod's AddState::getValue): integral sums are
 * exact; a sum that went to double must fit in int64 or it is Overflow "date overflow in $add";
 * decimal sums are not checked (Decimal128::toLong gives INT64_MIN when out of range).
 */
static bool
sum_to_date(const ms_sum_t *s, int64_t *ms, bson_error_t *error)
{
    if (s->kind <= 1) {
        *ms = s->i;
        return true;
    }
    bool in_range = s->d >= -9223372036854775808.0 && s->d < 9223372036854775808.0;
    if (s->kind == 2 && !in_range) {
        return ms_set_error(error, MS_ERR_OVERFLOW, "date overflow in $add");
    }
    *ms = in_range ? (int64_t)llround(s->d) : INT64_MIN;
    return true;
}

/* ---- arithmetic ------------------------------------------------------------------------ */

/*
 * $add as mongod 6.0's ExpressionAdd (src/mongo/db/pipeline/expression.cpp, AddState): operands
 * in order, the first null or missing one makes the result null, a non-number that is not a
 * date is TypeMismatch, at most one date.
 */
bool
ms__op_add(const char *name, bson_value_t *args, size_t n, bson_value_t *out, bson_error_t *error)
{
    ms_sum_t sum = {0};
    bool have_date = false;
    (void)name;
    for (size_t i = 0; i < n; i++) {
        if (nullish(&args[i])) {
            set_null(out);
            return true;
        }
        if (args[i].value_type == BSON_TYPE_DATE_TIME) {
            if (have_date) {
                return ms_set_error(error, MS_ERR_LOCATION16612,
                                    "only one date allowed in an $add expression");
            }
            have_date = true;
            sum_add_millis(&sum, args[i].value.v_datetime);
        } else if (ms__is_number(args[i].value_type)) {
            ms__sum_add(&sum, &args[i]);
        } else {
            return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                "$add only supports numeric or date types, not %s",
                                ms__type_name(args[i].value_type));
        }
    }
    if (!have_date) {
        ms__sum_value(&sum, out);
        return true;
    }
    int64_t ms = 0;
    if (!sum_to_date(&sum, &ms, error)) {
        return false;
    }
    set_date(out, ms);
    return true;
}

/*
 * The milliseconds of a number subtracted from a date: Value::coerceToLong, which truncates a
 * double and refuses one outside int64 with 31109 (src/mongo/db/exec/document_value/value.cpp).
 */
static bool
millis_of(const bson_value_t *b, int64_t *ms, bson_error_t *error)
{
    if (is_int(b)) {
        *ms = as_i64(b);
        return true;
    }
    double d = ms__num_as_double(b);
    bool in_range = d >= -9223372036854775808.0 && d < 9223372036854775808.0;
    if (b->value_type == BSON_TYPE_DOUBLE && !in_range) {
        return ms_set_error(error, MS_ERR_LOCATION31109,
                            "Can't coerce out of range value %g to long", d);
    }
    *ms = in_range ? (int64_t)d : INT64_MIN;
    return true;
}

/* Date arithmetic in mongod's Date_t is unchecked int64 arithmetic: it wraps, it never fails. */
static int64_t
wrapping_sub(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a - (uint64_t)b);
}

/* $subtract with a date on the left (ExpressionSubtract::apply in expression.cpp). */
static bool
subtract_from_date(const bson_value_t *a, const bson_value_t *b, bson_value_t *out,
                   bson_error_t *error)
{
    int64_t ms = 0;
    if (b->value_type == BSON_TYPE_DATE_TIME) {
        set_int64(out, wrapping_sub(a->value.v_datetime, b->value.v_datetime));
        return true;
    }
    if (!ms__is_number(b->value_type)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH, "can't $subtract %s from Date",
                            ms__type_name(b->value_type));
    }
    if (!millis_of(b, &ms, error)) {
        return false;
    }
    set_date(out, wrapping_sub(a->value.v_datetime, ms));
    return true;
}

bool
ms__op_subtract(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                bson_error_t *error)
{
    const bson_value_t *a = &args[0], *b = &args[1];
    (void)name;
    (void)n;
    bool numbers = ms__is_number(a->value_type) && ms__is_number(b->value_type);
    if (!numbers && (nullish(a) || nullish(b))) {
        set_null(out);
        return true;
    }
    if (a->value_type == BSON_TYPE_DATE_TIME) {
        return subtract_from_date(a, b, out, error);
    }
    if (!numbers) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH, "can't $subtract %s from %s",
                            ms__type_name(b->value_type), ms__type_name(a->value_type));
    }
    if (is_int(a) && is_int(b)) {
        int64_t x = as_i64(a), y = as_i64(b);
        if (!((y < 0 && x > INT64_MAX + y) || (y > 0 && x < INT64_MIN + y))) {
            ms_sum_t s = {.kind =
                              a->value_type == BSON_TYPE_INT64 || b->value_type == BSON_TYPE_INT64,
                          .i = x - y};
            ms__sum_value(&s, out);
            return true;
        }
    }
    bool dec = a->value_type == BSON_TYPE_DECIMAL128 || b->value_type == BSON_TYPE_DECIMAL128;
    ms__double_value(ms__num_as_double(a) - ms__num_as_double(b), dec, out);
    return true;
}

bool
ms__op_multiply(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                bson_error_t *error)
{
    int kind = 0;
    int64_t i = 1;
    double d = 1;
    (void)name;
    for (size_t k = 0; k < n; k++) {
        if (nullish(&args[k])) {
            set_null(out);
            return true;
        }
        if (!ms__is_number(args[k].value_type)) {
            return ms_set_error(error, MS_ERR_LOCATION16555,
                                "$multiply only supports numeric types, not %s",
                                ms__type_name(args[k].value_type));
        }
    }
    for (size_t k = 0; k < n; k++) {
        int vk = num_kind(args[k].value_type);
        if (kind <= 1 && vk <= 1) {
            long double p = (long double)i * (long double)as_i64(&args[k]);
            if (p <= (long double)INT64_MAX && p >= (long double)INT64_MIN) {
                i *= as_i64(&args[k]);
                kind = vk > kind ? vk : kind;
                continue;
            }
        }
        if (kind <= 1) {
            d = (double)i;
            kind = 2;
        }
        d *= ms__num_as_double(&args[k]);
        kind = vk > kind ? vk : kind;
    }
    ms_sum_t s = {.kind = kind, .i = i, .d = d};
    ms__sum_value(&s, out);
    return true;
}

bool
ms__op_divide_mod(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                  bson_error_t *error)
{
    const bson_value_t *a = &args[0], *b = &args[1];
    bool is_mod = strcmp(name, "$mod") == 0;
    (void)n;
    if (nullish(a) || nullish(b)) {
        set_null(out);
        return true;
    }
    if (!ms__is_number(a->value_type) || !ms__is_number(b->value_type)) {
        return ms_set_error(error, is_mod ? MS_ERR_LOCATION16611 : MS_ERR_LOCATION16609,
                            "%s only supports numeric types, not %s and %s", name,
                            ms__type_name(a->value_type), ms__type_name(b->value_type));
    }
    double y = ms__num_as_double(b);
    if (y == 0) {
        return is_mod ? ms_set_error(error, MS_ERR_LOCATION16610, "can't $mod by zero")
                      : ms_set_error(error, MS_ERR_BAD_VALUE, "can't $divide by zero");
    }
    bool dec = a->value_type == BSON_TYPE_DECIMAL128 || b->value_type == BSON_TYPE_DECIMAL128;
    if (!is_mod) {
        ms__double_value(ms__num_as_double(a) / y, dec, out);
    } else if (is_int(a) && is_int(b)) {
        int64_t bi = as_i64(b);
        ms_sum_t s = {.kind = a->value_type == BSON_TYPE_INT64 || b->value_type == BSON_TYPE_INT64,
                      .i = bi == -1 ? 0 : as_i64(a) % bi};
        ms__sum_value(&s, out);
    } else {
        ms__double_value(fmod(ms__num_as_double(a), y), dec, out);
    }
    return true;
}

bool
ms__op_unary_math(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
                  bson_error_t *error)
{
    const bson_value_t *a = &args[0];
    (void)n;
    if (nullish(a)) {
        set_null(out);
        return true;
    }
    if (!ms__is_number(a->value_type)) {
        return ms_set_error(error, MS_ERR_LOCATION28765, "%s only supports numeric types, not %s",
                            name, ms__type_name(a->value_type));
    }
    if (is_int(a)) {
        int64_t x = as_i64(a);
        if (strcmp(name, "$abs") == 0 && x < 0) {
            if (x == INT64_MIN) {
                return ms_set_error(error, MS_ERR_LOCATION28680,
                                    "can't take $abs of long long min");
            }
            x = -x;
        }
        ms_sum_t s = {.kind = a->value_type == BSON_TYPE_INT64, .i = x};
        ms__sum_value(&s, out);
        return true;
    }
    double d = ms__num_as_double(a);
    d = strcmp(name, "$abs") == 0 ? fabs(d) : strcmp(name, "$ceil") == 0 ? ceil(d) : floor(d);
    ms__double_value(d, a->value_type == BSON_TYPE_DECIMAL128, out);
    return true;
}

/* ---- $sum, $avg, $min, $max ------------------------------------------------------------- */

/* $min/$max/$sum/$avg as expressions: over the arguments, or the elements of one array. */
bool
ms__op_list_reduce(const char *name, bson_value_t *args, size_t n, bson_value_t *out,
               bson_error_t *error)
{
    bson_iter_t it;
    bool from_array = n == 1 && args[0].value_type == BSON_TYPE_ARRAY;
    bool is_sum = strcmp(name, "$sum") == 0, is_avg = strcmp(name, "$avg") == 0;
    bool is_max = strcmp(name, "$max") == 0;
    ms_sum_t sum = {0};
    size_t count = 0;
    bson_value_t best; /* struct copy; bytes borrowed from args */
    bool have_best = false;
    (void)error;
    if (from_array) {
        bson_iter_init_from_data(&it, args[0].value.v_doc.data, args[0].value.v_doc.data_len);
    }
    for (size_t i = 0;; i++) {
        const bson_value_t *v;
        if (from_array) {
            if (!bson_iter_next(&it)) {
                break;
            }
            v = bson_iter_value(&it);
        } else {
            if (i >= n) {
                break;
            }
            v = &args[i];
        }
        if (is_sum || is_avg) {
            if (ms__is_number(v->value_type)) {
                ms__sum_add(&sum, v);
                count++;
            }
        } else if (!nullish(v)) {
            int c = have_best ? ms_value_cmp(v, &best) : 0;
            if (!have_best || (is_max ? c > 0 : c < 0)) {
                best = *v;
                have_best = true;
            }
        }
    }
    if (is_sum) {
        ms__sum_value(&sum, out);
    } else if (is_avg) {
        if (count == 0) {
            set_null(out);
        } else {
            double total = sum.kind <= 1 ? (double)sum.i : sum.d;
            ms__double_value(total / (double)count, sum.kind == 3, out);
        }
    } else if (have_best) {
        bson_value_copy(&best, out);
    } else {
        set_null(out);
    }
    return true;
}

/* $rand (manual: reference/operator/aggregation/rand): a double in [0, 1); it takes only {}
 * (ExpressionRandom::parse, src/mongo/db/pipeline/expression.cpp: 3040500). */
bool
ms__op_rand(const ms_expr_ev_t *ev, const char *name, const bson_value_t *arg, bson_value_t *out,
            bson_error_t *error)
{
    static _Thread_local uint64_t state;
    (void)ev;
    (void)name;
    if (arg->value_type != BSON_TYPE_DOCUMENT || arg->value.v_doc.data_len != 5) {
        return ms_set_error(error, MS_ERR_LOCATION3040500, "$rand not allowed to have arguments");
    }
    if (state == 0) {
        state = (uint64_t)(uintptr_t)&state ^ (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15ull;
    }
    state ^= state << 13; /* xorshift64 */
    state ^= state >> 7;
    state ^= state << 17;
    memset(out, 0, sizeof *out);
    out->value_type = BSON_TYPE_DOUBLE;
    out->value.v_double = (double)(state >> 11) / 9007199254740992.0;
    return true;
}

#include "lang_test_util.h"

TestSuite(value, .fini = pool_free);

static int
cmp(const char *a, const char *b)
{
    bson_value_t va = V(a), vb = V(b);
    return ms_value_cmp(&va, &vb);
}

Test(value, cross_type_order_follows_mongodb)
{
    const char *order[] = {
        "{'v': {'$minKey': 1}}",
        "{'v': null}",
        "{'v': -5}",
        "{'v': 'abc'}",
        "{'v': {'a': 1}}",
        "{'v': [1]}",
        "{'v': {'$binary': {'base64': 'AA==', 'subType': '00'}}}",
        "{'v': {'$oid': '000000000000000000000001'}}",
        "{'v': false}",
        "{'v': true}",
        "{'v': {'$date': 0}}",
        "{'v': {'$timestamp': {'t': 1, 'i': 1}}}",
        "{'v': {'$regularExpression': {'pattern': 'a', 'options': ''}}}",
        "{'v': {'$maxKey': 1}}",
    };
    size_t n = sizeof order / sizeof order[0];
    for (size_t i = 0; i + 1 < n; i++) {
        cr_expect_lt(cmp(order[i], order[i + 1]), 0, "%s < %s", order[i], order[i + 1]);
        cr_expect_gt(cmp(order[i + 1], order[i]), 0, "%s > %s", order[i + 1], order[i]);
    }
}

Test(value, numbers_compare_by_value_across_types)
{
    cr_expect_eq(cmp("{'v': 1}", "{'v': 1.0}"), 0);
    cr_expect_eq(cmp("{'v': {'$numberLong': '1'}}", "{'v': 1.0}"), 0);
    cr_expect_eq(cmp("{'v': {'$numberDecimal': '1'}}", "{'v': 1}"), 0);
    cr_expect_lt(cmp("{'v': 1}", "{'v': 1.5}"), 0);
    cr_expect_gt(cmp("{'v': {'$numberLong': '3'}}", "{'v': 2.5}"), 0);
    /* 2^53 + 1 is not a double: the int64 must still compare above 2^53 */
    cr_expect_gt(cmp("{'v': {'$numberLong': '9007199254740993'}}", "{'v': 9007199254740992.0}"), 0);
    cr_expect_lt(cmp("{'v': {'$numberDouble': 'NaN'}}", "{'v': -1e300}"), 0);
    cr_expect_eq(cmp("{'v': {'$numberDouble': 'NaN'}}", "{'v': {'$numberDouble': 'NaN'}}"), 0);
}

Test(value, documents_and_arrays_compare_element_by_element)
{
    cr_expect_lt(cmp("{'v': {'a': 1}}", "{'v': {'a': 1, 'b': 1}}"), 0);
    cr_expect_lt(cmp("{'v': {'a': 9}}", "{'v': {'b': 0}}"), 0, "field names before values");
    cr_expect_lt(cmp("{'v': {'a': 9}}", "{'v': {'a': 'x'}}"), 0, "types before names");
    cr_expect_eq(cmp("{'v': {'a': 1}}", "{'v': {'a': 1.0}}"), 0);
    cr_expect_lt(cmp("{'v': [1, 2]}", "{'v': [1, 3]}"), 0);
    cr_expect_lt(cmp("{'v': []}", "{'v': [0]}"), 0);
    cr_expect_lt(cmp("{'v': 'ab'}", "{'v': 'abc'}"), 0);
    cr_expect_lt(cmp("{'v': 'B'}", "{'v': 'a'}"), 0, "binary string order");
}

Test(value, missing_sorts_like_null)
{
    bson_value_t null_v = V("{'v': null}");
    bson_value_t one = V("{'v': 1}");
    cr_expect_eq(ms_value_cmp(NULL, &null_v), 0);
    cr_expect_lt(ms_value_cmp(NULL, &one), 0);
    cr_expect_eq(ms_type_rank(BSON_TYPE_INT32), ms_type_rank(BSON_TYPE_DOUBLE));
}

Test(value, path_get_reads_dotted_paths_and_indexes)
{
    bson_t *doc = J("{'a': {'b': [10, {'c': 'x'}]}}");
    bson_value_t v;
    cr_assert(ms_path_get(doc, "a.b.0", &v));
    cr_expect_eq(v.value_type, BSON_TYPE_INT32);
    cr_expect_eq(v.value.v_int32, 10);
    cr_assert(ms_path_get(doc, "a.b.1.c", &v));
    cr_expect_str_eq(v.value.v_utf8.str, "x");
    cr_expect_not(ms_path_get(doc, "a.c", &v));
    cr_expect_not(ms_path_get(doc, "a.b.c", &v), "no array traversal");
}

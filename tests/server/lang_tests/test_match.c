#include "lang_test_util.h"

TestSuite(match, .fini = pool_free);

static bool
M(const char *filter, const char *doc)
{
    bson_error_t err;
    ms_matcher_t *m = ms_matcher_new(J(filter), &err);
    cr_assert(m, "filter %s rejected: %s", filter, err.message);
    bool r = ms_matcher_matches(m, J(doc), tctx());
    ms_matcher_destroy(m);
    return r;
}

/* {a: {$type: t}}: libbson's JSON reader takes {$type: ...} for legacy binary syntax. */
static bool
M_type(const char *type_json, const char *doc)
{
    char buf[256];
    snprintf(buf, sizeof buf, "{'t': %s}", type_json);
    bson_value_t tv;
    ms_path_get(J(buf), "t", &tv);
    bson_t *filter = keep(bson_new());
    bson_t inner;
    bson_append_document_begin(filter, "a", 1, &inner);
    bson_append_value(&inner, "$type", 5, &tv);
    bson_append_document_end(filter, &inner);
    bson_error_t err;
    ms_matcher_t *m = ms_matcher_new(filter, &err);
    cr_assert(m, "$type %s rejected: %s", type_json, err.message);
    bool r = ms_matcher_matches(m, J(doc), tctx());
    ms_matcher_destroy(m);
    return r;
}

static int
bad_filter(const char *filter, bson_error_t *err)
{
    ms_matcher_t *m = ms_matcher_new(J(filter), err);
    cr_assert_null(m, "filter %s accepted", filter);
    return (int)err->code;
}

Test(match, equality_and_dotted_paths)
{
    cr_expect(M("{'a': 1}", "{'a': 1.0}"));
    cr_expect_not(M("{'a': 1}", "{'a': '1'}"));
    cr_expect(M("{'a.b': 2}", "{'a': {'b': 2}}"));
    cr_expect(M("{'a': {'b': 2}}", "{'a': {'b': 2}}"));
    cr_expect_not(M("{'a': {'b': 2}}", "{'a': {'b': 2, 'c': 1}}"), "document equality is exact");
    cr_expect(M("{}", "{'x': 1}"));
    cr_expect(M("{'a': 1, 'b': 2}", "{'a': 1, 'b': 2}"));
    cr_expect_not(M("{'a': 1, 'b': 2}", "{'a': 1, 'b': 3}"));
}

Test(match, arrays_match_any_element_or_the_whole_array)
{
    cr_expect(M("{'a': 2}", "{'a': [1, 2, 3]}"));
    cr_expect(M("{'a': [1, 2]}", "{'a': [1, 2]}"));
    cr_expect_not(M("{'a': [2, 1]}", "{'a': [1, 2]}"));
    cr_expect(M("{'a': [1, 2]}", "{'a': [[1, 2], 3]}"), "nested array element");
    cr_expect_not(M("{'a': 1}", "{'a': [[1, 2], 3]}"), "only one level of elements");
    cr_expect(M("{'a.b': 5}", "{'a': [{'b': 1}, {'b': 5}]}"), "dotted path into array of documents");
    cr_expect(M("{'a.1': 'y'}", "{'a': ['x', 'y']}"), "numeric component indexes the array");
    cr_expect(M("{'a': {'$gt': 2, '$lt': 4}}", "{'a': [1, 5]}"),
              "each bound may be met by a different element");
    cr_expect_not(M("{'a': {'$elemMatch': {'$gt': 2, '$lt': 4}}}", "{'a': [1, 5]}"));
    cr_expect(M("{'a': {'$elemMatch': {'$gt': 2, '$lt': 4}}}", "{'a': [1, 3]}"));
    cr_expect(M("{'a': {'$elemMatch': {'b': 1, 'c': 2}}}", "{'a': [{'b': 1}, {'b': 1, 'c': 2}]}"));
    cr_expect_not(M("{'a': {'$elemMatch': {'b': 1, 'c': 2}}}", "{'a': [{'b': 1}, {'c': 2}]}"));
}

Test(match, negations_negate_the_any_element_rule)
{
    cr_expect_not(M("{'a': {'$ne': 2}}", "{'a': [1, 2]}"));
    cr_expect(M("{'a': {'$ne': 3}}", "{'a': [1, 2]}"));
    cr_expect(M("{'a': {'$ne': 3}}", "{}"), "missing is not equal to 3");
    cr_expect_not(M("{'a': {'$nin': [2, 9]}}", "{'a': [1, 2]}"));
    cr_expect(M("{'a': {'$nin': [3, 9]}}", "{'b': 1}"));
    cr_expect(M("{'a': {'$not': {'$gt': 5}}}", "{'a': 'str'}"), "$not of a type-bracketed op");
    cr_expect(M("{'$nor': [{'a': 1}, {'b': 1}]}", "{'a': 2}"));
    cr_expect_not(M("{'$nor': [{'a': 1}, {'b': 1}]}", "{'b': 1}"));
}

Test(match, comparisons_are_type_bracketed)
{
    cr_expect_not(M("{'a': {'$gt': 5}}", "{'a': '6'}"));
    cr_expect_not(M("{'a': {'$lt': 5}}", "{'a': null}"));
    cr_expect_not(M("{'a': {'$lt': 'z'}}", "{'a': 1}"));
    cr_expect(M("{'a': {'$gt': 5}}", "{'a': {'$numberLong': '6'}}"));
    cr_expect(M("{'a': {'$gte': 5.0}}", "{'a': 5}"));
    cr_expect(M("{'a': {'$lte': {'$date': 1000}}}", "{'a': {'$date': 999}}"));
    cr_expect_not(M("{'a': {'$lte': {'$date': 1000}}}", "{'a': 999}"));
    cr_expect(M("{'a': {'$gt': {'$minKey': 1}}}", "{'a': 'anything'}"), "MinKey bound is not bracketed");
    cr_expect_not(M("{'a': {'$gt': 1}}", "{'a': {'$numberDouble': 'NaN'}}"));
    cr_expect_not(M("{'a': {'$gt': 1}}", "{}"));
}

Test(match, null_matches_missing_and_null)
{
    cr_expect(M("{'a': null}", "{}"));
    cr_expect(M("{'a': null}", "{'a': null}"));
    cr_expect_not(M("{'a': null}", "{'a': 0}"));
    cr_expect(M("{'a.b': null}", "{'a': 5}"));
    cr_expect(M("{'a': {'$in': [null, 3]}}", "{'b': 1}"));
    cr_expect(M("{'a': {'$gte': null}}", "{}"));
    cr_expect(M("{'a': {'$ne': null}}", "{'a': 1}"));
    cr_expect_not(M("{'a': {'$ne': null}}", "{'c': 1}"));
}

Test(match, exists_type_size_mod_all_regex)
{
    cr_expect(M("{'a': {'$exists': true}}", "{'a': null}"));
    cr_expect_not(M("{'a': {'$exists': true}}", "{}"));
    cr_expect(M("{'a': {'$exists': false}}", "{}"));
    cr_expect(M("{'a.b': {'$exists': false}}", "{'a': [1, 2]}"));
    cr_expect(M_type("'number'", "{'a': 1.5}"));
    cr_expect(M_type("'string'", "{'a': [1, 'x']}"), "$type looks at elements");
    cr_expect(M_type("'array'", "{'a': [1]}"));
    cr_expect(M_type("2", "{'a': 'x'}"));
    cr_expect(M_type("['int', 'long']", "{'a': {'$numberLong': '5'}}"));
    cr_expect_not(M_type("'double'", "{'a': 5}"));
    cr_expect(M("{'a': {'$size': 2}}", "{'a': [1, [2, 3]]}"));
    cr_expect_not(M("{'a': {'$size': 1}}", "{'a': 1}"));
    cr_expect(M("{'a': {'$mod': [4, 1]}}", "{'a': 9}"));
    cr_expect(M("{'a': {'$all': [1, 3]}}", "{'a': [3, 2, 1]}"));
    cr_expect_not(M("{'a': {'$all': [1, 4]}}", "{'a': [3, 2, 1]}"));
    cr_expect(M("{'a': {'$regex': '^ab.d$'}}", "{'a': 'abcd'}"));
    cr_expect(M("{'a': {'$regex': '^AB', '$options': 'i'}}", "{'a': 'abc'}"));
    cr_expect(M("{'a': {'$regularExpression': {'pattern': '\\\\d+', 'options': ''}}}", "{'a': 'x12'}"));
    cr_expect_not(M("{'a': {'$regex': '^b'}}", "{'a': 'abc'}"));
    cr_expect(M("{'a': {'$in': [{'$regularExpression': {'pattern': '^x', 'options': ''}}]}}", "{'a': 'xyz'}"));
}

Test(match, logical_operators)
{
    cr_expect(M("{'$or': [{'a': 1}, {'b': 2}]}", "{'b': 2}"));
    cr_expect_not(M("{'$or': [{'a': 1}, {'b': 2}]}", "{'b': 3}"));
    cr_expect(M("{'$and': [{'a': 1}, {'b': 2}]}", "{'a': 1, 'b': 2}"));
    cr_expect_not(M("{'$and': [{'a': 1}, {'b': 2}]}", "{'a': 1}"));
    cr_expect(M("{'a': {'$not': {'$in': [1, 2]}}}", "{'a': 3}"));
    cr_expect(M("{'$comment': 'hi', 'a': 1}", "{'a': 1}"));
}

Test(match, expr_sees_fields_and_now)
{
    cr_expect(M("{'$expr': {'$lt': ['$a', '$b']}}", "{'a': 1, 'b': 2}"));
    cr_expect_not(M("{'$expr': {'$lt': ['$a', '$b']}}", "{'a': 3, 'b': 2}"));
    cr_expect(M("{'$expr': {'$lt': ['$lease', '$$NOW']}}", "{'lease': {'$date': 1000}}"));
    cr_expect_not(M("{'$expr': {'$lt': ['$lease', '$$NOW']}}", "{'lease': {'$date': 1800000000000}}"));
    cr_expect_not(M("{'$expr': {'$eq': ['$missing', null]}}", "{}"), "missing is not null in $expr");
    cr_expect(M("{'$expr': {'$divide': [1, 0]}}", "{}") == false, "runtime errors do not match");
}

Test(match, errors_as_mongod)
{
    bson_error_t err;
    cr_expect_eq(bad_filter("{'a': {'$foo': 1}}", &err), 2);
    cr_expect_str_eq(err.message, "unknown operator: $foo");
    cr_expect_eq(bad_filter("{'$foo': 1}", &err), 2);
    cr_expect(strncmp(err.message, "unknown top level operator: $foo", 32) == 0, "%s", err.message);
    cr_expect_eq(bad_filter("{'a': {'$in': 1}}", &err), 2);
    cr_expect_str_eq(err.message, "$in needs an array");
    cr_expect_eq(bad_filter("{'$and': []}", &err), 2);
    cr_expect_str_eq(err.message, "$and/$or/$nor must be a nonempty array");
    cr_expect_eq(bad_filter("{'$or': [1]}", &err), 2);
    cr_expect_eq(bad_filter("{'$and': {}}", &err), 2);
    cr_expect_eq(bad_filter("{'a': {'$not': 5}}", &err), 2);
    cr_expect_eq(bad_filter("{'$expr': {'$nosuch': 1}}", &err), 168);
    cr_expect_str_eq(err.message, "Unrecognized expression '$nosuch'");
}

Test(match, deep_nesting_is_rejected_not_crashed)
{
    bson_t *filter = keep(bson_new());
    bson_t *cur = bson_new();
    BSON_APPEND_INT32(cur, "x", 1);
    for (int i = 0; i < 150; i++) {
        bson_t *wrap = bson_new();
        bson_t arr;
        bson_append_array_begin(wrap, "$and", 4, &arr);
        bson_append_document(&arr, "0", 1, cur);
        bson_append_array_end(wrap, &arr);
        bson_destroy(cur);
        cur = wrap;
    }
    bson_concat(filter, cur);
    bson_destroy(cur);
    bson_error_t err;
    cr_expect_null(ms_matcher_new(filter, &err));
    cr_expect_eq(err.code, 2);
}

#include "lang_test_util.h"

TestSuite(pipeline, .fini = pool_free);
TestSuite(project, .fini = pool_free);
TestSuite(sort, .fini = pool_free);
TestSuite(expr, .fini = pool_free);

/* Runs pipeline (JSON {'v': [...]}) over docs (JSON {'v': [...]}); returns {'r': [results]}. */
static bson_t *
P(const char *pipeline_json, const char *docs_json)
{
    bson_value_t pv = V(pipeline_json), dv = V(docs_json);
    bson_t pipeline, docs;
    bson_iter_t it;
    ms_docvec_t in, out;
    bson_error_t err;
    bson_init_static(&pipeline, pv.value.v_doc.data, pv.value.v_doc.data_len);
    bson_init_static(&docs, dv.value.v_doc.data, dv.value.v_doc.data_len);
    ms_docvec_init(&in);
    bson_iter_init(&it, &docs);
    while (bson_iter_next(&it)) {
        bson_t d;
        bson_init_static(&d, bson_iter_value(&it)->value.v_doc.data, bson_iter_value(&it)->value.v_doc.data_len);
        ms_docvec_push_copy(&in, &d);
    }
    cr_assert(ms_pipeline_validate(&pipeline, &err), "%s", err.message);
    cr_assert(ms_pipeline_run(&pipeline, &in, tctx(), &out, &err), "run: %s", err.message);
    bson_t *r = keep(bson_new());
    bson_t arr;
    bson_append_array_begin(r, "r", 1, &arr);
    for (size_t i = 0; i < out.len; i++) {
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        bson_append_document(&arr, key, -1, out.docs[i]);
    }
    bson_append_array_end(r, &arr);
    ms_docvec_destroy(&in);
    ms_docvec_destroy(&out);
    return r;
}

static int
P_err(const char *pipeline_json, bson_error_t *err)
{
    bson_value_t pv = V(pipeline_json);
    bson_t pipeline;
    bson_init_static(&pipeline, pv.value.v_doc.data, pv.value.v_doc.data_len);
    cr_assert_not(ms_pipeline_validate(&pipeline, err), "pipeline %s accepted", pipeline_json);
    return (int)err->code;
}

static const char *docs5 = "{'v': [{'_id': 1, 'k': 'a', 'n': 5}, {'_id': 2, 'k': 'b', 'n': 1}, "
                           "{'_id': 3, 'k': 'a', 'n': 3.5}, {'_id': 4, 'n': 'x'}, {'_id': 5, 'k': null, 'n': 2}]}";

Test(pipeline, match_sort_skip_limit)
{
    assert_doc_eq(P("{'v': [{'$match': {'n': {'$gte': 2}}}, {'$sort': {'n': -1}}, {'$skip': 1}, {'$limit': 1}, "
                    "{'$project': {'_id': 1}}]}",
                    docs5),
                  "{'r': [{'_id': 3}]}");
    assert_doc_eq(P("{'v': [{'$sort': {'k': 1, '_id': -1}}, {'$project': {'_id': 1}}]}", docs5),
                  "{'r': [{'_id': 5}, {'_id': 4}, {'_id': 3}, {'_id': 1}, {'_id': 2}]}");
}

Test(pipeline, group_accumulators)
{
    assert_doc_eq(P("{'v': [{'$group': {'_id': '$k', 'total': {'$sum': '$n'}, 'count': {'$sum': 1}, "
                    "'avg': {'$avg': '$n'}, 'min': {'$min': '$n'}, 'max': {'$max': '$n'}, "
                    "'first': {'$first': '$_id'}, 'last': {'$last': '$_id'}, 'ids': {'$push': '$_id'}, "
                    "'set': {'$addToSet': '$k'}, 'c': {'$count': {}}}}, {'$sort': {'_id': 1}}]}",
                    docs5),
                  "{'r': ["
                  "{'_id': null, 'total': 2, 'count': 2, 'avg': 2.0, 'min': 2, 'max': 'x', 'first': 4, 'last': 5, "
                  "'ids': [4, 5], 'set': [null], 'c': 2},"
                  "{'_id': 'a', 'total': 8.5, 'count': 2, 'avg': 4.25, 'min': 3.5, 'max': 5, 'first': 1, 'last': 3, "
                  "'ids': [1, 3], 'set': ['a'], 'c': 2},"
                  "{'_id': 'b', 'total': 1, 'count': 1, 'avg': 1.0, 'min': 1, 'max': 1, 'first': 2, 'last': 2, "
                  "'ids': [2], 'set': ['b'], 'c': 1}]}");
}

Test(pipeline, group_by_null_and_documents)
{
    assert_doc_eq(P("{'v': [{'$group': {'_id': null, 'n': {'$sum': 1}}}]}", docs5), "{'r': [{'_id': null, 'n': 5}]}");
    assert_doc_eq(P("{'v': [{'$group': {'_id': {'k': '$k', 'big': {'$gt': ['$n', 2]}}, 'n': {'$sum': 1}}}, "
                    "{'$sort': {'_id.k': 1, '_id.big': 1}}]}",
                    "{'v': [{'k': 1, 'n': 1}, {'k': 1, 'n': 3}, {'k': 1.0, 'n': 9}]}"),
                  "{'r': [{'_id': {'k': 1, 'big': false}, 'n': 1}, {'_id': {'k': 1, 'big': true}, 'n': 2}]}");
    assert_doc_eq(P("{'v': [{'$group': {'_id': null, 'n': {'$sum': 1}}}]}", "{'v': []}"), "{'r': []}");
}

Test(pipeline, count_project_unset_replace_add_fields)
{
    assert_doc_eq(P("{'v': [{'$match': {'k': 'a'}}, {'$count': 'total'}]}", docs5), "{'r': [{'total': 2}]}");
    assert_doc_eq(P("{'v': [{'$match': {'k': 'zzz'}}, {'$count': 'total'}]}", docs5), "{'r': []}");
    assert_doc_eq(P("{'v': [{'$limit': 1}, {'$project': {'_id': 0, 'k': 1, 'twice': {'$multiply': ['$n', 2]}}}]}", docs5),
                  "{'r': [{'k': 'a', 'twice': 10}]}");
    assert_doc_eq(P("{'v': [{'$limit': 1}, {'$unset': 'n'}]}", docs5), "{'r': [{'_id': 1, 'k': 'a'}]}");
    assert_doc_eq(P("{'v': [{'$limit': 1}, {'$replaceRoot': {'newRoot': {'id': '$_id'}}}]}", docs5),
                  "{'r': [{'id': 1}]}");
    assert_doc_eq(P("{'v': [{'$limit': 1}, {'$addFields': {'at': '$$NOW', 'k': '$$REMOVE'}}]}", docs5),
                  "{'r': [{'_id': 1, 'n': 5, 'at': {'$date': 1700000000000}}]}");
}

Test(pipeline, errors_as_mongod)
{
    bson_error_t err;
    cr_expect_eq(P_err("{'v': [{'$bogus': 1}]}", &err), 40324);
    cr_expect_str_eq(err.message, "Unrecognized pipeline stage name: '$bogus'");
    cr_expect_eq(P_err("{'v': [{'$match': {}, '$sort': {'a': 1}}]}", &err), 40323);
    cr_expect_eq(P_err("{'v': [{'$group': {'n': {'$sum': 1}}}]}", &err), 15955);
    cr_expect_eq(P_err("{'v': [{'$group': {'_id': 1, 'n': {'$bogus': 1}}}]}", &err), 15952);
    cr_expect_eq(P_err("{'v': [{'$project': {'a': {'$bogus': 1}}}]}", &err), 168);
    cr_expect_eq(P_err("{'v': [{'$limit': 0}]}", &err), 15958);
    cr_expect_eq(P_err("{'v': [{'$skip': -1}]}", &err), 15956);
    cr_expect_eq(P_err("{'v': [{'$sort': {'a': 2}}]}", &err), 15975);
    cr_expect_eq(P_err("{'v': [{'$count': ''}]}", &err), 40156);
    cr_expect_eq(P_err("{'v': [{'$match': {'a': {'$bad': 1}}}]}", &err), 2);
    cr_expect_eq(P_err("{'v': [{'$project': {}}]}", &err), 51272);
    cr_expect_eq(P_err("{'v': [{'$changeStream': {}}]}", &err), 40324);
}

/* ---- projection -------------------------------------------------------------------------- */

static bson_t *
PR(const char *projection, const char *doc)
{
    bson_t out;
    bson_error_t err;
    cr_assert(ms_project(J(projection), J(doc), tctx(), &out, &err), "%s: %s", projection, err.message);
    bson_t *copy = keep(bson_copy(&out));
    bson_destroy(&out);
    return copy;
}

static int
PR_err(const char *projection, bson_error_t *err)
{
    bson_t out;
    cr_assert_not(ms_project(J(projection), J("{'a': 1}"), tctx(), &out, err), "%s accepted", projection);
    bson_destroy(&out);
    return (int)err->code;
}

Test(project, inclusion_exclusion_and_id)
{
    const char *doc = "{'_id': 1, 'a': 1, 'b': {'c': 2, 'd': 3}, 'e': [{'c': 1, 'x': 0}, 5]}";
    assert_doc_eq(PR("{'a': 1}", doc), "{'_id': 1, 'a': 1}");
    assert_doc_eq(PR("{'a': 1, '_id': 0}", doc), "{'a': 1}");
    assert_doc_eq(PR("{'_id': 0}", doc), "{'a': 1, 'b': {'c': 2, 'd': 3}, 'e': [{'c': 1, 'x': 0}, 5]}");
    assert_doc_eq(PR("{'b': 0, 'e': 0}", doc), "{'_id': 1, 'a': 1}");
    assert_doc_eq(PR("{'b.c': 1}", doc), "{'_id': 1, 'b': {'c': 2}}");
    assert_doc_eq(PR("{'b': {'d': 1}}", doc), "{'_id': 1, 'b': {'d': 3}}");
    assert_doc_eq(PR("{'e.c': 1}", doc), "{'_id': 1, 'e': [{'c': 1}]}");
    assert_doc_eq(PR("{'b.c': 0}", doc), "{'_id': 1, 'a': 1, 'b': {'d': 3}, 'e': [{'c': 1, 'x': 0}, 5]}");
    assert_doc_eq(PR("{}", doc), doc);
    assert_doc_eq(PR("{'x': {'$add': ['$a', 1]}, 'lit': 'str'}", doc), "{'_id': 1, 'x': 2, 'lit': 'str'}");
    assert_doc_eq(PR("{'nope': 1}", doc), "{'_id': 1}");
}

Test(project, errors_as_mongod)
{
    bson_error_t err;
    cr_expect_eq(PR_err("{'a': 1, 'b': 0}", &err), 31254);
    cr_expect_str_eq(err.message, "Cannot do exclusion on field b in inclusion projection");
    cr_expect_eq(PR_err("{'a': 0, 'b': 1}", &err), 31253);
    cr_expect_str_eq(err.message, "Cannot do inclusion on field b in exclusion projection");
    cr_expect_eq(PR_err("{'a': 1, 'a.b': 1}", &err), 31249);
    cr_expect_eq(PR_err("{'a.b': 1, 'a': 1}", &err), 31250);
    cr_expect_eq(PR_err("{'a': {'$nosuch': 1}}", &err), 168);
    cr_expect_not(ms_project_validate(J("{'a': 1, 'b': 0}"), &err));
    cr_expect_eq(err.code, 31254);
    cr_expect(ms_project_validate(J("{'a': 1, '_id': 0}"), &err));
    cr_expect(ms_project_validate(J("{}"), &err));
}

/* ---- sort -------------------------------------------------------------------------------- */

static int
S(const char *spec, const char *a, const char *b)
{
    return ms_sort_cmp(J(spec), J(a), J(b));
}

Test(sort, missing_is_null_and_types_order)
{
    cr_expect_eq(S("{'a': 1}", "{}", "{'a': null}"), 0);
    cr_expect_lt(S("{'a': 1}", "{}", "{'a': 0}"), 0);
    cr_expect_gt(S("{'a': -1}", "{}", "{'a': 0}"), 0);
    cr_expect_lt(S("{'a': 1}", "{'a': 5}", "{'a': 'a'}"), 0);
    cr_expect_lt(S("{'p': -1, 't': 1}", "{'p': 2, 't': 9}", "{'p': 1, 't': 0}"), 0);
    cr_expect_lt(S("{'p': -1, 't': 1}", "{'p': 2, 't': 1}", "{'p': 2, 't': 3}"), 0);
    cr_expect_lt(S("{'a.b': 1}", "{'a': {'b': 1}}", "{'a': {'b': 2}}"), 0);
}

Test(sort, arrays_sort_by_min_ascending_and_max_descending)
{
    /* ascending uses the smallest element: [1, 10] (1) before [5] (5) */
    cr_expect_lt(S("{'a': 1}", "{'a': [1, 10]}", "{'a': [5]}"), 0);
    /* descending uses the largest element: [1, 10] (10) before [5] (5) */
    cr_expect_lt(S("{'a': -1}", "{'a': [1, 10]}", "{'a': [5]}"), 0);
    cr_expect_lt(S("{'a': 1}", "{'a': []}", "{'a': null}"), 0, "an empty array sorts before null");
    cr_expect_lt(S("{'a.b': 1}", "{'a': [{'b': 7}, {'b': 2}]}", "{'a': [{'b': 3}]}"), 0);
}

Test(sort, validation)
{
    bson_error_t err;
    cr_expect(ms_sort_validate(J("{'a': 1, 'b': -1, 'c': 1.0, 'd': {'$numberLong': '-1'}}"), &err));
    cr_expect(ms_sort_validate(J("{}"), &err));
    cr_expect_not(ms_sort_validate(J("{'a': 2}"), &err));
    cr_expect_eq(err.code, 15975);
    cr_expect_not(ms_sort_validate(J("{'a': 'asc'}"), &err));
    cr_expect_eq(err.code, 15974);
    cr_expect(ms_sort_validate(J("{'$natural': -1}"), &err));
    cr_expect_not(ms_sort_validate(J("{'$foo': 1}"), &err));
}

/* ---- expressions ------------------------------------------------------------------------- */

static bson_value_t
E(const char *expr_json, const char *doc, bool *missing)
{
    bson_value_t ex = V(expr_json), out;
    bson_error_t err;
    bool m;
    cr_assert(ms_expr_eval(&ex, J(doc), tctx(), &out, missing ? missing : &m, &err), "%s: %s", expr_json,
              err.message);
    /* keep the result alive in the pool as a document {'r': value} */
    bson_t *holder = keep(bson_new());
    if (out.value_type != BSON_TYPE_EOD) {
        bson_append_value(holder, "r", 1, &out);
    }
    bson_value_destroy(&out);
    bson_value_t r = {.value_type = BSON_TYPE_EOD};
    ms_path_get(holder, "r", &r);
    return r;
}

static int
E_err(const char *expr_json, bson_error_t *err)
{
    bson_value_t ex = V(expr_json), out;
    bool m;
    cr_assert_not(ms_expr_eval(&ex, J("{'a': 1, 's': 'x'}"), tctx(), &out, &m, err), "%s evaluated", expr_json);
    return (int)err->code;
}

Test(expr, dates_and_arithmetic)
{
    bson_value_t v = E("{'v': {'$add': ['$$NOW', 1000]}}", "{}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_DATE_TIME);
    cr_expect_eq(v.value.v_datetime, TEST_NOW_MS + 1000);
    v = E("{'v': {'$add': [1.5, '$d']}}", "{'d': {'$date': 1000}}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_DATE_TIME);
    cr_expect_eq(v.value.v_datetime, 1002);
    v = E("{'v': {'$subtract': ['$$NOW', '$d']}}", "{'d': {'$date': 1000}}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_INT64, "date - date is milliseconds");
    cr_expect_eq(v.value.v_int64, TEST_NOW_MS - 1000);
    v = E("{'v': {'$subtract': ['$d', 500]}}", "{'d': {'$date': 1000}}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_DATE_TIME);
    cr_expect_eq(v.value.v_datetime, 500);
    v = E("{'v': {'$add': [1, 2]}}", "{}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_INT32);
    cr_expect_eq(v.value.v_int32, 3);
    v = E("{'v': {'$add': [2147483647, 1]}}", "{}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_INT64);
    v = E("{'v': {'$multiply': [2, 2.5]}}", "{}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_DOUBLE);
    cr_expect_eq(v.value.v_double, 5.0);
    v = E("{'v': {'$divide': [1, 4]}}", "{}", NULL);
    cr_expect_eq(v.value.v_double, 0.25);
    v = E("{'v': {'$mod': [7, 4]}}", "{}", NULL);
    cr_expect_eq(v.value.v_int32, 3);
    v = E("{'v': {'$add': ['$missing', 1]}}", "{}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_NULL);
}

Test(expr, conditionals_comparisons_and_fields)
{
    bool missing = false;
    bson_value_t v = E("{'v': '$a.b'}", "{'a': {'b': 'x'}}", NULL);
    cr_expect_str_eq(v.value.v_utf8.str, "x");
    v = E("{'v': '$nope'}", "{}", &missing);
    cr_expect(missing);
    v = E("{'v': '$a.b'}", "{'a': [{'b': 1}, {'c': 1}, {'b': 2}]}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_ARRAY);
    v = E("{'v': {'$cond': [{'$gt': ['$n', 1]}, 'big', 'small']}}", "{'n': 2}", NULL);
    cr_expect_str_eq(v.value.v_utf8.str, "big");
    v = E("{'v': {'$cond': {'if': {'$lt': ['$n', 1]}, 'then': 'neg', 'else': 'pos'}}}", "{'n': 2}", NULL);
    cr_expect_str_eq(v.value.v_utf8.str, "pos");
    v = E("{'v': {'$ifNull': ['$x', 'dflt']}}", "{'x': null}", NULL);
    cr_expect_str_eq(v.value.v_utf8.str, "dflt");
    v = E("{'v': {'$and': [true, {'$or': [false, 1]}, {'$not': [0]}]}}", "{}", NULL);
    cr_expect(v.value.v_bool);
    v = E("{'v': {'$in': ['b', ['a', 'b']]}}", "{}", NULL);
    cr_expect(v.value.v_bool);
    v = E("{'v': {'$cmp': [1, 'a']}}", "{}", NULL);
    cr_expect_eq(v.value.v_int32, -1, "numbers before strings");
    v = E("{'v': {'$eq': [1, 1.0]}}", "{}", NULL);
    cr_expect(v.value.v_bool);
    v = E("{'v': {'$max': [1, 7, null, 3]}}", "{}", NULL);
    cr_expect_eq(v.value.v_int32, 7);
    v = E("{'v': {'$min': [[4, 2, 8]]}}", "{}", NULL);
    cr_expect_eq(v.value.v_int32, 2);
    v = E("{'v': {'$concat': ['a', '-', {'$toString': 12}]}}", "{}", NULL);
    cr_expect_str_eq(v.value.v_utf8.str, "a-12");
    v = E("{'v': {'$toString': 2.5}}", "{}", NULL);
    cr_expect_str_eq(v.value.v_utf8.str, "2.5");
    v = E("{'v': {'$literal': '$notapath'}}", "{}", NULL);
    cr_expect_str_eq(v.value.v_utf8.str, "$notapath");
    v = E("{'v': {'$size': '$arr'}}", "{'arr': [1, 2, 3]}", NULL);
    cr_expect_eq(v.value.v_int32, 3);
    v = E("{'v': {'$let': {'vars': {'x': 2}, 'in': {'$multiply': ['$$x', '$n']}}}}", "{'n': 4}", NULL);
    cr_expect_eq(v.value.v_int32, 8);
    v = E("{'v': {'$size': {'$filter': {'input': '$arr', 'cond': {'$gt': ['$$this', 1]}}}}}", "{'arr': [1, 2, 3]}", NULL);
    cr_expect_eq(v.value.v_int32, 2);
    v = E("{'v': '$$ROOT.n'}", "{'n': 9}", NULL);
    cr_expect_eq(v.value.v_int32, 9);
}

Test(expr, errors_as_mongod)
{
    bson_error_t err;
    cr_expect_eq(E_err("{'v': {'$foo': 1}}", &err), 168);
    cr_expect_str_eq(err.message, "Unrecognized expression '$foo'");
    cr_expect_eq(E_err("{'v': {'$add': ['$s', 1]}}", &err), 14);
    cr_expect_eq(E_err("{'v': {'$add': ['$$NOW', '$$NOW']}}", &err), 16612);
    cr_expect_eq(E_err("{'v': {'$divide': [1, 0]}}", &err), 2);
    cr_expect_eq(E_err("{'v': {'$subtract': [1]}}", &err), 16020);
    cr_expect_eq(E_err("{'v': {'$size': 1}}", &err), 17124);
    cr_expect_eq(E_err("{'v': '$$nosuchvar'}", &err), 17276);
    cr_expect_eq(E_err("{'v': {'$concat': ['a', 1]}}", &err), 16702);
    cr_expect_eq(E_err("{'v': {'$toInt': {'$divide': [0.0, {'$literal': {'$numberDouble': 'NaN'}}]}}}", &err), 241);
}

/* mongod 6.0's ExpressionAdd / ExpressionSubtract (src/mongo/db/pipeline/expression.cpp). */
Test(expr, date_arithmetic_overflows_as_mongod)
{
    bson_error_t err;
    const char *near_max = "{'d': {'$date': {'$numberLong': '9223372036854775000'}}}";
    bson_value_t ex = V("{'v': {'$add': ['$d', {'$numberLong': '1000'}]}}"), out;
    bool m;
    cr_assert_not(ms_expr_eval(&ex, J(near_max), tctx(), &out, &m, &err));
    cr_expect_eq(err.code, 15);
    cr_expect_str_eq(err.message, "date overflow in $add");
    ex = V("{'v': {'$add': ['$d', 1.0e19]}}");
    cr_assert_not(ms_expr_eval(&ex, J(near_max), tctx(), &out, &m, &err));
    cr_expect_eq(err.code, 15, "a double beyond int64");
    bson_value_t v = E("{'v': {'$add': ['$d', {'$numberLong': '-1000'}, 1000]}}", near_max, NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_DATE_TIME);
    cr_expect_eq(v.value.v_datetime, INT64_C(9223372036854775000), "no overflow, no error");
    cr_expect_eq(E_err("{'v': {'$add': [1, 'x', null]}}", &err), 14, "in order: the string first");
    v = E("{'v': {'$add': [null, 'x']}}", "{}", NULL);
    cr_expect_eq(v.value_type, BSON_TYPE_NULL, "in order: null first");
    v = E("{'v': {'$subtract': ['$d', 1.9]}}", "{'d': {'$date': 1000}}", NULL);
    cr_expect_eq(v.value.v_datetime, 999, "a double is truncated, as coerceToLong does");
    ex = V("{'v': {'$subtract': ['$d', 1.0e19]}}");
    cr_assert_not(ms_expr_eval(&ex, J("{'d': {'$date': 1000}}"), tctx(), &out, &m, &err));
    cr_expect_eq(err.code, 31109);
    cr_expect_eq(E_err("{'v': {'$subtract': [1, '$$NOW']}}", &err), 14);
    cr_expect_str_eq(err.message, "can't $subtract date from int");
}

/* mongod: a $let variable bound to a missing value is missing, and so is `in` (no crash). */
Test(expr, let_variable_bound_to_missing_is_missing)
{
    assert_doc_eq(P("{'v': [{'$project': {'_id': 0, 'a': {'$let': {'vars': {'v': '$missing'}, "
                    "'in': '$$v'}}, 'b': {'$let': {'vars': {'v': '$missing'}, 'in': '$$v.x'}}, "
                    "'t': {'$type': {'$let': {'vars': {'v': '$missing'}, 'in': '$$v'}}}}}]}",
                    "{'v': [{'_id': 1}]}"),
                  "{'r': [{'t': 'missing'}]}");
}

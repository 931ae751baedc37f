#include "lang_test_util.h"

TestSuite(update, .fini = pool_free);

/* Applies update (a document or, wrapped as {'v': [...]}, a pipeline) to doc. */
static bson_t *
U_full(const char *update_json, const char *doc, bool upsert_insert, bool *changed)
{
    bson_value_t u = V(update_json);
    bson_t out;
    bson_error_t err;
    bool ch;
    cr_assert(ms_update_apply(&u, J(doc), upsert_insert, tctx(), &out, changed ? changed : &ch, &err),
              "update %s failed: %d %s", update_json, err.code, err.message);
    bson_t *copy = keep(bson_copy(&out));
    bson_destroy(&out);
    return copy;
}

static bson_t *
U(const char *update_json, const char *doc)
{
    return U_full(update_json, doc, false, NULL);
}

static int
U_err(const char *update_json, const char *doc, bson_error_t *err)
{
    bson_value_t u = V(update_json);
    bson_t out;
    bool changed;
    cr_assert_not(ms_update_apply(&u, J(doc), false, tctx(), &out, &changed, err),
                  "update %s succeeded", update_json);
    cr_expect(bson_empty(&out), "out is initialised and empty on failure");
    bson_destroy(&out);
    return (int)err->code;
}

Test(update, set_creates_nested_documents_and_orders_new_fields)
{
    assert_doc_eq(U("{'v': {'$set': {'a.b.c': 1}}}", "{'_id': 1}"), "{'_id': 1, 'a': {'b': {'c': 1}}}");
    assert_doc_eq(U("{'v': {'$set': {'z': 1, 'b': 2, 'x.y': 3}}}", "{'_id': 1, 'm': 0}"),
                  "{'_id': 1, 'm': 0, 'b': 2, 'x': {'y': 3}, 'z': 1}");
    assert_doc_eq(U("{'v': {'$set': {'m': 'new'}}}", "{'_id': 1, 'm': 0, 'n': 1}"),
                  "{'_id': 1, 'm': 'new', 'n': 1}");
    assert_doc_eq(U("{'v': {'$set': {'a.1': 'x'}}}", "{'_id': 1, 'a': [0, 1, 2]}"),
                  "{'_id': 1, 'a': [0, 'x', 2]}");
    assert_doc_eq(U("{'v': {'$set': {'a.3': 'x'}}}", "{'_id': 1, 'a': [0]}"),
                  "{'_id': 1, 'a': [0, null, null, 'x']}");
    assert_doc_eq(U("{'v': {'$set': {}}}", "{'_id': 1}"), "{'_id': 1}");
}

Test(update, unset_removes_fields)
{
    assert_doc_eq(U("{'v': {'$unset': {'a': '', 'b.c': 1, 'nope': 1}}}", "{'_id': 1, 'a': 1, 'b': {'c': 1, 'd': 2}}"),
                  "{'_id': 1, 'b': {'d': 2}}");
    assert_doc_eq(U("{'v': {'$unset': {'a.0': 1}}}", "{'_id': 1, 'a': [1, 2]}"), "{'_id': 1, 'a': [null, 2]}");
}

Test(update, inc_widens_and_rejects_non_numbers)
{
    assert_doc_eq(U("{'v': {'$inc': {'n': 1, 'm': 2.5}}}", "{'_id': 1, 'n': 1}"), "{'_id': 1, 'n': 2, 'm': 2.5}");
    bson_t *out = U("{'v': {'$inc': {'n': 1}}}", "{'_id': 1, 'n': 2147483647}");
    bson_value_t n;
    cr_assert(ms_path_get(out, "n", &n));
    cr_expect_eq(n.value_type, BSON_TYPE_INT64, "int32 overflow widens to int64");
    cr_expect_eq(n.value.v_int64, 2147483648LL);
    out = U("{'v': {'$inc': {'n': {'$numberLong': '5'}}}}", "{'_id': 1, 'n': 1}");
    cr_assert(ms_path_get(out, "n", &n));
    cr_expect_eq(n.value_type, BSON_TYPE_INT64);

    bson_error_t err;
    cr_expect_eq(U_err("{'v': {'$inc': {'s': 1}}}", "{'_id': 1, 's': 'x'}", &err), 14);
    cr_expect(strstr(err.message, "Cannot apply $inc to a value of non-numeric type") != NULL, "%s",
              err.message);
    cr_expect(strstr(err.message, "has the field 's' of non-numeric type string") != NULL, "%s",
              err.message);
    cr_expect_eq(U_err("{'v': {'$inc': {'n': 'x'}}}", "{'_id': 1}", &err), 14);
    cr_expect(strncmp(err.message, "Cannot increment with non-numeric argument", 42) == 0, "%s", err.message);
}

Test(update, mul_min_max)
{
    assert_doc_eq(U("{'v': {'$mul': {'a': 3, 'b': 2}}}", "{'_id': 1, 'a': 2}"), "{'_id': 1, 'a': 6, 'b': 0}");
    assert_doc_eq(U("{'v': {'$min': {'a': 1, 'b': 9}, '$max': {'c': 5}}}", "{'_id': 1, 'a': 3, 'b': 4, 'c': 2}"),
                  "{'_id': 1, 'a': 1, 'b': 4, 'c': 5}");
    assert_doc_eq(U("{'v': {'$max': {'d': 1}}}", "{'_id': 1}"), "{'_id': 1, 'd': 1}");
}

Test(update, errors_as_mongod)
{
    bson_error_t err;
    cr_expect_eq(U_err("{'v': {'$foo': {'a': 1}}}", "{'_id': 1}", &err), 9);
    cr_expect(strncmp(err.message, "Unknown modifier: $foo", 22) == 0, "%s", err.message);
    cr_expect_eq(U_err("{'v': {'$set': {'a': 1}, '$inc': {'a': 1}}}", "{'_id': 1}", &err), 40);
    cr_expect_eq(U_err("{'v': {'$set': {'a.b': 1}, '$unset': {'a': 1}}}", "{'_id': 1}", &err), 40);
    cr_expect(strstr(err.message, "would create a conflict at 'a'") != NULL, "%s", err.message);
    cr_expect_eq(U_err("{'v': {'$set': {'_id': 2}}}", "{'_id': 1}", &err), 66);
    cr_expect_eq(U_err("{'v': {'$set': 5}}", "{'_id': 1}", &err), 9);
    cr_expect_eq(U_err("{'v': {'$set': {'a.b': 1}}}", "{'_id': 1, 'a': 5}", &err), 28);
    cr_expect_eq(U_err("{'v': {'$push': {'a': 1}}}", "{'_id': 1, 'a': 5}", &err), 2);
    cr_expect_eq(U_err("{'v': {'_id': 2, 'x': 1}}", "{'_id': 1}", &err), 66);
    cr_expect_eq(U_err("{'v': {'x': 1, '$set': {'a': 1}}}", "{'_id': 1}", &err), 52);
    cr_expect_eq(U_err("{'v': 5}", "{'_id': 1}", &err), 9);
    cr_expect_eq(U_err("{'v': {'$set': {'$x': 1}}}", "{'_id': 1}", &err), 52);
    cr_expect_eq(U_err("{'v': [{'$match': {}}]}", "{'_id': 1}", &err), 72);
    cr_expect_eq(U_err("{'v': [{'$bogus': {}}]}", "{'_id': 1}", &err), 40324);
    /* setting _id to its own value is allowed */
    assert_doc_eq(U("{'v': {'$set': {'_id': 1, 'a': 1}}}", "{'_id': 1}"), "{'_id': 1, 'a': 1}");
}

Test(update, push_add_to_set_pull_pop)
{
    assert_doc_eq(U("{'v': {'$push': {'a': 3, 'b': 1}}}", "{'_id': 1, 'a': [1]}"), "{'_id': 1, 'a': [1, 3], 'b': [1]}");
    assert_doc_eq(U("{'v': {'$push': {'a': {'$each': [4, 5, 6], '$slice': -3}}}}", "{'_id': 1, 'a': [1, 2]}"),
                  "{'_id': 1, 'a': [4, 5, 6]}");
    assert_doc_eq(U("{'v': {'$push': {'a': {'$each': [9], '$position': 0}}}}", "{'_id': 1, 'a': [1, 2]}"),
                  "{'_id': 1, 'a': [9, 1, 2]}");
    assert_doc_eq(U("{'v': {'$push': {'a': {'$each': [3, 1], '$sort': -1}}}}", "{'_id': 1, 'a': [2]}"),
                  "{'_id': 1, 'a': [3, 2, 1]}");
    assert_doc_eq(U("{'v': {'$push': {'a': {'$each': [{'k': 1}], '$sort': {'k': 1}}}}}", "{'_id': 1, 'a': [{'k': 2}]}"),
                  "{'_id': 1, 'a': [{'k': 1}, {'k': 2}]}");
    assert_doc_eq(U("{'v': {'$addToSet': {'a': 2, 'b': {'$each': [1, 1, 2]}}}}", "{'_id': 1, 'a': [1, 2.0]}"),
                  "{'_id': 1, 'a': [1, 2.0], 'b': [1, 2]}");
    assert_doc_eq(U("{'v': {'$pull': {'a': 2}}}", "{'_id': 1, 'a': [1, 2, 3, 2]}"), "{'_id': 1, 'a': [1, 3]}");
    assert_doc_eq(U("{'v': {'$pull': {'a': {'$gte': 2}}}}", "{'_id': 1, 'a': [1, 2, 3]}"), "{'_id': 1, 'a': [1]}");
    assert_doc_eq(U("{'v': {'$pull': {'a': {'k': 1}}}}", "{'_id': 1, 'a': [{'k': 1, 'x': 1}, {'k': 2}]}"),
                  "{'_id': 1, 'a': [{'k': 2}]}");
    assert_doc_eq(U("{'v': {'$pullAll': {'a': [1, 3]}}}", "{'_id': 1, 'a': [1, 2, 3]}"), "{'_id': 1, 'a': [2]}");
    assert_doc_eq(U("{'v': {'$pop': {'a': 1, 'b': -1}}}", "{'_id': 1, 'a': [1, 2], 'b': [1, 2]}"),
                  "{'_id': 1, 'a': [1], 'b': [2]}");
    assert_doc_eq(U("{'v': {'$pull': {'nope': 1}}}", "{'_id': 1}"), "{'_id': 1}");
}

Test(update, rename_current_date_set_on_insert)
{
    assert_doc_eq(U("{'v': {'$rename': {'a': 'b.c'}}}", "{'_id': 1, 'a': 5}"), "{'_id': 1, 'b': {'c': 5}}");
    assert_doc_eq(U("{'v': {'$rename': {'zz': 'b'}}}", "{'_id': 1}"), "{'_id': 1}");
    bson_t *out = U("{'v': {'$currentDate': {'d': true, 't': {'$type': 'timestamp'}}}}", "{'_id': 1}");
    bson_value_t d, t;
    cr_assert(ms_path_get(out, "d", &d));
    cr_expect_eq(d.value_type, BSON_TYPE_DATE_TIME);
    cr_expect_eq(d.value.v_datetime, TEST_NOW_MS);
    cr_assert(ms_path_get(out, "t", &t));
    cr_expect_eq(t.value_type, BSON_TYPE_TIMESTAMP);
    assert_doc_eq(U("{'v': {'$setOnInsert': {'a': 1}, '$set': {'b': 2}}}", "{'_id': 1}"), "{'_id': 1, 'b': 2}");
    assert_doc_eq(U_full("{'v': {'$setOnInsert': {'a': 1}, '$set': {'b': 2}}}", "{'q': 0}", true, NULL),
                  "{'q': 0, 'a': 1, 'b': 2}");
}

Test(update, replacement_keeps_id_first)
{
    assert_doc_eq(U("{'v': {'x': 1}}", "{'_id': 7, 'a': 1}"), "{'_id': 7, 'x': 1}");
    assert_doc_eq(U("{'v': {'x': 1, '_id': 7}}", "{'_id': 7, 'a': 1}"), "{'_id': 7, 'x': 1}");
    assert_doc_eq(U("{'v': {}}", "{'_id': 7, 'a': 1}"), "{'_id': 7}");
}

Test(update, pipeline_update_stamps_a_lease_with_now)
{
    bson_t *out = U("{'v': [{'$set': {'status': 'processing', "
                    "'lease_expires_at': {'$add': ['$$NOW', 30000]}, "
                    "'attempts': {'$add': ['$attempts', 1]}}}]}",
                    "{'_id': 1, 'status': 'ready', 'attempts': 2}");
    bson_value_t v;
    cr_assert(ms_path_get(out, "lease_expires_at", &v));
    cr_expect_eq(v.value_type, BSON_TYPE_DATE_TIME, "date + number is a date");
    cr_expect_eq(v.value.v_datetime, TEST_NOW_MS + 30000);
    cr_assert(ms_path_get(out, "attempts", &v));
    cr_expect_eq(v.value.v_int32, 3);
    cr_assert(ms_path_get(out, "status", &v));
    cr_expect_str_eq(v.value.v_utf8.str, "processing");

    /* missing attempts: $add with a missing operand is null */
    out = U("{'v': [{'$set': {'attempts': {'$add': ['$attempts', 1]}}}]}", "{'_id': 1}");
    cr_assert(ms_path_get(out, "attempts", &v));
    cr_expect_eq(v.value_type, BSON_TYPE_NULL);
    out = U("{'v': [{'$set': {'attempts': {'$add': [{'$ifNull': ['$attempts', 0]}, 1]}}}]}", "{'_id': 1}");
    cr_assert(ms_path_get(out, "attempts", &v));
    cr_expect_eq(v.value.v_int32, 1);
}

Test(update, pipeline_update_other_stages)
{
    assert_doc_eq(U("{'v': [{'$unset': ['a', 'b.c']}]}", "{'_id': 1, 'a': 1, 'b': {'c': 1, 'd': 1}}"),
                  "{'_id': 1, 'b': {'d': 1}}");
    assert_doc_eq(U("{'v': [{'$project': {'a': 1}}]}", "{'_id': 1, 'a': 1, 'b': 2}"), "{'_id': 1, 'a': 1}");
    assert_doc_eq(U("{'v': [{'$replaceWith': {'x': '$a'}}]}", "{'_id': 1, 'a': 5}"), "{'_id': 1, 'x': 5}");
    assert_doc_eq(U("{'v': [{'$replaceRoot': {'newRoot': {'_id': '$_id', 'y': 1}}}]}", "{'_id': 1}"),
                  "{'_id': 1, 'y': 1}");
    assert_doc_eq(U("{'v': [{'$set': {'gone': '$$REMOVE', 'a.b': 2}}]}", "{'_id': 1, 'gone': 1, 'a': {'c': 1}}"),
                  "{'_id': 1, 'a': {'c': 1, 'b': 2}}");
}

Test(update, changed_flag)
{
    bool changed = true;
    U_full("{'v': {'$set': {'a': 1}}}", "{'_id': 1, 'a': 1}", false, &changed);
    cr_expect_not(changed);
    U_full("{'v': {'$set': {'a': 2}}}", "{'_id': 1, 'a': 1}", false, &changed);
    cr_expect(changed);
    U_full("{'v': {'$set': {'a': 1.0}}}", "{'_id': 1, 'a': 1}", false, &changed);
    cr_expect(changed, "a type change is a change");
}

Test(update, classify)
{
    ms_update_kind_t kind;
    bson_error_t err;
    bson_value_t u = V("{'v': {'$set': {'a': 1}}}");
    cr_assert(ms_update_classify(&u, &kind, &err));
    cr_expect_eq(kind, MS_UPDATE_OPERATORS);
    u = V("{'v': {'a': 1}}");
    cr_assert(ms_update_classify(&u, &kind, &err));
    cr_expect_eq(kind, MS_UPDATE_REPLACEMENT);
    u = V("{'v': [{'$set': {'a': 1}}]}");
    cr_assert(ms_update_classify(&u, &kind, &err));
    cr_expect_eq(kind, MS_UPDATE_PIPELINE);
    u = V("{'v': {'$set': {'a': 1}, '$bad': {}}}");
    cr_expect_not(ms_update_classify(&u, &kind, &err));
    cr_expect_eq(err.code, 9);
}

Test(update, upsert_seed_takes_equality_fields)
{
    bson_t seed;
    bson_error_t err;
    cr_assert(ms_update_upsert_seed(J("{'a': 1, 'b.c': 2, '$and': [{'d': 3}], 'e': {'$gt': 1}, "
                                      "'f': {'$eq': 4}, '$or': [{'g': 1}], '_id': 9}"),
                                    &seed, &err));
    assert_doc_eq(&seed, "{'_id': 9, 'a': 1, 'b': {'c': 2}, 'd': 3, 'f': 4}");
    bson_destroy(&seed);
    cr_expect_not(ms_update_upsert_seed(J("{'a': 1, '$and': [{'a': 2}]}"), &seed, &err));
    cr_expect_eq(err.code, 54);
    bson_destroy(&seed);
}

Test(update, description_lists_updated_and_removed_fields)
{
    bson_t desc;
    ms_update_description(J("{'_id': 1, 'a': 1, 'b': 2, 'n': {'x': 1, 'y': 1}}"),
                          J("{'_id': 1, 'a': 5, 'c': 3, 'n': {'x': 2, 'y': 1}}"), &desc);
    assert_doc_eq(&desc, "{'updatedFields': {'a': 5, 'c': 3, 'n.x': 2}, 'removedFields': ['b'], "
                         "'truncatedArrays': []}");
    bson_destroy(&desc);
}

/* A pipeline update's delta (document_diff_calculator.cpp): a shorter array is truncated, the
 * elements compared one by one; an operator update's description keeps arrays whole. */
Test(update, delta_description_truncates_arrays)
{
    bson_t desc;
    ms_update_description_delta(J("{'_id': 1, 'array': ['foo', {'a': 'bar'}, 1, 2, 3]}"),
                                J("{'_id': 1, 'array': ['foo', {'a': 'baz'}]}"), &desc);
    assert_doc_eq(&desc, "{'updatedFields': {'array.1.a': 'baz'}, 'removedFields': [], "
                         "'truncatedArrays': [{'field': 'array', 'newSize': 2}]}");
    bson_destroy(&desc);
    ms_update_description_delta(J("{'_id': 1, 'array': [1]}"), J("{'_id': 1, 'array': [1, 2]}"),
                                &desc);
    assert_doc_eq(&desc, "{'updatedFields': {'array.1': 2}, 'removedFields': [], "
                         "'truncatedArrays': []}");
    bson_destroy(&desc);
}

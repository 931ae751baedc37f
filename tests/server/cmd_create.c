/*
 * create (src/mongo/db/commands/create.idl, src/mongo/db/catalog/create_collection.cpp):
 * collections with validation options and changeStreamPreAndPostImages, and read-only views
 * ({viewOn, pipeline}, view.c). Options this server does not implement are refused (BadValue
 * "... is not supported by mongoq-test-server").
 */
#include "crud-private.h"
#include "store-private.h"

#include <string.h>

/* create options a view may not have besides viewOn and pipeline (mongod: InvalidOptions). */
static const char *const not_for_views[] = {"capped", "size", "max", "validator",
                                            "validationLevel", "validationAction",
                                            "changeStreamPreAndPostImages", "timeseries",
                                            "clusteredIndex", "expireAfterSeconds",
                                            "storageEngine", "indexOptionDefaults", "idIndex",
                                            "encryptedFields", NULL};

static bool
refuse_unsupported(const ms_cmd_t *c, bson_error_t *error)
{
    bson_iter_t it;
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (ms_is_generic_field(k) || ms_validation_field(k) ||
            strcmp(k, "changeStreamPreAndPostImages") == 0 || strcmp(k, "viewOn") == 0 ||
            strcmp(k, "pipeline") == 0 || (strcmp(k, "capped") == 0 && !bson_iter_as_bool(&it))) {
            continue;
        }
        if (strcmp(k, "collation") == 0) {
            if (!ms_crud_refuse_unsupported(c->cmd, "create", error)) {
                return false;
            }
            continue; /* {locale: "simple"}: the default */
        }
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "create option '%s' is not supported by "
                            "mongoq-test-server",
                            k);
    }
    return true;
}

/* {viewOn, pipeline} of a view's create into options (empty when not a view). */
static bool
view_options(const ms_cmd_t *c, const char *name, bson_t *options, bson_error_t *error)
{
    bson_iter_t on, pipeline;
    bool has_on = bson_iter_init_find(&on, c->cmd, "viewOn");
    bool has_pipeline = bson_iter_init_find(&pipeline, c->cmd, "pipeline");
    if (!has_on && !has_pipeline) {
        return true;
    }
    if (has_on && !BSON_ITER_HOLDS_UTF8(&on)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'create.viewOn' is the wrong type '%s', expected type "
                            "'string'",
                            ms_type_name(bson_iter_type(&on)));
    }
    if (has_pipeline && !BSON_ITER_HOLDS_ARRAY(&pipeline)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'create.pipeline' is the wrong type '%s', expected type "
                            "'array'",
                            ms_type_name(bson_iter_type(&pipeline)));
    }
    if (!has_on) {
        return ms_set_error(error, MS_ERR_BAD_VALUE,
                            "'pipeline' requires 'viewOn' to also be specified");
    }
    for (int i = 0; not_for_views[i]; i++) {
        if (bson_has_field(c->cmd, not_for_views[i])) {
            return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                                "option not supported on a view: %s", not_for_views[i]);
        }
    }
    BSON_APPEND_UTF8(options, "viewOn", bson_iter_utf8(&on, NULL));
    if (has_pipeline) {
        bson_append_iter(options, "pipeline", -1, &pipeline);
    } else {
        bson_t empty;
        BSON_APPEND_ARRAY_BEGIN(options, "pipeline", &empty);
        bson_append_array_end(options, &empty);
    }
    return ms_view_check_definition(c->db, name, options, error);
}

/* options: the validation fields, then changeStreamPreAndPostImages when enabled, or a view's. */
static bool
create_options(ms_cmd_t *c, const char *name, bson_t *options, bson_error_t *error)
{
    bson_t changes;
    bson_iter_t it;
    bool images = false;
    bson_init(options);
    if (!view_options(c, name, options, error)) {
        return false;
    }
    if (!bson_empty(options)) {
        return true;
    }
    if (bson_iter_init_find(&it, c->cmd, "changeStreamPreAndPostImages") &&
        !ms_parse_pre_post_images("create", &it, &images, error)) {
        return false;
    }
    bool ok = ms_validation_parse(c, name, &changes, error);
    if (ok) {
        bson_destroy(options);
        ms_validation_merge(NULL, &changes, options);
    }
    bson_destroy(&changes);
    if (ok && images) {
        bson_t sub;
        BSON_APPEND_DOCUMENT_BEGIN(options, "changeStreamPreAndPostImages", &sub);
        BSON_APPEND_BOOL(&sub, "enabled", true);
        bson_append_document_end(options, &sub);
    }
    return ok;
}

MS_HANDLER(create)
{
    static const char *const allowed[] = {"capped", "size", "max", "validator",
                                          "validationLevel", "validationAction",
                                          "changeStreamPreAndPostImages", "collation",
                                          "viewOn", "pipeline", "timeseries", "clusteredIndex",
                                          "expireAfterSeconds", "storageEngine",
                                          "indexOptionDefaults", "idIndex", "encryptedFields",
                                          NULL};
    ms_wctx_t w;
    bson_t options;
    bool ok = false;
    (void)reply;
    const char *name = ms_admin_coll_name(c, error);
    if (!name || !ms_check_fields(c, allowed, error) || !ms_valid_coll_name(c->db, name, error) ||
        !refuse_unsupported(c, error)) {
        return false;
    }
    if (!create_options(c, name, &options, error)) {
        bson_destroy(&options);
        return false;
    }
    ms_wctx_init(&w, c);
    ms_coll_t *exists = w.txn ? ms_txn_view(w.txn, c->db, name, false, NULL)
                              : ms_store_coll(c->db, name);
    if (exists) {
        ms_set_error(error, MS_ERR_NAMESPACE_EXISTS, "Collection %s.%s already exists.", c->db,
                     name);
        goto done;
    }
    if (w.txn && !bson_empty(&options)) {
        ms_set_error(error, MS_ERR_NOT_IMPLEMENTED,
                     "create with options inside a transaction is not supported by "
                     "mongoq-test-server");
        goto done;
    }
    ok = (w.txn ? ms_wctx_coll(&w, name, true, error) != NULL
                : ms_wctx_create_coll(&w, name, &options, error) != NULL) &&
         ms_wctx_commit(&w, error);
done:
    ms_wctx_destroy(&w);
    bson_destroy(&options);
    return ok;
}

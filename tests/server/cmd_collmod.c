/*
 * collMod, for what mongoq needs: changing a TTL index's retention,
 * {collMod: coll, index: {keyPattern: {...} | name: "...", expireAfterSeconds: N}}, with mongod
 * 6.0's reply ({expireAfterSeconds_old, expireAfterSeconds_new}) and errors, and changing the
 * collection's validator, validationLevel and validationAction (validation.c), and
 * changeStreamPreAndPostImages: {enabled} (change streams' pre- and post-images). A single-field
 * index without TTL becomes one, as on mongod. Nothing is ever ignored: unknown fields fail as
 * mongod's IDL does (40415, TypeMismatch 14), and the options mongod has but this server does not
 * implement (views, hiding, unique conversion, ...) fail with InvalidOptions 72.
 */
#include "crud-private.h"

#include <math.h>
#include <string.h>

/* Every top-level field of mongod 6.0's collMod besides "index" and the validation fields
 * (all refused here). */
static const char *const other_options[] = {"viewOn",
                                            "pipeline",
                                            "recordPreImages",
                                            "expireAfterSeconds",
                                            "timeseries",
                                            "collectionUUID",
                                            "cappedSize",
                                            "cappedMax",
                                            NULL};

/* The index option of the command (views borrow from the command). */
typedef struct {
    bool present;
    const char *name; /* NULL when absent */
    bson_t key;       /* keyPattern, when has_key */
    bool has_key;
    bool has_expire;
    int64_t expire_secs;
    const char *unsupported; /* hidden, unique, ...: the first one given, or NULL */
} index_arg_t;

/* The IDL's type names, with decimal, which collMod's numeric fields accept. */
static const char *
type_name(const bson_iter_t *it)
{
    bson_type_t t = bson_iter_type(it);
    return t == BSON_TYPE_DECIMAL128 ? "decimal" : ms_crud_type_name(t);
}

static bool
wrong_type(const bson_iter_t *it, const char *expected, bson_error_t *error)
{
    return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                        "BSON field 'collMod.index.%s' is the wrong type '%s', "
                        "expected type%s '%s'",
                        bson_iter_key(it), type_name(it), expected[0] == '[' ? "s" : "", expected);
}

/* expireAfterSeconds: IDL safeInt64, then mongod's range check for a secondary TTL index. */
static bool
parse_expire(const bson_iter_t *it, index_arg_t *arg, bson_error_t *error)
{
    if (!BSON_ITER_HOLDS_NUMBER(it)) {
        return wrong_type(it, "[long, int, decimal, double]", error);
    }
    double d = bson_iter_as_double(it);
    if (isnan(d) || d > 2147483647.0) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "TTL index 'expireAfterSeconds' option must be within an "
                            "acceptable range, try a lower number");
    }
    if (d < 0) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "TTL index 'expireAfterSeconds' option cannot be less "
                            "than 0");
    }
    arg->has_expire = true;
    arg->expire_secs = BSON_ITER_HOLDS_DOUBLE(it) ? (int64_t)d : bson_iter_as_int64(it);
    return true;
}

static bool
parse_index_field(bson_iter_t *it, index_arg_t *arg, bson_error_t *error)
{
    const char *k = bson_iter_key(it);
    if (strcmp(k, "name") == 0) {
        if (!BSON_ITER_HOLDS_UTF8(it)) {
            return wrong_type(it, "string", error);
        }
        arg->name = bson_iter_utf8(it, NULL);
        return true;
    }
    if (strcmp(k, "keyPattern") == 0) {
        uint32_t len;
        const uint8_t *data;
        if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
            return wrong_type(it, "object", error);
        }
        bson_iter_document(it, &len, &data);
        arg->has_key = bson_init_static(&arg->key, data, len);
        return true;
    }
    if (strcmp(k, "expireAfterSeconds") == 0) {
        return parse_expire(it, arg, error);
    }
    if (strcmp(k, "hidden") == 0 || strcmp(k, "unique") == 0 || strcmp(k, "prepareUnique") == 0 ||
        strcmp(k, "forceNonUnique") == 0) {
        arg->unsupported = arg->unsupported ? arg->unsupported : k;
        return true;
    }
    return ms_set_error(error, MS_ERR_LOCATION40415,
                        "BSON field 'collMod.index.%s' is an unknown field.", k);
}

bool
ms_parse_pre_post_images(const char *cmd_name, const bson_iter_t *it, bool *enabled,
                         bson_error_t *error)
{
    bson_iter_t child;
    bool has_enabled = false;
    if (!BSON_ITER_HOLDS_DOCUMENT(it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field '%s.changeStreamPreAndPostImages' is the wrong type '%s', "
                            "expected type 'object'",
                            cmd_name, type_name(it));
    }
    bson_iter_recurse(it, &child);
    while (bson_iter_next(&child)) {
        if (strcmp(bson_iter_key(&child), "enabled") != 0) {
            return ms_set_error(error, MS_ERR_LOCATION40415,
                                "BSON field '%s.changeStreamPreAndPostImages.%s' is an unknown "
                                "field.",
                                cmd_name, bson_iter_key(&child));
        }
        if (!BSON_ITER_HOLDS_BOOL(&child)) {
            return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                                "BSON field '%s.changeStreamPreAndPostImages.enabled' is the wrong "
                                "type '%s', expected type 'bool'",
                                cmd_name, type_name(&child));
        }
        *enabled = bson_iter_bool(&child);
        has_enabled = true;
    }
    if (!has_enabled) {
        return ms_set_error(error, MS_ERR_LOCATION40414,
                            "BSON field '%s.changeStreamPreAndPostImages.enabled' is missing but "
                            "a required field",
                            cmd_name);
    }
    return true;
}

/* changeStreamPreAndPostImages on the live collection, handed to the oplog as given. */
static bool
apply_pre_post_images(ms_cmd_t *c, ms_coll_t *coll, bool enabled, bson_error_t *error)
{
    ms_wctx_t w;
    ms_txn_before_live_write(coll->db, coll->name, NULL);
    ms_coll_set_pre_post_images(coll, enabled);
    bson_t *spec = BCON_NEW("changeStreamPreAndPostImages", "{", "enabled", BCON_BOOL(enabled),
                            "}");
    ms_wctx_init(&w, NULL);
    w.db = c->db;
    ms_wctx_log(&w, MS_OP_COLL_MOD, coll->name, spec);
    bool ok = ms_wctx_commit(&w, error);
    ms_wctx_destroy(&w);
    bson_destroy(spec);
    return ok;
}

/* The command's fields, as mongod's IDL parses them (before the collection is looked at). */
static bool
parse_command(const ms_cmd_t *c, index_arg_t *arg, const char **other, bson_error_t *error)
{
    static const char *const allowed[] = {"index",
                                          "validator",
                                          "validationLevel",
                                          "validationAction",
                                          "viewOn",
                                          "pipeline",
                                          "recordPreImages",
                                          "changeStreamPreAndPostImages",
                                          "expireAfterSeconds",
                                          "timeseries",
                                          "collectionUUID",
                                          "cappedSize",
                                          "cappedMax",
                                          NULL};
    bson_iter_t it, child;
    memset(arg, 0, sizeof *arg);
    *other = NULL;
    if (!ms_check_fields(c, allowed, error)) {
        return false;
    }
    for (int i = 0; other_options[i] && !*other; i++) {
        if (bson_has_field(c->cmd, other_options[i])) {
            *other = other_options[i];
        }
    }
    if (!bson_iter_init_find(&it, c->cmd, "index")) {
        return true;
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'collMod.index' is the wrong type '%s', "
                            "expected type 'object'",
                            type_name(&it));
    }
    arg->present = true;
    bson_iter_recurse(&it, &child);
    while (bson_iter_next(&child)) {
        if (!parse_index_field(&child, arg, error)) {
            return false;
        }
    }
    return true;
}

/* mongod's parseCollModRequest checks for the index option, in its order. */
static bool
check_index_arg(const index_arg_t *arg, bson_error_t *error)
{
    if (arg->name && arg->has_key) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "Cannot specify both key pattern and name.");
    }
    if (!arg->name && !arg->has_key) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "Must specify either index name or key pattern.");
    }
    if (!arg->has_expire && !arg->unsupported) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "no expireAfterSeconds, hidden, unique, or prepareUnique "
                            "field");
    }
    if (arg->unsupported) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "collMod index option '%s' is not supported by "
                            "mongoq-test-server",
                            arg->unsupported);
    }
    return true;
}

static ms_index_t *
find_index(const ms_coll_t *coll, const index_arg_t *arg, bson_error_t *error)
{
    size_t n = 0;
    ms_index_t *ix = NULL;
    char *key_json = NULL;
    if (arg->name) {
        ix = ms_coll_index_by_name(coll, arg->name);
        if (!ix) {
            ms_set_error(error, MS_ERR_INDEX_NOT_FOUND, "cannot find index %s for ns %s", arg->name,
                         coll->ns);
        }
        return ix;
    }
    ix = ms_coll_index_by_key(coll, &arg->key, &n);
    key_json = bson_as_relaxed_extended_json(&arg->key, NULL);
    if (n > 1) {
        ms_set_error(error, MS_ERR_AMBIGUOUS_INDEX_KEY_PATTERN,
                     "index keyPattern %s matches %zu indexes, must use index name.", key_json, n);
        ix = NULL;
    } else if (!ix) {
        ms_set_error(error, MS_ERR_INDEX_NOT_FOUND, "cannot find index %s for ns %s", key_json,
                     coll->ns);
    }
    bson_free(key_json);
    return ix;
}

/* An index without TTL can become a TTL index unless it is _id_ or compound (mongod 6.0). */
static bool
check_ttl_target(const ms_coll_t *coll, const ms_index_t *ix, bson_error_t *error)
{
    if (ix->has_ttl) {
        return true;
    }
    if (ix == coll->indexes[0]) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "the _id field does not support TTL indexes");
    }
    if (ix->nfields != 1) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "TTL indexes are single-field indexes, compound indexes do "
                            "not support TTL");
    }
    return true;
}

/* Changes the TTL and hands the change to the oplog as mongod's entry: the index option. */
static bool
apply_ttl(ms_cmd_t *c, ms_coll_t *coll, ms_index_t *ix, const index_arg_t *arg, bson_t *reply,
          bson_error_t *error)
{
    ms_wctx_t w;
    bson_t spec = BSON_INITIALIZER;
    bson_t index;
    if (ix->has_ttl) {
        BSON_APPEND_INT64(reply, "expireAfterSeconds_old", ix->expire_after_secs);
    }
    BSON_APPEND_INT64(reply, "expireAfterSeconds_new", arg->expire_secs);
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "index", &index);
    if (arg->name) {
        BSON_APPEND_UTF8(&index, "name", arg->name);
    } else {
        BSON_APPEND_DOCUMENT(&index, "keyPattern", &arg->key);
    }
    BSON_APPEND_INT64(&index, "expireAfterSeconds", arg->expire_secs);
    bson_append_document_end(&spec, &index);
    ms_wctx_init(&w, NULL);
    w.db = c->db;
    ms_txn_before_live_write(coll->db, coll->name, NULL);
    ms_index_set_ttl(ix, arg->expire_secs);
    ms_wctx_log(&w, MS_OP_COLL_MOD, coll->name, &spec);
    bool ok = ms_wctx_commit(&w, error);
    ms_wctx_destroy(&w);
    bson_destroy(&spec);
    return ok;
}

/*
 * Applies validator / validationLevel / validationAction to the live collection and hands the
 * change to the oplog as mongod's entry: the fields as given.
 */
static bool
apply_validation(ms_cmd_t *c, ms_coll_t *coll, const bson_t *changes, bson_error_t *error)
{
    ms_wctx_t w;
    bson_t options;
    ms_validation_merge(coll->options, changes, &options);
    ms_txn_before_live_write(coll->db, coll->name, NULL);
    bson_destroy(coll->options);
    coll->options = bson_copy(&options);
    ms_coll_validation_init(coll);
    ms_wctx_init(&w, NULL);
    w.db = c->db;
    ms_wctx_log(&w, MS_OP_COLL_MOD, coll->name, changes);
    bool ok = ms_wctx_commit(&w, error);
    ms_wctx_destroy(&w);
    bson_destroy(&options);
    return ok;
}

MS_HANDLER(coll_mod)
{
    index_arg_t arg;
    const char *other;
    bson_iter_t it;
    bson_iter_init(&it, c->cmd);
    bson_iter_next(&it);
    if (!BSON_ITER_HOLDS_UTF8(&it)) {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE, "collection name has invalid type %s",
                            type_name(&it));
    }
    if (!parse_command(c, &arg, &other, error)) {
        return false;
    }
    ms_coll_t *coll = ms_store_coll(c->db, bson_iter_utf8(&it, NULL));
    if (!coll) {
        return ms_set_error(error, MS_ERR_NAMESPACE_NOT_FOUND, "ns does not exist");
    }
    if (other) {
        return ms_set_error(error, MS_ERR_INVALID_OPTIONS,
                            "collMod option '%s' is not supported by "
                            "mongoq-test-server",
                            other);
    }
    bson_t changes;
    bool images = false;
    if (bson_iter_init_find(&it, c->cmd, "changeStreamPreAndPostImages") &&
        !ms_parse_pre_post_images("collMod", &it, &images, error)) {
        return false;
    }
    bool ok = ms_validation_parse(c, coll->name, &changes, error) &&
              (bson_empty(&changes) || apply_validation(c, coll, &changes, error));
    bson_destroy(&changes);
    if (ok && bson_iter_init_find(&it, c->cmd, "changeStreamPreAndPostImages")) {
        ok = apply_pre_post_images(c, coll, images, error);
    }
    if (!ok || !arg.present) {
        return ok; /* {collMod: coll} alone changes nothing, as on mongod */
    }
    if (!check_index_arg(&arg, error)) {
        return false;
    }
    ms_index_t *ix = find_index(coll, &arg, error);
    if (!ix || !check_ttl_target(coll, ix, error)) {
        return false;
    }
    return apply_ttl(c, coll, ix, &arg, reply, error);
}

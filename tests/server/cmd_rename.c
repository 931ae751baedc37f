/*
 * renameCollection, as mongod 6.0 (src/mongo/db/commands/rename_collection_cmd.cpp,
 * src/mongo/db/catalog/rename_collection.cpp): an admin command {renameCollection: "db.from",
 * to: "db.to", dropTarget}; the target dropped with dropTarget, else NamespaceExists; one
 * history entry (mongod's oplog has one renameCollection entry, dropTarget in it), which gives
 * change streams a rename event, then an invalidate on a collection stream. Renames across
 * databases are refused (NotImplemented): mongod copies the collection.
 */
#include "commands.h"
#include "store-private.h"

#include <string.h>

/* "db.coll" split into db (copied into buf) and the collection (a pointer into ns). */
static bool
split_ns(const char *ns, char *db, size_t db_len, const char **coll)
{
    const char *dot = strchr(ns, '.');
    if (!dot || dot == ns || (size_t)(dot - ns) >= db_len || !dot[1]) {
        return false;
    }
    memcpy(db, ns, (size_t)(dot - ns));
    db[dot - ns] = '\0';
    *coll = dot + 1;
    return true;
}

static bool
parse_ns(const bson_t *cmd, const char *field, const char *what, char *db, size_t db_len,
         const char **coll, bson_error_t *error)
{
    bson_iter_t it;
    bson_error_t ignored;
    if (!bson_iter_init_find(&it, cmd, field) || !BSON_ITER_HOLDS_UTF8(&it)) {
        return ms_set_error(error, MS_ERR_TYPE_MISMATCH,
                            "BSON field 'renameCollection.%s' is the wrong type, expected type "
                            "'string'",
                            field);
    }
    const char *ns = bson_iter_utf8(&it, NULL);
    if (!split_ns(ns, db, db_len, coll) || !ms_valid_coll_name(db, *coll, &ignored)) {
        return ms_set_error(error, MS_ERR_INVALID_NAMESPACE, "Invalid %s namespace: %s", what,
                            ns);
    }
    return true;
}

MS_HANDLER(rename_collection)
{
    static const char *const allowed[] = {"to", "dropTarget", "stayTemp", NULL};
    char from_db[128], to_db[128];
    const char *from, *to;
    bson_iter_t it;
    ms_wctx_t w;
    (void)reply;
    if (!ms_check_fields(c, allowed, error) ||
        !parse_ns(c->cmd, "renameCollection", "source", from_db, sizeof from_db, &from, error) ||
        !parse_ns(c->cmd, "to", "target", to_db, sizeof to_db, &to, error)) {
        return false;
    }
    bool drop_target = bson_iter_init_find(&it, c->cmd, "dropTarget") && bson_iter_as_bool(&it);
    if (strcmp(from_db, to_db) == 0 && strcmp(from, to) == 0) {
        return ms_set_error(error, MS_ERR_ILLEGAL_OPERATION, "Can't rename a collection to itself");
    }
    if (strcmp(from_db, to_db) != 0) {
        return ms_set_error(error, MS_ERR_NOT_IMPLEMENTED,
                            "renameCollection across databases is not supported by "
                            "mongoq-test-server");
    }
    ms_coll_t *source = ms_store_coll(from_db, from);
    if (!source) {
        return ms_set_error(error, MS_ERR_NAMESPACE_NOT_FOUND,
                            "Source collection %s.%s does not exist", from_db, from);
    }
    ms_coll_t *target = ms_store_coll(to_db, to);
    if (target && !drop_target) {
        return ms_set_error(error, MS_ERR_NAMESPACE_EXISTS, "target namespace exists");
    }
    ms_wctx_init(&w, NULL);
    w.db = from_db;
    ms_txn_before_live_write(from_db, from, NULL);
    ms_txn_before_live_write(to_db, to, NULL);
    if (target) {
        ms_store_drop_coll(target);
    }
    bson_t *spec = BCON_NEW("to", BCON_UTF8(to), "dropTarget", BCON_BOOL(target != NULL));
    ms_wctx_log(&w, MS_OP_RENAME, from, spec);
    ms_store_rename_coll(source, to);
    bool ok = ms_wctx_commit(&w, error);
    bson_destroy(spec);
    ms_wctx_destroy(&w);
    return ok;
}

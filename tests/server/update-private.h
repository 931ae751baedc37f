/*
 * mongoq-test-server: what the update files share. update.c parses an operator update into
 * modifications (one operator on one path), orders and checks them and applies them to a
 * mutable copy of the document; update_ops.c holds the operators, one row each in
 * update_ops[] (its argument check, its effect, its flags); upsert.c builds an upsert's seed.
 */
#ifndef MS_UPDATE_PRIVATE_H
#define MS_UPDATE_PRIVATE_H

#include "lang-private.h"

typedef struct ms_update_op_t ms_update_op_t;

/* One modification: {$inc: {"a.b": 1}} gives one, {$rename: {a: "b"}} two (the target too). */
typedef struct {
    const ms_update_op_t *op;
    const char *field;       /* the path as written */
    const bson_value_t *arg; /* points at argv once parsing is done */
    bson_value_t argv;       /* borrowed from the update */
    ms_path_t path;
    bool is_rename_target;   /* the second path of a $rename */
} ms_mod_t;

/* The document being updated and what messages and $currentDate need. */
typedef struct {
    const ms_ctx_t *ctx;
    const bson_value_t *id; /* the document's _id for messages, or NULL */
    ms_node_t *doc;
} ms_update_doc_t;

enum {
    UOP_CREATES_PATH = 1,  /* missing documents on the path are created (not $unset, $pull...) */
    UOP_DOLLAR_FIELDS = 2, /* its paths may name $-prefixed fields ($unset) */
    UOP_INSERT_ONLY = 4,   /* applies only when an upsert inserts ($setOnInsert) */
    UOP_MOVES = 8          /* its argument is a second path; apply resolves both ($rename) */
};

/* One update operator ({<name>: {path: arg, ...}}). */
struct ms_update_op_t {
    const char *name;
    /* Checks one argument before anything is applied (NULL: any value). */
    bool (*validate)(const ms_mod_t *mod, bson_error_t *error);
    /* Applies mod; parent holds the path's last component, key (both NULL with UOP_MOVES). */
    bool (*apply)(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                  const char *key, bson_error_t *error);
    unsigned flags; /* UOP_* */
};

/* ---- operators (update_ops.c, update_array.c) ---------------------------------------------- */

/* The row of the update operator called name, or NULL. */
const ms_update_op_t *
ms__update_op(const char *name);

/* update_array.c, named by update_ops[] */
bool
ms__update_validate_push(const ms_mod_t *mod, bson_error_t *error);
bool
ms__update_apply_push(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                      const char *key, bson_error_t *error);
bool
ms__update_validate_add_to_set(const ms_mod_t *mod, bson_error_t *error);
bool
ms__update_apply_add_to_set(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                            const char *key, bson_error_t *error);
bool
ms__update_validate_pop(const ms_mod_t *mod, bson_error_t *error);
bool
ms__update_apply_pop(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                     const char *key, bson_error_t *error);
bool
ms__update_validate_pull(const ms_mod_t *mod, bson_error_t *error);
bool
ms__update_apply_pull(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                      const char *key, bson_error_t *error);
bool
ms__update_validate_pull_all(const ms_mod_t *mod, bson_error_t *error);
bool
ms__update_apply_pull_all(const ms_update_doc_t *ud, const ms_mod_t *mod, ms_node_t *parent,
                          const char *key, bson_error_t *error);

/* update_positional.c: $[] and $[<identifier>] with arrayFilters */
/* "$[]" (*len 0) or "$[<identifier>]" (*id, *len: the identifier). */
bool
ms__update_is_positional(const char *comp, const char **id, size_t *len);
bool
ms__update_has_positional(const ms_mod_t *mod);
/* Applies mod at every array element its positional components select. */
bool
ms__update_apply_positional(const ms_update_doc_t *ud, const ms_mod_t *mod, bool create,
                            bson_error_t *error);

/* ---- paths in the mutable document (update.c) ------------------------------------------- */

/*
 * The container holding the last component of path. With create, missing intermediate
 * documents are made (and arrays padded); without it a missing step yields NULL (a no-op).
 * *failed is set with error when the path cannot exist (a scalar in the way).
 */
ms_node_t *
ms__update_resolve_parent(ms_node_t *doc, const ms_path_t *p, bool create, bool *failed,
                          bson_error_t *error);
/* Sets child `key` of a document or array (padding arrays with nulls), taking val. */
void
ms__update_set_child(ms_node_t *parent, const char *key, ms_node_t *val);
/* Child key of a document or array, or NULL. */
ms_node_t *
ms__update_child(ms_node_t *parent, const char *key);
ms_node_t *
ms__update_null_node(void);
/* "{_id: <id>}" of the document for messages ("{}" without one); caller frees (bson_free). */
char *
ms__update_id_json(const ms_update_doc_t *ud);

#endif

/*
 * mongoq-test-server: what the filter files share. match.c compiles a filter into a tree of
 * these nodes and walks documents with it; match_ops.c holds the field operators ($eq, $in,
 * $elemMatch, ...): each one's parser, its leaf's test of a value, and the query_ops[] table.
 */
#ifndef MS_MATCH_PRIVATE_H
#define MS_MATCH_PRIVATE_H

#include "lang-private.h"

#include <regex.h>

typedef enum { N_AND, N_OR, N_NOR, N_NOT, N_EXPR, N_TRUE, N_FALSE, N_LEAF } ms_qkind_t;

typedef struct ms_qnode_t ms_qnode_t;
typedef struct ms_query_op_t ms_query_op_t;

typedef struct {
    bson_value_t value; /* owned */
    regex_t *re;        /* compiled when value is a regex */
} ms_qitem_t;

struct ms_qnode_t {
    ms_qkind_t kind;
    ms_qnode_t **kids;
    size_t nkids;
    /* leaves */
    ms_path_t path;
    const ms_query_op_t *op;
    ms_qitem_t arg;   /* $eq, comparisons, $regex */
    ms_qitem_t *list; /* $in */
    size_t nlist;
    int *types; /* $type */
    size_t ntypes;
    int64_t size; /* $size */
    int64_t mod_div, mod_rem;
    ms_qnode_t *sub;   /* $elemMatch */
    bool elem_docs;    /* $elemMatch: a query on element documents, not operators on values */
    bson_value_t expr; /* N_EXPR, owned */
};

/* What a field operator's parser sees of {path: {..., name: arg, ...}}. */
typedef struct {
    const char *path;        /* NULL: the value itself ($elemMatch on values, $pull) */
    const ms_query_op_t *op; /* the operator's row */
    const bson_value_t *arg;
    const bson_value_t *ops; /* the whole operator document ($regex reads $options) */
    bool *regex_done;        /* $regex and $options make one leaf between them */
} ms_query_args_t;

enum {
    QOP_NEGATED = 1,     /* the leaf is negated as a whole: $ne, $nin */
    QOP_WHOLE_ARRAY = 2, /* an array is one value, its elements are not tried: $exists, $size,
                            $elemMatch */
    QOP_ABOVE = 4,       /* a comparison true above the argument: $gt, $gte */
    QOP_OR_EQUAL = 8     /* a comparison true at the argument: $lte, $gte */
};

/* One field operator: how {path: {name: arg}} becomes a node, and its leaf's test of a value
 * (v NULL: the path is missing; match NULL: the parser builds other nodes, as $not and $all). */
struct ms_query_op_t {
    const char *name;
    ms_qnode_t *(*parse)(const ms_query_args_t *a, bson_error_t *error);
    bool (*match)(const ms_qnode_t *n, const bson_value_t *v);
    unsigned flags; /* QOP_* */
};

/* ---- the tree (match.c) ----------------------------------------------------------------- */

ms_qnode_t *
ms__qnode_new(ms_qkind_t kind);
void
ms__qnode_destroy(ms_qnode_t *n);
void
ms__qnode_add(ms_qnode_t *parent, ms_qnode_t *kid);
/* A N_NOT node over kid. */
ms_qnode_t *
ms__qnode_not(ms_qnode_t *kid);
/* A leaf testing path (NULL: the value itself) with op's match function. */
ms_qnode_t *
ms__qleaf_new(const char *path, const ms_query_op_t *op, bson_error_t *error);
/* A whole filter ({a: 1, $or: [...]}), and a field's operator document ({$gt: 1, $lt: 5}). */
ms_qnode_t *
ms__qparse_filter(const bson_t *filter, bson_error_t *error);
ms_qnode_t *
ms__qparse_value_ops(const char *path, const bson_value_t *ops, bson_error_t *error);
/* Whether root (a document, or the value itself) matches n; ctx may be NULL. */
bool
ms__qmatch_node(const ms_qnode_t *n, const bson_value_t *root, const ms_ctx_t *ctx);

/* ---- field operators (match_ops.c) -------------------------------------------------------- */

/* The row of the field operator called name, or NULL. */
const ms_query_op_t *
ms__query_op(const char *name);
/* A leaf of op whose argument is v ({$eq: v}, {$regex: v}). */
ms_qnode_t *
ms__qleaf_with_arg(const char *path, const ms_query_op_t *op, const bson_value_t *v,
                   bson_error_t *error);
void
ms__qitem_destroy(ms_qitem_t *it);

#endif

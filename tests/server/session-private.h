/*
 * mongoq-test-server: what session.c (sessions, retryable writes, statement bookkeeping) and
 * txn.c (multi-document transactions: snapshots, conflicts, commit) share.
 */
#ifndef MS_SESSION_PRIVATE_H
#define MS_SESSION_PRIVATE_H

#include "store-private.h"

typedef enum { TXN_ACTIVE, TXN_COMMITTING, TXN_COMMITTED, TXN_ABORTED } txn_state_t;


typedef struct {
    char *db;
    char *coll;
    ms_coll_t *view; /* NULL: the collection did not exist */
} txn_view_t;

typedef struct {
    ms_op_type_t type;
    char *db;
    char *coll;
    bson_value_t id;
    bson_t *doc;
} txn_op_t;

typedef struct {
    char *ns;
    bson_value_t id;
} txn_key_t;

/* A key of a unique index (other than _id_) a transaction wrote: ns, index, the key tuple. */
typedef struct {
    char *ns;
    char *index;
    bson_value_t *vals; /* owned copies */
    size_t n;
} txn_ukey_t;

struct ms_txn_t {
    int64_t number;
    bson_t *lsid; /* {id: UUID} of its session, for the oplog */
    txn_state_t state;
    uint64_t snapshot_seq;
    txn_view_t *views;
    size_t nviews;
    txn_op_t *ops;
    size_t nops;
    txn_key_t *keys;
    size_t nkeys;
    txn_ukey_t *ukeys;
    size_t nukeys;
    bool conflicted; /* aborted by a conflicting live write */
    int64_t started_ms;
    struct ms_txn_t *next_active;
};

struct ms_session_t {
    uint8_t id[16];
    int64_t txn_number; /* highest seen, -1 none */
    bson_t *retry_reply; /* the reply of retryable write txn_number */
    ms_txn_t *txn;
    int64_t last_use_ms;
    struct ms_session_t *next;
};

/* ---- transactions (txn.c) ------------------------------------------------------------------ */

/* A new active transaction number of session lsid (taken), its snapshot taken now. */
ms_txn_t *
ms__txn_start(int64_t number, bson_t *lsid);
/* Ends a transaction (no longer active) in state, freeing its snapshot and operations. */
void
ms__txn_end(ms_txn_t *t, txn_state_t state);
/* Frees what a finished transaction still holds (its snapshot and operations). */
void
ms__txn_free_state(ms_txn_t *t);
/* Aborts (if active) and frees a transaction; NULL is a no-op. */
void
ms__txn_destroy(ms_txn_t *t);

#endif

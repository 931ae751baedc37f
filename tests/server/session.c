/*
 * Logical sessions and retryable writes, and the bookkeeping of each statement of a
 * multi-document transaction (all under the storage lock). Transactions themselves are in
 * txn.c.
 */
#include "session-private.h"

#include <string.h>

static ms_session_t *sessions;

/* ---- sessions ------------------------------------------------------------------------------ */

static ms_session_t *
find_session(const bson_value_t *lsid_id, bool create)
{
    const uint8_t *bytes = lsid_id->value.v_binary.data;
    uint32_t len = lsid_id->value.v_binary.data_len;
    uint8_t id[16] = {0};
    memcpy(id, bytes, len < 16 ? len : 16);
    for (ms_session_t *s = sessions; s; s = s->next) {
        if (memcmp(s->id, id, 16) == 0) {
            return s;
        }
    }
    if (!create) {
        return NULL;
    }
    ms_session_t *s = bson_malloc0(sizeof *s);
    memcpy(s->id, id, 16);
    s->txn_number = -1;
    s->next = sessions;
    sessions = s;
    return s;
}

static bson_t *
lsid_doc(const ms_cmd_t *c)
{
    bson_iter_t it;
    bson_t *doc = bson_new();
    if (bson_iter_init_find(&it, c->cmd, "lsid") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_iter_document(&it, &len, &data);
        bson_t view;
        bson_init_static(&view, data, len);
        bson_concat(doc, &view);
    }
    return doc;
}

static bool
begin_txn_statement(ms_cmd_t *c, ms_session_t *s, bool *replayed, bson_t *reply,
                    bson_error_t *error)
{
    bool txn_end_cmd = strcmp(c->name, "commitTransaction") == 0 ||
                       strcmp(c->name, "abortTransaction") == 0;
    if (c->txn_number < s->txn_number) {
        return ms_set_error(error, MS_ERR_TRANSACTION_TOO_OLD,
                            "Cannot start transaction %lld on session because a "
                            "newer transaction %lld has already started.",
                            (long long)c->txn_number, (long long)s->txn_number);
    }
    if (c->start_txn) {
        if (c->txn_number == s->txn_number) {
            return ms_set_error(error, MS_ERR_CONFLICTING_OPERATION_IN_PROGRESS,
                                "Cannot start a transaction at given transaction "
                                "number %lld a transaction with the same number is in state %s",
                                (long long)c->txn_number,
                                s->txn ? "in progress"
                                       : "retryable "
                                         "write");
        }
        ms__txn_destroy(s->txn);
        s->txn = ms__txn_start(c->txn_number, lsid_doc(c));
        s->txn_number = c->txn_number;
        if (s->retry_reply) {
            bson_destroy(s->retry_reply);
            s->retry_reply = NULL;
        }
        c->txn = s->txn;
        return true;
    }
    if (c->txn_number > s->txn_number || !s->txn || s->txn->number != c->txn_number) {
        return ms_set_error(error, MS_ERR_NO_SUCH_TRANSACTION,
                            "Given transaction number %lld does not match any "
                            "in-progress transactions. The active transaction number is %lld",
                            (long long)c->txn_number, (long long)s->txn_number);
    }
    ms_txn_t *t = s->txn;
    if (t->state == TXN_COMMITTED) {
        if (strcmp(c->name, "commitTransaction") == 0) {
            *replayed = true; /* a retried commit: same answer */
            (void)reply;
            return true;
        }
        return ms_set_error(error, MS_ERR_TRANSACTION_COMMITTED,
                            "Transaction %lld has been committed.", (long long)t->number);
    }
    if (t->state != TXN_ACTIVE) {
        if (t->conflicted && !txn_end_cmd) {
            return ms_set_error(error, MS_ERR_WRITE_CONFLICT,
                                "WriteConflict error: this operation conflicted "
                                "with another operation. Please retry your operation or "
                                "multi-document transaction.");
        }
        return ms_set_error(error, MS_ERR_NO_SUCH_TRANSACTION, "Transaction %lld has been aborted.",
                            (long long)t->number);
    }
    c->txn = t;
    return true;
}

static bool
begin_retryable(ms_cmd_t *c, ms_session_t *s, bool *replayed, bson_t *reply, bson_error_t *error)
{
    if (c->txn_number < s->txn_number) {
        return ms_set_error(error, MS_ERR_TRANSACTION_TOO_OLD,
                            "Retryable write with txnNumber %lld is prohibited on "
                            "session because a newer retryable write with txnNumber %lld has "
                            "already started on this session.",
                            (long long)c->txn_number, (long long)s->txn_number);
    }
    if (c->txn_number == s->txn_number) {
        if (s->txn) {
            return ms_set_error(error, MS_ERR_LOCATION50911,
                                "Cannot start a retryable write at given "
                                "transaction number %lld a transaction with the same number is "
                                "in progress",
                                (long long)c->txn_number);
        }
        if (s->retry_reply) {
            bson_concat(reply, s->retry_reply);
            *replayed = true;
        }
        return true;
    }
    ms__txn_destroy(s->txn);
    s->txn = NULL;
    if (s->retry_reply) {
        bson_destroy(s->retry_reply);
        s->retry_reply = NULL;
    }
    s->txn_number = c->txn_number;
    return true;
}

bool
ms_session_begin(ms_cmd_t *c, bool *replayed, bson_t *reply, bson_error_t *error)
{
    *replayed = false;
    if (!c->has_lsid) {
        return true;
    }
    ms_session_t *s = find_session(&c->lsid_id, true);
    s->last_use_ms = c->lang.now_ms;
    c->session = s;
    if (!c->has_txn_number) {
        return true;
    }
    if (c->in_txn) {
        return begin_txn_statement(c, s, replayed, reply, error);
    }
    return begin_retryable(c, s, replayed, reply, error);
}

static bool
has_write_errors(const bson_t *reply)
{
    return bson_has_field(reply, "writeErrors");
}

void
ms_session_end(ms_cmd_t *c, bool ok, const bson_t *reply)
{
    ms_session_t *s = c->session;
    if (!s || !c->has_txn_number) {
        return;
    }
    if (c->in_txn) {
        bool txn_end_cmd = strcmp(c->name, "commitTransaction") == 0 ||
                           strcmp(c->name, "abortTransaction") == 0;
        /* Any failed statement aborts the transaction, as on mongod. */
        if (c->txn && c->txn->state == TXN_ACTIVE && !txn_end_cmd &&
            (!ok || has_write_errors(reply))) {
            ms__txn_end(c->txn, TXN_ABORTED);
        }
        if (c->txn && c->txn->state != TXN_ACTIVE) {
            ms__txn_free_state(c->txn);
        }
        return;
    }
    if (ok && s->txn_number == c->txn_number && !c->retry_unrecorded) {
        if (s->retry_reply) {
            bson_destroy(s->retry_reply);
        }
        s->retry_reply = bson_copy(reply);
    }
}

void
ms_session_end_sessions(const bson_t *ids)
{
    bson_iter_t it, child;
    bson_iter_init(&it, ids);
    while (bson_iter_next(&it)) {
        if (!bson_iter_recurse(&it, &child) || !bson_iter_find(&child, "id") ||
            !BSON_ITER_HOLDS_BINARY(&child)) {
            continue;
        }
        ms_session_t *s = find_session(bson_iter_value(&child), false);
        if (!s) {
            continue;
        }
        for (ms_session_t **p = &sessions; *p; p = &(*p)->next) {
            if (*p == s) {
                *p = s->next;
                break;
            }
        }
        ms__txn_destroy(s->txn);
        if (s->retry_reply) {
            bson_destroy(s->retry_reply);
        }
        bson_free(s);
    }
}

void
ms_session_restore_retry(const bson_t *lsid, int64_t txn_number, const bson_t *reply)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, lsid, "id") || !BSON_ITER_HOLDS_BINARY(&it)) {
        return;
    }
    ms_session_t *s = find_session(bson_iter_value(&it), true);
    if (txn_number < s->txn_number) {
        return;
    }
    s->txn_number = txn_number;
    if (s->retry_reply) {
        bson_destroy(s->retry_reply);
    }
    s->retry_reply = bson_copy(reply);
}

/* Aborts the active transaction of one session and kills its cursors (mongod's killSessions:
 * the session stays, its operations and transaction end). */
static void
kill_session(ms_session_t *s)
{
    if (s->txn && s->txn->state == TXN_ACTIVE) {
        ms__txn_end(s->txn, TXN_ABORTED);
    }
    ms_cursor_kill_session(s->id);
}

void
ms_session_kill(const bson_t *ids)
{
    bson_iter_t it, child;
    if (!ids) {
        for (ms_session_t *s = sessions; s; s = s->next) {
            kill_session(s);
        }
        ms_cursor_kill_session(NULL);
        return;
    }
    bson_iter_init(&it, ids);
    while (bson_iter_next(&it)) {
        if (!bson_iter_recurse(&it, &child) || !bson_iter_find(&child, "id") ||
            !BSON_ITER_HOLDS_BINARY(&child)) {
            continue;
        }
        ms_session_t *s = find_session(bson_iter_value(&child), false);
        if (s) {
            kill_session(s);
        }
    }
}

/* SHA-256 of the empty user name: the uid of every session without authentication. */
static const uint8_t unauthenticated_uid[32] = {
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

void
ms_session_list(ms_docvec_t *out)
{
    for (ms_session_t *s = sessions; s; s = s->next) {
        bson_t doc = BSON_INITIALIZER, id;
        BSON_APPEND_DOCUMENT_BEGIN(&doc, "_id", &id);
        BSON_APPEND_BINARY(&id, "id", BSON_SUBTYPE_UUID, s->id, sizeof s->id);
        BSON_APPEND_BINARY(&id, "uid", BSON_SUBTYPE_BINARY, unauthenticated_uid,
                           sizeof unauthenticated_uid);
        bson_append_document_end(&doc, &id);
        BSON_APPEND_DATE_TIME(&doc, "lastUse", s->last_use_ms);
        ms_docvec_push_copy(out, &doc);
        bson_destroy(&doc);
    }
}

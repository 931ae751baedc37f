/*
 * Which driver errors leave a write's outcome unknown, which ones a fenced write may simply
 * send again, and which depend on the document (a poison message). Pure code, compiled in.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../../src/error.c"

static bson_error_t
err(uint32_t domain, uint32_t code)
{
    bson_error_t e;
    bson_set_error(&e, domain, code, "driver says %u", code);
    return e;
}

Test(error_classify, a_socket_error_after_sending_is_unknown)
{
    bson_error_t e = err(MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_SOCKET);
    mongoq__error_classify_write("ack", NULL, &e);
    cr_assert_eq(e.domain, MONGOQ_ERROR_DOMAIN);
    cr_assert_eq(e.code, MONGOQ_ERROR_UNKNOWN_OUTCOME);
    cr_assert(strstr(e.message, "ack") && strstr(e.message, "driver says"), "%s", e.message);
    cr_assert(mongoq__error_retryable(&e));
}

Test(error_classify, a_failed_connect_or_selection_sent_nothing)
{
    bson_error_t e = err(MONGOC_ERROR_STREAM, MONGOC_ERROR_STREAM_CONNECT);
    mongoq__error_classify_write("ack", NULL, &e);
    cr_assert_eq(e.domain, MONGOC_ERROR_STREAM, "unchanged");
    e = err(MONGOC_ERROR_SERVER_SELECTION, MONGOC_ERROR_SERVER_SELECTION_FAILURE);
    mongoq__error_classify_write("ack", NULL, &e);
    cr_assert_eq(e.domain, MONGOC_ERROR_SERVER_SELECTION, "unchanged");
}

Test(error_classify, a_retryable_label_or_write_concern_error_is_unknown)
{
    bson_t *reply = BCON_NEW("errorLabels", "[", "RetryableWriteError", "]");
    bson_error_t e = err(MONGOC_ERROR_SERVER, 10107);
    mongoq__error_classify_write("enqueue", reply, &e);
    cr_assert_eq(e.code, MONGOQ_ERROR_UNKNOWN_OUTCOME);
    bson_destroy(reply);
    e = err(MONGOC_ERROR_WRITE_CONCERN, 64);
    mongoq__error_classify_write("enqueue", NULL, &e);
    cr_assert_eq(e.code, MONGOQ_ERROR_UNKNOWN_OUTCOME);
    cr_assert_not(mongoq__error_retryable(&(bson_error_t){.domain = MONGOC_ERROR_WRITE_CONCERN,
                                                          .code = 64}),
                  "a write concern error is not resent blindly");
}

Test(error_classify, a_server_refusal_without_label_is_known)
{
    bson_error_t e = err(MONGOC_ERROR_SERVER, 91);
    mongoq__error_classify_write("ack", NULL, &e);
    cr_assert_eq(e.domain, MONGOC_ERROR_SERVER, "not applied: unchanged");
    cr_assert(mongoq__error_retryable(&e), "but a fenced write may send it again");
    e = err(MONGOC_ERROR_SERVER, 11000);
    cr_assert_not(mongoq__error_retryable(&e));
}

Test(error_classify, document_dependent_codes)
{
    uint32_t poison[] = {15, 121, 10334, 17419};
    for (size_t i = 0; i < sizeof poison / sizeof poison[0]; i++) {
        bson_error_t e = err(MONGOC_ERROR_SERVER, poison[i]);
        cr_assert(mongoq__error_document_dependent(&e), "%u", poison[i]);
    }
    uint32_t not_poison[] = {2, 9, 13, 91, 11000, 40324};
    for (size_t i = 0; i < sizeof not_poison / sizeof not_poison[0]; i++) {
        bson_error_t e = err(MONGOC_ERROR_SERVER, not_poison[i]);
        cr_assert_not(mongoq__error_document_dependent(&e), "%u", not_poison[i]);
    }
    bson_error_t net = err(MONGOC_ERROR_STREAM, 121);
    cr_assert_not(mongoq__error_document_dependent(&net), "a network error never is");
}

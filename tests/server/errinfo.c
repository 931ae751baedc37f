/*
 * The extra fields mongod attaches to some errors (ErrorExtraInfo): DuplicateKey's keyPattern
 * and keyValue, DocumentValidationFailure's errInfo. The operation that fails sets them on its
 * thread; the command layer appends them to the writeError or to the command's error reply.
 */
#include "server-private.h"

static _Thread_local bson_t info;
static _Thread_local bool info_init;

static void
ensure(void)
{
    if (!info_init) {
        bson_init(&info);
        info_init = true;
    }
}

bool
ms_error_has_info(int code)
{
    return code == MS_ERR_DUPLICATE_KEY || code == MS_ERR_DOCUMENT_VALIDATION_FAILURE;
}

const bson_t *
ms_error_info(void)
{
    ensure();
    return &info;
}

void
ms_error_info_set(const bson_t *fields)
{
    ensure();
    bson_reinit(&info);
    bson_concat(&info, fields);
}

void
ms_error_info_reset(void)
{
    if (info_init) {
        /* Back to inline storage: nothing stays allocated when the thread ends. */
        bson_destroy(&info);
        bson_init(&info);
    }
}

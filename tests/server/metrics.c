/*
 * serverStatus's metrics.document and metrics.queryExecutor, counted as mongod counts them
 * (src/mongo/db/curop_metrics.cpp, recordCurOpMetrics after every operation): documents
 * inserted, matched by updates ("updated" counts nMatched), deleted, and returned in cursor
 * batches; index keys examined ("scanned") and documents examined ("scannedObjects") by every
 * query plan that ran (explain's runs excluded). Cumulative since the server started.
 */
#include "store-private.h"

#include <stdatomic.h>

static _Atomic int64_t counters[MS_METRIC_COUNT];

void
ms_metrics_add(ms_metric_t m, int64_t n)
{
    if (m < MS_METRIC_COUNT && n > 0) {
        atomic_fetch_add(&counters[m], n);
    }
}

void
ms_metrics_append(bson_t *reply)
{
    bson_t metrics, doc, qe;
    BSON_APPEND_DOCUMENT_BEGIN(reply, "metrics", &metrics);
    BSON_APPEND_DOCUMENT_BEGIN(&metrics, "document", &doc);
    BSON_APPEND_INT64(&doc, "deleted", atomic_load(&counters[MS_METRIC_DELETED]));
    BSON_APPEND_INT64(&doc, "inserted", atomic_load(&counters[MS_METRIC_INSERTED]));
    BSON_APPEND_INT64(&doc, "returned", atomic_load(&counters[MS_METRIC_RETURNED]));
    BSON_APPEND_INT64(&doc, "updated", atomic_load(&counters[MS_METRIC_UPDATED]));
    bson_append_document_end(&metrics, &doc);
    BSON_APPEND_DOCUMENT_BEGIN(&metrics, "queryExecutor", &qe);
    BSON_APPEND_INT64(&qe, "scanned", atomic_load(&counters[MS_METRIC_SCANNED]));
    BSON_APPEND_INT64(&qe, "scannedObjects", atomic_load(&counters[MS_METRIC_SCANNED_OBJECTS]));
    bson_append_document_end(&metrics, &qe);
    bson_append_document_end(reply, &metrics);
}

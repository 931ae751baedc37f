"""Entity operations: one row per (entity kind, operation name) in OPERATIONS.

Each row names the handler and the arguments it passes to pymongo. An argument the row does
not list is one pymongo 3.11 has no way to send, so prescan() skips the test as "client" (a
limitation of the driver, not of the server under test). Handlers return what the operation
returns, converted to documents and lists as the format wants; ABSENT means "no result".

To add an operation: write a handler (ctx, target, args) and add a row.
"""
import time

from bson.son import SON
from pymongo import (DeleteMany, DeleteOne, InsertOne, ReplaceOne, ReturnDocument, UpdateMany,
                     UpdateOne)
from pymongo.change_stream import ChangeStream
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError
from pymongo.results import (BulkWriteResult, DeleteResult, InsertManyResult, InsertOneResult,
                             UpdateResult)

from entities import ClientEntity, FindCursor, RunnerError, ThreadEntity, read_preference
from entities import transaction_options
from match import ABSENT

ITERATE_TIMEOUT_S = 10.0  # iterateUntilDocumentOrError gives up (and fails) after this


def kind_of(obj):
    for cls, name in ((ClientEntity, "client"), (Database, "database"), (Collection, "collection"),
                      (ClientSession, "session"), (ChangeStream, "changeStream"),
                      (FindCursor, "findCursor"), (ThreadEntity, "thread")):
        if isinstance(obj, cls):
            return name
    return "value"


# --- argument conversion ---

def _pairs(v):
    """pymongo 3.11 wants sort and index keys as (key, direction) pairs, not a document."""
    return list(v.items()) if isinstance(v, dict) else v


def _kw(args, names, convert=None):
    """Keyword arguments for pymongo from the format's argument names ({format: pymongo})."""
    kw = {}
    for src, dst in names.items():
        if src in args:
            value = args[src]
            if convert and src in convert:
                value = convert[src](value)
            kw[dst] = value
    return kw


COMMON = {"session": "session"}
HINT = {"hint": _pairs}

# --- results as documents ---


def result_doc(r):
    if not getattr(r, "acknowledged", True):
        return {"acknowledged": False}
    if isinstance(r, InsertOneResult):
        return {"insertedId": r.inserted_id}
    if isinstance(r, InsertManyResult):
        return {"insertedIds": {str(i): v for i, v in enumerate(r.inserted_ids)}}
    if isinstance(r, UpdateResult):
        doc = {"matchedCount": r.matched_count, "modifiedCount": r.modified_count,
               "upsertedCount": 0 if r.upserted_id is None else 1}
        if r.upserted_id is not None:
            doc["upsertedId"] = r.upserted_id
        return doc
    if isinstance(r, DeleteResult):
        return {"deletedCount": r.deleted_count}
    if isinstance(r, BulkWriteResult):
        return bulk_doc(r.bulk_api_result)
    return r


def bulk_doc(raw):
    """A BulkWriteResult document from pymongo's raw bulk result (also BulkWriteError.details)."""
    return {"insertedCount": raw.get("nInserted", 0), "matchedCount": raw.get("nMatched", 0),
            "modifiedCount": raw.get("nModified", 0), "deletedCount": raw.get("nRemoved", 0),
            "upsertedCount": raw.get("nUpserted", 0),
            "upsertedIds": {str(u["index"]): u["_id"] for u in raw.get("upserted", [])}}


def error_result(exc):
    """The partial result an error carries (a BulkWriteError's), or ABSENT."""
    if isinstance(exc, BulkWriteError):
        return bulk_doc(exc.details)
    return ABSENT


# --- collection operations ---

INSERT_KW = dict(COMMON, bypassDocumentValidation="bypass_document_validation")
ORDERED_KW = dict(INSERT_KW, ordered="ordered")


def insert_one(ctx, coll, a):
    return result_doc(coll.insert_one(a["document"], **_kw(a, INSERT_KW)))


def insert_many(ctx, coll, a):
    return result_doc(coll.insert_many(a["documents"], **_kw(a, ORDERED_KW)))


UPDATE_KW = dict(COMMON, upsert="upsert", bypassDocumentValidation="bypass_document_validation",
                 collation="collation", arrayFilters="array_filters", hint="hint")


def update_one(ctx, coll, a):
    return result_doc(coll.update_one(a["filter"], a["update"], **_kw(a, UPDATE_KW, HINT)))


def update_many(ctx, coll, a):
    return result_doc(coll.update_many(a["filter"], a["update"], **_kw(a, UPDATE_KW, HINT)))


REPLACE_KW = {k: v for k, v in UPDATE_KW.items() if k != "arrayFilters"}


def replace_one(ctx, coll, a):
    return result_doc(coll.replace_one(a["filter"], a["replacement"], **_kw(a, REPLACE_KW, HINT)))


DELETE_KW = dict(COMMON, collation="collation", hint="hint")


def delete_one(ctx, coll, a):
    return result_doc(coll.delete_one(a["filter"], **_kw(a, DELETE_KW, HINT)))


def delete_many(ctx, coll, a):
    return result_doc(coll.delete_many(a["filter"], **_kw(a, DELETE_KW, HINT)))


# Write models of bulkWrite: (class, format argument -> pymongo argument).
MODELS = {
    "insertOne": (InsertOne, {"document": "document"}),
    "updateOne": (UpdateOne, {"filter": "filter", "update": "update", "upsert": "upsert",
                              "collation": "collation", "arrayFilters": "array_filters", "hint": "hint"}),
    "updateMany": (UpdateMany, {"filter": "filter", "update": "update", "upsert": "upsert",
                                "collation": "collation", "arrayFilters": "array_filters", "hint": "hint"}),
    "replaceOne": (ReplaceOne, {"filter": "filter", "replacement": "replacement", "upsert": "upsert",
                                "collation": "collation", "hint": "hint"}),
    "deleteOne": (DeleteOne, {"filter": "filter", "collation": "collation", "hint": "hint"}),
    "deleteMany": (DeleteMany, {"filter": "filter", "collation": "collation", "hint": "hint"}),
}


def bulk_write(ctx, coll, a):
    requests = []
    for model in a["requests"]:
        (name, body), = model.items()
        cls, names = MODELS[name]
        requests.append(cls(**_kw(body, names, HINT)))
    return result_doc(coll.bulk_write(requests, **_kw(a, ORDERED_KW)))


FIND_KW = dict(COMMON, filter="filter", projection="projection", sort="sort", skip="skip", limit="limit",
               batchSize="batch_size", hint="hint", collation="collation", comment="comment",
               allowDiskUse="allow_disk_use", maxTimeMS="max_time_ms", min="min", max="max",
               returnKey="return_key", showRecordId="show_record_id", noCursorTimeout="no_cursor_timeout",
               allowPartialResults="allow_partial_results")
FIND_CONVERT = {"sort": _pairs, "hint": _pairs, "min": _pairs, "max": _pairs}


def find(ctx, coll, a):
    return list(coll.find(**_kw(a, FIND_KW, FIND_CONVERT)))


def find_one(ctx, coll, a):
    doc = coll.find_one(**_kw(a, FIND_KW, FIND_CONVERT))
    return doc


def create_find_cursor(ctx, coll, a):
    return FindCursor(coll.find(**_kw(a, FIND_KW, FIND_CONVERT)))


# findAndModify helpers pass unknown keyword arguments into the command (pymongo documents
# this), which is how comment, let and maxTimeMS reach the server.
FAM_KW = dict(COMMON, projection="projection", sort="sort", hint="hint", upsert="upsert",
              collation="collation", arrayFilters="array_filters",
              bypassDocumentValidation="bypassDocumentValidation", comment="comment", let="let",
              maxTimeMS="maxTimeMS")


def _return_document(a, kw):
    if "returnDocument" in a:
        value = a["returnDocument"].lower()
        if value not in ("before", "after"):
            raise RunnerError("returnDocument %r is neither Before nor After" % a["returnDocument"])
        kw["return_document"] = ReturnDocument.AFTER if value == "after" else ReturnDocument.BEFORE
    return kw


def find_one_and_update(ctx, coll, a):
    kw = _return_document(a, _kw(a, FAM_KW, dict(HINT, sort=_pairs)))
    return coll.find_one_and_update(a["filter"], a["update"], **kw)


def find_one_and_replace(ctx, coll, a):
    kw = _return_document(a, _kw(a, FAM_KW, dict(HINT, sort=_pairs)))
    return coll.find_one_and_replace(a["filter"], a["replacement"], **kw)


def find_one_and_delete(ctx, coll, a):
    return coll.find_one_and_delete(a["filter"], **_kw(a, FAM_KW, dict(HINT, sort=_pairs)))


# aggregate, distinct and the counts also pass extra keyword arguments into the command.
AGG_KW = dict(COMMON, allowDiskUse="allowDiskUse", batchSize="batchSize", collation="collation",
              maxTimeMS="maxTimeMS", comment="comment", let="let", hint="hint",
              bypassDocumentValidation="bypassDocumentValidation")


def aggregate(ctx, target, a):
    return list(target.aggregate(a["pipeline"], **_kw(a, AGG_KW, HINT)))


DISTINCT_KW = dict(COMMON, collation="collation", hint="hint", comment="comment", maxTimeMS="maxTimeMS")


def distinct(ctx, coll, a):
    return coll.distinct(a["fieldName"], a.get("filter"), **_kw(a, DISTINCT_KW, HINT))


COUNT_KW = dict(COMMON, skip="skip", limit="limit", collation="collation", hint="hint",
                comment="comment", maxTimeMS="maxTimeMS")


def count_documents(ctx, coll, a):
    return coll.count_documents(a["filter"], **_kw(a, COUNT_KW, HINT))


def count(ctx, coll, a):
    return coll.count(a.get("filter"), **_kw(a, COUNT_KW, HINT))


def estimated_document_count(ctx, coll, a):
    return coll.estimated_document_count(**_kw(a, {"maxTimeMS": "maxTimeMS", "comment": "comment"}))


def create_index(ctx, coll, a):
    kw = {k: v for k, v in a.items() if k not in ("keys", "session")}
    return coll.create_index(_pairs(a["keys"]), **dict(kw, **_kw(a, COMMON)))


def drop_index(ctx, coll, a):
    coll.drop_index(a["name"], **_kw(a, COMMON))
    return ABSENT


def list_indexes(ctx, coll, a):
    return list(coll.list_indexes(**_kw(a, COMMON)))


def rename(ctx, coll, a):
    return coll.rename(a["to"], **_kw(a, dict(COMMON, dropTarget="dropTarget")))


def drop(ctx, coll, a):
    coll.drop(**_kw(a, COMMON))
    return ABSENT


def create_change_stream(ctx, target, a):
    if isinstance(target, ClientEntity):
        target = target.client
    kw = _kw(a, dict(COMMON, fullDocument="full_document", resumeAfter="resume_after",
                     startAfter="start_after", startAtOperationTime="start_at_operation_time",
                     batchSize="batch_size", collation="collation", maxAwaitTimeMS="max_await_time_ms"))
    return target.watch(a.get("pipeline", []), **kw)


# --- database operations ---

def run_command(ctx, db, a):
    kw = _kw(a, COMMON)
    if "readPreference" in a:
        kw["read_preference"] = read_preference(a["readPreference"])
    return db.command(SON(a["command"]), **kw)


def create_collection(ctx, db, a):
    # Collection(create=True) sends the one create command (create_collection would first
    # list the collections to refuse an existing name, a command the tests do not expect).
    opts = {k: v for k, v in a.items() if k not in ("collection", "session")}
    Collection(db, a["collection"], create=True, **dict(opts, **_kw(a, COMMON)))
    return ABSENT


def drop_collection(ctx, db, a):
    db.drop_collection(a["collection"], **_kw(a, COMMON))
    return ABSENT


def modify_collection(ctx, db, a):
    options = [(k, v) for k, v in a.items() if k not in ("collection", "session")]
    cmd = SON([("collMod", a["collection"])] + options)
    return db.command(cmd, **_kw(a, COMMON))


def list_collections(ctx, db, a):
    return list(db.list_collections(**_kw(a, dict(COMMON, filter="filter", batchSize="batchSize"))))


def list_collection_names(ctx, db, a):
    return db.list_collection_names(**_kw(a, dict(COMMON, filter="filter")))


# --- client operations ---

def list_databases(ctx, client, a):
    return list(client.client.list_databases(**_kw(a, dict(COMMON, filter="filter"))))


def list_database_names(ctx, client, a):
    return client.client.list_database_names(**_kw(a, COMMON))


# --- session operations ---

def start_transaction(ctx, session, a):
    ctx.entities.started_transaction = True
    opts = transaction_options(a)
    session.start_transaction(read_concern=opts.read_concern, write_concern=opts.write_concern,
                              read_preference=opts.read_preference,
                              max_commit_time_ms=opts.max_commit_time_ms)
    return ABSENT


def commit_transaction(ctx, session, a):
    session.commit_transaction()
    return ABSENT


def abort_transaction(ctx, session, a):
    session.abort_transaction()
    return ABSENT


def end_session(ctx, session, a):
    session.end_session()
    return ABSENT


def with_transaction(ctx, session, a):
    ctx.entities.started_transaction = True
    opts = transaction_options(a)

    def callback(s):
        for op in a["callback"]:
            ctx.run_operation(op)
    session.with_transaction(callback, read_concern=opts.read_concern, write_concern=opts.write_concern,
                             read_preference=opts.read_preference,
                             max_commit_time_ms=opts.max_commit_time_ms)
    return ABSENT


# --- cursor and change stream operations ---

def iterate_until_document_or_error(ctx, cursor, a):
    if isinstance(cursor, FindCursor):
        return cursor.next_document()
    deadline = time.monotonic() + ITERATE_TIMEOUT_S
    while True:
        doc = cursor.try_next()
        if doc is not None:
            return doc
        if time.monotonic() > deadline:
            raise RunnerError("no change within %.0f s" % ITERATE_TIMEOUT_S)


def iterate_once(ctx, cursor, a):
    if isinstance(cursor, FindCursor):
        return cursor.next_document()
    doc = cursor.try_next()
    return ABSENT if doc is None else doc


def close(ctx, target, a):
    try:
        target.client.close() if isinstance(target, ClientEntity) else target.close()
    except Exception:
        pass  # the format: errors from close are suppressed
    return ABSENT


class Op:
    def __init__(self, fn, args, required=(), docs=False):
        self.fn = fn
        self.args = set(args) | set(required)
        self.required = set(required)
        self.docs = docs  # the result is a list of root-level documents


S = ("session",)
TXN_ARGS = ("readConcern", "writeConcern", "readPreference", "maxCommitTimeMS")
AGG_ARGS = S + ("allowDiskUse", "batchSize", "collation", "maxTimeMS", "comment", "let", "hint",
                "bypassDocumentValidation")
FIND_ARGS = tuple(FIND_KW)
FAM_ARGS = tuple(FAM_KW) + ("returnDocument",)
CS_ARGS = S + ("pipeline", "fullDocument", "resumeAfter", "startAfter", "startAtOperationTime",
               "batchSize", "collation", "maxAwaitTimeMS")
INDEX_OPTIONS = ("name", "unique", "sparse", "expireAfterSeconds", "partialFilterExpression",
                 "background", "collation", "hidden", "weights", "default_language",
                 "language_override", "textIndexVersion", "2dsphereIndexVersion", "bits", "min",
                 "max", "wildcardProjection", "storageEngine")

OPERATIONS = {
    "collection": {
        "insertOne": Op(insert_one, tuple(INSERT_KW), ("document",)),
        "insertMany": Op(insert_many, tuple(ORDERED_KW), ("documents",)),
        "updateOne": Op(update_one, tuple(UPDATE_KW), ("filter", "update")),
        "updateMany": Op(update_many, tuple(UPDATE_KW), ("filter", "update")),
        "replaceOne": Op(replace_one, tuple(REPLACE_KW), ("filter", "replacement")),
        "deleteOne": Op(delete_one, tuple(DELETE_KW), ("filter",)),
        "deleteMany": Op(delete_many, tuple(DELETE_KW), ("filter",)),
        "bulkWrite": Op(bulk_write, tuple(ORDERED_KW), ("requests",)),
        "find": Op(find, FIND_ARGS, docs=True),
        "findOne": Op(find_one, FIND_ARGS),
        "createFindCursor": Op(create_find_cursor, FIND_ARGS),
        "findOneAndUpdate": Op(find_one_and_update, FAM_ARGS, ("filter", "update")),
        "findOneAndReplace": Op(find_one_and_replace, FAM_ARGS, ("filter", "replacement")),
        "findOneAndDelete": Op(find_one_and_delete, tuple(a for a in FAM_ARGS if a not in (
            "upsert", "arrayFilters", "bypassDocumentValidation", "returnDocument")), ("filter",)),
        "aggregate": Op(aggregate, AGG_ARGS, ("pipeline",), docs=True),
        "distinct": Op(distinct, tuple(DISTINCT_KW) + ("filter",), ("fieldName",)),
        "countDocuments": Op(count_documents, tuple(COUNT_KW), ("filter",)),
        "count": Op(count, tuple(COUNT_KW) + ("filter",)),
        "estimatedDocumentCount": Op(estimated_document_count, ("maxTimeMS", "comment")),
        "createIndex": Op(create_index, S + INDEX_OPTIONS, ("keys",)),
        "dropIndex": Op(drop_index, S, ("name",)),
        "listIndexes": Op(list_indexes, S, docs=True),
        "rename": Op(rename, S + ("dropTarget",), ("to",)),
        "drop": Op(drop, S),
        "createChangeStream": Op(create_change_stream, CS_ARGS),
    },
    "database": {
        "runCommand": Op(run_command, S + ("readPreference",), ("command", "commandName")),
        "aggregate": Op(aggregate, AGG_ARGS, ("pipeline",), docs=True),
        "createCollection": Op(create_collection, S + (
            "capped", "size", "max", "storageEngine", "validator", "validationLevel", "validationAction",
            "indexOptionDefaults", "viewOn", "pipeline", "collation", "changeStreamPreAndPostImages",
            "timeseries", "expireAfterSeconds", "clusteredIndex"), ("collection",)),
        "dropCollection": Op(drop_collection, S, ("collection",)),
        "modifyCollection": Op(modify_collection, S + (
            "validator", "validationLevel", "validationAction", "index", "changeStreamPreAndPostImages",
            "expireAfterSeconds", "viewOn", "pipeline"), ("collection",)),
        "listCollections": Op(list_collections, S + ("filter", "batchSize"), docs=True),
        "listCollectionNames": Op(list_collection_names, S + ("filter",)),
        "createChangeStream": Op(create_change_stream, CS_ARGS),
    },
    "client": {
        "createChangeStream": Op(create_change_stream, CS_ARGS),
        "listDatabases": Op(list_databases, S + ("filter",), docs=True),
        "listDatabaseNames": Op(list_database_names, S),
        "close": Op(close, ()),
    },
    "session": {
        "startTransaction": Op(start_transaction, TXN_ARGS),
        "commitTransaction": Op(commit_transaction, ()),
        "abortTransaction": Op(abort_transaction, ()),
        "endSession": Op(end_session, ()),
        "withTransaction": Op(with_transaction, TXN_ARGS, ("callback",)),
    },
    "changeStream": {
        "iterateUntilDocumentOrError": Op(iterate_until_document_or_error, ()),
        "iterateOnce": Op(iterate_once, ()),
        "close": Op(close, ()),
    },
    "findCursor": {
        "iterateUntilDocumentOrError": Op(iterate_until_document_or_error, ()),
        "iterateOnce": Op(iterate_once, ()),
        "close": Op(close, ()),
    },
}

# Operations the format defines that pymongo 3.11 cannot perform (newer driver APIs).
CLIENT_MISSING = {
    "clientBulkWrite": "MongoClient.bulkWrite (pymongo 4.9)",
    "createSearchIndex": "search index helpers (pymongo 4.5)",
    "createSearchIndexes": "search index helpers (pymongo 4.5)",
    "dropSearchIndex": "search index helpers (pymongo 4.5)",
    "listSearchIndexes": "search index helpers (pymongo 4.5)",
    "updateSearchIndex": "search index helpers (pymongo 4.5)",
    "getSnapshotTime": "snapshot sessions (pymongo 3.12)",
    "runCursorCommand": "Database.cursor_command (pymongo 4.5)",
    "createCommandCursor": "Database.cursor_command (pymongo 4.5)",
    "appendMetadata": "MongoClient.append_metadata (pymongo 4.14)",
}

# Arguments of the format that pymongo 3.11 has no way to send, with the version that added
# them; prescan() names them in the skip reason.
NEWER_ARGUMENTS = {
    "let": "pymongo 4.1", "comment": "pymongo 4.1", "sort": "pymongo 4.11",
    "timeoutMS": "pymongo 4.2", "rawData": "pymongo 4.14", "fullDocumentBeforeChange": "pymongo 4.2",
    "showExpandedEvents": "pymongo 4.3", "verboseResults": "pymongo 4.9",
}

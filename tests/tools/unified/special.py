"""Special test operations (object: testRunner): one row each in SPECIAL.

Each takes (ctx, args) with the raw arguments of the test file. Fail points are recorded in
ctx.entities.fail_points so the runner turns them off after the test.
"""
import threading
import time

from bson.son import SON
from pymongo.client_session import ClientSession, _TxnState

from entities import ClientEntity, RunnerError, ThreadEntity, wait_until
from events import match_event
from match import Mismatch, exact_equal, show

WAIT_FOR_THREAD_S = 10.0
WAIT_FOR_EVENT_S = 10.0


def fail_point(ctx, a):
    entity = ctx.entities.get(a["client"], ClientEntity)
    _configure(ctx, entity, a["failPoint"])


def _configure(ctx, entity, command):
    recorder = entity.recorder
    recorder.muted_threads.add(threading.get_ident())
    try:
        entity.client.admin.command(SON(command))
    finally:
        recorder.muted_threads.discard(threading.get_ident())
    ctx.entities.fail_points.append(command["configureFailPoint"])


def targeted_fail_point(ctx, a):
    """Sessions are pinned only to a mongos; on a replica set this is the format's error."""
    session = ctx.entities.get(a["session"], ClientSession)
    if session._pinned_address is None:
        raise RunnerError("targetedFailPoint: session %s is not pinned to a mongos" % a["session"])
    raise RunnerError("targetedFailPoint: a pinned session needs a sharded cluster")


TXN_STATES = {
    _TxnState.NONE: "none", _TxnState.STARTING: "starting", _TxnState.IN_PROGRESS: "in_progress",
    _TxnState.COMMITTED: "committed", _TxnState.COMMITTED_EMPTY: "committed",
    _TxnState.ABORTED: "aborted",
}


def assert_session_transaction_state(ctx, a):
    session = ctx.entities.get(a["session"], ClientSession)
    state = TXN_STATES[session._transaction.state]
    if state != a["state"]:
        raise Mismatch("session %s is in transaction state %s, expected %s" % (a["session"], state, a["state"]))


def assert_session_pinned(ctx, a):
    if ctx.entities.get(a["session"], ClientSession)._pinned_address is None:
        raise Mismatch("session %s is not pinned" % a["session"])


def assert_session_unpinned(ctx, a):
    address = ctx.entities.get(a["session"], ClientSession)._pinned_address
    if address is not None:
        raise Mismatch("session %s is pinned to %s" % (a["session"], address))


def _last_two_lsids(ctx, a):
    started = ctx.entities.get(a["client"], ClientEntity).recorder.started_events
    if len(started) < 2:
        raise Mismatch("fewer than two commands were observed on %s" % a["client"])
    lsids = [e.command.get("lsid") for e in started[-2:]]
    if None in lsids:
        raise Mismatch("one of the last two commands (%s) has no lsid" % ", ".join(e.command_name for e in started[-2:]))
    return lsids


def assert_different_lsid(ctx, a):
    first, second = _last_two_lsids(ctx, a)
    if exact_equal(first, second):
        raise Mismatch("the last two commands share lsid %s" % show(first))


def assert_same_lsid(ctx, a):
    first, second = _last_two_lsids(ctx, a)
    if not exact_equal(first, second):
        raise Mismatch("the last two commands have lsids %s and %s" % (show(first), show(second)))


def assert_session_dirty(ctx, a):
    if not ctx.entities.get(a["session"], ClientSession)._server_session.dirty:
        raise Mismatch("session %s is not dirty" % a["session"])


def assert_session_not_dirty(ctx, a):
    if ctx.entities.get(a["session"], ClientSession)._server_session.dirty:
        raise Mismatch("session %s is dirty" % a["session"])


def _collection_names(ctx, a):
    db = ctx.internal[a["databaseName"]]
    return db.list_collection_names(filter={"name": a["collectionName"]})


def assert_collection_exists(ctx, a):
    if a["collectionName"] not in _collection_names(ctx, a):
        raise Mismatch("collection %s.%s does not exist" % (a["databaseName"], a["collectionName"]))


def assert_collection_not_exists(ctx, a):
    if a["collectionName"] in _collection_names(ctx, a):
        raise Mismatch("collection %s.%s exists" % (a["databaseName"], a["collectionName"]))


def _index_names(ctx, a):
    coll = ctx.internal[a["databaseName"]][a["collectionName"]]
    return [ix["name"] for ix in coll.list_indexes()]


def assert_index_exists(ctx, a):
    if a["indexName"] not in _index_names(ctx, a):
        raise Mismatch("index %s does not exist on %s.%s" % (a["indexName"], a["databaseName"], a["collectionName"]))


def assert_index_not_exists(ctx, a):
    if a["indexName"] in _index_names(ctx, a):
        raise Mismatch("index %s exists on %s.%s" % (a["indexName"], a["databaseName"], a["collectionName"]))


def create_entities(ctx, a):
    for spec in a["entities"]:
        ctx.entities.create(spec)


def assert_number_connections_checked_out(ctx, a):
    """Not checked: the runner does not count pool check-outs (no CMAP listener)."""


def run_on_thread(ctx, a):
    thread = ctx.entities.get(a["thread"], ThreadEntity)
    operation = a["operation"]
    thread.run(lambda: ctx.run_operation(operation))


def wait_for_thread(ctx, a):
    ctx.entities.get(a["thread"], ThreadEntity).join(WAIT_FOR_THREAD_S)


def wait(ctx, a):
    time.sleep(a["ms"] / 1000.0)


def _count_events(ctx, a):
    recorder = ctx.entities.get(a["client"], ClientEntity).recorder
    n = 0
    for event in list(recorder.events):
        try:
            match_event(a["event"], event, ctx.match_ctx)
            n += 1
        except Mismatch:
            pass
    return n


def wait_for_event(ctx, a):
    wait_until(lambda: _count_events(ctx, a) >= a["count"], WAIT_FOR_EVENT_S,
               "waitForEvent %s x%d" % (show(a["event"]), a["count"]))


def assert_event_count(ctx, a):
    n = _count_events(ctx, a)
    if n != a["count"]:
        raise Mismatch("%d events match %s, expected %d" % (n, show(a["event"]), a["count"]))


SPECIAL = {
    "failPoint": fail_point,
    "targetedFailPoint": targeted_fail_point,
    "assertSessionTransactionState": assert_session_transaction_state,
    "assertSessionPinned": assert_session_pinned,
    "assertSessionUnpinned": assert_session_unpinned,
    "assertDifferentLsidOnLastTwoCommands": assert_different_lsid,
    "assertSameLsidOnLastTwoCommands": assert_same_lsid,
    "assertSessionDirty": assert_session_dirty,
    "assertSessionNotDirty": assert_session_not_dirty,
    "assertCollectionExists": assert_collection_exists,
    "assertCollectionNotExists": assert_collection_not_exists,
    "assertIndexExists": assert_index_exists,
    "assertIndexNotExists": assert_index_not_exists,
    "createEntities": create_entities,
    "assertNumberConnectionsCheckedOut": assert_number_connections_checked_out,
    "runOnThread": run_on_thread,
    "waitForThread": wait_for_thread,
    "wait": wait,
    "waitForEvent": wait_for_event,
    "assertEventCount": assert_event_count,
}

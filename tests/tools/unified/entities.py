"""The entity map: clients (with their command event recorders), databases, collections,
sessions, change streams, cursors, threads and saved BSON values.

A test owns one Entities; close() ends its sessions, closes its cursors and clients.
"""
import copy
import queue
import threading
import time
from collections import abc

from pymongo import MongoClient, monitoring
from pymongo.change_stream import ChangeStream
from pymongo.client_session import ClientSession, TransactionOptions, _TxnState
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import read_pref_mode_from_name, make_read_preference
from pymongo.write_concern import WriteConcern

from match import Mismatch


class RunnerError(Exception):
    """The test file asks for something impossible (an unknown entity, a bad argument)."""


COMMAND_EVENTS = ("commandStartedEvent", "commandSucceededEvent", "commandFailedEvent")
SENSITIVE = {"authenticate", "saslstart", "saslcontinue", "getnonce", "createuser", "updateuser",
             "copydbgetnonce", "copydbsaslstart", "copydb"}


class Event:
    """One observed command monitoring event, copied when it was published."""

    def __init__(self, kind, ev):
        self.kind = kind
        self.command_name = ev.command_name
        self.database_name = getattr(ev, "database_name", None)
        self.request_id = ev.request_id
        self.command = copy.deepcopy(ev.command) if kind == "commandStartedEvent" else None
        self.reply = copy.deepcopy(ev.reply) if kind == "commandSucceededEvent" else None
        self.failure = getattr(ev, "failure", None)

    def __repr__(self):
        return "%s(%s)" % (self.kind, self.command_name)


class CommandRecorder(monitoring.CommandListener):
    """Records the command events a client entity observes (observeEvents), minus the ignored
    commands, configureFailPoint sent for failPoint operations, and sensitive commands."""

    def __init__(self, observe, ignore, observe_sensitive):
        self.observe = set(observe)
        self.ignore = set(ignore)
        self.observe_sensitive = observe_sensitive
        self.events = []
        self.started_events = []  # every kept commandStartedEvent, for the lsid assertions
        self.enabled = True
        self.muted_threads = set()
        self.dropped = set()  # request ids whose started event was dropped

    def _keep(self, ev, kind):
        if not self.enabled or threading.get_ident() in self.muted_threads:
            return False
        name = ev.command_name
        if name in self.ignore:
            return False
        if not self.observe_sensitive and name.lower() in SENSITIVE:
            return False
        if kind != "commandStartedEvent" and ev.request_id in self.dropped:
            return False
        return True

    def _record(self, kind, ev):
        if not self._keep(ev, kind):
            if kind == "commandStartedEvent":
                self.dropped.add(ev.request_id)
            return
        e = Event(kind, ev)
        if kind == "commandStartedEvent":
            self.started_events.append(e)
        if kind in self.observe:
            self.events.append(e)

    def started(self, ev):
        self._record("commandStartedEvent", ev)

    def succeeded(self, ev):
        self._record("commandSucceededEvent", ev)

    def failed(self, ev):
        self._record("commandFailedEvent", ev)


class ClientEntity:
    def __init__(self, name, client, recorder):
        self.name = name
        self.client = client
        self.recorder = recorder


class FindCursor:
    """A find cursor that has sent its find: the first document is fetched at creation."""

    def __init__(self, cursor):
        self.cursor = cursor
        self.first = [next(cursor)] if cursor.alive else []

    def next_document(self):
        if self.first:
            return self.first.pop()
        return next(self.cursor)

    def close(self):
        self.cursor.close()


class ThreadEntity:
    """A test runner thread: runs the operations given to it in order."""

    def __init__(self, name):
        self.name = name
        self.jobs = queue.Queue()
        self.errors = []
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                job()
            except BaseException as e:  # reported by waitForThread
                self.errors.append(e)

    def run(self, job):
        self.jobs.put(job)

    def join(self, timeout):
        self.jobs.put(None)
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise Mismatch("thread %s did not finish within %.0f s" % (self.name, timeout))
        if self.errors:
            raise self.errors[0]


def read_concern(doc):
    return ReadConcern(doc.get("level"))


def write_concern(doc):
    kw = {}
    if "w" in doc:
        kw["w"] = doc["w"]
    if "journal" in doc:
        kw["j"] = doc["journal"]
    if "wtimeoutMS" in doc:
        kw["wtimeout"] = doc["wtimeoutMS"]
    return WriteConcern(**kw)


def read_preference(doc):
    mode = read_pref_mode_from_name(doc["mode"][0].lower() + doc["mode"][1:])
    pref = make_read_preference(mode, doc.get("tagSets"), doc.get("maxStalenessSeconds", -1))
    if "hedge" in doc:
        pref = type(pref)(pref.tag_sets, pref.max_staleness, hedge=doc["hedge"])
    return pref


def concern_options(doc):
    """collectionOrDatabaseOptions (and transaction options) as pymongo keyword arguments."""
    kw = {}
    if "readConcern" in doc:
        kw["read_concern"] = read_concern(doc["readConcern"])
    if "writeConcern" in doc:
        kw["write_concern"] = write_concern(doc["writeConcern"])
    if "readPreference" in doc:
        kw["read_preference"] = read_preference(doc["readPreference"])
    return kw


class Entities:
    def __init__(self, uri):
        self.uri = uri
        self.map = {}
        self.lsids = {}
        self.lock = threading.Lock()
        self.fail_points = []  # (client, name) to turn off after the test
        self.started_transaction = False

    # --- the map ---
    def add(self, name, value):
        with self.lock:
            if name in self.map:
                raise RunnerError("entity %s already exists" % name)
            self.map[name] = value

    def get(self, name, kind=None):
        with self.lock:
            if name not in self.map:
                raise RunnerError("no entity named %s" % name)
            value = self.map[name]
        if kind is not None and not isinstance(value, kind):
            raise RunnerError("entity %s is a %s, not a %s" % (name, type(value).__name__,
                                                               getattr(kind, "__name__", kind)))
        return value

    def get_value(self, name):
        value = self.get(name)
        if isinstance(value, (ClientEntity, Database, Collection, ClientSession, ChangeStream,
                              FindCursor, ThreadEntity)):
            raise RunnerError("entity %s is not a BSON value" % name)
        return value

    def session_lsid(self, name):
        self.get(name, ClientSession)
        return self.lsids[name]

    # --- creation (createEntities) ---
    def create(self, spec):
        (kind, body), = spec.items()
        CREATORS[kind](self, body)

    def _client(self, body):
        observe = body.get("observeEvents", [])
        recorder = CommandRecorder([e for e in observe if e in COMMAND_EVENTS],
                                   body.get("ignoreCommandMonitoringEvents", []),
                                   body.get("observeSensitiveCommands", False))
        kw = {"tz_aware": True, "uuidRepresentation": "unspecified", "serverSelectionTimeoutMS": 10000}
        kw.update(body.get("uriOptions", {}))
        if "readPreferenceTags" in kw:
            kw["readPreferenceTags"] = [dict(t.split(":") for t in s.split(",")) if s else {}
                                        for s in kw["readPreferenceTags"]]
        client = MongoClient(self.uri, event_listeners=[recorder], **kw)
        self.add(body["id"], ClientEntity(body["id"], client, recorder))

    def _database(self, body):
        client = self.get(body["client"], ClientEntity).client
        db = client.get_database(body["databaseName"], **concern_options(body.get("databaseOptions", {})))
        self.add(body["id"], db)

    def _collection(self, body):
        db = self.get(body["database"], Database)
        coll = db.get_collection(body["collectionName"],
                                 **concern_options(body.get("collectionOptions", {})))
        self.add(body["id"], coll)

    def _session(self, body):
        client = self.get(body["client"], ClientEntity).client
        opts = body.get("sessionOptions", {})
        kw = {}
        if "causalConsistency" in opts:
            kw["causal_consistency"] = opts["causalConsistency"]
        if "defaultTransactionOptions" in opts:
            kw["default_transaction_options"] = transaction_options(opts["defaultTransactionOptions"])
        session = client.start_session(**kw)
        self.add(body["id"], session)
        self.lsids[body["id"]] = copy.deepcopy(session.session_id)

    def _thread(self, body):
        self.add(body["id"], ThreadEntity(body["id"]))

    # --- end of test ---
    def disable_recorders(self):
        for v in list(self.map.values()):
            if isinstance(v, ClientEntity):
                v.recorder.enabled = False

    def abort_unfinished_transactions(self):
        """Aborts again every explicit session's last transaction that a failed commit or abort
        may have left open on the server. The runner's stand-in for killAllSessions when the
        server lacks it: pymongo's state says committed or aborted, the server's may not."""
        for v in list(self.map.values()):
            if not isinstance(v, ClientSession) or v.has_ended:
                continue
            if v._transaction.state in (_TxnState.COMMITTED, _TxnState.ABORTED):
                v._transaction.state = _TxnState.IN_PROGRESS
                try:
                    v.abort_transaction()
                except Exception:
                    pass  # nothing was open, or the server is gone: either way nothing to do

    def close(self):
        values = list(self.map.values())
        for v in values:
            if isinstance(v, ThreadEntity):
                v.jobs.put(None)
        for v in values:
            try:
                if isinstance(v, ClientSession):
                    v.end_session()
                elif isinstance(v, (ChangeStream, FindCursor)):
                    v.close()
            except Exception:
                pass  # cleanup never hides the test's outcome
        for v in values:
            if isinstance(v, ClientEntity):
                v.client.close()
        self.map.clear()


def transaction_options(doc):
    kw = concern_options(doc)
    if "maxCommitTimeMS" in doc:
        kw["max_commit_time_ms"] = doc["maxCommitTimeMS"]
    return TransactionOptions(**kw)


CREATORS = {
    "client": Entities._client,
    "database": Entities._database,
    "collection": Entities._collection,
    "session": Entities._session,
    "thread": Entities._thread,
}


def wait_until(predicate, timeout, what):
    """Polls predicate every 10 ms for at most timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise Mismatch("%s: not within %.0f s" % (what, timeout))
        time.sleep(0.01)


def is_mapping(v):
    return isinstance(v, abc.Mapping)

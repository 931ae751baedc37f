"""Runs the tests of one unified-format file against the server: set-up (killAllSessions,
initialData), entities, operations with their expectations, expectEvents, outcome, clean-up.
"""
import copy
import json
import threading

from bson import json_util
from bson.binary import UuidRepresentation
from bson.json_util import JSONMode, JSONOptions
from bson.son import SON
from pymongo.collection import Collection
from pymongo.errors import OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.read_preferences import ReadPreference
from pymongo.write_concern import WriteConcern

from entities import Entities, RunnerError
from events import check_expected_events
from expect_error import check_error, describe
from match import ABSENT, Context, Mismatch, first_difference, match, show
from operations import OPERATIONS, kind_of
from prescan import prescan
from requirements import schema_supported, unmet
from special import SPECIAL

TEST_TIMEOUT_S = 120.0  # a test still running after this is reported failed and abandoned
JSON_OPTIONS = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True,
                           uuid_representation=UuidRepresentation.UNSPECIFIED)
# Extended JSON wrappers (the key sets of canonical and relaxed forms); any other document, even
# one with $-keys such as {$regex: ...} in a filter, stays a document as the test wrote it.
EXTJSON_KEYS = {frozenset(k) for k in (
    ["$oid"], ["$numberInt"], ["$numberLong"], ["$numberDouble"], ["$numberDecimal"], ["$binary"],
    ["$binary", "$type"], ["$date"], ["$timestamp"], ["$regularExpression"], ["$minKey"],
    ["$maxKey"], ["$symbol"], ["$code"], ["$code", "$scope"], ["$dbPointer"], ["$undefined"],
    ["$uuid"])}


def _object_pairs(pairs):
    if frozenset(k for k, _ in pairs) in EXTJSON_KEYS:
        return json_util.object_pairs_hook(pairs, JSON_OPTIONS)
    return dict(pairs)


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f, object_pairs_hook=_object_pairs)


class Result:
    def __init__(self, path, description, status, reason=""):
        self.path = path
        self.description = description
        self.status = status  # "pass", "fail" or "skip"
        self.reason = " ".join(str(reason).split())


class Failure(AssertionError):
    pass


class TestContext:
    """One test's state, handed to every operation handler."""

    def __init__(self, runner):
        self.runner = runner
        self.internal = runner.internal
        self.entities = Entities(runner.uri)
        self.match_ctx = Context(self.entities)

    def run_operation(self, op, propagate=False):
        name, obj = op["name"], op["object"]
        if obj == "testRunner":
            try:
                SPECIAL[name](self, op.get("arguments", {}))
            except (Mismatch, RunnerError) as e:
                raise type(e)("%s: %s" % (name, e))
            except PyMongoError as e:
                raise Failure("%s: %s" % (name, describe(e)))
            return
        target = self.entities.get(obj)
        entry = OPERATIONS[kind_of(target)].get(name)
        if entry is None:
            raise RunnerError("%s has no operation %s" % (obj, name))
        args = self._arguments(op.get("arguments", {}))
        result, error = ABSENT, None
        try:
            result = entry.fn(self, target, args)
        except (Mismatch, RunnerError, Failure):
            raise
        except Exception as e:  # the driver's error, judged below
            error = e
        try:
            self._judge(op, entry, result, error)
        except Mismatch as e:
            raise Mismatch("%s on %s: %s" % (name, obj, e))
        if error is not None and propagate:
            raise error

    def _arguments(self, raw):
        args = copy.deepcopy(raw)
        if "session" in args:
            args["session"] = self.entities.get(args["session"])
        return args

    def _judge(self, op, entry, result, error):
        if op.get("ignoreResultAndError"):
            return
        if "expectError" in op:
            check_error(op["expectError"], error, self.match_ctx)
            return
        if error is not None:
            raise Mismatch("unexpected error %s" % describe(error))
        if "expectResult" in op:
            _match_result(op["expectResult"], result, entry.docs, self.match_ctx)
        if "saveResultAsEntity" in op:
            if result is ABSENT:
                raise RunnerError("%s returned nothing to save" % op["name"])
            self.entities.add(op["saveResultAsEntity"], result)


def _match_result(expected, actual, docs, ctx):
    if docs and isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            raise Mismatch("expected %d document(s), got %d: %s" % (len(expected), len(actual), show(actual)))
        for i, (e, a) in enumerate(zip(expected, actual)):
            match(e, a, ctx, "result[%d]" % i, root=True)
    else:
        match(expected, actual, ctx, "result", root=True)


class FileRunner:
    def __init__(self, internal, uri, server, skiplist):
        self.internal = internal
        self.uri = uri
        self.server = server
        self.skiplist = skiplist

    def run_file(self, path, display, keep):
        """Results for the tests of one file; keep(description) says which to run."""
        try:
            testfile = load(path)
        except (OSError, ValueError) as e:
            return [Result(display, "(file)", "fail", "runner: cannot read %s: %s" % (path, e))]
        tests = [t for t in testfile.get("tests", []) if keep(t["description"])]
        if not schema_supported(testfile.get("schemaVersion", "0")):
            return [Result(display, t["description"], "skip",
                           "runner: schemaVersion %s" % testfile.get("schemaVersion")) for t in tests]
        file_unmet = unmet(testfile.get("runOnRequirements"), self.server)
        return [self.run_test(testfile, t, display, file_unmet) for t in tests]

    def skip_reason(self, testfile, test, display, file_unmet):
        """The test file's own reasons first (skipReason, requirements), then the runner's."""
        if "skipReason" in test:
            return "skipReason: %s" % test["skipReason"]
        return (file_unmet or unmet(test.get("runOnRequirements"), self.server)
                or self.skiplist.reason(display, test["description"]) or prescan(testfile, test))

    def run_test(self, testfile, test, display, file_unmet):
        why = self.skip_reason(testfile, test, display, file_unmet)
        if why:
            return Result(display, test["description"], "skip", why)
        outcome = []
        worker = threading.Thread(target=lambda: outcome.append(self._execute(testfile, test)), daemon=True)
        worker.start()
        worker.join(TEST_TIMEOUT_S)
        if worker.is_alive():
            return Result(display, test["description"], "fail",
                          "runner: the test did not finish within %.0f s (abandoned)" % TEST_TIMEOUT_S)
        failure = outcome[0]
        return Result(display, test["description"], "fail" if failure else "pass", failure or "")

    def _execute(self, testfile, test):
        """Runs one test; returns None when it passed, else the first failure as a line."""
        ctx = TestContext(self)
        failure = None
        try:
            self.kill_all_sessions()
            self.initial_data(testfile.get("initialData", []))
            for spec in testfile.get("createEntities", []):
                ctx.entities.create(spec)
            for i, op in enumerate(test["operations"]):
                try:
                    ctx.run_operation(op)
                except (Mismatch, RunnerError, Failure) as e:
                    failure = "operation %d: %s%s" % (i, "runner: " if isinstance(e, RunnerError) else "", e)
                    break
                except PyMongoError as e:  # propagated out of a callback
                    failure = "operation %d: %s" % (i, describe(e))
                    break
        except Exception as e:
            failure = "set-up: %s: %s" % (type(e).__name__, e)
        ctx.entities.disable_recorders()
        self.disable_fail_points(ctx)
        if failure is None:
            failure = self.check_after(ctx, test)
        if self.server.lacks_kill_all_sessions:
            ctx.entities.abort_unfinished_transactions()
        ctx.entities.close()
        if ctx.entities.started_transaction:
            self.kill_all_sessions()
        return failure

    def check_after(self, ctx, test):
        try:
            for spec in test.get("expectEvents", []):
                check_expected_events(spec, ctx.entities, ctx.match_ctx)
            for data in test.get("outcome", []):
                self.check_outcome(data)
        except (Mismatch, RunnerError, PyMongoError) as e:
            return "%s" % e
        return None

    # --- the internal client's part ---
    def kill_all_sessions(self):
        try:
            self.internal.admin.command({"killAllSessions": []})
        except OperationFailure as e:
            if e.code in (11601, 13):  # Interrupted, Unauthorized: the format allows ignoring them
                return
            self.server.lacks_kill_all_sessions = True
            self.server.gaps.add("killAllSessions: %s (code %s); the runner aborts its sessions' "
                                 "unfinished transactions itself" % (e.details.get("errmsg", e), e.code))

    def initial_data(self, collections):
        majority = WriteConcern(w="majority")
        for data in collections:
            db = self.internal.get_database(data["databaseName"], write_concern=majority)
            name = data["collectionName"]
            for drop in (name, "enxcol_.%s.esc" % name, "enxcol_.%s.ecoc" % name):
                db.drop_collection(drop)
            if "createOptions" in data or not data["documents"]:
                Collection(db, name, create=True, **data.get("createOptions", {}))
            if data["documents"]:
                db[name].insert_many(copy.deepcopy(data["documents"]))

    def disable_fail_points(self, ctx):
        for name in ctx.entities.fail_points:
            try:
                self.internal.admin.command(SON([("configureFailPoint", name), ("mode", "off")]))
            except PyMongoError:
                pass  # reported by the next test's failures, if it matters

    def check_outcome(self, data):
        coll = self.internal[data["databaseName"]].get_collection(
            data["collectionName"], read_concern=ReadConcern("local"), read_preference=ReadPreference.PRIMARY)
        actual = list(coll.find({}, sort=[("_id", 1)]))
        diff = first_difference(data["documents"], actual, "outcome")
        if diff:
            raise Mismatch("%s.%s %s" % (data["databaseName"], data["collectionName"], diff))

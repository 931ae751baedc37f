"""Reads a test before running it and says whether the client or the runner can run it.

A test that needs something pymongo 3.11 cannot do is skipped as "client: ..."; one that needs
something this runner does not implement as "runner: ..."; a feature outside what the test
server is for (CSFLE, GridFS, load balancers) as "out of scope: ...". None means it can run.
The checks are static, so a test never half-runs before it is found unrunnable.
"""
from pymongo import common
from pymongo.errors import ConfigurationError

from operations import CLIENT_MISSING, MODELS, NEWER_ARGUMENTS, OPERATIONS
from special import SPECIAL

CLIENT_FIELDS = {"id", "uriOptions", "useMultipleMongoses", "observeEvents",
                 "ignoreCommandMonitoringEvents", "observeSensitiveCommands"}
CLIENT_FIELD_REASONS = {
    "serverApi": "client: Stable API (pymongo 3.12)",
    "observeLogMessages": "runner: log message assertions",
    "storeEventsAsEntities": "runner: storeEventsAsEntities",
    "autoEncryptOpts": "out of scope: CSFLE",
    "awaitMinPoolSizeMS": "runner: awaitMinPoolSizeMS",
    "observeTracingMessages": "runner: tracing spans",
}
ENTITY_REASONS = {
    "bucket": "out of scope: GridFS",
    "clientEncryption": "out of scope: CSFLE",
}
COMMAND_EVENTS = {"commandStartedEvent", "commandSucceededEvent", "commandFailedEvent"}
SESSION_OPTIONS = {"causalConsistency", "defaultTransactionOptions"}
TXN_OPTIONS = {"readConcern", "writeConcern", "readPreference", "maxCommitTimeMS"}
ERROR_FIELDS = {"isError", "isClientError", "errorContains", "errorCode", "errorCodeName",
                "errorLabelsContain", "errorLabelsOmit", "errorResponse", "expectResult"}
ERROR_FIELD_REASONS = {
    "isTimeoutError": "client: client-side operation timeout (pymongo 4.2)",
    "writeErrors": "client: client bulk write errors (pymongo 4.9)",
    "writeConcernErrors": "client: client bulk write errors (pymongo 4.9)",
}
RESULT_KINDS = {"createChangeStream": "changeStream", "createFindCursor": "findCursor"}


class Scan:
    def __init__(self):
        self.kinds = {}  # entity id -> kind, as far as the file tells
        self.unacknowledged = set()  # clients, databases and collections with w: 0

    def entity(self, spec):
        (kind, body), = spec.items()
        if kind in ENTITY_REASONS:
            return ENTITY_REASONS[kind]
        self.kinds[body["id"]] = kind
        self._note_write_concern(kind, body)
        if kind == "client":
            return self.client(body)
        if kind == "session":
            return self.session(body)
        if kind in ("database", "collection"):
            opts = body.get("databaseOptions", body.get("collectionOptions", {}))
            if "timeoutMS" in opts:
                return "client: %s timeoutMS (client-side operation timeout, %s)" % (
                    kind, NEWER_ARGUMENTS["timeoutMS"])
        return None

    def _note_write_concern(self, kind, body):
        parent = body.get("client", body.get("database"))
        if kind == "client":
            w = body.get("uriOptions", {}).get("w")
        else:
            opts = body.get("databaseOptions", body.get("collectionOptions", {}))
            w = opts.get("writeConcern", {}).get("w", 0 if parent in self.unacknowledged else None)
        if w == 0:
            self.unacknowledged.add(body["id"])

    def client(self, body):
        for field in body:
            if field not in CLIENT_FIELDS:
                return CLIENT_FIELD_REASONS.get(field, "runner: client field %s" % field)
        events = set(body.get("observeEvents", [])) - COMMAND_EVENTS
        if events:
            return "runner: CMAP/SDAM events (%s)" % ", ".join(sorted(events))
        for name, value in body.get("uriOptions", {}).items():
            if isinstance(value, dict) and "$$placeholder" in value:
                return "runner: uriOptions placeholder %s" % name
            try:
                common.validate(name, value)
            except (ConfigurationError, ValueError, TypeError) as e:
                return "client: pymongo 3.11 rejects URI option %s=%r (%s)" % (name, value, e)
        return None

    def session(self, body):
        opts = body.get("sessionOptions", {})
        for name in opts:
            if name == "snapshot":
                return "client: snapshot sessions (pymongo 3.12)"
            if name not in SESSION_OPTIONS:
                return "client: session option %s" % name
        extra = set(opts.get("defaultTransactionOptions", {})) - TXN_OPTIONS
        if extra:
            return "client: transaction option %s" % ", ".join(sorted(extra))
        return None

    def operation(self, op):
        if op.get("object") == "testRunner":
            return self.special(op)
        name = op["name"]
        if name in CLIENT_MISSING:
            return "client: %s" % CLIENT_MISSING[name]
        kind = self.kinds.get(op["object"])
        table = OPERATIONS.get(kind, {})
        if name not in table:
            return "runner: %s operation %s" % (kind or "unknown entity", name)
        why = self.arguments(name, table[name], op.get("arguments", {}))
        if not why and op["object"] in self.unacknowledged:
            why = unacknowledged_hint(name, op.get("arguments", {}))
        if not why and "expectError" not in op:
            why = checked_keys(name, op.get("arguments", {}))
        if why:
            return why
        if "saveResultAsEntity" in op:
            self.kinds[op["saveResultAsEntity"]] = RESULT_KINDS.get(name, "value")
        for field in op.get("expectError", {}):
            if field not in ERROR_FIELDS:
                return ERROR_FIELD_REASONS.get(field, "runner: expectError field %s" % field)
        if name == "withTransaction":
            return self.operations(op["arguments"]["callback"])
        return None

    def arguments(self, name, entry, args):
        for arg in args:
            if arg not in entry.args:
                newer = NEWER_ARGUMENTS.get(arg)
                return "client: %s %s%s" % (name, arg, " (%s)" % newer if newer else " (pymongo 3.11 has no such option)")
        if name == "bulkWrite":
            for model in args.get("requests", []):
                (model_name, body), = model.items()
                allowed = MODELS.get(model_name, (None, {}))[1]
                for arg in body:
                    if arg not in allowed:
                        newer = NEWER_ARGUMENTS.get(arg, "pymongo 3.11 has no such option")
                        return "client: bulkWrite %s %s (%s)" % (model_name, arg, newer)
        return None

    def special(self, op):
        name = op["name"]
        if name not in SPECIAL:
            return "runner: testRunner operation %s" % name
        args = op.get("arguments", {})
        if name == "createEntities":
            return self.entities(args.get("entities", []))
        if name == "runOnThread":
            return self.operation(args["operation"])
        if name in ("waitForEvent", "assertEventCount"):
            (kind, _), = args["event"].items()
            if kind not in COMMAND_EVENTS:
                return "runner: CMAP/SDAM event %s" % kind
        return None

    def entities(self, specs):
        for spec in specs:
            why = self.entity(spec)
            if why:
                return why
        return None

    def operations(self, ops):
        for op in ops:
            why = self.operation(op)
            if why:
                return why
        return None


def _documents(name, args):
    """The documents pymongo 3.11 encodes with check_keys (inserts and replacements)."""
    if name == "insertOne":
        return [args.get("document")]
    if name == "insertMany":
        return args.get("documents", [])
    if name == "replaceOne":
        return [args.get("replacement")]
    if name == "bulkWrite":
        out = []
        for model in args.get("requests", []):
            (model_name, body), = model.items()
            out += [body.get("document"), body.get("replacement")]
        return out
    return []


def _bad_key(value):
    if isinstance(value, dict):
        for k, v in value.items():
            if k.startswith("$") or "." in k:
                return k
            bad = _bad_key(v)
            if bad:
                return bad
    elif isinstance(value, list):
        for v in value:
            bad = _bad_key(v)
            if bad:
                return bad
    return None


def checked_keys(name, args):
    """pymongo 3.11 refuses to send field names with '.' or a leading '$' in inserted and
    replacement documents (pymongo 4.0 lets the server judge them, as MongoDB 5.0+ accepts)."""
    for doc in _documents(name, args):
        key = _bad_key(doc)
        if key:
            return "client: %s field name %r (pymongo 3.11 refuses '.' and '$' in field names)" % (name, key)
    return None


def unacknowledged_hint(name, args):
    hinted = "hint" in args or any("hint" in next(iter(m.values())) for m in args.get("requests", []))
    if hinted:
        return "client: %s hint with w: 0 (pymongo 3.11 refuses hint on unacknowledged writes)" % name
    return None


TEST_FIELD_REASONS = {
    "expectLogMessages": "runner: log message assertions",
    "expectTracingMessages": "runner: tracing spans",
}


def prescan(testfile, test):
    """Why this test cannot run with this client and runner, or None."""
    scan = Scan()
    why = scan.entities(testfile.get("createEntities", []))
    if why:
        return why
    for field, reason in TEST_FIELD_REASONS.items():
        if field in test:
            return reason
    for spec in test.get("expectEvents", []):
        if spec.get("eventType", "command") != "command":
            return "runner: CMAP/SDAM events"
    return scan.operations(test["operations"])

"""runOnRequirements against the server under test, and schemaVersion support."""
from pymongo.errors import OperationFailure

from match import scalar_equal

SCHEMA_VERSION = (1, 21)  # the newest schema this runner reads (client bulk write errors)


def version_tuple(s):
    parts = [int(p) for p in str(s).split("-")[0].split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


def schema_supported(s):
    v = version_tuple(s)
    return v[0] == SCHEMA_VERSION[0] and v[:2] <= SCHEMA_VERSION


class Server:
    """What the requirements are checked against, asked once of the internal client."""

    def __init__(self, client, uri):
        self.client = client
        build = client.admin.command("buildInfo")
        self.version = tuple(build["versionArray"][:3])
        hello = client.admin.command("isMaster")
        if hello.get("msg") == "isdbgrid":
            self.topology = "sharded"
        elif "serviceId" in hello:
            self.topology = "load-balanced"
        elif "setName" in hello:
            self.topology = "replicaset"
        else:
            self.topology = "single"
        self.auth = "@" in uri.split("://", 1)[-1].split("/", 1)[0]
        self.parameters = {}
        self.gaps = set()  # commands the runner needed and the server lacks
        self.lacks_kill_all_sessions = False

    def parameter(self, name):
        if name not in self.parameters:
            try:
                self.parameters[name] = self.client.admin.command({"getParameter": 1, name: 1}).get(name)
            except OperationFailure as e:
                self.parameters[name] = None
                self.gaps.add("getParameter (%s): %s" % (name, e.details.get("errmsg", e)))
        return self.parameters[name]

    def version_string(self):
        return ".".join(str(p) for p in self.version)


def _unmet(req, server):
    """Why one runOnRequirement is not met, or None."""
    for key, value in req.items():
        why = CHECKS.get(key, _unknown)(key, value, server)
        if why:
            return why
    return None


def _min_version(key, value, server):
    if server.version < version_tuple(value):
        return "requirement: server %s < minServerVersion %s" % (server.version_string(), value)


def _max_version(key, value, server):
    if server.version > version_tuple(value):
        return "requirement: server %s > maxServerVersion %s" % (server.version_string(), value)


def _topologies(key, value, server):
    wanted = {"sharded" if t == "sharded-replicaset" else t for t in value}
    if server.topology not in wanted:
        return "requirement: topology %s not in %s" % (server.topology, "/".join(value))


def _serverless(key, value, server):
    if value == "require":
        return "requirement: serverless"


def _auth(key, value, server):
    if bool(value) != server.auth:
        return "requirement: auth %s" % ("enabled" if value else "disabled")


def _auth_mechanism(key, value, server):
    return "requirement: authMechanism %s (no auth)" % value


def _csfle(key, value, server):
    if value:
        return "requirement: csfle (out of scope: no libmongocrypt)"


def _server_parameters(key, value, server):
    for name, want in value.items():
        got = server.parameter(name)
        if got is None or not scalar_equal(want, got):
            return "requirement: server parameter %s=%r (server: %r)" % (name, want, got)


def _unknown(key, value, server):
    return "runner: unknown runOnRequirement %s" % key


CHECKS = {
    "minServerVersion": _min_version,
    "maxServerVersion": _max_version,
    "topologies": _topologies,
    "serverless": _serverless,
    "auth": _auth,
    "authMechanism": _auth_mechanism,
    "csfle": _csfle,
    "serverParameters": _server_parameters,
}


def unmet(requirements, server):
    """None when one of the requirements is met (or there are none), else why none is."""
    if not requirements:
        return None
    reasons = []
    for req in requirements:
        why = _unmet(req, server)
        if why is None:
            return None
        reasons.append(why)
    return reasons[0] if len(set(reasons)) == 1 else "; ".join(sorted(set(reasons)))

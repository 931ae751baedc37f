"""expectEvents: the command monitoring events a client observed, against the test's list."""
from entities import ClientEntity
from match import Mismatch, match


def match_event(expected, event, ctx):
    """expected is one expectedEvent ({commandStartedEvent: {...}}); raises Mismatch."""
    (kind, body), = expected.items()
    if kind != event.kind:
        raise Mismatch("expected %s, got %s %s" % (kind, event.kind, event.command_name))
    if "commandName" in body and body["commandName"] != event.command_name:
        raise Mismatch("expected %s %s, got %s" % (kind, body["commandName"], event.command_name))
    if "databaseName" in body and body["databaseName"] != event.database_name:
        raise Mismatch("%s %s: database %s, expected %s" % (
            kind, event.command_name, event.database_name, body["databaseName"]))
    if "command" in body:
        match(body["command"], event.command, ctx, "command", root=True)
    if "reply" in body:
        match(body["reply"], event.reply, ctx, "reply", root=True)
    if body.get("hasServiceId"):
        raise Mismatch("%s %s has no serviceId (not a load balancer)" % (kind, event.command_name))
    if body.get("hasServerConnectionId"):
        raise Mismatch("%s %s: pymongo 3.11 reports no server connection id" % (kind, event.command_name))


def _names(events):
    return ", ".join("%s %s" % (e.kind.replace("command", "").replace("Event", ""), e.command_name)
                     for e in events)


def check_expected_events(spec, entities, ctx):
    """One expectedEventsForClient; raises Mismatch with the first difference."""
    client = entities.get(spec["client"], ClientEntity)
    actual = list(client.recorder.events)
    expected = spec["events"]
    if len(actual) < len(expected) or (len(actual) > len(expected) and not spec.get("ignoreExtraEvents")):
        raise Mismatch("%s: expected %d event(s) [%s], observed %d [%s]" % (
            spec["client"], len(expected), _names_expected(expected), len(actual), _names(actual)))
    for i, (exp, act) in enumerate(zip(expected, actual)):
        try:
            match_event(exp, act, ctx)
        except Mismatch as e:
            raise Mismatch("%s event %d (%s %s): %s" % (spec["client"], i, act.kind, act.command_name, e))


def _names_expected(expected):
    out = []
    for e in expected:
        (kind, body), = e.items()
        name = body.get("commandName") or next(iter(body.get("command", {}) or {"?": 1}))
        out.append("%s %s" % (kind.replace("command", "").replace("Event", ""), name))
    return ", ".join(out)

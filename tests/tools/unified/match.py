"""Evaluating matches, as the unified test format defines them.

match(expected, actual, ...) raises Mismatch naming the first difference by path
("$.cursor.firstBatch[0].x: expected 1, got 2"). Special operators ($$exists, $$type, ...)
are one row each in OPERATORS. exact_equal() is the stricter comparison used for test.outcome.
"""
import binascii
import datetime
import re
from collections import abc

from bson import json_util
from bson.binary import Binary
from bson.code import Code
from bson.dbref import DBRef
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.regex import Regex
from bson.timestamp import Timestamp

ABSENT = object()  # an actual value that is not there (a missing key, no result)


class Mismatch(AssertionError):
    pass


def type_name(v):
    """The $type alias of a decoded BSON value (the driver's Python types)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, Int64):
        return "long"
    if isinstance(v, int):
        return "int" if -2**31 <= v < 2**31 else "long"
    if isinstance(v, float):
        return "double"
    if isinstance(v, str):
        return "string"
    if isinstance(v, DBRef):
        return "object"
    if isinstance(v, abc.Mapping):
        return "object"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, (bytes, Binary)) or type(v).__name__ == "UUID":
        return "binData"
    if isinstance(v, ObjectId):
        return "objectId"
    if isinstance(v, datetime.datetime):
        return "date"
    if isinstance(v, (Regex, re.Pattern)):
        return "regex"
    if isinstance(v, Code):
        return "javascriptWithScope" if v.scope is not None else "javascript"
    if isinstance(v, Timestamp):
        return "timestamp"
    if isinstance(v, Decimal128):
        return "decimal"
    if isinstance(v, MinKey):
        return "minKey"
    if isinstance(v, MaxKey):
        return "maxKey"
    return type(v).__name__


NUMERIC = {"int", "long", "double"}


def is_number(v):
    return type_name(v) in NUMERIC


def show(v, limit=160):
    """A short extended-JSON rendering for failure messages."""
    if v is ABSENT:
        return "(absent)"
    try:
        s = json_util.dumps(v, json_options=json_util.RELAXED_JSON_OPTIONS)
    except Exception:  # pragma: no cover - a value json_util cannot render
        s = repr(v)
    return s if len(s) <= limit else s[:limit] + "..."


def _utc(d):
    return d if d.tzinfo else d.replace(tzinfo=datetime.timezone.utc)


def scalar_equal(expected, actual):
    """Equality of two non-container values; numbers compare flexibly (1 == 1.0 == 1L)."""
    te, ta = type_name(expected), type_name(actual)
    if te in NUMERIC and ta in NUMERIC:
        return float(expected) == float(actual) if "double" in (te, ta) else int(expected) == int(actual)
    if te != ta:
        return False
    if te == "binData":
        return _binary(expected) == _binary(actual)
    if te == "date":
        return _utc(expected) == _utc(actual)
    if te == "regex":
        return (expected.pattern, _flags(expected)) == (actual.pattern, _flags(actual))
    if te in ("javascript", "javascriptWithScope"):
        return str(expected) == str(actual) and exact_equal(expected.scope, actual.scope)
    return expected == actual


def _binary(v):
    subtype = getattr(v, "subtype", 0)
    if type(v).__name__ == "UUID":
        return (4, v.bytes)
    return (subtype, bytes(v))


def _flags(r):
    return r.flags if isinstance(r, Regex) else Regex.from_native(r).flags


class Context:
    """What special operators need: the test's entity map."""

    def __init__(self, entities):
        self.entities = entities


def _operator(expected):
    """The $$ operator name when expected is {"$$op": value}, else None."""
    if isinstance(expected, abc.Mapping) and len(expected) == 1:
        key = next(iter(expected))
        if isinstance(key, str) and key.startswith("$$"):
            return key
    return None


def match(expected, actual, ctx, path="$", root=False):
    op = _operator(expected)
    if op:
        fn = OPERATORS.get(op)
        if fn is None:
            raise Mismatch("%s: unknown special operator %s" % (path, op))
        fn(expected[op], actual, ctx, path, root)
        return
    if actual is ABSENT:
        raise Mismatch("%s: expected %s, but it is absent" % (path, show(expected)))
    if isinstance(expected, abc.Mapping) and not isinstance(expected, DBRef):
        _match_document(expected, actual, ctx, path, root)
    elif isinstance(expected, (list, tuple)):
        _match_array(expected, actual, ctx, path)
    elif not scalar_equal(expected, actual):
        raise Mismatch("%s: expected %s (%s), got %s (%s)" % (
            path, show(expected), type_name(expected), show(actual), type_name(actual)))


def _as_mapping(v):
    if isinstance(v, DBRef):
        return v.as_doc()
    return v


def _match_document(expected, actual, ctx, path, root):
    actual = _as_mapping(actual)
    if not isinstance(actual, abc.Mapping):
        raise Mismatch("%s: expected a document, got %s (%s)" % (path, show(actual), type_name(actual)))
    for key, value in expected.items():
        sub = "%s.%s" % (path, key)
        match(value, actual[key] if key in actual else ABSENT, ctx, sub)
    if not root:
        extra = [k for k in actual if k not in expected]
        if extra:
            raise Mismatch("%s: unexpected field(s) %s in %s" % (path, ", ".join(extra), show(actual)))


def _match_array(expected, actual, ctx, path):
    if not isinstance(actual, (list, tuple)):
        raise Mismatch("%s: expected an array, got %s (%s)" % (path, show(actual), type_name(actual)))
    if len(expected) != len(actual):
        raise Mismatch("%s: expected %d element(s), got %d: %s" % (
            path, len(expected), len(actual), show(actual)))
    for i, (e, a) in enumerate(zip(expected, actual)):
        match(e, a, ctx, "%s[%d]" % (path, i))


# --- special operators: one function each, (operand, actual, ctx, path, root) ---

def _op_exists(operand, actual, ctx, path, root):
    if bool(operand) != (actual is not ABSENT):
        raise Mismatch("%s: expected %s, got %s" % (
            path, "a value" if operand else "no value", show(actual)))


TYPE_ALIASES = {"number": {"int", "long", "double", "decimal"}}


def _op_type(operand, actual, ctx, path, root):
    wanted = operand if isinstance(operand, (list, tuple)) else [operand]
    names = set()
    for w in wanted:
        names |= TYPE_ALIASES.get(w, {w})
    if actual is ABSENT or type_name(actual) not in names:
        raise Mismatch("%s: expected type %s, got %s (%s)" % (
            path, "/".join(wanted), show(actual), "absent" if actual is ABSENT else type_name(actual)))


def _op_unset_or_matches(operand, actual, ctx, path, root):
    if actual is ABSENT:
        return
    match(operand, actual, ctx, path, root)


def _op_matches_entity(operand, actual, ctx, path, root):
    match(ctx.entities.get_value(operand), actual, ctx, path, root)


def _op_session_lsid(operand, actual, ctx, path, root):
    lsid = ctx.entities.session_lsid(operand)
    if actual is ABSENT or not exact_equal(lsid, actual):
        raise Mismatch("%s: expected the lsid of %s %s, got %s" % (path, operand, show(lsid), show(actual)))


def _op_lte(operand, actual, ctx, path, root):
    if actual is ABSENT or not is_number(actual) or not actual <= operand:
        raise Mismatch("%s: expected a number <= %s, got %s" % (path, show(operand), show(actual)))


def _op_matches_hex_bytes(operand, actual, ctx, path, root):
    want = binascii.unhexlify(operand)
    got = bytes(actual) if isinstance(actual, (bytes, bytearray)) else None
    if got != want:
        raise Mismatch("%s: expected bytes %s, got %s" % (path, operand, show(actual)))


def _op_match_as_document(operand, actual, ctx, path, root):
    if not isinstance(actual, str):
        raise Mismatch("%s: expected an extended JSON string, got %s" % (path, show(actual)))
    match(operand, json_util.loads(actual), ctx, path, False)


def _op_match_as_root(operand, actual, ctx, path, root):
    match(operand, actual, ctx, path, True)


OPERATORS = {
    "$$exists": _op_exists,
    "$$type": _op_type,
    "$$unsetOrMatches": _op_unset_or_matches,
    "$$matchesEntity": _op_matches_entity,
    "$$sessionLsid": _op_session_lsid,
    "$$lte": _op_lte,
    "$$matchesHexBytes": _op_matches_hex_bytes,
    "$$matchAsDocument": _op_match_as_document,
    "$$matchAsRoot": _op_match_as_root,
}


def exact_equal(expected, actual):
    """Equal values of equal BSON types; documents compare regardless of key order."""
    expected, actual = _as_mapping(expected), _as_mapping(actual)
    if isinstance(expected, abc.Mapping) or isinstance(actual, abc.Mapping):
        return (isinstance(expected, abc.Mapping) and isinstance(actual, abc.Mapping)
                and set(expected) == set(actual)
                and all(exact_equal(expected[k], actual[k]) for k in expected))
    if isinstance(expected, (list, tuple)) or isinstance(actual, (list, tuple)):
        return (isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple))
                and len(expected) == len(actual)
                and all(exact_equal(e, a) for e, a in zip(expected, actual)))
    return type_name(expected) == type_name(actual) and scalar_equal(expected, actual)


def first_difference(expected, actual, path="$"):
    """Where exact_equal fails first, for messages; None when equal."""
    expected, actual = _as_mapping(expected), _as_mapping(actual)
    if isinstance(expected, abc.Mapping) and isinstance(actual, abc.Mapping):
        for k in expected:
            if k not in actual:
                return "%s.%s: missing (expected %s)" % (path, k, show(expected[k]))
            d = first_difference(expected[k], actual[k], "%s.%s" % (path, k))
            if d:
                return d
        extra = [k for k in actual if k not in expected]
        return "%s: unexpected field(s) %s" % (path, ", ".join(extra)) if extra else None
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        if len(expected) != len(actual):
            return "%s: expected %d element(s), got %d: %s" % (path, len(expected), len(actual), show(actual))
        for i, (e, a) in enumerate(zip(expected, actual)):
            d = first_difference(e, a, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if exact_equal(expected, actual):
        return None
    return "%s: expected %s (%s), got %s (%s)" % (
        path, show(expected), type_name(expected), show(actual), type_name(actual))

"""expectError: what a raised pymongo error says, against the test's assertions.

A server error is one derived from a server reply (OperationFailure and its subclasses, and
NotMasterError, which pymongo raises for "not primary" replies); everything else (network
errors, argument validation, InvalidOperation) is a client error.
"""
from collections import abc

from pymongo.errors import BulkWriteError, NotMasterError, OperationFailure, WriteError

from match import Mismatch, match, show
from operations import error_result

# Code names for write errors, whose documents carry only a code (mongod sends no codeName in
# writeErrors); the format allows comparing the code instead.
WRITE_ERROR_CODES = {
    "DuplicateKey": 11000, "WriteConflict": 112, "DocumentValidationFailure": 121,
    "NoSuchTransaction": 251, "OperationNotSupportedInTransaction": 263, "Interrupted": 11601,
    "UnknownReplWriteConcern": 79, "UnsatisfiableWriteConcern": 100, "WriteConcernFailed": 64,
}


def is_server_error(exc):
    if isinstance(exc, OperationFailure):
        return True
    return isinstance(exc, NotMasterError) and isinstance(exc.details, abc.Mapping) and bool(exc.details)


def _responses(exc):
    """The server documents an error carries: the reply, or a bulk write's errors."""
    details = getattr(exc, "details", None)
    if isinstance(exc, BulkWriteError):
        return list(details.get("writeErrors", [])) + list(details.get("writeConcernErrors", []))
    if isinstance(details, abc.Mapping):
        docs = [details]
        if isinstance(details.get("writeConcernError"), abc.Mapping):
            docs.append(details["writeConcernError"])
        return docs
    return []


def _codes(exc):
    codes = [d.get("code") for d in _responses(exc) if "code" in d]
    if getattr(exc, "code", None) is not None and not isinstance(exc, BulkWriteError):
        codes.append(exc.code)
    return codes


def _messages(exc):
    msgs = [d.get("errmsg") for d in _responses(exc) if isinstance(d.get("errmsg"), str)]
    return msgs + [str(exc)]


def describe(exc):
    """One line about an error: its class, and for a server error the reply's errmsg, code,
    codeName and labels (str() of a pymongo error repeats the whole reply)."""
    details = getattr(exc, "details", None)
    if isinstance(exc, BulkWriteError):
        parts = ["%s (code %s)" % (d.get("errmsg"), d.get("code")) for d in _responses(exc)]
        return "BulkWriteError: %s" % "; ".join(parts)
    if isinstance(details, abc.Mapping) and "errmsg" in details:
        text = "%s (code %s%s)" % (details["errmsg"], details.get("code"),
                                   ", %s" % details["codeName"] if "codeName" in details else "")
    else:
        text = str(exc)
    labels = _labels(exc)
    return "%s: %s%s" % (type(exc).__name__, text[:300], " labels %s" % labels if labels else "")


def check_error(expected, exc, ctx):
    """Raises Mismatch unless exc (an exception or None) satisfies the expectedError."""
    if exc is None:
        raise Mismatch("expected an error, the operation succeeded")
    server = is_server_error(exc)
    if "isClientError" in expected and expected["isClientError"] == server:
        raise Mismatch("expected a %s error, got %s" % (
            "client" if expected["isClientError"] else "server", describe(exc)))
    if "errorContains" in expected:
        needle = expected["errorContains"].lower()
        if not any(needle in m.lower() for m in _messages(exc)):
            raise Mismatch("error does not contain %r: %s" % (expected["errorContains"], describe(exc)))
    if "errorCode" in expected and expected["errorCode"] not in _codes(exc):
        raise Mismatch("expected error code %d, got %s" % (expected["errorCode"], describe(exc)))
    if "errorCodeName" in expected:
        _check_code_name(expected["errorCodeName"], exc)
    for label in expected.get("errorLabelsContain", []):
        if not (hasattr(exc, "has_error_label") and exc.has_error_label(label)):
            raise Mismatch("error lacks label %s: %s" % (label, describe(exc)))
    for label in expected.get("errorLabelsOmit", []):
        if hasattr(exc, "has_error_label") and exc.has_error_label(label):
            raise Mismatch("error has label %s: %s" % (label, describe(exc)))
    if "errorResponse" in expected:
        details = getattr(exc, "details", None)
        if not isinstance(details, abc.Mapping):
            raise Mismatch("error has no server response: %s" % describe(exc))
        match(expected["errorResponse"], details, ctx, "errorResponse", root=True)
    if "expectResult" in expected:
        match(expected["expectResult"], error_result(exc), ctx, "error result", root=True)


def _check_code_name(name, exc):
    names = [d.get("codeName") for d in _responses(exc) if "codeName" in d]
    if any(isinstance(n, str) and n.lower() == name.lower() for n in names):
        return
    if isinstance(exc, (WriteError, BulkWriteError)) and WRITE_ERROR_CODES.get(name) in _codes(exc):
        return
    raise Mismatch("expected error code name %s, got %s (codeName %s)" % (
        name, describe(exc), show(names) if names else "absent"))


def _labels(exc):
    return sorted(getattr(exc, "_error_labels", []))

#!/usr/bin/python3
"""Runs MongoDB's unified-format specification tests against the server at $MONGOQ_TEST_URI.

  run.py [--uri URI] [--filter SUBSTRING] [--list-failures FILE] [--skip-list FILE] [-v]
         [PATH ...]

PATHs are .json test files or directories of them; with none, the crud, retryable-writes,
change-streams and transactions suites of the checkout at $MONGOQ_SPECS_DIR. Prints one line
per file and one per failure, a table per suite, and last "N passed, N failed, N skipped".
Exits 1 when a test failed, 2 on a usage error.
"""
import argparse
import collections
import fnmatch
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from pymongo import MongoClient  # noqa: E402

from requirements import Server  # noqa: E402
from runner import FileRunner  # noqa: E402

SUITES = ["crud", "retryable-writes", "change-streams", "transactions"]
DEFAULT_SKIP_LIST = os.path.join(HERE, "skiplist.tsv")


class SkipList:
    """skiplist.tsv: FILE<TAB>TEST<TAB>REASON, FILE a pattern for the end of the test file's path,
    TEST a pattern for the test's description (fnmatch: * and ? are wildcards); # starts a
    comment. REASON begins with its cause: "client:", "out of scope:" or "runner:"."""

    def __init__(self, path):
        self.entries = []
        if not path:
            return
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                parts = line.split("\t")
                if len(parts) != 3:
                    raise SystemExit("%s:%d: expected FILE<TAB>TEST<TAB>REASON" % (path, n))
                self.entries.append(parts)

    def reason(self, display, description):
        for file_pattern, test, reason in self.entries:
            if fnmatch.fnmatchcase(display, "*" + file_pattern) and fnmatch.fnmatchcase(description, test):
                return reason
        return None


def test_files(paths):
    """(path, display name, suite) for every .json file under the given paths, in order."""
    out = []
    for p in paths:
        files = sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p]
        for f in files:
            out.append((f, display_name(f), suite_name(f)))
    return out


def display_name(path):
    parts = os.path.abspath(path).split(os.sep)
    if "source" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("source") + 1:])
    return os.path.relpath(path)


def suite_name(path):
    parts = display_name(path).split("/")
    return parts[0] if len(parts) > 1 else "."


def parse_args(argv):
    p = argparse.ArgumentParser(description="Runs unified-format specification tests.")
    p.add_argument("paths", nargs="*", help="test files or directories (default: the four suites "
                                            "of $MONGOQ_SPECS_DIR)")
    p.add_argument("--uri", default=os.environ.get("MONGOQ_TEST_URI"), help="default $MONGOQ_TEST_URI")
    p.add_argument("--filter", default=None, help="run only tests whose 'file: description' contains this")
    p.add_argument("--list-failures", metavar="FILE", help="write the failures (file, test, reason) as TSV")
    p.add_argument("--skip-list", default=DEFAULT_SKIP_LIST, help="default: skiplist.tsv beside run.py")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each skip and its reason")
    args = p.parse_args(argv)
    if not args.uri:
        p.error("no server: set MONGOQ_TEST_URI or pass --uri")
    if not args.paths:
        specs = os.environ.get("MONGOQ_SPECS_DIR")
        if not specs:
            p.error("no tests: pass paths or set MONGOQ_SPECS_DIR to a mongodb/specifications checkout")
        args.paths = [os.path.join(specs, "source", s, "tests", "unified") for s in SUITES]
    for path in args.paths:
        if not os.path.exists(path):
            p.error("no such file or directory: %s" % path)
    return args


def main(argv):
    args = parse_args(argv)
    internal = MongoClient(args.uri, tz_aware=True, uuidRepresentation="unspecified",
                           serverSelectionTimeoutMS=10000)
    server = Server(internal, args.uri)
    print("server %s (%s), pymongo client" % (server.version_string(), server.topology))
    runner = FileRunner(internal, args.uri, server, SkipList(args.skip_list))
    results = []
    for path, display, suite in test_files(args.paths):
        keep = (lambda d, display=display: args.filter is None or args.filter in "%s: %s" % (display, d))
        file_results = runner.run_file(path, display, keep)
        if file_results:
            report_file(display, file_results, args.verbose)
            results += [(suite, r) for r in file_results]
    report_summary(results, server)
    if args.list_failures:
        with open(args.list_failures, "w", encoding="utf-8") as f:
            for _, r in results:
                if r.status == "fail":
                    f.write("%s\t%s\t%s\n" % (r.path, r.description, r.reason))
    internal.close()
    counts = collections.Counter(r.status for _, r in results)
    print("%d passed, %d failed, %d skipped" % (counts["pass"], counts["fail"], counts["skip"]))
    sys.stdout.flush()
    # A test abandoned after its timeout may still hold a thread; do not wait for it.
    os._exit(1 if counts["fail"] else 0)


def report_file(display, results, verbose):
    c = collections.Counter(r.status for r in results)
    print("%s: PASS %d FAIL %d SKIP %d" % (display, c["pass"], c["fail"], c["skip"]))
    for r in results:
        if r.status == "fail" or (verbose and r.status == "skip"):
            print("  %s %s: %s" % (r.status.upper(), r.description, r.reason[:400]))
    sys.stdout.flush()


def report_summary(results, server):
    suites = collections.OrderedDict()
    for suite, r in results:
        suites.setdefault(suite, collections.Counter())[r.status] += 1
    print()
    print("%-20s %7s %7s %7s" % ("suite", "passed", "failed", "skipped"))
    for suite, c in suites.items():
        print("%-20s %7d %7d %7d" % (suite, c["pass"], c["fail"], c["skip"]))
    kinds = collections.Counter(r.reason.split(":")[0] for _, r in results if r.status == "skip")
    if kinds:
        print("skipped by cause: " + ", ".join("%s %d" % (k, n) for k, n in kinds.most_common()))
    for gap in sorted(server.gaps):
        print("server gap noticed by the runner: %s" % gap)


if __name__ == "__main__":
    main(sys.argv[1:])

#!/usr/bin/python3
"""pymongo (Debian's 3.11) as an independent client of the server under test.

The server is $MONGOQ_TEST_URI: the test server started by scripts/test, or a real replica
set. Each test uses its own database and drops it. Prints 'N passed, M failed' last and exits
non-zero when anything failed.
"""
import itertools
import os
import sys
import time
import unittest

from pymongo import ASCENDING, DESCENDING, MongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure

URI = os.environ.get("MONGOQ_TEST_URI", "")
_counter = itertools.count()


def _client(appname="pymongo-client"):
    return MongoClient(URI, appname=appname, w="majority", serverSelectionTimeoutMS=10000)


def _next_change(stream, timeout=10.0):
    """The next change within timeout seconds (try_next returns None on an empty batch)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        change = stream.try_next()
        if change is not None:
            return change
    raise AssertionError("no change event within %.0f s" % timeout)


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.client = _client()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()

    def setUp(self):
        self.dbname = "py_%d_%d" % (os.getpid(), next(_counter))
        self.db = self.client[self.dbname]
        self.coll = self.db["items"]
        self.db.create_collection("items")

    def tearDown(self):
        self.client.drop_database(self.dbname)

    def test_insert_many(self):
        result = self.coll.insert_many([{"_id": i, "n": i * 10} for i in range(5)])
        self.assertEqual(result.inserted_ids, list(range(5)))
        self.assertEqual(self.coll.count_documents({}), 5)
        self.assertEqual(self.coll.find_one({"_id": 3}), {"_id": 3, "n": 30})

    def test_find_one_and_update_with_sort(self):
        self.coll.insert_many([
            {"_id": 1, "status": "ready", "priority": 1},
            {"_id": 2, "status": "ready", "priority": 5},
            {"_id": 3, "status": "ready", "priority": 5},
            {"_id": 4, "status": "done", "priority": 9},
        ])
        doc = self.coll.find_one_and_update(
            {"status": "ready"},
            {"$set": {"status": "taken"}},
            sort=[("priority", DESCENDING), ("_id", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        self.assertEqual(doc, {"_id": 2, "status": "taken", "priority": 5})
        before = self.coll.find_one_and_update(
            {"status": "ready"}, {"$set": {"status": "taken"}},
            sort=[("priority", DESCENDING), ("_id", ASCENDING)])
        self.assertEqual(before["_id"], 3)
        self.assertEqual(before["status"], "ready", "the default returns the document before")

    def test_unique_index_duplicate_key(self):
        self.coll.create_index([("k", ASCENDING)], unique=True)
        self.coll.insert_one({"_id": 1, "k": "a"})
        with self.assertRaises(DuplicateKeyError) as ctx:
            self.coll.insert_one({"_id": 2, "k": "a"})
        self.assertEqual(ctx.exception.code, 11000)
        self.assertEqual(self.coll.count_documents({}), 1)

    def test_watch_sees_an_insert(self):
        with self.coll.watch(max_await_time_ms=300) as stream:
            self.coll.insert_one({"_id": "x", "v": 1})
            change = _next_change(stream)
        self.assertEqual(change["operationType"], "insert")
        self.assertEqual(change["fullDocument"], {"_id": "x", "v": 1})
        self.assertEqual(change["ns"], {"db": self.dbname, "coll": "items"})
        self.assertEqual(change["documentKey"], {"_id": "x"})

    def test_resume_after(self):
        with self.coll.watch(max_await_time_ms=300) as stream:
            self.coll.insert_one({"_id": "a"})
            first = _next_change(stream)
        self.coll.insert_one({"_id": "b"})
        self.coll.insert_one({"_id": "c"})
        with self.coll.watch(resume_after=first["_id"], max_await_time_ms=300) as stream:
            ids = [_next_change(stream)["documentKey"]["_id"] for _ in range(2)]
        self.assertEqual(ids, ["b", "c"])

    def test_transactions_commit_and_abort(self):
        with self.coll.watch(max_await_time_ms=300) as stream:
            with self.client.start_session() as session:
                with session.start_transaction():
                    self.coll.insert_one({"_id": 1}, session=session)
                    self.coll.insert_one({"_id": 2}, session=session)
                session.start_transaction()
                self.coll.insert_one({"_id": 3}, session=session)
                session.abort_transaction()
            self.coll.insert_one({"_id": 4})
            ids = [_next_change(stream)["documentKey"]["_id"] for _ in range(3)]
        self.assertEqual(ids, [1, 2, 4])
        self.assertEqual(sorted(d["_id"] for d in self.coll.find()), [1, 2, 4])

    def test_fail_command_fail_point(self):
        client = _client("pymongo-failpoint")
        coll = client[self.dbname]["items"]
        admin = self.client.admin
        try:
            admin.command({
                "configureFailPoint": "failCommand", "mode": {"times": 1},
                "data": {"failCommands": ["insert"], "errorCode": 2,
                         "appName": "pymongo-failpoint"}})
            with self.assertRaises(OperationFailure) as ctx:
                coll.insert_one({"_id": 1})
            self.assertEqual(ctx.exception.code, 2)
            coll.insert_one({"_id": 1})  # times: 1 is used up

            # A dropped connection on a retryable write: pymongo retries once, no duplicate.
            admin.command({
                "configureFailPoint": "failCommand", "mode": {"times": 1},
                "data": {"failCommands": ["insert"], "closeConnection": True,
                         "appName": "pymongo-failpoint"}})
            coll.insert_one({"_id": 2})
            self.assertEqual(self.coll.count_documents({}), 2)
        finally:
            admin.command({"configureFailPoint": "failCommand", "mode": "off"})
            client.close()

    def test_watch_resumes_after_a_network_error(self):
        client = _client("pymongo-resume")
        coll = client[self.dbname]["items"]
        admin = self.client.admin
        try:
            with coll.watch(max_await_time_ms=300) as stream:
                self.coll.insert_one({"_id": "a"})
                self.assertEqual(_next_change(stream)["documentKey"]["_id"], "a")
                admin.command({
                    "configureFailPoint": "failCommand", "mode": {"times": 1},
                    "data": {"failCommands": ["getMore"], "closeConnection": True,
                             "appName": "pymongo-resume"}})
                self.coll.insert_one({"_id": "b"})
                self.assertEqual(_next_change(stream)["documentKey"]["_id"], "b")
        finally:
            admin.command({"configureFailPoint": "failCommand", "mode": "off"})
            client.close()


def main():
    if not URI:
        print("MONGOQ_TEST_URI is not set: run scripts/test, or point it at a replica set")
        print("0 passed, 1 failed")
        return 1
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(ServerTest)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    passed = result.testsRun - failed - len(result.skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Checks the runner itself: the matching rules without a server, then runner-checks.json
against $MONGOQ_TEST_URI, where each test's description starts with the status the runner must
give it ("pass:", "fail:" or "skip:"), so a check that never fails is caught.

  MONGOQ_TEST_URI=mongodb://127.0.0.1:PORT/?replicaSet=rs0 selftest/selftest.py
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bson.int64 import Int64  # noqa: E402

from match import ABSENT, Context, Mismatch, exact_equal, match  # noqa: E402


class FakeEntities:
    def session_lsid(self, name):
        return {"id": name}

    def get_value(self, name):
        return {"saved": 1}


CTX = Context(FakeEntities())


def matches(expected, actual, root=False):
    try:
        match(expected, actual, CTX, root=root)
        return True
    except Mismatch:
        return False


class MatchTest(unittest.TestCase):
    def test_root_allows_extra_fields_nested_does_not(self):
        self.assertTrue(matches({"x": 1}, {"x": 1, "y": 2}, root=True))
        self.assertFalse(matches({"x": 1}, {"x": 1, "y": 2}))
        self.assertFalse(matches({"a": {"x": 1}}, {"a": {"x": 1, "y": 2}}, root=True))

    def test_numbers_are_flexible_but_not_bools(self):
        self.assertTrue(matches(1, 1.0))
        self.assertTrue(matches(Int64(5), 5))
        self.assertFalse(matches(1, 1.5))
        self.assertFalse(matches(1, True))

    def test_arrays_need_equal_length(self):
        self.assertFalse(matches([1, 2], [1, 2, 3]))
        self.assertTrue(matches([1, {"a": 1}], [1, {"a": 1}]))

    def test_exists_and_unset_or_matches(self):
        self.assertTrue(matches({"a": {"$$exists": False}}, {}, root=True))
        self.assertFalse(matches({"a": {"$$exists": False}}, {"a": None}, root=True))
        self.assertTrue(matches({"a": {"$$exists": True}}, {"a": None}, root=True))
        self.assertTrue(matches({"a": {"$$unsetOrMatches": 1}}, {}, root=True))
        self.assertFalse(matches({"a": {"$$unsetOrMatches": 1}}, {"a": 2}, root=True))
        self.assertTrue(matches({"$$unsetOrMatches": {"n": 1}}, ABSENT, root=True))

    def test_type(self):
        self.assertTrue(matches({"$$type": ["int", "long"]}, Int64(3)))
        self.assertTrue(matches({"$$type": "int"}, 3))
        self.assertFalse(matches({"$$type": "string"}, 3))
        self.assertFalse(matches({"a": {"$$type": "int"}}, {}, root=True))
        self.assertTrue(matches({"$$type": "number"}, 2.5))

    def test_lte_session_lsid_matches_entity(self):
        self.assertTrue(matches({"$$lte": 5}, 5.0))
        self.assertFalse(matches({"$$lte": 5}, 6))
        self.assertTrue(matches({"$$sessionLsid": "s0"}, {"id": "s0"}))
        self.assertFalse(matches({"$$sessionLsid": "s0"}, {"id": "s1"}))
        self.assertTrue(matches({"$$matchesEntity": "e"}, {"saved": 1}))

    def test_exact_equal_compares_types_and_ignores_key_order(self):
        self.assertTrue(exact_equal({"a": 1, "b": 2}, {"b": 2, "a": 1}))
        self.assertFalse(exact_equal({"a": 1}, {"a": 1.0}))
        self.assertFalse(exact_equal({"a": 1}, {"a": 1, "b": 1}))


@unittest.skipUnless(os.environ.get("MONGOQ_TEST_URI"), "needs MONGOQ_TEST_URI")
class RunnerTest(unittest.TestCase):
    def test_each_check_gets_the_status_its_description_names(self):
        from pymongo import MongoClient
        from requirements import Server
        from run import SkipList
        from runner import FileRunner
        uri = os.environ["MONGOQ_TEST_URI"]
        internal = MongoClient(uri, tz_aware=True, uuidRepresentation="unspecified")
        try:
            runner = FileRunner(internal, uri, Server(internal, uri), SkipList(None))
            results = runner.run_file(os.path.join(HERE, "runner-checks.json"), "selftest", lambda d: True)
        finally:
            internal.close()
        self.assertGreater(len(results), 20)
        for r in results:
            with self.subTest(r.description):
                self.assertEqual(r.status, r.description.split(":")[0], r.reason)


if __name__ == "__main__":
    unittest.main()

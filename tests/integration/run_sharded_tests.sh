#!/bin/bash
# queue-tests-sharded: the queue's integration tests in partitioned mode on a sharded cluster.
# Starts mongoq-test-router with two test-server shards (no-op interval 1 s) unless
# MONGOQ_TEST_MONGOS_URI names a mongos (a real cluster: used as it is), and runs the tests with
# MONGOQ_TEST_PARTITIONS (default 4) partitions per queue: each world shards its queue with
# mongoq_queue_shard first. Tests of what the router leaves out skip themselves
# (world_skip_sharded; tests/router/README.md lists them). The router stops its shards.
# usage: run_sharded_tests.sh ROUTER_BIN SERVER_BIN TEST_BIN [criterion args...]
set -u
router=$1 server=$2 tests=$3
shift 3
export MONGOQ_TEST_PARTITIONS=${MONGOQ_TEST_PARTITIONS:-4}
if [ -n "${MONGOQ_TEST_MONGOS_URI:-}" ]; then
    MONGOQ_TEST_URI=$MONGOQ_TEST_MONGOS_URI exec "$tests" "$@"
fi
out=$(mktemp)
"$router" --shards 2 --server-bin "$server" --noop-interval 1 >"$out" 2>"$out.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -f "$out" "$out.err"' EXIT
for _ in $(seq 1 100); do
    [ -s "$out" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
done
uri=$(head -n 1 "$out")
if [ -z "$uri" ]; then
    echo "the router did not start:" >&2
    cat "$out.err" >&2
    exit 1
fi
MONGOQ_TEST_URI=$uri "$tests" "$@"

#!/bin/bash
# Starts mongoq-test-router with two test-server shards (no-op interval 1 s), runs the router
# conformance tests against it, and stops it (the router stops its shards).
# usage: run_router_tests.sh ROUTER_BIN SERVER_BIN TEST_BIN [criterion args...]
set -u
router=$1 server=$2 tests=$3
shift 3
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
MONGOQ_TEST_MONGOS_URI=$uri MONGOQ_TEST_NOOP_INTERVAL_MS=1000 "$tests" "$@"

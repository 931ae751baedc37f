#!/bin/bash
# Starts mongoq-test-router with two test-server shards (no-op interval 1 s) through
# scripts/lib.sh, runs the router conformance tests against it, and stops it (the router stops
# its shards).
# usage: run_router_tests.sh ROUTER_BIN SERVER_BIN TEST_BIN [criterion args...]
set -u
router=$1 server=$2 tests=$3
shift 3
# shellcheck source=../../scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"
trap mongoq_stop_router EXIT
mongoq_start_router_bins "$router" "$server" 2 || exit 1
MONGOQ_TEST_MONGOS_URI=$MONGOQ_ROUTER_URI MONGOQ_TEST_NOOP_INTERVAL_MS=1000 "$tests" "$@"

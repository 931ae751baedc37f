#!/bin/bash
# queue-tests-sharded: the queue's integration tests in partitioned mode on a sharded cluster.
# Starts mongoq-test-router (scripts/lib.sh) with two test-server shards (no-op interval 1 s)
# unless MONGOQ_TEST_MONGOS_URI names a mongos (a real cluster: used as it is), and runs the tests
# with MONGOQ_TEST_PARTITIONS (default 4) partitions per queue: each world shards its queue with
# mongoq_queue_shard first. Tests of what the router leaves out skip themselves
# (world_skip_sharded; tests/router/README.md lists them). The router stops its shards.
#
# The router serves three mongos endpoints over the same shards and routing table: the suite
# talks to the first (the host's clock); the other two run 2 s behind and 2 s ahead, and
# MONGOQ_TEST_SKEW_URI names both for scenario_mongos_skew (docs/scaling.md, clocks). With
# MONGOQ_TEST_MONGOS_URI, MONGOQ_TEST_SKEW_URI is whatever the caller set (the test skips without).
# usage: run_sharded_tests.sh ROUTER_BIN SERVER_BIN TEST_BIN [criterion args...]
set -u
router=$1 server=$2 tests=$3
shift 3
export MONGOQ_TEST_PARTITIONS=${MONGOQ_TEST_PARTITIONS:-4}
if [ -n "${MONGOQ_TEST_MONGOS_URI:-}" ]; then
    MONGOQ_TEST_URI=$MONGOQ_TEST_MONGOS_URI exec "$tests" "$@"
fi
# shellcheck source=../../scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh"
trap mongoq_stop_router EXIT
mongoq_start_router_bins "$router" "$server" 2 \
    --clock-offset-ms 0 --clock-offset-ms -2000 --clock-offset-ms 2000 || exit 1
hosts=${MONGOQ_ROUTER_URI#mongodb://}
hosts=${hosts%/}
IFS=, read -r first slow fast <<<"$hosts"
MONGOQ_TEST_SKEW_URI="mongodb://$slow,$fast/" MONGOQ_TEST_URI="mongodb://$first/" "$tests" "$@"

# Shared by scripts/test, scripts/demo and scripts/bench: install, build, start a test server.
# shellcheck shell=bash

MONGOQ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# chromium and chromium-driver: the dashboard's browser test (tests/cli/test_serve_browser.sh).
MONGOQ_PACKAGES=(build-essential cmake pkg-config libmongoc-dev libbson-dev libcriterion-dev python3-pymongo
    libmicrohttpd-dev chromium chromium-driver)

mongoq_log() { printf '==> %s\n' "$*" >&2; }

# Installs the Debian packages in "$@" that are missing (apt-get, only when missing).
mongoq_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    mongoq_log "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configures and builds into $1 with extra cmake arguments after it.
mongoq_build() {
    local dir=$1
    shift
    mongoq_log "building in $dir"
    cmake -S "$MONGOQ_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$dir" --parallel "$(nproc)" -- --no-print-directory >/dev/null 2>"$dir/build.err" || {
        cat "$dir/build.err" >&2
        return 1
    }
    if [ -s "$dir/build.err" ]; then
        cat "$dir/build.err" >&2
    fi
}

# Starts $1/tests/server/mongoq-test-server on a free loopback port unless MONGOQ_TEST_URI is set;
# exports MONGOQ_TEST_URI and MONGOQ_SERVER_PID. The caller traps mongoq_stop_server.
MONGOQ_SERVER_PID=""
mongoq_start_server() {
    local dir=$1
    shift
    if [ -n "${MONGOQ_TEST_URI:-}" ]; then
        mongoq_log "using the server at $MONGOQ_TEST_URI"
        return 0
    fi
    local out
    out=$(mktemp)
    "$dir/tests/server/mongoq-test-server" --port 0 "$@" >"$out" 2>"$dir/test-server.log" &
    MONGOQ_SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        [ -s "$out" ] && break
        kill -0 "$MONGOQ_SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    MONGOQ_TEST_URI=$(head -n 1 "$out")
    rm -f "$out"
    if [ -z "$MONGOQ_TEST_URI" ]; then
        cat "$dir/test-server.log" >&2
        mongoq_log "the test server did not start"
        return 1
    fi
    export MONGOQ_TEST_URI
    "$dir/tests/mongoq-wait-hello" "$MONGOQ_TEST_URI" 10000 || return 1
    mongoq_log "test server $MONGOQ_TEST_URI (pid $MONGOQ_SERVER_PID)"
}

mongoq_stop_server() {
    if [ -n "$MONGOQ_SERVER_PID" ]; then
        kill "$MONGOQ_SERVER_PID" 2>/dev/null || true
        wait "$MONGOQ_SERVER_PID" 2>/dev/null || true
        MONGOQ_SERVER_PID=""
    fi
}

# Starts the router $1 (a mongos) with $3 shards of the test server $2 on free loopback ports,
# the shards' idle no-op every second (docs/scaling.md, wake-ups), and any further router flags
# (e.g. --clock-offset-ms MS per mongos endpoint); sets MONGOQ_ROUTER_URI (every endpoint) and
# MONGOQ_ROUTER_PID. The router starts its shards and stops them whenever it stops. The caller
# traps mongoq_stop_router. Used by the ctest launchers, which are given the binaries.
MONGOQ_ROUTER_PID=""
MONGOQ_ROUTER_URI=""
mongoq_start_router_bins() {
    local router=$1 server=$2 shards=$3
    shift 3
    local out log
    out=$(mktemp)
    log=${MONGOQ_ROUTER_LOG:-$out.log}
    "$router" --shards "$shards" --bind 127.0.0.1 --server-bin "$server" --noop-interval 1 "$@" \
        >"$out" 2>"$log" &
    MONGOQ_ROUTER_PID=$!
    local i
    for i in $(seq 1 200); do
        [ -s "$out" ] && break
        kill -0 "$MONGOQ_ROUTER_PID" 2>/dev/null || break
        sleep 0.05
    done
    MONGOQ_ROUTER_URI=$(head -n 1 "$out")
    rm -f "$out"
    if [ -z "$MONGOQ_ROUTER_URI" ]; then
        cat "$log" >&2
        mongoq_log "the test router did not start"
        return 1
    fi
    [ "$log" = "$out.log" ] && rm -f "$log"
    mongoq_log "test router $MONGOQ_ROUTER_URI with $shards shards (pid $MONGOQ_ROUTER_PID)"
}

# The same from a build directory $1 with $2 shards (scripts/demo, scripts/bench); waits for hello.
mongoq_start_router() {
    local dir=$1 shards=${2:-2}
    MONGOQ_ROUTER_LOG="$dir/test-router.log" mongoq_start_router_bins \
        "$dir/tests/router/mongoq-test-router" "$dir/tests/server/mongoq-test-server" "$shards" ||
        return 1
    "$dir/tests/mongoq-wait-hello" "$MONGOQ_ROUTER_URI" 10000 || return 1
}

# Stops the router, which stops its shards (SIGTERM; it waits for them before exiting).
mongoq_stop_router() {
    if [ -n "$MONGOQ_ROUTER_PID" ]; then
        kill "$MONGOQ_ROUTER_PID" 2>/dev/null || true
        wait "$MONGOQ_ROUTER_PID" 2>/dev/null || true
        MONGOQ_ROUTER_PID=""
    fi
}

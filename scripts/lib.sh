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

# Waits until file $1, written by a program started in the background (pid $2), has a line
# matching the extended regex $3, for at most $4 x 50 ms (default 200: 10 s) and less if the
# program exits first; fails when no such line came.
mongoq_await_output() {
    local file=$1 pid=$2 regex=$3 tries=${4:-200} i
    for i in $(seq 1 "$tries"); do
        grep -Eq "$regex" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05 # nothing to wait on but the file
    done
    grep -Eq "$regex" "$file" 2>/dev/null
}

# Prints the first line (its address) a program started in the background (pid $2) writes to
# file $1, waiting as mongoq_await_output does; prints nothing when none came.
mongoq_first_line() {
    mongoq_await_output "$1" "$2" . || true
    head -n 1 "$1"
}

# Stops process $1 (one this script started; none when empty) with SIGTERM and waits for it.
mongoq_stop_pid() {
    if [ -n "$1" ]; then
        kill "$1" 2>/dev/null || true
        wait "$1" 2>/dev/null || true
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
    MONGOQ_TEST_URI=$(mongoq_first_line "$out" "$MONGOQ_SERVER_PID")
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
    mongoq_stop_pid "$MONGOQ_SERVER_PID"
    MONGOQ_SERVER_PID=""
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
    MONGOQ_ROUTER_URI=$(mongoq_first_line "$out" "$MONGOQ_ROUTER_PID")
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
    mongoq_stop_pid "$MONGOQ_ROUTER_PID"
    MONGOQ_ROUTER_PID=""
}

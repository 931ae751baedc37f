# Sourced by the mongoq tool's tests: the server's one failCommand, taken in turn as the Criterion
# suites take it (tests/common/turns.c: an flock on /tmp/mongoq-failcommand-<FNV-1a of the
# URI>.lock), so that a test running beside them never has its fault switched off or met by
# another's commands. Needs MONGOQ_TEST_URI and RUN_COMMAND (the run-command program).
# shellcheck shell=bash

# fp_uri APPNAME: MONGOQ_TEST_URI with that appName, for a failCommand confined to it.
fp_uri() {
    case $MONGOQ_TEST_URI in
    *\?*) echo "$MONGOQ_TEST_URI&appName=$1" ;;
    *) echo "${MONGOQ_TEST_URI%/}/?appName=$1" ;;
    esac
}

# fp_take: waits for failCommand's turn (fd 4) and holds it until fp_give.
fp_take() {
    local lock
    lock=/tmp/mongoq-failcommand-$(python3 -c 'import sys
h = 2166136261
for b in sys.argv[1].encode(): h = ((h ^ b) * 16777619) & 0xffffffff
print("%08x" % h)' "$MONGOQ_TEST_URI").lock
    exec 4<>"$lock"
    flock 4
    FP_HELD=1
}

# fp_give: turns failCommand off and gives the turn back.
fp_give() {
    "$RUN_COMMAND" "$MONGOQ_TEST_URI" admin '{"configureFailPoint": "failCommand", "mode": "off"}' >/dev/null
    exec 4>&-
    FP_HELD=
}

# fp_cleanup: for the exit trap; turns failCommand off if the test stopped while holding it.
fp_cleanup() {
    if [ -n "${FP_HELD:-}" ]; then
        "$RUN_COMMAND" "$MONGOQ_TEST_URI" admin \
            '{"configureFailPoint": "failCommand", "mode": "off"}' >/dev/null 2>&1 || true
    fi
}

#!/usr/bin/env bash
# The dashboard in Debian's headless Chromium: the DOM after the page's scripts ran (--dump-dom
# with a virtual time budget, so the first polls have answered) shows a queue's depth on the
# overview, and a payload holding <script> as text on the message page. Skipped (exit 77) when
# chromium is not installed or mongoq was built without libmicrohttpd.
#
#   tests/cli/test_serve_browser.sh MONGOQ_BIN RUN_COMMAND_BIN
set -euo pipefail
M=$1
RUN_COMMAND=$2
: "${MONGOQ_TEST_URI:?set MONGOQ_TEST_URI}"
export MONGOQ_URI=$MONGOQ_TEST_URI
CHROMIUM=$(command -v chromium || true)
if [ -z "$CHROMIUM" ]; then
    echo "skip: chromium is not installed (Debian: apt-get install chromium)"
    exit 77
fi
if "$M" serve --listen 1.2.3.4:0 2>&1 | grep -q unavailable; then
    echo "skip: mongoq was built without libmicrohttpd"
    exit 77
fi
DB="browser_$$_$RANDOM"
TMP=$(mktemp -d)
PID=""
cleanup() {
    [ -n "$PID" ] && { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    "$RUN_COMMAND" "$MONGOQ_TEST_URI" "$DB" '{"dropDatabase": 1}' >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
failures=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }

for i in $(seq 1 4); do printf '{"n":%d}\n' "$i"; done | "$M" --db "$DB" --queue jobs enqueue >/dev/null
"$M" --db "$DB" --queue jobs enqueue '{"html":"<script>alert(1)</script>"}' --json >"$TMP/ids"
XSS=$(python3 -c "import json; print(json.load(open('$TMP/ids'))['ids'][0])")

"$M" --db "$DB" serve --listen 127.0.0.1:0 >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 1 100); do [ -s "$TMP/out" ] && break; sleep 0.05; done
URL=$(sed -nE 's#^listening on (http://[^/]+)/.*#\1#p' "$TMP/out" | head -1)
[ -n "$URL" ] || { cat "$TMP/err"; echo "serve did not start"; exit 1; }

# dom URL: the page's DOM once its scripts ran for 4 s of virtual time (two polls).
dom() {
    timeout 60 "$CHROMIUM" --headless --disable-gpu --no-sandbox --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$TMP/profile" --virtual-time-budget=4000 --dump-dom "$1" 2>"$TMP/chromium.err"
}

dom "$URL/" >"$TMP/overview.html" || true
depth=$(python3 - "$TMP/overview.html" <<'PY'
import re, sys
html = open(sys.argv[1]).read()
m = re.search(r'<tr data-queue="jobs">.*?<td class="num ready">(\d+)</td>', html)
print(m.group(1) if m else "none")
PY
)
if [ "$depth" = 5 ]; then ok "overview: jobs shows ready 5"; else bad "overview: jobs ready '$depth', wanted 5"; fi

dom "$URL/#/q/jobs/m/$XSS" >"$TMP/message.html" || true
if grep -q '&lt;script&gt;alert(1)&lt;/script&gt;' "$TMP/message.html"; then
    ok "message: the <script> payload is shown as text"
else
    bad "message: the escaped payload is not on the page"
fi
if grep -q '<script>alert' "$TMP/message.html"; then
    bad "message: the payload became a script element"
else
    ok "message: no script element from the payload"
fi
if [ "$failures" -gt 0 ]; then
    head -c 2000 "$TMP/overview.html"; echo; tail -5 "$TMP/chromium.err"
fi
echo "$failures failures"
[ "$failures" -eq 0 ]

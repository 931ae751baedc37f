#!/usr/bin/env bash
# `mongoq serve` against the server under test ($MONGOQ_TEST_URI): every API endpoint, paging by
# the next token, a payload holding <script> served as JSON text, actions refused read-only,
# without the token and from another Origin or Host, allowed with them (and seen in the
# database); then 503 with a JSON error while a private server is stopped. HTTP through
# python3's urllib (python3 is installed for python3-pymongo; curl may not be).
#
#   tests/cli/test_serve.sh MONGOQ_BIN TEST_SERVER_BIN RUN_COMMAND_BIN
set -euo pipefail
# shellcheck source=../../scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh" # mongoq_await_output, mongoq_first_line
# shellcheck source=fail_point.sh
. "$(dirname "$0")/fail_point.sh" # fp_uri, fp_take, fp_give, fp_cleanup
M=$1
SERVER_BIN=$2
RUN_COMMAND=$3
: "${MONGOQ_TEST_URI:?set MONGOQ_TEST_URI}"
export MONGOQ_URI=$MONGOQ_TEST_URI
DB="serve_$$_$RANDOM"
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    fp_cleanup
    "$RUN_COMMAND" "$MONGOQ_TEST_URI" "$DB" '{"dropDatabase": 1}' >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
if "$M" serve --listen 1.2.3.4:0 2>&1 | grep -q unavailable; then
    echo "skip: mongoq was built without libmicrohttpd"
    exit 77
fi
failures=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }
check() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', wanted '$3'"; fi; }

# req METHOD URL [HEADER=VALUE...]: prints the status; the body goes to $TMP/body.
req() {
    python3 - "$@" <<'PY'
import sys, urllib.request, urllib.error
method, url, *headers = sys.argv[1:]
r = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
for h in headers:
    k, v = h.split("=", 1)
    r.add_header(k, v)
try:
    with urllib.request.urlopen(r, timeout=15) as resp:
        status, body = resp.status, resp.read()
except urllib.error.HTTPError as e:
    status, body = e.code, e.read()
except Exception as e:
    status, body = 0, str(e).encode()
open(sys.argv[0] if False else __import__("os").environ["BODY"], "wb").write(body)
print(status)
PY
}
export BODY=$TMP/body
json() { python3 -c "import json,sys; d=json.load(open('$BODY')); print($1)"; }

# start_serve OUTFILE ARGS...: starts serve, waits for its first line, sets URL.
start_serve() {
    local out=$1
    shift
    "$M" --db "$DB" serve --listen 127.0.0.1:0 "$@" >"$out" 2>"$out.err" &
    PIDS+=($!)
    mongoq_await_output "$out" "$!" '^listening on ' || true
    URL=$(sed -nE 's#^listening on (http://[^/]+)/.*#\1#p' "$out" | head -1)
    [ -n "$URL" ] || { cat "$out.err" >&2; bad "serve did not start"; exit 1; }
}

# ---- a queue with ready and dead messages ----------------------------------------------------
for i in $(seq 1 7); do printf '{"n":%d}\n' "$i"; done | "$M" --db "$DB" --queue jobs enqueue >/dev/null
"$M" --db "$DB" --queue jobs enqueue '{"html":"<script>alert(1)</script>"}' --json >"$TMP/ids"
XSS=$(python3 -c "import json; print(json.load(open('$TMP/ids'))['ids'][0])")
"$M" --db "$DB" --queue jobs enqueue '{"d":1}' >/dev/null
"$M" --db "$DB" --queue jobs enqueue '{"d":2}' >/dev/null
"$M" --db "$DB" --queue jobs enqueue '{"d":3}' >/dev/null
# Three messages dead with two reasons, written as a consumer's failure leaves them.
"$RUN_COMMAND" "$MONGOQ_TEST_URI" "$DB" '{"update": "jobs", "updates": [
  {"q": {"payload.d": {"$in": [1, 2]}}, "u": {"$set": {"status": "dead", "last_error": "timeout"}}, "multi": true},
  {"q": {"payload.d": 3}, "u": {"$set": {"status": "dead", "last_error": "bad input"}}}]}' >/dev/null

# ---- read-only ---------------------------------------------------------------------------------
start_serve "$TMP/ro.out"
check "GET / is the page" "$(req GET "$URL/")" 200
grep -q '<script src="/app.js">' "$BODY" && ok "the page loads app.js" || bad "the page loads app.js"
check "GET /app.js" "$(req GET "$URL/app.js")" 200
check "GET /style.css" "$(req GET "$URL/style.css")" 200
check "GET /api/config" "$(req GET "$URL/api/config")" 200
check "read-only by default" "$(json 'd["actions"]')" False
check "GET /api/queues" "$(req GET "$URL/api/queues")" 200
check "queues: jobs with its depth" "$(json '[(q["name"], q["ready"], q["dead"]) for q in d["queues"]]')" "[('jobs', 8, 3)]"
check "GET /api/queues/jobs" "$(req GET "$URL/api/queues/jobs")" 200
check "queue: paused, samples" "$(json 'd["paused"], type(d["samples"]["t"]).__name__')" "False list"
check "GET an unknown queue: 404" "$(req GET "$URL/api/queues/nosuch")" 404
check "messages page 1" "$(req GET "$URL/api/queues/jobs/messages?status=ready&limit=5")" 200
P1=$(json '",".join(m["id"] for m in d["messages"])')
NEXT=$(json 'd["next"]')
check "page 1 has 5" "$(json 'len(d["messages"])')" 5
check "messages page 2" "$(req GET "$URL/api/queues/jobs/messages?status=ready&limit=5&page=$NEXT")" 200
check "page 2 has the other 3, no next" "$(json 'len(d["messages"]), d["next"]')" "3 None"
P2=$(json '",".join(m["id"] for m in d["messages"])')
check "pages do not overlap" "$(python3 -c "a=set('$P1'.split(','));b=set('$P2'.split(','));print(len(a|b), len(a&b))")" "8 0"
check "sort=run_at" "$(req GET "$URL/api/queues/jobs/messages?sort=run_at&status=ready")" 200
check "a bad sort: 400" "$(req GET "$URL/api/queues/jobs/messages?sort=nonsense")" 400
check "a bad limit: 400" "$(req GET "$URL/api/queues/jobs/messages?limit=0")" 400
check "q filters by error text" "$(req GET "$URL/api/queues/jobs/messages?status=dead&q=bad%20in")" 200
check "q: the one 'bad input'" "$(json '[m["last_error"] for m in d["messages"]]')" "['bad input']"
check "GET the <script> message" "$(req GET "$URL/api/queues/jobs/messages/$XSS")" 200
check "payload as JSON text" "$(json 'd["payload"]["html"]')" "<script>alert(1)</script>"
check "message fields" "$(json 'd["attempts"], d["errors"], d["claimed_by"], d["lease_expires_at"]')" "0 [] None None"
check "served as JSON, not HTML" "$(python3 - "$URL/api/queues/jobs/messages/$XSS" <<'PY'
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1]).headers["Content-Type"].split(";")[0])
PY
)" application/json
check "a bad id: 400" "$(req GET "$URL/api/queues/jobs/messages/xyz")" 400
check "an unknown id: 404" "$(req GET "$URL/api/queues/jobs/messages/000000000000000000000000")" 404
check "GET dead" "$(req GET "$URL/api/queues/jobs/dead")" 200
check "dead by reason" "$(json '[(r["last_error"], r["count"]) for r in d["reasons"]], d["grouped"]')" "[('timeout', 2), ('bad input', 1)] 3"
check "GET schedules" "$(req GET "$URL/api/queues/jobs/schedules")" 200
check "schedules: none" "$(json 'd["schedules"]')" "[]"
check "GET groups" "$(req GET "$URL/api/queues/jobs/groups")" 200
check "groups: none" "$(json 'd["groups"]')" "[]"
check "read-only refuses POST" "$(req POST "$URL/api/queues/jobs/pause" X-Mongoq-Token=whatever)" 403
check "another Host: 421" "$(req GET "$URL/api/queues" Host=evil.example:80)" 421
check "PUT: 405" "$(req PUT "$URL/api/queues")" 405
check "not loopback: refused" "$("$M" --db "$DB" serve --listen 0.0.0.0:0 >/dev/null 2>&1; echo $?)" 64

# ---- actions -------------------------------------------------------------------------------------
TOKEN=tok-$RANDOM-$RANDOM
start_serve "$TMP/rw.out" --allow-actions --token "$TOKEN"
ORIGIN=$URL
check "config: actions" "$(req GET "$URL/api/config" && json 'd["actions"]')" "200
True"
check "no token: 403" "$(req POST "$URL/api/queues/jobs/pause")" 403
check "wrong token: 403" "$(req POST "$URL/api/queues/jobs/pause" X-Mongoq-Token=nope)" 403
check "another Origin: 403" "$(req POST "$URL/api/queues/jobs/pause" X-Mongoq-Token="$TOKEN" Origin=http://evil.example)" 403
check "still not paused" "$("$M" --db "$DB" --queue jobs stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["paused"])')" False
check "pause with token and Origin" "$(req POST "$URL/api/queues/jobs/pause" X-Mongoq-Token="$TOKEN" Origin="$ORIGIN")" 200
check "paused in the database" "$("$M" --db "$DB" --queue jobs stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["paused"])')" True
check "resume" "$(req POST "$URL/api/queues/jobs/resume" X-Mongoq-Token="$TOKEN")" 200
req GET "$URL/api/queues/jobs/messages?status=dead&q=bad" >/dev/null
DEAD1=$(json 'd["messages"][0]["id"]')
check "redrive one" "$(req POST "$URL/api/queues/jobs/redrive?id=$DEAD1" X-Mongoq-Token="$TOKEN")" 200
check "redriven: ready" "$("$M" --db "$DB" --queue jobs show "$DEAD1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" ready
req GET "$URL/api/queues/jobs/messages?status=dead" >/dev/null
DEAD2=$(json 'd["messages"][0]["id"]')
check "delete one dead" "$(req POST "$URL/api/queues/jobs/delete?id=$DEAD2" X-Mongoq-Token="$TOKEN")" 200
check "delete a ready one: 404" "$(req POST "$URL/api/queues/jobs/delete?id=$XSS" X-Mongoq-Token="$TOKEN")" 404
check "retry now" "$(req POST "$URL/api/queues/jobs/retry?id=$DEAD1" X-Mongoq-Token="$TOKEN")" 200
check "redrive all" "$(req POST "$URL/api/queues/jobs/redrive?all=1" X-Mongoq-Token="$TOKEN" && json 'd["moved"]')" "200
1"
check "purge ready" "$(req POST "$URL/api/queues/jobs/purge?status=ready" X-Mongoq-Token="$TOKEN" && json 'd["deleted"]')" "200
10"
check "purge a bad status: 400" "$(req POST "$URL/api/queues/jobs/purge?status=nope" X-Mongoq-Token="$TOKEN")" 400
check "each action logged" "$(grep -c '^mongoq serve: action ' "$TMP/rw.out.err")" 12

# ---- a slow server slows the sampler down -------------------------------------------------------
# Every count this serve sends waits 100 ms (failCommand, its own appName only), so one pass over
# the queue's stats (six counts) takes at least 600 ms, and the sampler waits 4 passes before the
# next (serve_sampler.c): samples at least 3 s apart where they were 1 s apart. A lower bound, so
# a slow machine cannot fail it.
SLOW_URI=$(fp_uri mongoq-slow-serve)
fp_take
"$RUN_COMMAND" "$MONGOQ_TEST_URI" admin '{"configureFailPoint": "failCommand", "mode": "alwaysOn",
  "data": {"failCommands": ["count"], "blockConnection": true, "blockTimeMS": 100,
           "appName": "mongoq-slow-serve"}}' >/dev/null
MONGOQ_URI=$SLOW_URI start_serve "$TMP/slow.out"
n=0
for _ in $(seq 1 30); do # bounded: each request takes a pass of its own (>= 600 ms)
    [ "$(req GET "$URL/api/queues/jobs")" = 200 ] && n=$(json 'len(d["samples"]["t"])')
    [ "$n" -ge 2 ] && break
done
check "slow server: two samples" "$([ "$n" -ge 2 ] && echo yes)" yes
check "slow server: samples at least 2.4 s apart" \
    "$(json 'min(b - a for a, b in zip(d["samples"]["t"], d["samples"]["t"][1:])) >= 2400')" True
fp_give

# ---- 503 while the server is down ----------------------------------------------------------------
if [ -z "${MONGOQ_TEST_NO_SPAWN:-}" ]; then
    "$SERVER_BIN" --port 0 >"$TMP/private.uri" 2>/dev/null &
    SPID=$!
    PIDS+=($SPID)
    PRIVATE=$(mongoq_first_line "$TMP/private.uri" "$SPID")
    "$M" --uri "$PRIVATE" --db "$DB" --queue jobs enqueue '{"a":1}' >/dev/null
    MONGOQ_URI=$PRIVATE start_serve "$TMP/down.out" --timeout-ms 300
    check "private: up" "$(req GET "$URL/api/queues")" 200
    kill "$SPID"
    wait "$SPID" 2>/dev/null || true
    status=""
    for _ in $(seq 1 40); do # bounded: each request fails within the 300 ms timeout
        status=$(req GET "$URL/api/queues")
        [ "$status" = 503 ] && break
    done
    check "server down: 503" "$status" 503
    check "503 with a JSON error" "$(json '"error" in d')" True
    check "the page is still served" "$(req GET "$URL/")" 200
else
    echo "skip 503 test: MONGOQ_TEST_NO_SPAWN is set"
fi

echo "$failures failures"
[ "$failures" -eq 0 ]

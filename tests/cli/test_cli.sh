#!/usr/bin/env bash
# The mongoq tool against the server under test ($MONGOQ_TEST_URI): every command, outputs
# checked through --json (parsed by python3's json module) and human output by its key lines;
# the doctor against a healthy queue, a missing index, a paused queue, a standalone server and
# an unreachable one; the metrics text through the exposition checker, once and served over
# HTTP; pause and resume seen by a consumer in another process (mongoq-child-consumer); purge
# and redrive in batches, stopped part way by a fail point and run again; schedules set through
# the library (mongoq-set-schedule) listed with their next run in UTC and in their zone; message
# groups enqueued and claimed by a consumer process, listed with their counts and paged.
#
#   tests/cli/test_cli.sh MONGOQ_BIN PROMCHECK_BIN TEST_SERVER_BIN RUN_COMMAND_BIN CHILD_BIN \
#       SET_SCHEDULE_BIN
#
# Each run uses a database of its own, dropped at the end. Private servers (standalone) are
# started only without MONGOQ_TEST_NO_SPAWN, and stopped by PID on every exit path.
set -euo pipefail
# shellcheck source=../../scripts/lib.sh
. "$(dirname "$0")/../../scripts/lib.sh" # mongoq_await_output, mongoq_first_line
# shellcheck source=fail_point.sh
. "$(dirname "$0")/fail_point.sh" # fp_uri, fp_take, fp_give, fp_cleanup
M=$1
PROMCHECK=$2
SERVER_BIN=$3
RUN_COMMAND=$4
CHILD_BIN=$5
SET_SCHEDULE=${6:-}
: "${MONGOQ_TEST_URI:?set MONGOQ_TEST_URI}"
export MONGOQ_URI=$MONGOQ_TEST_URI
DB="cli_$$_$RANDOM"
Q=(--db "$DB" --queue jobs)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    fp_cleanup
    "$RUN_COMMAND" "$MONGOQ_TEST_URI" "$DB" '{"dropDatabase": 1}' >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
failures=0
ok() { printf 'ok   %s\n' "$1"; }
bad() { printf 'FAIL %s\n' "$1"; failures=$((failures + 1)); }
# expect_rc NAME RC COMMAND...: the exit code is RC.
expect_rc() {
    local name=$1 want=$2 got=0
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err" || got=$?
    if [ "$got" = "$want" ]; then ok "$name"; else bad "$name (exit $got, wanted $want): $(head -c 300 "$TMP/err")"; fi
}
# json EXPR < file: evaluates a python expression over the parsed document `d`.
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
check() { # check NAME ACTUAL EXPECTED
    if [ "$2" = "$3" ]; then ok "$1"; else bad "$1: got '$2', wanted '$3'"; fi
}
one_line_error() { # the last command wrote exactly one line on stderr
    check "$1: one line on stderr" "$(wc -l <"$TMP/err")" 1
    [ "$(wc -l <"$TMP/err")" = 1 ] || sed 's/^/     stderr: /' "$TMP/err"
}

# ---- enqueue and stats ---------------------------------------------------------------------------
expect_rc "enqueue one" 0 "$M" "${Q[@]}" enqueue '{"to":"ada","week":47}' --priority 5 --json
check "enqueue --json gives one id" "$(json 'len(d["ids"])' <"$TMP/out")" 1
ID1=$(json 'd["ids"][0]' <"$TMP/out")
printf '{"n":1}\n{"n":2}\n\n{"n":3}\n' >"$TMP/lines"
expect_rc "enqueue lines from stdin" 0 "$M" "${Q[@]}" enqueue <"$TMP/lines"
check "one id per line" "$(wc -l <"$TMP/out")" 3
expect_rc "enqueue delayed with a dedup key" 0 "$M" "${Q[@]}" enqueue '{"later":true}' --delay 600000 --dedup k1
DELAYED=$(cat "$TMP/out")
expect_rc "stats --json" 0 "$M" "${Q[@]}" stats --json
check "stats: ready" "$(json 'd["ready"]' <"$TMP/out")" 5
check "stats: delayed" "$(json 'd["delayed"]' <"$TMP/out")" 1
expect_rc "stats" 0 "$M" "${Q[@]}" stats
grep -q '^ready       5 (4 due, 1 delayed)$' "$TMP/out" && ok "stats: ready line" || bad "stats: ready line: $(cat "$TMP/out")"

# ---- nothing is written on bad input -----------------------------------------------------------
printf '{"n":4}\n{"n":\n' >"$TMP/bad"
expect_rc "bad JSON on line 2 is a usage error" 64 "$M" "${Q[@]}" enqueue <"$TMP/bad"
one_line_error "bad JSON"
grep -q 'line 2' "$TMP/err" && ok "bad JSON names the line" || bad "bad JSON names the line"
expect_rc "bad JSON argument" 64 "$M" "${Q[@]}" enqueue '{nope'
expect_rc "bad id" 64 "$M" "${Q[@]}" show 12345
one_line_error "bad id"
expect_rc "unknown status" 64 "$M" "${Q[@]}" ls --status pending
expect_rc "unknown purge status" 64 "$M" "${Q[@]}" purge pending --yes
expect_rc "unknown option" 64 "$M" "${Q[@]}" stats --bogus
expect_rc "unknown command" 64 "$M" "${Q[@]}" frobnicate
"$M" "${Q[@]}" stats --json >"$TMP/out"
check "nothing was written by bad input" "$(json 'd["ready"]' <"$TMP/out")" 5

# ---- ls, paging, show --------------------------------------------------------------------------
expect_rc "ls --limit 2 --json" 0 "$M" "${Q[@]}" ls --status ready --limit 2 --json
check "ls: first page size" "$(json 'len(d["messages"])' <"$TMP/out")" 2
check "ls: claim order puts priority 5 first" "$(json 'd["messages"][0]["id"]' <"$TMP/out")" "$ID1"
TOKEN=$(json 'd["next_page"]' <"$TMP/out")
seen=$(json '",".join(m["id"] for m in d["messages"])' <"$TMP/out")
for i in 1 2 3; do
    "$M" "${Q[@]}" ls --status ready --limit 2 --page "$TOKEN" --json >"$TMP/out"
    seen="$seen,$(json '",".join(m["id"] for m in d["messages"])' <"$TMP/out")"
    TOKEN=$(json 'd["next_page"] or ""' <"$TMP/out")
    [ -n "$TOKEN" ] || break
done
check "ls: pages cover every ready message once" \
    "$(tr ',' '\n' <<<"$seen" | grep -c . )/$(tr ',' '\n' <<<"$seen" | grep . | sort -u | wc -l)" "5/5"
expect_rc "ls (table)" 0 "$M" "${Q[@]}" ls --limit 2
head -1 "$TMP/out" | grep -q '^ID  *STATUS  *PRIORITY  *ATTEMPTS  *RUN_AT' && ok "ls: header" || bad "ls: header"
grep -q '^next page: --page [0-9a-f]*$' "$TMP/out" && ok "ls: next page line" || bad "ls: next page line"
expect_rc "ls --not-due" 0 "$M" "${Q[@]}" ls --not-due --json
check "ls --not-due finds the delayed one" "$(json '[m["id"] for m in d["messages"]]' <"$TMP/out")" "['$DELAYED']"
expect_rc "show --json" 0 "$M" "${Q[@]}" show "$ID1" --json
check "show: payload" "$(json 'd["payload"]["to"]' <"$TMP/out")" ada
check "show: priority" "$(json 'd["priority"]' <"$TMP/out")" 5
expect_rc "show" 0 "$M" "${Q[@]}" show "$DELAYED"
grep -q '^dedup_key         k1$' "$TMP/out" && ok "show: dedup line" || bad "show: dedup line"
expect_rc "show of a missing id" 4 "$M" "${Q[@]}" show 000000000000000000000000

# ---- retry, redrive, purge ---------------------------------------------------------------------
expect_rc "retry the delayed one" 0 "$M" "${Q[@]}" retry "$DELAYED" --json
"$M" "${Q[@]}" stats --json >"$TMP/out"
check "retry: nothing delayed any more" "$(json 'd["delayed"]' <"$TMP/out")" 0
expect_rc "retry of a missing id" 4 "$M" "${Q[@]}" retry 000000000000000000000000
expect_rc "redrive --all --dry-run" 0 "$M" "${Q[@]}" redrive --all --dry-run --json
check "redrive dry run: nothing dead" "$(json 'd["would_move"]' <"$TMP/out")" 0
expect_rc "redrive needs an id or --all" 64 "$M" "${Q[@]}" redrive
expect_rc "redrive --all" 0 "$M" "${Q[@]}" redrive --all --json
check "redrive moved" "$(json 'd["moved"]' <"$TMP/out")" 0
expect_rc "purge without a terminal needs --yes" 64 "$M" "${Q[@]}" purge ready </dev/null
"$M" "${Q[@]}" stats --json >"$TMP/out"
check "purge refused: nothing deleted" "$(json 'd["ready"]' <"$TMP/out")" 5

# ---- watch, metrics, queues, doctor ------------------------------------------------------------
expect_rc "watch --count 2 (not a terminal)" 0 "$M" "${Q[@]}" watch --count 2 --interval 200
check "watch: two lines" "$(wc -l <"$TMP/out")" 2
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z ready=5 delayed=0 processing=0 done=0 dead=0 oldest_due=[^ ]+ enqueued/s=[^ ]+ acked/s=[^ ]+ failed/s=[^ ]+ consumers=0 seen_1m=0 paused=no$' \
    "$TMP/out" && ok "watch: line format" || bad "watch: line format: $(head -1 "$TMP/out")"
"$M" "${Q[@]}" stats --json >"$TMP/stats"
expect_rc "watch --json" 0 "$M" "${Q[@]}" watch --count 1 --json
check "watch --json: ready" "$(json 'd["ready"]' <"$TMP/out")" 5
# One shape of the counts everywhere (cli_stats_doc): watch has every key stats has but db/queue.
check "watch --json: the counts stats --json shows" \
    "$(json 'sorted(set(d) & {"ready","delayed","processing","done","dead","waiting","oldest_due_age_ms","next_run_at","paused"})' <"$TMP/out")" \
    "$(json 'sorted(set(d) - {"db","queue"})' <"$TMP/stats")"
expect_rc "metrics" 0 "$M" "${Q[@]}" metrics
"$PROMCHECK" <"$TMP/out" && ok "metrics: valid exposition" || bad "metrics: valid exposition"
grep -q "^mongoq_messages{queue=\"$DB.jobs\",status=\"ready\"} 5$" "$TMP/out" && ok "metrics: ready gauge" || bad "metrics: ready gauge"
"$M" "${Q[@]}" metrics --listen 127.0.0.1:0 --count 2 >"$TMP/listen" 2>&1 &
PIDS+=($!)
mongoq_await_output "$TMP/listen" "$!" '^listening on ' || true
URL=$(sed -n 's/^listening on //p' "$TMP/listen")
PORT=$(sed -E 's|.*:([0-9]+)/metrics|\1|' <<<"$URL")
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
cat <&3 >"$TMP/http"
exec 3>&-
head -1 "$TMP/http" | grep -q '^HTTP/1.0 200 OK' && ok "metrics --listen: 200" || bad "metrics --listen: 200"
sed '1,/^\r$/d' "$TMP/http" | "$PROMCHECK" && ok "metrics --listen: valid body" || bad "metrics --listen: valid body"
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
printf 'GET /other HTTP/1.0\r\n\r\n' >&3
head -1 <&3 | grep -q '404' && ok "metrics --listen: 404 elsewhere" || bad "metrics --listen: 404"
exec 3>&-
wait "${PIDS[-1]}" && ok "metrics --listen stops after --count" || bad "metrics --listen exit"
expect_rc "queues --json" 0 "$M" --db "$DB" queues --json
check "queues lists jobs" "$(json '[q["queue"] for q in d["queues"]]' <"$TMP/out")" "['jobs']"
expect_rc "doctor on a healthy queue" 0 "$M" "${Q[@]}" doctor --json
check "doctor: level ok" "$(json 'd["level"]' <"$TMP/out")" ok
expect_rc "doctor (table)" 0 "$M" "${Q[@]}" doctor
grep -q '^indexes  *ok ' "$TMP/out" && ok "doctor: indexes line" || bad "doctor: indexes line"
grep -q '^result: ok$' "$TMP/out" && ok "doctor: result line" || bad "doctor: result line"

# A missing index: exit 2, the indexes item an error. (enqueue puts it back.)
expect_rc "drop the claim index" 0 "$RUN_COMMAND" "$MONGOQ_TEST_URI" "$DB" '{"dropIndexes": "jobs", "index": "mongoq_claim"}'
expect_rc "doctor with a missing index exits 2" 2 "$M" "${Q[@]}" doctor --json
check "doctor: indexes error" "$(json '[i["level"] for i in d["items"] if i["name"]=="indexes"][0]' <"$TMP/out")" error
check "doctor: claim plan error" "$(json '[i["level"] for i in d["items"] if i["name"]=="claim_plan"][0]' <"$TMP/out")" error
"$M" "${Q[@]}" enqueue '{"fix":1}' >/dev/null
expect_rc "enqueue restores the index" 0 "$M" "${Q[@]}" doctor

# An unreachable server: exit 2 from doctor, 3 from the rest, within the timeout.
start=$(date +%s)
expect_rc "doctor on an unreachable server" 2 "$M" --uri mongodb://127.0.0.1:1 --timeout-ms 500 --queue jobs doctor
expect_rc "stats on an unreachable server" 3 "$M" --uri mongodb://127.0.0.1:1 --timeout-ms 500 --queue jobs stats
one_line_error "unreachable"
expect_rc "enqueue on an unreachable server" 3 "$M" --uri mongodb://127.0.0.1:1 --timeout-ms 500 --queue jobs enqueue '{"a":1}'
[ $(($(date +%s) - start)) -lt 20 ] && ok "unreachable: no hang" || bad "unreachable: took too long"

# A standalone server: change streams and topology are warnings (exit 1).
if [ -z "${MONGOQ_TEST_NO_SPAWN:-}" ]; then
    "$SERVER_BIN" --port 0 --standalone >"$TMP/standalone" 2>/dev/null &
    PIDS+=($!)
    SURI=$(mongoq_first_line "$TMP/standalone" "$!")
    "$M" --uri "$SURI" --db "$DB" --queue jobs enqueue '{"a":1}' >/dev/null
    expect_rc "doctor on a standalone server exits 1" 1 "$M" --uri "$SURI" --db "$DB" --queue jobs doctor --json
    check "standalone: topology warning" "$(json '[i["level"] for i in d["items"] if i["name"]=="topology"][0]' <"$TMP/out")" warning
    check "standalone: change streams warning" "$(json '[i["level"] for i in d["items"] if i["name"]=="change_streams"][0]' <"$TMP/out")" warning
    expect_rc "watch on a standalone server (no rates)" 0 "$M" --uri "$SURI" --db "$DB" --queue jobs watch --count 2 --interval 100
    grep -q 'enqueued/s=- ' "$TMP/out" && ok "standalone watch: rates unknown" || bad "standalone watch: rates"
fi

# ---- pause and resume, seen by a consumer in another process --------------------------------------
O=(--db "$DB" --queue ops)
seq 1 30 | sed 's/.*/{"seq":&}/' | "$M" "${O[@]}" enqueue >/dev/null
expect_rc "pause of a collection that is not a queue" 4 "$M" --db "$DB" --queue nosuch pause
one_line_error "pause of no queue"
expect_rc "queues: pause created nothing" 0 "$M" --db "$DB" queues --json
check "queues: no nosuch" "$(json '"nosuch" in [q["queue"] for q in d["queues"]]' <"$TMP/out")" False
expect_rc "pause" 0 "$M" "${O[@]}" pause --json
check "pause --json: paused" "$(json 'd["paused"], d["was_paused"]' <"$TMP/out")" "True False"
expect_rc "pause again" 0 "$M" "${O[@]}" pause
grep -q 'was already paused' "$TMP/out" && ok "pause again: was already paused" || bad "pause again: $(cat "$TMP/out")"
expect_rc "stats --json while paused" 0 "$M" "${O[@]}" stats --json
check "stats --json: paused true" "$(json 'd["paused"]' <"$TMP/out")" True
expect_rc "stats while paused" 0 "$M" "${O[@]}" stats
grep -q '^paused      yes' "$TMP/out" && ok "stats: paused line" || bad "stats: paused line: $(cat "$TMP/out")"
expect_rc "watch while paused" 0 "$M" "${O[@]}" watch --count 1
grep -q ' paused=yes$' "$TMP/out" && ok "watch: paused=yes" || bad "watch: paused: $(cat "$TMP/out")"
expect_rc "doctor on a paused queue exits 1" 1 "$M" "${O[@]}" doctor --json
check "doctor: paused warning" "$(json '[i["level"] for i in d["items"] if i["name"]=="paused"][0]' <"$TMP/out")" warning
check "doctor: paused advice" "$(json '"resume" in [i["advice"] for i in d["items"] if i["name"]=="paused"][0]' <"$TMP/out")" True
expect_rc "metrics while paused" 0 "$M" "${O[@]}" metrics
grep -q "^mongoq_paused{queue=\"$DB.ops\"} 1$" "$TMP/out" && ok "metrics: mongoq_paused 1" || bad "metrics: mongoq_paused 1"

# The consumer: a process of its own, answering a command per line (tests/tools/child_consumer.c).
coproc CHILD { exec "$CHILD_BIN" "$MONGOQ_TEST_URI" "$DB" ops; }
PIDS+=("$CHILD_PID")
ask() { # ask LINE: sends LINE to the consumer, its first answer line in $ANSWER
    echo "$1" >&"${CHILD[1]}"
    read -t 60 -r ANSWER <&"${CHILD[0]}" || ANSWER="(no answer)"
}
read -t 60 -r ANSWER <&"${CHILD[0]}" || ANSWER="(no answer)"
check "consumer started" "${ANSWER%% *}" ready
ask "claim 300"
check "paused: the other process claims nothing (30 ready)" "$ANSWER" none
expect_rc "resume" 0 "$M" "${O[@]}" resume --json
check "resume --json" "$(json 'd["paused"], d["was_paused"]' <"$TMP/out")" "False True"
ask "claim 30000"
check "resumed: the other process claims" "${ANSWER%% *}" msg
HELD=$(cut -d' ' -f2 <<<"$ANSWER")
expect_rc "stats --json after resume" 0 "$M" "${O[@]}" stats --json
check "stats --json: paused false" "$(json 'd["paused"], d["processing"]' <"$TMP/out")" "False 1"

# Consumers seen: the claimer of 25 messages it failed (dead now) is still seen when it holds none.
echo "claim_many 25 0" >&"${CHILD[1]}"
FAILED=()
for _ in $(seq 1 26); do
    read -t 60 -r ANSWER <&"${CHILD[0]}" || break
    [ "${ANSWER%% *}" = msg ] || break
    FAILED+=("$(cut -d' ' -f2 <<<"$ANSWER")")
done
check "claim_many: 25 claimed" "${#FAILED[@]}/$ANSWER" "25/end 25"
for id in "${FAILED[@]}"; do ask "fail $id"; [ "$ANSWER" = ok ] || bad "fail $id: $ANSWER"; done
ask "ack $HELD"
check "ack the held one" "$ANSWER" ok
expect_rc "watch --json: consumers" 0 "$M" "${O[@]}" watch --count 1 --json
check "watch: none holding, one seen in the last minute, dead 25" \
    "$(json 'd["consumers"], d["consumers_seen_1m"], d["dead"], d["paused"]' <"$TMP/out")" "0 1 25 False"
ask quit

# ---- purge and redrive in batches ----------------------------------------------------------------
expect_rc "redrive --all --batch 10 (not a terminal)" 0 "$M" "${O[@]}" redrive --all --batch 10
check "redrive in batches: one final line" "$(cat "$TMP/out")" "redrove 25 messages"
"$M" "${O[@]}" stats --json >"$TMP/out"
check "redrive in batches: counts" "$(json 'd["ready"], d["dead"]' <"$TMP/out")" "29 0"
expect_rc "--batch out of range" 64 "$M" "${O[@]}" purge ready --yes --batch 1001
expect_rc "--batch with one id" 64 "$M" "${O[@]}" redrive "$HELD" --batch 5
# The third deleteMany fails (a fail point for this command's appName alone): two batches are
# gone, counted, and a second run deletes the rest, no message twice. The server has one
# failCommand: its turn is held until it is off again (fail_point.sh).
fp_take
FP_URI=$(fp_uri "cli-fp-$$")
expect_rc "fail point on the third delete" 0 "$RUN_COMMAND" "$MONGOQ_TEST_URI" admin \
    "{\"configureFailPoint\": \"failCommand\", \"mode\": {\"skip\": 2}, \"data\": {\"failCommands\": [\"delete\"], \"errorCode\": 2, \"appName\": \"cli-fp-$$\"}}"
expect_rc "purge stopped part way exits 3" 3 "$M" --uri "$FP_URI" "${O[@]}" purge ready --yes --batch 7
one_line_error "purge stopped part way"
grep -q 'after 14 of 29 (run it again for the rest)' "$TMP/err" && ok "purge stopped: counted" || bad "purge stopped: $(cat "$TMP/err")"
fp_give
"$M" "${O[@]}" stats --json >"$TMP/out"
check "purge stopped: 15 left" "$(json 'd["ready"]' <"$TMP/out")" 15
expect_rc "purge again in batches" 0 "$M" "${O[@]}" purge ready --yes --batch 7 --json
check "purge again: the rest" "$(json 'd["deleted"]' <"$TMP/out")" 15
"$M" "${O[@]}" stats --json >"$TMP/out"
check "purge in batches: none left, still not paused" "$(json 'd["ready"], d["paused"]' <"$TMP/out")" "0 False"
# On a terminal (script(1) gives one): progress lines, then the final line.
if command -v script >/dev/null; then
    seq 1 2500 | sed 's/.*/{"seq":&}/' | "$M" "${O[@]}" enqueue >/dev/null
    script -qec "$(printf '%q ' "$M" "${O[@]}" purge ready --yes)" /dev/null >"$TMP/tty" </dev/null || true
    grep -q 'purged 1000/2500' "$TMP/tty" && ok "purge on a terminal: progress" || bad "purge on a terminal: $(tr '\r\033' '|~' <"$TMP/tty")"
    grep -q 'deleted 2500 messages' "$TMP/tty" && ok "purge on a terminal: final line" || bad "purge on a terminal: final line"
fi

# ---- schedules -------------------------------------------------------------------------------------
if [ -n "$SET_SCHEDULE" ]; then
    S=(--db "$DB" --queue sched)
    expect_rc "schedules: none yet" 0 "$M" "${S[@]}" schedules --json
    check "schedules: empty list" "$(json 'd["schedules"]' <"$TMP/out")" "[]"
    expect_rc "schedules: none (text)" 0 "$M" "${S[@]}" schedules
    grep -q "^$DB.sched: no schedules$" "$TMP/out" && ok "schedules: none line" || bad "schedules: none line: $(cat "$TMP/out")"
    "$SET_SCHEDULE" "$MONGOQ_TEST_URI" "$DB" sched weekly "0 8 * * MON" Europe/Berlin \
        && ok "set a weekly schedule in Berlin" || bad "set a weekly schedule"
    "$SET_SCHEDULE" "$MONGOQ_TEST_URI" "$DB" sched hourly @hourly UTC all 3 \
        && ok "set an hourly schedule" || bad "set an hourly schedule"
    "$SET_SCHEDULE" "$MONGOQ_TEST_URI" "$DB" sched nightly "30 2 * * *" America/New_York skip 90000 \
        && ok "set a nightly schedule in New York" || bad "set a nightly schedule"
    expect_rc "schedules --json" 0 "$M" "${S[@]}" schedules --json
    check "schedules: by name" "$(json '[s["name"] for s in d["schedules"]]' <"$TMP/out")" \
        "['hourly', 'nightly', 'weekly']"
    check "schedules: policies" "$(json '[s["catch_up"] for s in d["schedules"]]' <"$TMP/out")" \
        "['all', 'skip', 'latest']"
    check "schedules: limit and grace" \
        "$(json 'd["schedules"][0]["catch_up_limit"], d["schedules"][1]["grace_ms"]' <"$TMP/out")" "3 90000"
    check "schedules: counts start at 0" \
        "$(json 'sorted({s["enqueued"] + s["skipped"] for s in d["schedules"]})' <"$TMP/out")" "[0]"
    # The next run: the same instant in UTC, in the zone and as a date; the wall-clock time the
    # cron expression names in the schedule's zone (checked with python's own tz database reader).
    cat >"$TMP/next.py" <<'PY'
import json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
out = []
for s in json.load(sys.stdin)["schedules"]:
    utc = datetime.fromisoformat(s["next_run_utc"])
    local = datetime.fromisoformat(s["next_run_local"])
    date = datetime.fromisoformat(s["next_run"]["$date"])
    zoned = utc.astimezone(ZoneInfo(s["tz"]))
    same = utc == local == date and zoned.utcoffset() == local.utcoffset()
    later = date > datetime.fromisoformat(s["updated_at"]["$date"])
    out.append("%s %s %s %s" % (s["name"], same, local.strftime("%a %H:%M"), later))
print(";".join(out))
PY
    got=$(python3 "$TMP/next.py" <"$TMP/out")
    case "$got" in
    "hourly True "*":00 True;nightly True "*" 02:30 True;weekly True Mon 08:00 True") ok "schedules: next runs in UTC and in the zone" ;;
    *) bad "schedules: next runs: $got" ;;
    esac
    check "schedules: the hourly one is in UTC" "$(json 'd["schedules"][0]["next_run_local"][-6:]' <"$TMP/out")" "+00:00"
    expect_rc "schedules (table)" 0 "$M" "${S[@]}" schedules
    head -1 "$TMP/out" | grep -q '^NAME  *CRON  *TZ  *NEXT_UTC  *NEXT_LOCAL  *CATCH_UP  *ENQUEUED  *SKIPPED  *LAST_SLOT$' \
        && ok "schedules: header" || bad "schedules: header: $(head -1 "$TMP/out")"
    grep -Eq '^weekly +0 8 \* \* MON +Europe/Berlin +[0-9-]{10}T0[67]:00:00Z +[0-9-]{10}T08:00:00\+0[12]:00 +latest +0 +0 +-$' "$TMP/out" \
        && ok "schedules: the weekly row" || bad "schedules: the weekly row: $(cat "$TMP/out")"
    grep -Eq '^nightly .* skip:1m30s ' "$TMP/out" && ok "schedules: skip with its grace" || bad "schedules: skip row"
    grep -Eq '^hourly .* all:3 ' "$TMP/out" && ok "schedules: all with its limit" || bad "schedules: all row"
    expect_rc "schedules takes no arguments" 64 "$M" "${S[@]}" schedules weekly
fi

# ---- groups --------------------------------------------------------------------------------------
# Grouped messages enqueued and one claimed by a consumer in another process (FIFO groups).
G=(--db "$DB" --queue grp)
coproc GCHILD { exec "$CHILD_BIN" "$MONGOQ_TEST_URI" "$DB" grp --group-concurrency 1; }
PIDS+=("$GCHILD_PID")
gask() {
    echo "$1" >&"${GCHILD[1]}"
    read -t 60 -r ANSWER <&"${GCHILD[0]}" || ANSWER="(no answer)"
}
read -t 60 -r ANSWER <&"${GCHILD[0]}" || ANSWER="(no answer)"
check "groups: consumer started" "${ANSWER%% *}" ready
expect_rc "groups: none yet" 0 "$M" "${G[@]}" groups
grep -q "^$DB.grp: no groups$" "$TMP/out" && ok "groups: none line" || bad "groups: none line: $(cat "$TMP/out")"
for line in "enqueue 1 alpha" "enqueue 2 alpha" "enqueue 3 alpha" "enqueue 4 beta"; do gask "$line"; done
check "groups: enqueued" "$ANSWER" ok
gask "claim 5000"
check "groups: one claimed" "${ANSWER%% *}" msg
expect_rc "groups --json" 0 "$M" "${G[@]}" groups --json
check "groups: by name" "$(json '[g["name"] for g in d["groups"]]' <"$TMP/out")" "['alpha', 'beta']"
check "groups: alpha holds one place, two wait" \
    "$(json 'd["groups"][0]["active"], d["groups"][0]["waiting"], d["groups"][0]["limit"]' <"$TMP/out")" "1 2 1"
check "groups: one in flight in all" "$(json 'sum(g["in_flight"] for g in d["groups"])' <"$TMP/out")" 1
check "groups: one page" "$(json 'd["next_page"]' <"$TMP/out")" None
expect_rc "groups --limit 1" 0 "$M" "${G[@]}" groups --limit 1 --json
check "groups: next page" "$(json '[g["name"] for g in d["groups"]], d["next_page"]' <"$TMP/out")" "['alpha'] alpha"
expect_rc "groups --page alpha" 0 "$M" "${G[@]}" groups --page alpha --json
check "groups: the page after alpha" "$(json '[g["name"] for g in d["groups"]]' <"$TMP/out")" "['beta']"
expect_rc "groups (table)" 0 "$M" "${G[@]}" groups
grep -Eq '^GROUP +ACTIVE +IN_FLIGHT +WAITING +LIMIT +PARTITION$' "$TMP/out" \
    && ok "groups: header" || bad "groups: header: $(head -1 "$TMP/out")"
grep -Eq '^alpha +1 +[01] +2 +1 +0$' "$TMP/out" && ok "groups: alpha's row" || bad "groups: alpha's row: $(cat "$TMP/out")"
expect_rc "groups --limit 0 is refused" 64 "$M" "${G[@]}" groups --limit 0
expect_rc "groups takes no arguments" 64 "$M" "${G[@]}" groups alpha
echo quit >&"${GCHILD[1]}"

# ---- a pool of one connection ------------------------------------------------------------------
# maxPoolSize=1 with waitQueueTimeoutMS=200: every command works with one connection (no abort
# on a pool that gives none, no hang on one held for a whole run: watch's and serve's change
# streams use a client of their own). `timeout` turns a hang into a failure.
case "$MONGOQ_TEST_URI" in *\?*) SMALL="$MONGOQ_TEST_URI&" ;; *) SMALL="$MONGOQ_TEST_URI/?" ;; esac
SMALL="${SMALL}maxPoolSize=1&waitQueueTimeoutMS=200"
SQ=(--uri "$SMALL" --db "$DB" --queue jobs)
expect_rc "pool of one: stats" 0 timeout 30 "$M" "${SQ[@]}" stats --json
expect_rc "pool of one: queues" 0 timeout 30 "$M" --uri "$SMALL" --db "$DB" queues
expect_rc "pool of one: ls" 0 timeout 30 "$M" "${SQ[@]}" ls --status ready --json
expect_rc "pool of one: pause" 0 timeout 30 "$M" "${SQ[@]}" pause
expect_rc "pool of one: resume" 0 timeout 30 "$M" "${SQ[@]}" resume
expect_rc "pool of one: watch" 0 timeout 30 "$M" "${SQ[@]}" watch --count 3 --interval 100
if ! "$M" serve --listen 1.2.3.4:0 2>&1 | grep -q unavailable; then
    "$M" --uri "$SMALL" --db "$DB" serve --listen 127.0.0.1:0 >"$TMP/serve" 2>"$TMP/serve.err" &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    mongoq_await_output "$TMP/serve" "$SERVE_PID" '^listening on ' || true
    SURL=$(sed -nE 's#^listening on (http://[^/]+)/.*#\1#p' "$TMP/serve" | head -1)
    got=$(python3 - "$SURL" <<'PY'
import sys, urllib.request
out = []
for path in ("/api/queues", "/api/queues/jobs", "/api/queues/jobs/dead", "/api/queues/jobs/consumers"):
    try:
        with urllib.request.urlopen(sys.argv[1] + path, timeout=10) as r:
            out.append(str(r.status))
    except Exception as e:
        out.append(getattr(e, "code", "none") and str(getattr(e, "code", "none")))
print(" ".join(out))
PY
)
    check "pool of one: serve answers while its sampler watches" "$got" "200 200 200 200"
    kill "$SERVE_PID" 2>/dev/null || true
    wait "$SERVE_PID" 2>/dev/null || true
fi

# ---- help and purge ------------------------------------------------------------------------------
for c in stats ls show enqueue redrive retry purge pause resume watch doctor metrics queues schedules groups; do
    "$M" "$c" --help | grep -q "^usage: mongoq" || bad "$c --help"
done
ok "--help of every command"
expect_rc "purge all --yes" 0 "$M" "${Q[@]}" purge all --yes --json
check "purge deleted" "$(json 'd["deleted"]' <"$TMP/out")" 6

echo "$failures failed"
[ "$failures" = 0 ]

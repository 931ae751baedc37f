#!/usr/bin/env bash
# The dashboard in a real browser, used as a person would: Debian's headless Chromium driven by
# Debian's chromedriver through the W3C WebDriver protocol, spoken from python3's standard
# library (urllib and json). WebDriver rather than --remote-debugging-pipe: it is plain HTTP and
# JSON with standard commands for what a person does (click, answer confirm/prompt/alert
# dialogs, take a screenshot), where the DevTools protocol needs framing and dialog events.
#
# What it checks, each against the database through the project's own tools (mongoq,
# mongoq-child-consumer, mongoq-set-schedule):
#  - every page loads and shows its data: overview, queue, message, dead letters, consumers,
#    schedules, groups;
#  - the overview's counts match `mongoq stats` for every queue;
#  - live updates: a message enqueued by the tool shows in the overview within two of the
#    page's polls and 6 s more (10 s), without a reload;
#  - a payload holding <script> and an onerror attribute is shown as text and never runs;
#  - the queue page's search finds text in payloads and in errors, and says how much it read;
#  - the consumers page shows a consumer's messages in flight, its dead ones and its claims;
#  - read-only mode: no action button anywhere, and a POST from the page is refused (403);
#  - a redrive clicked on a dead message's page (confirm, token prompt, alert) makes it ready
#    in the database;
#  - with a private test server stopped the page keeps its data and says the server is
#    unreachable, and goes live again when the server is back (skipped with
#    MONGOQ_TEST_NO_SPAWN).
# Screenshots: SHOTS_DIR/overview.png and SHOTS_DIR/dead.png (copied to docs/ by hand).
# Every wait polls a condition against a deadline; no sleep stands for synchronisation.
# Skipped (exit 77) without chromium, chromedriver or libmicrohttpd.
#
#   tests/cli/test_serve_browser.sh MONGOQ_BIN RUN_COMMAND_BIN CHILD_CONSUMER_BIN \
#       SET_SCHEDULE_BIN TEST_SERVER_BIN SHOTS_DIR
set -euo pipefail
M=$1
RUN_COMMAND=$2
: "${MONGOQ_TEST_URI:?set MONGOQ_TEST_URI}"
for tool in chromium chromedriver; do
    if ! command -v "$tool" >/dev/null; then
        echo "skip: $tool is not installed (Debian: apt-get install chromium chromium-driver)"
        exit 77
    fi
done
if "$M" serve --listen 1.2.3.4:0 2>&1 | grep -q unavailable; then
    echo "skip: mongoq was built without libmicrohttpd"
    exit 77
fi
DB="browser_$$_$RANDOM"
TMP=$(mktemp -d)
cleanup() {
    "$RUN_COMMAND" "$MONGOQ_TEST_URI" "$DB" '{"dropDatabase": 1}' >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
export DB TMP
python3 - "$@" <<'PY'
import base64, json, os, signal, socket, subprocess, sys, time, traceback, urllib.error, urllib.request

M, RUN_COMMAND, CHILD, SET_SCHEDULE, SERVER_BIN, SHOTS = sys.argv[1:7]
URI, DB, TMP = os.environ["MONGOQ_TEST_URI"], os.environ["DB"], os.environ["TMP"]
os.environ["MONGOQ_URI"] = URI
START = time.monotonic()
procs, failures = [], 0


def ok(what):
    print("ok   " + what, flush=True)


def bad(what):
    global failures
    failures += 1
    print("FAIL " + what, flush=True)


def check(what, got, want):
    ok(what) if got == want else bad(f"{what}: got {got!r}, wanted {want!r}")


def tool(*args, uri=URI):
    return subprocess.run([M, "--uri", uri, "--db", DB, *args], check=True, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL).stdout


def tool_json(*args, uri=URI):
    return json.loads(tool(*args, "--json", uri=uri))


def spawn(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    procs.append(p)
    return p


def wait_for(cond, timeout, what):
    """Polls cond() until it returns a true value or timeout seconds pass; returns the value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
        except Exception:  # a page half rendered, an element not there yet
            v = None
        if v or time.monotonic() > deadline:
            if not v:
                bad(f"{what}: not within {timeout} s")
            return v
        time.sleep(0.1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(*extra, uri=URI):
    out = open(f"{TMP}/serve{len(procs)}.out", "w+")
    p = spawn([M, "--uri", uri, "--db", DB, "serve", "--listen", "127.0.0.1:0", *extra],
              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # Its "listening on URL" line; other lines (a log line about a server still starting, with
    # stderr joined) may come first.
    line = wait_for(lambda: next((l for l in open(out.name) if l.startswith("listening on ")), None),
                    10, "serve starts")
    return line.split()[2].rstrip("/"), out.name, p


class Child:
    """mongoq-child-consumer: a real consumer in a process of its own, one command a line."""

    def __init__(self, queue, *opts):
        self.p = spawn([CHILD, URI, DB, queue, "--lease-ms", "600000", *opts], text=True,
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid = self.p.stdout.readline().split()[1]

    def cmd(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().split()


# ---- WebDriver --------------------------------------------------------------------------------
class Browser:
    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

    def __init__(self):
        port = free_port()
        self.driver = spawn(["chromedriver", f"--port={port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: self.call("GET", "/status")["ready"], 20, "chromedriver starts")
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,860", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={TMP}/profile"]
        caps = {"browserName": "chrome", "unhandledPromptBehavior": "ignore",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}}
        self.session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})["sessionId"]

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.base + path, data=data, method=method,
                                   headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(r, timeout=30) as resp:
                return json.load(resp)["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(json.load(e)["value"].get("message", "webdriver error")) from None

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def again(self, what, fn, tries=3):
        """Navigation and screenshots, which assert nothing themselves, get up to `tries` tries:
        chromedriver once answered a navigation right after an alert with "invalid argument"
        under the ASan pass's load. Every check stays on what the page then shows."""
        for i in range(tries):
            try:
                return fn()
            except RuntimeError as e:
                if i == tries - 1:
                    raise
                print(f"     ({what}: {e}; trying again)")
                time.sleep(0.5)

    def go(self, url):
        self.again(f"open {url}", lambda: self.s("POST", "/url", {"url": url}))

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def click(self, css):
        e = self.s("POST", "/element", {"using": "css selector", "value": css})[self.ELEMENT]
        self.s("POST", f"/element/{e}/click", {})

    def dialog(self):
        return self.s("GET", "/alert/text")

    def answer(self, text=None):
        if text is not None:
            self.s("POST", "/alert/text", {"text": text})
        self.s("POST", "/alert/accept", {})

    def js_async(self, script, *args):
        return self.s("POST", "/execute/async", {"script": script, "args": list(args)})

    def text(self, css):
        return self.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    def screenshot(self, path):
        data = self.again("screenshot", lambda: self.s("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.s("DELETE", "")
        except Exception:
            pass


def overview_counts(b):
    return b.js("""const out = {};
      for (const tr of document.querySelectorAll('#queues tr[data-queue]')) {
        out[tr.dataset.queue] = Object.fromEntries(['ready', 'delayed', 'processing', 'done', 'dead']
          .map(k => [k, Number(tr.querySelector('td.' + k).textContent)]));
      }
      return out;""")


def stats_counts(queue):
    s = tool_json("--queue", queue, "stats")
    return {k: s[k] for k in ("ready", "delayed", "processing", "done", "dead")}


def rows(b, css):
    return b.js("return [...document.querySelectorAll(arguments[0])].map(r => r.textContent);", css)


def main(b):
    # ---- the data: three queues, a consumer in its own process ---------------------------------
    lines = "".join(json.dumps({"n": i, "job": f"resize image {i}"}) + "\n" for i in range(1, 7))
    subprocess.run([M, "--db", DB, "--queue", "jobs", "enqueue"], input=lines, text=True,
                   check=True, capture_output=True)
    xss_text = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    xss = tool_json("--queue", "jobs", "enqueue", json.dumps({"html": xss_text}))["ids"][0]
    mails = "".join(json.dumps({"to": f"user{i}@example.com", "template": "welcome"}) + "\n"
                    for i in range(1, 11))
    subprocess.run([M, "--db", DB, "--queue", "emails", "enqueue"], input=mails, text=True,
                   check=True, capture_output=True)
    subprocess.run([SET_SCHEDULE, URI, DB, "jobs", "nightly-report", "0 3 * * *", "Europe/Paris"],
                   check=True, capture_output=True)
    ro_url, _, _ = serve()
    rw_url, rw_log, _ = serve("--allow-actions", "--token", "tok-browser-1234")
    # The sampler notes claims only in queues it has sampled once: wait for its first sample.
    wait_for(lambda: json.load(urllib.request.urlopen(ro_url + "/api/queues/emails"))["samples"]["t"],
             10, "the sampler's first sample")
    child = Child("emails")
    claimed = [child.cmd("claim 2000")[1] for _ in range(6)]
    for oid in claimed[:4]:
        child.cmd(f"fail {oid}")  # dead: "failed by the child"
    smtp = "smtp: 451 4.7.1 try again later"  # a second reason, as another consumer would write
    subprocess.run([RUN_COMMAND, URI, DB, json.dumps({"update": "emails", "updates": [
        {"q": {"_id": {"$oid": claimed[3]}}, "u": {"$set": {"last_error": smtp, "errors.0.error": smtp}}}]})],
        check=True, capture_output=True)
    orders = Child("orders", "--group-concurrency", "1")
    for seq in (1, 2, 3):
        orders.cmd(f"enqueue {seq} customer-42")

    # ---- every page --------------------------------------------------------------------------
    b.go(ro_url + "/")
    got = wait_for(lambda: (lambda c: c if len(c) == 3 else None)(overview_counts(b)), 10, "overview lists 3 queues")
    for q in ("jobs", "emails", "orders"):
        check(f"overview: {q}'s counts match mongoq stats", (got or {}).get(q), stats_counts(q))
    check("header: read-only", b.text("#mode"), "· read-only")

    b.go(ro_url + "/#/q/jobs")
    wait_for(lambda: len(rows(b, "#messages tr[data-id]")) == 7, 10, "queue page lists jobs' 7 messages")
    check("queue page: no action button read-only", b.js("return document.querySelectorAll('#view button').length"), 0)
    b.js("const s = document.getElementById('search'); s.value = 'PWNED'; s.dispatchEvent(new Event('change'));")
    found = wait_for(lambda: (lambda r: r if r and len(r) == 1 else None)(rows(b, "#messages tr[data-id]")), 5,
                     "search 'PWNED' in payloads")
    check("search: finds the one payload, case ignored", bool(found) and xss in found[0], True)
    check("search: says how much it read", b.text("#scan"), "1 matching among 7 messages read")

    b.go(ro_url + f"/#/q/jobs/m/{xss}")
    wait_for(lambda: b.text("#payload"), 10, "message page shows the payload")
    check("message: <script> payload shown as text, formatted",
          b.text("#payload"), json.dumps({"html": xss_text}, indent=2))
    check("message: no element from the payload",
          b.js("return [document.querySelectorAll('script').length, document.querySelectorAll('#view img').length, window.pwned === undefined]"),
          [1, 0, True])
    check("message: fields shown", rows(b, "#fields tr[data-field] th")[:4], ["status", "priority", "attempts", "max_attempts"])

    dead_id = claimed[0]
    b.go(ro_url + f"/#/q/emails/m/{dead_id}")
    wait_for(lambda: "dead" in (b.text("#fields") or ""), 10, "dead message page")
    check("message: claimed_by is the child", b.text("#fields tr[data-field=claimed_by] td").split(":")[1], child.pid)
    check("message: the errors history with times", len(rows(b, "#errors tr")) - 1, 1)
    check("read-only: no redrive button", b.js("return document.querySelectorAll('#view button').length"), 0)
    check("read-only: a POST from the page is refused", b.js_async("""
        fetch('/api/queues/emails/redrive?id=' + arguments[0], {method: 'POST', headers: {'X-Mongoq-Token': 'tok-browser-1234'}})
          .then(r => arguments[1](r.status));""", dead_id), 403)

    b.go(ro_url + "/#/q/emails/dead")
    wait_for(lambda: len(rows(b, "#dead-messages tr[data-id]")) == 4, 10, "dead page lists 4 dead messages")
    check("dead letters by reason", b.js("return [...document.querySelectorAll('#reasons tr')].slice(1)"
                                         ".map(r => [...r.cells].slice(0, 2).map(c => c.textContent))"),
          [["3", "failed by the child"], ["1", smtp]])
    b.screenshot(f"{SHOTS}/dead.png")

    b.go(ro_url + "/#/q/emails/consumers")
    name = wait_for(lambda: b.js("const r = document.querySelector('#consumers tr[data-consumer]'); return r && r.dataset.consumer"),
                    10, "consumers page lists the child")
    cells = b.js("return [...document.querySelectorAll('#consumers tr[data-consumer] td')].map(t => t.textContent)")
    check("consumers: the child, 2 in flight, 4 dead", (name.split(":")[1], cells[1], cells[5]), (child.pid, "2", "4"))
    check("consumers: its claims seen in the change stream", int(cells[3]) >= 1, True)

    b.go(ro_url + "/#/q/jobs/schedules")
    wait_for(lambda: "nightly-report" in (b.text("#schedules") or ""), 10, "schedules page shows nightly-report")
    b.go(ro_url + "/#/q/orders/groups")
    wait_for(lambda: "customer-42" in (b.text("#groups") or ""), 10, "groups page shows customer-42")

    # ---- live update -------------------------------------------------------------------------
    b.go(ro_url + "/")
    before = wait_for(lambda: overview_counts(b).get("jobs"), 10, "overview again")["ready"]
    b.js("window.notReloaded = true;")
    # The page polls every POLL_MS (app.js) after each render: an enqueue just after a poll
    # started shows at the next one, after that fetch and render, slow on a loaded box.
    poll_ms = b.js("return typeof POLL_MS === 'number' ? POLL_MS : null")
    check("the page says how often it polls", isinstance(poll_ms, int) and poll_ms > 0, True)
    live_s = 2 * (poll_ms or 2000) / 1000 + 6
    tool("--queue", "jobs", "enqueue", '{"n": 7, "job": "late arrival"}')
    t0 = time.monotonic()
    wait_for(lambda: overview_counts(b)["jobs"]["ready"] == before + 1, live_s,
             f"the new message shows within {live_s:g} s")
    check("live: shown without a reload", b.js("return window.notReloaded === true"), True)
    print(f"     (shown after {time.monotonic() - t0:.1f} s)")

    # ---- an action through the page ----------------------------------------------------------
    b.go(rw_url + f"/#/q/emails/m/{dead_id}")
    wait_for(lambda: b.js("return [...document.querySelectorAll('#view button')].some(x => x.textContent === 'redrive')"),
             10, "the redrive button with actions allowed")
    b.js("window.sessionStorage.clear();")
    b.click("#view button")  # the first is redrive
    check("redrive asks for confirmation", wait_for(b.dialog, 5, "confirm dialog"), f"Really redrive {dead_id}?")
    b.answer()
    wait_for(b.dialog, 5, "token prompt")
    b.answer("tok-browser-1234")
    check("the page says done", (wait_for(b.dialog, 5, "result alert") or "").startswith("done"), True)
    b.answer()
    check("redriven: ready in the database", tool_json("--queue", "emails", "show", dead_id)["status"], "ready")
    check("the action is logged", f"action /api/queues/emails/redrive id={dead_id} -> 200" in open(rw_log).read(), True)
    wait_for(lambda: len(rows(b, "#fields tr")) and "ready" in b.text("#fields"), 5, "the page shows it ready")

    # ---- the overview's screenshot, after ~20 s of samples ------------------------------------
    b.go(ro_url + "/")
    wait_for(lambda: overview_counts(b).get("emails"), 10, "overview for the screenshot")
    b.screenshot(f"{SHOTS}/overview.png")

    # ---- the database briefly down -------------------------------------------------------------
    if os.environ.get("MONGOQ_TEST_NO_SPAWN"):
        print("skip the server-down check: MONGOQ_TEST_NO_SPAWN is set")
        return
    port = free_port()
    os.makedirs(f"{TMP}/db")
    server = [SERVER_BIN, "--port", str(port), "--dbpath", f"{TMP}/db"]
    log = open(f"{TMP}/private.log", "a")
    srv = spawn(server, stdout=subprocess.DEVNULL, stderr=log)
    private = f"mongodb://127.0.0.1:{port}/?replicaSet=rs0"
    wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1).close() or True, 10, "private server")
    tool("--queue", "jobs", "enqueue", '{"private": 1}', uri=private)
    url, _, _ = serve("--timeout-ms", "300", uri=private)
    b.go(url + "/")
    wait_for(lambda: overview_counts(b).get("jobs"), 10, "overview of the private server")
    srv.send_signal(signal.SIGTERM)
    srv.wait(10)
    status = wait_for(lambda: (lambda t: t if "server unreachable" in t else None)(b.text("#status")), 10,
                      "the page says the server is unreachable")
    check("down: the last data stays on the page", overview_counts(b).get("jobs", {}).get("ready"), 1)
    check("down: it says which time the data is from", "showing data from" in (status or ""), True)
    spawn(server, stdout=subprocess.DEVNULL, stderr=log)
    wait_for(lambda: b.text("#status").startswith("live"), 15, "live again once the server is back")
    check("up again: the data", overview_counts(b).get("jobs", {}).get("ready"), 1)


b = None
try:
    b = Browser()
    main(b)
except Exception as e:
    bad(f"exception: {e!r}")
    traceback.print_exc(file=sys.stdout)
finally:
    if b:
        b.close()
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
print(f"{failures} failures ({time.monotonic() - START:.0f} s)")
sys.exit(1 if failures else 0)
PY

// The mongoq dashboard: one page, hash routes, polling /api every 2 s. Data is put in the page
// only as text nodes (el() and textContent), never as HTML, so a payload holding <script> is
// shown as text.
"use strict";
const POLL_MS = 2000;
let config = { actions: false, db: "" };
let timer = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick") e.addEventListener("click", v); else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  return e;
}

let lastLive = null;
// Replaces the view's content; null and undefined children (parts a page leaves out) are skipped.
function show(view, ...children) { view.replaceChildren(...children.filter(c => c !== null && c !== undefined)); }

function setStatus(ok, text) {
  const s = document.getElementById("status");
  s.className = ok ? "ok" : "down";
  if (ok) lastLive = new Date();
  s.textContent = ok ? text : text + (lastLive ? " · showing data from " + lastLive.toLocaleTimeString() : "") + " · retrying";
  document.body.classList.toggle("down", !ok);
}

async function api(path, opts) {
  let r;
  try {
    r = await fetch("/api" + path, opts);
  } catch (e) {
    setStatus(false, "dashboard unreachable");
    throw e;
  }
  const body = await r.json().catch(() => ({ error: "bad answer" }));
  if (r.status === 503) {
    setStatus(false, "server unreachable");
    throw new Error(body.error);
  }
  setStatus(true, "live · " + new Date().toLocaleTimeString());
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function ago(v) {
  const t = v && v.$date ? Date.parse(v.$date) : NaN;
  return isNaN(t) ? "-" : dur(Date.now() - t) + " ago";
}
function date(v) { return v && v.$date ? v.$date : (v === null || v === undefined ? "-" : String(v)); }
function dur(ms) {
  if (ms < 0 || ms === undefined) return "-";
  if (ms < 1000) return ms + "ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + "s";
  if (ms < 3600000) return Math.floor(ms / 60000) + "m" + String(Math.floor(ms / 1000) % 60).padStart(2, "0") + "s";
  return Math.floor(ms / 3600000) + "h" + String(Math.floor(ms / 60000) % 60).padStart(2, "0") + "m";
}
function rate(r, k) { return r ? r[k].toFixed(1) + "/s" : "-"; }
function enc(s) { return encodeURIComponent(s); }
function queueNav(name) {
  const base = "#/q/" + enc(name);
  return el("nav", {}, el("a", { href: base }, "messages"), el("a", { href: base + "/dead" }, "dead letters by reason"),
    el("a", { href: base + "/consumers" }, "consumers"), el("a", { href: base + "/schedules" }, "schedules"),
    el("a", { href: base + "/groups" }, "groups"));
}

// A small inline SVG plot of several series (ready, processing, dead) over the samples.
function plot(samples, keys, w, h) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("class", "plot");
  const colors = { ready: "#457b9d", processing: "#e9c46a", dead: "#c1121f", enqueued: "#2a9d8f", acked: "#264653", failed: "#e76f51" };
  const n = samples && samples.t ? samples.t.length : 0;
  let max = 1;
  for (const k of keys) for (const v of (samples[k] || [])) max = Math.max(max, v);
  for (const k of keys) {
    if (n < 2) break;
    const pts = samples[k].map((v, i) => (i * (w - 2) / (n - 1) + 1).toFixed(1) + "," + (h - 1 - Math.max(v, 0) * (h - 2) / max).toFixed(1));
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.join(" ")); line.setAttribute("fill", "none");
    line.setAttribute("stroke", colors[k]); line.setAttribute("stroke-width", "1.5");
    const title = document.createElementNS(NS, "title"); title.textContent = k;
    line.appendChild(title); svg.appendChild(line);
  }
  return svg;
}

async function act(queue, action, query, what) {
  if (!confirm("Really " + what + "?")) return;
  let token = sessionStorage.getItem("mongoq-token");
  if (!token) { token = prompt("Action token (mongoq serve --token)"); if (!token) return; sessionStorage.setItem("mongoq-token", token); }
  try {
    const r = await api("/queues/" + enc(queue) + "/" + action + (query ? "?" + query : ""),
      { method: "POST", headers: { "X-Mongoq-Token": token } });
    alert("done: " + JSON.stringify(r));
  } catch (e) {
    if (String(e.message).includes("Token")) sessionStorage.removeItem("mongoq-token");
    alert("failed: " + e.message);
  }
  render();
}
function button(label, fn) { return config.actions ? el("button", { onclick: fn }, label) : null; }

async function overview(view) {
  const d = await api("/queues");
  const rows = d.queues.map(q => el("tr", { "data-queue": q.name },
    el("td", {}, el("a", { href: "#/q/" + enc(q.name) }, q.name)),
    ...["ready", "delayed", "processing", "done", "dead"].map(k => el("td", { class: "num " + k }, q[k])),
    el("td", {}, dur(q.oldest_due_age_ms)),
    el("td", { class: "num" }, rate(q.rates, "enqueued")), el("td", { class: "num" }, rate(q.rates, "acked")),
    el("td", { class: "num" }, rate(q.rates, "failed")),
    el("td", { class: q.paused ? "paused" : "" }, q.paused ? "paused" : "no"),
    el("td", {}, plot(q.samples, ["ready", "processing", "dead"], 160, 32))));
  show(view, el("h2", {}, "Queues of " + d.db),
    el("table", { id: "queues" }, el("tr", {}, ...["queue", "ready", "delayed", "processing", "done", "dead", "oldest due",
      "enqueue", "ack", "fail", "paused", "last 2 min"].map(h => el("th", {}, h))), ...rows),
    d.queues.length ? null : el("p", {}, "No queues in this database."));
}

const freshList = () => ({ status: "all", q: "", sort: "claim", pages: [""] });
let listState = freshList();
async function queuePage(view, name) {
  const [q, list] = await Promise.all([api("/queues/" + enc(name)),
    api("/queues/" + enc(name) + "/messages?status=" + enc(listState.status) + "&sort=" + enc(listState.sort) +
      "&q=" + enc(listState.q) + "&page=" + enc(listState.pages[listState.pages.length - 1]))]);
  const statusSel = el("select", { id: "status-filter" }, ...["all", "ready", "processing", "done", "dead"].map(s => {
    const o = el("option", { value: s }, s); if (s === listState.status) o.selected = true; return o; }));
  statusSel.addEventListener("change", () => { listState.status = statusSel.value; listState.pages = [""]; render(); });
  const sortSel = el("select", {}, ...["claim", "run_at", "lease"].map(s => {
    const o = el("option", { value: s }, "sort: " + s); if (s === listState.sort) o.selected = true; return o; }));
  sortSel.addEventListener("change", () => { listState.sort = sortSel.value; listState.pages = [""]; render(); });
  const text = el("input", { id: "search", type: "search", placeholder: "payload or error contains…", value: listState.q });
  text.addEventListener("change", () => { listState.q = text.value; listState.pages = [""]; render(); });
  const rows = list.messages.map(m => el("tr", { "data-id": m.id },
    el("td", {}, el("a", { href: "#/q/" + enc(name) + "/m/" + m.id }, m.id)), el("td", {}, m.status),
    el("td", { class: "num" }, m.priority), el("td", { class: "num" }, m.attempts), el("td", {}, date(m.run_at)),
    el("td", {}, m.last_error || ""), el("td", {}, JSON.stringify(m.payload).slice(0, 80))));
  show(view, 
    el("h2", {}, "Queue " + name + " ", q.paused ? el("span", { class: "paused" }, "paused") : null),
    queueNav(name),
    el("p", {}, `ready ${q.ready} (delayed ${q.delayed}) · processing ${q.processing} · done ${q.done} · dead ${q.dead} · oldest due ${dur(q.oldest_due_age_ms)} · enqueue ${rate(q.rates, "enqueued")} · ack ${rate(q.rates, "acked")} · fail ${rate(q.rates, "failed")}`),
    plot(q.samples, ["ready", "processing", "dead"], 600, 80), plot(q.samples, ["enqueued", "acked", "failed"], 600, 60),
    el("div", {}, button(q.paused ? "resume" : "pause", () => act(name, q.paused ? "resume" : "pause", "", (q.paused ? "resume " : "pause ") + name)),
      button("redrive all dead", () => act(name, "redrive", "all=1", "redrive every dead message of " + name)),
      ...["ready", "dead", "done"].map(s => button("purge " + s, () => act(name, "purge", "status=" + s, "delete every " + s + " message of " + name)))),
    el("div", {}, statusSel, sortSel, text),
    listState.q ? el("p", { id: "scan" }, `${list.messages.length} matching among ${list.scanned} messages read` +
      (list.scan_stopped ? ` (a search reads at most ${list.scan_limit} per page: "search further" reads on)` : "")) : null,
    el("table", { id: "messages" }, el("tr", {}, ...["id", "status", "priority", "attempts", "run at", "last error", "payload"].map(h => el("th", {}, h))), ...rows),
    el("div", {}, listState.pages.length > 1 ? el("button", { onclick: () => { listState.pages.pop(); render(); } }, "previous page") : null,
      list.next ? el("button", { id: "next-page", onclick: () => { listState.pages.push(list.next); render(); } },
        listState.q ? "search further" : "next page") : null));
}

async function messagePage(view, name, id) {
  const m = await api("/queues/" + enc(name) + "/messages/" + enc(id));
  const fields = ["status", "priority", "attempts", "max_attempts", "enqueued_at", "run_at", "updated_at", "lease_expires_at", "claimed_by", "dedup_key", "group", "last_error"];
  const shown = fields.filter(f => f !== "group" || m.group !== undefined);
  show(view, el("h2", {}, "Message " + m.id + " in ", el("a", { href: "#/q/" + enc(name) }, name)),
    el("table", { id: "fields" }, ...shown.map(f => el("tr", { "data-field": f }, el("th", {}, f), el("td", {}, date(m[f])))),
      m.schedule ? el("tr", { "data-field": "schedule" }, el("th", {}, "schedule"), el("td", {}, m.schedule.name + " · slot " + date(m.schedule.slot))) : null),
    el("div", {}, m.status === "dead" ? button("redrive", () => act(name, "redrive", "id=" + m.id, "redrive " + m.id)) : null,
      m.status === "dead" || m.status === "ready" ? button("retry now", () => act(name, "retry", "id=" + m.id, "retry " + m.id + " now")) : null,
      m.status === "dead" ? button("delete", () => act(name, "delete", "id=" + m.id, "delete " + m.id)) : null),
    el("h3", {}, "Payload"), el("pre", { id: "payload" }, JSON.stringify(m.payload, null, 2)),
    el("h3", {}, "Errors"), el("table", { id: "errors" }, el("tr", {}, el("th", {}, "at"), el("th", {}, "error")),
      ...(m.errors || []).map(e => el("tr", {}, el("td", {}, date(e.at)), el("td", {}, e.error)))));
}

async function deadPage(view, name) {
  const [d, list] = await Promise.all([api("/queues/" + enc(name) + "/dead"),
    api("/queues/" + enc(name) + "/messages?status=dead&sort=run_at&limit=20")]);
  show(view, el("h2", {}, "Dead letters of ", el("a", { href: "#/q/" + enc(name) }, name), " by reason"),
    el("p", {}, `${d.grouped} dead messages grouped (at most ${d.sample_limit} are read)`),
    el("table", { id: "reasons" }, el("tr", {}, el("th", {}, "count"), el("th", {}, "last error"), el("th", {}, "latest")),
      ...d.reasons.map(r => el("tr", {}, el("td", { class: "num" }, r.count), el("td", {}, r.last_error === null ? "(none)" : r.last_error), el("td", {}, date(r.last_at))))),
    el("div", {}, button("redrive all dead", () => act(name, "redrive", "all=1", "redrive every dead message of " + name))),
    el("h3", {}, "The first dead messages"),
    el("table", { id: "dead-messages" }, el("tr", {}, ...["id", "attempts", "claimed by", "last error", "payload", ""].map(h => el("th", {}, h))),
      ...list.messages.map(m => el("tr", { "data-id": m.id },
        el("td", {}, el("a", { href: "#/q/" + enc(name) + "/m/" + m.id }, m.id)), el("td", { class: "num" }, m.attempts),
        el("td", {}, m.claimed_by || "-"), el("td", {}, m.last_error || ""), el("td", {}, JSON.stringify(m.payload).slice(0, 60)),
        el("td", {}, button("redrive", () => act(name, "redrive", "id=" + m.id, "redrive " + m.id)))))));
}

async function consumersPage(view, name) {
  const c = await api("/queues/" + enc(name) + "/consumers");
  show(view, el("h2", {}, "Consumers of ", el("a", { href: "#/q/" + enc(name) }, name), " seen recently"), queueNav(name),
    el("table", { id: "consumers" }, el("tr", {}, ...["consumer", "in flight", "lease until", "claims seen", "done", "dead", "last seen"].map(h => el("th", {}, h))),
      ...c.consumers.map(r => el("tr", { "data-consumer": r.name }, el("td", {}, r.name), el("td", { class: "num in-flight" }, r.in_flight),
        el("td", {}, date(r.lease_until)), el("td", { class: "num" }, r.claims_seen), el("td", { class: "num" }, r.done),
        el("td", { class: "num" }, r.dead), el("td", {}, ago(r.last_seen))))),
    c.consumers.length ? null : el("p", {}, "No consumer seen."),
    el("p", { class: "note" }, `From claimed_by on the latest ${c.scan_limit} messages of each of processing, done and dead ` +
      `(read: ${c.scanned.processing}, ${c.scanned.done}, ${c.scanned.dead}), and ` +
      (c.watching ? `the claims seen in the change stream since ${date(c.since)}. ` : "no change stream (no claims counted). ") +
      "An acked message is deleted, so a consumer that only acks shows here while it holds a message, or by its claims."));
}

// schedules and groups: what `mongoq schedules --json` and `groups --json` print, as a table.
async function listPage(view, name, what) {
  const d = await api("/queues/" + enc(name) + "/" + what);
  const rows = d[what] || [];
  const keys = [...new Set(rows.flatMap(r => Object.keys(r)))].slice(0, 12);
  const cell = v => v && v.$date ? v.$date : typeof v === "object" && v !== null ? JSON.stringify(v) : v;
  show(view, el("h2", {}, what[0].toUpperCase() + what.slice(1) + " of ", el("a", { href: "#/q/" + enc(name) }, name)), queueNav(name),
    el("table", { id: what }, el("tr", {}, ...keys.map(k => el("th", {}, k))),
      ...rows.map(r => el("tr", {}, ...keys.map(k => el("td", {}, cell(r[k])))))),
    rows.length ? null : el("p", {}, "None in this queue."));
}

async function render() {
  clearTimeout(timer);
  const view = document.getElementById("view");
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "q" && parts[2] === "m") await messagePage(view, parts[1], parts[3]);
    else if (parts[0] === "q" && parts[2] === "dead") await deadPage(view, parts[1]);
    else if (parts[0] === "q" && parts[2] === "consumers") await consumersPage(view, parts[1]);
    else if (parts[0] === "q" && (parts[2] === "schedules" || parts[2] === "groups")) await listPage(view, parts[1], parts[2]);
    else if (parts[0] === "q") await queuePage(view, parts[1]);
    else await overview(view);
    document.body.setAttribute("data-polled", String(Number(document.body.getAttribute("data-polled") || 0) + 1));
  } catch (e) {
    if (document.getElementById("status").className !== "down") show(view, el("p", { class: "error" }, "error: " + e.message));
  }
  timer = setTimeout(render, POLL_MS);
}

window.addEventListener("hashchange", () => { listState = freshList(); render(); });
api("/config").then(c => {
  config = c;
  document.getElementById("db").textContent = "db " + c.db;
  document.getElementById("mode").textContent = c.actions ? "· actions allowed" : "· read-only";
}).catch(() => {}).finally(render);

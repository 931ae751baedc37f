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

function setStatus(ok, text) {
  const s = document.getElementById("status");
  s.className = ok ? "ok" : "down";
  s.textContent = text;
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
  view.replaceChildren(el("h2", {}, "Queues of " + d.db),
    el("table", { id: "queues" }, el("tr", {}, ...["queue", "ready", "delayed", "processing", "done", "dead", "oldest due",
      "enqueue", "ack", "fail", "paused", "last 2 min"].map(h => el("th", {}, h))), ...rows),
    d.queues.length ? null : el("p", {}, "No queues in this database."));
}

let listState = { status: "all", q: "", sort: "claim", pages: [""] };
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
  const text = el("input", { placeholder: "error contains…", value: listState.q });
  text.addEventListener("change", () => { listState.q = text.value; listState.pages = [""]; render(); });
  const rows = list.messages.map(m => el("tr", { "data-id": m.id },
    el("td", {}, el("a", { href: "#/q/" + enc(name) + "/m/" + m.id }, m.id)), el("td", {}, m.status),
    el("td", { class: "num" }, m.priority), el("td", { class: "num" }, m.attempts), el("td", {}, date(m.run_at)),
    el("td", {}, m.last_error || ""), el("td", {}, JSON.stringify(m.payload).slice(0, 80))));
  view.replaceChildren(
    el("h2", {}, "Queue " + name + " ", q.paused ? el("span", { class: "paused" }, "paused") : null),
    el("nav", {}, el("a", { href: "#/q/" + enc(name) + "/dead" }, "dead letters by reason"),
      el("a", { href: "#/q/" + enc(name) + "/schedules" }, "schedules and groups")),
    el("p", {}, `ready ${q.ready} (delayed ${q.delayed}) · processing ${q.processing} · done ${q.done} · dead ${q.dead} · oldest due ${dur(q.oldest_due_age_ms)} · enqueue ${rate(q.rates, "enqueued")} · ack ${rate(q.rates, "acked")} · fail ${rate(q.rates, "failed")}`),
    plot(q.samples, ["ready", "processing", "dead"], 600, 80), plot(q.samples, ["enqueued", "acked", "failed"], 600, 60),
    el("div", {}, button(q.paused ? "resume" : "pause", () => act(name, q.paused ? "resume" : "pause", "", (q.paused ? "resume " : "pause ") + name)),
      button("redrive all dead", () => act(name, "redrive", "all=1", "redrive every dead message of " + name)),
      ...["ready", "dead", "done"].map(s => button("purge " + s, () => act(name, "purge", "status=" + s, "delete every " + s + " message of " + name)))),
    el("div", {}, statusSel, sortSel, text),
    el("table", { id: "messages" }, el("tr", {}, ...["id", "status", "priority", "attempts", "run at", "last error", "payload"].map(h => el("th", {}, h))), ...rows),
    el("div", {}, listState.pages.length > 1 ? el("button", { onclick: () => { listState.pages.pop(); render(); } }, "previous page") : null,
      list.next ? el("button", { onclick: () => { listState.pages.push(list.next); render(); } }, "next page") : null));
}

async function messagePage(view, name, id) {
  const m = await api("/queues/" + enc(name) + "/messages/" + enc(id));
  const fields = ["status", "priority", "attempts", "max_attempts", "enqueued_at", "run_at", "updated_at", "lease_expires_at", "claimed_by", "dedup_key", "group", "last_error"];
  view.replaceChildren(el("h2", {}, "Message " + m.id + " in ", el("a", { href: "#/q/" + enc(name) }, name)),
    el("table", {}, ...fields.map(f => el("tr", {}, el("th", {}, f), el("td", {}, date(m[f]))))),
    el("div", {}, m.status === "dead" ? button("redrive", () => act(name, "redrive", "id=" + m.id, "redrive " + m.id)) : null,
      m.status === "dead" || m.status === "ready" ? button("retry now", () => act(name, "retry", "id=" + m.id, "retry " + m.id + " now")) : null,
      m.status === "dead" ? button("delete", () => act(name, "delete", "id=" + m.id, "delete " + m.id)) : null),
    el("h3", {}, "Payload"), el("pre", { id: "payload" }, JSON.stringify(m.payload, null, 2)),
    el("h3", {}, "Errors"), el("table", { id: "errors" }, el("tr", {}, el("th", {}, "at"), el("th", {}, "error")),
      ...(m.errors || []).map(e => el("tr", {}, el("td", {}, date(e.at)), el("td", {}, e.error)))));
}

async function deadPage(view, name) {
  const d = await api("/queues/" + enc(name) + "/dead");
  view.replaceChildren(el("h2", {}, "Dead letters of ", el("a", { href: "#/q/" + enc(name) }, name), " by reason"),
    el("p", {}, `${d.grouped} dead messages grouped (at most ${d.sample_limit} are read)`),
    el("table", { id: "reasons" }, el("tr", {}, el("th", {}, "count"), el("th", {}, "last error"), el("th", {}, "latest")),
      ...d.reasons.map(r => el("tr", {}, el("td", { class: "num" }, r.count), el("td", {}, r.last_error === null ? "(none)" : r.last_error), el("td", {}, date(r.last_at))))),
    el("div", {}, button("redrive all dead", () => act(name, "redrive", "all=1", "redrive every dead message of " + name))));
}

async function schedulesPage(view, name) {
  const [s, g] = await Promise.all([api("/queues/" + enc(name) + "/schedules").catch(e => ({ error: e.message })),
    api("/queues/" + enc(name) + "/groups").catch(e => ({ error: e.message }))]);
  view.replaceChildren(el("h2", {}, "Schedules and groups of ", el("a", { href: "#/q/" + enc(name) }, name)),
    el("h3", {}, "Schedules"), el("pre", {}, s.error ? s.error : JSON.stringify(s.schedules, null, 2)),
    el("h3", {}, "Groups"), el("pre", {}, g.error ? g.error : JSON.stringify(g.groups, null, 2)));
}

async function render() {
  clearTimeout(timer);
  const view = document.getElementById("view");
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  try {
    if (parts[0] === "q" && parts[2] === "m") await messagePage(view, parts[1], parts[3]);
    else if (parts[0] === "q" && parts[2] === "dead") await deadPage(view, parts[1]);
    else if (parts[0] === "q" && parts[2] === "schedules") await schedulesPage(view, parts[1]);
    else if (parts[0] === "q") await queuePage(view, parts[1]);
    else await overview(view);
    document.body.setAttribute("data-polled", String(Number(document.body.getAttribute("data-polled") || 0) + 1));
  } catch (e) {
    if (document.getElementById("status").className !== "down") view.replaceChildren(el("p", { class: "error" }, "error: " + e.message));
  }
  timer = setTimeout(render, POLL_MS);
}

window.addEventListener("hashchange", () => { listState = { status: "all", q: "", sort: "claim", pages: [""] }; render(); });
api("/config").then(c => {
  config = c;
  document.getElementById("db").textContent = "db " + c.db;
  document.getElementById("mode").textContent = c.actions ? "· actions allowed" : "· read-only";
}).catch(() => {}).finally(render);

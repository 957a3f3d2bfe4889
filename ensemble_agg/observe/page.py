"""The live page served at ``/``: one self-contained HTML document.

Inline CSS and JavaScript, no CDN, no web fonts; the only request it makes is
for its own ``status`` (every second).  Everything a peer controls (model
ids, room and client names, drop reasons) reaches the document only through
``textContent`` and attribute setters, never ``innerHTML``, and the
Content-Security-Policy allows exactly this page's script and style (by
hash), so even a bug there could not run a peer's markup.
"""

from __future__ import annotations

import base64
import hashlib

__all__ = ["CONTENT_SECURITY_POLICY", "render_page"]

_STYLE = """
:root {
  --bg: #f6f7f9; --card: #fff; --ink: #1c2330; --muted: #647084; --line: #e3e6eb;
  --accent: #2f6fde; --accent2: #9db8ee; --ok: #1f8f4e; --bad: #c93434; --warn: #c47a00;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #12161d; --card: #1b212b; --ink: #e4e8ef; --muted: #97a1b3;
          --line: #2b3340; --accent: #6c9cf0; --accent2: #34507f; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 16px;
  padding: 14px 20px; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 17px; margin: 0; font-weight: 600; }
header .sub { color: var(--muted); font-size: 13px; }
.pill { display: inline-flex; align-items: center; gap: 6px; padding: 3px 10px;
  border-radius: 999px; font-size: 13px; font-weight: 600; color: #fff;
  background: var(--muted); max-width: 100%; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; }
.pill.ok { background: var(--ok); } .pill.bad { background: var(--bad); }
.spacer { flex: 1; }
main { padding: 16px 20px 28px; display: grid; gap: 16px;
  grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); max-width: 1400px;
  margin: 0 auto; }
.stats { grid-column: 1 / -1; display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fit, minmax(132px, 1fr)); }
.stat { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 10px 12px; min-width: 0; }
.stat .k { color: var(--muted); font-size: 12px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
.stat .v { font-size: 21px; font-weight: 600; font-variant-numeric: tabular-nums;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.stat .v.word { font-size: 17px; line-height: 29px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 14px 16px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
section h2 { font-size: 14px; margin: 0 0 10px; display: flex; align-items: center;
  gap: 8px; flex-wrap: wrap; }
section h2 .note { color: var(--muted); font-weight: 400; font-size: 12px; }
.toggle { margin-left: auto; display: inline-flex; border: 1px solid var(--line);
  border-radius: 8px; overflow: hidden; }
.toggle button { border: 0; background: transparent; color: var(--ink); padding: 4px 10px;
  font: inherit; font-size: 12px; cursor: pointer; }
.toggle button[aria-pressed="true"] { background: var(--accent); color: #fff; }
.bars { display: grid; gap: 6px; }
.bar-row { display: grid; grid-template-columns: minmax(70px, min(30%, 300px)) 1fr 64px;
  align-items: center; gap: 8px; min-width: 0; }
.bar-row .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.bar-row .track { background: var(--bg); border-radius: 4px; height: 14px;
  overflow: hidden; }
.bar-row .fill { background: var(--accent); height: 100%; border-radius: 4px;
  transition: width .4s ease; min-width: 1px; }
.bar-row.straggler .fill { background: var(--warn); }
.bar-row .val { text-align: right; font-variant-numeric: tabular-nums; font-size: 12px; }
.badge { display: inline-block; margin-left: 6px; padding: 0 6px; border-radius: 4px;
  background: var(--warn); color: #fff; font-size: 11px; font-family: system-ui,
  sans-serif; }
table { width: 100%; border-collapse: collapse; font-size: 12px;
  font-variant-numeric: tabular-nums; table-layout: fixed; }
th, td { padding: 4px 6px; border-bottom: 1px solid var(--line); text-align: right;
  overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; width: 44%;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
th { color: var(--muted); font-weight: 500; font-family: inherit !important; }
tr.straggler td { color: var(--warn); font-weight: 600; }
.spark { width: 100%; height: 90px; display: block; }
.spark .area { fill: var(--accent2); opacity: .55; }
.spark .line { fill: none; stroke: var(--accent); stroke-width: 1.5;
  vector-effect: non-scaling-stroke; }
.axis { display: flex; justify-content: space-between; color: var(--muted);
  font-size: 11px; }
.empty { color: var(--muted); font-size: 13px; }
footer { color: var(--muted); font-size: 12px; text-align: center; padding: 0 0 20px; }
.hidden { display: none !important; }
@media (max-width: 480px) {
  header, main { padding-left: 10px; padding-right: 10px; }
  main { grid-template-columns: 1fr; }
  .stats { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .bar-row { grid-template-columns: minmax(60px, 38%) 1fr 52px; }
  th:first-child, td:first-child { width: 36%; }
}
"""

_SCRIPT = r"""
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = String(text);
  return e;
}
const pct = (x) => (100 * x).toFixed(1) + "%";
const ms = (x) => x === null || x === undefined ? "–"
  : (1000 * x).toFixed(Math.abs(x) < 0.01 ? 1 : 0) + " ms";
function num(x) {
  if (x === null || x === undefined) return "–";
  if (Math.abs(x) >= 1e6) return (x / 1e6).toFixed(2) + "M";
  if (Math.abs(x) >= 1e4) return (x / 1e3).toFixed(1) + "k";
  return Number.isInteger(x) ? String(x) : x.toFixed(2);
}
function bytes(x) {
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
  while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
  return (i ? x.toFixed(1) : String(x)) + " " + u[i];
}
function duration(s) {
  s = Math.max(0, Math.floor(s));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
  return h ? h + "h " + m + "m" : m ? m + "m " + r + "s" : r + "s";
}
function stats(items) {
  const box = $("stats"); box.replaceChildren();
  for (const [k, v] of items) {
    const word = /^[a-z]/.test(v);  // a state, not a number: smaller, so it fits
    const d = el("div", "stat");
    d.append(el("div", "k", k), el("div", word ? "v word" : "v", v));
    d.setAttribute("title", k + ": " + v); box.append(d);
  }
}
// rows: [{name, value, label, straggler}] -> horizontal bars, widths relative to max.
function bars(box, rows, empty) {
  box.replaceChildren();
  if (!rows.length) { box.append(el("div", "empty", empty)); return; }
  const top = Math.max(...rows.map((r) => r.value), 1e-12);
  for (const r of rows) {
    const row = el("div", "bar-row" + (r.straggler ? " straggler" : ""));
    row.setAttribute("data-name", r.name);
    const name = el("div", "name", r.name);
    name.setAttribute("title", r.name);
    if (r.straggler) name.append(el("span", "badge", "straggler"));
    const track = el("div", "track"), fill = el("div", "fill");
    fill.style.width = (100 * r.value / top).toFixed(2) + "%";
    track.append(fill);
    row.append(name, track, el("div", "val", r.label));
    box.append(row);
  }
}
function table(box, head, rows, empty) {
  box.replaceChildren();
  if (!rows.length) { box.append(el("div", "empty", empty)); return; }
  const t = el("table"), tr = el("tr");
  for (const h of head) tr.append(el("th", "", h));
  t.append(tr);
  for (const r of rows) {
    const row = el("tr", r.cls || "");
    r.cells.forEach((c, i) => {
      const td = el("td", "", c);
      if (i === 0) td.setAttribute("title", c);
      row.append(td);
    });
    t.append(row);
  }
  box.append(t);
}
function spark(values, step) {
  const pts = [];
  for (let i = 0; i < values.length; i += step) {
    const chunk = values.slice(i, i + step);
    pts.push(chunk.reduce((a, b) => a + b, 0) / chunk.length);
  }
  const top = Math.max(...pts, 1e-9), n = pts.length;
  const xy = pts.map((v, i) => [(i / Math.max(n - 1, 1)) * 300, 58 - (v / top) * 54]);
  const line = xy.map(([x, y]) => x.toFixed(1) + "," + y.toFixed(1)).join(" ");
  $("spark-line").setAttribute("points", line);
  $("spark-area").setAttribute("points", "0,60 " + line + " 300,60");
  $("spark-max").textContent = "peak " + num(top) + "/s";
  $("spark-span").textContent = "last " + duration(values.length);
}
let since = "start", prev = null, last = null;
function client(s) {
  const c = s.counters;
  const dropped = Object.values(s.dropped).reduce((a, b) => a + b, 0);
  stats([
    ["connection", s.connection], ["rounds", num(c.rounds)],
    ["rounds/s (1 min)", num(s.rate.per_second_1m)], ["submissions", num(c.submissions)],
    ["dropped", num(dropped)], ["GETs", num(c.gets)], ["early closes", num(c.early_closes)],
    ["reconnects", num(c.reconnects)],
  ]);
  const key = since === "start" ? "start" : "since_get";
  const rows = s.models.map((m) => ({
    name: m.model, value: m.share[key], label: pct(m.share[key]), straggler: m.straggler,
  })).sort((a, b) => b.value - a.value || (a.name < b.name ? -1 : 1));
  bars($("shares"), rows, "no rounds yet");
  const late = s.models.filter((m) => m.lateness.n)
    .sort((a, b) => (b.lateness.median - a.lateness.median));
  table($("lateness"), ["model", "median", "p95", "missed"], late.map((m) => ({
    cls: m.straggler ? "straggler" : "",
    cells: [m.model + (m.straggler ? "  ⚠" : ""), ms(m.lateness.median),
            ms(m.lateness.p95), num(m.missed)],
  })), "no submissions yet");
  spark(s.rate.rounds, 5);
  const acts = Object.entries(s.actions).map(([a, n]) => ({name: "action " + a, value: n}));
  const total = acts.reduce((a, r) => a + r.value, 0) || 1;
  acts.forEach((r) => { r.label = pct(r.value / total); });
  acts.sort((a, b) => b.value - a.value);
  bars($("actions"), acts, "no actions yet");
  const drops = Object.entries(s.dropped).map(([r, n]) => ({name: r, value: n, label: num(n)}));
  drops.sort((a, b) => b.value - a.value);
  bars($("drops"), drops, "nothing dropped");
}
function server(s) {
  const dt = prev && prev.s.time !== undefined ? s.time - prev.s.time : 0;
  const before = Object.create(null);  // room names are the peers'
  if (prev && dt > 0) for (const r of prev.s.traffic) before[r.room] = r;
  const rate = (r, k) => dt > 0 && before[r.room] ? (r[k] - before[r.room][k]) / dt : null;
  const inRate = dt > 0 && prev ? (s.totals.frames_in - prev.s.totals.frames_in) / dt : null;
  const dropped = Object.values(s.dropped).reduce((a, b) => a + b, 0);
  stats([
    ["clients", num(s.clients)], ["registered names", num(s.registered_names)],
    ["rooms", num(s.rooms)], ["frames in/s", inRate === null ? "–" : num(inRate)],
    ["frames out", num(s.totals.frames_out)],
    ["queued", bytes(s.queue_bytes)], ["slow consumers cut", num(s.slow_consumer_disconnects)],
    ["dropped", num(dropped)],
  ]);
  const traffic = s.traffic.map((r) => {
    const f = rate(r, "frames_in");
    return {name: r.room, value: f === null ? r.frames_in : f,
            label: f === null ? num(r.frames_in) : num(f) + "/s"};
  }).sort((a, b) => b.value - a.value);
  bars($("traffic"), traffic, "no frames yet");
  table($("members"), ["room", "members"], s.room_members.map((r) => ({
    cells: [r.room, num(r.members)],
  })), "no rooms");
  table($("readers"), ["client", "queued"], s.slowest_readers.map((r) => ({
    cells: [r.name, bytes(r.queue_bytes)],
  })), "nobody is behind");
  const drops = Object.entries(s.dropped).map(([r, n]) => ({name: r, value: n, label: num(n)}));
  bars($("server-drops"), drops, "nothing dropped");
}
function render(s) {
  const isClient = s.kind === "agg-client";
  document.title = s.kind + " · ensemble-agg";
  $("title").textContent = s.kind;
  for (const e of document.querySelectorAll("[data-for]")) {
    e.classList.toggle("hidden", e.getAttribute("data-for") !== s.kind);
  }
  const h = $("health");
  h.textContent = (s.health.ok ? "healthy" : "unhealthy") + ": " + s.health.reason;
  h.className = "pill " + (s.health.ok ? "ok" : "bad");
  $("uptime").textContent = "up " + duration(s.uptime || 0);
  if (isClient) client(s); else server(s);
}
function setLive(ok, why) {
  $("updated").textContent = ok ? "updated " + new Date().toLocaleTimeString()
                                : "no answer from the command (" + why + ")";
  if (!ok) { $("health").textContent = "unreachable"; $("health").className = "pill bad"; }
}
async function poll() {
  try {
    const r = await fetch("status", {cache: "no-store"});
    const s = await r.json();
    prev = last; last = {s};
    render(s); setLive(true);
  } catch (e) {
    setLive(false, String(e && e.message || e));
  } finally {
    setTimeout(poll, 1000);
  }
}
for (const b of document.querySelectorAll(".toggle button")) {
  b.addEventListener("click", () => {
    since = b.getAttribute("data-since");
    for (const o of document.querySelectorAll(".toggle button")) {
      o.setAttribute("aria-pressed", String(o === b));
    }
    if (last) render(last.s);
  });
}
poll();
"""

_BODY = """<header>
  <h1>ensemble-agg · <span id="title">{kind}</span></h1>
  <span id="health" class="pill">connecting…</span>
  <span class="sub" id="uptime"></span>
  <span class="spacer"></span>
  <span class="sub" id="updated"></span>
</header>
<main>
  <div class="stats" id="stats"></div>
  <section data-for="agg-client" class="wide">
    <h2>Contribution share <span class="note">by model, straggler marked</span>
      <span class="toggle" role="group" aria-label="since">
        <button type="button" data-since="start" aria-pressed="true">since start</button>
        <button type="button" data-since="get" aria-pressed="false">since last GET</button>
      </span></h2>
    <div class="bars" id="shares"></div>
  </section>
  <section data-for="agg-client">
    <h2>Lateness <span class="note">first submission of a round to this model's</span></h2>
    <div id="lateness"></div>
  </section>
  <section data-for="agg-client">
    <h2>Rounds per second <span class="note" id="spark-span"></span>
      <span class="note" id="spark-max"></span></h2>
    <svg class="spark" viewBox="0 0 300 60" preserveAspectRatio="none" role="img"
         aria-label="rounds per second">
      <polygon class="area" id="spark-area" points="0,60 300,60"></polygon>
      <polyline class="line" id="spark-line" points=""></polyline>
    </svg>
    <div class="axis"><span>older</span><span>now</span></div>
  </section>
  <section data-for="agg-client">
    <h2>Actions</h2><div class="bars" id="actions"></div>
  </section>
  <section data-for="agg-client">
    <h2>Dropped messages <span class="note">by reason</span></h2>
    <div class="bars" id="drops"></div>
  </section>
  <section data-for="agg-server" class="wide">
    <h2>Frames per second <span class="note">by room (TO_ROOM)</span></h2>
    <div class="bars" id="traffic"></div>
  </section>
  <section data-for="agg-server">
    <h2>Rooms <span class="note">members</span></h2><div id="members"></div>
  </section>
  <section data-for="agg-server">
    <h2>Slowest readers <span class="note">bytes queued to them</span></h2>
    <div id="readers"></div>
  </section>
  <section data-for="agg-server">
    <h2>Dropped frames <span class="note">by reason</span></h2>
    <div class="bars" id="server-drops"></div>
  </section>
</main>
<footer>refreshes every second from <code>/status</code> ·
  also <code>/metrics</code> and <code>/healthz</code></footer>"""


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


#: Only this page's own script and style run; it may fetch only its own origin.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src '{_sha256(_SCRIPT)}'; "
    f"style-src '{_sha256(_STYLE)}'; connect-src 'self'; img-src 'self' data:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_PAGES: dict[str, bytes] = {}


def render_page(kind: str) -> bytes:
    """The page for ``"agg-client"`` or ``"agg-server"``, as UTF-8 bytes.

    Examples
    --------
    >>> page = render_page("agg-client")
    >>> page.startswith(b"<!doctype html>"), b"innerHTML" in page
    (True, False)
    """
    if kind not in ("agg-client", "agg-server"):
        raise ValueError(f"kind must be agg-client or agg-server, got {kind!r}")
    page = _PAGES.get(kind)
    if page is None:
        html = (
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8>\n"
            '<meta name=viewport content="width=device-width, initial-scale=1">\n'
            f"<title>{kind} · ensemble-agg</title>\n"
            # no icon: the browser would otherwise ask for /favicon.ico
            '<link rel="icon" href="data:,">\n'
            f"<style>{_STYLE}</style></head>\n<body>\n"
            + _BODY.replace("{kind}", kind)
            + f"\n<script>{_SCRIPT}</script>\n</body></html>\n"
        )
        page = _PAGES[kind] = html.encode()
    return page

// Longhaul dashboard: polls /v1/status and /v1/history and redraws without a reload.
// Every value from the server is inserted as text (textContent / SVG attributes), never as
// HTML: site ids and warnings are peer-supplied. Per-site fields are rendered generically, so
// fields the coordinator adds later appear as new columns without a change here.
"use strict";

const POLL_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";
const state = { rounds: [], lastRound: -1, runId: null, history: null, status: null };

// Columns shown first when present, in this order; any other per-site field follows, sorted.
const SITE_ORDER = ["state", "last_seen", "round", "last_round_uploaded", "inner_steps", "step_rate",
  "utilisation", "bytes_up", "bytes_down", "uploads_accepted", "uploads_rejected", "resyncs",
  "protocol_errors", "last_refusal"];

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function fmtBytes(b) {
  if (typeof b !== "number" || !isFinite(b)) return String(b);
  const u = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  while (Math.abs(b) >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(b < 10 ? 2 : 1) : b.toFixed(0)) + " " + u[i];
}
function fmtDuration(s) {
  if (typeof s !== "number" || !isFinite(s) || s < 0) return "–";
  s = Math.round(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}
function fmtNumber(v) {
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return Math.abs(v) >= 100 ? v.toFixed(1) : String(parseFloat(v.toPrecision(4)));
}
function fmtValue(key, v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return /bytes/.test(key) ? fmtBytes(v) : fmtNumber(v);
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}
function fmtTime(unix) {
  return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

// ---- run summary

function runState(st) {
  if (!st) return ["unreachable", "unreachable"];
  if (st.round >= st.rounds_total) return ["complete", "complete"];
  if (st.round_open) return [`round ${st.round} open`, "open"];
  return ["waiting for sites", "waiting"];
}

function renderRun() {
  const st = state.status, h = state.history;
  const [label, cls] = runState(st);
  const pill = document.getElementById("run-state");
  pill.textContent = label;
  pill.className = "pill " + cls;
  if (!st) return;
  document.getElementById("run-id").textContent = st.run_id;
  const done = Math.min(st.round, st.rounds_total);
  const elapsed = h && h.started > 0 ? h.now - h.started : NaN;
  const recent = state.rounds.slice(-5).map(r => r.duration_s).filter(x => typeof x === "number");
  const perRound = recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : NaN;
  const eta = done >= st.rounds_total ? 0 : perRound * (st.rounds_total - done);
  const withLoss = state.rounds.filter(r => typeof r.eval_loss === "number");
  const sites = Object.values(st.sites || {});
  const cards = [
    ["round", `${done} / ${st.rounds_total}`],
    ["state", cls === "open" ? "round open" : label],
    ["elapsed", fmtDuration(elapsed)],
    ["ETA", fmtDuration(eta)],
    ["eval loss", withLoss.length ? withLoss[withLoss.length - 1].eval_loss.toFixed(4) : "–"],
    ["sites connected", `${sites.filter(s => s.state !== "disconnected").length} / ${sites.length}`],
    ["rejected uploads", fmtNumber(st.rejected_uploads ?? 0)],
    ["θ hash", st.param_hash],
  ];
  const box = document.getElementById("run");
  box.replaceChildren(...cards.map(([k, v]) => {
    const c = el("div", { class: "card" });
    c.append(el("div", { class: "k" }, k), el("div", { class: "v", title: String(v) }, String(v)));
    return c;
  }));
}

// ---- sites table: one row per site, one column per field any site reports

function renderSites() {
  const st = state.status;
  const table = document.getElementById("sites");
  if (!st) return;
  const sites = st.sites || {};
  const keys = new Set();
  for (const s of Object.values(sites)) for (const k of Object.keys(s)) keys.add(k);
  const cols = SITE_ORDER.filter(k => keys.has(k)).concat([...keys].filter(k => !SITE_ORDER.includes(k)).sort());
  const head = el("tr");
  head.append(el("th", {}, "site"), ...cols.map(k => el("th", {}, k.replace(/_/g, " "))));
  table.tHead.replaceChildren(head);
  const rows = Object.keys(sites).sort().map(id => {
    const tr = el("tr", { "data-site": id });
    tr.append(el("td", { class: "mono" }, id));
    for (const k of cols) {
      const v = sites[id][k];
      if (k === "state") {
        const td = el("td");
        td.append(el("span", { class: "pill " + String(v) }, String(v)));
        tr.append(td);
      } else {
        tr.append(el("td", typeof v === "number" ? { class: "num" } : {}, fmtValue(k, v)));
      }
    }
    return tr;
  });
  if (!rows.length) {
    const tr = el("tr");
    tr.append(el("td", { class: "muted" }, "no site has joined yet"));
    rows.push(tr);
  }
  table.tBodies[0].replaceChildren(...rows);
}

// ---- charts: plain SVG line charts with points

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; lo = lo - 1; }
  const step0 = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => s >= step0) || step0;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

// series: [{name, color, points: [[x, y], ...]}]; opts: {xlabel, logY, intX, fmtY, fmtX}
// Sized to its container's width (px), 220 px high; a legend above the plot for several series.
function lineChart(id, series, opts) {
  const box = document.getElementById(id);
  const W = Math.max(320, box.clientWidth || 460), H = 220, L = 66, R = 14, B = 34;
  const T = series.length > 1 ? 26 : 10;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const pts = series.flatMap(s => s.points).filter(p => isFinite(p[0]) && isFinite(p[1]) && (!opts.logY || p[1] > 0));
  if (!pts.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" }, "no data yet"));
    box.replaceChildren(root);
    return;
  }
  const ty = v => opts.logY ? Math.log10(v) : v;
  let x0 = Math.min(...pts.map(p => p[0])), x1 = Math.max(...pts.map(p => p[0]));
  let y0 = Math.min(...pts.map(p => ty(p[1]))), y1 = Math.max(...pts.map(p => ty(p[1])));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { const d = Math.abs(y0) * 0.05 || 1; y0 -= d; y1 += d; }
  const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => T + (1 - (ty(y) - y0) / (y1 - y0)) * (H - T - B);
  const yt = opts.logY
    ? niceTicks(Math.floor(y0), Math.ceil(y1), Math.min(6, Math.ceil(y1) - Math.floor(y0) || 1)).filter(t => Number.isInteger(t)).map(t => Math.pow(10, t))
    : niceTicks(y0, y1, 5);
  for (const t of yt) {
    const y = sy(t);
    if (y < T - 1 || y > H - B + 1) continue;
    root.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
    root.append(svg("text", { x: L - 6, y: y + 4, "text-anchor": "end" }, (opts.fmtY || fmtNumber)(t)));
  }
  for (const t of niceTicks(x0, x1, Math.max(3, Math.floor(W / 90)))) {
    if (t < x0 || t > x1 || (opts.intX && !Number.isInteger(t))) continue;
    root.append(svg("text", { x: sx(t), y: H - B + 15, "text-anchor": "middle" }, (opts.fmtX || fmtNumber)(t)));
  }
  root.append(svg("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  root.append(svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  root.append(svg("text", { x: (L + W - R) / 2, y: H - 3, "text-anchor": "middle" }, opts.xlabel));
  let lx = L + 8;
  for (const s of series) {
    const p = s.points.filter(q => isFinite(q[0]) && isFinite(q[1]) && (!opts.logY || q[1] > 0));
    if (!p.length) continue;
    root.append(svg("polyline", { points: p.map(q => `${sx(q[0])},${sy(q[1])}`).join(" "), fill: "none",
      stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash || "" }));
    for (const q of p) {
      const c = svg("circle", { cx: sx(q[0]), cy: sy(q[1]), r: 2.8, fill: s.color, class: "pt", "data-series": s.name });
      c.append(svg("title", {}, `${s.name}: ${(opts.fmtX || fmtNumber)(q[0])}, ${(opts.fmtY || fmtNumber)(q[1])}`));
      root.append(c);
    }
    if (series.length > 1) {
      root.append(svg("rect", { x: lx, y: 4, width: 10, height: 10, fill: s.color }));
      root.append(svg("text", { x: lx + 14, y: 13 }, s.name));
      lx += 24 + 6.5 * s.name.length;
    }
  }
  box.replaceChildren(root);
}

function renderCharts() {
  const rs = state.rounds, h = state.history;
  const loss = rs.filter(r => typeof r.eval_loss === "number");
  lineChart("chart-loss", [{ name: "eval loss", color: "#0969da", points: loss.map(r => [r.round, r.eval_loss]) }],
    { xlabel: "round", intX: true });
  const t0 = h && h.started > 0 ? h.started : NaN;
  let cum = 0;  // rounds without a time stamp: cumulative round durations
  const timed = rs.map(r => { cum += r.duration_s || 0; return [typeof r.time === "number" && isFinite(t0) ? r.time - t0 : cum, r]; });
  lineChart("chart-loss-time", [{ name: "eval loss", color: "#0969da",
    points: timed.filter(([, r]) => typeof r.eval_loss === "number").map(([t, r]) => [t, r.eval_loss]) }],
    { xlabel: "wall-clock since start", fmtX: fmtDuration });
  lineChart("chart-bytes", [
    { name: "up", color: "#1f883d", points: rs.map(r => [r.round, r.bytes_up]) },
    { name: "down", color: "#8250df", points: rs.map(r => [r.round, r.bytes_down]) },
    { name: "sync DP", color: "#cf222e", dash: "5 3", points: rs.map(r => [r.round, r.dp_bytes]) },
  ], { xlabel: "round", logY: true, intX: true, fmtY: fmtBytes });
  lineChart("chart-duration", [{ name: "duration", color: "#bf8700", points: rs.map(r => [r.round, r.duration_s]) }],
    { xlabel: "round", intX: true, fmtY: v => fmtNumber(v) + " s" });
}

// ---- policy and warnings

function renderPolicy() {
  const h = state.history, st = state.status;
  const policy = (h && h.policy) || (st && { inner_steps: st.inner_steps, min_sites: st.min_sites,
    upload_encoding: st.upload_encoding, download_encoding: st.download_encoding }) || {};
  document.querySelector("#policy tbody").replaceChildren(...Object.entries(policy).map(([k, v]) => {
    const tr = el("tr");
    tr.append(el("th", {}, k), el("td", { class: "mono" }, fmtValue(k, v)));
    return tr;
  }));
  const log = document.getElementById("policy-log");
  const changes = (h && h.policy_changes) || [];
  log.replaceChildren(...(changes.length ? changes.slice().reverse().map(c => {
    const what = Object.entries(c.changes || {}).map(([k, [a, b]]) => `${k} ${fmtValue(k, a)} → ${fmtValue(k, b)}`).join(", ");
    return el("li", {}, `${fmtTime(c.time)}  from round ${c.round}: ${what || "initial policy"}`);
  }) : [el("li", { class: "empty" }, "no change")]));
}

function renderWarnings() {
  const ws = (state.history && state.history.warnings) || [];
  const list = document.getElementById("warnings");
  list.replaceChildren(...(ws.length ? ws.slice().reverse().map(w =>
    el("li", { class: w.level }, `${fmtTime(w.time)} ${w.level} [${w.tag}] ${w.message}`))
    : [el("li", { class: "empty" }, "none")]));
}

// ---- polling

async function poll() {
  try {
    const [st, h] = await Promise.all([getJson("/v1/status"), getJson(`/v1/history?since_round=${state.lastRound}`)]);
    if (state.runId !== null && st.run_id !== state.runId) { state.rounds = []; state.lastRound = -1; }
    state.runId = st.run_id;
    for (const r of h.rounds) {
      while (state.rounds.length && state.rounds[state.rounds.length - 1].round >= r.round) state.rounds.pop();
      state.rounds.push(r);
    }
    if (state.rounds.length > 20000) state.rounds.splice(0, state.rounds.length - 20000);
    if (state.rounds.length) state.lastRound = state.rounds[state.rounds.length - 1].round;
    state.status = st;
    state.history = h;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    state.status = null;
    document.getElementById("updated").textContent = "coordinator unreachable: " + e.message;
  }
  renderRun();
  renderSites();
  renderCharts();
  renderPolicy();
  renderWarnings();
  setTimeout(poll, POLL_MS);
}

poll();

// Parley dashboard: fetches /api/dashboard and draws inline SVG charts. No library, no network
// beyond this server. Every mark carries data-* attributes (the headless-browser test reads them).
"use strict";

const NS = "http://www.w3.org/2000/svg";
const COLORS = { ok: "#2e9d5b", bad: "#d1495b", s1: "#3f7cac", s2: "#95b8d1", s3: "#e8a33d",
                 s4: "#9a6fb0", neg: "#d1495b", neu: "#b0b8c1", pos: "#2e9d5b", grid: "#e4e7eb" };

function el(tag, attrs = {}, children = []) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  for (const c of children) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return node;
}

function titled(node, text) { node.appendChild(el("title", {}, [text])); return node; }

function frame(w, h) { return el("svg", { viewBox: `0 0 ${w} ${h}`, role: "img" }); }

function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + " %"; }

function hhmm(iso) { return iso ? iso.slice(11, 16) : ""; }

// whole seconds rounded half up, as `parley kpi` shows them
function dur(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.floor((ms + 500) / 1000);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0");
  return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
}

function empty(host, text) {
  host.replaceChildren(Object.assign(document.createElement("div"), { className: "empty", textContent: text }));
}

function legend(host, items) {
  const div = document.createElement("div");
  div.className = "legend";
  for (const [label, color] of items) {
    const span = document.createElement("span");
    span.innerHTML = `<i style="background:${color}"></i>`;
    span.appendChild(document.createTextNode(label));
    div.appendChild(span);
  }
  host.appendChild(div);
}

// y axis with gridlines; returns the y scale
function yAxis(svg, m, w, h, max, fmt, ticks = 5) {
  const y = v => m.t + (h - m.t - m.b) * (1 - v / (max || 1));
  for (let i = 0; i <= ticks; i++) {
    const v = (max * i) / ticks;
    svg.appendChild(el("line", { x1: m.l, x2: w - m.r, y1: y(v), y2: y(v), stroke: COLORS.grid }));
    svg.appendChild(el("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, [fmt(v)]));
  }
  return y;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const k of [1, 2, 2.5, 5, 10]) if (k * p >= v) return k * p;
  return 10 * p;
}

// -- charts --------------------------------------------------------------------------------
function slChart(host, sl, target) {
  const pts = sl.points;
  host.replaceChildren();
  if (!pts.length) return empty(host, "no contacts in this period");
  const w = 1000, h = 260, m = { l: 44, r: 12, t: 12, b: 34 };
  const svg = frame(w, h);
  svg.dataset.chart = "sl";
  svg.dataset.source = sl.source;
  const y = yAxis(svg, m, w, h, 1, v => Math.round(v * 100) + "%");
  const step = (w - m.l - m.r) / pts.length, bw = Math.max(1, step * 0.72);
  const every = Math.ceil(pts.length / 14);
  pts.forEach((p, i) => {
    const x = m.l + i * step + (step - bw) / 2;
    const v = p.sl_300;
    if (v !== null && v !== undefined) {
      const met = v >= target;
      const hh = Math.max(2, y(0) - y(v));  // a 0 % interval still shows as a red stub
      svg.appendChild(titled(el("rect", {
        class: "bar", x, y: y(0) - hh, width: bw, height: hh, fill: met ? COLORS.ok : COLORS.bad,
        "data-interval": p.interval, "data-value": v.toFixed(4), "data-met": met ? "1" : "0",
      }), `${p.interval}  SL(300) ${pct(v)}  offered ${p.offered ?? "–"}`));
    }
    if (p.sl_20 !== null && p.sl_20 !== undefined) {
      svg.appendChild(titled(el("circle", {
        class: "point sl20", cx: x + bw / 2, cy: y(p.sl_20), r: 2.6, fill: COLORS.s4,
        "data-interval": p.interval, "data-value": p.sl_20.toFixed(4),
      }), `${p.interval}  SL(20) ${pct(p.sl_20)}`));
    }
    if (i % every === 0) svg.appendChild(el("text", { x: x + bw / 2, y: h - m.b + 16, "text-anchor": "middle" }, [hhmm(p.interval)]));
  });
  svg.appendChild(el("line", { class: "target", x1: m.l, x2: w - m.r, y1: y(target), y2: y(target),
    stroke: "#102a43", "stroke-width": 1.5, "stroke-dasharray": "6 4", "data-value": target }));
  svg.appendChild(el("text", { x: w - m.r - 4, y: y(target) - 5, "text-anchor": "end", style: "fill:#102a43" },
    [`target ${Math.round(target * 100)} %`]));
  host.appendChild(svg);
  legend(host, [["SL(300) met", COLORS.ok], ["SL(300) missed", COLORS.bad], ["SL(20)", COLORS.s4]]);
}

function frtChart(host, buckets) {
  host.replaceChildren();
  const total = buckets.reduce((a, b) => a + b.count, 0);
  if (!total) return empty(host, "no answered contacts in this period");
  const w = 520, h = 240, m = { l: 40, r: 8, t: 10, b: 40 };
  const svg = frame(w, h);
  svg.dataset.chart = "frt";
  const max = niceMax(Math.max(...buckets.map(b => b.count)));
  const y = yAxis(svg, m, w, h, max, v => String(Math.round(v)));
  const step = (w - m.l - m.r) / buckets.length, bw = step * 0.8;
  buckets.forEach((b, i) => {
    const x = m.l + i * step + (step - bw) / 2;
    const late = b.from_s >= 300;
    svg.appendChild(titled(el("rect", {
      class: "bar", x, y: y(b.count), width: bw, height: y(0) - y(b.count),
      fill: late ? COLORS.bad : COLORS.s1, "data-bucket": b.label, "data-from": b.from_s, "data-value": b.count,
    }), `${b.label}: ${b.count} contacts`));
    svg.appendChild(el("text", { x: x + bw / 2, y: h - m.b + 15, "text-anchor": "middle" }, [b.label]));
  });
  host.appendChild(svg);
}

const LEVELS = ["#e4e7eb", "#bcd4e6", "#7fb0d3", "#3f7cac", "#24527a", "#102a43"];
function levelColor(level) { return LEVELS[Math.min(Number(level), LEVELS.length - 1)]; }

function concChart(host, agents) {
  host.replaceChildren();
  agents = agents.filter(a => a.online_ms > 0);
  if (!agents.length) return empty(host, "no agent online in this period");
  const row = 26, w = 520, m = { l: 70, r: 118, t: 8, b: 24 }, h = m.t + m.b + row * agents.length;
  const svg = frame(w, h);
  svg.dataset.chart = "concurrency";
  const x = share => m.l + (w - m.l - m.r) * share;
  for (const s of [0, 0.25, 0.5, 0.75, 1]) {
    svg.appendChild(el("line", { x1: x(s), x2: x(s), y1: m.t, y2: h - m.b, stroke: COLORS.grid }));
    svg.appendChild(el("text", { x: x(s), y: h - m.b + 14, "text-anchor": "middle" }, [Math.round(s * 100) + "%"]));
  }
  const levels = new Set();
  agents.forEach((a, i) => {
    const yy = m.t + i * row + 4;
    svg.appendChild(el("text", { x: m.l - 6, y: yy + 13, "text-anchor": "end" }, [a.agent_id]));
    let acc = 0;
    for (const [level, ms] of Object.entries(a.time_at_level_ms)) {
      if (!ms) continue;
      levels.add(level);
      const share = ms / a.online_ms;
      svg.appendChild(titled(el("rect", {
        class: "level", x: x(acc), y: yy, width: Math.max(0, x(acc + share) - x(acc)), height: row - 8,
        fill: levelColor(level), "data-agent": a.agent_id, "data-level": level, "data-ms": ms,
      }), `${a.agent_id}: ${level} open conversation(s) for ${dur(ms)} (${pct(share)} of online time)`));
      acc += share;
    }
    const c = a.concurrency ?? 0;
    svg.appendChild(el("text", {
      class: "mean", x: x(1) + 6, y: yy + 13, "data-agent": a.agent_id, "data-value": String(c),
      "data-peak": a.peak_concurrency,
    }, [`mean ${c.toFixed(2)} · peak ${a.peak_concurrency}`]));
  });
  host.appendChild(svg);
  legend(host, [...levels].sort((p, q) => p - q).map(l => [`${l} open`, levelColor(l)]));
}

function waitChart(host, points) {
  host.replaceChildren();
  if (!points.length || !points.some(p => p.peak > 0)) return empty(host, "no contact waited in this period");
  const queues = [...new Set(points.flatMap(p => Object.keys(p.by_queue)))].sort();
  const colors = [COLORS.s1, COLORS.s3, COLORS.s4, COLORS.s2, COLORS.ok, COLORS.bad, "#6b7785"];
  const color = q => colors[queues.indexOf(q) % colors.length];
  const w = 1000, h = 240, m = { l: 44, r: 12, t: 12, b: 34 };
  const svg = frame(w, h);
  svg.dataset.chart = "waiting";
  const max = niceMax(Math.max(...points.map(p => p.peak)));
  const y = yAxis(svg, m, w, h, max, v => (Number.isInteger(v) ? String(v) : v.toFixed(1)));
  const step = (w - m.l - m.r) / points.length, bw = Math.max(1, step * 0.72);
  const every = Math.ceil(points.length / 14);
  points.forEach((p, i) => {
    const x = m.l + i * step + (step - bw) / 2;
    let base = 0;
    for (const q of queues) {
      const v = p.by_queue[q] || 0;
      if (v > 0) {
        svg.appendChild(titled(el("rect", {
          class: "bar", x, y: y(base + v), width: bw, height: y(base) - y(base + v), fill: color(q),
          "data-interval": p.interval, "data-queue": q, "data-value": String(v),
        }), `${p.interval} ${q}: ${v.toFixed(2)} waiting on average`));
      }
      base += v;
    }
    svg.appendChild(titled(el("circle", {
      class: "peak", cx: x + bw / 2, cy: y(p.peak), r: 2.6, fill: "#102a43",
      "data-interval": p.interval, "data-value": p.peak, "data-mean": String(p.mean),
    }), `${p.interval}: mean ${p.mean.toFixed(2)}, peak ${p.peak} waiting`));
    if (i % every === 0) svg.appendChild(el("text", { x: x + bw / 2, y: h - m.b + 16, "text-anchor": "middle" }, [hhmm(p.interval)]));
  });
  host.appendChild(svg);
  legend(host, [...queues.map(q => [q, color(q)]), ["peak", "#102a43"]]);
}

// -- tables ---------------------------------------------------------------------------------
function table(host, id, columns, rows, rowKey) {
  host.replaceChildren();
  if (!rows.length) return empty(host, "no rows for this filter");
  const t = document.createElement("table");
  t.className = "grid";
  t.id = id;
  const head = t.createTHead().insertRow();
  for (const [label] of columns) {
    const th = document.createElement("th");
    th.textContent = label;
    head.appendChild(th);
  }
  const body = t.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    tr.dataset.key = rowKey(r);
    if (r._total) tr.className = "total";
    for (const [, key, show, cls] of columns) {
      const td = tr.insertCell();
      td.dataset.col = key;
      const v = r[key];
      if (v !== null && v !== undefined && typeof v !== "object") td.dataset.value = String(v);
      const shown = show(v, r);
      if (shown instanceof Node) td.appendChild(shown); else td.textContent = shown;
      const c = cls ? cls(r) : "";
      if (c) td.className = c;
    }
  }
  host.appendChild(t);
}

function metCls(key) { return r => (r[key] === true ? "ok" : r[key] === false ? "bad" : ""); }

function channelTable(host, d) {
  const flat = (name, f) => ({
    channel: name, offered: f.offered, answered: f.answered, sl_300: f.sl_300.sl, sl_300_met: f.sl_300.met,
    sl_20: f.sl_20.sl, sl_20_met: f.sl_20.met, frt_p50_ms: f.frt_p50_ms, frt_p90_ms: f.frt_p90_ms,
    bot_containment: f.bot_containment, threads: f.threads,
  });
  const rows = Object.entries(d.channels).map(([k, f]) => flat(k, f));
  rows.push({ ...flat("overall", d.summary), _total: true });
  const id = v => (v === null || v === undefined ? "–" : String(v));
  table(host, "channels", [
    ["channel", "channel", id], ["offered", "offered", id], ["answered", "answered", id],
    ["SL(300)", "sl_300", pct, metCls("sl_300_met")], ["SL(20)", "sl_20", pct, metCls("sl_20_met")],
    ["FRT p50", "frt_p50_ms", dur], ["FRT p90", "frt_p90_ms", dur],
    ["threads", "threads", id], ["bot containment", "bot_containment", pct],
  ], rows, r => r.channel);
}

function levelsBar(levels, online) {
  const span = document.createElement("span");
  span.className = "levels";
  for (const [level, ms] of Object.entries(levels || {})) {
    if (!ms || !online) continue;
    const i = document.createElement("i");
    i.style.width = (100 * ms / online).toFixed(2) + "%";
    i.style.background = levelColor(level);
    i.title = `${level} open: ${dur(ms)}`;
    i.dataset.level = level;
    i.dataset.ms = ms;
    span.appendChild(i);
  }
  return span;
}

function agentTable(host, agents) {
  const id = v => (v === null || v === undefined ? "–" : String(v));
  table(host, "agents", [
    ["agent", "agent_id", id], ["online", "online_ms", dur], ["idle", "idle_ms", dur],
    ["occupancy", "occupancy", pct], ["mean conc.", "concurrency", v => (v === null || v === undefined ? "–" : v.toFixed(2))],
    ["peak", "peak_concurrency", id], ["time at 0, 1, 2…", "time_at_level_ms", (v, r) => levelsBar(v, r.online_ms)],
    ["answered", "answered", id], ["FRT p50", "frt_p50_ms", dur], ["FRT p90", "frt_p90_ms", dur],
  ], agents, r => r.agent_id);
}

function volChart(host, vols) {
  host.replaceChildren();
  if (!vols.length) return empty(host, "no traffic in this period");
  const series = [["offered", COLORS.s1], ["answered", COLORS.ok], ["messages_in", COLORS.s2], ["messages_out", COLORS.s3]];
  const w = 520, h = 240, m = { l: 44, r: 8, t: 10, b: 30 };
  const svg = frame(w, h);
  svg.dataset.chart = "volumes";
  const max = niceMax(Math.max(1, ...vols.flatMap(v => series.map(([k]) => v[k] || 0))));
  const y = yAxis(svg, m, w, h, max, v => String(Math.round(v)));
  const step = (w - m.l - m.r) / vols.length, bw = (step * 0.84) / series.length;
  vols.forEach((v, i) => {
    series.forEach(([k, color], j) => {
      const val = v[k] || 0, x = m.l + i * step + step * 0.08 + j * bw;
      svg.appendChild(titled(el("rect", {
        class: "bar", x, y: y(val), width: bw * 0.92, height: y(0) - y(val), fill: color,
        "data-channel": v.channel, "data-series": k, "data-value": val,
      }), `${v.channel} ${k.replace("_", " ")}: ${val}`));
    });
    svg.appendChild(el("text", { x: m.l + i * step + step / 2, y: h - m.b + 16, "text-anchor": "middle" }, [v.channel]));
  });
  host.appendChild(svg);
  legend(host, series.map(([k, c]) => [k.replace("_", " "), c]));
}

function sentChart(host, rows) {
  host.replaceChildren();
  if (!rows.length) return empty(host, "no enriched messages in this period");
  const w = 520, h = 240, m = { l: 40, r: 8, t: 10, b: 30 };
  const svg = frame(w, h);
  svg.dataset.chart = "sentiment";
  const max = niceMax(Math.max(...rows.map(r => r.total)));
  const y = yAxis(svg, m, w, h, max, v => String(Math.round(v)));
  const step = (w - m.l - m.r) / rows.length, bw = Math.max(1, step * 0.8);
  const every = Math.ceil(rows.length / 8);
  rows.forEach((r, i) => {
    const x = m.l + i * step + (step - bw) / 2;
    let base = 0;
    for (const [label, color] of [["negative", COLORS.neg], ["neutral", COLORS.neu], ["positive", COLORS.pos]]) {
      const n = r[label] || 0;
      if (n) {
        svg.appendChild(titled(el("rect", {
          class: "bar", x, y: y(base + n), width: bw, height: y(base) - y(base + n), fill: color,
          "data-interval": r.interval, "data-label": label, "data-value": n,
        }), `${r.interval} ${label}: ${n}`));
      }
      base += n;
    }
    if (i % every === 0) svg.appendChild(el("text", { x: x + bw / 2, y: h - m.b + 16, "text-anchor": "middle" }, [hhmm(r.interval)]));
  });
  host.appendChild(svg);
  legend(host, [["negative", COLORS.neg], ["neutral", COLORS.neu], ["positive", COLORS.pos]]);
}

function tiles(host, d) {
  const s = d.summary, t = d.team;
  const items = [
    ["SL(300) — target 90 %", pct(s.sl_300.sl), s.sl_300.met, "sl300", s.sl_300.sl],
    ["SL(20) — 80/20", pct(s.sl_20.sl), s.sl_20.met, "sl20", s.sl_20.sl],
    ["contacts offered", s.offered, null, "offered", s.offered],
    ["answered", s.answered, null, "answered", s.answered],
    ["FRT median", dur(s.frt_p50_ms), null, "frt50", s.frt_p50_ms],
    ["FRT p90", dur(s.frt_p90_ms), null, "frt90", s.frt_p90_ms],
    ["bot containment", pct(s.bot_containment), null, "containment", s.bot_containment],
    ["team concurrency", t.concurrency === null ? "–" : t.concurrency.toFixed(2), null, "concurrency", t.concurrency],
    ["occupancy", pct(t.occupancy), null, "occupancy", t.occupancy],
    ["idle time", dur(t.idle_ms), null, "idle", t.idle_ms],
    ["negative last message", pct(s.negative_share), null, "neg", s.negative_share],
  ];
  host.replaceChildren();
  for (const [k, v, met, id, raw] of items) {
    const div = document.createElement("div");
    div.className = "tile";
    div.dataset.tile = id;
    if (raw !== null && raw !== undefined) div.dataset.value = String(raw);
    if (met !== null && met !== undefined) div.dataset.met = met ? "1" : "0";
    div.innerHTML = `<div class="k"></div><div class="v ${met === true ? "ok" : met === false ? "bad" : ""}"></div>`;
    div.querySelector(".k").textContent = k;
    div.querySelector(".v").textContent = v + (met === true ? " ✓" : met === false ? " ✗" : "");
    host.appendChild(div);
  }
}

// -- filters and loading ----------------------------------------------------------------------
function toLocal(ms) { return ms ? new Date(ms).toISOString().slice(0, 16) : ""; }

function fillSelect(sel, values, current) {
  const keep = current || sel.value;
  sel.replaceChildren(new Option("all", ""));
  for (const v of values) sel.appendChild(new Option(v, v));
  sel.value = values.includes(keep) ? keep : "";
}

function params() {
  const q = new URLSearchParams(location.search), out = new URLSearchParams();
  for (const k of ["from", "to", "tenant", "channel", "queue", "agent"]) if (q.get(k)) out.set(k, q.get(k));
  return out;
}

async function load() {
  const q = params();
  document.body.dataset.ready = "0";
  try {
    const resp = await fetch("/api/dashboard?" + q.toString());
    if (!resp.ok) throw new Error(`HTTP ${resp.status}: ${await resp.text()}`);
    const d = await resp.json();
    render(d, q);
    document.body.dataset.ready = "1";
  } catch (e) {
    const box = document.getElementById("error");
    box.style.display = "block";
    box.textContent = "Could not load the dashboard data: " + e.message;
    document.body.dataset.ready = "error";
  }
}

function render(d, q) {
  document.getElementById("asof").textContent = d.as_of_utc ? `event time up to ${d.as_of_utc.replace("T", " ").replace("Z", " UTC")}` : "no KPI data yet";
  const f = document.getElementById("filters");
  f.from.value = q.get("from") ? toLocal(d.filter.start) : "";
  f.to.value = q.get("to") ? toLocal(d.filter.end) : "";
  fillSelect(f.tenant, d.choices.tenants, q.get("tenant"));
  fillSelect(f.channel, d.choices.channels, q.get("channel"));
  fillSelect(f.queue, d.choices.queues, q.get("queue"));
  fillSelect(f.agent, d.choices.agents, q.get("agent"));
  tiles(document.getElementById("tiles"), d);
  slChart(document.getElementById("chart-sl"), d.sl_by_interval, d.targets.sl_300);
  frtChart(document.getElementById("chart-frt"), d.frt_histogram);
  channelTable(document.getElementById("table-channels"), d);
  waitChart(document.getElementById("chart-waiting"), d.waiting_by_interval);
  concChart(document.getElementById("chart-conc"), d.agents);
  agentTable(document.getElementById("table-agents"), d.agents);
  volChart(document.getElementById("chart-vol"), d.volumes_by_channel);
  sentChart(document.getElementById("chart-sent"), d.sentiment_by_interval);
}

document.getElementById("filters").addEventListener("submit", ev => {
  ev.preventDefault();
  const f = ev.target, q = new URLSearchParams();
  for (const k of ["tenant", "channel", "queue", "agent"]) if (f[k].value) q.set(k, f[k].value);
  for (const k of ["from", "to"]) if (f[k].value) q.set(k, f[k].value);  // datetime-local, read as UTC
  history.replaceState(null, "", "?" + q.toString());
  load();
});

load();

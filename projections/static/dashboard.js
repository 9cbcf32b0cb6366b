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

function dur(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + String(Math.round(s % 60)).padStart(2, "0");
  return (s / 3600).toFixed(1) + " h";
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

function concChart(host, agents) {
  host.replaceChildren();
  if (!agents.length) return empty(host, "no agent intervals in this period");
  const row = 26, w = 520, m = { l: 90, r: 40, t: 8, b: 24 }, h = m.t + m.b + row * agents.length;
  const svg = frame(w, h);
  svg.dataset.chart = "concurrency";
  const max = niceMax(Math.max(...agents.map(a => Math.max(a.peak_concurrency || 0, a.concurrency || 0))));
  const x = v => m.l + (w - m.l - m.r) * (v / max);
  for (let i = 0; i <= max; i += Math.max(1, Math.round(max / 5))) {
    svg.appendChild(el("line", { x1: x(i), x2: x(i), y1: m.t, y2: h - m.b, stroke: COLORS.grid }));
    svg.appendChild(el("text", { x: x(i), y: h - m.b + 14, "text-anchor": "middle" }, [String(i)]));
  }
  agents.forEach((a, i) => {
    const yy = m.t + i * row + 4, c = a.concurrency || 0;
    svg.appendChild(el("text", { x: m.l - 6, y: yy + 13, "text-anchor": "end" }, [a.agent_id]));
    svg.appendChild(titled(el("rect", {
      class: "bar", x: m.l, y: yy, width: Math.max(0, x(c) - m.l), height: row - 8, fill: COLORS.s1,
      "data-agent": a.agent_id, "data-value": c.toFixed(3), "data-peak": a.peak_concurrency,
    }), `${a.agent_id}: mean ${c.toFixed(2)}, peak ${a.peak_concurrency}, online ${dur(a.online_ms)}, idle ${dur(a.idle_ms)}`));
    svg.appendChild(el("line", { class: "peak", x1: x(a.peak_concurrency), x2: x(a.peak_concurrency),
      y1: yy - 2, y2: yy + row - 6, stroke: COLORS.s3, "stroke-width": 3, "data-agent": a.agent_id }));
    svg.appendChild(el("text", { x: x(c) + 4, y: yy + 13 }, [c.toFixed(2)]));
  });
  host.appendChild(svg);
  legend(host, [["mean concurrency", COLORS.s1], ["peak", COLORS.s3]]);
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
  const s = d.summary, t = d.targets;
  const items = [
    ["SL(300) — target 90 %", pct(s.sl_300.sl), s.sl_300.met, "sl300"],
    ["SL(20) — 80/20", pct(s.sl_20.sl), s.sl_20.met, "sl20"],
    ["contacts offered", s.offered, null, "offered"],
    ["answered", s.answered, null, "answered"],
    ["FRT median", dur(s.frt_p50_ms), null, "frt50"],
    ["FRT p90", dur(s.frt_p90_ms), null, "frt90"],
    ["negative last message", pct(s.negative_share), null, "neg"],
  ];
  host.replaceChildren();
  for (const [k, v, met, id] of items) {
    const div = document.createElement("div");
    div.className = "tile";
    div.dataset.tile = id;
    div.innerHTML = `<div class="k"></div><div class="v ${met === true ? "ok" : met === false ? "bad" : ""}"></div>`;
    div.querySelector(".k").textContent = k;
    div.querySelector(".v").textContent = v + (met === true ? " ✓" : met === false ? " ✗" : "");
    host.appendChild(div);
  }
  void t;
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
  concChart(document.getElementById("chart-conc"), d.concurrency_by_agent);
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

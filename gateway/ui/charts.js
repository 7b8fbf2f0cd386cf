// Live charts of the fleet page: samples of /metrics and /v1/pools kept in the page (5 minutes),
// drawn on canvases. No library, no build step.
"use strict";

const KEEP_MS = 5 * 60 * 1000; // what the charts show
const WINDOW_MS = 10 * 1000; // rates and quantiles over the last 10 s of samples
const COLORS = ["#2f6fdf", "#d9480f", "#2b8a3e", "#862e9c"];

// Prometheus text format: the samples of the series we chart, with their labels.
function parseMetrics(text) {
  const calls = new Map(); // method -> calls counted (all codes)
  const errors = new Map(); // method -> calls that did not end "ok"
  const buckets = new Map(); // method -> Map(le -> cumulative count)
  for (const line of text.split("\n")) {
    const match = /^(rpcfleet_calls_total|rpcfleet_call_seconds_bucket)\{([^}]*)\} (\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, name, value] of match[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[name] = value;
    }
    const value = Number(match[3]);
    if (match[1] === "rpcfleet_calls_total") {
      calls.set(labels.method, (calls.get(labels.method) || 0) + value);
      if (labels.code !== "ok") errors.set(labels.method, (errors.get(labels.method) || 0) + value);
    } else {
      if (!buckets.has(labels.method)) buckets.set(labels.method, new Map());
      const le = labels.le === "+Inf" ? Infinity : Number(labels.le);
      buckets.get(labels.method).set(le, (buckets.get(labels.method).get(le) || 0) + value);
    }
  }
  return { calls, errors, buckets };
}

// The q-quantile of a cumulative histogram (Prometheus' histogram_quantile), in seconds.
function quantile(q, cumulative) {
  const bounds = [...cumulative.keys()].sort((a, b) => a - b);
  const total = cumulative.get(Infinity) || 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (const le of bounds) {
    const count = cumulative.get(le);
    if (count >= rank) {
      if (le === Infinity) return lower;
      return lower + (le - lower) * ((rank - below) / Math.max(count - below, 1e-9));
    }
    lower = le; below = count;
  }
  return lower;
}

class FleetCharts {
  constructor(container) {
    this.container = container;
    this.snapshots = []; // [{t, metrics}] over the window
    this.series = new Map(); // pool -> {calls, errors, p50, p99, depth, dead: [{t, v}]}
  }

  // One sample: the metrics text, the pools (with their methods and queue counts).
  add(t, metricsText, pools) {
    const metrics = parseMetrics(metricsText);
    this.snapshots.push({ t, metrics });
    while (this.snapshots.length > 2 && t - this.snapshots[1].t >= WINDOW_MS) {
      this.snapshots.shift();
    }
    const old = this.snapshots[0];
    const seconds = (t - old.t) / 1000;
    for (const pool of pools) {
      if (!this.series.has(pool.pool)) {
        this.series.set(pool.pool, { calls: [], errors: [], p50: [], p99: [], depth: [], dead: [] });
      }
      const s = this.series.get(pool.pool);
      let calls = 0, errors = 0;
      const merged = new Map();
      for (const method of pool.methods) {
        calls += (metrics.calls.get(method) || 0) - (old.metrics.calls.get(method) || 0);
        errors += (metrics.errors.get(method) || 0) - (old.metrics.errors.get(method) || 0);
        const now = metrics.buckets.get(method) || new Map();
        const then = old.metrics.buckets.get(method) || new Map();
        for (const [le, count] of now) {
          merged.set(le, (merged.get(le) || 0) + count - (then.get(le) || 0));
        }
      }
      if (seconds > 0) {
        s.calls.push({ t, v: Math.max(calls, 0) / seconds });
        s.errors.push({ t, v: Math.max(errors, 0) / seconds });
      }
      const p50 = quantile(0.5, merged), p99 = quantile(0.99, merged);
      if (p50 !== null) s.p50.push({ t, v: p50 * 1000 });
      if (p99 !== null) s.p99.push({ t, v: p99 * 1000 });
      if (pool.queue_depth !== null) s.depth.push({ t, v: pool.queue_depth });
      if (pool.dead_letters !== null) s.dead.push({ t, v: pool.dead_letters });
      for (const key of Object.keys(s)) {
        while (s[key].length && t - s[key][0].t > KEEP_MS) s[key].shift();
      }
    }
    this.draw(t);
  }

  draw(t) {
    for (const [pool, s] of this.series) {
      const card = this.card(pool);
      chart(card.querySelector("[data-chart=calls]"), t, "calls/s",
        [{ label: "calls/s", points: s.calls }, { label: "errors/s", points: s.errors }]);
      chart(card.querySelector("[data-chart=latency]"), t, "ms",
        [{ label: "p50", points: s.p50 }, { label: "p99", points: s.p99 }]);
      chart(card.querySelector("[data-chart=depth]"), t, "messages",
        [{ label: "queue depth", points: s.depth }]);
      chart(card.querySelector("[data-chart=dead]"), t, "messages",
        [{ label: "dead letters", points: s.dead }]);
    }
  }

  card(pool) {
    let card = this.container.querySelector(`[data-pool-charts="${CSS.escape(pool)}"]`);
    if (!card) {
      card = document.createElement("div");
      card.className = "pool-charts";
      card.dataset.poolCharts = pool;
      const title = document.createElement("h3");
      title.textContent = "pool " + pool;
      card.appendChild(title);
      for (const name of ["calls", "latency", "depth", "dead"]) {
        const canvas = document.createElement("canvas");
        canvas.width = 300; canvas.height = 130;
        canvas.dataset.chart = name;
        card.appendChild(canvas);
      }
      this.container.appendChild(card);
    }
    return card;
  }
}

// A line chart of `lines` over the last KEEP_MS before `t`; the latest values go in the legend
// and in data-latest (what the page's test reads).
function chart(canvas, t, unit, lines) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 34, bottom = 16, top = 18;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, h);
  const values = lines.flatMap((line) => line.points.map((p) => p.v));
  const max = Math.max(1e-9, ...values) * 1.15;
  ctx.strokeStyle = "#e3e6ea"; ctx.fillStyle = "#8a93a3"; ctx.font = "10px system-ui";
  for (const fraction of [0, 0.5, 1]) {
    const y = top + (h - top - bottom) * (1 - fraction);
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(format(max * fraction), 2, y + 3);
  }
  ctx.fillText("-5 min", left, h - 3); ctx.fillText("now", w - 22, h - 3);
  const latest = [];
  lines.forEach((line, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 1.5; ctx.beginPath();
    line.points.forEach((p, j) => {
      const x = left + (w - left) * (1 - (t - p.t) / KEEP_MS);
      const y = top + (h - top - bottom) * (1 - p.v / max);
      if (j === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const end = line.points[line.points.length - 1];
    if (end) { // the latest sample as a dot: visible even while it is the only one
      ctx.fillStyle = COLORS[i % COLORS.length];
      ctx.beginPath();
      ctx.arc(left + (w - left) * (1 - (t - end.t) / KEEP_MS),
        top + (h - top - bottom) * (1 - end.v / max), 2.5, 0, 2 * Math.PI);
      ctx.fill();
    }
    const last = end ? end.v : null;
    latest.push(last);
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillText(`${line.label} ${last === null ? "–" : format(last)}`, left + 4 + i * 110, 11);
  });
  ctx.fillStyle = "#8a93a3"; ctx.fillText(unit, w - 50, 11);
  canvas.dataset.latest = JSON.stringify(latest);
}

function format(value) {
  if (value >= 100) return value.toFixed(0);
  if (value >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

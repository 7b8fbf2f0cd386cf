// The fleet page: polls the gateway's admin API and sets prefetch and process ranges live.
// No build step.
"use strict";

const REFRESH_MS = 2000; // the fleet changes within 2 s of a prefetch command: show it as fast
const key = sessionStorage.getItem("rpcfleet-key") || cookie("rpcfleet_key");
const charts = new FleetCharts(document.getElementById("charts"));
const processedBefore = new Map(); // worker id and pid -> {t, processed}: its answer rate

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.split("=")[1]) : null;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (key) headers["Authorization"] = "Bearer " + key;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || { code: response.status, message: response.statusText };
    throw new Error(error.code + ": " + error.message);
  }
  return data;
}

function mib(bytes) {
  return typeof bytes === "number" ? (bytes / 1048576).toFixed(0) + " MiB" : "–";
}

function cell(row, text, numeric) {
  const td = row.insertCell();
  td.textContent = text;
  if (numeric) td.className = "num";
  return td;
}

// A form that PUTs what is typed in it to `path`: `bodyOf` turns the text into the body.
function control(row, template, what, path, label, bodyOf) {
  const form = document.getElementById(template).content.firstElementChild.cloneNode(true);
  form.dataset.target = label;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const raw = form.elements.value.value.trim();
    try {
      await api("PUT", path, bodyOf(raw));
      setStatus(what + " " + raw + " sent to " + label);
      form.reset();
      refresh();
    } catch (error) {
      setStatus(error.message, true);
    }
  });
  row.insertCell().appendChild(form);
}

function prefetchControl(row, path, label) {
  control(row, "prefetch-control", "prefetch", path, label,
    (raw) => ({ prefetch: raw === "auto" ? "auto" : Number(raw) }));
}

// "1..8" or "4": each host's consumers for the pool (the gateway explains a bad range).
function processesControl(row, pool) {
  control(row, "processes-control", "processes",
    "/v1/pools/" + encodeURIComponent(pool) + "/processes", "pool " + pool, (raw) => {
      const [low, high] = raw.includes("..") ? raw.split("..") : [raw, raw];
      return { min: Number(low), max: Number(high) };
    });
}

// Per host: its consumers now, its range, whether it holds one back, and its last decision.
function processesCell(row, hosts) {
  const td = cell(row, "");
  td.className = "processes";
  for (const [host, p] of hosts) {
    const line = document.createElement("div");
    line.dataset.host = host;
    line.textContent = host + ": " + p.now + " (" + (p.min === p.max ? p.min : p.min + ".." + p.max)
      + ")" + (p.held_back ? " · held back" : "");
    if (p.held_back) line.classList.add("held-back");
    const when = p.last ? new Date(p.last.at).toLocaleTimeString() + " " +
      (p.last.change > 0 ? "+" : "") + p.last.change : null;
    line.title = (p.held_back ? p.held_back + "\n" : "") + "+" + p.added + " / -" + p.retired +
      " since start; last: " + (when ? when + ": " + p.last.why : "no decision yet");
    if (when) {
      const decision = document.createElement("span");
      decision.className = "muted decision";
      decision.textContent = " · " + when;
      line.appendChild(decision);
    }
    td.appendChild(line);
  }
}

function setStatus(text, isError) {
  const status = document.getElementById("status");
  status.textContent = text;
  status.className = isError ? "error" : "muted";
}

function render(workers, pools) {
  const poolBody = document.querySelector("#pools tbody");
  poolBody.replaceChildren();
  for (const pool of pools) {
    const row = poolBody.insertRow();
    row.dataset.pool = pool.pool;
    cell(row, pool.pool);
    const methods = cell(row, pool.methods.join(", "));
    const clashes = Object.entries(pool.clashes || {});
    if (clashes.length) {
      // SPEC 1.2: another live pool announces some of these methods; the gateway routes them
      // to the first pool only.
      const flag = document.createElement("div");
      flag.className = "clash";
      flag.textContent = "⚠ " + clashes.map(([m, pools]) => m + ": " + pools.join(", ")).join("; ");
      flag.title = "announced by more than one pool: calls go to the first pool listed only. " +
        "Retire or rename the other (docs/workers.md, One pool per method).";
      methods.appendChild(flag);
    }
    if (pool.retired) row.classList.add("retired");
    cell(row, pool.queue_depth ?? "–", true);
    cell(row, pool.consumers ?? "–", true);
    const dead = cell(row, pool.dead_letters ?? "–", true);
    if (pool.dead_letters) {
      const show = document.createElement("button");
      show.textContent = "show";
      show.className = "show-dead";
      show.addEventListener("click", () => showDead(pool.pool));
      dead.append(" ", show);
    }
    cell(row, pool.workers, true);
    processesCell(row, pool.hosts);
    processesControl(row, pool.pool);
    cell(row, pool.prefetch.join(", "));
    prefetchControl(row, "/v1/pools/" + encodeURIComponent(pool.pool) + "/prefetch",
      "pool " + pool.pool);
  }
  const workerBody = document.querySelector("#workers tbody");
  workerBody.replaceChildren();
  for (const w of workers) {
    const row = workerBody.insertRow();
    row.dataset.worker = w.id;
    cell(row, w.leaving ? w.id + " · leaving" : w.id).title = w.leaving ?
      "finishing what it holds, then exiting: it takes nothing new" : "";
    if (w.leaving) row.classList.add("leaving");
    cell(row, w.pid, true);
    cell(row, w.prefetch + (w.prefetch_mode === "auto" ? " (auto)" : ""), true)
      .className = "num prefetch-value";
    cell(row, w.in_flight, true);
    cell(row, w.processed, true);
    cell(row, rate(w), true).classList.add("rate");
    cell(row, w.failed, true);
    cell(row, mib(w.pss_bytes), true);
    const cache = cell(row, mib(w.cache_bytes) + (w.cache_shape ? " · " + w.cache_shape : "") +
      (w.cache_copied_bytes ? " · copied " + mib(w.cache_copied_bytes) : ""));
    if (w.cache_copied_bytes) {
      cache.classList.add("copied");
      cache.title = "this consumer's private memory grew by " + mib(w.cache_copied_bytes) +
        ": the cache is being copied into it (many small Python objects). Build it as a " +
        "workers.SharedMapping, or of buffers (docs/workers.md).";
    }
    cell(row, w.last_seen);
    if (w.leaving) cell(row, "");
    else prefetchControl(row, "/v1/workers/" + encodeURIComponent(w.id) + "/prefetch", w.id);
  }
}

function rate(worker) {
  const key = worker.id + "/" + worker.pid;  // a slot's new process is another counter
  const now = Date.now(), before = processedBefore.get(key);
  if (!before || now - before.t > 30000) {
    processedBefore.set(key, { t: now, processed: worker.processed, rate: null });
    return "–";
  }
  if (now - before.t >= 1500) {
    before.rate = (worker.processed - before.processed) / ((now - before.t) / 1000);
    before.t = now; before.processed = worker.processed;
  }
  return before.rate === null ? "–" : before.rate.toFixed(1);
}

function summarise(workers, stats) {
  const pools = new Map();
  for (const entry of stats) {
    pools.set(entry.pool, { ...entry, workers: 0, prefetch: [], hosts: new Map() });
  }
  for (const w of workers) {
    if (w.leaving) continue;  // draining to exit: counted nowhere
    if (!pools.has(w.pool)) {
      pools.set(w.pool, { pool: w.pool, methods: w.methods, queue_depth: null,
        consumers: null, dead_letters: null, workers: 0, prefetch: [], hosts: new Map() });
    }
    const pool = pools.get(w.pool);
    pool.workers += 1;
    const shown = w.prefetch_mode === "auto" ? "auto" : String(w.prefetch);
    if (!pool.prefetch.includes(shown)) pool.prefetch.push(shown);
    if (w.processes && !pool.hosts.has(w.host)) pool.hosts.set(w.host, w.processes);
  }
  return [...pools.values()].sort((a, b) => a.pool.localeCompare(b.pool));
}

async function showDead(pool) {
  let letters;
  try {
    letters = await api("GET", "/v1/pools/" + encodeURIComponent(pool) + "/dead");
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  document.getElementById("dead-section").hidden = false;
  document.getElementById("dead-pool").textContent = pool;
  const body = document.querySelector("#dead tbody");
  body.replaceChildren();
  for (const letter of letters) {
    const row = body.insertRow();
    row.dataset.dead = letter.id || "";
    cell(row, letter.id ? letter.id.slice(0, 12) + "…" : "(no id)").title = letter.id || "";
    cell(row, letter.method || "–");
    cell(row, letter.reason);
    cell(row, letter.attempt, true);
    cell(row, letter.waiter);
    cell(row, letter.detail);
    const actions = row.insertCell();
    if (!letter.id) continue;
    if (letter.replay_refusal === null) {
      actions.appendChild(deadButton(pool, letter.id, "replay"));
    } else {
      actions.title = letter.replay_refusal;
    }
    actions.appendChild(deadButton(pool, letter.id, "purge"));
  }
  if (!letters.length) body.insertRow().insertCell().textContent = "none";
}

function deadButton(pool, id, action) {
  const button = document.createElement("button");
  button.textContent = action;
  button.className = action;
  button.addEventListener("click", async () => {
    try {
      const done = await api("POST", "/v1/pools/" + encodeURIComponent(pool) + "/dead/" + action,
        { ids: [id] });
      setStatus(done.kept.length ? "kept " + id + ": " + done.kept[0].reason
        : (action === "replay" ? "replayed " : "purged ") + id, done.kept.length > 0);
      showDead(pool);
      refresh();
    } catch (error) {
      setStatus(error.message, true);
    }
  });
  return button;
}

let shownJob = null; // the job whose detail is open

function renderJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const row = body.insertRow();
    row.dataset.job = job.id;
    row.className = "job " + job.status;
    cell(row, job.id.slice(0, 12) + "…").title = job.id;
    cell(row, job.method);
    cell(row, job.status);
    cell(row, job.progress ? Math.round(job.progress.fraction * 100) + "%" : "–", true);
    cell(row, job.attempts, true);
    cell(row, job.worker || "–");
    cell(row, job.created_at.replace("T", " ").slice(0, 19));
    cell(row, job.finished_at ? job.finished_at.replace("T", " ").slice(0, 19) : "–");
    cell(row, job.error ? job.error.code : "");
    row.addEventListener("click", () => { shownJob = job.id; showJob(jobs); });
  }
  showJob(jobs);
}

function showJob(jobs) {
  const detail = document.getElementById("job-detail");
  const job = jobs.find((j) => j.id === shownJob);
  detail.hidden = !job;
  if (job) detail.textContent = JSON.stringify(job, null, 2);
}

function typing() {
  return Boolean(document.activeElement && document.activeElement.tagName === "INPUT");
}

async function text(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(path + ": " + response.status + " " + response.statusText);
  return response.text();
}

// One refresh at a time (an older answer never paints over a newer one); one asked for while
// another runs follows it. Each part shows what it got: a job store that is down costs the
// jobs table, not the workers and pools, which come from the beats.
let refreshing = null;
let refreshAgain = false;

function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = poll().finally(() => {
    refreshing = null;
    if (refreshAgain) {
      refreshAgain = false;
      refresh();
    }
  });
  return refreshing;
}

async function poll() {
  const status = document.getElementById("job-status").value;
  const [workers, stats, metrics, jobs] = await Promise.allSettled([api("GET", "/v1/workers"),
    api("GET", "/v1/pools"), text("/metrics"),
    api("GET", "/v1/jobs?limit=20" + (status ? "&status=" + status : ""))]);
  const failed = [workers, stats, metrics, jobs].filter((part) => part.status === "rejected")
    .map((part) => part.reason.message);
  // Do not rebuild the tables under someone typing a prefetch value or a range.
  if (typing()) return;
  if (workers.status === "fulfilled" && stats.status === "fulfilled") {
    const listed = new Set(workers.value.map((w) => w.id + "/" + w.pid));
    for (const known of processedBefore.keys()) {
      if (!listed.has(known)) processedBefore.delete(known); // a process gone for good
    }
    const pools = summarise(workers.value, stats.value);
    render(workers.value, pools);
    if (metrics.status === "fulfilled") charts.add(Date.now(), metrics.value, pools);
  }
  if (jobs.status === "fulfilled") renderJobs(jobs.value);
  if (failed.length) setStatus(failed.join(" · "), true);
  else setStatus(workers.value.length + " workers · updated " + new Date().toLocaleTimeString());
}

document.getElementById("job-status").addEventListener("change", () => refresh());
refresh();
setInterval(() => {
  if (!typing()) refresh();
}, REFRESH_MS);

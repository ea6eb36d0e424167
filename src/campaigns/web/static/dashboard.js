// campaigns dashboard: fills the pages from the JSON API and polls it (no reloads).
// Every text from the API goes into the page as text (textContent), never as HTML.
"use strict";

const POLL_MS = Number(document.body.dataset.poll) || 5000;
const STATES = ["pending", "queued", "running", "completed", "failed", "cancelled"];
const PAGE_SIZE = 50;

function $(selector) { return document.querySelector(selector); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child ?? "")));
  }
  return node;
}

function setText(selector, text) {
  const node = $(selector);
  if (node) node.textContent = text === null || text === undefined ? "–" : String(text);
}

// Redraw a part only when its data changed, so links stay put (and clickable) between polls.
const drawn = new Map();
function changed(part, data) {
  const signature = JSON.stringify(data);
  if (drawn.get(part) === signature) return false;
  drawn.set(part, signature);
  return true;
}

function fmt(n) {
  const value = Number(n);
  const digits = Number.isInteger(value) || Math.abs(value) >= 100 ? 0 : 1;
  return value.toLocaleString("en-US", { maximumFractionDigits: digits });
}

function when(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function duration(hours) {
  if (hours * 3600 < 90) return `${Math.round(hours * 3600)} s`;
  const minutes = Math.round(hours * 60);
  if (minutes < 60) return `${minutes} min`;
  if (minutes < 48 * 60) return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
  return `${(minutes / 1440).toFixed(1)} days`;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function showError(message) {
  const node = $("#error");
  if (!node) return;
  node.hidden = !message;
  node.textContent = message || "";
}

// Run `refresh` now and every POLL_MS; the page keeps showing the last good data on errors.
function poll(refresh) {
  let serial = 0;
  const run = async () => {
    serial += 1;
    try {
      await refresh();
      showError(null);
      setText("#updated", `live · updated ${new Date().toLocaleTimeString()}`);
      document.body.dataset.refreshes = String(serial);
    } catch (error) {
      showError(error.message);
      setText("#updated", "not updated: see the message below");
    }
    setTimeout(run, POLL_MS);
  };
  run();
}

// A stacked bar, one segment per state, in proportion to its count.
function fillBar(bar, counts, total) {
  bar.replaceChildren();
  // Finished work fills from the left, work still to do stays on the right.
  for (const state of ["completed", "failed", "cancelled", "running", "queued", "pending"]) {
    const n = counts[state] || 0;
    if (!n || !total) continue;
    const segment = el("span", { class: `seg ${state}`, title: `${state}: ${fmt(n)}` });
    segment.style.width = `${(100 * n) / total}%`;
    bar.append(segment);
  }
  const done = total ? Math.floor((100 * (counts.completed || 0)) / total) : 0;
  bar.setAttribute("aria-valuenow", String(done));
  return done;
}

// ---- index: every campaign -------------------------------------------------------------

async function refreshIndex() {
  const data = await getJSON("/api/campaigns");
  if (!changed("index", data)) return;
  const body = $("#campaigns tbody");
  body.replaceChildren();
  for (const c of data.campaigns) {
    const row = el("tr", { "data-campaign": c.id });
    const link = el("a", { href: `/campaigns/${encodeURIComponent(c.id)}` }, c.name);
    row.append(el("td", {}, link, el("div", { class: "muted small" }, `${c.version} · ${c.id}`)));
    if (!c.status) {
      row.append(el("td", { colspan: "8", class: "muted" }, "not initialised yet (run `run-campaign init`)"));
      body.append(row);
      continue;
    }
    const s = c.status;
    const bar = el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" });
    const done = fillBar(bar, s.counts, s.total);
    row.append(el("td", {}, bar, el("div", { class: "small muted", "data-percent": "" }, `${done}% completed`)));
    row.append(el("td", { class: "num", "data-count": "total" }, fmt(s.total)));
    for (const state of STATES) {
      row.append(el("td", { class: `num ${state}`, "data-count": state }, fmt(s.counts[state])));
    }
    body.append(row);
  }
}

// ---- one campaign ----------------------------------------------------------------------

const campaignId = () => decodeURIComponent(location.pathname.split("/")[2] || "");
const api = (path) => `/api/campaigns/${encodeURIComponent(campaignId())}${path}`;
let offset = 0;
let qaStamp = null;

function drawChart(progress) {
  const svg = $("#chart");
  const ns = "http://www.w3.org/2000/svg";
  const W = 720, H = 260, L = 52, R = 12, T = 12, B = 34;
  const shape = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  svg.replaceChildren();
  const times = progress.series.time.map((t) => new Date(t).getTime());
  if (!progress.start || times.length === 0) {
    shape("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "nothing submitted yet");
    return;
  }
  const t0 = new Date(progress.start).getTime();
  const t1 = Math.max(times[times.length - 1], t0 + 1);
  const top = Math.max(progress.total, 1);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (n) => H - B - (n / top) * (H - T - B);
  const rough = top / 4;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = Math.max(1, [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough));
  for (let n = 0; n <= top; n += step) {
    shape("line", { x1: L, x2: W - R, y1: y(n), y2: y(n), class: "gridline" });
    shape("text", { x: L - 6, y: y(n) + 4, "text-anchor": "end", class: "axis" }, fmt(n));
  }
  const label = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  shape("text", { x: L, y: H - 10, class: "axis" }, label(t0));
  shape("text", { x: W - R, y: H - 10, "text-anchor": "end", class: "axis" }, label(t1));
  const line = (values, cls) => {
    const points = [`${x(t0)},${y(0)}`].concat(values.map((v, i) => `${x(times[i])},${y(v)}`));
    shape("polyline", { points: points.join(" "), class: `series ${cls}` });
  };
  line(progress.series.failed_attempts, "failed");
  line(progress.series.completed, "completed");
}

function fillStatus(s) {
  document.title = `${s.campaign.name} · campaigns dashboard`;
  setText("#name", s.campaign.name);
  setText("#version", s.campaign.version);
  setText("#path", s.campaign.path);
  setText("#backend", s.backend || "none yet");
  setText("#open-arrays", s.open_arrays);
  setText("#finished", s.finished ? "finished" : "in progress");
  const done = fillBar($("#bar"), s.counts, s.total);
  setText("#bar-label", `${fmt(s.counts.completed)} of ${fmt(s.total)} jobs completed (${done}%)`);
  const tiles = $("#tiles");
  tiles.replaceChildren();
  for (const state of STATES) {
    tiles.append(el("div", { class: `tile ${state}` },
      el("span", { class: "n", "data-count": state }, fmt(s.counts[state])),
      el("span", { class: "label" }, state)));
  }
  const f = s.failures;
  const body = $("#by-class tbody");
  body.replaceChildren();
  const classes = Object.entries(f.by_class).sort((a, b) => b[1] - a[1]);
  if (!classes.length) body.append(el("tr", {}, el("td", { colspan: "2", class: "muted" }, "no failed jobs")));
  for (const [name, n] of classes) {
    body.append(el("tr", { "data-failure-class": name }, el("td", {}, name), el("td", { class: "num" }, fmt(n))));
  }
  setText("#retry-due", fmt(f.retry_due));
  setText("#retry-waiting", fmt(f.retry_waiting));
  setText("#exhausted", fmt(f.exhausted));
  const select = $("#filters select[name=failure_class]");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, "any"));
  for (const [name] of classes) select.append(el("option", { value: name }, name));
  if (chosen && !f.by_class[chosen]) select.append(el("option", { value: chosen }, chosen));
  select.value = chosen;
}

function fillProgress(p) {
  drawChart(p);
  setText("#throughput", p.throughput_per_hour === null ? "–" :
    `${fmt(p.throughput_per_hour)} jobs/hour (last ${duration(p.window_seconds / 3600)})`);
  setText("#remaining", `${fmt(p.remaining)} job${p.remaining === 1 ? "" : "s"}`);
  let eta = "–";
  if (p.remaining === 0) eta = "nothing left to run";
  else if (p.eta) eta = `${when(p.eta)} (in ${duration((new Date(p.eta) - new Date(p.now)) / 3.6e6)})`;
  else eta = "unknown until jobs complete";
  setText("#eta", eta);
}

function jobsQuery() {
  const form = new FormData($("#filters"));
  const params = new URLSearchParams();
  for (const [name, value] of form.entries()) if (value) params.append(name, value);
  params.set("offset", String(offset));
  params.set("limit", String(PAGE_SIZE));
  return params.toString();
}

async function refreshJobs() {
  const page = await getJSON(api(`/jobs?${jobsQuery()}`));
  if (!changed("jobs", page)) return;
  const body = $("#jobs tbody");
  body.replaceChildren();
  if (!page.jobs.length) body.append(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "no jobs match")));
  for (const j of page.jobs) {
    const href = `/campaigns/${encodeURIComponent(campaignId())}/jobs/${encodeURIComponent(j.uid)}`;
    body.append(el("tr", { "data-job": j.key },
      el("td", { class: "mono" }, el("a", { href }, j.key)),
      el("td", {}, el("span", { class: `state ${j.state}` }, j.state)),
      el("td", {}, j.failure_class || ""),
      el("td", { class: "num" }, `${j.attempts_used}/${j.max_attempts}`),
      el("td", {}, j.standing || ""),
      el("td", {}, j.next_retry_at ? when(j.next_retry_at) : ""),
      el("td", { class: "error-text", title: j.error || "" }, j.error || "")));
  }
  const last = Math.min(page.offset + page.jobs.length, page.total);
  setText("#range", page.total ? `${fmt(page.offset + 1)}–${fmt(last)} of ${fmt(page.total)}` : "0 of 0");
  $("#range").dataset.total = String(page.total);
  $("#prev").disabled = page.offset === 0;
  $("#next").disabled = last >= page.total;
}

async function refreshQA() {
  const qa = await getJSON(api("/qa"));
  const r = qa.report;
  if (!r) {
    setText("#qa-summary", "No QA report yet: run `run-campaign qa` on the campaign file.");
  } else {
    const s = r.summary;
    setText("#qa-summary", `checked ${when(r.checked_at)}: ${fmt(s.checked)} outputs, ` +
      `${fmt(s.passed)} valid, ${fmt(s.invalid)} invalid`);
    const list = $("#qa-invalid");
    list.replaceChildren();
    for (const bad of r.invalid) list.append(el("li", {}, `${bad.key}: ${(bad.problems || []).join("; ")}`));
  }
  const stamp = `${r ? r.checked_at : ""}|${qa.plots.join(",")}`;
  if (stamp === qaStamp) return;
  qaStamp = stamp;
  const plots = $("#qa-plots");
  plots.replaceChildren();
  for (const name of qa.plots) {
    const src = api(`/qa/plots/${encodeURIComponent(name)}`) + `?v=${encodeURIComponent(stamp)}`;
    plots.append(el("figure", {}, el("img", { src, alt: name, loading: "lazy" }), el("figcaption", {}, name)));
  }
}

async function refreshCampaign() {
  const [status, progress] = await Promise.all([getJSON(api("/status")), getJSON(api("/progress"))]);
  fillStatus(status);
  fillProgress(progress);
  await Promise.all([refreshJobs(), refreshQA()]);
}

function startCampaign() {
  const refilter = () => { offset = 0; refreshJobs().catch((e) => showError(e.message)); };
  $("#filters").addEventListener("change", refilter);
  $("#filters").addEventListener("submit", (event) => { event.preventDefault(); refilter(); });
  let typing;
  $("#filters input[name=q]").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 300); });
  const turn = (step) => {
    offset = Math.max(0, offset + step);
    refreshJobs().catch((e) => showError(e.message));
  };
  $("#prev").addEventListener("click", () => turn(-PAGE_SIZE));
  $("#next").addEventListener("click", () => turn(PAGE_SIZE));
  poll(refreshCampaign);
}

// ---- one job ---------------------------------------------------------------------------

let chosenAttempt = null;

async function refreshJob() {
  const parts = location.pathname.split("/");
  const cid = decodeURIComponent(parts[2]);
  const ref = decodeURIComponent(parts.slice(4).join("/"));
  const base = `/api/campaigns/${encodeURIComponent(cid)}/jobs/${encodeURIComponent(ref)}`;
  $("#campaign-link").href = `/campaigns/${encodeURIComponent(cid)}`;
  setText("#campaign-link", cid);
  const detail = await getJSON(base);
  const { job, attempts } = detail;
  const fresh = changed("job", [detail, chosenAttempt]);
  document.title = `${job.key} · campaigns dashboard`;
  setText("#job-key", job.key);
  const state = $("#job-state");
  state.textContent = job.state;
  state.className = `state ${job.state}`;
  setText("#job-attempts", `${job.attempts_used} of ${job.max_attempts} used` +
    (job.attempts !== job.attempts_used ? ` (${job.attempts} in all)` : ""));
  setText("#job-class", job.failure_class || "–");
  setText("#job-next", job.next_retry_at ? `${when(job.next_retry_at)} (${job.standing})` : (job.standing || "–"));
  setText("#job-output", job.output);
  setText("#job-error", job.error || "–");
  const params = $("#params tbody");
  params.replaceChildren();
  // The key spells values as the campaign file does (1.0 stays 1.0, where JSON says 1).
  const names = Object.keys(job.params);
  const pieces = job.key.split(",").map((piece) => piece.split("="));
  const spelled = pieces.length === names.length ? Object.fromEntries(pieces) : {};
  for (const name of names) {
    const text = spelled[name] ?? JSON.stringify(job.params[name]);
    params.append(el("tr", {}, el("th", {}, name), el("td", { class: "mono" }, text)));
  }
  const body = $("#attempts tbody");
  if (fresh) body.replaceChildren();
  if (fresh && !attempts.length) {
    body.append(el("tr", {}, el("td", { colspan: "9", class: "muted" }, "not submitted yet")));
  }
  const shown = chosenAttempt ?? (attempts.length ? attempts[attempts.length - 1].number : null);
  for (const a of fresh ? attempts : []) {
    const row = el("tr", { "data-attempt": a.number, class: a.number === shown ? "chosen" : "" },
      el("td", { class: "num" }, a.number),
      el("td", {}, el("span", { class: `state ${a.state}` }, a.state)),
      el("td", { class: "mono" }, a.scheduler_id || ""), el("td", {}, a.node || ""),
      el("td", { class: "num" }, a.exit_code ?? ""), el("td", {}, a.failure_class || ""),
      el("td", {}, when(a.started_at)), el("td", {}, when(a.ended_at)),
      el("td", { class: "mono small" }, a.log || ""));
    row.addEventListener("click", () => { chosenAttempt = a.number; refreshJob().catch((e) => showError(e.message)); });
    body.append(row);
  }
  if (shown === null) { setText("#log", "no attempt yet"); setText("#log-meta", ""); return; }
  try {
    const tail = await getJSON(`${base}/log?attempt=${shown}&lines=200`);
    setText("#log-meta", `attempt ${tail.attempt} · ${tail.path}` +
      (tail.section ? " · this job's section" : "") + (tail.truncated ? " · last 200 lines" : ""));
    $("#log").textContent = tail.lines.join("\n") || "(empty)";
  } catch (error) {
    if (error.status !== 404) throw error;
    setText("#log-meta", `attempt ${shown}`);
    setText("#log", "no log yet");
  }
}

const page = document.body.dataset.page;
if (page === "index") poll(refreshIndex);
else if (page === "campaign") startCampaign();
else if (page === "job") poll(refreshJob);

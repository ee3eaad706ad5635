// Arbor dashboard: polls /api/cluster about every second and renders each
// system table into its panel, and /api/timeseries for the throughput and
// latency chart (plain SVG). All text goes in through textContent, never
// as HTML. Stop/start buttons exist only when the API says dev_control.
"use strict";

const POLL_MS = 1000;
// Root events listed on the page (the API returns more).
const EVENTS_SHOWN_MAX = 15;
let devControl = false;
let busy = false;
// The processes table is rebuilt only when it changes, so a button is not
// replaced under the pointer between two polls.
let shownProcesses = "";

function $(id) { return document.getElementById(id); }

// "2024-05-01 12:34:56.789+00" (how the system tables print times) -> ms.
function parseTime(text) {
  if (typeof text !== "string") return null;
  const ms = Date.parse(text.replace(" ", "T").replace(/\+00$/, "Z"));
  return Number.isNaN(ms) ? null : ms;
}

function show(value) { return value === null || value === undefined ? "—" : String(value); }

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = show(value);
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function fillRows(tableId, rows, render) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    render(tr, row);
    return tr;
  }));
}

function age(ms, now) {
  if (ms === null) return "never";
  const seconds = Math.max(0, (now - ms) / 1000);
  return seconds < 1 ? "just now" : seconds.toFixed(1) + " s ago";
}

function renderRoot(doc) {
  const peers = doc.tables.root_peers.rows;
  const leader = peers.find((p) => p.role === "leader");
  $("root-leader").textContent = leader ? "peer " + leader.peer_id + " (" + leader.address + ")" : "none";
  const applied = peers.reduce((max, p) => Math.max(max, p.applied_cursor || 0), 0);
  $("root-freshness").textContent = "status of each peer; highest applied cursor " + applied + ", observed " + doc.observed_at;
  fillRows("root-peers", peers, (tr, p) => {
    if (p.role === "leader") tr.className = "leader";
    cell(tr, p.peer_id); cell(tr, p.address); cell(tr, p.role); cell(tr, p.term);
    cell(tr, p.leader_id); cell(tr, p.applied_cursor);
  });
  setStopButton($("stop-root-leader"), leader ? "root-" + leader.peer_id : null);
}

function renderLease(doc) {
  const lease = doc.tables.leases.rows[0];
  $("lease-freshness").textContent = "applied from the root log at cursor " + (lease ? lease.cursor : doc.cursor);
  $("lease-holder").textContent = lease ? lease.holder : "none";
  $("lease-generation").textContent = lease ? String(lease.generation) : "—";
  const expires = lease ? parseTime(lease.expires_at) : null;
  $("lease-expiry").textContent = expires === null ? "—"
    : ((expires - doc.observed_at_ms) / 1000).toFixed(2) + " s (at " + lease.expires_at + ")";
  $("lease-sealed").textContent = lease ? (lease.sealed ? "yes (handed off)" : "no") : "—";
  setStopButton($("stop-lease-holder"), lease && !lease.sealed ? lease.holder : null);
  fillRows("coordinators", doc.tables.coordinators.rows, (tr, c) => {
    if (c.role === "holder") tr.className = "holder";
    cell(tr, c.coordinator_id); cell(tr, c.address); cell(tr, c.role);
    cell(tr, c.generation); cell(tr, c.cursor);
  });
}

function renderStores(doc) {
  const now = doc.observed_at_ms;
  $("stores-freshness").textContent = "heartbeats seen by " + show(doc.answered_by) + ", observed " + doc.observed_at;
  fillRows("stores", doc.tables.stores.rows, (tr, s) => {
    cell(tr, s.store_id); cell(tr, s.address);
    cell(tr, s.alive ? "up" : "down", s.alive ? "up" : "down");
    cell(tr, age(parseTime(s.last_heartbeat), now));
    cell(tr, s.region_count); cell(tr, s.leader_count);
  });
}

// peers "1@store1,2@store2" -> [1, 2] (store ids).
function replicaStores(peers) {
  return (peers || "").split(",").filter(Boolean).map((p) => Number(p.split("@store")[1]));
}

function renderRegions(doc) {
  const stores = doc.tables.stores.rows.map((s) => s.store_id);
  const regions = doc.tables.regions.rows;
  const newest = regions.reduce((max, r) => Math.max(max, parseTime(r.observed_at) || 0), 0);
  $("regions-freshness").textContent = regions.length + " regions; reports observed up to "
    + age(newest || null, doc.observed_at_ms);
  const head = document.createElement("tr");
  ["region", "range"].concat(stores.map((id) => "store " + id)).forEach((title) => {
    const th = document.createElement("th");
    th.textContent = title;
    head.appendChild(th);
  });
  $("region-grid").querySelector("thead").replaceChildren(head);
  fillRows("region-grid", regions, (tr, r) => {
    cell(tr, r.region_id);
    cell(tr, "[" + (r.start_key || "−∞") + ", " + (r.end_key || "+∞") + ")");
    const replicas = replicaStores(r.peers);
    stores.forEach((id) => {
      const td = cell(tr, "");
      if (replicas.includes(id)) {
        const mark = document.createElement("span");
        const leads = r.leader_store_id === id;
        mark.className = "cell " + (leads ? "leader" : "replica");
        mark.textContent = leads ? "L" : "R";
        td.replaceChildren(mark);
      }
    });
  });
}

function renderEvents(doc) {
  const events = doc.tables.root_events.rows.slice(0, EVENTS_SHOWN_MAX);
  $("events-freshness").textContent = "newest " + events.length + " events of the root log, up to cursor " + doc.cursor;
  fillRows("root-events", events, (tr, e) => {
    cell(tr, e.cursor); cell(tr, e.kind); cell(tr, e.time); cell(tr, e.detail);
  });
}

// ------------------------------------------------------------ the chart --

const SVG_NS = "http://www.w3.org/2000/svg";
// The chart's viewBox and the margins the axis labels use.
const CHART = { width: 900, height: 180, left: 44, right: 56, top: 10, bottom: 22 };

function svg(name, attributes, text) {
  const element = document.createElementNS(SVG_NS, name);
  Object.entries(attributes).forEach(([key, value]) => element.setAttribute(key, String(value)));
  if (text !== undefined) element.textContent = text;
  return element;
}

// A value range [0, max] rounded up to 1, 2 or 5 times a power of ten.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value);
}

// Polylines through (x, y) pairs, broken wherever y is null (an idle second
// has no latency).
function lines(pairs, className) {
  const segments = [[]];
  pairs.forEach(([x, y]) => {
    if (y === null || y === undefined) {
      if (segments[segments.length - 1].length) segments.push([]);
    } else {
      segments[segments.length - 1].push(x.toFixed(1) + "," + y.toFixed(1));
    }
  });
  return segments.filter((segment) => segment.length)
    .map((segment) => svg("polyline", { class: className, points: segment.join(" ") }));
}

function renderTimeseries(doc) {
  const points = doc.points || [];
  const span = (doc.seconds_max || 300) * (doc.interval_ms || 1000);
  const from = doc.now_ms - span;
  const plotWidth = CHART.width - CHART.left - CHART.right;
  const plotHeight = CHART.height - CHART.top - CHART.bottom;
  const rateMax = niceMax(Math.max(0, ...points.map((p) => p.statements)));
  const latencyMax = niceMax(Math.max(0, ...points.map((p) => p.p99_ms || 0)));
  const x = (p) => CHART.left + ((p.at_ms - from) / span) * plotWidth;
  const yRate = (value) => CHART.top + (1 - value / rateMax) * plotHeight;
  const yLatency = (value) => value === null ? null : CHART.top + (1 - value / latencyMax) * plotHeight;
  const bottom = CHART.top + plotHeight;
  const right = CHART.left + plotWidth;
  const elements = [
    svg("line", { class: "grid", x1: CHART.left, y1: CHART.top, x2: right, y2: CHART.top }),
    svg("line", { class: "grid", x1: CHART.left, y1: bottom, x2: right, y2: bottom }),
    svg("text", { class: "axis", x: CHART.left - 4, y: CHART.top + 10, "text-anchor": "end" }, String(rateMax)),
    svg("text", { class: "axis", x: CHART.left - 4, y: bottom, "text-anchor": "end" }, "0/s"),
    svg("text", { class: "axis", x: right + 4, y: CHART.top + 10 }, latencyMax + " ms"),
    svg("text", { class: "axis", x: right + 4, y: bottom }, "0 ms"),
    svg("text", { class: "axis", x: CHART.left, y: CHART.height - 4 }, "−" + Math.round(span / 60000) + " min"),
    svg("text", { class: "axis", x: right, y: CHART.height - 4, "text-anchor": "end" }, "now"),
  ];
  elements.push(...lines(points.map((p) => [x(p), yRate(p.statements)]), "throughput"));
  elements.push(...lines(points.map((p) => [x(p), yRate(p.errors)]), "errors"));
  elements.push(...lines(points.map((p) => [x(p), yLatency(p.p50_ms)]), "p50"));
  elements.push(...lines(points.map((p) => [x(p), yLatency(p.p99_ms)]), "p99"));
  const chart = $("timeseries-chart");
  chart.replaceChildren(...elements);
  // For tests and curious readers: what the chart currently shows.
  chart.dataset.points = String(points.length);
  chart.dataset.statements = String(points.reduce((sum, p) => sum + p.statements, 0));
  const last = points[points.length - 1];
  const ms = (value) => value === null || value === undefined ? "—" : value.toFixed(value < 10 ? 2 : 0) + " ms";
  $("timeseries-summary").textContent = last
    ? "last second: " + last.statements + " statements, " + last.errors + " errors, p50 " + ms(last.p50_ms)
      + ", p99 " + ms(last.p99_ms) + " (statements this gateway served; a failover shows as a dip)"
    : "no complete second yet";
}

async function refreshTimeseries() {
  try {
    const answer = await fetch("/api/timeseries", { cache: "no-store" });
    if (!answer.ok) {
      $("timeseries-summary").textContent = "time series unavailable: " + answer.status;
      return;
    }
    renderTimeseries(await answer.json());
  } catch (error) {
    $("timeseries-summary").textContent = "time series unavailable: " + error;
  }
}

// ------------------------------------------------------- dev controls --

function setStopButton(button, processName) {
  if (!devControl || !processName) { button.hidden = true; return; }
  button.hidden = false;
  button.dataset.process = processName;
  button.disabled = busy;
}

async function processAction(name, action) {
  busy = true;
  $("process-error").textContent = "";
  try {
    const answer = await fetch("/api/dev/processes/" + encodeURIComponent(name) + "/" + action, {
      method: "POST",
      headers: { "x-arbor-dashboard": "1" },
    });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) $("process-error").textContent = action + " " + name + ": " + (body.error || answer.status);
  } catch (error) {
    $("process-error").textContent = action + " " + name + ": " + error;
  } finally {
    busy = false;
  }
  refreshProcesses();
}

async function refreshProcesses() {
  if (!devControl) return;
  try {
    const answer = await fetch("/api/dev/processes", { cache: "no-store" });
    if (!answer.ok) return;
    const body = await answer.json();
    const shown = JSON.stringify(body.processes || []) + busy;
    if (shown === shownProcesses) return;
    shownProcesses = shown;
    fillRows("processes", body.processes || [], (tr, p) => {
      cell(tr, p.name); cell(tr, p.kind); cell(tr, p.address);
      cell(tr, p.state, p.state === "running" ? "up" : "down"); cell(tr, p.pid);
      const td = cell(tr, "");
      const button = document.createElement("button");
      const action = p.state === "running" ? "stop" : "start";
      button.textContent = action;
      button.dataset.process = p.name;
      button.dataset.action = action;
      button.disabled = busy || p.state === "stopping";
      td.replaceChildren(button);
    });
  } catch (error) {
    $("process-error").textContent = "dev control: " + error;
  }
}

function render(doc) {
  devControl = doc.dev_control === true;
  document.querySelectorAll(".dev-only").forEach((element) => {
    if (!devControl) element.hidden = true;
  });
  $("panel-processes").hidden = !devControl;
  renderRoot(doc);
  renderLease(doc);
  renderStores(doc);
  renderRegions(doc);
  renderEvents(doc);
  const status = $("status");
  status.className = "status";
  status.textContent = "view from " + show(doc.answered_by) + " at root cursor " + doc.cursor
    + ", observed " + doc.observed_at;
}

async function poll() {
  try {
    const answer = await fetch("/api/cluster", { cache: "no-store" });
    const body = await answer.json();
    if (answer.ok) {
      render(body);
    } else {
      $("status").className = "status error";
      $("status").textContent = "cluster view unavailable: " + (body.error || answer.status);
    }
  } catch (error) {
    $("status").className = "status error";
    $("status").textContent = "gateway unreachable: " + error;
  }
  await refreshTimeseries();
  await refreshProcesses();
  setTimeout(poll, POLL_MS);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button || !button.dataset.process || busy) return;
  processAction(button.dataset.process, button.dataset.action);
});

poll();

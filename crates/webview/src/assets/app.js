// Skiff's web view: everything on the page comes from the API's own lists
// and watches (the same Tables kubectl prints), through the server that
// served this page. Nothing polls the API; only the clock ticks locally.
"use strict";

const TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io";
const JSON_TYPE = "application/json";
const BAD = /Err|BackOff|Error|Failed|OOMKilled|Invalid|Unknown|Evicted|ContainerStatusUnknown|NotReady/;

// ---- small DOM helpers (text is always set as text, never as HTML) ----
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
function statusClass(text) {
  if (BAD.test(text)) return "st-bad";
  return "st-" + String(text).replace(/[^A-Za-z]/g, "");
}

// ---- time: upstream's HumanDuration, as kubectl's AGE column says it ----
function humanDuration(seconds) {
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${Math.floor(seconds)}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) { const s = Math.floor(seconds % 60); return s === 0 ? `${minutes}m` : `${minutes}m${s}s`; }
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(seconds / 3600);
  if (hours < 8) { const m = Math.floor((seconds % 3600) / 60); return m === 0 ? `${hours}h` : `${hours}h${m}m`; }
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) { const h = hours % 24; return h === 0 ? `${Math.floor(hours / 24)}d` : `${Math.floor(hours / 24)}d${h}h`; }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  if (hours < 24 * 365 * 8) { const d = Math.floor(hours / 24) % 365; return d === 0 ? `${Math.floor(hours / 24 / 365)}y` : `${Math.floor(hours / 24 / 365)}y${d}d`; }
  return `${Math.floor(hours / 24 / 365)}y`;
}
const ageOf = (timestamp) => humanDuration((Date.now() - Date.parse(timestamp)) / 1000);

// ---- the connection indicator ----
const streams = new Set();
function connection(state, text) {
  const node = document.getElementById("connection");
  if (!node) return;
  node.className = "connection " + state;
  node.textContent = text;
}

// ---- reading the API ----
async function* jsonLines(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}

// Lists `path`, then watches from the list's resourceVersion; when the
// watch ends or fails (a 410 Gone, a restart) it lists again. `reset`
// gets each list, `change` each watch event.
function follow(path, accept, reset, change) {
  let stopped = false;
  let controller = null;
  let failures = 0;
  const handle = { stop() { stopped = true; streams.delete(handle); if (controller) controller.abort(); } };
  streams.add(handle);
  (async () => {
    while (!stopped) {
      controller = new AbortController();
      try {
        const listed = await fetch(path, { headers: { Accept: accept }, signal: controller.signal });
        if (listed.status === 401) { connection("down", "signed out: open the address the server printed"); return; }
        if (!listed.ok) throw new Error(`${listed.status} ${await listed.text()}`);
        const list = await listed.json();
        reset(list);
        const joiner = path.includes("?") ? "&" : "?";
        const watched = await fetch(
          `${path}${joiner}watch=1&allowWatchBookmarks=true&resourceVersion=${encodeURIComponent(list.metadata.resourceVersion || "")}`,
          { headers: { Accept: accept }, signal: controller.signal });
        if (!watched.ok) throw new Error(`${watched.status}`);
        failures = 0;
        connection("live", "live");
        for await (const event of jsonLines(watched)) {
          if (stopped) return;
          if (event.type === "BOOKMARK") continue;
          if (event.type === "ERROR") break; // expired: list again
          change(event.type, event.object);
        }
      } catch (error) {
        if (stopped) return;
        failures += 1;
        connection("down", `reconnecting (${error.message || error})`);
        // A server restart takes a moment: back off, at most 5 s.
        await new Promise((resolve) => setTimeout(resolve, Math.min(5000, 250 * 2 ** failures)));
      }
    }
  })();
  return handle;
}

// ---- pages ----
let pageStreams = [];
let pageTimers = [];
function leavePage() {
  for (const stream of pageStreams) stream.stop();
  for (const timer of pageTimers) clearInterval(timer);
  pageStreams = [];
  pageTimers = [];
}

function route() {
  leavePage();
  const main = document.getElementById("main");
  main.replaceChildren();
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  document.getElementById("nav-pods").classList.toggle("current", parts[0] !== "nodes");
  document.getElementById("nav-nodes").classList.toggle("current", parts[0] === "nodes");
  if (parts[0] === "pods" && parts.length === 3) podPage(main, parts[1], parts[2]);
  else if (parts[0] === "nodes") nodesPage(main);
  else podsPage(main, parts[0] === "ns" ? parts[1] : "");
}

// The pods of a namespace (or all), with `kubectl get pods -o wide`'s columns.
function podsPage(main, namespace) {
  const select = el("select", { id: "namespace", onchange: (e) => { location.hash = e.target.value ? `#/ns/${encodeURIComponent(e.target.value)}` : "#/"; } },
    el("option", { value: "" }, "all namespaces"));
  const head = el("thead");
  const body = el("tbody", { id: "pods" });
  main.append(el("h1", {}, "Pods"), el("div", { class: "toolbar" }, el("label", {}, "Namespace ", select)),
    el("table", { class: "grid", id: "pods-table" }, head, body));
  const known = new Set();
  const addNamespace = (name) => {
    if (known.has(name)) return;
    known.add(name);
    select.append(el("option", { value: name, selected: name === namespace }, name));
  };
  pageStreams.push(follow("/api/v1/namespaces", JSON_TYPE,
    (list) => { for (const ns of list.items) addNamespace(ns.metadata.name); },
    (type, ns) => { if (type === "ADDED") addNamespace(ns.metadata.name); }));

  let columns = [];
  const rows = new Map(); // uid → { cells, object }
  const base = namespace ? `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods` : "/api/v1/pods";
  const render = () => {
    const names = (namespace ? [] : ["Namespace"]).concat(columns.map((c) => c.name));
    head.replaceChildren(el("tr", {}, names.map((n) => el("th", {}, n.toUpperCase()))));
    const sorted = [...rows.values()].sort((a, b) =>
      (a.object.metadata.namespace + "/" + a.object.metadata.name).localeCompare(b.object.metadata.namespace + "/" + b.object.metadata.name));
    if (sorted.length === 0) {
      body.replaceChildren(el("tr", {}, el("td", { class: "empty", colspan: names.length }, namespace ? `No pods in ${namespace}.` : "No pods yet.")));
      return;
    }
    body.replaceChildren(...sorted.map(({ cells, object }) => {
      const meta = object.metadata;
      const shown = columns.map((column, i) => {
        let value = cells[i];
        if (column.name === "Age") value = ageOf(meta.creationTimestamp);
        const cls = column.name === "Status" ? statusClass(value) : undefined;
        const created = column.name === "Age" ? meta.creationTimestamp : undefined;
        return el("td", { "data-column": column.name, "data-created": created, class: cls }, value === undefined || value === null ? "" : value);
      });
      const front = namespace ? [] : [el("td", { "data-column": "Namespace" }, meta.namespace)];
      return el("tr", {
        "data-name": meta.name, "data-namespace": meta.namespace, "data-uid": meta.uid,
        onclick: () => { location.hash = `#/pods/${encodeURIComponent(meta.namespace)}/${encodeURIComponent(meta.name)}`; },
      }, front, shown);
    }));
  };
  const stream = follow(base, TABLE,
    (table) => {
      columns = table.columnDefinitions || [];
      rows.clear();
      for (const row of table.rows || []) rows.set(row.object.metadata.uid, { cells: row.cells, object: row.object });
      render();
    },
    (type, table) => {
      if (table.columnDefinitions && table.columnDefinitions.length) columns = table.columnDefinitions;
      for (const row of table.rows || []) {
        const uid = row.object.metadata.uid;
        if (type === "DELETED") rows.delete(uid);
        else rows.set(uid, { cells: row.cells, object: row.object });
      }
      render();
    });
  pageStreams.push(stream);
  // Ages tick with the local clock, as a re-run of kubectl would show.
  pageTimers.push(setInterval(() => {
    for (const cell of body.querySelectorAll("td[data-created]")) cell.textContent = ageOf(cell.dataset.created);
  }, 1000));
}

// One pod: its diagram, timeline, logs and YAML.
function podPage(main, namespace, name) {
  const title = el("h1", {}, `Pod ${namespace}/${name}`);
  const diagram = el("div", { class: "panel", id: "diagram" });
  const timeline = el("div", { class: "panel", id: "timeline" });
  const logs = el("div", { class: "panel", id: "logs" });
  const yaml = el("pre", { class: "yaml", id: "yaml" });
  main.append(title, el("h2", {}, "Pod"), diagram, el("h2", {}, "Timeline"), timeline,
    el("h2", {}, "Logs"), logs, el("h2", {}, "YAML"), yaml);
  let pod = null;
  let gone = false;
  const events = new Map(); // event uid → event
  const history = new History();
  const logView = new Logs(logs, namespace, name);
  const render = () => {
    if (!pod) { diagram.replaceChildren(el("div", { class: "empty" }, gone ? "This pod is gone." : "Waiting for the pod…")); return; }
    drawDiagram(diagram, pod);
    drawTimeline(timeline, pod, history, [...events.values()].filter((e) => !e.involvedObject.uid || e.involvedObject.uid === pod.metadata.uid));
    yaml.textContent = toYaml(withoutManagedFields(pod));
    logView.update(pod);
  };
  const selector = `fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}`;
  pageStreams.push(follow(`/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?${selector}`, JSON_TYPE,
    (list) => { pod = list.items[0] || null; gone = !pod; if (pod) history.observe(pod); render(); },
    (type, object) => {
      if (type === "DELETED") { gone = true; pod = object; history.observe(object, true); }
      else { pod = object; history.observe(object); }
      render();
    }));
  const eventSelector = `fieldSelector=${encodeURIComponent(`involvedObject.name=${name}`)}`;
  pageStreams.push(follow(`/api/v1/namespaces/${encodeURIComponent(namespace)}/events?${eventSelector}`, JSON_TYPE,
    (list) => { events.clear(); for (const e of list.items) events.set(e.metadata.uid, e); render(); },
    (type, e) => { if (type === "DELETED") events.delete(e.metadata.uid); else events.set(e.metadata.uid, e); render(); }));
  pageStreams.push({ stop: () => logView.stop() });
  pageTimers.push(setInterval(() => { if (pod) drawTimeline(timeline, pod, history, [...events.values()].filter((e) => !e.involvedObject.uid || e.involvedObject.uid === pod.metadata.uid)); }, 1000));
}

function containersOf(pod) {
  const spec = pod.spec || {};
  const status = pod.status || {};
  const byName = (list) => Object.fromEntries((list || []).map((s) => [s.name, s]));
  const init = byName(status.initContainerStatuses);
  const main = byName(status.containerStatuses);
  const ephemeral = byName(status.ephemeralContainerStatuses);
  return [
    ...(spec.initContainers || []).map((c) => ({ spec: c, status: init[c.name], kind: c.restartPolicy === "Always" ? "sidecar" : "init" })),
    ...(spec.containers || []).map((c) => ({ spec: c, status: main[c.name], kind: "container" })),
    ...(spec.ephemeralContainers || []).map((c) => ({ spec: c, status: ephemeral[c.name], kind: "ephemeral" })),
  ];
}

function stateOf(status) {
  if (!status || !status.state) return { text: "Waiting", detail: "" };
  const state = status.state;
  if (state.running) return { text: status.ready ? "Running · Ready" : "Running", detail: `since ${state.running.startedAt}` };
  if (state.terminated) return { text: `Terminated: ${state.terminated.reason || ""}`, detail: `exit code ${state.terminated.exitCode}` };
  if (state.waiting) return { text: `Waiting: ${state.waiting.reason || ""}`, detail: state.waiting.message || "" };
  return { text: "Unknown", detail: "" };
}

const PALETTE = ["#2f6fd6", "#8e44ad", "#16a085", "#c0392b", "#d35400", "#2c3e50", "#7f8c8d", "#27ae60"];
function volumeKind(volume) {
  const kinds = Object.keys(volume).filter((k) => k !== "name");
  return kinds[0] || "volume";
}

// The pod as a box: what its containers share (one IP, hostname, IPC),
// each container, and the volumes each one mounts.
function drawDiagram(node, pod) {
  const colors = new Map((pod.spec.volumes || []).map((v, i) => [v.name, PALETTE[i % PALETTE.length]]));
  const status = pod.status || {};
  const ips = (status.podIPs || []).map((p) => p.ip).join(", ") || status.podIP || "no IP yet";
  const boxes = containersOf(pod).map(({ spec, status: cs, kind }) => {
    const state = stateOf(cs);
    return el("div", { class: "container", "data-container": spec.name },
      el("div", { class: "kind" }, kind),
      el("div", { class: "name" }, spec.name),
      el("div", { class: "image" }, spec.image || ""),
      el("div", { class: statusClass(state.text) }, state.text, cs && cs.restartCount ? ` · ${cs.restartCount} restarts` : ""),
      state.detail ? el("div", { class: "shared" }, state.detail) : null,
      (spec.ports || []).length ? el("div", { class: "shared" }, "ports ", spec.ports.map((p) => `${p.containerPort}/${p.protocol || "TCP"}`).join(", ")) : null,
      el("div", {}, (spec.volumeMounts || []).map((m) =>
        el("span", { class: "chip", style: `background:${colors.get(m.name) || "#999"}`, title: `${m.name} at ${m.mountPath}${m.readOnly ? " (read-only)" : ""}` }, `${m.name} → ${m.mountPath}`))));
  });
  const volumes = (pod.spec.volumes || []).map((v) =>
    el("span", { class: "chip", style: `background:${colors.get(v.name)}` }, `${v.name} (${volumeKind(v)})`));
  node.replaceChildren(el("div", { class: "pod-box" },
    el("div", { class: "title" }, `${pod.metadata.name}`, el("span", { class: statusClass(status.phase || "Pending") }, `  ${status.phase || "Pending"}`)),
    el("div", { class: "shared" }, "shared by every container: network ", el("b", {}, ips),
      " · hostname ", el("b", {}, pod.spec.hostname || pod.metadata.name), " · IPC",
      pod.spec.nodeName ? [" · on node ", el("b", {}, pod.spec.nodeName)] : " · not scheduled yet",
      status.qosClass ? [" · QoS ", el("b", {}, status.qosClass)] : null),
    el("div", { class: "containers" }, boxes),
    el("div", { class: "volumes" }, volumes.length ? ["volumes: ", volumes] : "no volumes")));
}

// What the page has seen of a pod over time: phases, and every run of
// every container (a status shows only the current and the last one).
class History {
  constructor() { this.phases = []; this.runs = new Map(); this.deleted = null; }
  observe(pod, deleted) {
    const now = Date.now();
    if (deleted || pod.metadata.deletionTimestamp) this.deleted = this.deleted || now;
    for (const { spec, status } of containersOf(pod)) {
      if (!status) continue;
      const runs = this.runs.get(spec.name) || new Map();
      this.runs.set(spec.name, runs);
      for (const state of [status.lastState, status.state]) {
        if (!state) continue;
        if (state.terminated && state.terminated.startedAt) {
          const t = state.terminated;
          runs.set(t.containerID || t.startedAt, { from: Date.parse(t.startedAt), to: Date.parse(t.finishedAt), exitCode: t.exitCode, reason: t.reason });
        } else if (state.running && state.running.startedAt) {
          runs.set(status.containerID || state.running.startedAt, { from: Date.parse(state.running.startedAt), to: null, ready: status.ready });
        }
      }
    }
    const phase = (pod.status && pod.status.phase) || "Pending";
    const last = this.phases[this.phases.length - 1];
    if (last && last.phase !== phase) this.phases.push({ phase, at: now });
    if (!last) {
      // Opened late: what came before is read off the containers' runs.
      // Pending until the first container started, Running until the
      // last one ended.
      const all = [...this.runs.values()].flatMap((runs) => [...runs.values()]);
      const firstStart = Math.min(...all.map((r) => r.from), now);
      const lastEnd = Math.max(...all.map((r) => r.to || 0), firstStart);
      this.phases.push({ phase: "Pending", at: Date.parse(pod.metadata.creationTimestamp) });
      if (phase !== "Pending" && all.length) this.phases.push({ phase: "Running", at: firstStart });
      if (phase !== "Pending" && phase !== "Running") this.phases.push({ phase, at: all.length ? lastEnd : now });
    }
  }
}

function eventTime(e) {
  return Date.parse(e.lastTimestamp || e.eventTime || e.firstTimestamp || e.metadata.creationTimestamp);
}

// The pod's life as a picture: a lane for the pod (phases, conditions),
// one per container (waiting, running, ended: red when it failed), and
// one for events (warnings red).
function drawTimeline(node, pod, history, events) {
  const start = Date.parse(pod.metadata.creationTimestamp);
  const end = Math.max(history.deleted || Date.now(), start + 10000);
  const width = Math.max(600, node.clientWidth - 30);
  const left = 130;
  const x = (t) => left + Math.max(0, Math.min(1, (t - start) / (end - start))) * (width - left - 10);
  const lanes = ["pod", ...containersOf(pod).map((c) => c.spec.name), "events"];
  const laneHeight = 26;
  const height = 30 + lanes.length * laneHeight;
  const y = (i) => 22 + i * laneHeight;
  const picture = svg("svg", { class: "timeline", viewBox: `0 0 ${width} ${height}`, height: String(height), "data-lanes": String(lanes.length) });
  // The axis: seconds since the pod was created.
  const axis = svg("g", { class: "axis" });
  const span = (end - start) / 1000;
  const step = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].find((s) => span / s <= 10) || 7200;
  for (let s = 0; s <= span; s += step) {
    axis.append(svg("line", { x1: x(start + s * 1000), x2: x(start + s * 1000), y1: 14, y2: height, stroke: "#eceef3" }),
      svg("text", { x: x(start + s * 1000) + 2, y: 11 }, `+${humanDuration(s)}`));
  }
  picture.append(axis);
  lanes.forEach((name, i) => picture.append(svg("text", { x: 4, y: y(i) + 14 }, name === "pod" ? "Pod phase" : name === "events" ? "Events" : name)));
  // The pod lane: phases as seen, then the conditions' transitions.
  const phaseColor = { Pending: "#d99a1e", Running: "#2e9d5b", Succeeded: "#8a93a6", Failed: "#d64545", Unknown: "#6b7385" };
  history.phases.forEach((p, i) => {
    const next = history.phases[i + 1];
    const to = next ? next.at : end;
    picture.append(svg("rect", { x: x(p.at), y: y(0) + 3, width: Math.max(1, x(to) - x(p.at)), height: 14, fill: phaseColor[p.phase] || "#999", rx: 2 },
      svg("title", {}, `${p.phase} from +${humanDuration((p.at - start) / 1000)}`)));
  });
  for (const condition of (pod.status && pod.status.conditions) || []) {
    if (!condition.lastTransitionTime) continue;
    const cx = x(Date.parse(condition.lastTransitionTime));
    picture.append(svg("line", { x1: cx, x2: cx, y1: y(0), y2: y(0) + 20, stroke: condition.status === "True" ? "#14213d" : "#d64545", "stroke-width": 2 },
      svg("title", {}, `${condition.type}=${condition.status}${condition.reason ? ` (${condition.reason})` : ""} at ${condition.lastTransitionTime}`)));
  }
  // The containers' lanes.
  containersOf(pod).forEach(({ spec, status }, index) => {
    const lane = index + 1;
    const runs = [...(history.runs.get(spec.name) || new Map()).values()].sort((a, b) => a.from - b.from);
    // Before its first run, and between runs, a container waits.
    const firstFrom = runs.length ? runs[0].from : end;
    picture.append(svg("rect", { x: x(start), y: y(lane) + 6, width: Math.max(1, x(firstFrom) - x(start)), height: 8, fill: "#f1d9a6", rx: 2 },
      svg("title", {}, status && status.state && status.state.waiting ? `Waiting: ${status.state.waiting.reason || ""}` : "Waiting")));
    runs.forEach((run, i) => {
      // Between two runs it waited (a restart's back-off).
      const next = runs[i + 1];
      if (next && run.to && next.from > run.to) {
        picture.append(svg("rect", { x: x(run.to), y: y(lane) + 6, width: Math.max(1, x(next.from) - x(run.to)), height: 8, fill: "#f1d9a6", rx: 2 },
          svg("title", {}, `waited ${humanDuration((next.from - run.to) / 1000)} to restart`)));
      }
    });
    for (const run of runs) {
      const to = run.to || end;
      const failed = run.to && run.exitCode !== 0;
      const fill = run.to ? (failed ? "#d64545" : "#8a93a6") : "#2e9d5b";
      // A run of a few milliseconds still shows.
      picture.append(svg("rect", { x: x(run.from), y: y(lane) + 3, width: Math.max(4, x(to) - x(run.from)), height: 14, fill, rx: 2, "data-state": run.to ? "terminated" : "running" },
        svg("title", {}, run.to ? `ran ${humanDuration((run.to - run.from) / 1000)}, exit code ${run.exitCode} (${run.reason || ""})` : "running")));
    }
    if (status && status.state && status.state.waiting && runs.length) {
      const from = runs[runs.length - 1].to || end;
      picture.append(svg("rect", { x: x(from), y: y(lane) + 6, width: Math.max(1, x(end) - x(from)), height: 8, fill: "#f1d9a6", rx: 2 },
        svg("title", {}, `Waiting: ${status.state.waiting.reason || ""}`)));
    }
  });
  // The events lane.
  const eventsLane = lanes.length - 1;
  for (const e of events.sort((a, b) => eventTime(a) - eventTime(b))) {
    const ex = x(eventTime(e));
    const warning = e.type === "Warning";
    // A repeated event: its first time too.
    const first = e.firstTimestamp && Date.parse(e.firstTimestamp);
    if (e.count > 1 && first && first < eventTime(e)) {
      picture.append(svg("circle", { cx: x(first), cy: y(eventsLane) + 10, r: 3, fill: warning ? "#d64545" : "#2f6fd6", opacity: 0.6 },
        svg("title", {}, `${e.reason} (first of ${e.count}): ${e.message}`)));
    }
    picture.append(svg("circle", { cx: ex, cy: y(eventsLane) + 10, r: warning ? 5 : 4, fill: warning ? "#d64545" : "#2f6fd6", "data-reason": e.reason },
      svg("title", {}, `${e.reason}${e.count > 1 ? ` ×${e.count}` : ""}: ${e.message}`)));
  }
  const legend = el("div", { class: "legend" },
    [["#2e9d5b", "running"], ["#f1d9a6", "waiting"], ["#8a93a6", "ended (exit 0)"], ["#d64545", "failed / warning"], ["#2f6fd6", "event"], ["#14213d", "condition became True"]]
      .map(([color, label]) => el("span", {}, el("i", { style: `background:${color}` }), label)));
  const list = el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, ["Type", "Reason", "Age", "From", "Message"].map((h) => el("th", {}, h.toUpperCase())))),
    el("tbody", {}, events.slice().reverse().map((e) => el("tr", { class: "event" },
      el("td", { class: e.type === "Warning" ? "st-bad" : "" }, e.type),
      el("td", {}, e.reason),
      el("td", {}, `${ageOf(new Date(eventTime(e)).toISOString())}${e.count > 1 ? ` (x${e.count})` : ""}`),
      el("td", {}, (e.source && e.source.component) || e.reportingComponent || ""),
      el("td", { style: "white-space: normal" }, e.message || "")))));
  node.replaceChildren(picture, legend, events.length ? list : el("div", { class: "empty" }, "No events yet."));
}

// Each container's log, followed live; a restart follows the new run.
class Logs {
  constructor(node, namespace, name) {
    this.node = node; this.namespace = namespace; this.name = name;
    this.current = null; this.following = null; this.controller = null;
    this.tabs = el("div", { class: "tabs" });
    this.pre = el("pre", { class: "log", id: "log" });
    node.append(this.tabs, this.pre);
  }
  update(pod) {
    const names = containersOf(pod).map((c) => c.spec.name);
    if (!this.current || !names.includes(this.current)) this.current = names.find((n) => pod.spec.containers.some((c) => c.name === n)) || names[0];
    this.tabs.replaceChildren(...names.map((n) => el("button", { class: n === this.current ? "current" : "", onclick: () => { this.current = n; this.following = null; this.update(pod); } }, n)));
    const entry = containersOf(pod).find((c) => c.spec.name === this.current);
    const run = entry && entry.status ? `${entry.status.containerID || ""}/${entry.status.restartCount}` : null;
    if (run && entry.status.containerID && this.following !== run) this.start(run);
  }
  async start(run) {
    if (this.controller) this.controller.abort();
    this.following = run;
    const controller = new AbortController();
    this.controller = controller;
    this.pre.textContent = "";
    const path = `/api/v1/namespaces/${encodeURIComponent(this.namespace)}/pods/${encodeURIComponent(this.name)}/log?container=${encodeURIComponent(this.current)}&follow=true&tailLines=1000`;
    try {
      const response = await fetch(path, { signal: controller.signal });
      if (!response.ok) { this.pre.textContent = (await response.json().catch(() => ({}))).message || `${response.status}`; return; }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atBottom = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
        this.pre.append(decoder.decode(value, { stream: true }));
        if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
      }
    } catch (error) {
      if (!controller.signal.aborted) this.pre.append(`\n— ${error.message || error} —\n`);
    }
  }
  stop() { if (this.controller) this.controller.abort(); }
}

// As `kubectl get -o yaml` shows a pod: with its kind (list items come
// without one) and without managedFields.
function withoutManagedFields(object) {
  const copy = { apiVersion: "v1", kind: "Pod", ...structuredClone(object) };
  if (copy.metadata) delete copy.metadata.managedFields;
  return copy;
}

// JSON as YAML, in kubectl's key order (the server's).
function toYaml(value, indent = "") {
  const scalar = (v) => {
    if (v === null) return "null";
    if (typeof v === "string") {
      if (v === "" || /^[\s\-?:,[\]{}#&*!|>'"%@`]|[:#]\s|\s$|\n|^(true|false|null|yes|no|on|off|~)$|^[-+]?[0-9.]/i.test(v)) return JSON.stringify(v);
      return v;
    }
    return String(v);
  };
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return value.map((item) => {
      if (item && typeof item === "object" && Object.keys(item).length) {
        const inner = toYaml(item, indent + "  ");
        return `${indent}- ${inner.slice(indent.length + 2)}`;
      }
      return `${indent}- ${item && typeof item === "object" ? (Array.isArray(item) ? "[]" : "{}") : scalar(item)}`;
    }).join("\n");
  }
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 0) return "{}";
    return keys.map((key) => {
      const v = value[key];
      const name = scalar(key);
      if (v && typeof v === "object" && (Array.isArray(v) ? v.length : Object.keys(v).length)) {
        return `${indent}${name}:\n${toYaml(v, Array.isArray(v) ? indent : indent + "  ")}`;
      }
      return `${indent}${name}: ${v && typeof v === "object" ? (Array.isArray(v) ? "[]" : "{}") : scalar(v)}`;
    }).join("\n");
  }
  return indent + scalar(value);
}

// ---- nodes: capacity, and what the pods on each ask for ----
const SUFFIX = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60, n: 1e-9, u: 1e-6, m: 1e-3, "": 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
function quantity(text) {
  if (text === undefined || text === null) return 0;
  const match = /^([+-]?[0-9.]+(?:e[+-]?[0-9]+)?)([a-zA-Z]*)$/.exec(String(text));
  if (!match) return 0;
  return parseFloat(match[1]) * (SUFFIX[match[2]] ?? 1);
}
function podRequests(pod, kind) {
  const total = {};
  const add = (into, resources, sign) => {
    for (const [name, value] of Object.entries((resources && resources[kind]) || {})) into[name] = (into[name] || 0) + sign * quantity(value);
  };
  for (const c of pod.spec.containers || []) add(total, c.resources, 1);
  for (const c of pod.spec.initContainers || []) if (c.restartPolicy === "Always") add(total, c.resources, 1);
  // An init container runs alone: the pod needs the most any one asks.
  for (const c of pod.spec.initContainers || []) {
    if (c.restartPolicy === "Always") continue;
    for (const [name, value] of Object.entries((c.resources && c.resources[kind]) || {})) total[name] = Math.max(total[name] || 0, quantity(value));
  }
  for (const [name, value] of Object.entries(pod.spec.overhead || {})) total[name] = (total[name] || 0) + quantity(value);
  return total;
}
function formatResource(name, value) {
  if (value === 0) return "0";
  if (name === "cpu") return value >= 1 ? `${+value.toFixed(2)}` : `${Math.round(value * 1000)}m`;
  if (name === "memory" || name.includes("storage")) {
    for (const [unit, size] of [["Gi", 2 ** 30], ["Mi", 2 ** 20], ["Ki", 2 ** 10]]) if (value >= size) return `${+(value / size).toFixed(1)}${unit}`;
    return `${value}`;
  }
  return `${+value.toFixed(2)}`;
}

function nodesPage(main) {
  const list = el("div", { id: "nodes" });
  main.append(el("h1", {}, "Nodes"), list);
  const nodes = new Map();
  const pods = new Map();
  const render = () => {
    if (nodes.size === 0) { list.replaceChildren(el("div", { class: "empty" }, "No nodes have registered.")); return; }
    list.replaceChildren(...[...nodes.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map((node) => {
      const name = node.metadata.name;
      const status = node.status || {};
      const ready = (status.conditions || []).find((c) => c.type === "Ready");
      const here = [...pods.values()].filter((p) => p.spec.nodeName === name && !["Succeeded", "Failed"].includes(p.status && p.status.phase));
      const requests = {};
      const limits = {};
      for (const pod of here) {
        for (const [k, v] of Object.entries(podRequests(pod, "requests"))) requests[k] = (requests[k] || 0) + v;
        for (const [k, v] of Object.entries(podRequests(pod, "limits"))) limits[k] = (limits[k] || 0) + v;
      }
      const allocatable = status.allocatable || {};
      const roles = Object.keys(node.metadata.labels || {}).filter((l) => l.startsWith("node-role.kubernetes.io/")).map((l) => l.split("/")[1]).join(",") || "<none>";
      const address = ((status.addresses || []).find((a) => a.type === "InternalIP") || {}).address || "";
      const rows = ["cpu", "memory", "pods", "ephemeral-storage"].filter((r) => (status.capacity || {})[r] !== undefined).map((resource) => {
        const total = quantity(allocatable[resource]);
        const used = resource === "pods" ? here.length : (requests[resource] || 0);
        const share = total ? Math.min(100, Math.floor((used / total) * 100)) : 0;
        return el("tr", { "data-resource": resource },
          el("td", {}, resource),
          el("td", {}, (status.capacity || {})[resource]),
          el("td", {}, allocatable[resource] || ""),
          el("td", {}, resource === "pods" ? `${here.length}` : formatResource(resource, used), el("span", { class: "meter" }, el("i", { style: `width:${share}%` })), ` ${share}%`),
          el("td", {}, resource === "pods" ? "" : formatResource(resource, limits[resource] || 0)));
      });
      return el("div", { class: "panel", "data-node": name },
        el("div", { class: "title" }, el("b", {}, name), "  ",
          el("span", { class: ready && ready.status === "True" ? "st-Ready" : "st-bad" }, ready && ready.status === "True" ? "Ready" : "NotReady"),
          `  · roles ${roles} · ${address} · ${(status.nodeInfo || {}).kubeletVersion || ""} · ${(status.nodeInfo || {}).osImage || ""} · age ${ageOf(node.metadata.creationTimestamp)}`),
        el("table", { class: "grid" },
          el("thead", {}, el("tr", {}, ["Resource", "Capacity", "Allocatable", "Requested", "Limits"].map((h) => el("th", {}, h.toUpperCase())))),
          el("tbody", {}, rows)),
        el("div", { class: "shared" }, `${here.length} pods: `, here.map((p) => el("a", { href: `#/pods/${encodeURIComponent(p.metadata.namespace)}/${encodeURIComponent(p.metadata.name)}` }, `${p.metadata.namespace}/${p.metadata.name} `))));
    }));
  };
  pageStreams.push(follow("/api/v1/nodes", JSON_TYPE,
    (l) => { nodes.clear(); for (const n of l.items) nodes.set(n.metadata.uid, n); render(); },
    (type, n) => { if (type === "DELETED") nodes.delete(n.metadata.uid); else nodes.set(n.metadata.uid, n); render(); }));
  pageStreams.push(follow("/api/v1/pods", JSON_TYPE,
    (l) => { pods.clear(); for (const p of l.items) pods.set(p.metadata.uid, p); render(); },
    (type, p) => { if (type === "DELETED") pods.delete(p.metadata.uid); else pods.set(p.metadata.uid, p); render(); }));
}

window.addEventListener("hashchange", route);
route();

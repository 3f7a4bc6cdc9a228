// The swarm dashboard: plain JavaScript over the public HTTP API, no build step, no CDN.
// Every value from the API is written with textContent, never as HTML: task inputs are
// user data.
"use strict";

const KEY = "swarm-api-key"; // sessionStorage: gone when the tab closes
const TERMINAL = new Set(["completed", "failed", "canceled", "rejected"]);
const MAX_ROW_STREAMS = 3; // live streams for list rows (the API caps streams per key)
const LIST_EVERY_MS = 3000;
const HOUR_EVERY_MS = 10000;

const state = {
  tasks: new Map(),
  order: [],
  selected: null,
  rowStreams: new Map(),
  detailStream: null,
  specialists: [],
  plan: [],
  view: "tasks",
};

class Unauthorized extends Error {}

function $(selector) {
  return document.querySelector(selector);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function authHeaders() {
  const key = sessionStorage.getItem(KEY);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function problemDetail(response) {
  try {
    const problem = await response.json();
    return problem.detail || problem.title || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...authHeaders(), ...(options.headers || {}) },
  });
  if (response.status === 401) throw new Unauthorized(await problemDetail(response));
  if (!response.ok) throw new Error(await problemDetail(response));
  return response.json();
}

// Server-sent events over fetch, so the Authorization header goes with them (EventSource
// cannot send one). Calls onEvent({id, event, data}) per event; resolves when the stream ends.
async function followEvents(taskId, onEvent, signal) {
  const response = await fetch(`/v1/tasks/${encodeURIComponent(taskId)}/events`, {
    headers: authHeaders(),
    signal,
  });
  if (!response.ok || !response.body) throw new Error(await problemDetail(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event = {};
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const raw of lines) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") {
        if (event.data !== undefined) {
          let data = event.data;
          try {
            data = JSON.parse(event.data);
          } catch {
            /* a plain-text event */
          }
          onEvent({ id: event.id, event: event.event || "message", data });
        }
        event = {};
        continue;
      }
      if (line.startsWith(":")) continue; // keepalive or a comment
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let text = colon < 0 ? "" : line.slice(colon + 1);
      if (text.startsWith(" ")) text = text.slice(1);
      if (field === "data") event.data = event.data === undefined ? text : `${event.data}\n${text}`;
      else if (field === "event") event.event = text;
      else if (field === "id") event.id = text;
    }
  }
}

function stateBadge(value) {
  return el("span", { class: `state ${value}` }, value);
}

function usd(value) {
  return `$${Number(value || 0).toFixed(6)}`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function setStatus(text) {
  $("#status").textContent = text;
}

// --- tasks -------------------------------------------------------------------------------------

function remember(task) {
  state.tasks.set(task.id, task);
}

function renderTable() {
  const body = $("#task-table tbody");
  body.replaceChildren(
    ...state.order.map((id) => {
      const task = state.tasks.get(id);
      const plan = task.steps.length
        ? task.steps.map((s) => el("span", { class: `chip` }, `${s.specialist} `, stateBadge(s.status)))
        : el("span", { class: "muted" }, "planning");
      const row = el(
        "tr",
        { "data-id": task.id, class: task.id === state.selected ? "selected" : "" },
        el("td", {}, el("code", {}, task.id.slice(0, 12))),
        el("td", {}, stateBadge(task.state)),
        el("td", {}, plan),
        el("td", {}, usd(task.cost?.cost_usd)),
        el("td", {}, when(task.created_at)),
      );
      row.addEventListener("click", () => selectTask(task.id));
      return row;
    }),
  );
  $("#no-tasks").hidden = state.order.length > 0;
  const live = state.order.filter((id) => !TERMINAL.has(state.tasks.get(id).state)).length;
  $("#live-count").textContent = live ? `${live} live` : "";
}

async function refreshTask(id) {
  const task = await api(`/v1/tasks/${encodeURIComponent(id)}`);
  remember(task);
  renderTable();
  if (state.selected === id) renderDetail(task);
  return task;
}

function followRow(id) {
  if (state.rowStreams.has(id) || state.rowStreams.size >= MAX_ROW_STREAMS) return;
  const controller = new AbortController();
  state.rowStreams.set(id, controller);
  followEvents(id, () => refreshTask(id).catch(() => {}), controller.signal)
    .catch(() => {})
    .finally(() => {
      state.rowStreams.delete(id);
      refreshTask(id).catch(() => {});
    });
}

async function refreshList() {
  const page = await api("/v1/tasks?limit=50");
  state.order = page.tasks.map((t) => t.id);
  for (const task of page.tasks) remember(task);
  renderTable();
  for (const task of page.tasks) if (!TERMINAL.has(task.state)) followRow(task.id);
  setStatus(`updated ${new Date().toLocaleTimeString()}`);
}

function renderStep(step) {
  const facts = [
    step.adapter_version ? `adapter ${step.adapter || step.specialist} v${step.adapter_version}` : null,
    step.latency_ms != null ? `${Math.round(step.latency_ms)} ms` : null,
    `attempts ${step.attempts}`,
    step.escalated ? `escalated: ${step.escalation_reason || "yes"}` : null,
    `cost ${usd(step.cost_usd)} (all-teacher ${usd(step.all_teacher_cost_usd)})`,
  ].filter(Boolean);
  return el(
    "div",
    { class: "step", "data-step": step.id },
    el("strong", {}, `${step.id}: ${step.specialist} `),
    stateBadge(step.status),
    el("div", { class: "muted" }, facts.join(" · ")),
    step.error ? el("p", { class: "error" }, step.error) : null,
    el("h4", {}, "Input"),
    el("pre", {}, pretty(step.input ?? "")),
    el("h4", {}, "Output"),
    el("pre", { class: "output" }, step.output == null ? "" : pretty(step.output)),
  );
}

function renderDetail(task) {
  $("#detail").hidden = false;
  $("#detail-id").textContent = task.id;
  $("#detail-summary").replaceChildren(
    stateBadge(task.state),
    ` created ${when(task.created_at)}, updated ${when(task.updated_at)}`,
    task.reason ? el("span", { class: "error" }, ` ${task.reason}`) : "",
    ` · cost ${usd(task.cost?.cost_usd)} of ${usd(task.cost?.all_teacher_cost_usd)} all-teacher`,
  );
  $("#detail-steps").replaceChildren(...task.steps.map(renderStep));
  $("#detail-result").textContent = task.result == null ? "" : pretty(task.result);
}

function timelineEntry(event) {
  const data = event.data || {};
  const what = [event.event, data.step_id, data.state, data.reason].filter(Boolean).join(" ");
  const at = data.at || data.timestamp;
  return el("li", {}, el("code", {}, at ? when(at) : event.id || ""), ` ${what}`);
}

async function selectTask(id) {
  state.selected = id;
  if (state.detailStream) state.detailStream.abort();
  const controller = new AbortController();
  state.detailStream = controller;
  $("#detail-timeline").replaceChildren();
  renderTable();
  const task = await refreshTask(id);
  followEvents(
    id,
    (event) => {
      if (state.selected !== id) return;
      $("#detail-timeline").append(timelineEntry(event));
      refreshTask(id).catch(() => {});
    },
    controller.signal,
  ).catch(() => {});
  return task;
}

// --- submit ------------------------------------------------------------------------------------

function renderSubmitChoices() {
  const ready = state.specialists.filter((s) => s.status === "ready");
  const names = ready.map((s) => s.name).join(",");
  const list = $("#submit-specialists");
  if (list.dataset.names === names) return; // the same choices: keep the boxes as they are
  list.dataset.names = names;
  list.replaceChildren(
    ...ready.map((s) => {
      const box = el("input", { type: "checkbox", value: s.name, name: "specialist" });
      box.checked = state.plan.includes(s.name);
      box.addEventListener("change", () => {
        state.plan = box.checked ? [...state.plan, s.name] : state.plan.filter((n) => n !== s.name);
        $("#submit-plan").textContent = state.plan.join(" → ") || "(none chosen)";
      });
      return el("label", { title: s.description }, box, s.name);
    }),
  );
}

async function submitTask(event) {
  event.preventDefault();
  const error = $("#submit-error");
  error.textContent = "";
  const text = event.target.elements.input.value;
  let input = text;
  if (text.trim().startsWith("{")) {
    try {
      input = JSON.parse(text);
    } catch (exc) {
      error.textContent = `The input looks like JSON but does not parse: ${exc.message}`;
      return;
    }
  }
  if (!state.plan.length) {
    error.textContent = "Choose at least one specialist.";
    return;
  }
  try {
    const accepted = await api("/v1/tasks", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ input, plan: state.plan }),
    });
    event.target.reset();
    state.plan = [];
    delete $("#submit-specialists").dataset.names;
    $("#submit-plan").textContent = "(none chosen)";
    renderSubmitChoices();
    show("tasks");
    await refreshList();
    await selectTask(accepted.id);
  } catch (exc) {
    error.textContent = exc.message;
  }
}

// --- specialists -------------------------------------------------------------------------------

function score(figure) {
  if (!figure || figure.score == null) return "–";
  const interval = figure.interval_95 ? ` [${figure.interval_95.map((v) => v.toFixed(3)).join("–")}]` : "";
  return `${figure.score.toFixed(3)}${interval}`;
}

function evalCard(summary) {
  if (!summary) return el("p", { class: "muted" }, "No eval.json shipped.");
  const sets = summary.sets || { [summary.set || "test"]: summary };
  return el(
    "div",
    { class: "eval" },
    el("p", {}, `Metric: ${summary.metric || "score"}`),
    ...Object.entries(sets).map(([name, set]) =>
      el(
        "div",
        { "data-set": name },
        el("h4", {}, name),
        el(
          "table",
          {},
          el("tr", {}, el("th", {}, "student"), el("td", {}, score(set.student))),
          el("tr", {}, el("th", {}, "base, few-shot"), el("td", {}, score(set.base_few_shot))),
          el("tr", {}, el("th", {}, "base, zero-shot"), el("td", {}, score(set.base_zero_shot))),
        ),
        el(
          "p",
          { class: "muted" },
          (set.sources || [])
            .map((s) => `${s.repository}@${String(s.commit).slice(0, 8)} ${s.split} (${s.examples})`)
            .join("; ") || "",
        ),
      ),
    ),
  );
}

async function refreshSpecialists() {
  state.specialists = await api("/v1/specialists");
  $("#specialist-list").replaceChildren(
    el(
      "div",
      { class: "cards" },
      ...state.specialists.map((s) =>
        el(
          "div",
          { class: "card", "data-name": s.name },
          el("h3", {}, `${s.name} `, stateBadge(s.status)),
          el("p", { class: "muted" }, s.version ? `version ${s.version}` : "no version"),
          s.reason ? el("p", { class: "error reason" }, s.reason) : null,
          el("p", {}, s.description),
          s.status === "ready" ? evalCard(s.eval_summary) : null,
        ),
      ),
    ),
  );
  renderSubmitChoices();
}

// --- the last hour -----------------------------------------------------------------------------

function percentile(values, q) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function refreshHour() {
  const since = new Date(Date.now() - 3600 * 1000).toISOString();
  const tasks = [];
  let cursor = null;
  for (let page = 0; page < 10; page += 1) {
    const query = new URLSearchParams({ since, limit: "100" });
    if (cursor) query.set("cursor", cursor);
    const answer = await api(`/v1/tasks?${query}`);
    tasks.push(...answer.tasks);
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  const byState = {};
  const bySpecialist = {};
  const latencies = [];
  let cost = 0;
  let allTeacher = 0;
  for (const task of tasks) {
    byState[task.state] = (byState[task.state] || 0) + 1;
    cost += task.cost?.cost_usd || 0;
    allTeacher += task.cost?.all_teacher_cost_usd || 0;
    for (const step of task.steps) {
      const entry = (bySpecialist[step.specialist] ||= { steps: 0, escalated: 0 });
      if (["completed", "failed"].includes(step.status)) entry.steps += 1;
      if (step.escalated) entry.escalated += 1;
      if (step.latency_ms != null) latencies.push(step.latency_ms);
    }
  }
  const p50 = percentile(latencies, 0.5);
  const p95 = percentile(latencies, 0.95);
  $("#hour").replaceChildren(
    el(
      "div",
      { class: "cards" },
      el(
        "div",
        { class: "card", "data-figure": "states" },
        el("h3", {}, `${tasks.length} tasks`),
        ...Object.entries(byState).map(([name, count]) => el("p", {}, stateBadge(name), ` ${count}`)),
      ),
      el(
        "div",
        { class: "card", "data-figure": "escalation" },
        el("h3", {}, "Escalation rate"),
        ...Object.entries(bySpecialist).map(([name, e]) =>
          el("p", {}, `${name}: ${e.steps ? ((100 * e.escalated) / e.steps).toFixed(1) : "0.0"}% of ${e.steps} steps`),
        ),
      ),
      el(
        "div",
        { class: "card", "data-figure": "cost" },
        el("h3", {}, "Cost"),
        el("p", { class: "figure" }, usd(cost)),
        el("p", { class: "muted" }, `all-teacher would be ${usd(allTeacher)}`),
      ),
      el(
        "div",
        { class: "card", "data-figure": "latency" },
        el("h3", {}, "Step latency"),
        el("p", {}, p50 == null ? "no steps" : `p50 ${Math.round(p50)} ms · p95 ${Math.round(p95)} ms`),
      ),
    ),
  );
}

// --- views, key, start -------------------------------------------------------------------------

function show(view) {
  state.view = view;
  for (const button of document.querySelectorAll("#tabs button")) {
    button.classList.toggle("active", button.dataset.view === view);
  }
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== `view-${view}`;
  }
  if (view === "hour") refreshHour().catch(report);
  if (view === "specialists" || view === "submit") refreshSpecialists().catch(report);
}

function report(exc) {
  if (exc instanceof Unauthorized) {
    askForKey(exc.message);
    return;
  }
  setStatus(`error: ${exc.message}`);
}

function askForKey(why) {
  $("#app").hidden = true;
  $("#key-form").hidden = false;
  $("#key-error").textContent = sessionStorage.getItem(KEY) ? why : "";
  sessionStorage.removeItem(KEY);
  $("#forget-key").hidden = true;
}

let timers = [];

async function start() {
  try {
    await refreshSpecialists();
  } catch (exc) {
    report(exc);
    return;
  }
  $("#key-form").hidden = true;
  $("#app").hidden = false;
  $("#forget-key").hidden = !sessionStorage.getItem(KEY);
  await refreshList().catch(report);
  for (const timer of timers) clearInterval(timer);
  timers = [
    setInterval(() => refreshList().catch(report), LIST_EVERY_MS),
    setInterval(() => {
      if (state.view === "hour") refreshHour().catch(report);
    }, HOUR_EVERY_MS),
  ];
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  $("#key").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, event.target.elements.key.value.trim());
    event.target.reset();
    start();
  });
  $("#forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  $("#submit-form").addEventListener("submit", submitTask);
  start();
});

// Switchboard's dashboard: renders what /api/events pushes; the controls post to /api/queries/<id>/control,
// the answers to waiting requests to /api/requests/<id>/answer.
// Plain JavaScript, no build step, nothing fetched from elsewhere. Text from the server is always set
// as text (never as HTML), so an agent's output cannot inject markup into the page.
"use strict";

let csrf = null;
let latest = null;

const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function table(headers, rows, empty) {
  if (!rows.length) return element("p", { class: "empty" }, empty);
  const head = element("tr", {}, ...headers.map((h) => element("th", {}, h)));
  return element("table", {}, element("thead", {}, head), element("tbody", {}, ...rows));
}

const bytes = (n) => (n === null || n === undefined ? "-" : n < 1024 ? `${n} B` : n < 1048576
  ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);
const seconds = (ms) => (ms === null || ms === undefined ? "-" : `${(ms / 1000).toFixed(1)} s`);
const money = (usd) => (usd === null || usd === undefined ? "-" : `$${Number(usd).toFixed(4)}`);
const status = (text) => element("span", { class: `status ${text}` }, text);

function showProblem(text) {
  const problem = $("#problem");
  problem.textContent = text;
  problem.hidden = !text;
}

function renderSummary(state) {
  const s = state.status;
  const count = (counts, key) => counts[key] || 0;
  const cards = [
    ["agents running", count(s.agents_by_status, "running")],
    ["agents ready", count(s.agents_by_status, "ready")],
    ["queries running", count(s.queries_by_status, "running")],
    ["queries paused", count(s.queries_by_status, "paused")],
    ["needs input", count(s.queries_by_status, "needs_input")],
    ["cost", money(s.cost_usd)],
    ["memory entries", s.memory_entries],
    ["vectors", s.vectors],
  ];
  $("#summary").replaceChildren(...cards.map(([label, value]) => element("div", { class: "card" },
    element("b", {}, value), element("span", {}, label))));
}

function renderChart(history) {
  const svg = $("#chart");
  svg.replaceChildren();
  if (history.length < 2) {
    svg.append(svgNode("text", { x: 8, y: 64, fill: "#6b7385", "font-size": 12 }, "collecting samples (every 15 s, and soon after each change)"));
    return;
  }
  const start = history[0][0], span = Math.max(history[history.length - 1][0] - start, 1);
  const line = (index, color) => {
    const top = Math.max(...history.map((sample) => sample[index]), 1e-9);
    const points = history.map((sample) => `${(600 * (sample[0] - start)) / span},${112 - (104 * sample[index]) / top}`);
    svg.append(svgNode("polyline", { points: points.join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
  };
  line(1, "#2f6fde");
  line(2, "#b7791f");
}

function svgNode(tag, attributes, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function renderAgents(agents) {
  $("#agents").replaceChildren(table(
    ["agent", "type", "status", "model", "pid", "uptime", "CPU", "RSS", "tasks", "cost"],
    agents.map((a) => element("tr", { "data-agent": a.agent_id },
      element("td", {}, a.name, element("br"), element("small", {}, a.agent_id)),
      element("td", {}, a.type), element("td", {}, status(a.status)), element("td", {}, a.model || "-"),
      element("td", { class: "num" }, a.pid || "-"),
      element("td", { class: "num" }, a.uptime_s === null ? "-" : `${a.uptime_s} s`),
      element("td", { class: "num" }, a.cpu_seconds === null ? "-" : `${a.cpu_seconds} s`),
      element("td", { class: "num" }, bytes(a.rss_bytes)),
      element("td", { class: "num" }, a.tasks_run), element("td", { class: "num" }, money(a.cost_usd)))),
    "No agents yet: spawn some with agents_spawn_parallel."));
}

function controls(query) {
  if (!query.controllable || !["running", "needs_input", "paused", "queued", "waiting"].includes(query.status)) return null;
  const model = element("input", { placeholder: "model", "aria-label": "model" });
  const act = (action) => () => control(query.query_id, action, action === "change_model" ? model.value : undefined);
  return element("div", { class: "controls" },
    ["running", "needs_input"].includes(query.status) ? element("button", { onclick: act("pause") }, "Pause") : null,
    query.status === "paused" ? element("button", { onclick: act("resume") }, "Resume") : null,
    element("button", { onclick: act("terminate") }, "Terminate"),
    element("span", {}, model, element("button", { onclick: act("change_model") }, "Change model")));
}

function renderQueries(queries) {
  $("#queries").replaceChildren(table(
    ["query", "state", "task", "model", "active", "turns", "tokens", "cost", "output and log"],
    queries.map((q) => element("tr", { "data-query": q.query_id },
      element("td", {}, element("small", {}, q.query_id), element("br"), element("small", {}, q.agent_id)),
      element("td", {}, status(q.status), controls(q)),
      element("td", {}, q.task), element("td", {}, q.model || "-"),
      element("td", { class: "num" }, seconds(q.active_ms)), element("td", { class: "num" }, q.turns ?? "-"),
      element("td", { class: "num" }, q.input_tokens === null ? "-" : `${q.input_tokens} / ${q.output_tokens}`),
      element("td", { class: "num" }, money(q.cost_usd)),
      element("td", {},
        q.error ? element("div", { class: "problem" }, q.error) : null,
        q.output_tail || q.result ? element("pre", {}, q.output_tail || q.result) : null,
        q.log.length ? element("pre", {}, q.log.map((e) => `${new Date(e.at_ms).toLocaleTimeString()} ${e.action} by ${e.actor}: ${e.outcome}`).join("\n")) : null))),
    "No queries yet."));
}

function renderMemory(status) {
  $("#namespaces").replaceChildren(table(["namespace", "entries", "bytes", "expiring within an hour"],
    status.namespaces.map((n) => element("tr", {}, element("td", {}, n.namespace),
      element("td", { class: "num" }, n.entries), element("td", { class: "num" }, bytes(n.bytes)),
      element("td", { class: "num" }, n.expiring_within_hour))),
    "The memory is empty."));
}

function renderUploads(uploads) {
  $("#uploads").replaceChildren(table(["batch", "when", "status", "bucket", "files", "failures"],
    uploads.map((u) => element("tr", {}, element("td", {}, u.key), element("td", {}, new Date(u.at_ms).toLocaleString()),
      element("td", {}, status(u.status || "-")), element("td", {}, u.bucket || "-"),
      element("td", { class: "num" }, u.files ?? "-"),
      element("td", {}, (u.failed || []).map((f) => `${f.key || f.source}: ${f.code}`).join("; ") || "-"))),
    "No upload batches on record."));
}

function renderIndex(status) {
  $("#index").replaceChildren(table(["backend", "vectors", "embedder"],
    [element("tr", {}, element("td", {}, status.vector_backend), element("td", { class: "num" }, status.vectors),
      element("td", {}, status.embedder || "semantic indexing off"))], ""));
}

function answerControls(request) {
  const post = (decision, extra = {}) => () => answer(request.request_id, { decision, ...extra });
  if (request.questions) {
    const pickers = request.questions.map((q) => {
      const picker = element("select", { "aria-label": q.question || "choice" },
        ...(q.options || []).map((o) => element("option", { value: o.label }, `${o.label}${o.description ? ` (${o.description})` : ""}`)));
      return [q.question, picker];
    });
    return element("div", { class: "controls" },
      ...pickers.map(([question, picker]) => element("label", {}, question, element("br"), picker)),
      element("button", { onclick: () => answer(request.request_id, { decision: "allow",
        answers: Object.fromEntries(pickers.map(([question, picker]) => [question, picker.value])) }) }, "Answer"),
      element("button", { onclick: post("deny") }, "Decline"));
  }
  const message = element("input", { placeholder: "why (for the model)", "aria-label": "message" });
  return element("div", { class: "controls" },
    element("button", { onclick: post("allow") }, "Allow"),
    element("button", { onclick: post("always"), title: "allow such requests for the rest of the agent's life" }, "Always"),
    element("span", {}, message, element("button", { onclick: () => answer(request.request_id,
      message.value ? { decision: "deny", message: message.value } : { decision: "deny" }) }, "Deny")));
}

function renderNeedsYou(needs) {
  const box = $("#needs-you");
  box.hidden = !needs.length;
  if (!needs.length) { box.replaceChildren(); return; }
  box.replaceChildren(element("h2", {}, `Needs you (${needs.length})`), ...needs.map((r) => element("div",
    { class: "request", "data-request": r.request_id },
    element("p", {}, element("b", {}, r.agent_name || r.agent_id), ` asks ${r.questions ? "a question" : `to use ${r.tool}`}`,
      element("small", {}, ` · query ${r.query_id} · expires ${new Date(r.expires_ms).toLocaleTimeString()}`)),
    r.questions ? null : element("pre", {}, JSON.stringify(r.input, null, 1)),
    r.suggestions && r.suggestions.length ? element("small", {}, `Always applies: ${JSON.stringify(r.suggestions)}`) : null,
    r.recent_output ? element("details", {}, element("summary", {}, "recent output"), element("pre", {}, r.recent_output)) : null,
    answerControls(r))));
}

function render(state) {
  latest = state;
  if (state.csrf) csrf = state.csrf;
  renderNeedsYou(state.needs_you || []);
  renderSummary(state);
  renderChart(state.history);
  renderAgents(state.agents);
  renderQueries(state.queries);
  renderMemory(state.status);
  renderUploads(state.uploads);
  renderIndex(state.status);
}

async function control(queryId, action, model) {
  showProblem("");
  const response = await fetch(`/api/queries/${encodeURIComponent(queryId)}/control`, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(model === undefined ? { action } : { action, model }),
  });
  const answer = await response.json();
  if (!response.ok) showProblem(answer.error || `${action} failed (${response.status})`);
}

async function answer(requestId, body) {
  showProblem("");
  const response = await fetch(`/api/requests/${encodeURIComponent(requestId)}/answer`, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
  });
  const answered = await response.json();
  if (!response.ok) showProblem(answered.error || `answer failed (${response.status})`);
}

async function search(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const params = new URLSearchParams({ q: form.get("q"), namespace: form.get("namespace") || "" });
  const response = await fetch(`/api/memory/search?${params}`);
  const answer = await response.json();
  if (!response.ok) { showProblem(answer.error); return; }
  $("#hits").replaceChildren(table(["score", "namespace", "key", "value"], answer.hits.map((hit) => element("tr", {},
    element("td", { class: "num" }, hit.score), element("td", {}, hit.namespace), element("td", {}, hit.key),
    element("td", {}, element("pre", {}, JSON.stringify(hit.value, null, 1))))), "Nothing close enough."));
}

function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("state", (message) => {
    $("#live").textContent = "live";
    $("#live").classList.add("on");
    render(JSON.parse(message.data));
  });
  events.onerror = () => { $("#live").textContent = "reconnecting"; $("#live").classList.remove("on"); };
}

for (const button of document.querySelectorAll("#tabs button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll("#tabs button")) other.classList.toggle("active", other === button);
    for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.id === button.dataset.tab);
  });
}
$("#search").addEventListener("submit", search);
fetch("/api/state").then((response) => response.json()).then(render).catch((error) => showProblem(String(error)));
connect();

// Switchboard's dashboard: renders what /api/events pushes; the controls post to /api/queries/<id>/control,
// the answers to waiting requests to /api/requests/<id>/answer; a worktree agent's changes are read from
// /api/agents/<id>/changes and its branch merged with /api/agents/<id>/merge (a dry run first, then a confirm);
// a query's transcript is read from /api/queries/<id>/transcript, page by page, and again each second while it runs.
// Plain JavaScript, no build step, nothing fetched from elsewhere. Text from the server is always set
// as text (never as HTML), so an agent's output cannot inject markup into the page.
"use strict";

let csrf = null;
let latest = null;
// Open review panels (agent id -> their node) and chosen merge strategies: both outlive the agent list's
// re-rendering on each push, so a diff being read or a merge waiting for its confirm stays put.
const reviews = new Map();
const strategies = new Map();
const STRATEGIES = ["merge", "squash", "rebase"];
// Open transcript views (query id -> what is shown and the turn to read next); like the review panels, they
// outlive the query list's re-rendering, and each grows as its query runs.
const transcripts = new Map();
const ENDED = ["completed", "failed", "terminated", "skipped", "lost"];
const TRANSCRIPT_POLL_MS = 1000;

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
  ? `${(n / 1024).toFixed(1)} KiB` : n < 1073741824 ? `${(n / 1048576).toFixed(1)} MiB`
  : `${(n / 1073741824).toFixed(1)} GiB`);
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
    ...s.budgets.map((b) => [b.level === "day" ? "spent today (UTC)" : `call ${b.call_id}`,
      b.budget_usd === null ? money(b.spent_usd) : `${money(b.spent_usd)} of ${money(b.budget_usd)}`]),
    ["memory entries", s.memory_entries],
    ["vectors", s.vectors],
    [`worktrees (${s.workspaces_unmerged} unmerged)`, `${s.workspaces}, ${bytes(s.workspaces_bytes)}`],
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
    ["agent", "type", "status", "model", "pid", "uptime", "CPU", "RSS", "tasks", "cost", "workspace"],
    agents.flatMap((a) => [element("tr", { "data-agent": a.agent_id },
      element("td", {}, a.name, element("br"), element("small", {}, a.agent_id)),
      element("td", {}, a.type), element("td", {}, status(a.status)), element("td", {}, a.model || "-"),
      element("td", { class: "num" }, a.pid || "-"),
      element("td", { class: "num" }, a.uptime_s === null ? "-" : `${a.uptime_s} s`),
      element("td", { class: "num" }, a.cpu_seconds === null ? "-" : `${a.cpu_seconds} s`),
      element("td", { class: "num" }, bytes(a.rss_bytes)),
      element("td", { class: "num" }, a.tasks_run),
      element("td", { class: "num" }, money(a.cost_usd), a.budget_usd === null ? null
        : element("small", {}, ` of ${money(a.budget_usd)}`)),
      element("td", { class: "workspace" }, workspaceCell(a))),
    reviews.has(a.agent_id) ? element("tr", { class: "review-row" },
      element("td", { colspan: 11 }, reviews.get(a.agent_id))) : null].filter(Boolean)),
    "No agents yet: spawn some with agents_spawn_parallel."));
}

function workspaceCell(agent) {
  const w = agent.workspace;
  if (!w) return "-";
  const notes = [w.merged_into ? `merged into ${w.merged_into}` : null, w.discarded ? "discarded" : null]
    .filter(Boolean).join(" · ");
  if (w.discarded) return element("span", {}, element("small", { class: "branch" }, w.branch), element("br"), notes);
  const strategy = element("select", { "aria-label": "merge strategy" },
    ...STRATEGIES.map((name) => element("option", { value: name }, name)));
  strategy.value = strategies.get(agent.agent_id) || "merge";
  strategy.addEventListener("change", () => strategies.set(agent.agent_id, strategy.value));
  return element("span", {}, element("small", { class: "branch" }, w.branch),
    notes ? element("small", { class: "merged" }, ` · ${notes}`) : null,
    element("div", { class: "controls" },
      element("button", { onclick: () => showChanges(agent) }, "Changes"),
      strategy,
      element("button", { onclick: () => dryRunMerge(agent, strategy.value) }, "Merge")));
}

// The review panel of an agent (made on first use), cleared for a new action; `current()` says whether that
// action is still the panel's latest, so an answer that comes back after another click or a close is dropped.
function openReview(agent, ...heading) {
  let panel = reviews.get(agent.agent_id);
  if (!panel) {
    panel = element("div", { class: "review", "data-review": agent.agent_id });
    reviews.set(agent.agent_id, panel);
  }
  const seq = (Number(panel.dataset.seq) || 0) + 1;
  panel.dataset.seq = String(seq);
  const body = element("div", { class: "review-body" }, "\u2026");
  panel.replaceChildren(element("div", { class: "review-head" }, element("b", {}, agent.name), " ", ...heading,
    element("button", { class: "close", onclick: () => closeReview(agent.agent_id) }, "Close")), body);
  if (latest) renderAgents(latest.agents);
  return { body, current: () => reviews.get(agent.agent_id) === panel && panel.dataset.seq === String(seq) };
}

function closeReview(agentId) {
  reviews.delete(agentId);
  if (latest) renderAgents(latest.agents);
}

function diffView(text) {
  return element("pre", { class: "diff" }, ...text.replace(/\n$/, "").split("\n").map((line) => element("span", {
    class: line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff ") ? "meta"
      : line.startsWith("@@") ? "hunk" : line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : "",
  }, `${line}\n`)));
}

// A JSON API call: the answer, or (a refusal, or no answer at all) the problem to show.
async function api(url, init) {
  try {
    const response = await fetch(url, init);
    const answer = await response.json();
    return response.ok ? { answer } : { problem: answer.error || `${url} answered ${response.status}` };
  } catch (error) {
    return { problem: String(error) };
  }
}

const problem = (text) => element("p", { class: "problem" }, text);
const counted = (sign, n) => (n === null || n === undefined ? "binary" : `${sign}${n}`);

async function showChanges(agent) {
  const { body, current } = openReview(agent, "changes on ", element("code", {}, agent.workspace.branch));
  const { answer: changes, problem: refused } = await api(
    `/api/agents/${encodeURIComponent(agent.agent_id)}/changes?diff=1`);
  if (!current()) return;
  if (refused) { body.replaceChildren(problem(refused)); return; }
  const into = changes.base_branch || changes.base.slice(0, 12);
  body.replaceChildren(...[
    element("p", { class: changes.merges_cleanly ? "clean" : "problem" }, changes.merges_cleanly
      ? `merges cleanly into ${into}` : `would conflict with ${into} in ${changes.conflicts.join(", ") || "?"}`,
    changes.merged_into ? ` · merged into ${changes.merged_into}` : null),
    table(["status", "file", "added", "removed"], changes.files.map((f) => element("tr", { "data-file": f.path },
      element("td", {}, f.status), element("td", {}, f.path),
      element("td", { class: "num added" }, counted("+", f.added)),
      element("td", { class: "num removed" }, counted("-", f.removed)))),
    "No changes on the branch beyond where it started."),
    changes.commits.length ? element("details", {}, element("summary", {}, `${changes.commits.length} commit(s)`),
      element("pre", {}, changes.commits.join("\n"))) : null,
    changes.diff ? diffView(changes.diff) : null,
    changes.diff_truncated ? element("p", { class: "empty" }, "The diff is cut here (at 256 KiB); agent_changes or git "
      + "shows all of it.") : null].filter(Boolean));
}

const postMerge = (agentId, body) => api(`/api/agents/${encodeURIComponent(agentId)}/merge`, {
  method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body),
});

// Merge is two steps: the dry run says whether it would go through (nothing changes), and only its
// confirm button merges, with the strategy and target the dry run checked.
async function dryRunMerge(agent, strategy) {
  const { body, current } = openReview(agent, `${strategy} of `, element("code", {}, agent.workspace.branch));
  const { answer: dry, problem: refused } = await postMerge(agent.agent_id, { strategy, dry_run: true });
  if (!current()) return;
  if (refused) { body.replaceChildren(problem(`Dry run: would not merge. ${refused}`)); return; }
  const confirm = element("button", { class: "confirm", onclick: () => confirmMerge(agent, dry, confirm, current, body) },
    `Confirm ${dry.strategy} into ${dry.into}`);
  body.replaceChildren(element("p", { class: "clean" }, `Dry run: merges cleanly into ${dry.into}`,
    element("small", {}, ` (${dry.strategy}; nothing has changed yet)`)),
  element("div", { class: "controls" }, confirm,
    element("button", { onclick: () => closeReview(agent.agent_id) }, "Cancel")));
}

async function confirmMerge(agent, dry, confirm, current, body) {
  confirm.disabled = true;
  const { answer: merged, problem: refused } = await postMerge(agent.agent_id,
    { strategy: dry.strategy, into: dry.into, dry_run: false });
  if (!current()) return;
  body.replaceChildren(refused ? problem(`Not merged: ${refused}`)
    : element("p", { class: "clean merged" }, `Merged into ${merged.into} (${merged.strategy}): `,
      element("code", {}, merged.before.slice(0, 12)), " \u2192 ", element("code", {}, merged.after.slice(0, 12))));
  await refresh();
}

function controls(query) {
  if (!query.controllable || !["running", "needs_input", "paused", "queued", "waiting"].includes(query.status)) return null;
  const model = element("input", { placeholder: "model", "aria-label": "model" });
  const budget = element("input", { placeholder: "USD", "aria-label": "budget in USD", type: "number", min: "0",
    step: "0.01" });
  const act = (action) => () => control(query.query_id, action, action === "change_model" ? model.value : undefined,
    action === "change_budget" ? Number(budget.value) : undefined);
  return element("div", { class: "controls" },
    ["running", "needs_input"].includes(query.status) ? element("button", { onclick: act("pause") }, "Pause") : null,
    query.status === "paused" ? element("button", { onclick: act("resume") }, "Resume") : null,
    element("button", { onclick: act("terminate") }, "Terminate"),
    element("span", {}, model, element("button", { onclick: act("change_model") }, "Change model")),
    element("span", {}, budget, element("button", { onclick: act("change_budget") }, "Set budget")));
}

function toggleTranscript(queryId) {
  const open = transcripts.get(queryId);
  if (open) {
    clearTimeout(open.timer);
    transcripts.delete(queryId);
  } else {
    const view = { node: element("div", { class: "transcript", "data-transcript": queryId }, "\u2026"), entries: [],
      nextTurn: 0, timer: null };
    transcripts.set(queryId, view);
    readTranscript(queryId, view);
  }
  if (latest) renderQueries(latest.queries);
}

// Reads from the turn the last page named; that turn's entries are read again (it may have grown while the
// query ran), so they replace what was shown of it. Reads on at once while pages follow, each second while
// the query runs, and stops once it has ended and all is shown (or the view was closed).
async function readTranscript(queryId, view) {
  const since = view.nextTurn;
  const { answer, problem: refused } = await api(
    `/api/queries/${encodeURIComponent(queryId)}/transcript?since_turn=${since}`);
  if (transcripts.get(queryId) !== view) return;
  if (refused) { view.node.replaceChildren(problem(refused)); return; }
  view.entries = view.entries.filter((entry) => entry.turn < since).concat(answer.entries);
  const more = answer.next_turn !== undefined && answer.next_turn !== null;
  if (more) view.nextTurn = answer.next_turn;
  view.node.replaceChildren(...view.entries.map(transcriptEntry),
    answer.output_tail !== undefined ? element("pre", {}, answer.output_tail) : null,
    element("small", { class: "empty" }, ENDED.includes(answer.status) ? `query ${answer.status}` : "live \u2026"));
  if (more && answer.next_turn > since) view.timer = setTimeout(() => readTranscript(queryId, view), 0);
  else if (!ENDED.includes(answer.status)) view.timer = setTimeout(() => readTranscript(queryId, view), TRANSCRIPT_POLL_MS);
}

function transcriptEntry(entry) {
  const line = (label, text, kind = "") => element("div", { class: `entry ${entry.type} ${kind}`, "data-type": entry.type },
    element("b", {}, label), " ", text);
  switch (entry.type) {
    case "turn": return line(`turn ${entry.turn}`, entry.model || "");
    case "text": return line("", element("pre", {}, entry.text));
    case "tool_use": return line(`\u2192 ${entry.name}`, element("pre", {}, JSON.stringify(entry.input, null, 1)));
    case "tool_result": return line(entry.is_error ? "\u2190 error" : "\u2190 result", element("pre", {}, entry.content),
      entry.is_error ? "problem" : "");
    case "usage": return line("", element("small", {}, `tokens: ${JSON.stringify(entry.usage)}`));
    case "result": return line(entry.is_error ? "ended with an error" : "done",
      `${entry.turns ?? "-"} turns, ${money(entry.cost_usd)}`);
    default: return line("", element("small", {}, entry.text || JSON.stringify(entry)));
  }
}

function renderQueries(queries) {
  $("#queries").replaceChildren(table(
    ["query", "state", "task", "model", "active", "turns", "tokens", "cost", "output and log"],
    queries.flatMap((q) => [element("tr", { "data-query": q.query_id },
      element("td", {}, element("small", {}, q.query_id), element("br"), element("small", {}, q.agent_id)),
      element("td", {}, status(q.status), controls(q)),
      element("td", {}, q.task), element("td", {}, q.model || "-"),
      element("td", { class: "num" }, seconds(q.active_ms)), element("td", { class: "num" }, q.turns ?? "-"),
      element("td", { class: "num" }, q.input_tokens === null ? "-" : `${q.input_tokens} / ${q.output_tokens}`),
      element("td", { class: "num" }, money(q.cost_usd), q.budget_usd === null ? null
        : element("small", {}, ` of ${money(q.budget_usd)}`)),
      element("td", {},
        q.budget_reached ? element("div", { class: "problem" }, q.budget_reached) : null,
        q.error ? element("div", { class: "problem" }, q.error) : null,
        q.output_tail || q.result ? element("pre", {}, q.output_tail || q.result) : null,
        q.log.length ? element("pre", {}, q.log.map((e) => `${new Date(e.at_ms).toLocaleTimeString()} ${e.action} by ${e.actor}: ${e.outcome}`).join("\n")) : null,
        element("button", { class: "show-transcript", onclick: () => toggleTranscript(q.query_id) },
          transcripts.has(q.query_id) ? "Hide transcript" : "Transcript"))),
    transcripts.has(q.query_id) ? element("tr", { class: "transcript-row" },
      element("td", { colspan: 9 }, transcripts.get(q.query_id).node)) : null].filter(Boolean)),
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

async function control(queryId, action, model, budgetUsd) {
  showProblem("");
  const body = { action };
  if (model !== undefined) body.model = model;
  if (budgetUsd !== undefined) body.budget_usd = budgetUsd;
  const response = await fetch(`/api/queries/${encodeURIComponent(queryId)}/control`, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
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

async function refresh() {
  try {
    const response = await fetch("/api/state");
    const state = await response.json();
    if (response.ok) render(state);
    else showProblem(state.error || `the state could not be read (${response.status})`);
  } catch (error) {
    showProblem(String(error));
  }
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
refresh();
connect();

"""`ServerMetrics`: what ``/metrics`` serves, in Prometheus' text format (prometheus-client).

Two kinds of figures: events counted as they happen (tool calls by tool and outcome with their
latency, agent spawn times, uploaded bytes and files), and state read when Prometheus scrapes
(memory entries and bytes by namespace, vectors, agents and queries by state, cost and tokens by
model). Each server has a registry of its own (never prometheus-client's global one), so two
servers in one process, as in tests, never mix their figures.

The state is handed in as `StateFigures`, read by whoever owns the stores (`Services.state_figures`),
so this module knows only the shapes it renders, never the engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Tool calls run from a fraction of a millisecond (a retrieve) to minutes (a spawn with wait).
_CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# A claude agent takes ~0.35 s to start on a quiet machine, an exec agent a few ms, a warm one ~1 ms.
_SPAWN_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# A person answers in seconds to minutes; a client's elicitation at once; a timeout after 15 minutes.
_DECISION_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


class NamespaceFigures(Protocol):
    """What the gauges show of one memory namespace (`server.memory.NamespaceStats` fits)."""

    @property
    def namespace(self) -> str: ...
    @property
    def entries(self) -> int: ...
    @property
    def bytes(self) -> int: ...


class ModelFigures(Protocol):
    """What the gauges show of one model's usage (`server.queries.records.ModelUsage` fits)."""

    @property
    def model(self) -> str: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cost_usd(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BudgetFigures:
    """The day's budget or a spawn call's (``call_id``): the limit (None: none), spent, left."""

    level: str
    call_id: str
    spent_usd: float
    budget_usd: float | None
    remaining_usd: float | None


@dataclass(frozen=True, slots=True)
class StateFigures:
    """The state the gauges show, read at scrape time."""

    namespaces: Sequence[NamespaceFigures]
    vectors: int
    agents_by_status: Mapping[str, int]
    queries_by_status: Mapping[str, int]
    usage_by_model: Sequence[ModelFigures]
    pending_requests: Mapping[str, int]  # by kind: permission, question
    budgets: Sequence[BudgetFigures] = ()
    budget_reached_queries: int = 0  # queries a budget paused or ended


class ServerMetrics:
    """The figures of one server; `render` reads the current state and answers the exposition text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.tool_calls = Counter("switchboard_tool_calls", "MCP tool calls, by tool and outcome (ok or the error "
                                  "code).", ["tool", "outcome"], registry=registry)
        self.tool_seconds = Histogram("switchboard_tool_call_seconds", "Time to answer an MCP tool call.", ["tool"],
                                      buckets=_CALL_BUCKETS, registry=registry)
        self.spawn_seconds = Histogram("switchboard_agent_spawn_seconds", "Time from spawn to ready, per agent.",
                                       ["runtime"], buckets=_SPAWN_BUCKETS, registry=registry)
        self.upload_bytes = Counter("switchboard_upload_bytes", "Bytes uploaded by upload_batch.", registry=registry)
        self.upload_files = Counter("switchboard_upload_files", "Files upload_batch handled, by outcome (uploaded, "
                                    "or the error code).", ["outcome"], registry=registry)
        self._memory_entries = Gauge("switchboard_memory_entries", "Live memory entries, by namespace.",
                                     ["namespace"], registry=registry)
        self._memory_bytes = Gauge("switchboard_memory_bytes", "Bytes of live memory values, by namespace.",
                                   ["namespace"], registry=registry)
        self._vectors = Gauge("switchboard_vectors", "Vectors in the semantic index.", registry=registry)
        self._agents = Gauge("switchboard_agents", "Agents on record, by status.", ["status"], registry=registry)
        self._queries = Gauge("switchboard_queries", "Queries on record, by status.", ["status"], registry=registry)
        self._cost = Gauge("switchboard_cost_usd", "Cost of ended queries, by model (as the runtime reported it).",
                           ["model"], registry=registry)
        self._tokens = Gauge("switchboard_tokens", "Tokens of ended queries, by model and direction.",
                             ["model", "direction"], registry=registry)
        self._pending_requests = Gauge("switchboard_pending_requests", "Permission requests and questions waiting "
                                       "for an answer, by kind (permission, question).", ["kind"], registry=registry)
        self._budget_spent = Gauge("switchboard_budget_spent_usd", "Spent against a budget (estimated live): today's "
                                   "(level day) and each live spawn call's (level call).", ["level", "call_id"],
                                   registry=registry)
        self._budget_limit = Gauge("switchboard_budget_usd", "The budget, where one is set.", ["level", "call_id"],
                                   registry=registry)
        self._budget_remaining = Gauge("switchboard_budget_remaining_usd", "What is left of the budget.",
                                       ["level", "call_id"], registry=registry)
        self._budget_reached = Gauge("switchboard_budget_reached_queries", "Queries a budget paused or terminated.",
                                     registry=registry)
        self._decision_seconds = Histogram("switchboard_request_decision_seconds", "Time from a permission request or "
                                          "question to its end, by outcome (allowed, denied, expired, cancelled).",
                                          ["outcome"], buckets=_DECISION_BUCKETS, registry=registry)

    def record_decision(self, outcome: str, seconds: float) -> None:
        """A permission request or question ended (``outcome``: its final status) after ``seconds``."""
        self._decision_seconds.labels(outcome=outcome).observe(seconds)

    def record_tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        self.tool_calls.labels(tool=tool, outcome=outcome).inc()
        self.tool_seconds.labels(tool=tool).observe(seconds)

    def render(self, state: StateFigures) -> bytes:
        """The exposition text, with the state gauges set from ``state``."""
        _reset(self._memory_entries, self._memory_bytes)
        for namespace in state.namespaces:
            self._memory_entries.labels(namespace=namespace.namespace).set(namespace.entries)
            self._memory_bytes.labels(namespace=namespace.namespace).set(namespace.bytes)
        self._vectors.set(state.vectors)
        _reset(self._agents, self._queries, self._cost, self._tokens, self._pending_requests, self._budget_spent,
               self._budget_limit, self._budget_remaining)
        for budget in state.budgets:
            labels = {"level": budget.level, "call_id": budget.call_id}
            self._budget_spent.labels(**labels).set(budget.spent_usd)
            if budget.budget_usd is not None:
                self._budget_limit.labels(**labels).set(budget.budget_usd)
                self._budget_remaining.labels(**labels).set(budget.remaining_usd or 0.0)
        self._budget_reached.set(state.budget_reached_queries)
        for kind in ("permission", "question"):
            self._pending_requests.labels(kind=kind).set(state.pending_requests.get(kind, 0))
        for status, count in state.agents_by_status.items():
            self._agents.labels(status=status).set(count)
        for status, count in state.queries_by_status.items():
            self._queries.labels(status=status).set(count)
        for usage in state.usage_by_model:
            self._cost.labels(model=usage.model).set(usage.cost_usd)
            self._tokens.labels(model=usage.model, direction="input").set(usage.input_tokens)
            self._tokens.labels(model=usage.model, direction="output").set(usage.output_tokens)
        return generate_latest(self.registry)


def _reset(*gauges: Gauge) -> None:
    # A namespace deleted or a state emptied since the last scrape must not linger with its old value.
    for gauge in gauges:
        gauge.clear()

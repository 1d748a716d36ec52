"""Budgets: the most a query, an agent, a spawn call and the server per UTC day may spend.

Spend is counted from what is known at each moment: the usage recorded for every task that ended
(on its agent's row, on its call, for the day) plus the live estimate of every task still running,
which the runtimes update as each model turn streams (`ClaudeSession.live`, an exec task's JSON
lines). So a limit is found reached within the turn that crosses it; the registry then pauses or
terminates the query that reached it (``on_budget``), logged as ``rule:budget``.

The engine (agents) keeps the budgets; `server.queries` asks them about its queries.

A limit is in USD, in tokens (input and output as the runtime counts them), or both; a level with
neither has no limit. Money is estimated at list prices (`server.agents.pricing`): a model with no
price leaves the USD figure unknown, and only the token limits hold for it.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from server.agents.live import Agent
from server.agents.outcome import Usage
from server.agents.records import AgentRecord, AgentRecords, RowChange
from server.agents.spend import Limit, Spend, spend_of
from server.clock import Clock
from server.errors import BudgetExhausted, NotFound

logger = logging.getLogger(__name__)

BudgetLevel = Literal["query", "agent", "call", "day"]
DAY_SETTING = "SWITCHBOARD_BUDGET_USD_PER_DAY"


@dataclass(frozen=True, slots=True)
class BudgetState:
    """One level's limit, what was spent against it, and what is left (None: no limit in that unit)."""

    level: BudgetLevel
    limit: Limit
    spent: Spend

    @property
    def remaining_usd(self) -> float | None:
        return max(self.limit.usd - self.spent.usd, 0.0) if self.limit.usd is not None else None

    @property
    def remaining_tokens(self) -> int | None:
        return max(self.limit.tokens - self.spent.tokens, 0) if self.limit.tokens is not None else None


@dataclass(frozen=True, slots=True)
class AgentBudget:
    """An agent's own limit, what reaching a limit does to its queries, and the spawn call it shares one with."""

    usd: float | None = None
    tokens: int | None = None
    on_budget: Literal["pause", "terminate"] = "pause"
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class QueryBudget:
    """A query's own limit, as the budgets see it (the query's record belongs to `server.queries`)."""

    query_id: str
    limit: Limit
    on_budget: str | None  # None: its agent's
    recorded: Spend = field(default_factory=Spend)  # what its ended task used (a running one's is its agent's live usage)


@dataclass(frozen=True, slots=True)
class Reached:
    """A budget a running query has reached, and what is done about it."""

    level: BudgetLevel
    action: Literal["pause", "terminate"]
    why: str  # "query budget reached: $0.0123 of budget_usd $0.0100"


@dataclass(slots=True)
class CallBudget:
    """A spawn call's shared budget, and the usage of its agents' ended tasks."""

    call_id: str
    limit: Limit
    ended: Spend = field(default_factory=Spend)


def _utc_day(now_ms: int) -> datetime.date:
    return datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC).date()


def _day_start_ms(day: datetime.date) -> int:
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp() * 1000)


def call_recorded(call: CallBudget, created_ms: int) -> RowChange:
    return RowChange("INSERT INTO spawn_calls (id, budget_usd, created_ms) VALUES (?, ?, ?)",
                     (call.call_id, call.limit.usd, created_ms))


class Budgets:
    """The budgets of this server's queries, agents, spawn calls and day. `open` before use."""

    def __init__(self, per_day_usd: float | None, database: AgentRecords, clock: Clock,
                 live_agents: Callable[[], Iterable[Agent]]) -> None:
        self.per_day_usd = per_day_usd
        self._database = database
        self._clock = clock
        self._live_agents = live_agents
        self._day = _utc_day(clock.now_ms())
        self._day_ended = 0.0  # cost of the tasks that ended today (UTC)
        self._calls: dict[str, CallBudget] = {}

    async def open(self) -> None:
        """Reads what the tasks that ended today cost (earlier runs of the server included)."""
        self._day = _utc_day(self._clock.now_ms())
        rows = await self._database.rows("SELECT COALESCE(SUM(cost_usd), 0) FROM queries WHERE ended_ms >= ?",
                                         (_day_start_ms(self._day),))
        self._day_ended = float(rows[0][0] or 0.0)  # type: ignore[arg-type]

    # -- the day -------------------------------------------------------------------------------

    def _roll_day(self) -> None:
        today = _utc_day(self._clock.now_ms())
        if today != self._day:
            self._day, self._day_ended = today, 0.0

    def day(self) -> BudgetState:
        """Today's spend (UTC): the tasks that ended today and every running task's estimate so far."""
        self._roll_day()
        running = sum((spend_of(agent.live_usage) for agent in self._running_agents()), Spend())
        return BudgetState("day", Limit(self.per_day_usd), Spend(self._day_ended + running.usd, running.tokens))

    def refuse_when_day_spent(self, what: str) -> None:
        """Raises `BudgetExhausted` when the daily budget has nothing left to start ``what`` with."""
        if self.per_day_usd is None:
            return
        day = self.day()
        if (day.remaining_usd or 0.0) <= 0.0:
            raise BudgetExhausted(
                f"{what} refused: the daily budget is spent (${day.spent.usd:.4f} of ${self.per_day_usd:.2f} today, "
                f"$0.00 left until 00:00 UTC); raise {DAY_SETTING} to go on today")

    def task_ended(self, cost_usd: float | None, agent: AgentRecord, usage: Usage) -> None:
        """A task ended: its cost counts toward the day, its usage toward its agent's call."""
        self._roll_day()
        self._day_ended += cost_usd or 0.0
        if agent.call_id is not None and (call := self._calls.get(agent.call_id)) is not None:
            call.ended = call.ended + spend_of(usage)

    # -- spawn calls ---------------------------------------------------------------------------

    def new_call(self, call_id: str, budget_usd: float) -> RowChange:
        """A spawn call with a shared budget: tracked from now, and the row that records it."""
        call = CallBudget(call_id, Limit(budget_usd))
        self._calls[call_id] = call
        return call_recorded(call, self._clock.now_ms())

    async def call(self, call_id: str) -> CallBudget:
        """The call's budget (read back from the database for a call of an earlier run)."""
        known = self._calls.get(call_id)
        if known is not None:
            return known
        rows = await self._database.rows("SELECT budget_usd FROM spawn_calls WHERE id = ?", (call_id,))
        if not rows:
            raise NotFound(f"no spawn call {call_id!r} with a budget")
        (budget_usd,) = rows[0]
        live = {agent.id for agent in self._live_agents()}
        ended = Spend()
        for agent_id, cost, tokens in await self._database.rows(
                "SELECT id, cost_usd, input_tokens + output_tokens FROM agents WHERE call_id = ?", (call_id,)):
            if agent_id not in live:
                ended = ended + Spend(float(cost or 0.0), int(tokens or 0))  # type: ignore[arg-type, call-overload]
        call = CallBudget(call_id, Limit(float(budget_usd) if budget_usd is not None else None))  # type: ignore[arg-type]
        # A live agent's totals are on its record (its ended tasks) and in its live usage.
        call.ended = ended + sum((Spend(agent.record.cost_usd, agent.record.input_tokens + agent.record.output_tokens)
                                  for agent in self._live_agents() if agent.record.call_id == call_id), Spend())
        self._calls[call_id] = call
        return call

    def change_call(self, call: CallBudget, limit: Limit) -> RowChange:
        call.limit = limit
        return RowChange("UPDATE spawn_calls SET budget_usd = ? WHERE id = ?", (limit.usd, call.call_id))

    def call_state(self, call: CallBudget) -> BudgetState:
        running = sum((spend_of(agent.live_usage) for agent in self._running_agents()
                       if agent.record.call_id == call.call_id), Spend())
        return BudgetState("call", call.limit, call.ended + running)

    def calls(self) -> list[tuple[str, BudgetState]]:
        """The budgets of the calls this server tracks that still have live agents, by call id."""
        live_calls = {agent.record.call_id for agent in self._live_agents() if agent.record.call_id is not None}
        return [(call_id, self.call_state(call)) for call_id, call in self._calls.items() if call_id in live_calls]

    def shown(self) -> list[tuple[str | None, BudgetState]]:
        """What status and /metrics show: the day's (no call id), then each live call's."""
        return [(None, self.day()), *self.calls()]

    # -- a query and its agent -----------------------------------------------------------------

    @staticmethod
    def query_state(query: QueryBudget, live: Usage | None) -> BudgetState:
        return BudgetState("query", query.limit, spend_of(live) if live is not None else query.recorded)

    @staticmethod
    def agent_state(agent: AgentRecord, live: Usage | None) -> BudgetState:
        ended = Spend(agent.cost_usd, agent.input_tokens + agent.output_tokens)
        return BudgetState("agent", Limit(agent.budget_usd, agent.budget_tokens), ended + spend_of(live))

    def reached(self, query: QueryBudget, agent: Agent) -> Reached | None:
        """The first budget the query's running task has reached (its own, its agent's, its call's,
        the day's), or None."""
        live = agent.live_usage if agent.running is not None and agent.running.id == query.query_id else None
        action: Literal["pause", "terminate"] = "terminate" if (query.on_budget or agent.record.on_budget) == \
            "terminate" else "pause"
        states = [self.query_state(query, live), self.agent_state(agent.record, live)]
        call = self._calls.get(agent.record.call_id) if agent.record.call_id is not None else None
        if call is not None:
            states.append(self.call_state(call))
        if self.per_day_usd is not None:
            states.append(self.day())
        for state in states:
            how = state.limit.reached_by(state.spent)
            if how is not None:
                return Reached(state.level, action, f"{state.level} budget reached: {how}")
        return None

    def backstop_usd(self, agent: AgentRecord) -> float | None:
        """What a claude agent's CLI is started with as its own limit (claude-agent-sdk's
        ``max_budget_usd``, over the whole session): the agent's or its call's USD budget, whichever
        is smaller, where reaching it terminates. A budget that pauses may be raised while the session
        runs, which the CLI's limit could not follow, so Switchboard alone keeps that one."""
        if agent.on_budget != "terminate":
            return None
        call = self._calls.get(agent.call_id) if agent.call_id is not None else None
        limits = [usd for usd in (agent.budget_usd, call.limit.usd if call is not None else None) if usd is not None]
        return min(limits) if limits else None

    def _running_agents(self) -> list[Agent]:
        return [agent for agent in self._live_agents() if agent.running is not None]

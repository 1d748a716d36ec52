"""Adaptive rules: settings that steer running queries without a client (GAP-003's optimiser).

Each rule names conditions (all must hold) and one action. Every second (`query_rules_interval_s`)
`RuleEngine` checks each running query; a rule fires at most once per query, as a control action
in the query's log attributed to ``rule:<name>``. Off unless rules are configured::

    [[query_rules]]
    name = "runaway"
    max_runtime_s = 600
    action = "terminate"

    [[query_rules]]
    name = "cheaper-after-five-turns"
    min_turns = 5
    action = "change_model"
    model = "claude-haiku-4-5"

Claude Code reports a query's cost when it ends; while it runs, tokens come from each model turn's
usage and cost is estimated from them at the turn's model's list price (`server.agents.pricing`),
so cost rules act within an agent's first query; a model without a price has no cost estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from server.agents.outcome import Usage
from server.clock import Clock
from server.config.query_rule import QueryRule

__all__ = ["Act", "Observe", "RuleEngine", "RunningQuery", "reasons"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunningQuery:
    """What a rule sees of one running query."""

    query_id: str
    agent_type: str
    model: str | None
    active_s: float
    usage: Usage
    turn_latency_s: float | None


def reasons(rule: QueryRule, query: RunningQuery) -> list[str] | None:
    """Why ``rule`` fires for ``query`` (one phrase per condition), or None when it does not."""
    if rule.agent_type is not None and rule.agent_type != query.agent_type:
        return None
    if rule.action == "change_model" and query.model == rule.model:
        return None
    found: list[str] = []
    usage = query.usage
    checks: list[tuple[float | None, float | None, str]] = [
        (rule.max_runtime_s, query.active_s, "active {value:.1f} s > {limit:g} s"),
        (rule.max_cost_usd, usage.cost_usd, "cost ${value:.4f} > ${limit:g}"),
        (rule.max_tokens, (usage.input_tokens or 0) + (usage.output_tokens or 0) if usage.input_tokens is not None
         or usage.output_tokens is not None else None, "{value:.0f} tokens > {limit:g}"),
        (rule.max_turn_latency_s, query.turn_latency_s, "last turn began after {value:.2f} s > {limit:g} s"),
    ]
    for limit, value, phrase in checks:
        if limit is None:
            continue
        if value is None or value <= limit:
            return None
        found.append(phrase.format(value=value, limit=limit))
    if rule.min_turns is not None:
        if (usage.turns or 0) < rule.min_turns:
            return None
        found.append(f"{usage.turns} turns >= {rule.min_turns}")
    return found


Act = Callable[[str, QueryRule, list[str]], Awaitable[None]]
Observe = Callable[[], list[RunningQuery]]


class RuleEngine:
    """Checks the rules against the running queries every ``interval_s``; each fires once per query."""

    def __init__(self, rules: list[QueryRule], interval_s: float, observe: Observe, act: Act, clock: Clock) -> None:
        self._rules = rules
        self._interval_s = interval_s
        self._observe = observe
        self._act = act
        self._clock = clock
        self._fired: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._rules and self._task is None:
            self._task = asyncio.create_task(self._run(), name="query-rules")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check_once(self) -> None:
        """One pass over the running queries (the loop's body; tests call it directly too)."""
        running = self._observe()
        live = {query.query_id for query in running}
        self._fired = {fired for fired in self._fired if fired[0] in live}
        for query in running:
            for rule in self._rules:
                if (query.query_id, rule.name) in self._fired:
                    continue
                why = reasons(rule, query)
                if why is None:
                    continue
                self._fired.add((query.query_id, rule.name))
                try:
                    await self._act(query.query_id, rule, why)
                except Exception:  # one failed action must not stop the rules for everyone else
                    logger.exception("rule %s on query %s failed", rule.name, query.query_id)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check_once()

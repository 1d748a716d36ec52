"""`QueryRegistry`: start queries on live agents, steer them while they run, list them, wait for them.

A query is one task run by one agent (`records.QueryRecord`, kept by `book.QueryBook`). Its states::

    waiting/queued -> running <-> paused -> completed | failed | terminated     (lost after a crash)

Every action checks the query's state first and changes nothing when it does not fit (a
`Conflict` naming the state). Each action that is carried out is written to the query's log
(`records.QueryEvent`, and the ``query-events`` memory namespace) with who asked (``client`` or
``rule:<name>``) and its effect: ``now`` when the running work already obeys it, ``next_query``
when it applies from the agent's next query.

What is done to the agent's processes (SIGSTOP and SIGCONT, an interrupt through the control
protocol, signals) is `server.agents.steering`'s; what is recorded about the query is the book's.
Terminating a claude query interrupts it, so the agent stays up for its next query; only when
that is not acknowledged in time (or for exec agents) do signals end the work.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from server.agents import steering
from server.agents.budgets import Budgets, BudgetState, QueryBudget, Reached
from server.agents.launch import SpawnFailed, make_dirs
from server.agents.live import Agent
from server.agents.outcome import Usage
from server.agents.spend import Limit, Spend
from server.agents.supervisor import Supervisor
from server.agents.transcript import (
    ANSWER_BYTES,
    TranscriptPage,
    exec_page,
    page_of,
    read_entries,
    transcript_path,
)
from server.agents.types import type_environment
from server.config import Settings
from server.config.agent_type import ON_BUDGET_ACTIONS, PERMISSION_MODES
from server.config.query_rule import QueryRule
from server.errors import BudgetExhausted, Conflict, Forbidden, InvalidArgument, NotFound
from server.queries.approvals import PermissionRequest
from server.queries.book import ActiveQuery, QueryBook
from server.queries.commands import CommandResult, allowed_executable, command_argv, run_command
from server.queries.records import ACTIVE_QUERY_STATUSES, ENDED_QUERY_STATUSES, QueryEvent, QueryRecord, QueryRecords
from server.queries.rules import RuleEngine, RunningQuery

logger = logging.getLogger(__name__)

ControlAction = Literal["pause", "resume", "terminate", "change_model", "change_permissions", "change_budget",
                        "execute_command", "approve", "deny"]
CONTROL_ACTIONS: tuple[ControlAction, ...] = (
    "pause", "resume", "terminate", "change_model", "change_permissions", "change_budget", "execute_command",
    "approve", "deny")
BudgetScope = Literal["query", "agent", "call"]
BUDGET_SCOPES: tuple[BudgetScope, ...] = ("query", "agent", "call")
BUDGET_ACTOR = "rule:budget"
Effect = Literal["now", "next_query"]


@dataclass(slots=True)
class ControlOutcome:
    """What one control action did."""

    query: QueryRecord
    effect: Effect
    detail: dict[str, Any] = field(default_factory=dict)
    command: CommandResult | None = None
    request: PermissionRequest | None = None  # approve / deny: the request as decided


@dataclass(slots=True)
class QueryView:
    """A query as listed: its record (live numbers folded in while it runs), log and output when asked."""

    record: QueryRecord
    active_ms: int | None
    wall_ms: int | None
    log: list[QueryEvent] | None = None
    output_tail: str | None = None
    pending_requests: list[PermissionRequest] = field(default_factory=list)
    budget: BudgetState | None = None  # its own budget, when it has one
    transcript: TranscriptPage | None = None  # asked for, of a claude query (an exec query's is its output tail)


@dataclass(slots=True)
class WaitOutcome:
    queries: list[QueryView]
    timed_out: bool
    pending: list[str]


class QueryRegistry:
    """Queries of this server's agents. Open with the supervisor; `close` before it closes."""

    def __init__(self, supervisor: Supervisor, book: QueryBook, settings: Settings) -> None:
        self._supervisor = supervisor
        self.book = book
        self.records: QueryRecords = book.records
        self._settings = settings
        self._clock = supervisor.clock
        self.rules = RuleEngine(settings.query_rules, settings.query_rules_interval_s, self._observe,
                                self._rule_fired, supervisor.clock)
        self.rules.start()
        self.budgets = supervisor.budgets
        book.on_spending = self._check_budget

    async def close(self) -> None:
        await self.rules.close()

    # -- starting ------------------------------------------------------------------------------

    async def start(self, agent_id: str, task: str, *, model: str | None = None,
                    permission_mode: str | None = None, budget: Limit | None = None,
                    on_budget: str | None = None) -> QueryRecord:
        """Queues ``task`` on a live agent; it runs after the agent's earlier queries, within
        ``budget`` (its own) and its agent's, its call's and the day's. Refused with
        `BudgetExhausted` when one of those is spent already."""
        agent = await self._live_agent(agent_id)
        if not task.strip():
            raise InvalidArgument("task is empty; say what the agent should do")
        if permission_mode is not None:
            self._check_mode(agent, permission_mode)
        if on_budget is not None and on_budget not in ON_BUDGET_ACTIONS:
            raise InvalidArgument(f"on_budget {on_budget!r} is not one of {', '.join(ON_BUDGET_ACTIONS)}")
        self.budgets.refuse_when_day_spent("query_start")
        await self._refuse_when_agent_spent(agent)
        active = await self.book.add(agent.record, task, model=model, permission_mode=permission_mode,
                                     limit=budget, on_budget=on_budget)
        self._supervisor.spawn_background(self._run(agent, active), name=f"query-{active.id}")
        return active.record

    async def _run(self, agent: Agent, active: ActiveQuery) -> None:
        try:
            await self._supervisor.run_task(agent, active, active.record.task, None)
        except SpawnFailed as error:
            await self.book.close(active.id, "failed", str(error))
        except Exception as error:
            logger.exception("query %s of agent %s failed unexpectedly", active.id, agent.id)
            await self.book.close(active.id, "failed", f"internal: {error!r}")

    # -- control -------------------------------------------------------------------------------

    async def control(self, action: str, query_id: str, *, model: str | None = None,
                      permission_mode: str | None = None, command: str | Sequence[str] | None = None,
                      grace_s: float = 5.0, actor: str = "client", why: Sequence[str] = (),
                      request_id: str | None = None, message: str | None = None, remember: bool = False,
                      answers: dict[str, str] | None = None, budget: Limit | None = None,
                      budget_scope: str = "query") -> ControlOutcome:
        """Carries out one action on a query that has not ended; raises (changing nothing) when the
        query's state, the arguments or the settings do not allow it."""
        if action not in CONTROL_ACTIONS:
            raise InvalidArgument(f"action {action!r} is not one of {', '.join(CONTROL_ACTIONS)}")
        if action in ("approve", "deny"):
            return await self.answer(query_id, request_id, allow=action == "approve", by=actor, message=message,
                                     remember=remember, answers=answers)
        active = self.book.active(query_id)
        if active is None:
            record = await self.records.query(query_id)
            if record is None:
                raise NotFound(f"no query {query_id!r} (query_list with include_history shows the known ones)")
            if record.status in ACTIVE_QUERY_STATUSES:  # another server sharing the data dir runs it
                owner = await self._supervisor.records.agent(record.agent_id)
                where = f" (pid {owner.server_pid})" if owner is not None else ""
                raise Conflict(f"query {query_id} is {record.status} under another Switchboard server{where} "
                               f"sharing this data dir; {action} it through that server")
            raise Conflict(f"query {query_id} is {record.status}; {action} needs a query that has not ended")
        agent = self._supervisor.live(active.record.agent_id)
        if agent is None:
            raise Conflict(f"query {query_id}'s agent {active.record.agent_id} has ended")
        async with active.control_lock:
            if active.ended.is_set():
                raise Conflict(f"query {query_id} is {active.record.status}; {action} needs a query that has not ended")
            if action == "change_budget":
                outcome = await self._change_budget(agent, active, budget or Limit(), budget_scope)
            else:
                outcome = await self._dispatch(action, agent, active, model=model, permission_mode=permission_mode,
                                                command=command, grace_s=grace_s, actor=actor)
        detail = {**outcome.detail, **({"reasons": list(why)} if why else {}), **({"model": model} if model else {}),
                  **({"permission_mode": permission_mode} if permission_mode else {})}
        if outcome.command is not None:
            detail.update(argv=outcome.command.argv, exit_code=outcome.command.exit_code,
                          timed_out=outcome.command.timed_out)
        await self.book.log(query_id, action, actor, outcome.effect, detail)
        return outcome

    async def answer(self, query_id: str, request_id: str | None, *, allow: bool, by: str, message: str | None = None,
                     remember: bool = False, answers: dict[str, str] | None = None) -> ControlOutcome:
        """Allows or denies a pending permission request of the query (``request_id`` may be left out
        when it has exactly one). The row decides, so this works whichever server runs the query."""
        query = await self.get(query_id)
        if request_id is None:
            pending = await self.book.approvals.pending([query_id])
            if len(pending) != 1:
                raise (InvalidArgument(f"query {query_id} has {len(pending)} pending requests "
                                       f"({', '.join(request.id for request in pending)}): name one with request_id")
                       if pending else Conflict(f"query {query_id} is {query.status} and has no pending request"))
            request_id = pending[0].id
        request = await self.book.approvals.get(request_id)
        if request.query_id != query_id:
            raise InvalidArgument(f"request {request_id} belongs to query {request.query_id}, not {query_id}")
        decided = await self.book.approvals.answer(request_id, allow=allow, by=by, message=message,
                                                   remember=remember, answers=answers)
        if (active := self.book.active(query_id)) is not None:
            await self.book.input_given(active)
        return ControlOutcome(await self.get(query_id), "now", {"request_id": decided.id, "status": decided.status},
                              request=decided)

    async def _dispatch(self, action: str, agent: Agent, active: ActiveQuery, *, model: str | None,
                        permission_mode: str | None, command: str | Sequence[str] | None, grace_s: float,
                        actor: str) -> ControlOutcome:
        """Carries out one control action on the query (its checks done, under its control lock)."""
        if action == "pause":
            return await self._pause(agent, active)
        if action == "resume":
            return await self._resume(agent, active)
        if action == "terminate":
            return await self._terminate(agent, active, grace_s, actor)
        if action == "change_model":
            if not model or not model.strip():
                raise InvalidArgument("change_model needs `model`, the model to switch to")
            return await self._change_model(agent, active, model.strip())
        if action == "change_permissions":
            if not permission_mode:
                raise InvalidArgument(f"change_permissions needs `permission_mode`: one of {', '.join(PERMISSION_MODES)}")
            return await self._change_permissions(agent, active, permission_mode)
        return await self._execute(agent, active, command_argv(command or []))

    async def _pause(self, agent: Agent, active: ActiveQuery) -> ControlOutcome:
        query = active.record
        if query.status not in ("running", "needs_input"):
            raise Conflict(f"query {query.id} is {query.status}; only a running query can be paused")
        signalled = await steering.signal_work(agent, signal.SIGSTOP, self._supervisor.stray_scan)
        if active.over:  # it ended while the signals went out: its end is what is recorded
            return ControlOutcome(query, "now", {"processes": signalled, "ended": query.status})
        await self.book.change(active, status="paused", paused_at_ms=self._clock.now_ms())
        return ControlOutcome(query, "now", {"processes": signalled})

    async def _resume(self, agent: Agent, active: ActiveQuery) -> ControlOutcome:
        query = active.record
        if query.status != "paused":
            raise Conflict(f"query {query.id} is {query.status}; only a paused query can be resumed")
        reached = self.budgets.reached(self._query_budget(query), agent)
        if reached is not None:
            fix = (f"raise it with change_budget (budget_scope {reached.level!r})" if reached.level != "day"
                   else "the day's budget renews at 00:00 UTC (or raise SWITCHBOARD_BUDGET_USD_PER_DAY)")
            raise Conflict(f"query {query.id} is paused at its {reached.why}; {fix}, then resume")
        signalled = await self._continue(agent, active)
        return ControlOutcome(query, "now", {"processes": signalled})

    async def _continue(self, agent: Agent, active: ActiveQuery) -> int:
        query = active.record
        signalled = await steering.signal_work(agent, signal.SIGCONT, self._supervisor.stray_scan)
        if active.over:
            # Going on, it ran to its end before this call was done (its end, pause included, is
            # recorded): writing "running" now would undo that.
            return signalled
        now = self._clock.now_ms()
        await self.book.change(active, status="needs_input" if active.needs_input.is_set() else "running",
                               paused_at_ms=None,
                               paused_total_ms=query.paused_total_ms + now - (query.paused_at_ms or now))
        return signalled

    async def _terminate(self, agent: Agent, active: ActiveQuery, grace_s: float, actor: str) -> ControlOutcome:
        query = active.record
        active.stopped_by = actor
        await self.book.approvals.cancel_for(query.id, actor, f"the query was terminated by {actor}")
        if query.started_ms is None:  # still waiting its turn: it never runs
            await self.book.close(query.id, "terminated", f"terminated by {actor} before it started")
            return ControlOutcome(query, "now", {"by": "dequeued"})
        if query.status == "paused":
            await self._continue(agent, active)
        if agent.session is not None:
            ended_tools = await steering.interrupt(agent, self._supervisor.stray_scan, grace_s, active.ended)
            if ended_tools is not None:
                return ControlOutcome(query, "now", {"by": "interrupt", "agent": "ready", "tools_ended": ended_tools})
            # Not acknowledged in time: the work is ended by signals, and the agent with it.
            await self._supervisor.end(agent, "terminated", grace_s, error=f"query {query.id} terminated by {actor}")
            await self._wait_ended(active, grace_s)
            return ControlOutcome(query, "now", {"by": "signals", "agent": "terminated"})
        ending = await steering.end_exec_work(agent, actor, grace_s, self._supervisor.stray_scan)
        if ending is not None:
            await self._wait_ended(active, grace_s)
            return ControlOutcome(query, "now", {"by": f"signals ({ending})", "agent": "ready"})
        await self._wait_ended(active, grace_s)  # between its process's exit and its record: ending already
        return ControlOutcome(query, "now", {"by": "ended on its own"})

    # -- budgets -------------------------------------------------------------------------------

    @staticmethod
    def _query_budget(query: QueryRecord) -> QueryBudget:
        return QueryBudget(query.id, Limit(query.budget_usd, query.budget_tokens), query.on_budget,
                           Spend(query.cost_usd or 0.0, (query.input_tokens or 0) + (query.output_tokens or 0)))

    def _check_budget(self, active: ActiveQuery) -> None:
        """A running query's live usage grew: when that reaches one of its budgets, it is paused or
        terminated (in the background: this runs inside the agent's stream, whose end a terminate waits for)."""
        if active.record.status not in ("running", "needs_input") or active.budget_acting:
            return
        agent = self._supervisor.live(active.record.agent_id)
        if agent is None:
            return
        reached = self.budgets.reached(self._query_budget(active.record), agent)
        if reached is not None:
            active.budget_acting = True
            self._supervisor.spawn_background(self._act_on_budget(active, reached), name=f"budget-{active.id}")

    async def _act_on_budget(self, active: ActiveQuery, reached: Reached) -> None:
        logger.info("query %s: %s; %s", active.id, reached.why, reached.action)
        try:
            await self.book.change(active, budget_reached=reached.why)
            await self.control(reached.action, active.id, actor=BUDGET_ACTOR, why=[reached.why],
                               grace_s=self._settings.agent_terminate_grace_s)
        except (Conflict, NotFound):  # it ended, or was paused, between the check and the action
            pass
        except Exception:
            logger.exception("query %s: the budget's %s failed", active.id, reached.action)
        finally:
            active.budget_acting = False

    async def _refuse_when_agent_spent(self, agent: Agent) -> None:
        state = self.budgets.agent_state(agent.record, None)
        how = state.limit.reached_by(state.spent)
        if how is None and agent.record.call_id is not None:
            call = self.budgets.call_state(await self.budgets.call(agent.record.call_id))
            how = call.limit.reached_by(call.spent)
            if how is not None:
                how = f"its spawn call's {how}"
        if how is not None:
            raise BudgetExhausted(f"agent {agent.id}'s budget is spent ({how}): terminate it and resume it with a "
                                  "larger one (agents_spawn_parallel {agents: [{resume, agent_budget_usd}]}), or "
                                  "spawn a new agent")

    async def _change_budget(self, agent: Agent, active: ActiveQuery, limit: Limit, scope: str) -> ControlOutcome:
        """Sets the query's (or its agent's, or its spawn call's) budget; a query a budget paused can
        then be resumed if none is reached any more."""
        if scope not in BUDGET_SCOPES:
            raise InvalidArgument(f"budget_scope {scope!r} is not one of {', '.join(BUDGET_SCOPES)}")
        if not limit.set:
            raise InvalidArgument("change_budget needs budget_usd or budget_tokens (the new limit)")
        query = active.record
        detail: dict[str, Any] = {"budget_scope": scope}
        if scope == "query":
            new = Limit(limit.usd if limit.usd is not None else query.budget_usd,
                        limit.tokens if limit.tokens is not None else query.budget_tokens)
            detail["was"] = {"budget_usd": query.budget_usd, "budget_tokens": query.budget_tokens}
            await self.book.change(active, budget_usd=new.usd, budget_tokens=new.tokens)
        elif scope == "agent":
            record = agent.record
            detail["was"] = {"budget_usd": record.budget_usd, "budget_tokens": record.budget_tokens}
            await self._supervisor.records.commit(self._supervisor.apply_change(
                agent, budget_usd=limit.usd if limit.usd is not None else record.budget_usd,
                budget_tokens=limit.tokens if limit.tokens is not None else record.budget_tokens))
            self._supervisor.changes.changed("agent", agent.id)
        else:
            if agent.record.call_id is None:
                raise InvalidArgument(f"agent {agent.id} was spawned without a call budget; budget_scope 'call' "
                                      "needs one")
            if limit.tokens is not None:
                raise InvalidArgument("a spawn call's budget is in USD only: give budget_usd")
            call = await self.budgets.call(agent.record.call_id)
            detail["was"] = {"budget_usd": call.limit.usd}
            await self._supervisor.records.commit(self.budgets.change_call(call, Limit(limit.usd)))
        detail.update({name: value for name, value in (("budget_usd", limit.usd), ("budget_tokens", limit.tokens))
                       if value is not None})
        still = self.budgets.reached(self._query_budget(query), agent)
        if query.budget_reached is not None and still is None:
            await self.book.change(active, budget_reached=None)
        if still is not None:
            detail["still_reached"] = still.why
        return ControlOutcome(query, "now", detail)

    async def _wait_ended(self, active: ActiveQuery, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(max(timeout_s, 1.0) + 2.0):
                await active.ended.wait()
        except TimeoutError:
            logger.warning("query %s: its work is gone but its end was not recorded in time", active.id)

    async def _change_model(self, agent: Agent, active: ActiveQuery, model: str) -> ControlOutcome:
        return await self._change_setting(agent, active, "model", model)

    async def _change_permissions(self, agent: Agent, active: ActiveQuery, mode: str) -> ControlOutcome:
        self._check_mode(agent, mode)
        # Once set, Switchboard also answers the agent's permission requests under this mode.
        return await self._change_setting(agent, active, "permission_mode", mode)

    async def _change_setting(self, agent: Agent, active: ActiveQuery, setting: steering.LiveSetting,
                              value: str) -> ControlOutcome:
        """A query not started yet starts with the new value; an exec agent's next query does (each
        query is a new process); a claude session gets it live, or nothing changes."""
        query = active.record
        if query.started_ms is None:
            await self.book.change(active, **{setting: value})
            return ControlOutcome(query, "now", {"applies": "when it starts"})
        if agent.session is None:
            await self._supervisor.records.commit(self._supervisor.apply_change(agent, **{setting: value}))
            return ControlOutcome(query, "next_query")
        self._refuse_while_paused(query, f"change_{'model' if setting == 'model' else 'permissions'}")
        try:
            await steering.apply_live(agent, setting, value)
        except Exception as error:  # the SDK raises a bare Exception carrying the CLI's reason
            raise InvalidArgument(f"Claude Code refused {setting.replace('_', ' ')} {value!r}: {error}; "
                                  "nothing was changed") from None
        await self.book.change(active, self._supervisor.apply_change(agent, **{setting: value}), **{setting: value})
        return ControlOutcome(query, "now")

    async def _execute(self, agent: Agent, active: ActiveQuery, argv: Sequence[str]) -> ControlOutcome:
        query = active.record
        allowlist = self._settings.query_command_allowlist
        if not allowlist:
            raise Forbidden("execute_command is off: list the executables it may run in "
                            "SWITCHBOARD_QUERY_COMMAND_ALLOWLIST (query_command_allowlist)")
        mode = query.permission_mode or agent.record.permission_mode
        if mode == "plan":
            raise Forbidden(f"query {query.id} is in plan mode, which changes nothing: execute_command is refused "
                            f"(change_permissions first)")
        env = type_environment(agent.agent_type, agent.id)
        executable = allowed_executable(argv[0], allowlist, env)
        if executable is None:
            raise Forbidden(f"{argv[0]!r} is not on SWITCHBOARD_QUERY_COMMAND_ALLOWLIST (query_command_allowlist: "
                            f"{', '.join(allowlist)})")
        workdir = Path(agent.record.workdir)
        await asyncio.to_thread(make_dirs, workdir)  # an exec agent's directory appears with its first task
        result = await run_command([executable, *argv[1:]], workdir, env,
                                   self._settings.query_command_timeout_s, self._settings.query_command_output_bytes)
        return ControlOutcome(query, "now", command=result)

    def _check_mode(self, agent: Agent, mode: str) -> None:
        if mode not in PERMISSION_MODES:
            raise InvalidArgument(f"permission_mode {mode!r} is not one of {', '.join(PERMISSION_MODES)}")
        if mode == "bypassPermissions" and not agent.agent_type.allows_bypass:
            raise Forbidden(f"bypassPermissions is not allowed for agent type {agent.record.type!r}: set "
                            f"allow_bypass_permissions = true in its [agent_types.{agent.record.type}] table")

    @staticmethod
    def _refuse_while_paused(query: QueryRecord, action: str) -> None:
        if query.status == "paused":  # a stopped CLI cannot answer the control request
            raise Conflict(f"query {query.id} is paused; resume it before {action}")

    # -- reading -------------------------------------------------------------------------------

    async def get(self, query_id: str) -> QueryRecord:
        active = self.book.active(query_id)
        if active is not None:
            return active.record
        record = await self.records.query(query_id)
        if record is None:
            raise NotFound(f"no query {query_id!r} (query_list with include_history shows the known ones)")
        return record

    async def page(self, *, include_history: bool = False, statuses: Sequence[str] = (), agent_id: str | None = None,
                   query_ids: Sequence[str] = (), include_output: bool = False, include_transcript: bool = False,
                   since_turn: int = 0, limit: int = 50,
                   after_seq: int = 0) -> tuple[list[QueryView], int | None, dict[str, int]]:
        """A page of queries (the active ones, or all with ``include_history``), the cursor to the
        next page, and the counts by state (of the same agent or ids). ``include_transcript`` adds
        each claude query's transcript from ``since_turn``, the queries sharing `ANSWER_BYTES`."""
        wanted = list(statuses) if statuses else ([] if include_history else list(ACTIVE_QUERY_STATUSES))
        if not include_history:
            wanted = [status for status in wanted if status in ACTIVE_QUERY_STATUSES]
            if not wanted:
                return [], None, await self.records.query_counts(agent_id=agent_id, query_ids=query_ids)
        records, next_seq = await self.records.queries_page(
            statuses=wanted, agent_id=agent_id, query_ids=query_ids, after_seq=after_seq, limit=limit)
        counts = await self.records.query_counts(agent_id=agent_id, query_ids=query_ids)
        views = await self.views(records, include_output)
        if include_transcript:
            await self._add_transcripts(views, since_turn)
        return views, next_seq, counts

    async def _add_transcripts(self, views: list[QueryView], since_turn: int) -> None:
        runtimes = {agent_id: await self._runtime_of(agent_id) for agent_id in {view.record.agent_id for view in views}}
        claude = [view for view in views if runtimes[view.record.agent_id] == "claude"]
        for view in views:
            if runtimes[view.record.agent_id] != "claude":  # an exec query's output is all there is
                view.transcript = exec_page()
                if view.output_tail is None:
                    (with_tail,) = await self.views([view.record], include_output=True)
                    view.output_tail = with_tail.output_tail
        budget = ANSWER_BYTES // max(len(claude), 1)
        for view in claude:
            view.transcript = await self._read_transcript(view.record, since_turn, budget, latest=False)

    async def transcript(self, query_id: str, *, since_turn: int = 0, budget_bytes: int = ANSWER_BYTES,
                         latest: bool = False) -> tuple[QueryView, TranscriptPage | None]:
        """One query as listed with its output, and its transcript from ``since_turn`` (with ``latest``,
        its last turns that fit); None for an exec query, whose output tail is all there is."""
        if since_turn < 0:
            raise InvalidArgument(f"since_turn is {since_turn}; turns count from 1 (0 reads from the start)")
        (view,) = await self.views([await self.get(query_id)], include_output=True)
        if await self._runtime_of(view.record.agent_id) != "claude":
            return view, None
        return view, await self._read_transcript(view.record, since_turn, budget_bytes, latest=latest)

    async def _read_transcript(self, record: QueryRecord, since_turn: int, budget_bytes: int, *,
                               latest: bool) -> TranscriptPage:
        path = transcript_path(self._supervisor.workdir_for(record.agent_id), record.id)
        entries = await asyncio.to_thread(read_entries, path)
        ended = record.status in ENDED_QUERY_STATUSES
        return page_of(entries, since_turn=since_turn, budget_bytes=budget_bytes, ended=ended, latest=latest)

    async def _runtime_of(self, agent_id: str) -> str | None:
        agent = self._supervisor.live(agent_id)
        if agent is not None:
            return agent.agent_type.runtime
        record = await self._supervisor.records.agent(agent_id)
        return record.runtime if record is not None else None

    async def views(self, records: Sequence[QueryRecord], include_output: bool) -> list[QueryView]:
        now = self._clock.now_ms()
        logs = await self.records.events_of([record.id for record in records]) if include_output else {}
        waiting_input = [record.id for record in records if record.status in ("needs_input", "paused")
                         or ((active := self.book.active(record.id)) is not None and active.needs_input.is_set())]
        requests: dict[str, list[PermissionRequest]] = {}
        for request in await self.book.approvals.pending(waiting_input) if waiting_input else []:
            requests.setdefault(request.query_id, []).append(request)
        views = []
        for stored in records:
            active = self.book.active(stored.id)
            record = active.record if active is not None else stored
            if active is not None and record.status in ("running", "needs_input", "paused"):
                record = self._with_live_usage(record)
            tail = None
            if include_output:
                tail = record.output_tail
                agent = self._supervisor.live(record.agent_id)
                if active is not None and agent is not None and record.started_ms is not None:
                    tail = agent.tail.since(active.tail_mark)
            budget = Budgets.query_state(self._query_budget(record), None)
            views.append(QueryView(record, record.active_ms(now), record.wall_ms(now),
                                   logs.get(record.id, []) if include_output else None, tail,
                                   requests.get(record.id, []), budget if budget.limit.set else None))
        return views

    def _with_live_usage(self, record: QueryRecord) -> QueryRecord:
        usage = self._live_usage(record)
        if usage is None:
            return record
        return dataclasses.replace(record, turns=usage.turns, input_tokens=usage.input_tokens,
                                   output_tokens=usage.output_tokens, cost_usd=usage.cost_usd)

    def _live_usage(self, record: QueryRecord) -> Usage | None:
        agent = self._supervisor.live(record.agent_id)
        if agent is None or agent.running is None or agent.running.id != record.id:
            return None
        return agent.live_usage

    async def wait(self, query_ids: Sequence[str], *, mode: Literal["all", "any"], timeout_s: float,
                   progress: Callable[[int, int, str], Awaitable[None]] | None = None,
                   interrupt: asyncio.Event | None = None, wake_on_input: bool = True) -> WaitOutcome:
        """Until all (or any) of ``query_ids`` have ended, or ``timeout_s`` passed, or ``interrupt`` is
        set; with ``any`` and ``wake_on_input``, also until one of them needs input (a permission
        request or a question waits; the caller who is asked them itself passes False). ``progress``
        hears (ended, of, message) each time more of them have ended."""
        if not query_ids:
            raise InvalidArgument("query_ids is empty; name the queries to wait for")
        unique = list(dict.fromkeys(query_ids))
        records = {query_id: await self.get(query_id) for query_id in unique}  # NotFound for an unknown id
        waiting = {query_id: active for query_id in unique
                   if (active := self.book.active(query_id)) is not None}
        timed_out = False
        wakes_on_input = mode == "any" and wake_on_input
        asking = wakes_on_input and any(active.needs_input.is_set() for active in waiting.values())
        if waiting and not asking and (mode == "all" or len(waiting) == len(unique)):
            ended = [asyncio.ensure_future(active.ended.wait()) for active in waiting.values()]
            # With `any`, a query that needs a person's answer is worth waking for too.
            asking_now = [asyncio.ensure_future(active.needs_input.wait()) for active in waiting.values()] \
                if wakes_on_input else []
            interrupted = [asyncio.ensure_future(interrupt.wait())] if interrupt is not None else []
            try:
                async with asyncio.timeout(timeout_s):
                    pending = {*ended, *asking_now, *interrupted}
                    while pending:
                        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                        if progress is not None:
                            finished = len(unique) - len(waiting) + sum(future.done() for future in ended)
                            await progress(finished, len(unique), f"{finished} of {len(unique)} queries ended")
                        if mode == "any" or any(future.done() for future in interrupted) \
                                or all(future.done() for future in ended):
                            break
            except TimeoutError:
                timed_out = True
            finally:
                for future in [*ended, *asking_now, *interrupted]:
                    future.cancel()
        for query_id in unique:
            records[query_id] = await self.get(query_id)
        still = [query_id for query_id in unique if records[query_id].status in ACTIVE_QUERY_STATUSES]
        return WaitOutcome(await self.views(list(records.values()), include_output=False), timed_out, still)

    # -- rules ---------------------------------------------------------------------------------

    def _observe(self) -> list[RunningQuery]:
        now = self._clock.now_ms()
        running = []
        for active in self.book.active_queries():
            record = active.record
            agent = self._supervisor.live(record.agent_id)
            if record.status != "running" or agent is None:
                continue
            usage = self._live_usage(record) or Usage()
            latency = agent.session.last_turn_latency_s if agent.session is not None else None
            running.append(RunningQuery(record.id, agent.record.type, record.model or agent.record.model,
                                        (record.active_ms(now) or 0) / 1000, usage, latency))
        return running

    async def _rule_fired(self, query_id: str, rule: QueryRule, reasons: list[str]) -> None:
        logger.info("rule %s fires on query %s: %s", rule.name, query_id, "; ".join(reasons))
        try:
            await self.control(rule.action, query_id, model=rule.model, actor=f"rule:{rule.name}",
                               grace_s=self._settings.agent_terminate_grace_s, why=reasons)
        except (Conflict, NotFound):  # it ended or changed between the check and the action
            return

    async def _live_agent(self, agent_id: str) -> Agent:
        agent = self._supervisor.live(agent_id)
        if agent is not None and not agent.terminating:
            return agent
        record = await self._supervisor.records.agent(agent_id)
        if record is None:
            raise NotFound(f"no agent {agent_id!r} (agent_list shows the known ones)")
        raise Conflict(f"agent {agent_id} is {record.status}; queries run on live agents (spawn a new one)")

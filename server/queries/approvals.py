"""`ApprovalDesk`: permission requests and questions that wait for a person's answer.

Each request is a row of ``permission_requests`` in the agents database, and the row is the
truth: an answer is a conditional UPDATE of a row still ``pending``, so when two surfaces answer
at once (the dashboard and the CLI, say) exactly one wins and the other gets a `Conflict` naming
who answered first. An answer given in this process wakes the waiting agent at once; one given
by another process (``switchboard approve`` from a shell) is seen by the waiter's poll of its row.
A request no one answers expires after its timeout and is denied; one whose query ends (a
terminate, its agent's end, a restart after a crash) is cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from server.agents.changes import ChangeFeed
from server.agents.ids import new_id
from server.agents.permissions import PermissionAnswer, PermissionAsk
from server.agents.records import AgentRecords, RowChange, Table, where_in
from server.clock import Clock
from server.errors import Conflict, InvalidArgument, NotFound

logger = logging.getLogger(__name__)

RequestStatus = Literal["pending", "allowed", "denied", "expired", "cancelled"]
# A tool's input is kept whole up to this many bytes of JSON; a larger one as its start, marked so.
INPUT_BYTES = 16 * 1024
# How often a waiting request reads its row for an answer given by another process.
POLL_INTERVAL_S = 0.2


@dataclass(slots=True)
class PermissionRequest:
    """One request, as stored. Timestamps are Unix milliseconds."""

    id: str
    query_id: str
    agent_id: str
    tool: str
    input: dict[str, Any]
    suggestions: list[dict[str, Any]]
    questions: list[dict[str, Any]] | None
    created_ms: int
    expires_ms: int
    status: RequestStatus
    decided_by: str | None = None
    decided_ms: int | None = None
    message: str | None = None
    remember: bool = False
    answers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.remember = bool(self.remember)  # stored as 0/1

    @property
    def is_question(self) -> bool:
        return self.questions is not None

    @property
    def choices(self) -> list[tuple[str, list[str]]]:
        """A question's questions, in order: each one's text and its options' labels (none: free text)."""
        return [(str(question.get("question")),
                 [str(option.get("label")) for option in question.get("options") or [] if isinstance(option, dict)])
                for question in self.questions or [] if isinstance(question, dict)]

    @property
    def open_s(self) -> float:
        """How long it was (or has been, while pending: 0) waiting for its answer."""
        return ((self.decided_ms or self.created_ms) - self.created_ms) / 1000

    def as_answer(self) -> PermissionAnswer:
        return PermissionAnswer(self.status == "allowed", self.message, self.remember, self.answers)


REQUESTS = Table("permission_requests", PermissionRequest,
                 frozenset({"input", "suggestions", "questions", "answers"}))


def requests_cancelled(agent_ids: Sequence[str], ended_ms: int, reason: str) -> RowChange:
    """The pending requests of ``agent_ids`` (agents of a server that is gone) become `cancelled`."""
    marks = ",".join("?" * len(agent_ids))
    return RowChange(f"UPDATE permission_requests SET status = 'cancelled', decided_by = 'restart', decided_ms = ?, "
                     f"message = ? WHERE agent_id IN ({marks}) AND status = 'pending'",
                     (ended_ms, reason, *agent_ids))


@dataclass(frozen=True, slots=True)
class RequestHooks:
    """Told of each request this server raises and of its end (a webhook, the metrics); each
    returns at once (slow work is scheduled), and its failure never reaches the agent."""

    on_raised: Callable[[PermissionRequest], None] | None = None
    on_decided: Callable[[PermissionRequest], None] | None = None

    def raised(self, request: PermissionRequest) -> None:
        self._tell(self.on_raised, request)

    def decided(self, request: PermissionRequest) -> None:
        self._tell(self.on_decided, request)

    @staticmethod
    def _tell(hook: Callable[[PermissionRequest], None] | None, request: PermissionRequest) -> None:
        if hook is None:
            return
        try:
            hook(request)
        except Exception:
            logger.exception("a permission-request hook failed on %s", request.id)


@dataclass(eq=False)
class _Waiter:
    request: PermissionRequest
    decided: asyncio.Event = field(default_factory=asyncio.Event)


class ApprovalDesk:
    """The requests of this server's agents: raised, waited on, answered, expired, cancelled."""

    def __init__(self, database: AgentRecords, changes: ChangeFeed, clock: Clock, hooks: RequestHooks | None = None
                 ) -> None:
        self._database = database
        self._changes = changes
        self._clock = clock
        self._hooks = hooks or RequestHooks()
        self._waiters: dict[str, _Waiter] = {}

    # -- raising and waiting -------------------------------------------------------------------

    async def raise_request(self, query_id: str, agent_id: str, ask: PermissionAsk) -> PermissionRequest:
        """Records a new pending request; `wait` for its answer."""
        now = self._clock.now_ms()
        questions = None
        if ask.is_question:
            asked = ask.tool_input.get("questions")
            questions = asked if isinstance(asked, list) else []
        request = PermissionRequest(
            id=new_id("request"), query_id=query_id, agent_id=agent_id, tool=ask.tool, input=_bounded(ask.tool_input),
            suggestions=ask.suggestions, questions=questions, created_ms=now,
            expires_ms=now + int(ask.timeout_s * 1000), status="pending")
        await self._database.commit(REQUESTS.inserted(request))
        self._waiters[request.id] = _Waiter(request)
        self._changes.changed("approval", request.id)
        self._hooks.raised(request)
        return request

    async def wait(self, request: PermissionRequest) -> PermissionRequest:
        """Until the request is answered (here or by another process), expires, or is cancelled;
        answers its final record. Cancelled itself (the agent's callback was), it cancels the request."""
        final = await self._until_decided(request)
        self._hooks.decided(final)
        return final

    async def _until_decided(self, request: PermissionRequest) -> PermissionRequest:
        waiter = self._waiters[request.id]
        try:
            while True:
                remaining_s = (request.expires_ms - self._clock.now_ms()) / 1000
                if remaining_s <= 0:
                    return await self._expire(request)
                try:
                    async with asyncio.timeout(min(POLL_INTERVAL_S, remaining_s)):
                        await waiter.decided.wait()
                    return waiter.request
                except TimeoutError:
                    stored = await self.get(request.id)
                    if stored.status != "pending":  # answered by another process (the CLI)
                        self._changes.changed("approval", request.id)
                        return stored
        except asyncio.CancelledError:
            self._hooks.decided(await asyncio.shield(
                self._settle(request.id, "cancelled", "agent", "the agent stopped asking")))
            raise
        finally:
            self._waiters.pop(request.id, None)

    async def _expire(self, request: PermissionRequest) -> PermissionRequest:
        seconds = (request.expires_ms - request.created_ms) / 1000
        what = "question" if request.is_question else f"request to use {request.tool}"
        message = (f"No one answered this {what} within {seconds:g} s, so it was denied. Go on without it, or say "
                   "in your answer what needs a person's decision.")
        return await self._settle(request.id, "expired", "timeout", message)

    async def _settle(self, request_id: str, status: RequestStatus, by: str, message: str) -> PermissionRequest:
        """Ends a request that is still pending without an answer; answers its final record."""
        try:
            return await self._decide(request_id, status, by, message=message)
        except Conflict:  # answered just before: that answer stands
            return await self.get(request_id)

    # -- answering -----------------------------------------------------------------------------

    async def answer(self, request_id: str, *, allow: bool, by: str, message: str | None = None,
                     remember: bool = False, answers: dict[str, str] | None = None) -> PermissionRequest:
        """Allows or denies a pending request (a question is allowed with its ``answers``); raises
        `NotFound`, `Conflict` (answered already, naming who), or `InvalidArgument`, changing nothing."""
        request = await self.get(request_id)
        if request.status != "pending":
            raise self._answered(request)
        if request.is_question:
            if allow:
                answers = self._checked_answers(request, answers)
        elif answers:
            raise InvalidArgument(f"request {request_id} asks to use {request.tool}, not a question: "
                                  "approve or deny it without answers")
        return await self._decide(request_id, "allowed" if allow else "denied", by, message=message,
                                  remember=remember and allow, answers=answers if allow else None)

    async def cancel_for(self, query_id: str, by: str, reason: str) -> int:
        """Cancels the pending requests of a query that is ending; answers how many there were."""
        ids = [waiter.request.id for waiter in self._waiters.values()
               if waiter.request.query_id == query_id and waiter.request.status == "pending"]
        for request_id in ids:
            await self._settle(request_id, "cancelled", by, reason)
        return len(ids)

    async def _decide(self, request_id: str, status: RequestStatus, by: str, *, message: str | None = None,
                      remember: bool = False, answers: dict[str, str] | None = None) -> PermissionRequest:
        now = self._clock.now_ms()
        changes = {"status": status, "decided_by": by, "decided_ms": now, "message": message,
                   "remember": int(remember), "answers": answers}
        update = REQUESTS.updated(request_id, changes)
        won = await self._database.commit_counted(RowChange(update.sql + " AND status = 'pending'", update.params))
        if not won:
            raise self._answered(await self.get(request_id))
        waiter = self._waiters.get(request_id)
        if waiter is not None:
            for name, value in {**changes, "remember": remember}.items():
                setattr(waiter.request, name, value)
            waiter.decided.set()
        self._changes.changed("approval", request_id)
        return waiter.request if waiter is not None else await self.get(request_id)

    @staticmethod
    def _answered(request: PermissionRequest) -> Conflict:
        return Conflict(f"request {request.id} is already {request.status} (by {request.decided_by or 'nobody'}); "
                        "the first answer stands")

    @staticmethod
    def _checked_answers(request: PermissionRequest, answers: dict[str, str] | None) -> dict[str, str]:
        asked = dict(request.choices)
        if not answers:
            listed = "; ".join(f"{question!r}: {', '.join(labels) or 'free text'}" for question, labels in asked.items())
            raise InvalidArgument(f"request {request.id} is a question: answer it with answers "
                                  f"{{question: chosen label}} ({listed})")
        unknown = [question for question in answers if question not in asked]
        if unknown:
            raise InvalidArgument(f"answers name question(s) {unknown} that request {request.id} does not ask "
                                  f"(it asks {list(asked)})")
        return {str(question): str(label) for question, label in answers.items()}

    # -- reading -------------------------------------------------------------------------------

    async def get(self, request_id: str) -> PermissionRequest:
        found = await self._database.select(REQUESTS, "id = ?", [request_id])
        if not found:
            raise NotFound(f"no permission request {request_id!r} (switchboard approvals lists the pending ones)")
        return found[0]

    def has_pending(self, query_id: str) -> bool:
        """Whether a request of ``query_id`` waits in this process."""
        return any(waiter.request.query_id == query_id and waiter.request.status == "pending"
                   for waiter in self._waiters.values())

    async def pending(self, query_ids: Sequence[str] = ()) -> list[PermissionRequest]:
        """Pending requests (of ``query_ids``, when given), oldest first, whichever process raised them."""
        where, params = where_in(status=["pending"], query_id=query_ids)
        return await self._database.select(REQUESTS, where, params)

    async def pending_counts(self) -> dict[str, int]:
        """Pending requests by kind: ``permission`` and ``question``."""
        rows = await self._database.rows("SELECT questions IS NOT NULL, COUNT(*) FROM permission_requests "
                                         "WHERE status = 'pending' GROUP BY 1")
        return {("question" if asking else "permission"): int(str(count)) for asking, count in rows}

    async def recent(self, limit: int = 50) -> list[PermissionRequest]:
        """The newest requests, whatever their state, newest first."""
        return await self._database.select(REQUESTS, "1", [], order="seq DESC", limit=limit)


def _bounded(tool_input: dict[str, Any]) -> dict[str, Any]:
    """The input as the person must judge it (nothing redacted), cut when its JSON is very large."""
    text = json.dumps(tool_input, ensure_ascii=False, default=str)
    if len(text.encode()) <= INPUT_BYTES:
        return tool_input
    return {"truncated": True, "bytes": len(text.encode()),
            "json_start": text.encode()[:INPUT_BYTES].decode("utf-8", errors="ignore")}

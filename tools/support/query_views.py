"""How a query appears in the query tools' answers (shared by query_start, query_list, query_wait)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from server.agents.transcript import TranscriptPage, exec_page
from server.queries.approvals import PermissionRequest
from server.queries.records import QueryEvent
from server.queries.registry import QueryView
from tools.support.budget_views import ShownBudget
from tools.support.compact import CompactModel
from tools.support.timestamps import iso_utc


class LoggedEvent(CompactModel):
    at: str
    action: str = Field(description="A query_control action, or permission (a tool-permission request).")
    by: str = Field(description="client, rule:<name>, policy:<mode>, agent (asking), or who answered.")
    outcome: str = Field(description="now | next_query; for permissions asked | allowed | denied | expired | "
                                     "cancelled.")
    detail: dict[str, Any] | None = None

    @classmethod
    def from_engine(cls, event: QueryEvent) -> LoggedEvent:
        logged = cls(at=iso_utc(event.at_ms), action=event.action, by=event.actor, outcome=event.outcome)
        if event.detail:
            logged.detail = event.detail
        return logged


class PendingRequest(CompactModel):
    request_id: str
    tool: str  # AskUserQuestion for a question: its questions and options are in `input`
    input: dict[str, Any]
    suggestions: list[dict[str, Any]] | None = None
    expires_at: str

    @classmethod
    def from_engine(cls, request: PermissionRequest) -> PendingRequest:
        pending = cls(request_id=request.id, tool=request.tool, input=request.input,
                      expires_at=iso_utc(request.expires_ms))
        if request.suggestions:
            pending.suggestions = request.suggestions
        return pending


class ListedQuery(CompactModel):
    query_id: str
    agent_id: str
    status: str = Field(description="waiting | queued | running | needs_input | paused | completed | failed | "
                                    "terminated | skipped | lost")
    task: str
    model: str | None = None
    permission_mode: str | None = None
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    wall_ms: int | None = None
    active_ms: int | None = Field(default=None, description="Time it ran, pauses excluded.")
    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = Field(default=None, description="While it runs, claude's is estimated from tokens.")
    result: str | None = None
    error: str | None = None
    exit_code: int | None = None
    output_tail: str | None = Field(default=None, description="With include_output: the end of its output.")
    log: list[LoggedEvent] | None = Field(default=None, description="With include_output: control actions and "
                                                                     "permission decisions, oldest first.")
    pending_requests: list[PendingRequest] | None = None
    budget: ShownBudget | None = None
    budget_reached: str | None = None  # why a budget paused or ended it
    transcript: list[dict[str, Any]] | None = None  # include_transcript: its turns' entries
    next_turn: int | None = None  # since_turn for more of the transcript

    @classmethod
    def from_engine(cls, view: QueryView, *, result_chars: int = 4000) -> ListedQuery:
        record = view.record
        listed = cls(query_id=record.id, agent_id=record.agent_id, status=record.status, task=record.task,
                     created_at=iso_utc(record.created_ms))
        optional: dict[str, Any] = {
            "model": record.model, "permission_mode": record.permission_mode,
            "started_at": iso_utc(record.started_ms) if record.started_ms else None,
            "ended_at": iso_utc(record.ended_ms) if record.ended_ms else None,
            "wall_ms": view.wall_ms, "active_ms": view.active_ms, "turns": record.turns,
            "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
            "cost_usd": round(record.cost_usd, 6) if record.cost_usd is not None else None,
            "result": _end_of(record.result, result_chars), "error": record.error, "exit_code": record.exit_code,
            "output_tail": view.output_tail or None,
            "log": [LoggedEvent.from_engine(event) for event in view.log] if view.log is not None else None,
            "pending_requests": [PendingRequest.from_engine(request) for request in view.pending_requests] or None,
            "budget": ShownBudget.from_engine(view.budget) if view.budget is not None else None,
            "budget_reached": record.budget_reached,
            "transcript": view.transcript.entries if view.transcript is not None else None,
            "next_turn": view.transcript.next_turn if view.transcript is not None else None,
        }
        for name, value in optional.items():
            if value is not None:
                setattr(listed, name, value)
        return listed


def _end_of(text: str | None, chars: int) -> str | None:
    """A long result is cut at its start, where it matters least; the cut says so."""
    if text is None or len(text) <= chars:
        return text
    return f"[{len(text) - chars} earlier characters cut; query_list include_output shows the output tail] " \
           + text[-chars:]


class TranscriptView(CompactModel):
    """One query's transcript as the resource and the dashboard show it: a claude query's entries (the
    JSON lines of `server.agents.transcript`), or an exec query's output tail."""

    query_id: str
    status: str
    entries: list[dict[str, Any]]
    next_turn: int | None = None
    output_tail: str | None = None

    @classmethod
    def from_engine(cls, view: QueryView, page: TranscriptPage | None) -> TranscriptView:
        shown = cls(query_id=view.record.id, status=view.record.status, entries=(page or exec_page()).entries)
        if page is None:
            shown.output_tail = view.output_tail or ""
        elif page.next_turn is not None:
            shown.next_turn = page.next_turn
        return shown

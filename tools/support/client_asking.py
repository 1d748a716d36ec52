"""`ClientAsking`: a blocking call's permission requests and questions, asked of the calling client.

A client still in a blocking call (``agents_spawn_parallel`` or ``query_start`` with ``wait``,
``query_wait``) that declared the form-elicitation capability is asked each new pending request of
what it waits for, once per call, as an MCP form elicitation: allow / always / deny (with a
message) for a permission, the question's options for a question. An accepted form answers the
request (``decided_by: client``); a decline or a cancel leaves it pending for the other surfaces
(the dashboard, the CLI, ``query_control``). An answer given elsewhere first ends the form.

How the form travels depends on the protocol the client speaks:

- up to 2025-11-25, as a request of its own on the call's back-channel while the call waits on;
- from 2026-07-28 (no server-initiated requests), the call answers an ``InputRequiredResult``
  carrying the forms and its own sealed state; the client retries with the answers and the call
  waits on where it left off (the spawn is not repeated, the deadline is the first round's).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError
from mcp.types import ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp_types.version import is_version_at_least

from server.agents.changes import Kind
from server.agents.permissions import DECISIONS, PermissionAnswer
from server.errors import SwitchboardError
from server.queries.approvals import PermissionRequest
from server.services import Services

logger = logging.getLogger(__name__)

# The first protocol revision in which a form travels inside the call's result.
INPUT_REQUIRED_VERSION = "2026-07-28"
# What of a tool's input the form shows (the dashboard and `switchboard approvals` show it whole).
FORM_INPUT_CHARS = 2_000

Way = Literal["none", "back_channel", "input_required"]
T = TypeVar("T")


def way_to_ask(ctx: Context[Services, Any]) -> Way:
    """How this call can ask its client: not at all, on the back-channel, or in its result."""
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities is not None else None
    # A bare `elicitation: {}` (before modes existed) means forms; url-only does not.
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return "none"
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, INPUT_REQUIRED_VERSION):
        return "input_required"
    return "back_channel" if ctx.session.can_send_request else "none"


@dataclass(frozen=True, slots=True)
class RequestForm:
    """The form that asks one request, and how its answer reads back."""

    request: PermissionRequest
    agent_name: str

    @property
    def message(self) -> str:
        if self.request.is_question:
            return f"Agent {self.agent_name} asks you (query {self.request.query_id}, request {self.request.id})."
        shown = json.dumps(self.request.input, ensure_ascii=False, indent=1, default=str)
        if len(shown) > FORM_INPUT_CHARS:
            shown = shown[:FORM_INPUT_CHARS] + f"\n... ({len(shown):,} characters in all)"
        always = " always: allow it and what Claude Code suggests for the rest of the agent's life." \
            if self.request.suggestions else ""
        return (f"Agent {self.agent_name} asks to use {self.request.tool} (query {self.request.query_id}, "
                f"request {self.request.id}):\n{shown}\nallow: this once; deny: refuse, with a message the model "
                f"reads.{always}")

    @property
    def schema(self) -> dict[str, Any]:
        if self.request.is_question:
            properties = {}
            for number, (text, labels) in enumerate(self.request.choices, start=1):
                properties[f"answer_{number}"] = {"type": "string", "title": text[:200], "description": text,
                                                  **({"enum": labels} if labels else {})}
            return {"type": "object", "properties": properties, "required": list(properties)}
        choices = [choice for choice in DECISIONS if choice != "always" or self.request.suggestions]
        return {"type": "object", "required": ["decision"], "properties": {
            "decision": {"type": "string", "title": "Decision", "enum": choices},
            "message": {"type": "string", "title": "Message to the agent",
                        "description": "With deny: why, or what to do instead."}}}

    def answer_of(self, content: dict[str, Any] | None) -> PermissionAnswer:
        """The answer an accepted form gives; `ValueError` when the content does not fit the form."""
        content = content or {}
        if self.request.is_question:
            answers = {}
            for number, (text, labels) in enumerate(self.request.choices, start=1):
                chosen = content.get(f"answer_{number}")
                if not isinstance(chosen, str) or not chosen or (labels and chosen not in labels):
                    raise ValueError(f"answer_{number} is {chosen!r}, not one of {labels}")
                answers[text] = chosen
            return PermissionAnswer(True, answers=answers)
        decision = content.get("decision")
        if decision not in DECISIONS or (decision == "always" and not self.request.suggestions):
            raise ValueError(f"decision is {decision!r}, not one of {DECISIONS}")
        message = content.get("message")
        return PermissionAnswer.of(decision, message if isinstance(message, str) and message.strip() else None)


@dataclass(slots=True)
class _Watch:
    query_ids: set[str]
    agent_ids: set[str]

    def covers(self, request: PermissionRequest) -> bool:
        return request.query_id in self.query_ids or request.agent_id in self.agent_ids


@dataclass(eq=False)
class ClientAsking:
    """One blocking call's asking of its client (see the module's note). Use `watching` around the
    call's wait; with ``input_required``, answer `input_required_result` when it is not None."""

    ctx: Context[Services, Any]
    way: Way
    # The call's own state from the round before (input_required only), and what was asked then.
    resumed: dict[str, Any] | None = None
    asked: set[str] = field(default_factory=set)
    new_requests: asyncio.Event = field(default_factory=asyncio.Event)
    _to_ask: dict[str, PermissionRequest] = field(default_factory=dict)
    _asking: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    @classmethod
    async def begin(cls, ctx: Context[Services, Any]) -> ClientAsking:
        """The asking of this call; a retry (input_required) answers the requests of the round before."""
        asking = cls(ctx, way_to_ask(ctx))
        if asking.way == "input_required" and ctx.request_state is not None:
            state = json.loads(ctx.request_state)  # sealed by the SDK: only what this server minted
            asking.resumed = state["call"]
            asking.asked = set(state["asked"])
            for request_id, response in (ctx.input_responses or {}).items():
                if request_id in asking.asked and isinstance(response, ElicitResult):
                    await asking._apply(request_id, response)
        return asking

    @property
    def services(self) -> Services:
        services: Services = self.ctx.request_context.lifespan_context
        return services

    @contextlib.asynccontextmanager
    async def watching(self, query_ids: Iterable[str] = (), agent_ids: set[str] | None = None
                       ) -> AsyncIterator[asyncio.Event | None]:
        """For the length of the block: asks each new pending request of ``query_ids`` or of
        ``agent_ids`` (which may still grow). Yields the event to stop waiting on (input_required:
        a request is there to ask), or None when asking does not cut the wait short."""
        if self.way == "none":
            yield None
            return
        watch = _Watch(set(query_ids), agent_ids if agent_ids is not None else set())
        changed: asyncio.Queue[str] = asyncio.Queue()

        def heard(kind: Kind, ident: str) -> None:
            if kind == "approval":
                changed.put_nowait(ident)

        stop_listening = self.services.supervisor.changes.listen(heard)
        follower = asyncio.create_task(self._follow(watch, changed))
        try:
            for request in await self.services.queries.book.approvals.pending(sorted(watch.query_ids)):
                self._consider(request, watch)
            yield self.new_requests if self.way == "input_required" else None
        finally:
            stop_listening()
            open_tasks = [follower, *self._asking.values()]
            for task in open_tasks:
                task.cancel()
            await asyncio.gather(*open_tasks, return_exceptions=True)

    def input_required_result(self, call_state: dict[str, Any]) -> InputRequiredResult | None:
        """The forms to ask, with the call's state to resume from; None when there are none."""
        if not self._to_ask:
            return None
        forms = {request_id: ElicitRequest(params=ElicitRequestFormParams(message=form.message,
                                                                          requested_schema=form.schema))
                 for request_id, form in ((request.id, self._form(request)) for request in self._to_ask.values())}
        state = {"call": call_state, "asked": sorted(self.asked)}
        return InputRequiredResult(input_requests=dict(forms), request_state=json.dumps(state))

    # -- following the requests ----------------------------------------------------------------

    async def _follow(self, watch: _Watch, changed: asyncio.Queue[str]) -> None:
        desk = self.services.queries.book.approvals
        while True:
            request_id = await changed.get()
            try:
                request = await desk.get(request_id)
            except SwitchboardError:
                continue
            if request.status != "pending":
                if (task := self._asking.pop(request_id, None)) is not None:
                    task.cancel()  # answered elsewhere first: the form is moot
                self._to_ask.pop(request_id, None)
                continue
            self._consider(request, watch)

    def _consider(self, request: PermissionRequest, watch: _Watch) -> None:
        if request.status != "pending" or request.id in self.asked or not watch.covers(request):
            return
        self.asked.add(request.id)
        if self.way == "input_required":
            self._to_ask[request.id] = request
            self.new_requests.set()
        else:
            self._asking[request.id] = asyncio.create_task(self._ask_on_back_channel(request))

    async def _ask_on_back_channel(self, request: PermissionRequest) -> None:
        form = self._form(request)
        try:
            result = await self.ctx.session.elicit_form(form.message, form.schema,
                                                        related_request_id=self.ctx.request_context.request_id)
        except MCPError as error:
            logger.info("the client could not be asked request %s: %s", request.id, error)
            return
        finally:
            self._asking.pop(request.id, None)
        await self._apply(request.id, result)

    async def _apply(self, request_id: str, result: ElicitResult) -> None:
        """An accepted form answers the request; anything else leaves it to the other surfaces."""
        if result.action != "accept":
            logger.info("the client left request %s to others (%s)", request_id, result.action)
            return
        desk = self.services.queries.book.approvals
        try:
            request = await desk.get(request_id)
            answer = self._form(request).answer_of(result.content)
            await self.services.queries.answer(request.query_id, request_id, allow=answer.allowed, by="client",
                                               message=answer.message, remember=answer.remember,
                                               answers=answer.answers)
        except ValueError as error:
            logger.info("the client's answer to request %s does not fit its form (%s); it stays pending",
                        request_id, error)
        except SwitchboardError as error:  # answered elsewhere first, or its query ended
            logger.info("the client's answer to request %s was not taken: %s", request_id, error)

    def _form(self, request: PermissionRequest) -> RequestForm:
        agent = self.services.supervisor.live(request.agent_id)
        return RequestForm(request, agent.record.name if agent is not None else request.agent_id)


async def wait_or_ask(asking: ClientAsking, wait: Callable[[float | None], Awaitable[T]], *,
                      deadline_ms: int | None, done: Callable[[T], bool],
                      call_state: Callable[[T], dict[str, Any]]) -> T | InputRequiredResult:
    """Runs ``wait`` (given the seconds left before ``deadline_ms``) inside `ClientAsking.watching`
    and answers its outcome; with input_required, answers the forms instead when requests came up
    before the wait was ``done`` (``call_state`` of the outcome so far is what the retry resumes)."""
    clock = asking.services.clock
    while True:
        remaining_s = None if deadline_ms is None else max(deadline_ms - clock.now_ms(), 0) / 1000
        outcome = await wait(remaining_s)
        if asking.way != "input_required" or done(outcome) or not asking.new_requests.is_set():
            return outcome
        if (forms := asking.input_required_result(call_state(outcome))) is not None:
            return forms
        asking.new_requests.clear()  # they were answered elsewhere meanwhile: wait on

"""The bodies of the dashboard's POSTs (the sign-in form, a query control, an answer, a merge), read and checked
before anything acts on them.

A body is read up to a small bound (a token or a model name is a few bytes), and each field is
checked for its type and value, so a wrong body is answered as the caller's mistake, naming the
field and what it takes, and nothing has been done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import parse_qs

from starlette.requests import Request

from server.agents.permissions import DECISIONS, PermissionAnswer
from server.errors import InvalidArgument, TooLarge
from server.workspaces.git import MergeStrategy

MAX_BODY_BYTES = 16 * 1024
MODEL_MAX_CHARS = 200
MESSAGE_MAX_CHARS = 4000
BRANCH_MAX_CHARS = 255  # what most filesystems allow a ref's file name
FORM_TYPE = "application/x-www-form-urlencoded"  # how the sign-in page posts its form

# What the page offers; change_permissions and execute_command stay with the query_control tool.
DashboardAction = Literal["pause", "resume", "terminate", "change_model", "change_budget"]
CONTROL_ACTIONS: tuple[DashboardAction, ...] = get_args(DashboardAction)
CONTROL_FIELDS = ("action", "model", "budget_usd")


@dataclass(frozen=True, slots=True)
class ControlRequest:
    action: DashboardAction
    model: str | None = None  # change_model
    budget_usd: float | None = None  # change_budget: the query's new budget


async def read_body(request: Request) -> bytes:
    """The body, refused with `TooLarge` past `MAX_BODY_BYTES` (the rest is never read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        parts.append(part)
    return b"".join(parts)


def sign_in_token(content_type: str, body: bytes) -> str:
    """The ``token`` field of the sign-in form ("" when there is none: a wrong token like any other)."""
    if content_type.split(";", 1)[0].strip().lower() != FORM_TYPE:
        raise InvalidArgument(f"the sign-in form is posted as {FORM_TYPE}, with a token field")
    try:
        fields = parse_qs(body.decode("utf-8"), errors="strict", max_num_fields=10)
    except ValueError:  # UnicodeDecodeError included, or too many fields
        raise InvalidArgument("the sign-in form must be UTF-8 form data with one token field") from None
    tokens = fields.get("token", [""])
    if len(tokens) != 1:
        raise InvalidArgument("the sign-in form takes one token field")
    return tokens[0]


def control_request(body: bytes) -> ControlRequest:
    """The action of a control request's JSON body, with the stripped model of a change_model and
    the new budget of a change_budget."""
    fields = _json_object(body)
    unknown = sorted(set(fields) - set(CONTROL_FIELDS))
    if unknown:
        raise InvalidArgument(f"unknown field {', '.join(map(repr, unknown))}: the body takes only action, model "
                              "(change_model) and budget_usd (change_budget)")
    action = fields.get("action")
    if not isinstance(action, str) or action not in CONTROL_ACTIONS:
        raise InvalidArgument(f"action must be one of {', '.join(CONTROL_ACTIONS)}; got {_shown(action)}")
    model, budget = fields.get("model"), fields.get("budget_usd")
    if model is not None and action != "change_model":
        raise InvalidArgument(f"model is for change_model only; {action} takes no model")
    if budget is not None and action != "change_budget":
        raise InvalidArgument(f"budget_usd is for change_budget only; {action} takes no budget_usd")
    if action == "change_budget":
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget < 1e9:
            raise InvalidArgument(f"budget_usd must be the query's new budget in USD, a number above 0; "
                                  f"got {_shown(budget)}")
        return ControlRequest(action, budget_usd=float(budget))
    if action != "change_model":
        return ControlRequest(action)
    if not isinstance(model, str) or not model.strip() or len(model) > MODEL_MAX_CHARS:
        raise InvalidArgument(f"model must be the name of the model to switch to, a non-empty string of at most "
                              f"{MODEL_MAX_CHARS} characters; got {_shown(model)}")
    return ControlRequest(action, model=model.strip())


ANSWER_FIELDS = ("decision", "message", "answers")


def answer_request(body: bytes) -> PermissionAnswer:
    """``{"decision": "allow" | "always" | "deny", "message"?: str, "answers"?: {question: label}}``."""
    fields = _json_object(body, shape='the body must be one JSON object, {"decision": ..., "message"?: ..., '
                                      '"answers"?: ...}')
    unknown = sorted(set(fields) - set(ANSWER_FIELDS))
    if unknown:
        raise InvalidArgument(f"unknown field {', '.join(map(repr, unknown))}: the body takes only "
                              f"{', '.join(ANSWER_FIELDS)}")
    decision = fields.get("decision")
    if decision not in DECISIONS:
        raise InvalidArgument(f"decision must be one of {', '.join(DECISIONS)}; got {_shown(decision)}")
    message = fields.get("message")
    if message is not None and (not isinstance(message, str) or len(message) > MESSAGE_MAX_CHARS):
        raise InvalidArgument(f"message must be a string of at most {MESSAGE_MAX_CHARS} characters; "
                              f"got {_shown(message)}")
    answers = fields.get("answers")
    if answers is not None and not (isinstance(answers, dict) and all(
            isinstance(key, str) and isinstance(value, str) for key, value in answers.items())):
        raise InvalidArgument(f"answers must be an object of question text to chosen label; got {_shown(answers)}")
    return PermissionAnswer.of(decision, message or None, answers or None)


MERGE_FIELDS = ("strategy", "into", "dry_run")
MERGE_STRATEGIES: tuple[MergeStrategy, ...] = get_args(MergeStrategy)


@dataclass(frozen=True, slots=True)
class MergeRequest:
    strategy: MergeStrategy
    into: str | None  # None: the branch the agent started from
    dry_run: bool


def merge_request(body: bytes) -> MergeRequest:
    """``{"strategy"?: "merge" | "squash" | "rebase", "into"?: branch, "dry_run"?: bool}``, as agent_merge takes
    them (an empty ``into`` is the default, the branch the agent started from)."""
    fields = _json_object(body, shape='the body must be one JSON object, {"strategy"?: ..., "into"?: ..., '
                                      '"dry_run"?: ...}')
    unknown = sorted(set(fields) - set(MERGE_FIELDS))
    if unknown:
        raise InvalidArgument(f"unknown field {', '.join(map(repr, unknown))}: the body takes only "
                              f"{', '.join(MERGE_FIELDS)}")
    strategy = fields.get("strategy", "merge")
    if not isinstance(strategy, str) or strategy not in MERGE_STRATEGIES:
        raise InvalidArgument(f"strategy must be one of {', '.join(MERGE_STRATEGIES)}; got {_shown(strategy)}")
    into = fields.get("into")
    if into is not None and (not isinstance(into, str) or len(into) > BRANCH_MAX_CHARS or into != into.strip()):
        raise InvalidArgument(f"into must be the name of a branch, a string of at most {BRANCH_MAX_CHARS} characters "
                              f"without surrounding spaces; got {_shown(into)}")
    dry_run = fields.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise InvalidArgument(f"dry_run must be true or false; got {_shown(dry_run)}")
    return MergeRequest(strategy, into or None, dry_run)


def flag(value: str | None, name: str) -> bool:
    """A query parameter's yes or no: absent, "", 0 or false is no; 1 or true is yes."""
    if value is None or value.lower() in ("", "0", "false"):
        return False
    if value.lower() in ("1", "true"):
        return True
    raise InvalidArgument(f"{name} must be 1 or 0 (true or false); got {_shown(value)}")


def turn_number(value: str | None, name: str) -> int:
    """A query parameter's turn: absent or "" is 0 (from the start), else ASCII digits."""
    if not value:
        return 0
    if len(value) > 9 or not (value.isascii() and value.isdigit()):
        raise InvalidArgument(f"{name} must be a turn number (0 or more, e.g. a page's next_turn); got {_shown(value)}")
    return int(value)


def _json_object(body: bytes, shape: str = 'the body must be one JSON object, {"action": ..., "model"?: ...}'
                 ) -> dict[str, object]:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past the parser's depth
        raise InvalidArgument(f"{shape}; it is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument(f"{shape}; got {_shown(parsed)}")
    return parsed


def _shown(value: object) -> str:
    """A JSON value as a message names it: its type, or (for a short string) itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"a string of {len(value)} characters"
    return "an array" if isinstance(value, list) else "an object"


def _too_large() -> TooLarge:
    return TooLarge(f"the body is over {MAX_BODY_BYTES} bytes, far more than a dashboard request needs")

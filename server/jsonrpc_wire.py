"""Reading one JSON-RPC 2.0 message off the wire, or the error reply a message that cannot be read gets.

JSON-RPC 2.0 answers a message it cannot parse with -32700 (parse error) and a message that
is JSON but not a valid request with -32600 (invalid request), carrying the request's id when
it can be read and null otherwise. Both transports (stdio lines and HTTP bodies) read through
`read_message`, so a client gets the same answer over either.

Parsing uses pydantic-core's JSON parser (the one the MCP SDK uses), which refuses what a JSON
text cannot mean: invalid UTF-8, lone surrogate escapes (``"\\ud800"`` is no Unicode
character, so no tool could store or echo it), NaN and Infinity, and nesting deeper than
`MAX_NESTING` levels. When it refuses, the message is parsed again, leniently, only to say
precisely why and to find the id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pydantic_core

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
# Containers (objects and arrays) pydantic-core's parser accepts inside one another.
MAX_NESTING = 201

RequestId = int | str


@dataclass(frozen=True, slots=True)
class WireError:
    """A JSON-RPC error reply to a message that was not accepted."""

    code: int
    message: str
    request_id: RequestId | None = None
    data: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return json.dumps({"jsonrpc": "2.0", "id": self.request_id, "error": error}, separators=(",", ":")).encode()


def too_large(size: int | None, limit: int, setting: str, what: str) -> WireError:
    """The reply to a message refused for its size, naming the limit and the setting that raises it."""
    got = f"of {size:,} bytes " if size is not None else ""
    return WireError(
        INVALID_REQUEST,
        f"Invalid Request: {what} {got}exceeds the limit of {limit:,} bytes; send less per call, or raise the "
        f"server's {setting} setting (environment variable SWITCHBOARD_{setting.upper()})",
        data={"limit_bytes": limit, "setting": setting},
    )


def read_message(raw: bytes) -> dict[str, Any] | WireError:
    """The message as a JSON object with a valid JSON-RPC 2.0 envelope, or the error to reply with."""
    try:
        value = pydantic_core.from_json(raw, allow_inf_nan=False)
    except ValueError as error:
        return _explain_parse_failure(raw, str(error))
    return _check_envelope(value)


def _check_envelope(value: object) -> dict[str, Any] | WireError:
    if isinstance(value, list):
        return _invalid("a JSON-RPC batch (an array) is not supported by MCP; send each message on its own")
    if not isinstance(value, dict):
        return _invalid(f"a JSON-RPC message must be a JSON object, not {_json_type(value)}")
    message: dict[str, Any] = value
    request_id = message.get("id")
    readable_id = request_id if _is_request_id(request_id) else None
    if "method" not in message:
        return _check_response(message, readable_id)
    if "id" in message and readable_id is None:  # without an "id" member it is a notification
        return _invalid(f'"id" must be a string or an integer, not {_json_type(request_id)}')
    if message.get("jsonrpc") != "2.0":
        return _invalid('the message must carry "jsonrpc": "2.0"', readable_id)
    if not isinstance(message["method"], str):
        return _invalid(f'"method" must be a string, not {_json_type(message["method"])}', readable_id)
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return _invalid(f'"params" must be an object (MCP names its parameters), not {_json_type(params)}',
                        readable_id)
    return message


def _check_response(message: dict[str, Any], request_id: RequestId | None) -> dict[str, Any] | WireError:
    """A message without a method must be a response to one of the server's requests."""
    if "id" not in message or ("result" in message) == ("error" in message):
        return _invalid('a message needs a "method" (a request or notification), or an "id" and exactly one of '
                        '"result" and "error" (a response)', request_id)
    if message.get("jsonrpc") != "2.0":
        return _invalid('the message must carry "jsonrpc": "2.0"', request_id)
    if "result" in message:
        if request_id is None:
            return _invalid(f'"id" must be a string or an integer, not {_json_type(message["id"])}')
        if not isinstance(message["result"], dict):
            return _invalid(f'"result" must be an object, not {_json_type(message["result"])}', request_id)
        return message
    # An error response may carry a null id: the client could not read the id of what it answers.
    if message["id"] is not None and request_id is None:
        return _invalid(f'"id" must be a string, an integer or null, not {_json_type(message["id"])}')
    error = message["error"]
    code = error.get("code") if isinstance(error, dict) else None
    if not (isinstance(error, dict) and isinstance(code, int) and not isinstance(code, bool)
            and isinstance(error.get("message"), str)):
        return _invalid('"error" must be an object with an integer "code" and a string "message"', request_id)
    return message


def _explain_parse_failure(raw: bytes, parser_said: str) -> WireError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return _parse_error(f"the message is not valid UTF-8 (byte 0x{raw[error.start]:02x} at offset {error.start})")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except _NotJsonConstant as error:
        return _parse_error(f"{error.args[0]} is not a JSON value")
    except json.JSONDecodeError as error:
        return _parse_error(f"the message is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})")
    except RecursionError:
        return _parse_error(f"the message nests objects and arrays more than {MAX_NESTING} levels deep")
    request_id = value.get("id") if isinstance(value, dict) else None
    readable_id = request_id if _is_request_id(request_id) else None
    depth, surrogate = _depth_and_lone_surrogate(value)
    if surrogate is not None:
        return _parse_error(
            f"the message contains a lone surrogate escape (\\u{ord(surrogate):04x}), which is not a Unicode "
            "character; write a character beyond U+FFFF as a surrogate pair (\\ud83d\\ude00) or as UTF-8",
            readable_id,
        )
    if depth > MAX_NESTING:
        return _parse_error(
            f"the message nests objects and arrays {depth} levels deep; at most {MAX_NESTING} are accepted",
            readable_id,
        )
    return _parse_error(f"the message is not valid JSON: {parser_said}", readable_id)


def _depth_and_lone_surrogate(value: object) -> tuple[int, str | None]:
    """How deep containers nest in ``value``, and its first lone surrogate (in a key or a string), if any."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth + 1)
            for key, member in item.items():
                if (found := _lone_surrogate(key)) is not None:
                    return deepest, found
                stack.append((member, depth + 1))
        elif isinstance(item, list):
            deepest = max(deepest, depth + 1)
            stack.extend((member, depth + 1) for member in item)
        elif isinstance(item, str) and (found := _lone_surrogate(item)) is not None:
            return deepest, found
    return deepest, None


def _lone_surrogate(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return text[error.start]
    return None


class _NotJsonConstant(ValueError):
    pass


def _refuse_constant(name: str) -> object:
    raise _NotJsonConstant(name)


def _is_request_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _invalid(reason: str, request_id: RequestId | None = None) -> WireError:
    return WireError(INVALID_REQUEST, f"Invalid Request: {reason}", request_id)


def _parse_error(reason: str, request_id: RequestId | None = None) -> WireError:
    return WireError(PARSE_ERROR, f"Parse error: {reason}", request_id)

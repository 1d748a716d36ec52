"""`read_message` at its edges: what it accepts, and where its limits fall."""

from __future__ import annotations

import json

from server.jsonrpc_wire import INVALID_REQUEST, MAX_NESTING, PARSE_ERROR, WireError, read_message


def nested(levels: int) -> bytes:
    """A request whose containers nest ``levels`` deep in all (the message object is the first)."""
    inner = levels - 2  # the message object and params
    return (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"v":' + b"[" * inner + b"]" * inner + b"}}")


def test_nesting_up_to_the_limit_is_accepted_and_one_more_level_is_refused_with_the_id() -> None:
    assert isinstance(read_message(nested(MAX_NESTING)), dict)
    refused = read_message(nested(MAX_NESTING + 1))
    assert isinstance(refused, WireError) and refused.code == PARSE_ERROR and refused.request_id == 1
    assert f"{MAX_NESTING + 1} levels deep; at most {MAX_NESTING}" in refused.message


def test_responses_and_notifications_from_the_client_are_accepted() -> None:
    for message in ({"jsonrpc": "2.0", "id": 5, "result": {}},
                    {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}},
                    {"jsonrpc": "2.0", "method": "notifications/initialized"},
                    {"jsonrpc": "2.0", "id": "a-string-id", "method": "ping", "params": None}):
        assert read_message(json.dumps(message).encode()) == message


def test_a_surrogate_pair_is_a_character_not_an_error() -> None:
    message = read_message(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"v":"\\ud83d\\ude00"}}')
    assert isinstance(message, dict) and message["params"]["v"] == "\U0001f600"


def test_a_result_without_a_usable_id_is_refused() -> None:
    refused = read_message(b'{"jsonrpc":"2.0","id":null,"result":{}}')
    assert isinstance(refused, WireError) and refused.code == INVALID_REQUEST and refused.request_id is None


def test_the_error_reply_is_one_line_of_json_rpc() -> None:
    refused = read_message(b"{")
    assert isinstance(refused, WireError)
    assert json.loads(refused.to_json()) == {"jsonrpc": "2.0", "id": None, "error": {
        "code": PARSE_ERROR, "message": refused.message}}
    assert b"\n" not in refused.to_json()

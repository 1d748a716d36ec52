"""Messages a server cannot accept, each with the JSON-RPC error it must answer: the same over stdio and HTTP."""

from __future__ import annotations

from dataclasses import dataclass

PARSE_ERROR = -32700
INVALID_REQUEST = -32600


@dataclass(frozen=True)
class Malformed:
    name: str
    raw: bytes
    code: int
    request_id: int | None  # the id the reply must carry (None: JSON null)
    says: str  # a piece of the error message that tells the client what is wrong


def _nested_store(levels: int, request_id: int) -> bytes:
    value = "[" * levels + "]" * levels
    return (f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call","params":{{"name":"memory_usage",'
            f'"arguments":{{"action":"store","key":"deep","value":{value}}}}}}}').encode()


def _store(value_json: str, request_id: int) -> bytes:
    return (f'{{"jsonrpc":"2.0","id":{request_id},"method":"tools/call","params":{{"name":"memory_usage",'
            f'"arguments":{{"action":"store","key":"k","value":{value_json}}}}}}}').encode()


MALFORMED = [
    Malformed("not JSON", b"hello", PARSE_ERROR, None, "not valid JSON"),
    Malformed("truncated", b'{"jsonrpc":"2.0","id":7,"method":"ping"', PARSE_ERROR, None, "not valid JSON"),
    Malformed("invalid UTF-8", b'{"jsonrpc":"2.0","id":7,"method":"ping","params":{"x":"\xff"}}', PARSE_ERROR,
              None, "UTF-8"),
    Malformed("empty array", b"[]", INVALID_REQUEST, None, "batch"),
    Malformed("batch", b'[{"jsonrpc":"2.0","id":8,"method":"ping"}]', INVALID_REQUEST, None, "batch"),
    Malformed("empty object", b"{}", INVALID_REQUEST, None, '"method"'),
    Malformed("a string", b'"ping"', INVALID_REQUEST, None, "JSON object"),
    Malformed("id null", b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST, None, "not null"),
    Malformed("id object", b'{"jsonrpc":"2.0","id":{"n":1},"method":"ping"}', INVALID_REQUEST, None,
              "not an object"),
    Malformed("id 1.5", b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}', INVALID_REQUEST, None, "1.5"),
    Malformed("id true", b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST, None, "boolean"),
    Malformed("jsonrpc 1.0", b'{"jsonrpc":"1.0","id":9,"method":"ping"}', INVALID_REQUEST, 9, '"2.0"'),
    Malformed("method a number", b'{"jsonrpc":"2.0","method":5}', INVALID_REQUEST, None, '"method"'),
    Malformed("params an array", b'{"jsonrpc":"2.0","id":12,"method":"ping","params":[1]}', INVALID_REQUEST, 12,
              '"params"'),
    Malformed("lone surrogate in a value", _store('"a\\ud800b"', 10), PARSE_ERROR, 10, "lone surrogate"),
    Malformed("lone surrogate in a key", _store('{"\\udc00":1}', 13), PARSE_ERROR, 13, "lone surrogate"),
    Malformed("NaN", _store("NaN", 14), PARSE_ERROR, None, "NaN"),
    Malformed("nested 199 levels", _nested_store(199, 11), PARSE_ERROR, 11, "202 levels deep"),
]

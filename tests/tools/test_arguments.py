"""Every tool's arguments, through a real MCP client session (modern and legacy handshakes):
unknown fields refused (with a suggestion), claude-flow's camelCase spellings accepted quietly,
and every refusal coded and saying what is accepted."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.config import Settings
from tests.tools.answers import error_text, structured_of

Connect = Callable[[], Client]


@pytest.fixture
def settings(tmp_path: Path, upload_root: Path) -> Settings:
    return Settings.model_validate({"data_dir": tmp_path / "data", "memory_max_value_bytes": 64 * 1024,
                                    "upload_roots": [upload_root]})


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return structured_of(await client.call_tool(tool, arguments))


async def refusal(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    return error_text(await client.call_tool(tool, arguments))


async def everything(client: Client) -> list[tuple[str, str, int]]:
    found = await call(client, "memory_usage", {"action": "search", "pattern": "*", "limit": 1000})
    return [(e["namespace"], e["key"], e["version"]) for e in found["entries"]]


async def test_camel_case_if_version_is_a_compare_and_set_not_an_overwrite(connect: Connect) -> None:
    async with connect() as client:
        await call(client, "memory_usage", {"action": "store", "key": "cas", "value": 1})
        text = await refusal(client, "memory_usage", {"action": "store", "key": "cas", "value": 2, "ifVersion": 99})
        assert text.startswith("conflict: key 'cas' in namespace 'default' is at version 1, not if_version 99")
        stored = await call(client, "memory_usage", {"action": "store", "key": "cas", "value": 2, "ifVersion": 1})
        assert stored["entry"]["version"] == 2
        batch = {"action": "store_batch", "entries": [{"key": "cas", "value": 3, "ifVersion": 1}]}
        assert (await refusal(client, "memory_usage", batch)).startswith("conflict: ")
        got = await call(client, "memory_usage", {"action": "retrieve", "key": "cas"})
        assert (got["entry"]["value"], got["entry"]["version"]) == (2, 2)


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("memory_usage", {"action": "store", "key": "k", "value": 1, "ttl_seconds": 60},
         "invalid_argument: unknown argument 'ttl_seconds'; did you mean ttl?"),
        ("memory_usage", {"action": "store", "key": "k", "value": 1, "if_verison": 0},
         "invalid_argument: unknown argument 'if_verison'; did you mean if_version?"),
        ("memory_usage", {"action": "store", "key": "k", "value": 1, "IfVersion": 0},
         "invalid_argument: unknown argument 'IfVersion'; did you mean if_version?"),
        ("memory_usage", {"action": "store", "key": "k", "value": 1, "colour": "red"},
         "invalid_argument: unknown argument 'colour' (accepted: action, key, value, namespace, ttl, tags, index, "
         "entries, if_version, prefix, limit, cursor, confirm, pattern, query, mode)"),
        ("memory_usage", {"action": "store_batch", "entries": [{"key": "a", "value": 1}, {"key": "b", "value": 2,
                                                                                         "ttlSeconds": 5}]},
         "invalid_argument: unknown field 'ttlSeconds' in entries[1]; did you mean ttl?"),
        # Sent as JSON text (some clients do): checked the same once the SDK has parsed it.
        ("memory_usage", {"action": "store_batch", "entries": '[{"key": "a", "value": 1, "ifversion": 0}]'},
         "invalid_argument: unknown field 'ifversion' in entries[0]; did you mean if_version?"),
        ("memory_search", {"query": "login", "min_scor": 0.5},
         "invalid_argument: unknown argument 'min_scor'; did you mean min_score?"),
        ("memory_search", {"query": "login", "namespaces": "a", "top_k": 3},
         "invalid_argument: unknown argument 'namespaces'; did you mean namespace?; unknown argument 'top_k' "
         "(accepted: query, namespace, k, min_score, tags, mode, pattern, limit)"),
        ("upload_batch", {"files": [{"content": "x", "key": "k"}], "max_conc": 2},
         "invalid_argument: unknown argument 'max_conc'; did you mean max_concurrency?"),
        ("upload_batch", {"files": [{"content": "x", "key": "a"}, {"contents": "y", "key": "b"}]},
         "invalid_argument: unknown field 'contents' in files[1]; did you mean content?"),
    ],
)
async def test_unknown_fields_are_refused_by_name_and_nothing_is_written(
    connect: Connect, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    async with connect() as client:
        await call(client, "memory_usage", {"action": "store", "key": "k", "value": "original"})
        before = await everything(client)
        assert await refusal(client, tool, arguments) == expected
        assert await everything(client) == before  # no upload summary either: nothing was uploaded


async def test_min_score_is_honoured_under_every_spelling(connect: Connect) -> None:
    async with connect() as client:
        for key, value in [("auth", "fixed the login bug in the auth service"), ("trip", "sailing trip to islands")]:
            await call(client, "memory_usage", {"action": "store", "namespace": "notes", "key": key, "value": value,
                                                "index": True})
        unfiltered = await call(client, "memory_search", {"query": "login bug auth service", "namespace": "notes",
                                                         "min_score": -1})
        scores = {hit["key"]: hit["score"] for hit in unfiltered["results"]}
        cut = (scores["auth"] + scores["trip"]) / 2
        assert scores["auth"] > cut > scores["trip"]
        for spelling in ("min_score", "minScore", "threshold"):
            found = await call(client, "memory_search", {"query": "login bug auth service", "namespace": "notes",
                                                         spelling: cut})
            assert [hit["key"] for hit in found["results"]] == ["auth"], spelling


async def test_an_alias_given_with_its_own_name_must_agree(connect: Connect) -> None:
    async with connect() as client:
        await call(client, "memory_usage", {"action": "store", "key": "k", "value": 1})
        text = await refusal(client, "memory_usage",
                             {"action": "store", "key": "k", "value": 2, "if_version": 1, "ifVersion": 7})
        assert text == "invalid_argument: if_version and ifVersion are the same argument; give it once (got 1 and 7)"
        entries = [{"key": "k", "value": 2, "ifVersion": 1, "if_version": 0}]
        text = await refusal(client, "memory_usage", {"action": "store_batch", "entries": entries})
        assert text.startswith("invalid_argument: entries[0].ifVersion and entries[0].if_version are the same")
        text = await refusal(client, "memory_search", {"query": "x", "minScore": 0.1, "threshold": 0.2})
        assert text.startswith("invalid_argument: minScore and threshold are the same argument")
        stored = await call(client, "memory_usage",
                            {"action": "store", "key": "k", "value": 2, "if_version": 1, "ifVersion": 1})
        assert stored["entry"]["version"] == 2


async def test_upload_batch_takes_claude_flow_spellings_but_not_two_different_values(
    connect: Connect, upload_root: Path
) -> None:
    (upload_root / "fine.txt").write_text("fine")
    async with connect() as client:
        files = [{"path": "fine.txt"}, {"path": "missing.txt"}]
        both = {"files": files, "allOrNothing": True, "all_or_nothing": False}
        text = await refusal(client, "upload_batch", both)
        assert text.startswith("invalid_argument: allOrNothing and all_or_nothing are the same argument")
        blob = base64.b64encode(b"\x00\x01").decode()
        typed_twice = {"files": [{"contentBase64": blob, "key": "b.bin", "contentType": "image/png",
                                  "content_type": "text/plain"}]}
        text = await refusal(client, "upload_batch", typed_twice)
        assert text.startswith("invalid_argument: files[0].contentType and files[0].content_type are the same")
        assert await everything(client) == []  # not even a batch summary: nothing was attempted

        answer = await call(client, "upload_batch", {"files": files, "allOrNothing": True, "maxConcurrency": 1})
        assert (answer["status"], answer["uploaded"]) == ("failed", [])
        assert [f["error"] for f in answer["failed"]] == ["aborted", "not_found"]
        answer = await call(client, "upload_batch", {"files": [
            {"contentBase64": blob, "key": "b.bin", "contentType": "image/png"}]})
        assert [(u["key"], u["size"], u["content_type"]) for u in answer["uploaded"]] == [("b.bin", 2, "image/png")]


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("memory_usage", {"action": "bogus"},
         "invalid_argument: action must be one of 'store', 'store_batch', 'retrieve', 'list', 'delete', 'search', "
         "'stats'; got 'bogus'"),
        ("memory_usage", {}, "invalid_argument: action is required: one of 'store', 'store_batch', "),
        ("memory_usage", {"action": "list", "limit": 0}, "invalid_argument: limit must be an integer from 1 to 1000; "
                                                         "got 0"),
        ("memory_usage", {"action": "list", "limit": True},
         "invalid_argument: limit must be an integer from 1 to 1000; got true"),
        ("memory_usage", {"action": "store_batch", "entries": [{"key": "a", "value": 1, "if_version": False}]},
         "invalid_argument: entries[0].if_version must be an integer >= 0; got false"),
        ("memory_usage", {"action": "list", "limit": "many"},
         "invalid_argument: limit must be an integer from 1 to 1000; got 'many'"),
        ("memory_usage", {"action": "delete", "namespace": "n", "confirm": "yes please"},
         "invalid_argument: confirm must be true or false; got 'yes please'"),
        ("memory_usage", {"action": "store", "key": 7, "value": 1}, "invalid_argument: key must be a string; got 7"),
        ("memory_usage", {"action": "store", "key": "k", "value": 1, "tags": [1, None]},
         "invalid_argument: tags[0] must be a string; got 1; tags[1] must be a string; got null"),
        ("memory_usage", {"action": "store_batch", "entries": [{"key": "a", "value": 1, "ttl": -1}]},
         "invalid_argument: entries[0].ttl must be an integer >= 0; got -1"),
        ("memory_usage", {"action": "store_batch", "entries": ["a"]},
         "invalid_argument: entries[0] must be an object {key, value, namespace?, ttl?, tags?, index?, if_version?}; "
         "got 'a'"),
        ("memory_usage", {"action": "search", "pattern": "h" * 50_001},
         "invalid_argument: pattern must be a string of at most 4096 characters; got 'hhhhh"),
        ("memory_usage", {"action": "search", "pattern": "*", "mode": "fuzzy"},
         "invalid_argument: mode must be one of 'text', 'semantic'; got 'fuzzy'"),
        ("memory_search", {"query": "x", "min_score": "high"},
         "invalid_argument: min_score must be a number from -1 to 1; got 'high'"),
        ("memory_search", {"query": "x", "k": True}, "invalid_argument: k must be an integer from 1 to 100; got true"),
        ("memory_search", {"query": "x", "tags": {"a": 1}}, "invalid_argument: tags must be a list of strings; got an "
                                                          "object"),
        ("upload_batch", {}, "invalid_argument: files is required: a list of objects {path?, content?, "),
        ("upload_batch", {"files": [{"content": "x", "metadata": {"a": 1}}]},
         "invalid_argument: files[0].metadata['a'] must be a string; got 1"),
        ("upload_batch", {"files": [{"content": "x"}], "overwrite": "sometimes"},
         "invalid_argument: overwrite must be true or false; got 'sometimes'"),
        ("upload_batch", {"files": [{"content": "x"}], "max_concurrency": 2.5},
         "invalid_argument: max_concurrency must be an integer >= 1; got 2.5"),
    ],
)
async def test_every_bad_argument_is_coded_and_says_what_is_accepted(
    connect: Connect, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    async with connect() as client:
        text = await refusal(client, tool, arguments)
        assert text.startswith(expected)
        assert "pydantic" not in text and "http" not in text and "Error executing" not in text


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("memory_usage", {"action": "search", "pattern": "*", "query": "ok \ud800"},
         "invalid_argument: query contains a lone surrogate (U+D800) at character 3; text must be valid Unicode"),
        ("memory_usage", {"action": "store", "key": "k", "value": {"notes": ["fine", "cut \udfff"]}},
         "invalid_argument: value.notes[1] contains a lone surrogate (U+DFFF) at character 4"),
        ("memory_usage", {"action": "store_batch", "entries": [{"key": "k", "value": 1, "tags": ["\udc80"]}]},
         "invalid_argument: entries[0].tags[0] contains a lone surrogate (U+DC80) at character 0"),
        ("memory_search", {"query": "\ud83d"}, "invalid_argument: query contains a lone surrogate (U+D83D)"),
        ("upload_batch", {"files": [{"content": "\ud800", "key": "a.txt"}]},
         "invalid_argument: files[0].content contains a lone surrogate (U+D800) at character 0"),
    ],
)
async def test_text_that_is_not_valid_unicode_is_refused_by_argument(
    connect: Connect, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    async with connect() as client:
        before = await everything(client)
        assert (await refusal(client, tool, arguments)).startswith(expected)
        assert await everything(client) == before


async def test_a_refusal_shows_long_values_by_their_start(connect: Connect) -> None:
    async with connect() as client:
        action = "x" * 10 + "\n" + "x" * 10_000
        text = await refusal(client, "memory_usage", {"action": action})
        assert text.startswith("invalid_argument: action must be one of ")
        assert text.endswith(f"got {action[:60]!r}... (10011 characters)") and "\n" not in text
        text = await refusal(client, "memory_usage", {"action": "list", "limit": 10**5000})
        assert text.endswith("limit must be an integer from 1 to 1000; got an integer of more than 40 digits")
        text = await refusal(client, "memory_usage", {"action": "store", "key": "k", "value": 1, "x" * 500: 1})
        assert text.startswith(f"invalid_argument: unknown argument {'x' * 60!r}... (500 characters) (accepted: ")
